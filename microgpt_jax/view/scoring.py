"""Scoring text under a model, token by token, with the training loss's own rule.

A text is scored as ``[BOS] + text + [BOS]``: every token after the first is predicted from the ones before it,
so a text of n tokens has n + 1 predictions (the last one is the end, BOS); the mean NLL is over those, what
``loss.loss_fn`` computes for one document.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from microgpt_jax.config import GPTConfig
from microgpt_jax.corpus.tokenizer import Tokenizer
from microgpt_jax.errors import UserError
from microgpt_jax.model.loss import token_nll

BOS_TEXT = "<BOS>"  # how the end-of-document token is shown


def token_text(tokenizer: Tokenizer, token: int) -> str:
    """The vocabulary entry of ``token``, or ``<BOS>``."""
    return BOS_TEXT if token == tokenizer.bos else tokenizer.vocab[token]


def encode_text(tokenizer: Tokenizer, text: str, config: GPTConfig) -> list[int]:
    """``[BOS] + ids(text) + [BOS]``; a UserError naming every character (or word) outside the vocabulary, or
    a text longer than the model's block_size allows (block_size predictions: block_size - 1 tokens)."""
    if not isinstance(text, str):
        raise UserError(f"a text to score must be a string, got {type(text).__name__}")
    if tokenizer.kind == "word" and text and (text != text.strip(" ") or "  " in text):
        raise UserError(f"{text[:60]!r}: separate words by single spaces, with none at either end")
    units = list(text) if tokenizer.kind == "char" else (text.split(" ") if text else [])
    unknown = list(dict.fromkeys(u for u in units if tokenizer.first_unknown(u) is not None))
    if unknown:
        what = "characters" if tokenizer.kind == "char" else "words"
        names = ", ".join(repr(u) for u in unknown[:20]) + (", ..." if len(unknown) > 20 else "")
        raise UserError(f"{text[:60]!r} has {what} outside the model's vocabulary: {names}")
    ids = [tokenizer.bos, *tokenizer.encode(text), tokenizer.bos]
    if len(ids) - 1 > config.block_size:
        raise UserError(
            f"{text[:60]!r} has {len(ids) - 2} tokens: the model (block_size {config.block_size}) scores at most "
            f"{config.block_size - 1}"
        )
    return ids


def _padded_rows(n: int) -> int:
    """Rows to pad a batch of n texts to (a power of two: few compiled shapes)."""
    return 1 << max(0, (n - 1).bit_length())


_token_nll = jax.jit(token_nll, static_argnames=("config",))


def score(
    params: dict[str, Any], config: GPTConfig, tokenizer: Tokenizer, texts: Sequence[str]
) -> list[dict[str, Any]]:
    """Each text scored as ``loss_fn`` scores a document: ``{"text", "nll", "tokens": [{"token", "p", "nll"}]}``
    where ``tokens`` are the predicted tokens (the text's, then ``<BOS>``), ``p`` the model's probability of each
    and ``nll`` its -log p; the text's ``nll`` is their mean. Unknown characters or words are a UserError."""
    if isinstance(texts, str):
        raise UserError("texts must be a list of strings, not one string")
    if tokenizer.vocab_size != config.vocab_size:
        raise UserError(f"tokenizer has {tokenizer.vocab_size} tokens but the model {config.vocab_size}")
    rows = [encode_text(tokenizer, t, config) for t in texts]
    if not rows:
        return []
    tokens_BxT1 = np.full((_padded_rows(len(rows)), config.block_size + 1), tokenizer.bos, np.int32)
    n_B = np.ones(tokens_BxT1.shape[0], np.int32)
    for i, ids in enumerate(rows):
        tokens_BxT1[i, : len(ids)] = ids
        n_B[i] = len(ids) - 1
    nll_BxT, _ = _token_nll(params, tokens_BxT1, n_B, config)
    nll_BxT = np.asarray(nll_BxT, np.float64)
    out = []
    for i, (text, ids) in enumerate(zip(texts, rows, strict=True)):
        nll_T = nll_BxT[i, : n_B[i]]
        tokens = [
            {"token": token_text(tokenizer, t), "p": float(np.exp(-x)), "nll": float(x)}
            for t, x in zip(ids[1:], nll_T, strict=True)
        ]
        out.append({"text": text, "nll": float(np.mean(nll_T)), "tokens": tokens})
    return out


def format_score(result: dict[str, Any]) -> list[str]:
    """What ``microgpt-jax score`` prints for one text: a header with the mean NLL, then a line per token."""
    n = len(result["tokens"])
    lines = [f"{result['text']!r}: mean NLL {result['nll']:.4f} over {n} predicted tokens (BOS + text + BOS)"]
    for i, t in enumerate(result["tokens"]):
        lines.append(f"  {i + 1:3d}  {t['token']:>12s}  p {t['p']:.4f}  -log p {t['nll']:.4f}")
    return lines
