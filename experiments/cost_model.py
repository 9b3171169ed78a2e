"""A cost model of the benchmark's rows: FLOPs and bytes per step, the fraction of this machine's peak each row
reaches, and what bounds it. Reads the JSON of ``experiments/bench.py --json`` and writes its tables into
docs/performance.md (the cost model between the ``cost-model`` markers, the grids against PyTorch's ways
between the ``grids`` markers), so the page's figures come from one run.

    python experiments/bench.py --json > experiments/results/bench.json
    python experiments/cost_model.py experiments/results/bench.json          # rewrites the docs table
    python experiments/cost_model.py experiments/results/bench.json --print  # prints it instead

The machine's peak is measured here, not taken from a datasheet: ``peak_gflops`` is a large float32 matmul
(2048 x 2048, every core, median of 5) and ``peak_gbps`` a large elementwise pass (256 MiB read and written),
both through JAX on its default device. FLOPs count the matmuls and attention of forward and backward (the
backward taken as twice the forward) and Adam (10 per parameter); bytes are the least traffic a step can do:
the parameters, their gradients and Adam's moments read and written once, and the activations backward keeps
written once and read once. A row is bound by arithmetic when it reaches over a third of the peak; else by
memory when its bytes at the measured bandwidth take over a third of its time and do not fit in the cache
(``CACHE_BYTES``); else by per-op overhead (launching many small kernels and the host's loop cost more than
either).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"
MARKERS = {"cost-model": ("<!-- cost-model:start -->", "<!-- cost-model:end -->"),
           "grids": ("<!-- grids:start -->", "<!-- grids:end -->")}  # fmt: skip
VOCAB, BLOCK = 27, 16  # the names corpus and microgpt's block_size
CACHE_BYTES = 32 << 20  # a step whose bytes fit in this (the EPYC's L3 here) is not held back by memory


@dataclass(frozen=True)
class Shape:
    """What a step's cost depends on: layers, width, heads, batch rows, members trained together."""

    n_layer: int
    n_embd: int
    n_head: int
    batch: int
    members: int = 1
    train: bool = True


def params(s: Shape) -> int:
    C, L = s.n_embd, s.n_layer
    return 2 * VOCAB * C + BLOCK * C + 12 * L * C * C


def flops(s: Shape) -> float:
    """FLOPs of one step of every member: forward matmuls and attention per position, x3 when training (the
    backward's two matmuls per forward one), plus Adam's ~10 per parameter."""
    C, L, T = s.n_embd, s.n_layer, BLOCK
    per_position = 2 * (12 * L * C * C + C * VOCAB) + 4 * L * T * C
    forward = s.batch * T * per_position
    return s.members * ((3 * forward + 10 * params(s)) if s.train else forward)


def bytes_moved(s: Shape) -> float:
    """The least float32 traffic of one step of every member: parameters, gradients and both Adam moments read
    and written (8 passes over the parameters), and the activations backward keeps (about 12 C and 3 H x T
    per position and layer, the logits 3 V per position) written once and read once."""
    C, L, H, T = s.n_embd, s.n_layer, s.n_head, BLOCK
    acts = s.batch * T * (L * (12 * C + 3 * H * T) + 3 * VOCAB)
    per_member = 4 * (8 * params(s) + 2 * acts) if s.train else 4 * (params(s) + s.batch * T * 2 * C * L)
    return s.members * per_member


def measure_peak() -> tuple[float, float]:
    """(GFLOP/s of a 2048^3 float32 matmul, GB/s of an elementwise pass over 256 MiB), medians of 5."""
    import jax
    import jax.numpy as jnp

    n = 2048
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    x = jnp.ones(64 << 20, jnp.float32)
    mm, ew = jax.jit(lambda a: a @ a), jax.jit(lambda x: x * 1.5 + 1.0)

    def median_seconds(f: object, arg: object) -> float:
        f(arg).block_until_ready()  # type: ignore[operator]
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            f(arg).block_until_ready()  # type: ignore[operator]
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    return 2 * n**3 / median_seconds(mm, a) / 1e9, 2 * x.nbytes / median_seconds(ew, x) / 1e9


def rows(bench: dict) -> list[tuple[str, Shape, float]]:
    """(name, shape, steps per second) for each benchmark row that trains or samples a known shape."""
    out = [
        ("train, batch 1 (microgpt)", Shape(1, 16, 4, 1), bench["b1_steps_per_s"]),
        ("train, batch 256, one device", Shape(1, 16, 4, 256), bench["batched_tokens_per_s"] / 256 / BLOCK),
    ]
    if "batched_dp_tokens_per_s" in bench:
        out.append(("train, batch 256, every core", Shape(1, 16, 4, 256), bench["batched_dp_tokens_per_s"] / 4096))
    out.append(("sweep, 64 x batch 1, every core", Shape(1, 16, 4, 1, 64), bench["sweep_model_steps_per_s"] / 64))
    # sampling: a name is about block_size forward positions of one row (the KV cache: no recomputation)
    batch = bench["sample_batch"]
    out.append((f"sampling, {batch:,} rows", Shape(1, 16, 4, batch, train=False), bench["sample_names_per_s"] / batch))
    if "dropout_s" in bench:
        shape = Shape(4, 96, 4, 64)
        out.append(("train 4 x 96, batch 64, no dropout", shape, bench["dropout_steps"] / bench["no_dropout_s"]))
        out.append(("train 4 x 96, batch 64, dropout 0.1", shape, bench["dropout_steps"] / bench["dropout_s"]))
    for name, g in bench.get("sweeps", {}).items():
        L, C, H = (int(v) for v in name.split("x"))
        m = g["members"]
        out.append((f"grid {name}, {m} x batch {g['batch_size']}", Shape(L, C, H, g["batch_size"], m),
                    g["ours_member_steps_per_s"] / m))  # fmt: skip
        if "torch_best_member_steps_per_s" in g:
            out.append((f"grid {name}: PyTorch ({g['torch_best_way']})", Shape(L, C, H, g["batch_size"], m),
                        g["torch_best_member_steps_per_s"] / m))  # fmt: skip
    return out


def table(bench: dict, peak_gflops: float, peak_gbps: float) -> list[str]:
    lines = [
        f"Peak on this machine, measured: {peak_gflops:,.0f} GFLOP/s (float32 matmul), {peak_gbps:,.0f} GB/s "
        f"(elementwise); the benchmark: {bench['platform']}.",
        "",
        "| row | MFLOP / step | MB / step | steps/s | GFLOP/s | of peak | bound |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, shape, rate in rows(bench):
        f, b = flops(shape), bytes_moved(shape)
        t_arith, t_mem = f / (peak_gflops * 1e9), b / (peak_gbps * 1e9)
        if t_arith * rate > 1 / 3:
            bound = "arithmetic"
        elif t_mem * rate > 1 / 3 and b > CACHE_BYTES:
            bound = "memory"
        else:
            bound = "per-op overhead"
        achieved = f * rate / 1e9
        lines.append(f"| {name} | {f / 1e6:,.2f} | {b / 1e6:,.2f} | {rate:,.1f} | {achieved:,.1f} | "
                     f"{achieved / peak_gflops:.0%} | {bound} |")  # fmt: skip
    return lines


def grids_table(bench: dict) -> list[str]:
    """The three grids: ours (every core and one device), one model alone, PyTorch's ways and its best, and how
    far each member's last loss is from PyTorch's."""
    sweeps = bench.get("sweeps", {})
    if not sweeps:
        return ["(this benchmark run has no grids: `bench.py --no-sweeps`)"]
    ways = sorted({w for g in sweeps.values() for w in g.get("torch_ways", {})})
    head = ["grid", "members x batch, steps", "ours, both cores", "ours, 1 device", "one model alone", *ways,
            "ours / PyTorch's best", "losses within, at step 3 / at the end"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "| --- | --- |" + " ---: |" * (len(head) - 2)]
    for name, g in sweeps.items():
        cells = [name, f"{g['members']} x {g['batch_size']}, {g['steps']}", f"{g['ours_member_steps_per_s']:,.0f}",
                 f"{g['ours_1device_member_steps_per_s']:,.0f}", f"{g['one_model_steps_per_s']:,.0f}"]  # fmt: skip
        for w in ways:
            v = g.get("torch_ways", {}).get(w)
            cells.append(f"{v:,.0f}" if isinstance(v, float) else "failed" if v else "")
        cells.append(f"**{g['ours_over_torch_best']:.1f}x** ({g['torch_best_way']})" if "torch_best_way" in g else "")
        cells.append(f"{g['agree_max_diff']:.0e} / {g['max_final_loss_diff']:.0e}" if "agree_max_diff" in g else "")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def replace_block(text: str, name: str, lines: list[str]) -> str:
    start, end = MARKERS[name]
    if start not in text or end not in text:
        raise SystemExit(f"error: {DOC} has no {start} ... {end} markers: add them where the table goes")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return head + start + "\n" + "\n".join(lines) + "\n" + end + tail


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bench", help="bench.py --json output")
    p.add_argument("--print", action="store_true", help="print the tables instead of writing docs/performance.md")
    args = p.parse_args(argv)
    bench = json.loads(Path(args.bench).read_text())
    blocks = {"cost-model": table(bench, *measure_peak()), "grids": grids_table(bench)}
    if args.print:
        print("\n\n".join("\n".join(lines) for lines in blocks.values()))
        return 0
    text = DOC.read_text()
    for name, lines in blocks.items():
        text = replace_block(text, name, lines)
    DOC.write_text(text)
    print(f"wrote the cost model and the grids into {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
