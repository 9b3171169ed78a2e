"""distributed: the checks of the job flags, and the collectives' single-process behaviour (a process alone
needs no runtime: every helper is then the plain operation). The real multi-process jobs are in
test_multiprocess.py."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from microgpt_jax.cli.program import main
from microgpt_jax.errors import UserError
from microgpt_jax.runtime import devices, distributed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("127.0.0.1:1234", None, None), "go together"),
        ((None, 2, 0), "go together"),
        (("127.0.0.1:1234", 2, 2), "`process_id` 2 is outside 0..1"),
        (("localhost", 2, 0), "expected HOST:PORT"),
    ],
)
def test_bad_job_flags_are_one_line_before_jax_is_touched(args, message):
    with pytest.raises(UserError, match=message):
        distributed.initialize(*args)


def test_no_flags_and_no_auto_join_nothing():
    assert distributed.initialize() is False


def test_job_flags_from_python_are_refused_with_what_to_do(capsys):
    status = main(["sweep", "--out", "x", "--coordinator", "127.0.0.1:1", "--num-processes", "2",
                   "--process-id", "0"])  # fmt: skip
    assert status == 2
    assert "call microgpt_jax.runtime.distributed.initialize" in capsys.readouterr().err


def test_alone_every_helper_is_the_plain_operation():
    assert (distributed.count(), distributed.index(), distributed.lead()) == (1, 0, True)
    agreed = distributed.agree("boom", 15)
    assert agreed.errors == ["boom"] and agreed.signum == 15
    assert str(agreed.first_error()) == "boom"
    distributed.check_together(None)
    error = UserError("mine")
    with pytest.raises(UserError) as caught:
        distributed.check_together(error)
    assert caught.value is error  # alone, the error itself (not a copy)
    assert distributed.broadcast_bytes(b"abc") == b"abc"
    x = jnp.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(distributed.to_host(x), np.arange(6.0).reshape(2, 3))


def test_an_agreement_names_a_failing_process_other_than_0():
    agreed = distributed.Agreement([None, "no such file"], None)
    error = agreed.first_error()
    assert isinstance(error, distributed.AgreedError) and str(error) == "process 1: no such file"


def test_job_device_count_alone_is_device_count():
    assert devices.job_device_count(None, 4) == devices.device_count(None, 4)
    assert devices.spans_processes(1)


def test_a_jax_runtime_error_in_a_job_is_one_line_with_what_to_do(monkeypatch) -> None:
    class JaxRuntimeError(RuntimeError):  # what a collective whose peer is gone raises (jax.errors')
        pass

    gone = JaxRuntimeError("UNKNOWN: Gloo all-reduce failed: Connection reset by peer\n  pages of detail")
    assert distributed.job_failure(gone) is None  # alone: not a job's failure
    monkeypatch.setitem(distributed._STATE, "initialized", True)
    monkeypatch.setitem(distributed._STATE, "hint", "restart with --resume r")
    message = distributed.job_failure(gone)
    assert message == ("the multi-process job failed (a process gone?): UNKNOWN: Gloo all-reduce failed: "
                       "Connection reset by peer; restart with --resume r")  # fmt: skip
    assert distributed.job_failure(ValueError("mine")) is None
    try:
        try:
            raise gone
        except JaxRuntimeError:
            raise OSError("cleaning up after it failed too")  # noqa: B904 (raised while handling the first)
    except OSError as e:
        assert distributed.job_failure(e) == message


def test_leave_now_is_one_line_and_the_status_at_once() -> None:
    import subprocess
    import sys

    code = "from microgpt_jax.runtime import distributed; print('out'); distributed.leave_now('gone', 2); print('no')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (2, "out\n", "error: gone\n")
