"""The device policy: how many devices a job uses, meshes, CPU devices per core."""

from __future__ import annotations

import pytest

from microgpt_jax.errors import UserError
from microgpt_jax.runtime.devices import device_count


def test_device_count_on_one_device():
    assert device_count(None, 1) == 1  # a single device
    assert device_count(1, 4) == 1
    with pytest.raises(UserError, match="--devices 2"):
        device_count(2, 4)  # this process sees one CPU device
