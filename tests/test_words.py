"""experiments/words.py: its independent numpy evaluator is the GPT, and --quick runs every stage end to end on a
small word corpus the test writes (results only with --out)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from microgpt_jax.config import GPTConfig
from microgpt_jax.data import encode_docs
from microgpt_jax.io import save_params
from microgpt_jax.models import init_params
from microgpt_jax.tokenizer import Tokenizer
from microgpt_jax.train import evaluate

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
    """The evaluator shares no code with the package: from the file alone it gives train.evaluate's NLL."""
    docs = ["the cat sat on the mat", "the dog can run to the mat and sat", "a cat"]  # the second is cut short
    tok = Tokenizer.from_docs([*docs, "sit"], kind="word")
    config = GPTConfig(vocab_size=tok.vocab_size, n_layer=2, n_embd=8, n_head=2, block_size=6)
    params = init_params(jax.random.key(3), config, std=0.5)
    path = save_params(tmp_path / "p.safetensors", {k: np.asarray(v) for k, v in params.items()}, config, tok)
    tokens, n = encode_docs(docs, tok, config.block_size)
    assert words.numpy_nll(path, docs) == pytest.approx(evaluate(params, tokens, n, config), abs=1e-5)


def test_held_out_split_is_the_runs(words, tmp_path: Path) -> None:
    from microgpt_jax.config import DataConfig
    from microgpt_jax.data import load_corpus

    path = tmp_path / "s.txt"
    path.write_text("\n".join(f"The Cat {i}" for i in range(40)) + "\n\n")
    corpus = load_corpus(DataConfig(path=path, val_size=7, tokenizer="word", lowercase=True))
    assert words.held_out_sentences(path, 42, 7, lowercase=True) == corpus.val_docs


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
