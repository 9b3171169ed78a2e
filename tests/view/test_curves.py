"""view/curves.py: smoothing, the reference lines, the bigram's held-out loss, the charts."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from microgpt_jax.corpus.load import Corpus
from microgpt_jax.corpus.tokenizer import Tokenizer
from microgpt_jax.view.curves import bigram_val_loss, overlay, references, run_curves, smooth


@pytest.mark.parametrize("n", [1, 5, 19, 20, 400, 5000])
def test_smooth_of_a_constant_is_the_constant(n: int) -> None:
    out = smooth(np.full(n, 2.5))
    assert out.shape == (n,)
    np.testing.assert_allclose(out, 2.5, rtol=1e-12)


def test_smooth_is_the_trailing_mean() -> None:
    x = np.arange(40, dtype=float)  # window max(1, 40 // 20) = 2
    out = smooth(x)
    assert out[0] == 0.0
    np.testing.assert_allclose(out[1:], (x[1:] + x[:-1]) / 2)
    y = np.arange(10, dtype=float)  # window 1: the values themselves
    np.testing.assert_allclose(smooth(y), y)
    long = np.random.default_rng(0).normal(size=4000)  # window capped at 100
    assert smooth(long)[-1] == pytest.approx(long[-100:].mean())


def test_references_hold_ln_v_and_the_bigram_when_known() -> None:
    (uniform,) = references(27, None)
    assert uniform["y"] == pytest.approx(math.log(27)) and "27" in uniform["name"]
    lines = references(5, 1.25)
    assert [h["y"] for h in lines] == [pytest.approx(math.log(5)), 1.25]


def test_bigram_val_loss_counts_the_training_documents() -> None:
    tok = Tokenizer.from_docs(["ab"])
    corpus = Corpus(Path("x"), ["ab"], ["ab"], tok)
    # add-one counts: every row has 2 on the bigram seen once and 1 on each of the other two: p = 1/2
    assert bigram_val_loss(corpus, 8) == pytest.approx(math.log(2))
    with np.errstate(divide="ignore"):  # unsmoothed: the unseen bigrams' log 0
        assert bigram_val_loss(corpus, 8, smoothing=0.0) == pytest.approx(0.0)
    assert bigram_val_loss(Corpus(Path("x"), ["ab"], [], tok), 8) is None


def _metrics(n: int, val: int = 1) -> dict[str, np.ndarray]:
    return {
        "steps": np.arange(n),
        "loss": np.linspace(3, 2, n),
        "val_steps": np.arange(val) * 10,
        "val_loss": np.full(val, 2.5),
    }


def test_run_curves_draws_both_scales_with_the_reference_lines() -> None:
    html = run_curves(_metrics(50, 2), references(27, 2.4), "u1")
    assert 'id="u1"' in html and html.count("<svg") == 2
    assert html.count("<polyline") == 4 and html.count("<title>held-out loss at step") == 4
    assert html.count(f"uniform ln(27): {math.log(27):.5g}") == 2 and "bigram held-out: 2.4</title>" in html
    assert "No losses" in run_curves(_metrics(0, 0), [], "u")
    one = run_curves(_metrics(1, 0), [], "u")
    assert "<polyline" not in one and one.count("<title>train loss at step 0") == 2


def test_overlay_has_a_curve_per_run() -> None:
    runs = [{"metrics": _metrics(30)}, {"metrics": _metrics(30, 0)}]
    html = overlay(runs, ["a<", "b"], [], "o")
    assert html.count("<polyline") == 4  # two runs, two scales
    assert "a&lt; train (smoothed)" in html and "b held-out" not in html


def test_a_diverged_runs_smoothed_curve_breaks_off() -> None:
    from microgpt_jax.view.curves import smooth

    got = smooth(np.array([1.0, 2.0, np.nan, 3.0, np.inf, -np.inf] + [1.0] * 40))
    assert got[0] == 1.0 and got[1] == 1.5 and np.all(np.isnan(got[2:6])) and np.all(np.isfinite(got[8:]))
