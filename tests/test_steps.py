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


def test_quick_run_writes_the_table_plots_and_json(steps, tiny_corpus, tmp_path) -> None:
    out = tmp_path / "results"
    argv = ["--quick", "--data", str(tiny_corpus), "--val-size", "5", "--out", str(out), "--num-samples", "2"]
    assert steps.main(argv) == 0

    runs = json.loads((out / "steps.json").read_text())["runs"]
    assert [r["label"] for r in runs] == [r.label for r in steps.RUNS]
    assert {r["model"] for r in runs} == {"bigram", "mlp", "gpt"}
    assert all(r["steps"] == (0 if r["model"] == "bigram" else 5) for r in runs)
    md = (out / "steps.md").read_text()
    assert "`python experiments/steps.py --quick --val-size 5`" in md  # the command that regenerates it
    rows = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith(("| model", "| ---"))]
    assert len(rows) == len(runs)
    for row, run in zip(rows, runs, strict=True):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[0] == run["label"]
        assert cells[1] == f"{run['params']:,}"
        assert float(cells[5]) == pytest.approx(run["val_nll"], abs=5e-5)  # the table is the json, rounded
        assert cells[6] == f"`{run['command']}`"
    for name in ("steps.png", "weights.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_commands_are_the_cli_recipes(steps) -> None:
    commands = {r.label: r.command() for r in steps.RUNS}
    assert commands["Step 1 MLP"].endswith("--model mlp --optimizer sgd --lr 1 --steps 1000")
    assert commands["Step 0 bigram"].endswith("--model bigram")
    target = commands["GPT 64x4 batched"]
    assert re.search(r"--n-layer 4 --n-embd 64 --optimizer adam --lr 0\.003 --steps 5000 --batch-size 32$", target)
    # every command parses with the real CLI parser
    from microgpt_jax.cli import build_parser

    for command in commands.values():
        args = build_parser().parse_args(command.split()[1:])
        assert args.command == "train"


def test_quick_mode_writes_no_results_unless_asked(steps, tiny_corpus, tmp_path, monkeypatch, capsys) -> None:
    """--quick once overwrote the tracked experiments/results/ files with quick-mode figures."""
    monkeypatch.setattr(steps, "RESULTS", tmp_path / "results")  # where a default would have written
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
