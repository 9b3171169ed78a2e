"""A training run as a library: one module owns a run directory from its creation to the final samples.

A run directory holds:

- ``config.json``: the run described once: ``model``, ``train``, ``data`` (with the corpus's path, SHA-256
  and tokenizer: ``vocab`` is ``{"kind": "char" | "word", "vocab": [...]}``), ``run``, ``sample``, ``init``
  (where the parameters started from: ``{"path", "sha256", "run"}``, or null) and ``step`` (the guide's step
  whose recipe the configs were built from, ``config.step_configs``, or null);
- ``metrics.jsonl``: ``{"step": s, "loss": x}`` for every step (s from 0) and ``{"step": s, "val_loss": x}``
  for every held-out evaluation (a model counted all at once has one "step", 0);
- ``checkpoint/``: the latest checkpoint, when one was written (``checkpoint.py``);
- ``params.safetensors``: the final state_dict with its config and vocabulary (written last).

``train_run`` trains (or counts) a fresh run, or fine-tunes a trained model (``init``: a run directory or
a parameter file, whose architecture and tokenizer the run keeps), ``resume_run`` continues an interrupted
one bit for bit, ``load_run`` reads a finished one back. In a multi-process job (``distributed``) every process
runs the same call: only process 0 writes the run directory and prints, the others compute beside it (a
resume's config and checkpoint, read by process 0, are handed to them), and an error, a NaN or a signal on
any process ends every process at the same step (they agree once per chunk). Run directories and files
written before the word tokenizer (config.json version 2, the vocabulary a string of characters) still load
and resume. Every check that can fail (corpus, configs, devices, the init file, the directory's state) runs
before the first file is written. The command line is a thin layer over these.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

from microgpt_jax import checkpoint, devices, distributed, models, rundir, threefry
from microgpt_jax.config import GUIDE_STEPS, DataConfig, GPTConfig, RunConfig, SampleConfig, TrainConfig
from microgpt_jax.data import Corpus, load_corpus, sha256_file
from microgpt_jax.errors import UserError
from microgpt_jax.io import atomic_write_text, cast_params, check_params, load_params, save_params
from microgpt_jax.rundir import CONFIG_FILE, METRICS_FILE, PARAMS_FILE
from microgpt_jax.tokenizer import Tokenizer

VERSION = 3  # of config.json: 1 held the raw command-line flags beside the configs; 2 the vocabulary as a string
READS = (2, 3)  # the versions RunSpec.read accepts
LOSS_WINDOW = 100  # the progress bar's running mean covers the last N steps
ONE_COPY_BYTES = 64 << 20  # training tokens beyond this live on the device only (a host copy beside it doubles them)


@dataclass(frozen=True)
class InitSource:
    """Where a fine-tuned run's parameters came from: the file read (resolved), its SHA-256 and the run
    directory it belongs to when a directory was given (else None)."""

    path: str
    sha256: str | None = None
    run: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj: Any) -> InitSource | None:
        """config.json's ``init``: null, an object, or (version 2) the path as a string."""
        if obj is None:
            return None
        if isinstance(obj, str):
            return cls(obj)
        if not isinstance(obj, dict) or set(obj) - {"path", "sha256", "run"} or not isinstance(obj.get("path"), str):
            raise TypeError("init must be null or an object with a path")
        if not all(obj.get(k) is None or isinstance(obj[k], str) for k in ("sha256", "run")):
            raise TypeError("init.sha256 and init.run must be strings or null")
        return cls(obj["path"], obj.get("sha256"), obj.get("run"))

    @property
    def given(self) -> str:
        """What was passed as the init: the run directory, or the file."""
        return self.run or self.path


@dataclass(frozen=True)
class RunSpec:
    """Everything ``config.json`` records: the configs of a run, its tokenizer, and where its data and init
    came from."""

    model: GPTConfig
    train: TrainConfig
    data: DataConfig
    run: RunConfig
    sample: SampleConfig
    tokenizer: Tokenizer
    data_sha256: str
    init: InitSource | None = None
    step: int | None = None  # the guide's step the configs came from (config.GUIDE_STEPS), or None

    def to_doc(self) -> dict[str, Any]:
        """config.json's content."""
        return {
            "version": VERSION,
            "model": self.model.to_dict(),
            "train": self.train.to_dict(),
            "data": {**self.data.to_dict(), "sha256": self.data_sha256, "vocab": self.tokenizer.to_meta()},
            "run": self.run.to_dict(),
            "sample": self.sample.to_dict(),
            "init": None if self.init is None else self.init.to_dict(),
            "step": self.step,
        }

    def to_json(self) -> str:
        """config.json's text."""
        return json.dumps(self.to_doc(), indent=2) + "\n"

    def digest(self) -> str:
        """The run's identity, what defines its numbers (``rundir.config_digest``): checkpoints and the final
        params.safetensors record it, so a resume or a reader can tell the files belong to this config."""
        return rundir.config_digest(self.to_doc())

    @classmethod
    def read(cls, run_dir: str | os.PathLike) -> RunSpec:
        """The spec in ``run_dir/config.json`` (this version's or version 2's, whose vocabulary is a string of
        characters); anything missing or malformed is a one-line UserError."""
        return cls.parse(cls.config_text(run_dir), Path(run_dir) / CONFIG_FILE)

    @staticmethod
    def config_text(run_dir: str | os.PathLike) -> str:
        """``run_dir/config.json``'s text; a UserError when there is none to read."""
        path = Path(run_dir) / CONFIG_FILE
        if not path.is_file():
            raise UserError(f"{run_dir} is not a run directory (no {CONFIG_FILE}): pass the --out of a train run")
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, ValueError) as e:
            raise UserError(f"{path} is not a run config this version reads ({e}): train the run again") from None

    @classmethod
    def parse(cls, text: str, path: Path) -> RunSpec:
        """The spec in config.json's ``text`` (read from ``path``, named in errors)."""
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict) or doc.get("version") not in READS:
                raise ValueError(f"version {doc.get('version') if isinstance(doc, dict) else None}, not {VERSION}")
            data = dict(doc["data"])
            sha, vocab = data.pop("sha256"), data.pop("vocab")
            if not isinstance(sha, str):
                raise TypeError("data.sha256 must be a string")
            tokenizer = Tokenizer.from_meta(vocab)
            data_config = DataConfig.from_dict(data)
            if data_config.tokenizer is None:  # version 2: always characters
                data_config = dataclasses.replace(data_config, tokenizer=tokenizer.kind)
            step = doc.get("step")  # absent in the files of earlier versions of this package
            if step is not None and (isinstance(step, bool) or step not in GUIDE_STEPS):
                raise ValueError(f"step {step!r} is not one of the guide's steps")
            return cls(
                GPTConfig.from_dict(doc["model"]),
                TrainConfig.from_dict(doc["train"]),
                data_config,
                RunConfig.from_dict(doc["run"]),
                SampleConfig.from_dict(doc["sample"]),
                tokenizer,
                sha,
                InitSource.from_json(doc["init"]),
                step,
            )
        except (OSError, ValueError, KeyError, TypeError, UserError) as e:
            raise UserError(f"{path} is not a run config this version reads ({e}): train the run again") from None


@dataclass
class RunResult:
    """What a run returns: where it was written, its final state and figures, and whether a signal stopped it."""

    out: Path
    params: dict[str, Any]
    config: GPTConfig
    tokenizer: Tokenizer
    spec: RunSpec
    losses: np.ndarray  # the per-step losses of the steps this call ran
    val_loss: float | None = None
    samples: list[str] = dataclasses.field(default_factory=list)
    signal: int | None = None  # the signal that stopped the run (a checkpoint was written), else None


class _Log:
    """What a run prints: lines on stdout and, on a terminal, a tqdm bar on stderr."""

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose
        self.bar: Any = None

    def __call__(self, text: str) -> None:
        if not self.verbose:
            return
        if self.bar is not None:
            self.bar.write(text, file=sys.stdout)
        else:
            print(text, flush=True)


@dataclass(frozen=True)
class _Init:
    """A model to start from, read before anything is written: its source, parameters and metadata."""

    source: InitSource
    params: dict[str, np.ndarray]
    config: GPTConfig | None  # None: a bare state_dict (microgpt's JSON) carries none
    tokenizer: Tokenizer | None


def _read_init(init: str | os.PathLike) -> _Init:
    """Read ``init``: a parameter file, or a finished run directory (its params.safetensors)."""
    given = Path(init)
    run_dir = None
    if given.is_dir():
        run_dir = given
        checkpoint.unfinished_run_hint(given)  # a checkpoint but no params yet: say how to finish it
        given = given / PARAMS_FILE
        if not given.is_file():
            raise UserError(f"--init {init}: no {PARAMS_FILE} in it: pass a finished run directory or a parameter file")
    params, meta = load_params(given)
    source = InitSource(str(given.resolve()), sha256_file(given), None if run_dir is None else str(run_dir.resolve()))
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
                f"--init {init.source.given}: the model asked for differs from the init model's: {', '.join(diff)}: "
                "leave the model flags out (the init model's architecture is used) or match them"
            )
    return init.config


def _initial_params(spec: RunSpec, init: _Init | None) -> dict[str, Any]:
    """Fresh N(0, std) params from the train seed, or the init's state_dict (checked against the config)."""
    tc, config = spec.train, spec.model
    dtype = devices.float_dtype(tc.x64)
    if init is None:  # the seed, not jax.random.key(seed): init then makes its keys on the host
        return models.init_params(tc.seed, config, tc.init_std, tc.init_zero_out, dtype)
    check_params(init.params, config, source=init.source.path)
    params = cast_params(init.params, dtype, init.source.path)  # a float64 file into a float32 run: values must fit
    return _on_device({k: params[k] for k in models.param_shapes(config)}, dtype)


def _on_device(params: dict[str, Any], dtype: Any) -> dict[str, jax.Array]:
    """Host parameters as device arrays of ``dtype``: converted by numpy and copied, as jnp.asarray converts them,
    without its copy program per matrix shape."""
    return jax.device_put({k: np.asarray(v, dtype) for k, v in params.items()})


def _check_fits(tc: TrainConfig, config: GPTConfig, n_docs: int) -> None:
    """The recipe's numbers must survive the cast to the parameters' dtype (1e308 is inf in float32), and a
    training step must fit in the device's memory."""
    from microgpt_jax.train import step_bytes

    need = step_bytes(config, tc.batch_size, n_docs, 8 if tc.x64 else 4)
    have = devices.available_memory()
    if need > 0.9 * have:
        big = "--block-size (attention grows as its square)" if config.block_size > 256 else "--batch-size"
        raise UserError(f"a training step needs about {need / 2**30:,.1f} GiB, more than the {have / 2**30:,.1f} GiB "
                        f"this device has: lower {big} or the model's size")  # fmt: skip
    info = np.finfo(devices.float_dtype(tc.x64))
    for name in ("lr", "eps", "init_std"):
        value = float(getattr(tc, name))
        if value > float(info.max) or 0 < value < float(info.tiny):  # Python floats: no cast, no warning
            flag = "--" + name.replace("_", "-")
            raise UserError(f"{flag} {value:g} is outside {info.dtype}'s range ({info.tiny:.3g} to {info.max:.3g}): "
                            f"pick a {flag} inside it (or --x64)")  # fmt: skip


def _sample_names(
    params: dict, config: GPTConfig, tokenizer: Tokenizer, sc: SampleConfig, seed: int, prefix: str = ""
) -> list[str]:
    from microgpt_jax.sample import sample

    key = sample_key(seed if sc.seed is None else sc.seed)
    return sample(params, config, tokenizer, key, sc.num_samples, sc.temperature, top_k=sc.top_k, top_p=sc.top_p,
                  prefix=prefix)  # fmt: skip


def sample_key(seed: int) -> jax.Array:
    """The key a run's samples are drawn with: ``jax.random.fold_in(jax.random.key(seed), 1)``, computed on the
    host (``threefry``: no key operation to compile) where JAX's PRNG is the one it computes."""
    if threefry.usable():
        data = threefry.fold_in(threefry.key(seed, bool(jax.config.jax_enable_x64)), 1)
        return jax.random.wrap_key_data(data)
    return _sample_key(np.int64(seed))  # np.int64: as jax.random.key(int) takes it


@jax.jit
def _sample_key(seed: jax.Array) -> jax.Array:
    return jax.random.fold_in(jax.random.key(seed), 1)


def _sampling(sc: SampleConfig) -> str:
    """How the samples are drawn, for the inference line: the temperature and the filters that are on."""
    return (
        f"temperature {sc.temperature}"
        + (f", top-k {sc.top_k}" if sc.top_k else "")
        + (f", top-p {sc.top_p}" if sc.top_p < 1 else "")
    )


def _finish(result: RunResult, rd: rundir.RunDir, guard: checkpoint.RunGuard, log: _Log) -> RunResult:
    """The end of every run: params.safetensors last (the run is then complete and takes its place), then the
    samples unless a signal came meanwhile."""
    out, spec = rd.path, result.spec
    params = {k: np.asarray(v) for k, v in result.params.items()}

    def save() -> None:
        save_params(out / PARAMS_FILE, params, result.config, spec.tokenizer, run_id=spec.digest())
        rd.commit()

    _on_lead(save)
    result.out = rd.target
    if guard.signum is None:  # from the host copies: the same on every process, on any device layout
        sample_params = params if distributed.count() > 1 else result.params
        result.samples = _sample_names(sample_params, result.config, result.tokenizer, spec.sample, spec.train.seed)
        what = "names" if result.tokenizer.kind == "char" else "sentences"
        log(f"--- inference (sampled {what}, {_sampling(spec.sample)}) ---")
        for i, name in enumerate(result.samples):
            log(f"sample {i + 1:2d}: {name}")
    if guard.signum is not None:  # after the last step: the run is complete, the samples are what was skipped
        result.signal = guard.signum
        log(f"{guard.signal_name()} after the last step: the run is complete in {rd.target}/ (samples skipped: "
            f"microgpt-jax sample --run {rd.target})")  # fmt: skip
    else:
        log(f"wrote the run to {rd.target}/ ({CONFIG_FILE}, {METRICS_FILE}, {PARAMS_FILE})")
    return result


def _on_lead(fn: Any) -> Any:
    """``fn()`` on process 0 only (what writes the run directory); its UserError is raised on every process, so
    none goes on alone to wait in the next collective. Alone: ``fn()``."""
    if distributed.count() == 1:
        return fn()
    error, value = None, None
    if distributed.lead():
        try:
            value = fn()
        except distributed.AgreedError:
            raise
        except UserError as e:
            error = e
    distributed.check_together(error)
    return value


def _together(fn: Any) -> Any:
    """``fn()`` on every process (checks that can fail on one host alone: a missing file, a process left
    without a device); the first process's UserError is raised on all of them. Alone: ``fn()``."""
    if distributed.count() == 1:
        return fn()
    error, value = None, None
    try:
        value = fn()
    except distributed.AgreedError:  # every process raises it already
        raise
    except UserError as e:
        error = e
    distributed.check_together(error)
    return value


def _header(corpus: Corpus, n_params: int, log: _Log, extra: str = "") -> None:
    log(f"num docs: {len(corpus.train_docs) + len(corpus.val_docs)} "
        f"({len(corpus.train_docs)} train, {len(corpus.val_docs)} held out)")  # fmt: skip
    tok = corpus.tokenizer
    log(f"vocab size: {tok.vocab_size}" + (f" ({len(tok.vocab)} words + BOS)" if tok.kind == "word" else ""))
    log(f"num params: {n_params}{extra}")


def _count_run(rd: rundir.RunDir, spec: RunSpec, corpus: Corpus, guard: checkpoint.RunGuard, log: _Log) -> RunResult:
    """A counted model (the bigram), evaluated, saved and sampled like any run. ``train.count`` "all" counts
    every training pair at once (metrics.jsonl: the training NLL as step 0); "online" is the guide's Step 0,
    ``train.steps`` steps of one document each, scored before it is counted (one loss line per step)."""
    from microgpt_jax.bigram import bigram_params, count_bigrams, online_bigram
    from microgpt_jax.train import evaluate

    config, tc = spec.model, spec.train
    train_tokens, train_n, val_tokens, val_n = corpus.encoded(config.block_size)
    dtype = devices.float_dtype(tc.x64)
    if tc.count == "online":
        t0 = time.perf_counter()
        losses, counts = online_bigram(train_tokens, train_n, config.vocab_size, tc.steps, tc.smoothing)
        losses, counts = np.asarray(losses), np.asarray(counts)
        how = f"counted online, one document per step, add-{tc.smoothing:g} smoothed"
    else:
        counts = count_bigrams(train_tokens, train_n, config.vocab_size)
        how = f"counted, add-{tc.smoothing:g} smoothed"
    params = bigram_params(counts, tc.smoothing, dtype)
    _header(corpus, models.num_params(params), log, f" ({how})")
    _on_lead(lambda: atomic_write_text(rd.path / CONFIG_FILE, spec.to_json()))
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
    _on_lead(lambda: atomic_write_text(rd.path / METRICS_FILE, "".join(json.dumps(line) + "\n" for line in lines)))
    result = RunResult(rd.target, params, config, corpus.tokenizer, spec, losses, val)
    return _finish(result, rd, guard, log)


def _guard(path: Path, spec: RunSpec, start: int) -> checkpoint.RunGuard:
    """The signal, NaN and checkpoint guard of a run (``_train_loop`` adds what its checkpoints record)."""
    guard = checkpoint.RunGuard(path, spec.model, spec.train, spec.tokenizer, spec.run.ckpt_every, spec.data_sha256,
                                start, init=spec.init)  # fmt: skip
    guard.agreeing = distributed.count() > 1
    return guard


def train_run(
    out: str | os.PathLike,
    model: GPTConfig | None = None,
    train: TrainConfig = TrainConfig(),
    data: DataConfig = DataConfig(),
    run: RunConfig = RunConfig(),
    sample: SampleConfig = SampleConfig(),
    *,
    init: str | os.PathLike | None = None,
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
    log = _Log(verbose and distributed.lead())
    if not str(out).strip():  # Path("") is the current directory: refused on every process
        rundir.check_target(out)
    if step is not None and (isinstance(step, bool) or step not in GUIDE_STEPS):
        raise UserError(f"unknown step {step!r}: the guide's steps are {', '.join(map(str, GUIDE_STEPS))}")
    # before the corpus is read: the cheapest check first (the directory is process 0's)
    _on_lead(lambda: rundir.check_target(out, overwrite))
    return _together(lambda: _prepare_and_train(out, model, train, data, run, sample, init, step, overwrite, log))


def _prepare_and_train(
    out: str | os.PathLike,
    model: GPTConfig | None,
    train: TrainConfig,
    data: DataConfig,
    run: RunConfig,
    sample: SampleConfig,
    init: str | os.PathLike | None,
    step: int | None,
    overwrite: bool,
    log: _Log,
) -> RunResult:
    """``train_run`` after its first checks: every check that reads the inputs, then the run (each process
    reads its own copy of the corpus and the init; only process 0 creates the directory)."""
    if init is not None and model is not None and models.get(model).counted:
        raise UserError(f"--model {model.model} is built by counting: drop --init")
    start = None if init is None else _read_init(init)
    corpus = load_corpus(data, None if start is None else start.tokenizer)
    config = _model_of(model, start, corpus.tokenizer.vocab_size)
    if models.get(config).counted and start is not None:
        raise UserError(f"--init {init} is a {config.model} model, built by counting: it cannot be trained further")
    data = dataclasses.replace(data, path=str(corpus.path.resolve()), tokenizer=corpus.tokenizer.kind)
    spec = RunSpec(
        config, train, data, run, sample, corpus.tokenizer, sha256_file(corpus.path),
        None if start is None else start.source, step,
    )  # fmt: skip
    with devices.precision(train.x64):
        counted = models.get(config).counted
        if not counted:
            if train.grad == "analytic":
                models.analytic_gradient(config)  # a model without one: a UserError, before any file
            n_dev = devices.job_device_count(run.devices, train.batch_size)
            _check_fits(train, config, len(corpus.train_docs) + len(corpus.val_docs))
            params = _initial_params(spec, start)
        if len(corpus.train_docs) == 0:
            raise UserError("no training documents left after the held-out split: lower --val-size")
        guard = _guard(Path(out), spec, 0)
        with guard.signals():  # from here on a signal ends in a resumable state or a complete run
            # after every check: a bad input leaves no directory; every process waits for process 0's verdict
            rd = _open_run_dir(lambda: rundir.create(out, overwrite), Path(out))
            try:
                if counted:
                    return _count_run(rd, spec, corpus, guard, log)
                _on_lead(lambda: atomic_write_text(rd.path / CONFIG_FILE, spec.to_json()))
                if start is not None:
                    log(f"fine-tuning from {start.source.path}")
                return _train_loop(rd, spec, corpus, params, None, 0, n_dev, guard, log)
            except BaseException:
                if distributed.lead():
                    rd.abandon()
                raise
            finally:
                rd.close()


def _agree_on_chunk(error: UserError | None, guard: checkpoint.RunGuard) -> None:
    """Once per chunk, every process of a job shares its news: an error on any process (this one's ``error``)
    is raised on all of them, and a signal any process received stops all of them at this chunk's end (the
    guard takes it as its own). Alone: ``error`` is raised, if any."""
    if distributed.count() == 1:
        if error is not None:
            raise error
        return
    agreed = distributed.agree(None if error is None else str(error), guard.received)
    failure = agreed.first_error()
    if failure is not None:
        raise failure
    if guard.signum is None and agreed.signum is not None:
        guard.signum = agreed.signum  # a signal any process received: every one stops at this chunk's end


def _open_run_dir(open_it: Any, out: Path) -> rundir.RunDir:
    """The run directory, opened by process 0 (``open_it()``); the other processes get a stand-in that
    writes nothing. Every process learns whether process 0 could open it."""
    rd = _on_lead(open_it)
    return rd if rd is not None else rundir.RunDir(out, out, [])


def resume_run(
    run_dir: str | os.PathLike,
    run: RunConfig | None = None,
    sample: SampleConfig | None = None,
    *,
    verbose: bool = True,
) -> RunResult:
    """Continue the interrupted run in ``run_dir`` from its checkpoint: the result is bit-identical to the
    uninterrupted run. ``run`` may change ``ckpt_every`` only (the rest would change what is written);
    ``sample`` may change the samples printed at the end."""
    log = _Log(verbose and distributed.lead())
    out = Path(run_dir)
    spec = read_spec(out)
    return _together(lambda: _resume(out, spec, run, sample, log))


def read_spec(run_dir: str | os.PathLike) -> RunSpec:
    """``RunSpec.read(run_dir)``; in a multi-process job process 0 reads config.json (the run directory is on
    its disk) and hands the text to the others, and every process gets the same spec or the same error."""
    if distributed.count() == 1:
        return RunSpec.read(run_dir)
    text = _on_lead(lambda: RunSpec.config_text(run_dir))
    text = distributed.broadcast_bytes(None if text is None else text.encode()).decode()
    return RunSpec.parse(text, Path(run_dir) / CONFIG_FILE)


def _resume(out: Path, spec: RunSpec, run: RunConfig | None, sample: SampleConfig | None, log: _Log) -> RunResult:
    """``resume_run`` once the spec is read: checks, then the run from its checkpoint."""
    if run is not None:
        for name in ("eval_every", "devices"):
            if getattr(run, name) != getattr(spec.run, name):
                flag = "--" + name.replace("_", "-")
                raise UserError(
                    f"{flag} {getattr(run, name)} differs from the run's {getattr(spec.run, name)}: --resume continues "
                    f"the run as it was started; drop {flag}"
                )
        spec = dataclasses.replace(spec, run=run)
    if sample is not None:
        spec = dataclasses.replace(spec, sample=sample)
    _on_lead(lambda: _need_checkpoint(out))
    # a fine-tuned run keeps its init model's tokenizer; a fresh one rebuilds it from the (unchanged) corpus
    corpus = load_corpus(spec.data, spec.tokenizer if spec.init is not None else None)
    if sha256_file(corpus.path) != spec.data_sha256:
        raise UserError(f"the data file {corpus.path} changed since {out} was started: restore it to resume")
    if corpus.tokenizer != spec.tokenizer:
        raise UserError(
            f"the corpus's vocabulary differs from the run's {spec.tokenizer.kind} vocabulary: restore the data file"
        )
    with devices.precision(spec.train.x64):
        n_dev = devices.job_device_count(spec.run.devices, spec.train.batch_size)
        rd = _open_run_dir(lambda: rundir.open_existing(out), out)
        try:

            def load() -> checkpoint.Checkpoint:
                ckpt = checkpoint.resume_state(
                    out, spec.model, spec.train, spec.tokenizer, spec.data_sha256, spec.digest()
                )
                if "metrics" in ckpt.manifest:  # metrics.jsonl back to the checkpoint, checked unchanged to there
                    rundir.restore_metrics(out / METRICS_FILE, ckpt.manifest["metrics"])
                else:  # a checkpoint from before the manifest recorded metrics.jsonl
                    checkpoint.truncate_metrics(out, ckpt.step, spec.train.steps)
                atomic_write_text(out / CONFIG_FILE, spec.to_json())  # the changed ckpt_every / samples
                return ckpt

            step, params, opt_state = _share_checkpoint(_on_lead(load), spec)
            log(f"resuming {out} at step {step} of {spec.train.steps}")
            guard = _guard(out, spec, step)
            with guard.signals():
                return _train_loop(rd, spec, corpus, params, opt_state, step, n_dev, guard, log)
        finally:
            rd.close()


def _need_checkpoint(out: Path) -> None:
    if checkpoint.read_manifest(out) is None:
        raise UserError(f"{out} has no checkpoint to resume from: train with --ckpt-every N (or Ctrl-C) writes one")


def _share_checkpoint(ckpt: checkpoint.Checkpoint | None, spec: RunSpec) -> tuple[int, dict[str, Any], Any]:
    """(step, params, optimizer state) of process 0's checkpoint on every process: its bytes are broadcast
    (exact, where a broadcast of floats would turn -0.0 into 0.0). Alone: the checkpoint's own."""
    if distributed.count() == 1:
        assert ckpt is not None
        return ckpt.step, ckpt.params, ckpt.opt_state
    import jax.numpy as jnp
    from safetensors.numpy import load

    from microgpt_jax.io import safetensors_bytes
    from microgpt_jax.train import init_opt_state, recipe_of

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


def _train_loop(
    rd: rundir.RunDir,
    spec: RunSpec,
    corpus: Corpus,
    params: dict,
    opt_state: Any,
    start: int,
    n_dev: int,
    guard: checkpoint.RunGuard,
    log: _Log,
) -> RunResult:
    """Steps ``start`` .. ``train.steps`` with metrics, evaluations and checkpoints under ``guard``, then the
    final evaluation, params.safetensors and the samples."""
    from tqdm import tqdm

    from microgpt_jax.train import evaluate as evaluate_now
    from microgpt_jax.train import train

    config, tc, rc = spec.model, spec.train, spec.run
    _header(corpus, models.num_params(params), log)
    train_tokens, train_n, val_tokens, val_n = corpus.encoded(config.block_size)
    if n_dev == 1 and train_tokens.nbytes > ONE_COPY_BYTES:  # a large corpus: its tokens on the device only
        # the host copies are freed; train() checks the tokens where they are
        train_tokens, train_n = jax.device_put(train_tokens), jax.device_put(train_n)
    metrics = rundir.Metrics(rd.path / METRICS_FILE, append=start > 0, enabled=distributed.lead())
    guard.run_dir = rd.path
    guard.lead = distributed.lead()
    guard.extra_info = lambda: {"config_sha256": spec.digest(), "metrics": metrics.sync()}
    mesh = devices.make_mesh(devices.DATA_AXIS, n_dev) if n_dev > 1 else None
    ahead = _CompileAhead(params, config, len(val_n), spec.sample) if mesh is None else None

    def evaluate(*args: Any) -> float:
        if ahead is not None:
            ahead.wait()
        return evaluate_now(*args)

    recent: list[float] = []
    t0 = time.perf_counter()
    timing: dict[str, float] = {}
    log("compiling the training program...")
    bar = tqdm(total=tc.steps, initial=start, unit="step", disable=None if log.verbose else True, leave=False)
    log.bar = None if bar.disable else bar

    def on_chunk(report: Any) -> bool:
        losses, bad_step = guard.finite(report)  # a NaN/inf loss ends the metrics and the run there
        lines: list[dict[str, Any]] = [{"step": report.start + i, "loss": float(x)} for i, x in enumerate(losses)]
        due = rc.eval_every and report.end % rc.eval_every == 0 and report.end < tc.steps and len(val_n)
        if due and bad_step is None:
            val = evaluate(report.params, val_tokens, val_n, config)
            lines.append({"step": report.end, "val_loss": val})
            log(f"step {report.end:4d} / {tc.steps:4d} | val_loss {val:.4f}")
        if bad_step is not None:
            lines.append({"step": bad_step, "diverged": True})  # what sample --run reports of this directory
        error = None
        try:
            metrics.write(lines)  # process 0's file: a full disk there is everyone's stop
        except UserError as e:
            error = e
        if error is None and bad_step is not None:
            error = guard.fail(bad_step, report.losses[bad_step - report.start])
        _agree_on_chunk(error, guard)
        recent.extend(float(x) for x in losses)
        del recent[:-LOSS_WINDOW]
        now = time.perf_counter()
        if "compiled" not in timing:  # the first call compiles: rates are timed from its end
            timing.update(compiled=now, first_step=report.end)
            took = f"{now - t0:.1f} s, compile included"
            log(f"step {report.end:4d} / {tc.steps:4d} | loss {np.mean(recent):.4f} | {took}")
        bar.update(report.end - report.start)
        bar.set_postfix_str(f"loss {np.mean(recent):.4f} (mean of last {len(recent)})", refresh=False)
        if guard.will_write(report):  # process 0 writes the checkpoint; its failure stops every process
            stop = _on_lead(lambda: guard.after_chunk(report))
            if distributed.lead():
                return bool(stop)
        return guard.after_chunk(report)  # True stops after a signal

    boundaries = tuple(range(rc.eval_every, tc.steps, rc.eval_every)) if rc.eval_every else ()
    result = RunResult(rd.target, params, config, corpus.tokenizer, spec, np.zeros(0))
    try:
        try:
            params, _, result.losses = train(
                params, train_tokens, train_n, config, tc, opt_state=opt_state, start_step=start,
                boundaries=boundaries + guard.boundaries(), on_chunk=on_chunk, mesh=mesh,
                on_lowered=None if ahead is None else ahead.start,
            )  # fmt: skip
        finally:
            bar.close()
            log.bar = None
        result.params = params
        if guard.stopped_at is not None:
            job = " (every process, with the same job flags)" if distributed.count() > 1 else ""
            log(guard.stop_message() + job)
            result.signal = guard.signum
            return result
        done = time.perf_counter()
        if "compiled" in timing and tc.steps > timing["first_step"]:
            rate = (tc.steps - timing["first_step"]) / max(done - timing["compiled"], 1e-9)
            log(f"step {tc.steps:4d} / {tc.steps:4d} | loss {np.mean(recent):.4f} (mean of last {len(recent)}) "
                f"| {rate:,.0f} steps/s after compile")  # fmt: skip
        if len(val_n):
            result.val_loss = evaluate(params, val_tokens, val_n, config)
            metrics.write([{"step": tc.steps, "val_loss": result.val_loss}])
            log(f"val_loss: {result.val_loss:.4f}")
        metrics.sync()
    finally:
        metrics.close()
        if ahead is not None:  # on every path: a compile still running when Python exits aborts the process
            ahead.join_if_started()
    return _finish(result, rd, guard, log)


class _CompileAhead:
    """Compiles the evaluation and sampling programs a run ends with on a second thread, started once training's
    program is traced (``start``; tracing holds Python's lock, so the two would only slow each other), as it
    begins to compile: XLA compiles with Python's lock released, so on a machine with a core to spare
    the two compiles overlap (a cold run's wait shrinks by the shorter one); with the compilation cache filled
    it only looks the programs up. ``wait()`` before the first evaluation or sample. Best effort: an error here
    is left for the real call to raise."""

    def __init__(self, params: dict, config: GPTConfig, n_val: int, sc: SampleConfig) -> None:
        import threading

        specs = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in params.items()}
        x64 = bool(jax.config.jax_enable_x64)  # this thread's setting (a float64 run's is a context, per thread)
        self._thread = threading.Thread(
            target=self._compile, args=(specs, config, n_val, sc, x64), name="microgpt-jax-compile-ahead", daemon=True
        )
        self._started = threading.Lock()

    def start(self) -> None:
        """Start compiling (once; later calls do nothing): the run calls it when training's program is traced."""
        if self._started.acquire(blocking=False):
            self._thread.start()

    @staticmethod
    def _compile(specs: dict, config: GPTConfig, n_val: int, sc: SampleConfig, x64: bool) -> None:
        from microgpt_jax.sample import compile_sample_tokens
        from microgpt_jax.train import compile_evaluate

        try:
            with devices.precision(x64):  # the programs the run will call: float64 ones in a float64 run
                compile_evaluate(specs, n_val, config)
                compile_sample_tokens(specs, config=config, num_samples=sc.num_samples)
        except Exception:  # the real call raises it, with its context
            pass

    def wait(self) -> None:
        """Start compiling if training's program did not (resumed runs, say), and wait for it to be done."""
        self.start()
        self._thread.join()

    def join_if_started(self) -> None:
        """Wait for a compile already running (a compile still running when Python exits aborts the process);
        one never started is not started now."""
        if self._started.locked():
            self._thread.join()


@dataclass(frozen=True)
class LoadedModel:
    """A trained model read back: its parameters (numpy), config, tokenizer and precision."""

    params: dict[str, np.ndarray]
    config: GPTConfig
    tokenizer: Tokenizer
    x64: bool
    seed: int  # the run's training seed (samples default to it), or train's default for a file
    source: str


def load_run(run_dir: str | os.PathLike) -> LoadedModel:
    """The finished run in ``run_dir``: its final parameters with their config and tokenizer. An unfinished,
    failed or mixed directory is refused with what to do about it."""
    run_dir = Path(run_dir)
    what = rundir.state(run_dir)
    if what in ("absent", "empty", "foreign", "not-a-directory"):
        raise UserError(f"{run_dir} is not a run directory (no {CONFIG_FILE}): pass the --out of a train run")
    spec = RunSpec.read(run_dir)
    checkpoint.unfinished_run_hint(run_dir)  # no params.safetensors yet, but a checkpoint: say how to go on
    if what == "failed":
        diverged = [line for line in _metric_lines(run_dir) if line.get("diverged")]
        why = f"it diverged at step {diverged[-1]['step']}" if diverged else "it stopped before its first checkpoint"
        raise UserError(f"{run_dir} holds no trained parameters: {why}; train it again with --overwrite")
    path = run_dir / PARAMS_FILE
    params, meta = load_params(path)
    if meta.get("run_id") not in (None, spec.digest()) or meta.get("tokenizer", spec.tokenizer) != spec.tokenizer:
        raise UserError(f"{path} is not the parameters of the run in {run_dir / CONFIG_FILE}: the directory mixes "
                        "two runs; train it again with --overwrite")  # fmt: skip
    check_params(params, spec.model, source=str(path))
    return LoadedModel(params, spec.model, spec.tokenizer, spec.train.x64, spec.train.seed, str(path))


def _metric_lines(run_dir: Path) -> list[dict[str, Any]]:
    """metrics.jsonl's records (lines that do not parse are skipped)."""
    out = []
    path = run_dir / METRICS_FILE
    text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def load_model_file(path: str | os.PathLike) -> LoadedModel:
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
    """New documents from a loaded model; ``sample.seed`` None means the run's seed (what its training printed).
    Each starts with ``prefix`` and continues it (``sample.sample``)."""
    with devices.precision(model.x64):
        params = _on_device(model.params, devices.float_dtype(model.x64))
        return _sample_names(params, model.config, model.tokenizer, sample, model.seed, prefix)
