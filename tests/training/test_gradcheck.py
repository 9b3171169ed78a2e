"""Step 1's gradient check: gradient_check, its printed line, DocumentCheck and check_document."""

from __future__ import annotations

import string
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from microgpt_jax.config import GPTConfig
from microgpt_jax.model.init import init_params
from microgpt_jax.training.gradcheck import format_gradient_check, gradient_check

MLP = GPTConfig(vocab_size=27, model="mlp")
# the first 1000 training names in the original's order (tests/conftest.py's ref_docs_path)
DOCS = (Path(__file__).resolve().parents[1] / "data" / "reference" / "docs_first1000.txt").read_text().split()


def yuheng_x64() -> tuple[dict, jax.Array, jax.Array]:
    """The guide's check: params of key 42 in float64 and the first training name, "yuheng", as one row.
    Call under ``jax.enable_x64(True)``."""
    params = init_params(jax.random.key(42), MLP, dtype=jnp.float64)
    tokens = [26, *(string.ascii_lowercase.index(c) for c in DOCS[0]), 26]
    return params, jnp.array([tokens], jnp.int32), jnp.array([len(tokens) - 1], jnp.int32)


def test_gradient_check_on_the_first_name() -> None:
    assert DOCS[0] == "yuheng"
    with jax.enable_x64(True):
        params, tokens, n = yuheng_x64()
        result = gradient_check(params, tokens, n)
    line = format_gradient_check(result)
    print(line, f"(max diff {result['max_diff']:.3e}, analytic vs jax.grad {result['max_diff_jax_grad']:.3e})")
    assert result["loss_n"] == pytest.approx(result["loss_a"], abs=1e-12)
    assert abs(result["loss_a"] - np.log(27)) < 0.05  # near uniform at init
    assert result["max_diff"] <= 1e-4  # forward difference, eps 1e-5: ~2e-9 seen
    assert result["max_diff_jax_grad"] <= 1e-12
    # the guide's line: losses to 6 places, the difference to 8
    assert line == "gradient check | loss_n 3.298234 | loss_a 3.298234 | max diff 0.00000000"
