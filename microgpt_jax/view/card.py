"""The run card: what a run is (model, sizes, corpus, recipe, results) and the command that reproduces it;
and, for several runs, the table of what differs between their configs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from microgpt_jax.config import (
    DATA_FLAGS,
    MODEL_FLAGS,
    RUN_FLAGS,
    SAMPLE_FLAGS,
    TRAIN_FLAGS,
    DataConfig,
    flag_of,
    step_configs,
)
from microgpt_jax.runs.spec import RunSpec
from microgpt_jax.view.svg import esc, num


def _flag(name: str, value: Any) -> list[str]:
    if isinstance(value, bool):
        return [flag_of(name)] if value else []
    return [flag_of(name), repr(value) if isinstance(value, float) else str(value)]


def train_command(spec: RunSpec, out: str | Path) -> str:
    """The ``microgpt-jax train`` command that trains this run again: the guide's ``--step`` when it came from
    one, then every setting that differs from what that step (or the defaults) gives."""
    parts = ["microgpt-jax", "train", "--out", str(out)]
    if spec.step is not None:
        parts += ["--step", str(spec.step)]
    base_model, base_train, base_sample = step_configs(spec.step)
    base_data = DataConfig()
    if spec.data.path is not None:
        parts += ["--data", str(spec.data.path)]
    if spec.data.shuffle_seed is None:
        parts.append("--no-shuffle")
    elif spec.data.shuffle_seed != base_data.shuffle_seed:
        parts += ["--shuffle-seed", str(spec.data.shuffle_seed)]
    for name in DATA_FLAGS:
        value = getattr(spec.data, name)
        if name != "path" and value != getattr(base_data, name) and not (name == "tokenizer" and value == "char"):
            parts += _flag(name, value)
    for names, cfg, base in (
        (MODEL_FLAGS, spec.model, base_model),
        (TRAIN_FLAGS, spec.train, base_train),
        (SAMPLE_FLAGS, spec.sample, base_sample),
    ):
        for name in names:
            if getattr(cfg, name) != getattr(base, name):
                parts += _flag(name, getattr(cfg, name))
    if spec.train.init_zero_out and not base_train.init_zero_out:
        parts += ["--init-variant", "early"]
    for name in RUN_FLAGS:
        if getattr(spec.run, name) is not None:
            parts += _flag(name, getattr(spec.run, name))
    if spec.init is not None:
        parts += ["--init", spec.init.given]
    return " ".join(parts)


def _row(name: str, value: str) -> str:
    return f"<tr><th>{esc(name)}</th><td>{value}</td></tr>"


def _final_train(loss_S: np.ndarray) -> str:
    """The mean of the last 10% of steps (the sweep's figure), and the last step's loss."""
    if not len(loss_S):
        return "not recorded"
    if len(loss_S) == 1:
        return num(float(loss_S[0]), 5)
    k = max(1, len(loss_S) // 10)
    last = f"; last step {num(float(loss_S[-1]), 5)}" if k > 1 else ""
    return f"{num(float(np.mean(loss_S[-k:])), 5)} (mean of the last {k} step{'s' * (k > 1)}{last})"


def run_card(run: dict[str, Any], n_params: int | None) -> str:
    """The run card's HTML: model, sizes, parameters, corpus, recipe, steps, results, the command."""
    spec: RunSpec = run["spec"]
    m, t, d = spec.model, spec.train, spec.data
    corpus = run["corpus"]
    sizes = f"vocabulary {m.vocab_size}, block size {m.block_size}"
    if m.model == "gpt":
        sizes = f"{m.n_layer} layer{'s' * (m.n_layer != 1)}, {m.n_embd} wide, {m.n_head} heads, " + sizes
    elif m.model == "mlp":
        sizes = f"embedding {m.n_embd}, hidden {4 * m.n_embd}, " + sizes
    docs = "unknown (corpus not read)"
    if corpus is not None:
        docs = (
            f"{len(corpus.train_docs) + len(corpus.val_docs)} ({len(corpus.train_docs)} train, "
            f"{len(corpus.val_docs)} held out)"
        )
    vocab = spec.tokenizer.vocab
    shown = "".join(vocab) if spec.tokenizer.kind == "char" else " ".join(vocab[:30]) + (" ..." * (len(vocab) > 30))
    if t.count == "online" or m.model != "bigram":
        recipe = f"{t.optimizer}, lr {t.lr:g} ({t.schedule}), batch {t.batch_size}, seed {t.seed}"
        recipe += f", init std {t.init_std:g}" + (", float64" if t.x64 else "") + (f", grad {t.grad}")
    else:
        recipe = f"counted all at once, add-{t.smoothing:g} smoothing"
    if m.model == "bigram" and t.count == "online":
        recipe = f"counted one document per step, add-{t.smoothing:g} smoothing"
    met = run["metrics"]
    steps = f"{met['steps'][-1] + 1 if len(met['steps']) else 0} recorded of {t.steps}"
    if m.model == "bigram" and t.count != "online":
        steps = "none: the table is counted over every training document at once"
    rows = [
        _row("model", esc(m.model + (f" (the guide's step {spec.step})" if spec.step is not None else ""))),
        _row("sizes", esc(sizes)),
        _row("parameters", "unknown (not read)" if n_params is None else f"{n_params:,}"),
        _row("corpus", f"<code>{esc(d.path)}</code>"),
        _row("SHA-256", f"<code>{esc(spec.data_sha256)}</code>"),
        _row("documents", esc(docs)),
        _row("tokenizer", esc(f"{spec.tokenizer.kind}: {len(vocab)} entries + BOS") + f"<br><code>{esc(shown)}</code>"),
        _row("recipe", esc(recipe)),
        _row("steps", esc(steps)),
        _row("wall time", "not recorded in the run directory"),
        _row("final train loss", esc(_final_train(met["loss"]))),
        _row(
            "final held-out loss", esc(num(float(met["val_loss"][-1]), 5) if len(met["val_loss"]) else "not recorded")
        ),
        _row("parameters shown", esc(run["params_source"] or "none")),
        _row("reproduce", f"<code>{esc(train_command(spec, run['path']))}</code>"),
    ]
    return f'<table class="kv">{"".join(rows)}</table>'


def _flat(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in doc.items():
        if isinstance(v, dict) and k != "vocab":
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_differences(specs: list[RunSpec]) -> dict[str, list[Any]]:
    """``{"section.field": [value per run]}`` for every config.json field whose value differs between runs."""
    flats = [_flat(s.to_doc()) for s in specs]
    keys = list(dict.fromkeys(k for f in flats for k in f))
    out = {}
    for k in keys:
        values = [f.get(k) for f in flats]
        if any(v != values[0] for v in values[1:]):
            out[k] = ["(vocabulary)" if k.endswith("vocab") else v for v in values]
    return out


def differences_table(names: list[str], specs: list[RunSpec], colours: list[str]) -> str:
    """The HTML table of what differs between the runs' configs."""
    diff = config_differences(specs)
    if not diff:
        return "<p>The runs' configs are the same.</p>"
    head = "".join(f'<th style="color:{c}">{esc(n)}</th>' for n, c in zip(names, colours, strict=True))
    body = "".join(
        f"<tr><th>{esc(k)}</th>" + "".join(f"<td>{esc(_show(v))}</td>" for v in vs) + "</tr>" for k, vs in diff.items()
    )
    return f'<table class="grid"><tr><th>setting</th>{head}</tr>{body}</table>'


def _show(v: Any) -> str:
    return num(v, 6) if isinstance(v, float) and math.isfinite(v) else str(v)
