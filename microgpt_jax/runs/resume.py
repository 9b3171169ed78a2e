"""Continue an interrupted run from its checkpoint, bit for bit."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from microgpt_jax.config import RunConfig, SampleConfig
from microgpt_jax.corpus.load import load_corpus
from microgpt_jax.errors import UserError
from microgpt_jax.files import atomic_write_text
from microgpt_jax.model.dtypes import precision
from microgpt_jax.runs import rundir
from microgpt_jax.runs.guard import resume_state, truncate_metrics
from microgpt_jax.runs.loop import Log, RunResult, make_guard, train_loop
from microgpt_jax.runs.processes import on_lead, open_run_dir, read_spec, together
from microgpt_jax.runs.rundir import CONFIG_FILE, METRICS_FILE
from microgpt_jax.runs.spec import RunSpec
from microgpt_jax.runtime import devices, distributed
from microgpt_jax.storage import checkpoint


def resume_run(
    run_dir: str | os.PathLike[str],
    run: RunConfig | None = None,
    sample: SampleConfig | None = None,
    *,
    verbose: bool = True,
) -> RunResult:
    """Continue the interrupted run in ``run_dir`` from its checkpoint: the result is bit-identical to the
    uninterrupted run. ``run`` may change ``ckpt_every`` only (the rest would change what is written);
    ``sample`` may change the samples printed at the end."""
    log = Log(verbose and distributed.lead())
    out = Path(run_dir)
    spec = read_spec(out)
    return together(lambda: _resume(out, spec, run, sample, log))


def _resume(out: Path, spec: RunSpec, run: RunConfig | None, sample: SampleConfig | None, log: Log) -> RunResult:
    """``resume_run`` once the spec is read: checks, then the run from its checkpoint."""
    if run is not None:
        for name in ("eval_every", "devices"):
            if getattr(run, name) != getattr(spec.run, name):
                flag = f"`{name}`"
                raise UserError(
                    f"{flag} {getattr(run, name)} differs from the run's {getattr(spec.run, name)}: `resume` continues "
                    f"the run as it was started; drop {flag}"
                )
        spec = dataclasses.replace(spec, run=run)
    if sample is not None:
        spec = dataclasses.replace(spec, sample=sample)
    on_lead(lambda: _need_checkpoint(out))
    # a fine-tuned run keeps its init model's tokenizer; a fresh one rebuilds it from the (unchanged) corpus
    corpus = load_corpus(spec.data, spec.tokenizer if spec.init is not None else None)
    if corpus.sha256 != spec.data_sha256:  # the bytes read, not the path read again
        raise UserError(f"the data file {corpus.path} changed since {out} was started: restore it to resume")
    if corpus.tokenizer != spec.tokenizer:
        raise UserError(
            f"the corpus's vocabulary differs from the run's {spec.tokenizer.kind} vocabulary: restore the data file"
        )
    with precision(spec.train.x64):
        n_dev = devices.job_device_count(spec.run.devices, spec.train.batch_size)
        rd = open_run_dir(lambda: rundir.open_existing(out), out)
        try:

            def load() -> checkpoint.Checkpoint:
                ckpt = resume_state(out, spec.model, spec.train, spec.tokenizer, spec.data_sha256, spec.digest())
                if "metrics" in ckpt.manifest:  # metrics.jsonl back to the checkpoint, checked unchanged to there
                    rundir.restore_metrics(out / METRICS_FILE, ckpt.manifest["metrics"])
                else:  # a checkpoint from before the manifest recorded metrics.jsonl
                    truncate_metrics(out, ckpt.step, spec.train.steps)
                atomic_write_text(out / CONFIG_FILE, spec.to_json())  # the changed ckpt_every / samples
                return ckpt

            step, params, opt_state = _share_checkpoint(on_lead(load), spec)
            log(f"resuming {out} at step {step} of {spec.train.steps}")
            guard = make_guard(out, spec, step)
            with guard.signals():
                return train_loop(rd, spec, corpus, params, opt_state, step, n_dev, guard, log)
        finally:
            rd.close()


def _need_checkpoint(out: Path) -> None:
    if checkpoint.read_manifest(out) is None:
        raise UserError(f"{out} has no checkpoint to resume from: train with `ckpt_every` N (or Ctrl-C) writes one")


def _share_checkpoint(ckpt: checkpoint.Checkpoint | None, spec: RunSpec) -> tuple[int, dict[str, Any], Any]:
    """(step, params, optimizer state) of process 0's checkpoint on every process: its bytes are broadcast
    (exact, where a broadcast of floats would turn -0.0 into 0.0). Alone: the checkpoint's own."""
    if distributed.count() == 1:
        assert ckpt is not None
        return ckpt.step, ckpt.params, ckpt.opt_state
    import jax.numpy as jnp
    from safetensors.numpy import load

    from microgpt_jax.storage.safetensors import safetensors_bytes
    from microgpt_jax.training.loop import init_opt_state, recipe_of

    blob = None
    if ckpt is not None:
        arrays = {"step": np.asarray([ckpt.step], np.int64)}
        arrays.update({f"params/{k}": np.asarray(v) for k, v in ckpt.params.items()})
        arrays.update({f"opt_state/{k}": v for k, v in checkpoint.opt_state_arrays(ckpt.opt_state).items()})
        blob = safetensors_bytes(arrays)
    arrays = load(distributed.broadcast_bytes(blob))
    params = {k.split("/", 1)[1]: jnp.asarray(v) for k, v in arrays.items() if k.startswith("params/")}
    opt = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("opt_state/")}
    template = init_opt_state(recipe_of(spec.train), params)
    return int(arrays["step"][0]), params, checkpoint.opt_state_from_arrays(opt, template, "the checkpoint")
