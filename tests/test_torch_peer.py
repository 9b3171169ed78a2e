"""experiments/torch_peer.py, the PyTorch peer: exact to the original in float64, and a clean message without torch.

The torch tests are skipped when torch is not installed; the no-torch test always runs (it hides torch)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
PEER_PY = ROOT / "experiments" / "torch_peer.py"
REF_DIR = ROOT / "tests" / "data" / "reference"


@pytest.fixture(scope="module")
def peer() -> ModuleType:
    """The peer module, with torch (skipped without it)."""
    pytest.importorskip("torch")
    spec = importlib.util.spec_from_file_location("experiments_torch_peer", PEER_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_float64_reference_trace(peer: ModuleType) -> None:
    # 200 of the 1000 steps (the schedule still spans 1000): a prefix of the original's trace, in a few seconds
    res = peer.reference_check(REF_DIR, steps=200)
    assert res["steps"] == 200
    assert res["losses"] < 1e-10


def test_state_dict_names_and_shapes(peer: ModuleType) -> None:
    model = peer.GPT(27, n_layer=2)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = {"wte": (27, 16), "wpe": (16, 16), "lm_head": (27, 16)}
    for i in range(2):
        expected.update({f"layer{i}.attn_w{n}": (16, 16) for n in "qkvo"})
        expected.update({f"layer{i}.mlp_fc1": (64, 16), f"layer{i}.mlp_fc2": (16, 64)})
    assert shapes == expected


def test_bench_eager_runs(peer: ModuleType) -> None:
    docs = peer.synthetic_docs(50)
    assert peer.bench(1, threads=1, compile=False, steps=3, repeats=1, docs=docs) > 0
    assert peer.bench(4, threads=1, compile=False, steps=2, repeats=1, docs=docs) > 0


def test_without_torch_every_entry_point_says_so_in_one_line() -> None:
    # sys.modules["torch"] = None makes `import torch` fail, as on a machine without it
    code = f"""
import sys, runpy
sys.modules["torch"] = None
peer = runpy.run_path({str(PEER_PY)!r})
for call in (lambda: peer["reference_check"](), lambda: peer["bench"](1)):
    try:
        call()
    except peer["TorchUnavailableError"] as e:
        assert "\\n" not in str(e) and "torch" in str(e), e
    else:
        raise AssertionError("no TorchUnavailableError")
sys.argv = ["torch_peer.py"]
runpy.run_path({str(PEER_PY)!r}, run_name="__main__")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("torch_peer: torch is not installed")
