"""Which job serves a coordinator port, asked before joining it.

JAX's coordination service cannot be asked anything without joining it, and joining it as a process id the job
already has (a second job's process 1 started with the first job's ``--coordinator``) makes the service abort the
whole running job. So process 0 also answers on the port beside the coordinator's (PORT + 1), and every other
process asks there first, and joins only when process 0 says yes:

- the question, one line: ``microgpt-jax-job 1 IDENTITY PROCESS_ID``, IDENTITY the SHA-256 of the job's own
  command (``identity``: every process of a job runs the same command, but for its process id);
- the answer, one line: ``ok`` (the same job, and no process has asked with that id before), ``other`` (another
  command: another job) or ``taken`` (that id has joined already).

Process 0 binds PORT + 1 itself, so a second job's process 0 is refused there too. A joining process waits for
process 0 to answer (it may start later) at most the job's start-up timeout.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import socket
import threading
import time

from microgpt_jax.errors import UserError

PROTOCOL = b"microgpt-jax-job 1"
_LINE = 256  # the most a question or an answer may take
_ANSWER_WAIT = 5.0  # seconds a joining process waits for process 0's answer once connected


def identity(num_processes: int, command: str) -> str:
    """What every process of one job shares: the process count and the command (without the process id)."""
    return hashlib.sha256(f"{num_processes}\n{command}".encode()).hexdigest()


def beacon_port(coordinator: str, port: int) -> int:
    """PORT + 1, where process 0 answers which job it serves (so the coordinator's port cannot be 65535)."""
    if port == 65535:
        raise UserError(
            f"`coordinator` {coordinator}: the port must be at most 65534 (process 0 also answers on the next one)"
        )
    return port + 1


class Beacon:
    """Process 0's answers on ``port`` for the job ``job`` (its ``identity``), in a daemon thread, until ``close``
    or the process exits."""

    def __init__(self, coordinator: str, port: int, job: str) -> None:
        self.job = job
        self.joined = {0}
        try:
            if socket.has_dualstack_ipv6():
                self.server = socket.create_server(("", port), family=socket.AF_INET6, dualstack_ipv6=True)
            else:
                self.server = socket.create_server(("", port))
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise UserError(f"`coordinator` {coordinator}: cannot listen on port {port}: {e.strerror}") from None
            raise UserError(
                f"`coordinator` {coordinator}: port {port} (where process 0 says which job it serves) is in use on "
                "this host (another job's?): pick a free port, the same for every process of this job"
            ) from None
        threading.Thread(target=self._serve, name="microgpt-jax-job-beacon", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:  # closed
                return
            with conn, contextlib.suppress(OSError):
                conn.settimeout(2.0)  # a silent client holds no one else up for long
                conn.sendall(self.answer(_read_line(conn)) + b"\n")

    def answer(self, question: bytes) -> bytes:
        """The answer to one question (``ok`` admits the asking process id, once)."""
        parts = question.split(b" ")
        if len(parts) != 4 or b" ".join(parts[:2]) != PROTOCOL or not parts[3].isdigit():
            return b"other"
        if parts[2].decode("ascii", "replace") != self.job:
            return b"other"
        process_id = int(parts[3])
        if process_id in self.joined:
            return b"taken"
        self.joined.add(process_id)
        return b"ok"

    def close(self) -> None:
        self.server.close()


def ask(coordinator: str, host: str, port: int, job: str, process_id: int, timeout: float) -> None:
    """Join only the job ``job``: ask process 0 on ``host``:``port`` (waiting for it up to ``timeout`` seconds)
    and return when it says ``ok``; any other answer, or none, is a one-line UserError."""
    deadline = time.monotonic() + timeout
    question = b"%s %s %d\n" % (PROTOCOL, job.encode(), process_id)
    while True:
        try:
            with socket.create_connection((host.strip("[]"), port), timeout=min(_ANSWER_WAIT, timeout)) as conn:
                conn.settimeout(_ANSWER_WAIT)
                conn.sendall(question)
                reply = _read_line(conn)
            break
        except OSError:  # not listening yet (process 0 starts later), or not reachable yet
            if time.monotonic() >= deadline:
                raise UserError(
                    f"`coordinator` {coordinator}: no process 0 answered on port {port} within {timeout:g} s: start "
                    "process 0 of this job with the same `coordinator`"
                ) from None
            time.sleep(0.2)
    if reply == b"ok":
        return
    if reply == b"taken":
        raise UserError(
            f"`coordinator` {coordinator}: the job there has a process {process_id} already (another job's "
            "coordinator, or this process started twice?): pick a free port for a new job"
        )
    if reply == b"other":
        raise UserError(
            f"`coordinator` {coordinator}: the job there runs another command (another job's coordinator?): every "
            "process of a job runs the same command, but for its `process_id`; pick a free port for a new job"
        )
    raise UserError(f"`coordinator` {coordinator}: what answers on port {port} is not a microgpt-jax job's process 0")


def _read_line(conn: socket.socket) -> bytes:
    """One line from ``conn`` (without its newline), at most _LINE bytes; what came when it closes or times out."""
    data = b""
    with contextlib.suppress(OSError):
        while b"\n" not in data and len(data) < _LINE:
            chunk = conn.recv(_LINE - len(data))
            if not chunk:
                break
            data += chunk
    return data.split(b"\n", 1)[0].strip()
