"""The probe: one text run through the model, keeping what the page draws (each position's next-token
distribution and, for the GPT, the attention weights of every layer and head).

The forward pass here is numpy's, in float64: for one short text it costs far less than compiling a JAX
program would (figures: docs/performance.md). It follows ``transformer.gpt``, ``mlp.mlp_forward`` and
``bigram.bigram_forward`` operation by operation; the tests hold it to ``registry.forward`` and the probe's
NLL to ``scoring.score``'s.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from microgpt_jax.config import GPTConfig
from microgpt_jax.corpus.tokenizer import Tokenizer
from microgpt_jax.view.scoring import encode_text, token_text


def _rmsnorm(x: np.ndarray) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + 1e-5)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def gpt_with_attention(params: dict[str, Any], tokens_T: np.ndarray, config: GPTConfig) -> tuple[np.ndarray, ...]:
    """The GPT's forward (``transformer.gpt`` without dropout) over one sequence, in float64, returning its attention
    weights too: ``(logits_TxV, weights_LxHxTxT)``; each weights row is a softmax over the positions up to its
    own."""
    w = {k: np.asarray(v, np.float64) for k, v in params.items()}
    T, H, D = len(tokens_T), config.n_head, config.head_dim
    x_TxC = _rmsnorm(w["wte"][tokens_T] + w["wpe"][:T])
    future_TxT = np.triu(np.ones((T, T), bool), k=1)
    weights = []
    for i in range(config.n_layer):
        h_TxC = _rmsnorm(x_TxC)
        q, k, v = (h_TxC @ w[f"layer{i}.attn_w{n}"].T for n in "qkv")
        q_HxTxD, k_HxTxD, v_HxTxD = (a.reshape(T, H, D).transpose(1, 0, 2) for a in (q, k, v))
        scores_HxTxT = q_HxTxD @ k_HxTxD.transpose(0, 2, 1) / D**0.5
        w_HxTxT = _softmax(np.where(future_TxT, -np.inf, scores_HxTxT))
        weights.append(w_HxTxT)
        attn_TxC = (w_HxTxT @ v_HxTxD).transpose(1, 0, 2).reshape(T, H * D)
        x_TxC = x_TxC + attn_TxC @ w[f"layer{i}.attn_wo"].T
        hidden = np.maximum(_rmsnorm(x_TxC) @ w[f"layer{i}.mlp_fc1"].T, 0)
        x_TxC = x_TxC + hidden @ w[f"layer{i}.mlp_fc2"].T
    weights_LxHxTxT = np.stack(weights) if weights else np.zeros((0, H, T, T))
    return x_TxC @ w["lm_head"].T, weights_LxHxTxT


def logits_and_attention(params: dict[str, Any], tokens_T: np.ndarray, config: GPTConfig) -> tuple[np.ndarray, ...]:
    """Next-token logits (T, V) of any model, and the GPT's attention weights (an empty (0, 0, T, T) array for
    the bigram and the MLP, which have none)."""
    T = len(tokens_T)
    if config.model == "gpt":
        return gpt_with_attention(params, tokens_T, config)
    wte = np.asarray(params["wte"], np.float64)
    if config.model == "bigram":
        logits_TxV = wte[tokens_T]
    else:
        hidden_Tx4C = np.maximum(wte[tokens_T] @ np.asarray(params["mlp_fc1"], np.float64).T, 0)
        logits_TxV = hidden_Tx4C @ np.asarray(params["mlp_fc2"], np.float64).T
    return logits_TxV, np.zeros((0, 0, T, T))


def probe_run(params: dict[str, Any], config: GPTConfig, tokenizer: Tokenizer, text: str) -> dict[str, Any]:
    """``text`` as ``[BOS] + text + [BOS]`` through the model: ``tokens`` (their text), ``ids``, ``probs_TxV``
    (position t's next-token distribution, t = 0..T-1 for the T = len(ids) - 1 predictions), ``nll_T`` (-log p of
    the true next token), ``nll`` (their mean: ``score``'s) and ``attention_LxHxTxT`` (GPT; empty otherwise)."""
    ids = encode_text(tokenizer, text, config)
    logits_TxV, weights_LxHxTxT = logits_and_attention(params, np.asarray(ids[:-1]), config)
    shifted_TxV = logits_TxV - np.max(logits_TxV, axis=-1, keepdims=True)
    logp_TxV = shifted_TxV - np.log(np.sum(np.exp(shifted_TxV), axis=-1, keepdims=True))
    nll_T = -logp_TxV[np.arange(len(ids) - 1), ids[1:]]
    return {
        "text": text,
        "ids": ids,
        "tokens": [token_text(tokenizer, t) for t in ids],
        "probs_TxV": np.exp(logp_TxV),
        "nll_T": nll_T,
        "nll": float(np.mean(nll_T)),
        "attention_LxHxTxT": weights_LxHxTxT,
    }
