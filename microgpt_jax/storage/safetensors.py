"""The safetensors format written by hand: a JSON header (its metadata in the order given) and the arrays' raw bytes."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from microgpt_jax.errors import UserError

_ST_DTYPES = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint64": "U64",
    "uint32": "U32",
    "uint16": "U16",
    "uint8": "U8",
    "bool": "BOOL",
}


def safetensors_bytes(arrays: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> bytes:
    """A safetensors file of ``arrays``, byte-for-byte the same for the same input (the safetensors package
    orders the metadata at random): the header is JSON with sorted keys, padded with spaces to 8 bytes, then
    each array's little-endian C-order bytes in name order."""
    header: dict[str, Any] = {}
    if metadata:
        header[META_KEY] = dict(sorted(metadata.items()))
    chunks, offset = [], 0
    for name in sorted(arrays):
        a = np.asarray(arrays[name])
        if str(a.dtype) not in _ST_DTYPES:
            raise UserError(f"cannot store {name!r} of dtype {a.dtype} in safetensors")
        data = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes()
        header[name] = {
            "dtype": _ST_DTYPES[str(a.dtype)],
            "shape": list(a.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)
    return len(head).to_bytes(8, "little") + head + b"".join(chunks)


META_KEY = "__metadata__"
