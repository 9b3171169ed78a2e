"""The run library: a run directory from Python without argparse, and every check before the first file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from microgpt_jax import run
from microgpt_jax.cli import main
from microgpt_jax.config import DataConfig, GPTConfig, RunConfig, SampleConfig, TrainConfig
from microgpt_jax.errors import UserError

SMALL = GPTConfig(n_embd=8, n_head=2, block_size=8)


def test_train_run_writes_a_run_that_loads_back(tiny_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run.train_run(
        out, SMALL, TrainConfig(steps=12), DataConfig(path=tiny_corpus, val_size=10),
        RunConfig(eval_every=6), SampleConfig(num_samples=4), verbose=False,
    )  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == [".lock", "config.json", "metrics.jsonl", "params.safetensors"]
    info = json.loads((out / "config.json").read_text())
    assert sorted(info) == ["data", "init", "model", "run", "sample", "step", "train", "version"]  # no raw flags
    assert info["step"] is None  # configs not built from one of the guide's steps
    assert info["train"]["lr"] == 0.01 and info["data"]["path"] == str(tiny_corpus.resolve())
    assert len(result.losses) == 12 and result.val_loss is not None and len(result.samples) == 4
    loaded = run.load_run(out)
    assert loaded.config == result.config and loaded.tokenizer == result.tokenizer
    for k, v in result.params.items():
        np.testing.assert_array_equal(loaded.params[k], np.asarray(v))
    # sampling the run with its own seed gives the names its training printed
    assert run.sample_model(loaded, SampleConfig(num_samples=4)) == result.samples


def test_library_and_cli_runs_are_the_same_run(tiny_corpus: Path, tmp_path: Path, capsys) -> None:
    flags = ["--data", str(tiny_corpus), "--val-size", "10", "--steps", "7", "--n-embd", "8", "--n-head", "2"]
    assert main(["train", "--out", str(tmp_path / "cli"), *flags, "--block-size", "8"]) == 0
    assert "wrote the run to" in capsys.readouterr().out.strip().splitlines()[-1]
    run.train_run(tmp_path / "lib", SMALL, TrainConfig(steps=7), DataConfig(path=tiny_corpus, val_size=10),
                  verbose=False)  # fmt: skip
    for name in ("config.json", "metrics.jsonl", "params.safetensors"):
        assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "lib" / name).read_bytes(), name


@pytest.mark.parametrize(
    "flags, says",
    [
        (["--batch-size", "3", "--devices", "2"], "--devices 2: there are 1 device(s)"),
        (["--devices", "99"], "--devices 99"),
        (["--b1", "1"], "--b1: must be a finite number >= 0 and < 1"),
        (["--step", "10"], "--step: invalid choice '10': the guide's steps are 0, 1, 2, 3, 4, 5"),
        (["--ste", "10"], "unrecognized arguments: --ste"),  # no abbreviations
        (["--init", "missing.json"], "not found"),
        (["--model", "mlp", "--n-head", "2"], "--model mlp does not use --n-head"),
    ],
)
def test_a_bad_run_leaves_no_directory(tiny_corpus: Path, tmp_path: Path, capsys, flags: list[str], says: str) -> None:
    out = tmp_path / "run"
    try:
        code = main(["train", "--out", str(out), "--data", str(tiny_corpus), "--val-size", "10", *flags])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and says in err, err
    assert not out.exists()


def test_empty_out_is_refused(tiny_corpus: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="--out is empty"):
        run.train_run("", SMALL, TrainConfig(steps=2), DataConfig(path=tiny_corpus, val_size=10), verbose=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.txt"]


def test_counted_model_is_a_run_too(tiny_corpus: Path, tmp_path: Path) -> None:
    data = DataConfig(path=tiny_corpus, val_size=10)
    result = run.train_run(
        tmp_path / "bigram", GPTConfig(model="bigram"), data=data, sample=SampleConfig(num_samples=3), verbose=False
    )
    assert result.val_loss is not None and len(result.samples) == 3
    assert run.load_run(tmp_path / "bigram").config.model == "bigram"
