"""The subcommands: each turns parsed flags into configs and calls the library."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from microgpt_jax.cli.parser import CLUSTER_FLAGS, ENV_DISTRIBUTED
from microgpt_jax.config import (
    GRADCHECK_FLAGS,
    MODEL_FLAGS,
    RESUME_MAY_CHANGE,
    RUN_FLAGS,
    SAMPLE_FLAGS,
    SWEEP_GRID,
    TRAIN_FLAGS,
    DataConfig,
    GPTConfig,
    GradCheckConfig,
    RunConfig,
    SampleConfig,
    TrainConfig,
    flag_of,
    step_configs,
)
from microgpt_jax.errors import UserError, printable


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
    from microgpt_jax.model.registry import REGISTRY, unused_fields

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
    model: GPTConfig | None
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


def own_process_setup(given: dict[str, Any], own_process: bool, command: str) -> bool:
    """Process-wide JAX settings, only when running as the program, before JAX starts: the persistent
    compilation cache (``compile_cache``: a second run with the same shapes skips XLA's compiles;
    ``MICROGPT_JAX_CACHE=off`` opts out), XLA's deterministic GPU ops (``xla_options.set_deterministic_gpu``),
    a device per core for sweep (and for train --devices N), and
    joining a multi-process job (``--coordinator``/``--num-processes``/``--process-id``, or ``--distributed``).
    Returns whether it joined one. (Called from Python, ``main(argv)`` leaves all of this to the caller.)"""
    if not own_process:
        if any(k in given for k in CLUSTER_FLAGS):
            raise UserError("--coordinator/--distributed join a job only when run as the program: call "
                            "microgpt_jax.runtime.distributed.initialize(...) first from Python")  # fmt: skip
        return False
    import json
    import os

    from microgpt_jax.runtime import distributed
    from microgpt_jax.runtime.compile_cache import enable_compile_cache
    from microgpt_jax.runtime.devices import set_cpu_devices
    from microgpt_jax.runtime.xla_options import set_deterministic_gpu

    enable_compile_cache()
    set_deterministic_gpu()
    processes = given.get("num_processes", 1)
    wanted = given.get("devices")
    if wanted and processes > 1:  # --devices counts the job's devices: each process's CPU gets its share
        wanted = -(-wanted // processes)  # (too few to reach every process: refused once JAX is up)
    if command == "sweep" or wanted:
        set_cpu_devices(wanted)  # a no-op for GPU/TPU devices
    auto = bool(given.get("distributed")) or os.environ.get(ENV_DISTRIBUTED, "") not in ("", "0")
    same = {k: v for k, v in given.items() if k != "process_id"}  # what every process of the job runs
    run = given.get("resume", given.get("out"))
    hint = f"restart every process of the job (with --resume {run} once it wrote a checkpoint)"
    return distributed.initialize(
        given.get("coordinator"), given.get("num_processes"), given.get("process_id"), auto=auto,
        command=json.dumps([command, same], sort_keys=True, default=str), hint=hint if command == "train" else "",
    )  # fmt: skip


def cmd_train(given: dict[str, Any]) -> int:
    """``microgpt-jax train``: train (or resume) a run directory, evaluate, save and print samples."""
    from microgpt_jax.runs.fresh import train_run

    if "resume" in given:
        return _resume(given)
    model, train, data, run_config, sample = train_configs(given)
    result = train_run(
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

    from microgpt_jax.runs.processes import read_spec
    from microgpt_jax.runs.resume import resume_run

    spec = read_spec(given["resume"])  # process 0's, in a multi-process job
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
    result = resume_run(
        given["resume"],
        dataclasses.replace(spec.run, **_pick(given, ("ckpt_every",))),
        dataclasses.replace(spec.sample, **_pick(given, SAMPLE_FLAGS)),
    )
    return 0 if result.signal is None else 128 + result.signal


def _load(given: dict[str, Any]) -> Any:
    from microgpt_jax.runs.load import load_model_file, load_run

    return load_run(given["run"]) if given.get("run") is not None else load_model_file(given["params"])


def cmd_sample(given: dict[str, Any]) -> int:
    """``microgpt-jax sample``: print documents sampled from a trained model, each marked new or seen in the
    run's corpus (``--json``: one object per sample)."""
    import json

    from microgpt_jax.runs.load import sample_model
    from microgpt_jax.runs.processes import read_spec
    from microgpt_jax.view.load import in_corpus, read_corpus

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
            print(
                f"sample {i + 1:2d}: {printable(name)}" + (f"  ({words[mark]})" if mark else "")
            )  # escapes shown, not run
    return 0


def cmd_score(given: dict[str, Any]) -> int:
    """``microgpt-jax score``: each text's per-token p and -log p and its mean NLL (``--json``: one object per
    text)."""
    import json

    from microgpt_jax.model.dtypes import precision
    from microgpt_jax.view.scoring import format_score, score

    model = _load(given)
    with precision(model.x64):
        results = score(model.params, model.config, model.tokenizer, given["texts"])
    for result in results:
        print(json.dumps(result) if given["json"] else "\n".join(format_score(result)))
    return 0


def cmd_report(given: dict[str, Any]) -> int:
    """``microgpt-jax report``: write the HTML page of runs or sweeps and say where it is."""
    import os
    import time

    from microgpt_jax.view.page import report, written_by_report

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
    if os.path.lexists(out) and not given.get("overwrite") and not written_by_report(out):
        raise UserError(f"--out {out} exists and is not a page report wrote: pick another name, or pass --overwrite "
                        "to replace it")  # fmt: skip
    path = report(*runs, probe=given.get("probe")).save(out)
    size = path.stat().st_size
    print(f"wrote {path} ({size / 1e6:.2f} MB in {time.perf_counter() - t0:.1f} s)")
    return 0


def cmd_export(given: dict[str, Any]) -> int:
    """``microgpt-jax export``: write a run's (or a file's) parameters in a standard format, with the config
    and vocabulary inside, so ``sample --params FILE`` needs nothing else."""
    from microgpt_jax.storage.params import FORMATS, save_params

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
    from microgpt_jax.training.gradcheck import check_document

    model, train, _ = step_configs(given.get("step", 1), train=_pick(given, ("seed",)))
    report = check_document(data_config(given), model, train, GradCheckConfig(**_pick(given, GRADCHECK_FLAGS)))
    for line in report.lines():
        print(line)
    if not report.ok:
        print("error: the gradient check is out of tolerance", file=sys.stderr)
    return 0 if report.ok else 1


def cmd_sweep(given: dict[str, Any]) -> int:
    """``microgpt-jax sweep``: train a grid of runs, write results.csv/json and sweep.png, print the best."""
    from microgpt_jax.corpus.load import load_corpus
    from microgpt_jax.model.dtypes import precision
    from microgpt_jax.runs.processes import on_lead
    from microgpt_jax.runs.sweep_dir import check_sweep_target, sweep_run
    from microgpt_jax.training import sweep

    data = data_config(given)
    base_train = TrainConfig(**_pick(given, ("x64",)), **_early(given))
    grid = {k: given[k] for k in SWEEP_GRID if k in given}
    if "seeds" in given:
        grid["seed"] = list(range(given["seeds"]))
    grid.setdefault("lr", [None])  # each optimizer's default lr
    sweep.check_grid_fits(GPTConfig(), base_train, grid)  # a grid too large to build: before building it
    sweep.grid_members(GPTConfig(), base_train, grid)  # a grid point that cannot train: before the corpus is read
    on_lead(lambda: check_sweep_target(given["out"], given["overwrite"]))  # so is a directory it may not write
    with precision(base_train.x64):
        corpus = load_corpus(data)
        members = sweep.grid_members(GPTConfig(vocab_size=corpus.tokenizer.vocab_size), base_train, grid)
        sweep_run(
            given["out"], members, corpus, data, devices_requested=given.get("devices"), chunk=given["chunk"],
            save_member_params=given["save_params"], progress=not given["no_progress"], overwrite=given["overwrite"],
        )  # fmt: skip
    return 0


COMMANDS = {
    "train": cmd_train, "sample": cmd_sample, "export": cmd_export, "gradcheck": cmd_gradcheck, "sweep": cmd_sweep,
    "score": cmd_score, "report": cmd_report,
}  # fmt: skip
