"""How far a sweep member is from ``microgpt-jax train`` with the same flags, after a whole run.

A sweep trains its members as one vmapped program; ``train`` runs one member's unbatched program. XLA
compiles the two differently, so they round differently: the same numbers up to float rounding, which
grows over the steps. This trains the original recipe (1000 steps, batch 1, Adam) for seeds 0..3 both
ways, in float32 and in float64 (each in a fresh process), and prints the largest differences in the
per-step losses and in val_loss. Regenerate the README's figures with ``python experiments/sweep_check.py``
(the corpus from --data or $MICROGPT_JAX_DATA).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def measure(data: str | None, steps: int, seeds: int, x64: bool) -> dict[str, float]:
    """Largest |sweep - train| over the members' per-step losses and val_losses, in this process."""
    import tempfile

    import numpy as np

    from microgpt_jax.config import DataConfig, GPTConfig, TrainConfig
    from microgpt_jax.corpus.load import load_corpus
    from microgpt_jax.model.dtypes import enable_x64
    from microgpt_jax.runs.fresh import train_run
    from microgpt_jax.training import sweep

    enable_x64(x64)
    data_config = DataConfig(path=data)
    corpus = load_corpus(data_config)
    base = TrainConfig(steps=steps, x64=x64)
    members = sweep.grid_members(GPTConfig(vocab_size=corpus.tokenizer.vocab_size), base, {"seed": list(range(seeds))})
    res = sweep.run_sweep(members, corpus.train_docs, corpus.val_docs, corpus.tokenizer, progress=False)
    loss_diff = val_diff = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for m, row, losses in zip(members, res.rows, res.losses, strict=True):
            run = train_run(Path(tmp) / str(m.index), m.config, m.train, data_config, verbose=False)
            loss_diff = max(loss_diff, float(np.max(np.abs(losses - run.losses))))
            val_diff = max(val_diff, abs(row["val_loss"] - run.val_loss))
    return {"x64": x64, "members": seeds, "steps": steps, "max_loss_diff": loss_diff, "max_val_loss_diff": val_diff}


def main(argv: list[str] | None = None) -> int:
    """Measure float32 and float64, each in a fresh process (x64 is process-wide)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--data", help="corpus (default: $MICROGPT_JAX_DATA, data/names.txt)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--one", choices=("32", "64"), help=argparse.SUPPRESS)  # one precision in this process
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.data, args.steps, args.seeds, args.one == "64")))
        return 0
    print(f"sweep member vs train, {args.seeds} seeds x {args.steps} steps of the original recipe:")
    for bits in ("32", "64"):
        cmd = [sys.executable, __file__, "--one", bits, "--steps", str(args.steps), "--seeds", str(args.seeds)]
        cmd += ["--data", args.data] if args.data else []
        res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        print(f"  float{bits}: per-step losses {res['max_loss_diff']:.1e}, val_loss {res['max_val_loss_diff']:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
