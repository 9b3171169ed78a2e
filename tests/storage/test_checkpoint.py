"""Checkpoint files: written atomically, committed by the manifest, read back bit for bit."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest

from microgpt_jax.config import GPTConfig, TrainConfig
from microgpt_jax.model.init import init_params
from microgpt_jax.runs.guard import load_checkpoint
from microgpt_jax.storage.checkpoint import save_checkpoint
from microgpt_jax.training.loop import init_opt_state

CONFIG = GPTConfig(vocab_size=5, n_embd=8, n_head=2, block_size=4)


def state(optimizer: str):
    params = init_params(jax.random.key(0), CONFIG)
    opt = init_opt_state(optimizer, params)
    # make every leaf distinct from a fresh init, so a silently re-initialised state would show
    opt = jax.tree.map(lambda x: x + 3 if x.dtype.kind == "i" else x + 0.25, opt)
    return params, opt


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_checkpoint_round_trip_and_commit(tmp_path: Path, optimizer: str) -> None:
    tc = TrainConfig(optimizer=optimizer, steps=100)
    params, opt = state(optimizer)
    save_checkpoint(tmp_path, 10, params, opt, CONFIG, "abcd", {"steps": 100})
    params2 = jax.tree.map(lambda x: x * 2, params)
    save_checkpoint(tmp_path, 20, params2, opt, CONFIG, "abcd", {"steps": 100})
    ck = tmp_path / "checkpoint"
    assert sorted(p.name for p in ck.iterdir()) == [
        "checkpoint.json",
        "opt_state-00000020.safetensors",
        "params-00000020.safetensors",
    ]  # the older checkpoint's files are gone once the new manifest is in place
    (ck / "params-00000030.safetensors").write_bytes(b"half a file")  # a write cut short: no manifest names it
    got = load_checkpoint(tmp_path, CONFIG, tc, "abcd")
    assert got.step == 20
    for a, b in zip(jax.tree.leaves((params2, opt)), jax.tree.leaves((got.params, got.opt_state)), strict=True):
        assert a.dtype == b.dtype and np.asarray(a).tobytes() == np.asarray(b).tobytes()
    assert jax.tree.structure(got.opt_state) == jax.tree.structure(opt)
