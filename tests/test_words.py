"""experiments/words.py: its independent numpy evaluator is the GPT, and --quick runs every stage end to end on a
small word corpus the test writes (results only with --out)."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from microgpt_jax.config import GPTConfig
from microgpt_jax.corpus.documents import encode_docs
from microgpt_jax.corpus.tokenizer import Tokenizer
from microgpt_jax.model.init import init_params
from microgpt_jax.storage.params import save_params
from microgpt_jax.training.evaluation import evaluate

WORDS_PY = Path(__file__).resolve().parents[1] / "experiments" / "words.py"
SENTENCES = ["the cat sat on the mat", "the dog can run", "a cat ran to the dog", "my mom is glad", "the hen is red"]
QUESTIONS = ["can the cat run", "is the dog red", "is my mom glad"]


@pytest.fixture(scope="module")
def words():
    spec = importlib.util.spec_from_file_location("experiments_words", WORDS_PY)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_numpy_evaluator_is_the_gpts_held_out_nll(words, tmp_path: Path) -> None:
    """The evaluator shares no code with the package: from the file alone it gives evaluate's NLL."""
    docs = ["the cat sat on the mat", "the dog can run to the mat and sat", "a cat"]  # the second is cut short
    tok = Tokenizer.from_docs([*docs, "sit"], kind="word")
    config = GPTConfig(vocab_size=tok.vocab_size, n_layer=2, n_embd=8, n_head=2, block_size=6)
    params = init_params(jax.random.key(3), config, std=0.5)
    path = save_params(tmp_path / "p.safetensors", {k: np.asarray(v) for k, v in params.items()}, config, tok)
    tokens, n = encode_docs(docs, tok, config.block_size)
    assert words.numpy_nll(path, docs) == pytest.approx(evaluate(params, tokens, n, config), abs=1e-5)


def test_held_out_split_is_the_runs(words, tmp_path: Path) -> None:
    from microgpt_jax.config import DataConfig
    from microgpt_jax.corpus.load import load_corpus

    path = tmp_path / "s.txt"
    path.write_text("\n".join(f"The Cat {i}" for i in range(40)) + "\n\n")
    corpus = load_corpus(DataConfig(path=path, val_size=7, tokenizer="word", lowercase=True))
    assert words.held_out_sentences(path, 42, 7, lowercase=True) == corpus.val_docs


@pytest.mark.slow
def test_quick_run_end_to_end(words, tmp_path: Path, monkeypatch, capsys) -> None:
    data, questions = tmp_path / "sentences.txt", tmp_path / "questions.txt"
    data.write_text("\n".join(SENTENCES * 4) + "\n")
    questions.write_text("\n".join(QUESTIONS * 5) + "\n")  # 15, as many as the training sentences: one compile
    argv = ["--quick", "--data", str(data), "--questions", str(questions), "--val-size", "5", "--num-samples", "2"]
    monkeypatch.setattr(words, "RESULTS", tmp_path / "results")  # where a default would have written
    monkeypatch.chdir(tmp_path)
    # without --out, --quick writes nothing (the runs go to a temp dir)
    assert words.main(argv) == 0
    assert "no results written" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["questions.txt", "sentences.txt"]

    out = tmp_path / "out"
    assert words.main([*argv, "--out", str(out)]) == 0
    r = json.loads((out / "words.json").read_text())
    vocab = {w for s in SENTENCES for w in s.split(" ")}
    assert r["vocab_size"] == len(vocab) + 1 and r["words"] == len(vocab)
    m = r["model"]
    C, V = m["n_embd"], r["vocab_size"]
    assert r["params"] == 2 * V * C + m["block_size"] * C + m["n_layer"] * 12 * C * C
    pre, ft = r["pretrain"], r["finetune"]
    assert pre["steps"] == ft["steps"] == 20 and ft["lr"] == 0.001
    assert abs(pre["val_nll"] - pre["val_nll_numpy"]) < 1e-4  # the independent evaluator agrees
    assert r["sentences"] == {"path": "sentences.txt", "docs": 20, "train": 15, "held_out": 5}
    for gens, allowed in ((pre["samples"], vocab), (ft["samples"], vocab)):
        assert [g["setting"] for g in gens] == [s[0] for s in words.SETTINGS]
        assert all(set(s.split(" ")) <= allowed for g in gens for s in g["samples"] if s)
    md = (out / "words.md").read_text()
    assert "`python experiments/words.py --quick --val-size 5`" in md
    assert f"{pre['val_nll']:.4f} | {pre['val_nll_numpy']:.4f}" in md and "a --quick run: not comparable" in md
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "questions.txt", "sentences.txt"]


def test_questions_the_vocabulary_lacks_stop_before_any_run(words, tmp_path: Path, capsys) -> None:
    data, questions = tmp_path / "sentences.txt", tmp_path / "questions.txt"
    data.write_text("\n".join(SENTENCES * 4) + "\n")
    questions.write_text("can the cat run\ncan the zebra run\n")
    argv = [
        "--quick",
        "--data",
        str(data),
        "--questions",
        str(questions),
        "--val-size",
        "5",
        "--out",
        str(tmp_path / "o"),
    ]
    from microgpt_jax.errors import UserError

    with pytest.raises(UserError, match=r"questions\.txt line 2: word 'zebra'"):
        words.main(argv)
    assert not (tmp_path / "o").exists()


def _corpus(env: str) -> Path:
    path = os.environ.get(env)
    if not path or not Path(path).is_file():
        pytest.skip(f"the book's corpus is not available: set {env}")
    return Path(path)


@pytest.mark.slow
def test_acceptance_on_the_books_corpora(words, tmp_path: Path, capsys) -> None:
    """The issue's acceptance commands on grade1_sentences.txt and questions.txt (skipped without them)."""
    from conftest import read_metrics

    from microgpt_jax.cli.program import main

    sentences, questions = _corpus(words.WORDS_ENV), _corpus(words.QUESTIONS_ENV)
    pre, ft = tmp_path / "words", tmp_path / "questions"
    flags = ["--tokenizer", "word", "--data", str(sentences), "--n-layer", "2", "--n-embd", "32", "--steps", "5000"]
    assert main(["train", "--out", str(pre), *flags]) == 0
    stdout = capsys.readouterr().out
    assert "vocab size: 597 (596 words + BOS)" in stdout and "num params: 63296" in stdout
    metrics = read_metrics(pre)
    losses = np.array([m["loss"] for m in metrics if "loss" in m])
    val = next(m["val_loss"] for m in metrics if "val_loss" in m)
    # the book's recipe sees a sixth of the corpus once: the loss falls from ln(597) = 6.39 to about 2.8
    assert losses[-500:].mean() < 3.0 and val < 3.0
    held_out = words.held_out_sentences(sentences, 42, 1000, lowercase=False)
    assert abs(words.numpy_nll(pre / "params.safetensors", held_out) - val) < 1e-4
    vocab = set(json.loads((pre / "config.json").read_text())["data"]["vocab"]["vocab"])
    assert main(["sample", "--run", str(pre), "--top-k", "10", "--top-p", "0.9"]) == 0
    # each line: "sample  N: TEXT  (new)" or "(in training data)"
    samples = [line.split(": ", 1)[-1].rsplit("  (", 1)[0] for line in capsys.readouterr().out.splitlines()]
    assert len(samples) == 20 and all(set(s.split(" ")) <= vocab for s in samples if s)
    assert sum(bool(s) for s in samples) >= 15
    # fine-tuning from the run directory, with its tokenizer: the loss falls and the samples ask
    tune = ["--init", str(pre), "--data", str(questions), "--lr", "0.001", "--steps", "1000", "--val-size", "0"]
    assert main(["train", "--out", str(ft), *tune, "--top-k", "10", "--top-p", "0.9"]) == 0
    stdout = capsys.readouterr().out
    losses = np.array([m["loss"] for m in read_metrics(ft)])
    assert losses[:50].mean() > losses[-100:].mean() + 1.0
    starts = {q.split(" ")[0] for q in questions.read_text().split("\n") if q}
    asked = [line.split(": ", 1)[-1] for line in stdout.splitlines() if line.startswith("sample ")]
    assert sum(s.split(" ")[0] in starts for s in asked) >= 15, asked
