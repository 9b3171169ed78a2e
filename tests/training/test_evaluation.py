"""Held-out evaluation: the mean NLL per predicted token over whole documents, in padded batches."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from microgpt_jax.config import GPTConfig
from microgpt_jax.corpus.documents import encode_docs
from microgpt_jax.corpus.tokenizer import Tokenizer
from microgpt_jax.errors import UserError
from microgpt_jax.model.init import init_params
from microgpt_jax.model.loss import loss_fn
from microgpt_jax.training.evaluation import compile_evaluate, evaluate, padded_batches

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


def test_padded_batches_keep_one_shape_and_pad_with_rows_that_predict_nothing() -> None:
    batches = list(padded_batches(TOKENS, N, 3))
    assert [t.shape for t, _ in batches] == [(3, 9)] * 3  # 7 documents: 3 + 3 + 1 padded to 3
    np.testing.assert_array_equal(np.concatenate([t for t, _ in batches])[:7], TOKENS)
    np.testing.assert_array_equal(np.concatenate([n for _, n in batches]), [*N, 0, 0])
    assert batches[-1][1].dtype == N.dtype
    # fewer documents than a batch: one batch of just those
    (only,) = padded_batches(TOKENS[:2], N[:2], 1024)
    assert only[0].shape == (2, 9)


def test_the_batch_size_and_the_token_dtype_change_nothing() -> None:
    params = init_params(5, CONFIG)
    values = [evaluate(params, TOKENS, N, CONFIG, batch=b) for b in (2, 1024)]  # 4 batches (the last padded), or 1
    np.testing.assert_allclose(values, values[0], rtol=1e-6)
    narrow = evaluate(params, TOKENS.astype(np.uint8), N.astype(np.uint8), CONFIG)
    np.testing.assert_allclose(narrow, values[0], rtol=1e-6)


def test_no_documents_is_nan_and_bad_tokens_are_refused() -> None:
    params = init_params(5, CONFIG)
    assert np.isnan(evaluate(params, TOKENS[:0], N[:0], CONFIG))
    bad = TOKENS.copy()
    bad[0, 1] = CONFIG.vocab_size
    with pytest.raises(UserError, match="outside the vocabulary"):
        evaluate(params, bad, N, CONFIG)


def test_compile_evaluate_prepares_the_program_evaluate_runs() -> None:
    params = init_params(6, CONFIG)
    compile_evaluate(jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params), 7, CONFIG, batch=4)
    compile_evaluate(params, 0, CONFIG)  # no documents: nothing to compile
    by_doc = [float(loss_fn(params, TOKENS[i : i + 1], N[i : i + 1], CONFIG)) for i in range(7)]
    expected = sum(loss * n for loss, n in zip(by_doc, N, strict=True)) / N.sum()
    assert abs(evaluate(params, TOKENS, N, CONFIG, batch=4) - expected) < 1e-5
