"""Initial parameters: every matrix N(0, std) from a PRNG key or an integer seed, the original's layout."""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import DTypeLike

from microgpt_jax.config import GPTConfig
from microgpt_jax.model.dtypes import default_float
from microgpt_jax.model.registry import get, param_shapes
from microgpt_jax.model.types import Params

Shapes = tuple[tuple[str, tuple[int, ...]], ...]  # param_shapes(config).items(), hashable (a static argument)


def _scaled(draws: list[jax.Array], std: jax.Array, shapes: Shapes, zero_out: bool, dtype: jnp.dtype) -> Params:
    """The state_dict from each matrix's flat N(0, 1) draw, slices of draws made behind an optimization barrier.

    The barrier keeps XLA from fusing the scaling into the draw (the same bits as drawing, then scaling), and
    from copying the draw's computation (erfinv's polynomial) into every matrix's slice."""
    params = {}
    for draw, (name, shape) in zip(draws, shapes, strict=True):
        if zero_out and name.endswith(("attn_wo", "mlp_fc2")):
            params[name] = jnp.zeros(shape, dtype)
        else:
            params[name] = std * draw.reshape(shape)
    return params


@partial(jax.jit, static_argnames=("shapes", "zero_out", "dtype"))
def _init(key: jax.Array, std: jax.Array, *, shapes: Shapes, zero_out: bool, dtype: jnp.dtype) -> Params:
    # One compiled program for every matrix, the key made inside it when given a seed (as jax.random.key(seed)):
    # eager op-by-op init compiled a small program per matrix and per key operation.
    if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) and key.ndim == 0:
        key = jax.random.key(key)
    keys = jax.random.split(key, len(shapes))
    sizes = [math.prod(shape) for _, shape in shapes]
    if jax.config.jax_threefry_partitionable:  # type: ignore[attr-defined]  # a jax option: Config declares none
        # Element i of normal(k, shape) depends only on k and i (the flat index), not on the shape: one vmapped
        # draw of the largest size gives every matrix's numbers as a prefix of its row, with one threefry and one
        # erfinv in the program instead of one per matrix.
        rows = jax.lax.optimization_barrier(jax.vmap(lambda k: jax.random.normal(k, (max(sizes),), dtype))(keys))
        draws = [rows[i, :size] for i, size in enumerate(sizes)]
    else:  # the older bit layout depends on the shape: one draw per matrix
        draws = [jax.random.normal(k, (size,), dtype) for k, size in zip(keys, sizes, strict=True)]
        draws = jax.lax.optimization_barrier(draws)
    return _scaled(draws, std, shapes, zero_out, dtype)


def _normal_from_bits(bits: jax.Array, dtype: jnp.dtype) -> jax.Array:
    """``jax.random.normal``'s values from its random bits (uint32 for float32, uint64 for float64): the same
    operations in the same order as jax.random.uniform (the bits' mantissa as a float in [1, 2), then scaled to
    [nextafter(-1, 0), 1)) and normal (sqrt(2) erfinv)."""
    finfo = jnp.finfo(dtype)
    lo, hi = np.nextafter(np.array(-1.0, dtype), np.array(0.0, dtype), dtype=dtype), np.array(1.0, dtype)
    minval, maxval = jax.lax.convert_element_type(lo, dtype), jax.lax.convert_element_type(hi, dtype)
    float_bits = jax.lax.shift_right_logical(bits, jnp.array(finfo.bits - finfo.nmant, bits.dtype))
    float_bits = jax.lax.bitwise_or(float_bits, jnp.asarray(np.array(1.0, dtype).view(bits.dtype), bits.dtype))
    floats = jax.lax.bitcast_convert_type(float_bits, dtype) - jnp.array(1.0, dtype)
    u = jax.lax.max(minval, floats * (maxval - minval) + minval)
    return jax.lax.mul(np.array(np.sqrt(2), dtype), jax.lax.erf_inv(u))


@partial(jax.jit, static_argnames=("dtype",))
def _scaled_normal(bits: jax.Array, std: jax.Array, *, dtype: jnp.dtype) -> jax.Array:
    # Every matrix's draw from its random bits, made on the host (threefry.py) and concatenated: the program has
    # no threefry, and one output (an output per matrix compiled a kernel per matrix: 7x the compile time).
    return std * jax.lax.optimization_barrier(_normal_from_bits(bits, dtype))


def _init_from_seed(seed: int, shapes: Shapes, std: np.ndarray, zero_out: bool, dtype: jnp.dtype) -> Params | None:
    """``init_params(jax.random.key(seed), ...)`` with the keys and random bits made on the host, the normal
    draw and scaling in one small program, the matrices cut from its flat result on the host; None where JAX's
    PRNG or the dtype is not the one ``threefry`` computes."""
    # start-up machinery, not the model: imported only on this path
    from microgpt_jax.runtime import executables, threefry

    x64 = bool(jax.config.jax_enable_x64)  # type: ignore[attr-defined]  # a jax option: Config declares none
    if not threefry.usable() or dtype not in (jnp.float32, jnp.float64) or (dtype == jnp.float64 and not x64):
        return None
    sizes = [math.prod(shape) for _, shape in shapes]
    keys = threefry.split(threefry.key(seed, x64), len(shapes))
    bits = np.concatenate([threefry.bits(k, n, jnp.finfo(dtype).bits) for k, n in zip(keys, sizes, strict=True)])
    flat = np.asarray(executables.call(_scaled_normal, "scaled_normal", bits, std, dtype=dtype))
    params = {}
    for (name, shape), draw in zip(shapes, np.split(flat, np.cumsum(sizes)[:-1]), strict=True):
        params[name] = np.zeros(shape, dtype) if zero_out and name.endswith(("attn_wo", "mlp_fc2")) else draw
        params[name] = params[name].reshape(shape)
    return jax.device_put(params)


def init_params(
    key: jax.Array | int | np.integer,
    config: GPTConfig,
    std: float = 0.08,
    zero_out: bool = False,
    dtype: DTypeLike | None = None,
) -> Params:
    """Every matrix N(0, std), one PRNG key per matrix (``jax.random.split(key, n)``) in state_dict order.

    ``key`` is a PRNG key, or an integer seed: ``init_params(42, ...)`` is ``init_params(jax.random.key(42), ...)``,
    the same numbers, with the keys and random bits made on the host (``threefry``; in the one compiled program
    where JAX's PRNG is set up otherwise): no key operation or threefry hash to compile, and a smaller program.
    ``zero_out`` is microgpt's earlier variant: attn_wo and mlp_fc2 start at zero (use it with std 0.02).
    A counted model (the bigram) starts uniform, all zeros: it is built by counting instead.
    ``dtype`` defaults to JAX's default float (float64 under x64)."""
    dtype = jnp.dtype(dtype or default_float())
    shapes = tuple(param_shapes(config).items())
    if get(config).counted:
        return {name: jnp.zeros(shape, dtype) for name, shape in shapes}
    std_host = np.asarray(std, dtype)  # a host value of the dtype: jnp.asarray compiles a conversion program
    params = None
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        key = np.int64(key)  # what jax.random.key(int) makes of it (OverflowError past int64, as there)
        params = _init_from_seed(int(key), shapes, std_host, zero_out, dtype)
    if params is None:
        params = _init(key, std_host, shapes=shapes, zero_out=zero_out, dtype=dtype)
    return {name: params[name] for name, _ in shapes}  # jit returns dicts sorted by key: the original's order
