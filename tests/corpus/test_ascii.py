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
