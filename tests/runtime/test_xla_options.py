"""xla_options: tuned XLA:CPU programs equal plain ones, and a jaxlib without an option falls back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from microgpt_jax.runtime.xla_options import O2, YNN_MATMULS_ONLY, YNN_OFF, jit_with_cpu_options


def softmax_rows(x: jax.Array, w: jax.Array) -> jax.Array:
    return jax.nn.softmax(x @ w, axis=-1).sum(axis=0)


@pytest.mark.parametrize("options", [YNN_OFF, YNN_MATMULS_ONLY, O2, {**YNN_OFF, **O2}])
def test_tuned_program_equals_the_plain_one(options):
    x, w = jax.random.normal(jax.random.key(0), (64, 16)), jax.random.normal(jax.random.key(1), (16, 27))
    got = jit_with_cpu_options(softmax_rows, options)(x, w)
    np.testing.assert_allclose(got, jax.jit(softmax_rows)(x, w), rtol=1e-6, atol=1e-6)


def test_an_option_this_jaxlib_lacks_falls_back_to_the_plain_program():
    fn = jit_with_cpu_options(softmax_rows, {"xla_cpu_no_such_option_for_tests": "1"})
    x, w = jnp.ones((4, 3)), jnp.ones((3, 5))
    np.testing.assert_allclose(fn(x, w), jax.jit(softmax_rows)(x, w))
    np.testing.assert_allclose(fn(x, w), jax.jit(softmax_rows)(x, w))  # and keeps falling back


def test_other_errors_are_not_swallowed():
    fn = jit_with_cpu_options(softmax_rows, YNN_MATMULS_ONLY)
    with pytest.raises(TypeError):
        fn(jnp.ones((4, 3)), jnp.ones((5, 5)))  # shapes that do not multiply


def test_deterministic_gpu_ops_are_added_to_xla_flags_unless_the_user_chose():
    from microgpt_jax.runtime.xla_options import DETERMINISTIC_GPU, deterministic_xla_flags

    assert deterministic_xla_flags("") == DETERMINISTIC_GPU
    count = "--xla_force_host_platform_device_count=2"
    assert deterministic_xla_flags(count) == f"{count} {DETERMINISTIC_GPU}"
    assert deterministic_xla_flags(count, "0") == f"{count} {DETERMINISTIC_GPU}"
    assert deterministic_xla_flags(count, "1") == count  # $MICROGPT_JAX_NONDETERMINISTIC=1 opts out
    mine = "--xla_gpu_deterministic_ops=false"
    assert deterministic_xla_flags(mine) == mine  # the user's own setting wins


def test_set_deterministic_gpu_changes_nothing_once_backends_started(monkeypatch):
    from microgpt_jax.runtime.xla_options import set_deterministic_gpu

    jnp.ones(1).block_until_ready()  # this process's backends are up
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
    assert set_deterministic_gpu() is False
    assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=1"


def test_the_program_sets_the_flag_before_jax_starts_and_xla_cpu_accepts_it():
    """XLA aborts on a flag it does not know: the CPU build must know this one (it ignores it)."""
    code = (
        "import os\n"
        "from microgpt_jax.runtime.xla_options import set_deterministic_gpu\n"
        "assert set_deterministic_gpu()\n"
        "import jax.numpy as jnp\n"
        "print(float(jnp.ones(3).sum()), os.environ['XLA_FLAGS'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "MICROGPT_JAX_NONDETERMINISTIC")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["3.0", "--xla_gpu_deterministic_ops=true"]
