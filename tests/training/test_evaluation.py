"""Held-out evaluation: the mean NLL per predicted token over whole documents, in padded batches."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from microgpt_jax.config import GPTConfig
from microgpt_jax.corpus.documents import encode_docs
from microgpt_jax.corpus.tokenizer import Tokenizer
from microgpt_jax.model.init import init_params
from microgpt_jax.model.loss import loss_fn
from microgpt_jax.training.evaluation import evaluate

DOCS = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "charlotte"]
TOK = Tokenizer.from_docs(DOCS)
CONFIG = GPTConfig(vocab_size=TOK.vocab_size, block_size=8)
TOKENS, N = encode_docs(DOCS, TOK, CONFIG.block_size)


def test_evaluate_is_mean_nll_per_token():
    params = init_params(jax.random.key(3), CONFIG)
    by_doc = [
        float(loss_fn(params, jnp.asarray(TOKENS[i : i + 1]), jnp.asarray(N[i : i + 1]), CONFIG)) for i in range(7)
    ]
    expected = sum(loss * n for loss, n in zip(by_doc, N, strict=True)) / N.sum()
    assert abs(evaluate(params, TOKENS, N, CONFIG, batch=3) - expected) < 1e-5
