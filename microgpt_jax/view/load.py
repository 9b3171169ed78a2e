"""Reading what a run or sweep directory holds, tolerantly: whatever cannot be read becomes a note on the
page, except a folder that is neither (or a config.json that does not parse), which is a UserError."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from microgpt_jax.corpus.load import Corpus, load_corpus
from microgpt_jax.corpus.source import sha256_file
from microgpt_jax.errors import UserError
from microgpt_jax.runs.spec import RunSpec
from microgpt_jax.storage.checkpoint import read_manifest
from microgpt_jax.storage.params import check_params, load_params

SWEEP_FILE = "results.json"
SWEEP_LOSSES = "losses.npz"


def is_sweep(path: Path) -> bool:
    """Whether ``path`` is a sweep directory (what ``sweep_run`` writes to its ``out``)."""
    return (path / SWEEP_FILE).is_file() and not (path / "config.json").exists()


def read_metrics(path: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    """metrics.jsonl's training losses and held-out evaluations as arrays, and notes on what was skipped."""
    steps: list[int] = []
    loss: list[float] = []
    val_steps: list[int] = []
    val_loss: list[float] = []
    bad = 0
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        return _metrics(steps, loss, val_steps, val_loss), [f"{path.name} could not be read ({e.strerror})"]
    for line in text.splitlines():
        try:
            rec = json.loads(line)
            step = rec["step"]
            if not isinstance(step, int) or isinstance(step, bool):
                raise TypeError
            if "loss" in rec:
                loss.append(float(rec["loss"]))
                steps.append(step)
            elif "val_loss" in rec:
                val_loss.append(float(rec["val_loss"]))
                val_steps.append(step)
        except (ValueError, KeyError, TypeError):
            bad += 1
    notes = (
        [f"{bad} line{'s' * (bad != 1)} of {path.name} could not be read and {'were' if bad != 1 else 'was'} left out"]
        if bad
        else []
    )
    return _metrics(steps, loss, val_steps, val_loss), notes


def _metrics(steps: list[int], loss: list[float], val_steps: list[int], val_loss: list[float]) -> dict[str, np.ndarray]:
    return {
        "steps": np.asarray(steps, np.int64),
        "loss": np.asarray(loss, np.float64),
        "val_steps": np.asarray(val_steps, np.int64),
        "val_loss": np.asarray(val_loss, np.float64),
    }


def being_written(path: Path) -> bool:
    """Whether a microgpt-jax process holds the run directory's writer lock now (it is still training)."""
    import fcntl

    lock = path / ".lock"
    if not lock.is_file():
        return False
    try:
        with open(lock, encoding="utf-8") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    except OSError:
        return True
    return False


def _read_params(path: Path, spec: RunSpec) -> tuple[dict[str, np.ndarray] | None, str, list[str]]:
    """The run's final parameters, else its latest checkpoint's, with where they came from and notes."""
    final = path / "params.safetensors"
    try:
        if final.exists():
            params, meta = load_params(final)
            if meta.get("run_id") not in (None, spec.digest()):
                raise UserError(f"{final} belongs to another config than {path / 'config.json'}")
            check_params(params, spec.model, source=str(final))
            return params, "final parameters", []
        manifest = read_manifest(path)
        if manifest is None:
            return None, "", ["no parameters yet (no params.safetensors, no checkpoint): curves only"]
        ck = path / "checkpoint" / str(manifest.get("params"))
        params, _ = load_params(ck)
        check_params(params, spec.model, source=str(ck))
        step = manifest["step"]
        return (
            params,
            f"checkpoint at step {step}",
            [f"unfinished run: the parameters are its checkpoint at step {step} of {spec.train.steps}"],
        )
    except UserError as e:
        return None, "", [f"the parameters could not be read ({e}): the sections that need them are left out"]


def read_corpus(spec: RunSpec) -> tuple[Corpus | None, str | None]:
    """The run's corpus split as in training, or None with why: the file is gone, unreadable, or changed since
    (its SHA-256 differs from the one config.json recorded)."""
    path = spec.data.path
    try:
        if path is None or not Path(path).is_file():
            return None, f"the corpus {path} is not readable here"
        if sha256_file(path) != spec.data_sha256:
            return None, f"the corpus {path} changed since the run (its SHA-256 differs)"
        return load_corpus(spec.data, spec.tokenizer), None
    except (UserError, OSError) as e:
        return None, f"the corpus {path} could not be read ({e})"


def read_run(run_dir: str | os.PathLike[str], with_corpus: bool = True) -> dict[str, Any]:
    """Everything the page shows of a run directory: ``path``, ``spec``, ``metrics`` (read_metrics'),
    ``params`` (or None), ``params_source``, ``corpus`` (or None), ``training`` (still being written) and
    ``notes``. A folder without a readable config.json is a UserError."""
    path = Path(run_dir)
    if not path.is_dir():
        raise UserError(f"{path} is not a directory: pass a run directory or a sweep directory (the `out` of either)")
    if not (path / "config.json").is_file():
        raise UserError(
            f"{path} is neither a run directory (no config.json) nor a sweep directory (no "
            f"{SWEEP_FILE}): pass the `out` of a training run or a sweep"
        )
    spec = RunSpec.read(path)
    notes: list[str] = []
    training = being_written(path)
    if training:
        notes.append("the run is still training: this page shows it as it was when the page was made")
    metrics, more = read_metrics(path / "metrics.jsonl")
    notes += more
    params, source, more = _read_params(path, spec)
    notes += more
    corpus, why = read_corpus(spec) if with_corpus else (None, None)
    if why:
        notes.append(why + ": the bigram reference line and the new-or-seen marks are left out")
    return {
        "path": path,
        "spec": spec,
        "metrics": metrics,
        "params": params,
        "params_source": source,
        "corpus": corpus,
        "training": training,
        "notes": notes,
    }


def read_sweep(sweep_dir: Path) -> dict[str, Any]:
    """A sweep directory's rows (results.json), per-member losses when recorded, and notes."""
    try:
        rows = json.loads((sweep_dir / SWEEP_FILE).read_text(encoding="utf-8"))
        if not isinstance(rows, list) or not all(isinstance(r, dict) and "val_loss" in r for r in rows):
            raise ValueError("expected a list of rows with val_loss")
    except (OSError, ValueError) as e:
        raise UserError(f"{sweep_dir / SWEEP_FILE} is not a sweep's results ({e}): run the sweep again") from None
    losses: dict[int, np.ndarray] = {}
    notes = []
    if (sweep_dir / SWEEP_LOSSES).is_file():
        try:
            with np.load(sweep_dir / SWEEP_LOSSES, allow_pickle=False) as z:
                losses = {int(k.removeprefix("member")): np.asarray(z[k], np.float64) for k in z.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            notes.append(f"{SWEEP_LOSSES} could not be read ({e}): no curves")
    else:
        notes.append(f"this sweep recorded no per-step losses ({SWEEP_LOSSES}): no curves")
    return {"path": sweep_dir, "rows": rows, "losses": losses, "notes": notes}


def in_corpus(texts: list[str], corpus: Corpus | None) -> list[str | None]:
    """For each text: "train" (a training document), "held-out" (a held-out one), "new", or None (no corpus)."""
    if corpus is None:
        return [None] * len(texts)
    train, held = set(corpus.train_docs), set(corpus.val_docs)
    return ["train" if t in train else "held-out" if t in held else "new" for t in texts]
