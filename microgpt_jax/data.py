"""The corpus: find or download it, read documents, shuffle and split (``load_corpus``), and the tokenizer."""

from __future__ import annotations

import functools
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


def parse_docs(raw: bytes, source: str = "data") -> list[str]:
    """Documents from a UTF-8 text: the non-empty lines, stripped. Bad UTF-8 is an error naming the line."""
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
            docs.append(text)
    if not docs:
        raise UserError(f"{source}: no documents (every line is empty): pass a text file with one document per line")
    return docs


def load_docs(path: str | os.PathLike) -> list[str]:
    """Read a corpus file into its list of documents (non-empty stripped lines)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"data file {path} not found: pass an existing file with --data PATH") from None
    except IsADirectoryError:
        raise UserError(f"data path {path} is a directory: pass a text file with --data PATH") from None
    except OSError as e:
        raise UserError(f"cannot read data file {path}: {e.strerror}") from None
    return parse_docs(raw, str(path))


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


@dataclass(frozen=True)
class Tokenizer:
    """microgpt's character tokenizer: ids 0..len(uchars)-1 are characters, BOS = len(uchars)."""

    uchars: str

    @classmethod
    def from_docs(cls, docs: Sequence[str]) -> Tokenizer:
        """uchars = the sorted unique characters of all documents."""
        return cls("".join(sorted(set("".join(docs)))))

    @property
    def bos(self) -> int:
        """The id of the Beginning/End Of Sequence token."""
        return len(self.uchars)

    @property
    def vocab_size(self) -> int:
        """Characters plus BOS."""
        return len(self.uchars) + 1

    @functools.cached_property
    def _index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.uchars)}  # made once, not per document (32,033 of them)

    def encode(self, text: str) -> list[int]:
        """Character ids of ``text``; a character outside the vocabulary is an error naming it."""
        index = self._index
        ids = []
        for c in text:
            if c not in index:
                raise UserError(f"character {c!r} is not in the vocabulary {self.uchars!r}")
            ids.append(index[c])
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text of character ids; BOS and out-of-range ids are errors."""
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.uchars):
                raise UserError(f"token id {i} is not a character id (0..{len(self.uchars) - 1})")
            out.append(self.uchars[i])
        return "".join(out)


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


def load_corpus(data: DataConfig, tokenizer: Tokenizer | None = None) -> Corpus:
    """Read, shuffle and split the corpus ``data`` names; the tokenizer is built from all its documents unless
    one is given (a model's own, to fine-tune it on other text)."""
    path = resolve_data_path(data.path)
    docs = shuffle_docs(load_docs(path), data.shuffle_seed)
    tokenizer = tokenizer or Tokenizer.from_docs(docs)
    train_docs, val_docs = split_docs(docs, data.val_size)
    return Corpus(path, train_docs, val_docs, tokenizer)
