"""The run around train: a corpus kept on the device only trains the same run."""

from __future__ import annotations

from pathlib import Path

from microgpt_jax.config import DataConfig, GPTConfig, TrainConfig
from microgpt_jax.runs import fresh

SMALL = GPTConfig(n_embd=8, n_head=2, block_size=8)


def test_a_large_corpus_trains_from_its_one_device_copy(tiny_corpus: Path, tmp_path: Path, monkeypatch) -> None:
    # a corpus over ONE_COPY_BYTES keeps its tokens on the device only (no host copy beside them): the same run
    args = (SMALL, TrainConfig(steps=7), DataConfig(path=tiny_corpus, val_size=10))
    fresh.train_run(tmp_path / "host", *args, verbose=False)
    monkeypatch.setattr("microgpt_jax.runs.loop.ONE_COPY_BYTES", 0)
    fresh.train_run(tmp_path / "device", *args, verbose=False)
    for name in ("metrics.jsonl", "params.safetensors"):
        assert (tmp_path / "host" / name).read_bytes() == (tmp_path / "device" / name).read_bytes(), name
