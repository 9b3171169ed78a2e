"""Step 0 of the progression: the bigram model, a table of next-token counts built without gradients.

Count every (token, next token) pair over the training documents (``[BOS] + doc + [BOS]``), add ``k`` to every
cell (add-k smoothing, k = 1 by default, so no pair has probability zero) and normalise each row: row ``i``
is P(next | token i). The state_dict holds one (V, V) matrix, ``wte``, the log of those probabilities: like
the MLP and the GPT the model starts with ``wte[token]``, and here that row is already the logits (its
softmax is the row of probabilities), so the same loss, evaluation and sampling code serve it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from microgpt_jax.config import GPTConfig
from microgpt_jax.errors import UserError


def param_shapes(config: GPTConfig) -> dict[str, tuple[int, int]]:
    """The bigram's state_dict: one (V, V) table of next-token log-probabilities."""
    return {"wte": (config.vocab_size, config.vocab_size)}


def count_bigrams(tokens_NxT1: np.ndarray, n_N: np.ndarray, vocab_size: int) -> np.ndarray:
    """counts[i, j] = how often token j follows token i, over the predicted positions of every document.

    Takes ``encode_docs``' output, so the pairs counted are exactly the (input, target) pairs the loss scores.
    """
    tokens_NxT1, n_N = np.asarray(tokens_NxT1), np.asarray(n_N)
    mask_NxT = np.arange(tokens_NxT1.shape[1] - 1) < n_N[:, None]
    prev, nxt = tokens_NxT1[:, :-1][mask_NxT], tokens_NxT1[:, 1:][mask_NxT]
    counts_VxV = np.zeros((vocab_size, vocab_size), np.int64)
    np.add.at(counts_VxV, (prev, nxt), 1)
    return counts_VxV


def bigram_params(counts_VxV: np.ndarray, smoothing: float = 1.0, dtype: jnp.dtype | None = None) -> dict:
    """The state_dict ``{"wte": log P(next | token)}`` of add-``smoothing`` counts, rows normalised."""
    if not (np.isfinite(smoothing) and smoothing > 0):
        raise UserError(f"--smoothing must be a finite number > 0 (it keeps unseen pairs possible), got {smoothing}")
    smoothed_VxV = np.asarray(counts_VxV, np.float64) + smoothing
    log_probs_VxV = np.log(smoothed_VxV / smoothed_VxV.sum(axis=1, keepdims=True))
    dtype = dtype or jnp.zeros(()).dtype
    return {"wte": jnp.asarray(log_probs_VxV, dtype)}


def bigram_forward(params: dict[str, jax.Array], tokens_BxT: jax.Array) -> jax.Array:
    """Logits of the next token at every position: the table's row of the current token, (B, T) -> (B, T, V)."""
    return params["wte"][tokens_BxT]
