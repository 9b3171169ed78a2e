"""A finished run or a parameter file read back, and sampling from it."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from microgpt_jax.config import GPTConfig, SampleConfig, TrainConfig
from microgpt_jax.corpus.tokenizer import Tokenizer
from microgpt_jax.errors import UserError
from microgpt_jax.files import MAX_METRICS_BYTES, read_regular
from microgpt_jax.model.dtypes import float_dtype, precision
from microgpt_jax.model.types import Params
from microgpt_jax.runs import rundir
from microgpt_jax.runs.guard import unfinished_run_hint
from microgpt_jax.runs.rundir import CONFIG_FILE, METRICS_FILE, PARAMS_FILE
from microgpt_jax.runs.spec import RunSpec
from microgpt_jax.runtime import threefry
from microgpt_jax.storage.params import check_params, load_params


def on_device(params: Mapping[str, ArrayLike], dtype: DTypeLike) -> Params:
    """Host parameters as device arrays of ``dtype``: converted by numpy and copied, as jnp.asarray converts them,
    without its copy program per matrix shape."""
    return jax.device_put({k: np.asarray(v, dtype) for k, v in params.items()})


def sample_names(
    params: Mapping[str, jax.Array | np.ndarray],
    config: GPTConfig,
    tokenizer: Tokenizer,
    sc: SampleConfig,
    seed: int,
    prefix: str = "",
) -> list[str]:
    """``sc.num_samples`` documents drawn as ``sc`` says, each continuing ``prefix``; ``sc.seed`` None: ``seed``."""
    from microgpt_jax.training.sampling import sample

    key = sample_key(seed if sc.seed is None else sc.seed)
    return sample(params, config, tokenizer, key, sc.num_samples, sc.temperature, top_k=sc.top_k, top_p=sc.top_p,
                  prefix=prefix)  # fmt: skip


def sample_key(seed: int) -> jax.Array:
    """The key a run's samples are drawn with: ``jax.random.fold_in(jax.random.key(seed), 1)``, computed on the
    host (``threefry``: no key operation to compile) where JAX's PRNG is the one it computes."""
    if threefry.usable():
        data = threefry.fold_in(threefry.key(seed, bool(jax.config.jax_enable_x64)), 1)  # type: ignore[attr-defined]  # a jax option: Config declares none
        return jax.random.wrap_key_data(data)  # type: ignore[arg-type]  # jax's stub: numpy key data is taken too
    return _sample_key(np.int64(seed))  # np.int64: as jax.random.key(int) takes it


@jax.jit
def _sample_key(seed: jax.Array) -> jax.Array:
    return jax.random.fold_in(jax.random.key(seed), 1)


def sampling_label(sc: SampleConfig) -> str:
    """How the samples are drawn, for the inference line: the temperature and the filters that are on."""
    return (
        f"temperature {sc.temperature}"
        + (f", top-k {sc.top_k}" if sc.top_k else "")
        + (f", top-p {sc.top_p}" if sc.top_p < 1 else "")
    )


@dataclass(frozen=True)
class LoadedModel:
    """A trained model read back: its parameters (numpy), config, tokenizer and precision."""

    params: dict[str, np.ndarray]
    config: GPTConfig
    tokenizer: Tokenizer
    x64: bool
    seed: int  # the run's training seed (samples default to it), or train's default for a file
    source: str


def load_run(run_dir: str | os.PathLike[str]) -> LoadedModel:
    """The finished run in ``run_dir``: its final parameters with their config and tokenizer. An unfinished,
    failed or mixed directory is refused with what to do about it."""
    run_dir = Path(run_dir)
    what = rundir.state(run_dir)
    if rundir.links(run_dir):  # read nothing through a link someone else may have put there
        raise UserError(
            rundir.links_message(run_dir, rundir.links(run_dir)).replace("pick another `out`", "train it again")
        )
    if what == "foreign" and (run_dir / CONFIG_FILE).is_file():  # a run, with files beside it that no run writes
        raise UserError(f"{run_dir} holds files a run does not write ({rundir.foreign_names(run_dir)}): move them out")
    if what in ("absent", "empty", "foreign", "not-a-directory"):
        raise UserError(f"{run_dir} is not a run directory (no {CONFIG_FILE}): pass the `out` of a train run")
    spec = RunSpec.read(run_dir)
    unfinished_run_hint(run_dir)  # no params.safetensors yet, but a checkpoint: say how to go on
    if what == "failed":
        diverged = [line for line in _metric_lines(run_dir) if line.get("diverged")]
        why = f"it diverged at step {diverged[-1]['step']}" if diverged else "it stopped before its first checkpoint"
        raise UserError(f"{run_dir} holds no trained parameters: {why}; train it again with `overwrite`")
    path = run_dir / PARAMS_FILE
    params, meta = load_params(path, follow=False)
    if meta.get("run_id") not in (None, spec.digest()) or meta.get("tokenizer", spec.tokenizer) != spec.tokenizer:
        raise UserError(f"{path} is not the parameters of the run in {run_dir / CONFIG_FILE}: the directory mixes "
                        "two runs; train it again with `overwrite`")  # fmt: skip
    check_params(params, spec.model, source=str(path))
    return LoadedModel(params, spec.model, spec.tokenizer, spec.train.x64, spec.train.seed, str(path))


def _metric_lines(run_dir: Path) -> list[dict[str, Any]]:
    """metrics.jsonl's records (lines that do not parse are skipped)."""
    out = []
    path = run_dir / METRICS_FILE
    raw = b""
    if os.path.lexists(path):
        raw = read_regular(path, MAX_METRICS_BYTES, "metrics file", "train the run again", follow=False)
    text = raw.decode("utf-8", errors="replace")
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def load_model_file(path: str | os.PathLike[str]) -> LoadedModel:
    """A self-describing parameter file (``export``'s, or a run's params.safetensors) with its config and
    tokenizer (files written before the word tokenizer, whose vocabulary is a string of characters, too)."""
    params, meta = load_params(path)
    if "config" not in meta or "tokenizer" not in meta:
        raise UserError(f"{path} carries no config and vocabulary: export it with microgpt-jax export")
    config = meta["config"]
    check_params(params, config, source=str(path))
    x64 = meta.get("dtype") == "float64"
    return LoadedModel(params, config, meta["tokenizer"], x64, TrainConfig().seed, str(path))


def sample_model(model: LoadedModel, sample: SampleConfig = SampleConfig(), prefix: str = "") -> list[str]:
    """Documents sampled from a loaded model, each continuing ``prefix``; ``sample.seed`` None means the run's
    seed (what its training printed)."""
    with precision(model.x64):
        params = on_device(model.params, float_dtype(model.x64))
        return sample_names(params, model.config, model.tokenizer, sample, model.seed, prefix)
