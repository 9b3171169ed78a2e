"""A sweep's directory: results.csv/json, the plot, members' parameters, the best member's command."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import pytest

from microgpt_jax.cli import parser
from microgpt_jax.cli.commands import train_configs
from microgpt_jax.cli.parser import build_parser
from microgpt_jax.cli.program import main
from microgpt_jax.config import DataConfig, GPTConfig, TrainConfig
from microgpt_jax.runs.sweep_dir import best_row, plot_sweep, train_command, write_results
from microgpt_jax.training import sweep
from microgpt_jax.training.sweep import grid_members


def _programs() -> int:
    """How many sweep training programs were built (one per shape group, recipe, batch and chunk length)."""
    return sweep._group_program.cache_info().misses


@pytest.mark.slow
def test_cli_sweep_two_shape_groups_writes_results(tmp_path, tiny_corpus, capsys):
    out = tmp_path / "sw"
    before = _programs()
    argv = ["sweep", "--out", str(out), "--data", str(tiny_corpus), "--val-size", "10", "--steps", "5",
            "--lr", "0.01,0.05", "--seeds", "1", "--optimizer", "sgd", "--n-embd", "8,12", "--n-head", "2",
            "--block-size", "8", "--chunk", "5", "--save-params", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert _programs() - before == 2  # two widths: one program each, not one per member
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


def row(i: int, val: float, train: float = 1.0, diverged: bool = False) -> dict:
    return {"id": i, "lr": 0.01 * (i + 1), "seed": 0, "train_loss": train, "val_loss": val, "diverged": diverged}


def test_the_best_row_is_the_lowest_held_out_loss_that_did_not_diverge() -> None:
    assert best_row([row(0, 2.0), row(1, 1.5, train=9.0), row(2, 1.0, diverged=True), row(3, 1.75)])["id"] == 1
    # without a held-out set (val_loss nan): the lowest train_loss
    assert best_row([row(0, math.nan, 2.0), row(1, math.nan, 1.0), row(2, math.nan, 3.0)])["id"] == 1
    assert best_row([row(0, math.nan, math.nan), row(1, math.nan, 2.5)])["id"] == 1
    assert best_row([row(0, 1.0, diverged=True)]) is None and best_row([]) is None


@pytest.mark.parametrize(
    "data",
    [
        DataConfig(),
        DataConfig(path="c.txt", val_size=3, shuffle_seed=None, tokenizer="word", lowercase=True),
        DataConfig(path="c.txt", val_size=0, shuffle_seed=7),
    ],
)
def test_the_train_command_parses_to_the_members_configs(data: DataConfig) -> None:
    grid = {"lr": [0.003, 1 / 3], "n_embd": [8], "n_head": [2], "weight_decay": [0.0, 0.1], "warmup": [2]}
    base = TrainConfig(steps=9, batch_size=2, x64=True, init_zero_out=True, init_std=0.02)
    for member in grid_members(GPTConfig(block_size=8), base, grid):
        command = train_command(member, data, out="runs/x")
        assert command.startswith("microgpt-jax train --out runs/x")
        args = build_parser().parse_args(command.split()[1:])
        model, train, parsed_data, _, _ = train_configs({k: v for k, v in vars(args).items() if k != "command"})
        assert train == member.train, command
        assert dataclasses.replace(model, vocab_size=member.config.vocab_size) == member.config, command
        assert parsed_data == data, command


def test_results_are_written_as_csv_and_json_that_read_back(tmp_path: Path) -> None:
    rows = [row(0, 2.0), row(1, math.nan, diverged=True), row(2, 1.25, train=math.inf)]
    write_results(tmp_path, rows)
    back = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert [list(r) for r in back] == [list(rows[0])] * 3  # the columns, in the rows' order
    assert [r["val_loss"] for r in back] == ["2.0", "nan", "1.25"] and back[1]["diverged"] == "True"
    data = json.loads((tmp_path / "results.json").read_text())  # strict JSON: no NaN or Infinity
    assert data[0] == rows[0] and data[1]["val_loss"] is None and data[2]["train_loss"] is None
    assert data[1]["diverged"] is True and data[2]["val_loss"] == 1.25
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv", "results.json"]
    empty = tmp_path / "empty"
    empty.mkdir()
    write_results(empty, [])
    assert list(empty.iterdir()) == []


def test_the_plot_is_a_png(tmp_path: Path) -> None:
    rows = [{**row(i, 2.0 - i / 10), "n_embd": n} for i, n in enumerate([8, 8, 16, 16])]
    rows[1]["val_loss"] = math.nan  # a diverged member: a gap, not an error
    plot_sweep(tmp_path / "sweep.png", rows, ["lr", "n_embd"])
    assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
