"""Float64 (the original's Python floats) or float32, for a block of code or for the process."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from jax.typing import DTypeLike


def enable_x64(on: bool) -> None:
    """Switch JAX to float64 (or back): call before making arrays that should follow."""
    import jax

    jax.config.update("jax_enable_x64", bool(on))


def precision(x64: bool) -> AbstractContextManager[object]:
    """A context in which JAX computes in float64 when ``x64`` (else no change): a run in float64 leaves the
    process's setting as it found it."""
    import contextlib

    import jax

    return jax.enable_x64(True) if x64 else contextlib.nullcontext()


def float_dtype(x64: bool) -> DTypeLike:
    """The parameters' dtype: float64 with ``x64``, else float32."""
    import jax.numpy as jnp

    return jnp.float64 if x64 else jnp.float32


def default_float() -> np.dtype:
    """JAX's default float dtype now: float64 when x64 is on, else float32 (no array is made to find out)."""
    import jax

    return jax.dtypes.canonicalize_dtype(np.float64)
