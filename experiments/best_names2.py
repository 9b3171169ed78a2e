"""Best names, round 2: a staged search that uses round one's lessons and the whole ten-minute training budget.

Round one (``best_names.py``, results in ``results/best_names_round1.md``) found 4 layers x 96 with dropout 0.1,
weight decay 0.1 and a linear schedule best, trained 5,500 steps in 7 minutes, at a time when dropout doubled a
step's cost; its table showed dropout 0.1 ahead of 0.0 and 0.2 at that length, the larger model ahead, and
the winner still improving when it stopped. Dropout now costs about its arithmetic, so round two trains
longer and wider in the same budget, where more dropout has room to pay:

- Stage 1, width x dropout: 4 layers of 96 or 128, dropout 0.1 or 0.2 (lr 0.003, batch 64, weight decay
  0.1, linear decay with a 5% warm-up), at a third of the winner's length.
- The rate: the stage-1 best's shape, timed by two ``microgpt-jax train`` runs of different lengths on the
  whole machine, gives the steps that fit the winner's training in ``WINNER_SECONDS``.
- Stage 2, at the winner's length: the stage-1 best's dropout and the next one up (longer runs overfit
  more), the stage-1 best's width.
- The winner: one ``microgpt-jax train`` command on all the training names, its test loss (the last 1,000
  names after microgpt's seed-42 shuffle, never seen by the search) recomputed by ``numpy_nll.py``, its report
  page.

Every choice is made on the 1,000 validation names carved from the training names (as in round one).

    python experiments/best_names2.py --data /path/to/names.txt            # about 45 minutes on 2 cores
    python experiments/best_names2.py --data /path/to/names.txt --quick    # every stage in a few minutes

Writes ``experiments/results/best_names.md``, ``best_names.json``, ``best_names.png`` and
``best_names_report.html`` (not with --quick; ``--overwrite`` to replace them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from best_names import (  # noqa: E402
    anchors,
    best,
    curve_plot,
    group_rate,
    python_cmd,
    run,
    score_winner,
    split_corpus,
    sweep,
    table,
)

WINNER_SECONDS = 570  # the winner's whole command (start-up, compile, evaluations, samples) within 10 minutes
BASE = {"n_layer": 4, "n_head": 4, "block_size": 16, "lr": 0.003, "batch_size": 64, "weight_decay": 0.1,
        "schedule": "linear"}  # fmt: skip
STAGE1 = {"n_embd": [96, 128], "dropout": [0.1, 0.2]}
DROPOUTS = [0.0, 0.1, 0.15, 0.2, 0.25, 0.3]
QUICK_BASE = {**BASE, "n_layer": 1, "batch_size": 8}
QUICK1 = {"n_embd": [16, 32], "dropout": [0.1, 0.2]}
DEVICES = ["--devices", str(os.cpu_count() or 1)]
OUTPUTS = ("best_names.md", "best_names.json", "best_names.png", "best_names_report.html")


def recipe_flags(recipe: dict, steps: int) -> list[str]:
    """``train``/``sweep`` flags of a recipe at ``steps`` steps, with a 5% warm-up."""
    out = []
    for k, v in recipe.items():
        out += ["--" + k.replace("_", "-"), str(v)]
    return [*out, "--steps", str(steps), "--warmup", str(max(1, steps // 20))]


def timed_train(recipe: dict, steps: int, data: Path, out: Path, work: Path) -> float:
    """Wall seconds of a whole ``microgpt-jax train`` command of ``recipe`` (evaluating every tenth), its batch
    split over every core (``--devices``: data parallel, about 1.3x one device's steps/s at 128 x 4, batch 64)."""
    args = ["train", "--out", str(out), "--data", str(data), *recipe_flags(recipe, steps), *DEVICES]
    return run(python_cmd(*args, "--eval-every", str(max(steps // 10, 1))), work / f"{out.name}.log")


def reported_rate(log: Path) -> float:
    """The steps per second after compile that a ``train`` command printed on its last progress line."""
    found = re.findall(r"\| ([\d,.]+) steps/s after compile", log.read_text())
    if not found:
        sys.exit(f"error: {log} has no 'steps/s after compile' line")
    return float(found[-1].replace(",", ""))


def winner_steps(recipe: dict, data: Path, work: Path, quick: bool, tag: str = "") -> tuple[int, float]:
    """The steps a whole ``train`` command of ``recipe`` runs in WINNER_SECONDS on this machine, and its steps per
    second: a 1,000-step command's own figure (after compile), its other seconds (start-up, compile, evaluations,
    samples) counted once."""
    steps = 60 if quick else 1000
    seconds = timed_train(recipe, steps, data, work / f"rate{tag}", work)
    rate = reported_rate(work / f"rate{tag}.log")
    fixed = max(seconds - steps / rate, 0.0)
    steps = int((WINNER_SECONDS - fixed) * rate * 0.97 // 500 * 500)  # 3% margin for a busier minute
    return (100 if quick else max(steps, 1000)), rate


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.environ.get("MICROGPT_JAX_DATA"), help="names.txt ($MICROGPT_JAX_DATA)")
    p.add_argument("--work", default="runs/best_names2", help="where the stages' sweeps and the winner's run go")
    p.add_argument("--results", default=str(HERE / "results"), help="where best_names.md/.json/.png go")
    p.add_argument("--quick", action="store_true", help="tiny stages: checks the pipeline, writes no results")
    p.add_argument("--overwrite", action="store_true", help="replace results already in the folder")
    p.add_argument(
        "--reuse",
        action="store_true",
        help="the stages' results already in --work (an earlier run of "
        "this script, cut short or changed after its search): train and score the winner only",
    )
    args = p.parse_args()
    results = Path(args.results)
    if not args.quick and not args.overwrite and any((results / n).exists() for n in OUTPUTS):
        print(f"error: {results} already holds best_names results: pass --overwrite to replace them", file=sys.stderr)
        return 2
    if not args.data or not Path(args.data).is_file():
        print("error: names.txt not found: pass --data PATH or set MICROGPT_JAX_DATA", file=sys.stderr)
        return 2
    work = Path(args.work)
    reuse = args.reuse and (work / "stage2" / "results.json").is_file()
    if args.reuse and not reuse:
        print(f"error: {work} holds no finished search (stage2/results.json): run without --reuse", file=sys.stderr)
        return 2
    if not reuse and work.exists() and any(work.iterdir()):
        print(f"error: {work} is not empty: pass another --work or remove it", file=sys.stderr)
        return 2
    if reuse and (work / "winner").exists():
        print(f"error: {work / 'winner'} exists: remove it to train the winner again", file=sys.stderr)
        return 2
    work.mkdir(parents=True, exist_ok=True)
    data = Path(args.data).resolve()
    t_start = time.perf_counter()
    corpus = work / "search_names.txt" if reuse else split_corpus(data, work)
    base, grid1 = (QUICK_BASE, QUICK1) if args.quick else (BASE, STAGE1)

    # the rate first, for round one's shape at the larger dropout: it sets every stage's length
    probe = {**base, "n_embd": grid1["n_embd"][0], "dropout": grid1["dropout"][-1]}
    if reuse:
        steps_w = json.loads((work / "stage2" / "results.json").read_text())[0]["steps"]
        steps1 = json.loads((work / "stage1" / "results.json").read_text())[0]["steps"]
    else:
        steps_w, rate = winner_steps(probe, data, work, args.quick)
        print(f"rate: {rate:.1f} steps/s for {probe['n_embd']} wide: the winner trains {steps_w} steps", flush=True)
        steps1 = max(steps_w // 3 // 100 * 100, 100 if not args.quick else 30)
    base1 = {**base, "steps": steps1, "warmup": max(1, steps1 // 20)}
    base1 = {k: v for k, v in base1.items() if k not in grid1}
    rows1, s1, cmd1 = sweep("stage1", {k: list(v) for k, v in grid1.items()}, base1, corpus, work, reuse)
    b1 = best(rows1)
    shape1, rate1 = group_rate(rows1)
    print(f"stage 1: {len(rows1)} members x {steps1} steps in {s1:.0f} s; best {b1['n_embd']} wide, dropout "
          f"{b1['dropout']}: val {b1['val_loss']:.4f}", flush=True)  # fmt: skip

    if b1["n_embd"] != probe["n_embd"] and not reuse:  # another width: its own rate
        steps_w, rate = winner_steps({**probe, "n_embd": b1["n_embd"]}, data, work, args.quick, "_best")
        print(f"rate: {rate:.1f} steps/s for {b1['n_embd']} wide: the winner trains {steps_w} steps", flush=True)
    steps2 = steps_w
    up = [d for d in DROPOUTS if d > b1["dropout"]][:1]
    grid2 = {"dropout": [b1["dropout"], *up]}
    base2 = {**{k: b1[k] for k in base if k not in grid2}, "n_embd": b1["n_embd"], "steps": steps2,
             "warmup": max(1, steps2 // 20)}  # fmt: skip
    rows2, s2, cmd2 = sweep("stage2", grid2, base2, corpus, work, reuse)
    b2 = best(rows2)
    shape2, rate2 = group_rate(rows2)
    print(f"stage 2: {len(rows2)} members x {steps2} steps in {s2:.0f} s; best dropout {b2['dropout']}: "
          f"val {b2['val_loss']:.4f}", flush=True)  # fmt: skip
    search_seconds = s1 + s2 if reuse else time.perf_counter() - t_start  # reused: the stages' own seconds

    recipe = {k: b2[k] for k in (*base, "n_embd", "dropout")}
    seconds_w = timed_train(recipe, steps2, data, work / "winner", work)
    rate = reported_rate(work / "winner.log")  # the winner's own steps per second
    test_loss, numpy_loss, samples = score_winner(work, data)
    print(f"winner: test loss {test_loss:.4f} (numpy {numpy_loss:.4f}) in {seconds_w:.0f} s", flush=True)
    if args.quick:
        assert abs(test_loss - numpy_loss) < 1e-4, (test_loss, numpy_loss)
        print(f"quick run finished in {time.perf_counter() - t_start:.0f} s; nothing written to {results}")
        return 0
    write_results(results, work, locals())
    return 0


def write_results(results: Path, work: Path, r: dict) -> None:
    """best_names.json/.md/.png and the winner's report page, round one's winner beside it."""
    from safetensors.numpy import load_file

    results.mkdir(parents=True, exist_ok=True)
    b2, steps2, test_loss, seconds_w = r["b2"], r["steps2"], r["test_loss"], r["seconds_w"]
    flags = [*recipe_flags(r["recipe"], steps2), *DEVICES]
    command = "microgpt-jax " + shlex.join(["train", "--out", "runs/best_names", *flags])
    params = sum(a.size for a in load_file(work / "winner" / "params.safetensors").values())
    round1 = json.loads((results / "best_names_round1.json").read_text())
    summary = {
        "command": command,
        "val_loss": test_loss,  # the held-out names: microgpt-jax train's val_loss at the end of the run
        "test_loss_numpy": r["numpy_loss"],
        "val_loss_search": b2["val_loss"],
        "train_seconds": round(seconds_w, 1),
        "search_seconds": round(r["search_seconds"], 1),
        "parameters": params,
        "steps_per_s_measured": round(r["rate"], 1),
        "stage1_largest_group": {**r["shape1"], "member_steps_per_s": round(r["rate1"], 1)},
        "stage2_largest_group": {**r["shape2"], "member_steps_per_s": round(r["rate2"], 1)},
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "date": date.today().isoformat(),
        "samples": r["samples"],
        "round1": {k: round1[k] for k in ("command", "test_loss", "train_seconds")},
    }
    (results / "best_names.json").write_text(json.dumps(summary, indent=1) + "\n")
    title = f"{b2['n_embd']} wide x {b2['n_layer']} layers, dropout {b2['dropout']}: test {test_loss:.4f}"
    curve_plot(work / "winner" / "metrics.jsonl", results / "best_names.png", title)
    subprocess.run(python_cmd("report", str(work / "winner"), "--out", str(results / "best_names_report.html")),
                   check=True, capture_output=True)  # fmt: skip
    md = [
        "# Best names, round 2: the whole ten minutes of CPU training",
        "",
        f"Made by `python experiments/best_names2.py --data names.txt` on {summary['date']} ({summary['machine']}). "
        f"Search {r['search_seconds'] / 60:.1f} min, winner's training {seconds_w / 60:.1f} min."
        + (
            " The winner was trained again with `--reuse`, from the search's stages as they were (the search's "
            "stage seconds are its sweeps' own)."
            if r["reuse"]
            else ""
        ),
        "",
        "## The winner",
        "",
        "```bash",
        command,
        "```",
        "",
        f"- **test loss {test_loss:.4f}** (NLL per character on the last 1,000 names after microgpt's seed-42 "
        f"shuffle; `experiments/numpy_nll.py` recomputes {r['numpy_loss']:.4f} in numpy); {params:,} parameters; "
        f"target 1.90, moonshot 1.85",
        f"- validation loss in the search {b2['val_loss']:.4f} (the 1,000 names before the test names)",
        f"- training {seconds_w:.0f} s wall for the whole command (start-up, compile, {steps2} steps at "
        f"{r['rate']:.1f} steps/s measured, evaluations, samples); its report page: "
        "[best_names_report.html](best_names_report.html)",
        "",
        "![loss curves](best_names.png)",
        "",
        "Samples (temperature 0.5): " + ", ".join(r["samples"]),
        "",
        "## Round 1 beside it",
        "",
        "| round | command | test loss | training |",
        "| --- | --- | ---: | ---: |",
        f"| 2 | `{command}` | **{test_loss:.4f}** | {seconds_w:.0f} s |",
        f"| 1 | `{round1['command']}` | {round1['test_loss']:.4f} | {round1['train_seconds']:.0f} s |",
        "",
        "Round one's stages: [best_names_round1.md](best_names_round1.md).",
        "",
        *anchors(test_loss),
        "## Stage 1: width and dropout, a third of the winner's length",
        "",
        f"`{shlex.join(r['cmd1'])}` ({r['s1']:.0f} s; largest group {r['shape1']}: {r['rate1']:.1f} member-steps/s)",
        "",
        *table(r["rows1"], ["n_embd", "dropout", "steps"]),
        "",
        "## Stage 2: dropout at the winner's length",
        "",
        f"`{shlex.join(r['cmd2'])}` ({r['s2']:.0f} s; largest group {r['shape2']}: {r['rate2']:.1f} member-steps/s)",
        "",
        *table(r["rows2"], ["n_embd", "dropout", "steps"]),
        "",
    ]
    (results / "best_names.md").write_text("\n".join(md))
    print(f"wrote {results}/{', '.join(OUTPUTS)}")


if __name__ == "__main__":
    sys.exit(main())
