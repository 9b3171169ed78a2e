"""The program's entry point: parse, run the subcommand, one line and exit status 2 for what the user can fix, and a
quick exit."""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Sequence
from typing import TextIO

from microgpt_jax.cli.commands import COMMANDS, own_process_setup
from microgpt_jax.cli.parser import CLUSTER_FLAGS, build_parser, in_flags
from microgpt_jax.errors import UserError, printable


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, run the subcommand, turn UserError into one line and exit status 2.

    Run as the program (``argv`` None: the console script, ``python -m microgpt_jax``) it also owns the
    process's JAX setup: it turns on the persistent compilation cache (``compile_cache.enable_compile_cache``;
    ``MICROGPT_JAX_CACHE`` picks the directory or ``off``) and XLA's deterministic GPU ops
    (``xla_options.set_deterministic_gpu``); ``sweep``, and ``train --devices N``, first give the CPU backend a
    device per core (or N, shared out over a job's processes), see ``devices.set_cpu_devices``;
    ``train``/``sweep`` with ``--coordinator HOST:PORT --num-processes N --process-id I`` (or ``--distributed``)
    join a multi-process job, and leave it at exit. Called with an ``argv`` list (from Python, from tests) it
    leaves all of that to the caller.
    """
    args = build_parser().parse_args(argv)
    given = {k: v for k, v in vars(args).items() if k != "command"}
    joined = False
    if argv is None and hasattr(sys.stdout, "reconfigure"):  # a terminal that cannot show a character gets \x..
        sys.stdout.reconfigure(errors="backslashreplace")
    # as the program, every warning of the process is one line (threads that compile ahead included, to the end);
    # called with an argv (tests, Python), only for the call
    with contextlib.nullcontext() if argv is None else warnings.catch_warnings():
        warnings.showwarning = _one_line_warning
        try:
            joined = own_process_setup(given, argv is None, args.command)
            command = {k: v for k, v in given.items() if k not in CLUSTER_FLAGS}
            status = COMMANDS[args.command](command)
        except UserError as e:  # raised from or while handling a collective that failed: the job is broken too
            _leave_broken_job(e, joined)
            print(f"error: {printable(in_flags(str(e)))}", file=sys.stderr)
            status = 2
        except Exception as e:  # JAX's runtime error in a job that lost a process: one line, and leave at once
            _leave_broken_job(e, joined)
            raise
        except KeyboardInterrupt:
            print("interrupted (Ctrl-C): nothing half-written is left; a run stopped in training can be resumed "
                  "if it wrote a checkpoint", file=sys.stderr)  # fmt: skip
            status = 130
    if joined:
        _leave_job()
    if argv is None:
        _exit_now(status)
    return status


FULL_EXIT_ENV = "MICROGPT_JAX_FULL_EXIT"  # set (not "0"): the program ends with Python's own exit


_WATCHERS = ("cProfile", "profile", "coverage", "pdb", "pyinstrument", "line_profiler")


def _exit_now(status: int) -> None:
    """End the program without the interpreter's teardown of JAX's modules and runtime (a noticeable part of a
    warm ``train``: docs/performance.md), where nothing can be lost by it: no thread but the main one is still
    running (the files a command writes are closed and renamed into place before it returns), the exit handlers
    run and the standard streams are flushed. It returns, and Python exits as usual, without JAX loaded, under a
    profiler, debugger or coverage tool (they write their results at exit), with $MICROGPT_JAX_FULL_EXIT set,
    or when flushing a stream fails other than by a closed pipe (a full disk must not exit 0)."""
    import atexit
    import os
    import threading

    if "jax" not in sys.modules or not hasattr(atexit, "_run_exitfuncs"):
        return
    if os.environ.get(FULL_EXIT_ENV, "0") != "0" or sys.gettrace() or sys.getprofile():
        return
    if any(name in sys.modules for name in _WATCHERS):
        return
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:  # | head: what Python's own exit would also drop
            pass
        except (OSError, ValueError):
            return
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # an exit handler's output to a closed pipe
            pass
    os._exit(status)


def _leave_job() -> None:
    """Leave a multi-process job. Every process gets here at the same point (errors, NaN stops and signals are
    agreed on by all of them), so the runtime's shutdown barrier passes at once; it waits at most
    ``distributed``'s shutdown timeout for a peer that is gone."""
    from microgpt_jax.runtime import distributed

    sys.stdout.flush()
    sys.stderr.flush()
    distributed.shutdown()


def _leave_broken_job(error: Exception, joined: bool) -> None:
    """A job whose collective failed (a process gone) is broken: one line and exit 2 now, without the shutdown
    barrier that would wait for the gone process and then abort with pages of logs. Other errors return."""
    if not joined:
        return
    from microgpt_jax.runtime import distributed

    message = distributed.job_failure(error)
    if message is not None:
        distributed.leave_now(printable(in_flags(message)))


def _one_line_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Warnings as one line each, ``warning: ...``, never the source line or a stack."""
    text = " ".join(str(message).split())
    print(f"warning: {category.__name__}: {text}", file=sys.stderr if file is None else file)
