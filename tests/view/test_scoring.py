"""score: each text scored token by token with the training loss's rule; sample --prefix and --json."""

from __future__ import annotations

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from microgpt_jax import UserError
from microgpt_jax.cli.program import main
from microgpt_jax.corpus.load import load_corpus
from microgpt_jax.model.loss import loss_fn
from microgpt_jax.runs.load import load_run
from microgpt_jax.runs.processes import read_spec
from microgpt_jax.view.scoring import score

SMALL = ["--val-size", "50", "--n-embd", "8", "--n-head", "2"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, ref_docs_path: Path) -> dict[str, Path]:
    """A tiny GPT and a counted bigram on the first 1000 names."""
    out = tmp_path_factory.mktemp("score")
    data = ["--data", str(ref_docs_path)]
    assert main(["train", "--out", str(out / "gpt"), *data, *SMALL, "--steps", "30", "--num-samples", "2"]) == 0
    assert main(["train", "--out", str(out / "bigram"), *data, "--val-size", "50", "--model", "bigram"]) == 0
    return {"gpt": out / "gpt", "bigram": out / "bigram"}


def test_score_is_the_training_loss_of_the_document(runs):
    m = load_run(runs["gpt"])
    (result,) = score(m.params, m.config, m.tokenizer, ["emma"])
    ids = [m.tokenizer.bos, *m.tokenizer.encode("emma"), m.tokenizer.bos]
    want = float(loss_fn(m.params, jnp.asarray([ids]), jnp.asarray([len(ids) - 1]), m.config))
    assert result["text"] == "emma"
    assert result["nll"] == pytest.approx(want, rel=1e-6)
    assert [t["token"] for t in result["tokens"]] == ["e", "m", "m", "a", "<BOS>"]
    nll = np.array([t["nll"] for t in result["tokens"]])
    assert result["nll"] == pytest.approx(nll.mean(), rel=1e-9)
    assert [t["p"] for t in result["tokens"]] == pytest.approx(np.exp(-nll).tolist(), rel=1e-9)


def test_a_batch_scores_each_text_as_alone(runs):
    m = load_run(runs["gpt"])
    together = score(m.params, m.config, m.tokenizer, ["emma", "ava", "", "isabella"])
    alone = [score(m.params, m.config, m.tokenizer, [t])[0] for t in ("emma", "ava", "", "isabella")]
    for a, b in zip(together, alone, strict=True):
        assert a["nll"] == pytest.approx(b["nll"], rel=1e-6)
    assert len(together[2]["tokens"]) == 1  # the empty text: only its end is predicted


def test_bigram_score_reads_its_table(runs):
    m = load_run(runs["bigram"])
    (result,) = score(m.params, m.config, m.tokenizer, ["ab"])
    a, b, bos = m.tokenizer.encode("a")[0], m.tokenizer.encode("b")[0], m.tokenizer.bos
    want = -np.array([m.params["wte"][bos, a], m.params["wte"][a, b], m.params["wte"][b, bos]])
    assert [t["nll"] for t in result["tokens"]] == pytest.approx(want.tolist(), rel=1e-6)


def test_unknown_characters_are_named_and_long_texts_refused(runs):
    m = load_run(runs["gpt"])
    with pytest.raises(UserError, match=r"outside the model's vocabulary: 'E', '!'"):
        score(m.params, m.config, m.tokenizer, ["Emma!"])
    with pytest.raises(UserError, match="block_size 16"):
        score(m.params, m.config, m.tokenizer, ["a" * 16])


def test_score_cli_json_and_one_line_errors(runs, capsys):
    assert main(["score", "--run", str(runs["gpt"]), "--json", "emma", "ava"]) == 0
    lines = capsys.readouterr().out.splitlines()
    objs = [json.loads(line) for line in lines]
    assert [o["text"] for o in objs] == ["emma", "ava"]
    assert set(objs[0]) == {"text", "nll", "tokens"} and set(objs[0]["tokens"][0]) == {"token", "p", "nll"}
    assert main(["score", "--run", str(runs["gpt"]), "emma"]) == 0
    assert "mean NLL" in capsys.readouterr().out
    assert main(["score", "--run", str(runs["gpt"]), "Zoë"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'Z', 'ë'" in err


def test_sample_prefix_and_json(runs, capsys):
    assert main(["sample", "--run", str(runs["gpt"]), "--prefix", "em", "--num-samples", "4", "--json"]) == 0
    objs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(objs) == 4 and all(o["text"].startswith("em") for o in objs)
    assert all(isinstance(o["in_training_data"], bool) for o in objs)
    assert main(["sample", "--run", str(runs["gpt"]), "--num-samples", "3"]) == 0
    out = capsys.readouterr().out
    assert "hallucinated" not in out
    assert all(line.endswith(("(new)", "(in training data)", "data)")) for line in out.splitlines())
    assert main(["sample", "--run", str(runs["gpt"]), "--prefix", "E!"]) == 2
    assert "'E', '!'" in capsys.readouterr().err


def test_samples_marked_as_training_documents_are_training_documents(runs, capsys):
    spec = read_spec(runs["gpt"])
    train_docs = set(load_corpus(spec.data, spec.tokenizer).train_docs)
    assert main(["sample", "--run", str(runs["gpt"]), "--json", "--num-samples", "16", "--temperature", "0.3"]) == 0
    objs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["in_training_data"] for o in objs] == [o["text"] in train_docs for o in objs]


def test_a_parameter_file_scores_and_samples_without_a_corpus(runs, capsys):
    params = str(runs["gpt"] / "params.safetensors")
    assert main(["score", "--params", params, "--json", "emma"]) == 0
    by_file = json.loads(capsys.readouterr().out)
    assert main(["score", "--run", str(runs["gpt"]), "--json", "emma"]) == 0
    assert by_file == json.loads(capsys.readouterr().out)
    assert main(["sample", "--params", params, "--json", "--num-samples", "2"]) == 0
    assert [json.loads(line)["in_training_data"] for line in capsys.readouterr().out.splitlines()] == [None, None]
