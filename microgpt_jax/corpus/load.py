"""The corpus as a run uses it: read, lower-cased, shuffled, split and tokenized as a DataConfig says (load_corpus)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from microgpt_jax.config import DataConfig
from microgpt_jax.corpus.ascii import AsciiDocs, ascii_corpus
from microgpt_jax.corpus.documents import check_encodable, encode_docs, parse_lines, shuffle_docs, split_docs
from microgpt_jax.corpus.source import resolve_data_path
from microgpt_jax.corpus.tokenizer import Tokenizer
from microgpt_jax.errors import UserError
from microgpt_jax.files import MAX_CORPUS_BYTES, read_regular


@dataclass(frozen=True)
class Corpus:
    """A corpus read, ordered and split as a ``DataConfig`` says, with its tokenizer. The documents are lists of
    strings, or ``AsciiDocs`` (the same strings, held compactly) for an ASCII corpus with the character
    tokenizer."""

    path: Path
    train_docs: Sequence[str]
    val_docs: Sequence[str]
    tokenizer: Tokenizer
    sha256: str = ""  # of the bytes read (what a run records: hashing the path again could read another file)

    def encoded(self, block_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``encode_docs`` of both splits: (train tokens_NxT1, train n_N, val tokens_NxT1, val n_N); compact
        documents encode into the narrowest integer type (training casts the rows of each step to int32)."""
        out: list[np.ndarray] = []
        for docs in (self.train_docs, self.val_docs):
            if isinstance(docs, AsciiDocs):
                out += docs.encode(self.tokenizer, block_size)
            else:
                out += encode_docs(docs, self.tokenizer, block_size)
        return out[0], out[1], out[2], out[3]


def load_corpus(data: DataConfig, tokenizer: Tokenizer | None = None) -> Corpus:
    """Read, lower-case (``data.lowercase``), shuffle and split the corpus ``data`` names.

    The tokenizer is built from all its documents (``data.tokenizer``: char, the default, or word) unless one
    is given: a trained model's own, to fine-tune it on other text. Then every document must encode with it
    (an error names the first word or character it lacks and its line), and ``data.tokenizer``, when set,
    must be its kind."""
    path = resolve_data_path(data.path)
    raw = read_regular(path, MAX_CORPUS_BYTES, "data file", "pass a text file with one document per line as `path`")
    digest = hashlib.sha256(raw).hexdigest()
    fast = ascii_corpus(raw, data, tokenizer, path)
    if fast is not None:
        return Corpus(path, *fast, digest)
    lines = parse_lines(raw, str(path))
    del raw
    if data.lowercase:
        lines = [(lineno, text.lower()) for lineno, text in lines]
    if tokenizer is None:
        tokenizer = _tokenizer_of(lines, data.tokenizer or "char", str(path))
    else:
        if data.tokenizer is not None and data.tokenizer != tokenizer.kind:
            raise UserError(
                f"`tokenizer` {data.tokenizer} differs from the model's {tokenizer.kind} tokenizer: "
                "fine-tuning keeps the model's tokenizer; drop `tokenizer`"
            )
        check_encodable(lines, tokenizer, str(path))
    docs = shuffle_docs([text for _, text in lines], data.shuffle_seed)
    train_docs, val_docs = split_docs(docs, data.val_size)
    return Corpus(path, train_docs, val_docs, tokenizer, digest)


def _tokenizer_of(lines: Sequence[tuple[int, str]], kind: str, source: str) -> Tokenizer:
    """The tokenizer built from every document; a document it cannot take (a word tokenizer's doubled space)
    is an error naming its line."""
    try:
        return Tokenizer.from_docs([text for _, text in lines], kind)  # type: ignore[arg-type]
    except UserError:
        for lineno, text in lines:
            try:
                Tokenizer.from_docs([text], kind)  # type: ignore[arg-type]
            except UserError as e:
                raise UserError(f"{source} line {lineno}: {e}") from None
        raise
