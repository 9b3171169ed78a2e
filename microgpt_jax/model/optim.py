"""Optimizers as pure functions over pytrees: ``init(params) -> state``,
``update(grads, state, params) -> (params, state)``.

SGD with linear decay is written by hand; Adam and AdamW come from optax. By default every optimizer decays
the learning rate linearly to zero over ``num_steps``, as the original does: lr_t = lr * (1 - t / num_steps) at
step t (from 0); ``lr_schedule`` adds a cosine decay and a linear warm-up beside it.
Hyperparameters may be Python numbers or traced arrays (sweeps vmap over them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from microgpt_jax.model.types import Params


class Optimizer(NamedTuple):
    """A pair of pure functions: ``init(params) -> state`` and ``update(grads, state, params) -> (params, state)``."""

    init: Callable[[Params], Any]
    update: Callable[[Params, Any, Params], tuple[Params, Any]]


def linear_decay(lr: float | jax.Array, num_steps: int | jax.Array) -> Callable[[jax.Array], jax.Array]:
    """The schedule lr_t = lr * (1 - t / num_steps), t counted from 0."""
    # the step count is an int32; divide in the default float (float64 under x64, as the original)
    return lambda t: lr * (1 - jnp.asarray(t, jnp.result_type(float)) / num_steps)


def lr_schedule(
    lr: float | jax.Array,
    num_steps: int | jax.Array,
    kind: str = "linear",
    warmup: int | jax.Array | None = None,
) -> Callable[[jax.Array], jax.Array]:
    """The learning rate at step t (from 0): ``linear`` decays to 0 as the original does, ``cosine`` as
    lr * (1 + cos(pi * p)) / 2, p the fraction of the decay done. With ``warmup`` W the first W steps ramp up,
    lr * (t + 1) / W, and the decay runs over the other num_steps - W steps (a traced W of 0 is no warm-up).
    Without warm-up the linear schedule is ``linear_decay``, operation for operation."""
    if kind not in ("linear", "cosine"):
        raise ValueError(f"unknown schedule {kind!r}")
    if kind == "linear" and warmup is None:
        return linear_decay(lr, num_steps)

    def at(t: jax.Array) -> jax.Array:
        t = jnp.asarray(t, jnp.result_type(float))
        w = 0 if warmup is None else warmup
        p = jnp.clip((t - w) / (num_steps - w), 0, 1)
        decay = 1 - p if kind == "linear" else (1 + jnp.cos(jnp.pi * p)) / 2
        if warmup is None:
            return lr * decay
        return lr * decay * jnp.minimum(1, (t + 1) / jnp.maximum(w, 1))

    return at


def sgd(
    lr: float | jax.Array,
    num_steps: int | jax.Array,
    schedule: Callable[[jax.Array], jax.Array] | None = None,
) -> Optimizer:
    """Plain SGD, p <- p - lr_t * g, with linear decay (or ``schedule``'s lr_t). Its state is the step count."""
    schedule = schedule or linear_decay(lr, num_steps)

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
    weight_decay: float | jax.Array | None = None,
    schedule: Callable[[jax.Array], jax.Array] | None = None,
) -> Optimizer:
    """optax's Adam (bias-corrected with t = step + 1) with the original's defaults and linear decay (or
    ``schedule``'s lr_t); with a ``weight_decay`` it is optax's AdamW, p <- p - lr_t * (adam's step + wd * p),
    decoupled from the gradient."""
    schedule = schedule or linear_decay(lr, num_steps)
    if weight_decay is None:
        tx = optax.adam(learning_rate=schedule, b1=b1, b2=b2, eps=eps)
    else:
        tx = optax.adamw(learning_rate=schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)

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
    *,
    schedule: str = "linear",
    warmup: int | jax.Array | None = None,
    weight_decay: float | jax.Array | None = None,
) -> Optimizer:
    """The optimizer named ``sgd`` or ``adam`` on ``lr_schedule(lr, num_steps, schedule, warmup)``; a
    ``weight_decay`` (Adam only) makes Adam AdamW. None leaves warm-up and weight decay out of the program."""
    lr_t = lr_schedule(lr, num_steps, schedule, warmup)
    if name == "sgd":
        if weight_decay is not None:
            raise ValueError("weight decay is AdamW's: use the adam optimizer")
        return sgd(lr, num_steps, lr_t)
    if name == "adam":
        return adam(lr, num_steps, b1, b2, eps, weight_decay, lr_t)
    raise ValueError(f"unknown optimizer {name!r}")
