"""microgpt in JAX: the 200-line GPT that learns names, as pure functions over a state_dict pytree.

from microgpt_jax import GPTConfig, TrainConfig, init_params, gpt, loss_fn, train, sample
"""

from microgpt_jax.config import GPTConfig, TrainConfig
from microgpt_jax.data import Tokenizer, encode_docs, load_docs, shuffle_docs, split_docs
from microgpt_jax.errors import UserError
from microgpt_jax.io import load_params, save_params
from microgpt_jax.loss import loss_fn
from microgpt_jax.model import gpt, gpt_step, init_kv_cache, init_params, num_params, param_shapes
from microgpt_jax.optim import adam, sgd
from microgpt_jax.sample import sample
from microgpt_jax.train import evaluate, set_cpu_devices, train

__all__ = [
    "GPTConfig",
    "Tokenizer",
    "TrainConfig",
    "UserError",
    "adam",
    "encode_docs",
    "evaluate",
    "gpt",
    "gpt_step",
    "init_kv_cache",
    "init_params",
    "load_docs",
    "load_params",
    "loss_fn",
    "num_params",
    "param_shapes",
    "sample",
    "save_params",
    "set_cpu_devices",
    "sgd",
    "shuffle_docs",
    "split_docs",
    "train",
]
__version__ = "0.1.0"
