"""config.json as RunSpec: round trips, versions read, the digest, one-line refusals."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from microgpt_jax.config import DataConfig, GPTConfig, RunConfig, SampleConfig, TrainConfig
from microgpt_jax.corpus.tokenizer import Tokenizer
from microgpt_jax.errors import UserError
from microgpt_jax.runs.load import load_run, sample_model
from microgpt_jax.runs.spec import VERSION, InitSource, RunSpec

LEGACY_V3 = Path(__file__).resolve().parents[1] / "data" / "legacy_v3"  # written before the recipe options


def test_a_run_written_before_the_recipe_options_keeps_its_identity(tmp_path: Path) -> None:
    """tests/data/legacy_v3/run was written by the code before weight decay, schedules, warm-up and dropout
    (714d60f): its config.json has none of those fields. Its config digest, recorded in its checkpoint and its
    params.safetensors, must still be the one computed now (it was not: such runs could not be resumed,
    sampled or exported), and it samples what its training printed."""
    import shutil

    legacy = tmp_path / "legacy"
    shutil.copytree(LEGACY_V3 / "run", legacy)
    info = json.loads((legacy / "config.json").read_text())
    assert "dropout" not in info["train"] and "weight_decay" not in info["train"]
    manifest = json.loads((legacy / "checkpoint" / "checkpoint.json").read_text())
    assert RunSpec.read(legacy).digest() == manifest["config_sha256"]
    loaded = load_run(legacy)
    assert sample_model(loaded, SampleConfig(num_samples=4, temperature=1.0)) == ["bab", "bbc", "abb", "aab"]
    # a recipe option that is on is part of the identity
    spec = RunSpec.read(legacy)
    changed = dataclasses.replace(spec, train=dataclasses.replace(spec.train, dropout=0.1))
    assert changed.digest() != spec.digest()


def make_spec(**changes) -> RunSpec:
    spec = RunSpec(
        GPTConfig(vocab_size=4, n_embd=8, n_head=2, block_size=4),
        TrainConfig(steps=10, lr=0.02),
        DataConfig(path="/data/x.txt", val_size=2, tokenizer="char"),
        RunConfig(eval_every=5),
        SampleConfig(num_samples=3),
        Tokenizer.from_docs(["abc", "cab"]),
        "0" * 64,
        InitSource("/runs/pre/params.safetensors", "1" * 64, "/runs/pre"),
        step=3,
    )
    return dataclasses.replace(spec, **changes)


def test_to_json_parses_back_to_the_same_spec(tmp_path: Path) -> None:
    for spec in (make_spec(), make_spec(init=None, step=None), make_spec(tokenizer=Tokenizer("word", ("a", "b")))):
        text = spec.to_json()
        assert text.endswith("\n") and json.loads(text)["version"] == VERSION
        assert RunSpec.parse(text, tmp_path / "config.json") == spec
        (tmp_path / "config.json").write_text(text)
        assert RunSpec.read(tmp_path) == spec and RunSpec.config_text(tmp_path) == text
        assert RunSpec.read(tmp_path).digest() == spec.digest()


def test_the_digest_is_what_defines_the_runs_numbers() -> None:
    spec = make_spec()
    assert len(spec.digest()) == 64 and spec.digest() == make_spec().digest()
    # model, train, data and init change it
    for changed in (
        make_spec(model=GPTConfig(vocab_size=4, n_embd=16, n_head=2, block_size=4)),
        make_spec(train=TrainConfig(steps=10, lr=0.03)),
        make_spec(data_sha256="f" * 64),
        make_spec(init=None),
    ):
        assert changed.digest() != spec.digest()
    # how it is evaluated, sampled or labelled does not
    for same in (
        make_spec(run=RunConfig(eval_every=7)),
        make_spec(sample=SampleConfig(num_samples=9)),
        make_spec(step=1),
    ):
        assert same.digest() == spec.digest()


def test_version_2_is_read_as_characters() -> None:
    doc = make_spec(init=None, step=None).to_doc()
    doc["version"] = 2
    doc["data"]["vocab"] = "abc"
    del doc["data"]["tokenizer"], doc["step"]
    spec = RunSpec.parse(json.dumps(doc), Path("config.json"))
    assert spec.tokenizer.kind == "char" and spec.tokenizer.vocab == tuple("abc") and spec.data.tokenizer == "char"
    assert spec.step is None


@pytest.mark.parametrize(
    "edit, says",
    [
        (lambda d: "not json", "Expecting value"),
        (lambda d: [], "version None, not 3"),
        (lambda d: {**d, "version": 1}, "version 1, not 3"),
        (lambda d: {**d, "step": 6}, "step 6 is not one of the guide's steps"),
        (lambda d: {**d, "step": True}, "step True is not one of the guide's steps"),
        (lambda d: {k: v for k, v in d.items() if k != "train"}, "'train'"),
        (lambda d: {**d, "data": {**d["data"], "sha256": 5}}, "data.sha256 must be a string"),
        (lambda d: {**d, "init": 5}, "init must be null or an object with a path"),
        (lambda d: {**d, "init": {"path": "p", "sha256": 1}}, "init.sha256 and init.run must be strings or null"),
        (lambda d: {**d, "model": {**d["model"], "n_embd": -1}}, "n_embd"),
    ],
)
def test_a_malformed_config_is_one_line(edit, says: str) -> None:
    doc = edit(make_spec().to_doc())
    with pytest.raises(UserError) as e:
        RunSpec.parse(doc if isinstance(doc, str) else json.dumps(doc), Path("run/config.json"))
    message = str(e.value)
    assert message.startswith("run/config.json is not a run config this version reads (") and "\n" not in message
    assert says in message and message.endswith("): train the run again"), message


def test_a_directory_without_a_config_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"is not a run directory \(no config\.json\): pass the `out` of a train run"):
        RunSpec.read(tmp_path)
    (tmp_path / "config.json").write_bytes(b"\xff\xfe")
    with pytest.raises(UserError, match="is not a run config this version reads"):
        RunSpec.read(tmp_path)


def test_init_source_from_json() -> None:
    assert InitSource.from_json(None) is None
    assert InitSource.from_json("p.json") == InitSource("p.json")  # version 2: the path as a string
    full = InitSource("p", "a" * 64, "run")
    assert InitSource.from_json(full.to_dict()) == full and full.given == "run"
    assert InitSource("p").given == "p"
    with pytest.raises(TypeError):
        InitSource.from_json({"path": "p", "extra": 1})
