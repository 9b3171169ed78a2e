"""Step 1 of the progression: an MLP that predicts the next token from the current one alone.

Three matrices under microgpt's names, each (nout, nin): ``wte`` (V, C), ``mlp_fc1`` (4C, C) and
``mlp_fc2`` (V, 4C); on names (V = 27, C = 16) that is 3,184 parameters. The forward is
``logits = mlp_fc2 · relu(mlp_fc1 · wte[token])`` at every position independently: no position embedding,
no attention, no norm. Trained like the GPT (the loss is the same mean NLL, the gradient comes from jax.grad).
"""

from __future__ import annotations

import jax

from microgpt_jax.config import GPTConfig
from microgpt_jax.model import linear


def param_shapes(config: GPTConfig) -> dict[str, tuple[int, int]]:
    """The MLP's state_dict names and (nout, nin) shapes."""
    C, V = config.n_embd, config.vocab_size
    return {"wte": (V, C), "mlp_fc1": (4 * C, C), "mlp_fc2": (V, 4 * C)}


def mlp_forward(params: dict[str, jax.Array], tokens_BxT: jax.Array) -> jax.Array:
    """Logits of the next token at every position, from that position's token alone: (B, T) -> (B, T, V)."""
    emb_BxTxC = params["wte"][tokens_BxT]
    hidden_BxTx4C = jax.nn.relu(linear(emb_BxTxC, params["mlp_fc1"]))
    return linear(hidden_BxTx4C, params["mlp_fc2"])
