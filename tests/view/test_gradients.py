"""view/gradients.py: the MLP's analytic and numerical gradients, paired and drawn."""

from __future__ import annotations

import re

import numpy as np
import pytest

from microgpt_jax.config import GPTConfig
from microgpt_jax.corpus.tokenizer import Tokenizer
from microgpt_jax.model.init import init_params
from microgpt_jax.view.gradients import gradient_pairs, gradient_scatter

TOK = Tokenizer.from_docs(["emma", "ava"])


@pytest.fixture(scope="module")
def pairs() -> dict[str, np.ndarray]:
    config = GPTConfig(vocab_size=TOK.vocab_size, n_embd=4, model="mlp")
    params = {k: np.asarray(v, np.float32) for k, v in init_params(0, config, std=0.3).items()}
    ids = [TOK.bos, *TOK.encode("emma"), TOK.bos]
    return gradient_pairs(params, ids)


def test_analytic_and_numerical_gradients_agree(pairs) -> None:
    a, n = pairs["analytic"], pairs["numerical"]
    V = TOK.vocab_size
    size = V * 4 + 16 * 4 + V * 16  # wte, mlp_fc1, mlp_fc2
    assert a.shape == n.shape == pairs["names"].shape == (size,)
    assert a.dtype == np.float64 and n.dtype == np.float64
    np.testing.assert_allclose(n, a, atol=1e-4)
    assert np.max(np.abs(a)) > 1e-3  # not trivially zero
    assert pairs["names"][0] == "wte[0, 0]" and pairs["names"][-1] == f"mlp_fc2[{V - 1}, 15]"


def test_gradient_scatter_reports_the_largest_difference(pairs) -> None:
    html = gradient_scatter(pairs, "<emma>")
    diff = float(np.max(np.abs(pairs["analytic"] - pairs["numerical"])))
    assert f'data-max-diff="{diff:.6g}"' in html
    assert html.count("<circle") == len(pairs["analytic"])
    assert "&lt;emma&gt;" in html and f"{len(pairs['analytic'])} parameters" in html
    assert re.search(r"<title>wte\[0, 0\]: analytic [-0-9.e]+, numerical [-0-9.e]+</title>", html)
