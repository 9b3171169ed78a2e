"""Parameter files in and out (safetensors, npz, microgpt-style JSON) and atomic writes.

Every file holds the state_dict under microgpt's names, each matrix (nout, nin), plus metadata: the model
config, the vocabulary (uchars) and the dtype, so a file alone is enough to sample from. Nothing is ever
half-written: bytes go to a temp file in the same directory, then a rename.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from microgpt_jax.config import GPTConfig
from microgpt_jax.errors import UserError
from microgpt_jax.model import param_shapes

FORMATS = {".safetensors": "safetensors", ".npz": "npz", ".json": "json"}
META_KEY = "__metadata__"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file and rename: readers see the old file or the new, never half."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror}: pick a writable location") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """UTF-8 text through ``atomic_write_bytes``."""
    atomic_write_bytes(path, text.encode("utf-8"))


def format_of(path: str | os.PathLike) -> str:
    """The file format named by the path's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UserError(f"{path}: unknown parameter file type {suffix!r}: use .safetensors, .npz or .json")
    return FORMATS[suffix]


def _metadata(config: GPTConfig | None, vocab: str | None, dtype: str) -> dict[str, str]:
    meta = {"format": "microgpt_jax", "dtype": dtype}
    if config is not None:
        meta["config"] = json.dumps(config.to_dict())
    if vocab is not None:
        meta["vocab"] = json.dumps(vocab)
    return meta


def params_to_bytes(
    params: dict[str, Any], fmt: str, config: GPTConfig | None = None, vocab: str | None = None
) -> bytes:
    """Serialise a state_dict in ``fmt`` (safetensors, npz or json) with its config and vocabulary."""
    arrays = {k: np.asarray(v) for k, v in params.items()}
    dtype = str(next(iter(arrays.values())).dtype) if arrays else "float32"
    meta = _metadata(config, vocab, dtype)
    if fmt == "safetensors":
        from safetensors.numpy import save

        return save({k: np.ascontiguousarray(v) for k, v in arrays.items()}, metadata=meta)
    if fmt == "npz":
        buf = io.BytesIO()
        np.savez(buf, **arrays, **{META_KEY: np.array(json.dumps(meta))})
        return buf.getvalue()
    if fmt == "json":
        # rows of Python floats: repr is the shortest string that reads back to the same float
        doc: dict[str, Any] = {k: [[float(x) for x in row] for row in v.tolist()] for k, v in arrays.items()}
        doc[META_KEY] = meta
        return json.dumps(doc).encode("utf-8")
    raise UserError(f"unknown format {fmt!r}: use safetensors, npz or json")


def save_params(
    path: str | os.PathLike, params: dict[str, Any], config: GPTConfig | None = None, vocab: str | None = None
) -> Path:
    """Save a state_dict, the format chosen by the suffix (.safetensors, .npz, .json), atomically."""
    path = Path(path)
    atomic_write_bytes(path, params_to_bytes(params, format_of(path), config, vocab))
    return path


def _parse_meta(meta: dict[str, str], path: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        if "config" in meta:
            out["config"] = GPTConfig.from_dict(json.loads(meta["config"]))
        if "vocab" in meta:
            vocab = json.loads(meta["vocab"])
            if not isinstance(vocab, str):
                raise ValueError("vocab is not a string")
            out["vocab"] = vocab
        if "dtype" in meta:
            out["dtype"] = str(meta["dtype"])
    except (ValueError, TypeError, UserError) as e:
        raise UserError(f"{path}: bad metadata ({e}): re-export the file") from None
    return out


def _json_matrix(name: str, value: Any, path: Path) -> np.ndarray:
    if not isinstance(value, list) or not value or not all(isinstance(row, list) for row in value):
        raise UserError(f"{path}: {name!r} is not a list of rows of numbers: use the {{name: [[...], ...]}} layout")
    width = len(value[0])
    for i, row in enumerate(value):
        if len(row) != width:
            raise UserError(f"{path}: {name!r} is ragged: row {i} has {len(row)} numbers, row 0 has {width}")
        for x in row:
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
                raise UserError(f"{path}: {name!r} row {i} holds {x!r}, not a finite number")
    return np.array(value, dtype=np.float64)


def params_from_bytes(raw: bytes, fmt: str, path: str | os.PathLike = "<bytes>") -> tuple[dict[str, np.ndarray], dict]:
    """Parse a parameter file's bytes into (state_dict of numpy arrays, metadata dict).

    Metadata may hold ``config`` (GPTConfig), ``vocab`` (str) and ``dtype``. Any malformed input raises
    UserError naming the file and the problem.
    """
    path = Path(path)
    if fmt == "safetensors":
        from safetensors import SafetensorError
        from safetensors.numpy import load

        try:
            params = dict(load(raw))
            n = int.from_bytes(raw[:8], "little")
            meta = json.loads(raw[8 : 8 + n]).get(META_KEY) or {}
        except (SafetensorError, ValueError, TypeError, AttributeError, OverflowError) as e:
            raise UserError(f"{path}: not a readable safetensors file ({e}): re-export it") from None
    elif fmt == "npz":
        try:
            with np.load(io.BytesIO(raw), allow_pickle=False) as z:
                params = {k: z[k] for k in z.files if k != META_KEY}
                meta = json.loads(str(z[META_KEY])) if META_KEY in z.files else {}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError, TypeError) as e:
            raise UserError(f"{path}: not a readable npz file ({e}): re-export it") from None
    elif fmt == "json":
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise UserError(f"{path}: not valid JSON ({e}): re-export it") from None
        if not isinstance(doc, dict):
            raise UserError(f"{path}: expected a JSON object {{name: [[...], ...]}}, got {type(doc).__name__}")
        meta = doc.pop(META_KEY, {})
        params = {k: _json_matrix(k, v, path) for k, v in doc.items()}
    else:
        raise UserError(f"unknown format {fmt!r}: use safetensors, npz or json")
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise UserError(f"{path}: bad metadata: re-export the file")
    for k, v in params.items():
        if v.ndim != 2 or not np.issubdtype(v.dtype, np.floating):
            raise UserError(f"{path}: {k!r} is not a 2-D float matrix (shape {v.shape}, dtype {v.dtype})")
    meta = _parse_meta(meta, path)
    if fmt == "json" and meta.get("dtype") in ("float32", "float64"):
        params = {k: v.astype(meta["dtype"]) for k, v in params.items()}
    return params, meta


def load_params(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    """Load a state_dict saved by ``save_params`` (or a microgpt-style JSON state_dict) by suffix.

    Returns (params, meta); meta may hold ``config``, ``vocab`` and ``dtype``.
    """
    path = Path(path)
    fmt = format_of(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"parameter file {path} not found: check the path") from None
    except OSError as e:
        raise UserError(f"cannot read parameter file {path}: {e.strerror}") from None
    return params_from_bytes(raw, fmt, path)


def check_params(params: dict[str, Any], config: GPTConfig, source: str = "parameters") -> None:
    """Raise UserError naming the first key that is missing, extra, or of the wrong shape for ``config``."""
    expected = param_shapes(config)
    for name, shape in expected.items():
        if name not in params:
            raise UserError(f"{source}: missing {name!r} (expected shape {shape})")
        got = tuple(np.shape(params[name]))
        if got != shape:
            raise UserError(f"{source}: {name!r} has shape {got}, expected {shape} for this model config")
    for name in params:
        if name not in expected:
            raise UserError(f"{source}: unexpected {name!r} (shape {tuple(np.shape(params[name]))}) for this config")
