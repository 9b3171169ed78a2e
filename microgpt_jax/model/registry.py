"""The progression's models behind one registry, chosen by ``config.model``: the one place that dispatches.

- ``bigram`` (Step 0): a (V, V) table of counted next-token log-probabilities (model/bigram.py);
- ``mlp`` (Step 1): next token from the current token alone through a ReLU MLP (model/mlp.py);
- ``gpt``: microgpt's transformer (model/transformer.py).

A ``Model`` holds each one's functions (state_dict shapes, forward over whole sequences, one-token step with
its cache, and a hand-written ``analytic_value_and_grad`` where there is one: the MLP's, Step 1) and what it is
not: ``counted`` models are built by counting, not by gradient steps, and ``unused`` names the config fields it
ignores (the command line refuses them; ``unused_fields`` adds what depends on the recipe). ``param_shapes``,
``init_params``, ``forward``, ``init_cache`` and ``forward_step`` below work for every model; loss,
training, evaluation, sampling and storage call these.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp

from microgpt_jax.config import MODELS, GPTConfig, TrainConfig
from microgpt_jax.errors import UserError
from microgpt_jax.model import bigram, mlp
from microgpt_jax.model.dtypes import default_float
from microgpt_jax.model.transformer import Dropout, gpt, gpt_step, init_kv_cache
from microgpt_jax.model.transformer import param_shapes as gpt_shapes
from microgpt_jax.model.types import Cache, Params

# what only gradient training uses: a counted model takes none of it
_GRADIENT_FIELDS = frozenset(
    {"optimizer", "lr", "b1", "b2", "eps", "weight_decay", "schedule", "warmup", "dropout", "steps", "batch_size",
     "init_std", "init_zero_out", "eval_every", "ckpt_every", "devices", "init"}
)  # fmt: skip


@dataclass(frozen=True)
class Model:
    """One model of the progression: its functions and the config fields it ignores."""

    name: str
    param_shapes: Callable[[GPTConfig], dict[str, tuple[int, int]]]
    forward: Callable[[Params, jax.Array, GPTConfig], jax.Array]
    init_cache: Callable[[GPTConfig, int, jnp.dtype], Cache]
    forward_step: Callable[[Params, jax.Array, jax.Array, Cache, GPTConfig], tuple[jax.Array, Cache]]
    counted: bool
    unused: frozenset[str]
    # (params, tokens_BxT1, n_B, config) -> (loss, grads), the backward pass written by hand; None: jax.grad only
    analytic_value_and_grad: Callable[[Params, jax.Array, jax.Array, GPTConfig], tuple[jax.Array, Params]] | None = None


def _no_cache(config: GPTConfig, batch: int, dtype: jnp.dtype) -> Cache:
    return {}  # the bigram and the MLP see only the current token: nothing to carry between positions


def _stateless_step(
    forward: Callable[..., jax.Array],
    params: Params,
    token_B: jax.Array,
    pos: jax.Array,
    cache: Cache,
    config: GPTConfig,
) -> tuple[jax.Array, Cache]:
    return forward(params, token_B[:, None], config)[:, 0], cache


def _bigram_forward(params: Params, tokens_BxT: jax.Array, config: GPTConfig) -> jax.Array:
    return bigram.bigram_forward(params, tokens_BxT)


def _mlp_forward(params: Params, tokens_BxT: jax.Array, config: GPTConfig) -> jax.Array:
    return mlp.mlp_forward(params, tokens_BxT)


def _mlp_analytic(
    params: Params, tokens_BxT1: jax.Array, n_B: jax.Array, config: GPTConfig
) -> tuple[jax.Array, Params]:
    return mlp.analytic_value_and_grad(params, tokens_BxT1, n_B)


REGISTRY: dict[str, Model] = {
    "bigram": Model(
        "bigram", bigram.param_shapes, _bigram_forward, _no_cache, partial(_stateless_step, _bigram_forward),
        counted=True, unused=_GRADIENT_FIELDS | {"n_layer", "n_embd", "n_head", "grad"},
    ),
    "mlp": Model(
        "mlp", mlp.param_shapes, _mlp_forward, _no_cache, partial(_stateless_step, _mlp_forward),
        counted=False, unused=frozenset({"n_layer", "n_head", "smoothing", "count", "dropout"}),
        analytic_value_and_grad=_mlp_analytic,
    ),
    "gpt": Model(
        "gpt", gpt_shapes, gpt, init_kv_cache, gpt_step,
        counted=False, unused=frozenset({"smoothing", "count"}),
    ),
}  # fmt: skip
assert set(REGISTRY) == set(MODELS)  # config.py validates the names without importing the models


def get(config: GPTConfig) -> Model:
    """The registry entry of ``config.model``."""
    return REGISTRY[config.model]


def unused_fields(config: GPTConfig, train: TrainConfig) -> frozenset[str]:
    """The config fields ``config.model`` ignores when trained with ``train``: the registry's ``unused``, except
    that counting online (``count`` "online", one document per step) takes ``steps``."""
    unused = get(config).unused
    if get(config).counted and train.count == "online":
        unused -= {"steps"}
    return unused


def analytic_gradient(
    config: GPTConfig,
) -> Callable[[Params, jax.Array, jax.Array, GPTConfig], tuple[jax.Array, Params]]:
    """``config.model``'s hand-written ``(params, tokens_BxT1, n_B, config) -> (loss, grads)`` (``train.grad``
    "analytic"): only the MLP has one (Step 1's); for another model it is a UserError."""
    analytic = get(config).analytic_value_and_grad
    if analytic is None:
        have = [name for name, m in REGISTRY.items() if m.analytic_value_and_grad is not None]
        raise UserError(
            f"`model` {config.model} has no hand-written gradient (only {', '.join(have)} has, Step 1's): "
            "use `grad` autodiff"
        )
    return analytic


def param_shapes(config: GPTConfig) -> dict[str, tuple[int, int]]:
    """The state_dict's names and (nout, nin) shapes for ``config.model``, in the original's order."""
    return get(config).param_shapes(config)


def num_params(params: Params) -> int:
    """Total number of scalars in a state_dict."""
    return sum(int(p.size) for p in params.values())


def forward(params: Params, tokens_BxT: jax.Array, config: GPTConfig, dropout: Dropout | None = None) -> jax.Array:
    """Next-token logits at every position of a batch of sequences: (B, T) int tokens -> (B, T, V). ``dropout``
    (``transformer.dropout_fn``, training only) is the GPT's; the other models have none."""
    if dropout is None:
        return get(config).forward(params, tokens_BxT, config)
    if config.model != "gpt":
        raise UserError(f"`model` {config.model} has no dropout: drop `dropout`")
    return gpt(params, tokens_BxT, config, dropout)


def init_cache(config: GPTConfig, batch: int, dtype: jnp.dtype | None = None) -> Cache:
    """What sampling carries between positions: the GPT's key/value cache; nothing for bigram and MLP."""
    return get(config).init_cache(config, batch, dtype or default_float())


def forward_step(
    params: Params, token_B: jax.Array, pos: jax.Array, cache: Cache, config: GPTConfig
) -> tuple[jax.Array, Cache]:
    """One token per sequence at position ``pos``: (logits_BxV, new cache)."""
    return get(config).forward_step(params, token_B, pos, cache, config)
