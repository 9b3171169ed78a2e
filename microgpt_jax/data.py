"""The corpus: find or download it, read documents, shuffle, split and tokenize them (``load_corpus``).

``Tokenizer`` (characters or words) lives in ``microgpt_jax.tokenizer`` and is re-exported here."""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from microgpt_jax.config import DataConfig
from microgpt_jax.errors import UserError
from microgpt_jax.files import MAX_CORPUS_BYTES, read_regular
from microgpt_jax.tokenizer import Tokenizer

NAMES_URL = "https://raw.githubusercontent.com/karpathy/makemore/988aa59/names.txt"
NAMES_SHA256 = "0a30b5557f192f32ab962680889aac5f6fda0f4cecf40a6d0b5694f58ea8cc4d"
DATA_ENV = "MICROGPT_JAX_DATA"
DEFAULT_DATA = Path("data") / "names.txt"


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(url: str, dest: str | os.PathLike, sha256: str | None = NAMES_SHA256, timeout: float = 30.0) -> Path:
    """Fetch ``url`` into ``dest`` through a temp file and a rename, checking the SHA-256 first.

    Raises UserError (with how to pass --data instead) when the network fails or the checksum differs;
    ``dest`` is never left half-written.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    try:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as f:
                while block := resp.read(1 << 16):
                    f.write(block)
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            raise UserError(
                f"could not download {url} ({reason}): save names.txt yourself and pass --data PATH (or set {DATA_ENV})"
            ) from None
        if sha256 is not None:
            got = sha256_file(tmp)
            if got != sha256:
                raise UserError(
                    f"downloaded {url} has SHA-256 {got}, expected {sha256}: "
                    "the file is corrupt or changed; pass a good copy with --data PATH"
                )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def resolve_data_path(data: str | os.PathLike | None = None, default: str | os.PathLike = DEFAULT_DATA) -> Path:
    """Where the corpus comes from, first match wins: ``data`` (the --data flag), $MICROGPT_JAX_DATA,
    ``default`` (data/names.txt) if it exists; otherwise names.txt is downloaded to ``default``."""
    if data is not None:
        return Path(data)
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env)
    default = Path(default)
    if default.exists():
        return default
    print(f"downloading names.txt to {default} ...", flush=True)
    return download(NAMES_URL, default)


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


def parse_docs(raw: bytes, source: str = "data") -> list[str]:
    """Documents from a UTF-8 text: the non-empty lines, stripped. Bad UTF-8 is an error naming the line."""
    return [text for _, text in parse_lines(raw, source)]


def load_lines(path: str | os.PathLike) -> list[tuple[int, str]]:
    """A corpus file's documents (non-empty stripped lines) with their line numbers; a regular file of at most
    ``files.MAX_CORPUS_BYTES``."""
    raw = read_regular(path, MAX_CORPUS_BYTES, "data file", "pass a text file, one document per line, with --data PATH")
    return parse_lines(raw, str(path))


def load_docs(path: str | os.PathLike) -> list[str]:
    """Read a corpus file into its list of documents (non-empty stripped lines)."""
    return [text for _, text in load_lines(path)]


def shuffle_docs(docs: Sequence[str], seed: int | None = 42) -> list[str]:
    """The original's order: ``random.seed(seed); random.shuffle(docs)``. ``seed=None`` keeps file order."""
    docs = list(docs)
    if seed is not None:
        random.Random(seed).shuffle(docs)
    return docs


def split_docs(docs: Sequence[str], val_size: int = 1000) -> tuple[list[str], list[str]]:
    """Hold out the LAST ``val_size`` documents, so training starts on the same documents as the original."""
    if val_size < 0:
        raise UserError(f"--val-size must be >= 0, got {val_size}")
    if val_size >= len(docs):
        raise UserError(
            f"--val-size {val_size} leaves no training documents out of {len(docs)}: pass a smaller --val-size"
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


@dataclass(frozen=True)
class Corpus:
    """A corpus read, ordered and split as a ``DataConfig`` says, with its tokenizer."""

    path: Path
    train_docs: list[str]
    val_docs: list[str]
    tokenizer: Tokenizer

    def encoded(self, block_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``encode_docs`` of both splits: (train tokens_NxT1, train n_N, val tokens_NxT1, val n_N)."""
        return (
            *encode_docs(self.train_docs, self.tokenizer, block_size),
            *encode_docs(self.val_docs, self.tokenizer, block_size),
        )


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
                " (--lowercase makes it one)"
                if unit.lower() != unit and not tokenizer.first_unknown(unit.lower())
                else ""
            )
            raise UserError(
                f"{source} line {lineno}: {what} {unit[:40]!r} is not in the model's vocabulary "
                f"({len(tokenizer.vocab)} {what}s){hint}: fine-tune on text made of its {what}s, or train from scratch"
            )


def load_corpus(data: DataConfig, tokenizer: Tokenizer | None = None) -> Corpus:
    """Read, lower-case (``data.lowercase``), shuffle and split the corpus ``data`` names.

    The tokenizer is built from all its documents (``data.tokenizer``: char, the default, or word) unless one
    is given: a trained model's own, to fine-tune it on other text. Then every document must encode with it
    (an error names the first word or character it lacks and its line), and ``data.tokenizer``, when set,
    must be its kind."""
    path = resolve_data_path(data.path)
    lines = load_lines(path)
    if data.lowercase:
        lines = [(lineno, text.lower()) for lineno, text in lines]
    if tokenizer is None:
        tokenizer = _tokenizer_of(lines, data.tokenizer or "char", str(path))
    else:
        if data.tokenizer is not None and data.tokenizer != tokenizer.kind:
            raise UserError(
                f"--tokenizer {data.tokenizer} differs from the model's {tokenizer.kind} tokenizer: "
                "fine-tuning keeps the model's tokenizer; drop --tokenizer"
            )
        check_encodable(lines, tokenizer, str(path))
    docs = shuffle_docs([text for _, text in lines], data.shuffle_seed)
    train_docs, val_docs = split_docs(docs, data.val_size)
    return Corpus(path, train_docs, val_docs, tokenizer)
