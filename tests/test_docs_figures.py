"""The figures the README and docs/ quote are those the experiments wrote (experiments/results/*.json)."""

from __future__ import annotations

import json
import re

from conftest import ROOT

RESULTS = ROOT / "experiments" / "results"


def _steps() -> dict[str, dict]:
    return {run["label"]: run for run in json.loads((RESULTS / "steps.json").read_text())["runs"]}


def test_the_guide_table_is_steps_json() -> None:
    runs = _steps()
    rows = re.findall(
        r"^\| (Step [^|]+?) \|.*\| ([0-9.]+) \| `(microgpt-jax [^`]+)` \|$",
        (ROOT / "docs" / "guide.md").read_text(),
        re.M,
    )
    assert len(rows) == len(runs)
    for label, nll, command in rows:
        assert f"{runs[label]['val_nll']:.4f}" == nll, label
        assert runs[label]["command"] == command, label


def test_the_readme_quotes_the_default_runs_held_out_loss() -> None:
    runs = _steps()
    readme = (ROOT / "README.md").read_text()
    assert f"`val_loss: {runs['Step 5 Adam']['val_nll']:.4f}`" in readme


def test_the_guides_prose_quotes_the_table() -> None:
    runs = _steps()
    guide = (ROOT / "docs" / "guide.md").read_text()
    for label in ("Step 5 batched", "Step 5 64x4 batched", "Step 0 counting", "Step 2 batched"):
        assert f"{runs[label]['val_nll']:.3f}" in guide, label


def test_the_best_names_figures_are_best_names_json() -> None:
    best = json.loads((RESULTS / "best_names.json").read_text())
    round1 = json.loads((RESULTS / "best_names_round1.json").read_text())
    sweeps = (ROOT / "docs" / "sweeps.md").read_text()
    command = best["command"].replace("microgpt-jax ", "", 1)
    assert f"microgpt-jax {command}" in sweeps  # the winner's command, as the search recorded it
    assert f"**{best['val_loss']:.4f}**" in sweeps and f"| {round1['test_loss']:.4f} |" in sweeps
    assert best["train_seconds"] <= 600  # the cap, on the machine that timed it
    perf = (ROOT / "docs" / "performance.md").read_text()
    assert f"{best['val_loss']:.3f} after {best['train_seconds'] / 60:.1f}" in perf.replace("\n", " ")


def test_the_cost_model_and_grid_tables_are_bench_json() -> None:
    bench = json.loads((RESULTS / "bench.json").read_text())
    perf = (ROOT / "docs" / "performance.md").read_text()
    for name, grid in bench["sweeps"].items():
        row = next(line for line in perf.splitlines() if line.startswith(f"| {name} |"))
        assert f"{grid['ours_member_steps_per_s']:,.0f}" in row, name
    assert "| train, batch 1 (microgpt) | " in perf
