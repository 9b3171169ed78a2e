"""Step 1's gradient check: the MLP's hand-written gradient against the numerical one and against jax.grad.

The guide checks its chain-rule gradient by forward differences on the first training name and prints
``gradient check | loss_n ... | loss_a ... | max diff ...``; this module adds the comparison with jax.grad.
Run it in float64: a forward difference of step 1e-5 in float32 is mostly rounding.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from microgpt_jax.config import GPTConfig
from microgpt_jax.loss import loss_fn
from microgpt_jax.mlp import Params, analytic_value_and_grad, numerical_gradient


def _max_abs_diff(a: Params, b: Params) -> jax.Array:
    """The largest |a - b| over every entry of two same-shaped state_dicts."""
    return jnp.max(jnp.stack([jnp.max(jnp.abs(a[k] - b[k])) for k in a]))


@partial(jax.jit, static_argnames=("config", "eps"))
def _gradient_check(
    params: Params, tokens_BxT1: jax.Array, n_B: jax.Array, config: GPTConfig, eps: float
) -> tuple[jax.Array, ...]:
    def loss_of_params(p: Params) -> jax.Array:
        return loss_fn(p, tokens_BxT1, n_B, config)

    numerical = numerical_gradient(loss_of_params, params, eps)
    loss_a, analytic = analytic_value_and_grad(params, tokens_BxT1, n_B)
    autodiff = jax.grad(loss_fn)(params, tokens_BxT1, n_B, config)
    return loss_of_params(params), loss_a, _max_abs_diff(numerical, analytic), _max_abs_diff(analytic, autodiff)


def gradient_check(params: Params, tokens_BxT1: jax.Array, n_B: jax.Array, eps: float = 1e-5) -> dict[str, float]:
    """Step 1's gradient check: the hand-written gradient against the numerical one, and against jax.grad.

    Returns ``loss_n`` (the loss, ``loss_fn``'s, the numerical gradient differences from), ``loss_a`` (the one
    ``analytic_value_and_grad`` computes), ``max_diff`` (max |numerical - analytic| over all parameters) and
    ``max_diff_jax_grad`` (max |analytic - jax.grad(loss_fn)|). Run it in float64 (see ``numerical_gradient``).
    """
    wte = params["wte"]
    config = GPTConfig(vocab_size=wte.shape[0], n_embd=wte.shape[1], model="mlp")
    loss_n, loss_a, max_diff, max_diff_jax_grad = _gradient_check(
        params, jnp.asarray(tokens_BxT1), jnp.asarray(n_B), config, eps
    )
    return {
        "loss_n": float(loss_n),
        "loss_a": float(loss_a),
        "max_diff": float(max_diff),
        "max_diff_jax_grad": float(max_diff_jax_grad),
    }


def format_gradient_check(result: dict[str, float]) -> str:
    """The guide's line, ``gradient check | loss_n ... | loss_a ... | max diff ...``, plus the jax.grad figure."""
    return (
        f"gradient check | loss_n {result['loss_n']:.6f} | loss_a {result['loss_a']:.6f} "
        f"| max diff {result['max_diff']:.8f} | max diff vs jax.grad {result['max_diff_jax_grad']:.8f}"
    )
