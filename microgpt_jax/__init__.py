"""microgpt in JAX: the 200-line GPT that learns names, as pure functions over a state_dict pytree.

    from microgpt_jax import GPTConfig, TrainConfig, DataConfig, train_run, init_params, gpt, loss_fn

Names are loaded on first use, so ``import microgpt_jax`` (and ``microgpt-jax --help``) does not start JAX.
Importing the package changes no JAX setting. The ``microgpt-jax`` program keeps compiled programs on disk
(JAX's persistent compilation cache); a script opts in with one call before its first computation::

    microgpt_jax.enable_compile_cache()  # $MICROGPT_JAX_CACHE, else ~/.cache/microgpt_jax (private, 0700)
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

# public name -> the module that defines it
_EXPORTS = {
    "DataConfig": "config",
    "GPTConfig": "config",
    "RunConfig": "config",
    "SampleConfig": "config",
    "TrainConfig": "config",
    "Corpus": "data",
    "Tokenizer": "tokenizer",
    "encode_docs": "data",
    "load_corpus": "data",
    "load_docs": "data",
    "shuffle_docs": "data",
    "split_docs": "data",
    "enable_x64": "devices",
    "set_cpu_devices": "devices",
    "enable_compile_cache": "compile_cache",
    "UserError": "errors",
    "gpt": "gpt",
    "gpt_step": "gpt",
    "init_kv_cache": "gpt",
    "load_params": "io",
    "save_params": "io",
    "loss_fn": "loss",
    "forward": "models",
    "init_params": "models",
    "num_params": "models",
    "param_shapes": "models",
    "adam": "optim",
    "sgd": "optim",
    "load_model_file": "run",
    "load_run": "run",
    "resume_run": "run",
    "sample_model": "run",
    "train_run": "run",
    "sample": "sample",
    "evaluate": "train",
    "train": "train",
    "report": "report",
    "score": "report",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from microgpt_jax.cli import version

        return version()
    if name not in _EXPORTS:
        raise AttributeError(f"module 'microgpt_jax' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"microgpt_jax.{_EXPORTS[name]}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """Three functions share their module's name (``train``, ``sample``, ``gpt``). Importing such a module
    would make ``microgpt_jax.train`` the module; the package keeps the function under that name instead
    (the modules stay importable as ``microgpt_jax.train`` through ``sys.modules``)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _EXPORTS.get(name) == name:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
