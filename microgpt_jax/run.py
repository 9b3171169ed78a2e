"""A training run as a library: one module owns a run directory from its creation to the final samples.

A run directory holds:

- ``config.json``: the run described once: ``model``, ``train``, ``data`` (with the corpus's path, SHA-256
  and vocabulary), ``run``, ``sample`` and ``init`` (the file the parameters started from, or null);
- ``metrics.jsonl``: ``{"step": s, "loss": x}`` for every step (s from 0) and ``{"step": s, "val_loss": x}``
  for every held-out evaluation;
- ``checkpoint/``: the latest checkpoint, when one was written (``checkpoint.py``);
- ``params.safetensors``: the final state_dict with its config and vocabulary (written last).

``train_run`` trains (or counts) a fresh run, ``resume_run`` continues an interrupted one bit for bit,
``load_run`` reads a finished one back. Every check that can fail (corpus, configs, devices, the init file,
the directory's state) runs before the first file is written. The command line is a thin layer over these.
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

from microgpt_jax import checkpoint, devices, models, threefry
from microgpt_jax.config import DataConfig, GPTConfig, RunConfig, SampleConfig, TrainConfig
from microgpt_jax.data import Corpus, Tokenizer, load_corpus, sha256_file
from microgpt_jax.errors import UserError
from microgpt_jax.io import atomic_write_text, check_params, load_params, save_params

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
PARAMS_FILE = "params.safetensors"
VERSION = 2  # of config.json: 1 held the raw command-line flags beside the configs
LOSS_WINDOW = 100  # the progress bar's running mean covers the last N steps


@dataclass(frozen=True)
class RunSpec:
    """Everything ``config.json`` records: the configs of a run and where its data and init came from."""

    model: GPTConfig
    train: TrainConfig
    data: DataConfig
    run: RunConfig
    sample: SampleConfig
    vocab: str
    data_sha256: str
    init: str | None = None

    def to_json(self) -> str:
        """config.json's text."""
        doc = {
            "version": VERSION,
            "model": self.model.to_dict(),
            "train": self.train.to_dict(),
            "data": {**self.data.to_dict(), "sha256": self.data_sha256, "vocab": self.vocab},
            "run": self.run.to_dict(),
            "sample": self.sample.to_dict(),
            "init": self.init,
        }
        return json.dumps(doc, indent=2) + "\n"

    @classmethod
    def read(cls, run_dir: str | os.PathLike) -> RunSpec:
        """The spec in ``run_dir/config.json``; anything missing or malformed is a one-line UserError."""
        path = Path(run_dir) / CONFIG_FILE
        if not path.is_file():
            raise UserError(f"{run_dir} is not a run directory (no {CONFIG_FILE}): pass the --out of a train run")
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(doc, dict) or doc.get("version") != VERSION:
                raise ValueError(f"version {doc.get('version') if isinstance(doc, dict) else None}, not {VERSION}")
            data = dict(doc["data"])
            sha, vocab = data.pop("sha256"), data.pop("vocab")
            if not isinstance(sha, str) or not isinstance(vocab, str):
                raise TypeError("data.sha256 and data.vocab must be strings")
            init = doc["init"]
            if init is not None and not isinstance(init, str):
                raise TypeError("init must be a path or null")
            return cls(
                GPTConfig.from_dict(doc["model"]),
                TrainConfig.from_dict(doc["train"]),
                DataConfig.from_dict(data),
                RunConfig.from_dict(doc["run"]),
                SampleConfig.from_dict(doc["sample"]),
                vocab,
                sha,
                init,
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


def _prepare_out_dir(out: Path) -> None:
    """Create the run directory and check it can be written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write to output directory {out}: {e.strerror}: pick another --out") from None


def _initial_params(spec: RunSpec, config: GPTConfig, tokenizer: Tokenizer) -> dict[str, Any]:
    """Fresh N(0, std) params from the train seed, or the state_dict of ``spec.init`` (checked against config)."""
    tc = spec.train
    dtype = devices.float_dtype(tc.x64)
    if spec.init is None:  # the seed, not jax.random.key(seed): init then makes its keys on the host
        return models.init_params(tc.seed, config, tc.init_std, tc.init_zero_out, dtype)
    params, meta = load_params(spec.init)
    if "vocab" in meta and meta["vocab"] != tokenizer.uchars:
        raise UserError(
            f"{spec.init}: its vocabulary {meta['vocab']!r} differs from the data's {tokenizer.uchars!r}: "
            "train on the same corpus or start fresh"
        )
    check_params(params, config, source=str(spec.init))
    return _on_device({k: params[k] for k in models.param_shapes(config)}, dtype)


def _on_device(params: dict[str, Any], dtype: Any) -> dict[str, jax.Array]:
    """Host parameters as device arrays of ``dtype``: converted by numpy and copied, as jnp.asarray converts them,
    without its copy program per matrix shape."""
    return jax.device_put({k: np.asarray(v, dtype) for k, v in params.items()})


def _sample_names(params: dict, config: GPTConfig, tokenizer: Tokenizer, sc: SampleConfig, seed: int) -> list[str]:
    from microgpt_jax.sample import sample

    key = sample_key(seed if sc.seed is None else sc.seed)
    return sample(params, config, tokenizer, key, sc.num_samples, sc.temperature)


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


def _finish(result: RunResult, log: _Log) -> RunResult:
    """The end of every run: params.safetensors last, then the samples."""
    out, spec = result.out, result.spec
    save_params(out / PARAMS_FILE, {k: np.asarray(v) for k, v in result.params.items()}, result.config, spec.vocab)
    result.samples = _sample_names(result.params, result.config, result.tokenizer, spec.sample, spec.train.seed)
    log(f"--- inference (new, hallucinated names, temperature {spec.sample.temperature}) ---")
    for i, name in enumerate(result.samples):
        log(f"sample {i + 1:2d}: {name}")
    log(f"wrote the run to {out}/ ({CONFIG_FILE}, {METRICS_FILE}, {PARAMS_FILE})")
    return result


def _header(corpus: Corpus, n_params: int, log: _Log, extra: str = "") -> None:
    log(f"num docs: {len(corpus.train_docs) + len(corpus.val_docs)} "
        f"({len(corpus.train_docs)} train, {len(corpus.val_docs)} held out)")  # fmt: skip
    log(f"vocab size: {corpus.tokenizer.vocab_size}")
    log(f"num params: {n_params}{extra}")


def _count_run(out: Path, spec: RunSpec, corpus: Corpus, log: _Log) -> RunResult:
    """A counted model (the bigram): count the training pairs, evaluate, save and sample like any run."""
    from microgpt_jax.bigram import bigram_params, count_bigrams
    from microgpt_jax.train import evaluate

    config = spec.model
    train_tokens, train_n, val_tokens, val_n = corpus.encoded(config.block_size)
    smoothing = spec.train.smoothing
    params = bigram_params(count_bigrams(train_tokens, train_n, config.vocab_size), smoothing,
                           devices.float_dtype(spec.train.x64))  # fmt: skip
    _prepare_out_dir(out)
    checkpoint.check_fresh_out(out)
    _header(corpus, models.num_params(params), log, f" (counted, add-{smoothing:g} smoothed)")
    atomic_write_text(out / CONFIG_FILE, spec.to_json())
    lines = [{"step": 0, "loss": evaluate(params, train_tokens, train_n, config)}]
    val = None
    if len(val_n):
        val = evaluate(params, val_tokens, val_n, config)
        lines.append({"step": 0, "val_loss": val})
        log(f"val_loss: {val:.4f}")
    atomic_write_text(out / METRICS_FILE, "".join(json.dumps(line) + "\n" for line in lines))
    result = RunResult(out, params, config, corpus.tokenizer, spec, np.asarray([lines[0]["loss"]]), val)
    return _finish(result, log)


def train_run(
    out: str | os.PathLike,
    model: GPTConfig = GPTConfig(),
    train: TrainConfig = TrainConfig(),
    data: DataConfig = DataConfig(),
    run: RunConfig = RunConfig(),
    sample: SampleConfig = SampleConfig(),
    *,
    init: str | os.PathLike | None = None,
    verbose: bool = True,
) -> RunResult:
    """Train a fresh run into the directory ``out``: what ``microgpt-jax train --out`` does.

    ``model.vocab_size`` is taken from the corpus's tokenizer. ``init`` starts from a parameter file instead
    of N(0, init_std). Prints progress, the held-out val_loss and the samples unless ``verbose`` is False.
    A fresh run refuses a directory holding an unfinished run (resume it or pick another ``out``).
    """
    log = _Log(verbose)
    if not str(out).strip():  # Path("") is the current directory
        raise UserError("--out is empty: name a run directory, e.g. --out runs/microgpt")
    out = Path(out)
    corpus = load_corpus(data)
    config = dataclasses.replace(model, vocab_size=corpus.tokenizer.vocab_size)
    spec = RunSpec(
        config, train, dataclasses.replace(data, path=str(corpus.path.resolve())), run, sample,
        corpus.tokenizer.uchars, sha256_file(corpus.path), None if init is None else str(Path(init).resolve()),
    )  # fmt: skip
    if train.x64:
        devices.enable_x64(True)
    if models.get(config).counted:
        if init is not None:
            raise UserError(f"--model {config.model} is built by counting: drop --init")
        return _count_run(out, spec, corpus, log)
    n_dev = devices.device_count(run.devices, train.batch_size)
    params = _initial_params(spec, config, corpus.tokenizer)
    if len(corpus.train_docs) == 0:
        raise UserError("no training documents left after the held-out split: lower --val-size")
    _prepare_out_dir(out)  # after every check: a bad input leaves no directory
    checkpoint.check_fresh_out(out)
    atomic_write_text(out / CONFIG_FILE, spec.to_json())
    return _train_loop(out, spec, corpus, params, None, 0, n_dev, log)


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
    log = _Log(verbose)
    out = Path(run_dir)
    spec = RunSpec.read(out)
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
    if checkpoint.read_manifest(out) is None:
        raise UserError(f"{out} has no checkpoint to resume from: train with --ckpt-every N (or Ctrl-C) writes one")
    corpus = load_corpus(spec.data)
    if sha256_file(corpus.path) != spec.data_sha256:
        raise UserError(f"the data file {corpus.path} changed since {out} was started: restore it to resume")
    if corpus.tokenizer.uchars != spec.vocab:
        raise UserError(f"the corpus's vocabulary differs from the run's {spec.vocab!r}: restore the data file")
    if spec.train.x64:
        devices.enable_x64(True)
    n_dev = devices.device_count(spec.run.devices, spec.train.batch_size)
    ckpt = checkpoint.resume_state(out, spec.model, spec.train, spec.vocab, spec.data_sha256)
    atomic_write_text(out / CONFIG_FILE, spec.to_json())  # the changed ckpt_every / samples
    log(f"resuming {out} at step {ckpt.step} of {spec.train.steps}")
    return _train_loop(out, spec, corpus, ckpt.params, ckpt.opt_state, ckpt.step, n_dev, log)


def _train_loop(
    out: Path, spec: RunSpec, corpus: Corpus, params: dict, opt_state: Any, start: int, n_dev: int, log: _Log
) -> RunResult:
    """Steps ``start`` .. ``train.steps`` with metrics, evaluations, checkpoints and the signal guard, then
    the final evaluation, params.safetensors and the samples."""
    from tqdm import tqdm

    from microgpt_jax.train import evaluate as evaluate_now
    from microgpt_jax.train import train

    config, tc, rc = spec.model, spec.train, spec.run
    tokenizer = corpus.tokenizer
    _header(corpus, models.num_params(params), log)
    train_tokens, train_n, val_tokens, val_n = corpus.encoded(config.block_size)
    guard = checkpoint.RunGuard(out, config, tc, spec.vocab, rc.ckpt_every, spec.data_sha256, start)
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
        lines = [json.dumps({"step": report.start + i, "loss": float(x)}) for i, x in enumerate(losses)]
        due = rc.eval_every and report.end % rc.eval_every == 0 and report.end < tc.steps and len(val_n)
        if due and bad_step is None:
            val = evaluate(report.params, val_tokens, val_n, config)
            lines.append(json.dumps({"step": report.end, "val_loss": val}))
            log(f"step {report.end:4d} / {tc.steps:4d} | val_loss {val:.4f}")
        metrics.write("".join(line + "\n" for line in lines))
        metrics.flush()
        if bad_step is not None:
            raise guard.fail(bad_step, report.losses[bad_step - report.start])
        recent.extend(float(x) for x in losses)
        del recent[:-LOSS_WINDOW]
        now = time.perf_counter()
        if "compiled" not in timing:  # the first call compiles: rates are timed from its end
            timing.update(compiled=now, first_step=report.end)
            took = f"{now - t0:.1f} s, compile included"
            log(f"step {report.end:4d} / {tc.steps:4d} | loss {np.mean(recent):.4f} | {took}")
        bar.update(report.end - report.start)
        bar.set_postfix_str(f"loss {np.mean(recent):.4f} (mean of last {len(recent)})", refresh=False)
        return guard.after_chunk(report)  # checkpoint if due or signalled; True stops after a signal

    boundaries = tuple(range(rc.eval_every, tc.steps, rc.eval_every)) if rc.eval_every else ()
    result = RunResult(out, params, config, tokenizer, spec, np.zeros(0))
    with open(out / METRICS_FILE, "a" if start else "w", encoding="utf-8") as metrics, guard.signals():
        try:
            params, _, result.losses = train(
                params, train_tokens, train_n, config, tc, opt_state=opt_state, start_step=start,
                boundaries=boundaries + guard.boundaries(), on_chunk=on_chunk, mesh=mesh,
            )  # fmt: skip
        finally:
            bar.close()
            log.bar = None
        result.params = params
        if guard.stopped_at is not None:
            log(guard.stop_message())
            result.signal = guard.signum
            return result
        done = time.perf_counter()
        if "compiled" in timing and tc.steps > timing["first_step"]:
            rate = (tc.steps - timing["first_step"]) / max(done - timing["compiled"], 1e-9)
            log(f"step {tc.steps:4d} / {tc.steps:4d} | loss {np.mean(recent):.4f} (mean of last {len(recent)}) "
                f"| {rate:,.0f} steps/s after compile")  # fmt: skip
        if len(val_n):
            result.val_loss = evaluate(params, val_tokens, val_n, config)
            metrics.write(json.dumps({"step": tc.steps, "val_loss": result.val_loss}) + "\n")
            log(f"val_loss: {result.val_loss:.4f}")
    if ahead is not None:
        ahead.wait()
    return _finish(result, log)


class _CompileAhead:
    """Compiles the evaluation and sampling programs a run ends with on a second thread, started as training's
    program begins to compile: XLA compiles with Python's lock released, so on a machine with a core to spare
    the two compiles overlap (a cold run's wait shrinks by the shorter one); with the compilation cache filled
    it only looks the programs up. ``wait()`` before the first evaluation or sample. Best effort: an error here
    is left for the real call to raise."""

    def __init__(self, params: dict, config: GPTConfig, n_val: int, sc: SampleConfig) -> None:
        import threading

        specs = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in params.items()}
        self._thread = threading.Thread(
            target=self._compile, args=(specs, config, n_val, sc), name="microgpt-jax-compile-ahead", daemon=True
        )
        self._thread.start()

    @staticmethod
    def _compile(specs: dict, config: GPTConfig, n_val: int, sc: SampleConfig) -> None:
        from microgpt_jax.sample import compile_sample_tokens
        from microgpt_jax.train import compile_evaluate

        try:
            compile_evaluate(specs, n_val, config)
            compile_sample_tokens(specs, config=config, num_samples=sc.num_samples)
        except Exception:  # the real call raises it, with its context
            pass

    def wait(self) -> None:
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
    """The finished run in ``run_dir``: its final parameters with their config and tokenizer."""
    run_dir = Path(run_dir)
    spec = RunSpec.read(run_dir)
    checkpoint.unfinished_run_hint(run_dir)  # no params.safetensors yet, but a checkpoint: say how to go on
    path = run_dir / PARAMS_FILE
    params, _ = load_params(path)
    check_params(params, spec.model, source=str(path))
    return LoadedModel(params, spec.model, Tokenizer(spec.vocab), spec.train.x64, spec.train.seed, str(path))


def load_model_file(path: str | os.PathLike) -> LoadedModel:
    """A self-describing parameter file (``export``'s, or a run's params.safetensors) with its config and
    vocabulary."""
    params, meta = load_params(path)
    if "config" not in meta or "vocab" not in meta:
        raise UserError(f"{path} carries no config and vocabulary: export it with microgpt-jax export")
    config, vocab = meta["config"], meta["vocab"]
    check_params(params, config, source=str(path))
    x64 = meta.get("dtype") == "float64"
    return LoadedModel(params, config, Tokenizer(vocab), x64, TrainConfig().seed, str(path))


def sample_model(model: LoadedModel, sample: SampleConfig = SampleConfig()) -> list[str]:
    """New documents from a loaded model; ``sample.seed`` None means the run's seed (what its training printed)."""
    if model.x64:
        devices.enable_x64(True)
    dtype = devices.float_dtype(model.x64)
    params = _on_device(model.params, dtype)
    return _sample_names(params, model.config, model.tokenizer, sample, model.seed)
