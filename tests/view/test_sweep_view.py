"""view/sweep_view.py: the varied hyperparameters, loss against each, the best members."""

from __future__ import annotations

import re

import numpy as np
import pytest

from microgpt_jax.view.sweep_view import BEST, against, sweep_body, varying


def _rows() -> list[dict]:
    rows = []
    for i, (lr, n_embd) in enumerate([(0.001, 8), (0.01, 8), (0.1, 8), (1.0, 8), (0.01, 8), (0.1, 8), (0.3, 8)]):
        rows.append(
            {
                "id": i, "lr": lr, "n_embd": n_embd, "schedule": "linear" if i % 2 else "cosine",
                "train_loss": 3.0 - 0.1 * i, "val_loss": 3.0 - 0.2 * i, "diverged": i == 6, "seconds": 1.0 + i,
                "group": i % 3,
            }
        )  # fmt: skip
    return rows


def test_varying_picks_the_hyperparameters_that_vary() -> None:
    rows = _rows()
    assert varying(rows) == ["lr", "schedule"]  # not n_embd (one value), not the result columns
    assert varying([]) == []
    assert varying(rows[:1]) == []


def test_against_a_wide_numeric_range_is_on_a_log_axis_and_skips_diverged() -> None:
    rows = _rows()
    html = against(rows, "lr")
    assert html.count("<circle") == 6  # the diverged member is left out
    cx = [float(x) for x in re.findall(r'<circle cx="([0-9.]+)"', html)]
    assert cx[1] - cx[0] == pytest.approx(cx[2] - cx[1], abs=0.11)  # 0.001, 0.01, 0.1 evenly spaced: log axis
    linear = against([{**r, "lr": r["lr"] * 10 + 2} for r in rows], "lr")  # 2.01 to 12: under 10x, linear
    cx = [float(x) for x in re.findall(r'<circle cx="([0-9.]+)"', linear)]
    assert cx[2] - cx[1] == pytest.approx(10 * (cx[1] - cx[0]), abs=1.5)  # 2.01, 2.1, 3: gaps 0.09, 0.9
    assert "member 0: lr = 0.001, val_loss 3</title>" in html
    assert ">0.001<" in html and ">1<" in html  # ticks at the grid's values, shown unlogged


def test_against_categories() -> None:
    html = against(_rows(), "schedule")
    assert ">linear<" in html and ">cosine<" in html and html.count("<circle") == 6


def test_sweep_body_ranks_the_best_and_draws_their_curves() -> None:
    rows = _rows()
    losses = {i: np.linspace(3, 2, 50) for i in range(7)}
    html = sweep_body({"rows": rows, "losses": losses, "notes": ["a <note>"]})
    assert "7 members, 1 diverged" in html and "varied: lr, schedule" in html
    assert f"best {BEST} by held-out loss" in html
    ids = [int(r.split("<td>")[1].split("<")[0]) for r in html.split("<tr style")[1:]]
    assert ids == [5, 4, 3, 2, 1]  # lowest val_loss first; member 6 diverged
    assert html.count("<polyline") == BEST and "a &lt;note&gt;" in html
    nothing = sweep_body({"rows": rows[:1], "losses": {}, "notes": []})
    assert "Nothing varied." in nothing and "<polyline" not in nothing
