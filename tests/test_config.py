"""Configs: the one home of every default, checked values, JSON round trips, and the layering of the package."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from microgpt_jax.config import (
    DEFAULT_LR,
    GUIDE_STEPS,
    DataConfig,
    GPTConfig,
    GradCheckConfig,
    RunConfig,
    SampleConfig,
    TrainConfig,
    fields_help,
    step_configs,
)
from microgpt_jax.errors import UserError

PACKAGE = Path(__file__).resolve().parents[1] / "microgpt_jax"


def test_lr_and_init_std_default_per_optimizer_and_init() -> None:
    assert TrainConfig().lr == 0.01 and TrainConfig(optimizer="sgd").lr == DEFAULT_LR["sgd"]
    assert TrainConfig(optimizer="sgd", lr=0.5).lr == 0.5
    assert TrainConfig().init_std == 0.08 and TrainConfig(init_zero_out=True).init_std == 0.02
    assert TrainConfig.from_dict(TrainConfig(optimizer="sgd").to_dict()) == TrainConfig(optimizer="sgd")


@pytest.mark.parametrize("cls", [GPTConfig, TrainConfig, DataConfig, RunConfig, SampleConfig, GradCheckConfig])
def test_every_field_has_help_and_round_trips(cls: type) -> None:
    assert all(text for _, text in fields_help(cls).values())
    assert cls.from_dict(cls().to_dict()) == cls()
    with pytest.raises(UserError, match="unknown"):
        cls.from_dict({**cls().to_dict(), "bogus": 1})


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: TrainConfig(b1=1.0), "b1"),
        (lambda: TrainConfig(optimizer="sgd", weight_decay=0.1), "AdamW's"),
        (lambda: TrainConfig(weight_decay=-1.0), "weight_decay"),
        (lambda: TrainConfig(dropout=1.0), "dropout"),
        (lambda: TrainConfig(schedule="step"), "schedule"),
        (lambda: TrainConfig(steps=10, warmup=10), "shorter than the run"),
        (lambda: TrainConfig(lr=float("nan")), "lr"),
        (lambda: TrainConfig(seed=1.5), "seed"),
        (lambda: TrainConfig(steps=True), "steps"),
        (lambda: GPTConfig(n_embd=10, n_head=4), "divisible"),
        (lambda: DataConfig(val_size=-1), "val_size"),
        (lambda: RunConfig(devices=0), "devices"),
        (lambda: SampleConfig(temperature=0.0), "temperature"),
        (lambda: TrainConfig.from_dict({"lr": "0.1"}), "lr"),  # a hand-edited config.json
        (lambda: TrainConfig(grad="numerical"), "unknown `grad` 'numerical': use one of autodiff, analytic"),
        (lambda: TrainConfig(count="some"), "unknown `count` 'some': use one of all, online"),
        (lambda: GradCheckConfig(doc=-1), "doc"),
        (lambda: step_configs(6), "unknown step 6: the guide's steps are 0, 1, 2, 3, 4, 5"),
        (lambda: step_configs(True), "unknown step True"),
    ],
)
def test_bad_values_are_user_errors(make, match: str) -> None:
    with pytest.raises(UserError, match=match):
        make()


def test_the_guides_steps_are_config_fields() -> None:
    """Every field a step sets is a field of its config; Step 5 is the defaults; given fields win."""
    for step, fields in GUIDE_STEPS.items():
        assert set(fields) <= {"model", "train", "sample"}, step
        for part, cls in (("model", GPTConfig), ("train", TrainConfig), ("sample", SampleConfig)):
            assert set(fields.get(part, {})) <= set(fields_help(cls)), (step, part)
    assert step_configs(5) == step_configs(None) == (GPTConfig(), TrainConfig(), SampleConfig())
    model, train, _ = step_configs(3, {"n_embd": 8}, {"lr": 0.2})
    assert (model.n_head, model.n_embd, train.optimizer, train.lr) == (1, 8, "sgd", 0.2)
    assert GUIDE_STEPS[1]["train"]["grad"] == "analytic" and GUIDE_STEPS[0]["train"]["count"] == "online"


def test_configs_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainConfig().lr = 1.0  # type: ignore[misc]
