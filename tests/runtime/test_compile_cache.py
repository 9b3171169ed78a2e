"""The persistent compilation cache: where it goes, which directories it refuses, and that no cache problem fails
a run (full disk, read-only directory, damaged entries) or prints more than one line."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import jax
import pytest

from microgpt_jax.runtime import executables
from microgpt_jax.runtime.compile_cache import CACHE_ENV, EXECUTABLES, cache_dir, enable_compile_cache

ROOT = Path(__file__).resolve().parents[2]
JAX_KEYS = (
    "jax_compilation_cache_dir",
    "jax_enable_compilation_cache",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes",
    "jax_raise_persistent_cache_errors",
    "jax_persistent_cache_enable_xla_caches",
)


@pytest.fixture
def jax_settings() -> Iterator[dict]:
    """JAX's cache settings and the warning machinery, restored after the test (enable_compile_cache sets them
    process-wide). No test here compiles in-process with a cache set, so JAX never opens one."""
    saved = {k: jax.config.values[k] for k in JAX_KEYS}
    with warnings.catch_warnings():
        yield saved
    for k, v in saved.items():
        jax.config.update(k, v)
    executables.enable(None)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """A clean environment: no $MICROGPT_JAX_CACHE or $XDG_CACHE_HOME, HOME in tmp_path/home."""
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return monkeypatch


@pytest.mark.parametrize("setting", ["off", "OFF", " Off ", "0", "none", "None", "false", "no", ""])
def test_off(setting: str, env: pytest.MonkeyPatch, jax_settings: dict) -> None:
    assert cache_dir(setting) is None
    assert enable_compile_cache(setting) is None
    env.setenv(CACHE_ENV, setting)
    assert enable_compile_cache() is None
    assert jax.config.values["jax_compilation_cache_dir"] == jax_settings["jax_compilation_cache_dir"]


def test_resolution(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert cache_dir() == home / ".cache" / "microgpt_jax"
    env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "microgpt_jax"
    env.setenv("XDG_CACHE_HOME", "relative/xdg")  # not absolute: ignored, as the XDG spec says
    assert cache_dir() == home / ".cache" / "microgpt_jax"
    env.setenv(CACHE_ENV, str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    assert cache_dir(str(tmp_path / "arg")) == tmp_path / "arg"  # the argument beats the environment
    assert cache_dir("~/c") == home / "c"
    assert cache_dir("rel").is_absolute()
    env.setenv(CACHE_ENV, "off")
    assert cache_dir() is None


def test_enable_creates_a_private_directory(env: pytest.MonkeyPatch, tmp_path: Path, jax_settings: dict) -> None:
    env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    path = enable_compile_cache()
    assert path == tmp_path / "xdg" / "microgpt_jax"
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    values = jax.config.values
    assert values["jax_compilation_cache_dir"] == str(path)
    assert values["jax_persistent_cache_min_compile_time_secs"] == 0
    assert values["jax_persistent_cache_min_entry_size_bytes"] == -1
    assert values["jax_raise_persistent_cache_errors"] is False
    assert values["jax_persistent_cache_enable_xla_caches"] is None
    assert executables.directory() == path / EXECUTABLES
    assert stat.S_IMODE((path / EXECUTABLES).stat().st_mode) == 0o700
    # an existing directory of ours that only we can write is used as it is
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o755)
    mine.chmod(0o755)
    assert enable_compile_cache(str(mine)) == mine
    assert stat.S_IMODE(mine.stat().st_mode) == 0o755


def test_a_group_writable_executables_directory_keeps_no_program(
    tmp_path: Path, capsys: pytest.CaptureFixture, jax_settings: dict
) -> None:
    cache = tmp_path / "cache"
    (cache / EXECUTABLES).mkdir(parents=True, mode=0o700)
    cache.chmod(0o700)
    (cache / EXECUTABLES).chmod(0o777)
    assert enable_compile_cache(str(cache)) == cache  # JAX's cache on
    assert executables.directory() is None  # no whole program kept
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not keeping whole programs" in err and "writable by group or others" in err


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o757])
def test_group_or_other_writable_is_refused(
    mode: int, tmp_path: Path, capsys: pytest.CaptureFixture, jax_settings: dict
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(mode)
    assert enable_compile_cache(str(shared)) is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: ")
    assert "writable by group or others" in err and "chmod 700" in err
    assert jax.config.values["jax_compilation_cache_dir"] == jax_settings["jax_compilation_cache_dir"]


def test_other_owner_or_not_a_directory_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture, jax_settings: dict
) -> None:
    if os.geteuid() == 0:
        theirs = tmp_path / "theirs"
        theirs.mkdir(mode=0o700)
        os.chown(theirs, 65534, 65534)
    else:
        theirs = Path("/")  # root's
    assert enable_compile_cache(str(theirs)) is None
    assert "owned by another user" in capsys.readouterr().err
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert enable_compile_cache(str(a_file)) is None
    assert enable_compile_cache(str(a_file / "sub")) is None
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "cannot create it" in err


# A run of the program in miniature: enable the cache, compile two functions, report the cache hits.
# With "full", every cache file write fails with ENOSPC (a full disk, and what root sees nowhere else).
RUN = """
import errno, json, pathlib, sys
if "full" in sys.argv:
    write_bytes = pathlib.Path.write_bytes
    def full(self, data):
        if self.name.endswith("-cache"):
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return write_bytes(self, data)
    pathlib.Path.write_bytes = full
import jax, jax.numpy as jnp
from jax._src import xla_bridge
from microgpt_jax.runtime.compile_cache import enable_compile_cache
path = enable_compile_cache(sys.argv[1])
assert not xla_bridge.backends_are_initialized()  # cheap: no backend started
hits = []
jax.monitoring.register_event_listener(lambda event, **kw: hits.append(1) if event.endswith("/cache_hits") else None)
a = jax.jit(lambda x: x * 2 + 1)(jnp.arange(3.0))
b = jax.jit(lambda x: jnp.sin(x).sum())(jnp.ones(3))
print(json.dumps({"path": str(path), "values": a.tolist() + [float(b)], "hits": len(hits)}))
"""
VALUES = [1.0, 3.0, 5.0, pytest.approx(3 * 0.8414709848)]


def run(cache: Path, *args: str) -> tuple[dict, str]:
    """RUN in a fresh Python with warnings as errors (a cache problem must not become one): (its JSON, stderr)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", RUN, str(cache), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), proc.stderr


def test_second_run_reads_the_cache_and_damaged_entries_cost_one_line(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first, err = run(cache)
    assert first == {"path": str(cache), "values": VALUES, "hits": 0}
    assert err == ""
    entries = sorted(cache.glob("*-cache"))
    assert len(entries) >= 2
    second, err = run(cache)
    assert second["hits"] >= 2 and second["values"] == VALUES
    assert err == "" and sorted(cache.glob("*-cache")) == entries
    for entry in entries:  # as a run killed while writing, or one still writing, leaves them
        entry.write_bytes(entry.read_bytes()[:50])
    third, err = run(cache)
    assert third["values"] == VALUES
    assert err.count("\n") == 1 and err.startswith(f"warning: compilation cache {cache}: could not read")


def test_full_disk_costs_one_line(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    res, err = run(cache, "full")
    assert res["values"] == VALUES
    assert err.count("\n") == 1 and "could not save a compiled program" in err and "No space left" in err
    assert not list(cache.glob("*-cache"))


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes to a 0500 directory")
def test_read_only_directory_costs_one_line(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o500)
    cache.chmod(0o500)
    try:
        res, err = run(cache)
    finally:
        cache.chmod(0o700)
    assert res["values"] == VALUES
    assert err.count("\n") == 1 and "could not save a compiled program" in err


# the program (python -m microgpt_jax) turns the cache on by default; the library never does
TINY_TRAIN = ["--steps", "3", "--val-size", "5", "--n-embd", "8", "--n-head", "2", "--block-size", "8",
              "--num-samples", "3"]  # fmt: skip


def _program(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", "JAX_LOG_COMPILES": "1", **env}
    for name in ("JAX_COMPILATION_CACHE_DIR", "JAX_ENABLE_COMPILATION_CACHE"):
        full_env.pop(name, None)
    proc = subprocess.run(
        [sys.executable, "-m", "microgpt_jax", *args], capture_output=True, text=True, env=full_env, cwd=cwd,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _numbers(stdout: str) -> list[str]:
    """What a run printed, less its timings."""
    return [line for line in stdout.splitlines() if " s, start-up included" not in line and "steps/s" not in line]


PROGRAMS = ["_eval_sums_fn", "_sample_scan", "_scaled_normal", "_train_chunk"]


@pytest.mark.slow
def test_program_compiles_four_programs_keeps_them_whole_off_writes_nothing(tiny_corpus: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    base = {"HOME": str(home), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    train = ["train", "--out", "run", "--data", str(tiny_corpus), *TINY_TRAIN]
    cache = tmp_path / "cache"
    (tmp_path / "a").mkdir()
    first = _program(train, {**base, CACHE_ENV: str(cache)}, tmp_path / "a")
    # the lean start-up path: one program each for init (the normal draw of bits made on the host), training,
    # evaluation and sampling, each compiled once (evaluation's and sampling's on a second thread while
    # training's compiles); no eager op-by-op program (a conversion, a key, a draw, zeros) among them
    programs = re.findall(r"Finished XLA compilation of jit\((\w+)\)", first.stderr)
    assert sorted(programs) == PROGRAMS
    compiled = len(programs)
    assert "cache hit" not in first.stderr
    kept = sorted(p.name for p in (cache / EXECUTABLES).iterdir())
    assert len(kept) == compiled and all(name.endswith(".exe") for name in kept)  # each kept whole
    assert not list(cache.glob("*-cache"))  # and none in JAX's cache (read back from there, it would not save)
    (tmp_path / "b").mkdir()
    second = _program(train, {**base, CACHE_ENV: str(cache)}, tmp_path / "b")
    # warm: every program read whole, so none is traced, lowered or compiled
    for event in ("Finished tracing", "Finished jaxpr to MLIR module conversion", "Finished XLA compilation"):
        assert not re.findall(rf"{event} (?:jit\()?({'|'.join(PROGRAMS)})\b", second.stderr), event
    assert sorted(p.name for p in (cache / EXECUTABLES).iterdir()) == kept
    assert _numbers(second.stdout) == _numbers(first.stdout)
    # without the whole programs (deleted, or kept by another version of the package): compiled and kept again
    shutil.rmtree(cache / EXECUTABLES)
    (tmp_path / "d").mkdir()
    third = _program(train, {**base, CACHE_ENV: str(cache)}, tmp_path / "d")
    assert sorted(re.findall(r"Finished XLA compilation of jit\((\w+)\)", third.stderr)) == PROGRAMS
    assert sorted(p.name for p in (cache / EXECUTABLES).iterdir()) == kept
    assert _numbers(third.stdout) == _numbers(first.stdout)
    (tmp_path / "c").mkdir()
    off = _program(train, {**base, CACHE_ENV: "off"}, tmp_path / "c")
    assert "cache hit" not in off.stderr and off.stderr.count("Finished XLA compilation") == compiled
    assert _numbers(off.stdout) == _numbers(first.stdout)
    assert not (tmp_path / "xdg").exists() and not home.exists()  # nothing written anywhere else
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c", "cache", "d", "tiny.txt"]
    for d in "abcd":
        assert (tmp_path / d / "run" / "params.safetensors").read_bytes() == (
            tmp_path / "a" / "run" / "params.safetensors"
        ).read_bytes()


LIBRARY = """
import json, sys
import jax
import microgpt_jax
from microgpt_jax.cli.program import main
before = {k: jax.config.values[k] for k in sys.argv[2:]}
assert main(["train", "--out", sys.argv[1] + "/cli", *TRAIN]) == 0  # main(argv): the caller owns JAX's setup
microgpt_jax.train_run(sys.argv[1] + "/lib", microgpt_jax.GPTConfig(n_embd=8, n_head=2, block_size=8),
                       microgpt_jax.TrainConfig(steps=3), microgpt_jax.DataConfig(val_size=5), verbose=False)
after = {k: jax.config.values[k] for k in sys.argv[2:]}
print(json.dumps({"before": before, "after": after}))
"""


@pytest.mark.slow
def test_importing_and_calling_the_library_leave_the_cache_off(tiny_corpus: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", "MICROGPT_JAX_DATA": str(tiny_corpus),
           "HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "xdg")}  # fmt: skip
    for name in ("JAX_COMPILATION_CACHE_DIR", "JAX_ENABLE_COMPILATION_CACHE", CACHE_ENV):
        env.pop(name, None)
    code = LIBRARY.replace("*TRAIN", repr(TINY_TRAIN)[1:-1])
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path), *JAX_KEYS], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["after"] == res["before"] and res["after"]["jax_compilation_cache_dir"] is None
    assert not (tmp_path / "xdg").exists() and not (tmp_path / "home").exists()
