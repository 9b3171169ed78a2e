"""Training: the original's data rule, determinism, batching and held-out evaluation."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from microgpt_jax.config import GPTConfig, TrainConfig
from microgpt_jax.corpus.documents import encode_docs
from microgpt_jax.corpus.tokenizer import Tokenizer
from microgpt_jax.model.init import init_params
from microgpt_jax.model.loss import loss_fn, nll_sum
from microgpt_jax.model.optim import adam
from microgpt_jax.training.evaluation import evaluate
from microgpt_jax.training.loop import Recipe, recipe_of, train

DOCS = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "charlotte"]
TOK = Tokenizer.from_docs(DOCS)
CONFIG = GPTConfig(vocab_size=TOK.vocab_size, block_size=8)
TOKENS, N = encode_docs(DOCS, TOK, CONFIG.block_size)


def test_step_s_trains_on_doc_s_mod_n():
    params0 = init_params(jax.random.key(0), CONFIG)
    tc = TrainConfig(steps=10, lr=0.01)
    params, _, losses = train(params0, TOKENS, N, CONFIG, tc, chunk=4)
    # the same 10 steps written as a plain Python loop over docs[s % len(docs)]
    opt = adam(0.01, 10)
    state, p = opt.init(params0), params0
    value_and_grad = jax.jit(jax.value_and_grad(loss_fn), static_argnums=3)
    for s in range(10):
        i = s % len(DOCS)
        loss, grads = value_and_grad(p, jnp.asarray(TOKENS[i : i + 1]), jnp.asarray(N[i : i + 1]), CONFIG)
        p, state = opt.update(grads, state, p)
        np.testing.assert_allclose(losses[s], loss, rtol=1e-5)
    for k in p:
        np.testing.assert_allclose(params[k], p[k], atol=1e-6)


def test_deterministic_and_batched():
    params0 = init_params(jax.random.key(0), CONFIG)
    tc = TrainConfig(steps=6, batch_size=3, optimizer="sgd", lr=0.5)
    a, _, la = train(params0, TOKENS, N, CONFIG, tc)
    b, _, lb = train(params0, TOKENS, N, CONFIG, tc)
    np.testing.assert_array_equal(la, lb)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    # step 1 of batch 3 covers docs 3, 4, 5; its loss is the mean NLL per token over them
    rows = slice(3, 6)
    p1, _, _ = train(params0, TOKENS, N, CONFIG, tc, chunk=1, on_chunk=lambda report: report.end == 1)
    expected = loss_fn(p1, jnp.asarray(TOKENS[rows]), jnp.asarray(N[rows]), CONFIG)
    np.testing.assert_allclose(la[1], expected, rtol=1e-5)


def test_evaluate_is_mean_nll_per_token():
    params = init_params(jax.random.key(3), CONFIG)
    by_doc = [
        float(loss_fn(params, jnp.asarray(TOKENS[i : i + 1]), jnp.asarray(N[i : i + 1]), CONFIG)) for i in range(7)
    ]
    expected = sum(loss * n for loss, n in zip(by_doc, N, strict=True)) / N.sum()
    assert abs(evaluate(params, TOKENS, N, CONFIG, batch=3) - expected) < 1e-5


def test_vmapped_nll_equals_one_member_at_a_time():
    """XLA:CPU once miscompiled a one-hot-product NLL under jit(vmap) (members got each other's losses)."""
    config = GPTConfig()
    params_M = jax.vmap(lambda k: init_params(k, config))(jax.random.split(jax.random.key(0), 16))
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 27, (256, 17)).astype(np.int32)
    n = rng.integers(2, 17, 256).astype(np.int32)
    sums_M, _ = jax.jit(jax.vmap(nll_sum, in_axes=(0, None, None, None)), static_argnums=3)(params_M, tokens, n, config)
    one = jax.jit(nll_sum, static_argnums=3)
    expected = [float(one(jax.tree.map(lambda x, m=m: x[m], params_M), tokens, n, config)[0]) for m in range(16)]
    np.testing.assert_allclose(sums_M, expected, rtol=1e-5)


def test_dropout_and_adamw_train_deterministically_and_differ_from_the_original():
    params0 = init_params(jax.random.key(0), CONFIG)
    assert recipe_of(TrainConfig()) == Recipe()  # the original's program: no warm-up, decay or dropout in it
    tc = TrainConfig(steps=8, batch_size=2, lr=0.01, dropout=0.2, weight_decay=0.1, schedule="cosine", warmup=2)
    assert recipe_of(tc) == Recipe("adam", "cosine", warmup=True, weight_decay=True, dropout=True)
    a, _, la = train(params0, TOKENS, N, CONFIG, tc, chunk=4)
    b, _, lb = train(params0, TOKENS, N, CONFIG, tc, chunk=4)
    np.testing.assert_array_equal(la, lb)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    # the same program, another seed: other dropout draws (the init is the same params0)
    _, _, other_seed = train(params0, TOKENS, N, CONFIG, dataclasses.replace(tc, seed=1), chunk=4)
    _, _, no_dropout = train(params0, TOKENS, N, CONFIG, dataclasses.replace(tc, dropout=0.0), chunk=4)
    assert not np.allclose(la, other_seed) and not np.allclose(la, no_dropout)
    assert np.all(np.isfinite(la))
