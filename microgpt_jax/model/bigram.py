"""Step 0 of the progression: the bigram model, a table of next-token counts built without gradients.

Count every (token, next token) pair over the training documents (``[BOS] + doc + [BOS]``), add ``k`` to every
cell (add-k smoothing, k = 1 by default, so no pair has probability zero) and normalise each row: row ``i``
is P(next | token i). The state_dict holds one (V, V) matrix, ``wte``, the log of those probabilities: like
the MLP and the GPT the model starts with ``wte[token]``, and here that row is already the logits (its
softmax is the row of probabilities), so the same loss, evaluation and sampling code serve it.

``online_bigram`` is the guide's training loop for this step: one document per step, scored under the counts so
far and then counted, which gives a per-step loss curve; ``bigram_params`` turns its final counts into the table.
The guide's step 0 (``step_configs(0)``: ``TrainConfig.count`` "online") runs it; ``GPTConfig.model``
"bigram" with ``count`` "all" counts every document at once.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike, DTypeLike

from microgpt_jax.config import GPTConfig
from microgpt_jax.errors import UserError
from microgpt_jax.model.dtypes import default_float
from microgpt_jax.model.types import Params


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


def bigram_params(counts_VxV: np.ndarray, smoothing: float = 1.0, dtype: DTypeLike | None = None) -> Params:
    """The state_dict ``{"wte": log P(next | token)}`` of add-``smoothing`` counts, rows normalised."""
    if not (np.isfinite(smoothing) and smoothing > 0):
        raise UserError(f"`smoothing` must be a finite number > 0 (it keeps unseen pairs possible), got {smoothing}")
    smoothed_VxV = np.asarray(counts_VxV, np.float64) + smoothing
    log_probs_VxV = np.log(smoothed_VxV / smoothed_VxV.sum(axis=1, keepdims=True))
    dtype = dtype or default_float()
    return {"wte": jnp.asarray(log_probs_VxV, dtype)}


def bigram_forward(params: dict[str, jax.Array], tokens_BxT: jax.Array) -> jax.Array:
    """Logits of the next token at every position: the table's row of the current token, (B, T) -> (B, T, V)."""
    return params["wte"][tokens_BxT]


def online_bigram(
    tokens_NxT1: ArrayLike, n_N: ArrayLike, vocab_size: int, steps: int, smoothing: float = 1.0
) -> tuple[jax.Array, jax.Array]:
    """Step 0's training loop: ``(losses_S, counts_VxV)`` after counting one document per step.

    Step ``s`` takes document ``s % N``. It first scores that document under the counts so far, with add-one
    smoothing, p(j | i) = (c[i, j] + 1) / (sum_j c[i, j] + vocab_size), the loss being the mean of -log p over
    the document's ``n`` pairs (``(1 / n) * sum(losses)``, as the guide does); only then are its pairs added to
    the counts. So step 0 scores under uniform probabilities and a document never helps predict itself.
    ``smoothing`` k makes it add-k: (c[i, j] + k) / (sum_j c[i, j] + k * vocab_size) (the guide's k is 1).

    The guide takes every pair, ``n = len(tokens) - 1``, with no block_size cap: ``n_N`` is used as given, so
    encode with a ``block_size`` above the longest document (16 already is for names, at most 15 characters).
    The counts are integers; ``bigram_params(counts)`` makes them the model's log-probability table.
    """
    if not (np.isfinite(smoothing) and smoothing > 0):
        raise UserError(f"`smoothing` must be a finite number > 0 (it keeps unseen pairs possible), got {smoothing}")
    float_dtype = jnp.result_type(float)  # float64 under x64, as the guide's Python floats
    k = jnp.asarray(smoothing, float_dtype)
    return _online_bigram(jnp.asarray(tokens_NxT1), jnp.asarray(n_N), k, vocab_size, steps)


@partial(jax.jit, static_argnames=("vocab_size", "steps"))
def _online_bigram(
    tokens_NxT1: jax.Array, n_N: jax.Array, k: jax.Array, vocab_size: int, steps: int
) -> tuple[jax.Array, jax.Array]:
    num_docs, T = tokens_NxT1.shape[0], tokens_NxT1.shape[1] - 1
    float_dtype = k.dtype

    def step(counts_VxV: jax.Array, s: jax.Array) -> tuple[jax.Array, jax.Array]:
        doc_T1, n = tokens_NxT1[s % num_docs], n_N[s % num_docs]
        prev_T, next_T = doc_T1[:-1], doc_T1[1:]
        mask_T = jnp.arange(T) < n
        # score before counting: the document is predicted by the documents before it only
        totals_T = jnp.sum(counts_VxV[prev_T], axis=1).astype(float_dtype) + k * vocab_size
        probs_T = (counts_VxV[prev_T, next_T].astype(float_dtype) + k) / totals_T
        loss = jnp.sum(jnp.where(mask_T, -jnp.log(probs_T), 0.0)) / n
        # padding positions add zero (a repeated pair adds once per occurrence)
        counts_VxV = counts_VxV.at[prev_T, next_T].add(mask_T.astype(counts_VxV.dtype))
        return counts_VxV, loss

    counts_VxV, losses_S = jax.lax.scan(step, jnp.zeros((vocab_size, vocab_size), jnp.int32), jnp.arange(steps))
    return losses_S, counts_VxV
