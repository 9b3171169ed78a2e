"""xla_options: tuned XLA:CPU programs equal plain ones, and a jaxlib without an option falls back."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from microgpt_jax.xla_options import YNN_MATMULS_ONLY, YNN_OFF, jit_with_cpu_options


def softmax_rows(x: jax.Array, w: jax.Array) -> jax.Array:
    return jax.nn.softmax(x @ w, axis=-1).sum(axis=0)


@pytest.mark.parametrize("options", [YNN_OFF, YNN_MATMULS_ONLY])
def test_tuned_program_equals_the_plain_one(options):
    x, w = jax.random.normal(jax.random.key(0), (64, 16)), jax.random.normal(jax.random.key(1), (16, 27))
    got = jit_with_cpu_options(softmax_rows, options)(x, w)
    np.testing.assert_allclose(got, jax.jit(softmax_rows)(x, w), rtol=1e-6, atol=1e-6)


def test_an_option_this_jaxlib_lacks_falls_back_to_the_plain_program():
    fn = jit_with_cpu_options(softmax_rows, {"xla_cpu_no_such_option_for_tests": "1"})
    x, w = jnp.ones((4, 3)), jnp.ones((3, 5))
    np.testing.assert_allclose(fn(x, w), jax.jit(softmax_rows)(x, w))
    np.testing.assert_allclose(fn(x, w), jax.jit(softmax_rows)(x, w))  # and keeps falling back


def test_other_errors_are_not_swallowed():
    fn = jit_with_cpu_options(softmax_rows, YNN_MATMULS_ONLY)
    with pytest.raises(TypeError):
        fn(jnp.ones((4, 3)), jnp.ones((5, 5)))  # shapes that do not multiply
