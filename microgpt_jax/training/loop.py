"""Training as compiled chunks of steps: ``lax.scan`` over steps, data gathered on device.

A chunk is one jitted program that runs ``chunk`` steps; the host only sees the per-step losses between
chunks (for progress and metrics.jsonl). Steps past the run's end inside the last chunk are skipped by a
``lax.cond``, so every chunk has the same shape (one compile) and chunking never changes a number.
Hyperparameters (lr, b1, b2, eps, weight decay, warm-up, dropout rate, seed) are traced arrays, not constants,
so one compiled program serves any values and a sweep can vmap over them; what changes the program's shape
(the optimizer, the schedule, and whether there is warm-up, weight decay or dropout at all) is its ``Recipe``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from numpy.typing import DTypeLike

from microgpt_jax.config import GPTConfig, TrainConfig
from microgpt_jax.errors import UserError
from microgpt_jax.model.loss import loss_fn
from microgpt_jax.model.optim import make_optimizer
from microgpt_jax.model.registry import analytic_gradient
from microgpt_jax.model.transformer import dropout_fn
from microgpt_jax.model.types import Params
from microgpt_jax.runtime import distributed, executables
from microgpt_jax.runtime.devices import DATA_AXIS
from microgpt_jax.runtime.xla_options import FAST_COMPILE, O2, jit_with_cpu_options
from microgpt_jax.storage.params import check_params

DROPOUT_STREAM = 0x64726F70  # "drop": dropout's keys are fold_in(key(seed), this, step), apart from init's split


@dataclass(frozen=True)
class Recipe:
    """What of a training recipe shapes the compiled program (a static argument); the values themselves are
    traced (``hparams_of``). The original's recipe is ``Recipe()``: Adam, linear decay, nothing else."""

    optimizer: str = "adam"
    schedule: str = "linear"
    warmup: bool = False
    weight_decay: bool = False
    dropout: bool = False


def recipe_of(train_config: TrainConfig) -> Recipe:
    """The static part of a recipe: warm-up, weight decay and dropout enter the program only when they are on."""
    tc = train_config
    return Recipe(tc.optimizer, tc.schedule, tc.warmup > 0, tc.weight_decay > 0, tc.dropout > 0)


def hparams_of(train_config: TrainConfig, dtype: DTypeLike) -> dict[str, np.ndarray]:
    """The traced hyperparameters of a recipe, as host scalars of the parameters' dtype (the seed, of dropout's
    keys, a uint32); the compiled programs take them as arguments, and a host value needs no conversion program."""
    tc = train_config
    values = {"lr": tc.lr, "b1": tc.b1, "b2": tc.b2, "eps": tc.eps, "num_steps": tc.steps,
              "weight_decay": tc.weight_decay, "warmup": tc.warmup, "dropout": tc.dropout}  # fmt: skip
    return {**{k: np.asarray(v, dtype) for k, v in values.items()}, "seed": np.asarray(tc.seed, np.uint32)}


def init_opt_state(optimizer: str | Recipe, params: Params) -> Any:
    """The optimizer's initial state (its structure does not depend on the hyperparameters).

    For concrete params: numpy zeros of the shapes ``jax.eval_shape`` gives, put on the device (every optimizer
    here starts from zeros, tests/model/test_optim.py checks it), so no program is compiled (docs/performance.md).
    Under a transformation (jit, vmap) it is the optimizer's own init. A ``Recipe`` with weight decay makes
    AdamW's state."""
    recipe = optimizer if isinstance(optimizer, Recipe) else Recipe(optimizer)
    init = make_optimizer(recipe.optimizer, 1.0, 1, weight_decay=0.0 if recipe.weight_decay else None).init
    if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(params)):
        return init(params)
    return jax.device_put(jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), jax.eval_shape(init, params)))


def step_bytes(config: GPTConfig, batch_size: int, n_docs: int, itemsize: int) -> int:
    """A rough upper estimate of the memory one training step needs: the corpus's tokens on the device, the
    parameters with their gradients and Adam's two moments, and the activations that backward keeps (per layer
    about 12 C floats per position and 3 attention maps of H x T x T per row; 3 of V for the logits), doubled
    for XLA's temporaries. Used to refuse a config that cannot fit before anything is written."""
    B, T, C, L, V, H = batch_size, config.block_size, config.n_embd, config.n_layer, config.vocab_size, config.n_head
    params = 2 * V * C + T * C + L * 12 * C * C
    acts = L * (12 * B * T * C + 3 * B * H * T * T) + 3 * B * T * V
    return 4 * n_docs * (T + 1) + itemsize * (4 * params + 2 * acts)


def check_tokens(tokens_NxT1: Any, n_N: Any, config: GPTConfig, what: str = "tokens") -> None:
    """The checked entry points' guard (``train``, ``evaluate``): ``encode_docs`` output for this config, token
    ids inside the vocabulary, counts inside the rows; a UserError saying which is not. Host arrays or jax
    arrays (their extremes are computed on their device)."""
    on_device = isinstance(tokens_NxT1, jax.Array) and isinstance(n_N, jax.Array)
    t, n = (tokens_NxT1, n_N) if on_device else (np.asarray(tokens_NxT1), np.asarray(n_N))
    if t.ndim != 2 or not np.issubdtype(t.dtype, np.integer):
        raise UserError(f"{what}: expected (N, T+1) integer token ids (encode_docs), got {t.dtype}{list(t.shape)}")
    if t.shape[1] - 1 > config.block_size:
        raise UserError(f"{what}: rows of {t.shape[1]} tokens exceed block_size {config.block_size} + 1")
    if n.shape != (t.shape[0],):
        raise UserError(f"{what}: {t.shape[0]} rows but {list(n.shape)} counts of predicted positions")
    cols = t.shape[1]
    if on_device and t.size:  # the extremes computed where the arrays are: no copy of a large corpus to the host
        t, n = np.asarray([jnp.min(t), jnp.max(t)]), np.asarray([jnp.min(n), jnp.max(n)])
    if t.size and (t.min() < 0 or t.max() >= config.vocab_size):
        raise UserError(f"{what}: token ids {t.min()}..{t.max()} are outside the vocabulary 0..{config.vocab_size - 1}")
    if n.size and (n.min() < 0 or n.max() > cols - 1):
        raise UserError(f"{what}: predicted positions {n.min()}..{n.max()} outside 0..{cols - 1}")


def train_step(
    params: Params,
    opt_state: Any,
    hparams: dict[str, jax.Array],
    tokens_BxT1: jax.Array,
    n_B: jax.Array,
    *,
    config: GPTConfig,
    recipe: Recipe,
    grad: str = "autodiff",
    step: jax.Array | int = 0,
) -> tuple[Params, Any, jax.Array]:
    """One step (number ``step``, which picks dropout's key): the loss and its gradient, then the optimizer's
    update. The gradient comes from jax.value_and_grad (``grad`` "autodiff") or the model's hand-written backward
    pass ("analytic": the MLP's, ``mlp.analytic_value_and_grad``)."""
    hp = hparams
    opt = make_optimizer(
        recipe.optimizer, hp["lr"], hp["num_steps"], hp["b1"], hp["b2"], hp["eps"], schedule=recipe.schedule,
        warmup=hp["warmup"] if recipe.warmup else None,
        weight_decay=hp["weight_decay"] if recipe.weight_decay else None,
    )  # fmt: skip
    if grad == "analytic":
        loss, grads = analytic_gradient(config)(params, tokens_BxT1, n_B, config)
    elif recipe.dropout:
        key = jax.random.fold_in(jax.random.fold_in(jax.random.key(hp["seed"]), DROPOUT_STREAM), step)
        loss, grads = jax.value_and_grad(loss_fn)(params, tokens_BxT1, n_B, config, dropout_fn(key, hp["dropout"]))
    else:
        loss, grads = jax.value_and_grad(loss_fn)(params, tokens_BxT1, n_B, config)
    params, opt_state = opt.update(grads, opt_state, params)
    return params, opt_state, loss


def shard_batch(x: jax.Array, mesh: Mesh | None) -> jax.Array:
    """Split a gathered batch along the mesh's ``data`` axis (identity without a mesh)."""
    if mesh is None:
        return x
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, P(DATA_AXIS)))


def batch_rows(step: jax.Array, batch_size: int, n_docs: int) -> jax.Array:
    """Which documents step ``step`` trains on: the original's docs[step % n], B consecutive per step."""
    return (step * batch_size + jnp.arange(batch_size)) % n_docs


CHUNK_STATIC = ("config", "recipe", "batch_size", "chunk", "mesh", "grad")


def _train_chunk(
    params: Params,
    opt_state: Any,
    hparams: dict[str, jax.Array],
    tokens_NxT1: jax.Array,
    n_N: jax.Array,
    start: jax.Array,
    end: jax.Array,
    *,
    config: GPTConfig,
    recipe: Recipe,
    batch_size: int,
    chunk: int,
    mesh: Mesh | None = None,
    grad: str = "autodiff",
) -> tuple[Params, Any, jax.Array]:
    """Run steps start .. start + chunk - 1 (those < ``end``) as one compiled scan; returns the new
    params and optimizer state and the ``chunk`` per-step losses (NaN for skipped steps).
    With a ``mesh``, each step's batch is split over its ``data`` axis (data parallel); ``recipe`` and ``grad``
    are ``train_step``'s."""
    n_docs = tokens_NxT1.shape[0]

    def step(carry: tuple[Params, Any], s: jax.Array) -> tuple[tuple[Params, Any], jax.Array]:
        def run(carry: tuple[Params, Any]) -> tuple[tuple[Params, Any], jax.Array]:
            params, opt_state = carry
            rows = batch_rows(s, batch_size, n_docs)
            # the corpus may be held in uint8 (AsciiDocs): the step's rows are cast, not the corpus
            tokens_BxT1, n_B = tokens_NxT1[rows].astype(jnp.int32), n_N[rows].astype(jnp.int32)
            params, opt_state, loss = train_step(
                params, opt_state, hparams, shard_batch(tokens_BxT1, mesh), shard_batch(n_B, mesh),
                config=config, recipe=recipe, grad=grad, step=s,
            )  # fmt: skip
            return (params, opt_state), loss

        def skip(carry: tuple[Params, Any]) -> tuple[tuple[Params, Any], jax.Array]:
            return carry, jnp.full((), jnp.nan, hparams["lr"].dtype)

        return jax.lax.cond(s < end, run, skip, carry)

    steps = start + jnp.arange(chunk)
    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), steps)
    return params, opt_state, losses


train_chunk = jax.jit(_train_chunk, static_argnames=CHUNK_STATIC)
_train_chunk_o2 = jit_with_cpu_options(_train_chunk, O2, static_argnames=CHUNK_STATIC)
_train_chunk_quick = jit_with_cpu_options(_train_chunk, FAST_COMPILE, static_argnames=CHUNK_STATIC)
O2_MAX_WORK = 1 << 17  # a step's work (see step_work) up to which its program is compiled at -O2 (xla_options)
QUICK_RUN_WORK = 1 << 27  # a run's work (steps x step_work) up to which it is compiled for a quick compile


def step_work(batch_size: int, config: GPTConfig) -> int:
    """A training step's work, taken as B * T * n_layer * n_embd^2 (the default run: 4,096)."""
    return batch_size * config.block_size * config.n_layer * config.n_embd**2


def chunk_program(batch_size: int, config: GPTConfig, steps: int, mesh: Mesh | None) -> tuple[Callable[..., Any], str]:
    """The training program ``train`` runs and its name in the executables store: small steps at LLVM -O2, and
    for a short run of them also XLA's quicker-compiling emitters; large steps, or over a mesh, XLA's defaults
    (why: docs/performance.md). The numbers are the same up to float rounding (which program a run gets depends
    on its steps as well as its shapes)."""
    work = step_work(batch_size, config)
    if mesh is not None or work > O2_MAX_WORK:
        return train_chunk, "train_chunk"
    if steps * work <= QUICK_RUN_WORK:
        return _train_chunk_quick, "train_chunk_quick"
    return _train_chunk_o2, "train_chunk_O2"


@dataclass
class ChunkReport:
    """What the host sees after each chunk: the steps run ([start, end)) and their losses."""

    start: int
    end: int
    losses: np.ndarray
    params: Params
    opt_state: Any


def default_chunk(batch_size: int, config: GPTConfig) -> int:
    """Steps per compiled call: about a tenth to a few tenths of a second of work on a CPU (``step_work``),
    1000 steps at most. Larger chunks cost fewer host round trips, smaller ones report sooner
    (docs/performance.md). Chunking never changes a number."""
    return max(1, min(1000, 50_000_000 // step_work(batch_size, config)))


def train(
    params: Params,
    tokens_NxT1: np.ndarray | jax.Array,
    n_N: np.ndarray | jax.Array,
    config: GPTConfig,
    train_config: TrainConfig,
    *,
    opt_state: Any = None,
    start_step: int = 0,
    chunk: int | None = None,
    boundaries: tuple[int, ...] = (),
    on_chunk: Callable[[ChunkReport], bool | None] | None = None,
    mesh: Mesh | None = None,
    on_lowered: Callable[[], None] | None = None,
) -> tuple[Params, Any, np.ndarray]:
    """Train from ``start_step`` to ``train_config.steps``; returns (params, opt_state, losses of the steps run).

    The gradient is ``train_config.grad``'s (see ``train_step``). The documents (``encode_docs``'s rows, any
    integer type) may already be on the device: they are used there, not copied.
    ``chunk`` steps run per compiled call (default: ``default_chunk``); a chunk also ends at every step in
    ``boundaries`` (evaluations, checkpoints). ``on_chunk`` is called after each chunk; returning True stops
    the run there.
    With a ``mesh`` (``devices.make_mesh(DATA_AXIS, n)``) params are replicated and each batch is split over
    its devices. ``on_lowered`` is called once the training program is traced and lowered, while XLA compiles
    it (a run starts compiling its other programs then: tracing holds Python's lock, XLA's compile does not).
    """
    tc = train_config
    check_tokens(tokens_NxT1, n_N, config)
    if len(n_N) == 0:
        raise UserError("train: no documents to train on (0 rows of tokens)")
    check_params(params, config, source="train: params")
    dtype = jax.tree.leaves(params)[0].dtype
    hparams = hparams_of(tc, dtype)
    recipe = recipe_of(tc)
    if tc.dropout and config.model != "gpt":
        raise UserError(f"`model` {config.model} has no dropout: drop `dropout`")
    if opt_state is None:
        opt_state = init_opt_state(recipe, params)
    chunk = max(1, min(chunk or default_chunk(tc.batch_size, config), tc.steps))
    # on the device once; device_put of a host array is a copy, where jnp.asarray compiles a program for it
    if isinstance(tokens_NxT1, jax.Array):  # already on the device (runs/loop.py puts a large corpus there itself)
        tokens_dev, n_dev = tokens_NxT1, jax.device_put(n_N)
    else:
        tokens_dev, n_dev = jax.device_put(np.asarray(tokens_NxT1)), jax.device_put(np.asarray(n_N))
    if mesh is not None:  # data parallel: everything replicated, the batch split inside train_chunk
        params, opt_state, hparams, tokens_dev, n_dev = jax.device_put(
            (params, opt_state, hparams, tokens_dev, n_dev), NamedSharding(mesh, P())
        )
    program, name = chunk_program(tc.batch_size, config, tc.steps, mesh)
    statics = {"config": config, "recipe": recipe, "batch_size": tc.batch_size, "chunk": chunk, "mesh": mesh,
               "grad": tc.grad}  # fmt: skip
    first = (params, opt_state, hparams, tokens_dev, n_dev, np.int32(start_step), np.int32(start_step))
    if on_lowered is not None and start_step < tc.steps:
        executables.compile_ahead(program, name, *first, after_lower=on_lowered, **statics)
    stops = sorted({b for b in boundaries if start_step < b < tc.steps} | {tc.steps})
    all_losses = []
    s = start_step
    for stop in stops:
        while s < stop:
            end = min(s + chunk, stop)
            params, opt_state, losses = executables.call(
                program, name, params, opt_state, hparams, tokens_dev, n_dev, np.int32(s), np.int32(end), **statics
            )
            losses = distributed.to_host(losses)[: end - s]  # replicated: every process has them
            all_losses.append(losses)
            report = ChunkReport(s, end, losses, params, opt_state)
            s = end
            if on_chunk is not None and on_chunk(report):
                return params, opt_state, np.concatenate(all_losses)
    return params, opt_state, np.concatenate(all_losses) if all_losses else np.zeros(0)
