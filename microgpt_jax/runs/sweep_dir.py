"""A sweep's directory: its results (CSV, JSON, a plot), members' parameters, the best member's train command.

The directory is a transaction as a run directory is (``rundir``): a new or empty directory is used, one holding
a sweep's results is refused unless ``overwrite`` (the new sweep is then written in a sibling staging directory
and replaces the old one once complete; ``out`` a link is refused), one holding anything else or any symbolic
link is always refused; the writer holds the lock in ``.lock``. All of it before the first file is written.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from microgpt_jax.config import DataConfig, TrainConfig
from microgpt_jax.corpus.load import Corpus
from microgpt_jax.errors import UserError
from microgpt_jax.files import atomic_write_bytes, atomic_write_text, is_temp, remove_temps
from microgpt_jax.runs import rundir
from microgpt_jax.runtime import distributed
from microgpt_jax.storage.params import save_params
from microgpt_jax.training.sweep import (
    GRID_KEYS,
    MODEL_KEYS,
    RECIPE_KEYS,
    TRAIN_KEYS,
    Member,
    SweepResult,
    check_sweep_fits,
    member_groups,
    run_sweep,
    sweep_mesh,
)

SWEEP_FILES = ("results.csv", "results.json", "sweep.png")
MEMBERS = "members"
MEMBER_FILE = "params.safetensors"


def _member_dirs(path: Path) -> list[str]:
    """The names in ``path``/members (empty when there is none, or it is not a real directory)."""
    members = path / MEMBERS
    if members.is_symlink() or not members.is_dir():
        return []
    return sorted(p.name for p in members.iterdir())


def _foreign(path: Path) -> list[str]:
    """The entries of ``path`` no sweep writes (relative names)."""
    out = [n for n in sorted(os.listdir(path)) if n not in (*SWEEP_FILES, MEMBERS, rundir.LOCK_FILE) and not is_temp(n)]
    members = path / MEMBERS
    if members.is_symlink() or (members.exists() and not members.is_dir()):
        return [*out, MEMBERS]
    for d in _member_dirs(path):
        sub = members / d
        if not d.isdigit() or sub.is_symlink() or not sub.is_dir():
            out.append(f"{MEMBERS}/{d}")
            continue
        out += [f"{MEMBERS}/{d}/{n}" for n in sorted(os.listdir(sub)) if n != MEMBER_FILE and not is_temp(n)]
    return out


def sweep_state(path: Path) -> str:
    """What ``path`` holds: ``absent``, ``empty`` (nothing, or only a lock), ``results`` (a sweep's files),
    ``foreign`` (anything a sweep does not write, or a link), or ``not-a-directory``."""
    if not path.exists() and not path.is_symlink():
        return "absent"
    if not path.is_dir():
        return "not-a-directory"
    folders = (MEMBERS, *(f"{MEMBERS}/{d}" for d in _member_dirs(path)))
    if _foreign(path) or rundir.links(path, folders):
        return "foreign"
    names = set(os.listdir(path))
    return "results" if names & {*SWEEP_FILES, MEMBERS} else "empty"


def check_sweep_target(out: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """``out`` as a path, if a sweep may be written there (the module's rules); else the UserError saying why."""
    if not str(out).strip():
        raise UserError("`out` is empty: name a sweep directory, e.g. `out` runs/sweep")
    path = Path(out)
    what = sweep_state(path)
    if what == "not-a-directory":
        raise UserError(f"`out` {path} is a file, not a directory: pick another `out`")
    if what == "foreign":
        folders = (MEMBERS, *(f"{MEMBERS}/{d}" for d in _member_dirs(path)))
        names = rundir.links(path, folders) or _foreign(path)
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        kind = "symbolic links" if rundir.links(path, folders) else "files that are not a sweep's"
        raise UserError(f"`out` {path} holds {kind} ({shown}): pick another `out`")
    if what == "results" and not overwrite:
        raise UserError(
            f"`out` {path} holds a sweep's results: pick another `out`, or pass `overwrite` to replace them"
        )
    if what == "results" and path.is_symlink():
        raise UserError(f"`out` {path} is a symbolic link: `overwrite` replaces a sweep directory itself, never a "
                        "link's target; pass the directory it points to")  # fmt: skip
    return path


def remove_sweep(path: Path) -> None:
    """Delete a sweep directory's own files and then the directory; anything else in it is left (with it)."""
    for name in (*SWEEP_FILES, rundir.LOCK_FILE):
        with contextlib.suppress(FileNotFoundError):
            (path / name).unlink()
    for d in _member_dirs(path):
        sub = path / MEMBERS / d
        if sub.is_dir() and not sub.is_symlink():
            with contextlib.suppress(FileNotFoundError):
                (sub / MEMBER_FILE).unlink()
            remove_temps(sub)
            with contextlib.suppress(OSError):
                sub.rmdir()
    with contextlib.suppress(OSError):
        (path / MEMBERS).rmdir()
    remove_temps(path)
    with contextlib.suppress(OSError):
        path.rmdir()


def open_sweep(out: str | os.PathLike[str], overwrite: bool = False) -> rundir.RunDir:
    """Open ``out`` for a sweep under its writer lock (a staging directory beside it when it replaces earlier
    results; ``commit`` puts it in place). Every refusal comes before anything is written."""
    target = check_sweep_target(out, overwrite)
    replaces = sweep_state(target) == "results"

    def still_empty(path: Path) -> None:  # another process may have got here between the check and the lock
        if sweep_state(path) != "empty":
            raise UserError(f"`out` {path} changed while it was being opened: pick another `out`")

    return rundir.open_staged(target, replaces, "sweep", still_empty, remove_sweep)


def best_row(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The member with the lowest val_loss (train_loss without a held-out set) among those that did not diverge."""
    ok = [r for r in rows if not r["diverged"]]
    key = "val_loss" if ok and all(math.isfinite(r["val_loss"]) for r in ok) else "train_loss"
    ok = [r for r in ok if math.isfinite(r[key])]
    return min(ok, key=lambda r: r[key]) if ok else None


def train_command(member: Member, data: DataConfig, out: str = "runs/best") -> str:
    """The exact ``microgpt-jax train`` command that reproduces one member (same init, data order and recipe)."""
    parts = ["microgpt-jax", "train", "--out", out]
    if data.path is not None:
        parts += ["--data", str(data.path)]
    parts += ["--no-shuffle"] if data.shuffle_seed is None else ["--shuffle-seed", str(data.shuffle_seed)]
    parts += ["--val-size", str(data.val_size)]
    if data.tokenizer not in (None, "char"):
        parts += ["--tokenizer", data.tokenizer]
    if data.lowercase:
        parts.append("--lowercase")
    values = member.hyperparams()
    default = TrainConfig()
    for k in MODEL_KEYS + TRAIN_KEYS:
        if k in RECIPE_KEYS and values[k] == getattr(default, k):
            continue
        parts += [f"--{k.replace('_', '-')}", repr(values[k]) if isinstance(values[k], float) else str(values[k])]
    if member.train.init_zero_out:
        parts += ["--init-variant", "early"]
    if member.train.x64:
        parts.append("--x64")
    return " ".join(parts)


def _json_value(v: object) -> object:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def write_results(out: Path, rows: list[dict[str, Any]]) -> None:
    """``results.csv`` and ``results.json`` (non-finite numbers become null in JSON), written atomically."""
    if not rows:
        return
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "results.csv", buf.getvalue())
    clean = [{k: _json_value(v) for k, v in r.items()} for r in rows]
    atomic_write_text(out / "results.json", json.dumps(clean, indent=1) + "\n")


def write_losses(path: Path, losses: Sequence[np.ndarray]) -> None:
    """Every member's per-step training losses, ``member<id>`` in an npz (what the report draws curves from)."""
    buf = io.BytesIO()
    arrays = {f"member{i}": np.asarray(loss, np.float32) for i, loss in enumerate(losses)}
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]  # numpy's stub: mypy matches **arrays to allow_pickle
    atomic_write_bytes(path, buf.getvalue())


def plot_sweep(path: Path, rows: list[dict[str, Any]], varying: Sequence[str]) -> None:
    """val_loss against lr (log axis), one line per combination of the other varying settings."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    others = [k for k in varying if k != "lr"]
    lines: dict[tuple[object, ...], list[tuple[float, float]]] = {}
    for r in rows:
        lines.setdefault(tuple(r[k] for k in others), []).append((r["lr"], r["val_loss"]))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, pts in lines.items():
        pts.sort()
        xs = [x for x, _ in pts]
        ys = [y if math.isfinite(y) else np.nan for _, y in pts]
        text = ", ".join(f"{k}={v}" for k, v in zip(others, label, strict=True)) or "val_loss"
        ax.plot(xs, ys, marker="o", label=text)
    ax.set_xscale("log")
    ax.set_xlabel("lr")
    ax.set_ylabel("val_loss")
    ax.set_title("sweep: held-out loss against learning rate (diverged members missing)")
    if len(lines) <= 12:
        ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def sweep_run(
    out: str | os.PathLike[str],
    members: list[Member],
    corpus: Corpus,
    data: DataConfig,
    *,
    devices_requested: int | None = None,
    chunk: int = 100,
    save_member_params: bool = False,
    progress: bool = True,
    verbose: bool = True,
    overwrite: bool = False,
) -> SweepResult:
    """``microgpt-jax sweep`` as a library call: train ``members`` on ``corpus`` and write ``out``/results.csv,
    results.json, sweep.png (and members/<id>/params.safetensors); prints the best member with the ``train``
    command that reproduces it. Only process 0 writes and prints. ``out`` is opened as the module says: earlier
    results are replaced only with ``overwrite``, once the new ones are complete."""
    log = print if verbose and jax.process_index() == 0 else (lambda *a, **k: None)
    mesh = sweep_mesh(devices_requested)
    check_sweep_fits(members, len(corpus.train_docs) + len(corpus.val_docs), mesh.devices.size)
    lead = jax.process_index() == 0
    error, sd = None, None
    if lead:  # every check above this line: a bad flag leaves no directory
        try:
            sd = open_sweep(out, overwrite)
        except UserError as e:
            error = e
    distributed.check_together(error)  # every process stops here when process 0 cannot write
    try:
        return _sweep_in(sd, members, corpus, data, mesh, chunk, save_member_params, progress, log)
    except BaseException:
        if sd is not None:
            sd.abandon()
        raise
    finally:
        if sd is not None:
            sd.close()


def _sweep_in(
    sd: rundir.RunDir | None,
    members: list[Member],
    corpus: Corpus,
    data: DataConfig,
    mesh: Any,
    chunk: int,
    save_member_params: bool,
    progress: bool,
    log: Any,
) -> SweepResult:
    """``sweep_run`` once its directory is open (``sd``: process 0's, None on the others): train, then write."""
    n_groups = len(member_groups(members))
    log(f"sweep: {len(members)} members, {n_groups} shape group(s), {mesh.devices.size} device(s)")
    t0 = time.perf_counter()
    result = run_sweep(
        members, corpus.train_docs, corpus.val_docs, corpus.tokenizer, mesh=mesh, chunk=chunk,
        keep_params=save_member_params, progress=progress,
    )  # fmt: skip
    if sd is None:
        return result
    out = sd.path
    rows = result.rows
    write_results(out, rows)
    write_losses(out / "losses.npz", result.losses)
    varying = [k for k in GRID_KEYS if len({r[k] for r in rows}) > 1]
    plot_sweep(out / "sweep.png", rows, varying)
    if save_member_params:
        assert result.params is not None  # keep_params=save_member_params
        for m, p in zip(members, result.params, strict=True):
            (out / "members" / str(m.index)).mkdir(parents=True, exist_ok=True)
            save_params(out / "members" / str(m.index) / "params.safetensors", p, m.config, corpus.tokenizer)
    n_bad = sum(r["diverged"] for r in rows)
    log(f"trained {len(rows)} members in {time.perf_counter() - t0:.1f} s; {n_bad} diverged")
    best = best_row(rows)
    if best is None:
        log("every member diverged: lower --lr")
    else:
        settings = ", ".join(f"{k}={best[k]}" for k in varying) or "the only member"
        log(f"best: member {best['id']} ({settings}): val_loss {best['val_loss']:.4f}, "
            f"train_loss {best['train_loss']:.4f}")  # fmt: skip
        log("reproduce it with (the same run up to float rounding: val_loss within ~1e-4 in float32, ~1e-15 in x64):")
        log("  " + train_command(members[best["id"]], data))
    extra = ", members/<id>/params.safetensors" if save_member_params else ""
    sd.commit()
    log(f"wrote {sd.target}/results.csv, results.json, losses.npz, sweep.png{extra}")
    return result
