"""The flags: generated from the configs' fields, absent unless given, checked, never abbreviated, one-line errors."""

from __future__ import annotations

import argparse

import pytest

from microgpt_jax.cli.parser import (
    DATA_FLAGS,
    MODEL_FLAGS,
    RUN_FLAGS,
    SAMPLE_FLAGS,
    TRAIN_FLAGS,
    build_parser,
    flag_of,
    version,
)
from microgpt_jax.config import DataConfig, GPTConfig, RunConfig, SampleConfig, TrainConfig, fields_help


def parse(*argv: str) -> dict:
    return vars(build_parser().parse_args(list(argv)))


def refused(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(list(argv))
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    return err


def help_of(capsys, command: str) -> str:
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([command, "--help"])
    assert e.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines: compare with single spaces


def test_every_train_field_is_a_flag_with_the_configs_default(capsys) -> None:
    text = help_of(capsys, "train")
    for cls, names in ((GPTConfig, MODEL_FLAGS), (TrainConfig, TRAIN_FLAGS), (RunConfig, RUN_FLAGS),
                       (SampleConfig, SAMPLE_FLAGS), (DataConfig, DATA_FLAGS)):  # fmt: skip
        for name, (default, _) in fields_help(cls).items():
            if name in names:
                assert flag_of(name) in text, name
                if default not in (None, False):
                    assert f"(default: {default})" in text, name


def test_a_flag_not_given_is_absent() -> None:
    assert parse("train", "--out", "r") == {"command": "train", "out": "r"}
    given = parse("train", "--out", "r", "--lr", "0.1", "--no-shuffle", "--x64", "--data", "d.txt", "--top-k", "0")
    assert given == {"command": "train", "out": "r", "lr": 0.1, "no_shuffle": True, "x64": True, "path": "d.txt",
                     "top_k": 0}  # fmt: skip
    assert flag_of("path") == "--data" and flag_of("batch_size") == "--batch-size"


@pytest.mark.parametrize(
    "argv, says",
    [
        (["train", "--out", "r", "--ste", "10"], "unrecognized arguments: --ste"),
        (["train", "--out", "r", "--lr", "nan"], "expected a finite number, got 'nan'"),
        (["train", "--out", "r", "--steps", "1.5"], "expected a whole number, got '1.5'"),
        (["train", "--out", "r", "--optimizer", "lion"], "invalid choice 'lion': use one of"),
        (["train", "--out", "r", "--step", "9"], "invalid choice '9': the guide's steps are 0, 1, 2, 3, 4, 5"),
        (["train", "--out", "r", "--resume", "r"], "not allowed with argument"),
        (["train", "--out", "r", "--no-shuffle", "--shuffle-seed", "1"], "not allowed with argument"),
        (["sample"], "one of the arguments --run --params is required"),
        (["sweep", "--out", "s", "--lr", "0.1,,0.2"], "expected a comma-separated list, got '0.1,,0.2'"),
        (["sweep", "--out", "s", "--seed", "1", "--seeds", "2"], "not allowed with argument"),
        (["fly"], "invalid choice: 'fly'"),
    ],
)
def test_bad_flags_are_one_line(capsys, argv: list[str], says: str) -> None:
    err = refused(capsys, *argv)
    assert says in err and err.rstrip().endswith("--help)"), err


@pytest.mark.parametrize(
    "flags, says",
    [
        (["--lr", "-1"], "error: --lr must be a finite number > 0, got -1.0"),
        (["--block-size", "1"], "error: --block-size must be a whole number >= 2, got 1"),
        (["--b1", "1"], "error: --b1 must be in [0, 1), got 1.0"),
        (["--top-p", "1.5"], "error: --top-p must be a number > 0 and <= 1 (1 = off), got 1.5"),
    ],
)
def test_a_value_out_of_range_is_the_configs_one_line(tmp_path, capsys, flags: list[str], says: str) -> None:
    """The flags' types check syntax; the ranges are the configs' (one validator each), named as flags."""
    from microgpt_jax.cli.program import main

    assert main(["train", "--out", str(tmp_path / "r"), *flags]) == 2
    assert capsys.readouterr().err.strip() == says
    assert not (tmp_path / "r").exists()


def test_sweep_flags_are_lists() -> None:
    given = parse("sweep", "--out", "s", "--lr", "0.1, 0.2", "--n-embd", "8,16", "--optimizer", "adam,sgd")
    assert given["lr"] == [0.1, 0.2] and given["n_embd"] == [8, 16] and given["optimizer"] == ["adam", "sgd"]
    assert parse("sweep", "--out", "s", "--seeds", "3")["seeds"] == 3


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out == f"microgpt-jax {version()}\n"
    assert version() != "unknown (not installed)"  # the suite runs on the installed package


def test_every_subcommand_parses() -> None:
    assert isinstance(build_parser(), argparse.ArgumentParser)
    for argv in (["sample", "--run", "r"], ["export", "--run", "r", "--out", "m.json"], ["gradcheck"],
                 ["sweep", "--out", "s"], ["train", "--resume", "r"]):  # fmt: skip
        assert parse(*argv)["command"] == argv[0]
