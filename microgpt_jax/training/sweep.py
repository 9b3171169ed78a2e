"""Hyperparameter sweeps: a grid of training runs as one vmapped, jitted program per shape group.

Members whose parameters have the same shapes (same architecture, optimizer and batch size) train together:
``loop.train_chunk`` is vmapped over the params/optimizer-state pytrees and over the hyperparameters (lr, b1,
b2, eps, num_steps, weight decay, warm-up, dropout rate, seed: traced arrays, not constants), and jitted once
per shape group (architecture, batch size, optimizer and schedule; warm-up, weight decay and dropout are in a
group's program when any of its members has them: ``group_recipe``). The member axis is sharded over every
device along the ``members`` mesh axis with ``jax.shard_map``; with one device it is plain vmap. Members cannot
talk to each other, so a member that diverges (NaN loss) leaves the others as they are, and each member's
numbers equal a ``train`` run with the same arguments and seed. Members that differ only in their number of
steps share the compiled program but run as separate passes (each pass has one end step; why:
docs/performance.md).

Multi-process: ``distributed.initialize`` on every process before ``run_sweep``; the mesh spans
``jax.devices()`` (every process's devices; a ``devices`` count that leaves a process out is refused), inputs
are built with ``distributed.put`` and results gathered with ``distributed.to_host``; only process 0 writes
files and prints.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, partial
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from numpy.typing import ArrayLike, DTypeLike

from microgpt_jax.config import GPTConfig, TrainConfig
from microgpt_jax.corpus.documents import encode_docs
from microgpt_jax.corpus.tokenizer import Tokenizer
from microgpt_jax.errors import UserError
from microgpt_jax.model.dtypes import float_dtype
from microgpt_jax.model.init import init_params
from microgpt_jax.model.loss import nll_sum
from microgpt_jax.model.types import Params
from microgpt_jax.runtime import devices, distributed
from microgpt_jax.runtime.devices import MEMBER_AXIS as AXIS
from microgpt_jax.runtime.xla_options import YNN_MATMULS_ONLY, jit_with_cpu_options
from microgpt_jax.training.evaluation import padded_batches
from microgpt_jax.training.loop import Recipe, hparams_of, init_opt_state, recipe_of, step_bytes, train_chunk

MODEL_KEYS = ("n_layer", "n_embd", "n_head", "block_size")
TRAIN_KEYS = ("optimizer", "lr", "seed", "init_std", "b1", "b2", "batch_size", "steps", "weight_decay", "schedule",
              "warmup", "dropout")  # fmt: skip
RECIPE_KEYS = ("weight_decay", "schedule", "warmup", "dropout")  # in the train command only when not the default
GRID_KEYS = TRAIN_KEYS + MODEL_KEYS  # the CSV's hyperparameter columns, named like the flags


@dataclass(frozen=True)
class Member:
    """One point of the grid: its position, architecture and training recipe."""

    index: int
    config: GPTConfig
    train: TrainConfig

    def hyperparams(self) -> dict[str, Any]:
        """The member's grid values, keyed by the configs' field names (``lr``, ``seed``, ``init_std``, ...)."""
        out = {k: getattr(self.train, k) for k in TRAIN_KEYS}
        out.update({k: getattr(self.config, k) for k in MODEL_KEYS})
        return out


def grid_members(base_config: GPTConfig, base_train: TrainConfig, grid: dict[str, Sequence[Any]]) -> list[Member]:
    """The cross product of ``grid`` (keys from GRID_KEYS, each a list of values) over the base configs.

    A field the grid does not name keeps the base config's value. Sweeps train with jax.grad: a ``base_train``
    asking for the hand-written gradient (``grad`` "analytic") is a UserError. An ``lr`` of None means the member's
    optimizer's default (``config.DEFAULT_LR``) and an ``init_std`` of None the init's default, as in ``train``.
    """
    if base_train.grad != "autodiff":
        raise UserError(
            f"a sweep trains with jax.grad: grad {base_train.grad!r} is refused (the hand-written gradient gives "
            "the same numbers; train one run with it instead)"
        )
    unknown = set(grid) - set(GRID_KEYS)
    if unknown:
        raise UserError(f"unknown sweep keys {sorted(unknown)}: use {', '.join(GRID_KEYS)}")
    keys = [k for k in GRID_KEYS if k in grid]
    for k in keys:
        if len(grid[k]) == 0:
            raise UserError(f"--{k.replace('_', '-')} needs at least one value")
    members = []
    for i, values in enumerate(itertools.product(*(grid[k] for k in keys))):
        point = dict(zip(keys, values, strict=True))
        config = dataclasses.replace(base_config, **{k: v for k, v in point.items() if k in MODEL_KEYS})
        train = {**base_train.to_dict(), **{k: v for k, v in point.items() if k in TRAIN_KEYS}}
        try:
            members.append(Member(i, config, TrainConfig(**train)))
        except UserError as e:  # the grid is a cross product: say which combination cannot be trained
            where = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in point.items() if v is not None)
            raise UserError(f"sweep member {i} ({where}): {e}") from None
    return members


def sweep_mesh(requested: int | None = None) -> Mesh:
    """The ``members`` mesh over the first ``requested`` devices (default all, every host's)."""
    return devices.make_mesh(AXIS, devices.job_device_count(requested, 0))


_put = distributed.put  # a (possibly multi-host) global array from the same host value on every process
_to_host = distributed.to_host  # the whole value of a global array on this host


@cache
def _group_program(config: GPTConfig, recipe: Recipe, batch_size: int, chunk: int, mesh: Mesh) -> Callable[..., Any]:
    """The jitted program that runs one chunk of steps for a stack of members sharded along ``members``.
    On CPU only the matmuls go to YNNPACK (see xla_options)."""
    step_chunk = partial(train_chunk, config=config, recipe=recipe, batch_size=batch_size, chunk=chunk)
    vmapped = jax.vmap(step_chunk, in_axes=(0, 0, 0, None, None, None, None))

    m, r = P(AXIS), P()
    sharded = jax.shard_map(vmapped, mesh=mesh, in_specs=(m, m, m, r, r, r, r), out_specs=(m, m, m), check_vma=False)
    return jit_with_cpu_options(sharded, YNN_MATMULS_ONLY)


@cache
def _eval_program(config: GPTConfig, mesh: Mesh) -> Callable[..., Any]:
    """Jitted (sum of NLL, token count) per member over one batch of documents.

    Members are evaluated one after another (``lax.map``) on each device, not vmapped: evaluation runs once
    per sweep and this is the very program ``evaluation.evaluate`` runs."""

    def per_device(params: Params, tokens_NxT1: jax.Array, n_N: jax.Array) -> tuple[jax.Array, jax.Array]:
        return jax.lax.map(lambda p: nll_sum(p, tokens_NxT1, n_N, config), params)

    m, r = P(AXIS), P()
    return jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(m, r, r), out_specs=(m, m), check_vma=False))


def init_members(train_configs: Sequence[TrainConfig], config: GPTConfig, dtype: DTypeLike) -> dict[str, np.ndarray]:
    """Stacked initial params, member i's ``init_params(jax.random.key(seed_i), config, init_std_i, ...)``, made
    one member at a time exactly as ``train`` makes them (a vmapped init compiles far slower than it runs)."""
    trees = [init_params(jax.random.key(tc.seed), config, tc.init_std, tc.init_zero_out, dtype) for tc in train_configs]
    return _stack(trees)


@cache
def _init_opt_program(recipe: Recipe) -> Callable[..., Any]:
    return jax.jit(jax.vmap(partial(init_opt_state, recipe)))


def _stack(trees: Sequence[Mapping[str, ArrayLike]]) -> dict[str, np.ndarray]:
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)


def _evaluate_members(
    params: Params, tokens_NxT1: np.ndarray, n_N: np.ndarray, config: GPTConfig, mesh: Mesh, batch: int
) -> np.ndarray:
    """Held-out mean NLL per member (as ``evaluation.evaluate``: fixed-size padded batches, sums in float64)."""
    M = jax.tree.leaves(params)[0].shape[0]
    if len(n_N) == 0:
        return np.full(M, np.nan)
    fn, rep = _eval_program(config, mesh), NamedSharding(mesh, P())
    total, count = np.zeros(M), np.zeros(M)
    for toks, n in padded_batches(tokens_NxT1, n_N, batch):
        s, c = fn(params, _put(toks, rep), _put(n, rep))
        total += _to_host(s).astype(np.float64)
        count += _to_host(c)
    return total / count


@dataclass
class SweepResult:
    """A finished sweep: one row per member (hyperparameters and results), per-step losses, optional params."""

    rows: list[dict[str, Any]]
    losses: list[np.ndarray]
    params: list[dict[str, np.ndarray]] | None


def final_train_loss(losses: np.ndarray) -> float:
    """The mean loss of the last 10% of steps (at least one)."""
    k = max(1, len(losses) // 10)
    return float(np.mean(losses[-k:]))


def group_recipe(members: Sequence[Member]) -> Recipe:
    """The program a group runs: warm-up, weight decay or dropout is in it when any member has it on. A member
    without runs it at 0, the same numbers up to float rounding (the run's own program leaves it out), so
    members that differ only there share one program and fill the devices together."""
    recipes = [recipe_of(m.train) for m in members]
    return dataclasses.replace(
        recipes[0],
        warmup=any(r.warmup for r in recipes),
        weight_decay=any(r.weight_decay for r in recipes),
        dropout=any(r.dropout for r in recipes),
    )


def member_groups(members: list[Member]) -> list[list[Member]]:
    """Members split into passes: same shapes, optimizer, schedule, batch size and step count (warm-up, weight
    decay and dropout on or off share a pass: ``group_recipe``); first-seen order."""
    groups: dict[tuple[object, ...], list[Member]] = {}
    for m in members:
        t = m.train
        key = (m.config, t.optimizer, t.schedule, t.batch_size, t.x64, t.init_zero_out, t.steps)
        groups.setdefault(key, []).append(m)
    return list(groups.values())


def sweep_bytes(members: list[Member], n_docs: int, n_devices: int = 1, shared: bool = True) -> int:
    """A rough upper estimate of the memory the largest pass of a sweep needs on one device: its members train
    together, each a training step's parameters, optimizer state and activations (``loop.step_bytes``), beside
    one copy of the corpus's tokens. ``shared`` (a CPU's devices share the machine's memory): all the pass's
    members count; else a device's share of them."""
    worst = 0
    for group in member_groups(members):
        m = group[0]
        per_member = step_bytes(m.config, m.train.batch_size, 0, 8 if m.train.x64 else 4)
        count = len(group) if shared else -(-len(group) // n_devices)
        worst = max(worst, count * per_member + 4 * n_docs * (m.config.block_size + 1))
    return worst


def check_grid_fits(base_config: GPTConfig, base_train: TrainConfig, grid: dict[str, Sequence[Any]]) -> None:
    """``check_sweep_fits`` before any member is built (a large grid is slow to build): the grid's size times the
    smallest member's ``step_bytes`` (its smallest model and batch, no corpus) is a lower bound of what the
    sweep needs; a UserError with it and the limit when even that cannot fit."""
    import math

    count = math.prod(len(v) for v in grid.values())
    batch = min(grid.get("batch_size") or [base_train.batch_size], default=base_train.batch_size)
    smallest = None
    for values in itertools.product(*(grid.get(k) or [getattr(base_config, k)] for k in MODEL_KEYS)):
        try:
            config = dataclasses.replace(base_config, **dict(zip(MODEL_KEYS, values, strict=True)))
        except (UserError, ValueError, TypeError):  # an invalid combination: grid_members names it
            continue
        need = step_bytes(config, batch or 1, 0, 8 if base_train.x64 else 4)
        smallest = need if smallest is None else min(smallest, need)
    have = devices.available_memory()
    if smallest is not None and count * smallest > 0.9 * have:
        raise UserError(
            f"the sweep's {count:,} members need at least {count * smallest / 2**30:,.1f} GiB at once, more than the "
            f"{have / 2**30:,.1f} GiB this device has: sweep fewer members (`seeds`, fewer values) or smaller models"
        )


def check_sweep_fits(members: list[Member], n_docs: int, n_devices: int = 1) -> None:
    """A UserError with the estimate and the limit when a pass of the sweep cannot fit in the device's memory
    (``sweep_bytes``), before anything is compiled or written."""
    shared = jax.default_backend() == "cpu"
    need, have = sweep_bytes(members, n_docs, n_devices, shared), devices.available_memory()
    if need > 0.9 * have:
        raise UserError(
            f"the sweep's {len(members):,} members need about {need / 2**30:,.1f} GiB at once, more than the "
            f"{have / 2**30:,.1f} GiB this device has: sweep fewer members (`seeds`, fewer values) or smaller models"
        )


def run_sweep(
    members: list[Member],
    train_docs: Sequence[str],
    val_docs: Sequence[str],
    tokenizer: Tokenizer,
    *,
    mesh: Mesh | None = None,
    chunk: int = 100,
    eval_batch: int = 256,
    keep_params: bool = False,
    progress: bool = True,
) -> SweepResult:
    """Train every member; groups run one after another, each group's members together on ``mesh``.

    Each member starts from ``init_params(jax.random.key(seed), ...)`` exactly as ``train`` does, so its
    losses and val_loss equal a ``train`` run with the same arguments. Returns rows in member order.
    """
    from tqdm import tqdm

    mesh = mesh if mesh is not None else sweep_mesh()
    D = mesh.devices.size
    if members and members[0].config.model != "gpt":
        raise UserError("sweep trains the gpt model only: drop `model`")
    chunk = max(1, min(chunk, max(m.train.steps for m in members))) if members else chunk
    encoded: dict[int, tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]] = {}
    rows: list[dict[str, Any] | None] = [None] * len(members)
    losses_out: list[np.ndarray | None] = [None] * len(members)
    params_out: list[Any] = [None] * len(members)
    groups = member_groups(members)
    for g, group in enumerate(groups):
        t0 = time.perf_counter()
        config, tc0 = group[0].config, group[0].train
        dtype = float_dtype(tc0.x64)
        bs = config.block_size
        if bs not in encoded:
            encoded[bs] = (encode_docs(train_docs, tokenizer, bs), encode_docs(val_docs, tokenizer, bs))
        (tok_NxT1, n_N), (val_tok, val_n) = encoded[bs]
        if len(n_N) == 0:
            raise UserError("no training documents left after the held-out split: lower `val_size`")
        padded = group + [group[0]] * (-len(group) % D)  # fill every device; the copies are dropped
        params0 = init_members([m.train for m in padded], config, dtype)
        recipe = group_recipe(group)
        opt0 = _init_opt_program(recipe)(params0)
        hp0 = [hparams_of(m.train, dtype) for m in padded]
        shard, rep = NamedSharding(mesh, P(AXIS)), NamedSharding(mesh, P())
        put_members = partial(_put, sharding=shard)
        params = jax.tree.map(put_members, params0)
        opt_state = jax.tree.map(put_members, opt0)
        hparams = jax.tree.map(put_members, _stack(hp0))
        tokens_dev, n_dev = _put(tok_NxT1, rep), _put(n_N, rep)
        fn = _group_program(config, recipe, tc0.batch_size, chunk, mesh)
        steps = tc0.steps
        end = jnp.asarray(steps, jnp.int32)
        chunks = []
        desc = f"group {g + 1}/{len(groups)}: {len(group)} members, {tc0.optimizer}, {steps} steps"
        bar = tqdm(total=steps, desc=desc, disable=not progress or jax.process_index() != 0, leave=False)
        for s in range(0, steps, chunk):
            params, opt_state, losses = fn(
                params, opt_state, hparams, tokens_dev, n_dev, jnp.asarray(s, jnp.int32), end
            )
            chunks.append(losses)
            if not bar.disable:  # the bar counts finished steps: wait for the chunk (dispatch is asynchronous)
                losses.block_until_ready()
            bar.update(min(chunk, steps - s))
        bar.close()
        losses_MxS = np.concatenate([_to_host(c) for c in chunks], axis=1)[:, :steps]
        val_M = _evaluate_members(params, val_tok, val_n, config, mesh, eval_batch)
        host_params = jax.tree.map(_to_host, params) if keep_params else None
        seconds = (time.perf_counter() - t0) / len(group)
        for j, m in enumerate(group):
            loss_S = losses_MxS[j]
            diverged = bool(not np.all(np.isfinite(loss_S)) or (len(val_n) > 0 and not np.isfinite(val_M[j])))
            rows[m.index] = {
                "id": m.index,
                **m.hyperparams(),
                "train_loss": final_train_loss(loss_S),
                "val_loss": float(val_M[j]),
                "diverged": diverged,
                "seconds": seconds,
                "group": g,
            }
            losses_out[m.index] = loss_S
            if host_params is not None:  # keep_params
                params_out[m.index] = {k: v[j] for k, v in host_params.items()}
    # every member's row and losses are filled in by its group
    return SweepResult(
        cast("list[dict[str, Any]]", rows), cast("list[np.ndarray]", losses_out), params_out if keep_params else None
    )
