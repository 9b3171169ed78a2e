"""The command line end to end (in-process): train writes a run, sample reads it, bad flags are one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, read_metrics

from microgpt_jax.cli.program import main
from microgpt_jax.storage.params import load_params


@pytest.fixture
def trained_run(tiny_corpus, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--out", str(out), "--data", str(tiny_corpus), "--val-size", "10", "--steps", "30"]
    assert main([*args, "--eval-every", "10", "--num-samples", "5"]) == 0
    return out, capsys.readouterr().out


def test_train_writes_a_run(trained_run):
    out, stdout = trained_run
    assert "num docs: 50 (40 train, 10 held out)" in stdout
    assert "vocab size: " in stdout and "num params: " in stdout and "val_loss: " in stdout
    assert stdout.count("sample ") == 5
    metrics = read_metrics(out)
    assert [m["step"] for m in metrics if "loss" in m] == list(range(30))
    assert [m["step"] for m in metrics if "val_loss" in m] == [10, 20, 30]
    info = json.loads((out / "config.json").read_text())
    assert info["model"]["block_size"] == 16 and info["train"]["optimizer"] == "adam"
    params, meta = load_params(out / "params.safetensors")
    assert meta["tokenizer"].to_meta() == info["data"]["vocab"] and "layer0.attn_wq" in params
    assert info["data"]["vocab"]["kind"] == info["data"]["tokenizer"] == "char" and info["version"] == 3


def test_sample_from_run(trained_run, capsys):
    out, _ = trained_run
    assert main(["sample", "--run", str(out), "--num-samples", "3", "--seed", "7"]) == 0
    first = capsys.readouterr().out
    assert first.count("sample ") == 3
    assert main(["sample", "--run", str(out), "--num-samples", "3", "--seed", "7"]) == 0
    assert capsys.readouterr().out == first


def test_init_from_run_params_is_checked(trained_run, tiny_corpus, tmp_path, capsys):
    out, _ = trained_run
    args = ["train", "--out", str(tmp_path / "r2"), "--data", str(tiny_corpus), "--steps", "2", "--val-size", "0"]
    assert main([*args, "--init", str(out / "params.safetensors"), "--n-embd", "8"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "differs from the init model's: n_embd 8 (init: 16)" in err
    assert not (tmp_path / "r2").exists()


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["--version"]])
def test_help_and_version_do_not_import_jax(args: list[str]) -> None:
    """``microgpt-jax --help`` answers in about Python's start-up time: neither JAX nor numpy is imported."""
    code = f"""
import runpy, sys
sys.argv = ["microgpt-jax", *{args!r}]
try:
    runpy.run_module("microgpt_jax", run_name="__main__")
except SystemExit as e:
    assert e.code in (0, None), e.code
print(sorted(m for m in ("jax", "jaxlib", "numpy", "importlib.metadata") if m in sys.modules), file=sys.stderr)
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    imported = proc.stderr.strip().splitlines()[-1]
    assert imported == ("['importlib.metadata']" if args == ["--version"] else "[]"), imported
    assert "microgpt-jax" in proc.stdout


EXIT_NOW = """
import atexit, sys, threading
import jax
from microgpt_jax.cli.program import _exit_now
atexit.register(lambda: print(" handler ran", end=""))
done = threading.Event()
if "thread" in sys.argv:  # a thread still running: the usual exit, which waits for it
    threading.Thread(target=done.wait).start()
print("output", end="")
_exit_now(3)
done.set()
print(" returned", end="")
sys.exit(4)
"""


@pytest.mark.parametrize("thread", [False, True])
def test_the_program_ends_without_teardown_only_where_nothing_is_lost(thread: bool) -> None:
    args = [sys.executable, "-c", EXIT_NOW] + (["thread"] if thread else [])
    env = {**{k: v for k, v in os.environ.items() if k != "MICROGPT_JAX_FULL_EXIT"}, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    if thread:
        assert (proc.returncode, proc.stdout) == (4, "output returned handler ran")
    else:  # the exit handlers ran and the buffered output was flushed, with the status given
        assert (proc.returncode, proc.stdout) == (3, "output handler ran")


def test_library_arguments_are_named_as_flags_on_the_command_line(capsys) -> None:
    from microgpt_jax.cli.parser import in_flags

    assert in_flags("`val_size` 5 leaves none: lower `val_size`, or set `path`") == (
        "--val-size 5 leaves none: lower --val-size, or set --data"
    )
    assert main(["train", "--out", "x", "--val-size", "40000000"]) == 2
    err = capsys.readouterr().err
    assert "--val-size 40000000 leaves no training documents" in err and "`" not in err


def test_an_unknown_flag_gets_the_closest_known_one(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["train", "--out", "x", "--setps", "10"])
    assert e.value.code == 2
    assert "unrecognized arguments: --setps 10; did you mean --steps?" in capsys.readouterr().err


def test_refuse_existing_names_what_is_there(tmp_path) -> None:
    from microgpt_jax.errors import UserError
    from microgpt_jax.files import refuse_existing

    refuse_existing(tmp_path, ["a.md"], "fix it")  # nothing there: no error
    refuse_existing(None, ["a.md"], "fix it")
    (tmp_path / "a.md").write_text("mine")
    with pytest.raises(UserError, match=r"already holds a.md: fix it"):
        refuse_existing(tmp_path, ["a.md", "b.md"], "fix it")
    assert (tmp_path / "a.md").read_text() == "mine"
