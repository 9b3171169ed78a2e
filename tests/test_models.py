"""The model registry: every model behind one interface, the package's exports dispatching, one-program init."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import microgpt_jax
from microgpt_jax import models
from microgpt_jax.config import MODELS, GPTConfig


def test_registry_holds_every_model() -> None:
    assert set(models.REGISTRY) == set(MODELS)
    assert [name for name, m in models.REGISTRY.items() if m.counted] == ["bigram"]
    assert "smoothing" in models.REGISTRY["gpt"].unused and "lr" in models.REGISTRY["bigram"].unused


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


def test_init_is_one_key_per_matrix_in_state_dict_order() -> None:
    """Initialising in one compiled program draws exactly what the per-matrix eager init drew."""
    key = jax.random.key(42)
    params = models.init_params(key, GPTConfig())
    for k, (name, p) in zip(jax.random.split(key, len(params)), params.items(), strict=True):
        np.testing.assert_array_equal(p, 0.08 * jax.random.normal(k, p.shape, p.dtype), err_msg=name)
    early = models.init_params(key, GPTConfig(n_layer=2), std=0.02, zero_out=True)
    assert all(not np.any(early[f"layer{i}.{n}"]) for i in range(2) for n in ("attn_wo", "mlp_fc2"))
    assert np.std(np.asarray(early["wte"])) == pytest.approx(0.02, rel=0.2)


def test_package_names_are_the_functions_not_the_modules() -> None:
    import microgpt_jax.sample
    import microgpt_jax.train

    assert callable(microgpt_jax.train) and microgpt_jax.train.__module__ == "microgpt_jax.train"
    assert microgpt_jax.sample.__module__ == "microgpt_jax.sample" and callable(microgpt_jax.gpt)
