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
