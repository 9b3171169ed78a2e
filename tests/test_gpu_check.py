"""The GPU check (experiments/gpu_check.py) runs its determinism and resume part on any device and writes JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_bits_part_on_this_device(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, str(ROOT / "experiments" / "gpu_check.py"), "--out", str(tmp_path), "--quick",
           "--skip", "tests,speed,sweeps"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    bits = result["bits"]
    assert bits["determinism_bit_identical"] and bits["resume_bit_identical"], bits
    assert bits["resume_stopped_early"]  # the resume really resumed a stopped run
    assert "tests" not in result and result["devices"]


def test_gpu_check_sh_says_how_to_call_it() -> None:
    proc = subprocess.run(["bash", str(ROOT / "experiments" / "gpu_check.sh")], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "usage" in proc.stderr
