"""Optimizers: the hand-written SGD and optax Adam follow the original's formulas, linear decay included."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from microgpt_jax.config import OPTIMIZERS
from microgpt_jax.model.optim import adam, linear_decay, lr_schedule, make_optimizer, sgd
from microgpt_jax.training.loop import init_opt_state


def test_linear_decay():
    schedule = linear_decay(0.5, 10)
    assert [float(schedule(t)) for t in (0, 5, 10)] == [0.5, 0.25, 0.0]


def test_linear_schedule_without_warmup_is_the_originals_bit_for_bit():
    t = jnp.arange(1001)
    np.testing.assert_array_equal(lr_schedule(0.01, 1000)(t), linear_decay(0.01, 1000)(t))


def test_cosine_and_warmup_schedules():
    cosine = lr_schedule(1.0, 100, "cosine")
    np.testing.assert_allclose([float(cosine(t)) for t in (0, 50, 100)], [1.0, 0.5, 0.0], atol=1e-7)
    warm = lr_schedule(1.0, 100, "linear", warmup=jnp.asarray(10.0))
    values = np.asarray(warm(jnp.arange(101)))
    np.testing.assert_allclose(values[:10], np.arange(1, 11) / 10, rtol=1e-6)  # ramps up to the peak ...
    np.testing.assert_allclose(values[10:], 1 - np.arange(91) / 90, atol=1e-6)  # ... then decays over the rest
    # a traced warm-up of 0 (a sweep member without one) is the schedule without warm-up
    np.testing.assert_allclose(lr_schedule(1.0, 100, "cosine", warmup=jnp.asarray(0.0))(jnp.arange(101)),
                               cosine(jnp.arange(101)), atol=1e-7)  # fmt: skip
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_schedule(1.0, 100, "step")


def test_adamw_decays_weights_and_is_adam_without_decay():
    params = {"w": jnp.array([[1.0, -2.0]])}
    zero = {"w": jnp.zeros((1, 2))}
    # with a zero gradient Adam's step is zero: only the decoupled decay moves the weights, by lr_t * wd * p
    opt = make_optimizer("adam", 0.1, 10, weight_decay=0.5)
    new, _ = opt.update(zero, opt.init(params), params)
    np.testing.assert_allclose(new["w"], params["w"] * (1 - 0.1 * 0.5), rtol=1e-6)
    grads = {"w": jnp.array([[0.3, -0.7]])}
    a, b = make_optimizer("adam", 0.1, 10), make_optimizer("adam", 0.1, 10, weight_decay=0.0)
    pa, _ = a.update(grads, a.init(params), params)
    pb, _ = b.update(grads, b.init(params), params)
    np.testing.assert_array_equal(pa["w"], pb["w"])
    with pytest.raises(ValueError, match="AdamW"):
        make_optimizer("sgd", 0.1, 10, weight_decay=0.1)


def test_sgd_steps_by_hand():
    params = {"w": jnp.array([[1.0, 2.0]])}
    grads = {"w": jnp.array([[0.5, -1.0]])}
    opt = sgd(0.1, 4)
    state = opt.init(params)
    expected = np.array([[1.0, 2.0]])
    for t in range(3):
        params, state = opt.update(grads, state, params)
        expected = expected - 0.1 * (1 - t / 4) * np.array([[0.5, -1.0]])
        np.testing.assert_allclose(params["w"], expected, rtol=1e-6)
    assert int(state) == 3


def test_adam_matches_the_originals_update():
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        p = rng.normal(size=(3, 2))
        params = {"w": jnp.asarray(p)}
        opt = adam(0.01, 5, 0.85, 0.99, 1e-8)
        state = opt.init(params)
        m = np.zeros_like(p)
        v = np.zeros_like(p)
        for step in range(4):
            g = rng.normal(size=(3, 2))
            params, state = opt.update({"w": jnp.asarray(g)}, state, params)
            # microgpt.py's Adam, written out
            lr_t = 0.01 * (1 - step / 5)
            m = 0.85 * m + 0.15 * g
            v = 0.99 * v + 0.01 * g**2
            m_hat = m / (1 - 0.85 ** (step + 1))
            v_hat = v / (1 - 0.99 ** (step + 1))
            p = p - lr_t * m_hat / (v_hat**0.5 + 1e-8)
            np.testing.assert_allclose(params["w"], p, rtol=0, atol=1e-15)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_initial_state_is_the_optimizers_own(optimizer: str) -> None:
    """train.init_opt_state makes the state on the host as zeros: every optimizer's init must be all zeros."""
    params = {"w": jnp.ones((3, 2)), "b": jnp.ones((4,), jnp.float32)}
    own = make_optimizer(optimizer, 0.1, 10).init(params)
    ours = init_opt_state(optimizer, params)
    assert jax.tree.structure(ours) == jax.tree.structure(own)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(own), strict=True):
        assert isinstance(a, jax.Array) and a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    traced = jax.jit(lambda p: init_opt_state(optimizer, p))(params)  # under a transformation: the own init
    assert jax.tree.structure(traced) == jax.tree.structure(own)
