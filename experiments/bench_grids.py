"""The sweep side by side with PyTorch's best way to run the same grid, and what dropout costs: two parts of
``experiments/bench.py`` (its ``sweeps`` and ``dropout_cost`` keys), kept here to keep that file short.

A grid is a few small GPTs trained together: ``GRIDS`` names three (n_layer x n_embd x n_head), each with its
batch size, learning rates and seeds (members are lr x seed). Ours is the sweep's compiled group program
(``microgpt-jax sweep``'s: members vmapped, sharded over every device); PyTorch's ways are
``experiments/torch_grid.py``'s (a loop of models, ``torch.func`` under ``vmap`` eager and compiled, one
process per core), each on 1 and 2 threads where that applies. Both sides start from the same initial
weights (ours, handed to torch), train the same rows with the same recipe in float32, and each member's last
loss is compared. Over the timed run (``max_final_loss_diff``) that difference grows with the steps: float32
rounding differs between any two programs, and training at lr 0.01 amplifies it (its loss spikes early); our
own sweep and ``train`` programs differ as much. So agreement (``final_losses_agree``) is judged on a run of
``AGREE_STEPS`` steps, ``agree_max_diff`` against ``AGREE``.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from microgpt_jax.config import GPTConfig, TrainConfig
from microgpt_jax.corpus.documents import encode_docs
from microgpt_jax.corpus.tokenizer import Tokenizer
from microgpt_jax.model.init import init_params
from microgpt_jax.training import sweep
from microgpt_jax.training.loop import Recipe, hparams_of, init_opt_state, train

AGREE_STEPS = 3  # the agreement check's run: before rounding differences compound (see ``torch_ways``)
AGREE = 5e-4  # largest |ours - torch| of a member's loss at AGREE_STEPS that counts as float32 noise


@dataclass(frozen=True)
class Grid:
    """One benchmark grid: the architecture, the batch, and the members (every lr with every seed)."""

    n_layer: int
    n_embd: int
    n_head: int
    batch_size: int
    lrs: tuple[float, ...]
    seeds: tuple[int, ...]
    steps: int  # per timed run; ``--quick`` runs a tenth (at least 5)

    @property
    def members(self) -> list[tuple[float, int]]:
        return [(lr, seed) for lr in self.lrs for seed in self.seeds]


GRIDS = {
    "1x16x4": Grid(1, 16, 4, 1, (0.01,), tuple(range(16)), 300),  # 16 seeds of microgpt's model, batch 1
    "4x64x4": Grid(4, 64, 4, 32, (0.003, 0.01), tuple(range(4)), 100),  # 8 members, lr x seed
    "4x128x4": Grid(4, 128, 4, 64, (0.003, 0.01), tuple(range(2)), 40),  # 4 members
}


def grid_config(grid: Grid, vocab_size: int) -> GPTConfig:
    return GPTConfig(vocab_size=vocab_size, n_layer=grid.n_layer, n_embd=grid.n_embd, n_head=grid.n_head)


def ours(grid: Grid, docs: list[str], steps: int, repeats: int, devices: int | None = None) -> dict[str, Any]:
    """Member-steps per second of the sweep's group program on ``grid`` (members sharded over ``devices``
    devices, default all, padded to fill them as ``run_sweep`` does; one call per 100 steps), the median of
    ``repeats`` runs after a compiling one; with each member's last loss and the stacked initial weights."""
    tokenizer = Tokenizer.from_docs(docs)
    config = grid_config(grid, tokenizer.vocab_size)
    tok, n = encode_docs(docs, tokenizer, config.block_size)
    mesh = sweep.sweep_mesh(devices)
    shard, rep = NamedSharding(mesh, P(sweep.AXIS)), NamedSharding(mesh, P())
    members = grid.members
    tcs = [TrainConfig(lr=lr, seed=seed, steps=steps, batch_size=grid.batch_size) for lr, seed in members]
    tcs += [tcs[0]] * (-len(tcs) % mesh.devices.size)
    params0 = sweep.init_members(tcs, config, jnp.float32)
    opt0 = jax.tree.map(np.asarray, jax.vmap(lambda p: init_opt_state("adam", p))(params0))
    hp = jax.tree.map(lambda x: sweep._put(x, shard), sweep._stack([hparams_of(tc, jnp.float32) for tc in tcs]))
    chunk = min(100, steps)
    fn = sweep._group_program(config, Recipe(), grid.batch_size, chunk, mesh)
    tokens_dev, n_dev = sweep._put(tok, rep), sweep._put(n, rep)
    end = jnp.asarray(steps, jnp.int32)
    last: list[Any] = []

    def once() -> float:
        params = jax.tree.map(lambda x: sweep._put(x, shard), params0)
        opt_state = jax.tree.map(lambda x: sweep._put(x, shard), opt0)
        t0 = time.perf_counter()
        chunks = []
        for s in range(0, steps, chunk):
            params, opt_state, losses = fn(params, opt_state, hp, tokens_dev, n_dev, jnp.asarray(s, jnp.int32), end)
            chunks.append(losses)
        jax.block_until_ready(chunks)
        seconds = time.perf_counter() - t0
        last[:] = [np.concatenate([sweep._to_host(c) for c in chunks], axis=1)[: len(members), steps - 1]]
        return seconds

    once()  # compile
    seconds = statistics.median(once() for _ in range(repeats))
    init = {k: np.asarray(v[: len(members)]) for k, v in params0.items()}
    return {"member_steps_per_s": len(members) * steps / seconds, "final_losses": last[0].tolist(), "init": init}


def one_model(grid: Grid, docs: list[str], steps: int, repeats: int) -> float:
    """Steps per second of one member trained alone by ``train`` (its first lr and seed; one device): the rate a
    loop over the members would get, and what the sweep's batching of members is measured against."""
    tokenizer = Tokenizer.from_docs(docs)
    config = grid_config(grid, tokenizer.vocab_size)
    tok, n = encode_docs(docs, tokenizer, config.block_size)
    tc = TrainConfig(lr=grid.lrs[0], seed=grid.seeds[0], steps=steps, batch_size=grid.batch_size)
    params = init_params(jax.random.key(tc.seed), config)
    return steps / _median_seconds(lambda: jax.block_until_ready(train(params, tok, n, config, tc)[0]), repeats)


def _median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


TORCH_WAYS = (("loop", 1), ("loop", 2), ("vmap", 1), ("vmap", 2), ("vmap_compiled", 1), ("vmap_compiled", 2),
              ("processes", 2))  # (way, threads); processes: one per core, one thread each  # fmt: skip


def torch_ways(
    grid: Grid, docs: list[str], ours_result: dict[str, Any], steps: int, repeats: int, compile: bool = True
) -> dict[str, Any]:
    """Every PyTorch way (``TORCH_WAYS``; the compiled ones only with ``compile``) on the same grid from the same
    initial weights: member-steps per second of each, the best, and the best way's agreement with ours."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import torch_grid
    import torch_peer

    inputs, targets, _ = torch_peer.encode(docs, 16)
    lrs = np.array([lr for lr, _ in grid.members], np.float32)
    shape = {"n_layer": grid.n_layer, "n_embd": grid.n_embd, "n_head": grid.n_head, "block_size": 16}
    results: dict[str, Any] = {}
    for way, threads in TORCH_WAYS:
        if way == "vmap_compiled" and not compile:
            continue
        try:
            r = torch_grid.run_grid(
                ours_result["init"], lrs, inputs, targets, **shape, batch_size=grid.batch_size, steps=steps,
                way=way, threads=threads, repeats=repeats,
            )  # fmt: skip
        except Exception as e:  # torch.compile needs a working C++ toolchain: say so and go on
            results[f"{way}_t{threads}"] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
            continue
        results[f"{way}_t{threads}"] = r
    timed = {k: v for k, v in results.items() if "member_steps_per_s" in v}
    best = max(timed, key=lambda k: timed[k]["member_steps_per_s"])
    diffs = np.abs(np.array(timed[best]["final_losses"]) - np.array(ours_result["final_losses"]))
    short_ours = ours(grid, docs, AGREE_STEPS, 1)
    short_torch = torch_grid.run_grid(
        short_ours["init"], lrs, inputs, targets, **shape, batch_size=grid.batch_size, steps=AGREE_STEPS,
        way=timed[best]["way"], threads=timed[best]["threads"],
    )  # fmt: skip
    agree = float(np.max(np.abs(np.array(short_torch["final_losses"]) - np.array(short_ours["final_losses"]))))
    return {
        "torch_best_member_steps_per_s": timed[best]["member_steps_per_s"],
        "torch_best_way": best,
        "torch_ways": {k: v.get("member_steps_per_s", v.get("error")) for k, v in results.items()},
        "max_final_loss_diff": float(diffs.max()),
        "agree_steps": AGREE_STEPS,
        "agree_max_diff": agree,
        "final_losses_agree": bool(agree < AGREE),
    }


def bench_sweeps(docs: list[str], quick: bool, repeats: int, peer: bool) -> dict[str, Any]:
    """``sweeps``: for each grid, ours (member-steps/s, every device and one), one model alone, and (``peer``,
    with torch installed) PyTorch's best way with the ratio ours / torch."""
    out: dict[str, Any] = {}
    for name, grid in GRIDS.items():
        steps = max(5, grid.steps // 10) if quick else grid.steps
        mine = ours(grid, docs, steps, repeats)
        row: dict[str, Any] = {
            "members": len(grid.members),
            "batch_size": grid.batch_size,
            "steps": steps,
            "ours_member_steps_per_s": mine["member_steps_per_s"],
            "ours_1device_member_steps_per_s": ours(grid, docs, steps, repeats, devices=1)["member_steps_per_s"],
            "one_model_steps_per_s": one_model(grid, docs, steps, repeats),
        }
        row["sweep_over_one_model"] = row["ours_member_steps_per_s"] / row["one_model_steps_per_s"]
        if peer and _have_torch():
            row.update(torch_ways(grid, docs, mine, steps, min(repeats, 3), compile=not quick))
            row["ours_over_torch_best"] = row["ours_member_steps_per_s"] / row["torch_best_member_steps_per_s"]
        out[name] = row
    return out


def _have_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


DROPOUT_GRID = Grid(4, 96, 4, 64, (0.01,), (0,), 200)  # the run: 4 x 96, batch 64


def bench_dropout(docs: list[str], quick: bool, repeats: int, rate: float = 0.1) -> dict[str, Any]:
    """``dropout_cost``: the seconds of a ``train`` run with dropout ``rate`` over the same run without (4 x 96,
    batch 64; medians, the two taking turns)."""
    grid = DROPOUT_GRID
    steps = 20 if quick else grid.steps
    tokenizer = Tokenizer.from_docs(docs)
    config = grid_config(grid, tokenizer.vocab_size)
    tok, n = encode_docs(docs, tokenizer, config.block_size)
    params = init_params(jax.random.key(0), config)
    runs = {r: TrainConfig(steps=steps, batch_size=grid.batch_size, dropout=r) for r in (0.0, rate)}
    times: dict[float, list[float]] = {r: [] for r in runs}
    for i in range(repeats + 1):
        for r, tc in runs.items():
            t0 = time.perf_counter()
            jax.block_until_ready(train(params, tok, n, config, tc)[0])
            if i:  # the first round compiles
                times[r].append(time.perf_counter() - t0)
    without, with_ = statistics.median(times[0.0]), statistics.median(times[rate])
    return {"dropout_cost": with_ / without, "dropout_rate": rate, "dropout_steps": steps, "dropout_s": with_,
            "no_dropout_s": without}  # fmt: skip
