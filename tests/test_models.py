"""The model registry: every model behind one interface, the package's exports dispatching, one-program init."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import microgpt_jax
from microgpt_jax.config import MODELS, GPTConfig
from microgpt_jax.model import registry
from microgpt_jax.model.init import init_params


def test_registry_holds_every_model() -> None:
    assert set(registry.REGISTRY) == set(MODELS)
    assert [name for name, m in registry.REGISTRY.items() if m.counted] == ["bigram"]
    assert "smoothing" in registry.REGISTRY["gpt"].unused and "lr" in registry.REGISTRY["bigram"].unused


@pytest.mark.parametrize("model, names", [
    ("bigram", ["wte"]), ("mlp", ["wte", "mlp_fc1", "mlp_fc2"]), ("gpt", ["wte", "wpe", "lm_head"]),
])  # fmt: skip
def test_package_exports_dispatch_on_the_model(model: str, names: list[str]) -> None:
    """``microgpt_jax.init_params`` once returned the GPT's matrices for every model (and loss_fn then failed)."""
    config = GPTConfig(model=model)
    params = microgpt_jax.init_params(jax.random.key(0), config)
    assert list(params)[: len(names)] == names and list(params) == list(microgpt_jax.param_shapes(config))
    tokens = jnp.asarray([[26, 1, 2, 3, 26]])
    loss = jax.jit(microgpt_jax.loss_fn, static_argnames="config")(params, tokens, jnp.asarray([4]), config)
    assert np.isfinite(float(loss))
    assert microgpt_jax.forward(params, tokens[:, :-1], config).shape == (1, 4, 27)


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
