"""A training run as a library: one module owns a run directory from its creation to the final samples.

``train_run`` trains (or counts) a fresh run, or fine-tunes a trained model (``init``: a run directory or a
parameter file, whose architecture and tokenizer the run keeps); ``resume_run`` (``runs.resume``) continues an
interrupted one bit for bit and ``load_run`` (``runs.load``) reads a finished one back. What a run directory
holds (config.json, metrics.jsonl, checkpoint/, params.safetensors, .lock): docs/formats.md.

Every check that can fail (corpus, configs, devices, the init file, the directory's state) runs before the
first file is written. In a multi-process job (``distributed``) every process runs the same call: only
process 0 writes the run directory and prints, the others compute beside it, and an error, a NaN or a signal
on any process ends every process at the same step (they agree once per chunk). Run directories and files
from config.json version 2 (the vocabulary a string of characters) still load and resume.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from microgpt_jax.config import GUIDE_STEPS, DataConfig, GPTConfig, RunConfig, SampleConfig, TrainConfig
from microgpt_jax.corpus.load import Corpus, load_corpus
from microgpt_jax.corpus.tokenizer import Tokenizer
from microgpt_jax.errors import UserError
from microgpt_jax.files import atomic_write_text
from microgpt_jax.model import registry
from microgpt_jax.model.dtypes import float_dtype, precision
from microgpt_jax.model.init import init_params
from microgpt_jax.model.types import Params
from microgpt_jax.runs import rundir
from microgpt_jax.runs.guard import RunGuard, unfinished_run_hint
from microgpt_jax.runs.load import on_device
from microgpt_jax.runs.loop import LOSS_WINDOW, Log, RunResult, finish_run, log_header, make_guard, train_loop
from microgpt_jax.runs.processes import on_lead, open_run_dir, together
from microgpt_jax.runs.rundir import CONFIG_FILE, METRICS_FILE, PARAMS_FILE
from microgpt_jax.runs.spec import InitSource, RunSpec
from microgpt_jax.runtime import devices, distributed
from microgpt_jax.storage.params import cast_params, check_params, load_params_hashed


@dataclass(frozen=True)
class _Init:
    """A model to start from, read before anything is written: its source, parameters and metadata."""

    source: InitSource
    params: dict[str, np.ndarray]
    config: GPTConfig | None  # None: a bare state_dict (microgpt's JSON) carries none
    tokenizer: Tokenizer | None


def _read_init(init: str | os.PathLike[str]) -> _Init:
    """Read ``init``: a parameter file, or a finished run directory (its params.safetensors)."""
    given = Path(init)
    run_dir = None
    if given.is_dir():
        run_dir = given
        unfinished_run_hint(given)  # a checkpoint but no params yet: say how to finish it
        given = given / PARAMS_FILE
        if not given.is_file():
            raise UserError(f"`init` {init}: no {PARAMS_FILE} in it: pass a finished run directory or a parameter file")
    # the digest of the bytes used, not of the path read again; a run directory's file is never read through a link
    params, meta, digest = load_params_hashed(given, follow=run_dir is None)
    source = InitSource(str(given.resolve()), digest, None if run_dir is None else str(run_dir.resolve()))
    return _Init(source, params, meta.get("config"), meta.get("tokenizer"))


def _model_of(model: GPTConfig | None, init: _Init | None, vocab_size: int) -> GPTConfig:
    """The run's architecture: ``model`` (default ``GPTConfig()``), or with an init that carries its config,
    the init's (a ``model`` given beside it must be the same)."""
    if init is None or init.config is None:
        return dataclasses.replace(model or GPTConfig(), vocab_size=vocab_size)
    if model is not None:
        wanted = dataclasses.replace(model, vocab_size=init.config.vocab_size)
        diff = [f"{k} {getattr(wanted, k)} (init: {getattr(init.config, k)})"
                for k in GPTConfig.__dataclass_fields__ if getattr(wanted, k) != getattr(init.config, k)]  # fmt: skip
        if diff:
            raise UserError(
                f"`init` {init.source.given}: the model asked for differs from the init model's: {', '.join(diff)}: "
                "leave the model flags out (the init model's architecture is used) or match them"
            )
    return init.config


def _initial_params(spec: RunSpec, init: _Init | None) -> Params:
    """Fresh N(0, std) params from the train seed, or the init's state_dict (checked against the config)."""
    tc, config = spec.train, spec.model
    dtype = float_dtype(tc.x64)
    if init is None:  # the seed, not jax.random.key(seed): init then makes its keys on the host
        return init_params(tc.seed, config, tc.init_std, tc.init_zero_out, dtype)
    check_params(init.params, config, source=init.source.path)
    params = cast_params(init.params, dtype, init.source.path)  # a float64 file into a float32 run: values must fit
    return on_device({k: params[k] for k in registry.param_shapes(config)}, dtype)


def _check_fits(tc: TrainConfig, config: GPTConfig, n_docs: int) -> None:
    """The recipe's numbers must survive the cast to the parameters' dtype (1e308 is inf in float32), and a
    training step must fit in the device's memory."""
    from microgpt_jax.training.loop import step_bytes

    need = step_bytes(config, tc.batch_size, n_docs, 8 if tc.x64 else 4)
    have = devices.available_memory()
    if need > 0.9 * have:
        big = "`block_size` (attention grows as its square)" if config.block_size > 256 else "`batch_size`"
        raise UserError(f"a training step needs about {need / 2**30:,.1f} GiB, more than the {have / 2**30:,.1f} GiB "
                        f"this device has: lower {big} or the model's size")  # fmt: skip
    info = np.finfo(float_dtype(tc.x64))
    for name in ("lr", "eps", "init_std"):
        value = float(getattr(tc, name))
        if value > float(info.max) or 0 < value < float(info.tiny):  # Python floats: no cast, no warning
            flag = f"`{name}`"
            raise UserError(f"{flag} {value:g} is outside {info.dtype}'s range ({info.tiny:.3g} to {info.max:.3g}): "
                            f"pick a {flag} inside it (or `x64`)")  # fmt: skip


def _count_run(rd: rundir.RunDir, spec: RunSpec, corpus: Corpus, guard: RunGuard, log: Log) -> RunResult:
    """A counted model (the bigram), evaluated, saved and sampled like any run. ``train.count`` "all" counts
    every training pair at once (metrics.jsonl: the training NLL as step 0); "online" is the guide's Step 0,
    ``train.steps`` steps of one document each, scored before it is counted (one loss line per step)."""
    from microgpt_jax.model.bigram import bigram_params, count_bigrams, online_bigram
    from microgpt_jax.training.evaluation import evaluate

    config, tc = spec.model, spec.train
    train_tokens, train_n, val_tokens, val_n = corpus.encoded(config.block_size)
    dtype = float_dtype(tc.x64)
    if tc.count == "online":
        t0 = time.perf_counter()
        losses_S, counts_VxV = online_bigram(train_tokens, train_n, config.vocab_size, tc.steps, tc.smoothing)
        losses, counts = np.asarray(losses_S), np.asarray(counts_VxV)
        how = f"counted online, one document per step, add-{tc.smoothing:g} smoothed"
    else:
        counts = count_bigrams(train_tokens, train_n, config.vocab_size)
        how = f"counted, add-{tc.smoothing:g} smoothed"
    params = bigram_params(counts, tc.smoothing, dtype)
    log_header(corpus, registry.num_params(params), log, f" ({how})")
    on_lead(lambda: atomic_write_text(rd.path / CONFIG_FILE, spec.to_json()))
    if tc.count == "online":
        lines = [{"step": s, "loss": float(x)} for s, x in enumerate(losses)]
        recent = losses[-LOSS_WINDOW:]
        log(f"step {tc.steps:4d} / {tc.steps:4d} | loss {np.mean(recent):.4f} (mean of last {len(recent)}) "
            f"| {time.perf_counter() - t0:.1f} s, compile included")  # fmt: skip
    else:
        lines = [{"step": 0, "loss": evaluate(params, train_tokens, train_n, config)}]
        losses = np.asarray([lines[0]["loss"]])
    val = None
    if len(val_n):
        val = evaluate(params, val_tokens, val_n, config)
        lines.append({"step": tc.steps if tc.count == "online" else 0, "val_loss": val})
        log(f"val_loss: {val:.4f}")
    on_lead(lambda: atomic_write_text(rd.path / METRICS_FILE, "".join(json.dumps(line) + "\n" for line in lines)))
    result = RunResult(rd.target, params, config, corpus.tokenizer, spec, losses, val)
    return finish_run(result, rd, guard, log)


def train_run(
    out: str | os.PathLike[str],
    model: GPTConfig | None = None,
    train: TrainConfig = TrainConfig(),
    data: DataConfig = DataConfig(),
    run: RunConfig = RunConfig(),
    sample: SampleConfig = SampleConfig(),
    *,
    init: str | os.PathLike[str] | None = None,
    step: int | None = None,
    overwrite: bool = False,
    verbose: bool = True,
) -> RunResult:
    """Train a fresh run into the directory ``out``: what ``microgpt-jax train --out`` does.

    ``model`` defaults to ``GPTConfig()``; its ``vocab_size`` is taken from the tokenizer. The tokenizer is
    built from the corpus as ``data.tokenizer`` says (char by default, or word). ``step`` records in config.json
    which of the guide's steps the configs were built from (``config.step_configs(step, ...)``; it changes
    nothing else).

    ``init`` fine-tunes: it starts from a trained model instead of N(0, init_std), a parameter file or a
    finished run directory (its params.safetensors). The run keeps that model's tokenizer (every document of
    ``data`` must encode with it: an error names the first word or character it lacks and its line) and its
    architecture (``model``, when given, must match it); a bare state_dict without metadata (microgpt's JSON)
    takes ``model`` and the corpus's tokenizer. config.json records the init's path, SHA-256 and run directory.

    Prints progress, the held-out val_loss and the samples unless ``verbose`` is False. ``out`` must be new or
    empty; a directory holding a run is replaced only with ``overwrite`` (and only once the new run is
    complete), and one holding anything else never (see ``rundir``).
    """
    log = Log(verbose and distributed.lead())
    if not str(out).strip():  # Path("") is the current directory: refused on every process
        rundir.check_target(out)
    if step is not None and (isinstance(step, bool) or step not in GUIDE_STEPS):
        raise UserError(f"unknown step {step!r}: the guide's steps are {', '.join(map(str, GUIDE_STEPS))}")
    # before the corpus is read: the cheapest check first (the directory is process 0's)
    on_lead(lambda: rundir.check_target(out, overwrite))
    return together(lambda: _prepare_and_train(out, model, train, data, run, sample, init, step, overwrite, log))


def _prepare_and_train(
    out: str | os.PathLike[str],
    model: GPTConfig | None,
    train: TrainConfig,
    data: DataConfig,
    run: RunConfig,
    sample: SampleConfig,
    init: str | os.PathLike[str] | None,
    step: int | None,
    overwrite: bool,
    log: Log,
) -> RunResult:
    """``train_run`` after its first checks: every check that reads the inputs, then the run (each process
    reads its own copy of the corpus and the init; only process 0 creates the directory)."""
    if init is not None and model is not None and registry.get(model).counted:
        raise UserError(f"`model` {model.model} is built by counting: drop `init`")
    start = None if init is None else _read_init(init)
    corpus = load_corpus(data, None if start is None else start.tokenizer)
    config = _model_of(model, start, corpus.tokenizer.vocab_size)
    if registry.get(config).counted and start is not None:
        raise UserError(f"`init` {init} is a {config.model} model, built by counting: it cannot be trained further")
    data = dataclasses.replace(data, path=str(corpus.path.resolve()), tokenizer=corpus.tokenizer.kind)
    spec = RunSpec(
        config, train, data, run, sample, corpus.tokenizer, corpus.sha256,
        None if start is None else start.source, step,
    )  # fmt: skip
    with precision(train.x64):
        counted = registry.get(config).counted
        if not counted:
            if train.grad == "analytic":
                registry.analytic_gradient(config)  # a model without one: a UserError, before any file
            n_dev = devices.job_device_count(run.devices, train.batch_size)
            _check_fits(train, config, len(corpus.train_docs) + len(corpus.val_docs))
            from microgpt_jax.training.sampling import check_sample_work

            check_sample_work(config, sample.num_samples)  # the samples a run ends with must be possible too
            params = _initial_params(spec, start)
        if len(corpus.train_docs) == 0:
            raise UserError("no training documents left after the held-out split: lower `val_size`")
        guard = make_guard(Path(out), spec, 0)
        with guard.signals():  # from here on a signal ends in a resumable state or a complete run
            # after every check: a bad input leaves no directory; every process waits for process 0's verdict
            rd = open_run_dir(lambda: rundir.create(out, overwrite), Path(out))
            try:
                if counted:
                    return _count_run(rd, spec, corpus, guard, log)
                on_lead(lambda: atomic_write_text(rd.path / CONFIG_FILE, spec.to_json()))
                if start is not None:
                    log(f"fine-tuning from {start.source.path}")
                return train_loop(rd, spec, corpus, params, None, 0, n_dev, guard, log)
            except BaseException:
                if distributed.lead():
                    rd.abandon()
                raise
            finally:
                rd.close()
