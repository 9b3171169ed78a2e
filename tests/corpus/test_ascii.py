"""The ASCII corpus in numpy: the same documents, order, split, tokenizer and rows as the plain path."""

from __future__ import annotations

import numpy as np
import pytest

from microgpt_jax.config import DataConfig
from microgpt_jax.corpus import ascii as ascii_module
from microgpt_jax.corpus.ascii import AsciiDocs
from microgpt_jax.corpus.documents import encode_docs, parse_lines, shuffle_docs, split_docs
from microgpt_jax.corpus.load import load_corpus
from microgpt_jax.corpus.tokenizer import Tokenizer
from microgpt_jax.errors import UserError

# an ASCII text with every kind of line end and what str.strip() strips, inside documents and around them
ASCII_TEXT = (
    b"\xef\xbb\xbf  Emma \r\nava\r\rmia\t\n\x1c\x1f\n \x0b\x0c \nmary ann\nMia\x00x\n\n"
    + b"\n".join(f"n{i:03d}{'z' * (i % 23)}".encode() for i in range(300))
    + b"\r\nlast line without an end"
)


@pytest.mark.parametrize("lowercase", [False, True])
@pytest.mark.parametrize("shuffle_seed", [42, None])
def test_ascii_corpus_is_the_plain_path_in_numpy(tmp_path, monkeypatch, lowercase, shuffle_seed):
    path = tmp_path / "ascii.txt"
    path.write_bytes(ASCII_TEXT)
    monkeypatch.setattr(ascii_module, "_SPAN_CHUNK", 64)  # many chunks, lines across their ends
    config = DataConfig(path=str(path), shuffle_seed=shuffle_seed, val_size=30, lowercase=lowercase)
    fast = load_corpus(config)
    assert isinstance(fast.train_docs, AsciiDocs)
    docs = [t.lower() if lowercase else t for _, t in parse_lines(ASCII_TEXT)]
    train, val = split_docs(shuffle_docs(docs, shuffle_seed), 30)
    assert fast.train_docs == train and fast.val_docs == val and list(fast.val_docs) == val
    assert val + fast.train_docs == val + train and fast.val_docs != "".join(val)
    assert fast.tokenizer == Tokenizer.from_docs(docs)  # the space and \x00 inside documents, no stripped byte
    for block_size in (4, 16, 40):
        got = fast.encoded(block_size)
        want = (*encode_docs(train, fast.tokenizer, block_size), *encode_docs(val, fast.tokenizer, block_size))
        assert got[0].dtype == np.uint8
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)


def test_ascii_fine_tune_names_the_line_of_an_unknown_character(tmp_path):
    path = tmp_path / "ascii.txt"
    path.write_bytes(b"emma\r\n\r\nava\rmia\nbob\n")
    with pytest.raises(UserError, match=r"line 5: character 'b' is not in the model's vocabulary"):
        load_corpus(DataConfig(path=str(path), val_size=1), Tokenizer.from_docs(["emma", "ava", "mia"]))
    corpus = load_corpus(DataConfig(path=str(path), val_size=1), Tokenizer.from_docs(["emma", "ava", "mia", "bob"]))
    assert corpus.tokenizer.vocab == tuple("abeimov")  # the model's tokenizer, kept


def test_only_an_ascii_file_with_the_character_tokenizer_takes_this_path(tmp_path) -> None:
    from pathlib import Path

    from microgpt_jax.corpus.ascii import ascii_corpus

    path = Path("x.txt")
    assert ascii_corpus("émma\nava\n".encode(), DataConfig(val_size=1), None, path) is None  # not ASCII
    assert ascii_corpus(b"emma\nava\n", DataConfig(val_size=1, tokenizer="word"), None, path) is None
    assert ascii_corpus(b"emma\nava\n", DataConfig(val_size=1), Tokenizer("word", ("emma", "ava")), path) is None
    train, val, tok = ascii_corpus(b"emma\nava\nmia\n", DataConfig(val_size=1, shuffle_seed=None), None, path)
    assert list(train) == ["emma", "ava"] and list(val) == ["mia"] and tok.vocab == tuple("aeimv")
    # and load_corpus falls back to the plain path for anything else, with the same documents
    (tmp_path / "u.txt").write_text("émma\nava\n", encoding="utf-8")
    corpus = load_corpus(DataConfig(path=str(tmp_path / "u.txt"), val_size=1, shuffle_seed=None))
    assert not isinstance(corpus.train_docs, AsciiDocs) and corpus.train_docs == ["émma"]


def test_ascii_docs_behave_as_a_list_of_strings() -> None:
    from microgpt_jax.corpus.ascii import ascii_corpus

    raw = b"emma\nava\nmia\nbo\n"
    train, val, _ = ascii_corpus(raw, DataConfig(val_size=1, shuffle_seed=None), None, "x")
    assert len(train) == 3 and train[0] == "emma" and train[-1] == "mia" and train[1:] == ["ava", "mia"]
    assert list(train) == ["emma", "ava", "mia"] and train == ["emma", "ava", "mia"] and train == ("emma", "ava", "mia")
    assert train != ["emma", "ava"] and train != "emmaavamia" and train != b"emma"
    assert train + val == ["emma", "ava", "mia", "bo"] and ["x"] + val == ["x", "bo"]  # noqa: RUF005 (__radd__)
    assert repr(train) == "AsciiDocs(3 documents)"
    with pytest.raises(TypeError):
        hash(train)
    with pytest.raises(IndexError):
        train[3]


def test_a_line_longer_than_the_scanned_chunk_is_one_document(monkeypatch) -> None:
    from microgpt_jax.corpus.ascii import ascii_corpus

    monkeypatch.setattr(ascii_module, "_SPAN_CHUNK", 8)
    raw = b"ab\n" + b"c" * 50 + b"\r\nd\n  " + b"e" * 20
    train, _, _ = ascii_corpus(raw, DataConfig(val_size=0, shuffle_seed=None), None, "x")
    assert list(train) == ["ab", "c" * 50, "d", "e" * 20]


def test_an_ascii_file_of_empty_lines_or_too_few_documents_is_one_line(tmp_path) -> None:
    path = tmp_path / "blank.txt"
    path.write_bytes(b"\n \r\n\t\n")
    with pytest.raises(UserError, match="no documents"):
        load_corpus(DataConfig(path=str(path), val_size=0))
    path.write_bytes(b"emma\nava\n")
    with pytest.raises(UserError, match="`val_size` 2 leaves no training documents out of 2"):
        load_corpus(DataConfig(path=str(path), val_size=2))


def test_rows_use_the_narrowest_unsigned_type() -> None:
    from microgpt_jax.corpus.ascii import _narrowest

    assert _narrowest(255) == np.uint8 and _narrowest(256) == np.uint16
    assert _narrowest(65535) == np.uint16 and _narrowest(65536) == np.int32
