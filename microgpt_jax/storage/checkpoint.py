"""Checkpoints that resume bit-for-bit: writing, reading and verifying ``RUN/checkpoint/``.

A checkpoint is ``params-SSSSSSSS.safetensors`` (an ordinary parameter file: ``load_params`` reads it),
``opt_state-SSSSSSSS.safetensors`` (the optimizer state's leaves under their pytree paths) and
``checkpoint.json``, the manifest naming both files with their SHA-256, the step, the PRNG key and the data
position. Each file is written by temp file + rename and the manifest goes last, so it is the commit point: a
reader sees the previous complete checkpoint or the new one, never a mix or a half-written file. Files no
manifest names are removed after each commit.

Training draws nothing after init but dropout's keys, which come from the seed and the step number; documents
are taken in order (``docs[step % n]``) and the optimizer state holds its own step count, so params + optimizer
state + step is the whole state of a run: resuming from it replays exactly the same compiled steps as the
uninterrupted run. What a run does between chunks (NaN stops, checkpoint cadence, signals) is
``runs/guard.py``'s ``RunGuard``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from microgpt_jax.config import GPTConfig
from microgpt_jax.corpus.tokenizer import Tokenizer
from microgpt_jax.errors import UserError
from microgpt_jax.files import MAX_CONFIG_BYTES, atomic_write_bytes, atomic_write_text, is_temp, read_regular
from microgpt_jax.storage.params import params_to_bytes
from microgpt_jax.storage.safetensors import safetensors_bytes

if TYPE_CHECKING:
    from microgpt_jax.model.types import Params

CKPT_DIR = "checkpoint"
MANIFEST = "checkpoint.json"
VERSION = 1


_CKPT_FILE = re.compile(r"(params|opt_state)-\d{8}\.safetensors|" + re.escape(MANIFEST))


def is_checkpoint_file(name: str) -> bool:
    """Whether a name in checkpoint/ is one a checkpoint writes (its files, manifest, this tool's temp files)."""
    return _CKPT_FILE.fullmatch(name) is not None or is_temp(name)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def opt_state_arrays(opt_state: Any) -> dict[str, np.ndarray]:
    """The optimizer state's leaves as numpy arrays, named by their pytree paths (e.g. ``[0].mu['wte']``)."""
    import jax

    leaves = jax.tree_util.tree_flatten_with_path(opt_state)[0]
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def opt_state_from_arrays(arrays: dict[str, np.ndarray], template: Any, source: str) -> Any:
    """Rebuild an optimizer state from ``opt_state_arrays`` output, the tree structure taken from ``template``
    (a fresh ``init_opt_state``); names, shapes and dtypes must all match it."""
    import jax
    import jax.numpy as jnp

    paths, treedef = jax.tree_util.tree_flatten_with_path(template)
    leaves = []
    for path, ref in paths:
        name = jax.tree_util.keystr(path)
        if name not in arrays:
            raise UserError(f"{source}: optimizer state lacks {name}: the checkpoint is from another optimizer")
        got = arrays[name]
        if got.shape != np.shape(ref) or got.dtype != np.asarray(ref).dtype:
            raise UserError(
                f"{source}: optimizer state {name} is {got.dtype}{list(got.shape)}, "
                f"expected {np.asarray(ref).dtype}{list(np.shape(ref))}: the checkpoint is from another run"
            )
        leaves.append(jnp.asarray(got))
    if len(arrays) != len(paths):
        raise UserError(f"{source}: optimizer state has {len(arrays)} arrays, expected {len(paths)}")
    return jax.tree_util.tree_unflatten(treedef, leaves)


def save_checkpoint(
    run_dir: str | os.PathLike[str],
    step: int,
    params: Mapping[str, ArrayLike],
    opt_state: Any,
    config: GPTConfig,
    tokenizer: Tokenizer | str,
    info: dict[str, Any] | None = None,
) -> Path:
    """Write the checkpoint of ``step`` into ``run_dir/checkpoint/`` atomically (manifest renamed last).

    ``info`` (JSON values: PRNG key, data position, ...) is stored in the manifest. Returns the manifest path.
    """
    ck = Path(run_dir) / CKPT_DIR
    try:
        ck.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(
            f"cannot write checkpoint directory {ck}: {e.strerror}: free space or fix permissions"
        ) from None
    if ck.is_symlink():  # a link put there would take the checkpoint's files elsewhere
        raise UserError(f"checkpoint directory {ck} is a symbolic link, which a run directory never holds: remove it")
    params_name, opt_name = f"params-{step:08d}.safetensors", f"opt_state-{step:08d}.safetensors"
    params_bytes = params_to_bytes({k: np.asarray(v) for k, v in params.items()}, "safetensors", config, tokenizer)
    atomic_write_bytes(ck / params_name, params_bytes)
    opt_bytes = safetensors_bytes(opt_state_arrays(opt_state), {"format": "microgpt_jax.opt_state", "step": str(step)})
    atomic_write_bytes(ck / opt_name, opt_bytes)
    manifest = {
        "version": VERSION,
        "step": step,
        "params": params_name,
        "opt_state": opt_name,
        "sha256": {params_name: sha256_hex(params_bytes), opt_name: sha256_hex(opt_bytes)},
        **(info or {}),
    }
    atomic_write_text(ck / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    for stale in ck.iterdir():  # earlier checkpoints' files and temp files of interrupted writes, nothing else
        if stale.name not in (MANIFEST, params_name, opt_name) and is_checkpoint_file(stale.name):
            with contextlib.suppress(OSError):
                stale.unlink()
    return ck / MANIFEST


def read_manifest(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The checkpoint manifest of a run directory, or None when it has none. Read bounded, without following a
    link; a link, a FIFO or a huge file there is a one-line UserError."""
    path = Path(run_dir) / CKPT_DIR / MANIFEST
    if not os.path.lexists(path):
        return None
    raw = read_regular(path, MAX_CONFIG_BYTES, "checkpoint manifest", "start the run again", follow=False)
    try:
        manifest = json.loads(raw.decode("utf-8"))
        if not isinstance(manifest, dict) or not isinstance(manifest.get("step"), int):
            raise ValueError("no step")
    except (ValueError, OSError) as e:
        raise UserError(f"{path} is not a readable checkpoint manifest ({e}): start the run again") from None
    return manifest


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the state to continue from and its manifest."""

    step: int
    params: Params
    opt_state: Any
    manifest: dict[str, Any]
