"""The model registry: every model behind one interface, the package's exports dispatching on the model."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import microgpt_jax
from microgpt_jax.config import MODELS, GPTConfig
from microgpt_jax.model import registry


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
