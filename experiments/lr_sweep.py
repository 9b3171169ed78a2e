"""Which learning rate is best for the original recipe, and how much does the seed matter?

Sweeps lr x seed for microgpt's recipe (1000 steps of one name each, linear decay to zero, N(0, 0.08) init),
with SGD and with Adam (b1 0.85, b2 0.99), as vmapped programs (``microgpt_jax.training.sweep``): every member equals
``microgpt-jax train --optimizer OPT --lr LR --seed SEED``. The names are shuffled with seed 42 and the
last 1000 held out, as train does. Writes to ``--out`` (default experiments/results):

- ``lr_sweep.md``: per optimizer and lr, held-out NLL per token over the seeds (mean, std, min, max,
  diverged), the best lr, and the seed spread against the lr effect;
- ``lr_sweep.png``: val_loss against lr (log axis), mean over seeds with min-max band, one line per optimizer;
- ``lr_sweep.csv`` / ``lr_sweep.json``: one row per member (the sweep's results).

Regenerate with ``python experiments/lr_sweep.py`` (corpus from --data or $MICROGPT_JAX_DATA).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from microgpt_jax.config import DataConfig, GPTConfig, TrainConfig  # noqa: E402
from microgpt_jax.corpus.load import load_corpus  # noqa: E402
from microgpt_jax.errors import exit_status  # noqa: E402
from microgpt_jax.files import atomic_write_bytes, atomic_write_text, refuse_existing  # noqa: E402
from microgpt_jax.runs.sweep_dir import best_row, write_results  # noqa: E402
from microgpt_jax.training import sweep  # noqa: E402

LRS = {
    "adam": [0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3],
    "sgd": [0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0],
}


def summarize(rows: list[dict]) -> list[dict]:
    """Per (optimizer, lr): the held-out loss over seeds, diverged seeds left out of the statistics."""
    out = []
    for opt in LRS:
        for lr in sorted({r["lr"] for r in rows if r["optimizer"] == opt}):
            group = [r for r in rows if r["optimizer"] == opt and r["lr"] == lr]
            vals = [r["val_loss"] for r in group if not r["diverged"]]
            out.append(
                {
                    "optimizer": opt,
                    "lr": lr,
                    "seeds": len(group),
                    "diverged": sum(r["diverged"] for r in group),
                    "mean": statistics.fmean(vals) if vals else math.nan,
                    "std": statistics.stdev(vals) if len(vals) > 1 else math.nan,
                    "min": min(vals) if vals else math.nan,
                    "max": max(vals) if vals else math.nan,
                }
            )
    return out


def report(summary: list[dict], rows: list[dict], seconds: float, members: int, cmd: str) -> str:
    """The markdown table and its reading."""
    lines = [
        "# Learning rate x seed for the original recipe",
        "",
        f"{members} members (1000 steps, batch 1, init N(0, 0.08), linear decay) trained as vmapped sweeps in "
        f"{seconds:.0f} s on {platform.machine()} with {len(jax.devices())} {jax.devices()[0].platform} device(s) "
        "(the machine was shared with other jobs). Held-out NLL per token on the last 1000 shuffled names.",
        "",
        f"Regenerate: `{cmd}`",
        "",
        "| optimizer | lr | seeds | diverged | val mean | val std | val min | val max |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summary:
        lines.append(
            f"| {s['optimizer']} | {s['lr']:g} | {s['seeds']} | {s['diverged']} | {s['mean']:.4f} | "
            f"{s['std']:.4f} | {s['min']:.4f} | {s['max']:.4f} |"
        )
    lines += ["", "## Reading", ""]
    for opt in LRS:
        rows_opt = [s for s in summary if s["optimizer"] == opt and math.isfinite(s["mean"]) and not s["diverged"]]
        if not rows_opt:
            continue
        best = min(rows_opt, key=lambda s: s["mean"])
        default = next((s for s in rows_opt if s["lr"] == {"adam": 0.01, "sgd": 1.0}[opt]), None)
        near = [s for s in rows_opt if s["lr"] != best["lr"]]
        gap = min(s["mean"] for s in near) - best["mean"] if near else math.nan
        text = (
            f"- **{opt}**: best lr {best['lr']:g}, val {best['mean']:.4f} +- {best['std']:.4f} (std over "
            f"{best['seeds']} seeds; seed range {best['max'] - best['min']:.4f}); the next-best lr is "
            f"{gap:.4f} worse on the mean"
        )
        if default is not None:
            text += f"; the original's lr {default['lr']:g} gives {default['mean']:.4f}"
        lines.append(text + ".")
    best_member = best_row(rows)
    if best_member is not None:
        lines += [
            "",
            f"Best single member: {best_member['optimizer']} lr {best_member['lr']:g} seed {best_member['seed']}, "
            f"val_loss {best_member['val_loss']:.4f}.",
        ]
    return "\n".join(lines) + "\n"


def plot(path: Path, summary: list[dict]) -> None:
    """val_loss against lr per optimizer: the mean over seeds and the min-max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    top = max(s["max"] for s in summary if math.isfinite(s["max"]))
    for opt in LRS:
        pts = [s for s in summary if s["optimizer"] == opt and s["diverged"] == 0]
        xs = np.array([s["lr"] for s in pts])
        (line,) = ax.plot(xs, [s["mean"] for s in pts], marker="o", label=f"{opt} (mean over seeds)")
        ax.fill_between(xs, [s["min"] for s in pts], [s["max"] for s in pts], alpha=0.25, color=line.get_color())
        for s in summary:  # lrs where some seed diverged: an x at the top, with the count
            if s["optimizer"] == opt and s["diverged"]:
                ax.plot([s["lr"]], [top], marker="x", color=line.get_color())
                ax.annotate(f"{s['diverged']}/{s['seeds']} NaN", (s["lr"], top), fontsize=7, rotation=90,
                            xytext=(3, -40), textcoords="offset points")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("peak learning rate (linear decay to 0 over 1000 steps)")
    ax.set_ylabel("held-out NLL per token")
    ax.set_title("lr x seed, original recipe (band: seed min-max; x: seeds diverged)", fontsize=10)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    """Run the sweep and write the table, plot and rows."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--data", default=os.environ.get("MICROGPT_JAX_DATA"))
    p.add_argument("--out", default=str(ROOT / "experiments" / "results"))
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--overwrite", action="store_true", help="replace results already in the folder")
    args = p.parse_args(argv)
    names = ("lr_sweep.md", "lr_sweep.json", "lr_sweep.csv", "lr_sweep.png")
    if not args.overwrite:
        refuse_existing(Path(args.out), names, "pass --overwrite to replace them, or --out another folder")
    corpus = load_corpus(DataConfig(path=args.data))  # the split train uses: seed-42 shuffle, last 1000 held out
    base = GPTConfig(vocab_size=corpus.tokenizer.vocab_size)
    members = []
    for opt, lrs in LRS.items():
        grid = {"optimizer": [opt], "lr": lrs, "seed": list(range(args.seeds)), "steps": [args.steps]}
        members += sweep.grid_members(base, TrainConfig(), grid)
    members = [sweep.Member(i, m.config, m.train) for i, m in enumerate(members)]
    t0 = time.perf_counter()
    result = sweep.run_sweep(members, corpus.train_docs, corpus.val_docs, corpus.tokenizer)
    seconds = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = result.rows
    write_results(out, rows)
    for name in ("csv", "json"):  # the sweep's generic names, renamed for this experiment
        (out / f"results.{name}").replace(out / f"lr_sweep.{name}")
    summary = summarize(rows)
    cmd = "python experiments/lr_sweep.py" + (f" --seeds {args.seeds}" if args.seeds != 8 else "")
    text = report(summary, rows, seconds, len(members), cmd)
    atomic_write_text(out / "lr_sweep.md", text)
    plot(out / "lr_sweep.png", summary)
    print(text)
    print(json.dumps({"seconds": seconds, "members": len(members)}))
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(main))
