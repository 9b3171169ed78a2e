"""The device policy: how many devices a job uses, meshes, CPU devices per core."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from microgpt_jax.errors import UserError
from microgpt_jax.runtime.devices import device_count


def test_device_count_on_one_device():
    assert device_count(None, 1) == 1  # a single device
    assert device_count(1, 4) == 1
    with pytest.raises(UserError, match="`devices` 2"):
        device_count(2, 4)  # this process sees one CPU device


def test_device_count_rules() -> None:
    import jax

    available = len(jax.devices())
    assert device_count(None, 0) == available  # a job that pads itself (a sweep) uses every device
    assert device_count(None, 6 * available) == available
    with pytest.raises(UserError, match=r"`devices` 0: there are \d+ device\(s\): pick 1\.\."):
        device_count(0, 4)
    with pytest.raises(UserError, match="`devices`"):
        device_count(available + 1, 4)


def test_an_uneven_split_names_the_flag_to_change(monkeypatch) -> None:
    import jax

    monkeypatch.setattr(jax, "devices", lambda *a: ["cpu0", "cpu1", "cpu2", "cpu3"])
    assert device_count(None, 8) == 4 and device_count(None, 6) == 1  # uneven: one device, not an error
    assert device_count(2, 6) == 2
    with pytest.raises(UserError) as e:
        device_count(4, 6, flag="`num_samples`")
    assert str(e.value) == "`num_samples` 6 does not split over 4 devices: use a multiple of 4 (or another `devices`)"


def test_alone_the_job_count_is_the_count_and_every_mesh_spans_the_processes() -> None:
    import jax

    from microgpt_jax.runtime.devices import DATA_AXIS, job_device_count, make_mesh, spans_processes

    assert job_device_count(None, 3) == device_count(None, 3)
    assert spans_processes(1)
    mesh = make_mesh(DATA_AXIS, 1)
    assert mesh.axis_names == (DATA_AXIS,) and list(mesh.devices) == jax.devices()[:1]


def test_cpu_devices_are_set_only_before_jax_starts(monkeypatch) -> None:
    import jax

    from microgpt_jax.runtime.devices import set_cpu_devices, usable_cores

    assert 1 <= usable_cores() <= (os.cpu_count() or 1)
    jax.devices()  # the backends have started in this process: the count is fixed
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.delenv("JAX_NUM_CPU_DEVICES", raising=False)
    assert set_cpu_devices(2) is False
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
    assert set_cpu_devices(2) is False  # the user's choice stands


def test_a_fresh_process_gets_one_cpu_device_per_core_asked() -> None:
    code = (
        "from microgpt_jax.runtime.devices import set_cpu_devices\n"
        "assert set_cpu_devices(3)\n"
        "import jax\n"
        "print(len(jax.devices()))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == "3"


def test_available_memory_is_positive() -> None:
    from microgpt_jax.runtime.devices import available_memory

    assert available_memory() > 1 << 20
