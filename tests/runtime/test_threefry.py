"""microgpt_jax.runtime.threefry, JAX's PRNG on the host: the same keys, splits, fold-ins and bits as jax.random, bit
for bit,
and init from a seed drawn on the host equal to init from the key."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from microgpt_jax.runs.load import sample_key
from microgpt_jax.runtime import threefry

SEEDS = [0, 1, 42, -1, 2**31, 2**32 + 7, 2**40 + 3, -(2**63), 2**63 - 1]


@pytest.mark.parametrize("x64", [False, True])
def test_keys_splits_fold_ins_and_bits_are_jaxs(x64: bool) -> None:
    with jax.enable_x64(x64):
        assert threefry.usable()
        for seed in SEEDS:
            k = threefry.key(seed, x64)
            assert k.dtype == np.uint32 and k.shape == (2,)
            np.testing.assert_array_equal(k, jax.random.key_data(jax.random.key(seed)), err_msg=str(seed))
            key = jax.random.wrap_key_data(k)
            np.testing.assert_array_equal(threefry.split(k, 9), jax.random.key_data(jax.random.split(key, 9)))
            for data in (1, 2**32 - 1):
                want = jax.random.key_data(jax.random.fold_in(key, data))
                np.testing.assert_array_equal(threefry.fold_in(k, data), want)
            for width in (32, 64) if x64 else (32,):
                want = jax.random.bits(key, (1000,), np.uint32 if width == 32 else np.uint64)
                np.testing.assert_array_equal(threefry.bits(k, 1000, width), want, err_msg=f"{seed} {width}")
            np.testing.assert_array_equal(  # the flat bits of a (4, 5) draw, row-major
                threefry.bits(k, 20), np.ravel(jax.random.bits(key, (4, 5), np.uint32))
            )
            for dtype in (np.float32, np.float64) if x64 else (np.float32,):
                u = threefry.uniform(k, 1000, dtype)
                assert u.dtype == dtype and u.min() >= 0 and u.max() < 1
                np.testing.assert_array_equal(u, jax.random.uniform(key, (1000,), dtype), err_msg=str(seed))
        np.testing.assert_array_equal(
            jax.random.key_data(sample_key(7)), jax.random.key_data(jax.random.fold_in(jax.random.key(7), 1))
        )


def test_seed_past_int64_is_refused_as_jax_refuses_it() -> None:
    with pytest.raises(OverflowError):
        threefry.key(2**64, False)
    with pytest.raises(OverflowError):
        jax.random.key(2**64)


def test_usable_only_with_the_layout_it_computes() -> None:
    with jax.threefry_partitionable(False):
        assert not threefry.usable()


def test_init_from_a_seed_without_the_partitionable_layout_draws_on_the_device() -> None:
    from microgpt_jax.config import GPTConfig
    from microgpt_jax.model.init import init_params

    config = GPTConfig(vocab_size=5, n_embd=8, n_head=2, block_size=4)
    with jax.threefry_partitionable(False):
        from_key, from_seed = init_params(jax.random.key(3), config), init_params(3, config)
    for name, p in from_key.items():
        np.testing.assert_array_equal(from_seed[name], p, err_msg=name)


def test_samples_draw_the_same_on_the_host_and_the_device(monkeypatch: pytest.MonkeyPatch) -> None:

    from microgpt_jax.config import GPTConfig
    from microgpt_jax.model.init import init_params
    from microgpt_jax.training import sampling as sample_module

    config = GPTConfig(vocab_size=6, n_embd=8, n_head=2, block_size=5)
    params, key = init_params(0, config), jax.random.key(5)
    assert isinstance(sample_module.uniforms(key, (5, 7), np.float32), np.ndarray)  # made on the host
    on_host = sample_module.sample_tokens(params, key, 0.7, config=config, num_samples=7)
    monkeypatch.setattr(sample_module, "HOST_DRAWS", 0)  # every draw by jax.random.uniform
    np.testing.assert_array_equal(sample_module.sample_tokens(params, key, 0.7, config=config, num_samples=7), on_host)
