"""JAX's default PRNG (threefry2x32, the "partitionable" bit layout) computed on the host with numpy, for the few
small draws on the start-up path (a key from a seed, split, fold_in, init's random bits, a few samples'
uniforms): on the host they compile nothing (docs/performance.md).

``key(seed)``, ``split``, ``fold_in``, ``bits`` and ``uniform`` give exactly what ``jax.random``'s functions of
the same names give (tests/runtime/test_threefry.py checks them against JAX). ``usable()`` says whether JAX is
set up the way this module assumes (the threefry implementation, the partitionable layout); callers fall back
to ``jax.random`` otherwise.

Threefry-2x32 with 20 rounds is the counter-based generator of Salmon et al., "Parallel random numbers: as easy as
1, 2, 3" (SC 2011): a keyed hash of a pair of 32-bit counters. Keys here are numpy uint32 arrays of shape (2,).
"""

from __future__ import annotations

import numpy as np

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def usable() -> bool:
    """True when JAX's random numbers are the ones this module computes: the threefry2x32 implementation with the
    partitionable bit layout."""
    import jax

    return jax.config.jax_default_prng_impl == "threefry2x32" and bool(jax.config.jax_threefry_partitionable)  # type: ignore[attr-defined]  # a jax option: Config declares none


def hash2x32(key: np.ndarray, x0: np.ndarray, x1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Threefry-2x32 (20 rounds) of the counter pairs ``(x0, x1)`` (uint32 arrays of one shape) under ``key``."""
    k0, k1 = np.uint32(key[0]), np.uint32(key[1])
    ks = (k0, k1, k0 ^ k1 ^ _PARITY)
    x0 = np.asarray(x0, np.uint32) + ks[0]
    x1 = np.asarray(x1, np.uint32) + ks[1]
    with np.errstate(over="ignore"):  # uint32 arithmetic wraps, as the algorithm wants
        for block in range(5):
            for r in _ROTATIONS[block % 2]:
                x0 = x0 + x1
                x1 = ((x1 << np.uint32(r)) | (x1 >> np.uint32(32 - r))) ^ x0
            x0 = x0 + ks[(block + 1) % 3]
            x1 = x1 + ks[(block + 2) % 3] + np.uint32(block + 1)
    return x0, x1


def key(seed: int, x64: bool) -> np.ndarray:
    """``jax.random.key(seed)``'s key data. JAX reads the seed as an int64 (``OverflowError`` past it, as there)
    and, without x64, keeps its low 32 bits."""
    bits = int(np.int64(seed)) & 0xFFFF_FFFF_FFFF_FFFF
    if not x64:
        return np.array([0, bits & 0xFFFF_FFFF], np.uint32)
    return np.array([bits >> 32, bits & 0xFFFF_FFFF], np.uint32)


def _counters(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The flat indices 0..n-1 as (high, low) 32-bit halves."""
    idx = np.arange(n, dtype=np.uint64)
    return (idx >> np.uint64(32)).astype(np.uint32), (idx & np.uint64(0xFFFF_FFFF)).astype(np.uint32)


def split(key: np.ndarray, n: int) -> np.ndarray:
    """``jax.random.split(key, n)``'s key data, shape (n, 2)."""
    y0, y1 = hash2x32(key, *_counters(n))
    return np.stack([y0, y1], axis=1)


def fold_in(key: np.ndarray, data: int) -> np.ndarray:
    """``jax.random.fold_in(key, data)``'s key data (``data`` taken as a uint32, as JAX takes it)."""
    y0, y1 = hash2x32(key, np.zeros(1, np.uint32), np.array([data], np.int64).astype(np.uint32))
    return np.array([y0[0], y1[0]], np.uint32)


def bits(key: np.ndarray, n: int, width: int = 32) -> np.ndarray:
    """``jax.random.bits(key, (n,), uint32 or uint64)``: the random bits of a flat draw of ``n`` values; a draw of
    any shape holds these in row-major order (element i depends only on the key and i)."""
    y0, y1 = hash2x32(key, *_counters(n))
    if width == 32:
        return y0 ^ y1
    return (y0.astype(np.uint64) << np.uint64(32)) | y1.astype(np.uint64)


def uniform(key: np.ndarray, n: int, dtype: np.dtype) -> np.ndarray:
    """``jax.random.uniform(key, (n,), dtype)`` (in [0, 1), float32 or float64): the bits' mantissa as a float in
    [1, 2), minus one. (JAX then scales by maxval - minval = 1, adds minval = 0 and clips at 0: exact no-ops.)"""
    dtype = np.dtype(dtype)
    width = dtype.itemsize * 8
    b = bits(key, n, width)
    mantissa = b >> b.dtype.type(width - np.finfo(dtype).nmant)
    return (mantissa | np.array(1.0, dtype).view(b.dtype)).view(dtype) - dtype.type(1.0)
