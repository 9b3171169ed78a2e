"""Tokenizers: characters (microgpt's names) or words (sentences), one frozen dataclass for both.

Ids 0..len(vocab)-1 are the vocabulary's entries in sorted order and BOS = len(vocab) marks both ends of a
document. The word kind splits on single spaces (``text.split(" ")``), as "LLMs, the Hard Way" does, so
``decode(encode(text)) == text`` for every text it accepts; a text with two spaces in a row (an empty word) is
an error rather than silently respaced.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from microgpt_jax.config import TOKENIZERS as KINDS
from microgpt_jax.errors import UserError

TokenizerKind = Literal["char", "word"]
MAX_VOCAB = 1_000_000  # entries accepted from a file's metadata (untrusted)
MAX_WORD_CHARS = 1_000  # characters in one word accepted from a file's metadata


def _split_words(text: str) -> list[str]:
    """The words of ``text``: split on single spaces. An empty word (a leading, trailing or doubled space)
    is an error naming where it is."""
    words = text.split(" ")
    for i, word in enumerate(words):
        if not word:
            raise UserError(
                f"{text[:60]!r} has an empty word at word {i + 1} (a leading, trailing or doubled space): "
                "separate words by single spaces"
            )
    return words


def _units(text: str, kind: str) -> list[str]:
    """``text`` cut into vocabulary entries: its characters or its words (none for the empty text)."""
    if not text:
        return []
    return list(text) if kind == "char" else _split_words(text)


@dataclass(frozen=True)
class Tokenizer:
    """A character or word tokenizer: ids 0..len(vocab)-1 are ``vocab``'s entries, BOS = len(vocab).

    ``kind`` is "char" (each entry one character) or "word" (each entry a non-empty string without spaces);
    ``vocab`` is a tuple of distinct strings, sorted when built by ``from_docs`` (``Tokenizer("char", "abc")``
    takes the characters of a string). The char kind is microgpt's tokenizer, ``uchars`` its string.
    """

    kind: TokenizerKind
    vocab: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UserError(f"tokenizer kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if isinstance(self.vocab, str) and self.kind == "char":  # Tokenizer("char", "abc"): uchars
            object.__setattr__(self, "vocab", tuple(self.vocab))
        if not isinstance(self.vocab, tuple):
            raise UserError(f"tokenizer vocab must be a tuple of strings, got {_type(self.vocab)}")
        _check_vocab(self.vocab, self.kind, "tokenizer")

    @classmethod
    def from_docs(cls, docs: Sequence[str], kind: TokenizerKind = "char") -> Tokenizer:
        """The tokenizer of a corpus: its sorted unique characters (``kind="char"``, microgpt's uchars) or
        words (``kind="word"``, split on single spaces)."""
        if kind not in KINDS:
            raise UserError(f"tokenizer kind must be one of {', '.join(KINDS)}, got {kind!r}")
        units: set[str] = set()
        for doc in docs:
            units.update(_units(doc, kind))
        return cls(kind, tuple(sorted(units)))

    @property
    def bos(self) -> int:
        """The id of the Beginning/End Of Sequence token."""
        return len(self.vocab)

    @property
    def vocab_size(self) -> int:
        """Vocabulary entries plus BOS: the model's number of tokens."""
        return len(self.vocab) + 1

    @property
    def uchars(self) -> str:
        """The character vocabulary as one string (what files stored before the word kind); char kind only."""
        if self.kind != "char":
            raise UserError("a word tokenizer has no character string (uchars): use to_meta() for its vocabulary")
        return "".join(self.vocab)

    @functools.cached_property
    def _index(self) -> dict[str, int]:
        """Entry -> id, built on first use (cached_property writes the instance dict, so frozen is fine)."""
        return {unit: i for i, unit in enumerate(self.vocab)}

    def encode(self, text: str) -> list[int]:
        """Ids of ``text``'s characters or words (no BOS added); an entry outside the vocabulary is an error
        naming it."""
        index = self._index
        ids = []
        for unit in _units(text, self.kind):
            i = index.get(unit)
            if i is None:
                what = "character" if self.kind == "char" else "word"
                raise UserError(f"{what} {unit!r} is not in the vocabulary ({len(self.vocab)} {what}s)")
            ids.append(i)
        return ids

    def first_unknown(self, text: str) -> str | None:
        """The first character or word of ``text`` outside the vocabulary, or None when it all encodes."""
        index = self._index
        return next((unit for unit in _units(text, self.kind) if unit not in index), None)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ids: characters joined with "", words with " ". BOS and out-of-range ids are errors."""
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.vocab):
                raise UserError(f"token id {i} is not a {self.kind} id (0..{len(self.vocab) - 1})")
            out.append(self.vocab[i])
        return ("" if self.kind == "char" else " ").join(out)

    def to_meta(self) -> dict[str, Any]:
        """The JSON-able form saved with a model: ``{"kind": ..., "vocab": [entries]}``."""
        return {"kind": self.kind, "vocab": list(self.vocab)}

    @classmethod
    def from_meta(cls, obj: object) -> Tokenizer:
        """A tokenizer from ``to_meta()``'s form or the legacy one (a plain string of characters, microgpt's
        uchars), read from an untrusted file: anything else is a one-line UserError."""
        if isinstance(obj, str):
            if len(obj) > MAX_VOCAB:
                raise UserError(f"bad vocabulary: {len(obj)} characters, at most {MAX_VOCAB}")
            return cls("char", tuple(obj))
        if not isinstance(obj, dict):
            raise UserError(f"bad vocabulary: expected a string or an object with kind and vocab, got {_type(obj)}")
        unknown = sorted(set(obj) - {"kind", "vocab"})
        if unknown:
            raise UserError(f"bad vocabulary: unknown field {unknown[0]!r} (expected kind and vocab)")
        kind, vocab = obj.get("kind"), obj.get("vocab")
        if kind not in KINDS:
            raise UserError(f"bad vocabulary: kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if not isinstance(vocab, (list, tuple)):
            raise UserError(f"bad vocabulary: vocab must be a list of strings, got {_type(vocab)}")
        if len(vocab) > MAX_VOCAB:
            raise UserError(f"bad vocabulary: {len(vocab)} entries, at most {MAX_VOCAB}")
        return cls(kind, tuple(vocab))


def as_tokenizer(obj: Tokenizer | str | dict[str, Any]) -> Tokenizer:
    """A Tokenizer as it is; anything else read by ``Tokenizer.from_meta`` (a uchars string is a char one)."""
    return obj if isinstance(obj, Tokenizer) else Tokenizer.from_meta(obj)


def _type(obj: object) -> str:
    """A short name of ``obj``'s JSON type for error messages."""
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(obj), type(obj).__name__
    )


def _check_vocab(vocab: tuple[object, ...], kind: str, source: str) -> None:
    """Raise a one-line UserError unless ``vocab`` holds distinct strings fit for ``kind``."""
    if len(vocab) > MAX_VOCAB:
        raise UserError(f"bad {source} vocabulary: {len(vocab)} entries, at most {MAX_VOCAB}")
    seen: set[str] = set()
    for i, unit in enumerate(vocab):
        if not isinstance(unit, str):
            raise UserError(f"bad {source} vocabulary: entry {i} is {_type(unit)}, not a string")
        if kind == "char" and len(unit) != 1:
            raise UserError(f"bad {source} vocabulary: entry {i} ({unit[:20]!r}) is not one character")
        if kind == "word":
            if not unit or " " in unit:
                raise UserError(f"bad {source} vocabulary: entry {i} ({unit[:20]!r}) is empty or has a space")
            if len(unit) > MAX_WORD_CHARS:
                raise UserError(f"bad {source} vocabulary: entry {i} has {len(unit)} characters (>{MAX_WORD_CHARS})")
        if unit in seen:
            raise UserError(f"bad {source} vocabulary: entry {i} ({unit[:20]!r}) is repeated")
        seen.add(unit)
