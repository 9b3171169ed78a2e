"""Speed of microgpt_jax: what the user waits for (whole processes, start-up and compile included), and the hot
paths next to a naive JAX port and to the PyTorch peer, measured side by side in one run.

Run from the repository root::

    python experiments/bench.py                 # table, about four minutes on a 2-core CPU
    python experiments/bench.py --json          # one JSON object on stdout (the table goes to stderr)
    python experiments/bench.py --quick --json  # short: exercises every path (the tests run this)
    python experiments/bench.py --data data/names.txt   # the names corpus instead of synthetic names
    python experiments/bench.py --no-startup --no-peer  # the in-process figures only (about two minutes)

Start-up (``--no-startup`` skips it; run first, while this process is small and idle): whole-process wall time,
as ``time`` would show it, of ``python -m microgpt_jax`` (the ``microgpt-jax`` program's ``main``, from this
checkout), medians of ``--startup-runs`` runs (default 5; with ``--quick`` 1 run of ``train --model bigram``, which
compiles no training program: quick figures only show that the measurement works) taking turns:

- ``startup_train_cold_s``: the default ``microgpt-jax train --out DIR --data PATH`` (1000 steps, evaluation,
  20 samples printed) with an empty compilation cache (a new ``MICROGPT_JAX_CACHE`` directory per run);
- ``startup_train_warm_s``: the same with the cache the first cold run filled (every run after the first);
  ``startup_warm_over_cold`` their ratio; ``startup_train_{cold,warm}_rss_mib`` the process's peak memory;
- ``startup_help_s``: ``microgpt-jax --help`` (it imports neither JAX nor numpy);
- ``startup_import_jax_s``, for scale: ``python -c "import jax, jax.numpy as jnp, optax; jnp.zeros(1)"``, the
  floor of any command that trains.

The data is the corpus ``--data`` or $MICROGPT_JAX_DATA names, else the synthetic names written to a file.

The PyTorch peer (``--no-peer`` skips it; skipped with a note when torch is not installed: ``pip install -e
'.[peer]'``): ``experiments/torch_peer.py``, the same model and recipe as a PyTorch user writes them, checked
against the reference in float64 by its tests, on the same documents: ``torch_b1_t{1,2}_{eager,compiled}``
steps/s at batch 1 (1000 steps) and ``torch_b256_t{1,2}_{eager,compiled}`` tokens/s at batch 256 (40 steps),
on 1 and 2 torch threads, eager and ``torch.compile`` (``--no-peer-compile``, and ``--quick``, time the eager
rows only). Ratios from the same run: ``vs_torch_b1`` our batch-1 steps/s (one device) over torch eager on one
thread (``vs_torch_b1_best`` over torch's best), ``vs_torch_b256`` our best batch-256 tokens/s (one device or
every core) over torch's best (1 or 2 threads, eager or compiled).

In-process figures (medians of ``--repeats`` timed runs after a warm-up run that compiles):

- ``b1_steps_per_s``: the original recipe (microgpt config, batch 1, Adam) through ``train.train`` with one
  chunk per 1000 steps; ``b1_steps_per_s_default_chunk`` the same with train's default chunking
  (``train.default_chunk``: 1000 steps at batch 1 today, so the two should agree up to noise).
  ``b1_compile_s``: trace + compile of that training program (``train.chunk_program``'s, with its options).
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
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from microgpt_jax.config import GPTConfig, TrainConfig
from microgpt_jax.corpus.documents import encode_docs, load_docs, shuffle_docs
from microgpt_jax.corpus.source import DATA_ENV
from microgpt_jax.corpus.tokenizer import Tokenizer
from microgpt_jax.errors import exit_status
from microgpt_jax.model.init import init_params
from microgpt_jax.model.loss import loss_fn
from microgpt_jax.model.optim import linear_decay
from microgpt_jax.runtime import executables
from microgpt_jax.runtime.devices import DATA_AXIS, make_mesh, set_cpu_devices
from microgpt_jax.training.loop import Recipe, chunk_program, hparams_of, init_opt_state, train
from microgpt_jax.training.sampling import sample_tokens

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_grids  # beside this file

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
    """Trace + compile of the training program a default-length run at ``batch`` compiles (``train.chunk_program``:
    its compiler options), bypassing jit's cache."""
    tc = TrainConfig(batch_size=batch)
    params = init_params(jax.random.key(0), config)
    args = (params, init_opt_state(tc.optimizer, params), hparams_of(tc, jnp.float32), tokens, n)
    start, end = jnp.int32(0), jnp.int32(chunk)
    program, name = chunk_program(batch, config, tc.steps, None)
    static = {"config": config, "recipe": Recipe(), "batch_size": batch, "chunk": chunk}
    jax.clear_caches()
    t0 = time.perf_counter()
    # the store of whole programs is off in this process, so this traces and compiles, with the program's options
    executables.compile_ahead(program, name, *args, start, end, **static)
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

    from microgpt_jax.training import sweep

    docs = synthetic_docs(2000)
    tokenizer = Tokenizer.from_docs(docs)
    config = GPTConfig(vocab_size=tokenizer.vocab_size)
    mesh = sweep.sweep_mesh(devices)
    tok, n = encode_docs(docs, tokenizer, config.block_size)
    shard, rep = NamedSharding(mesh, P(sweep.AXIS)), NamedSharding(mesh, P())
    M = members + (-members % mesh.devices.size)  # padded to fill every device, as run_sweep does
    tcs = [TrainConfig(seed=i, steps=steps) for i in range(M)]
    params0 = sweep.init_members(tcs, config, jnp.float32)
    opt0 = jax.tree.map(np.asarray, jax.vmap(lambda p: init_opt_state("adam", p))(params0))
    hp = jax.tree.map(lambda x: sweep._put(x, shard), sweep._stack([hparams_of(tc, jnp.float32) for tc in tcs]))
    chunk = min(chunk, steps)
    fn = sweep._group_program(config, Recipe(), 1, chunk, mesh)
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


ROOT = Path(__file__).resolve().parent.parent
TARGETS = {  # issue 15's, on the project's 2-core machine
    "startup_train_warm_s": ("<=", 2.0),
    "startup_train_cold_s": ("<=", 4.0),
    "startup_warm_over_cold": ("<=", 0.4),
    "startup_help_s": ("<=", 0.3),
    "vs_torch_b1": (">=", 15.0),
    "vs_torch_b256": (">=", 1.7),
    "ours_over_torch_best": (">=", 2.0),  # issue 25's, each grid of ``sweeps``
    "dropout_cost": ("<=", 1.2),
}


def corpus_file(path: str | None, tmp: Path) -> str:
    """The corpus the start-up runs train on: ``path`` or $MICROGPT_JAX_DATA, else the synthetic names written
    to a file in ``tmp``."""
    path = path or os.environ.get(DATA_ENV) or None
    if path:
        return str(Path(path).resolve())
    synthetic = tmp / "synthetic-names.txt"
    synthetic.write_text("\n".join(synthetic_docs()) + "\n", encoding="utf-8")
    return str(synthetic)


IMPORT_JAX = "import jax, jax.numpy as jnp, optax; jnp.zeros(1).block_until_ready()"


def run_program(args: Sequence[str], cache: str, tmp: Path) -> tuple[float, float | None]:
    """Wall seconds and peak resident MiB of one ``microgpt-jax ARGS`` process (``python -m microgpt_jax``, this
    checkout, the console script's ``main``; ``args`` starting with ``-c``: that Python code instead) with
    ``MICROGPT_JAX_CACHE=cache``; its output goes to a file."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MICROGPT_JAX_CACHE": cache}
    for name in ("JAX_COMPILATION_CACHE_DIR", "JAX_ENABLE_COMPILATION_CACHE", "JAX_LOG_COMPILES"):
        env.pop(name, None)
    with open(tmp / "program.log", "w+b") as log:
        t0 = time.perf_counter()
        argv = [sys.executable, *args] if args[0] == "-c" else [sys.executable, "-m", "microgpt_jax", *args]
        proc = subprocess.Popen(argv, stdout=log, stderr=log, env=env, cwd=ROOT)
        if hasattr(os, "wait4"):  # the child's own peak memory
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            rss = usage.ru_maxrss / (1024 if sys.platform != "darwin" else 1024**2)
        else:
            proc.wait()
            rss = None
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            log.seek(0)
            tail = log.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"microgpt-jax {' '.join(args)} exited with {proc.returncode}:\n{tail}")
    return wall, rss


def bench_startup(data: str | None, runs: int, quick: bool = False) -> dict[str, Any]:
    """What the user waits for: whole-process wall time (and peak memory) of the default ``microgpt-jax train
    --out DIR --data PATH``, cold (an empty compilation cache) and warm (the cache filled by an earlier run), of
    ``microgpt-jax --help``, and for scale of a Python that only imports JAX and optax and runs one operation;
    medians of ``runs`` runs each, taking turns. Every cold run gets a new empty cache
    directory; the first one's is the warm runs' cache. ``quick`` trains ``--model bigram`` instead (counted: no
    training program to compile), to check the measurement in seconds."""
    with tempfile.TemporaryDirectory(prefix="microgpt-bench-") as name:
        tmp = Path(name)
        train = ["train", "--data", corpus_file(data, tmp), *(["--model", "bigram"] if quick else []), "--out"]
        warm_cache = str(tmp / "cache-0")
        times: dict[str, list[float]] = {"cold": [], "warm": [], "help": [], "import": []}
        rss: dict[str, list[float]] = {"cold": [], "warm": []}
        for i in range(runs):
            for kind in ("cold", "warm", "help", "import"):
                if kind == "help":
                    wall, peak = run_program(["--help"], "off", tmp)
                elif kind == "import":
                    wall, peak = run_program(["-c", IMPORT_JAX], "off", tmp)
                else:
                    cache = str(tmp / f"cache-{i}") if kind == "cold" else warm_cache
                    wall, peak = run_program([*train, str(tmp / f"run-{kind}-{i}")], cache, tmp)
                    shutil.rmtree(tmp / f"run-{kind}-{i}")
                    if peak is not None:
                        rss[kind].append(peak)
                times[kind].append(wall)
            if i:
                shutil.rmtree(tmp / f"cache-{i}")
        cache_files = [p for p in Path(warm_cache).rglob("*") if p.is_file()]  # JAX's entries, whole programs
        out: dict[str, Any] = {
            "startup_runs": runs,
            "startup_train_cold_s": statistics.median(times["cold"]),
            "startup_train_warm_s": statistics.median(times["warm"]),
            "startup_help_s": statistics.median(times["help"]),
            "startup_import_jax_s": statistics.median(times["import"]),
            "startup_cache_files": len(cache_files),
            "startup_cache_kib": sum(p.stat().st_size for p in cache_files) / 1024,
        }
    out["startup_warm_over_cold"] = out["startup_train_warm_s"] / out["startup_train_cold_s"]
    for kind in ("cold", "warm"):
        if rss[kind]:
            out[f"startup_train_{kind}_rss_mib"] = statistics.median(rss[kind])
    return out


def peer_docs(path: str | None) -> list[str]:
    """The documents the PyTorch peer trains on: the same as ours (``load_data``'s)."""
    path = path or os.environ.get(DATA_ENV) or None
    return shuffle_docs(load_docs(path), 42) if path else synthetic_docs()


def bench_peer(docs: list[str], quick: bool, repeats: int, compile: bool) -> dict[str, Any]:
    """The PyTorch peer (experiments/torch_peer.py: the same model and recipe as a PyTorch user writes them),
    timed in this run: batch 1 steps/s and batch 256 tokens/s, 1 and 2 threads, eager and (``compile``)
    torch.compile. Without torch: a note and no figures."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import torch_peer

    try:
        torch_peer.require_torch()
    except torch_peer.TorchUnavailableError:
        return {"torch": None, "peer_note": "PyTorch peer skipped: torch is not installed (pip install -e '.[peer]')"}
    out: dict[str, Any] = {"torch": torch_peer.torch.__version__}
    b1_steps, bb_steps = (20, 2) if quick else (1000, 40)
    for batch, steps in ((1, b1_steps), (BATCH, bb_steps)):
        for threads in (1, 2):
            for compiled in (False, True) if compile else (False,):
                key = f"torch_b{batch}_t{threads}_{'compiled' if compiled else 'eager'}"
                try:
                    out[key] = torch_peer.bench(batch, threads, compiled, steps, repeats, docs)
                except Exception as e:  # torch.compile needs a working C++ toolchain
                    if not compiled:
                        raise
                    out["peer_note"] = f"torch.compile failed ({type(e).__name__}): compiled rows skipped"
    return out


def peer_ratios(res: dict[str, Any]) -> dict[str, float]:
    """Our figures over the peer's from the same run: batch 1 (one device) over torch eager on one thread, the
    target's comparison, and over torch's best; batch 256 at each side's best (ours: one device or every core;
    torch: 1 or 2 threads, eager or compiled)."""
    if not res.get("torch"):
        return {}
    torch_b1 = [v for k, v in res.items() if k.startswith("torch_b1_")]
    torch_bb = [v for k, v in res.items() if k.startswith(f"torch_b{BATCH}_")]
    ours_bb = max(res["batched_tokens_per_s"], res.get("batched_dp_tokens_per_s", 0.0))
    return {
        "vs_torch_b1": res["b1_steps_per_s"] / res["torch_b1_t1_eager"],
        "vs_torch_b1_best": res["b1_steps_per_s"] / max(torch_b1),
        "vs_torch_b256": ours_bb / max(torch_bb),
        "vs_torch_b256_1device": res["batched_tokens_per_s"] / max(torch_bb),
    }


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
    if args.startup:  # first, while this process is still small and idle
        out.update(bench_startup(args.data, args.startup_runs or (1 if args.quick else 5), args.quick))

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

    # sweep_model_steps_per_s: member-steps/s of a vmapped sweep of the microgpt recipe (microgpt_jax.training.sweep)
    out.update(bench_sweep_model(args.quick, r))

    out.update(bench_grids.bench_dropout(peer_docs(args.data), args.quick, r))

    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux; before torch
    if args.peer:
        out.update(bench_peer(peer_docs(args.data), args.quick, r, compile=args.peer_compile and not args.quick))
        out.update(peer_ratios(out))
    if args.sweeps:  # ours beside PyTorch's best way (with --no-peer: ours only) on the three grids
        out["sweeps"] = bench_grids.bench_sweeps(peer_docs(args.data), args.quick, r, peer=args.peer)
    out["devices"] = jax.device_count()
    out["platform"] = f"{platform.machine()} {os.cpu_count()} cpus, jax {jax.__version__}, {jax.default_backend()}"
    return out


def _target(res: dict[str, Any], key: str) -> str:
    """The target of a figure and whether this run met it."""
    if key not in TARGETS or key not in res or res.get("quick"):  # quick figures are not comparable
        return ""
    op, bound = TARGETS[key]
    met = res[key] <= bound if op == "<=" else res[key] >= bound
    return f"{'≤' if op == '<=' else '≥'} {bound:g} {'met' if met else 'MISSED'}"


def table(res: dict[str, Any]) -> str:
    """The results as aligned rows: the project's path next to the naive one and to the PyTorch peer."""
    torch_b1 = res.get("torch_b1_t1_eager")
    torch_bb = max((v for k, v in res.items() if k.startswith(f"torch_b{BATCH}_")), default=None)
    rows = [
        ("batch 1 steps/s (train, chunk 1000)", res["b1_steps_per_s"], res["naive_b1_steps_per_s"], torch_b1),
        ("batch 1 steps/s (train, default chunk)", res["b1_steps_per_s_default_chunk"], None, torch_b1),
        (f"batch {BATCH} tokens/s (B*block_size)", res["batched_tokens_per_s"], res["naive_batched_tokens_per_s"],
         torch_bb),
        (f"batch {BATCH} predicted tokens/s", res["batched_predicted_tokens_per_s"], None, None),
        (f"batch {BATCH} tokens/s, {res['devices']} devices", res.get("batched_dp_tokens_per_s"), None, torch_bb),
        (f"sampling names/s ({res['sample_batch']}), {res['devices']} devices", res["sample_names_per_s"], None, None),
        ("sampling names/s, 1 device", res["sample_names_per_s_1device"], None, None),
        (f"sweep member-steps/s, {res['devices']} devices", res["sweep_model_steps_per_s"], None, None),
        ("sweep member-steps/s, 1 device", res["sweep_model_steps_per_s_1device"], None, None),
    ]  # fmt: skip
    lines = [f"{'':44s}{'microgpt_jax':>14s}{'naive':>12s}{'speed-up':>10s}{'PyTorch':>12s}{'ratio':>9s}"]
    for name, ours, naive, peer in rows:
        if ours is None:  # one device: no data-parallel figure
            continue
        line = f"{name:44s}{ours:14,.0f}" + (f"{naive:12,.0f}{ours / naive:9.1f}x" if naive else f"{'':22s}")
        lines.append(line + (f"{peer:12,.0f}{ours / peer:8.1f}x" if peer else ""))
    lines.append(f"{'compile of the batch-1 training program':44s}{res['b1_compile_s']:13.2f}s")
    lines.append(f"{'peak RSS':44s}{res['peak_rss_mib']:10.0f} MiB")
    lines.append(f"data: {res['data']}; medians of {res['repeats']} runs; {res['platform']}")
    if "startup_runs" in res:
        lines.append("")
        lines.append(f"start-up, whole process (medians of {res['startup_runs']} runs){'wall s':>10s}{'peak MiB':>10s}"
                     f"{'target':>16s}")  # fmt: skip
        for name, key in (
            ("microgpt-jax train, cold (empty cache)", "startup_train_cold"),
            ("microgpt-jax train, warm (cache filled)", "startup_train_warm"),
        ):
            rss = res.get(f"{key}_rss_mib")
            lines.append(f"{name:50s}{res[key + '_s']:10.2f}{rss or 0:10.0f}{_target(res, key + '_s'):>16s}")
        lines.append(f"{'warm / cold':50s}{res['startup_warm_over_cold']:10.2f}{'':10s}"
                     f"{_target(res, 'startup_warm_over_cold'):>16s}")  # fmt: skip
        lines.append(f"{'microgpt-jax --help':50s}{res['startup_help_s']:10.2f}{'':10s}"
                     f"{_target(res, 'startup_help_s'):>16s}")  # fmt: skip
        lines.append(f"{'for scale: python importing jax and optax':50s}{res['startup_import_jax_s']:10.2f}")
        lines.append(f"compilation cache after a run: {res['startup_cache_files']} files, "
                     f"{res['startup_cache_kib']:.0f} KiB")  # fmt: skip
    if res.get("torch"):
        lines.append("")
        lines.append(f"{'PyTorch peer, torch ' + res['torch']:34s}{'threads':>8s}{'eager':>12s}{'compiled':>12s}")
        for batch, unit in ((1, "steps/s"), (BATCH, "tokens/s")):
            for t in (1, 2):
                cells = "".join(
                    f"{res[k]:12,.0f}" if k in res else f"{'':12s}"
                    for k in (f"torch_b{batch}_t{t}_eager", f"torch_b{batch}_t{t}_compiled")
                )
                lines.append(f"{f'batch {batch}, {unit}':34s}{t:8d}{cells}")
        lines.append(f"{'batch 1: ours (1 device) / torch eager, 1 thread':62s}{res['vs_torch_b1']:6.1f}x"
                     f"{_target(res, 'vs_torch_b1'):>16s}")  # fmt: skip
        lines.append(f"{'batch 1: ours / torch at its best':62s}{res['vs_torch_b1_best']:6.1f}x")
        lines.append(f"{f'batch {BATCH}: ours at its best / torch at its best':62s}{res['vs_torch_b256']:6.1f}x"
                     f"{_target(res, 'vs_torch_b256'):>16s}")  # fmt: skip
    if res.get("peer_note"):
        lines.append(res["peer_note"])
    lines.append("")
    lines.append(f"{'dropout ' + str(res['dropout_rate']) + ': a run with it / without (4 x 96, batch 64)':62s}"
                 f"{res['dropout_cost']:6.2f}x{_target(res, 'dropout_cost'):>16s}")  # fmt: skip
    if res.get("sweeps"):
        lines.append("")
        lines.append(f"{'grids, member-steps/s':26s}{'ours':>10s}{'1 device':>10s}{'one model':>11s}{'torch best':>12s}"
                     f"{'ratio':>8s}  torch's best way")  # fmt: skip
        for name, g in res["sweeps"].items():
            torch_best = f"{g['torch_best_member_steps_per_s']:12,.0f}{g['ours_over_torch_best']:7.1f}x" if (
                "torch_best_way" in g) else ""  # fmt: skip
            target = _target({**g, "quick": res.get("quick")}, "ours_over_torch_best")
            way = (f"  {g['torch_best_way']}; losses within {g['agree_max_diff']:.0e} at step {g['agree_steps']}, "
                   f"{g['max_final_loss_diff']:.0e} at the end; {target}") if torch_best else ""  # fmt: skip
            label = f"{name}, {g['members']} x batch {g['batch_size']}"
            lines.append(f"{label:26s}{g['ours_member_steps_per_s']:10,.0f}{g['ours_1device_member_steps_per_s']:10,.0f}"
                         f"{g['one_model_steps_per_s']:11,.0f}{torch_best}{way}")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per figure (median reported)")
    parser.add_argument("--quick", action="store_true", help="few steps: exercises every path in seconds")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout (table to stderr)")
    parser.add_argument("--data", default=None, help=f"names corpus (default ${DATA_ENV}, else synthetic)")
    parser.add_argument("--no-startup", dest="startup", action="store_false", help="skip the whole-process runs")
    parser.add_argument("--startup-runs", type=int, default=None, help="runs per start-up figure (default 5; 1 quick)")
    parser.add_argument("--no-peer", dest="peer", action="store_false", help="skip the PyTorch peer")
    parser.add_argument("--no-sweeps", dest="sweeps", action="store_false", help="skip the three grids (sweeps)")
    parser.add_argument(
        "--no-peer-compile", dest="peer_compile", action="store_false", help="the peer's eager rows only (quick: so)"
    )
    args = parser.parse_args(argv)
    if args.repeats < 1 or (args.startup_runs is not None and args.startup_runs < 1):
        parser.error("--repeats and --startup-runs must be >= 1")
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
