"""The training loop of a run: metrics, evaluations, checkpoints and progress around training's chunks, then
params.safetensors and the samples."""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import jax
import numpy as np

from microgpt_jax.config import GPTConfig, SampleConfig
from microgpt_jax.corpus.load import Corpus
from microgpt_jax.corpus.tokenizer import Tokenizer
from microgpt_jax.errors import UserError, printable
from microgpt_jax.model import registry
from microgpt_jax.model.dtypes import precision
from microgpt_jax.model.types import Params
from microgpt_jax.runs import rundir
from microgpt_jax.runs.guard import RunGuard
from microgpt_jax.runs.load import sample_names, sampling_label
from microgpt_jax.runs.processes import agree_on_chunk, on_lead
from microgpt_jax.runs.rundir import CONFIG_FILE, METRICS_FILE, PARAMS_FILE
from microgpt_jax.runs.spec import RunSpec
from microgpt_jax.runtime import devices, distributed
from microgpt_jax.storage.params import save_params

if TYPE_CHECKING:
    from tqdm import tqdm

    from microgpt_jax.training.loop import ChunkReport

LOSS_WINDOW = 100  # the progress bar's running mean covers the last N steps


ONE_COPY_BYTES = 64 << 20  # training tokens beyond this live on the device only (a host copy beside it doubles them)


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


class Log:
    """What a run prints: lines on stdout and, on a terminal, a tqdm bar on stderr."""

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose
        self.bar: tqdm[NoReturn] | None = None

    def __call__(self, text: str) -> None:
        if not self.verbose:
            return
        if self.bar is not None:
            self.bar.write(text, file=sys.stdout)
        else:
            print(text, flush=True)


def finish_run(result: RunResult, rd: rundir.RunDir, guard: RunGuard, log: Log) -> RunResult:
    """The end of every run: params.safetensors last (the run is then complete and takes its place), then the
    samples unless a signal came meanwhile."""
    out, spec = rd.path, result.spec
    params = {k: np.asarray(v) for k, v in result.params.items()}

    def save() -> None:
        save_params(out / PARAMS_FILE, params, result.config, spec.tokenizer, run_id=spec.digest())
        rd.commit()

    on_lead(save)
    result.out = rd.target
    if guard.signum is None:  # from the host copies: the same on every process, on any device layout
        sample_params = params if distributed.count() > 1 else result.params
        result.samples = sample_names(sample_params, result.config, result.tokenizer, spec.sample, spec.train.seed)
        what = "names" if result.tokenizer.kind == "char" else "sentences"
        log(f"--- inference (sampled {what}, {sampling_label(spec.sample)}) ---")
        for i, name in enumerate(result.samples):
            log(f"sample {i + 1:2d}: {printable(name)}")
    if guard.signum is not None:  # after the last step: the run is complete, the samples are what was skipped
        result.signal = guard.signum
        log(f"{guard.signal_name()} after the last step: the run is complete in {rd.target}/ (samples skipped: "
            f"microgpt-jax sample --run {rd.target})")  # fmt: skip
    else:
        log(f"wrote the run to {rd.target}/ ({CONFIG_FILE}, {METRICS_FILE}, {PARAMS_FILE})")
    return result


def log_header(corpus: Corpus, n_params: int, log: Log, extra: str = "") -> None:
    log(f"num docs: {len(corpus.train_docs) + len(corpus.val_docs)} "
        f"({len(corpus.train_docs)} train, {len(corpus.val_docs)} held out)")  # fmt: skip
    tok = corpus.tokenizer
    log(f"vocab size: {tok.vocab_size}" + (f" ({len(tok.vocab)} words + BOS)" if tok.kind == "word" else ""))
    log(f"num params: {n_params}{extra}")


def make_guard(path: Path, spec: RunSpec, start: int) -> RunGuard:
    """The signal, NaN and checkpoint guard of a run (``train_loop`` adds what its checkpoints record)."""
    guard = RunGuard(path, spec.model, spec.train, spec.tokenizer, spec.run.ckpt_every, spec.data_sha256,
                                start, init=spec.init)  # fmt: skip
    guard.agreeing = distributed.count() > 1
    return guard


def train_loop(
    rd: rundir.RunDir,
    spec: RunSpec,
    corpus: Corpus,
    params: Params,
    opt_state: Any,
    start: int,
    n_dev: int,
    guard: RunGuard,
    log: Log,
) -> RunResult:
    """Steps ``start`` .. ``train.steps`` with metrics, evaluations and checkpoints under ``guard``, then the
    final evaluation, params.safetensors and the samples."""
    from tqdm import tqdm

    from microgpt_jax.training.evaluation import evaluate as evaluate_now
    from microgpt_jax.training.loop import train

    config, tc, rc = spec.model, spec.train, spec.run
    log_header(corpus, registry.num_params(params), log)
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
    log(f"step {start:4d} / {tc.steps:4d} | starting: compiling the training program (or reading it from the cache)")
    bar = tqdm(total=tc.steps, initial=start, unit="step", disable=None if log.verbose else True, leave=False)
    log.bar = None if bar.disable else bar

    def on_chunk(report: ChunkReport) -> bool:
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
        agree_on_chunk(error, guard)
        recent.extend(float(x) for x in losses)
        del recent[:-LOSS_WINDOW]
        now = time.perf_counter()
        if "compiled" not in timing:  # the first call compiles: rates are timed from its end
            timing.update(compiled=now, first_step=report.end)
            took = f"{now - t0:.1f} s, start-up included"
            log(f"step {report.end:4d} / {tc.steps:4d} | loss {np.mean(recent):.4f} | {took}")
        bar.update(report.end - report.start)
        bar.set_postfix_str(f"loss {np.mean(recent):.4f} (mean of last {len(recent)})", refresh=False)
        if guard.will_write(report):  # process 0 writes the checkpoint; its failure stops every process
            stop = on_lead(lambda: guard.after_chunk(report))
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
    return finish_run(result, rd, guard, log)


class _CompileAhead:
    """Compiles the evaluation and sampling programs a run ends with on a second thread, started once training's
    program is traced (``start``), so their compile overlaps training's where a core is free (why:
    docs/performance.md). ``wait()`` before the first evaluation or sample. Best effort: an error here is left
    for the real call to raise."""

    def __init__(self, params: Params, config: GPTConfig, n_val: int, sc: SampleConfig) -> None:
        import threading

        specs = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in params.items()}
        x64 = bool(jax.config.jax_enable_x64)  # type: ignore[attr-defined]  # a jax option: Config declares none; this thread's setting (a float64 run's is a context, per thread)
        self._thread = threading.Thread(
            target=self._compile, args=(specs, config, n_val, sc, x64), name="microgpt-jax-compile-ahead", daemon=True
        )
        self._started = threading.Lock()

    def start(self) -> None:
        """Start compiling (once; later calls do nothing): the run calls it when training's program is traced."""
        if self._started.acquire(blocking=False):
            self._thread.start()

    @staticmethod
    def _compile(
        specs: dict[str, jax.ShapeDtypeStruct], config: GPTConfig, n_val: int, sc: SampleConfig, x64: bool
    ) -> None:
        from microgpt_jax.training.evaluation import compile_evaluate
        from microgpt_jax.training.sampling import compile_sample_tokens

        try:
            with precision(x64):  # the programs the run will call: float64 ones in a float64 run
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
