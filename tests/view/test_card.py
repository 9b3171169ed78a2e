"""view/card.py: the reproduce command parses back to the run's configs; config differences; the run card."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

import numpy as np
import pytest

from microgpt_jax.cli.commands import train_configs
from microgpt_jax.cli.parser import build_parser
from microgpt_jax.config import DataConfig, GPTConfig, RunConfig, SampleConfig, TrainConfig
from microgpt_jax.corpus.tokenizer import Tokenizer
from microgpt_jax.runs.spec import InitSource, RunSpec
from microgpt_jax.view.card import config_differences, differences_table, run_card, train_command
from microgpt_jax.view.svg import esc


def make_spec(**changes) -> RunSpec:
    spec = RunSpec(
        GPTConfig(vocab_size=4, n_embd=8, n_head=2, n_layer=2, block_size=4),
        TrainConfig(steps=10, lr=0.02, batch_size=3, weight_decay=0.1, x64=True, seed=7),
        DataConfig(path="/data/x.txt", val_size=2, tokenizer="char", shuffle_seed=5),
        RunConfig(eval_every=5),
        SampleConfig(num_samples=3, temperature=0.7),
        Tokenizer.from_docs(["abc", "cab"]),
        "0" * 64,
    )
    return dataclasses.replace(spec, **changes)


def parse_back(command: str) -> tuple:
    words = shlex.split(command)
    assert words[:2] == ["microgpt-jax", "train"]
    args = build_parser().parse_args(words[1:])
    return train_configs({k: v for k, v in vars(args).items() if k != "command"})


@pytest.mark.parametrize(
    "spec",
    [
        make_spec(),
        make_spec(data=DataConfig(path="/d/y.txt", val_size=0, shuffle_seed=None, lowercase=True)),
        make_spec(
            step=5,
            model=GPTConfig(vocab_size=4, n_head=4, n_layer=1, block_size=16),
            train=TrainConfig(optimizer="adam", lr=0.01, b1=0.85, b2=0.99, steps=1000, init_zero_out=True),
        ),
        make_spec(model=GPTConfig(vocab_size=4, n_embd=8, model="mlp"), train=TrainConfig(optimizer="sgd", lr=1 / 3)),
    ],
)
def test_train_command_parses_back_to_the_specs_configs(spec: RunSpec) -> None:
    command = train_command(spec, "runs/again")
    assert command.startswith("microgpt-jax train --out runs/again")
    assert ("--step 5" in command) == (spec.step == 5)
    model, train, data, run, sample = parse_back(command)
    assert dataclasses.replace(model, vocab_size=spec.model.vocab_size) == spec.model, command
    assert train == spec.train, command
    assert run == spec.run and sample == spec.sample, command
    for name in ("path", "val_size", "shuffle_seed", "lowercase"):
        assert getattr(data, name) == getattr(spec.data, name), (name, command)


def test_train_command_of_the_defaults_is_short_and_names_its_init() -> None:
    spec = make_spec(
        model=GPTConfig(vocab_size=4),
        train=TrainConfig(),
        data=DataConfig(path="/d.txt", tokenizer="char"),
        run=RunConfig(),
        sample=SampleConfig(),
    )
    assert train_command(spec, "o") == "microgpt-jax train --out o --data /d.txt"
    init = InitSource("/runs/pre/params.safetensors", "1" * 64, "/runs/pre")
    assert train_command(dataclasses.replace(spec, init=init), "o").endswith(f"--init {init.given}")


def test_config_differences_lists_exactly_the_differing_fields() -> None:
    a = make_spec()
    b = make_spec(train=dataclasses.replace(a.train, lr=0.5), sample=dataclasses.replace(a.sample, num_samples=9))
    assert config_differences([a, a]) == {}
    assert config_differences([a, b]) == {"train.lr": [0.02, 0.5], "sample.num_samples": [3, 9]}
    c = make_spec(tokenizer=Tokenizer.from_docs(["xyz"]))
    assert config_differences([a, c, a]) == {"data.vocab": ["(vocabulary)"] * 3}  # not unrolled, not shown


def test_differences_table() -> None:
    a = make_spec()
    b = make_spec(model=dataclasses.replace(a.model, n_embd=16))
    html = differences_table(["<a>", "b"], [a, b], ["#111", "#222"])
    assert "model.n_embd" in html and "<td>8</td><td>16</td>" in html and "&lt;a&gt;" in html
    assert "lr" not in html
    assert "same" in differences_table(["a", "b"], [a, a], ["#1", "#2"])


def test_run_card_shows_the_results_and_the_command() -> None:
    spec = make_spec()
    metrics = {
        "steps": np.arange(20),
        "loss": np.concatenate([np.full(18, 3.0), [1.0, 2.0]]),
        "val_steps": np.array([9, 19]),
        "val_loss": np.array([2.5, 2.25]),
    }
    run = {"spec": spec, "corpus": None, "metrics": metrics, "params_source": "final parameters", "path": Path("r<1>")}
    html = run_card(run, 1234)
    assert "2 layers, 8 wide, 2 heads" in html and "1,234" in html
    assert "1.5 (mean of the last 2 steps; last step 2)" in html
    assert "<th>final held-out loss</th><td>2.25</td>" in html
    assert "20 recorded of 10" in html
    assert esc(train_command(spec, "r<1>")) in html and "r<1>" not in html
    assert "unknown (corpus not read)" in html and "unknown (not read)" in run_card(run, None)
