"""JAX's persistent compilation cache for the ``microgpt-jax`` program: compiled programs saved on disk, so a
second run with the same shapes skips XLA's compile.

The program turns it on; the library never does (importing it changes no JAX setting). Where it lives, from
``enable_compile_cache``'s ``setting`` or else ``$MICROGPT_JAX_CACHE``:

- ``off``, ``0``, ``no``, ``false``, ``none`` (any case) or the empty string: no cache;
- a directory path (``~`` expanded): that directory;
- unset: ``$XDG_CACHE_HOME/microgpt_jax``, else ``~/.cache/microgpt_jax``.

The subdirectory ``executables`` keeps each program whole (``executables.py``). The directory is created
private to the user (0700); one another user could write or swap is refused with one warning line and the run
goes on without a cache (why, and what is promised: docs/security.md).

A cache must never fail a run: the first of JAX's cache read/write warnings becomes a single ``warning:`` line
on stderr and the rest are silenced, whatever the warning filters (even ``-W error``);
``jax_raise_persistent_cache_errors`` is off and XLA's own GPU side caches
(``jax_persistent_cache_enable_xla_caches``), whose failures abort a GPU compile, are turned off.
"""

from __future__ import annotations

import os
import re
import stat
import sys
import warnings
from pathlib import Path
from typing import TextIO

import jax

from microgpt_jax.runtime import executables

CACHE_ENV = "MICROGPT_JAX_CACHE"
OFF = frozenset({"", "off", "0", "no", "false", "none"})
EXECUTABLES = "executables"  # the subdirectory of whole compiled programs (executables.py)

# the warnings JAX's compiler emits when a persistent-cache read or write fails (jax/_src/compiler.py)
_JAX_CACHE_WARNING = re.compile(r"Error (reading|writing) persistent compilation cache entry")


def cache_dir(setting: str | None = None) -> Path | None:
    """The cache directory a setting names (default ``$MICROGPT_JAX_CACHE``), or None when it turns the cache off.

    Resolution only: nothing is created or checked. An unset setting gives ``$XDG_CACHE_HOME/microgpt_jax``
    (when that is an absolute path, as the XDG spec requires) or ``~/.cache/microgpt_jax``."""
    if setting is None:
        setting = os.environ.get(CACHE_ENV)
    if setting is not None:
        if setting.strip().lower() in OFF:
            return None
        return Path(setting).expanduser().absolute()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "microgpt_jax"


def enable_compile_cache(setting: str | None = None) -> Path | None:
    """Turn on JAX's persistent compilation cache for this process; return the directory in use, or None.

    ``setting`` (default ``$MICROGPT_JAX_CACHE``) is resolved by ``cache_dir``. A directory that fails the
    module's checks is refused with one ``warning:`` line on stderr (None is returned, JAX's settings are left
    as they were and no whole program is kept). Sets JAX config values only; no backend is started. Call it
    before the first compilation: a later call does not move a cache JAX has already opened. Whole programs are
    kept in its ``executables`` subdirectory while it is on (one that fails the same checks: a warning line, and
    JAX's cache alone)."""
    executables.enable(None)
    try:
        path = cache_dir(setting)
    except RuntimeError as e:  # Path.home() without $HOME or a passwd entry
        _warn(f"no compilation cache: cannot find the home directory ({e}); set {CACHE_ENV}=DIR or off")
        return None
    if path is None:
        return None
    real, problem = _prepare(path)
    if real is None:
        _warn(f"not using the compilation cache {path}: {problem}")
        return None
    path = real
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_enable_compilation_cache", True)
    # every program is worth keeping: microgpt's compile in seconds, below JAX's 1 s default, and are small
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    # cache errors stay warnings (JAX's default, which $JAX_RAISE_PERSISTENT_CACHE_ERRORS could change)
    jax.config.update("jax_raise_persistent_cache_errors", False)
    # XLA's GPU autotune cache under the same directory is written by XLA itself, and a failed write there
    # fails the compile: off, so a read-only or full cache directory cannot stop a GPU run either
    jax.config.update("jax_persistent_cache_enable_xla_caches", None)
    _one_line_cache_warnings(path)
    store, problem = _prepare(path / EXECUTABLES)
    if store is not None:
        executables.enable(store)
    elif os.access(path, os.W_OK):  # JAX's cache stays on; whole programs are not kept
        _warn(f"not keeping whole programs in {path / EXECUTABLES}: {problem}")
    # (a read-only cache says so once, at JAX's first failed write: not a second line here)
    return path


def _safe_above(st: os.stat_result) -> bool:
    """Whether a directory above the cache is safe: root's or ours, and writable by no one else unless sticky
    (as /tmp: there others may not rename or remove what is ours)."""
    mine = st.st_uid in (0, os.geteuid())
    return mine and (not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) or bool(st.st_mode & stat.S_ISVTX))


def _open_or_make(name: str, parent: int, flags: int) -> int:
    """Open the directory ``name`` in ``parent`` (a descriptor), creating it 0700 if missing."""
    try:
        return os.open(name, flags, dir_fd=parent)
    except FileNotFoundError:
        try:
            os.mkdir(name, 0o700, dir_fd=parent)
        except FileExistsError:  # made meanwhile: checked like any other
            pass
        return os.open(name, flags, dir_fd=parent)


def _prepare(path: Path) -> tuple[Path | None, str | None]:
    """(the directory to use, None) or (None, the reason it must not be used). ``path`` is resolved once
    (links in it followed), then walked from / through descriptors without following any link (O_NOFOLLOW):
    missing directories are created 0700 whatever the umask, every directory above must be root's or ours and
    writable by no one else (unless sticky), and the cache itself ours and writable by no one else. So no other
    user can swap a directory of the resolved path for theirs, during the run or after."""
    real = Path(os.path.realpath(path))
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open("/", flags)
    except OSError as e:
        return None, f"cannot open / ({e.strerror})"
    try:
        parts = real.parts[1:]
        for i, name in enumerate(parts):
            st = os.fstat(fd)
            if not _safe_above(st):
                above = Path("/", *parts[:i])
                return None, (f"{above} above it can be changed by another user (its owner or permissions), who "
                              "could swap in a directory of theirs and make this program run their code")  # fmt: skip
            try:
                child = _open_or_make(name, fd, flags)
            except OSError as e:  # a file, or a link swapped in since the path was resolved
                return None, f"cannot create it ({e.strerror or e})"
            os.close(fd)
            fd = child
        st = os.fstat(fd)
    except OSError as e:
        return None, f"cannot create it ({e.strerror or e})"
    finally:
        os.close(fd)
    if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        return None, "it is owned by another user, who could make this program run their code"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return None, (f"it is writable by group or others, who could make this program run their code "
                      f"(chmod 700 {real})")  # fmt: skip
    return real, None


def _warn(message: str) -> None:
    """One ``warning:`` line on stderr, as the CLI prints its messages."""
    print(f"warning: {message}", file=sys.stderr)


def _one_line_cache_warnings(path: Path) -> None:
    """Show JAX's cache read/write failure warnings as one line for the whole process (the first), none after.

    A filter placed first lets these warnings through whatever the other filters say (so ``-W error`` cannot
    turn a cache hiccup into a failed run), and a wrapper around ``warnings.showwarning`` prints the first as
    one line and drops the rest. Installed once per process; later calls only update the directory named."""
    warnings.filterwarnings("always", message=_JAX_CACHE_WARNING.pattern, category=UserWarning)
    current = warnings.showwarning
    cache = getattr(current, "_microgpt_jax_cache", None)
    if cache is not None:
        cache["path"] = path
        return
    state = {"path": path, "shown": False}

    def showwarning(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        text = str(message)
        match = _JAX_CACHE_WARNING.match(text)
        if not (match and issubclass(category, UserWarning)):
            current(message, category, filename, lineno, file, line)
            return
        if not state["shown"]:
            state["shown"] = True
            detail = text.split(": ", 1)[-1].splitlines()[0] if ": " in text else text
            if match.group(1) == "writing":
                what, then = "save a compiled program", "continuing without saving it"
            else:  # e.g. an entry cut short by a run killed while writing it
                what, then = "read a compiled program", f"compiled it again; deleting {state['path']} clears the cache"
            _warn(
                f"compilation cache {state['path']}: could not {what} ({detail}); {then} "
                f"(further cache errors are not shown; {CACHE_ENV}=off turns the cache off)"
            )

    showwarning.__dict__["_microgpt_jax_cache"] = state  # a function attribute (mypy has none)
    warnings.showwarning = showwarning
