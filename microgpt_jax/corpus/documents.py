"""Corpus documents: read, shuffle, split and encode them (``load_corpus``, in ``corpus/load.py``, puts it together).

``Tokenizer`` (characters or words) lives in ``corpus/tokenizer.py`` and is re-exported here. Where the corpus
file comes from (a path, $MICROGPT_JAX_DATA, or the names.txt that ships in ``corpus/``) is ``corpus/source.py``.

An ASCII corpus with the character tokenizer is read into numpy instead (``corpus/ascii.py``), so a large
corpus takes a few times its file size in memory rather than a Python string per document. Both paths give the
same documents, order, tokenizer and tokens.
"""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Sequence
from typing import TypeVar

import numpy as np

from microgpt_jax.corpus.tokenizer import Tokenizer
from microgpt_jax.errors import UserError
from microgpt_jax.files import MAX_CORPUS_BYTES, read_regular

T = TypeVar("T")


def parse_lines(raw: bytes, source: str = "data") -> list[tuple[int, str]]:
    """``(line number, document)`` of a UTF-8 text's non-empty lines, stripped, numbered from 1 as an editor
    does. Bad UTF-8 is an error naming the line. A byte-order mark at the start is not text (editors on Windows
    write one): it is dropped."""
    raw = raw.removeprefix(b"\xef\xbb\xbf")
    docs = []
    for lineno, line in enumerate(raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"), start=1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise UserError(
                f"{source}: line {lineno} is not valid UTF-8 (byte {e.start + 1}): save the file as UTF-8"
            ) from None
        text = text.strip()
        if text:
            docs.append((lineno, text))
    if not docs:
        raise UserError(f"{source}: no documents (every line is empty): pass a text file with one document per line")
    return docs


def load_lines(path: str | os.PathLike[str]) -> list[tuple[int, str]]:
    """A corpus file's documents (non-empty stripped lines) with their line numbers; a regular file of at most
    ``files.MAX_CORPUS_BYTES``."""
    raw = read_regular(path, MAX_CORPUS_BYTES, "data file", "pass a text file with one document per line as `path`")
    return parse_lines(raw, str(path))


def load_docs(path: str | os.PathLike[str]) -> list[str]:
    """Read a corpus file into its list of documents (non-empty stripped lines)."""
    return [text for _, text in load_lines(path)]


def shuffle_docs(docs: Sequence[str], seed: int | None = 42) -> list[str]:
    """The original's order: ``random.seed(seed); random.shuffle(docs)``. ``seed=None`` keeps file order."""
    docs = list(docs)
    if seed is not None:
        random.Random(seed).shuffle(docs)
    return docs


def split_docs(docs: Sequence[T], val_size: int = 1000) -> tuple[list[T], list[T]]:
    """Hold out the LAST ``val_size`` documents, so training starts on the same documents as the original."""
    if val_size < 0:
        raise UserError(f"`val_size` must be >= 0, got {val_size}")
    if val_size >= len(docs):
        raise UserError(
            f"`val_size` {val_size} leaves no training documents out of {len(docs)}: pass a smaller `val_size`"
        )
    cut = len(docs) - val_size
    return list(docs[:cut]), list(docs[cut:])


def encode_docs(docs: Sequence[str], tokenizer: Tokenizer, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pre-encode documents once for the device: ``[BOS] + doc + [BOS]`` cut to block_size + 1 tokens.

    Returns ``tokens_NxT1`` (int32, padded with BOS to block_size + 1 columns) and ``n_N`` (int32), the
    number of predicted positions per document, ``min(block_size, len(tokens) - 1)``: the original's rule.
    """
    bos = tokenizer.bos
    rows = [[bos, *tokenizer.encode(doc), bos][: block_size + 1] for doc in docs]
    lengths_N = np.fromiter(map(len, rows), np.int32, len(rows))
    tokens_NxT1 = np.full((len(docs), block_size + 1), bos, dtype=np.int32)
    # every row's tokens in one assignment (a mask's True entries are filled in row-major order): a numpy
    # assignment per document cost more than encoding it
    used_NxT1 = np.arange(block_size + 1) < lengths_N[:, None]
    tokens_NxT1[used_NxT1] = np.fromiter(itertools.chain.from_iterable(rows), np.int32, int(lengths_N.sum()))
    return tokens_NxT1, lengths_N - 1


def check_encodable(lines: Sequence[tuple[int, str]], tokenizer: Tokenizer, source: str) -> None:
    """Every document encodes with ``tokenizer`` (a trained model's), else a one-line UserError naming the first
    word or character it lacks and the line it is on."""
    what = "character" if tokenizer.kind == "char" else "word"
    for lineno, text in lines:
        try:
            unit = tokenizer.first_unknown(text)
        except UserError as e:  # a word tokenizer's empty word
            raise UserError(f"{source} line {lineno}: {e}") from None
        if unit is not None:
            hint = (
                " (`lowercase` makes it one)"
                if unit.lower() != unit and not tokenizer.first_unknown(unit.lower())
                else ""
            )
            raise UserError(
                f"{source} line {lineno}: {what} {unit[:40]!r} is not in the model's vocabulary "
                f"({len(tokenizer.vocab)} {what}s){hint}: fine-tune on text made of its {what}s, or train from scratch"
            )
