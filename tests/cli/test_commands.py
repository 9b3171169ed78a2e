"""Flags to configs: the guide's steps with flags on top, the data flags, and flags the model does not use."""

from __future__ import annotations

import pytest

from microgpt_jax.cli.commands import COMMANDS, data_config, train_configs
from microgpt_jax.cli.parser import build_parser
from microgpt_jax.config import DataConfig, GPTConfig, RunConfig, SampleConfig, TrainConfig
from microgpt_jax.errors import UserError


def given(*argv: str) -> dict:
    return {k: v for k, v in vars(build_parser().parse_args(["train", "--out", "r", *argv])).items() if k != "command"}


def test_no_flags_are_the_configs_defaults() -> None:
    assert train_configs(given()) == (GPTConfig(), TrainConfig(), DataConfig(), RunConfig(), SampleConfig())


def test_flags_land_in_their_configs() -> None:
    model, train, data, run, sample = train_configs(
        given("--n-embd", "32", "--lr", "0.1", "--optimizer", "sgd", "--val-size", "5", "--eval-every", "7",
              "--num-samples", "4", "--init-variant", "early", "--data", "d.txt", "--tokenizer", "word")
    )  # fmt: skip
    assert model == GPTConfig(n_embd=32)
    assert train == TrainConfig(lr=0.1, optimizer="sgd", init_zero_out=True)
    assert data == DataConfig(path="d.txt", val_size=5, tokenizer="word")
    assert run == RunConfig(eval_every=7) and sample == SampleConfig(num_samples=4)


def test_data_config_of_the_order_flags() -> None:
    assert data_config({"no_shuffle": True}).shuffle_seed is None
    assert data_config({"shuffle_seed": 7, "lowercase": True}) == DataConfig(shuffle_seed=7, lowercase=True)
    assert data_config({}) == DataConfig()


def test_fine_tuning_without_model_flags_keeps_the_init_models_architecture() -> None:
    model, *_ = train_configs({**given("--steps", "3"), "init": "pre"})
    assert model is None
    model, *_ = train_configs({**given("--n-embd", "8"), "init": "pre"})
    assert model == GPTConfig(n_embd=8)


def test_a_step_is_its_configs_with_the_flags_on_top() -> None:
    model, train, *_ = train_configs(given("--step", "1"))
    assert model.model == "mlp"
    model, train, *_ = train_configs(given("--step", "1", "--lr", "0.5"))
    assert model.model == "mlp" and train.lr == 0.5


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--model", "mlp", "--n-head", "2"], "--model mlp does not use --n-head: drop it"),
        (["--model", "mlp", "--n-head", "2", "--dropout", "0.1"], "does not use --n-head, --dropout: drop them"),
        (["--model", "bigram", "--steps", "5"], "drop --steps (or count one document per step: --count online)"),
        (["--model", "bigram", "--init-variant", "early"], "is built by counting (all at once)"),
    ],
)
def test_a_flag_the_model_does_not_use_is_refused(argv: list[str], says: str) -> None:
    with pytest.raises(UserError) as e:
        train_configs(given(*argv))
    assert says in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_every_subcommand_has_its_command() -> None:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    assert sorted(COMMANDS) == sorted(sub.choices)
