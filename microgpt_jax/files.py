"""The safe file operations every reader and writer uses: bounded reads, atomic writes, no links followed.

A corpus or parameter file named on the command line may be anything: a FIFO (reading blocks), a device
(``/dev/zero`` never ends), a directory, a link to one of those, or simply too large. ``read_regular`` opens
the path once, without blocking, checks what it is and how big it is on the open descriptor, and reads at most
``limit`` bytes; everything else is a one-line UserError that names the file and the fix.

Inside a folder the tool owns (a run or sweep directory, its checkpoint folder) a link is never followed
(``follow=False``, ``open_owned``): a link put there by someone else could make a run read or overwrite a file
outside it. Temp files of atomic writes carry the tool's tag and PID (``temp_prefix``); only names of that
pattern are ever removed (``remove_temps``), never a user's ``.*.tmp``. See docs/security.md.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path

from microgpt_jax.errors import UserError

MIB = 1 << 20
GIB = 1 << 30
MAX_CORPUS_BYTES = 1 * GIB  # a training run keeps about 10x its corpus in memory
MAX_PARAMS_BYTES = 4 * GIB  # what any parameter file may hold, arrays and metadata together
# JSON parameters become Python floats in lists while parsed, up to ~16x the file's bytes: bounded by that
MAX_JSON_PARAMS_BYTES = MAX_PARAMS_BYTES // 16
MAX_CONFIG_BYTES = 64 * MIB  # config.json and checkpoint.json (a word vocabulary of a million words fits)
MAX_METRICS_BYTES = 1 * GIB  # metrics.jsonl: about 40 bytes a step

TOOL_TAG = "microgpt-jax"  # in the name of every temp file this tool writes, with its PID
_TEMP = re.compile(r"\..+\." + re.escape(TOOL_TAG) + r"-\d+-[A-Za-z0-9_]+\.tmp")
_FLAGS = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)


def temp_prefix(name: str) -> str:
    """The start of a temp file's name for an atomic write of ``name``: ``.NAME.microgpt-jax-PID-`` (the
    writer adds a random part and ``.tmp``)."""
    return f".{name}.{TOOL_TAG}-{os.getpid()}-"


def is_temp(name: str) -> bool:
    """Whether ``name`` is a temp file this tool writes (``temp_prefix`` + random + ``.tmp``): the only
    names ``remove_temps`` removes."""
    return _TEMP.fullmatch(name) is not None


def remove_temps(folder: str | os.PathLike[str]) -> None:
    """Remove the temp files this tool left in ``folder`` (interrupted atomic writes; links are removed, not
    followed); a user's files, ``.*.tmp`` included, are never touched. Best effort."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if is_temp(entry.name) and not entry.is_dir(follow_symlinks=False):
            try:
                os.unlink(entry.path)
            except OSError:
                pass


def _link_error(path: Path, what: str, fix: str) -> UserError:
    return UserError(f"{what} {path} is a symbolic link, which this folder never holds (it could lead a write "
                     f"or read outside it): {fix}")  # fmt: skip


def open_owned(path: str | os.PathLike[str], flags: int, what: str, fix: str, mode: int = 0o666) -> int:
    """``os.open(path, flags)`` for a file in a folder the tool owns: a link at ``path`` is refused, not
    followed (O_NOFOLLOW), and the opened descriptor must be a regular file with one name (a hard link to a
    file elsewhere is refused too); O_TRUNC truncates only once those checks passed. Returns the descriptor;
    every refusal or OS error is a one-line UserError."""
    path = Path(path)
    try:
        fd = os.open(path, (flags & ~os.O_TRUNC) | _FLAGS | getattr(os, "O_NOFOLLOW", 0), mode)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise _link_error(path, what, fix) from None
        raise UserError(f"cannot open {what} {path}: {e.strerror}: {fix}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"{what} {path} is {_kind(info.st_mode)}, not a regular file: {fix}")
        if info.st_nlink > 1:
            raise UserError(f"{what} {path} has {info.st_nlink} names (a hard link to a file elsewhere?): {fix}")
        os.set_blocking(fd, True)
        if flags & os.O_TRUNC:
            os.ftruncate(fd, 0)
    except OSError as e:
        os.close(fd)
        raise UserError(f"cannot write {what} {path}: {e.strerror}: {fix}") from None
    except BaseException:
        os.close(fd)
        raise
    return fd


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


def read_regular(path: str | os.PathLike[str], limit: int, what: str, fix: str, *, follow: bool = True) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them.

    ``what`` names the file for messages ("data file", "parameter file"); ``fix`` says what to pass instead.
    The file is opened once (O_NONBLOCK, so a FIFO cannot block the open) and checked on that descriptor, so
    what is read is what was checked. ``follow=False`` (files inside a run or sweep folder): a link is refused."""
    path = Path(path)
    nofollow = 0 if follow else getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, os.O_RDONLY | _FLAGS | nofollow)
    except FileNotFoundError:
        raise UserError(f"{what} {path} not found: {fix}") from None
    except IsADirectoryError:
        raise UserError(f"{what} {path} is a directory: {fix}") from None
    except OSError as e:
        if e.errno == errno.ELOOP and nofollow:
            raise _link_error(path, what, fix) from None
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
        # ask for what fstat saw plus a byte (os.read allocates the size asked for), in 16 MiB steps at most
        while chunk := os.read(fd, min(MIB * 16, limit + 1 - total, max(info.st_size - total, 0) + 1)):
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
    The rename replaces a link at ``path`` itself, never its target; the temp file's name is ``temp_prefix``'s.

    Any OS failure (no such directory, no permission, disk full) is a UserError and leaves no temp file behind.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=".tmp", dir=path.parent)
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
