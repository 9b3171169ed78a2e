"""The run directory is a transaction: one run per directory, nothing else touched, a lock, verified resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from microgpt_jax.cli.program import main
from microgpt_jax.runs import rundir
from microgpt_jax.runs.guard import RunGuard
from microgpt_jax.storage.params import save_params

SMALL = ["--val-size", "5", "--n-embd", "8", "--n-head", "2", "--block-size", "8", "--num-samples", "2"]


def flags(corpus: Path, steps: int = 40, *extra: str) -> list[str]:
    return ["--data", str(corpus), "--steps", str(steps), *SMALL, *extra]


def code_and_err(argv: list[str], capsys) -> tuple[int, str]:
    rc = main(argv)
    return rc, capsys.readouterr().err


def test_files_a_run_did_not_write_are_never_touched(tmp_path: Path, tiny_corpus: Path, capsys) -> None:
    """train --out once removed DIR/checkpoint/ whatever it held."""
    out = tmp_path / "v"
    (out / "checkpoint").mkdir(parents=True)
    (out / "checkpoint" / "model.pt").write_text("x")
    for extra in ([], ["--overwrite"]):
        rc, err = code_and_err(["train", "--out", str(out), *flags(tiny_corpus), *extra], capsys)
        assert rc == 2 and "holds files that are not a run (checkpoint/model.pt)" in err
    assert (out / "checkpoint" / "model.pt").read_text() == "x" and sorted(os.listdir(out)) == ["checkpoint"]
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    rc, err = code_and_err(["train", "--out", str(tmp_path / "notes"), *flags(tiny_corpus)], capsys)
    assert rc == 2 and "(todo.txt)" in err and os.listdir(tmp_path / "notes") == ["todo.txt"]


@pytest.mark.slow
def test_a_finished_run_is_replaced_only_with_overwrite_and_only_when_complete(
    tmp_path: Path, tiny_corpus: Path, monkeypatch, capsys
) -> None:
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *flags(tiny_corpus, 30, "--ckpt-every", "7")]) == 0
    old = {p: (out / p).read_bytes() for p in ("config.json", "metrics.jsonl", "params.safetensors")}
    # a finished run whose steps are not a multiple of --ckpt-every is finished, not "unfinished"
    rc, err = code_and_err(["train", "--out", str(out), *flags(tiny_corpus, 5)], capsys)
    assert (
        rc == 2
        and "holds a finished run: pick another --out, or pass --overwrite to replace it" in err
        and "--overwrite" in err
    )
    # a replacement that diverges leaves the old run as it was, and no staging directory
    rc, err = code_and_err(["train", "--out", str(out), *flags(tiny_corpus, 5, "--lr", "1e30", "--optimizer", "sgd"),
                            "--overwrite"], capsys)  # fmt: skip
    assert rc == 2 and "diverged" in err
    assert {p: (out / p).read_bytes() for p in old} == old and sorted(os.listdir(tmp_path)) == ["run", "tiny.txt"]
    # a replacement stopped by a signal leaves the old run too, and its own resumable staging directory
    orig = RunGuard.after_chunk

    def stop_at_10(self, report):
        if report.end == 10:
            signal.raise_signal(signal.SIGTERM)
        return orig(self, report)

    monkeypatch.setattr(RunGuard, "after_chunk", stop_at_10)
    rc = main(["train", "--out", str(out), *flags(tiny_corpus, 20, "--seed", "3", "--ckpt-every", "10"), "--overwrite"])
    monkeypatch.undo()
    staged = [p for p in tmp_path.iterdir() if p.name.startswith(".run.new-")]
    assert rc == 143 and len(staged) == 1 and rundir.state(staged[0]) == "unfinished"
    assert {p: (out / p).read_bytes() for p in old} == old
    rundir.remove_run(staged[0])
    # a complete replacement takes the old run's place
    assert main(["train", "--out", str(out), *flags(tiny_corpus, 5, "--seed", "3"), "--overwrite"]) == 0
    assert json.loads((out / "config.json").read_text())["train"]["seed"] == 3
    assert sorted(os.listdir(tmp_path)) == ["run", "tiny.txt"]  # no staging or old directory left
    assert not (out / "checkpoint").exists()  # the old run's checkpoint went with it


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path: Path, tiny_corpus: Path, capsys) -> None:
    out = tmp_path / "run"
    out.mkdir()
    held = rundir.lock(out)  # another process writing this directory
    try:
        rc, err = code_and_err(["train", "--out", str(out), *flags(tiny_corpus)], capsys)
    finally:
        held.close()
    assert rc == 2 and f"being written by another microgpt-jax process (PID {os.getpid()})" in err
    assert os.listdir(out) == [".lock"]


def test_a_signal_during_the_final_save_and_samples_still_completes_the_run(
    tmp_path: Path, tiny_corpus: Path, monkeypatch, capsys
) -> None:
    """SIGTERM just before the final params rename once lost the whole run (its params sat in a .tmp)."""
    orig = save_params

    def save_then_signalled(*args, **kwargs):
        signal.raise_signal(signal.SIGTERM)  # arrives as the final parameters are being written
        return orig(*args, **kwargs)

    monkeypatch.setattr("microgpt_jax.runs.loop.save_params", save_then_signalled)
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *flags(tiny_corpus)]) == 143
    printed = capsys.readouterr().out
    assert "SIGTERM after the last step: the run is complete" in printed and "sample  1:" not in printed
    monkeypatch.undo()
    assert rundir.state(out) == "finished" and main(["sample", "--run", str(out)]) == 0


def interrupted(tmp_path: Path, corpus: Path, monkeypatch, at: int = 20) -> Path:
    out = tmp_path / "run"
    orig = RunGuard.after_chunk

    def stop(self, report):
        if report.end == at:
            signal.raise_signal(signal.SIGINT)
        return orig(self, report)

    monkeypatch.setattr(RunGuard, "after_chunk", stop)
    assert main(["train", "--out", str(out), *flags(corpus, 40, "--eval-every", "10")]) == 130
    monkeypatch.undo()
    return out


@pytest.mark.parametrize(
    "damage, says",
    [
        (lambda d: (d / "metrics.jsonl").write_text("".join((d / "metrics.jsonl").read_text().splitlines(True)[:5])),
         "metrics.jsonl is not what it was at the checkpoint"),
        (lambda d: (d / "metrics.jsonl").unlink(), "metrics.jsonl is not what it was at the checkpoint"),
        (lambda d: edit_config(d, "train", "lr", 0.02), "config.json changed since the checkpoint"),
        (lambda d: edit_config(d, "data", "shuffle_seed", 7), "config.json changed since the checkpoint"),
        (lambda d: edit_config(d, "train", "steps", "40"), "is not a run config this version reads"),
        (lambda d: edit_manifest(d, "step", 10), "does not match its files"),
    ],
)  # fmt: skip
def test_resume_refuses_what_changed_since_the_checkpoint(
    tmp_path: Path, tiny_corpus: Path, monkeypatch, capsys, damage, says: str
) -> None:
    out = interrupted(tmp_path, tiny_corpus, monkeypatch)
    capsys.readouterr()
    damage(out)
    rc, err = code_and_err(["train", "--resume", str(out)], capsys)
    assert rc == 2 and says in err and err.count("\n") == 1, err


def edit_config(d: Path, section: str, key: str, value) -> None:
    doc = json.loads((d / "config.json").read_text())
    doc[section][key] = value
    (d / "config.json").write_text(json.dumps(doc))


def edit_manifest(d: Path, key: str, value) -> None:
    path = d / "checkpoint" / "checkpoint.json"
    doc = json.loads(path.read_text())
    doc[key] = value
    path.write_text(json.dumps(doc))


def test_resume_after_an_untouched_interrupt_is_the_uninterrupted_run(
    tmp_path: Path, tiny_corpus: Path, monkeypatch, capsys
) -> None:
    out = interrupted(tmp_path, tiny_corpus, monkeypatch)
    assert main(["train", "--resume", str(out)]) == 0
    full = tmp_path / "full"
    assert main(["train", "--out", str(full), *flags(tiny_corpus, 40, "--eval-every", "10")]) == 0
    for name in ("metrics.jsonl", "params.safetensors"):
        assert (out / name).read_bytes() == (full / name).read_bytes(), name


def test_readers_refuse_unfinished_failed_and_mixed_directories(tmp_path: Path, tiny_corpus: Path, capsys) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["train", "--out", str(a), *flags(tiny_corpus, 10)]) == 0
    assert main(["train", "--out", str(b), *flags(tiny_corpus, 10, "--seed", "5")]) == 0
    (a / "params.safetensors").write_bytes((b / "params.safetensors").read_bytes())  # b's parameters in a
    capsys.readouterr()
    for command in ("sample", "export"):
        extra = ["--out", str(tmp_path / "x.npz")] if command == "export" else []
        rc, err = code_and_err([command, "--run", str(a), *extra], capsys)
        assert rc == 2 and "mixes two runs" in err
    rc, err = code_and_err(["train", "--out", str(tmp_path / "c"), *flags(tiny_corpus, 50, "--lr", "1e30")], capsys)
    step = int(err.split("at step ")[1].split()[0])
    rc, err = code_and_err(["sample", "--run", str(tmp_path / "c")], capsys)
    assert rc == 2 and f"holds no trained parameters: it diverged at step {step}" in err


def test_divergence_before_any_update_blames_the_initial_parameters() -> None:
    """A non-finite loss at step 0 once said "lower --lr" whatever caused it."""
    from microgpt_jax.config import GPTConfig, TrainConfig

    guard = RunGuard("run", GPTConfig(), TrainConfig(init_std=5.0), "ab", None, "")
    assert "`init_std` 5 gives parameters with a non-finite loss; lower `init_std`" in str(guard.fail(0, float("nan")))
    guard = RunGuard("run", GPTConfig(), TrainConfig(), "ab", None, "", init="big.json")
    assert "`init` big.json holds parameters" in str(guard.fail(0, float("inf")))
    assert "lower `lr`" in str(guard.fail(3, float("nan")))


def test_export_never_overwrites_unless_asked(tmp_path: Path, tiny_corpus: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *flags(tiny_corpus, 5)]) == 0
    config = (out / "config.json").read_bytes()
    rc, err = code_and_err(["export", "--run", str(out), "--out", str(out / "config.json")], capsys)
    assert rc == 2 and "exists" in err and (out / "config.json").read_bytes() == config
    target = tmp_path / "m.json"
    target.write_text("keep")
    assert code_and_err(["export", "--run", str(out), "--out", str(target)], capsys)[0] == 2
    assert main(["export", "--run", str(out), "--out", str(target), "--overwrite"]) == 0
    assert target.read_text() != "keep"


def test_a_full_disk_while_writing_metrics_is_one_line(tmp_path: Path, tiny_corpus: Path) -> None:
    """Appending metrics.jsonl past a file size limit (as on a full disk): an OSError traceback once."""

    out = tmp_path / "run"
    child = (  # the limit is set in the child before JAX starts (a preexec_fn would fork a threaded process)
        "import resource, runpy, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        "resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000)); sys.argv[0] = 'microgpt-jax'; "
        "runpy.run_module('microgpt_jax', run_name='__main__')"
    )  # past the limit a write fails with EFBIG, as it fails with ENOSPC on a full disk
    cmd = [sys.executable, "-c", child, "train", "--out", str(out), *flags(tiny_corpus, 2000)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MICROGPT_JAX_CACHE": "off"}  # the limit is for metrics.jsonl
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.startswith("error: cannot write") and "metrics.jsonl" in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
