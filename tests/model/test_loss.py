"""The loss: mean NLL per predicted token, padding masked, equal to a hand computation."""

from __future__ import annotations

import jax
import numpy as np

from microgpt_jax.config import GPTConfig
from microgpt_jax.model.init import init_params
from microgpt_jax.model.loss import nll_sum


def test_vmapped_nll_equals_one_member_at_a_time():
    """XLA:CPU once miscompiled a one-hot-product NLL under jit(vmap) (members got each other's losses)."""
    config = GPTConfig()
    params_M = jax.vmap(lambda k: init_params(k, config))(jax.random.split(jax.random.key(0), 16))
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 27, (256, 17)).astype(np.int32)
    n = rng.integers(2, 17, 256).astype(np.int32)
    sums_M, _ = jax.jit(jax.vmap(nll_sum, in_axes=(0, None, None, None)), static_argnums=3)(params_M, tokens, n, config)
    one = jax.jit(nll_sum, static_argnums=3)
    expected = [float(one(jax.tree.map(lambda x, m=m: x[m], params_M), tokens, n, config)[0]) for m in range(16)]
    np.testing.assert_allclose(sums_M, expected, rtol=1e-5)
