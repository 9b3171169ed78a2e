"""A sweep directory drawn: held-out loss against each hyperparameter the sweep varied, the best members'
settings and, when the sweep recorded them, their loss curves."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from microgpt_jax.view.curves import smooth
from microgpt_jax.view.svg import PALETTE, esc, line_chart, num, scatter

RESULT_KEYS = ("id", "train_loss", "val_loss", "diverged", "seconds", "group")
BEST = 5


def varying(rows: list[dict[str, Any]]) -> list[str]:
    """The hyperparameters that take more than one value across the sweep's rows."""
    keys = [k for k in rows[0] if k not in RESULT_KEYS] if rows else []
    return [k for k in keys if len({repr(r.get(k)) for r in rows}) > 1]


def _loss(r: dict[str, Any]) -> float:
    v = r.get("val_loss")
    return float(v) if isinstance(v, (int, float)) and not r.get("diverged") else math.nan


def against(rows: list[dict[str, Any]], key: str) -> str:
    """Held-out loss against one hyperparameter: a log axis for positive numbers spanning 10x or more,
    categories for anything else."""
    values = [r.get(key) for r in rows]
    ys = [_loss(r) for r in rows]
    tips = [f"member {r.get('id')}: {key} = {r.get(key)}, val_loss {num(_loss(r))}" for r in rows]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if numeric:
        xs = [float(v) for v in values if isinstance(v, (int, float))]
        xlog = min(xs) > 0 and max(xs) / min(xs) >= 10
        return scatter(xs, ys, tips, xlabel=key, ylabel="held-out loss", xlog=xlog, label=f"val_loss vs {key}")
    cats = sorted({repr(v) for v in values})
    xs = [float(cats.index(repr(v))) for v in values]
    return scatter(
        xs, ys, tips, xlabel=key, ylabel="held-out loss", xcats=[c.strip("'") for c in cats], label=f"val_loss vs {key}"
    )


def sweep_body(sweep: dict[str, Any]) -> str:
    """The sweep section: one chart per varied hyperparameter, the best members' table and curves."""
    rows = sweep["rows"]
    keys = varying(rows)
    charts = "".join(f"<figure>{against(rows, k)}</figure>" for k in keys) or "<p>Nothing varied.</p>"
    ranked = sorted((r for r in rows if math.isfinite(_loss(r))), key=_loss)[:BEST]
    n_div = sum(bool(r.get("diverged")) for r in rows)
    head = "".join(f"<th>{esc(k)}</th>" for k in ("id", *keys, "train_loss", "val_loss"))
    body = "".join(
        f'<tr style="color:{PALETTE[i % len(PALETTE)]}">'
        + "".join(
            f"<td>{esc(num(r[k]) if isinstance(r.get(k), float) else r.get(k))}</td>"
            for k in ("id", *keys, "train_loss", "val_loss")
        )
        + "</tr>"
        for i, r in enumerate(ranked)
    )
    series = []
    for i, r in enumerate(ranked):
        loss = sweep["losses"].get(int(r["id"]))
        if loss is not None and len(loss) > 1:
            series.append(
                {
                    "xs": np.arange(len(loss), dtype=float),
                    "ys": smooth(loss),
                    "colour": PALETTE[i % len(PALETTE)],
                    "name": f"member {r['id']}",
                    "width": 2,
                }
            )
    curves = line_chart(series, label="best members' curves") if series else ""
    notes = "".join(f"<p class='note'>{esc(n)}</p>" for n in sweep["notes"])
    return (
        f"<p>{len(rows)} members, {n_div} diverged (left out of the charts); varied: "
        f"{esc(', '.join(keys) or 'nothing')}.</p><div class='row'>{charts}</div>"
        f"<h3>best {len(ranked)} by held-out loss</h3><table class='grid'><tr>{head}</tr>{body}</table>"
        f"{curves}{notes}"
    )
