"""The progression that explains microgpt, measured: Step 0 bigram, Step 1 MLP and the GPT, on one split.

Every model is trained with its own recipe (the original's 1000 steps of one name each) and with a longer
batched one, the names shuffled with seed 42 and the last 1000 held out, as ``microgpt-jax train`` does.
Writes to ``--out`` (default experiments/results):

- ``steps.md``: model, parameters, optimizer, steps x batch, training seconds, held-out NLL per token, the
  ``microgpt-jax train`` command that reproduces each row, and samples;
- ``steps.png``: the (smoothed) training-loss curves of every run on one plot;
- ``weights.png``: the bigram's table of probabilities and the batched GPT's ``wte`` as heatmaps;
- ``steps.json``: the same figures, unrounded.

Regenerate with ``python experiments/steps.py`` (the corpus from --data or $MICROGPT_JAX_DATA, as for train).
``--quick`` runs every model for a handful of steps, to exercise the script (the test suite does).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import jax
import numpy as np

from microgpt_jax.config import DataConfig, GPTConfig, SampleConfig, TrainConfig
from microgpt_jax.data import Corpus, Tokenizer, load_corpus
from microgpt_jax.errors import exit_status
from microgpt_jax.io import atomic_write_bytes, atomic_write_text
from microgpt_jax.models import num_params
from microgpt_jax.run import train_run

RESULTS = Path(__file__).resolve().parent / "results"
GPT_SGD_LR = 0.4  # hand-written SGD on the GPT: 0.3-0.5 give the same held-out NLL; the MLP's 1.0 diverges


@dataclass(frozen=True)
class Run:
    """One row of the table: a model (architecture) and its recipe. ``steps == 0`` means built by counting."""

    label: str
    model: str = "gpt"
    n_layer: int = 1
    n_embd: int = 16
    n_head: int = 4
    optimizer: str = "adam"
    lr: float = 0.01
    steps: int = 1000
    batch_size: int = 1

    @property
    def slug(self) -> str:
        """The run directory's name under runs/."""
        return re.sub(r"[^a-z0-9]+", "-", self.label.lower()).strip("-")

    @property
    def config_kwargs(self) -> dict:
        return {"model": self.model, "n_layer": self.n_layer, "n_embd": self.n_embd, "n_head": self.n_head}

    def command(self) -> str:
        """The ``microgpt-jax train`` command that trains this run (same init, data order and numbers)."""
        parts = [f"microgpt-jax train --out runs/{self.slug} --model {self.model}"]
        if self.model == "bigram":
            return parts[0]
        flags = {"--n-layer": (self.n_layer, 1), "--n-head": (self.n_head, 4), "--n-embd": (self.n_embd, 16)}
        if self.model == "mlp":  # the MLP has no layers or heads
            del flags["--n-layer"], flags["--n-head"]
        parts += [f"{flag} {value}" for flag, (value, default) in flags.items() if value != default]
        parts.append(f"--optimizer {self.optimizer} --lr {self.lr:g} --steps {self.steps}")
        parts += [f"--batch-size {self.batch_size}"] * (self.batch_size != 1)
        return " ".join(parts)


RUNS = (
    Run("Step 0 bigram", model="bigram", steps=0, batch_size=0),
    Run("Step 1 MLP", model="mlp", optimizer="sgd", lr=1.0),
    Run("Step 1 MLP batched", model="mlp", steps=10_000, batch_size=64),
    Run("GPT microgpt.py", optimizer="adam", lr=0.01),
    Run("GPT hand SGD", optimizer="sgd", lr=GPT_SGD_LR),
    Run("GPT batched", steps=10_000, batch_size=64),
    Run("GPT 64x4 batched", n_layer=4, n_embd=64, n_head=4, lr=0.003, steps=5000, batch_size=32),
)


def quick_runs(runs: tuple[Run, ...]) -> tuple[Run, ...]:
    """The same rows at 5 steps, batch <= 2 and the default width and depth: exercises every code path in
    seconds (rows of the same shape share one compiled program)."""
    small = {"steps": 5, "n_layer": 1, "n_embd": 16}
    return tuple(r if r.steps == 0 else replace(r, batch_size=min(r.batch_size, 2), **small) for r in runs)


def smooth(losses: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over ``window`` steps, for readable curves of noisy batch-1 runs. Early on the
    window is a quarter of the steps so far, so the curve neither lags nor jumps on a log axis."""
    csum = np.cumsum(np.insert(losses, 0, 0.0))
    idx = np.arange(1, len(losses) + 1)
    lo = idx - np.minimum(window, (idx + 3) // 4)
    return (csum[idx] - csum[lo]) / (idx - lo)


def run_one(run: Run, data: DataConfig, runs_dir: Path, seed: int, num_samples: int) -> dict:
    """Train (or count) one run into ``runs_dir/<slug>`` with the run library, exactly as its command does;
    returns its figures, its per-step losses and its parameters."""
    t0 = time.perf_counter()
    result = train_run(
        runs_dir / run.slug,
        GPTConfig(**run.config_kwargs),
        TrainConfig(optimizer=run.optimizer, lr=run.lr, steps=max(run.steps, 1), batch_size=max(run.batch_size, 1),
                    seed=seed),
        data,
        sample=SampleConfig(num_samples=num_samples),
        verbose=False,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    n = num_params(result.params)
    print(f"{run.label:22s} {n:7,d} params  {seconds:7.1f} s  held-out NLL {result.val_loss:.4f}", flush=True)
    return {
        "label": run.label,
        "model": run.model,
        "params": n,
        "optimizer": "count (add-1)" if run.model == "bigram" else f"{run.optimizer} lr {run.lr:g}",
        "steps": run.steps,
        "batch_size": run.batch_size,
        "train_seconds": seconds,
        "val_nll": result.val_loss,
        "command": run.command(),
        "samples": result.samples,
        "_losses": np.zeros(0) if run.model == "bigram" else result.losses,
        "_params": result.params,
    }


def save_figure(fig, path: Path) -> None:
    """A matplotlib figure as PNG, written atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def plot_curves(results: list[dict], path: Path) -> None:
    """Smoothed training loss of every run against documents seen (log axis); the bigram as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for r in results:
        if r["model"] == "bigram":
            ax.axhline(r["val_nll"], color="gray", ls="--", lw=1, label=f"{r['label']} (held-out NLL)")
            continue
        losses = r["_losses"]
        docs_seen = (np.arange(len(losses)) + 1) * r["batch_size"]
        ax.plot(docs_seen, smooth(losses, max(1, len(losses) // 25)), lw=1.3, label=r["label"])
    ax.set_xscale("log")
    ax.set_xlabel("training documents seen (steps x batch)")
    ax.set_ylabel("training loss, NLL per token (moving average)")
    ax.set_ylim(1.7, 3.4)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("The progression on names: training loss")
    save_figure(fig, path)
    plt.close(fig)


def plot_weights(results: list[dict], tokenizer: Tokenizer, path: Path) -> None:
    """The bigram's P(next | current) and the batched GPT's token embedding ``wte``, as heatmaps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_label = {r["label"]: r for r in results}
    chars = [*tokenizer.uchars, "BOS"]
    probs = np.exp(np.asarray(by_label["Step 0 bigram"]["_params"]["wte"]))
    wte = np.asarray(by_label["GPT batched"]["_params"]["wte"])
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 6), gridspec_kw={"width_ratios": [probs.shape[1], wte.shape[1] + 6]})
    im = a.imshow(probs, cmap="Blues")
    a.set_title("Step 0 bigram: P(next | current)")
    a.set_xticks(range(len(chars)), chars, fontsize=7, rotation=90)
    a.set_yticks(range(len(chars)), chars, fontsize=7)
    a.set_xlabel("next token")
    a.set_ylabel("current token")
    fig.colorbar(im, ax=a, fraction=0.046)
    lim = float(np.abs(wte).max())
    im = b.imshow(wte, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    b.set_title("GPT batched: wte (token embeddings)")
    b.set_yticks(range(len(chars)), chars, fontsize=7)
    b.set_xlabel("embedding dimension")
    fig.colorbar(im, ax=b, fraction=0.046)
    save_figure(fig, path)
    plt.close(fig)


def markdown(results: list[dict], corpus: Corpus, command: str, total_seconds: float) -> str:
    """steps.md: every figure from ``results``."""
    lines = [
        "# The progression: bigram, MLP, GPT",
        "",
        f"Generated by `{command}` (all figures below come from that run; nothing is typed by hand).",
        f"Names shuffled with seed 42, {len(corpus.train_docs):,} for training, "
        f"the last {len(corpus.val_docs):,} held out; "
        "held-out NLL is the mean negative log-likelihood per predicted token (each name's characters and its "
        "closing BOS), as `microgpt-jax train` reports `val_loss`. Init N(0, 0.08) from seed 42; Adam is "
        "microgpt's (b1 0.85, b2 0.99); every learning rate decays linearly to 0.",
        f"Training seconds are wall-clock on this machine ({os.cpu_count()} CPU cores, {platform.machine()}, "
        f"jax {jax.__version__} on {jax.default_backend()}), compilation included, and the cores were shared with "
        f"other work while it ran: read them as rough. The whole script took {total_seconds:.0f} s.",
        "",
        "| model | parameters | optimizer | steps x batch | training s | held-out NLL / token | command |",
        "| --- | ---: | --- | --- | ---: | ---: | --- |",
    ]
    for r in results:
        recipe = "counted once" if r["steps"] == 0 else f"{r['steps']:,} x {r['batch_size']}"
        lines.append(
            f"| {r['label']} | {r['params']:,} | {r['optimizer']} | {recipe} | {r['train_seconds']:.1f} "
            f"| {r['val_nll']:.4f} | `{r['command']}` |"
        )
    best = min(results, key=lambda r: r["val_nll"])
    lines += [
        "",
        f"Lowest held-out NLL: {best['label']}, {best['val_nll']:.4f} after {best['train_seconds']:.0f} s of "
        f"training, with `{best['command']}`.",
        "",
        "![training loss of every run](steps.png)",
        "",
        "![the bigram's table and the GPT's wte](weights.png)",
        "",
        "## Samples (temperature 0.5, seed 42)",
        "",
    ]
    lines += [f"- {r['label']}: {', '.join(r['samples'])}" for r in results]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run every row, then write steps.md, steps.json, steps.png and weights.png."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--data", help="corpus (default: $MICROGPT_JAX_DATA, data/names.txt)")
    p.add_argument("--out", help="where the results go (default experiments/results; with --quick, nowhere)")
    p.add_argument("--runs", default="runs", help="where the run directories go (default runs/; --quick: a temp dir)")
    p.add_argument("--val-size", type=int, default=1000, help="hold out the last N names (default 1000)")
    p.add_argument("--quick", action="store_true", help="a handful of steps per run: checks the script, not models")
    p.add_argument("--num-samples", type=int, default=8)
    args = p.parse_args(argv)

    data = DataConfig(path=args.data, val_size=args.val_size)
    corpus = load_corpus(data)  # a bad corpus stops here, before anything is written
    out = Path(args.out) if args.out else (None if args.quick else RESULTS)
    runs = quick_runs(RUNS) if args.quick else RUNS
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="steps-runs-") as tmp:
        runs_dir = Path(tmp) if args.quick else Path(args.runs)
        results = [run_one(run, data, runs_dir, seed=42, num_samples=args.num_samples) for run in runs]
    total = time.perf_counter() - t0
    if out is None:
        print("--quick: no results written (pass --out DIR to keep them)")
        return 0

    command = "python experiments/steps.py" + (" --quick" if args.quick else "")
    if args.val_size != 1000:
        command += f" --val-size {args.val_size}"
    out.mkdir(parents=True, exist_ok=True)
    plot_curves(results, out / "steps.png")
    plot_weights(results, corpus.tokenizer, out / "weights.png")
    public = [{k: v for k, v in r.items() if not k.startswith("_")} for r in results]
    atomic_write_text(out / "steps.json", json.dumps({"command": command, "runs": public}, indent=2) + "\n")
    atomic_write_text(out / "steps.md", markdown(results, corpus, command, total))
    print(f"wrote {out}/steps.md, steps.json, steps.png, weights.png")
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(main))
