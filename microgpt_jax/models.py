"""The progression's models behind one interface, chosen by ``config.model``: the one place that dispatches.

- ``bigram`` (Step 0): a (V, V) table of counted next-token log-probabilities (microgpt_jax.bigram).
- ``mlp`` (Step 1): next token from the current token alone through a ReLU MLP (microgpt_jax.mlp).
- ``gpt``: microgpt's transformer (microgpt_jax.model).

Each is a pure function of (params, tokens); loss, training, evaluation, sampling and io call these.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from microgpt_jax import bigram, mlp, model
from microgpt_jax.config import GPTConfig

Params = dict[str, jax.Array]


def param_shapes(config: GPTConfig) -> dict[str, tuple[int, int]]:
    """The state_dict's names and (nout, nin) shapes for ``config.model``."""
    if config.model == "bigram":
        return bigram.param_shapes(config)
    if config.model == "mlp":
        return mlp.param_shapes(config)
    return model.param_shapes(config)


def init_params(
    key: jax.Array, config: GPTConfig, std: float = 0.08, zero_out: bool = False, dtype: jnp.dtype | None = None
) -> Params:
    """Every matrix N(0, std), for any model (the GPT's are exactly ``model.init_params``'s). ``zero_out``
    starts attn_wo and mlp_fc2 at zero. A bigram starts uniform (zeros); it is built by counting instead."""
    if config.model == "bigram":
        dtype = dtype or jnp.zeros(()).dtype
        return {name: jnp.zeros(shape, dtype) for name, shape in param_shapes(config).items()}
    return model.init_params(key, config, std, zero_out, dtype, shapes=param_shapes(config))


def forward(params: Params, tokens_BxT: jax.Array, config: GPTConfig) -> jax.Array:
    """Next-token logits at every position of a batch of sequences: (B, T) int tokens -> (B, T, V)."""
    if config.model == "bigram":
        return bigram.bigram_forward(params, tokens_BxT)
    if config.model == "mlp":
        return mlp.mlp_forward(params, tokens_BxT)
    return model.gpt(params, tokens_BxT, config)


def init_cache(config: GPTConfig, batch: int, dtype: jnp.dtype | None = None) -> dict[str, jax.Array]:
    """What sampling carries between positions: the GPT's key/value cache; nothing for bigram and MLP,
    which see only the current token."""
    if config.model == "gpt":
        return model.init_kv_cache(config, batch, dtype)
    return {}


def forward_step(
    params: Params, token_B: jax.Array, pos: jax.Array, cache: dict[str, jax.Array], config: GPTConfig
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """One token per sequence at position ``pos``: (logits_BxV, new cache)."""
    if config.model == "gpt":
        return model.gpt_step(params, token_B, pos, cache, config)
    return forward(params, token_B[:, None], config)[:, 0], cache
