"""experiments/steps.py in --quick mode: every row runs, and steps.md holds only the script's own figures."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

STEPS_PY = Path(__file__).resolve().parents[1] / "experiments" / "steps.py"


@pytest.fixture(scope="module")
def steps():
    spec = importlib.util.spec_from_file_location("experiments_steps", STEPS_PY)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_quick_run_writes_the_table_plots_and_json(steps, tiny_corpus, tmp_path) -> None:
    out = tmp_path / "results"
    argv = ["--quick", "--data", str(tiny_corpus), "--val-size", "5", "--out", str(out), "--num-samples", "2"]
    assert steps.main(argv) == 0

    doc = json.loads((out / "steps.json").read_text())
    runs = doc["runs"]
    assert [r["label"] for r in runs] == [r.label for r in steps.RUNS]
    assert [r["step"] for r in runs if r["guide"]] == [0, 1, 2, 3, 4, 5]  # a row per step of the guide
    assert {r["model"] for r in runs} == {"bigram", "mlp", "gpt"}
    assert all(r["steps"] == (0 if r["label"] == "Step 0 counted at once" else 5) for r in runs)
    # the extra figures: the gradient check on the first training name, Step 1 against Step 2 in float64
    check = doc["gradient_check"]
    assert check["line"].startswith("gradient check | loss_n ") and check["max_diff"] <= 1e-4
    assert check["max_diff_jax_grad"] <= 1e-12 and doc["step1_vs_step2_x64"] <= 1e-10
    md = (out / "steps.md").read_text()
    assert "`python experiments/steps.py --quick --val-size 5`" in md  # the command that regenerates it
    assert check["line"] in md
    rows = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith(("| row", "| ---"))]
    assert len(rows) == len(runs)
    for row, run in zip(rows, runs, strict=True):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[0] == run["label"] and cells[1] == run["model"]
        assert cells[2] == f"{run['params']:,}"
        assert float(cells[6]) == pytest.approx(run["val_nll"], abs=5e-5)  # the table is the json, rounded
        assert cells[7] == f"`{run['command']}`"
    for name in ("steps.png", "weights.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_commands_are_the_rows(steps) -> None:
    """Each row's command, parsed by the real CLI, builds the very configs the row trains."""
    from microgpt_jax.cli.commands import train_configs
    from microgpt_jax.cli.parser import build_parser

    commands = {r.label: r.command() for r in steps.RUNS}
    assert commands["Step 1 gradient descent"] == "microgpt-jax train --step 1 --out runs/step-1-gradient-descent"
    assert commands["Step 0 counted at once"].endswith("--step 0 --out runs/step-0-counted-at-once --count all")
    target = commands["Step 5 64x4 batched"]
    assert re.search(r"--step 5 .* --n-layer 4 --n-embd 64 --lr 0\.003 --steps 5000 --batch-size 32$", target)
    for run in steps.RUNS:
        args = vars(build_parser().parse_args([*run.command().split()[1:], "--num-samples", "20"]))
        assert args.pop("command") == "train" and args["step"] == run.step
        model, train, _, _, sample = train_configs(args)
        assert (model, train, sample) == run.configs(20), run.label


@pytest.mark.slow
def test_quick_mode_writes_no_results_unless_asked(steps, tiny_corpus, tmp_path, monkeypatch, capsys) -> None:
    """--quick once overwrote the tracked experiments/results/ files with quick-mode figures."""
    monkeypatch.setattr(steps, "RESULTS", tmp_path / "results")  # where a default would have written
    monkeypatch.setattr(steps, "RUNS", tuple(r for r in steps.RUNS if r.guide and r.step in (1, 2)))  # quicker
    monkeypatch.chdir(tmp_path)  # and the run directories, were they not in a temp dir
    assert steps.main(["--quick", "--data", str(tiny_corpus), "--val-size", "5", "--num-samples", "1"]) == 0
    assert "no results written" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.txt"]


def test_a_missing_corpus_is_one_line_and_status_2(tmp_path) -> None:
    """The script, run as a program, reports a bad --data as the CLI does: one line, exit 2, nothing written."""
    import subprocess

    out = tmp_path / "results"
    argv = [sys.executable, str(STEPS_PY), "--quick", "--data", str(tmp_path / "missing.txt"), "--out", str(out)]
    env = {"PYTHONPATH": str(STEPS_PY.parents[1]), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: data file") and len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_results_already_there_are_kept_unless_overwrite_is_given(steps, tiny_corpus, tmp_path) -> None:
    from microgpt_jax.errors import UserError

    out = tmp_path / "results"
    out.mkdir()
    (out / "steps.md").write_text("committed figures")
    argv = ["--quick", "--data", str(tiny_corpus), "--val-size", "5", "--out", str(out)]
    with pytest.raises(UserError, match=r"already holds steps\.md: pass --overwrite"):
        steps.main(argv)
    assert (out / "steps.md").read_text() == "committed figures" and sorted(p.name for p in out.iterdir()) == [
        "steps.md"
    ]
