"""The probe: one text run through the model, keeping what the page draws (each position's next-token
distribution and, for the GPT, the attention weights of every layer and head)."""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from microgpt_jax.config import GPTConfig
from microgpt_jax.gpt import linear, mlp, qkv_weight, rmsnorm
from microgpt_jax.models import forward
from microgpt_jax.report.score import encode_text, token_text
from microgpt_jax.tokenizer import Tokenizer


def gpt_with_attention(
    params: dict[str, jax.Array], tokens_BxT: jax.Array, config: GPTConfig
) -> tuple[jax.Array, jax.Array]:
    """The GPT's forward (``gpt.gpt`` without dropout) that also returns its attention weights:
    ``(logits_BxTxV, weights_LxBxHxTxT)``; each weights row is a softmax over the positions up to its own."""
    B, T = tokens_BxT.shape
    H, D = config.n_head, config.head_dim
    x_BxTxC = rmsnorm(params["wte"][tokens_BxT] + params["wpe"][:T])
    causal_TxT = jnp.tril(jnp.ones((T, T), dtype=bool))
    weights = []
    for i in range(config.n_layer):
        qkv_BxTx3C = linear(rmsnorm(x_BxTxC), qkv_weight(params, i))
        q, k, v = (a.reshape(B, T, H, D) for a in jnp.split(qkv_BxTx3C, 3, axis=-1))
        scores_BxHxTxT = jnp.einsum("bthd,bshd->bhts", q, k) / D**0.5
        w_BxHxTxT = jax.nn.softmax(jnp.where(causal_TxT, scores_BxHxTxT, -jnp.inf), axis=-1)
        weights.append(w_BxHxTxT)
        attn_BxTxC = jnp.einsum("bhts,bshd->bthd", w_BxHxTxT, v).reshape(B, T, H * D)
        x_BxTxC = x_BxTxC + linear(attn_BxTxC, params[f"layer{i}.attn_wo"])
        x_BxTxC = x_BxTxC + mlp(params, i, x_BxTxC)
    return linear(x_BxTxC, params["lm_head"]), jnp.stack(weights)


@partial(jax.jit, static_argnames=("config",))
def _probe_arrays(params: dict[str, jax.Array], tokens_1xT: jax.Array, config: GPTConfig):
    if config.model == "gpt":
        logits_1xTxV, weights_Lx1xHxTxT = gpt_with_attention(params, tokens_1xT, config)
        weights_LxHxTxT = weights_Lx1xHxTxT[:, 0]
    else:
        logits_1xTxV = forward(params, tokens_1xT, config)
        weights_LxHxTxT = jnp.zeros((0, 0, tokens_1xT.shape[1], tokens_1xT.shape[1]))
    return jax.nn.log_softmax(logits_1xTxV[0], axis=-1), weights_LxHxTxT


def probe(params: dict[str, Any], config: GPTConfig, tokenizer: Tokenizer, text: str) -> dict[str, Any]:
    """``text`` as ``[BOS] + text + [BOS]`` through the model: ``tokens`` (their text), ``ids``, ``probs_TxV``
    (position t's next-token distribution, t = 0..T-1 for the T = len(ids) - 1 predictions), ``nll_T`` (-log p of
    the true next token), ``nll`` (their mean: ``score``'s) and ``attention_LxHxTxT`` (GPT; empty otherwise)."""
    ids = encode_text(tokenizer, text, config)
    inputs_1xT = np.asarray([ids[:-1]], np.int32)
    logp_TxV, weights_LxHxTxT = _probe_arrays(params, inputs_1xT, config)
    logp_TxV = np.asarray(logp_TxV, np.float64)
    nll_T = -logp_TxV[np.arange(len(ids) - 1), ids[1:]]
    return {
        "text": text,
        "ids": ids,
        "tokens": [token_text(tokenizer, t) for t in ids],
        "probs_TxV": np.exp(logp_TxV),
        "nll_T": nll_T,
        "nll": float(np.mean(nll_T)),
        "attention_LxHxTxT": np.asarray(weights_LxHxTxT, np.float64),
    }
