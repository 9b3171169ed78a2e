"""Training: the original's data rule, determinism, batching, chunking, data parallelism, token checks."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from microgpt_jax.config import GPTConfig, TrainConfig
from microgpt_jax.corpus.documents import encode_docs
from microgpt_jax.corpus.tokenizer import Tokenizer
from microgpt_jax.errors import UserError
from microgpt_jax.model.init import init_params
from microgpt_jax.model.loss import loss_fn
from microgpt_jax.model.optim import adam
from microgpt_jax.training.loop import Recipe, recipe_of, train

CHUNKED = GPTConfig(vocab_size=7, block_size=6)  # test_chunked_equals_unchunked_bitwise's


def _data(n_docs: int = 13) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, CHUNKED.vocab_size, size=(n_docs, CHUNKED.block_size + 1)).astype(np.int32)
    n = rng.integers(1, CHUNKED.block_size + 1, size=n_docs).astype(np.int32)
    return tokens, n


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


@pytest.mark.slow
def test_four_devices_equal_one_device(four_devices):
    """The batch split over a ``data`` mesh of 4 devices gives the single device's losses and parameters."""
    from four_devices import data_parallel_setup

    four = np.load(four_devices / "data_parallel.npz")
    s = data_parallel_setup()
    params, _, losses = train(s["params"], s["tokens"], s["n"], s["config"], s["tc"], chunk=6)
    np.testing.assert_allclose(four["losses"], losses, atol=1e-5, rtol=0)
    assert np.all(np.isfinite(losses)) and losses[0] != losses[-1]
    for k, v in params.items():
        np.testing.assert_allclose(four[k], v, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "optimizer, batch_size",
    [
        ("adam", 1),
        ("sgd", 3),
        pytest.param("adam", 3, marks=pytest.mark.slow),
        pytest.param("sgd", 1, marks=pytest.mark.slow),
    ],
)
def test_chunked_equals_unchunked_bitwise(optimizer: str, batch_size: int) -> None:
    tokens, n = _data()
    tc = TrainConfig(optimizer=optimizer, lr=0.01 if optimizer == "adam" else 0.5, steps=30, batch_size=batch_size)
    params = init_params(jax.random.key(0), CHUNKED)
    p_one, s_one, l_one = train(params, tokens, n, CHUNKED, tc, chunk=tc.steps)
    p_many, s_many, l_many = train(params, tokens, n, CHUNKED, tc, chunk=7)  # 7 does not divide 30: a skipped tail
    np.testing.assert_array_equal(l_one, l_many)
    assert len(l_many) == tc.steps and np.isfinite(l_many).all()
    for k in params:
        np.testing.assert_array_equal(p_one[k], p_many[k], err_msg=k)
    for a, b in zip(jax.tree.leaves(s_one), jax.tree.leaves(s_many), strict=True):
        np.testing.assert_array_equal(a, b)


def test_tokens_on_the_device_are_checked_there() -> None:
    import jax

    from microgpt_jax.training.loop import check_tokens

    tokens, n = np.array([[0, 1, 2], [0, 5, 0]], np.uint8), np.array([2, 1], np.uint8)
    check_tokens(jax.device_put(tokens), jax.device_put(n), GPTConfig(vocab_size=6, block_size=2))
    with pytest.raises(UserError, match=r"token ids 0\.\.5 are outside the vocabulary 0\.\.4"):
        check_tokens(jax.device_put(tokens), jax.device_put(n), GPTConfig(vocab_size=5, block_size=2))
