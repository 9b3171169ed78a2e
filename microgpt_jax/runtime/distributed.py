"""Multi-process jobs: joining JAX's distributed runtime, and the few collectives the host side needs.

A job of N processes (hosts, or processes on one host) runs the same command in each; the meshes span every
process's devices (``jax.devices()``), every process computes the same values, and only process 0 writes
files and prints progress (``lead``). What happens on one process alone (an error, a signal) is made
everyone's by ``agree``: a tiny all-gather each process calls at the same point (once before training, once
per chunk), so every process stops at the same step with the same message instead of waiting in the next
collective until a timeout.

- ``initialize``: ``jax.distributed.initialize`` from a coordinator's address, the process count and this
  process's index, or with no arguments where JAX finds the cluster itself (SLURM, TPU pods,
  ``$JAX_COORDINATOR_ADDRESS``...); ``shutdown`` at exit. With a coordinator, a process joins only the job
  process 0 says it serves (``job_beacon``): another job's process is refused before it can break this one.
- ``job_failure`` / ``leave_now``: JAX's runtime error in a job (a collective whose peer is gone) as one
  line, and an exit that skips the shutdown barrier such a job would fail.
- ``lead`` / ``count`` / ``index``: process 0? how many processes? which one?
- ``agree``: every process's local (error, signal) status, gathered; ``first_error`` the one to raise.
- ``to_host``: a global array's whole value on every process (``process_allgather`` when it spans processes).
- ``put``: a global array from a host value that is the same on every process.
- ``broadcast_bytes``: bytes read by process 0 (a config, a checkpoint) handed to every process.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn, TypedDict

import numpy as np
from numpy.typing import ArrayLike

from microgpt_jax.errors import UserError
from microgpt_jax.runtime import job_beacon

if TYPE_CHECKING:
    import jax
    from jax.sharding import Sharding

MESSAGE_BYTES = 2048  # an error message's room in ``agree`` (longer ones are cut)
_STATE: dict[str, object] = {"initialized": False, "beacon": None, "hint": ""}


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    auto: bool = False,
    command: str = "",
    hint: str = "",
) -> bool:
    """Join a multi-process job before any JAX computation: with ``coordinator`` (HOST:PORT of process 0),
    ``num_processes`` and ``process_id`` given, or none of them and ``auto`` (JAX reads the cluster from its
    environment: SLURM, TPU pods, Open MPI, $JAX_COORDINATOR_ADDRESS ...). Returns whether it joined.

    With a ``coordinator``, process 0 answers on the next port which job it serves (``command``: what every
    process of the job runs, but for its id), and the others join only that job (``job_beacon``): a process of
    another job is refused before it can disturb this one. ``hint`` ends ``job_failure``'s line: what to do
    when a process of the job is gone."""
    given = [coordinator is not None, num_processes is not None, process_id is not None]
    if not any(given) and not auto:
        return False
    if any(given) and not all(given):
        raise UserError("`coordinator`, `num_processes` and `process_id` go together: give all three (or none)")
    if all(given):
        assert coordinator is not None and num_processes is not None and process_id is not None  # all(given)
        _meet(coordinator, num_processes, process_id, command)
    timeouts = _timeouts()
    _STATE["hint"] = hint
    import jax

    try:
        if all(given):
            jax.distributed.initialize(coordinator, num_processes, process_id, **timeouts)
        else:
            jax.distributed.initialize(**timeouts)
    except (RuntimeError, ValueError) as e:
        text = " ".join(str(e).split())
        raise UserError(f"cannot join the distributed job: {text[:400]}") from None
    _STATE["initialized"] = True
    return True


def _meet(coordinator: str, num_processes: int, process_id: int, command: str) -> None:
    """Before JAX joins: the job flags checked, and process 0 answering which job it serves (``job_beacon``)
    or this process admitted by it."""
    if not 0 <= process_id < num_processes:
        raise UserError(f"`process_id` {process_id} is outside 0..{num_processes - 1} (`num_processes`)")
    port = coordinator_port(coordinator)
    beacon = job_beacon.beacon_port(coordinator, port)
    timeout = _timeouts()["initialization_timeout"]
    job = job_beacon.identity(num_processes, command)
    if process_id == 0:
        check_port_free(coordinator, port)
        _STATE["beacon"] = job_beacon.Beacon(coordinator, beacon, job)
    else:
        job_beacon.ask(coordinator, coordinator.rpartition(":")[0], beacon, job, process_id, timeout)


TIMEOUT_ENV = "MICROGPT_JAX_DISTRIBUTED_TIMEOUT"


class _Timeouts(TypedDict):
    initialization_timeout: int
    heartbeat_timeout_seconds: int
    shutdown_timeout_seconds: int


def _timeouts() -> _Timeouts:
    """Short waits for a job that failed to form or lost a process (JAX's defaults are minutes): $TIMEOUT_ENV
    seconds (default 120), a whole number >= 1 (a negative one would wait forever: a UserError). A process
    that stops answering (no heartbeat) is gone after as long."""
    text = os.environ.get(TIMEOUT_ENV, "120")
    try:
        seconds = int(text)
    except ValueError:
        seconds = 0
    if seconds < 1:
        raise UserError(f"${TIMEOUT_ENV} is {text!r}: set it to a whole number of seconds >= 1 (default 120)")
    return {
        "initialization_timeout": seconds,
        "heartbeat_timeout_seconds": seconds,
        "shutdown_timeout_seconds": min(30, seconds),
    }


def coordinator_port(coordinator: str) -> int:
    """The port of ``coordinator`` (HOST:PORT, the host possibly ``[v6 address]``): a whole number in 1..65535,
    else a one-line UserError (JAX would crash on ``:99999`` or ``:abc``)."""
    host, sep, port = coordinator.rpartition(":")
    if not sep or not host.strip("[]"):
        raise UserError(f"`coordinator` {coordinator}: expected HOST:PORT (process 0's address)")
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise UserError(f"`coordinator` {coordinator}: the port must be a number from 1 to 65535")
    return int(port)


def check_port_free(coordinator: str, port: int) -> None:
    """Process 0 serves the job on ``port``: refuse, before joining, a port something already listens on (another
    job's coordinator, which a second job sharing it would disrupt). Bound and released at once."""
    import socket

    for family, address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        try:
            probe = socket.socket(family, socket.SOCK_STREAM)
        except OSError:  # no IPv6 here
            continue
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a closed job's TIME_WAIT is no holder
            probe.bind((address, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise UserError(
                    f"`coordinator` {coordinator}: port {port} is in use on this host (another job's coordinator?): "
                    "pick a free port, the same for every process of this job"
                ) from None
        finally:
            probe.close()


def job_failure(error: BaseException) -> str | None:
    """The one line for JAX's runtime error in a job of several processes (a collective whose peer is gone,
    most often: the job is broken, ``leave_now`` with it): the first line of JAX's message, cut, and what to do
    (``initialize``'s ``hint``). None for any other error (one that is not raised from or while handling one),
    or alone."""
    seen: BaseException | None = error
    while seen is not None and type(seen).__name__ not in ("JaxRuntimeError", "XlaRuntimeError"):
        seen = seen.__cause__ or seen.__context__  # raised while handling it, or from it
    if not _STATE["initialized"] or seen is None:
        return None
    error = seen
    lines = str(error).strip().splitlines() or ["no detail"]
    said = " ".join(lines[0].split())[:300]
    hint = _STATE["hint"] or "restart every process of the job"
    return f"the multi-process job failed (a process gone?): {said}; {hint}"


def leave_now(message: str, status: int = 2) -> NoReturn:
    """``error: message`` and exit with ``status`` at once: no shutdown barrier (it would wait for the gone
    process, then abort with pages of C++ logs), no exit handlers, no interpreter teardown (JAX's runtime
    threads may be stuck in a collective)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    with contextlib.suppress(OSError, ValueError):
        print(f"error: {message}", file=sys.stderr, flush=True)
    os._exit(status)


def shutdown() -> None:
    """Leave the job (a no-op when ``initialize`` did not join one)."""
    if not _STATE["initialized"]:
        return
    import jax

    _STATE["initialized"] = False
    jax.distributed.shutdown()


def count() -> int:
    """How many processes the job has (1 without the distributed runtime)."""
    import jax

    return jax.process_count()


def index() -> int:
    """This process's index in the job (0 alone)."""
    import jax

    return jax.process_index()


def lead() -> bool:
    """Whether this process writes files and prints: process 0."""
    return index() == 0


class AgreedError(UserError):
    """A UserError every process of the job raises at the same point (``check_together``, ``agree``): the
    callers up the stack raise it on without agreeing again."""


@dataclass(frozen=True)
class Agreement:
    """Every process's status at one point: ``errors[i]`` process i's message (or None), and the first signal
    any process received (or None)."""

    errors: list[str | None]
    signum: int | None

    def first_error(self) -> UserError | None:
        """The error every process raises: the first failing process's message (naming it when not 0)."""
        for i, message in enumerate(self.errors):
            if message is not None:
                return AgreedError(message if i == 0 else f"process {i}: {message}")
        return None


def agree(error: str | None = None, signum: int | None = None) -> Agreement:
    """Gather each process's (error message, signal) at the same point of the program; every process must call
    it the same number of times. Alone, it only wraps its arguments (no collective)."""
    if count() == 1:
        return Agreement([error], signum)
    from jax.experimental import multihost_utils

    raw = (error or "").encode("utf-8")[:MESSAGE_BYTES]
    row = np.zeros(MESSAGE_BYTES + 3, np.int32)
    row[0], row[1], row[2] = error is not None, signum or 0, len(raw)
    row[3 : 3 + len(raw)] = np.frombuffer(raw, np.uint8)
    rows = np.asarray(multihost_utils.process_allgather(row))
    errors = [bytes(r[3 : 3 + r[2]].astype(np.uint8)).decode("utf-8", "replace") if r[0] else None for r in rows]
    signals = [int(r[1]) for r in rows if r[1]]
    return Agreement(errors, signals[0] if signals else None)


def check_together(error: BaseException | None) -> None:
    """Raise on every process when any process failed (``error``: this process's UserError, or None). Alone,
    raise ``error`` itself when there is one."""
    if count() == 1:
        if error is not None:
            raise error
        return
    agreed = agree(None if error is None else str(error))
    failure = agreed.first_error()
    if failure is not None:
        raise failure


def to_host(x: ArrayLike) -> np.ndarray:
    """The whole value of a (possibly multi-process) array on this process."""
    if getattr(x, "is_fully_addressable", True) or getattr(x, "is_fully_replicated", False):
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def put(x: ArrayLike, sharding: Sharding) -> jax.Array:
    """A global array of ``sharding`` from a host value that is the same on every process (each process fills
    its own devices' shards; one with none still names the dtype)."""
    import jax

    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx], dtype=x.dtype)


def broadcast_bytes(data: bytes | None) -> bytes:
    """Process 0's ``data`` on every process (others pass anything, e.g. None). Alone: ``data`` itself."""
    if count() == 1:
        return data or b""
    from jax.experimental import multihost_utils

    n = int(multihost_utils.broadcast_one_to_all(np.asarray(len(data or b""), np.int64)))
    if n == 0:
        return b""
    buf = np.zeros(n, np.uint8)
    if lead():
        buf[:] = np.frombuffer(data or b"", np.uint8)
    return bytes(np.asarray(multihost_utils.broadcast_one_to_all(buf)).astype(np.uint8))
