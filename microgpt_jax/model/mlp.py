"""Step 1 of the progression: an MLP that predicts the next token from the current one alone.

Three matrices under microgpt's names, each (nout, nin): ``wte`` (V, C), ``mlp_fc1`` (4C, C) and
``mlp_fc2`` (V, 4C); on names (V = 27, C = 16) that is 3,184 parameters. The forward is
``logits = mlp_fc2 · relu(mlp_fc1 · wte[token])`` at every position independently: no position embedding,
no attention, no norm. Trained like the GPT (the loss is the same mean NLL), its gradient from jax.grad or
from its own backward pass (``TrainConfig.grad``).

Step 1 of the guide derives this model's gradient by hand before autograd exists, and checks it against a
numerical one. ``analytic_value_and_grad`` is that hand-written backward pass (the only one in the package;
the guide's step 1 trains with it, ``TrainConfig.grad`` "analytic", and step 2 with jax.grad);
``numerical_gradient`` and ``training/gradcheck.py`` are the check, extended with a comparison against jax.grad.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from microgpt_jax.config import GPTConfig
from microgpt_jax.model.transformer import linear
from microgpt_jax.model.types import Params


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
