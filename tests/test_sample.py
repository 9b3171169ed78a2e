"""Sampling: batched, seeded by explicit keys, stops at BOS or block_size."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from microgpt_jax.config import GPTConfig
from microgpt_jax.data import Tokenizer
from microgpt_jax.errors import UserError
from microgpt_jax.model import init_params
from microgpt_jax.sample import decode_samples, sample, sample_tokens

TOK = Tokenizer("abc")
CONFIG = GPTConfig(vocab_size=4, block_size=5)


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
