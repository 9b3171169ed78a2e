"""Step 1 of the progression: an MLP that predicts the next token from the current one alone.

Three matrices under microgpt's names, each (nout, nin): ``wte`` (V, C), ``mlp_fc1`` (4C, C) and
``mlp_fc2`` (V, 4C); on names (V = 27, C = 16) that is 3,184 parameters. The forward is
``logits = mlp_fc2 · relu(mlp_fc1 · wte[token])`` at every position independently: no position embedding,
no attention, no norm. Trained like the GPT (the loss is the same mean NLL, the gradient comes from jax.grad).

Step 1 of the guide derives this model's gradient by hand before autograd exists, and checks it against a
numerical one. ``analytic_value_and_grad`` is that hand-written backward pass (the only one in the package);
``numerical_gradient`` and ``gradient_check`` are the check, extended with a comparison against jax.grad.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from microgpt_jax.config import GPTConfig
from microgpt_jax.model import linear

Params = dict[str, jax.Array]


def param_shapes(config: GPTConfig) -> dict[str, tuple[int, int]]:
    """The MLP's state_dict names and (nout, nin) shapes."""
    C, V = config.n_embd, config.vocab_size
    return {"wte": (V, C), "mlp_fc1": (4 * C, C), "mlp_fc2": (V, 4 * C)}


def mlp_forward(params: dict[str, jax.Array], tokens_BxT: jax.Array) -> jax.Array:
    """Logits of the next token at every position, from that position's token alone: (B, T) -> (B, T, V)."""
    emb_BxTxC = params["wte"][tokens_BxT]
    hidden_BxTx4C = jax.nn.relu(linear(emb_BxTxC, params["mlp_fc1"]))
    return linear(hidden_BxTx4C, params["mlp_fc2"])


def analytic_value_and_grad(params: Params, tokens_BxT1: jax.Array, n_B: jax.Array) -> tuple[jax.Array, Params]:
    """The MLP's loss and its gradient, the backward pass written by hand with the chain rule.

    The loss is ``loss_fn``'s: mean NLL over the first ``n_B`` positions of every row of ``[BOS] + doc + [BOS]``
    (padding masked out). Returns ``(loss, grads)`` like ``jax.value_and_grad(loss_fn)(params, tokens_BxT1, n_B,
    config)``, so a training step can take either. Pure and jittable.
    """
    wte, fc1, fc2 = params["wte"], params["mlp_fc1"], params["mlp_fc2"]
    inputs_BxT, targets_BxT = tokens_BxT1[:, :-1], tokens_BxT1[:, 1:]
    mask_BxT = jnp.arange(inputs_BxT.shape[1]) < n_B[:, None]
    count = jnp.sum(mask_BxT)

    # forward, keeping every intermediate the backward pass reads
    emb_BxTxC = wte[inputs_BxT]
    pre_BxTx4C = linear(emb_BxTxC, fc1)
    hidden_BxTx4C = jax.nn.relu(pre_BxTx4C)
    logits_BxTxV = linear(hidden_BxTx4C, fc2)
    logp_BxTxV = jax.nn.log_softmax(logits_BxTxV, axis=-1)
    target_BxTxV = jnp.arange(wte.shape[0]) == targets_BxT[..., None]
    nll_BxT = -jnp.sum(jnp.where(target_BxTxV, logp_BxTxV, 0.0), axis=-1)
    loss = jnp.sum(jnp.where(mask_BxT, nll_BxT, 0.0)) / count

    # softmax + cross-entropy: d loss / d logits = (probs - one_hot(target)) / count at counted positions
    dlogits_BxTxV = jnp.exp(logp_BxTxV) - target_BxTxV
    dlogits_BxTxV = jnp.where(mask_BxT[..., None], dlogits_BxTxV, 0.0) / count
    # logits = hidden @ fc2.T
    dfc2_Vx4C = jnp.einsum("btv,bth->vh", dlogits_BxTxV, hidden_BxTx4C)
    dhidden_BxTx4C = dlogits_BxTxV @ fc2
    # relu passes the gradient where its input was positive (jax.nn.relu's convention at 0 too)
    dpre_BxTx4C = jnp.where(pre_BxTx4C > 0, dhidden_BxTx4C, 0.0)
    # pre = emb @ fc1.T
    dfc1_4CxC = jnp.einsum("bth,btc->hc", dpre_BxTx4C, emb_BxTxC)
    demb_BxTxC = dpre_BxTx4C @ fc1
    # each position's embedding is a row of wte: add its gradient into that row (a token may repeat)
    dwte_VxC = jnp.zeros_like(wte).at[inputs_BxT].add(demb_BxTxC)
    return loss, {"wte": dwte_VxC, "mlp_fc1": dfc1_4CxC, "mlp_fc2": dfc2_Vx4C}


def numerical_gradient(loss_of_params: Callable[[Params], jax.Array], params: Params, eps: float = 1e-5) -> Params:
    """Forward-difference gradient, (L(p + eps e_i) - L(p)) / eps for every scalar parameter, in params' shapes.

    One loss evaluation per scalar (3,184 for the default MLP), run as a ``lax.map`` over flat indices, so it is
    pure and jittable. Use it in float64 (``with jax.enable_x64(True)`` and float64 params), as the guide's
    Python floats are: in float32 the rounding of the loss (~1e-7), divided by eps, swamps the gradient.
    """
    flat_P, unravel = ravel_pytree(params)
    base = loss_of_params(params)

    def nudged_loss(i: jax.Array) -> jax.Array:
        return loss_of_params(unravel(flat_P.at[i].add(eps)))

    losses_P = jax.lax.map(nudged_loss, jnp.arange(flat_P.size))
    return unravel((losses_P - base) / eps)


def _max_abs_diff(a: Params, b: Params) -> jax.Array:
    """The largest |a - b| over every entry of two same-shaped state_dicts."""
    return jnp.max(jnp.stack([jnp.max(jnp.abs(a[k] - b[k])) for k in a]))


@partial(jax.jit, static_argnames=("config", "eps"))
def _gradient_check(
    params: Params, tokens_BxT1: jax.Array, n_B: jax.Array, config: GPTConfig, eps: float
) -> tuple[jax.Array, ...]:
    from microgpt_jax.loss import loss_fn  # here, not at the top: loss -> models -> mlp would be a cycle

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
