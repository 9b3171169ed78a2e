"""A sweep's directory: results.csv/json, the plot, members' parameters, the best member's command."""

from __future__ import annotations

import csv
import json

import pytest

from microgpt_jax.cli import parser
from microgpt_jax.cli.program import main
from microgpt_jax.config import TrainConfig
from microgpt_jax.training import sweep


@pytest.mark.slow
def test_cli_sweep_two_shape_groups_writes_results(tmp_path, tiny_corpus, capsys):
    out = tmp_path / "sw"
    before = sweep.trace_count()
    argv = ["sweep", "--out", str(out), "--data", str(tiny_corpus), "--val-size", "10", "--steps", "5",
            "--lr", "0.01,0.05", "--seeds", "1", "--optimizer", "sgd", "--n-embd", "8,12", "--n-head", "2",
            "--block-size", "8", "--chunk", "5", "--save-params", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert sweep.trace_count() - before == 2  # two widths: one compile each, not one per member
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 4
    for col in ("lr", "seed", "init_std", "b1", "b2", "optimizer", "batch_size", "steps", "n_embd", "n_layer",
                "n_head", "block_size", "train_loss", "val_loss", "diverged", "seconds"):  # fmt: skip
        assert col in rows[0]
    assert {r["n_embd"] for r in rows} == {"8", "12"} and {r["seed"] for r in rows} == {"0"}
    data = json.loads((out / "results.json").read_text())
    assert [r["id"] for r in data] == list(range(4))
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert len(list((out / "members").glob("*/params.safetensors"))) == 4
    printed = capsys.readouterr().out
    best = min(data, key=lambda r: r["val_loss"])
    assert f"best: member {best['id']}" in printed
    command = next(line.strip() for line in printed.splitlines() if line.strip().startswith("microgpt-jax train"))
    assert f"--lr {best['lr']!r}" in command and f"--seed {best['seed']}" in command
    assert f"--n-embd {best['n_embd']}" in command and "--steps 5" in command

    # the printed command parses as train's flags naming exactly this member (test 1 shows train equals it)
    args = parser.build_parser().parse_args(command.split()[1:])
    assert args.command == "train" and args.path == str(tiny_corpus) and args.val_size == 10
    for key in sweep.GRID_KEYS:  # a recipe option at its default is left out of the command
        default = getattr(TrainConfig(), key) if key in sweep.RECIPE_KEYS else None
        assert getattr(args, key, default) == best[key], key


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--n-embd", "10", "--n-head", "4"], "divisible"),
        (["--lr", "0.1,,0.2"], "comma-separated"),
        (["--optimizer", "adam,lion"], "lion"),
        (["--b1", "0.9,1.5"], "b1"),
    ],
)
def test_cli_sweep_bad_flags_are_one_line_errors(tmp_path, tiny_corpus, capsys, flags, message):
    try:
        code = main(["sweep", "--out", str(tmp_path / "x"), "--data", str(tiny_corpus), "--val-size", "10", *flags])
    except SystemExit as e:  # argparse's errors
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x" / "results.csv").exists()
