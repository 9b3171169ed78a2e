"""Precision: float64 for a block of code or the process, float32 otherwise; the parameters' dtype."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from microgpt_jax.model.dtypes import default_float, enable_x64, float_dtype, precision


def test_float_dtype() -> None:
    assert float_dtype(True) == jnp.float64 and float_dtype(False) == jnp.float32


def test_precision_is_a_block_that_leaves_the_setting_as_it_was() -> None:
    before = bool(jax.config.jax_enable_x64)
    assert not before  # the suite runs in float32
    with precision(True):
        assert default_float() == np.float64
        assert jnp.zeros(2).dtype == jnp.float64
    assert default_float() == np.float32 and jnp.zeros(2).dtype == jnp.float32
    with precision(False):  # no change either way
        assert default_float() == np.float32
    with jax.enable_x64(True), precision(False):
        assert default_float() == np.float64
    assert bool(jax.config.jax_enable_x64) == before


def test_enable_x64_switches_the_process_and_back() -> None:
    try:
        enable_x64(True)
        assert bool(jax.config.jax_enable_x64) and default_float() == np.float64
        assert jnp.asarray(1.0).dtype == jnp.float64
    finally:
        enable_x64(False)
    assert not jax.config.jax_enable_x64 and default_float() == np.float32
