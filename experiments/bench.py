"""Speed of microgpt_jax's hot paths next to a naive JAX port, measured side by side in one process.

Run from the repository root::

    python experiments/bench.py                 # table, about two minutes on a 2-core CPU
    python experiments/bench.py --json          # one JSON object on stdout (the table goes to stderr)
    python experiments/bench.py --quick --json  # a few seconds: exercises every path (the tests run this)
    python experiments/bench.py --data data/names.txt   # the names corpus instead of synthetic names

What is measured (medians of ``--repeats`` timed runs after a warm-up run that compiles):

- ``b1_steps_per_s``: the original recipe (microgpt config, batch 1, Adam) through ``train.train`` with one
  chunk per 1000 steps; ``b1_steps_per_s_default_chunk`` the same with train's default chunking
  (``train.default_chunk``: 1000 steps at batch 1 today, so the two should agree up to noise).
  ``b1_compile_s``: trace + compile of that training program (``train_chunk.lower(...).compile()``).
- ``naive_b1_steps_per_s``: the usual first JAX port, written below: a per-step
  ``jax.jit(jax.value_and_grad(loss_fn))`` and a jitted optax Adam update called from a Python loop that
  slices the batch on the host and reads the loss back every step (as the original prints it). It uses the
  project's ``loss_fn``, so the gap is the training loop, not the model's formulation.
- ``batched_tokens_per_s``: batch 256, Adam, through ``train.train`` (40 steps, one chunk); tokens are
  B * block_size positions computed per step. ``batched_predicted_tokens_per_s`` counts only the predicted
  (unpadded) positions, the ones the loss averages over. ``naive_batched_tokens_per_s``: the naive loop at
  batch 256, same count.
- ``sample_names_per_s``: ``sample.sample_tokens`` at temperature 0.5, one batch of many names, spread over
  every device (its default); ``sample_names_per_s_1device`` on one device.
- ``batched_dp_tokens_per_s``: the same batch-256 training data-parallel over every device (on a CPU, one
  per core: ``microgpt-jax train --batch-size 256 --devices N``); present when there is more than one device.
- ``sweep_model_steps_per_s``: member-steps per second of a vmapped sweep (``bench_sweep`` below: 64 members
  of the batch-1 recipe, 1000 steps each, in chunks of 100 steps; 4 x 20 with ``--quick``), members sharded
  over every device as ``microgpt-jax sweep`` runs them; ``sweep_model_steps_per_s_1device`` on one device.
- ``peak_rss_mib``: peak resident memory of this process (``resource.getrusage``).

Devices: as ``microgpt-jax sweep`` does, the benchmark gives JAX's CPU backend one device per core
(``devices.set_cpu_devices``). Training runs on one device, as ``train`` does by default, except the
data-parallel figure; sampling and the sweep spread over every device, as they do by default, and each
has a one-device figure beside it.

Data: synthetic names (random lowercase strings of 3-9 letters, fixed seed) unless ``--data PATH`` or
$MICROGPT_JAX_DATA names a corpus. Timings on a shared machine vary; compare figures from one run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from microgpt_jax.config import GPTConfig, TrainConfig
from microgpt_jax.data import DATA_ENV, Tokenizer, encode_docs, load_docs, shuffle_docs
from microgpt_jax.devices import DATA_AXIS, make_mesh, set_cpu_devices
from microgpt_jax.errors import exit_status
from microgpt_jax.loss import loss_fn
from microgpt_jax.models import init_params
from microgpt_jax.optim import linear_decay
from microgpt_jax.sample import sample_tokens
from microgpt_jax.train import hparams_of, init_opt_state, train, train_chunk

BATCH = 256


def synthetic_docs(n: int = 32033, seed: int = 0) -> list[str]:
    """Name-like documents: random lowercase strings of 3-9 letters."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    return ["".join(rng.choice(letters, int(k))) for k in rng.integers(3, 10, size=n)]


def load_data(path: str | None) -> tuple[np.ndarray, np.ndarray, GPTConfig, str]:
    """(tokens_NxT1, n_N, config, description) from ``path`` or $MICROGPT_JAX_DATA, else synthetic names."""
    path = path or os.environ.get(DATA_ENV) or None
    docs = shuffle_docs(load_docs(path), 42) if path else synthetic_docs()
    tokenizer = Tokenizer.from_docs(docs)
    config = GPTConfig(vocab_size=tokenizer.vocab_size)
    tokens, n = encode_docs(docs, tokenizer, config.block_size)
    return tokens, n, config, (path or "synthetic names (seed 0)")


def median_times(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median wall seconds of ``repeats`` calls of each function (each must block until its work is done),
    after two untimed rounds (the first timed runs after a compile measured up to 1.5x slower). The functions
    take turns, so a change in the machine's load hits them alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(2):
        for fn in fns.values():
            fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: float(np.median(t)) for name, t in times.items()}


def project_train(
    tokens: np.ndarray,
    n: np.ndarray,
    config: GPTConfig,
    batch: int,
    steps: int,
    chunk: int | None,
    devices: int = 1,
) -> Callable[[], None]:
    """``train.train`` for ``steps`` steps of the default recipe at ``batch``, warmed up (compiled); ``chunk``
    None is train's default chunking; ``devices`` > 1 splits each batch over that many devices."""
    tc = TrainConfig(steps=steps, batch_size=batch)
    params = init_params(jax.random.key(tc.seed), config, tc.init_std)
    mesh = make_mesh(DATA_AXIS, devices) if devices > 1 else None

    def run() -> None:
        p, _, _ = train(params, tokens, n, config, tc, chunk=chunk, mesh=mesh)
        jax.block_until_ready(p)

    run()
    return run


def compile_seconds(tokens: np.ndarray, n: np.ndarray, config: GPTConfig, batch: int, chunk: int) -> float:
    """Trace + compile of the training program (one ``train_chunk``), bypassing jit's cache."""
    tc = TrainConfig(batch_size=batch)
    params = init_params(jax.random.key(0), config)
    args = (params, init_opt_state(tc.optimizer, params), hparams_of(tc, jnp.float32), tokens, n)
    start, end = jnp.int32(0), jnp.int32(chunk)
    t0 = time.perf_counter()
    train_chunk.lower(*args, start, end, config=config, optimizer="adam", batch_size=batch, chunk=chunk).compile()
    return time.perf_counter() - t0


def naive_train(tokens: np.ndarray, n: np.ndarray, config: GPTConfig, batch: int, steps: int) -> Callable[[], None]:
    """The usual first JAX port: jitted value_and_grad and a jitted optax update, called per step from Python."""
    tc = TrainConfig(steps=steps, batch_size=batch)
    tx = optax.adam(linear_decay(tc.lr, tc.steps), b1=tc.b1, b2=tc.b2, eps=tc.eps)
    value_and_grad = jax.jit(jax.value_and_grad(loss_fn), static_argnums=3)

    @jax.jit
    def update(grads: Any, opt_state: Any, params: Any) -> tuple[Any, Any]:
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    params0 = init_params(jax.random.key(tc.seed), config, tc.init_std)

    def run() -> None:
        params, opt_state = params0, tx.init(params0)
        for step in range(steps):
            rows = (step * batch + np.arange(batch)) % len(n)
            loss, grads = value_and_grad(params, tokens[rows], n[rows], config)
            params, opt_state = update(grads, opt_state, params)
            float(loss)  # the original prints every step's loss
        jax.block_until_ready(params)

    run()
    return run


def bench_sample(params: dict[str, jax.Array], config: GPTConfig, num: int, repeats: int) -> dict[str, float]:
    """Names per second of one batched ``sample_tokens`` call at temperature 0.5: spread over every device
    (``sample_names_per_s``, what sample_tokens does by default) and on one (``sample_names_per_s_1device``)."""
    temperature = jnp.asarray(0.5, jnp.float32)
    keys = itertools.cycle(jax.random.split(jax.random.key(0), 8))  # fresh draws, same work each call

    def runner(devices: int | None) -> Callable[[], None]:
        def run() -> None:
            tokens = sample_tokens(params, next(keys), temperature, config=config, num_samples=num, devices=devices)
            jax.block_until_ready(tokens)

        return run

    t = median_times({"all": runner(None), "one": runner(1)}, repeats)
    return {"sample_names_per_s": num / t["all"], "sample_names_per_s_1device": num / t["one"]}


def bench_sweep(members: int, steps: int, repeats: int, chunk: int, devices: int | None) -> float:
    """Member-steps per second of the sweep's compiled group program: ``members`` copies of the microgpt config
    (Adam, batch 1, seeds 0..M-1) on synthetic names, sharded over ``devices`` devices (default all), after a
    compiling run; the median of ``repeats`` runs."""
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from microgpt_jax import sweep

    docs = synthetic_docs(2000)
    tokenizer = Tokenizer.from_docs(docs)
    config = GPTConfig(vocab_size=tokenizer.vocab_size)
    mesh = sweep.make_mesh(devices)
    tok, n = encode_docs(docs, tokenizer, config.block_size)
    shard, rep = NamedSharding(mesh, P(sweep.AXIS)), NamedSharding(mesh, P())
    M = members + (-members % mesh.devices.size)  # padded to fill every device, as run_sweep does
    tcs = [TrainConfig(seed=i, steps=steps) for i in range(M)]
    params0 = sweep.init_members(tcs, config, jnp.float32)
    opt0 = jax.tree.map(np.asarray, jax.vmap(lambda p: init_opt_state("adam", p))(params0))
    hp = jax.tree.map(lambda x: sweep._put(x, shard), sweep._stack([hparams_of(tc, jnp.float32) for tc in tcs]))
    chunk = min(chunk, steps)
    fn = sweep._group_program(config, "adam", 1, chunk, mesh)
    tokens_dev, n_dev = sweep._put(tok, rep), sweep._put(n, rep)
    end = jnp.asarray(steps, jnp.int32)

    def once() -> float:
        params = jax.tree.map(lambda x: sweep._put(x, shard), params0)
        opt_state = jax.tree.map(lambda x: sweep._put(x, shard), opt0)
        t0 = time.perf_counter()
        for s in range(0, steps, chunk):
            params, opt_state, losses = fn(params, opt_state, hp, tokens_dev, n_dev, jnp.asarray(s, jnp.int32), end)
        jax.block_until_ready(losses)
        return time.perf_counter() - t0

    once()  # compile
    times = sorted(once() for _ in range(repeats))
    return members * steps / times[len(times) // 2]


def bench_sweep_model(quick: bool, repeats: int) -> dict[str, float]:
    """sweep_model_steps_per_s (members sharded over every device, as ``microgpt-jax sweep`` runs them) and
    sweep_model_steps_per_s_1device."""
    members, steps = (4, 20) if quick else (64, 1000)
    out: dict[str, float] = {"sweep_members": members, "sweep_steps": steps}
    for key, devices in (("sweep_model_steps_per_s", None), ("sweep_model_steps_per_s_1device", 1)):
        out[key] = bench_sweep(members=members, steps=steps, repeats=repeats, chunk=min(100, steps), devices=devices)
    return out


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement, as the JSON object's keys."""
    tokens, n, config, source = load_data(args.data)
    r = args.repeats
    b1_steps, b1_chunk = (100, 100) if args.quick else (2000, 1000)
    b1_naive_steps = 50 if args.quick else 500
    bb_steps, bb_naive_steps = (4, 4) if args.quick else (40, 20)
    num_samples = 1000 if args.quick else 20000
    block = config.block_size
    out: dict[str, Any] = {"data": source, "repeats": r, "quick": args.quick}

    out["b1_compile_s"] = compile_seconds(tokens, n, config, 1, b1_chunk)
    t = median_times(
        {
            "ours": project_train(tokens, n, config, 1, b1_steps, b1_chunk),
            "default_chunk": project_train(tokens, n, config, 1, b1_steps, None),
            "naive": naive_train(tokens, n, config, 1, b1_naive_steps),
        },
        r,
    )
    out["b1_steps_per_s"] = b1_steps / t["ours"]
    out["b1_steps_per_s_default_chunk"] = b1_steps / t["default_chunk"]
    out["naive_b1_steps_per_s"] = b1_naive_steps / t["naive"]

    rows = np.arange(bb_steps * BATCH) % len(n)
    predicted_per_step = float(np.minimum(n[rows], block).sum()) / bb_steps
    fns = {
        "ours": project_train(tokens, n, config, BATCH, bb_steps, bb_steps),
        "naive": naive_train(tokens, n, config, BATCH, bb_naive_steps),
    }
    if jax.device_count() > 1:
        fns["dp"] = project_train(tokens, n, config, BATCH, bb_steps, bb_steps, devices=jax.device_count())
    t = median_times(fns, r)
    out["batched_tokens_per_s"] = bb_steps * BATCH * block / t["ours"]
    out["batched_predicted_tokens_per_s"] = bb_steps * predicted_per_step / t["ours"]
    out["naive_batched_tokens_per_s"] = bb_naive_steps * BATCH * block / t["naive"]
    if "dp" in t:
        out["batched_dp_tokens_per_s"] = bb_steps * BATCH * block / t["dp"]

    params = init_params(jax.random.key(0), config)
    out.update(bench_sample(params, config, num_samples, r))
    out["sample_batch"] = num_samples

    # sweep_model_steps_per_s: member-steps/s of a vmapped sweep of the microgpt recipe (microgpt_jax.sweep)
    out.update(bench_sweep_model(args.quick, r))

    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    out["devices"] = jax.device_count()
    out["platform"] = f"{platform.machine()} {os.cpu_count()} cpus, jax {jax.__version__}, {jax.default_backend()}"
    return out


def table(res: dict[str, Any]) -> str:
    """The results as aligned rows, the project's path next to the naive one."""
    rows = [
        ("batch 1 steps/s (train, chunk 1000)", res["b1_steps_per_s"], res["naive_b1_steps_per_s"]),
        ("batch 1 steps/s (train, default chunk)", res["b1_steps_per_s_default_chunk"], None),
        (f"batch {BATCH} tokens/s (B*block_size)", res["batched_tokens_per_s"], res["naive_batched_tokens_per_s"]),
        (f"batch {BATCH} predicted tokens/s", res["batched_predicted_tokens_per_s"], None),
        (f"batch {BATCH} tokens/s, {res['devices']} devices", res.get("batched_dp_tokens_per_s"), None),
        (f"sampling names/s ({res['sample_batch']}), {res['devices']} devices", res["sample_names_per_s"], None),
        ("sampling names/s, 1 device", res["sample_names_per_s_1device"], None),
    ]
    rows.append((f"sweep member-steps/s, {res['devices']} devices", res["sweep_model_steps_per_s"], None))
    rows.append(("sweep member-steps/s, 1 device", res["sweep_model_steps_per_s_1device"], None))
    lines = [f"{'':44s}{'microgpt_jax':>14s}{'naive':>12s}{'speed-up':>10s}"]
    for name, ours, naive in rows:
        if ours is None:  # one device: no data-parallel figure
            continue
        extra = f"{naive:12,.0f}{ours / naive:9.1f}x" if naive else ""
        lines.append(f"{name:44s}{ours:14,.0f}{extra}")
    lines.append(f"{'compile of the batch-1 training program':44s}{res['b1_compile_s']:13.2f}s")
    lines.append(f"{'peak RSS':44s}{res['peak_rss_mib']:10.0f} MiB")
    lines.append(f"data: {res['data']}; medians of {res['repeats']} runs; {res['platform']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per figure (median reported)")
    parser.add_argument("--quick", action="store_true", help="few steps: exercises every path in seconds")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout (table to stderr)")
    parser.add_argument("--data", default=None, help=f"names corpus (default ${DATA_ENV}, else synthetic)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    set_cpu_devices()  # one CPU device per core, as the microgpt-jax program does; before any JAX computation
    res = run_all(args)
    if args.json:
        print(table(res), file=sys.stderr)
        print(json.dumps(res))
    else:
        print(table(res))
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(main))
