"""The progression's models behind one registry, chosen by ``config.model``: the one place that dispatches.

- ``bigram`` (Step 0): a (V, V) table of counted next-token log-probabilities (microgpt_jax.bigram);
- ``mlp`` (Step 1): next token from the current token alone through a ReLU MLP (microgpt_jax.mlp);
- ``gpt``: microgpt's transformer (microgpt_jax.gpt).

A ``Model`` holds each one's functions (state_dict shapes, forward over whole sequences, one-token step with
its cache, and a hand-written ``analytic_value_and_grad`` where there is one: the MLP's, Step 1) and what it is
not: ``counted`` models are built by counting, not by gradient steps, and ``unused`` names the config fields it
ignores (the command line refuses them; ``unused_fields`` adds what depends on the recipe). ``param_shapes``,
``init_params``, ``forward``, ``init_cache`` and ``forward_step`` below work for every model; loss,
training, evaluation, sampling and io call these.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from microgpt_jax import bigram, executables, mlp, threefry
from microgpt_jax.config import MODELS, GPTConfig, TrainConfig
from microgpt_jax.devices import default_float
from microgpt_jax.errors import UserError
from microgpt_jax.gpt import Dropout, gpt, gpt_step, init_kv_cache
from microgpt_jax.gpt import param_shapes as gpt_shapes

Params = dict[str, jax.Array]
Cache = dict[str, jax.Array]

# what only gradient training uses: a counted model takes none of it
_GRADIENT_FIELDS = frozenset(
    {"optimizer", "lr", "b1", "b2", "eps", "weight_decay", "schedule", "warmup", "dropout", "steps", "batch_size",
     "init_std", "init_zero_out", "eval_every", "ckpt_every", "devices", "init"}
)  # fmt: skip


@dataclass(frozen=True)
class Model:
    """One model of the progression: its functions and the config fields it ignores."""

    name: str
    param_shapes: Callable[[GPTConfig], dict[str, tuple[int, int]]]
    forward: Callable[[Params, jax.Array, GPTConfig], jax.Array]
    init_cache: Callable[[GPTConfig, int, jnp.dtype], Cache]
    forward_step: Callable[[Params, jax.Array, jax.Array, Cache, GPTConfig], tuple[jax.Array, Cache]]
    counted: bool
    unused: frozenset[str]
    # (params, tokens_BxT1, n_B, config) -> (loss, grads), the backward pass written by hand; None: jax.grad only
    analytic_value_and_grad: Callable[[Params, jax.Array, jax.Array, GPTConfig], tuple[jax.Array, Params]] | None = None


def _no_cache(config: GPTConfig, batch: int, dtype: jnp.dtype) -> Cache:
    return {}  # the bigram and the MLP see only the current token: nothing to carry between positions


def _stateless_step(
    forward: Callable, params: Params, token_B: jax.Array, pos: jax.Array, cache: Cache, config: GPTConfig
) -> tuple[jax.Array, Cache]:
    return forward(params, token_B[:, None], config)[:, 0], cache


def _bigram_forward(params: Params, tokens_BxT: jax.Array, config: GPTConfig) -> jax.Array:
    return bigram.bigram_forward(params, tokens_BxT)


def _mlp_forward(params: Params, tokens_BxT: jax.Array, config: GPTConfig) -> jax.Array:
    return mlp.mlp_forward(params, tokens_BxT)


def _mlp_analytic(params: Params, tokens_BxT1: jax.Array, n_B: jax.Array, config: GPTConfig):
    return mlp.analytic_value_and_grad(params, tokens_BxT1, n_B)


REGISTRY: dict[str, Model] = {
    "bigram": Model(
        "bigram", bigram.param_shapes, _bigram_forward, _no_cache, partial(_stateless_step, _bigram_forward),
        counted=True, unused=_GRADIENT_FIELDS | {"n_layer", "n_embd", "n_head", "grad"},
    ),
    "mlp": Model(
        "mlp", mlp.param_shapes, _mlp_forward, _no_cache, partial(_stateless_step, _mlp_forward),
        counted=False, unused=frozenset({"n_layer", "n_head", "smoothing", "count", "dropout"}),
        analytic_value_and_grad=_mlp_analytic,
    ),
    "gpt": Model(
        "gpt", gpt_shapes, gpt, init_kv_cache, gpt_step,
        counted=False, unused=frozenset({"smoothing", "count"}),
    ),
}  # fmt: skip
assert set(REGISTRY) == set(MODELS)  # config.py validates the names without importing the models


def get(config: GPTConfig) -> Model:
    """The registry entry of ``config.model``."""
    return REGISTRY[config.model]


def unused_fields(config: GPTConfig, train: TrainConfig) -> frozenset[str]:
    """The config fields ``config.model`` ignores when trained with ``train``: the registry's ``unused``, except
    that counting online (``count`` "online", one document per step) takes ``steps``."""
    unused = get(config).unused
    if get(config).counted and train.count == "online":
        unused -= {"steps"}
    return unused


def analytic_gradient(config: GPTConfig) -> Callable[[Params, jax.Array, jax.Array, GPTConfig], tuple]:
    """``config.model``'s hand-written ``(params, tokens_BxT1, n_B, config) -> (loss, grads)`` (``train.grad``
    "analytic"): only the MLP has one (Step 1's); for another model it is a UserError."""
    analytic = get(config).analytic_value_and_grad
    if analytic is None:
        have = [name for name, m in REGISTRY.items() if m.analytic_value_and_grad is not None]
        raise UserError(
            f"--model {config.model} has no hand-written gradient (only {', '.join(have)} has, Step 1's): "
            "use --grad autodiff"
        )
    return analytic


def param_shapes(config: GPTConfig) -> dict[str, tuple[int, int]]:
    """The state_dict's names and (nout, nin) shapes for ``config.model``, in the original's order."""
    return get(config).param_shapes(config)


def num_params(params: Params) -> int:
    """Total number of scalars in a state_dict."""
    return sum(int(p.size) for p in params.values())


def _scaled(draws: list[jax.Array], std: jax.Array, shapes: tuple, zero_out: bool, dtype: jnp.dtype) -> Params:
    """The state_dict from each matrix's flat N(0, 1) draw, slices of draws made behind an optimization barrier.

    The barrier keeps XLA from fusing the scaling into the draw (the same bits as drawing, then scaling), and
    from copying the draw's computation (erfinv's polynomial) into every matrix's slice."""
    params = {}
    for draw, (name, shape) in zip(draws, shapes, strict=True):
        if zero_out and name.endswith(("attn_wo", "mlp_fc2")):
            params[name] = jnp.zeros(shape, dtype)
        else:
            params[name] = std * draw.reshape(shape)
    return params


@partial(jax.jit, static_argnames=("shapes", "zero_out", "dtype"))
def _init(key: jax.Array, std: jax.Array, *, shapes: tuple, zero_out: bool, dtype: jnp.dtype) -> Params:
    # One compiled program for every matrix, the key made inside it when given a seed (as jax.random.key(seed)):
    # eager op-by-op init compiled a small program per matrix and per key operation.
    if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) and key.ndim == 0:
        key = jax.random.key(key)
    keys = jax.random.split(key, len(shapes))
    sizes = [math.prod(shape) for _, shape in shapes]
    if jax.config.jax_threefry_partitionable:
        # Element i of normal(k, shape) depends only on k and i (the flat index), not on the shape: one vmapped
        # draw of the largest size gives every matrix's numbers as a prefix of its row, with one threefry and one
        # erfinv in the program instead of one per matrix.
        rows = jax.lax.optimization_barrier(jax.vmap(lambda k: jax.random.normal(k, (max(sizes),), dtype))(keys))
        draws = [rows[i, :size] for i, size in enumerate(sizes)]
    else:  # the older bit layout depends on the shape: one draw per matrix
        draws = [jax.random.normal(k, (size,), dtype) for k, size in zip(keys, sizes, strict=True)]
        draws = jax.lax.optimization_barrier(draws)
    return _scaled(draws, std, shapes, zero_out, dtype)


def _normal_from_bits(bits: jax.Array, dtype: jnp.dtype) -> jax.Array:
    """``jax.random.normal``'s values from its random bits (uint32 for float32, uint64 for float64): the same
    operations in the same order as jax.random.uniform (the bits' mantissa as a float in [1, 2), then scaled to
    [nextafter(-1, 0), 1)) and normal (sqrt(2) erfinv)."""
    finfo = jnp.finfo(dtype)
    lo, hi = np.nextafter(np.array(-1.0, dtype), np.array(0.0, dtype), dtype=dtype), np.array(1.0, dtype)
    minval, maxval = jax.lax.convert_element_type(lo, dtype), jax.lax.convert_element_type(hi, dtype)
    float_bits = jax.lax.shift_right_logical(bits, jnp.array(finfo.bits - finfo.nmant, bits.dtype))
    float_bits = jax.lax.bitwise_or(float_bits, jnp.asarray(np.array(1.0, dtype).view(bits.dtype), bits.dtype))
    floats = jax.lax.bitcast_convert_type(float_bits, dtype) - jnp.array(1.0, dtype)
    u = jax.lax.max(minval, floats * (maxval - minval) + minval)
    return jax.lax.mul(np.array(np.sqrt(2), dtype), jax.lax.erf_inv(u))


@partial(jax.jit, static_argnames=("dtype",))
def _scaled_normal(bits: jax.Array, std: jax.Array, *, dtype: jnp.dtype) -> jax.Array:
    # Every matrix's draw from its random bits, made on the host (threefry.py) and concatenated: the program has
    # no threefry, and one output (an output per matrix compiled a kernel per matrix: 7x the compile time).
    return std * jax.lax.optimization_barrier(_normal_from_bits(bits, dtype))


def _init_from_seed(seed: int, shapes: tuple, std: np.ndarray, zero_out: bool, dtype: jnp.dtype) -> Params | None:
    """``init_params(jax.random.key(seed), ...)`` with the keys and random bits made on the host, the normal
    draw and scaling in one small program, the matrices cut from its flat result on the host; None where JAX's
    PRNG or the dtype is not the one ``threefry`` computes."""
    x64 = bool(jax.config.jax_enable_x64)
    if not threefry.usable() or dtype not in (jnp.float32, jnp.float64) or (dtype == jnp.float64 and not x64):
        return None
    sizes = [math.prod(shape) for _, shape in shapes]
    keys = threefry.split(threefry.key(seed, x64), len(shapes))
    bits = np.concatenate([threefry.bits(k, n, jnp.finfo(dtype).bits) for k, n in zip(keys, sizes, strict=True)])
    flat = np.asarray(executables.call(_scaled_normal, "scaled_normal", bits, std, dtype=dtype))
    params = {}
    for (name, shape), draw in zip(shapes, np.split(flat, np.cumsum(sizes)[:-1]), strict=True):
        params[name] = np.zeros(shape, dtype) if zero_out and name.endswith(("attn_wo", "mlp_fc2")) else draw
        params[name] = params[name].reshape(shape)
    return jax.device_put(params)


def init_params(
    key: jax.Array | int,
    config: GPTConfig,
    std: float = 0.08,
    zero_out: bool = False,
    dtype: jnp.dtype | None = None,
) -> Params:
    """Every matrix N(0, std), one PRNG key per matrix (``jax.random.split(key, n)``) in state_dict order.

    ``key`` is a PRNG key, or an integer seed: ``init_params(42, ...)`` is ``init_params(jax.random.key(42), ...)``,
    the same numbers, with the keys and random bits made on the host (``threefry``; in the one compiled program
    where JAX's PRNG is set up otherwise): no key operation or threefry hash to compile, and a smaller program.
    ``zero_out`` is microgpt's earlier variant: attn_wo and mlp_fc2 start at zero (use it with std 0.02).
    A counted model (the bigram) starts uniform, all zeros: it is built by counting instead.
    ``dtype`` defaults to JAX's default float (float64 under x64)."""
    dtype = jnp.dtype(dtype or default_float())
    shapes = tuple(param_shapes(config).items())
    if get(config).counted:
        return {name: jnp.zeros(shape, dtype) for name, shape in shapes}
    std_host = np.asarray(std, dtype)  # a host value of the dtype: jnp.asarray compiles a conversion program
    params = None
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        key = np.int64(key)  # what jax.random.key(int) makes of it (OverflowError past int64, as there)
        params = _init_from_seed(int(key), shapes, std_host, zero_out, dtype)
    if params is None:
        params = _init(key, std_host, shapes=shapes, zero_out=zero_out, dtype=dtype)
    return {name: params[name] for name, _ in shapes}  # jit returns dicts sorted by key: the original's order


def forward(params: Params, tokens_BxT: jax.Array, config: GPTConfig, dropout: Dropout | None = None) -> jax.Array:
    """Next-token logits at every position of a batch of sequences: (B, T) int tokens -> (B, T, V). ``dropout``
    (``gpt.dropout_fn``, training only) is the GPT's; the other models have none."""
    if dropout is None:
        return get(config).forward(params, tokens_BxT, config)
    if config.model != "gpt":
        raise UserError(f"--model {config.model} has no dropout: drop --dropout")
    return gpt(params, tokens_BxT, config, dropout)


def init_cache(config: GPTConfig, batch: int, dtype: jnp.dtype | None = None) -> Cache:
    """What sampling carries between positions: the GPT's key/value cache; nothing for bigram and MLP."""
    return get(config).init_cache(config, batch, dtype or default_float())


def forward_step(
    params: Params, token_B: jax.Array, pos: jax.Array, cache: Cache, config: GPTConfig
) -> tuple[jax.Array, Cache]:
    """One token per sequence at position ``pos``: (logits_BxV, new cache)."""
    return get(config).forward_step(params, token_B, pos, cache, config)
