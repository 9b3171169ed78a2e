"""Frozen configs passed explicitly: the GPT's architecture and a training run's recipe."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from microgpt_jax.errors import UserError

MODELS = ("gpt", "mlp", "bigram")


def _from_dict(cls: type, d: dict, what: str) -> Any:
    """``cls(**d)`` for a config dataclass, naming unknown keys in a UserError."""
    extra = set(d) - {f.name for f in dataclasses.fields(cls)}
    if extra:
        raise UserError(f"unknown {what} config keys {sorted(extra)}")
    return cls(**d)


@dataclass(frozen=True)
class GPTConfig:
    """The architecture of microgpt's GPT (defaults are the original's)."""

    vocab_size: int = 27
    n_layer: int = 1
    n_embd: int = 16
    n_head: int = 4
    block_size: int = 16
    model: str = "gpt"  # gpt | mlp | bigram: the progression's step (microgpt_jax.models)

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise UserError(f"unknown model {self.model!r}: use one of {', '.join(MODELS)}")
        for name in ("vocab_size", "n_layer", "n_embd", "n_head", "block_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"{name} must be a whole number >= 1, got {value!r}")
        if self.block_size < 2:
            raise UserError(f"block_size must be >= 2, got {self.block_size}")
        if self.vocab_size < 2:
            raise UserError(f"vocab_size must be >= 2 (at least one character and BOS), got {self.vocab_size}")
        if self.model == "gpt" and self.n_embd % self.n_head:  # only the GPT has heads
            raise UserError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}): "
                "pick --n-embd a multiple of --n-head"
            )

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.n_embd // self.n_head

    def to_dict(self) -> dict:
        """Plain-JSON form, for config.json and file metadata."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GPTConfig:
        """Inverse of ``to_dict``; unknown keys are an error."""
        return _from_dict(cls, d, "model")


OPTIMIZERS = ("adam", "sgd")
# sgd 0.3: best held-out loss for the GPT in experiments/lr_sweep.py; 1.0 (the MLP's recipe) diverges for it
DEFAULT_LR = {"adam": 0.01, "sgd": 0.3}


@dataclass(frozen=True)
class TrainConfig:
    """A training recipe. Defaults are the original microgpt.py's: Adam, 1000 steps, batch 1."""

    optimizer: str = "adam"
    lr: float = 0.01
    steps: int = 1000
    batch_size: int = 1
    b1: float = 0.85
    b2: float = 0.99
    eps: float = 1e-8
    seed: int = 42
    init_std: float = 0.08
    init_zero_out: bool = False  # the earlier variant: attn_wo and mlp_fc2 start at zero
    x64: bool = False

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"unknown optimizer {self.optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
        for name in ("lr", "eps"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise UserError(f"{name} must be a finite number > 0, got {value!r}")
        for name in ("b1", "b2"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 <= value < 1):
                raise UserError(f"{name} must be in [0, 1), got {value!r}")
        if not (isinstance(self.init_std, (int, float)) and math.isfinite(self.init_std) and self.init_std >= 0):
            raise UserError(f"init_std must be a finite number >= 0, got {self.init_std!r}")
        for name in ("steps", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"{name} must be a whole number >= 1, got {value!r}")

    def to_dict(self) -> dict:
        """Plain-JSON form, for config.json."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Inverse of ``to_dict``; unknown keys are an error."""
        return _from_dict(cls, d, "train")
