"""The corpus: find or download it, read documents, shuffle, split and tokenize them (``load_corpus``).

``Tokenizer`` (characters or words) lives in ``microgpt_jax.tokenizer`` and is re-exported here.

An ASCII corpus with the character tokenizer (names.txt, and most large corpora people try) is read into numpy:
the file's bytes, the byte offsets of its documents and their shuffled order, tokens encoded column by column
into the narrowest integer type. A Python string per document (about 60 bytes of overhead each) would make a
100 MB corpus of 13 million names take several GB; this takes a few times the file. Other corpora take the
plain path, a list of strings. Both give the same documents, order, tokenizer and tokens.
"""

from __future__ import annotations

import array
import hashlib
import itertools
import os
import random
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import overload

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


# what str.strip() removes among ASCII bytes: \t \n \v \f \r, the separators \x1c-\x1f, and the space
_ASCII_SPACE = np.zeros(256, bool)
_ASCII_SPACE[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = True
_SPAN_CHUNK = 8 << 20  # bytes of the file scanned at once: bounds the scan's temporaries


def _ascii_spans(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Byte offsets ``(starts, ends)`` of an ASCII text's non-empty lines, stripped as str.strip() does, in file
    order (int32: a corpus is at most 1 GiB). "\r\n", "\r" and "\n" all end a line; the empty lines between
    them are not documents either way. Scanned in chunks that end at a line break."""
    starts, ends = [], []
    at, n = 0, len(buf)
    while at < n:
        stop = min(at + _SPAN_CHUNK, n)
        if stop < n:  # end the chunk after its last line break (a longer line: after the line)
            window = buf[at:stop]
            last = np.flatnonzero((window == 10) | (window == 13))
            if len(last):
                stop = at + int(last[-1]) + 1
            else:
                while stop < n:  # window by window to the line's end
                    window = buf[stop : stop + _SPAN_CHUNK]
                    more = np.flatnonzero((window == 10) | (window == 13))
                    if len(more):
                        stop += int(more[0]) + 1
                        break
                    stop = min(stop + _SPAN_CHUNK, n)
        chunk = buf[at:stop]
        breaks = np.flatnonzero((chunk == 10) | (chunk == 13))
        line_start = np.concatenate([[0], breaks + 1])
        line_end = np.concatenate([breaks, [len(chunk)]])
        solid = np.flatnonzero(~_ASCII_SPACE[chunk])  # bytes that are not stripped
        first = np.searchsorted(solid, line_start)  # the line's first solid byte, if it is before the line's end
        last = np.searchsorted(solid, line_end) - 1
        keep = first <= last
        starts.append((solid[first[keep]] + at).astype(np.int32))
        ends.append((solid[last[keep]] + 1 + at).astype(np.int32))
        at = stop
    return np.concatenate(starts or [np.zeros(0, np.int32)]), np.concatenate(ends or [np.zeros(0, np.int32)])


def _line_number(buf: np.ndarray, pos: int) -> int:
    """The editor's line number (from 1) of byte ``pos``: "\r\n" is one line break, as ``parse_lines`` counts."""
    head = buf[:pos]
    cr_lf = int(np.count_nonzero((head[:-1] == 13) & (head[1:] == 10))) if pos > 1 else 0
    return int(np.count_nonzero(head == 10) + np.count_nonzero(head == 13)) - cr_lf + 1


class AsciiDocs(Sequence[str]):
    """Documents of an ASCII corpus as a sequence of strings, held as the file's bytes and byte offsets:
    document i is ``buf[starts[d]:starts[d] + lengths[d]]`` for d = ``order[i]`` (lengths in the narrowest type
    that holds them). Compares equal to a list of the same strings."""

    def __init__(self, buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray, order: np.ndarray) -> None:
        self.buf, self.starts, self.lengths, self.order = buf, starts, lengths, order

    def __len__(self) -> int:
        return len(self.order)

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> list[str]: ...
    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        d = self.order[i]
        return self.buf[self.starts[d] : self.starts[d] + self.lengths[d]].tobytes().decode("ascii")

    def __iter__(self) -> Iterator[str]:
        return (self[k] for k in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return False
        return len(other) == len(self) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # equal to lists, which are unhashable

    def __add__(self, other: Sequence[str]) -> list[str]:
        return list(self) + list(other)

    def __radd__(self, other: Sequence[str]) -> list[str]:
        return list(other) + list(self)

    def __repr__(self) -> str:
        return f"AsciiDocs({len(self)} documents)"

    def encode(self, tokenizer: Tokenizer, block_size: int) -> tuple[np.ndarray, np.ndarray]:
        """``encode_docs``'s rows, built a column at a time with numpy, in the narrowest unsigned integer type
        that holds the ids (uint8 for any ASCII vocabulary) and the counts."""
        bos = tokenizer.bos
        lut, known = np.zeros(256, _narrowest(bos)), np.zeros(256, bool)  # byte -> id
        for i, ch in enumerate(tokenizer.vocab):
            if len(ch.encode("utf-8")) == 1:
                lut[ord(ch)], known[ord(ch)] = i, True
        starts = self.starts[self.order]
        lengths = self.lengths[self.order].astype(np.int32)
        tokens_NxT1 = np.full((len(self), block_size + 1), bos, _narrowest(bos))
        for c in range(1, min(block_size, int(lengths.max(initial=0))) + 1):  # column c: character c - 1, if any
            has = lengths >= c
            chars = self.buf[starts + np.minimum(c - 1, lengths - 1)]  # whole columns: no index arrays from masks
            if not known[chars[has]].all():
                raise UserError(f"character {chr(chars[has][~known[chars[has]]][0])!r} is not in the vocabulary")
            tokens_NxT1[:, c] = np.where(has, lut[chars], bos)
        n_N = np.minimum(lengths + 1, block_size).astype(_narrowest(block_size))
        return tokens_NxT1, n_N


def _narrowest(largest: int) -> type:
    return np.uint8 if largest < 256 else np.uint16 if largest < 65536 else np.int32


@dataclass(frozen=True)
class Corpus:
    """A corpus read, ordered and split as a ``DataConfig`` says, with its tokenizer. The documents are lists of
    strings, or ``AsciiDocs`` (the same strings, held compactly) for an ASCII corpus with the character
    tokenizer."""

    path: Path
    train_docs: Sequence[str]
    val_docs: Sequence[str]
    tokenizer: Tokenizer

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


def _ascii_corpus(raw: bytes, data: DataConfig, tokenizer: Tokenizer | None, path: Path) -> Corpus | None:
    """``load_corpus`` for an ASCII file and the character tokenizer, in numpy; None for any other corpus."""
    source = str(path)
    if data.tokenizer not in (None, "char") or (tokenizer is not None and tokenizer.kind != "char"):
        return None
    raw = raw.removeprefix(b"\xef\xbb\xbf")
    buf = np.frombuffer(raw, np.uint8)
    if len(buf) and int(buf.max()) >= 128:
        return None
    if data.lowercase:  # ASCII: bytes.lower() is str.lower()
        buf = np.frombuffer(raw.lower(), np.uint8)
    starts, ends = _ascii_spans(buf)
    if len(starts) == 0:
        raise UserError(f"{source}: no documents (every line is empty): pass a text file with one document per line")
    used = np.zeros(256, bool)  # the bytes of the file (counted a chunk at a time: bincount widens to int64)
    for at in range(0, len(buf), _SPAN_CHUNK):
        used |= np.bincount(buf[at : at + _SPAN_CHUNK], minlength=256) > 0
    used[[10, 13]] = False  # line breaks end documents
    for c in np.flatnonzero(used & _ASCII_SPACE):  # a space or tab counts only where it is inside a document
        used[c] = False
        for at in range(0, len(buf), _SPAN_CHUNK):
            where = np.flatnonzero(buf[at : at + _SPAN_CHUNK] == c) + at
            doc = np.searchsorted(starts, where, side="right") - 1
            if np.any((doc >= 0) & (where < ends[np.maximum(doc, 0)])):
                used[c] = True
                break
    if tokenizer is None:
        tokenizer = Tokenizer("char", tuple(chr(c) for c in np.flatnonzero(used)))
    else:
        missing = [c for c in np.flatnonzero(used) if chr(c) not in tokenizer.vocab]
        if missing:  # the first document (in the file) with a character the model lacks: the plain path's error
            for d in range(len(starts)):
                text = buf[starts[d] : ends[d]].tobytes().decode("ascii")
                if any(ord(ch) in missing for ch in text):
                    check_encodable([(_line_number(buf, int(starts[d])), text)], tokenizer, source)
    order = array.array("i", range(len(starts)))
    if data.shuffle_seed is not None:
        random.Random(data.shuffle_seed).shuffle(order)  # the very permutation shuffle_docs makes of a list
    order_N = np.frombuffer(order, np.int32)
    if data.val_size >= len(order_N):
        split_docs(range(len(order_N)), data.val_size)  # its error
    cut = len(order_N) - data.val_size
    lengths = ends - starts
    lengths = lengths.astype(_narrowest(int(lengths.max())))
    del ends
    train = AsciiDocs(buf, starts, lengths, order_N[:cut])
    return Corpus(path, train, AsciiDocs(buf, starts, lengths, order_N[cut:]), tokenizer)


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
    raw = read_regular(path, MAX_CORPUS_BYTES, "data file", "pass a text file, one document per line, with --data PATH")
    fast = _ascii_corpus(raw, data, tokenizer, path)
    if fast is not None:
        return fast
    lines = parse_lines(raw, str(path))
    del raw
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
