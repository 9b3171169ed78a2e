"""The guide's progression measured: Steps 0 to 5, each in the guide's recipe, plus longer batched variants.

Every row is ``microgpt-jax train --step N`` (with the flags of a variant beside it), trained through the run
library (``run.train_run``) on one split: the names shuffled with seed 42, the last 1000 held out, as
``microgpt-jax train`` does. Writes to ``--out`` (default experiments/results):

- ``steps.md``: step, model, parameters, recipe, steps x batch, training seconds, held-out NLL per token and
  the ``microgpt-jax train`` command of every row; the gradient check on the first training name; how far
  Step 1's (hand-written gradient) and Step 2's (jax.grad) losses are apart, in float32 and float64; samples;
- ``steps.png``: the loss curves: the guide's six steps (1000 steps of one name each), and the batched
  variants against documents seen;
- ``weights.png``: the bigram's table of probabilities and the batched GPT's ``wte`` as heatmaps;
- ``steps.json``: the same figures, unrounded.

Regenerate with ``python experiments/steps.py`` (the corpus from --data or $MICROGPT_JAX_DATA, as for train).
``--quick`` runs every row for a handful of steps, to exercise the script (the test suite does).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import platform
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from microgpt_jax.config import (
    GUIDE_TITLES,
    DataConfig,
    GPTConfig,
    GradCheckConfig,
    SampleConfig,
    TrainConfig,
    flag_of,
    step_configs,
)
from microgpt_jax.corpus.load import Corpus, load_corpus
from microgpt_jax.corpus.tokenizer import Tokenizer
from microgpt_jax.errors import exit_status
from microgpt_jax.files import atomic_write_bytes, atomic_write_text, refuse_existing
from microgpt_jax.model.dtypes import enable_x64
from microgpt_jax.model.init import init_params
from microgpt_jax.model.registry import num_params
from microgpt_jax.runs.fresh import train_run
from microgpt_jax.training.gradcheck import check_document
from microgpt_jax.training.loop import train

RESULTS = Path(__file__).resolve().parent / "results"
MODEL_FIELDS = {f.name for f in dataclasses.fields(GPTConfig)}
TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


@dataclass(frozen=True)
class Run:
    """One row of the table: the guide's step ``step`` with the config fields of ``flags`` given beside it (as
    flags of ``microgpt-jax train``, in that order). ``guide``: the step's own recipe, not a variant."""

    label: str
    step: int
    flags: tuple[tuple[str, Any], ...] = ()
    guide: bool = True

    @property
    def slug(self) -> str:
        """The run directory's name under runs/."""
        return re.sub(r"[^a-z0-9]+", "-", self.label.lower()).strip("-")

    def configs(self, num_samples: int = 20) -> tuple[GPTConfig, TrainConfig, SampleConfig]:
        """The configs ``command()`` trains (``config.step_configs``, as the CLI builds them)."""
        fields = dict(self.flags)
        model = {k: v for k, v in fields.items() if k in MODEL_FIELDS}
        train = {k: v for k, v in fields.items() if k in TRAIN_FIELDS}
        return step_configs(self.step, model, train, {"num_samples": num_samples})

    def command(self) -> str:
        """The ``microgpt-jax train`` command of this row (same init, data order and numbers)."""
        flags = [f"{flag_of(k)} {v:g}" if isinstance(v, float) else f"{flag_of(k)} {v}" for k, v in self.flags]
        return " ".join([f"microgpt-jax train --step {self.step} --out runs/{self.slug}", *flags])


RUNS = (
    *(Run(f"Step {n} {title}", n) for n, title in GUIDE_TITLES.items()),
    Run("Step 0 counted at once", 0, (("count", "all"),), guide=False),
    Run("Step 2 batched", 2, (("optimizer", "adam"), ("lr", 0.01), ("steps", 10_000), ("batch_size", 64)),
        guide=False),
    Run("Step 5 batched", 5, (("steps", 10_000), ("batch_size", 64)), guide=False),
    Run("Step 5 64x4 batched", 5,
        (("n_layer", 4), ("n_embd", 64), ("lr", 0.003), ("steps", 5000), ("batch_size", 32)), guide=False),
)  # fmt: skip


def quick_runs(runs: tuple[Run, ...]) -> tuple[Run, ...]:
    """The same rows at 5 steps of one document and the default width and depth: exercises every code path in
    seconds (a variant then shares its step's compiled program). Counting all at once has no steps."""
    small = {"n_layer": 1, "n_embd": 16, "batch_size": 1}
    quick = []
    for r in runs:
        fields = dict(r.flags)
        if fields.get("count") != "all":
            fields = {**{k: small.get(k, v) for k, v in fields.items()}, "steps": 5}
        quick.append(dataclasses.replace(r, flags=tuple(fields.items())))
    return tuple(quick)


def recipe(train: TrainConfig, counted: bool) -> str:
    """The optimizer column: how the row learns."""
    if counted:
        return f"count, add-{train.smoothing:g} ({'one name per step' if train.count == 'online' else 'all at once'})"
    how = {"analytic": ", hand-written gradient", "autodiff": ", jax.grad"}[train.grad]
    return f"{train.optimizer} lr {train.lr:g}{how}"


def smooth(losses: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over ``window`` steps, for readable curves of noisy batch-1 runs. Early on the
    window is a quarter of the steps so far, so the curve neither lags nor jumps on a log axis."""
    csum = np.cumsum(np.insert(losses, 0, 0.0))
    idx = np.arange(1, len(losses) + 1)
    lo = idx - np.minimum(window, (idx + 3) // 4)
    return (csum[idx] - csum[lo]) / (idx - lo)


def run_one(run: Run, data: DataConfig, runs_dir: Path, num_samples: int) -> dict:
    """Train (or count) one row into ``runs_dir/<slug>`` with the run library, exactly as its command does;
    returns its figures, its per-step losses and its parameters."""
    model, train, sample = run.configs(num_samples)
    t0 = time.perf_counter()
    result = train_run(runs_dir / run.slug, model, train, data, sample=sample, step=run.step, verbose=False)
    seconds = time.perf_counter() - t0
    n = num_params(result.params)
    counted = model.model == "bigram"
    all_at_once = counted and train.count == "all"
    print(f"{run.label:24s} {n:7,d} params  {seconds:7.1f} s  held-out NLL {result.val_loss:.4f}", flush=True)
    return {
        "label": run.label,
        "step": run.step,
        "guide": run.guide,
        "model": model.model,
        "params": n,
        "optimizer": recipe(train, counted),
        "steps": 0 if all_at_once else train.steps,
        "batch_size": 0 if all_at_once else train.batch_size,
        "train_seconds": seconds,
        "val_nll": result.val_loss,
        "command": run.command(),
        "samples": result.samples,
        "_losses": np.zeros(0) if all_at_once else result.losses,
        "_params": result.params,
    }


def step1_vs_step2(corpus: Corpus, steps: int) -> float:
    """max |loss| difference between Step 1 (hand-written gradient) and Step 2 (jax.grad) over ``steps`` steps in
    float64 (what ``--x64`` runs; the training alone, ``train.train``, no run directory). x64 (process-wide) is
    set back as it was after."""
    losses, was = {}, bool(jax.config.jax_enable_x64)
    try:
        enable_x64(True)
        for step in (1, 2):
            model, tc, _ = step_configs(step, train={"x64": True, "steps": steps})
            model = dataclasses.replace(model, vocab_size=corpus.tokenizer.vocab_size)
            tokens_NxT1, n_N, _, _ = corpus.encoded(model.block_size)
            params = init_params(jax.random.key(tc.seed), model, tc.init_std, tc.init_zero_out, jnp.float64)
            losses[step] = train(params, tokens_NxT1, n_N, model, tc)[2]
    finally:
        enable_x64(was)
    return float(np.max(np.abs(losses[1] - losses[2])))


def save_figure(fig, path: Path) -> None:
    """A matplotlib figure as PNG, written atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def plot_curves(results: list[dict], path: Path) -> None:
    """Left: the guide's steps, moving-average training loss against step (the guide's "compare the loss curves"
    view). Right: the batched variants against documents seen (log axis), with Step 5 for reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5), sharey=True)
    for i, r in enumerate(results):
        losses, color = r["_losses"], f"C{i}"  # a row keeps its color in both panels
        if r["guide"]:
            dashed = r["step"] == 2  # Step 2 lies on Step 1: dashed, so both show
            window = max(1, min(100, len(losses) // 10))
            left.plot(np.arange(len(losses)), smooth(losses, window), lw=1.3, ls="--" if dashed else "-",
                      color=color, label=r["label"])  # fmt: skip
        if not r["guide"] or r["step"] == 5:
            if len(losses) == 0:  # counted all at once: its held-out NLL as a line
                right.axhline(r["val_nll"], color="gray", ls=":", lw=1, label=f"{r['label']} (held-out NLL)")
                continue
            docs_seen = (np.arange(len(losses)) + 1) * r["batch_size"]
            right.plot(docs_seen, smooth(losses, max(1, len(losses) // 25)), lw=1.3, color=color, label=r["label"])
    left.set_xlabel("step (one name each)")
    left.set_ylabel("training loss, NLL per token (moving average)")
    left.set_title("The guide's steps, each in its own recipe: 1000 steps of one name")
    right.set_xscale("log")
    right.set_xlabel("training documents seen (steps x batch)")
    right.set_title("Longer, batched variants")
    for ax in (left, right):
        ax.set_ylim(1.7, 3.4)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(fig, path)
    plt.close(fig)


def plot_weights(results: list[dict], tokenizer: Tokenizer, path: Path) -> None:
    """The bigram's P(next | current), counted over every training name, and the batched GPT's token embedding
    ``wte``, as heatmaps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_label = {r["label"]: r for r in results}
    chars = [*tokenizer.uchars, "BOS"]
    probs = np.exp(np.asarray(by_label["Step 0 counted at once"]["_params"]["wte"]))
    wte = np.asarray(by_label["Step 5 batched"]["_params"]["wte"])
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 6), gridspec_kw={"width_ratios": [probs.shape[1], wte.shape[1] + 6]})
    im = a.imshow(probs, cmap="Blues")
    a.set_title("Step 0, every training name counted: P(next | current)")
    a.set_xticks(range(len(chars)), chars, fontsize=7, rotation=90)
    a.set_yticks(range(len(chars)), chars, fontsize=7)
    a.set_xlabel("next token")
    a.set_ylabel("current token")
    fig.colorbar(im, ax=a, fraction=0.046)
    lim = float(np.abs(wte).max())
    im = b.imshow(wte, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    b.set_title("Step 5 batched: wte (token embeddings)")
    b.set_yticks(range(len(chars)), chars, fontsize=7)
    b.set_xlabel("embedding dimension")
    fig.colorbar(im, ax=b, fraction=0.046)
    save_figure(fig, path)
    plt.close(fig)


def markdown(results: list[dict], extra: dict, corpus: Corpus, command: str, total_seconds: float) -> str:
    """steps.md: every figure from ``results`` and ``extra`` (the gradient check, Step 1 against Step 2)."""
    lines = [
        "# The guide's steps, measured",
        "",
        f"Generated by `{command}` (all figures below come from that run; nothing is typed by hand).",
        f"Names shuffled with seed 42, {len(corpus.train_docs):,} for training, "
        f"the last {len(corpus.val_docs):,} held out; "
        "held-out NLL is the mean negative log-likelihood per predicted token (each name's characters and its "
        "closing BOS), as `microgpt-jax train` reports `val_loss`. Init N(0, 0.08) from seed 42; Adam is "
        "microgpt's (b1 0.85, b2 0.99); every learning rate decays linearly to 0. A row whose recipe is the "
        "guide's is its step's bare `--step N`; the batched variants give flags beside it.",
        f"Training seconds are wall-clock on this machine ({os.cpu_count()} CPU cores, {platform.machine()}, "
        f"jax {jax.__version__} on {jax.default_backend()}), compilation included, and the cores were shared with "
        f"other work while it ran: read them as rough. The whole script took {total_seconds:.0f} s.",
        "",
        "| row | model | parameters | optimizer | steps x batch | training s | held-out NLL / token | command |",
        "| --- | --- | ---: | --- | --- | ---: | ---: | --- |",
    ]
    for r in results:
        recipe_ = "counted once" if r["steps"] == 0 else f"{r['steps']:,} x {r['batch_size']}"
        lines.append(
            f"| {r['label']} | {r['model']} | {r['params']:,} | {r['optimizer']} | {recipe_} "
            f"| {r['train_seconds']:.1f} | {r['val_nll']:.4f} | `{r['command']}` |"
        )
    by_step = {r["step"]: r for r in results if r["guide"]}
    loss_1, loss_2 = by_step[1]["_losses"], by_step[2]["_losses"]
    check = extra["gradient_check"]
    lines += [
        "",
        "![loss curves of every step](steps.png)",
        "",
        "## Step 1 against Step 2",
        "",
        f"Gradient check (`microgpt-jax gradcheck`, float64, training name 0, {check['doc']!r}): "
        f"`{check['line']}`; the largest |numerical - analytic| is {check['max_diff']:.2e} (forward difference, "
        f"eps 1e-5) and |analytic - jax.grad| {check['max_diff_jax_grad']:.2e}.",
        "",
        f"Training with the hand-written gradient (Step 1) and with jax.grad (Step 2), the {len(loss_1):,} per-step "
        f"losses differ by at most {float(np.max(np.abs(loss_1 - loss_2))):.2e} in float32 (the rows above) and "
        f"{extra['step1_vs_step2_x64']:.2e} in float64 (`--x64`).",
        "",
        "![the bigram's table and the GPT's wte](weights.png)",
        "",
        "## Samples (seed 42; temperature 1 for Step 0, as the guide samples its table; 0.5 for the others)",
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
    p.add_argument("--overwrite", action="store_true", help="replace results already in the folder")
    args = p.parse_args(argv)

    data = DataConfig(path=args.data, val_size=args.val_size)
    corpus = load_corpus(data)  # a bad corpus stops here, before anything is written
    out = Path(args.out) if args.out else (None if args.quick else RESULTS)
    if not args.overwrite:
        refuse_existing(
            out,
            ("steps.md", "steps.json", "steps.png", "weights.png"),
            "pass --overwrite to replace them, or --out another folder",
        )
    runs = quick_runs(RUNS) if args.quick else RUNS
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="steps-runs-") as tmp:
        runs_dir = Path(tmp) if args.quick else Path(args.runs)
        results = [run_one(run, data, runs_dir, num_samples=args.num_samples) for run in runs]
        model, train, _ = step_configs(1)
        check = check_document(data, model, train, GradCheckConfig())
        steps = len(next(r for r in results if r["step"] == 1)["_losses"])
        extra = {
            "gradient_check": {"doc": check.doc, "line": check.lines()[2], **check.result},
            "step1_vs_step2_x64": step1_vs_step2(corpus, steps),
        }
    total = time.perf_counter() - t0
    print(check.lines()[2])
    print(f"Step 1 vs Step 2 in float64: max |loss difference| {extra['step1_vs_step2_x64']:.2e}")
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
    doc = {"command": command, "runs": public, **extra}
    atomic_write_text(out / "steps.json", json.dumps(doc, indent=2) + "\n")
    atomic_write_text(out / "steps.md", markdown(results, extra, corpus, command, total))
    print(f"wrote {out}/steps.md, steps.json, steps.png, weights.png")
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(main))
