"""The fast paths keep every number: chunking a run changes nothing, and the benchmark runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from microgpt_jax.config import GPTConfig, TrainConfig
from microgpt_jax.model.init import init_params
from microgpt_jax.training.loop import train

ROOT = Path(__file__).resolve().parents[1]
CONFIG = GPTConfig(vocab_size=7, block_size=6)


def _data(n_docs: int = 13) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, CONFIG.vocab_size, size=(n_docs, CONFIG.block_size + 1)).astype(np.int32)
    n = rng.integers(1, CONFIG.block_size + 1, size=n_docs).astype(np.int32)
    return tokens, n


@pytest.mark.parametrize(
    "optimizer, batch_size",
    [
        ("adam", 1),
        ("sgd", 3),
        pytest.param("adam", 3, marks=pytest.mark.slow),
        pytest.param("sgd", 1, marks=pytest.mark.slow),
    ],
)
def test_chunked_equals_unchunked_bitwise(optimizer: str, batch_size: int) -> None:
    tokens, n = _data()
    tc = TrainConfig(optimizer=optimizer, lr=0.01 if optimizer == "adam" else 0.5, steps=30, batch_size=batch_size)
    params = init_params(jax.random.key(0), CONFIG)
    p_one, s_one, l_one = train(params, tokens, n, CONFIG, tc, chunk=tc.steps)
    p_many, s_many, l_many = train(params, tokens, n, CONFIG, tc, chunk=7)  # 7 does not divide 30: a skipped tail
    np.testing.assert_array_equal(l_one, l_many)
    assert len(l_many) == tc.steps and np.isfinite(l_many).all()
    for k in params:
        np.testing.assert_array_equal(p_one[k], p_many[k], err_msg=k)
    for a, b in zip(jax.tree.leaves(s_one), jax.tree.leaves(s_many), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_bench_quick_json() -> None:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.pop("MICROGPT_JAX_DATA", None)  # synthetic data: no corpus needed
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "bench.py"), "--quick", "--json", "--repeats", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout)
    keys = [
        "b1_steps_per_s",
        "b1_steps_per_s_default_chunk",
        "b1_compile_s",
        "naive_b1_steps_per_s",
        "batched_tokens_per_s",
        "naive_batched_tokens_per_s",
        "sample_names_per_s",
        "peak_rss_mib",
    ]
    # what the user waits for: whole processes of the default train, cold and warm, and --help
    keys += ["startup_train_cold_s", "startup_train_warm_s", "startup_help_s", "startup_warm_over_cold"]
    keys += ["startup_import_jax_s"]
    if res["torch"] is not None:  # the PyTorch peer, timed in the same run, and our figures as ratios to it
        keys += ["torch_b1_t1_eager", "torch_b1_t2_eager", "torch_b256_t1_eager", "vs_torch_b1", "vs_torch_b256"]
    else:
        assert "torch is not installed" in res["peer_note"]
    for key in keys:
        assert isinstance(res[key], float) and res[key] > 0, key
    assert res["startup_runs"] == 1 and res["startup_cache_files"] >= 2
