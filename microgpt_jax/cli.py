"""The ``microgpt-jax`` command line: train and sample.

Every problem a user can fix is reported as one line, ``error: ...``, with exit status 2 and no traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from microgpt_jax.config import DEFAULT_LR, OPTIMIZERS, GPTConfig, TrainConfig
from microgpt_jax.errors import UserError


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _nonneg_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _nonneg_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


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
    p.add_argument("--lr", type=_positive_float, default=None, help="peak lr (default adam 0.01, sgd 1.0)")
    p.add_argument("--b1", type=_nonneg_float, default=0.85, help="Adam beta1 (default 0.85)")
    p.add_argument("--b2", type=_nonneg_float, default=0.99, help="Adam beta2 (default 0.99)")
    p.add_argument("--steps", type=_positive_int, default=1000)
    p.add_argument("--batch-size", type=_positive_int, default=1)
    p.add_argument("--seed", type=int, default=42, help="PRNG seed for init and samples (default 42)")
    p.add_argument("--x64", action="store_true", help="float64 everywhere (the original's Python floats)")


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of every subcommand."""
    parser = _Parser(prog="microgpt-jax", description="microgpt in JAX: train a tiny GPT on names, sample new ones.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a model and write a run directory")
    t.add_argument("--out", required=True, help="run directory (config.json, metrics.jsonl, params.safetensors)")
    add_data_args(t)
    add_model_args(t)
    add_optim_args(t)
    t.add_argument("--eval-every", type=_positive_int, default=None, help="held-out eval every N steps")
    t.add_argument("--num-samples", type=_positive_int, default=20)
    t.add_argument("--temperature", type=_positive_float, default=0.5)

    s = sub.add_parser("sample", help="sample names from a trained run or a parameter file")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="a run directory written by train")
    src.add_argument("--params", help="a parameter file carrying its config and vocabulary")
    s.add_argument("--num-samples", type=_positive_int, default=20)
    s.add_argument("--temperature", type=_positive_float, default=0.5)
    s.add_argument("--seed", type=int, default=42)
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
    from microgpt_jax.model import init_params

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
    from microgpt_jax.model import param_shapes

    return list(param_shapes(config))


def cmd_train(args: argparse.Namespace) -> int:
    """``microgpt-jax train``: train, evaluate on held-out docs, save, and print samples."""
    enable_x64(args.x64)
    import jax

    from microgpt_jax.data import encode_docs
    from microgpt_jax.io import atomic_write_text, save_params
    from microgpt_jax.model import num_params
    from microgpt_jax.sample import sample
    from microgpt_jax.train import evaluate, train

    out = prepare_out_dir(args.out)
    train_docs, val_docs, tokenizer, data_path = load_corpus(args)
    config = GPTConfig(
        vocab_size=tokenizer.vocab_size,
        n_layer=args.n_layer,
        n_embd=args.n_embd,
        n_head=args.n_head,
        block_size=args.block_size,
    )
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
    params = initial_params(args, config, tc, tokenizer.uchars)
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
    }
    atomic_write_text(out / "config.json", json.dumps(run_info, indent=2) + "\n")

    train_tokens, train_n = encode_docs(train_docs, tokenizer, config.block_size)
    val_tokens, val_n = encode_docs(val_docs, tokenizer, config.block_size)
    metrics = open(out / "metrics.jsonl", "w", encoding="utf-8")
    t0 = last_print = time.perf_counter()

    def on_chunk(report) -> None:
        nonlocal last_print
        lines = [json.dumps({"step": report.start + i, "loss": float(x)}) for i, x in enumerate(report.losses)]
        if args.eval_every and report.end % args.eval_every == 0 and report.end < tc.steps and len(val_n):
            val = evaluate(report.params, val_tokens, val_n, config)
            lines.append(json.dumps({"step": report.end, "val_loss": val}))
            print(f"step {report.end:4d} / {tc.steps:4d} | val_loss {val:.4f}")
        metrics.write("".join(line + "\n" for line in lines))
        metrics.flush()
        now = time.perf_counter()
        if now - last_print >= 1.0 or report.end == tc.steps:
            last_print = now
            rate = report.end / (now - t0)
            print(f"step {report.end:4d} / {tc.steps:4d} | loss {report.losses[-1]:.4f} | {rate:,.0f} steps/s")

    boundaries = tuple(range(args.eval_every, tc.steps, args.eval_every)) if args.eval_every else ()
    with metrics:
        params, _, _ = train(params, train_tokens, train_n, config, tc, boundaries=boundaries, on_chunk=on_chunk)
        if len(val_n):
            val = evaluate(params, val_tokens, val_n, config)
            metrics.write(json.dumps({"step": tc.steps, "val_loss": val}) + "\n")
            print(f"val_loss: {val:.4f}")
    save_params(out / "params.safetensors", params, config, tokenizer.uchars)
    print(f"--- inference (new, hallucinated names, temperature {args.temperature}) ---")
    key = jax.random.fold_in(jax.random.key(tc.seed), 1)
    for i, name in enumerate(sample(params, config, tokenizer, key, args.num_samples, args.temperature)):
        print(f"sample {i + 1:2d}: {name}")
    print(f"wrote {out}/config.json, metrics.jsonl, params.safetensors")
    return 0


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


COMMANDS = {"train": cmd_train, "sample": cmd_sample}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, run the subcommand, turn UserError into one line and exit status 2."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
