"""Optimizers as pure functions over pytrees: ``init(params) -> state``,
``update(grads, state, params) -> (params, state)``.

SGD with linear decay is written by hand; Adam comes from optax. Both decay the learning rate linearly
to zero over ``num_steps``, as the original does: lr_t = lr * (1 - t / num_steps) at step t (from 0).
Hyperparameters may be Python numbers or traced arrays (sweeps vmap over them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

Params = dict[str, jax.Array]


class Optimizer(NamedTuple):
    """A pair of pure functions: ``init(params) -> state`` and ``update(grads, state, params) -> (params, state)``."""

    init: Callable[[Params], Any]
    update: Callable[[Params, Any, Params], tuple[Params, Any]]


def linear_decay(lr: float | jax.Array, num_steps: int | jax.Array) -> Callable[[jax.Array], jax.Array]:
    """The schedule lr_t = lr * (1 - t / num_steps), t counted from 0."""
    # the step count is an int32; divide in the default float (float64 under --x64, as the original)
    return lambda t: lr * (1 - jnp.asarray(t, jnp.result_type(float)) / num_steps)


def sgd(lr: float | jax.Array, num_steps: int | jax.Array) -> Optimizer:
    """Plain SGD, p <- p - lr_t * g, with linear decay. Its state is the step count."""
    schedule = linear_decay(lr, num_steps)

    def init(params: Params) -> jax.Array:
        return jnp.zeros((), jnp.int32)

    def update(grads: Params, step: jax.Array, params: Params) -> tuple[Params, jax.Array]:
        lr_t = schedule(step)
        new = jax.tree.map(lambda p, g: p - (lr_t * g).astype(p.dtype), params, grads)
        return new, step + 1

    return Optimizer(init, update)


def adam(
    lr: float | jax.Array = 0.01,
    num_steps: int | jax.Array = 1000,
    b1: float | jax.Array = 0.85,
    b2: float | jax.Array = 0.99,
    eps: float | jax.Array = 1e-8,
) -> Optimizer:
    """optax's Adam (bias-corrected with t = step + 1) with the original's defaults and linear decay."""
    tx = optax.adam(learning_rate=linear_decay(lr, num_steps), b1=b1, b2=b2, eps=eps)

    def update(grads: Params, state: Any, params: Params) -> tuple[Params, Any]:
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return Optimizer(tx.init, update)


def make_optimizer(
    name: str,
    lr: float | jax.Array,
    num_steps: int | jax.Array,
    b1: float | jax.Array = 0.85,
    b2: float | jax.Array = 0.99,
    eps: float | jax.Array = 1e-8,
) -> Optimizer:
    """The optimizer named ``sgd`` or ``adam``."""
    if name == "sgd":
        return sgd(lr, num_steps)
    if name == "adam":
        return adam(lr, num_steps, b1, b2, eps)
    raise ValueError(f"unknown optimizer {name!r}")
