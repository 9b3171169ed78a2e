"""Next-token loss: mean negative log-likelihood over the predicted positions, padding masked out."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from microgpt_jax.config import GPTConfig
from microgpt_jax.model.registry import forward
from microgpt_jax.model.transformer import Dropout


def token_nll(
    params: dict[str, jax.Array],
    tokens_BxT1: jax.Array,
    n_B: jax.Array,
    config: GPTConfig,
    dropout: Dropout | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Per-position -log p(target) and the mask of positions that count.

    ``tokens_BxT1`` holds ``[BOS] + doc + [BOS]`` padded to T + 1 columns; position t predicts token t + 1;
    only the first ``n_B`` positions of each row count (the original's ``n = min(block_size, len - 1)``).
    ``dropout`` is the forward's (training only).
    """
    inputs_BxT, targets_BxT = tokens_BxT1[:, :-1], tokens_BxT1[:, 1:]
    logits_BxTxV = forward(params, inputs_BxT, config, dropout)
    logp_BxTxV = jax.nn.log_softmax(logits_BxTxV, axis=-1)
    # -logp[target] by selecting the target column: its gradient is elementwise, where take_along_axis's is a
    # scatter, slow on CPU (~1.6x at batch 1). A select, not a one-hot product: XLA:CPU rewrites the product
    # as a dot whose YNNPACK fusion miscomputed under jit(vmap(...)) (a sweep's members got each other's loss).
    target_BxTxV = jnp.arange(logp_BxTxV.shape[-1]) == targets_BxT[..., None]
    nll_BxT = -jnp.sum(jnp.where(target_BxTxV, logp_BxTxV, 0.0), axis=-1)
    mask_BxT = jnp.arange(inputs_BxT.shape[1]) < n_B[:, None]
    return nll_BxT, mask_BxT


def loss_fn(
    params: dict[str, jax.Array],
    tokens_BxT1: jax.Array,
    n_B: jax.Array,
    config: GPTConfig,
    dropout: Dropout | None = None,
) -> jax.Array:
    """Mean NLL per predicted token over the batch. With one document it is the original's per-document loss."""
    nll_BxT, mask_BxT = token_nll(params, tokens_BxT1, n_B, config, dropout)
    return jnp.sum(jnp.where(mask_BxT, nll_BxT, 0.0)) / jnp.sum(mask_BxT)


def nll_sum(
    params: dict[str, jax.Array], tokens_BxT1: jax.Array, n_B: jax.Array, config: GPTConfig
) -> tuple[jax.Array, jax.Array]:
    """(sum of NLL, number of predicted tokens), for evaluation over many batches."""
    nll_BxT, mask_BxT = token_nll(params, tokens_BxT1, n_B, config)
    return jnp.sum(jnp.where(mask_BxT, nll_BxT, 0.0)), jnp.sum(mask_BxT)
