"""load_corpus: read, lower-case, shuffle, split and tokenize; fine-tuning keeps the model's tokenizer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from microgpt_jax.config import DataConfig
from microgpt_jax.corpus.documents import encode_docs, shuffle_docs, split_docs
from microgpt_jax.corpus.load import Corpus, load_corpus
from microgpt_jax.corpus.tokenizer import Tokenizer
from microgpt_jax.errors import UserError

WORDS = ["The cat sat", "the dog ran", "a cat ran", "the mat is red", "Is the dog red"]


def write(tmp_path: Path, lines: list[str], name: str = "c.txt") -> str:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_a_word_corpus_is_lowercased_shuffled_split_and_tokenized(tmp_path: Path) -> None:
    data = DataConfig(path=write(tmp_path, WORDS), val_size=2, tokenizer="word", lowercase=True, shuffle_seed=3)
    corpus = load_corpus(data)
    docs = shuffle_docs([w.lower() for w in WORDS], 3)
    train, val = split_docs(docs, 2)
    assert isinstance(corpus, Corpus) and corpus.path == Path(data.path)
    assert corpus.train_docs == train and corpus.val_docs == val
    assert corpus.tokenizer == Tokenizer.from_docs(docs, "word")
    got = corpus.encoded(6)
    want = (*encode_docs(train, corpus.tokenizer, 6), *encode_docs(val, corpus.tokenizer, 6))
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)


def test_non_ascii_characters_take_the_plain_path(tmp_path: Path) -> None:
    corpus = load_corpus(DataConfig(path=write(tmp_path, ["zoë", "émile", "ana"]), val_size=1, shuffle_seed=None))
    assert corpus.train_docs == ["zoë", "émile"] and corpus.val_docs == ["ana"]
    assert "ë" in corpus.tokenizer.vocab and corpus.tokenizer.kind == "char"


def test_fine_tuning_keeps_the_given_tokenizer_and_checks_every_document(tmp_path: Path) -> None:
    tok = Tokenizer.from_docs([w.lower() for w in WORDS], "word")
    path = write(tmp_path, ["the cat ran", "a dog sat"])
    corpus = load_corpus(DataConfig(path=path, val_size=0, shuffle_seed=None), tok)
    assert corpus.tokenizer is tok and corpus.train_docs == ["the cat ran", "a dog sat"]
    with pytest.raises(UserError, match=r"`tokenizer` char differs from the model's word tokenizer"):
        load_corpus(DataConfig(path=path, val_size=0, tokenizer="char"), tok)
    bad = write(tmp_path, ["the cat ran", "the zebra ran"], "bad.txt")
    with pytest.raises(UserError, match=r"bad\.txt line 2: word 'zebra' is not in the model's vocabulary"):
        load_corpus(DataConfig(path=bad, val_size=0), tok)


def test_a_document_the_word_tokenizer_cannot_take_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, ["the cat", "the  dog"])
    with pytest.raises(UserError, match=r"c\.txt line 2: .*empty word") as e:
        load_corpus(DataConfig(path=path, val_size=0, tokenizer="word"))
    assert "\n" not in str(e.value)


def test_what_is_not_a_corpus_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"data file .* not found: pass a text file"):
        load_corpus(DataConfig(path=str(tmp_path / "missing.txt")))
    with pytest.raises(UserError, match="is a directory"):
        load_corpus(DataConfig(path=str(tmp_path)))
    (tmp_path / "bad.txt").write_bytes("zoë\n".encode() + b"\xff\n")
    with pytest.raises(UserError, match="line 2 is not valid UTF-8"):
        load_corpus(DataConfig(path=str(tmp_path / "bad.txt"), val_size=0))
