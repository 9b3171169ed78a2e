"""XLA:CPU compiler options per program (other backends get none), and XLA's deterministic GPU ops
(``deterministic_xla_flags``).

Each program picks, on CPU, which operations XLA hands to the YNNPACK library ("YNN fusions": none for
sampling, only the matmuls for a sweep), LLVM -O2 instead of -O3 for small programs (``O2``), and XLA's
quicker-compiling loop emitters (``FAST_COMPILE``) for the short-lived ones: a short run of small training
steps, evaluation, sampling a few rows. Each choice was measured: see docs/performance.md. Options change no
number beyond float rounding; a jaxlib that lacks an option gets the plain program.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

YNN_OPTION = "xla_cpu_experimental_ynn_fusion_type"
YNN_OFF = {YNN_OPTION: ""}
YNN_MATMULS_ONLY = {YNN_OPTION: "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}
O2 = {"xla_backend_optimization_level": 2}  # LLVM -O2 for XLA:CPU's kernels (its default is -O3)
FAST_COMPILE = {**O2, "xla_cpu_use_fusion_emitters": False}  # and the older emitters: a short run's training


def jit_with_cpu_options(fn: Callable[..., Any], options: dict[str, Any], **jit_kwargs: Any) -> Callable[..., Any]:
    """``jax.jit(fn, **jit_kwargs)``, compiled with the XLA:CPU ``options`` when running on a CPU; on other
    backends, or once this jaxlib has rejected an option, the plain jitted function."""
    tuned, plain = jax.jit(fn, compiler_options=options, **jit_kwargs), jax.jit(fn, **jit_kwargs)
    usable = [True]

    def run(method: Callable[[jax.stages.Wrapped], Any]) -> Any:
        if usable[0] and jax.default_backend() == "cpu":
            try:
                return method(tuned)
            except Exception as e:  # an older or newer jaxlib without the option: the default fusions
                if not any(name in str(e) for name in options):
                    raise
                usable[0] = False
        return method(plain)

    def call(*args: Any, **kwargs: Any) -> Any:
        return run(lambda f: f(*args, **kwargs))

    def compile_ahead(*args: Any, after_lower: Callable[[], None] | None = None, **kwargs: Any) -> jax.stages.Compiled:
        """Compile the program a call with arguments like these (arrays or jax.ShapeDtypeStruct) would run; the
        call then finds it compiled. ``after_lower`` is called between tracing and XLA's compile (perhaps twice,
        where this jaxlib rejects an option and the plain program is lowered again)."""

        def lower_and_compile(f: jax.stages.Wrapped) -> jax.stages.Compiled:
            lowered = f.lower(*args, **kwargs)
            if after_lower is not None:
                after_lower()
            return lowered.compile()

        return run(lower_and_compile)

    call.__dict__["compile_ahead"] = compile_ahead  # a function attribute (mypy has none)
    return call


DETERMINISTIC_GPU = "--xla_gpu_deterministic_ops=true"
ENV_NONDETERMINISTIC = "MICROGPT_JAX_NONDETERMINISTIC"


def deterministic_xla_flags(xla_flags: str, opt_out: str | None = None) -> str:
    """``XLA_FLAGS`` with XLA's deterministic GPU ops on (``DETERMINISTIC_GPU``): on a GPU the gradient of the
    embedding gather is a scatter-add, whose float sums otherwise land in whatever order the threads finish, so
    two runs (or a run and its resume) could differ in the last bits. Unchanged when the flags already name
    ``xla_gpu_deterministic_ops`` (the user's choice wins) or when ``opt_out`` ($MICROGPT_JAX_NONDETERMINISTIC)
    is set and not "0". XLA:CPU and TPU ignore the flag (their programs are deterministic already)."""
    if (opt_out or "0") != "0" or "xla_gpu_deterministic_ops" in xla_flags:
        return xla_flags
    return f"{xla_flags} {DETERMINISTIC_GPU}".strip()


def set_deterministic_gpu() -> bool:
    """Put ``deterministic_xla_flags`` into this process's $XLA_FLAGS, before JAX's backends start (the program
    does this; a library call never changes JAX settings). Returns whether the flags changed; once a backend has
    started, XLA has read its flags and nothing changes."""
    import os

    if _backends_started():
        return False
    before = os.environ.get("XLA_FLAGS", "")
    after = deterministic_xla_flags(before, os.environ.get(ENV_NONDETERMINISTIC))
    os.environ["XLA_FLAGS"] = after
    return after != before


def _backends_started() -> bool:
    import sys

    if "jax" not in sys.modules:  # nothing started yet (and the check imports nothing)
        return False
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge._backends)
    except (ImportError, AttributeError):  # another jax layout: assume they started, change nothing
        return True
