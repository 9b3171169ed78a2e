"""How close microgpt_jax is to the original microgpt.py: replay its run and print the largest differences.

    python experiments/reference_check.py            # float64 and float32
    python experiments/reference_check.py --x64      # float64 only

The reference (tests/data/reference/, vendored from a run of the original) holds the initial state_dict,
the step-0 loss and gradients on the first name, the 1000 per-step losses and the final state_dict. The
original's 1000 steps see only its first 1000 shuffled names (tests/data/reference/docs_first1000.txt), so
no corpus is needed. Each precision runs in its own process (x64 is a process-wide JAX switch).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REF = Path(__file__).resolve().parent.parent / "tests" / "data" / "reference"


def check(x64: bool) -> dict[str, float]:
    """Largest absolute differences from the reference at one precision."""
    import jax

    jax.config.update("jax_enable_x64", x64)
    import jax.numpy as jnp
    import numpy as np

    from microgpt_jax import GPTConfig, Tokenizer, TrainConfig, encode_docs, load_docs, loss_fn, train

    ref = {name: json.loads((REF / f"microgpt_{name}.json").read_text()) for name in ("init", "step0", "trace")}
    docs = load_docs(REF / "docs_first1000.txt")
    tokens, n = encode_docs(docs, Tokenizer.from_docs(docs), 16)
    dtype = jnp.float64 if x64 else jnp.float32
    init = {k: jnp.asarray(np.array(v), dtype) for k, v in ref["init"].items()}

    def worst(params: dict, state_dict: dict) -> float:
        return max(
            float(np.max(np.abs(np.asarray(params[k], np.float64) - np.array(v)))) for k, v in state_dict.items()
        )

    loss, grads = jax.value_and_grad(loss_fn)(init, tokens[:1], n[:1], GPTConfig())
    params, _, losses = train(init, tokens, n, GPTConfig(), TrainConfig(x64=x64))
    return {
        "step0_loss": abs(float(loss) - ref["step0"]["loss"]),
        "step0_grads": worst(grads, ref["step0"]["grads"]),
        "trace_losses": float(np.max(np.abs(losses - np.array(ref["trace"]["losses"])))),
        "final_params": worst(params, ref["trace"]["final_params"]),
    }


def main(argv: list[str] | None = None) -> int:
    """Print the differences for float64 and float32 (each in a fresh process)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--x64", action="store_true", help="float64 only")
    p.add_argument("--x32", action="store_true", help="float32 only")
    p.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # one precision, JSON, this process
    args = p.parse_args(argv)
    if args.json:
        print(json.dumps(check(args.x64)))
        return 0
    print(f"{'':8s} {'step-0 loss':>12s} {'step-0 grads':>13s} {'1000 losses':>12s} {'final params':>13s}")
    for x64 in [x for x, off in ((True, args.x32), (False, args.x64)) if not off]:
        cmd = [sys.executable, __file__, "--json"] + (["--x64"] if x64 else [])
        res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        row = " ".join(f"{res[k]:>12.1e}" for k in ("step0_loss", "step0_grads", "trace_losses", "final_params"))
        print(f"{'float64' if x64 else 'float32':8s} {row}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
