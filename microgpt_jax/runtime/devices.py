"""The device policy in one place: CPU devices per core, and how many devices each job uses. (Precision,
float64 or float32, lives in ``model/dtypes.py``.)

- ``set_cpu_devices``: one JAX CPU device per core, before JAX starts (the program does this; a library
  call never changes JAX settings by itself);
- ``device_count``: how many devices a job of ``split`` equal pieces runs on, the same rule for training
  (a batch split over a ``data`` axis), sampling (rows over ``samples``) and sweeps (members over
  ``members``, padded to fill every device);
- ``job_device_count``: ``device_count`` for a job whose mesh must reach every process of a multi-process
  job (training, sweeps): a choice that leaves a process without a device is refused up front, the same line
  on every process;
- ``make_mesh``: the 1-D mesh of the first N devices along one named axis;
- ``usable_cores``, ``available_memory``: the cores this process may use, the bytes the default device may hold.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from microgpt_jax.errors import UserError

if TYPE_CHECKING:
    from jax.sharding import Mesh

DATA_AXIS = "data"
SAMPLE_AXIS = "samples"
MEMBER_AXIS = "members"


def usable_cores() -> int:
    """How many CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def set_cpu_devices(n: int | None = None) -> bool:
    """Give JAX's CPU backend ``n`` devices (default: one per usable core), so a mesh can spread work over cores.

    JAX's CPU backend is one device by default, and one device runs one XLA program at a time on (mostly) one
    thread; with a device per core, a sweep's members or a batch's halves run side by side. Only possible
    before JAX's backends start (the first JAX computation); returns False and changes nothing if they have
    started, or if XLA_FLAGS (--xla_force_host_platform_device_count) or $JAX_NUM_CPU_DEVICES already say.
    On a GPU or TPU machine it only adds CPU devices, which meshes over ``jax.devices()`` do not use."""
    import jax

    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "") or "JAX_NUM_CPU_DEVICES" in os.environ:
        return False
    try:
        jax.config.update("jax_num_cpu_devices", n or usable_cores())
    except RuntimeError:  # backends already initialised: the device count is fixed for this process
        return False
    return True


def device_count(requested: int | None, split: int, *, flag: str = "`batch_size`") -> int:
    """How many devices a job of ``split`` equal pieces (a batch's rows, samples, members) runs on.

    ``requested`` None: every device when the pieces split evenly over them, else one. An explicit request
    must be 1..(devices there are) and must split the pieces evenly; anything else is a UserError naming
    the argument to change (``flag``, the caller's name for it). ``split`` 0 is a job that pads itself to any
    device count (a sweep)."""
    import jax

    available = len(jax.devices())
    if requested is None:
        return available if split % available == 0 else 1
    if not 1 <= requested <= available:
        raise UserError(f"`devices` {requested}: there are {available} device(s): pick 1..{available}")
    if split % requested:
        raise UserError(
            f"{flag} {split} does not split over {requested} devices: use a multiple of {requested} "
            f"(or another `devices`)"
        )
    return requested


def spans_processes(n: int) -> bool:
    """Whether the first ``n`` of ``jax.devices()`` include a device of every process of the job."""
    import jax

    return len({d.process_index for d in jax.devices()[:n]}) == jax.process_count()


def job_device_count(requested: int | None, split: int, *, flag: str = "`batch_size`") -> int:
    """``device_count`` for work every process of a multi-process job takes part in (each process runs the same
    program on its share of one mesh): a count that leaves a process without a device is a UserError, the same
    on every process, before anything is written. Alone it is ``device_count``."""
    import jax

    n = device_count(requested, split, flag=flag)
    processes, total = jax.process_count(), len(jax.devices())
    if processes == 1 or spans_processes(n):
        return n
    if requested is None:  # the batch does not split over every device, and one device leaves the others out
        raise UserError(
            f"{flag} {split} does not split over the {total} devices of this {processes}-process job (a "
            f"multi-process job trains data parallel over every device): use a multiple of {total}"
        )
    covering = next(k for k in range(n, total + 1) if spans_processes(k))
    raise UserError(
        f"`devices` {requested} leaves {processes - len({d.process_index for d in jax.devices()[:n]})} of the "
        f"{processes} processes without a device (the job has {total}; every process must take part): pick "
        f"`devices` {covering}..{total}, or leave `devices` out"
    )


def make_mesh(axis: str, n: int) -> Mesh:
    """The 1-D mesh of the first ``n`` devices (every process's, in ``jax.devices()`` order) along ``axis``."""
    import jax
    from jax.sharding import Mesh

    return Mesh(np.asarray(jax.devices()[:n]), (axis,))


def available_memory() -> int:
    """Bytes the default device may hold: a GPU's or TPU's limit where JAX reports one, else the machine's RAM."""
    import jax

    stats = jax.devices()[0].memory_stats() if jax.default_backend() != "cpu" else None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
