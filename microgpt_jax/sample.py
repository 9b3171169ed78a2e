"""Sampling new documents: a compiled scan over positions with a KV cache, batched over samples."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from microgpt_jax.config import GPTConfig
from microgpt_jax.data import Tokenizer
from microgpt_jax.errors import UserError
from microgpt_jax.models import forward_step, init_cache
from microgpt_jax.xla_options import YNN_OFF, jit_with_cpu_options


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
    params: dict[str, jax.Array], u_SxN: jax.Array, temperature: jax.Array, *, config: GPTConfig
) -> jax.Array:
    """Tokens (N, S) of N samples, drawing position s of sample n at the uniform u_SxN[s, n]."""
    num_samples = u_SxN.shape[1]
    bos = config.vocab_size - 1
    cache = init_cache(config, num_samples, params["wte"].dtype)

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


SAMPLE_AXIS = "samples"


@functools.cache
def _sampler(config: GPTConfig, mesh: Mesh | None) -> Callable:
    """The compiled sampling program; with a mesh, each device samples its share of the rows (shard_map: the
    rows never interact, so there is nothing to communicate). YNN fusions off on CPU (see xla_options)."""
    fn = functools.partial(_sample_scan, config=config)
    if mesh is not None:
        # check_vma off: the scan's carry starts as constants the same on every device and becomes per-device
        fn = jax.shard_map(
            fn, mesh=mesh, in_specs=(P(), P(None, SAMPLE_AXIS), P()), out_specs=P(SAMPLE_AXIS), check_vma=False
        )
    return jit_with_cpu_options(fn, YNN_OFF)


def sample_mesh(num_samples: int, devices: int | None = None) -> Mesh | None:
    """The mesh to spread ``num_samples`` samples over: every device (or the first ``devices``) when the samples
    split evenly over them, else None (one device)."""
    all_devices = jax.devices()
    n = min(devices or len(all_devices), len(all_devices))
    if n < 2 or num_samples % n:
        return None
    return Mesh(np.asarray(all_devices[:n]), (SAMPLE_AXIS,))


def sample_tokens(
    params: dict[str, jax.Array],
    key: jax.Array,
    temperature: jax.Array,
    *,
    config: GPTConfig,
    num_samples: int,
    devices: int | None = None,
) -> jax.Array:
    """Token ids (num_samples, block_size): each sample starts at BOS, draws from softmax(logits / temperature),
    and is BOS from the first BOS on (the original stops there, or after block_size tokens). Compiled once per
    (config, num_samples).

    The samples are spread over every device (or the first ``devices``) when they split evenly: on a CPU given
    a device per core (``train.set_cpu_devices``), both cores sample. A key gives the same names on any number
    of devices (all uniforms are drawn from it up front), up to float rounding in the logits."""
    dtype = params["wte"].dtype
    # one uniform per draw, all made up front (one RNG call, not one per position and token)
    u_SxN = jax.random.uniform(key, (config.block_size, num_samples), dtype)
    temperature = jnp.asarray(temperature, dtype)
    mesh = sample_mesh(num_samples, devices)
    if mesh is not None:  # the program's inputs on its devices: params replicated, uniforms split by sample
        params, temperature = jax.device_put((params, temperature), NamedSharding(mesh, P()))
        u_SxN = jax.device_put(u_SxN, NamedSharding(mesh, P(None, SAMPLE_AXIS)))
    return _sampler(config, mesh)(params, u_SxN, temperature)


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
    tokens = sample_tokens(params, key, temperature, config=config, num_samples=num_samples)
    return decode_samples(np.asarray(tokens), tokenizer)
