"""config.json as RunSpec: round trips, versions read, the digest, one-line refusals."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from microgpt_jax.config import SampleConfig
from microgpt_jax.runs.load import load_run, sample_model
from microgpt_jax.runs.spec import RunSpec

LEGACY = Path(__file__).resolve().parents[1] / "data" / "legacy_v2"


def test_a_run_written_before_the_recipe_options_keeps_its_identity(tmp_path: Path) -> None:
    """tests/data/legacy_v3/run was written by the code before weight decay, schedules, warm-up and dropout
    (714d60f): its config.json has none of those fields. Its config digest, recorded in its checkpoint and its
    params.safetensors, must still be the one computed now (it was not: such runs could not be resumed,
    sampled or exported), and it samples what its training printed."""
    import shutil

    legacy = tmp_path / "legacy"
    shutil.copytree(LEGACY.parent / "legacy_v3" / "run", legacy)
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
