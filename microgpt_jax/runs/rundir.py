"""The run directory as a transaction: one run per directory, never pieces of two, nothing else touched.

A run directory holds only files a run writes (``RUN_FILES``, the checkpoint folder, a lock file and temp
files of interrupted atomic writes, named by ``files.temp_prefix``), and never a symbolic link: a directory
holding one is refused, and every file in it is opened without following links (``files.open_owned``,
``read_regular(follow=False)``), so a directory prepared by someone else cannot turn a write elsewhere.
``create`` opens one for a fresh run:

- a path that does not exist or is an empty directory becomes the run's directory;
- a directory holding a run (finished, unfinished or failed) is refused, unless ``overwrite``: then the new
  run is built in a sibling staging directory and replaces the old one only once it is complete (``out``
  itself a link is then refused: replacing acts on the directory, never on a link's target);
- a directory holding anything else is always refused: a run never deletes or overwrites what it did not write.

Writers take an exclusive lock (``fcntl.flock`` on ``.lock`` inside the directory, holding the writer's PID),
so a second writer is refused with the holder's PID instead of mixing two runs. ``state`` tells readers
(``load_run``) whether a directory holds a complete run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

from microgpt_jax.config import TRAIN_ADDED_LATER
from microgpt_jax.errors import UserError
from microgpt_jax.files import (
    MAX_CONFIG_BYTES,
    MAX_METRICS_BYTES,
    is_temp,
    open_owned,
    read_regular,
    remove_temps,
)
from microgpt_jax.storage.checkpoint import CKPT_DIR, MANIFEST

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
PARAMS_FILE = "params.safetensors"

LOCK_FILE = ".lock"
RUN_FILES = (CONFIG_FILE, METRICS_FILE, PARAMS_FILE)


def foreign_names(path: Path) -> str:
    """The first few entries of ``path`` (and its checkpoint folder) that no run writes, for a message."""
    names = sorted(p.name for p in path.iterdir() if not _ours(p.name)) + _foreign_in_checkpoint(path)
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def _ours(name: str) -> bool:
    """Whether a directory entry is one a run writes (its files, checkpoint folder, lock, temp files)."""
    return name in (*RUN_FILES, CKPT_DIR, LOCK_FILE) or is_temp(name)


def links(path: Path, folders: tuple[str, ...] = (CKPT_DIR,)) -> list[str]:
    """The symbolic links in ``path`` and in its sub``folders`` (relative names): a folder the tool owns holds
    none."""
    found = []
    for sub in ("", *folders):
        with contextlib.suppress(OSError):
            for entry in os.scandir(path / sub if sub else path):
                if entry.is_symlink():
                    found.append(f"{sub}/{entry.name}" if sub else entry.name)
    return sorted(found)


def _foreign_in_checkpoint(path: Path) -> list[str]:
    """Names in ``path/checkpoint`` that no checkpoint writes."""
    from microgpt_jax.storage.checkpoint import is_checkpoint_file

    ck = path / CKPT_DIR
    if ck.is_symlink() or (ck.exists() and not ck.is_dir()):
        return [CKPT_DIR]
    return [f"{CKPT_DIR}/{p.name}" for p in ck.iterdir() if not is_checkpoint_file(p.name)] if ck.is_dir() else []


def state(path: Path) -> str:
    """What ``path`` holds: ``absent``, ``empty``, ``finished`` (config and final params), ``unfinished``
    (a checkpoint to resume), ``failed`` (a run that stopped with neither: diverged, or killed before its
    first checkpoint), ``foreign`` (anything a run does not write), or ``not-a-directory``."""
    if not path.exists() and not path.is_symlink():
        return "absent"
    if not path.is_dir():
        return "not-a-directory"
    names = [p.name for p in path.iterdir()]
    if any(not _ours(n) for n in names) or _foreign_in_checkpoint(path) or links(path):
        return "foreign"
    if not any(n in names for n in (*RUN_FILES, CKPT_DIR)):
        return "empty"
    if CONFIG_FILE in names and PARAMS_FILE in names:
        return "finished"
    if (path / CKPT_DIR / "checkpoint.json").is_file():
        return "unfinished"
    return "failed"


def _refusal(path: Path, what: str, overwrite: bool) -> UserError | None:
    """Why a fresh run may not be written into ``path`` (None: it may)."""
    if what in ("absent", "empty"):
        return None
    if what == "not-a-directory":
        return UserError(f"`out` {path} is a file, not a directory: pick another `out`")
    if what == "foreign" and links(path):
        return UserError(links_message(path, links(path)))
    if what == "foreign":
        return UserError(f"`out` {path} holds files that are not a run ({foreign_names(path)}): pick another `out`")
    if overwrite and path.is_symlink():
        return UserError(
            f"`out` {path} is a symbolic link: `overwrite` replaces a run directory itself, never a link's target; "
            "pass the directory it points to"
        )
    if overwrite:
        return None
    at = ""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError, UserError):
        manifest = json.loads(read_regular(path / CKPT_DIR / MANIFEST, MAX_CONFIG_BYTES, "manifest", "", follow=False))
        at = f" (checkpoint at step {int(manifest['step'])} of {int(manifest['steps'])})"
    held = {
        "finished": "a finished run",
        "unfinished": f"an unfinished run{at}",
        "failed": "a run that stopped without a checkpoint",
    }[what]
    resume = f"resume it (microgpt-jax train --resume {path}), " if what == "unfinished" else ""
    return UserError(f"`out` {path} holds {held}: {resume}pick another `out`, or pass `overwrite` to replace it")


def links_message(path: Path, names: list[str]) -> str:
    """The one-line refusal of a run or sweep directory holding the symbolic links ``names``."""
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return (f"`out` {path} holds symbolic links ({shown}), which a run or sweep directory never holds (one could "
            "lead a write outside it): remove them or pick another `out`")  # fmt: skip


def lock(directory: Path) -> IO[str]:
    """Take the directory's writer lock (non-blocking, the lock file opened without following a link) and
    record our PID in it; refuse if another process holds it."""
    import fcntl

    fd = open_owned(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_APPEND, "lock file",
                    "remove it or pick another `out`")  # fmt: skip
    handle = open(fd, "a+", encoding="utf-8")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise UserError(
            f"{directory} is being written by another microgpt-jax process (PID {holder}): "
            "wait for it to finish or pick another `out`"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


@dataclass
class RunDir:
    """A run directory opened for writing: ``path`` is where this run's files go (``target`` itself, or a
    staging directory when it replaces an old run), held under the writer lock until ``close``."""

    target: Path
    path: Path
    locks: list[IO[str]]
    replaces: bool = False
    remove: Callable[[Path], None] | None = None  # deletes the old contents on commit (default: remove_run)

    def commit(self) -> None:
        """The run is complete: a staged run takes the target's place, and the old run's files go."""
        if not self.replaces:
            return
        old = self.target.with_name(f".{self.target.name}.old-{os.getpid()}")
        os.replace(self.target, old)
        os.replace(self.path, self.target)
        self.path = self.target
        self.replaces = False
        (self.remove or remove_run)(old)

    def abandon(self) -> None:
        """The run failed: a staging directory with no checkpoint to resume goes (the old run stays as it was);
        a run in its own directory stays, for its metrics and the error's explanation."""
        if self.replaces and state(self.path) != "unfinished":  # a sweep's staging directory is never unfinished
            (self.remove or remove_run)(self.path)

    def close(self) -> None:
        """Release the locks (the lock files stay: they are part of the run)."""
        for held in self.locks:
            held.close()
        self.locks = []


def remove_run(path: Path) -> None:
    """Delete a run directory's own files and then the directory; anything else in it is left (with it)."""
    for name in (*RUN_FILES, LOCK_FILE):
        with contextlib.suppress(FileNotFoundError):
            (path / name).unlink()
    from microgpt_jax.storage.checkpoint import is_checkpoint_file

    ck = path / CKPT_DIR
    if ck.is_dir() and not ck.is_symlink():
        for p in ck.iterdir():
            if is_checkpoint_file(p.name):
                with contextlib.suppress(OSError):
                    p.unlink()
        with contextlib.suppress(OSError):
            ck.rmdir()
    remove_temps(path)
    with contextlib.suppress(OSError):
        path.rmdir()


def check_target(out: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """``out`` as a path, if a fresh run may be written there (the module's rules); else the UserError saying
    why. Cheap: callers run it before reading a corpus, and ``create`` again under the lock."""
    if not str(out).strip():  # Path("") is the current directory
        raise UserError("`out` is empty: name a run directory, e.g. `out` runs/microgpt")
    target = Path(out)
    refusal = _refusal(target, state(target), overwrite)
    if refusal is not None:
        raise refusal
    return target


def create(out: str | os.PathLike[str], overwrite: bool = False) -> RunDir:
    """Open ``out`` for a fresh run (see the module's rules); every refusal comes before anything is written
    but the directory and its lock, which are removed again when the run may not go there."""
    target = check_target(out, overwrite)
    replaces = state(target) not in ("absent", "empty")
    if replaces and target.is_symlink():  # it became one since the check
        raise _refusal(target, "finished", True) or UserError(f"`out` {target} changed: pick another `out`")

    def still_empty(path: Path) -> None:  # another process may have got here between the check and the lock
        if not replaces and state(path) != "empty":
            raise _refusal(path, state(path), overwrite) or UserError(f"{path} changed: pick another `out`")

    return open_staged(target, replaces, "run", still_empty, remove_run)


def open_staged(
    target: Path, replaces: bool, what: str, still_empty: Callable[[Path], None], remove: Callable[[Path], None]
) -> RunDir:
    """``target``, or a staging directory beside it when the writer ``replaces`` what is there, made and locked
    (the old ``target`` locked too); ``still_empty(path)`` raises once the locks are held if another writer got
    there first. On any refusal the locks are released and a directory made here is removed with ``remove``;
    ``what`` names the directory in errors ("run", "sweep")."""
    path = target.with_name(f".{target.name}.new-{os.getpid()}") if replaces else target
    made = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the {what} directory {path}: {e.strerror}: pick another `out`") from None
    locks: list[IO[str]] = []
    try:
        if replaces:  # keep other writers out of the old one too, until it is replaced
            locks.append(lock(target))
        locks.append(lock(path))
        still_empty(path)
    except (UserError, OSError) as e:
        for held in locks:
            held.close()
        if made:
            remove(path)
        if isinstance(e, OSError):
            raise UserError(f"cannot write to the {what} directory {path}: {e.strerror}: pick another `out`") from None
        raise
    return RunDir(target, path, locks, replaces, remove=remove)


def open_existing(run_dir: str | os.PathLike[str]) -> RunDir:
    """Open an unfinished run's directory for ``resume_run``, under the writer lock."""
    path = Path(run_dir)
    if not path.is_dir():
        raise UserError(f"{path} is not a run directory: pass the `out` of a train run to `resume`")
    if links(path):
        raise UserError(links_message(path, links(path)).replace("pick another `out`", "train it again"))
    return RunDir(path, path, [lock(path)])


def config_digest(doc: dict[str, Any]) -> str:
    """SHA-256 of what defines a run's numbers in config.json (model, train, data, init): a checkpoint
    records it, and resuming refuses a config that was edited since. Training fields added later are left out
    at the value runs had before them (``config.TRAIN_ADDED_LATER``): an older run's digest stays what it was."""
    keep = {k: doc.get(k) for k in ("model", "train", "data", "init")}
    if isinstance(keep["train"], dict):
        later = TRAIN_ADDED_LATER
        keep["train"] = {k: v for k, v in keep["train"].items() if not (k in later and v == later[k])}
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()


class Metrics:
    """metrics.jsonl, appended a chunk at a time; ``sync`` makes it durable and returns its length and digest
    (a checkpoint records both, so a resume can tell whether the file was cut or changed since)."""

    def __init__(self, path: Path, append: bool, enabled: bool = True) -> None:
        self.path = path
        self.file: BinaryIO | None = None
        if not enabled:  # a process of a multi-process job other than 0: writes nothing, syncs nothing
            return
        mode = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        fd = open_owned(path, mode, "metrics file", "free space, fix permissions, or remove it")
        self.file = open(fd, "ab")

    def write(self, lines: list[dict[str, Any]]) -> None:
        """Append JSON lines; a full disk is one clear error."""
        if self.file is None:
            return
        try:
            self.file.write("".join(json.dumps(x) + "\n" for x in lines).encode())
            self.file.flush()
        except OSError as e:
            raise UserError(f"cannot write {self.path}: {e.strerror}: free space and resume the run") from None

    def sync(self) -> dict[str, Any]:
        """fsync and describe the file as it is now: ``{"bytes": n, "sha256": h}``."""
        if self.file is None:
            return {}
        try:
            os.fsync(self.file.fileno())
        except OSError as e:
            raise UserError(f"cannot write {self.path}: {e.strerror}: free space and resume the run") from None
        return describe(self.path)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def describe(path: Path, size: int | None = None) -> dict[str, Any]:
    """Length and SHA-256 of a file's first ``size`` bytes (all of it by default; a missing file is empty),
    read bounded and without following a link."""
    fix = "restore it, or start the run again with `overwrite`"
    data = read_regular(path, MAX_METRICS_BYTES, "metrics file", fix, follow=False) if os.path.lexists(path) else b""
    data = data if size is None else data[:size]
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def restore_metrics(path: Path, recorded: dict[str, Any]) -> None:
    """Cut metrics.jsonl back to what it held at the checkpoint, after checking that part is unchanged."""
    size = recorded["bytes"]
    have = describe(path, size)
    if have != recorded:
        raise UserError(
            f"{path} is not what it was at the checkpoint ({have['bytes']} of its {size} bytes match in length"
            f"{'' if have['bytes'] < size else ', but not in content'}): it was cut or edited; restore it or "
            "start the run again with `overwrite`"
        )
    fd = open_owned(path, os.O_RDWR, "metrics file", "restore it, or start the run again with `overwrite`")
    try:
        os.ftruncate(fd, size)
    finally:
        os.close(fd)
