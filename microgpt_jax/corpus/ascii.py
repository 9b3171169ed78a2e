"""An ASCII corpus with the character tokenizer, held in numpy: the file's bytes, the documents' offsets and shuffled
order, tokens encoded a column at a time into the narrowest integer type."""

from __future__ import annotations

import array
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import overload

import numpy as np

from microgpt_jax.config import DataConfig
from microgpt_jax.corpus.documents import check_encodable, split_docs
from microgpt_jax.corpus.tokenizer import Tokenizer
from microgpt_jax.errors import UserError

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


def _narrowest(largest: int) -> type[np.integer]:
    return np.uint8 if largest < 256 else np.uint16 if largest < 65536 else np.int32


def ascii_corpus(
    raw: bytes, data: DataConfig, tokenizer: Tokenizer | None, path: Path
) -> tuple[AsciiDocs, AsciiDocs, Tokenizer] | None:
    """``load_corpus``'s (train docs, held-out docs, tokenizer) for an ASCII file and the character tokenizer, in
    numpy; None for any other corpus."""
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
    return train, AsciiDocs(buf, starts, lengths, order_N[cut:]), tokenizer
