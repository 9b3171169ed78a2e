"""The ``microgpt-jax`` command line: train and sample.

Every problem a user can fix is reported as one line, ``error: ...``, with exit status 2 and no traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from microgpt_jax.config import DEFAULT_LR, MODELS, OPTIMIZERS, GPTConfig, TrainConfig
from microgpt_jax.errors import UserError


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _number(kind: type, minimum: float, inclusive: bool) -> Callable[[str], Any]:
    """An argparse type: a finite int or float >= (or >) ``minimum``, else a one-line error."""
    bound = f"{'>=' if inclusive else '>'} {minimum}"
    noun, must = ("a whole number", bound) if kind is int else ("a number", f"a finite number {bound}")

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if not (math.isfinite(value) and (value >= minimum if inclusive else value > minimum)):
            raise argparse.ArgumentTypeError(f"must be {must}, got {text}")
        return value

    return parse


_positive_int = _number(int, 1, inclusive=True)
_nonneg_int = _number(int, 0, inclusive=True)
_positive_float = _number(float, 0, inclusive=False)
_nonneg_float = _number(float, 0, inclusive=True)


def add_data_args(p: argparse.ArgumentParser) -> None:
    """Flags choosing the corpus, its order and the held-out split."""
    p.add_argument("--data", help="corpus, one document per line (default: $MICROGPT_JAX_DATA, data/names.txt)")
    order = p.add_mutually_exclusive_group()
    order.add_argument("--shuffle-seed", type=int, default=42, help="random.Random(N).shuffle(docs) (default 42)")
    order.add_argument("--no-shuffle", action="store_true", help="keep the file's order")
    p.add_argument("--val-size", type=_nonneg_int, default=1000, help="hold out the last N docs (default 1000)")


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Architecture and initialisation flags."""
    p.add_argument("--n-layer", type=_positive_int, default=1)
    p.add_argument("--n-embd", type=_positive_int, default=16)
    p.add_argument("--n-head", type=_positive_int, default=4)
    p.add_argument("--block-size", type=_positive_int, default=16)
    p.add_argument("--init-std", type=_nonneg_float, default=None, help="N(0, std) init (default 0.08)")
    p.add_argument(
        "--init-variant",
        choices=("default", "early"),
        default="default",
        help="early: microgpt's earlier init, std 0.02 with attn_wo and mlp_fc2 zero",
    )
    p.add_argument("--init", help="start from a state_dict file (.json microgpt-style, .safetensors, .npz)")


def add_optim_args(p: argparse.ArgumentParser) -> None:
    """Optimizer and schedule flags."""
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    p.add_argument("--lr", type=_positive_float, default=None, help="peak lr (default adam 0.01, sgd 0.3)")
    p.add_argument("--b1", type=_nonneg_float, default=0.85, help="Adam beta1 (default 0.85)")
    p.add_argument("--b2", type=_nonneg_float, default=0.99, help="Adam beta2 (default 0.99)")
    p.add_argument("--steps", type=_positive_int, default=1000)
    p.add_argument("--batch-size", type=_positive_int, default=1)
    p.add_argument("--seed", type=int, default=42, help="PRNG seed for init and samples (default 42)")
    p.add_argument("--x64", action="store_true", help="float64 everywhere (the original's Python floats)")


def _list_of(convert: Any) -> Any:
    """argparse type: a comma-separated list, each item checked by ``convert``."""

    def parse(text: str) -> list:
        items = [x.strip() for x in text.split(",")]
        if not all(items):
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
        return [convert(x) for x in items]

    return parse


def _optimizer_name(text: str) -> str:
    if text not in OPTIMIZERS:
        raise argparse.ArgumentTypeError(f"unknown optimizer {text!r}: use {', '.join(OPTIMIZERS)}")
    return text


def add_sweep_args(p: argparse.ArgumentParser) -> None:
    """The sweep's flags: train's data and init flags, and grid flags taking comma-separated lists."""
    p.add_argument("--out", required=True, help="sweep directory (results.csv, results.json, sweep.png)")
    add_data_args(p)
    p.add_argument("--init-variant", choices=("default", "early"), default="default")
    p.add_argument("--x64", action="store_true", help="float64 everywhere")
    g = p.add_argument_group("grid (comma-separated lists; the sweep trains their cross product)")
    g.add_argument("--lr", type=_list_of(_positive_float), default=None, help="default: adam 0.01, sgd 0.3")
    seeds = g.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=_list_of(int), default=[42])
    seeds.add_argument("--seeds", type=_positive_int, default=None, help="N: seeds 0..N-1")
    g.add_argument("--init-std", type=_list_of(_nonneg_float), default=None, help="default 0.08 (early: 0.02)")
    g.add_argument("--b1", type=_list_of(_nonneg_float), default=[0.85])
    g.add_argument("--b2", type=_list_of(_nonneg_float), default=[0.99])
    g.add_argument("--optimizer", type=_list_of(_optimizer_name), default=["adam"])
    g.add_argument("--batch-size", type=_list_of(_positive_int), default=[1])
    g.add_argument("--steps", type=_list_of(_positive_int), default=[1000])
    for flag, default in (("--n-layer", 1), ("--n-embd", 16), ("--n-head", 4), ("--block-size", 16)):
        g.add_argument(flag, type=_list_of(_positive_int), default=[default])
    p.add_argument(
        "--devices",
        type=_positive_int,
        default=None,
        help="shard members over N devices (default all; a CPU has one per core)",
    )
    p.add_argument("--chunk", type=_positive_int, default=100, help="steps per compiled call (default 100)")
    p.add_argument("--save-params", action="store_true", help="write members/<id>/params.safetensors")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of every subcommand."""
    parser = _Parser(prog="microgpt-jax", description="microgpt in JAX: train a tiny GPT on names, sample new ones.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a model and write a run directory")
    run_dir = t.add_mutually_exclusive_group(required=True)
    run_dir.add_argument("--out", help="run directory (config.json, metrics.jsonl, params.safetensors)")
    run_dir.add_argument("--resume", metavar="DIR", help="continue the interrupted run in DIR with its saved flags")
    t.add_argument("--ckpt-every", type=_positive_int, default=None, help="write DIR/checkpoint every N steps")
    add_data_args(t)
    add_model_args(t)
    add_optim_args(t)
    t.add_argument("--model", choices=MODELS, default="gpt", help="bigram (counted), mlp or gpt (default gpt)")
    t.add_argument("--smoothing", type=_positive_float, default=None, help="bigram add-k smoothing (default 1)")
    t.add_argument("--eval-every", type=_positive_int, default=None, help="held-out eval every N steps")
    t.add_argument("--num-samples", type=_positive_int, default=20)
    t.add_argument("--temperature", type=_positive_float, default=0.5)
    t.add_argument(
        "--devices",
        type=_positive_int,
        default=None,
        help="data parallel over N devices (default all GPUs/TPUs; on a CPU, N cores)",
    )

    s = sub.add_parser("sample", help="sample names from a trained run or a parameter file")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="a run directory written by train")
    src.add_argument("--params", help="a parameter file carrying its config and vocabulary")
    s.add_argument("--num-samples", type=_positive_int, default=20)
    s.add_argument("--temperature", type=_positive_float, default=0.5)
    s.add_argument("--seed", type=int, default=42)

    e = sub.add_parser("export", help="write a run's parameters as safetensors, npz or microgpt-style json")
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="a run directory written by train")
    src.add_argument("--params", help="a parameter file carrying its config and vocabulary")
    e.add_argument("--format", choices=("safetensors", "npz", "json"), help="default: from the suffix of --out")
    e.add_argument("--out", required=True, help="the file to write (.safetensors, .npz or .json)")

    w = sub.add_parser("sweep", help="train a grid of hyperparameters as vmapped programs, sharded over devices")
    add_sweep_args(w)
    return parser


def enable_x64(on: bool) -> None:
    """Switch JAX to float64 (before any array is made)."""
    import jax

    jax.config.update("jax_enable_x64", bool(on))


def load_corpus(args: argparse.Namespace) -> tuple[list[str], list[str], Any, Path]:
    """Read, shuffle and split the corpus named by the data flags; returns (train, val, tokenizer, path)."""
    from microgpt_jax.data import Tokenizer, load_docs, resolve_data_path, shuffle_docs, split_docs

    path = resolve_data_path(args.data)
    docs = shuffle_docs(load_docs(path), None if args.no_shuffle else args.shuffle_seed)
    tokenizer = Tokenizer.from_docs(docs)
    train_docs, val_docs = split_docs(docs, args.val_size)
    return train_docs, val_docs, tokenizer, path


def prepare_out_dir(out: str) -> Path:
    """Create the run directory and check it can be written, before any work is done."""
    path = Path(out)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write to output directory {path}: {e.strerror}: pick another --out") from None
    return path


def initial_params(args: argparse.Namespace, config: GPTConfig, tc: TrainConfig, vocab: str) -> dict:
    """Fresh N(0, std) params from --seed, or the state_dict in --init (checked against the config)."""
    import jax
    import jax.numpy as jnp

    from microgpt_jax.io import check_params, load_params
    from microgpt_jax.models import init_params

    dtype = jnp.float64 if tc.x64 else jnp.float32
    if args.init is None:
        return init_params(jax.random.key(tc.seed), config, tc.init_std, tc.init_zero_out, dtype)
    params, meta = load_params(args.init)
    if "vocab" in meta and meta["vocab"] != vocab:
        raise UserError(
            f"{args.init}: its vocabulary {meta['vocab']!r} differs from the data's {vocab!r}: "
            "train on the same corpus or start fresh"
        )
    check_params(params, config, source=str(args.init))
    return {k: jnp.asarray(params[k], dtype) for k in config_param_order(config)}


def config_param_order(config: GPTConfig) -> list[str]:
    """The state_dict names in the original's order."""
    from microgpt_jax.models import param_shapes

    return list(param_shapes(config))


def cmd_train(args: argparse.Namespace) -> int:
    """``microgpt-jax train``: train, evaluate on held-out docs, save, and print samples."""
    from microgpt_jax import checkpoint

    if args.resume:  # the run's saved flags; flags given beside --resume must agree with them
        explicit = checkpoint.explicit_dests(build_parser(), args.argv) if getattr(args, "argv", None) else set()
        args = checkpoint.resume_args(args, explicit)
    enable_x64(args.x64)
    if getattr(args, "own_process", False) and args.devices:
        from microgpt_jax.train import set_cpu_devices

        set_cpu_devices(args.devices)  # data parallel over CPU cores asked for (a no-op for GPU/TPU devices)

    from microgpt_jax.data import encode_docs
    from microgpt_jax.io import atomic_write_text
    from microgpt_jax.model import num_params
    from microgpt_jax.train import data_mesh, evaluate, train

    train_docs, val_docs, tokenizer, data_path = load_corpus(args)
    config = GPTConfig(
        vocab_size=tokenizer.vocab_size,
        n_layer=args.n_layer,
        n_embd=args.n_embd,
        n_head=args.n_head,
        block_size=args.block_size,
        model=args.model,
    )
    if config.model == "bigram":
        return train_bigram(args, config, train_docs, val_docs, tokenizer, data_path)
    if args.smoothing is not None:
        raise UserError(f"--smoothing is for --model bigram only, not {config.model}: drop it")
    out = prepare_out_dir(args.out)  # after the checks of data and config: a bad input leaves no directory
    early = args.init_variant == "early"
    tc = TrainConfig(
        optimizer=args.optimizer,
        lr=args.lr if args.lr is not None else DEFAULT_LR[args.optimizer],
        steps=args.steps,
        batch_size=args.batch_size,
        b1=args.b1,
        b2=args.b2,
        seed=args.seed,
        init_std=args.init_std if args.init_std is not None else (0.02 if early else 0.08),
        init_zero_out=early,
        x64=args.x64,
    )
    data_sha256 = checkpoint.data_fingerprint(data_path)
    if args.resume:
        ckpt = checkpoint.resume_state(out, config, tc, tokenizer.uchars, data_sha256)
        params, opt_state, start = ckpt.params, ckpt.opt_state, ckpt.step
        print(f"resuming {out} at step {start} of {tc.steps}")
    else:
        checkpoint.check_fresh_out(out)
        params, opt_state, start = initial_params(args, config, tc, tokenizer.uchars), None, 0
    guard = checkpoint.RunGuard(out, config, tc, tokenizer.uchars, args.ckpt_every, data_sha256, start)
    print(f"num docs: {len(train_docs) + len(val_docs)} ({len(train_docs)} train, {len(val_docs)} held out)")
    print(f"vocab size: {tokenizer.vocab_size}")
    print(f"num params: {num_params(params)}")
    run_info = {
        "model": config.to_dict(),
        "train": tc.to_dict(),
        "data": {
            "path": str(data_path),
            "shuffle_seed": None if args.no_shuffle else args.shuffle_seed,
            "val_size": args.val_size,
            "vocab": tokenizer.uchars,
        },
        "init": args.init,
        "args": checkpoint.run_args(args, data_path),
    }
    atomic_write_text(out / "config.json", json.dumps(run_info, indent=2) + "\n")

    train_tokens, train_n = encode_docs(train_docs, tokenizer, config.block_size)
    val_tokens, val_n = encode_docs(val_docs, tokenizer, config.block_size)
    metrics = open(out / "metrics.jsonl", "a" if args.resume else "w", encoding="utf-8")
    t0 = last_print = time.perf_counter()
    first_chunk: tuple[int, float] | None = None

    def on_chunk(report) -> bool:
        nonlocal last_print, first_chunk
        losses, bad_step = guard.finite(report)  # a NaN/inf loss ends the metrics and the run there
        lines = [json.dumps({"step": report.start + i, "loss": float(x)}) for i, x in enumerate(losses)]
        due = args.eval_every and report.end % args.eval_every == 0 and report.end < tc.steps and len(val_n)
        if due and bad_step is None:
            val = evaluate(report.params, val_tokens, val_n, config)
            lines.append(json.dumps({"step": report.end, "val_loss": val}))
            print(f"step {report.end:4d} / {tc.steps:4d} | val_loss {val:.4f}")
        metrics.write("".join(line + "\n" for line in lines))
        metrics.flush()
        if bad_step is not None:
            raise guard.fail(bad_step, report.losses[bad_step - report.start])
        now = time.perf_counter()
        if first_chunk is None:  # the first call compiles: rates are timed from its end
            first_chunk = (report.end, now)
            took = f"{now - t0:.1f} s, compile included"
            print(f"step {report.end:4d} / {tc.steps:4d} | loss {report.losses[-1]:.4f} | {took}")
        elif now - last_print >= 1.0 or report.end == tc.steps:
            last_print = now
            rate = (report.end - first_chunk[0]) / (now - first_chunk[1])
            print(f"step {report.end:4d} / {tc.steps:4d} | loss {report.losses[-1]:.4f} | {rate:,.0f} steps/s")
        return guard.after_chunk(report)  # checkpoint if due or signalled; True stops after a signal

    boundaries = tuple(range(args.eval_every, tc.steps, args.eval_every)) if args.eval_every else ()
    with metrics, guard.signals():  # SIGINT/SIGTERM: checkpoint at the end of the chunk, then stop
        params, _, _ = train(
            params, train_tokens, train_n, config, tc, opt_state=opt_state, start_step=start,
            boundaries=boundaries + guard.boundaries(), on_chunk=on_chunk,
            mesh=data_mesh(getattr(args, "devices", None), tc.batch_size),
        )  # fmt: skip
        if guard.stopped_at is not None:
            print(guard.stop_message())
            return 128 + guard.signum
        if len(val_n):
            val = evaluate(params, val_tokens, val_n, config)
            metrics.write(json.dumps({"step": tc.steps, "val_loss": val}) + "\n")
            print(f"val_loss: {val:.4f}")
    return save_and_sample(out, params, config, tokenizer, args)


def save_and_sample(out: Path, params: dict, config: GPTConfig, tokenizer: Any, args: argparse.Namespace) -> int:
    """The end of every train run: save params.safetensors and print samples from --seed."""
    import jax

    from microgpt_jax.io import save_params
    from microgpt_jax.sample import sample

    save_params(out / "params.safetensors", params, config, tokenizer.uchars)
    print(f"--- inference (new, hallucinated names, temperature {args.temperature}) ---")
    key = jax.random.fold_in(jax.random.key(args.seed), 1)
    for i, name in enumerate(sample(params, config, tokenizer, key, args.num_samples, args.temperature)):
        print(f"sample {i + 1:2d}: {name}")
    print(f"wrote {out}/config.json, metrics.jsonl, params.safetensors")
    return 0


# flags with no meaning for a model built by counting: giving one is an error
BIGRAM_UNUSED = (
    "optimizer lr b1 b2 steps batch_size eval_every ckpt_every devices init init_std init_variant n_layer n_embd n_head"
).split()


def train_bigram(
    args: argparse.Namespace, config: GPTConfig, train_docs: list, val_docs: list, tokenizer: Any, data_path
) -> int:
    """``train --model bigram``: count the training pairs (no steps), evaluate, save and sample like any run."""

    from microgpt_jax import checkpoint
    from microgpt_jax.bigram import bigram_params, count_bigrams
    from microgpt_jax.data import encode_docs
    from microgpt_jax.io import atomic_write_text
    from microgpt_jax.model import num_params
    from microgpt_jax.train import evaluate

    explicit = checkpoint.explicit_dests(build_parser(), args.argv) if getattr(args, "argv", None) else set()
    given = [name for name in BIGRAM_UNUSED if name in explicit]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise UserError(
            f"--model bigram is built by counting, with no gradient steps or layers: drop {flags} "
            "(it takes --smoothing, --block-size, the data flags, --seed and the sampling flags)"
        )
    out = prepare_out_dir(args.out)
    smoothing = 1.0 if args.smoothing is None else args.smoothing
    train_tokens, train_n = encode_docs(train_docs, tokenizer, config.block_size)
    val_tokens, val_n = encode_docs(val_docs, tokenizer, config.block_size)
    params = bigram_params(count_bigrams(train_tokens, train_n, config.vocab_size), smoothing)
    print(f"num docs: {len(train_docs) + len(val_docs)} ({len(train_docs)} train, {len(val_docs)} held out)")
    print(f"vocab size: {tokenizer.vocab_size}")
    print(f"num params: {num_params(params)} (counted, add-{smoothing:g} smoothed)")
    run_info = {
        "model": config.to_dict(),
        "train": {"method": "count", "smoothing": smoothing, "seed": args.seed, "x64": args.x64},
        "data": {
            "path": str(data_path),
            "shuffle_seed": None if args.no_shuffle else args.shuffle_seed,
            "val_size": args.val_size,
            "vocab": tokenizer.uchars,
        },
        "init": None,
    }
    atomic_write_text(out / "config.json", json.dumps(run_info, indent=2) + "\n")
    lines = [{"step": 0, "loss": evaluate(params, train_tokens, train_n, config)}]
    if len(val_n):
        lines.append({"step": 0, "val_loss": evaluate(params, val_tokens, val_n, config)})
        print(f"val_loss: {lines[-1]['val_loss']:.4f}")
    atomic_write_text(out / "metrics.jsonl", "".join(json.dumps(line) + "\n" for line in lines))
    return save_and_sample(out, params, config, tokenizer, args)


def load_model(run: str | None, params_file: str | None) -> tuple[dict, GPTConfig, Any, bool]:
    """Params, config and tokenizer from a run directory or a self-describing parameter file."""
    from microgpt_jax.data import Tokenizer
    from microgpt_jax.io import check_params, load_params

    if run is not None:
        run_dir = Path(run)
        cfg_path = run_dir / "config.json"
        if not cfg_path.is_file():
            raise UserError(f"{run_dir} is not a run directory (no config.json): pass the --out of a train run")
        try:
            info = json.loads(cfg_path.read_text(encoding="utf-8"))
            config = GPTConfig.from_dict(info["model"])
            vocab = info["data"]["vocab"]
            x64 = bool(info["train"].get("x64", False))
        except (ValueError, KeyError, TypeError) as e:
            raise UserError(f"{cfg_path} is not a valid run config ({e}): re-run train") from None
        params_file = str(run_dir / "params.safetensors")
        from microgpt_jax.checkpoint import unfinished_run_hint

        unfinished_run_hint(run_dir)  # no params.safetensors yet, but a checkpoint: say how to go on
        params, _ = load_params(params_file)
    else:
        params, meta = load_params(params_file)
        if "config" not in meta or "vocab" not in meta:
            raise UserError(f"{params_file} carries no config and vocabulary: export it with microgpt-jax export")
        config, vocab = meta["config"], meta["vocab"]
        x64 = meta.get("dtype") == "float64"
    check_params(params, config, source=str(params_file))
    tokenizer = Tokenizer(vocab)
    if tokenizer.vocab_size != config.vocab_size:
        raise UserError(
            f"{params_file}: vocabulary of {len(vocab)} characters does not fit vocab_size {config.vocab_size}"
        )
    return params, config, tokenizer, x64


def cmd_sample(args: argparse.Namespace) -> int:
    """``microgpt-jax sample``: print new documents from a trained model."""
    params, config, tokenizer, x64 = load_model(args.run, args.params)
    enable_x64(x64)
    import jax
    import jax.numpy as jnp

    from microgpt_jax.sample import sample

    dtype = jnp.float64 if x64 else jnp.float32
    params = {k: jnp.asarray(v, dtype) for k, v in params.items()}
    key = jax.random.fold_in(jax.random.key(args.seed), 1)
    for i, name in enumerate(sample(params, config, tokenizer, key, args.num_samples, args.temperature)):
        print(f"sample {i + 1:2d}: {name}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """``microgpt-jax export``: write a run's (or a file's) parameters in a standard format, with the config
    and vocabulary inside, so ``sample --params FILE`` needs nothing else."""
    from microgpt_jax.io import FORMATS, save_params

    by_suffix = FORMATS.get(Path(args.out).suffix.lower())
    fmt = args.format or by_suffix
    if fmt is None:
        raise UserError(f"--out {args.out}: name it .safetensors, .npz or .json (the format goes by the suffix)")
    if by_suffix != fmt:
        raise UserError(f"--out {args.out} does not end in .{fmt} but --format is {fmt}: name the file *.{fmt}")
    params, config, tokenizer, _ = load_model(args.run, args.params)
    save_params(args.out, params, config, tokenizer.uchars)
    dtype = next(iter(params.values())).dtype
    print(f"wrote {args.out} ({fmt}: {len(params)} matrices of {dtype}, config and vocabulary)")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """``microgpt-jax sweep``: train a grid of runs, write results.csv/json and sweep.png, print the best."""
    enable_x64(args.x64)
    if getattr(args, "own_process", False):
        from microgpt_jax.train import set_cpu_devices

        set_cpu_devices(args.devices)  # members spread over every CPU core (a no-op for GPU/TPU devices)
    from microgpt_jax.sweep import run_cli

    return run_cli(args)


COMMANDS = {"train": cmd_train, "sample": cmd_sample, "export": cmd_export, "sweep": cmd_sweep}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, run the subcommand, turn UserError into one line and exit status 2.

    Run as the program (``argv`` None: the console script, ``python -m microgpt_jax``), it also owns the process's
    JAX setup: ``sweep``, and ``train --devices N``, first give the CPU backend a device per core (or N), see
    ``train.set_cpu_devices``. Called with an ``argv`` list (from Python, from tests) it leaves that to the caller.
    """
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # train --resume checks which flags were given
    args.own_process = argv is None
    try:
        return COMMANDS[args.command](args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
