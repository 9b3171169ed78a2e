"""Reading untrusted files with bounds: regular files only, one open each, sizes checked before allocating.

A corpus or parameter file named on the command line may be anything: a FIFO (reading blocks), a device
(``/dev/zero`` never ends), a directory, a link to one of those, or simply too large. ``read_regular`` opens
the path once, without blocking, checks what it is and how big it is on the open descriptor, and reads at most
``limit`` bytes; everything else is a one-line UserError that names the file and the fix.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path

from microgpt_jax.errors import UserError

MIB = 1 << 20
GIB = 1 << 30
MAX_CORPUS_BYTES = 1 * GIB  # a training run keeps about 10x its corpus in memory
MAX_PARAMS_BYTES = 4 * GIB  # what any parameter file may hold, arrays and metadata together


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_regular(path: str | os.PathLike[str], limit: int, what: str, fix: str) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them.

    ``what`` names the file for messages ("data file", "parameter file"); ``fix`` says what to pass instead.
    The file is opened once (O_NONBLOCK, so a FIFO cannot block the open) and checked on that descriptor, so
    what is read is what was checked."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise UserError(f"{what} {path} not found: {fix}") from None
    except IsADirectoryError:
        raise UserError(f"{what} {path} is a directory: {fix}") from None
    except OSError as e:
        raise UserError(f"cannot read {what} {path}: {e.strerror}: {fix}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"{what} {path} is {_kind(info.st_mode)}, not a regular file: {fix}")
        if info.st_size > limit:
            raise UserError(
                f"{what} {path} is {info.st_size / MIB:,.0f} MiB, over the {limit / MIB:,.0f} MiB this reads: {fix}"
            )
        os.set_blocking(fd, True)
        chunks, total = [], 0
        while chunk := os.read(fd, min(MIB * 16, limit + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:  # it grew while being read
                raise UserError(f"{what} {path} grew past {limit / MIB:,.0f} MiB while being read: {fix}")
        return b"".join(chunks)
    except OSError as e:
        raise UserError(f"cannot read {what} {path}: {e.strerror}: {fix}") from None
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (best effort: not every platform can open a directory)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file and rename: readers see the old file or the new, never half.

    Any OS failure (no such directory, no permission, disk full) is a UserError and leaves no temp file behind.
    """
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
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a saved file gets the usual permissions
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {e.strerror}: pick a writable location with free space") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """UTF-8 text through ``atomic_write_bytes``."""
    atomic_write_bytes(path, text.encode("utf-8"))


def refuse_existing(folder: Path | None, names: Sequence[str], fix: str) -> None:
    """A one-line UserError ending in ``fix`` when any of ``names`` exists in ``folder`` (None: nothing to
    check): what a writer that never replaces files unasked calls before its first write."""
    if folder is None:
        return
    present = [name for name in names if os.path.lexists(Path(folder) / name)]
    if present:
        raise UserError(f"{folder} already holds {', '.join(present)}: {fix}")
