"""Tokenizers: char and word round trips, the saved form (new and legacy), and bad inputs as UserErrors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from microgpt_jax.corpus.documents import load_docs
from microgpt_jax.corpus.tokenizer import MAX_VOCAB, Tokenizer
from microgpt_jax.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
WORDS_DATA_ENV = "MICROGPT_JAX_WORDS_DATA"

SENTENCES = ["the cat sat", "a dog ran", "the dog sat on the mat", "cat"]


def test_char_round_trip_is_microgpts_tokenizer():
    docs = ["emma", "olivia", "ava"]
    tok = Tokenizer.from_docs(docs)
    assert Tokenizer is Tokenizer  # one tokenizer for the package
    assert tok.kind == "char" and tok.vocab == tuple("aeilmov")
    assert (tok.uchars, tok.bos, tok.vocab_size) == ("aeilmov", 7, 8)
    for doc in docs:
        assert tok.encode(doc) == ["aeilmov".index(c) for c in doc]
        assert tok.decode(tok.encode(doc)) == doc
    assert tok.encode("") == [] and tok.decode([]) == ""
    assert Tokenizer("char", "abc") == Tokenizer("char", ("a", "b", "c"))  # uchars as a string


def test_word_vocab_of_a_small_corpus():
    tok = Tokenizer.from_docs(SENTENCES, kind="word")
    assert tok.vocab == ("a", "cat", "dog", "mat", "on", "ran", "sat", "the")
    assert (tok.bos, tok.vocab_size) == (8, 9)
    assert tok.encode("the cat sat") == [7, 1, 6]
    for doc in SENTENCES:
        assert tok.decode(tok.encode(doc)) == doc
    assert tok.decode([0, 2, 5]) == "a dog ran"
    assert tok.encode("") == [] and tok.decode([]) == ""


def test_words_split_on_single_spaces_only():
    """As the book's ``split(" ")``: a tab stays inside a word; an empty word (double space) is an error."""
    tok = Tokenizer.from_docs(["a\tb c"], kind="word")
    assert tok.vocab == ("a\tb", "c")
    for text in ("a  b", " a", "a "):
        with pytest.raises(UserError, match="empty word"):
            Tokenizer.from_docs([text], kind="word")
        with pytest.raises(UserError, match="empty word"):
            tok.encode(text)


@pytest.mark.parametrize("kind", ["char", "word"])
def test_meta_round_trips_through_json(kind):
    tok = Tokenizer.from_docs(SENTENCES, kind=kind)
    meta = json.loads(json.dumps(tok.to_meta()))
    assert meta["kind"] == kind and Tokenizer.from_meta(meta) == tok


def test_legacy_meta_is_a_string_of_characters():
    tok = Tokenizer.from_meta("abcdefghijklmnopqrstuvwxyz")
    assert tok.kind == "char" and tok.vocab_size == 27 and tok.uchars == "abcdefghijklmnopqrstuvwxyz"
    assert tok.decode(tok.encode("zoe")) == "zoe"


def test_word_tokenizer_has_no_uchars():
    with pytest.raises(UserError, match="uchars"):
        _ = Tokenizer.from_docs(SENTENCES, kind="word").uchars


@pytest.mark.parametrize(
    ("kind", "text", "match"),
    [("char", "abz", "character 'z'"), ("word", "the cow", "word 'cow'")],
)
def test_unknown_entries_are_named(kind, text, match):
    tok = Tokenizer.from_docs(["abc", "the cat"] if kind == "char" else SENTENCES, kind=kind)
    with pytest.raises(UserError, match=match):
        tok.encode(text)


@pytest.mark.parametrize("kind", ["char", "word"])
@pytest.mark.parametrize("bad_id", [-1, 8, 9, 100])
def test_decode_rejects_bos_and_out_of_range(kind, bad_id):
    tok = Tokenizer(kind, tuple("abcdefgh"))  # 8 entries: BOS = 8
    with pytest.raises(UserError, match=f"token id {bad_id} "):
        tok.decode([0, bad_id])


@pytest.mark.parametrize(
    ("meta", "match"),
    [
        (["a", "b"], "expected a string or an object"),
        (None, "expected a string or an object"),
        ({"kind": "byte", "vocab": ["a"]}, "kind must be one of"),
        ({"vocab": ["a"]}, "kind must be one of"),
        ({"kind": "word", "vocab": "ab"}, "vocab must be a list"),
        ({"kind": "word", "vocab": ["a"], "extra": 1}, "unknown field 'extra'"),
        ({"kind": "word", "vocab": ["a", 3]}, "entry 1 is int"),
        ({"kind": "word", "vocab": ["a", None]}, "entry 1 is null"),
        ({"kind": "word", "vocab": ["a", "a"]}, "entry 1 .* repeated"),
        ({"kind": "word", "vocab": ["a", ""]}, "entry 1 .* empty or has a space"),
        ({"kind": "word", "vocab": ["a b"]}, "entry 0 .* empty or has a space"),
        ({"kind": "word", "vocab": ["x" * 1001]}, "entry 0 has 1001 characters"),
        ({"kind": "char", "vocab": ["ab"]}, "entry 0 .* not one character"),
        ({"kind": "char", "vocab": ["a", "a"]}, "repeated"),
        ("aba", "entry 2 .* repeated"),
        ("x" * (MAX_VOCAB + 1), "at most"),
        ({"kind": "char", "vocab": ["a"] * (MAX_VOCAB + 1)}, "at most"),
    ],
)
def test_bad_meta_is_a_one_line_user_error(meta, match):
    with pytest.raises(UserError, match=match) as e:
        Tokenizer.from_meta(meta)
    assert "\n" not in str(e.value) and len(str(e.value)) < 200


def test_bad_kind():
    with pytest.raises(UserError, match="kind must be one of"):
        Tokenizer.from_docs(["a"], kind="bpe")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="kind must be one of"):
        Tokenizer("bpe", ("a",))  # type: ignore[arg-type]


def _words_data() -> Path:
    """grade1_sentences.txt from $MICROGPT_JAX_WORDS_DATA or ../shared/data next to the repo; else skip."""
    env = os.environ.get(WORDS_DATA_ENV)
    path = Path(env) if env else ROOT.parent / "shared" / "data" / "grade1_sentences.txt"
    if not path.is_file():
        pytest.skip(f"grade1_sentences.txt not available: set {WORDS_DATA_ENV}=path/to/grade1_sentences.txt")
    return path


def test_grade1_sentences_vocab_is_597():
    """The book's corpus: 596 words + BOS; every sentence round-trips."""
    docs = [doc.lower() for doc in load_docs(_words_data())]
    tok = Tokenizer.from_docs(docs, kind="word")
    assert (tok.vocab_size, tok.bos) == (597, 596)
    assert all(tok.decode(tok.encode(doc)) == doc for doc in docs)


def test_tokenizer_roundtrip_and_unknown_char():
    tok = Tokenizer.from_docs(["emma", "ava"])
    assert tok.uchars == "aemv" and tok.bos == 4 and tok.vocab_size == 5
    assert tok.decode(tok.encode("mave")) == "mave"
    with pytest.raises(UserError, match="'z'"):
        tok.encode("zoe")
