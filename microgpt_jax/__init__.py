"""microgpt in JAX: the 200-line GPT that learns names, as pure functions over a state_dict pytree.

    from microgpt_jax import GPTConfig, TrainConfig, DataConfig, train_run, init_params, gpt, loss_fn

Names are loaded on first use, so ``import microgpt_jax`` (and ``microgpt-jax --help``) does not start JAX.
Importing the package changes no JAX setting. The ``microgpt-jax`` program keeps compiled programs on disk
(JAX's persistent compilation cache); a script opts in with one call before its first computation::

    microgpt_jax.enable_compile_cache()  # $MICROGPT_JAX_CACHE, else ~/.cache/microgpt_jax (private, 0700)
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> the module that defines it
_EXPORTS = {
    "DataConfig": "config",
    "GPTConfig": "config",
    "RunConfig": "config",
    "SampleConfig": "config",
    "TrainConfig": "config",
    "Corpus": "corpus.load",
    "Tokenizer": "corpus.tokenizer",
    "encode_docs": "corpus.documents",
    "load_corpus": "corpus.load",
    "load_docs": "corpus.documents",
    "shuffle_docs": "corpus.documents",
    "split_docs": "corpus.documents",
    "enable_x64": "model.dtypes",
    "set_cpu_devices": "runtime.devices",
    "enable_compile_cache": "runtime.compile_cache",
    "UserError": "errors",
    "gpt": "model.transformer",
    "gpt_step": "model.transformer",
    "init_kv_cache": "model.transformer",
    "load_params": "storage.params",
    "save_params": "storage.params",
    "loss_fn": "model.loss",
    "forward": "model.registry",
    "init_params": "model.init",
    "num_params": "model.registry",
    "param_shapes": "model.registry",
    "adam": "model.optim",
    "sgd": "model.optim",
    "load_model_file": "runs.load",
    "load_run": "runs.load",
    "resume_run": "runs.resume",
    "sample_model": "runs.load",
    "train_run": "runs.fresh",
    "sample": "training.sampling",
    "evaluate": "training.evaluation",
    "train": "training.loop",
    "report": "view.page",
    "score": "view.scoring",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from microgpt_jax.cli.parser import version

        return version()
    if name not in _EXPORTS:
        raise AttributeError(f"module 'microgpt_jax' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"microgpt_jax.{_EXPORTS[name]}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
