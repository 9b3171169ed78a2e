"""Keeping a multi-process job in step: alone every helper is the plain call; in a job (simulated here: two
processes whose agreement is faked) an error on any process is raised on all, and a signal stops all."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from microgpt_jax.config import GPTConfig, TrainConfig
from microgpt_jax.errors import UserError
from microgpt_jax.runs import processes
from microgpt_jax.runs.guard import RunGuard
from microgpt_jax.runs.rundir import RunDir
from microgpt_jax.runs.spec import RunSpec
from microgpt_jax.runtime import distributed


def guard(tmp_path: Path) -> RunGuard:
    return RunGuard(tmp_path, GPTConfig(vocab_size=4), TrainConfig(steps=10), "abc", None, "0" * 64)


def fail(message: str):
    def fn():
        raise UserError(message)

    return fn


def test_alone_every_helper_is_the_plain_call(tmp_path: Path) -> None:
    assert distributed.count() == 1
    assert processes.on_lead(lambda: 5) == 5 and processes.together(lambda: 6) == 6
    with pytest.raises(UserError, match=r"^bad$") as e:
        processes.on_lead(fail("bad"))
    assert not isinstance(e.value, distributed.AgreedError)  # the error itself, not an agreement's
    with pytest.raises(UserError, match=r"^worse$"):
        processes.together(fail("worse"))
    g = guard(tmp_path)
    processes.agree_on_chunk(None, g)
    with pytest.raises(UserError, match=r"^chunk$"):
        processes.agree_on_chunk(UserError("chunk"), g)
    assert g.signum is None
    opened = object()
    assert processes.open_run_dir(lambda: opened, tmp_path) is opened
    with pytest.raises(UserError, match="not a run directory"):
        processes.read_spec(tmp_path)


@pytest.fixture
def job(monkeypatch):
    """This process in a job of two; ``job.other`` is what the other process reports at the next agreement."""

    class Job:
        lead = True
        other: tuple[str | None, int | None] = (None, None)
        agreements = 0

    def agree(error=None, signum=None):
        Job.agreements += 1
        mine, theirs = (error, Job.other[0]) if Job.lead else (Job.other[0], error)
        return distributed.Agreement([mine, theirs], signum if signum is not None else Job.other[1])

    monkeypatch.setattr(distributed, "count", lambda: 2)
    monkeypatch.setattr(distributed, "lead", lambda: Job.lead)
    monkeypatch.setattr(distributed, "agree", agree)
    return Job


def test_on_lead_runs_on_process_0_only_and_its_error_reaches_every_process(job, tmp_path: Path) -> None:
    assert processes.on_lead(lambda: 5) == 5 and job.agreements == 1
    with pytest.raises(distributed.AgreedError, match=r"^bad$"):
        processes.on_lead(fail("bad"))
    job.lead = False
    called = []
    assert processes.on_lead(lambda: called.append(1)) is None and called == []
    job.other = ("the lead failed", None)  # process 0's error, raised here too
    with pytest.raises(distributed.AgreedError, match=r"^the lead failed$"):
        processes.on_lead(lambda: called.append(1))
    # the other processes get a run directory that writes nothing
    job.other = (None, None)
    stand_in = processes.open_run_dir(lambda: called.append(1), tmp_path / "run")
    assert isinstance(stand_in, RunDir) and called == [] and not (tmp_path / "run").exists()


def test_together_raises_the_first_failing_processs_error_everywhere(job) -> None:
    assert processes.together(lambda: 6) == 6
    job.other = ("no such file", None)
    with pytest.raises(distributed.AgreedError, match=r"^process 1: no such file$"):
        processes.together(lambda: 6)
    with pytest.raises(distributed.AgreedError, match=r"^mine$"):  # process 0's comes first
        processes.together(fail("mine"))


def test_a_chunk_agreement_shares_errors_and_signals(job, tmp_path: Path) -> None:
    g = guard(tmp_path)
    processes.agree_on_chunk(None, g)
    assert g.signum is None
    job.other = (None, signal.SIGTERM)  # the other process was sent SIGTERM: this one stops at the same step
    processes.agree_on_chunk(None, g)
    assert g.signum == signal.SIGTERM
    job.other = ("nan at step 7", None)
    with pytest.raises(distributed.AgreedError, match=r"^process 1: nan at step 7$"):
        processes.agree_on_chunk(None, g)


def test_read_spec_in_a_job_is_process_0s_file(job, monkeypatch, tmp_path: Path) -> None:
    from runs.test_spec import make_spec

    spec = make_spec()
    (tmp_path / "config.json").write_text(spec.to_json())
    monkeypatch.setattr(distributed, "broadcast_bytes", lambda data: data)
    assert processes.read_spec(tmp_path) == spec == RunSpec.read(tmp_path)
