"""A grid of small GPTs (seeds, learning rates) trained the ways a PyTorch user would run one, to time them.

The model and recipe are experiments/torch_peer.py's (imported from it; torch and numpy only, nothing from
microgpt_jax), so the project's vmapped JAX sweep can be set against PyTorch's best way on the same grid. Every
member m trains ``steps`` steps from the caller's initial weights: Adam(lr_m, betas=(0.85, 0.99), eps=1e-8) with
the rate decaying linearly, lr_m * (1 - s / steps) at step s, on rows s*B .. s*B+B-1 (mod N) of the data (the
same rows for every member), in float32, the loss being the peer's ``loss_fn``. The ways (``WAYS``):

- ``loop``: a Python loop over the members, each an ``nn.Module`` trained by ``torch_peer.train`` (eager);
- ``vmap``: torch.func: the members' parameters stacked as one (M, P) tensor, ``functional_call`` under
  ``vmap(grad_and_value(...))`` and a hand-written Adam on the stacked tensors (per-member rates; the same
  arithmetic as ``torch.optim.Adam``'s single-tensor path), eager;
- ``vmap_compiled``: the same step (gradient and Adam update) under ``torch.compile``;
- ``processes``: ``threads`` worker processes (spawned, one torch thread each), each running the loop way on
  its contiguous share of the members.

Under vmap, attention uses SDPA's math backend: the CPU flash kernel has no batching rule (vmap would loop over
the members, with a warning). The two kernels round differently in float32, and training amplifies it: the loop
and vmap ways agree to ~1e-7 (relative) on 16 seeds of 1x16x4 after 200 steps, but only to ~2e-3 on the 4x64x4
batch-32 grid after 100 steps, where the loop run under ``sdpa_kernel(SDPBackend.MATH)`` agrees with vmap to
~1e-7 again. Run from the repository root::

    python experiments/torch_grid.py --grid seeds --steps 200          # every way on 16 seeds of 1x16x4
    python experiments/torch_grid.py --grid lr_seed --ways loop,vmap --threads 1,2 --json
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import queue
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch_peer
from torch_peer import TorchUnavailableError, encode, require_torch, synthetic_docs, torch

WAYS = ("loop", "vmap", "vmap_compiled", "processes")
BETAS = (0.85, 0.99)
EPS = 1e-8
# the grids to time: (members, n_layer, n_embd, n_head, batch_size, peak lrs), block_size 16, names' vocabulary 27
GRIDS: dict[str, tuple[int, int, int, int, int, tuple[float, ...]]] = {
    "seeds": (16, 1, 16, 4, 1, (0.01,)),
    "lr_seed": (8, 4, 64, 4, 32, (0.003, 0.01)),
    "wide": (4, 4, 128, 4, 64, (0.01,)),
}


def state_shapes(vocab_size: int, n_layer: int, n_embd: int, block_size: int) -> dict[str, tuple[int, int]]:
    """The peer GPT's state_dict names and (nout, nin) shapes, in its order (n_head does not change them)."""
    C = n_embd
    shapes = {"wte": (vocab_size, C), "wpe": (block_size, C), "lm_head": (vocab_size, C)}
    for i in range(n_layer):
        shapes.update({f"layer{i}.attn_w{n}": (C, C) for n in "qkvo"})
        shapes.update({f"layer{i}.mlp_fc1": (4 * C, C), f"layer{i}.mlp_fc2": (C, 4 * C)})
    return shapes


def make_init(
    seeds: Sequence[int], vocab_size: int, n_layer: int, n_embd: int, n_head: int, block_size: int
) -> dict[str, np.ndarray]:
    """Stacked (M, nout, nin) float32 initial weights: member m is the peer's GPT made after manual_seed(seeds[m]).

    For this file's command line and tests; a comparison with JAX passes the JAX side's weights instead."""
    require_torch()
    states = []
    for seed in seeds:
        torch.manual_seed(seed)
        states.append(torch_peer.GPT(vocab_size, n_layer, n_embd, n_head, block_size).state_dict())
    return {k: np.stack([s[k].numpy() for s in states]).astype(np.float32) for k in states[0]}


def run_grid(
    init: dict[str, np.ndarray],
    lrs: np.ndarray,
    inputs: np.ndarray,
    targets: np.ndarray,
    *,
    n_layer: int,
    n_embd: int,
    n_head: int,
    block_size: int,
    batch_size: int,
    steps: int,
    way: str,
    threads: int = 1,
    repeats: int = 1,
) -> dict[str, Any]:
    """Train the grid one way; return its speed and every member's last loss.

    ``init`` maps the peer's state_dict names to stacked float32 arrays (M, nout, nin), member m's initial
    weights at index m; ``lrs`` is (M,) peak rates; ``inputs``/``targets`` are (N, block_size) token ids, targets
    -1 ignored (as ``torch_peer.encode`` makes them; the vocabulary is wte's rows). Each run starts from ``init``
    with fresh optimizer state; one untimed warm-up run (which compiles, for ``vmap_compiled``) precedes
    ``repeats`` timed runs. ``threads`` is ``torch.set_num_threads`` for the in-process ways (restored after)
    and the number of worker processes for ``processes`` (each on one thread; its timed span runs from a
    barrier that every started, warmed-up worker passes to the last worker's report, so process start-up,
    imports and the warm-up are outside it).

    Returns {"member_steps_per_s": M * steps / median seconds of the timed runs, "final_losses": [member m's
    loss at the last step (before its update), as float] (of the last run), "way": way, "threads": threads}.
    Raises ValueError for a bad way, shapes or counts, TorchUnavailableError without torch."""
    require_torch()
    if way not in WAYS:
        raise ValueError(f"way must be one of {', '.join(WAYS)}, got {way!r}")
    if min(n_layer, n_embd, n_head, block_size, batch_size, steps, threads, repeats) < 1 or n_embd % n_head:
        raise ValueError("sizes, steps, threads and repeats must be >= 1, and n_head must divide n_embd")
    vocab_size = init["wte"].shape[1] if "wte" in init and init["wte"].ndim == 3 else -1
    members = len(lrs)
    expected = state_shapes(vocab_size, n_layer, n_embd, block_size)
    got = {k: tuple(v.shape) for k, v in init.items()}
    if members < 1 or got != {k: (members, *s) for k, s in expected.items()}:
        raise ValueError(f"init must hold {members} members' weights {expected}, got {got}")
    if inputs.shape != targets.shape or inputs.ndim != 2 or inputs.shape[1] != block_size or not len(inputs):
        raise ValueError(f"inputs and targets must both be (N >= 1, {block_size}), got {inputs.shape}, {targets.shape}")
    dims = (vocab_size, n_layer, n_embd, n_head, block_size)
    grid = (init, np.asarray(lrs, dtype=np.float64), inputs, targets, dims, batch_size, steps)
    if way == "processes":
        seconds, losses = _processes(grid, threads, 1 + repeats)
    else:
        saved_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            run = _loop_trainer(*grid) if way == "loop" else _vmap_trainer(*grid, compiled=way == "vmap_compiled")
            seconds, losses = [], []
            for _ in range(1 + repeats):
                t0 = time.perf_counter()
                losses = run()
                seconds.append(time.perf_counter() - t0)
        finally:
            torch.set_num_threads(saved_threads)
    median = statistics.median(seconds[1:])
    return {"member_steps_per_s": members * steps / median, "final_losses": losses, "way": way, "threads": threads}


def best_way(results: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The result (as ``run_grid`` returns them) with the most member steps per second; ValueError if none."""
    results = list(results)
    if not results:
        raise ValueError("best_way needs at least one result")
    return max(results, key=lambda r: r["member_steps_per_s"])


Dims = tuple[int, int, int, int, int]  # vocab_size, n_layer, n_embd, n_head, block_size
Grid = tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, Dims, int, int]  # run_grid's inputs


def _loop_trainer(
    init: dict[str, np.ndarray],
    lrs: np.ndarray,
    inputs: np.ndarray,
    targets: np.ndarray,
    dims: Dims,
    batch_size: int,
    steps: int,
) -> Callable[[], list[float]]:
    """The loop way: a function that trains every member from ``init`` and returns their last losses."""
    models = [torch_peer.GPT(*dims) for _ in lrs]
    inputs_t, targets_t = torch.from_numpy(inputs), torch.from_numpy(targets)

    def run() -> list[float]:
        losses = []
        for m, model in enumerate(models):
            model.load_state_dict({k: torch.from_numpy(v[m]) for k, v in init.items()})
            losses.append(torch_peer.train(model, inputs_t, targets_t, steps, batch_size, lr=float(lrs[m]))[-1])
        return losses

    return run


def _vmap_trainer(
    init: dict[str, np.ndarray],
    lrs: np.ndarray,
    inputs: np.ndarray,
    targets: np.ndarray,
    dims: Dims,
    batch_size: int,
    steps: int,
    compiled: bool,
) -> Callable[[], list[float]]:
    """The vmap ways: a function that trains every member from ``init`` and returns their last losses."""
    from torch.func import functional_call, grad_and_value, vmap
    from torch.nn.attention import SDPBackend, sdpa_kernel

    names = list(init)
    shapes = [init[k].shape[1:] for k in names]
    sizes = [math.prod(s) for s in shapes]
    flat0 = torch.from_numpy(np.concatenate([init[k].reshape(len(lrs), -1) for k in names], axis=1))
    with torch.device("meta"):
        skeleton = torch_peer.GPT(*dims)  # the module functional_call runs; its own weights are never used

    def member_loss(theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        params = {k: t.view(s) for k, t, s in zip(names, theta.split(sizes), shapes, strict=True)}
        return torch_peer.loss_fn(lambda idx: functional_call(skeleton, params, (idx,)), x, y)

    grads_and_losses = vmap(grad_and_value(member_loss), in_dims=(0, None, None))
    b1, b2 = BETAS

    def step(
        theta: torch.Tensor, m: torch.Tensor, v: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
        step_size: torch.Tensor, bc2_sqrt: torch.Tensor,
    ) -> torch.Tensor:  # fmt: skip
        """One step of every member, in place: torch.optim.Adam's single-tensor update with per-member step_size."""
        with sdpa_kernel(SDPBackend.MATH):
            g, loss = grads_and_losses(theta, x, y)
        m.lerp_(g, 1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        theta.sub_(step_size * m / (v.sqrt() / bc2_sqrt + EPS))
        return loss

    if compiled:
        torch.compiler.reset()  # compile afresh for this thread count
        step = torch.compile(step, fullgraph=True)
    # step_size[s, m] = lr_m * (1 - s/steps) / (1 - b1^(s+1)) and sqrt(1 - b2^(s+1)), as Adam computes them
    s = np.arange(steps, dtype=np.float64)[:, None]
    step_sizes = torch.from_numpy((lrs[None, :] * (1 - s / steps) / (1 - b1 ** (s + 1))).astype(np.float32))
    bc2_sqrts = torch.from_numpy(np.sqrt(1 - b2 ** (s[:, 0] + 1)).astype(np.float32))
    inputs_t, targets_t = torch.from_numpy(inputs), torch.from_numpy(targets)
    N = inputs_t.shape[0]

    def run() -> list[float]:
        theta, m, v = flat0.clone(), torch.zeros_like(flat0), torch.zeros_like(flat0)
        losses = torch.empty(0)
        for i in range(steps):
            rows = torch.arange(i * batch_size, (i + 1) * batch_size) % N
            losses = step(theta, m, v, inputs_t[rows], targets_t[rows], step_sizes[i, :, None], bc2_sqrts[i])
        return [float(x) for x in losses.tolist()]

    return run


def _worker(rank: int, grid: Grid, runs: int, barrier: Any, results: Any) -> None:
    """A ``processes`` worker: the loop way on its share on one torch thread. Puts (rank, []) when ready; then
    each run starts at the barrier and ends by putting (rank, last losses); on an error it puts (rank, traceback
    text) and breaks the barrier."""
    try:
        torch.set_num_threads(1)
        run = _loop_trainer(*grid)
        results.put((rank, []))  # ready
        for _ in range(runs):
            barrier.wait()
            results.put((rank, run()))
    except BaseException:
        results.put((rank, traceback.format_exc()))
        barrier.abort()


def _processes(grid: Grid, processes: int, runs: int) -> tuple[list[float], list[float]]:
    """The processes way, ``runs`` times: (seconds per run, the members' last losses in member order)."""
    init, lrs, *rest = grid
    shares = [idx for idx in np.array_split(np.arange(len(lrs)), processes) if len(idx)]
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(len(shares) + 1), ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(rank, ({k: v[idx] for k, v in init.items()}, lrs[idx], *rest), runs,
                                          barrier, results), daemon=True)
        for rank, idx in enumerate(shares)
    ]  # fmt: skip
    for p in procs:
        p.start()
    seconds, losses = [], []
    try:
        for _ in shares:
            _collect(results, procs)  # every worker started and ready, so none is missing at the barrier
        for _ in range(runs):
            barrier.wait()
            t0 = time.perf_counter()
            by_rank = dict(_collect(results, procs) for _ in shares)
            seconds.append(time.perf_counter() - t0)
            losses = [x for rank in range(len(shares)) for x in by_rank[rank]]
    except mp.BrokenBarrierError as e:
        raise RuntimeError(f"a grid worker failed:\n{_collect(results, procs)[1]}") from e
    finally:
        barrier.abort()  # releases workers still waiting, should this end on an error
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    return seconds, losses


def _collect(results: Any, procs: Sequence[Any]) -> tuple[int, Any]:
    """The next (rank, losses) report; RuntimeError with the worker's traceback, or when one died silently."""
    while True:
        try:
            rank, value = results.get(timeout=1.0)
        except queue.Empty:
            if any(p.exitcode not in (None, 0) for p in procs):
                raise RuntimeError("a grid worker died without a report") from None
            continue
        if isinstance(value, str):
            raise RuntimeError(f"grid worker {rank} failed:\n{value}")
        return rank, value


def main(argv: list[str] | None = None) -> int:
    """Time the ways on one of ``GRIDS`` (synthetic names, or --data) and print member steps/s per way."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--grid", choices=sorted(GRIDS), default="seeds", help="members, sizes and lrs (default seeds)")
    p.add_argument("--ways", default=",".join(WAYS), help=f"comma-separated, of {', '.join(WAYS)} (default all)")
    p.add_argument("--threads", default="1,2", help="comma-separated thread (processes: process) counts")
    p.add_argument("--steps", type=int, default=1000, help="steps per member (default 1000)")
    p.add_argument("--repeats", type=int, default=1, help="timed runs per figure, median reported (default 1)")
    p.add_argument("--data", type=Path, help="a names file, one per line (default synthetic names)")
    p.add_argument("--json", action="store_true", help="the results as one JSON list on stdout")
    args = p.parse_args(argv)
    ways = args.ways.split(",")
    if not set(ways) <= set(WAYS):
        p.error(f"--ways must be a comma-separated subset of {', '.join(WAYS)}, got {args.ways!r}")
    try:
        threads = sorted({int(t) for t in args.threads.split(",")})
    except ValueError:
        threads = [0]
    if min(threads) < 1 or min(args.steps, args.repeats) < 1:
        p.error("--threads must be whole numbers >= 1; --steps and --repeats >= 1")
    members, n_layer, n_embd, n_head, batch_size, lrs = GRIDS[args.grid]
    try:
        require_torch()
        docs = torch_peer.load_docs(args.data) if args.data else synthetic_docs()
        inputs, targets, vocab = encode(docs, block_size=16)
        init = make_init(range(members), vocab, n_layer, n_embd, n_head, 16)
        lr = np.resize(np.array(lrs), members)  # lr x seed: the rates cycle over the members
        dims = {"n_layer": n_layer, "n_embd": n_embd, "n_head": n_head, "block_size": 16, "batch_size": batch_size}
        results = []
        for way in ways:
            for t in threads:
                if way != "processes" or t > 1:
                    res = run_grid(init, lr, inputs, targets, **dims, steps=args.steps, way=way, threads=t,
                                   repeats=args.repeats)  # fmt: skip
                    results.append(res)
                    print(f"{way:14s}{t:4d}{res['member_steps_per_s']:12,.0f} member steps/s", file=sys.stderr)
    except TorchUnavailableError as e:
        print(f"torch_grid: {e}", file=sys.stderr)
        return 2
    if results:
        best = best_way(results)
        spread = max(_relative_spread([r["final_losses"][m] for r in results]) for m in range(members))
        agree = f"final losses agree to {spread:.1e} (relative)"
        print(f"best: {best['way']} on {best['threads']}; {agree}", file=sys.stderr)
    if args.json:
        print(json.dumps(results))
    return 0


def _relative_spread(values: Sequence[float]) -> float:
    """(max - min) / |mean| of some numbers."""
    return (max(values) - min(values)) / abs(statistics.fmean(values))


if __name__ == "__main__":
    sys.exit(main())
