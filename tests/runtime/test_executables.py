"""executables: whole compiled programs kept on disk give the same results without tracing, are told apart by
everything they depend on, and a damaged, foreign or unwritable store never fails a call."""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from microgpt_jax.runtime import executables
from microgpt_jax.runtime.xla_options import O2, jit_with_cpu_options

TRACES: list[str] = []


@partial(jax.jit, static_argnames=("power",))
def poly(x: jax.Array, y: jax.Array, *, power: int) -> jax.Array:
    TRACES.append("poly")  # runs only while JAX traces
    return (x**power + y).sum(axis=-1)


def tuned_fn(x: jax.Array) -> jax.Array:
    TRACES.append("tuned")
    return jnp.tanh(x) * 2


tuned = jit_with_cpu_options(tuned_fn, O2)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Path]:
    """The store on in tmp_path/store for one test; off again after it."""
    path = tmp_path / "store"
    fresh_process(path)
    yield path
    executables.enable(None)
    executables._state["fingerprint"] = None


def fresh_process(path: Path) -> None:
    """What a new process sees: the store's files, nothing of this process's executables or fingerprint."""
    executables.enable(path)
    executables._state["fingerprint"] = None
    jax.clear_caches()
    TRACES.clear()


def entries(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir()) if path.exists() else []


def test_a_kept_program_is_read_back_whole_with_the_same_result(store: Path) -> None:
    x, y = np.arange(6.0, dtype=np.float32).reshape(2, 3), np.float32(1.5)
    want = (x**3 + y).sum(axis=-1)
    got = executables.call(poly, "poly", x, y, power=3)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert TRACES == ["poly"] and len(entries(store)) == 1 and entries(store)[0].startswith("poly-")
    executables.call(poly, "poly", x, y, power=3)  # this process: from memory
    assert TRACES == ["poly"]
    fresh_process(store)
    got = executables.call(poly, "poly", x, y, power=3)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert TRACES == []  # read whole: not traced
    assert len(entries(store)) == 1
    # a jit_with_cpu_options program too, and a compile ahead that a call then finds
    executables.compile_ahead(tuned, "tuned", jax.ShapeDtypeStruct((4,), np.float32))
    fresh_process(store)
    got = executables.call(tuned, "tuned", np.ones(4, np.float32))
    np.testing.assert_allclose(got, 2 * np.tanh(np.ones(4)), rtol=1e-6)
    assert TRACES == [] and len(entries(store)) == 2


def test_programs_are_told_apart_by_statics_shapes_dtypes_bound_and_settings(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, y = np.ones((2, 3), np.float32), np.float32(1)
    executables.call(poly, "poly", x, y, power=2)
    executables.call(poly, "poly", x, y, power=3)
    executables.call(poly, "poly", np.ones((2, 4), np.float32), y, power=2)
    executables.call(poly, "poly", x.astype(np.int32), np.int32(1), power=2)
    executables.call(poly, "poly", x, y, power=2, bound="another partial")
    assert len(entries(store)) == 5
    monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_fast_math=false")
    fresh_process(store)
    executables.call(poly, "poly", x, y, power=2)
    assert len(entries(store)) == 6 and TRACES == ["poly"]


def test_x64_in_this_thread_is_another_program(store: Path) -> None:
    x = np.ones(3)
    with jax.enable_x64(True):
        wide = executables.call(tuned, "tuned", x)
    narrow = executables.call(tuned, "tuned", x)
    assert wide.dtype == np.float64 and narrow.dtype == np.float32
    assert len(entries(store)) == 2


def test_damaged_or_foreign_entries_are_compiled_again(store: Path) -> None:
    x, y = np.arange(1.0, 7.0, dtype=np.float32).reshape(2, 3), np.float32(1)
    want = np.asarray(executables.call(poly, "poly", x, y, power=2))
    (entry,) = store.iterdir()
    entry.write_bytes(entry.read_bytes()[:200])  # cut short, as a killed writer could leave it (were it renamed)
    fresh_process(store)
    np.testing.assert_array_equal(executables.call(poly, "poly", x, y, power=2), want)
    assert TRACES == ["poly"] and entry.stat().st_size > 200  # compiled again and kept again
    other = np.asarray(executables.call(poly, "poly", x, y, power=3))
    (kept3,) = [p for p in store.iterdir() if p != entry]
    entry.write_bytes(kept3.read_bytes())  # another program's entry under this key's name: refused by its header
    fresh_process(store)
    np.testing.assert_array_equal(executables.call(poly, "poly", x, y, power=2), want)
    assert TRACES == ["poly"]
    assert not np.array_equal(want, other)


def test_an_unwritable_store_still_runs(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    executables.enable(blocked / "store")
    try:
        TRACES.clear()
        got = executables.call(poly, "poly", np.ones(3, np.float32), np.float32(2), power=2)
        assert float(got) == 9.0
    finally:
        executables.enable(None)
    assert blocked.read_text() == "not a directory" and sorted(tmp_path.iterdir()) == [blocked]


def test_off_or_unkept_arguments_call_the_program(tmp_path: Path) -> None:
    executables.enable(None)
    assert executables.prepare(poly, "poly", np.ones(3), 1.0, power=2) is None
    assert float(executables.call(poly, "poly", np.ones(3, np.float32), np.float32(1), power=2)) == 6.0
    executables.enable(tmp_path / "store")
    try:
        # a Python scalar is weakly typed: such calls are left to jit
        assert executables.prepare(poly, "poly", np.ones(3, np.float32), 1.0, power=2) is None
        assert float(executables.call(poly, "poly", np.ones(3, np.float32), 1.0, power=2)) == 6.0
    finally:
        executables.enable(None)
    assert entries(tmp_path / "store") == []


def test_a_program_jax_cache_served_is_not_kept(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    compile_for_real = executables._compile

    def served_by_jax_cache(*args: object) -> object:
        compiled = compile_for_real(*args)
        jax.monitoring.record_event(executables.JAX_CACHE_HIT)  # as JAX records a hit, in the compiling thread
        return compiled

    monkeypatch.setattr(executables, "_compile", served_by_jax_cache)
    x = np.arange(3, dtype=np.float32)
    np.testing.assert_allclose(executables.call(tuned, "tuned", x), 2 * np.tanh(x), rtol=1e-6)
    assert entries(store) == []
    monkeypatch.setattr(executables, "_compile", compile_for_real)
    fresh_process(store)
    executables.call(tuned, "tuned", x)
    assert len(entries(store)) == 1  # compiled here: kept


SEVERAL_DEVICES = """
import sys
import jax, numpy as np
from microgpt_jax.runtime import executables
traced = []
def f(x):
    traced.append(1)
    return x * 2
executables.enable(sys.argv[1])
assert len(jax.devices()) == 3
out = executables.call(jax.jit(f), "double", np.arange(4, dtype=np.float32))
print(len(traced), out.tolist())
"""


def test_a_kept_program_runs_on_the_default_device_of_several(tmp_path: Path) -> None:
    """Read back in a process with three CPU devices, a single-device program is loaded onto the first only (by
    default it was loaded for all three, and its call wanted three shards)."""
    import subprocess
    import sys

    env = {**os.environ, "JAX_NUM_CPU_DEVICES": "3", "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    outs = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", SEVERAL_DEVICES, str(tmp_path / "store")], capture_output=True,
                              text=True, env=env, timeout=120)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs.append(proc.stdout.split())
    assert outs[0][0] == "1" and outs[1][0] == "0"  # compiled, then read back whole
    assert outs[0][1:] == outs[1][1:] == ["[0.0,", "2.0,", "4.0,", "6.0]"]


def test_an_entry_that_fails_on_its_first_call_is_deleted_and_jit_makes_the_call(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, y = np.arange(6.0, dtype=np.float32).reshape(2, 3), np.float32(1)
    executables.call(poly, "poly", x, y, power=2)
    (entry,) = store.iterdir()
    fresh_process(store)
    # what a damaged entry that loads but cannot run looks like: another program's executable
    other = poly.lower(np.ones((5, 5), np.float32), y, power=2).compile()
    monkeypatch.setattr(executables, "_read", lambda path, digest: other)
    got = executables.call(poly, "poly", x, y, power=2)
    np.testing.assert_allclose(got, (x**2 + y).sum(axis=-1))
    assert not entry.exists()  # deleted: the next process compiles and keeps it again
    monkeypatch.undo()
    fresh_process(store)
    executables.call(poly, "poly", x, y, power=2)
    assert TRACES == ["poly"] and len(entries(store)) == 1


def test_a_static_argument_known_by_its_address_is_not_kept(store: Path) -> None:
    class Opaque:  # repr shows only the object's address: two of them could not be told apart on disk
        pass

    assert executables.prepare(poly, "poly", np.ones(3, np.float32), np.float32(1), power=2, bound=Opaque()) is None
    assert entries(store) == []


def test_a_float64_compile_ahead_on_another_thread_serves_the_call(store: Path) -> None:
    """The run's compile-ahead thread and its main thread make one key (a float64 run's x64 is a per-thread
    context): the program is compiled once, in the thread, and the call finds it."""
    import threading

    def ahead() -> None:
        with jax.enable_x64(True):
            executables.compile_ahead(tuned, "tuned", jax.ShapeDtypeStruct((3,), np.float64))

    thread = threading.Thread(target=ahead)
    thread.start()
    thread.join()
    assert TRACES == ["tuned"]
    with jax.enable_x64(True):
        got = executables.call(tuned, "tuned", np.ones(3))
    assert got.dtype == np.float64 and TRACES == ["tuned"] and len(entries(store)) == 1
