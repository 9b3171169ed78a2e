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
import time
from dataclasses import dataclass, replace
from pathlib import Path

import jax
import numpy as np

from microgpt_jax.bigram import bigram_params, count_bigrams
from microgpt_jax.config import GPTConfig, TrainConfig
from microgpt_jax.data import Tokenizer, encode_docs, load_docs, resolve_data_path, shuffle_docs, split_docs
from microgpt_jax.errors import exit_status
from microgpt_jax.io import atomic_write_bytes, atomic_write_text
from microgpt_jax.model import num_params
from microgpt_jax.models import init_params
from microgpt_jax.sample import sample
from microgpt_jax.train import evaluate, train

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
    def config_kwargs(self) -> dict:
        return {"model": self.model, "n_layer": self.n_layer, "n_embd": self.n_embd, "n_head": self.n_head}

    def command(self) -> str:
        """The ``microgpt-jax train`` command that trains this run (same init, data order and numbers)."""
        slug = re.sub(r"[^a-z0-9]+", "-", self.label.lower()).strip("-")
        parts = [f"microgpt-jax train --out runs/{slug} --model {self.model}"]
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


def run_one(run: Run, data: dict, seed: int, num_samples: int) -> dict:
    """Train (or count) one run; returns its figures, its per-step losses and its parameters."""
    config = GPTConfig(vocab_size=data["tokenizer"].vocab_size, **run.config_kwargs)
    t0 = time.perf_counter()
    if run.model == "bigram":
        params = bigram_params(count_bigrams(data["train_tokens"], data["train_n"], config.vocab_size), 1.0)
        jax.block_until_ready(params)
        losses = np.zeros(0)
    else:
        tc = TrainConfig(optimizer=run.optimizer, lr=run.lr, steps=run.steps, batch_size=run.batch_size, seed=seed)
        params = init_params(jax.random.key(tc.seed), config, tc.init_std)
        params, _, losses = train(params, data["train_tokens"], data["train_n"], config, tc)
    seconds = time.perf_counter() - t0
    val = evaluate(params, data["val_tokens"], data["val_n"], config)
    key = jax.random.fold_in(jax.random.key(seed), 1)
    names = sample(params, config, data["tokenizer"], key, num_samples, 0.5)
    print(f"{run.label:22s} {num_params(params):7,d} params  {seconds:7.1f} s  held-out NLL {val:.4f}", flush=True)
    return {
        "label": run.label,
        "model": run.model,
        "params": num_params(params),
        "optimizer": "count (add-1)" if run.model == "bigram" else f"{run.optimizer} lr {run.lr:g}",
        "steps": run.steps,
        "batch_size": run.batch_size,
        "train_seconds": seconds,
        "val_nll": val,
        "command": run.command(),
        "samples": names,
        "_losses": losses,
        "_params": params,
    }


def load_data(path: str | None, val_size: int, block_size: int = 16) -> dict:
    """The corpus as train does it: shuffle with seed 42, hold out the last ``val_size``, encode once."""
    docs = shuffle_docs(load_docs(resolve_data_path(path)), 42)
    tokenizer = Tokenizer.from_docs(docs)
    train_docs, val_docs = split_docs(docs, val_size)
    train_tokens, train_n = encode_docs(train_docs, tokenizer, block_size)
    val_tokens, val_n = encode_docs(val_docs, tokenizer, block_size)
    return {
        "tokenizer": tokenizer,
        "n_train": len(train_docs),
        "n_val": len(val_docs),
        "train_tokens": train_tokens,
        "train_n": train_n,
        "val_tokens": val_tokens,
        "val_n": val_n,
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


def markdown(results: list[dict], data: dict, command: str, total_seconds: float) -> str:
    """steps.md: every figure from ``results``."""
    lines = [
        "# The progression: bigram, MLP, GPT",
        "",
        f"Generated by `{command}` (all figures below come from that run; nothing is typed by hand).",
        f"Names shuffled with seed 42, {data['n_train']:,} for training, the last {data['n_val']:,} held out; "
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
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="corpus (default: $MICROGPT_JAX_DATA, data/names.txt)")
    p.add_argument("--out", default=str(RESULTS), help="where the results go (default experiments/results)")
    p.add_argument("--val-size", type=int, default=1000, help="hold out the last N names (default 1000)")
    p.add_argument("--quick", action="store_true", help="a handful of steps per run: checks the script, not models")
    p.add_argument("--num-samples", type=int, default=8)
    args = p.parse_args(argv)

    data = load_data(args.data, args.val_size)  # a bad corpus stops here, before anything is written
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = quick_runs(RUNS) if args.quick else RUNS
    t0 = time.perf_counter()
    results = [run_one(run, data, seed=42, num_samples=args.num_samples) for run in runs]
    total = time.perf_counter() - t0

    command = "python experiments/steps.py" + (" --quick" if args.quick else "")
    if args.val_size != 1000:
        command += f" --val-size {args.val_size}"
    plot_curves(results, out / "steps.png")
    plot_weights(results, data["tokenizer"], out / "weights.png")
    public = [{k: v for k, v in r.items() if not k.startswith("_")} for r in results]
    atomic_write_text(out / "steps.json", json.dumps({"command": command, "runs": public}, indent=2) + "\n")
    atomic_write_text(out / "steps.md", markdown(results, data, command, total))
    print(f"wrote {out}/steps.md, steps.json, steps.png, weights.png")
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(main))
