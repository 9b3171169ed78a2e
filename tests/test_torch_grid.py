"""experiments/torch_grid.py, the PyTorch grid: every way trains every member to the same losses as the peer's train.

The torch tests are skipped when torch is not installed; the no-torch test always runs (it hides torch). The
torch.compile way is marked slow: a cold compile takes about half a minute on two cores."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
GRID_PY = ROOT / "experiments" / "torch_grid.py"
TINY = {"n_layer": 1, "n_embd": 16, "n_head": 4, "block_size": 16, "batch_size": 2, "steps": 20}
LRS = np.array([0.003, 0.01, 0.03])


@pytest.fixture(scope="module")
def grid() -> ModuleType:
    """The grid module, imported by its own name (spawned workers import it so), with torch (else skipped)."""
    pytest.importorskip("torch")
    sys.path.insert(0, str(GRID_PY.parent))
    return importlib.import_module("torch_grid")


@pytest.fixture(scope="module")
def data(grid: ModuleType) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Three members' initial weights (seeds 0-2) and 40 synthetic names."""
    inputs, targets, vocab = grid.encode(grid.synthetic_docs(40), TINY["block_size"])
    init = grid.make_init([0, 1, 2], vocab, TINY["n_layer"], TINY["n_embd"], TINY["n_head"], TINY["block_size"])
    return init, inputs, targets


@pytest.fixture(scope="module")
def loop_losses(grid: ModuleType, data: Any) -> list[float]:
    """The loop way's final losses, which every other way must reproduce."""
    return grid.run_grid(*data[:1], LRS, *data[1:], **TINY, way="loop")["final_losses"]


def peer_final_loss(grid: ModuleType, init: dict[str, np.ndarray], lr: float, inputs: Any, targets: Any) -> float:
    """Member 0's last loss trained by torch_peer.train itself."""
    torch = grid.torch
    model = grid.torch_peer.GPT(init["wte"].shape[1], 2, 16, 4, 16)
    model.load_state_dict({k: torch.from_numpy(v[0]) for k, v in init.items()})
    losses = grid.torch_peer.train(model, torch.from_numpy(inputs), torch.from_numpy(targets), 30, 3, lr=lr)
    return losses[-1]


@pytest.mark.parametrize("way", ["loop", "vmap"])
def test_one_member_is_torch_peer_train(grid: ModuleType, data: Any, way: str) -> None:
    vocab, inputs, targets = data[0]["wte"].shape[1], *data[1:]
    init = grid.make_init([7], vocab, 2, 16, 4, 16)  # two layers, batch 3, 30 steps
    expected = peer_final_loss(grid, init, 0.02, inputs, targets)
    dims = {**TINY, "n_layer": 2, "batch_size": 3, "steps": 30}
    res = grid.run_grid(init, np.array([0.02]), inputs, targets, **dims, way=way, repeats=2)
    assert res["way"] == way and res["threads"] == 1 and res["member_steps_per_s"] > 0
    assert res["final_losses"] == pytest.approx([expected], rel=1e-5)


@pytest.mark.parametrize(
    ("way", "threads"),
    [("loop", 2), ("vmap", 1), ("vmap", 2), ("processes", 2), pytest.param("vmap_compiled", 1, marks=pytest.mark.slow)],
)
def test_every_way_gives_the_loop_losses(
    grid: ModuleType, data: Any, loop_losses: list[float], way: str, threads: int
) -> None:
    torch = grid.torch
    saved = torch.get_num_threads()
    res = grid.run_grid(*data[:1], LRS, *data[1:], **TINY, way=way, threads=threads)
    assert torch.get_num_threads() == saved
    assert res["way"] == way and res["threads"] == threads and res["member_steps_per_s"] > 0
    assert len(set(loop_losses)) == 3  # the members differ
    assert res["final_losses"] == pytest.approx(loop_losses, rel=1e-5)


def test_processes_way_with_more_processes_than_members(grid: ModuleType, data: Any) -> None:
    init, inputs, targets = data
    one = {k: v[1:2] for k, v in init.items()}
    res = grid.run_grid(one, LRS[1:2], inputs, targets, **{**TINY, "steps": 5}, way="processes", threads=2)
    expected = grid.run_grid(one, LRS[1:2], inputs, targets, **{**TINY, "steps": 5}, way="loop")
    assert res["final_losses"] == expected["final_losses"]


def test_bad_arguments(grid: ModuleType, data: Any) -> None:
    init, inputs, targets = data
    with pytest.raises(ValueError, match="way must be one of"):
        grid.run_grid(init, LRS, inputs, targets, **TINY, way="jit")
    with pytest.raises(ValueError, match="init must hold 2 members"):
        grid.run_grid(init, LRS[:2], inputs, targets, **TINY, way="loop")
    with pytest.raises(ValueError, match="init must hold"):
        grid.run_grid(init, LRS, inputs, targets, **{**TINY, "n_embd": 32, "n_head": 4}, way="loop")
    with pytest.raises(ValueError, match="inputs and targets"):
        grid.run_grid(init, LRS, inputs[:, :8], targets[:, :8], **TINY, way="loop")
    with pytest.raises(ValueError, match=">= 1"):
        grid.run_grid(init, LRS, inputs, targets, **{**TINY, "steps": 0}, way="loop")


def test_best_way(grid: ModuleType) -> None:
    results = [{"way": "loop", "member_steps_per_s": 5.0}, {"way": "vmap", "member_steps_per_s": 9.0}]
    assert grid.best_way(results)["way"] == "vmap"
    with pytest.raises(ValueError):
        grid.best_way([])


def test_without_torch_every_entry_point_says_so_in_one_line() -> None:
    code = f"""
import sys, runpy
sys.modules["torch"] = None
grid = runpy.run_path({str(GRID_PY)!r})
for call in (lambda: grid["run_grid"]({{}}, [], None, None, n_layer=1, n_embd=16, n_head=4, block_size=16,
                                       batch_size=1, steps=1, way="loop"),
             lambda: grid["make_init"]([0], 27, 1, 16, 4, 16)):
    try:
        call()
    except grid["TorchUnavailableError"] as e:
        assert "\\n" not in str(e) and "torch" in str(e), e
    else:
        raise AssertionError("no TorchUnavailableError")
sys.argv = ["torch_grid.py"]
runpy.run_path({str(GRID_PY)!r}, run_name="__main__")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith("torch_grid: torch is not installed")
