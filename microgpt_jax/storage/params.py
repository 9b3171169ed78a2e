"""Parameter files in and out (safetensors, npz, microgpt-style JSON), written atomically (``files``).

Every file holds the state_dict under microgpt's names, each matrix (nout, nin), plus metadata: the model
config, the tokenizer (``vocab``: ``{"kind": "char" | "word", "vocab": [entries]}``; files written before the
word tokenizer hold the characters as one string, and still load) and the dtype, so a file alone is enough to
sample from. Round trips are exact: safetensors and npz hold the bits, JSON holds each number as Python's
shortest repr of the float64 that equals it (a float32 read back and cast to float32 is the same float32).
Nothing is ever half-written: bytes go to a temp file in the same directory, then a rename. Reading never
trusts the bytes: anything malformed is a UserError naming the file and the problem.
"""

from __future__ import annotations

import io
import json
import lzma
import math
import os
import struct
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from microgpt_jax.config import GPTConfig
from microgpt_jax.corpus.tokenizer import Tokenizer, as_tokenizer
from microgpt_jax.errors import UserError
from microgpt_jax.files import (
    MAX_CONFIG_BYTES,
    MAX_JSON_PARAMS_BYTES,
    MAX_PARAMS_BYTES,
    atomic_write_bytes,
    read_regular,
)
from microgpt_jax.model.registry import param_shapes
from microgpt_jax.storage.safetensors import META_KEY, safetensors_bytes

FORMATS = {".safetensors": "safetensors", ".npz": "npz", ".json": "json"}
DTYPES = ("float32", "float64")

# what parsing untrusted bytes may raise (zipfile and zlib in particular raise many kinds)
_PARSE_ERRORS = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    OverflowError,
    RecursionError,
    EOFError,
    OSError,
    NotImplementedError,
    RuntimeError,
    struct.error,
    zlib.error,
    lzma.LZMAError,
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
)


def format_of(path: str | os.PathLike[str]) -> str:
    """The file format named by the path's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UserError(f"{path}: unknown parameter file type {suffix!r}: use .safetensors, .npz or .json")
    return FORMATS[suffix]


def _metadata(config: GPTConfig | None, tokenizer: Tokenizer | None, dtype: str) -> dict[str, Any]:
    """The metadata as plain JSON values (JSON files store it so; safetensors and npz as strings)."""
    meta: dict[str, Any] = {"format": "microgpt_jax", "dtype": dtype}
    if config is not None:
        meta["config"] = config.to_dict()
    if tokenizer is not None:
        meta["vocab"] = tokenizer.to_meta()
    return meta


def _stringify(meta: dict[str, Any]) -> dict[str, str]:
    """safetensors metadata is str -> str: config and vocab become JSON strings."""
    return {k: v if k in ("format", "dtype", "run_id") else json.dumps(v) for k, v in meta.items()}


def params_to_bytes(
    params: Mapping[str, ArrayLike],
    fmt: str,
    config: GPTConfig | None = None,
    tokenizer: Tokenizer | str | None = None,
    run_id: str | None = None,
) -> bytes:
    """Serialise a state_dict in ``fmt`` (safetensors, npz or json) with its config and tokenizer (a string is
    a char tokenizer's characters), and the id of the run that wrote it, for a run directory's final parameters."""
    tokenizer = None if tokenizer is None else as_tokenizer(tokenizer)
    arrays = {k: np.asarray(v) for k, v in params.items()}
    for k, v in arrays.items():  # what load_params reads back: 2-D matrices of float32 or float64
        if v.ndim != 2 or str(v.dtype) not in DTYPES:
            raise UserError(f"cannot save {k!r} ({v.dtype}{list(v.shape)}): parameters are 2-D float32 or float64")
    if META_KEY in arrays:
        raise UserError(f"a parameter may not be named {META_KEY!r}: it holds the file's metadata")
    dtypes = {str(v.dtype) for v in arrays.values()}
    if len(dtypes) > 1:
        raise UserError(f"parameters mix dtypes {sorted(dtypes)}: cast them to one dtype before saving")
    dtype = dtypes.pop() if dtypes else "float32"
    meta = _metadata(config, tokenizer, dtype)
    if run_id is not None:
        meta["run_id"] = run_id
    if fmt == "safetensors":
        return safetensors_bytes(arrays, _stringify(meta))
    if fmt == "npz":
        buf = io.BytesIO()
        np.savez(buf, **arrays, **{META_KEY: np.array(json.dumps(_stringify(meta)))})  # type: ignore[arg-type]  # numpy's stub: mypy matches **arrays to allow_pickle
        return buf.getvalue()
    if fmt == "json":
        # rows of Python floats: repr is the shortest string that reads back to the same float
        doc: dict[str, Any] = {k: [[float(x) for x in row] for row in v.tolist()] for k, v in arrays.items()}
        doc[META_KEY] = meta
        return json.dumps(doc).encode("utf-8")
    raise UserError(f"unknown format {fmt!r}: use safetensors, npz or json")


def save_params(
    path: str | os.PathLike[str],
    params: Mapping[str, ArrayLike],
    config: GPTConfig | None = None,
    tokenizer: Tokenizer | str | None = None,
    run_id: str | None = None,
) -> Path:
    """Save a state_dict with its config and tokenizer, the format chosen by the suffix (.safetensors, .npz,
    .json), atomically."""
    path = Path(path)
    atomic_write_bytes(path, params_to_bytes(params, format_of(path), config, tokenizer, run_id))
    return path


def _parse_meta(meta: Any, path: Path, encoded: bool) -> dict[str, Any]:
    """config -> GPTConfig, vocab -> ``tokenizer`` (a Tokenizer: the ``{kind, vocab}`` object, or a string of
    characters as files before the word tokenizer wrote it), dtype -> 'float32' | 'float64'. With ``encoded``
    (safetensors, npz) config and vocab are JSON strings; json files hold them as plain JSON values."""
    if not isinstance(meta, dict):
        raise UserError(f"{path}: bad metadata (not an object): re-export the file")
    out: dict[str, Any] = {}
    try:
        if "config" in meta:
            cfg = meta["config"]
            cfg = json.loads(cfg) if encoded and isinstance(cfg, str) else cfg
            if not isinstance(cfg, dict):
                raise ValueError("config is not an object")
            out["config"] = GPTConfig.from_dict(cfg)
        if "vocab" in meta:
            vocab = meta["vocab"]
            vocab = json.loads(vocab) if encoded and isinstance(vocab, str) else vocab
            out["tokenizer"] = Tokenizer.from_meta(vocab)
        if "dtype" in meta:
            if meta["dtype"] not in DTYPES:
                raise ValueError(f"dtype {meta['dtype']!r} is not one of {', '.join(DTYPES)}")
            out["dtype"] = meta["dtype"]
        if "run_id" in meta:
            if not isinstance(meta["run_id"], str):
                raise ValueError("run_id is not a string")
            out["run_id"] = meta["run_id"]
    except (ValueError, TypeError, RecursionError, UserError) as e:
        raise UserError(f"{path}: bad metadata ({e}): re-export the file") from None
    if "config" in out and "tokenizer" in out and out["tokenizer"].vocab_size != out["config"].vocab_size:
        raise UserError(
            f"{path}: bad metadata: a vocabulary of {len(out['tokenizer'].vocab)} {out['tokenizer'].kind}s does not "
            f"fit vocab_size {out['config'].vocab_size}: re-export the file"
        )
    return out


def _json_matrix(name: str, value: object, path: Path) -> np.ndarray:
    if not isinstance(value, list) or not value or not all(isinstance(row, list) for row in value):
        raise UserError(f"{path}: {name!r} is not a list of rows of numbers: use the {{name: [[...], ...]}} layout")
    width = len(value[0])
    for i, row in enumerate(value):
        if len(row) != width:
            raise UserError(f"{path}: {name!r} is ragged: row {i} has {len(row)} numbers, row 0 has {width}")
        for x in row:
            if isinstance(x, bool) or not isinstance(x, (int, float)):
                raise UserError(f"{path}: {name!r} row {i} holds {x!r:.40}, not a number")
            try:
                finite = math.isfinite(x)
            except OverflowError:  # an int too large for a float
                finite = False
            if not finite:
                raise UserError(f"{path}: {name!r} row {i} holds {x!r:.40}, not a finite number")
    return np.array(value, dtype=np.float64)


def _npz_expected(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> tuple[Any, dict[str, tuple[int, int]] | None]:
    """The archive's raw metadata (read first, bounded) and the shapes its config expects, or None when it carries
    no readable config (a bad one is reported later, by ``_parse_meta``)."""
    info = next((i for i in infos if i.filename == META_KEY + ".npy"), None)
    if info is None:
        return {}, None
    if info.file_size > MAX_CONFIG_BYTES:
        raise ValueError(f"{META_KEY} declares {info.file_size:,} bytes, over {MAX_CONFIG_BYTES:,}")
    with zf.open(info) as member:
        m = _npy_array(member, info, META_KEY, MAX_CONFIG_BYTES)
    if m.shape != () or m.dtype.kind != "U":
        raise ValueError(f"{META_KEY} is not a string")
    meta = json.loads(str(m))
    try:
        config = GPTConfig.from_dict(json.loads(meta["config"]))
        if config.model == "gpt" and config.n_layer > len(infos):  # before listing a huge config's shapes
            return meta, None
        return meta, param_shapes(config)
    except (ValueError, TypeError, KeyError, RecursionError, UserError):
        return meta, None


def _npy_array(
    member: IO[bytes], info: zipfile.ZipInfo, name: str, budget: int, want: tuple[int, ...] | None = None
) -> Any:
    """One .npy member: its header is read and checked (numbers, the shape ``want`` when given, at most ``budget``
    bytes, exactly the size the archive declares) before any of its data is read."""
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(member)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(member)
    else:
        raise ValueError(f"unsupported .npy version {version}")
    meta = name == META_KEY and dtype.kind == "U"
    if dtype.hasobject or dtype.itemsize == 0 or not (meta or dtype.kind == "f"):
        raise ValueError(f"{name!r} has dtype {dtype}, not floating-point numbers")
    if any(d < 0 for d in shape):
        raise ValueError(f"{name!r} declares shape {shape}")
    if want is not None and tuple(shape) != want:
        raise ValueError(f"{name!r} declares shape {tuple(shape)}, but the file's config expects {want}")
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    if nbytes > budget:
        raise ValueError(f"{name!r} declares {dtype}{list(shape)}: {nbytes:,} bytes, over the {budget:,} left")
    if member.tell() + nbytes != info.file_size:
        raise ValueError(f"{name!r} declares shape {shape} but its member holds {info.file_size - member.tell()} bytes")
    data = member.read(nbytes)  # checks the CRC at the end; never more than the archive declares
    if len(data) != nbytes or member.read(1):
        raise ValueError(f"member {info.filename!r} does not inflate to its declared {info.file_size} bytes")
    flat = np.frombuffer(data, dtype=dtype, count=count)
    return flat.reshape(shape, order="F" if fortran else "C").copy()


def _read_npz(raw: bytes, limit: int | None = None) -> tuple[dict[str, np.ndarray], Any]:
    """The arrays of an npz archive, read without pickle and without trusting declared sizes: every member's
    .npy header (dtype, shape: the file's config's when it carries one; bytes: within ``limit`` in all, default
    ``MAX_PARAMS_BYTES``) is checked before its data is read or inflated."""
    limit = MAX_PARAMS_BYTES if limit is None else limit
    arrays: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        infos = zf.infolist()
        declared = sum(info.file_size for info in infos)
        if declared > limit:  # a small archive may inflate to gigabytes: refuse before inflating
            raise ValueError(f"its members inflate to {declared:,} bytes, over {limit:,}")
        names = set()
        for info in infos:
            if not info.filename.endswith(".npy"):
                raise ValueError(f"member {info.filename!r} is not an .npy array")
            if info.filename in names:
                raise ValueError(f"{info.filename[: -len('.npy')]!r} appears twice")
            names.add(info.filename)
        meta, expected = _npz_expected(zf, infos)
        budget = limit
        for info in infos:
            name = info.filename[: -len(".npy")]
            if name == META_KEY:
                continue
            if expected is not None and name not in expected:
                raise ValueError(f"unexpected {name!r} for the file's config")
            with zf.open(info) as member:
                arrays[name] = _npy_array(member, info, name, budget, None if expected is None else expected[name])
            budget -= arrays[name].nbytes
    return arrays, meta


def params_from_bytes(
    raw: bytes, fmt: str, path: str | os.PathLike[str] = "<bytes>"
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Parse a parameter file's bytes into (state_dict of numpy arrays, metadata dict).

    Metadata may hold ``config`` (GPTConfig), ``tokenizer`` (Tokenizer) and ``dtype``; when the file carries its config,
    the matrices are checked against it. Any malformed input raises UserError naming the file and the problem.
    """
    path = Path(path)
    if fmt == "safetensors":
        from safetensors import SafetensorError
        from safetensors.numpy import load

        try:
            params = dict(load(raw))
            n = int.from_bytes(raw[:8], "little")
            meta = json.loads(raw[8 : 8 + n]).get(META_KEY) or {}
        except (SafetensorError, *_PARSE_ERRORS) as e:
            raise UserError(f"{path}: not a readable safetensors file ({str(e)[:200]}): re-export it") from None
    elif fmt == "npz":
        try:
            params, meta = _read_npz(raw)
        except _PARSE_ERRORS as e:
            raise UserError(f"{path}: not a readable npz file ({str(e)[:200]}): re-export it") from None
    elif fmt == "json":
        if len(raw) > MAX_JSON_PARAMS_BYTES:  # parsed, each number becomes a Python float in a list: ~16x
            raise UserError(f"{path}: {len(raw) / 2**20:,.0f} MiB of JSON, over the {MAX_JSON_PARAMS_BYTES >> 20:,} "
                            "MiB JSON parameters may take (parsed, ~16x that): save it as .safetensors")  # fmt: skip
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise UserError(f"{path}: not valid JSON ({str(e)[:200]}): re-export it") from None
        if not isinstance(doc, dict):
            raise UserError(f"{path}: expected a JSON object {{name: [[...], ...]}}, got {type(doc).__name__}")
        meta = doc.pop(META_KEY, {})
        params = {k: _json_matrix(k, v, path) for k, v in doc.items()}
    else:
        raise UserError(f"unknown format {fmt!r}: use safetensors, npz or json")
    meta = _parse_meta(meta, path, encoded=fmt != "json")
    for k, v in params.items():
        if v.ndim != 2 or not np.issubdtype(v.dtype, np.floating):
            raise UserError(f"{path}: {k!r} is not a 2-D float matrix (shape {v.shape}, dtype {v.dtype}): re-export it")
        if not np.all(np.isfinite(v)):
            raise UserError(f"{path}: {k!r} holds NaN or infinite values: use parameters from a run that converged")
    if fmt == "json" and "dtype" in meta:
        params = cast_params(params, meta["dtype"], str(path))
    if "config" in meta:
        config = meta["config"]
        if config.model == "gpt" and config.n_layer > len(params):  # before listing a huge config's shapes
            raise UserError(f"{path}: {len(params)} matrices cannot hold the {config.n_layer} layers of its config")
        check_params(params, config, source=str(path))
    return params, meta


def load_params(path: str | os.PathLike[str], *, follow: bool = True) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Load a state_dict saved by ``save_params`` (or a microgpt-style JSON state_dict) by suffix.

    Returns (params, meta); meta may hold ``config``, ``tokenizer`` and ``dtype``. ``follow=False``: a link at
    ``path`` is refused (a file inside a run directory)."""
    params, meta, _ = load_params_hashed(path, follow=follow)
    return params, meta


def load_params_hashed(
    path: str | os.PathLike[str], *, follow: bool = True
) -> tuple[dict[str, np.ndarray], dict[str, Any], str]:
    """``load_params`` and the SHA-256 of the very bytes parsed (what a run records of its init file: hashing
    the path again could read another file swapped in meanwhile)."""
    import hashlib

    path = Path(path)
    fmt = format_of(path)
    limit = MAX_JSON_PARAMS_BYTES if fmt == "json" else MAX_PARAMS_BYTES
    fix = "pass a .safetensors, .npz or .json file" + (" (JSON is parsed into ~16x its size)" if fmt == "json" else "")
    raw = read_regular(path, limit, "parameter file", fix, follow=follow)
    return (*params_from_bytes(raw, fmt, path), hashlib.sha256(raw).hexdigest())


def check_params(params: Mapping[str, ArrayLike], config: GPTConfig, source: str = "parameters") -> None:
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


def cast_params(params: Mapping[str, ArrayLike], dtype: DTypeLike, source: str = "parameters") -> dict[str, np.ndarray]:
    """The parameters in ``dtype`` (numpy arrays), after checking every value fits it: a float64 value beyond
    float32's range would become inf in a float32 run."""
    dtype = np.dtype(dtype)
    top = float(np.finfo(dtype).max)
    out = {}
    for k, v in params.items():
        v = np.asarray(v)
        if v.size and float(np.max(np.abs(v))) > top:
            raise UserError(
                f"{source}: {k!r} holds {float(np.max(np.abs(v))):.3g}, beyond {dtype}'s range: "
                "train in float64 (`x64`) or use parameters that fit"
            )
        out[k] = v.astype(dtype)
    return out
