"""job_beacon: process 0 says which job it serves, before anyone joins it; a process of another job, or a second
process with an id the job has, is refused in one line, and the job never hears of it."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from microgpt_jax.errors import UserError
from microgpt_jax.runtime import job_beacon


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_process_0_admits_each_id_of_its_own_job_once() -> None:
    port, job = _free_port(), job_beacon.identity(2, "train --out a")
    beacon = job_beacon.Beacon("h:1", port, job)
    try:
        job_beacon.ask("h:1", "127.0.0.1", port, job, 1, timeout=5)  # ok: returns
        with pytest.raises(UserError, match="has a process 1 already"):
            job_beacon.ask("h:1", "127.0.0.1", port, job, 1, timeout=5)
        with pytest.raises(UserError, match="runs another command"):
            job_beacon.ask("h:1", "127.0.0.1", port, job_beacon.identity(2, "train --out b"), 2, timeout=5)
        with pytest.raises(UserError, match="runs another command"):  # another process count: another job
            job_beacon.ask("h:1", "127.0.0.1", port, job_beacon.identity(3, "train --out a"), 2, timeout=5)
        with pytest.raises(UserError, match="has a process 0 already"):
            job_beacon.ask("h:1", "127.0.0.1", port, job, 0, timeout=5)
        with pytest.raises(UserError, match=f"port {port} .* is in use"):  # a second job's process 0
            job_beacon.Beacon("h:1", port, job)
    finally:
        beacon.close()


@pytest.mark.parametrize("question", [b"", b"GET / HTTP/1.1", b"microgpt-jax-job 1 abc x", b"\xff" * 300])
def test_a_question_not_of_the_protocol_is_told_other(question: bytes) -> None:
    beacon = job_beacon.Beacon("h:1", _free_port(), "abc")
    try:
        assert beacon.answer(question) == b"other" and beacon.joined == {0}
    finally:
        beacon.close()


def test_something_else_on_the_port_is_not_joined() -> None:
    with socket.create_server(("127.0.0.1", 0)) as other:  # another program: answers anything but the protocol
        port = other.getsockname()[1]

        def reply() -> None:
            conn, _ = other.accept()
            with conn:
                conn.recv(100)
                conn.sendall(b"\x00\x00\x12\x04 not ours\n")

        threading.Thread(target=reply, daemon=True).start()
        with pytest.raises(UserError, match="is not a microgpt-jax job's process 0"):
            job_beacon.ask("h:1", "127.0.0.1", port, "abc", 1, timeout=5)


def test_no_process_0_is_one_line_after_the_timeout_and_a_late_one_is_waited_for() -> None:
    port = _free_port()
    t0 = time.monotonic()
    with pytest.raises(UserError, match=f"no process 0 answered on port {port} within 0.5 s"):
        job_beacon.ask("h:1", "127.0.0.1", port, "abc", 1, timeout=0.5)
    assert time.monotonic() - t0 < 5
    late: list[job_beacon.Beacon] = []
    timer = threading.Timer(0.5, lambda: late.append(job_beacon.Beacon("h:1", port, "abc")))
    timer.start()
    try:
        job_beacon.ask("h:1", "127.0.0.1", port, "abc", 1, timeout=10)  # process 0 started after this one
    finally:
        timer.join()
        late[0].close()


def test_the_coordinator_port_leaves_room_for_the_next_one() -> None:
    assert job_beacon.beacon_port("h:5555", 5555) == 5556
    with pytest.raises(UserError, match="at most 65534"):
        job_beacon.beacon_port("h:65535", 65535)
