"""The ``microgpt-jax`` command line: it parses flags into configs and calls the library (``run``, ``sweep``).

Flags, their defaults and their help come from the config dataclasses (``config.py``). A flag the user did
not give is absent from the parsed namespace (argparse.SUPPRESS), so the configs' own defaults apply and
``train --resume`` knows exactly which flags were given. Every problem a user can fix is reported as one line,
``error: ...``, with exit status 2 and no traceback. JAX is imported only by the commands that need it.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from microgpt_jax.config import (
    COUNTS,
    GRADS,
    GUIDE_STEPS,
    GUIDE_TITLES,
    MODELS,
    OPTIMIZERS,
    SCHEDULES,
    TOKENIZERS,
    DataConfig,
    GPTConfig,
    GradCheckConfig,
    RunConfig,
    SampleConfig,
    TrainConfig,
    fields_help,
    step_configs,
)
from microgpt_jax.errors import UserError

PROG = "microgpt-jax"


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line and exit status 2, and no flag may be abbreviated."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def version() -> str:
    """The installed package's version (pyproject.toml is its one home)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("microgpt-jax")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


class _Version(argparse.Action):
    """``--version``, looked up only when asked for (importlib.metadata costs every other command ~30 ms)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> NoReturn:
        print(f"{parser.prog} {version()}")
        parser.exit(0)


def _number(
    kind: type, minimum: float, inclusive: bool, below: float | None = None, at_most: float | None = None
) -> Callable[[str], Any]:
    """An argparse type: a finite int or float >= (or >) ``minimum`` (and < ``below``, or <= ``at_most``), else
    a one-line error."""
    bound = f"{'>=' if inclusive else '>'} {minimum}" + (f" and < {below}" if below is not None else "")
    bound += f" and <= {at_most}" if at_most is not None else ""
    noun, must = ("a whole number", bound) if kind is int else ("a number", f"a finite number {bound}")

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        ok = math.isfinite(value) and (value >= minimum if inclusive else value > minimum)
        ok = ok and (at_most is None or value <= at_most)
        if not ok or (below is not None and value >= below):
            raise argparse.ArgumentTypeError(f"must be {must}, got {text}")
        return value

    return parse


def _choice(names: Sequence[str]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in names:
            raise argparse.ArgumentTypeError(f"invalid choice {text!r}: use one of {', '.join(names)}")
        return text

    return parse


def _list_of(convert: Callable[[str], Any]) -> Callable[[str], list]:
    """argparse type: a comma-separated list, each item checked by ``convert``."""

    def parse(text: str) -> list:
        items = [x.strip() for x in text.split(",")]
        if not all(items):
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
        return [convert(x) for x in items]

    return parse


# how each config field is read from the command line (the fields' defaults and help are in config.py)
_POSITIVE_INT = _number(int, 1, inclusive=True)
FIELD_TYPES: dict[str, Callable[[str], Any]] = {
    **dict.fromkeys(
        ("n_layer", "n_embd", "n_head", "steps", "batch_size", "num_samples", "eval_every", "ckpt_every", "devices"),
        _POSITIVE_INT,
    ),
    "block_size": _number(int, 2, inclusive=True),
    **dict.fromkeys(("val_size", "doc"), _number(int, 0, inclusive=True)),
    "seed": _number(int, 0, inclusive=True),  # the upper bound is the config's (one key per seed)
    "shuffle_seed": _number(int, -(2**63), inclusive=True),
    **dict.fromkeys(
        ("lr", "eps", "temperature", "smoothing", "tol_numerical", "tol_autodiff"), _number(float, 0, inclusive=False)
    ),
    **dict.fromkeys(("b1", "b2"), _number(float, 0, inclusive=True, below=1)),
    **dict.fromkeys(("init_std", "weight_decay"), _number(float, 0, inclusive=True)),
    "dropout": _number(float, 0, inclusive=True, below=1),
    "warmup": _number(int, 0, inclusive=True),
    "schedule": _choice(SCHEDULES),
    "top_k": _number(int, 0, inclusive=True),
    "top_p": _number(float, 0, inclusive=False, at_most=1),
    "optimizer": _choice(OPTIMIZERS),
    "model": _choice(MODELS),
    "grad": _choice(GRADS),
    "count": _choice(COUNTS),
    "tokenizer": _choice(TOKENIZERS),
    "path": str,
}
FLAG = {"path": "--data"}  # a field whose flag is not its name with dashes


def flag_of(name: str) -> str:
    """The command-line flag of a config field."""
    return FLAG.get(name, "--" + name.replace("_", "-"))


def _add_fields(p: argparse.ArgumentParser, cls: type, names: Sequence[str], *, grid: bool = False) -> None:
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
            metavar=("PATH" if name == "path" else name.upper()) + ("S" if grid else ""),
        )


MODEL_FLAGS = ("n_layer", "n_embd", "n_head", "block_size", "model")
TRAIN_FLAGS = ("optimizer", "lr", "steps", "batch_size", "b1", "b2", "eps", "weight_decay", "schedule", "warmup",
               "dropout", "seed", "init_std", "x64", "smoothing", "grad", "count")  # fmt: skip
RUN_FLAGS = ("eval_every", "ckpt_every", "devices")
GRADCHECK_FLAGS = ("doc", "eps", "tol_numerical", "tol_autodiff")
DATA_FLAGS = ("path", "val_size", "tokenizer", "lowercase")
SAMPLE_FLAGS = ("num_samples", "temperature", "top_k", "top_p")
SWEEP_GRID = ("optimizer", "lr", "seed", "init_std", "b1", "b2", "batch_size", "steps", "weight_decay", "schedule",
              "warmup", "dropout", "n_layer", "n_embd", "n_head", "block_size")  # fmt: skip
# flags that may differ on --resume: they change neither a parameter nor metrics.jsonl
RESUME_MAY_CHANGE = ("ckpt_every", "num_samples", "temperature", "top_k", "top_p")


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
    g.add_argument("--process-id", type=_number(int, 0, inclusive=True), metavar="I", default=argparse.SUPPRESS,
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


def _pick(given: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    return {k: given[k] for k in names if k in given}


def data_config(given: dict[str, Any]) -> DataConfig:
    """The DataConfig of the data flags given."""
    fields = _pick(given, ("path", "val_size", "shuffle_seed", "tokenizer", "lowercase"))
    if given.get("no_shuffle"):
        fields["shuffle_seed"] = None
    return DataConfig(**fields)


def _early(given: dict[str, Any]) -> dict[str, Any]:
    return {"init_zero_out": True} if given.get("init_variant") == "early" else {}


def _refuse_unused(given: dict[str, Any], config: GPTConfig, train: TrainConfig) -> None:
    """A flag the chosen model does not use is an error, not silently ignored (a field a --step sets is not)."""
    from microgpt_jax.models import REGISTRY, unused_fields

    model = config.model
    unused = unused_fields(config, train) | ({"init_variant"} if REGISTRY[model].counted else set())
    bad = [flag_of(k) for k in given if k in unused]
    if bad and REGISTRY[model].counted:
        what = "one document per step" if train.count == "online" else "all at once"
        hint = " (or count one document per step: --count online)" if "--steps" in bad else ""
        raise UserError(
            f"--model {model} is built by counting ({what}), with no gradient steps or layers: "
            f"drop {', '.join(bad)}{hint}"
        )
    if bad:
        raise UserError(f"--model {model} does not use {', '.join(bad)}: drop {'it' if len(bad) == 1 else 'them'}")


def train_configs(
    given: dict[str, Any],
) -> tuple[GPTConfig | None, TrainConfig, DataConfig, RunConfig, SampleConfig]:
    """The configs of ``train``'s flags: the guide's ``--step`` (if given) with the other flags on top; a flag the
    model does not use is a UserError."""
    model, train, sample = step_configs(
        given.get("step"),
        model=_pick(given, MODEL_FLAGS),
        train={**_pick(given, TRAIN_FLAGS), **_early(given)},
        sample=_pick(given, SAMPLE_FLAGS),
    )
    _refuse_unused(given, model, train)
    if "init" in given and "step" not in given and not _pick(given, MODEL_FLAGS):
        model = None  # fine-tuning: the init model's architecture
    return model, train, data_config(given), RunConfig(**_pick(given, RUN_FLAGS)), sample


def _own_process_setup(given: dict[str, Any], own_process: bool, command: str) -> bool:
    """Process-wide JAX settings, only when running as the program, before JAX starts: the persistent
    compilation cache (``compile_cache``: a second run with the same shapes skips XLA's compiles;
    ``MICROGPT_JAX_CACHE=off`` opts out), XLA's deterministic GPU ops (``xla_options.deterministic_gpu_flags``),
    a device per core for sweep (and for train --devices N), and
    joining a multi-process job (``--coordinator``/``--num-processes``/``--process-id``, or ``--distributed``).
    Returns whether it joined one. (Called from Python, ``main(argv)`` leaves all of this to the caller.)"""
    if not own_process:
        if any(k in given for k in CLUSTER_FLAGS):
            raise UserError("--coordinator/--distributed join a job only when run as the program: call "
                            "microgpt_jax.distributed.initialize(...) first from Python")  # fmt: skip
        return False
    import os

    from microgpt_jax import distributed
    from microgpt_jax.compile_cache import enable_compile_cache
    from microgpt_jax.devices import set_cpu_devices
    from microgpt_jax.xla_options import set_deterministic_gpu

    enable_compile_cache()
    set_deterministic_gpu()
    processes = given.get("num_processes", 1)
    wanted = given.get("devices")
    if wanted and processes > 1:  # --devices counts the job's devices: each process's CPU gets its share
        wanted = -(-wanted // processes)  # (too few to reach every process: refused once JAX is up)
    if command == "sweep" or wanted:
        set_cpu_devices(wanted)  # a no-op for GPU/TPU devices
    auto = bool(given.get("distributed")) or os.environ.get(ENV_DISTRIBUTED, "") not in ("", "0")
    return distributed.initialize(
        given.get("coordinator"), given.get("num_processes"), given.get("process_id"), auto=auto
    )


def cmd_train(given: dict[str, Any]) -> int:
    """``microgpt-jax train``: train (or resume) a run directory, evaluate, save and print samples."""
    from microgpt_jax import run

    if "resume" in given:
        return _resume(given)
    model, train, data, run_config, sample = train_configs(given)
    result = run.train_run(
        given["out"],
        model,
        train,
        data,
        run_config,
        sample,
        init=given.get("init"),
        step=given.get("step"),
        overwrite=given.get("overwrite", False),
    )
    return 0 if result.signal is None else 128 + result.signal


def _resume(given: dict[str, Any]) -> int:
    """``train --resume DIR``: the run's saved configs; flags given beside it must agree with them."""
    import dataclasses

    from microgpt_jax import run

    spec = run.read_spec(given["resume"])  # process 0's, in a multi-process job
    saved = {**spec.model.to_dict(), **spec.train.to_dict(), **spec.data.to_dict(), **spec.run.to_dict()}
    saved.update(
        {k: getattr(spec.sample, k) for k in SAMPLE_FLAGS},
        init=None if spec.init is None else spec.init.given,
        step=spec.step,
    )
    saved["init_variant"] = "early" if spec.train.init_zero_out else "default"
    if "overwrite" in given:
        raise UserError("--overwrite starts a new run: use it with --out, not --resume")
    wanted = {k: v for k, v in given.items() if k not in ("resume", "no_shuffle")}
    if "no_shuffle" in given:
        wanted["shuffle_seed"] = None
    for k in ("path", "init"):
        if wanted.get(k) is not None:
            wanted[k] = str(Path(wanted[k]).resolve())
    for name, value in sorted(wanted.items()):
        if name not in RESUME_MAY_CHANGE and value != saved.get(name):
            was = "unset" if saved.get(name) is None else saved[name]
            raise UserError(
                f"{flag_of(name)} {value} conflicts with the run's saved {flag_of(name)} {was}: --resume continues "
                f"the run as it was started; drop {flag_of(name)}"
            )
    result = run.resume_run(
        given["resume"],
        dataclasses.replace(spec.run, **_pick(given, ("ckpt_every",))),
        dataclasses.replace(spec.sample, **_pick(given, SAMPLE_FLAGS)),
    )
    return 0 if result.signal is None else 128 + result.signal


def _load(given: dict[str, Any]) -> Any:
    from microgpt_jax import run

    return run.load_run(given["run"]) if given.get("run") is not None else run.load_model_file(given["params"])


def cmd_sample(given: dict[str, Any]) -> int:
    """``microgpt-jax sample``: print documents sampled from a trained model, each marked new or seen in the
    run's corpus (``--json``: one object per sample)."""
    import json

    from microgpt_jax.report.load import in_corpus, read_corpus
    from microgpt_jax.run import read_spec, sample_model

    model = _load(given)
    names = sample_model(model, SampleConfig(**_pick(given, (*SAMPLE_FLAGS, "seed"))), prefix=given["prefix"])
    corpus, why = read_corpus(read_spec(given["run"])) if given.get("run") is not None else (None, None)
    if why and not given["json"]:
        print(f"note: {why}: samples are not marked new or seen", file=sys.stderr)
    marks = in_corpus(names, corpus)
    words = {"new": "new", "held-out": "new to the model, in the held-out data", "train": "in training data"}
    for i, (name, mark) in enumerate(zip(names, marks, strict=True)):
        if given["json"]:
            print(json.dumps({"text": name, "in_training_data": None if mark is None else mark == "train"}))
        else:
            print(f"sample {i + 1:2d}: {name}" + (f"  ({words[mark]})" if mark else ""))
    return 0


def cmd_score(given: dict[str, Any]) -> int:
    """``microgpt-jax score``: each text's per-token p and -log p and its mean NLL (``--json``: one object per
    text)."""
    import json

    from microgpt_jax.devices import precision
    from microgpt_jax.report.score import format_score, score

    model = _load(given)
    with precision(model.x64):
        results = score(model.params, model.config, model.tokenizer, given["texts"])
    for result in results:
        print(json.dumps(result) if given["json"] else "\n".join(format_score(result)))
    return 0


def cmd_report(given: dict[str, Any]) -> int:
    """``microgpt-jax report``: write the HTML page of runs or sweeps and say where it is."""
    import time

    from microgpt_jax.report import report

    t0 = time.perf_counter()
    runs = given["runs"]
    # beside the run, not in it: a run directory holds only what train writes
    out = given.get("out") or (str(Path(runs[0]).resolve()) + ".html" if len(runs) == 1 else "report.html")
    inside = [r for r in runs if Path(out).resolve().parent == Path(r).resolve() and (Path(r) / "config.json").exists()]
    if inside:
        raise UserError(
            f"--out {out} is inside the run directory {inside[0]}, which holds only what train writes (sample and "
            f"export would refuse it): write the page beside it, e.g. {inside[0]}.html"
        )
    path = report(*runs, probe=given.get("probe")).save(out)
    size = path.stat().st_size
    print(f"wrote {path} ({size / 1e6:.2f} MB in {time.perf_counter() - t0:.1f} s)")
    return 0


def cmd_export(given: dict[str, Any]) -> int:
    """``microgpt-jax export``: write a run's (or a file's) parameters in a standard format, with the config
    and vocabulary inside, so ``sample --params FILE`` needs nothing else."""
    from microgpt_jax.io import FORMATS, save_params

    by_suffix = FORMATS.get(Path(given["out"]).suffix.lower())
    fmt = given.get("format") or by_suffix
    if fmt is None:
        raise UserError(f"--out {given['out']}: name it .safetensors, .npz or .json (the format goes by the suffix)")
    if by_suffix != fmt:
        raise UserError(f"--out {given['out']} does not end in .{fmt} but --format is {fmt}: name the file *.{fmt}")
    if Path(given["out"]).exists() and not given["overwrite"]:
        raise UserError(f"--out {given['out']} exists: pick another name, or pass --overwrite to replace it")
    model = _load(given)
    save_params(given["out"], model.params, model.config, model.tokenizer)
    dtype = next(iter(model.params.values())).dtype
    print(f"wrote {given['out']} ({fmt}: {len(model.params)} matrices of {dtype}, config and vocabulary)")
    return 0


def cmd_gradcheck(given: dict[str, Any]) -> int:
    """``microgpt-jax gradcheck``: Step 1's gradient check on one training document; exit status 1 when a
    comparison is out of tolerance."""
    from microgpt_jax.gradcheck import check_document

    model, train, _ = step_configs(given.get("step", 1), train=_pick(given, ("seed",)))
    report = check_document(data_config(given), model, train, GradCheckConfig(**_pick(given, GRADCHECK_FLAGS)))
    for line in report.lines():
        print(line)
    if not report.ok:
        print("error: the gradient check is out of tolerance", file=sys.stderr)
    return 0 if report.ok else 1


def cmd_sweep(given: dict[str, Any]) -> int:
    """``microgpt-jax sweep``: train a grid of runs, write results.csv/json and sweep.png, print the best."""
    from microgpt_jax import sweep
    from microgpt_jax.data import load_corpus
    from microgpt_jax.devices import precision

    data = data_config(given)
    base_train = TrainConfig(**_pick(given, ("x64",)), **_early(given))
    grid = {k: given[k] for k in SWEEP_GRID if k in given}
    if "seeds" in given:
        grid["seed"] = list(range(given["seeds"]))
    grid.setdefault("lr", [None])  # each optimizer's default lr
    sweep.grid_members(GPTConfig(), base_train, grid)  # a grid point that cannot train: before the corpus is read
    with precision(base_train.x64):
        corpus = load_corpus(data)
        members = sweep.grid_members(GPTConfig(vocab_size=corpus.tokenizer.vocab_size), base_train, grid)
        sweep.sweep_run(
            given["out"], members, corpus, data, devices_requested=given.get("devices"), chunk=given["chunk"],
            save_member_params=given["save_params"], progress=not given["no_progress"],
        )  # fmt: skip
    return 0


COMMANDS = {
    "train": cmd_train, "sample": cmd_sample, "export": cmd_export, "gradcheck": cmd_gradcheck, "sweep": cmd_sweep,
    "score": cmd_score, "report": cmd_report,
}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, run the subcommand, turn UserError into one line and exit status 2.

    Run as the program (``argv`` None: the console script, ``python -m microgpt_jax``) it also owns the
    process's JAX setup: it turns on the persistent compilation cache (``compile_cache.enable_compile_cache``;
    ``MICROGPT_JAX_CACHE`` picks the directory or ``off``) and XLA's deterministic GPU ops
    (``xla_options.set_deterministic_gpu``); ``sweep``, and ``train --devices N``, first give the CPU backend a
    device per core (or N, shared out over a job's processes), see ``devices.set_cpu_devices``;
    ``train``/``sweep`` with ``--coordinator HOST:PORT --num-processes N --process-id I`` (or ``--distributed``)
    join a multi-process job, and leave it at exit. Called with an ``argv`` list (from Python, from tests) it
    leaves all of that to the caller.
    """
    args = build_parser().parse_args(argv)
    given = {k: v for k, v in vars(args).items() if k != "command"}
    joined = False
    if argv is None and hasattr(sys.stdout, "reconfigure"):  # a terminal that cannot show a character gets \x..
        sys.stdout.reconfigure(errors="backslashreplace")
    # as the program, every warning of the process is one line (threads that compile ahead included, to the end);
    # called with an argv (tests, Python), only for the call
    with contextlib.nullcontext() if argv is None else warnings.catch_warnings():
        warnings.showwarning = _one_line_warning
        try:
            joined = _own_process_setup(given, argv is None, args.command)
            command = {k: v for k, v in given.items() if k not in CLUSTER_FLAGS}
            status = COMMANDS[args.command](command)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            status = 2
        except KeyboardInterrupt:
            print("interrupted (Ctrl-C): nothing half-written is left; a run stopped in training can be resumed "
                  "if it wrote a checkpoint", file=sys.stderr)  # fmt: skip
            status = 130
    if joined:
        _leave_job(status)
    if argv is None:
        _exit_now(status)
    return status


FULL_EXIT_ENV = "MICROGPT_JAX_FULL_EXIT"  # set (not "0"): the program ends with Python's own exit
_WATCHERS = ("cProfile", "profile", "coverage", "pdb", "pyinstrument", "line_profiler")


def _exit_now(status: int) -> None:
    """End the program without the interpreter's teardown of JAX's modules and runtime (~0.25 s here, about a
    sixth of a warm ``train``), where nothing can be lost by it: no thread but the main one is still running
    (the files a command writes are closed and renamed into place before it returns), the exit handlers run and
    the standard streams are flushed. It returns, and Python exits as usual, without JAX loaded, under a
    profiler, debugger or coverage tool (they write their results at exit), with $MICROGPT_JAX_FULL_EXIT set,
    or when flushing a stream fails other than by a closed pipe (a full disk must not exit 0)."""
    import atexit
    import os
    import threading

    if "jax" not in sys.modules or not hasattr(atexit, "_run_exitfuncs"):
        return
    if os.environ.get(FULL_EXIT_ENV, "0") != "0" or sys.gettrace() or sys.getprofile():
        return
    if any(name in sys.modules for name in _WATCHERS):
        return
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:  # | head: what Python's own exit would also drop
            pass
        except (OSError, ValueError):
            return
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # an exit handler's output to a closed pipe
            pass
    os._exit(status)


def _leave_job(status: int) -> None:
    """Leave a multi-process job. Every process gets here at the same point (errors, NaN stops and signals are
    agreed on by all of them), so the runtime's shutdown barrier passes at once; it waits at most
    ``distributed``'s shutdown timeout for a peer that is gone."""
    from microgpt_jax import distributed

    sys.stdout.flush()
    sys.stderr.flush()
    distributed.shutdown()


def _one_line_warning(
    message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None
) -> None:
    """Warnings as one line each, ``warning: ...``, never the source line or a stack."""
    text = " ".join(str(message).split())
    print(f"warning: {category.__name__}: {text}", file=sys.stderr if file is None else file)


if __name__ == "__main__":
    sys.exit(main())
