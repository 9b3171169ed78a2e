"""The loss: mean NLL per predicted token, padding masked, equal to a hand computation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from microgpt_jax.config import GPTConfig
from microgpt_jax.model.init import init_params
from microgpt_jax.model.loss import loss_fn, nll_sum, token_nll
from microgpt_jax.model.registry import forward


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


CONFIG = GPTConfig(vocab_size=6, n_embd=8, n_head=2, block_size=5)
# two documents as [BOS] + doc + [BOS] padded to block_size + 1 columns: n = 4 (a whole doc) and 2
TOKENS = np.array([[5, 0, 1, 2, 5, 5], [5, 3, 5, 5, 5, 5]], np.int32)
N = np.array([4, 2], np.int32)
# compiled once each (eager, every operation of the GPT and its gradient is a program of its own: seconds)
LOSS = jax.jit(loss_fn, static_argnames="config")
NLL_SUM = jax.jit(nll_sum, static_argnames="config")
TOKEN_NLL = jax.jit(token_nll, static_argnames="config")
GRAD = jax.jit(jax.grad(loss_fn), static_argnames="config")
FORWARD = jax.jit(forward, static_argnames="config")


def hand_nll(params, tokens: np.ndarray, n: np.ndarray) -> list[float]:
    """-log softmax(logits)[target] of every predicted position, row by row, in numpy float64."""
    logits = np.asarray(FORWARD(params, tokens[:, :-1], config=CONFIG), np.float64)
    out = []
    for b in range(len(tokens)):
        for t in range(n[b]):
            row = logits[b, t]
            out.append(-(row[tokens[b, t + 1]] - row.max() - np.log(np.exp(row - row.max()).sum())))
    return out


def test_the_loss_is_the_mean_nll_of_the_predicted_positions() -> None:
    params = init_params(0, CONFIG)
    nll = hand_nll(params, TOKENS, N)
    assert len(nll) == 6
    np.testing.assert_allclose(float(LOSS(params, TOKENS, N, config=CONFIG)), np.mean(nll), rtol=1e-5)
    total, count = NLL_SUM(params, TOKENS, N, config=CONFIG)
    assert int(count) == 6
    np.testing.assert_allclose(float(total), np.sum(nll), rtol=1e-5)
    # one document is the original's per-document loss, and the masked positions are not counted
    np.testing.assert_allclose(float(LOSS(params, TOKENS[1:], N[1:], config=CONFIG)), np.mean(nll[4:]), rtol=1e-5)


def test_token_nll_is_minus_log_softmax_at_the_target_and_masks_past_n() -> None:
    params = init_params(1, CONFIG)
    nll_BxT, mask_BxT = TOKEN_NLL(params, TOKENS, N, config=CONFIG)
    logp = jax.nn.log_softmax(FORWARD(params, TOKENS[:, :-1], config=CONFIG), axis=-1)
    want = -jnp.take_along_axis(logp, jnp.asarray(TOKENS[:, 1:, None]), axis=-1)[..., 0]
    np.testing.assert_allclose(nll_BxT, want, rtol=1e-6)
    np.testing.assert_array_equal(mask_BxT, [[1, 1, 1, 1, 0], [1, 1, 0, 0, 0]])


def test_padding_past_n_changes_neither_the_loss_nor_its_gradient() -> None:
    params = init_params(2, CONFIG)
    other = TOKENS.copy()
    other[0, 5], other[1, 3:] = 0, [4, 1, 2]  # any tokens past each row's n + 1 columns
    for fn in (LOSS, lambda *a, **k: NLL_SUM(*a, **k)[0]):
        np.testing.assert_array_equal(fn(params, TOKENS, N, config=CONFIG), fn(params, other, N, config=CONFIG))
    g1 = GRAD(params, TOKENS, N, config=CONFIG)
    g2 = GRAD(params, other, N, config=CONFIG)
    for k in g1:
        np.testing.assert_array_equal(g1[k], g2[k], err_msg=k)
    # a padding row (n = 0), as evaluation pads its last batch, adds nothing
    padded_tokens, padded_n = np.concatenate([TOKENS, TOKENS[:1]]), np.concatenate([N, [0]]).astype(np.int32)
    total, count = NLL_SUM(params, padded_tokens, padded_n, config=CONFIG)
    want_total, want_count = NLL_SUM(params, TOKENS, N, config=CONFIG)
    assert int(count) == int(want_count)
    np.testing.assert_allclose(float(total), float(want_total), rtol=1e-6)


def test_every_model_has_a_loss_near_log_vocab_at_init() -> None:
    for model in ("gpt", "mlp", "bigram"):
        config = GPTConfig(model=model, vocab_size=6, n_embd=8, n_head=2, block_size=5)
        loss = float(LOSS(init_params(0, config, std=0.02), TOKENS, N, config=config))
        assert abs(loss - np.log(6)) < 0.1, (model, loss)
