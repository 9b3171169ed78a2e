"""A staged hyperparameter search with ``microgpt-jax sweep`` for the best names model this CPU trains in minutes.

The data: names.txt after microgpt's shuffle (seed 42). Its last 1,000 names are the test set, held out from the
whole search; the 1,000 before them are the search's validation set, and the search trains on the rest. Every
choice is made on the validation loss; the test loss is computed once, for the winner only.

- Stage 1, shape and learning rate: width x depth x lr at a short budget (a few epochs).
- Stage 2, the recipe around stage 1's best: dropout x schedule (AdamW's weight decay and a warm-up on), trained
  as long as the winner will be, the steps set so the stage fits its share of the time budget.
- The winner: the same recipe trained by one ``microgpt-jax train`` command on all the training names (search
  training + validation), its held-out loss on the test names, recomputed by ``numpy_nll.py`` (numpy, no JAX).

    python experiments/best_names.py --data /path/to/names.txt            # about an hour on 2 cores
    python experiments/best_names.py --data /path/to/names.txt --quick    # every stage in a minute, no results

Round one of the search (round two: ``best_names2.py``). Writes ``experiments/results/best_names_round1.md``,
``best_names_round1.json`` and ``best_names_round1.png`` (not with --quick);
each stage's sweep directory and the winner's run go under ``--work``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEARCH_VAL = 1000  # validation names carved from the training names
TEST = 1000  # the held-out names: the default split of microgpt-jax train

STAGE1 = {"n_embd": [64, 96], "n_layer": [2, 4], "lr": [0.003, 0.01], "batch_size": [64], "steps": [2000]}
STAGE2 = {"dropout": [0.0, 0.1, 0.2, 0.3], "schedule": ["linear", "cosine"], "weight_decay": [0.1]}
STAGE2_SECONDS = 35 * 60  # stage 2's share of the hour
WINNER_SECONDS = 9 * 60  # the winner's training must stay under 10 minutes
QUICK1 = {"n_embd": [16, 32], "n_layer": [1], "lr": [0.01], "batch_size": [8], "steps": [60]}
QUICK2 = {"dropout": [0.0, 0.1], "schedule": ["cosine"], "weight_decay": [0.1]}


def python_cmd(*args: str) -> list[str]:
    """The ``microgpt-jax`` command line run with this Python."""
    return [sys.executable, "-m", "microgpt_jax", *args]


def flags(grid: dict) -> list[str]:
    """Sweep flags of a grid: ``--n-embd 64,96`` ..."""
    out = []
    for k, values in grid.items():
        out += ["--" + k.replace("_", "-"), ",".join(str(v) for v in values)]
    return out


def run(cmd: list[str], log: Path) -> float:
    """Run a command, its output to ``log``; its wall seconds. A failure stops the search with the log's tail."""
    t0 = time.perf_counter()
    with open(log, "w") as f:
        status = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=False).returncode
    seconds = time.perf_counter() - t0
    if status:
        tail = log.read_text().strip().splitlines()[-3:]
        sys.exit(f"error: {shlex.join(cmd)} failed ({status}): {' | '.join(tail)}")
    return seconds


def split_corpus(data: Path, work: Path) -> Path:
    """The search's corpus: the training names in microgpt's order, the last SEARCH_VAL of them for validation
    (the file is read with --no-shuffle --val-size SEARCH_VAL; the test names are not in it)."""
    from microgpt_jax import DataConfig, load_corpus

    corpus = load_corpus(DataConfig(path=str(data), val_size=TEST))
    path = work / "search_names.txt"
    path.write_text("\n".join(corpus.train_docs) + "\n", encoding="utf-8")
    return path


def sweep(
    name: str, grid: dict, base: dict, corpus: Path, work: Path, reuse: bool = False
) -> tuple[list[dict], float, list[str]]:
    """One stage: ``microgpt-jax sweep`` over ``grid`` (with ``base`` fixed); its rows, wall seconds, command.
    ``reuse``: the stage's results already in ``work`` (an earlier run's) instead of running it again; its
    seconds are then the ones that run recorded, else its groups' wall time from the rows."""
    out = work / name
    args = ["sweep", "--out", str(out), "--data", str(corpus), "--no-shuffle", "--val-size", str(SEARCH_VAL)]
    args += [*flags({**{k: [v] for k, v in base.items()}, **grid}), "--no-progress"]
    recorded = work / f"{name}.seconds"
    if reuse and (out / "results.json").is_file():
        rows = json.loads((out / "results.json").read_text())
        if recorded.is_file():
            return rows, float(recorded.read_text()), ["microgpt-jax", *args]
        walls = {r["group"]: r["seconds"] * sum(x["group"] == r["group"] for x in rows) for r in rows}
        return rows, sum(walls.values()), ["microgpt-jax", *args]
    seconds = run(python_cmd(*args), work / f"{name}.log")
    recorded.write_text(f"{seconds:.1f}\n")
    rows = json.loads((out / "results.json").read_text())
    return rows, seconds, ["microgpt-jax", *args]


def best(rows: list[dict]) -> dict:
    """The member with the lowest validation loss among those that did not diverge."""
    ok = [r for r in rows if not r["diverged"] and r["val_loss"] is not None]
    if not ok:
        sys.exit("error: every member diverged: lower the stage's learning rates")
    return min(ok, key=lambda r: r["val_loss"])


def group_rate(rows: list[dict]) -> tuple[dict, float]:
    """The largest shape group (most parameters x members) and its member-steps per second, compile and
    evaluation included (a row's seconds are its group's wall time over the group's members)."""
    groups: dict[int, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["group"], []).append(r)

    def size(g: list[dict]) -> float:
        r = g[0]
        return r["n_layer"] * r["n_embd"] ** 2 * r["batch_size"] * len(g)

    largest = max(groups.values(), key=size)
    r = largest[0]
    return {k: r[k] for k in ("n_embd", "n_layer", "batch_size")} | {"members": len(largest)}, r["steps"] / r["seconds"]


def train_flags(row: dict, steps: int, warmup: int) -> list[str]:
    """The ``train`` flags of a sweep member's architecture and recipe."""
    keys = ("n_layer", "n_embd", "n_head", "block_size", "lr", "batch_size", "dropout", "weight_decay", "schedule")
    out = []
    for k in keys:
        out += ["--" + k.replace("_", "-"), str(row[k])]
    return [*out, "--steps", str(steps), "--warmup", str(warmup)]


def score_winner(work: Path, data: Path) -> tuple[float, float, list[str]]:
    """The winner's run in ``work/winner``: its last held-out loss, the same recomputed by ``numpy_nll.py`` (numpy,
    no JAX), and the samples its command printed (``work/winner.log``)."""
    metrics = [json.loads(x) for x in (work / "winner" / "metrics.jsonl").read_text().splitlines()]
    test_loss = [r["val_loss"] for r in metrics if "val_loss" in r][-1]
    numpy_loss = float(
        subprocess.run(
            [sys.executable, str(HERE / "numpy_nll.py"), "--params", str(work / "winner" / "params.safetensors"),
             "--data", str(data)], capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    log = (work / "winner.log").read_text().splitlines()
    return test_loss, numpy_loss, [x.split(": ", 1)[1] for x in log if x.startswith("sample ")]


def curve_plot(metrics: Path, path: Path, title: str) -> None:
    """Training loss (mean of each 200 steps) and the test loss at each evaluation of the winner's run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
    losses = [(r["step"], r["loss"]) for r in lines if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in lines if "val_loss" in r]
    k = 200
    xs = [losses[i + k - 1][0] for i in range(0, len(losses) - k + 1, k)]
    ys = [sum(v for _, v in losses[i : i + k]) / k for i in range(0, len(losses) - k + 1, k)]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(xs, ys, label=f"training loss (mean of {k} steps, dropout on)")
    ax.plot([s for s, _ in val], [v for _, v in val], marker="o", label="test loss (the held-out 1,000)")
    ax.axhline(1.90, color="grey", linestyle="--", linewidth=0.8, label="target 1.90")
    ax.set_xlabel("step")
    ax.set_ylabel("NLL per character")
    ax.set_ylim(1.7, 2.6)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def anchors(test_loss: float) -> list[str]:
    """The published figures on names.txt beside ours, each with its split (they are not the same split)."""
    return [
        "## Beside the published figures (held-out NLL per character on names.txt; the splits differ)",
        "",
        "| model | parameters | held-out NLL | split |",
        "| --- | ---: | ---: | --- |",
        f"| this search's winner | see above | **{test_loss:.4f}** | "
        "last 1,000 names after microgpt's seed-42 shuffle |",
        "| makemore's default transformer, 4 layers x 64 | about 200K | about 1.92 (test) | 1,000 test names by "
        "`torch.randperm`, seed 3407 |",
        "| Zero to Hero part 5, WaveNet-style MLP | 76K | 1.9937 (dev) | the lecture's 80/10/10 split |",
        "| a public replication, padded names, masked loss, 64 wide, 4 heads, 5K steps | | 1.92 | its own split |",
        "| the same with dropout, 20K steps | | 1.85 | its own split |",
        "| this project before: 64 wide x 4 layers, 5,000 x 32, Adam 0.003 | 201,088 | 1.9403 | ours |",
        "",
    ]


def table(rows: list[dict], keys: list[str]) -> list[str]:
    """A markdown table of a stage's members, best first."""
    out = ["| " + " | ".join([*keys, "val_loss", "train_loss", "s/member"]) + " |"]
    out.append("|" + " --- |" * len(keys) + " ---: | ---: | ---: |")
    for r in sorted(rows, key=lambda r: (r["val_loss"] is None, r["val_loss"] or 0)):
        vl = "diverged" if r["diverged"] or r["val_loss"] is None else f"{r['val_loss']:.4f}"
        out.append(
            "| " + " | ".join(str(r[k]) for k in keys) + f" | {vl} | {r['train_loss']:.4f} | {r['seconds']:.0f} |"
        )
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.environ.get("MICROGPT_JAX_DATA"), help="names.txt ($MICROGPT_JAX_DATA)")
    p.add_argument("--work", default="runs/best_names", help="where the stages' sweeps and the winner's run go")
    p.add_argument("--results", default=str(HERE / "results"), help="where best_names.md/.json/.png go")
    p.add_argument("--quick", action="store_true", help="tiny stages: checks the pipeline, writes no results")
    p.add_argument("--overwrite", action="store_true", help="replace results already in the folder")
    args = p.parse_args()
    names = ("best_names_round1.md", "best_names_round1.json", "best_names_round1.png")
    if not args.quick and not args.overwrite and any((Path(args.results) / n).exists() for n in names):
        print(
            f"error: {args.results} already holds best_names results: pass --overwrite to replace them", file=sys.stderr
        )
        return 2
    if not args.data or not Path(args.data).is_file():
        print("error: names.txt not found: pass --data PATH or set MICROGPT_JAX_DATA", file=sys.stderr)
        return 2
    work = Path(args.work)
    if work.exists() and any(work.iterdir()):
        print(f"error: {work} is not empty: pass another --work or remove it", file=sys.stderr)
        return 2
    work.mkdir(parents=True, exist_ok=True)
    data = Path(args.data).resolve()
    t_start = time.perf_counter()
    corpus = split_corpus(data, work)

    grid1, grid2 = (QUICK1, QUICK2) if args.quick else (STAGE1, STAGE2)
    base1 = {"n_head": 4, "block_size": 16}
    rows1, s1, cmd1 = sweep("stage1", grid1, base1, corpus, work)
    b1 = best(rows1)
    shape1, rate1 = group_rate(rows1)
    print(f"stage 1: {len(rows1)} members in {s1:.0f} s; best {b1['n_embd']} x {b1['n_layer']}, lr {b1['lr']}: "
          f"val {b1['val_loss']:.4f}", flush=True)  # fmt: skip

    # stage 2 trains the best shape at the member-steps per second stage 1 measured for it on both cores (compile
    # included, so a little low; a row's seconds are its group's wall time over its members), in groups of its
    # schedules, each padded to a whole number of members per core. Its step count fills stage 2's time and keeps
    # the winner's training (one member on both cores, counted as fast as one member on one core) under its cap.
    rate = b1["steps"] / b1["seconds"]
    per_group = math.prod(len(v) for k, v in grid2.items() if k != "schedule")
    cores = os.cpu_count() or 1  # the sweep makes a device per core and pads each group to a multiple
    slots = len(grid2["schedule"]) * -(-per_group // cores) * cores
    steps2 = int(min(STAGE2_SECONDS * rate / slots, WINNER_SECONDS * rate / 2) // 500 * 500)
    steps2 = 100 if args.quick else max(steps2, 500)
    warmup = steps2 // 20
    base2 = {k: b1[k] for k in ("n_embd", "n_layer", "n_head", "block_size", "lr", "batch_size")}
    rows2, s2, cmd2 = sweep("stage2", grid2, {**base2, "steps": steps2, "warmup": warmup}, corpus, work)
    b2 = best(rows2)
    shape2, rate2 = group_rate(rows2)
    print(f"stage 2: {len(rows2)} members x {steps2} steps in {s2:.0f} s; best dropout {b2['dropout']}, "
          f"{b2['schedule']}: val {b2['val_loss']:.4f}", flush=True)  # fmt: skip
    search_seconds = time.perf_counter() - t_start

    winner_args = ["train", "--out", str(work / "winner"), "--data", str(data), *train_flags(b2, steps2, warmup)]
    winner_args += ["--eval-every", str(max(steps2 // 10, 1))]
    seconds_w = run(python_cmd(*winner_args), work / "winner.log")
    test_loss, numpy_loss, samples = score_winner(work, data)
    print(f"winner: test loss {test_loss:.4f} (numpy {numpy_loss:.4f}) in {seconds_w:.0f} s", flush=True)
    if args.quick:
        assert abs(test_loss - numpy_loss) < 1e-4, (test_loss, numpy_loss)
        print(f"quick run finished in {time.perf_counter() - t_start:.0f} s; nothing written to {args.results}")
        return 0

    command = "microgpt-jax " + shlex.join(["train", "--out", "runs/best_names", *train_flags(b2, steps2, warmup)])
    from safetensors.numpy import load_file

    params = sum(a.size for a in load_file(work / "winner" / "params.safetensors").values())
    C, L = b2["n_embd"], b2["n_layer"]
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "command": command,
        "test_loss": test_loss,
        "test_loss_numpy": numpy_loss,
        "val_loss_search": b2["val_loss"],
        "train_seconds": round(seconds_w, 1),
        "search_seconds": round(search_seconds, 1),
        "parameters": params,
        "stage1_largest_group": {**shape1, "member_steps_per_s": round(rate1, 1)},
        "stage2_largest_group": {**shape2, "member_steps_per_s": round(rate2, 1)},
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "date": date.today().isoformat(),
        "samples": samples,
    }
    (out / "best_names_round1.json").write_text(json.dumps(summary, indent=1) + "\n")
    title = f"{C} wide x {L} layers, dropout {b2['dropout']}, {b2['schedule']}: test {test_loss:.4f}"
    curve_plot(work / "winner" / "metrics.jsonl", out / "best_names_round1.png", title)
    md = [
        "# Best names, round 1: the best names model a staged sweep finds in an hour on this CPU",
        "",
        f"Made by `python experiments/best_names.py --data names.txt` on {summary['date']} "
        f"({summary['machine']}). Search {search_seconds / 60:.1f} min, winner's training {seconds_w / 60:.1f} min.",
        "",
        "## The winner",
        "",
        "```bash",
        command,
        "```",
        "",
        f"- **test loss {test_loss:.4f}** (NLL per character on the last 1,000 names after microgpt's seed-42 "
        f"shuffle; `experiments/numpy_nll.py` recomputes {numpy_loss:.4f} in numpy); {params:,} parameters",
        f"- validation loss in the search {b2['val_loss']:.4f} (the 1,000 names before the test names)",
        f"- training {seconds_w:.0f} s wall for the whole command (start-up, compile, {steps2} steps, "
        "evaluations, samples)",
        "",
        "![loss curves](best_names_round1.png)",
        "",
        "Samples (temperature 0.5): " + ", ".join(samples),
        "",
        *anchors(test_loss),
        "## Stage 1: shape and learning rate",
        "",
        f"`{shlex.join(cmd1)}` ({s1:.0f} s; largest group {shape1}: "
        f"{rate1:.1f} member-steps/s, compile and evaluation included)",
        "",
        *table(rows1, ["n_embd", "n_layer", "lr", "batch_size", "steps"]),
        "",
        "## Stage 2: the recipe, at the winner's length",
        "",
        f"`{shlex.join(cmd2)}` ({s2:.0f} s; largest group {shape2}: {rate2:.1f} member-steps/s)",
        "",
        *table(rows2, ["dropout", "schedule", "weight_decay", "warmup", "steps"]),
        "",
    ]
    (out / "best_names_round1.md").write_text("\n".join(md))
    print(f"wrote {out}/best_names_round1.md, best_names_round1.json, best_names_round1.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
