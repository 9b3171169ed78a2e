"""Real multi-process jobs: two processes on 127.0.0.1 joined by ``--coordinator/--num-processes/--process-id``
(JAX's distributed runtime, gloo collectives on CPU), one CPU device each, each in its own working directory
as hosts without a shared disk would be. Their results must equal one process with two devices
(XLA_FLAGS=--xla_force_host_platform_device_count=2) bit for bit, only process 0 may write or print, a device
choice that leaves a process out is one line on both, and SIGTERM to one process stops both at one checkpoint
from which a two-process ``--resume`` ends where the uninterrupted run does."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "data" / "reference" / "docs_first1000.txt"
WAIT = 120  # seconds any one job may take before the test fails (instead of hanging)
DATA = ["--data", str(CORPUS), "--val-size", "100"]
MODEL = ["--n-layer", "1", "--n-embd", "8", "--n-head", "2", "--block-size", "8"]
TRAIN = ["train", "--out", "run", *DATA, *MODEL, "--batch-size", "2", "--steps", "2"]
SWEEP = ["sweep", "--out", "sw", *DATA, *MODEL, "--steps", "6", "--lr", "0.01,0.1,0.3", "--save-params"]
SWEEP += ["--no-progress"]
LONG = ["train", "--out", "run", *DATA, *MODEL, "--batch-size", "2", "--steps", "160", "--num-samples", "4"]
LONG += ["--ckpt-every", "10", "--eval-every", "80"]  # chunks of 10 steps: the processes agree every 10 steps

pytestmark = pytest.mark.slow  # separate processes joining a job: run by CI in its slow pass


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    return {**env, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", **extra}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(base: Path, args: list[str], n: int = 2, port: int = 0) -> list[subprocess.Popen]:
    """``microgpt-jax ARGS`` as an ``n``-process job, process i in ``base/p{i}`` with one CPU device."""
    port = port or _free_port()
    procs = []
    for i in range(n):
        cwd = base / f"p{i}"
        cwd.mkdir(parents=True, exist_ok=True)
        cluster = ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(n), "--process-id", str(i)]
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "microgpt_jax", *args, *cluster],
                cwd=cwd,
                env=_env(JAX_NUM_CPU_DEVICES="1", MICROGPT_JAX_DISTRIBUTED_TIMEOUT="60"),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return procs


def _finish(procs: list[subprocess.Popen], timeout: float = WAIT) -> list[tuple[int, str, str]]:
    """Each process's (exit status, stdout, stderr); every process is killed if the job outlives ``timeout``."""
    deadline, out = time.monotonic() + timeout, []
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            out.append((p.returncode, stdout, stderr))
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
            p.communicate()
        pytest.fail(f"the job did not end within {timeout} s")
    return out


def _job(base: Path, args: list[str]) -> list[tuple[int, str, str]]:
    return _finish(_launch(base, args))


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def _run_files(cwd: Path) -> set[str]:
    """What a process left in its working directory."""
    return {p.name for p in cwd.iterdir()}


REFERENCE = """
import sys
from microgpt_jax.cli.program import main
import jax
assert len(jax.devices()) == 2, jax.devices()
for name, argv in {runs!r}:
    argv = [name if a in ("run", "sw") else a for a in argv]
    if main(argv):
        sys.exit(1)
"""


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same commands as one process with two CPU devices (one JAX start for the three)."""
    base = tmp_path_factory.mktemp("one-process")
    code = REFERENCE.format(runs=[("ref-sweep", SWEEP), ("ref-long", LONG)])
    env = _env(XLA_FLAGS="--xla_force_host_platform_device_count=2")
    done = subprocess.run([sys.executable, "-c", code], cwd=base, env=env, capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 0, done.stderr[-3000:]
    return base


def test_sweep_two_processes_equals_one_process_two_devices(tmp_path: Path, reference: Path) -> None:
    (rc0, out0, err0), (rc1, out1, err1) = _job(tmp_path, SWEEP)
    assert (rc0, rc1) == (0, 0), err0[-2000:] + err1[-2000:]
    assert "2 device(s)" in out0 and "best: member" in out0
    assert "best: member" not in out1 and "sweep:" not in out1  # process 1 prints nothing of its own
    assert _run_files(tmp_path / "p1") == set()  # and writes nothing
    got = json.loads((tmp_path / "p0" / "sw" / "results.json").read_text())
    want = json.loads((reference / "ref-sweep" / "results.json").read_text())
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(got) == strip(want)
    for m in range(3):
        name = f"members/{m}/params.safetensors"
        assert (tmp_path / "p0" / "sw" / name).read_bytes() == (reference / "ref-sweep" / name).read_bytes()


def test_a_device_choice_that_leaves_a_process_out_is_refused_on_both(tmp_path: Path) -> None:
    results = _job(tmp_path, ["sweep", "--out", "sw", *DATA, *MODEL, "--steps", "2", "--devices", "1"])
    lines = [_errors(err) for _, _, err in results]
    assert [rc for rc, _, _ in results] == [2, 2]
    assert len(lines[0]) == 1 and lines[0] == lines[1], lines
    assert "--devices 1 leaves 1 of the 2 processes without a device" in lines[0][0]
    assert _run_files(tmp_path / "p0") == set() and _run_files(tmp_path / "p1") == set()


def test_batch_size_one_is_refused_on_both(tmp_path: Path) -> None:
    results = _job(tmp_path, ["train", "--out", "run", *DATA, *MODEL, "--steps", "2", "--batch-size", "1"])
    lines = [_errors(err) for _, _, err in results]
    assert [rc for rc, _, _ in results] == [2, 2]
    assert len(lines[0]) == 1 and lines[0] == lines[1]
    assert "--batch-size 1 does not split over the 2 devices of this 2-process job" in lines[0][0]


def test_an_error_on_process_0_alone_ends_both_at_once(tmp_path: Path) -> None:
    (tmp_path / "p0").mkdir(parents=True)
    (tmp_path / "p0" / "run").write_text("a file, not a run directory\n")
    t0 = time.monotonic()
    results = _job(tmp_path, TRAIN)
    assert time.monotonic() - t0 < 30  # no wait for a collective's timeout
    lines = [_errors(err) for _, _, err in results]
    assert [rc for rc, _, _ in results] == [2, 2]
    assert lines[0] == lines[1] and len(lines[0]) == 1 and "is a file, not a directory" in lines[0][0]


def test_train_stopped_by_sigterm_to_one_process_and_resumed_equals_one_process_two_devices(
    tmp_path: Path, reference: Path
) -> None:
    """Data-parallel train (a batch of 2 over the two processes' devices): SIGTERM to process 1 stops both at
    one checkpoint; ``--resume`` as two processes ends with the params and metrics.jsonl (every step's loss,
    the held-out evaluations) of the uninterrupted one-process, two-device run; only process 0 wrote and
    printed, the samples once."""
    procs = _launch(tmp_path, LONG)
    manifest = tmp_path / "p0" / "run" / "checkpoint" / "checkpoint.json"
    deadline = time.monotonic() + WAIT
    while not manifest.exists() and time.monotonic() < deadline and all(p.poll() is None for p in procs):
        time.sleep(0.05)
    assert manifest.exists(), "no checkpoint was written"
    procs[1].send_signal(signal.SIGTERM)  # the process that writes nothing: process 0 hears of it by agreement
    t0 = time.monotonic()
    (rc0, out0, err0), (rc1, out1, err1) = _finish(procs, timeout=60)
    assert time.monotonic() - t0 < 30
    assert (rc0, rc1) == (143, 143), err0[-2000:] + err1[-2000:]
    step = json.loads(manifest.read_text())["step"]
    assert 0 < step < 160
    assert out0.count(f"stopped by SIGTERM at step {step} of 160") == 1
    assert "stopped by" not in out1 and _run_files(tmp_path / "p1") == set()
    assert sorted(p.name for p in manifest.parent.iterdir() if "params" in p.name) == [f"params-{step:08d}.safetensors"]

    (rc0, out0, err0), (rc1, out1, err1) = _job(tmp_path, ["train", "--resume", "run"])
    assert (rc0, rc1) == (0, 0), err0[-2000:] + err1[-2000:]
    assert f"resuming run at step {step} of 160" in out0
    ref = reference / "ref-long"
    for name in ("params.safetensors", "metrics.jsonl"):
        assert (tmp_path / "p0" / "run" / name).read_bytes() == (ref / name).read_bytes(), name
    assert len([line for line in out0.splitlines() if line.startswith("sample ")]) == 4
    assert "sample " not in out1 and "val_loss" not in out1 and "num params" not in out1
    assert _run_files(tmp_path / "p1") == set()


ENDLESS = ["train", "--out", "run", *DATA, *MODEL, "--batch-size", "2", "--steps", "100000", "--ckpt-every", "20"]


def _running(procs: list[subprocess.Popen], base: Path) -> None:
    """Wait until the job wrote its first checkpoint (both processes are in training)."""
    manifest = base / "p0" / "run" / "checkpoint" / "checkpoint.json"
    deadline = time.monotonic() + WAIT
    while not manifest.exists() and time.monotonic() < deadline and all(p.poll() is None for p in procs):
        time.sleep(0.05)
    assert manifest.exists(), "no checkpoint was written"


def test_kill_9_of_one_process_leaves_the_other_with_one_line_at_once(tmp_path: Path) -> None:
    """SIGKILL to process 1 mid-training: process 0's collective fails; it says so in one line and exits 2 at
    once (it once printed a traceback and then, after the shutdown barrier's timeout, pages of C++ logs)."""
    procs = _launch(tmp_path, ENDLESS)
    _running(procs, tmp_path)
    procs[1].kill()
    t0 = time.monotonic()
    (rc0, _, err0), _ = _finish(procs, timeout=60)
    assert time.monotonic() - t0 < 10, err0[:2500]
    assert rc0 == 2 and err0.count("\n") == 1 and err0.startswith("error: the multi-process job failed"), err0
    assert "--resume run" in err0


def test_a_second_jobs_process_1_on_a_running_jobs_port_is_refused_and_the_job_goes_on(tmp_path: Path) -> None:
    """A process of another job (or this job's process 1 started twice) that joined the coordinator made JAX
    abort the running job; process 0 now says which job it serves, and the stranger is refused first."""
    port = _free_port()
    procs = _launch(tmp_path, ENDLESS, port=port)
    _running(procs, tmp_path)
    cluster = ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", "1"]
    for args, says in ((["train", "--out", "other", *DATA, *MODEL, "--steps", "2"], "runs another command"),
                       (ENDLESS, "has a process 1 already")):  # fmt: skip
        argv = [sys.executable, "-m", "microgpt_jax", *args, *cluster]
        env = _env(JAX_NUM_CPU_DEVICES="1")
        stranger = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=WAIT)
        assert stranger.returncode == 2 and stranger.stderr.count("\n") == 1, stranger.stderr
        assert says in stranger.stderr and f"--coordinator 127.0.0.1:{port}" in stranger.stderr, stranger.stderr
    assert all(p.poll() is None for p in procs)  # the job never heard of them
    procs[1].send_signal(signal.SIGTERM)
    (rc0, _, err0), (rc1, _, err1) = _finish(procs)
    assert (rc0, rc1) == (143, 143), err0[-2000:] + err1[-2000:]
