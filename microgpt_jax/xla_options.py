"""XLA:CPU compiler options for the programs measured to run faster with them; other backends get none.

XLA:CPU hands some operations to the YNNPACK library ("YNN fusions"): by default the matmuls and, where its
cost model says so, reductions. At microgpt's tiny sizes the library calls can be slower than XLA's own
loops, and which way it goes depends on the program, so each program picks, by measurement:

- sampling turns YNN fusions off (the attention's reductions and softmaxes ran ~1.5-2x faster as XLA loops);
- a sweep keeps only the matmuls (its vmapped reductions, the softmax and rmsnorm backward above all, ran
  ~1.2x faster as XLA loops).

Options change no number beyond float rounding. A jaxlib that lacks an option gets the plain program.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

YNN_OPTION = "xla_cpu_experimental_ynn_fusion_type"
YNN_OFF = {YNN_OPTION: ""}
YNN_MATMULS_ONLY = {YNN_OPTION: "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}


def jit_with_cpu_options(fn: Callable, options: dict[str, Any], **jit_kwargs: Any) -> Callable:
    """``jax.jit(fn, **jit_kwargs)``, compiled with the XLA:CPU ``options`` when running on a CPU; on other
    backends, or once this jaxlib has rejected an option, the plain jitted function."""
    tuned, plain = jax.jit(fn, compiler_options=options, **jit_kwargs), jax.jit(fn, **jit_kwargs)
    usable = [True]

    def run(method: Callable[[Callable], Any]) -> Any:
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

    def compile_ahead(*args: Any, **kwargs: Any) -> Any:
        """Compile the program a call with arguments like these (arrays or jax.ShapeDtypeStruct) would run; the
        call then finds it compiled."""
        return run(lambda f: f.lower(*args, **kwargs).compile())

    call.compile_ahead = compile_ahead
    return call
