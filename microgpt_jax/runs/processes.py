"""What keeps the processes of a multi-process job in step: work on process 0 only, errors raised on every process, one
agreement per chunk. Alone, each is a plain call."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar, cast

from microgpt_jax.errors import UserError
from microgpt_jax.runs import rundir
from microgpt_jax.runs.guard import RunGuard
from microgpt_jax.runs.rundir import CONFIG_FILE
from microgpt_jax.runs.spec import RunSpec
from microgpt_jax.runtime import distributed

T = TypeVar("T")


def on_lead(fn: Callable[[], T]) -> T | None:
    """``fn()`` on process 0 only (what writes the run directory); its UserError is raised on every process, so
    none goes on alone to wait in the next collective. Alone: ``fn()``."""
    if distributed.count() == 1:
        return fn()
    error, value = None, None
    if distributed.lead():
        try:
            value = fn()
        except distributed.AgreedError:
            raise
        except UserError as e:
            error = e
    distributed.check_together(error)
    return value


def together(fn: Callable[[], T]) -> T:
    """``fn()`` on every process (checks that can fail on one host alone: a missing file, a process left
    without a device); the first process's UserError is raised on all of them. Alone: ``fn()``."""
    if distributed.count() == 1:
        return fn()
    error, value = None, None
    try:
        value = fn()
    except distributed.AgreedError:  # every process raises it already
        raise
    except UserError as e:
        error = e
    distributed.check_together(error)
    return cast("T", value)  # fn() returned here: check_together raised otherwise


def agree_on_chunk(error: UserError | None, guard: RunGuard) -> None:
    """Once per chunk, every process of a job shares its news: an error on any process (this one's ``error``)
    is raised on all of them, and a signal any process received stops all of them at this chunk's end (the
    guard takes it as its own). Alone: ``error`` is raised, if any."""
    if distributed.count() == 1:
        if error is not None:
            raise error
        return
    agreed = distributed.agree(None if error is None else str(error), guard.received)
    failure = agreed.first_error()
    if failure is not None:
        raise failure
    if guard.signum is None and agreed.signum is not None:
        guard.signum = agreed.signum  # a signal any process received: every one stops at this chunk's end


def open_run_dir(open_it: Callable[[], rundir.RunDir], out: Path) -> rundir.RunDir:
    """The run directory, opened by process 0 (``open_it()``); the other processes get a stand-in that
    writes nothing. Every process learns whether process 0 could open it."""
    rd = on_lead(open_it)
    return rd if rd is not None else rundir.RunDir(out, out, [])


def read_spec(run_dir: str | os.PathLike[str]) -> RunSpec:
    """``RunSpec.read(run_dir)``; in a multi-process job process 0 reads config.json (the run directory is on
    its disk) and hands the text to the others, and every process gets the same spec or the same error."""
    if distributed.count() == 1:
        return RunSpec.read(run_dir)
    text = on_lead(lambda: RunSpec.config_text(run_dir))
    text = distributed.broadcast_bytes(None if text is None else text.encode()).decode()
    return RunSpec.parse(text, Path(run_dir) / CONFIG_FILE)
