"""Resuming a run: from its checkpoint to the parameters it would have had."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from microgpt_jax.config import DataConfig, SampleConfig, TrainConfig
from microgpt_jax.runs import fresh
from microgpt_jax.runs.load import load_run, sample_model
from microgpt_jax.runs.resume import resume_run

LEGACY = Path(__file__).resolve().parents[1] / "data" / "legacy_v2"


def test_a_run_written_before_the_word_tokenizer_loads_and_resumes(tmp_path: Path) -> None:
    """tests/data/legacy_v2/run was written by the code before this change (41e811a): config.json version 2,
    the vocabulary a string, a checkpoint at step 40 of 41. It loads, samples as it did then, resumes to the
    parameters it had, and serves as an --init."""
    import shutil

    legacy = tmp_path / "legacy"
    shutil.copytree(LEGACY / "run", legacy)
    corpus = shutil.copy(LEGACY / "corpus.txt", tmp_path / "corpus.txt")
    info = json.loads((legacy / "config.json").read_text())
    assert info["version"] == 2 and info["data"]["vocab"] == "abc" and "tokenizer" not in info["data"]
    info["data"]["path"] = str(corpus)  # where the copy of its corpus is
    (legacy / "config.json").write_text(json.dumps(info))
    loaded = load_run(legacy)
    assert loaded.tokenizer.kind == "char" and loaded.tokenizer.uchars == "abc" and loaded.config.vocab_size == 4
    # what its training printed (temperature 1.0, the run's seed)
    assert sample_model(loaded, SampleConfig(num_samples=4, temperature=1.0)) == ["cab", "cac", "abc", "aabc"]
    before = {k: v.copy() for k, v in loaded.params.items()}
    resumed = resume_run(legacy, verbose=False)
    for k, v in before.items():
        np.testing.assert_allclose(np.asarray(resumed.params[k]), v, rtol=0, atol=1e-6)
    assert json.loads((legacy / "config.json").read_text())["version"] == 3
    # the same steps and data as the resumed run: the same compiled program
    same_data = DataConfig(path=corpus, val_size=2, shuffle_seed=None)
    ft = fresh.train_run(tmp_path / "ft", None, TrainConfig(steps=41), same_data, init=legacy, verbose=False)
    assert ft.tokenizer == loaded.tokenizer and ft.config == loaded.config
