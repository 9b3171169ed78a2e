"""Loss curves: a run's training loss (raw and smoothed), its held-out evaluations, and the reference lines
every curve should be read against: the uniform guess ln(V) and the bigram's held-out loss."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from microgpt_jax.corpus.load import Corpus
from microgpt_jax.model.bigram import count_bigrams
from microgpt_jax.view.svg import PALETTE, esc, line_chart

MAX_POINTS = 1500  # raw points drawn per curve (a longer run is thinned; the smoothed curve uses every step)


def smooth(loss_S: np.ndarray) -> np.ndarray:
    """The trailing mean of the last ``max(1, S // 20)`` steps (at most 100) at every step; nan where that window
    holds a non-finite loss (a diverged run's curve breaks off instead of falling to a made-up value)."""
    loss_S = np.asarray(loss_S, np.float64)
    w = int(min(100, max(1, len(loss_S) // 20)))
    bad_S = ~np.isfinite(loss_S)
    c = np.cumsum(np.concatenate([[0.0], np.where(bad_S, 0.0, loss_S)]))
    nbad = np.cumsum(np.concatenate([[0], bad_S.astype(np.int64)]))
    idx = np.arange(1, len(loss_S) + 1)
    lo = np.maximum(0, idx - w)
    return np.where(nbad[idx] > nbad[lo], np.nan, (c[idx] - c[lo]) / (idx - lo))


def bigram_val_loss(corpus: Corpus, block_size: int, smoothing: float = 1.0) -> float | None:
    """The held-out loss of the bigram counted on ``corpus``'s training documents (add-``smoothing``), scored as
    the training loss scores (the first ``block_size`` predictions of each document); None without held-out
    documents."""
    tr_tok, tr_n, va_tok, va_n = corpus.encoded(block_size)
    if len(va_n) == 0:
        return None
    V = corpus.tokenizer.vocab_size
    counts_VxV = count_bigrams(tr_tok, tr_n, V).astype(np.float64) + smoothing
    logp_VxV = np.log(counts_VxV / counts_VxV.sum(axis=1, keepdims=True))
    va_tok = np.asarray(va_tok, np.int64)
    mask_NxT = np.arange(va_tok.shape[1] - 1) < np.asarray(va_n)[:, None]
    nll = -logp_VxV[va_tok[:, :-1][mask_NxT], va_tok[:, 1:][mask_NxT]]
    return float(nll.mean())


def _thin(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(xs) <= MAX_POINTS:
        return xs, ys
    keep = np.unique(np.linspace(0, len(xs) - 1, MAX_POINTS).astype(int))
    return xs[keep], ys[keep]


def references(vocab_size: int, bigram: float | None) -> list[dict[str, Any]]:
    """The horizontal reference lines: ln(V) and, when known, the bigram's held-out loss."""
    lines = [{"y": math.log(vocab_size), "name": f"uniform ln({vocab_size})", "colour": "#888"}]
    if bigram is not None:
        lines.append({"y": bigram, "name": "bigram held-out", "colour": "#2ca02c"})
    return lines


def _toggle(uid: str, linear: str, log: str) -> str:
    """Both charts with a checkbox that shows one of them: CSS only, no script."""
    return (
        f'<input type="checkbox" id="{uid}" class="logx"><label for="{uid}"> log-scale step axis</label>'
        f'<div class="lin">{linear}</div><div class="log">{log}</div>'
    )


def run_curves(metrics: dict[str, np.ndarray], hlines: list[dict[str, Any]], uid: str) -> str:
    """One run's loss curves: raw and smoothed training loss, held-out points, reference lines."""
    steps, loss = metrics["steps"].astype(np.float64), metrics["loss"]
    if len(steps) == 0 and len(metrics["val_steps"]) == 0:
        return "<p class='note'>No losses recorded yet.</p>"
    xs, ys = _thin(steps, loss)
    series = [
        {"xs": xs, "ys": ys, "colour": "#9ecae1", "name": "train loss (each step)", "width": 1},
        {"xs": steps, "ys": smooth(loss), "colour": "#1f77b4", "name": "train loss (smoothed)", "width": 2},
    ]
    if len(steps) < 2:
        series = []
    points = [{"xs": metrics["val_steps"], "ys": metrics["val_loss"], "colour": "#d62728", "name": "held-out loss"}]
    if len(steps) == 1:
        points.append({"xs": steps, "ys": loss, "colour": "#1f77b4", "name": "train loss"})
    charts = [
        line_chart(series, points=points, hlines=hlines, xlog=xlog, label="loss curves") for xlog in (False, True)
    ]
    return _toggle(uid, *charts)


def overlay(runs: list[dict[str, Any]], names: list[str], hlines: list[dict[str, Any]], uid: str) -> str:
    """Several runs' smoothed training losses and held-out points on one chart."""
    series, points = [], []
    for k, (run, name) in enumerate(zip(runs, names, strict=True)):
        c = PALETTE[k % len(PALETTE)]
        m = run["metrics"]
        if len(m["steps"]) > 1:
            series.append(
                {
                    "xs": m["steps"].astype(np.float64),
                    "ys": smooth(m["loss"]),
                    "colour": c,
                    "name": f"{name} train (smoothed)",
                    "width": 2,
                }
            )
        if len(m["val_steps"]):
            points.append({"xs": m["val_steps"], "ys": m["val_loss"], "colour": c, "name": f"{name} held-out"})
    charts = [
        line_chart(series, points=points, hlines=hlines, xlog=xlog, label="runs overlaid") for xlog in (False, True)
    ]
    return _toggle(uid, *charts) + f"<p class='note'>{esc('Colours follow the table below.')}</p>"
