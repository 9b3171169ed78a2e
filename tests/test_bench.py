"""The benchmark (experiments/bench.py) runs and reports every figure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_quick_json() -> None:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.pop("MICROGPT_JAX_DATA", None)  # synthetic data: no corpus needed
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "bench.py"), "--quick", "--json", "--repeats", "1"],
        capture_output=True,
        text=True,
        timeout=400,
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
    keys += ["dropout_cost"]
    for key in keys:
        assert isinstance(res[key], float) and res[key] > 0, key
    # the three grids: ours beside PyTorch's best way when torch is there
    assert set(res["sweeps"]) == {"1x16x4", "4x64x4", "4x128x4"}
    for grid in res["sweeps"].values():
        assert grid["ours_member_steps_per_s"] > 0 and grid["one_model_steps_per_s"] > 0
        if res["torch"] is not None:
            assert grid["torch_best_member_steps_per_s"] > 0 and grid["final_losses_agree"], grid
    assert res["startup_runs"] == 1 and res["startup_cache_files"] >= 2
