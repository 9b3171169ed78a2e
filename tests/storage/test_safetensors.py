"""The safetensors writer: standard (the safetensors package reads it), deterministic, typed."""

from __future__ import annotations

import numpy as np
from safetensors.numpy import load as st_load

from microgpt_jax.storage.safetensors import safetensors_bytes


def test_safetensors_bytes_are_deterministic_and_standard() -> None:
    arrays = {"b": np.arange(6, dtype=np.float32).reshape(2, 3), "a": np.array(7, np.int32)}
    raw = safetensors_bytes(arrays, {"z": "1", "a": "2"})
    assert raw == safetensors_bytes(dict(reversed(arrays.items())), {"a": "2", "z": "1"})
    assert int.from_bytes(raw[:8], "little") % 8 == 0
    back = st_load(raw)  # the safetensors package reads it
    assert all(back[k].tobytes() == v.tobytes() and back[k].shape == v.shape for k, v in arrays.items())
