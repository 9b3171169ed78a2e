"""A training run's guard between chunks: NaN stops, signals, checkpoints; and the checks a resume makes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import numpy as np

from microgpt_jax.config import GPTConfig, TrainConfig
from microgpt_jax.corpus.tokenizer import Tokenizer, as_tokenizer
from microgpt_jax.errors import UserError
from microgpt_jax.files import MAX_METRICS_BYTES, MAX_PARAMS_BYTES, atomic_write_text, read_regular
from microgpt_jax.model.dtypes import float_dtype
from microgpt_jax.model.types import Params
from microgpt_jax.runs.spec import InitSource
from microgpt_jax.storage.checkpoint import (
    CKPT_DIR,
    MANIFEST,
    Checkpoint,
    opt_state_from_arrays,
    read_manifest,
    save_checkpoint,
    sha256_hex,
)
from microgpt_jax.storage.params import check_params, params_from_bytes

if TYPE_CHECKING:
    from microgpt_jax.training.loop import ChunkReport


def _describe(tokenizer: Tokenizer | None) -> str:
    """A short name of a tokenizer for error messages: kind, size and the first entries."""
    if tokenizer is None:
        return "missing vocabulary"
    head = ("" if tokenizer.kind == "char" else " ").join(tokenizer.vocab[:12])
    more = "..." if len(tokenizer.vocab) > 12 else ""
    return f"{tokenizer.kind} vocabulary of {len(tokenizer.vocab)} ({head!r}{more})"


def truncate_metrics(run_dir: str | os.PathLike[str], step: int, steps: int) -> None:
    """Rewrite ``metrics.jsonl`` (atomically) to what the run had written when it reached ``step``: loss lines
    of steps < ``step`` and val_loss lines up to ``step`` (the end-of-run one excepted), so that the resumed run
    appends each later step exactly once."""
    path = Path(run_dir) / "metrics.jsonl"
    if not os.path.lexists(path):
        return
    fix = "restore it, or start the run again with `overwrite`"
    raw = read_regular(path, MAX_METRICS_BYTES, "metrics file", fix, follow=False)
    keep = []
    for line in raw.decode("utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
            s = rec["step"]
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a kill
        if not isinstance(s, int):
            continue
        if s < step or ("val_loss" in rec and "loss" not in rec and s == step < steps):
            keep.append(line + "\n")
    atomic_write_text(path, "".join(keep))


class RunGuard:
    """The host-side bookkeeping of one training run between chunks.

    ``finite(report)`` cuts a chunk's losses at the first non-finite one; ``fail(step, loss)`` raises the
    error for it (the last good checkpoint is left alone); ``after_chunk(report)`` writes a checkpoint every
    ``ckpt_every`` steps or when a signal came, and returns True to stop. ``signals()`` installs the SIGINT
    and SIGTERM handlers, which only set a flag (a second signal kills at once, leaving no half-written file).
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        config: GPTConfig,
        train_config: TrainConfig,
        tokenizer: Tokenizer | str,
        ckpt_every: int | None,
        data_sha256: str,
        start_step: int = 0,
        extra_info: Callable[[], dict[str, Any]] | None = None,
        init: InitSource | str | None = None,
    ) -> None:
        self.extra_info = extra_info or dict  # more manifest entries, computed when a checkpoint is written
        self.init = init
        self.run_dir = Path(run_dir)
        self.config, self.tc, self.tokenizer = config, train_config, as_tokenizer(tokenizer)
        self.ckpt_every = ckpt_every
        self.data_sha256 = data_sha256
        self.last_ckpt: int | None = start_step if start_step else None
        self.signum: int | None = None  # the signal the run acts on
        self.received: int | None = None  # the signal this process received
        # a multi-process job: ``signum`` changes only once the processes agree on it (agree_on_chunk), so a
        # signal arriving between the agreement and the checkpoint cannot make one process stop alone
        self.agreeing = False
        self.stopped_at: int | None = None
        self.lead = True  # the process that writes (False: the other processes of a multi-process job)

    def boundaries(self) -> tuple[int, ...]:
        """The steps at which a chunk must end for a checkpoint."""
        return tuple(range(self.ckpt_every, self.tc.steps, self.ckpt_every)) if self.ckpt_every else ()

    def finite(self, report: ChunkReport) -> tuple[np.ndarray, int | None]:
        """(the losses before the first non-finite one, the step of that one or None)."""
        losses = np.asarray(report.losses)
        bad = np.flatnonzero(~np.isfinite(losses))
        if bad.size == 0:
            return losses, None
        return losses[: bad[0]], report.start + int(bad[0])

    def fail(self, step: int, loss: float) -> UserError:
        """The error for a non-finite loss at ``step`` (raise it); the last good checkpoint stays as it is."""
        kept = (
            f"the last good checkpoint (step {self.last_ckpt}) is kept in {self.run_dir / CKPT_DIR}"
            if self.last_ckpt is not None
            else "no checkpoint was written"
        )
        if step == 0:  # before any update: the starting parameters, not the learning rate
            cause = f"`init` {self.init} holds" if self.init else f"`init_std` {self.tc.init_std:g} gives"
            return UserError(
                f"loss is {float(loss)} at step 0, before any update: {cause} parameters with a non-finite loss; "
                f"{'use another `init`' if self.init else 'lower `init_std`'} and train again"
            )
        return UserError(
            f"loss is {float(loss)} at step {step} (lr {self.tc.lr:g}): training diverged; "
            f"lower `lr` and train again ({kept}; metrics.jsonl holds the steps before it)"
        )

    def write(self, step: int, params: Params, opt_state: Any) -> None:
        """Write the checkpoint of ``step`` (only the lead process writes; the others note the step)."""
        import jax

        if not self.lead:
            self.last_ckpt = step
            return
        info = {
            "steps": self.tc.steps,
            "data_position": {"step": step, "next_doc": step * self.tc.batch_size},  # docs[next_doc % n] next
            "data_sha256": self.data_sha256,
            "prng_key": np.asarray(jax.random.key_data(jax.random.key(self.tc.seed))).tolist(),
            **self.extra_info(),
        }
        if self.lead:
            save_checkpoint(self.run_dir, step, params, opt_state, self.config, self.tokenizer, info)
        self.last_ckpt = step

    def will_write(self, report: ChunkReport) -> bool:
        """Whether ``after_chunk(report)`` writes a checkpoint."""
        due = self.ckpt_every is not None and report.end % self.ckpt_every == 0
        return (due or self.signum is not None) and self.last_ckpt != report.end

    def after_chunk(self, report: ChunkReport) -> bool:
        """Checkpoint if due (every ``ckpt_every`` steps, or a signal came); True means stop here."""
        due = self.ckpt_every is not None and report.end % self.ckpt_every == 0
        if self.signum is not None and self.stopped_at is None and self.lead:
            print(f"{signal.Signals(self.signum).name}: writing a checkpoint at step {report.end}", flush=True)
        if (due or self.signum is not None) and self.last_ckpt != report.end:
            self.write(report.end, report.params, report.opt_state)
        if self.signum is not None and report.end < self.tc.steps:
            self.stopped_at = report.end
            return True
        return False

    def signal_name(self) -> str:
        """The name of the signal that came (SIGINT, SIGTERM)."""
        return signal.Signals(self.signum).name if self.signum else "signal"

    def stop_message(self) -> str:
        """What to print after a signal stopped the run."""
        name = signal.Signals(self.signum).name if self.signum else "signal"
        return (
            f"stopped by {name} at step {self.stopped_at} of {self.tc.steps}; checkpoint in "
            f"{self.run_dir / CKPT_DIR}; resume with: microgpt-jax train --resume {self.run_dir}"
        )

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # only set the flag (printing here could re-enter a print the signal interrupted)
        self.received = signum
        if not self.agreeing:
            self.signum = signum
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)

    @contextlib.contextmanager
    def signals(self) -> Iterator[None]:
        """SIGINT and SIGTERM set the stop flag while inside; the previous handlers come back after."""
        old = {}
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                old[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            pass
        try:
            yield
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)


def resume_state(
    run_dir: str | os.PathLike[str],
    config: GPTConfig,
    train_config: TrainConfig,
    tokenizer: Tokenizer | str,
    data_sha256: str,
    config_sha256: str | None = None,
) -> Checkpoint:
    """Load a run's checkpoint for ``resume_run`` and check that what it continues is what was checkpointed:
    the corpus, the run's config (``config_sha256``, see ``rundir.config_digest``) and the manifest's step.
    Anything changed is a one-line refusal. (The caller restores metrics.jsonl: ``rundir.restore_metrics``
    with the manifest's record, or ``truncate_metrics`` for a checkpoint from before that record.)"""
    ckpt = load_checkpoint(run_dir, config, train_config, tokenizer)
    manifest, ck = ckpt.manifest, Path(run_dir) / CKPT_DIR / MANIFEST
    if manifest.get("data_sha256") not in (None, data_sha256):
        raise UserError(f"the data file changed since {run_dir} was checkpointed: restore it to resume")
    if manifest["params"] != f"params-{ckpt.step:08d}.safetensors":
        raise UserError(f"{ck}: step {ckpt.step} does not match its files (edited?): start the run again")
    if config_sha256 is not None and manifest.get("config_sha256") not in (None, config_sha256):
        raise UserError(
            f"{Path(run_dir) / 'config.json'} changed since the checkpoint (model, train, data or init edited): "
            "restore it, or start the run again with `overwrite`"
        )
    return ckpt


def unfinished_run_hint(run_dir: str | os.PathLike[str]) -> None:
    """For ``sample``/``export --run`` of a run that stopped before writing params.safetensors: raise a UserError
    saying how to finish it or where its checkpoint's parameters are; do nothing otherwise."""
    run_dir = Path(run_dir)
    if (run_dir / "params.safetensors").exists():
        return
    try:
        manifest = read_manifest(run_dir)
    except UserError:
        return
    if manifest is not None:
        raise UserError(
            f"{run_dir} is unfinished (checkpoint at step {manifest['step']}): finish it with "
            f"`microgpt-jax train --resume {run_dir}`, or use --params {run_dir / CKPT_DIR / manifest['params']}"
        )


def load_checkpoint(
    run_dir: str | os.PathLike[str], config: GPTConfig, train_config: TrainConfig, tokenizer: Tokenizer | str
) -> Checkpoint:
    """Read and verify ``run_dir/checkpoint/``: file hashes, shapes against ``config``, the tokenizer, and the
    optimizer state's structure against a fresh ``init_opt_state``. Arrays come back as jax arrays in the
    run's dtype."""
    import jax.numpy as jnp
    from safetensors import SafetensorError
    from safetensors.numpy import load

    from microgpt_jax.training.loop import init_opt_state, recipe_of

    ck = Path(run_dir) / CKPT_DIR
    manifest = read_manifest(run_dir)
    if manifest is None:
        raise UserError(f"{run_dir} has no checkpoint to resume from: train with `ckpt_every` N (or Ctrl-C) writes one")
    step = manifest["step"]
    if not 0 <= step <= train_config.steps:
        raise UserError(f"{ck / MANIFEST}: step {step} is outside the run's 0..{train_config.steps}: start again")
    raw = {}
    for key in ("params", "opt_state"):
        name = manifest.get(key)
        if not isinstance(name, str) or Path(name).name != name:
            raise UserError(f"{ck / MANIFEST}: no {key} file named: the checkpoint is corrupt; start again")
        # bounded, never through a link (a FIFO or /dev/zero put there is a one-line error, not a hang)
        raw[key] = read_regular(ck / name, MAX_PARAMS_BYTES, "checkpoint file", "the checkpoint is incomplete or "
                                "damaged; start the run again with `overwrite`", follow=False)  # fmt: skip
        if sha256_hex(raw[key]) != manifest.get("sha256", {}).get(name):
            raise UserError(f"checkpoint file {ck / name} does not match its SHA-256 in {MANIFEST}: it was changed")
    host_params, meta = params_from_bytes(raw["params"], "safetensors", ck / manifest["params"])  # the bytes hashed
    check_params(host_params, config, source=str(ck / manifest["params"]))
    tokenizer = as_tokenizer(tokenizer)
    if meta.get("tokenizer") != tokenizer:
        got = meta.get("tokenizer")
        raise UserError(
            f"{ck / manifest['params']}: its {_describe(got)} differs from the run's {_describe(tokenizer)}: "
            "the checkpoint is from another run"
        )
    dtype = float_dtype(train_config.x64)
    params = {k: jnp.asarray(host_params[k], dtype) for k in host_params}
    try:
        opt_arrays = load(raw["opt_state"])
    except (SafetensorError, ValueError, KeyError) as e:
        raise UserError(f"{ck / manifest['opt_state']}: not a readable optimizer state ({e})") from None
    template = init_opt_state(recipe_of(train_config), params)
    opt_state = opt_state_from_arrays(opt_arrays, template, str(ck / manifest["opt_state"]))
    return Checkpoint(step, params, opt_state, manifest)
