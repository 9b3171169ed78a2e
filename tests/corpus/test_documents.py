"""Documents: read, stripped, named by line, shuffled as Python shuffles, split, encoded as the original pads."""

from __future__ import annotations

import numpy as np
import pytest

from microgpt_jax.corpus.documents import encode_docs, load_docs, parse_lines, shuffle_docs, split_docs
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


def test_encode_docs_pads_and_truncates_like_the_original():
    tok = Tokenizer.from_docs(["ab", "abababab"])
    tokens, n = encode_docs(["ab", "abababab"], tok, block_size=4)
    bos = tok.bos
    assert tokens.shape == (2, 5) and tokens.dtype == np.int32
    assert tokens[0].tolist() == [bos, 0, 1, bos, bos] and n[0] == 3
    assert tokens[1].tolist() == [bos, 0, 1, 0, 1] and n[1] == 4  # n = min(block_size, len(tokens) - 1)
