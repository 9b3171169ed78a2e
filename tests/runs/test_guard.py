"""The run guard: checkpoints verified, metrics truncated, resuming bit-for-bit after a signal; the NaN stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from microgpt_jax.cli.program import main
from microgpt_jax.config import GPTConfig, TrainConfig
from microgpt_jax.errors import UserError
from microgpt_jax.model.init import init_params
from microgpt_jax.runs.guard import RunGuard, load_checkpoint, resume_state, truncate_metrics, unfinished_run_hint
from microgpt_jax.storage.checkpoint import read_manifest, save_checkpoint
from microgpt_jax.training.loop import init_opt_state

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--val-size", "2", "--n-embd", "8", "--n-head", "2", "--block-size", "8", "--num-samples", "3"]
CONFIG = GPTConfig(vocab_size=5, n_embd=8, n_head=2, block_size=4)


def run_flags(corpus: Path, steps: int = 300) -> list[str]:
    return ["--data", str(corpus), "--steps", str(steps), "--eval-every", "50", *SMALL]


def state(optimizer: str):
    params = init_params(jax.random.key(0), CONFIG)
    opt = init_opt_state(optimizer, params)
    # make every leaf distinct from a fresh init, so a silently re-initialised state would show
    opt = jax.tree.map(lambda x: x + 3 if x.dtype.kind == "i" else x + 0.25, opt)
    return params, opt


def test_checkpoint_damage_and_mismatch_are_errors(tmp_path: Path) -> None:
    params, opt = state("adam")
    save_checkpoint(tmp_path, 10, params, opt, CONFIG, "abcd", {"steps": 100})
    with pytest.raises(UserError, match="another optimizer"):
        load_checkpoint(tmp_path, CONFIG, TrainConfig(optimizer="sgd", steps=100), "abcd")
    with pytest.raises(UserError, match="vocabulary"):
        load_checkpoint(tmp_path, CONFIG, TrainConfig(steps=100), "abce")
    opt_file = tmp_path / "checkpoint" / "opt_state-00000010.safetensors"
    raw = bytearray(opt_file.read_bytes())
    raw[-1] ^= 1
    opt_file.write_bytes(bytes(raw))
    with pytest.raises(UserError, match="SHA-256"):
        load_checkpoint(tmp_path, CONFIG, TrainConfig(steps=100), "abcd")


def test_truncate_metrics_keeps_each_step_once(tmp_path: Path) -> None:
    lines = [{"step": s, "loss": 1.0} for s in range(12)] + [{"step": 10, "val_loss": 2.0}]
    text = "".join(json.dumps(x) + "\n" for x in lines) + '{"step": 12, "lo'  # the last line cut by a kill
    (tmp_path / "metrics.jsonl").write_text(text)
    truncate_metrics(tmp_path, 10, 20)
    got = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert got == [{"step": s, "loss": 1.0} for s in range(10)] + [{"step": 10, "val_loss": 2.0}]


def interrupt_at(monkeypatch, step: int, sig: int) -> None:
    """Deliver ``sig`` to this process when the run reaches ``step`` (through the real handler)."""
    orig = RunGuard.after_chunk

    def after_chunk(self, report):
        if report.end == step:
            signal.raise_signal(sig)
        return orig(self, report)

    monkeypatch.setattr(RunGuard, "after_chunk", after_chunk)


def test_interrupt_and_resume_is_bit_identical(tmp_path: Path, tiny_corpus: Path, monkeypatch, capsys) -> None:
    # issue 16's recipe: AdamW's state, dropout keys that follow the step, a warm-up and cosine schedule
    recipe = ["--dropout", "0.1", "--weight-decay", "0.1", "--schedule", "cosine", "--warmup", "20"]
    flags = [*run_flags(tiny_corpus), "--ckpt-every", "37", *recipe]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main(["train", "--out", str(full), *flags]) == 0
    interrupt_at(monkeypatch, 111, signal.SIGTERM)
    old_handler = signal.getsignal(signal.SIGTERM)
    assert main(["train", "--out", str(cut), *flags]) == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is old_handler  # handlers are put back
    out = capsys.readouterr().out
    assert "stopped by SIGTERM at step 111 of 300" in out and f"train --resume {cut}" in out
    assert not (cut / "params.safetensors").exists()
    assert json.loads((cut / "checkpoint" / "checkpoint.json").read_text())["step"] == 111
    monkeypatch.undo()
    assert main(["train", "--resume", str(cut)]) == 0
    assert "resuming" in capsys.readouterr().out
    assert (cut / "params.safetensors").read_bytes() == (full / "params.safetensors").read_bytes()
    metrics = (cut / "metrics.jsonl").read_text()
    assert metrics == (full / "metrics.jsonl").read_text()
    steps = [json.loads(x)["step"] for x in metrics.splitlines() if "val_loss" not in x]
    assert steps == list(range(300))


@pytest.mark.slow
def test_sigint_in_a_subprocess_then_resume(tmp_path: Path, tiny_corpus: Path, capsys) -> None:
    """Ctrl-C a real run mid-way; resuming it gives the uninterrupted run's parameters bit for bit."""
    flags = run_flags(tiny_corpus, steps=4000)
    cut, full = tmp_path / "cut", tmp_path / "full"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "microgpt_jax", "train", "--out", str(cut), *flags]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:  # wait for the first chunk: training is on
        if (cut / "metrics.jsonl").exists() and (cut / "metrics.jsonl").stat().st_size:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 128 + signal.SIGINT, stderr
    assert "Traceback" not in stderr and "resume with: microgpt-jax train --resume" in stdout
    stopped = json.loads((cut / "checkpoint" / "checkpoint.json").read_text())["step"]
    assert 0 < stopped < 4000
    assert main(["train", "--resume", str(cut)]) == 0
    assert main(["train", "--out", str(full), *flags]) == 0
    capsys.readouterr()
    assert (cut / "params.safetensors").read_bytes() == (full / "params.safetensors").read_bytes()
    assert (cut / "metrics.jsonl").read_text() == (full / "metrics.jsonl").read_text()


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, tiny_corpus: Path, monkeypatch, capsys
) -> None:
    orig = RunGuard.finite

    def finite(self, report):  # the loss of step 150 comes out NaN
        if report.start <= 150 < report.end:
            report.losses = report.losses.copy()
            report.losses[150 - report.start] = np.nan
        return orig(self, report)

    monkeypatch.setattr(RunGuard, "finite", finite)
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), *run_flags(tiny_corpus), "--ckpt-every", "37"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0]] and err[0].startswith("error: loss is nan at step 150 (lr 0.01)")
    assert "last good checkpoint (step 148)" in err[0]
    manifest = json.loads((run / "checkpoint" / "checkpoint.json").read_text())
    assert manifest["step"] == 148
    losses = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in losses if "loss" in x] == list(range(150))
    assert not (run / "params.safetensors").exists()


def test_real_divergence_is_reported(tmp_path: Path, tiny_corpus: Path, capsys) -> None:
    run = tmp_path / "run"
    flags = ["--optimizer", "sgd", "--lr", "1e30", "--data", str(tiny_corpus), "--steps", "300", *SMALL]
    assert main(["train", "--out", str(run), *flags]) == 2
    err = capsys.readouterr().err
    assert "error: loss is nan at step" in err and "(lr 1e+30)" in err and "Traceback" not in err
    bad = int(err.split("at step ")[1].split()[0])
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == bad + 1 and json.loads(lines[-1]) == {"step": bad, "diverged": True}
    assert main(["sample", "--run", str(run)]) == 2  # no parameters: it says why
    assert f"holds no trained parameters: it diverged at step {bad}" in capsys.readouterr().err


def test_resume_flags(tmp_path: Path, tiny_corpus: Path, monkeypatch, capsys) -> None:
    run = tmp_path / "run"
    interrupt_at(monkeypatch, 100, signal.SIGINT)
    assert main(["train", "--out", str(run), *run_flags(tiny_corpus)]) == 130
    monkeypatch.undo()
    capsys.readouterr()
    # flags that change the computation conflict; writing into an unfinished run is refused
    assert main(["train", "--resume", str(run), "--lr", "0.02"]) == 2
    assert "--lr 0.02 conflicts with the run's saved --lr 0.01" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--data", str(tmp_path / "other.txt")]) == 2
    assert main(["train", "--out", str(run), *run_flags(tiny_corpus)]) == 2
    assert (
        "holds an unfinished run (checkpoint at step 100 of 300): resume it (microgpt-jax train --resume "
        in capsys.readouterr().err
    )
    # sampling the unfinished run says how to go on; its checkpoint's parameters are an ordinary file
    assert main(["sample", "--run", str(run), "--num-samples", "3"]) == 2
    assert f"is unfinished (checkpoint at step 100): finish it with `microgpt-jax train --resume {run}`" in (
        capsys.readouterr().err
    )
    assert (
        main(["sample", "--params", str(run / "checkpoint" / "params-00000100.safetensors"), "--num-samples", "3"]) == 0
    )
    assert capsys.readouterr().out.count("sample ") == 3
    # the same value is no conflict; sampling flags may change
    assert main(["train", "--resume", str(run), "--steps", "300", "--num-samples", "2", "--ckpt-every", "1000"]) == 0
    assert capsys.readouterr().out.count("sample ") == 2


def guard_of(tmp_path: Path, ckpt_every: int | None = None, steps: int = 100, **kwargs) -> RunGuard:
    tc = TrainConfig(steps=steps, lr=0.05, init_std=0.1)
    return RunGuard(tmp_path, CONFIG, tc, "abcd", ckpt_every, "d" * 64, **kwargs)


def report(start: int, end: int, losses=None):
    from microgpt_jax.training.loop import ChunkReport

    params, opt = state("adam")
    return ChunkReport(start, end, np.asarray(losses if losses is not None else [1.0] * (end - start)), params, opt)


def test_boundaries_and_the_first_non_finite_loss(tmp_path: Path) -> None:
    assert guard_of(tmp_path, 30).boundaries() == (30, 60, 90) and guard_of(tmp_path).boundaries() == ()
    g = guard_of(tmp_path)
    losses, bad = g.finite(report(10, 14, [1.0, 2.0, 3.0, 4.0]))
    assert losses.tolist() == [1.0, 2.0, 3.0, 4.0] and bad is None
    losses, bad = g.finite(report(10, 14, [1.0, 2.0, float("nan"), float("inf")]))
    assert losses.tolist() == [1.0, 2.0] and bad == 12


def test_the_divergence_message_says_what_to_change(tmp_path: Path) -> None:
    g = guard_of(tmp_path)
    assert str(g.fail(12, float("nan"))) == (
        "loss is nan at step 12 (lr 0.05): training diverged; lower `lr` and train again (no checkpoint was "
        "written; metrics.jsonl holds the steps before it)"
    )
    g.last_ckpt = 10
    assert f"the last good checkpoint (step 10) is kept in {tmp_path / 'checkpoint'}" in str(g.fail(12, float("inf")))
    assert "`init_std` 0.1 gives parameters with a non-finite loss; lower `init_std`" in str(g.fail(0, float("nan")))
    g = guard_of(tmp_path, init="pre/params.safetensors")
    assert "`init` pre/params.safetensors holds parameters with a non-finite loss; use another `init`" in str(
        g.fail(0, float("nan"))
    )


def test_a_checkpoint_is_written_when_due_or_signalled_and_a_signal_stops(tmp_path: Path, capsys) -> None:
    g = guard_of(tmp_path, ckpt_every=20)
    assert not g.will_write(report(0, 10)) and not g.after_chunk(report(0, 10))
    assert not (tmp_path / "checkpoint").exists()
    assert g.will_write(report(10, 20)) and not g.after_chunk(report(10, 20))
    manifest = json.loads((tmp_path / "checkpoint" / "checkpoint.json").read_text())
    assert manifest["step"] == 20 and g.last_ckpt == 20
    assert manifest["data_position"] == {"step": 20, "next_doc": 20} and manifest["data_sha256"] == "d" * 64
    assert not g.will_write(report(20, 20))  # that step is written already
    g.signum = signal.SIGTERM
    assert g.will_write(report(20, 25)) and g.after_chunk(report(20, 25))  # written, and stop
    assert g.stopped_at == 25 and read_manifest(tmp_path)["step"] == 25
    assert "SIGTERM: writing a checkpoint at step 25" in capsys.readouterr().out
    assert g.signal_name() == "SIGTERM"
    assert g.stop_message() == (
        f"stopped by SIGTERM at step 25 of 100; checkpoint in {tmp_path / 'checkpoint'}; resume with: "
        f"microgpt-jax train --resume {tmp_path}"
    )
    # the last chunk ends the run anyway: a signal there does not stop it early
    g = guard_of(tmp_path / "b", steps=30)
    g.signum = signal.SIGINT
    assert not g.after_chunk(report(20, 30)) and g.stopped_at is None


def test_a_process_that_does_not_lead_writes_nothing(tmp_path: Path) -> None:
    g = guard_of(tmp_path, ckpt_every=10)
    g.lead = False
    assert not g.after_chunk(report(0, 10))
    assert g.last_ckpt == 10 and not (tmp_path / "checkpoint").exists()


def test_the_handlers_only_set_flags_and_are_put_back(tmp_path: Path) -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    g = guard_of(tmp_path)
    with g.signals():
        assert signal.getsignal(signal.SIGINT) == g._handle
        g._handle(signal.SIGINT, None)
        assert g.signum == g.received == signal.SIGINT
        # a second signal kills at once: the default handlers are back
        assert signal.getsignal(signal.SIGINT) == signal.SIG_DFL == signal.getsignal(signal.SIGTERM)
    assert {sig: signal.getsignal(sig) for sig in before} == before
    agreeing = guard_of(tmp_path)
    agreeing.agreeing = True  # a multi-process job acts on a signal only once the processes agree on it
    with agreeing.signals():
        agreeing._handle(signal.SIGTERM, None)
    assert agreeing.received == signal.SIGTERM and agreeing.signum is None


def test_resume_state_refuses_what_changed(tmp_path: Path) -> None:
    params, opt = state("adam")
    tc = TrainConfig(steps=100)
    with pytest.raises(UserError, match="has no checkpoint to resume from"):
        resume_state(tmp_path, CONFIG, tc, "abcd", "d" * 64)
    save_checkpoint(tmp_path, 10, params, opt, CONFIG, "abcd", {"data_sha256": "d" * 64, "config_sha256": "c" * 64})
    assert resume_state(tmp_path, CONFIG, tc, "abcd", "d" * 64, "c" * 64).step == 10
    with pytest.raises(UserError, match="the data file changed since"):
        resume_state(tmp_path, CONFIG, tc, "abcd", "e" * 64)
    with pytest.raises(UserError, match=r"config\.json changed since the checkpoint"):
        resume_state(tmp_path, CONFIG, tc, "abcd", "d" * 64, "f" * 64)
    with pytest.raises(UserError, match=r"step 10 is outside the run's 0\.\.5"):
        resume_state(tmp_path, CONFIG, TrainConfig(steps=5), "abcd", "d" * 64)


def test_an_unfinished_run_says_how_to_finish_it(tmp_path: Path) -> None:
    unfinished_run_hint(tmp_path)  # no checkpoint: nothing to say
    params, opt = state("sgd")
    save_checkpoint(tmp_path, 30, params, opt, CONFIG, "abcd")
    with pytest.raises(UserError, match=r"is unfinished \(checkpoint at step 30\): finish it with") as e:
        unfinished_run_hint(tmp_path)
    assert str(tmp_path / "checkpoint" / "params-00000030.safetensors") in str(e.value)
    (tmp_path / "params.safetensors").write_bytes(b"")  # finished: nothing to say
    unfinished_run_hint(tmp_path)


def test_truncate_metrics_without_a_file_does_nothing(tmp_path: Path) -> None:
    truncate_metrics(tmp_path, 10, 20)
    assert list(tmp_path.iterdir()) == []
