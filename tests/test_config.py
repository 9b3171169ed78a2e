"""Configs: the one home of every default, checked values, JSON round trips, and the layering of the package."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from microgpt_jax.config import (
    DEFAULT_LR,
    DataConfig,
    GPTConfig,
    RunConfig,
    SampleConfig,
    TrainConfig,
    fields_help,
)
from microgpt_jax.errors import UserError

PACKAGE = Path(__file__).resolve().parents[1] / "microgpt_jax"


def test_lr_and_init_std_default_per_optimizer_and_init() -> None:
    assert TrainConfig().lr == 0.01 and TrainConfig(optimizer="sgd").lr == DEFAULT_LR["sgd"]
    assert TrainConfig(optimizer="sgd", lr=0.5).lr == 0.5
    assert TrainConfig().init_std == 0.08 and TrainConfig(init_zero_out=True).init_std == 0.02
    assert TrainConfig.from_dict(TrainConfig(optimizer="sgd").to_dict()) == TrainConfig(optimizer="sgd")


@pytest.mark.parametrize("cls", [GPTConfig, TrainConfig, DataConfig, RunConfig, SampleConfig])
def test_every_field_has_help_and_round_trips(cls: type) -> None:
    assert all(text for _, text in fields_help(cls).values())
    assert cls.from_dict(cls().to_dict()) == cls()
    with pytest.raises(UserError, match="unknown"):
        cls.from_dict({**cls().to_dict(), "bogus": 1})


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: TrainConfig(b1=1.0), "b1"),
        (lambda: TrainConfig(lr=float("nan")), "lr"),
        (lambda: TrainConfig(seed=1.5), "seed"),
        (lambda: TrainConfig(steps=True), "steps"),
        (lambda: GPTConfig(n_embd=10, n_head=4), "divisible"),
        (lambda: DataConfig(val_size=-1), "val_size"),
        (lambda: RunConfig(devices=0), "devices"),
        (lambda: SampleConfig(temperature=0.0), "temperature"),
        (lambda: TrainConfig.from_dict({"lr": "0.1"}), "lr"),  # a hand-edited config.json
    ],
)
def test_bad_values_are_user_errors(make, match: str) -> None:
    with pytest.raises(UserError, match=match):
        make()


def test_configs_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainConfig().lr = 1.0  # type: ignore[misc]


def _imports(path: Path) -> set[str]:
    """The modules a source file imports (at any depth: function-level imports count)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            if node.module == "microgpt_jax":
                names |= {f"microgpt_jax.{a.name}" for a in node.names}
    return names


def test_argparse_lives_in_the_cli_and_the_package_has_no_import_cycle() -> None:
    modules = {p.stem: _imports(p) for p in PACKAGE.glob("*.py")}
    assert sorted(m for m, names in modules.items() if "argparse" in names) == ["cli"]
    graph = {m: {n.split(".")[1] for n in names if n.startswith("microgpt_jax.")} & set(modules) for m, names in
             modules.items() if m != "__init__"}  # fmt: skip
    done: set[str] = set()

    def visit(m: str, path: tuple[str, ...]) -> None:
        assert m not in path, f"import cycle: {' -> '.join((*path, m))}"
        if m in done:
            return
        for n in graph.get(m, ()):
            visit(n, (*path, m))
        done.add(m)

    for m in graph:
        visit(m, ())
    # the library never reaches up to the command line
    assert not any("cli" in deps for m, deps in graph.items() if m not in ("cli", "__main__"))
