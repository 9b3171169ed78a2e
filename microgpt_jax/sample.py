"""Sampling new documents: a compiled scan over positions with a KV cache, batched over samples."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from microgpt_jax.config import GPTConfig
from microgpt_jax.data import Tokenizer
from microgpt_jax.errors import UserError
from microgpt_jax.model import gpt_step, init_kv_cache


@partial(jax.jit, static_argnames=("config", "num_samples"))
def sample_tokens(
    params: dict[str, jax.Array], key: jax.Array, temperature: jax.Array, *, config: GPTConfig, num_samples: int
) -> jax.Array:
    """Token ids (num_samples, block_size): each sample starts at BOS, draws from softmax(logits / temperature),
    and is BOS from the first BOS on (the original stops there, or after block_size tokens)."""
    bos = config.vocab_size - 1
    dtype = params["wte"].dtype
    cache = init_kv_cache(config, num_samples, dtype)
    keys_S = jax.random.split(key, config.block_size)

    def step(carry, pos_key):
        token_N, cache, done_N = carry
        pos, key = pos_key
        logits_NxV, cache = gpt_step(params, token_N, pos, cache, config)
        nxt_N = jax.random.categorical(key, logits_NxV / temperature, axis=-1).astype(jnp.int32)
        done_N = done_N | (nxt_N == bos)
        nxt_N = jnp.where(done_N, bos, nxt_N)
        return (nxt_N, cache, done_N), nxt_N

    start = (jnp.full((num_samples,), bos, jnp.int32), cache, jnp.zeros((num_samples,), bool))
    _, tokens_SxN = jax.lax.scan(step, start, (jnp.arange(config.block_size), keys_S))
    return tokens_SxN.T


def decode_samples(tokens_NxS: np.ndarray, tokenizer: Tokenizer) -> list[str]:
    """Text of each sample, up to its first BOS."""
    out = []
    for row in np.asarray(tokens_NxS):
        ids = []
        for t in row:
            if t == tokenizer.bos:
                break
            ids.append(int(t))
        out.append(tokenizer.decode(ids))
    return out


def sample(
    params: dict[str, jax.Array],
    config: GPTConfig,
    tokenizer: Tokenizer,
    key: jax.Array,
    num_samples: int = 20,
    temperature: float = 0.5,
) -> list[str]:
    """``num_samples`` new documents at ``temperature`` (> 0; lower is more conservative)."""
    if not (isinstance(temperature, (int, float)) and np.isfinite(temperature) and temperature > 0):
        raise UserError(f"temperature must be a finite number > 0, got {temperature!r}")
    if not isinstance(num_samples, int) or num_samples < 1:
        raise UserError(f"num-samples must be a whole number >= 1, got {num_samples!r}")
    if tokenizer.vocab_size != config.vocab_size:
        raise UserError(f"tokenizer has {tokenizer.vocab_size} tokens but the model {config.vocab_size}")
    dtype = params["wte"].dtype
    tokens = sample_tokens(params, key, jnp.asarray(temperature, dtype), config=config, num_samples=num_samples)
    return decode_samples(np.asarray(tokens), tokenizer)
