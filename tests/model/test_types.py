"""Params and Cache: the pytrees every model's functions take and give, dicts of arrays by name."""

from __future__ import annotations

import typing

import jax

from microgpt_jax.config import MODELS, GPTConfig
from microgpt_jax.model import registry
from microgpt_jax.model.init import init_params
from microgpt_jax.model.types import Cache, Params


def test_the_aliases_are_dicts_of_arrays_by_name() -> None:
    for alias in (Params, Cache):
        assert typing.get_origin(alias) is dict and typing.get_args(alias) == (str, jax.Array)


def test_every_models_parameters_are_a_params() -> None:
    for model in MODELS:
        config = GPTConfig(model=model, vocab_size=5, n_embd=8, n_head=2, block_size=4)
        params = init_params(0, config)
        assert type(params) is dict and list(params) == list(registry.param_shapes(config)), model
        assert all(isinstance(k, str) and isinstance(v, jax.Array) for k, v in params.items()), model
        cache = registry.init_cache(config, 2)
        assert type(cache) is dict and all(isinstance(v, jax.Array) for v in cache.values()), model
