"""Frozen configs passed explicitly, and the one home of every default.

- ``GPTConfig``: the model's architecture (and which model of the progression it is);
- ``TrainConfig``: the training recipe (optimizer, schedule, steps, batch, init, seed, precision);
- ``DataConfig``: the corpus, its order, the held-out split and its tokenizer (characters or words);
- ``RunConfig``: how a run is carried out (evaluation and checkpoint cadence, devices);
- ``SampleConfig``: the samples printed at the end of a run or by ``microgpt-jax sample`` (temperature, top-k,
  top-p);
- ``GradCheckConfig``: Step 1's gradient check (``microgpt-jax gradcheck``).

``GUIDE_STEPS`` is the guide's progression, Steps 0 to 5, as the config fields each step sets, and
``step_configs`` builds a step's configs with given fields on top (what ``train --step N`` does).

Each field's default and its one-line help live here; the command line builds its flags and its ``--help``
from these fields (``fields_help``), so a default is written once. Every config checks its values in
``__post_init__`` and says what is wrong in a ``UserError``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from microgpt_jax.errors import UserError

MODELS = ("gpt", "mlp", "bigram")  # the progression's models (model/registry.py dispatches to their functions)
OPTIMIZERS = ("adam", "sgd")
TOKENIZERS = (
    "char",
    "word",
)  # a document as characters (microgpt's) or as words split on spaces (the TypeScript port's)
GRADS = ("autodiff", "analytic")  # jax.grad, or a model's hand-written backward pass (only the MLP has one)
SCHEDULES = ("linear", "cosine")  # the learning rate's decay to zero over the run
COUNTS = ("all", "online")  # a counted model: every training document at once, or one per step (the guide's)
# sgd 0.3: best held-out loss for the GPT in experiments/lr_sweep.py; 1.0 (the MLP's recipe) diverges for it
DEFAULT_LR = {"adam": 0.01, "sgd": 0.3}
DEFAULT_INIT_STD = 0.08  # microgpt's N(0, 0.08)
EARLY_INIT_STD = 0.02  # microgpt's earlier init, with attn_wo and mlp_fc2 at zero


def _field(default: Any, help: str) -> Any:
    """A dataclass field with its help text (read by the command line)."""
    return field(default=default, metadata={"help": help})


def _whole(cls_name: str, name: str, value: object, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise UserError(f"`{name}` must be a whole number >= {minimum}, got {value!r}")


MAX_SEED = 2**32 - 1  # jax.random.key(seed) keeps 32 bits: larger seeds would repeat smaller ones' keys


def _check_seed(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SEED:
        raise UserError(
            f"`{name}` must be a whole number from 0 to {MAX_SEED} (each gives its own PRNG key), got {value!r}"
        )


def _real(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class _Config:
    """JSON round trip shared by the configs."""

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, for config.json and file metadata."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        """Inverse of ``to_dict``; unknown keys and wrong values are a UserError."""
        if not isinstance(d, dict):
            raise UserError(f"{cls.__name__}: expected an object, got {type(d).__name__}")
        extra = set(d) - {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        if extra:
            raise UserError(f"unknown {cls.__name__} keys {sorted(extra)}")
        return cls(**d)


@dataclass(frozen=True)
class GPTConfig(_Config):
    """The architecture (defaults are microgpt's). ``vocab_size`` comes from the corpus's tokenizer."""

    vocab_size: int = _field(27, "tokens: characters + BOS (set from the corpus)")
    n_layer: int = _field(1, "transformer layers")
    n_embd: int = _field(16, "embedding width")
    n_head: int = _field(4, "attention heads (n_embd must be a multiple)")
    block_size: int = _field(16, "longest context; a document is cut to block_size + 1 tokens")
    model: str = _field("gpt", "the progression's model: gpt, mlp (Step 1) or bigram (Step 0, counted)")

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise UserError(f"unknown `model` {self.model!r}: use one of {', '.join(MODELS)}")
        for name in ("n_layer", "n_embd", "n_head"):
            _whole("model", name, getattr(self, name), 1)
        _whole("model", "block_size", self.block_size, 2)
        if not isinstance(self.vocab_size, int) or isinstance(self.vocab_size, bool) or self.vocab_size < 2:
            raise UserError(f"vocab_size must be >= 2 (at least one token and BOS), got {self.vocab_size!r}")
        if self.model == "gpt" and self.n_embd % self.n_head:  # only the GPT has heads
            raise UserError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}): "
                "pick `n_embd` a multiple of `n_head`"
            )

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.n_embd // self.n_head


@dataclass(frozen=True)
class TrainConfig(_Config):
    """A training recipe. Defaults are the original microgpt.py's: Adam, 1000 steps, batch 1.

    ``lr`` None means the optimizer's default (``DEFAULT_LR``) and ``init_std`` None the init's (0.08, or
    0.02 with ``init_zero_out``); both are filled in on construction, so a config always holds real numbers.
    """

    optimizer: str = _field("adam", "adam (optax, the original's) or sgd (hand-written)")
    lr: float = _field(None, "peak learning rate, decayed linearly to 0 (adam 0.01, sgd 0.3)")
    steps: int = _field(1000, "training steps")
    batch_size: int = _field(1, "documents per step (step s takes docs s*B .. s*B+B-1)")
    b1: float = _field(0.85, "Adam beta1")
    b2: float = _field(0.99, "Adam beta2")
    eps: float = _field(1e-8, "Adam epsilon")
    weight_decay: float = _field(0.0, "decoupled weight decay, AdamW's (adam only); 0 is the original's Adam")
    schedule: str = _field("linear", "the learning rate's decay to 0: linear (the original's) or cosine")
    warmup: int = _field(0, "ramp the learning rate up linearly over the first N steps, then decay it")
    dropout: float = _field(0.0, "GPT only: dropout rate on the embeddings, attention weights and both residual "
                            "branches while training; 0 is off (the original)")  # fmt: skip
    seed: int = _field(42, "PRNG seed of the initial parameters")
    init_std: float = _field(None, "N(0, std) init (0.08; 0.02 with --init-variant early)")
    init_zero_out: bool = _field(False, "start attn_wo and mlp_fc2 at zero (microgpt's earlier init)")
    x64: bool = _field(False, "float64 everywhere (the original's Python floats)")
    smoothing: float = _field(1.0, "bigram only: add-k smoothing of the counts")
    grad: str = _field("autodiff", "autodiff (jax.grad) or analytic (the MLP's hand-written backward pass, Step 1)")
    count: str = _field(
        "all", "bigram only: all (count every training document at once) or online (Step 0: one per step, "
        "each scored before it is counted)"
    )  # fmt: skip

    def __post_init__(self) -> None:
        for name, choices in (("optimizer", OPTIMIZERS), ("grad", GRADS), ("count", COUNTS), ("schedule", SCHEDULES)):
            if getattr(self, name) not in choices:
                raise UserError(f"unknown `{name}` {getattr(self, name)!r}: use one of {', '.join(choices)}")
        if self.lr is None:
            object.__setattr__(self, "lr", DEFAULT_LR[self.optimizer])
        if self.init_std is None:
            object.__setattr__(self, "init_std", EARLY_INIT_STD if self.init_zero_out else DEFAULT_INIT_STD)
        for name in ("lr", "eps", "smoothing"):
            value = getattr(self, name)
            if not (_real(value) and value > 0):
                raise UserError(f"`{name}` must be a finite number > 0, got {value!r}")
        for name in ("b1", "b2"):
            value = getattr(self, name)
            if not (_real(value) and 0 <= value < 1):
                raise UserError(f"`{name}` must be in [0, 1), got {value!r}")
        if not (_real(self.init_std) and self.init_std >= 0):
            raise UserError(f"`init_std` must be a finite number >= 0, got {self.init_std!r}")
        _whole("train", "steps", self.steps, 1)
        _whole("train", "batch_size", self.batch_size, 1)
        if not (_real(self.weight_decay) and self.weight_decay >= 0):
            raise UserError(f"`weight_decay` must be a finite number >= 0, got {self.weight_decay!r}")
        if self.weight_decay and self.optimizer != "adam":
            raise UserError("weight_decay is AdamW's: use `optimizer` adam, or drop `weight_decay`")
        if not (_real(self.dropout) and 0 <= self.dropout < 1):
            raise UserError(f"`dropout` must be in [0, 1), got {self.dropout!r}")
        _whole("train", "warmup", self.warmup, 0)
        if self.warmup >= self.steps:
            raise UserError(f"`warmup` ({self.warmup} steps) must be shorter than the run (`steps` {self.steps})")
        _check_seed("seed", self.seed)
        for name in ("init_zero_out", "x64"):
            if not isinstance(getattr(self, name), bool):
                raise UserError(f"{name} must be true or false, got {getattr(self, name)!r}")


# TrainConfig fields added after runs were first written, with the value a run from before them had: a config
# digest leaves them out at that value, so a run written before them keeps its identity (resume, sample, export)
TRAIN_ADDED_LATER: dict[str, Any] = {"weight_decay": 0.0, "schedule": "linear", "warmup": 0, "dropout": 0.0}


@dataclass(frozen=True)
class DataConfig(_Config):
    """Where the documents come from, their order, the held-out split, and how they become tokens."""

    path: str | None = _field(None, "corpus, one document per line ($MICROGPT_JAX_DATA, else data/names.txt)")
    shuffle_seed: int | None = _field(
        42, "random.Random(N).shuffle(docs), the original's order (--no-shuffle keeps the file's)"
    )
    val_size: int = _field(1000, "hold out the last N documents for val_loss")
    tokenizer: str | None = _field(
        None, "char (microgpt's, the default) or word (split on spaces); a fine-tune keeps its init model's"
    )
    lowercase: bool = _field(False, "lower-case every document before tokenizing (the book's sentences)")

    def __post_init__(self) -> None:
        if self.path is not None and not isinstance(self.path, str):
            object.__setattr__(self, "path", str(self.path))  # a pathlib.Path is welcome
        if self.tokenizer is not None and self.tokenizer not in TOKENIZERS:
            raise UserError(f"unknown `tokenizer` {self.tokenizer!r}: use one of {', '.join(TOKENIZERS)}")
        if not isinstance(self.lowercase, bool):
            raise UserError(f"lowercase must be true or false, got {self.lowercase!r}")
        if self.shuffle_seed is not None and (
            not isinstance(self.shuffle_seed, int) or isinstance(self.shuffle_seed, bool)
        ):
            raise UserError(f"shuffle_seed must be a whole number or None, got {self.shuffle_seed!r}")
        _whole("data", "val_size", self.val_size, 0)


@dataclass(frozen=True)
class RunConfig(_Config):
    """How a training run is carried out; none of it changes a number of the run."""

    eval_every: int | None = _field(None, "held-out evaluation every N steps (and always at the end)")
    ckpt_every: int | None = _field(None, "write DIR/checkpoint every N steps (a signal writes one too)")
    devices: int | None = _field(
        None, "data parallel over N devices (default: all when the batch splits; a CPU has one)"
    )

    def __post_init__(self) -> None:
        for name in ("eval_every", "ckpt_every", "devices"):
            if getattr(self, name) is not None:
                _whole("run", name, getattr(self, name), 1)


@dataclass(frozen=True)
class SampleConfig(_Config):
    """Samples: how many, how adventurous, from which seed."""

    num_samples: int = _field(20, "how many documents to sample")
    temperature: float = _field(0.5, "softmax temperature (> 0; lower is more conservative)")
    seed: int | None = _field(None, "PRNG seed of the samples (default: the run's --seed)")
    top_k: int = _field(0, "draw only from the K highest-scoring tokens; 0 is off")
    top_p: float = _field(1.0, "then from the most likely tokens until their total probability exceeds P; 1 is off")

    def __post_init__(self) -> None:
        _whole("sample", "num_samples", self.num_samples, 1)
        if not (_real(self.temperature) and self.temperature > 0):
            raise UserError(f"`temperature` must be a finite number > 0, got {self.temperature!r}")
        _whole("sample", "top_k", self.top_k, 0)
        if not (_real(self.top_p) and 0 < self.top_p <= 1):
            raise UserError(f"`top_p` must be a number > 0 and <= 1 (1 = off), got {self.top_p!r}")
        if self.seed is not None:
            _check_seed("seed", self.seed)


@dataclass(frozen=True)
class GradCheckConfig(_Config):
    """Step 1's gradient check: which training document, the forward difference's step and the tolerances."""

    doc: int = _field(0, "check on training document N (0: the first, 'yuheng' on names with the default shuffle)")
    eps: float = _field(1e-5, "the forward difference's step, (L(p + eps) - L(p)) / eps (the guide's 1e-5)")
    tol_numerical: float = _field(1e-4, "largest |numerical - analytic| that passes")
    tol_autodiff: float = _field(1e-12, "largest |analytic - jax.grad| that passes (float64)")

    def __post_init__(self) -> None:
        _whole("gradcheck", "doc", self.doc, 0)
        for name in ("eps", "tol_numerical", "tol_autodiff"):
            value = getattr(self, name)
            if not (_real(value) and value > 0):
                raise UserError(f"`{name}` must be a finite number > 0, got {value!r}")


# The guide's progression ("MicroGPT Visualized", after Karpathy's train0.py .. train5.py): the config fields each
# step sets, per config. Every other field keeps its default; fields given beside a step override it.
GUIDE_STEPS: dict[int, dict[str, dict[str, Any]]] = {
    0: {  # counting: a 27 x 27 table, one name per step, scored under the counts so far, then counted
        "model": {"model": "bigram"},
        "train": {"count": "online", "steps": 1000, "smoothing": 1.0},
        "sample": {"temperature": 1.0},  # the guide samples the table as it is
    },
    1: {  # gradient descent: the MLP, its gradient written by hand
        "model": {"model": "mlp"},
        "train": {"optimizer": "sgd", "lr": 1.0, "steps": 1000, "grad": "analytic"},
    },
    2: {  # autograd: the same MLP and recipe, the gradient from autodiff
        "model": {"model": "mlp"},
        "train": {"optimizer": "sgd", "lr": 1.0, "steps": 1000, "grad": "autodiff"},
    },
    3: {  # attention: one head of 16
        "model": {"model": "gpt", "n_head": 1, "n_layer": 1, "block_size": 16},
        "train": {"optimizer": "sgd", "lr": 0.1, "steps": 1000},
    },
    4: {  # transformer: 4 heads of 4, the layer loop with one layer
        "model": {"model": "gpt", "n_head": 4, "n_layer": 1, "block_size": 16},
        "train": {"optimizer": "sgd", "lr": 0.1, "steps": 1000},
    },
    5: {  # Adam: the final microgpt, this package's defaults
        "model": {"model": "gpt", "n_head": 4, "n_layer": 1, "block_size": 16},
        "train": {"optimizer": "adam", "lr": 0.01, "b1": 0.85, "b2": 0.99, "steps": 1000},
    },
}
GUIDE_TITLES = {0: "counting", 1: "gradient descent", 2: "autograd", 3: "attention", 4: "transformer", 5: "Adam"}


def step_configs(
    step: int | None,
    model: dict[str, Any] | None = None,
    train: dict[str, Any] | None = None,
    sample: dict[str, Any] | None = None,
) -> tuple[GPTConfig, TrainConfig, SampleConfig]:
    """The configs of the guide's step ``step`` (``GUIDE_STEPS``; None: the defaults), the fields given in
    ``model``, ``train`` and ``sample`` on top: what ``microgpt-jax train --step N [flags]`` trains."""
    if step is None:
        fields: dict[str, dict[str, Any]] = {"model": {}, "train": {}, "sample": {}}
    elif isinstance(step, int) and not isinstance(step, bool) and step in GUIDE_STEPS:
        fields = GUIDE_STEPS[step]
    else:
        raise UserError(f"unknown step {step!r}: the guide's steps are {', '.join(map(str, GUIDE_STEPS))}")
    return (
        GPTConfig(**{**fields.get("model", {}), **(model or {})}),
        TrainConfig(**{**fields.get("train", {}), **(train or {})}),
        SampleConfig(**{**fields.get("sample", {}), **(sample or {})}),
    )


# The command line's names for the fields (cli/ builds its flags from these; a report's "train it again"
# command and a sweep's best-member command are written with them).
FLAG = {"path": "--data"}  # a field whose flag is not its name with dashes


def flag_of(name: str) -> str:
    """The command-line flag of a config field."""
    return FLAG.get(name, "--" + name.replace("_", "-"))


MODEL_FLAGS = ("n_layer", "n_embd", "n_head", "block_size", "model")
TRAIN_FLAGS = ("optimizer", "lr", "steps", "batch_size", "b1", "b2", "eps", "weight_decay", "schedule", "warmup",
               "dropout", "seed", "init_std", "x64", "smoothing", "grad", "count")  # fmt: skip
RUN_FLAGS = ("eval_every", "ckpt_every", "devices")
GRADCHECK_FLAGS = ("doc", "eps", "tol_numerical", "tol_autodiff")
DATA_FLAGS = ("path", "val_size", "tokenizer", "lowercase")
SAMPLE_FLAGS = ("num_samples", "temperature", "top_k", "top_p")
SWEEP_GRID = ("optimizer", "lr", "seed", "init_std", "b1", "b2", "batch_size", "steps", "weight_decay", "schedule",
              "warmup", "dropout", "n_layer", "n_embd", "n_head", "block_size")  # fmt: skip
# flags that may differ on --resume: they change neither a parameter nor metrics.jsonl
RESUME_MAY_CHANGE = ("ckpt_every", "num_samples", "temperature", "top_k", "top_p")


def fields_help(cls: type) -> dict[str, tuple[Any, str]]:
    """``{field: (default, help)}`` of a config class, for the command line's flags."""
    return {f.name: (f.default, f.metadata.get("help", "")) for f in dataclasses.fields(cls)}
