"""Corpus loading, order, split, tokenizer, and the names corpus shipped in the package."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from microgpt_jax.config import DataConfig
from microgpt_jax.corpus import ascii as ascii_module
from microgpt_jax.corpus.ascii import AsciiDocs
from microgpt_jax.corpus.documents import encode_docs, load_docs, parse_lines, shuffle_docs, split_docs
from microgpt_jax.corpus.load import load_corpus
from microgpt_jax.corpus.source import DATA_ENV, NAMES, NAMES_SHA256, resolve_data_path, sha256_file
from microgpt_jax.corpus.tokenizer import Tokenizer
from microgpt_jax.errors import UserError


def test_docs_are_nonempty_stripped_lines():
    assert [text for _, text in parse_lines(b"  emma \n\n\r\nava\r\n  \nmia")] == ["emma", "ava", "mia"]


def test_invalid_utf8_names_the_line():
    with pytest.raises(UserError, match="line 3 is not valid UTF-8"):
        parse_lines(b"emma\nava\n\xff\xfe\n")


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(UserError, match="no documents"):
        load_docs(tmp_path / "empty.txt")
    with pytest.raises(UserError, match="not found"):
        load_docs(tmp_path / "missing.txt")


def test_shuffle_is_pythons_random_shuffle():
    import random

    docs = [f"d{i}" for i in range(50)]
    expected = list(docs)
    random.seed(42)
    random.shuffle(expected)
    assert shuffle_docs(docs, 42) == expected
    assert shuffle_docs(docs, None) == docs


def test_split_holds_out_the_last_docs():
    train, val = split_docs(list("abcdefghij"), 3)
    assert train == list("abcdefg") and val == list("hij")
    assert split_docs(list("abc"), 0) == (list("abc"), [])
    with pytest.raises(UserError, match="no training documents"):
        split_docs(list("abc"), 3)


def test_tokenizer_roundtrip_and_unknown_char():
    tok = Tokenizer.from_docs(["emma", "ava"])
    assert tok.uchars == "aemv" and tok.bos == 4 and tok.vocab_size == 5
    assert tok.decode(tok.encode("mave")) == "mave"
    with pytest.raises(UserError, match="'z'"):
        tok.encode("zoe")


def test_encode_docs_pads_and_truncates_like_the_original():
    tok = Tokenizer.from_docs(["ab", "abababab"])
    tokens, n = encode_docs(["ab", "abababab"], tok, block_size=4)
    bos = tok.bos
    assert tokens.shape == (2, 5) and tokens.dtype == np.int32
    assert tokens[0].tolist() == [bos, 0, 1, bos, bos] and n[0] == 3
    assert tokens[1].tolist() == [bos, 0, 1, 0, 1] and n[1] == 4  # n = min(block_size, len(tokens) - 1)


def test_resolve_order(monkeypatch):
    monkeypatch.setenv(DATA_ENV, "/from/env.txt")
    assert resolve_data_path("/from/flag.txt") == Path("/from/flag.txt")
    assert resolve_data_path(None) == Path("/from/env.txt")
    monkeypatch.delenv(DATA_ENV)
    assert resolve_data_path(None) == NAMES


def test_the_shipped_names_corpus_is_makemores():
    assert sha256_file(NAMES) == NAMES_SHA256
    assert len(NAMES.read_text().split()) == 32_033
    assert "MIT License" in (NAMES.parent / "NAMES_LICENSE").read_text()


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
