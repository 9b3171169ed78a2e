"""Sampling new documents: a compiled scan over positions with a KV cache, batched over samples."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from microgpt_jax.config import GPTConfig
from microgpt_jax.corpus.tokenizer import Tokenizer
from microgpt_jax.errors import UserError
from microgpt_jax.model.registry import forward_step, init_cache
from microgpt_jax.model.types import Cache
from microgpt_jax.runtime import distributed, executables, threefry
from microgpt_jax.runtime.devices import SAMPLE_AXIS, device_count, make_mesh, spans_processes
from microgpt_jax.runtime.xla_options import FAST_COMPILE, O2, YNN_OFF, jit_with_cpu_options
from microgpt_jax.storage.params import check_params


def check_filters(top_k: int, top_p: float, vocab_size: int) -> tuple[int, float]:
    """Validated ``(top_k, top_p)`` for a vocabulary of ``vocab_size`` tokens, a UserError otherwise: top_k a
    whole number >= 0 (0 = off), top_p a number in (0, 1] (1 = off). A top_k >= vocab_size keeps every token,
    so it becomes 0 (as in the book, which filters only when k < vocab size): off is one compiled program."""
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 0:
        raise UserError(f"top-k must be a whole number >= 0 (0 = off), got {top_k!r}")
    if isinstance(top_p, bool) or not isinstance(top_p, (int, float, np.integer, np.floating)) or not 0 < top_p <= 1:
        raise UserError(f"top-p must be a number > 0 and <= 1 (1 = off), got {top_p!r}")
    top_k, top_p = int(top_k), float(top_p)
    return (0 if top_k >= vocab_size else top_k), top_p


CDF_MATMUL_MAX_V = 1024  # up to this vocabulary the CDF is a matmul with a VxV triangle (at most 4 MiB in float32)


def _cdf(w_NxV: jax.Array) -> jax.Array:
    """Cumulative sums of the weights along the vocabulary: a matmul with a triangle of ones for a vocabulary of
    at most ``CDF_MATMUL_MAX_V`` (faster on CPU: docs/performance.md), else cumsum, so memory stays O(N x V)."""
    V = w_NxV.shape[-1]
    if V > CDF_MATMUL_MAX_V:
        return jnp.cumsum(w_NxV, axis=-1)
    return w_NxV @ jnp.triu(jnp.ones((V, V), w_NxV.dtype))


def _invert_cdf(s_NxV: jax.Array, u_N: jax.Array) -> jax.Array:
    """A token per row from softmax(s): the first whose cumulative weight exceeds u * total (no filters)."""
    w_NxV = jnp.exp(s_NxV - jnp.max(s_NxV, axis=-1, keepdims=True))
    V = w_NxV.shape[-1]
    cdf_NxV = _cdf(w_NxV)
    nxt_N = jnp.sum(cdf_NxV <= u_N[:, None] * cdf_NxV[:, -1:], axis=-1)
    return jnp.minimum(nxt_N, V - 1).astype(jnp.int32)  # u * total < total; belt and braces


def _top_p_keep(s_NxV: jax.Array, w_NxV: jax.Array, top_p: float) -> jax.Array:
    """The nucleus of each row: walking the tokens from the highest score down (ties: lower id first), keep
    each while the probability of the tokens before it is <= top_p, so the token that crosses top_p is kept and
    so is the top token always. Probabilities are w / sum(w): those of the tokens top-k left."""
    order_NxV = jnp.argsort(-jnp.where(w_NxV > 0, s_NxV, -jnp.inf), axis=-1, stable=True)
    p_sorted_NxV = jnp.take_along_axis(w_NxV, order_NxV, axis=-1) / jnp.sum(w_NxV, axis=-1, keepdims=True)
    before_NxV = jnp.concatenate(
        [jnp.zeros_like(p_sorted_NxV[:, :1]), jnp.cumsum(p_sorted_NxV[:, :-1], axis=-1)], axis=-1
    )
    n_keep_N = jnp.sum(before_NxV <= top_p, axis=-1)  # a prefix of the order: before only grows
    rank_NxV = jnp.argsort(order_NxV, axis=-1)  # each token's place in the order
    return rank_NxV < n_keep_N[:, None]


def _draw_filtered(s_NxV: jax.Array, u_N: jax.Array, top_k: int, top_p: float) -> jax.Array:
    """A token per row from softmax(s) cut by top-k then top-p and renormalised, by inverting the CDF."""
    w_NxV = jnp.exp(s_NxV - jnp.max(s_NxV, axis=-1, keepdims=True))
    if top_k:  # every token scoring at least the k-th highest (ties at the cut all stay)
        kth_N = jax.lax.top_k(s_NxV, top_k)[0][:, -1]
        w_NxV = jnp.where(s_NxV >= kth_N[:, None], w_NxV, 0)
    if top_p < 1:
        w_NxV = jnp.where(_top_p_keep(s_NxV, w_NxV, top_p), w_NxV, 0)
    cdf_NxV = _cdf(w_NxV)
    # the first kept token whose cumulative weight exceeds u * total; asking for w > 0 means a cut token can
    # never be drawn, even where rounding makes the CDF step at one
    hit_NxV = (w_NxV > 0) & (cdf_NxV > u_N[:, None] * cdf_NxV[:, -1:])
    V = w_NxV.shape[-1]
    last_N = V - 1 - jnp.argmax((w_NxV > 0)[:, ::-1], axis=-1)  # where no hit (rounding): the last kept token
    return jnp.where(jnp.any(hit_NxV, axis=-1), jnp.argmax(hit_NxV, axis=-1), last_N).astype(jnp.int32)


def draw(
    logits_NxV: jax.Array,
    u_N: jax.Array,
    temperature: jax.Array | float = 1.0,
    *,
    top_k: int = 0,
    top_p: float = 1.0,
) -> jax.Array:
    """A token per row from softmax(logits / temperature), cut to the ``top_k`` highest scores (0 = off) and
    then to the nucleus of probability ``top_p`` (1 = off), renormalised, at the uniforms ``u_N`` in [0, 1).

    The order is the book's ("LLMs, the Hard Way"): temperature, top-k, top-p on the probabilities top-k left,
    sample. Top-k keeps ties at the k-th score; top-p keeps the token that crosses p (see ``_top_p_keep``). With
    the filters off it samples as the original's random.choices(weights=probs): the first token whose
    cumulative weight exceeds u * total. One uniform per draw, not Gumbel-max's one per token (why:
    docs/performance.md).

    A temperature so small that the scaled logits overflow (or round to 0 in the dtype) draws the limit as the
    temperature goes to 0, the argmax of the logits, instead of the NaNs' token 0. ``top_k`` and ``top_p`` are
    Python numbers (each setting is its own program); off, the program is the one without filters."""
    top_k, top_p = check_filters(top_k, top_p, logits_NxV.shape[-1])
    s_NxV = logits_NxV / temperature
    if top_k == 0 and top_p == 1:
        nxt_N = _invert_cdf(s_NxV, u_N)
    else:
        nxt_N = _draw_filtered(s_NxV, u_N, top_k, top_p)
    overflow_N = ~jnp.isfinite(jnp.max(s_NxV, axis=-1))  # +inf, NaN (0/0), or all -inf
    return jnp.where(overflow_N, jnp.argmax(logits_NxV, axis=-1).astype(jnp.int32), nxt_N)


def _sample_scan(
    params: dict[str, jax.Array],
    u_SxN: jax.Array,
    temperature: jax.Array,
    forced_S: jax.Array | None = None,
    *,
    config: GPTConfig,
    top_k: int = 0,
    top_p: float = 1.0,
) -> jax.Array:
    """Tokens (N, S) of N samples, drawing position s of sample n at the uniform u_SxN[s, n] (see ``draw``);
    where ``forced_S[s]`` >= 0 (a prefix), that token is taken instead of a draw."""
    num_samples = u_SxN.shape[1]
    bos = config.vocab_size - 1
    temperature = temperature.astype(params["wte"].dtype)
    cache = init_cache(config, num_samples, params["wte"].dtype)

    def step(
        carry: tuple[jax.Array, Cache, jax.Array], pos_u: tuple[jax.Array, jax.Array]
    ) -> tuple[tuple[jax.Array, Cache, jax.Array], jax.Array]:
        token_N, cache, done_N = carry
        pos, u_N = pos_u
        logits_NxV, cache = forward_step(params, token_N, pos, cache, config)
        nxt_N = draw(logits_NxV, u_N, temperature, top_k=top_k, top_p=top_p)
        if forced_S is not None:
            nxt_N = jnp.where(forced_S[pos] >= 0, forced_S[pos], nxt_N)
        done_N = done_N | (nxt_N == bos)
        nxt_N = jnp.where(done_N, bos, nxt_N)
        return (nxt_N, cache, done_N), nxt_N

    start = (jnp.full((num_samples,), bos, jnp.int32), cache, jnp.zeros((num_samples,), bool))
    _, tokens_SxN = jax.lax.scan(step, start, (jnp.arange(config.block_size), u_SxN))
    return tokens_SxN.T


QUICK_SAMPLES = 1024  # up to this many rows per call, sampling's program is compiled for a quick compile


@functools.cache
def _sampler(
    config: GPTConfig,
    mesh: Mesh | None,
    top_k: int = 0,
    top_p: float = 1.0,
    quick: bool = False,
    prefixed: bool = False,
) -> Callable[..., jax.Array]:
    """The compiled sampling program for validated filters (``check_filters``); with a mesh, each device samples
    its share of the rows (shard_map: the rows never interact, so there is nothing to communicate). On CPU:
    YNN fusions off and LLVM -O2; ``quick`` (a few rows: the names a run prints) also XLA's quicker-compiling
    emitters, slower for many rows (docs/performance.md). ``prefixed``: the program takes a fourth argument,
    the prefix's tokens (``_sample_scan``)."""
    fn = functools.partial(_sample_scan, config=config, top_k=top_k, top_p=top_p)
    if mesh is not None:
        # check_vma off: the scan's carry starts as constants the same on every device and becomes per-device
        specs = (P(), P(None, SAMPLE_AXIS), P(), *((P(),) if prefixed else ()))
        fn = jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=P(SAMPLE_AXIS), check_vma=False)
    return jit_with_cpu_options(fn, {**YNN_OFF, **(FAST_COMPILE if quick else O2)})


HOST_DRAWS = 1 << 14  # up to this many uniforms are made on the host (threefry.py): about a millisecond


def uniforms(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype) -> jax.Array | np.ndarray:
    """``jax.random.uniform(key, shape, dtype)``, the same numbers: a small draw from a threefry key is made on
    the host (no program to compile: the few samples a run prints), a large one by JAX's compiled draw."""
    n, dtype = math.prod(shape), jnp.dtype(dtype)
    host = n <= HOST_DRAWS and not isinstance(key, jax.core.Tracer) and threefry.usable()
    host = host and (dtype == jnp.float32 or (dtype == jnp.float64 and jax.config.jax_enable_x64))  # type: ignore[attr-defined]  # a jax option: Config declares none
    if host and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ():
        if str(jax.random.key_impl(key)) == "threefry2x32":
            return threefry.uniform(np.asarray(jax.random.key_data(key)), n, dtype).reshape(shape)
    return jax.random.uniform(key, shape, dtype)


def sample_mesh(num_samples: int, devices: int | None = None) -> Mesh | None:
    """The mesh to spread ``num_samples`` samples over (``devices.device_count``'s rule: every device when they
    split evenly, else one; or the ``devices`` asked for), or None for one device."""
    n = device_count(devices, num_samples, flag="`num_samples`")
    if n > 1 and not spans_processes(n):  # a multi-process job: every process samples alone, on its own device
        return None
    return make_mesh(SAMPLE_AXIS, n) if n > 1 else None


def sample_tokens(
    params: Mapping[str, jax.Array | np.ndarray],
    key: jax.Array,
    temperature: float | jax.Array | np.ndarray,
    *,
    config: GPTConfig,
    num_samples: int,
    devices: int | None = None,
    top_k: int = 0,
    top_p: float = 1.0,
    prefix: Sequence[int] = (),
) -> jax.Array:
    """Token ids (num_samples, block_size): each sample starts at BOS, draws from softmax(logits / temperature),
    and is BOS from the first BOS on (the original stops there, or after block_size tokens). Compiled once per
    (config, num_samples, top_k, top_p). ``top_k`` (0 = off) and ``top_p`` (1 = off) cut each draw as ``draw``
    says; a UserError when out of range.

    The samples are spread over every device (or the first ``devices``) when they split evenly: on a CPU given
    a device per core (``devices.set_cpu_devices``), both cores sample. A key gives the same names on any number
    of devices (all uniforms are drawn from it up front), up to float rounding in the logits. ``prefix`` (token
    ids, fewer than block_size) is every sample's start: drawing begins after it (a program of its own)."""
    top_k, top_p = check_filters(top_k, top_p, config.vocab_size)
    forced: tuple[jax.Array | np.ndarray, ...] = ()
    if len(prefix):
        forced_S = np.full(config.block_size, -1, np.int32)
        forced_S[: len(prefix)] = prefix
        forced = (forced_S,)
    dtype = params["wte"].dtype
    # one uniform per draw, all made up front (one RNG call, not one per position and token)
    u_SxN = uniforms(key, (config.block_size, num_samples), dtype)
    # a temperature beyond the dtype's range is its limit, uniform sampling: the largest finite one gives that;
    # a host value, so no conversion program is compiled
    if not isinstance(temperature, jax.Array):
        temperature = np.asarray(min(float(temperature), float(np.finfo(dtype).max)), dtype)
    mesh = sample_mesh(num_samples, devices)
    if mesh is not None and jax.process_count() > 1:  # every process holds the same host values: its shards
        rep = NamedSharding(mesh, P())
        params = {k: distributed.put(np.asarray(v), rep) for k, v in params.items()}
        temperature = distributed.put(np.asarray(temperature), rep)
        u_SxN = distributed.put(np.asarray(u_SxN), NamedSharding(mesh, P(None, SAMPLE_AXIS)))
        forced = tuple(distributed.put(f, rep) for f in forced)
    elif mesh is not None:  # the program's inputs on its devices: params replicated, uniforms split by sample
        params, temperature = jax.device_put((params, temperature), NamedSharding(mesh, P()))
        u_SxN = jax.device_put(u_SxN, NamedSharding(mesh, P(None, SAMPLE_AXIS)))
        forced = jax.device_put(forced, NamedSharding(mesh, P()))
    elif jax.process_count() > 1:  # this process's own device: host copies of arrays that may span processes
        params = {k: np.asarray(v) for k, v in params.items()}
    bound = (config, mesh, top_k, top_p, num_samples <= QUICK_SAMPLES, *((True,) if forced else ()))
    return executables.call(_sampler(*bound), "sample_scan", params, u_SxN, temperature, *forced, bound=bound)


def compile_sample_tokens(
    params: Mapping[str, jax.Array | jax.ShapeDtypeStruct],
    *,
    config: GPTConfig,
    num_samples: int,
    top_k: int = 0,
    top_p: float = 1.0,
) -> bool:
    """Compile the program ``sample_tokens`` runs for ``num_samples`` samples on one device with parameters like
    ``params`` (arrays or jax.ShapeDtypeStruct), without running it; False (nothing done) where the samples
    would be spread over several devices."""
    top_k, top_p = check_filters(top_k, top_p, config.vocab_size)
    if sample_mesh(num_samples) is not None:
        return False
    dtype = params["wte"].dtype
    u_SxN = jax.ShapeDtypeStruct((config.block_size, num_samples), dtype)
    bound, temperature = (config, None, top_k, top_p, num_samples <= QUICK_SAMPLES), jax.ShapeDtypeStruct((), dtype)
    executables.compile_ahead(_sampler(*bound), "sample_scan", params, u_SxN, temperature, bound=bound)
    return True


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
    params: Mapping[str, jax.Array | np.ndarray],
    config: GPTConfig,
    tokenizer: Tokenizer,
    key: jax.Array,
    num_samples: int = 20,
    temperature: float = 0.5,
    *,
    top_k: int = 0,
    top_p: float = 1.0,
    prefix: str = "",
) -> list[str]:
    """``num_samples`` new documents at ``temperature`` (> 0; lower is more conservative), each draw cut to the
    ``top_k`` most likely tokens (0 = off) and then to the nucleus of probability ``top_p`` (1 = off). Each
    starts with ``prefix`` (text the tokenizer encodes, shorter than block_size tokens) and continues it."""
    if not (isinstance(temperature, (int, float)) and np.isfinite(temperature) and temperature > 0):
        raise UserError(f"temperature must be a finite number > 0, got {temperature!r}")
    if not isinstance(num_samples, int) or num_samples < 1:
        raise UserError(f"num-samples must be a whole number >= 1, got {num_samples!r}")
    if tokenizer.vocab_size != config.vocab_size:
        raise UserError(f"tokenizer has {tokenizer.vocab_size} tokens but the model {config.vocab_size}")
    check_params(params, config, source="sample: params")
    check_sample_work(config, num_samples)
    prefix_ids = encode_prefix(prefix, tokenizer, config)
    names: list[str] = []
    for i, start in enumerate(range(0, num_samples, chunk_rows(config))):
        rows = min(chunk_rows(config), num_samples - start)
        chunk_key = key if i == 0 else jax.random.fold_in(key, i)  # the first chunk is what one call would draw
        tokens = sample_tokens(params, chunk_key, temperature, config=config, num_samples=rows, top_k=top_k,
                               top_p=top_p, prefix=prefix_ids)  # fmt: skip
        names += decode_samples(distributed.to_host(tokens), tokenizer)
    return names


def encode_prefix(prefix: str, tokenizer: Tokenizer, config: GPTConfig) -> list[int]:
    """The token ids of a sampling prefix; a UserError naming every character (or word) outside the vocabulary,
    or a prefix that leaves no room to continue (block_size - 1 tokens at most)."""
    if not isinstance(prefix, str):
        raise UserError(f"prefix must be a string, got {type(prefix).__name__}")
    if not prefix:
        return []
    units = list(prefix) if tokenizer.kind == "char" else prefix.split(" ")
    unknown = list(dict.fromkeys(u for u in units if u and tokenizer.first_unknown(u) is not None))
    if unknown:
        what = "characters" if tokenizer.kind == "char" else "words"
        raise UserError(f"prefix {prefix[:60]!r} has {what} outside the vocabulary: {', '.join(map(repr, unknown))}")
    ids = tokenizer.encode(prefix)
    if len(ids) >= config.block_size:
        raise UserError(f"prefix {prefix[:60]!r} has {len(ids)} tokens: at most {config.block_size - 1} leave room "
                        f"to continue (block_size {config.block_size})")  # fmt: skip
    return ids


MAX_SAMPLE_OPS = 1e14  # about an hour of a CPU core's arithmetic: more is refused before it starts


def sample_ops(config: GPTConfig, num_samples: int) -> float:
    """A rough count of the arithmetic sampling does: per sample, block_size steps, each the model's matmuls for
    one token and attention over the whole cache (n_layer x block_size x n_embd, twice)."""
    T, C, L, V = config.block_size, config.n_embd, config.n_layer, config.vocab_size
    per_token = 2 * (12 * L * C * C + V * C) + 4 * L * T * C
    return float(num_samples) * T * per_token


def check_sample_work(config: GPTConfig, num_samples: int) -> None:
    """A UserError when a model's sizes make sampling impossible in practice (``sample_ops`` over
    ``MAX_SAMPLE_OPS``: a file declaring block_size 2,000,000, say), before anything is compiled."""
    ops = sample_ops(config, num_samples)
    if ops > MAX_SAMPLE_OPS:
        raise UserError(
            f"sampling {num_samples} documents of up to {config.block_size:,} tokens from this model (n_layer "
            f"{config.n_layer}, n_embd {config.n_embd}) is about {ops:.1e} operations, over the {MAX_SAMPLE_OPS:.0e} "
            "this runs: lower `num_samples`, or use a model with a smaller block_size"
        )


SAMPLE_CHUNK_BYTES = 256 << 20  # what one compiled sampling call may hold: KV caches, uniforms, tokens
MAX_SAMPLE_CHUNK = 65_536


def chunk_rows(config: GPTConfig) -> int:
    """Samples per compiled call, so that memory stays bounded however many are asked for: each row carries a
    key and a value cache of (n_layer, block_size, n_embd) floats, its uniforms and its tokens."""
    per_row = 8 * config.block_size * (2 * config.n_layer * config.n_embd + 2 + config.vocab_size)
    return max(1, min(MAX_SAMPLE_CHUNK, SAMPLE_CHUNK_BYTES // per_row))
