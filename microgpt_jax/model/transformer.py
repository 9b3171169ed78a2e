"""microgpt's GPT as pure functions of (params, tokens).

Parameters are a flat dict with the original's state_dict names, each matrix (nout, nin), so
``linear(x, w)`` is ``x @ w.T``. Shapes are in the names: B batch, T time, C n_embd, H heads,
D head_dim, V vocab. Follows microgpt.py: token + position embedding, rmsnorm, then per layer a
pre-norm causal multi-head attention and a pre-norm ReLU MLP, both residual; lm_head on top.
No biases, no gains.

Dropout (off by default, as in the original) is a function passed in, ``dropout_fn(key, rate)``: the forward
stays a pure function of its arguments, the PRNG key among them, and without it the program is the original's.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from microgpt_jax.config import GPTConfig
from microgpt_jax.model.dtypes import default_float

Dropout = Callable[[jax.Array, int], jax.Array]  # (x, site) -> x with some units zeroed; each use has its own site


def no_dropout(x: jax.Array, site: int) -> jax.Array:
    """Evaluation, sampling and the original's training: every unit kept."""
    return x


def mix32(x: jax.Array) -> jax.Array:
    """A bijective avalanche of uint32 words (the "lowbias32" integer hash): every output bit depends on every
    input bit. Two multiplies and three shifts per word."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def dropout_fn(key: jax.Array, rate: float | jax.Array) -> Dropout:
    """Inverted dropout with PRNG ``key``: each unit kept with probability 1 - rate and scaled by 1 / (1 - rate),
    so its expected value is unchanged.

    Each site of the forward pass draws two uint32 words from ``fold_in(key, site)``; unit i's 32 random bits are
    ``mix32(mix32(i ^ w0) + w1)``, a counter hash keyed by those words (dropout needs independent coin flips,
    not a cipher; threefry for every unit cost as much as the rest of the step: docs/performance.md). A unit is
    dropped when its bits fall below ``rate`` * 2^32, so the rate is exact to 2^-24."""
    threshold = jnp.minimum(jnp.asarray(rate, jnp.float32) * 2.0**32, 4294967040.0).astype(jnp.uint32)

    def drop(x: jax.Array, site: int) -> jax.Array:
        w = jax.random.bits(jax.random.fold_in(key, site), (2,), jnp.uint32)
        unit = jax.lax.iota(jnp.uint32, x.size).reshape(x.shape)
        keep = mix32(mix32(unit ^ w[0]) + w[1]) >= threshold
        return jnp.where(keep, x / (1 - rate), 0).astype(x.dtype)

    return drop


def param_shapes(config: GPTConfig) -> dict[str, tuple[int, int]]:
    """The state_dict's names and (nout, nin) shapes, in the original's order."""
    C, V = config.n_embd, config.vocab_size
    shapes = {"wte": (V, C), "wpe": (config.block_size, C), "lm_head": (V, C)}
    for i in range(config.n_layer):
        for name in ("attn_wq", "attn_wk", "attn_wv", "attn_wo"):
            shapes[f"layer{i}.{name}"] = (C, C)
        shapes[f"layer{i}.mlp_fc1"] = (4 * C, C)
        shapes[f"layer{i}.mlp_fc2"] = (C, 4 * C)
    return shapes


def rmsnorm(x: jax.Array) -> jax.Array:
    """x / sqrt(mean(x^2) + 1e-5) over the last axis (no learned gain)."""
    return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + 1e-5)


def linear(x: jax.Array, w: jax.Array) -> jax.Array:
    """The original's linear(x, w) for w of shape (nout, nin): x @ w.T."""
    return x @ w.T


def qkv_weight(params: dict[str, jax.Array], layer: int) -> jax.Array:
    """attn_wq, attn_wk and attn_wv of one layer stacked into one (3C, C) matrix.

    Speed, not maths: one matmul for q, k and v (and one per gradient) instead of three, as each XLA op has a
    fixed overhead (docs/performance.md); the params stay separate keys (the original's state_dict)."""
    return jnp.concatenate([params[f"layer{layer}.attn_w{n}"] for n in "qkv"])


def mlp(params: dict[str, jax.Array], layer: int, x: jax.Array) -> jax.Array:
    """The MLP block of one layer, its residual branch: pre-norm, expand 4x, ReLU, project back."""
    h = jax.nn.relu(linear(rmsnorm(x), params[f"layer{layer}.mlp_fc1"]))
    return linear(h, params[f"layer{layer}.mlp_fc2"])


def attention_scores(q_BxTxHxD: jax.Array, k_BxSxHxD: jax.Array) -> jax.Array:
    """q . k for every head and every (query t, key s) pair: (B, T, H, D) x (B, S, H, D) -> (B, H, T, S).

    Speed, not maths: the value is the plain einsum's, bit for bit (s_q, plus a zero); what differs is the
    gradient's route, still all jax.grad. The plain einsum's keys' gradient is a contraction that XLA:CPU runs
    as a slow generic dot, so q's gradient flows through s_q and k's through s_k, the same scores computed
    transposed (B, H, S, T) behind an optimization_barrier: the keys' gradient is then an ordinary matmul.
    Used from batch 2 up; at batch 1 the extra ops cost more than they save (figures: docs/performance.md).
    """
    if q_BxTxHxD.shape[0] == 1:
        return jnp.einsum("bthd,bshd->bhts", q_BxTxHxD, k_BxSxHxD)
    sg = jax.lax.stop_gradient
    s_q_BxHxTxS = jnp.einsum("bthd,bshd->bhts", q_BxTxHxD, sg(k_BxSxHxD))
    s_k_BxHxSxT = jax.lax.optimization_barrier(jnp.einsum("bshd,bthd->bhst", k_BxSxHxD, sg(q_BxTxHxD)))
    s_k_BxHxTxS = jnp.swapaxes(s_k_BxHxSxT, -1, -2)
    return s_q_BxHxTxS + (s_k_BxHxTxS - sg(s_k_BxHxTxS))


def attention(
    params: dict[str, jax.Array], layer: int, x_BxTxC: jax.Array, config: GPTConfig, dropout: Dropout = no_dropout
) -> jax.Array:
    """The causal multi-head attention block of one layer, its residual branch: pre-norm, q k v, softmax of
    the scaled scores over the past (``dropout`` applied to those weights), the weighted values, the output
    projection."""
    B, T, _ = x_BxTxC.shape
    H, D = config.n_head, config.head_dim
    qkv_BxTx3C = linear(rmsnorm(x_BxTxC), qkv_weight(params, layer))
    q_BxTxHxD, k_BxTxHxD, v_BxTxHxD = (a.reshape(B, T, H, D) for a in jnp.split(qkv_BxTx3C, 3, axis=-1))
    scores_BxHxTxT = attention_scores(q_BxTxHxD, k_BxTxHxD) / D**0.5
    # a position attends to itself and the past only: the original's growing keys list
    causal_TxT = jnp.tril(jnp.ones((T, T), dtype=bool))
    weights_BxHxTxT = jax.nn.softmax(jnp.where(causal_TxT, scores_BxHxTxT, -jnp.inf), axis=-1)
    weights_BxHxTxT = dropout(weights_BxHxTxT, 3 * layer + 1)
    attn_BxTxC = jnp.einsum("bhts,bshd->bthd", weights_BxHxTxT, v_BxTxHxD).reshape(B, T, H * D)
    return linear(attn_BxTxC, params[f"layer{layer}.attn_wo"])


def gpt(
    params: dict[str, jax.Array], tokens_BxT: jax.Array, config: GPTConfig, dropout: Dropout = no_dropout
) -> jax.Array:
    """Logits for every position of a batch of causal sequences: (B, T) int tokens -> (B, T, V). ``dropout``
    (training only) acts on the embedding, the attention weights and each block's residual branch."""
    T = tokens_BxT.shape[1]
    x_BxTxC = dropout(rmsnorm(params["wte"][tokens_BxT] + params["wpe"][:T]), 0)
    for i in range(config.n_layer):
        x_BxTxC = x_BxTxC + dropout(attention(params, i, x_BxTxC, config, dropout), 3 * i + 2)  # 1) attention
        x_BxTxC = x_BxTxC + dropout(mlp(params, i, x_BxTxC), 3 * i + 3)  # 2) MLP block
    return linear(x_BxTxC, params["lm_head"])


def init_kv_cache(config: GPTConfig, batch: int, dtype: jnp.dtype | None = None) -> dict[str, jax.Array]:
    """An empty fixed-size key/value cache (the original's ``keys``/``values`` lists), (L, B, block_size, C)."""
    dtype = dtype or default_float()
    shape = (config.n_layer, batch, config.block_size, config.n_embd)
    return {"keys": jnp.zeros(shape, dtype), "values": jnp.zeros(shape, dtype)}


def gpt_step(
    params: dict[str, jax.Array], token_B: jax.Array, pos: jax.Array, cache: dict[str, jax.Array], config: GPTConfig
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """One token per sequence at position ``pos`` (a scalar), as the original's gpt(token_id, pos_id, keys,
    values): appends this position's key and value to the cache and returns (logits_BxV, new cache)."""
    B = token_B.shape[0]
    H, D, S = config.n_head, config.head_dim, config.block_size
    x_BxC = rmsnorm(params["wte"][token_B] + params["wpe"][pos])
    seen_S = jnp.arange(S) <= pos  # cache slots filled so far, this one included
    keys, values = cache["keys"], cache["values"]
    for i in range(config.n_layer):
        q_BxC, k_BxC, v_BxC = jnp.split(linear(rmsnorm(x_BxC), qkv_weight(params, i)), 3, axis=-1)
        q_BxHxD = q_BxC.reshape(B, H, D)
        keys = keys.at[i, :, pos].set(k_BxC)
        values = values.at[i, :, pos].set(v_BxC)
        k_BxSxHxD = keys[i].reshape(B, S, H, D)
        v_BxSxHxD = values[i].reshape(B, S, H, D)
        # one query per sequence against its cache as multiply-and-sum in the cache's own layout: XLA fuses
        # these into single passes, where einsums would transpose the whole cache and run B*H tiny matmuls
        scores_BxSxH = jnp.sum(q_BxHxD[:, None] * k_BxSxHxD, axis=-1) / D**0.5
        weights_BxSxH = jax.nn.softmax(jnp.where(seen_S[:, None], scores_BxSxH, -jnp.inf), axis=1)
        attn_BxC = jnp.sum(weights_BxSxH[..., None] * v_BxSxHxD, axis=1).reshape(B, H * D)
        x_BxC = x_BxC + linear(attn_BxC, params[f"layer{i}.attn_wo"])
        x_BxC = x_BxC + mlp(params, i, x_BxC)
    return linear(x_BxC, params["lm_head"]), {"keys": keys, "values": values}
