"""The safetensors writer: standard (the safetensors package reads it), deterministic, typed."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import load as st_load

from microgpt_jax.errors import UserError
from microgpt_jax.storage.safetensors import safetensors_bytes


def test_safetensors_bytes_are_deterministic_and_standard() -> None:
    arrays = {"b": np.arange(6, dtype=np.float32).reshape(2, 3), "a": np.array(7, np.int32)}
    raw = safetensors_bytes(arrays, {"z": "1", "a": "2"})
    assert raw == safetensors_bytes(dict(reversed(arrays.items())), {"a": "2", "z": "1"})
    assert int.from_bytes(raw[:8], "little") % 8 == 0
    back = st_load(raw)  # the safetensors package reads it
    assert all(back[k].tobytes() == v.tobytes() and back[k].shape == v.shape for k, v in arrays.items())


def test_every_dtype_and_the_metadata_read_back_through_the_package() -> None:
    from safetensors import safe_open

    arrays = {
        name: np.arange(6).astype(name).reshape(3, 2)
        for name in ("float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint64", "uint32",
                     "uint16", "uint8", "bool")
    }  # fmt: skip
    arrays["scalar"] = np.array(2.5, np.float64)
    arrays["empty"] = np.zeros((0, 4), np.float32)
    arrays["strided"] = np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2]  # not C-contiguous
    raw = safetensors_bytes(arrays, {"format": "pt", "step": "7"})
    back = st_load(raw)
    assert sorted(back) == sorted(arrays)
    for k, v in arrays.items():
        assert back[k].shape == v.shape and np.array_equal(back[k], v), k
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".safetensors") as f:
        f.write(raw)
        f.flush()
        with safe_open(f.name, "np") as st:
            assert st.metadata() == {"format": "pt", "step": "7"}


def test_the_layout_is_the_formats() -> None:
    import json

    raw = safetensors_bytes({"w": np.array([1.0, 2.0], np.float32), "a": np.array([3], np.int64)}, {"k": "v"})
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    assert list(header) == ["__metadata__", "a", "w"]  # metadata first, then the arrays in name order
    assert header["a"] == {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]}
    assert header["w"] == {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}
    assert raw[8 + n :] == np.array([3], "<i8").tobytes() + np.array([1.0, 2.0], "<f4").tobytes()
    assert raw[8:].rstrip(b"\x00") == raw[8:]  # padded with spaces, not NULs
    assert safetensors_bytes({}) == (8).to_bytes(8, "little") + b"{}      "


def test_an_unstorable_dtype_is_a_user_error() -> None:
    with pytest.raises(UserError, match=r"cannot store 'c' of dtype complex64 in safetensors"):
        safetensors_bytes({"c": np.zeros(2, np.complex64)})
