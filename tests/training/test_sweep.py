"""Sweeps: one compile per shape group, members equal to `train`, divergence isolated, devices."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import run_cli

from microgpt_jax.config import DataConfig, GPTConfig, TrainConfig
from microgpt_jax.corpus.documents import encode_docs
from microgpt_jax.corpus.tokenizer import Tokenizer
from microgpt_jax.errors import UserError
from microgpt_jax.model.init import init_params
from microgpt_jax.runs.sweep_dir import train_command
from microgpt_jax.runtime.devices import usable_cores
from microgpt_jax.training import sweep
from microgpt_jax.training.evaluation import evaluate
from microgpt_jax.training.loop import train

ROOT = Path(__file__).resolve().parents[2]
DOCS = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "charlotte", "amelia", "harper", "evelyn"] * 3
SMALL = {"n_embd": [8], "n_head": [2], "block_size": [8]}


def _programs() -> int:
    """How many sweep training programs were built (one per shape group, recipe, batch and chunk length)."""
    return sweep._group_program.cache_info().misses


def _tokenizer() -> Tokenizer:
    return Tokenizer.from_docs(DOCS)


def test_members_equal_train_one_compile_and_divergence_is_isolated():
    tok = _tokenizer()
    base = GPTConfig(vocab_size=tok.vocab_size)
    grid = {**SMALL, "optimizer": ["sgd"], "lr": [0.3, 1e4], "seed": [0, 7], "steps": [6, 12]}
    members = sweep.grid_members(base, TrainConfig(batch_size=4), grid)
    assert len(members) == 8
    before = _programs()
    res = sweep.run_sweep(members, DOCS[:25], DOCS[25:], tok, chunk=6, progress=False)
    assert _programs() - before == 1  # 8 members, 2 step counts: one training program
    train_tok, train_n = encode_docs(DOCS[:25], tok, 8)
    val_tok, val_n = encode_docs(DOCS[25:], tok, 8)
    for m, row, losses in zip(members, res.rows, res.losses, strict=True):
        assert row["id"] == m.index and row["lr"] == m.train.lr and row["seed"] == m.train.seed
        assert len(losses) == m.train.steps
        if m.train.lr > 1:  # lr 1e4 blows up: flagged, row kept
            assert row["diverged"] and not np.isfinite(row["train_loss"])
            continue
        assert not row["diverged"]
        params = init_params(jax.random.key(m.train.seed), m.config, m.train.init_std, False, jnp.float32)
        params, _, ref_losses = train(params, train_tok, train_n, m.config, m.train, chunk=6)
        np.testing.assert_allclose(losses, ref_losses, atol=1e-5, rtol=0)
        assert abs(row["val_loss"] - evaluate(params, val_tok, val_n, m.config)) < 1e-5
        assert row["train_loss"] == pytest.approx(float(np.mean(ref_losses[-1:])), abs=1e-5)  # last 10% of 6 or 12


@pytest.mark.slow
def test_members_with_dropout_adamw_and_warmup_equal_train():
    tok = _tokenizer()
    grid = {**SMALL, "dropout": [0.0, 0.2], "weight_decay": [0.0, 0.1], "schedule": ["cosine"], "warmup": [2]}
    members = sweep.grid_members(GPTConfig(vocab_size=tok.vocab_size), TrainConfig(batch_size=4, steps=6), grid)
    assert len(sweep.member_groups(members)) == 1  # dropout and decay on or off: one program, off at rate 0
    res = sweep.run_sweep(members, DOCS[:25], DOCS[25:], tok, chunk=6, progress=False)
    train_tok, train_n = encode_docs(DOCS[:25], tok, 8)
    for m, losses in zip(members, res.losses, strict=True):
        if m.train.dropout and not m.train.weight_decay:
            continue  # the other three cover each option on and off against train's own programs
        params = init_params(jax.random.key(m.train.seed), m.config, m.train.init_std, False, jnp.float32)
        _, _, ref_losses = train(params, train_tok, train_n, m.config, m.train, chunk=6)
        np.testing.assert_allclose(losses, ref_losses, atol=1e-5, rtol=0)
    command = train_command(members[-1], DataConfig())
    assert all(f in command for f in ("--dropout 0.2", "--weight-decay 0.1", "--schedule cosine", "--warmup 2"))
    assert "--dropout" not in train_command(sweep.grid_members(GPTConfig(), TrainConfig(), {})[0], DataConfig())


def test_a_grid_point_that_cannot_train_is_named():
    grid = {"optimizer": ["adam", "sgd"], "weight_decay": [0.1]}
    with pytest.raises(UserError, match=r"sweep member 1 \(--optimizer sgd, --weight-decay 0.1\): weight_decay"):
        sweep.grid_members(GPTConfig(), TrainConfig(), grid)


def test_member_evaluation_equals_evaluate_for_many_members():
    # 16 members of the default width, 256 documents: a vmapped one-hot NLL gave member i member i % 8's loss
    rng = np.random.default_rng(0)
    docs = ["".join(rng.choice(list("abcdefgh"), rng.integers(2, 7))) for _ in range(256)]
    tok = Tokenizer.from_docs(docs)
    config = GPTConfig(vocab_size=tok.vocab_size)
    tcs = [TrainConfig(seed=i % 8, init_std=0.08 * (1 + i // 8)) for i in range(16)]
    params = sweep.init_members(tcs, config, jnp.float32)
    tokens, n = encode_docs(docs, tok, config.block_size)
    got = sweep._evaluate_members(params, tokens, n, config, sweep.sweep_mesh(1), 256)
    want = [evaluate({k: v[i] for k, v in params.items()}, tokens, n, config) for i in range(16)]
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    assert abs(want[8] - want[0]) > 0.01


@pytest.mark.slow
def test_four_devices_equal_one_device(four_devices):
    from four_devices import DOCS as FOUR_DOCS
    from four_devices import SWEEP_GRID

    assert FOUR_DOCS == DOCS

    four = json.loads((four_devices / "sweep.json").read_text())
    tok = Tokenizer.from_docs(DOCS)
    members = sweep.grid_members(GPTConfig(vocab_size=tok.vocab_size), TrainConfig(batch_size=4), SWEEP_GRID)
    one = sweep.run_sweep(members, DOCS[:25], DOCS[25:], tok, mesh=sweep.sweep_mesh(1), chunk=6, progress=False)
    assert len(four["rows"]) == 3 and len({r["val_loss"] for r in four["rows"]}) == 3
    for a, b in zip(four["rows"], one.rows, strict=True):
        assert a["lr"] == b["lr"] and abs(a["val_loss"] - b["val_loss"]) < 1e-5
    for a, b in zip(four["losses"], one.losses, strict=True):
        np.testing.assert_allclose(np.asarray(a, np.float32), b, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_program_gives_each_cpu_core_a_device(tmp_path, tiny_corpus):
    """Run as a program, sweep spreads members over one CPU device per core; train --devices N splits the batch
    over N CPU devices (with JAX's one CPU device, --devices 3 was an error)."""
    env = {"XLA_FLAGS": "", "JAX_PLATFORMS": "cpu"}
    common = ["--data", str(tiny_corpus), "--val-size", "10", "--steps", "3", "--no-progress"]
    proc = run_cli("sweep", "--out", str(tmp_path / "sw"), *common, "--seeds", "2", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"sweep: 2 members, 1 shape group(s), {usable_cores()} device(s)" in proc.stdout
    proc = run_cli("train", "--out", str(tmp_path / "dp"), *common[:-1], "--batch-size", "3", "--devices", "3", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "dp" / "params.safetensors").exists()


def test_grid_keeps_the_base_recipe_and_none_means_each_default() -> None:
    """A grid without ``lr`` once trained at 0.01 whatever the base config's lr."""
    base = GPTConfig()
    members = sweep.grid_members(base, TrainConfig(lr=0.05, steps=7), {"seed": [0, 1]})
    assert [(m.train.lr, m.train.steps, m.train.seed) for m in members] == [(0.05, 7, 0), (0.05, 7, 1)]
    members = sweep.grid_members(base, TrainConfig(), {"optimizer": ["adam", "sgd"], "lr": [None]})
    assert [m.train.lr for m in members] == [0.01, 0.3]
    early = sweep.grid_members(base, TrainConfig(init_zero_out=True), {"init_std": [None, 0.05]})
    assert [m.train.init_std for m in early] == [0.02, 0.05]
