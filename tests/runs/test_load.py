"""Reading a trained model back: a run directory or a self-describing file; the samples' key and label."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from microgpt_jax.config import GPTConfig, SampleConfig, TrainConfig
from microgpt_jax.corpus.tokenizer import Tokenizer
from microgpt_jax.errors import UserError
from microgpt_jax.model.init import init_params
from microgpt_jax.runs.load import load_model_file, load_run, sample_key, sample_model, sampling_label
from microgpt_jax.storage.params import save_params

CONFIG = GPTConfig(vocab_size=4, n_embd=8, n_head=2, block_size=4)
TOKENIZER = Tokenizer.from_docs(["abc"])


@pytest.mark.parametrize("seed", [0, 42, 2**40 + 1])
def test_the_sample_key_is_fold_in_of_the_seeds_key(seed: int) -> None:
    want = jax.random.key_data(jax.random.fold_in(jax.random.key(seed), 1))
    np.testing.assert_array_equal(jax.random.key_data(sample_key(seed)), want)


def test_the_sampling_label_names_the_filters_that_are_on() -> None:
    assert sampling_label(SampleConfig()) == "temperature 0.5"
    assert sampling_label(SampleConfig(temperature=1.0, top_k=3, top_p=0.9)) == "temperature 1.0, top-k 3, top-p 0.9"


def test_a_file_with_its_config_loads_and_samples(tmp_path: Path) -> None:
    params = {k: np.asarray(v) for k, v in init_params(0, CONFIG).items()}
    path = save_params(tmp_path / "m.safetensors", params, CONFIG, TOKENIZER)
    model = load_model_file(path)
    assert model.config == CONFIG and model.tokenizer == TOKENIZER and not model.x64
    assert model.seed == TrainConfig().seed and model.source == str(path)
    for k, v in params.items():
        np.testing.assert_array_equal(model.params[k], v)
    samples = sample_model(model, SampleConfig(num_samples=5, seed=3))
    assert len(samples) == 5 and all(set(s) <= set("abc") and len(s) <= 4 for s in samples)
    assert samples == sample_model(model, SampleConfig(num_samples=5, seed=3))  # seeded


def test_a_file_without_config_or_a_directory_that_is_not_a_run_is_refused(tmp_path: Path) -> None:
    (tmp_path / "plain.json").write_text(json.dumps({"wte": [[0.0] * 8] * 4}))
    with pytest.raises(UserError, match="carries no config and vocabulary: export it with microgpt-jax export"):
        load_model_file(tmp_path / "plain.json")
    with pytest.raises(UserError, match=r"is not a run directory \(no config\.json\)"):
        load_run(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="is not a run directory"):
        load_run(tmp_path / "empty")


def test_a_run_with_a_stray_file_beside_it_says_which(tmp_path: Path, tiny_corpus: Path) -> None:
    from microgpt_jax.cli.program import main

    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--data", str(tiny_corpus), "--val-size", "5", "--steps", "3",
                 "--n-embd", "8", "--n-head", "2", "--num-samples", "1"]) == 0  # fmt: skip
    assert load_run(run).config.n_embd == 8
    (run / "model.json").write_text("{}")  # an export written into the run, say
    with pytest.raises(UserError, match=r"holds files a run does not write \(model\.json\): move them out"):
        load_run(run)
