"""Sampling: batched, seeded by explicit keys, stops at BOS or block_size; temperature, top-k and top-p."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from microgpt_jax.config import GPTConfig
from microgpt_jax.corpus.tokenizer import Tokenizer
from microgpt_jax.errors import UserError
from microgpt_jax.model.init import init_params
from microgpt_jax.training.sampling import decode_samples, draw, sample, sample_tokens

ROOT = Path(__file__).resolve().parents[2]
TOK = Tokenizer("char", "abc")
CONFIG = GPTConfig(vocab_size=4, block_size=5)
NAMES_TOK = Tokenizer("char", "abcdefghijklmnopqrstuvwxyz")
NAMES_CONFIG = GPTConfig(vocab_size=27, block_size=16)
# sample(init_params(key(0), NAMES_CONFIG, std=0.3), NAMES_CONFIG, NAMES_TOK, key(7), 12, 0.8) as drawn before
# top-k and top-p were added (float32, CPU): the filters off must not change a single draw
PINNED_NAMES = [
    "trgmlibaaanangri",
    "xaaaaxxxvwnyxgwn",
    "bwvkiixaaanancwi",
    "baaaaaaaaxxxxgwu",
    "vhkqlf",
    "traaanxxgwwyk",
    "banaaaaaaaxxxxrx",
    "b",
    "bwxaaaaaa",
    "baaaaaxaaaanagwx",
    "baaaagwxaaxnxxaa",
    "vhxrixxxyxxypgwz",
]
# a fixed distribution for draw, not sorted by id: by probability the ids go 1, 4, 3, 6, 0, 7, 5, 2
PROBS_V = np.array([0.07, 0.35, 0.01, 0.15, 0.25, 0.02, 0.10, 0.05])


def test_samples_are_seeded_and_bounded():
    params = init_params(jax.random.key(0), CONFIG, std=0.2)
    a = sample(params, CONFIG, TOK, jax.random.key(1), num_samples=50, temperature=1.0)
    b = sample(params, CONFIG, TOK, jax.random.key(1), num_samples=50, temperature=1.0)
    c = sample(params, CONFIG, TOK, jax.random.key(2), num_samples=50, temperature=1.0)
    assert a == b and a != c and len(a) == 50
    assert all(len(s) <= CONFIG.block_size and set(s) <= set("abc") for s in a)


def test_everything_after_bos_is_bos():
    params = init_params(jax.random.key(0), CONFIG, std=1.0)
    tokens = np.asarray(sample_tokens(params, jax.random.key(4), 1.0, config=CONFIG, num_samples=64))
    assert tokens.shape == (64, 5)
    for row in tokens:
        hits = np.flatnonzero(row == 3)
        if len(hits):
            assert (row[hits[0] :] == 3).all()


def test_decode_stops_at_bos():
    assert decode_samples(np.array([[0, 1, 3, 2, 2], [2, 2, 2, 2, 2]]), TOK) == ["ab", "ccccc"]


def test_low_temperature_is_greedy():
    params = init_params(jax.random.key(5), CONFIG, std=1.0)
    names = sample(params, CONFIG, TOK, jax.random.key(6), num_samples=8, temperature=1e-4)
    assert len(set(names)) == 1


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan")])
def test_bad_temperature(temperature):
    params = init_params(jax.random.key(0), CONFIG)
    with pytest.raises(UserError, match="temperature"):
        sample(params, CONFIG, TOK, jax.random.key(0), 2, temperature)


@pytest.mark.slow
def test_samples_spread_over_devices_equal_one_device(four_devices):
    """With 4 (simulated CPU) devices the rows are split over them; a key gives the same names as on one."""
    from four_devices import SAMPLE_CUT

    spread = np.load(four_devices / "sample.npz")
    config = GPTConfig(vocab_size=27)
    params = init_params(jax.random.key(0), config, std=0.3)
    one = sample_tokens(params, jax.random.key(7), 0.8, config=config, num_samples=400)
    cut = sample_tokens(params, jax.random.key(7), 0.8, config=config, num_samples=400, **SAMPLE_CUT)
    # a draw may flip only where float rounding moves a CDF across its uniform
    assert (spread["spread"] == np.asarray(one)).all(axis=1).mean() >= 0.99
    assert (spread["cut"] == np.asarray(cut)).all(axis=1).mean() >= 0.99


def test_default_names_are_unchanged():
    """With the filters off (or set to keep everything) the names are the ones drawn before the filters."""
    params = init_params(jax.random.key(0), NAMES_CONFIG, std=0.3)
    key = jax.random.key(7)
    assert sample(params, NAMES_CONFIG, NAMES_TOK, key, 12, 0.8) == PINNED_NAMES
    for cut in (dict(top_k=27), dict(top_k=1000, top_p=1.0), dict(top_p=1)):
        assert sample(params, NAMES_CONFIG, NAMES_TOK, key, 12, 0.8, **cut) == PINNED_NAMES


def test_top_k_1_and_tiny_top_p_are_argmax():
    logits_NxV = jax.random.normal(jax.random.key(0), (500, 30))
    u_N = jax.random.uniform(jax.random.key(1), (500,))
    argmax_N = np.argmax(np.asarray(logits_NxV), axis=-1)
    for cut in (dict(top_k=1), dict(top_p=1e-6), dict(top_k=4, top_p=1e-6)):
        assert (np.asarray(draw(logits_NxV, u_N, 1.5, **cut)) == argmax_N).all(), cut


def test_greedy_names_from_top_k_1_top_p_and_tiny_temperature_agree():
    """top_k=1, a tiny top_p and a temperature whose scaled logits overflow (1e-39 is subnormal in float32,
    1e-50 rounds to 0) all give the argmax path: every sample the same, whatever the key."""
    params = init_params(jax.random.key(0), NAMES_CONFIG, std=0.3)
    greedy = np.asarray(sample_tokens(params, jax.random.key(3), 1.0, config=NAMES_CONFIG, num_samples=8, top_k=1))
    assert (greedy == greedy[0]).all() and greedy[0, 0] != 0  # the NaNs' token would be 0 ('a')
    for temperature, cut in [(1.0, dict(top_p=1e-6)), (1e-50, {}), (1e-39, {}), (1e-50, dict(top_k=3, top_p=0.5))]:
        tokens = sample_tokens(params, jax.random.key(4), temperature, config=NAMES_CONFIG, num_samples=8, **cut)
        assert (np.asarray(tokens) == greedy).all(), (temperature, cut)


@pytest.mark.parametrize("temperature", [1e-50, 1e-39, 1e-45])
def test_draw_at_overflowing_temperature_is_argmax(temperature):
    """logits / temperature is +-inf or NaN (0/0) in float32; the limit as temperature -> 0 is the argmax."""
    logits_NxV = jnp.array([[0.0, -1.0, 2.0, 1.9], [-3.0, -2.0, -2.5, -9.0], [0.0, 0.0, -1.0, 0.5]])
    u_N = jnp.array([0.1, 0.5, 0.9])
    for cut in ({}, dict(top_k=2), dict(top_p=0.9)):
        assert np.asarray(draw(logits_NxV, u_N, temperature, **cut)).tolist() == [2, 1, 3]


def test_top_k_keeps_ties_at_the_cut():
    """As the book's ``score >= k-th highest score``: tied top scores are all kept."""
    logits_NxV = jnp.broadcast_to(jnp.array([2.0, 2.0, 0.0, -1.0]), (2000, 4))
    drawn_N = np.asarray(draw(logits_NxV, jax.random.uniform(jax.random.key(0), (2000,)), top_k=1))
    assert set(drawn_N.tolist()) == {0, 1}


def _truncated(keep: list[int]) -> np.ndarray:
    """PROBS_V cut to the ids ``keep`` and renormalised."""
    p_V = np.zeros_like(PROBS_V)
    p_V[keep] = PROBS_V[keep]
    return p_V / p_V.sum()


@pytest.mark.parametrize(
    ("cut", "expected_V"),
    [
        (dict(top_k=3), _truncated([1, 4, 3])),
        # before id 6 lies 0.75 <= 0.8 (kept, its own 0.10 crosses 0.8); before id 0 lies 0.85 > 0.8
        (dict(top_p=0.8), _truncated([1, 4, 3, 6])),
        # top-p on what top-k left, renormalised: before id 4 lies 0.35 / 0.75 = 0.467 <= 0.5
        (dict(top_k=3, top_p=0.5), _truncated([1, 4])),
        # ... and 0.467 > 0.45, so only id 1 (on the raw probabilities, 0.35 <= 0.45 would keep id 4 too)
        (dict(top_k=3, top_p=0.45), _truncated([1])),
        ({}, PROBS_V),
    ],
)
def test_filtered_draws_follow_the_truncated_softmax(cut, expected_V):
    """200,000 draws at a fixed seed: each token's frequency is within 5 binomial standard errors of the
    truncated, renormalised softmax (a false alarm per token has probability 6e-7), and cut tokens never occur."""
    n = 200_000
    logits_NxV = jnp.broadcast_to(jnp.log(jnp.asarray(PROBS_V, jnp.float32)) + 1.3, (n, len(PROBS_V)))
    drawn_N = np.asarray(draw(logits_NxV, jax.random.uniform(jax.random.key(42), (n,)), **cut))
    freq_V = np.bincount(drawn_N, minlength=len(PROBS_V)) / n
    assert (freq_V[expected_V == 0] == 0).all()
    se_V = np.sqrt(expected_V * (1 - expected_V) / n)
    assert (np.abs(freq_V - expected_V) <= 5 * se_V).all(), (freq_V, expected_V)


@pytest.mark.parametrize(
    ("cut", "match"),
    [
        (dict(top_k=-1), "top-k"),
        (dict(top_k=1.5), "top-k"),
        (dict(top_k=True), "top-k"),
        (dict(top_k="3"), "top-k"),
        (dict(top_p=0.0), "top-p"),
        (dict(top_p=-0.1), "top-p"),
        (dict(top_p=1.5), "top-p"),
        (dict(top_p=float("nan")), "top-p"),
        (dict(top_p=True), "top-p"),
        (dict(top_p="0.9"), "top-p"),
    ],
)
def test_bad_filters(cut, match):
    params = init_params(jax.random.key(0), CONFIG)
    with pytest.raises(UserError, match=match):
        sample(params, CONFIG, TOK, jax.random.key(0), 2, 1.0, **cut)
    with pytest.raises(UserError, match=match):
        draw(jnp.zeros((2, 4)), jnp.zeros(2), **cut)
