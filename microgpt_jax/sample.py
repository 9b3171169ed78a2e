"""Sampling new documents: a compiled scan over positions with a KV cache, batched over samples."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from microgpt_jax.config import GPTConfig
from microgpt_jax.data import Tokenizer
from microgpt_jax.errors import UserError
from microgpt_jax.models import forward_step, init_cache


def draw(logits_NxV: jax.Array, u_N: jax.Array) -> jax.Array:
    """A token per row from softmax(logits) by inverting the CDF at ``u_N`` (uniform in [0, 1)), as the
    original's random.choices(weights=probs) does: the first token whose cumulative weight exceeds u * total.
    One uniform per draw, where Gumbel-max (jax.random.categorical) needs one per token: ~V times less RNG,
    which dominated sampling time on CPU."""
    w_NxV = jnp.exp(logits_NxV - jnp.max(logits_NxV, axis=-1, keepdims=True))
    V = w_NxV.shape[-1]
    cdf_NxV = w_NxV @ jnp.triu(jnp.ones((V, V), w_NxV.dtype))  # cumsum as a matmul: faster on CPU
    nxt_N = jnp.sum(cdf_NxV <= u_N[:, None] * cdf_NxV[:, -1:], axis=-1)
    return jnp.minimum(nxt_N, V - 1).astype(jnp.int32)  # u * total < total; belt and braces


def _sample_scan(
    params: dict[str, jax.Array], key: jax.Array, temperature: jax.Array, *, config: GPTConfig, num_samples: int
) -> jax.Array:
    bos = config.vocab_size - 1
    dtype = params["wte"].dtype
    cache = init_cache(config, num_samples, dtype)
    # one uniform per draw, all made up front (one RNG call, not one per position and token)
    u_SxN = jax.random.uniform(key, (config.block_size, num_samples), dtype)

    def step(carry, pos_u):
        token_N, cache, done_N = carry
        pos, u_N = pos_u
        logits_NxV, cache = forward_step(params, token_N, pos, cache, config)
        nxt_N = draw(logits_NxV / temperature, u_N)
        done_N = done_N | (nxt_N == bos)
        nxt_N = jnp.where(done_N, bos, nxt_N)
        return (nxt_N, cache, done_N), nxt_N

    start = (jnp.full((num_samples,), bos, jnp.int32), cache, jnp.zeros((num_samples,), bool))
    _, tokens_SxN = jax.lax.scan(step, start, (jnp.arange(config.block_size), u_SxN))
    return tokens_SxN.T


# XLA:CPU's YNNPACK fusions (on by default) fold this loop's attention reductions and softmaxes into library
# calls that ran ~1.5-2x slower than XLA's own loops at thousands of samples: off for sampling on CPU. An empty
# fusion-type list turns them off; it changes no number beyond float rounding. Other backends (and a jaxlib
# that lacks the option) compile with no options.
_CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


@functools.cache
def _sampler(with_cpu_options: bool):
    options = _CPU_OPTIONS if with_cpu_options else None
    return jax.jit(_sample_scan, static_argnames=("config", "num_samples"), compiler_options=options)


_cpu_options_ok = True


def sample_tokens(
    params: dict[str, jax.Array], key: jax.Array, temperature: jax.Array, *, config: GPTConfig, num_samples: int
) -> jax.Array:
    """Token ids (num_samples, block_size): each sample starts at BOS, draws from softmax(logits / temperature),
    and is BOS from the first BOS on (the original stops there, or after block_size tokens). Compiled once per
    (config, num_samples)."""
    global _cpu_options_ok
    args = (params, key, temperature)
    if _cpu_options_ok and jax.default_backend() == "cpu":
        try:
            return _sampler(True)(*args, config=config, num_samples=num_samples)
        except Exception as e:  # a jaxlib without the option: fall back to the default fusions
            if "ynn" not in str(e).lower():
                raise
            _cpu_options_ok = False
    return _sampler(False)(*args, config=config, num_samples=num_samples)


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
