"""Initial parameters: N(0, std) per matrix from a key or a seed, the early variant, the counted model."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from microgpt_jax.config import GPTConfig
from microgpt_jax.model.init import init_params
from microgpt_jax.model.registry import num_params
from microgpt_jax.model.transformer import param_shapes


def test_init_std_and_early_variant():
    config = GPTConfig(n_embd=32, n_head=4)
    params = init_params(jax.random.key(0), config)
    assert num_params(params) == sum(a * b for a, b in param_shapes(config).values())
    assert abs(float(jnp.std(params["layer0.mlp_fc1"])) - 0.08) < 0.01
    early = init_params(jax.random.key(0), config, std=0.02, zero_out=True)
    assert not jnp.any(early["layer0.attn_wo"]) and not jnp.any(early["layer0.mlp_fc2"])
    assert abs(float(jnp.std(early["wte"])) - 0.02) < 0.005


@pytest.mark.parametrize("seed, config, x64", [
    (42, GPTConfig(), False),
    (-1, GPTConfig(vocab_size=60, n_layer=2, n_embd=32, block_size=7), False),
    (2**40 + 3, GPTConfig(model="mlp"), True),
])  # fmt: skip
def test_init_is_one_key_per_matrix_in_state_dict_order(seed: int, config: GPTConfig, x64: bool) -> None:
    """Initialising in one compiled program (one draw for every matrix, the key made inside from a seed) draws
    exactly what the per-matrix eager init drew, in either precision."""
    with jax.enable_x64(x64):
        key = jax.random.key(seed)
        params = init_params(key, config)
        for k, (name, p) in zip(jax.random.split(key, len(params)), params.items(), strict=True):
            np.testing.assert_array_equal(p, 0.08 * jax.random.normal(k, p.shape, p.dtype), err_msg=name)
        from_seed = init_params(seed, config)
        assert list(from_seed) == list(params)
        for name, p in params.items():
            assert from_seed[name].dtype == (jnp.float64 if x64 else jnp.float32)
            np.testing.assert_array_equal(from_seed[name], p, err_msg=name)


def test_early_init_variant() -> None:
    early = init_params(jax.random.key(42), GPTConfig(n_layer=2), std=0.02, zero_out=True)
    assert all(not np.any(early[f"layer{i}.{n}"]) for i in range(2) for n in ("attn_wo", "mlp_fc2"))
    assert np.std(np.asarray(early["wte"])) == pytest.approx(0.02, rel=0.2)
    np.testing.assert_array_equal(early["wpe"], init_params(42, GPTConfig(n_layer=2), std=0.02)["wpe"])
    from_seed = init_params(42, GPTConfig(n_layer=2), std=0.02, zero_out=True)
    for name, p in early.items():
        np.testing.assert_array_equal(from_seed[name], p, err_msg=name)


SMALL = GPTConfig(vocab_size=7, n_embd=8, n_head=2, block_size=4)


def test_a_seed_is_its_key_in_any_integer_type_and_std_only_scales() -> None:
    by_key = init_params(jax.random.key(7), SMALL)
    for seed in (7, np.int64(7), np.int32(7), np.uint8(7)):
        got = init_params(seed, SMALL)
        for name, p in by_key.items():
            np.testing.assert_array_equal(got[name], p, err_msg=f"{type(seed).__name__} {name}")
    assert not np.array_equal(init_params(8, SMALL)["wte"], by_key["wte"])
    # every matrix is std times one N(0, 1) draw: std 0.04 is exactly half of std 0.08
    half = init_params(7, SMALL, std=0.04)
    for name, p in by_key.items():
        np.testing.assert_allclose(half[name] * 2, p, rtol=1e-6, err_msg=name)


def test_dtype_defaults_to_jaxs_float_and_may_be_given() -> None:
    assert {p.dtype for p in init_params(0, SMALL).values()} == {jnp.dtype(jnp.float32)}
    with jax.enable_x64(True):
        assert {p.dtype for p in init_params(0, SMALL).values()} == {jnp.dtype(jnp.float64)}
        f32 = init_params(0, SMALL, dtype=jnp.float32)
        assert {p.dtype for p in f32.values()} == {jnp.dtype(jnp.float32)}
    for name, p in init_params(0, SMALL).items():
        np.testing.assert_array_equal(f32[name], p, err_msg=name)


def test_a_counted_model_starts_at_zero_and_a_seed_past_int64_is_refused() -> None:
    config = GPTConfig(model="bigram", vocab_size=7)
    params = init_params(3, config)
    assert {k: p.shape for k, p in params.items()} == {"wte": (7, 7)} and not np.any(params["wte"])
    with pytest.raises(OverflowError):
        init_params(2**63, SMALL)
