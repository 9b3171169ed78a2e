"""Step 1's gradient check drawn: the MLP's hand-written (analytic) gradient against the numerical one, every
parameter a point; on the line y = x when they agree."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from microgpt_jax.config import GPTConfig
from microgpt_jax.model.loss import loss_fn
from microgpt_jax.model.mlp import analytic_value_and_grad, numerical_gradient
from microgpt_jax.model.types import Params
from microgpt_jax.view.svg import esc, scatter

MAX_POINTS = 4000  # points drawn (a larger MLP shows an even subset; the maximum difference uses all)


def gradient_pairs(params: dict[str, Any], ids: list[int], eps: float = 1e-5) -> dict[str, np.ndarray]:
    """The analytic and numerical (forward difference, ``eps``) gradients of the loss of one document
    ``ids`` (``[BOS] + doc + [BOS]``) at ``params``, in float64, flattened in state_dict order, with names."""
    with jax.enable_x64(True):
        p64 = {k: jnp.asarray(np.asarray(v), jnp.float64) for k, v in params.items()}
        tokens_1xT1 = jnp.asarray([ids], jnp.int32)
        n_1 = jnp.asarray([len(ids) - 1], jnp.int32)
        config = GPTConfig(vocab_size=p64["wte"].shape[0], n_embd=p64["wte"].shape[1], model="mlp")

        @jax.jit
        def both(p: Params) -> tuple[Params, Params]:
            numerical = numerical_gradient(lambda q: loss_fn(q, tokens_1xT1, n_1, config), p, eps)
            return analytic_value_and_grad(p, tokens_1xT1, n_1)[1], numerical

        analytic, numerical = both(p64)
        names = [f"{k}[{i}, {j}]" for k, v in params.items() for i in range(v.shape[0]) for j in range(v.shape[1])]
        flat = {
            key: np.concatenate([np.asarray(g[k]).ravel() for k in params])
            for key, g in (("analytic", analytic), ("numerical", numerical))
        }
    return {**flat, "names": np.asarray(names)}


def gradient_scatter(pairs: dict[str, np.ndarray], doc: str) -> str:
    """The scatter of numerical against analytic gradients, and the largest difference."""
    a, n, names = pairs["analytic"], pairs["numerical"], pairs["names"]
    keep = np.unique(np.linspace(0, len(a) - 1, min(len(a), MAX_POINTS)).astype(int))
    tips = [f"{names[i]}: analytic {a[i]:.6g}, numerical {n[i]:.6g}" for i in keep]
    chart = scatter(
        a[keep],
        n[keep],
        tips,
        xlabel="analytic gradient",
        ylabel="numerical gradient",
        diagonal=True,
        size=(380, 320),
        label="gradient check",
    )
    diff = float(np.max(np.abs(a - n))) if len(a) else 0.0
    return (
        f"{chart}<p>Document <code>{esc(doc)}</code>: {len(a)} parameters, max |numerical − analytic| = "
        f'<b data-max-diff="{diff:.6g}">{diff:.3e}</b> (forward differences, eps 1e-5, float64).</p>'
    )
