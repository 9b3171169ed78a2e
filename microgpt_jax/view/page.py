"""The report page: the sections of each run (or sweep) put together as one self-contained HTML file, with
nothing fetched when it is opened (inline SVG and CSS; no script)."""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import numpy as np

from microgpt_jax.config import SampleConfig
from microgpt_jax.errors import UserError
from microgpt_jax.files import atomic_write_text
from microgpt_jax.model.dtypes import precision
from microgpt_jax.model.registry import param_shapes
from microgpt_jax.runs.load import LoadedModel, sample_model
from microgpt_jax.view import card, curves, gradients, inference, load, sweep_view, weights
from microgpt_jax.view.probe import probe_run
from microgpt_jax.view.scoring import encode_text

TEMPERATURES = (0.5, 1.0, 1.5)
STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:0 16px 40px;color:#222}
h1{font-size:22px;margin:18px 0 4px}h2{font-size:18px;margin:0 0 8px}h3{font-size:14px;margin:10px 0 4px}
section{border:1px solid #ddd;border-radius:6px;padding:12px 14px;margin:14px 0;overflow-x:auto}
nav a{margin-right:10px}code{font-size:12px;background:#f4f4f4;padding:1px 3px;word-break:break-all}
table{border-collapse:collapse}table.kv th{text-align:left;padding:2px 12px 2px 0;vertical-align:top}
table.grid td,table.grid th{border:1px solid #e4e4e4;padding:2px 6px;text-align:left}
.note{color:#666;font-size:12px}.notes{background:#fff7e0;border:1px solid #f0d890;padding:6px 10px}
.row{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}figure{margin:4px 0}
figure.mat{display:inline-block;margin:4px 14px 8px 0;vertical-align:top}figcaption{font-size:12px;color:#444}
img.px{image-rendering:pixelated;display:block;max-width:100%;height:auto}
figure.mat svg{max-width:100%;height:auto}.samples ol{margin:0;padding-left:26px}
.s-new small{color:#2a7d2a}.s-train small{color:#999}.s-held-out small{color:#b06000}
input.logx:checked~.lin,input.logx:not(:checked)~.log{display:none}
"""


def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}" data-section="{sid.split("-", 1)[0]}"><h2>{html.escape(title)}</h2>{body}</section>'


def _loaded(run: dict[str, Any]) -> LoadedModel:
    spec = run["spec"]
    return LoadedModel(run["params"], spec.model, spec.tokenizer, spec.train.x64, spec.train.seed, str(run["path"]))


def _probe_text(run: dict[str, Any], probe: str | None, fallback: str) -> str:
    if probe is not None:
        return probe
    corpus, block = run["corpus"], run["spec"].model.block_size
    for doc in corpus.val_docs[:50] if corpus is not None else ():
        try:
            encode_text(run["spec"].tokenizer, doc, run["spec"].model)
            return doc
        except UserError:
            continue
    return fallback[: max(0, block - 1)]


def _ordered(params: dict[str, Any], config: Any) -> dict[str, Any]:
    """The state_dict in the model's own order (a file may store it sorted by name)."""
    order = [k for k in param_shapes(config) if k in params]
    return {k: params[k] for k in order + [k for k in params if k not in order]}


def run_sections(run: dict[str, Any], probe: str | None, k: int, hlines: list[dict[str, Any]]) -> list[str]:
    """The HTML sections of one run: card, loss curves, parameters, embeddings, probe, attention, samples,
    gradient check (those the model has and the files allow)."""
    spec, params = run["spec"], run["params"]
    params = None if params is None else _ordered(params, spec.model)
    m, tok = spec.model, spec.tokenizer
    n_params = None if params is None else sum(int(np.asarray(v).size) for v in params.values())
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in run["notes"])
    out = [
        _section(
            f"card-{k}",
            f"Run {run['path']}",
            (f"<ul class='notes'>{notes}</ul>" if notes else "") + card.run_card(run, n_params),
        )
    ]
    out.append(_section(f"curves-{k}", "Loss curves", curves.run_curves(run["metrics"], hlines, f"logx-{k}")))
    if params is None:
        return out
    if m.model == "bigram":
        counts = None
        if run["corpus"] is not None:
            counts = weights.bigram_counts(run["corpus"], m.block_size, spec.train.count, spec.train.steps)
        out.append(_section(f"parameters-{k}", "The bigram table", weights.bigram_grid(params["wte"], tok, counts)))
    else:
        out.append(
            _section(
                f"parameters-{k}",
                "Parameters (blue negative, white zero, red positive)",
                weights.all_matrices(params, tok),
            )
        )
        out.append(_section(f"embeddings-{k}", "Embeddings", weights.embeddings(params, tok, m.model)))
    with precision(spec.train.x64):
        model = _loaded(run)
        sc = spec.sample
        samples = {
            t: sample_model(
                model, SampleConfig(num_samples=sc.num_samples, temperature=t, top_k=sc.top_k, top_p=sc.top_p)
            )
            for t in TEMPERATURES
        }
        text = _probe_text(run, probe, next((s for s in samples[0.5] if s), ""))
        result = probe_run(params, m, tok, text)
    marks = {t: load.in_corpus(s, run["corpus"]) for t, s in samples.items()}
    out.append(_section(f"probe-{k}", f"Probe: {text!r}", inference.probe_table(result, tok)))
    if m.model == "gpt":
        out.append(_section(f"attention-{k}", f"Attention on {text!r}", inference.attention_maps(result)))
    out.append(_section(f"samples-{k}", "Samples", inference.samples_table(samples, marks)))
    if m.model == "mlp":
        doc = run["corpus"].train_docs[0] if run["corpus"] is not None else text
        pairs = gradients.gradient_pairs(params, encode_text(tok, doc, m))
        out.append(_section(f"gradcheck-{k}", "Gradient check", gradients.gradient_scatter(pairs, doc)))
    return out


def build(paths: list[str | os.PathLike[str]], probe: str | None = None) -> tuple[str, str]:
    """``(title, body)`` of the page for run or sweep directories ``paths``."""
    if not paths:
        raise UserError("no run directory given: pass one or more run (or sweep) directories")
    parts: list[str] = []
    names: list[str] = []
    runs: list[dict[str, Any]] = []
    for p in map(Path, paths):
        if load.is_sweep(p):
            parts.append(_section(f"sweep-{len(parts)}", f"Sweep {p}", sweep_view.sweep_body(load.read_sweep(p))))
            names.append(p.name)
            continue
        run = load.read_run(p)
        if probe is not None:
            encode_text(run["spec"].tokenizer, probe, run["spec"].model)  # a probe the model cannot read: refused
        runs.append(run)
        names.append(p.name)
    for k, run in enumerate(runs):
        m = run["spec"].model
        bigram = None
        if run["corpus"] is not None:
            bigram = curves.bigram_val_loss(run["corpus"], m.block_size)
        hlines = curves.references(m.vocab_size, bigram)
        parts += run_sections(run, probe, k, hlines)
    if len(runs) > 1:
        labels = [str(r["path"]) for r in runs]
        colours = [curves.PALETTE[i % len(curves.PALETTE)] for i in range(len(runs))]
        m0 = runs[0]["spec"].model
        body = curves.overlay(runs, labels, curves.references(m0.vocab_size, None), "logx-all")
        body += card.differences_table(labels, [r["spec"] for r in runs], colours)
        parts.insert(0, _section("compare-0", "Runs compared", body))
    title = "microgpt-jax report: " + ", ".join(names)
    nav = " ".join(f'<a href="#{s}">{s}</a>' for s in _ids(parts))
    body = f"<h1>{html.escape(title)}</h1><nav>{nav}</nav>{''.join(parts)}"
    return title, body


def _ids(parts: list[str]) -> list[str]:
    return [p.split('"', 2)[1] for p in parts]


GENERATOR = '<meta name="generator" content="microgpt-jax report">'  # how ``written_by_report`` knows a page


class Report:
    """A report page: ``save(path)`` writes it, ``_repr_html_()`` shows it inline in Jupyter."""

    def __init__(self, title: str, body: str) -> None:
        self.title, self.body = title, body

    @property
    def html(self) -> str:
        """The whole page, one self-contained HTML document."""
        return (
            f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">{GENERATOR}<title>{html.escape(self.title)}'
            f"</title><style>{STYLE}</style></head><body>{self.body}</body></html>\n"
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the page to ``path`` (atomically) and return the path."""
        atomic_write_text(path, self.html)
        return Path(path)

    def _repr_html_(self) -> str:
        return f"<div><style>{STYLE}</style>{self.body}</div>"


def written_by_report(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a regular file (not a link) that begins as a page this module wrote (its generator
    tag within the first bytes): one that ``report`` may replace unasked."""
    try:
        with open(path, "rb", opener=lambda p, f: os.open(p, f | os.O_NOFOLLOW)) as f:
            return GENERATOR.encode() in f.read(512)
    except OSError:  # a link, a folder, unreadable: not ours to replace
        return False


def report(run_dir: str | os.PathLike[str], *more: str | os.PathLike[str], probe: str | None = None) -> Report:
    """The report of one or more run (or sweep) directories; ``probe`` is the text scored token by token
    (default: a held-out document). A folder that is neither, or a probe the model cannot read, is a UserError;
    whatever else cannot be read is a note on the page."""
    return Report(*build([run_dir, *more], probe))
