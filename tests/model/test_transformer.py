"""The GPT: config checks, state_dict names and shapes, rmsnorm, causality, KV-cache == full forward, dropout."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from microgpt_jax.config import GPTConfig
from microgpt_jax.errors import UserError
from microgpt_jax.model.init import init_params
from microgpt_jax.model.transformer import (
    attention_scores,
    dropout_fn,
    gpt,
    gpt_step,
    init_kv_cache,
    mix32,
    param_shapes,
    rmsnorm,
)

NAMES = ["wte", "wpe", "lm_head"] + [
    f"layer{i}.{n}" for i in range(2) for n in ("attn_wq", "attn_wk", "attn_wv", "attn_wo", "mlp_fc1", "mlp_fc2")
]


def test_state_dict_names_and_shapes():
    shapes = param_shapes(GPTConfig(n_layer=2, n_embd=8, n_head=2, block_size=5, vocab_size=11))
    assert list(shapes) == NAMES
    assert shapes["wte"] == (11, 8) and shapes["wpe"] == (5, 8) and shapes["lm_head"] == (11, 8)
    assert shapes["layer1.mlp_fc1"] == (32, 8) and shapes["layer1.mlp_fc2"] == (8, 32)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_embd": 10, "n_head": 4}, "divisible"),
        ({"block_size": 1}, "block_size"),
        ({"n_layer": 0}, "n_layer"),
        ({"n_embd": 0}, "n_embd"),
    ],
)
def test_invalid_configs(kwargs, match):
    with pytest.raises(UserError, match=match):
        GPTConfig(**kwargs)


def test_rmsnorm():
    x = jnp.array([[3.0, 4.0]])
    np.testing.assert_allclose(rmsnorm(x), x / np.sqrt(12.5 + 1e-5), rtol=1e-6)


def test_forward_is_causal():
    config = GPTConfig(vocab_size=7, n_layer=2, block_size=6)
    params = init_params(jax.random.key(1), config)
    a = jnp.array([[6, 1, 2, 3, 4, 5]])
    b = a.at[0, 4:].set(0)  # change the future
    forward = jax.jit(gpt, static_argnames="config")  # jitted: op-by-op JAX is slow
    np.testing.assert_array_equal(forward(params, a, config)[0, :4], forward(params, b, config)[0, :4])


def test_kv_cache_matches_full_forward():
    config = GPTConfig(vocab_size=7, n_layer=2, n_embd=8, n_head=2, block_size=6)
    params = init_params(jax.random.key(2), config)
    tokens_BxT = jax.random.randint(jax.random.key(3), (3, 6), 0, 7)
    full_BxTxV = jax.jit(gpt, static_argnames="config")(params, tokens_BxT, config)
    step = jax.jit(gpt_step, static_argnames="config")
    cache = init_kv_cache(config, 3)
    for pos in range(6):
        logits_BxV, cache = step(params, tokens_BxT[:, pos], jnp.asarray(pos), cache, config)
        np.testing.assert_allclose(logits_BxV, full_BxTxV[:, pos], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_attention_scores_value_and_gradient_are_the_plain_einsums(dtype, batch):
    """The speed formulation of q.k changes neither the scores (bitwise) nor jax.grad's gradients."""
    with jax.enable_x64(dtype == jnp.float64):
        kq, kk, kc = jax.random.split(jax.random.key(0), 3)
        q, k = (jax.random.normal(key, (batch, 5, 2, 4), dtype) for key in (kq, kk))
        cot = jax.random.normal(kc, (batch, 2, 5, 5), dtype)  # a cotangent that weighs every score differently

        def plain(q, k):
            return jnp.einsum("bthd,bshd->bhts", q, k)

        np.testing.assert_array_equal(jax.jit(attention_scores)(q, k), jax.jit(plain)(q, k))
        got = jax.jit(jax.grad(lambda q, k: jnp.sum(cot * attention_scores(q, k)), argnums=(0, 1)))(q, k)
        want = jax.jit(jax.grad(lambda q, k: jnp.sum(cot * plain(q, k)), argnums=(0, 1)))(q, k)
        tol = 1e-6 if dtype == jnp.float32 else 1e-14
        for g, w in zip(got, want, strict=True):
            assert g.dtype == dtype
            np.testing.assert_allclose(g, w, rtol=tol, atol=tol)


def test_dropout_is_off_by_default_and_a_pure_function_of_its_key():
    config = GPTConfig(vocab_size=7, n_layer=2, n_embd=8, n_head=2, block_size=6)
    params = init_params(jax.random.key(0), config)
    tokens = jnp.array([[6, 1, 2, 3, 4, 5]])
    plain = jax.jit(gpt, static_argnames="config")(params, tokens, config)
    dropped = jax.jit(lambda p, t, key, rate: gpt(p, t, config, dropout_fn(key, rate)))
    key = jax.random.key(7)
    # rate 0 keeps every unit unscaled: the same logits (up to rounding: another program; without dropout the
    # forward has no dropout operation at all, the original's program)
    np.testing.assert_allclose(dropped(params, tokens, key, 0.0), plain, atol=1e-6, rtol=0)
    a = dropped(params, tokens, key, 0.3)
    np.testing.assert_array_equal(a, dropped(params, tokens, key, 0.3))  # same key, same units
    assert not np.allclose(a, plain)
    assert not np.allclose(a, dropped(params, tokens, jax.random.key(8), 0.3))
    # inverted dropout keeps the expected value: kept units are scaled by 1 / (1 - rate)
    x = jax.jit(lambda k: dropout_fn(k, 0.25)(jnp.ones(200_000), 0))(key)
    np.testing.assert_allclose(np.unique(np.asarray(x)), [0.0, 1 / 0.75], rtol=1e-6)
    assert abs(float(jnp.mean(x)) - 1) < 0.01


def test_mix32_is_a_bijection_that_avalanches():
    x = jnp.arange(1 << 20, dtype=jnp.uint32)
    h = np.asarray(jax.jit(mix32)(x))
    assert len(np.unique(h)) == len(h)  # no two inputs share an output
    # flipping one input bit flips about half of the output bits, whichever bit it is
    for bit in (0, 7, 31):
        flipped = np.asarray(jax.jit(mix32)(x[:4096] ^ np.uint32(1 << bit)))
        changed = np.unpackbits((h[:4096] ^ flipped).view(np.uint8)).mean()
        assert 0.45 < changed < 0.55, (bit, changed)


@pytest.mark.parametrize("rate", [0.05, 0.1, 0.5, 0.9])
def test_dropout_drops_the_rate_of_units_independently_at_each_site(rate):
    n = 400_000
    masks = jax.jit(lambda k: jnp.stack([dropout_fn(k, rate)(jnp.ones(n), site) != 0 for site in range(3)]))(
        jax.random.key(3)
    )
    kept = np.asarray(masks).mean(axis=1)
    sd = (rate * (1 - rate) / n) ** 0.5
    assert np.all(np.abs(kept - (1 - rate)) < 5 * sd), kept  # binomial: within 5 standard deviations
    # two sites (or two steps: another key) draw independent coins: they agree as often as chance says
    agree = float(np.mean(np.asarray(masks[0]) == np.asarray(masks[1])))
    assert abs(agree - ((1 - rate) ** 2 + rate**2)) < 5 * (0.25 / n) ** 0.5
    # neighbouring units are independent too: no pattern along the units' order
    m = np.asarray(masks[2])
    assert abs(float(np.mean(m[1:] == m[:-1])) - ((1 - rate) ** 2 + rate**2)) < 5 * (0.25 / n) ** 0.5
