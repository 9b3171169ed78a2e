"""view/svg.py: escaping, number formatting, colour scales, heatmap tooltips, ticks, charts."""

from __future__ import annotations

import math
import re

import numpy as np

from microgpt_jax.view import svg


def hexcolour(rgb: tuple[int, int, int]) -> str:
    return "#" + "".join(f"{c:02x}" for c in rgb)


def test_esc_escapes_markup_and_quotes() -> None:
    out = svg.esc("<a href=\"x\">'&'</a>")
    assert "<" not in out and ">" not in out and '"' not in out and "'" not in out
    assert out.count("&amp;") == 1 and "&lt;" in out and "&gt;" in out and "&quot;" in out and "&#x27;" in out
    assert svg.esc(3) == "3"


def test_num_significant_digits_and_nan() -> None:
    assert svg.num(3.14159265, 3) == "3.14"
    assert svg.num(123456.0) == "1.2346e+05"
    assert svg.num(0.5) == "0.5"
    assert svg.num(math.nan) == "nan" and svg.num(math.inf) == "nan"


def test_diverging_white_at_zero_blue_negative_red_positive() -> None:
    assert svg.diverging(0.0, 1.0) == "#ffffff"
    assert svg.diverging(-1.0, 1.0) == hexcolour(svg.BLUE)
    assert svg.diverging(1.0, 1.0) == hexcolour(svg.RED)
    assert svg.diverging(5.0, 1.0) == svg.diverging(1.0, 1.0)  # clipped at vmax
    r, _, b = (int(svg.diverging(-0.5, 1.0)[k : k + 2], 16) for k in (1, 3, 5))
    assert b > r  # half-way blue
    r, _, b = (int(svg.diverging(0.5, 1.0)[k : k + 2], 16) for k in (1, 3, 5))
    assert r > b  # half-way red
    assert svg.diverging(3.0, 0.0) == "#ffffff"  # no scale: white


def test_sequential_white_to_ink() -> None:
    assert svg.sequential(0.0) == "#ffffff"
    assert svg.sequential(1.0) == hexcolour(svg.INK)
    assert svg.sequential(2.0, 4.0) != svg.sequential(4.0, 4.0)


def test_heatmap_has_a_cell_and_tooltip_for_every_value() -> None:
    values = np.array([[0.125, -2.5, 3.0], [7.0, 0.0, -0.25]])
    out = svg.heatmap(values, lambda v: svg.diverging(v, 7.0), lambda i, j, v: f"w[{i},{j}]={v:g}", label="m<1>")
    assert out.startswith("<svg") and out.endswith("</svg>")
    assert out.count("<rect") == 6
    titles = re.findall(r"<title>(.*?)</title>", out)
    assert titles == [f"w[{i},{j}]={values[i, j]:g}" for i in range(2) for j in range(3)]
    assert 'aria-label="m&lt;1&gt;"' in out


def test_heatmap_labels_and_text_are_escaped() -> None:
    out = svg.heatmap(
        np.ones((1, 2)), svg.sequential, lambda i, j, v: "t", row_labels=["<r>"], col_labels=["&", "b"],
        text=lambda i, j, v: "<x>" if j == 0 else "",
    )  # fmt: skip
    assert "&lt;r&gt;" in out and "&amp;" in out and "&lt;x&gt;" in out
    assert "<r>" not in out and "<x>" not in out
    assert out.count("<text") == 1 + 1 + 2  # one cell text, one row label, two column labels


def test_ticks_cover_the_range_with_round_steps() -> None:
    for lo, hi in [(0.0, 1.0), (1.7, 3.3), (-5.0, 12.0), (0.001, 0.0123), (100.0, 100000.0)]:
        t = svg.ticks(lo, hi)
        assert len(t) >= 2
        assert all(lo - 1e-9 <= x <= hi + 1e-9 for x in t)
        step = t[1] - t[0]
        assert t[0] - step < lo and t[-1] + step > hi  # no room for another tick on either side
        assert len(t) <= 11
    assert svg.ticks(1.0, 1.0) == [1.0] and svg.ticks(2.0, 1.0) == [2.0]
    assert svg.ticks(0.0, math.nan) == [0.0]
    assert svg.ticks(0.0, 10.0) == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]


def test_line_chart_draws_series_points_and_reference_lines() -> None:
    out = svg.line_chart(
        [{"xs": [0, 1, 2], "ys": [3.0, math.nan, 1.0], "colour": "#000", "name": "train <loss>"}],
        points=[{"xs": [2], "ys": [1.5], "colour": "#f00", "name": "val"}],
        hlines=[{"y": 3.2958, "name": "uniform", "colour": "#888"}],
    )
    assert out.count("<polyline") == 1 and out.count("<circle") == 1
    assert len(re.search(r'points="([^"]*)"', out).group(1).split()) == 2  # the NaN is left out
    assert "val at step 2: 1.5</title>" in out and "uniform: 3.2958</title>" in out
    assert "train &lt;loss&gt;" in out
    assert "no data" in svg.line_chart([])


def test_bars_highlight_and_tooltips() -> None:
    out = svg.bars([0.2, 0.8], ["a", "b"], ["p(a)", "p(b)"], highlight=1)
    assert out.count("<rect") == 2 and out.count("#d62728") == 1
    assert "<title>p(a)</title>" in out and "<title>p(b)</title>" in out


def test_scatter_skips_non_finite_points() -> None:
    out = svg.scatter([1, 2, 3], [1.0, math.nan, 2.0], ["a", "b", "c"], xlabel="x", ylabel="y", diagonal=True)
    assert out.count("<circle") == 2 and "<title>b</title>" not in out
    assert "no finite values" in svg.scatter([1], [math.nan], ["a"], xlabel="x", ylabel="y")


def test_a_log_axis_is_labelled_in_powers_of_ten_inside_the_plot() -> None:
    import re

    from microgpt_jax.view.svg import line_chart

    page = line_chart([{"xs": list(range(501)), "ys": [1.0] * 501, "colour": "#000", "name": "a"}], xlog=True)
    labels = re.findall(r'text-anchor="middle">(\d+)</text>', page)
    assert labels == ["0", "10", "100"]
