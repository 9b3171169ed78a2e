"""The ``microgpt-jax`` command line's parser; ``cli/commands.py`` turns its flags into configs and calls the library.

Flags, their defaults and their help come from the config dataclasses (``config.py``). A flag the user did
not give is absent from the parsed namespace (argparse.SUPPRESS), so the configs' own defaults apply and
``train --resume`` knows exactly which flags were given. Every problem a user can fix is reported as one line,
``error: ...``, with exit status 2 and no traceback. JAX is imported only by the commands that need it.
"""

from __future__ import annotations

import argparse
import difflib
import math
import re
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from microgpt_jax.config import (
    COUNTS,
    DATA_FLAGS,
    GRADCHECK_FLAGS,
    GRADS,
    GUIDE_STEPS,
    GUIDE_TITLES,
    MODEL_FLAGS,
    MODELS,
    OPTIMIZERS,
    RUN_FLAGS,
    SAMPLE_FLAGS,
    SCHEDULES,
    SWEEP_GRID,
    TOKENIZERS,
    TRAIN_FLAGS,
    DataConfig,
    GPTConfig,
    GradCheckConfig,
    RunConfig,
    SampleConfig,
    TrainConfig,
    fields_help,
    flag_of,
)

PROG = "microgpt-jax"


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line and exit status 2, and no flag may be abbreviated."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(allow_abbrev=False, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}{self._suggestion(message)} (see {self.prog} --help)\n")

    def _suggestion(self, message: str) -> str:
        """For an unknown flag, the closest flag of this parser or its subcommands: "; did you mean --steps?"."""
        if not message.startswith("unrecognized arguments:"):
            return ""
        known = set(self._option_string_actions)
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    known |= set(sub._option_string_actions)
        guesses = [
            difflib.get_close_matches(word.split("=")[0], sorted(known), n=1)
            for word in message.split(":", 1)[1].split()
            if word.startswith("--")
        ]
        found = [g[0] for g in guesses if g]
        return f"; did you mean {' or '.join(found)}?" if found else ""


def version() -> str:
    """The installed package's version (pyproject.toml is its one home)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("microgpt-jax")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


class _Version(argparse.Action):
    """``--version``, looked up only when asked for (importlib.metadata would slow every other command)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> NoReturn:
        print(f"{parser.prog} {version()}")
        parser.exit(0)


def _number(kind: type, minimum: int | None = None) -> Callable[[str], Any]:
    """An argparse type: a finite int or float (and >= ``minimum`` when given), else a one-line error."""
    noun = "a whole number" if kind is int else "a finite number"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}")
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"must be {noun} >= {minimum}, got {text}")
        return value

    return parse


def _choice(names: Sequence[str]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in names:
            raise argparse.ArgumentTypeError(f"invalid choice {text!r}: use one of {', '.join(names)}")
        return text

    return parse


def _list_of(convert: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    """argparse type: a comma-separated list, each item checked by ``convert``."""

    def parse(text: str) -> list[Any]:
        items = [x.strip() for x in text.split(",")]
        if not all(items):
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
        return [convert(x) for x in items]

    return parse


# how each config field is read from the command line: its syntax only (a whole number, a finite number, one of
# the names); the ranges are the configs' own checks (config.py), one validator per config
_POSITIVE_INT = _number(int, 1)  # flags that are not config fields (--seeds, --chunk, ...)
_WHOLE = _number(int)
_REAL = _number(float)
FIELD_TYPES: dict[str, Callable[[str], Any]] = {
    **dict.fromkeys(
        (
            "n_layer",
            "n_embd",
            "n_head",
            "steps",
            "batch_size",
            "num_samples",
            "eval_every",
            "ckpt_every",
            "devices",
            "block_size",
            "val_size",
            "doc",
            "seed",
            "shuffle_seed",
            "warmup",
            "top_k",
        ),
        _WHOLE,
    ),
    **dict.fromkeys(
        (
            "lr",
            "eps",
            "temperature",
            "smoothing",
            "tol_numerical",
            "tol_autodiff",
            "b1",
            "b2",
            "init_std",
            "weight_decay",
            "dropout",
            "top_p",
        ),
        _REAL,
    ),
    "schedule": _choice(SCHEDULES),
    "optimizer": _choice(OPTIMIZERS),
    "model": _choice(MODELS),
    "grad": _choice(GRADS),
    "count": _choice(COUNTS),
    "tokenizer": _choice(TOKENIZERS),
    "path": str,
}


_ARGUMENT = re.compile(r"`([a-z][a-z0-9_]*)`")


def in_flags(message: str) -> str:
    """A library message as the command line says it: the library names its arguments in backticks
    (`val_size`), the command line names the flags that set them (--val-size)."""
    return _ARGUMENT.sub(lambda m: flag_of(m.group(1)), message)


def _add_fields(p: argparse._ActionsContainer, cls: type, names: Sequence[str], *, grid: bool = False) -> None:
    """One flag per config field in ``names``: type from FIELD_TYPES, help and shown default from config.py.
    With ``grid``, each flag takes a comma-separated list (a sweep's axis)."""
    for name, (default, text) in fields_help(cls).items():
        if name not in names:
            continue
        shown = "" if default is None else f" (default: {default})"
        if default is False:  # a switch
            p.add_argument(flag_of(name), dest=name, action="store_true", default=argparse.SUPPRESS, help=text)
            continue
        kind = FIELD_TYPES[name]
        p.add_argument(
            flag_of(name),
            dest=name,
            type=_list_of(kind) if grid else kind,
            default=argparse.SUPPRESS,
            help=text + (" (comma-separated list)" if grid else "") + shown,
            metavar=("PATH" if name == "path" else name.upper()) + (",..." if grid else ""),
        )


def _add_data(p: argparse.ArgumentParser) -> None:
    _add_fields(p, DataConfig, DATA_FLAGS)
    order = p.add_mutually_exclusive_group()
    _add_fields(order, DataConfig, ("shuffle_seed",))
    order.add_argument("--no-shuffle", action="store_true", default=argparse.SUPPRESS, help="keep the file's order")


def _step(text: str) -> int:
    """argparse type of --step: one of the guide's steps."""
    steps = ", ".join(map(str, GUIDE_STEPS))
    try:
        step = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid choice {text!r}: the guide's steps are {steps}") from None
    if step not in GUIDE_STEPS:
        raise argparse.ArgumentTypeError(f"invalid choice {text!r}: the guide's steps are {steps}")
    return step


def _add_step(p: argparse.ArgumentParser, text: str) -> None:
    p.add_argument("--step", type=_step, default=argparse.SUPPRESS, metavar="N", help=text)


def _add_cluster(p: argparse.ArgumentParser) -> None:
    """The flags that make this process one of a multi-process job (``distributed.initialize``)."""
    g = p.add_argument_group("multi-process job (every process runs the same command; process 0 writes and prints)")
    g.add_argument("--coordinator", metavar="HOST:PORT", default=argparse.SUPPRESS,
                   help="process 0's address, the same on every process")  # fmt: skip
    g.add_argument("--num-processes", type=_POSITIVE_INT, metavar="N", default=argparse.SUPPRESS,
                   help="how many processes the job has")  # fmt: skip
    g.add_argument("--process-id", type=_number(int, 0), metavar="I", default=argparse.SUPPRESS,
                   help="this process's index, 0..N-1 (0 writes the files)")  # fmt: skip
    g.add_argument("--distributed", action="store_true", default=argparse.SUPPRESS,
                   help="join the job the environment describes (SLURM, TPU pods, Open MPI, "
                   "$JAX_COORDINATOR_ADDRESS): jax.distributed.initialize() with no arguments; "
                   f"also ${ENV_DISTRIBUTED}=1")  # fmt: skip


CLUSTER_FLAGS = ("coordinator", "num_processes", "process_id", "distributed")
ENV_DISTRIBUTED = "MICROGPT_JAX_DISTRIBUTED"

STEPS_HELP = ", ".join(f"{n} {title}" for n, title in GUIDE_TITLES.items())


def _add_init_variant(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--init-variant",
        choices=("default", "early"),
        default=argparse.SUPPRESS,
        help="early: microgpt's earlier init, std 0.02 with attn_wo and mlp_fc2 zero (default: default)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of every subcommand."""
    parser = _Parser(prog=PROG, description="microgpt in JAX: train a tiny GPT on names, sample new ones.")
    parser.add_argument("--version", action=_Version, help="show the program's version and exit")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a model and write a run directory")
    where = t.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--out", default=argparse.SUPPRESS, help="run directory (config.json, metrics.jsonl, params.safetensors)"
    )
    where.add_argument(
        "--resume", metavar="DIR", default=argparse.SUPPRESS, help="continue the interrupted run in DIR as it was"
    )
    t.add_argument(
        "--overwrite",
        action="store_true",
        default=argparse.SUPPRESS,
        help="replace the run already in --out, once the new run is complete (never a directory of other files)",
    )
    _add_step(t, f"the guide's step N ({STEPS_HELP}): its model and recipe; flags given beside it override them")
    _add_data(t)
    _add_fields(t, GPTConfig, MODEL_FLAGS)
    _add_fields(t, TrainConfig, TRAIN_FLAGS)
    _add_init_variant(t)
    t.add_argument(
        "--init",
        metavar="RUN_OR_FILE",
        default=argparse.SUPPRESS,
        help="fine-tune: start from a trained run directory or a parameter file (.safetensors, .npz, .json), "
        "keeping its architecture and tokenizer",
    )
    _add_fields(t, RunConfig, RUN_FLAGS)
    _add_fields(t, SampleConfig, SAMPLE_FLAGS)
    _add_cluster(t)

    s = sub.add_parser("sample", help="sample documents from a trained run or a parameter file")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="a run directory written by train")
    src.add_argument("--params", help="a parameter file carrying its config and vocabulary")
    _add_fields(s, SampleConfig, (*SAMPLE_FLAGS, "seed"))
    s.add_argument("--prefix", default="", metavar="TEXT", help="start every sample with TEXT and continue it")
    s.add_argument("--json", action="store_true", help="one JSON object per sample: text, in_training_data")

    r = sub.add_parser("score", help="score texts token by token: p and -log p of each token, the mean NLL")
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="a run directory written by train")
    src.add_argument("--params", help="a parameter file carrying its config and vocabulary")
    r.add_argument("texts", nargs="+", metavar="TEXT", help="a name (or sentence) to score")
    r.add_argument("--json", action="store_true", help='one JSON object per text: {"text", "nll", "tokens"}')

    p = sub.add_parser("report", help="one self-contained HTML page showing runs (or sweeps): curves, weights, ...")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories (train --out) or sweep directories")
    p.add_argument("--out", help="the HTML file to write (default: RUN.html beside RUN, or report.html for several)")
    p.add_argument("--probe", metavar="TEXT", help="the text to score token by token (default: a held-out one)")
    p.add_argument("--overwrite", action="store_true", help="replace --out even if report did not write it")

    e = sub.add_parser("export", help="write a run's parameters as safetensors, npz or microgpt-style json")
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="a run directory written by train")
    src.add_argument("--params", help="a parameter file carrying its config and vocabulary")
    e.add_argument("--format", choices=("safetensors", "npz", "json"), help="default: from the suffix of --out")
    e.add_argument("--out", required=True, help="the file to write (.safetensors, .npz or .json)")
    e.add_argument("--overwrite", action="store_true", help="replace --out if it exists")

    c = sub.add_parser(
        "gradcheck", help="Step 1's gradient check: the MLP's hand-written gradient vs numerical and vs jax.grad"
    )
    _add_step(c, "the guide's step whose MLP and init to check: 1 or 2 (default: 1)")
    _add_fields(c, GradCheckConfig, GRADCHECK_FLAGS)
    _add_fields(c, TrainConfig, ("seed",))
    _add_data(c)

    w = sub.add_parser("sweep", help="train a grid of hyperparameters as vmapped programs, sharded over devices")
    w.add_argument("--out", required=True, help="sweep directory (results.csv, results.json, losses.npz, sweep.png)")
    w.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the sweep results already in --out, once the new ones are complete (never other files)",
    )
    _add_data(w)
    _add_init_variant(w)
    _add_fields(w, TrainConfig, ("x64",))
    g = w.add_argument_group("grid (comma-separated lists; the sweep trains their cross product)")
    seeds = g.add_mutually_exclusive_group()
    _add_fields(seeds, TrainConfig, ("seed",), grid=True)
    seeds.add_argument("--seeds", type=_POSITIVE_INT, default=argparse.SUPPRESS, help="N: seeds 0..N-1")
    _add_fields(g, TrainConfig, [k for k in SWEEP_GRID if k != "seed"], grid=True)
    _add_fields(g, GPTConfig, SWEEP_GRID, grid=True)
    w.add_argument(
        "--devices", type=_POSITIVE_INT, help="shard members over N devices (default all; a CPU has one per core)"
    )
    w.add_argument("--chunk", type=_POSITIVE_INT, default=100, help="steps per compiled call (default: 100)")
    w.add_argument("--save-params", action="store_true", help="write members/<id>/params.safetensors")
    w.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_cluster(w)
    return parser
