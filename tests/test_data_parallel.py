"""Data-parallel train: the batch split over a ``data`` mesh of 4 simulated CPU devices equals one device."""

from __future__ import annotations

import numpy as np
import pytest

from microgpt_jax.errors import UserError
from microgpt_jax.runtime.devices import device_count
from microgpt_jax.training.loop import train


def test_device_count_on_one_device():
    assert device_count(None, 1) == 1  # a single device
    assert device_count(1, 4) == 1
    with pytest.raises(UserError, match="`devices` 2"):
        device_count(2, 4)  # this process sees one CPU device


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
