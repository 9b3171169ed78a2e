"""Step 1's gradient check: gradient_check, its printed line, DocumentCheck and check_document."""

from __future__ import annotations

import string
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from microgpt_jax.config import DataConfig, GPTConfig, GradCheckConfig, TrainConfig
from microgpt_jax.errors import UserError
from microgpt_jax.model.init import init_params
from microgpt_jax.training.gradcheck import DocumentCheck, check_document, format_gradient_check, gradient_check

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


def test_document_check_verdicts_and_lines() -> None:
    result = {"loss_n": 3.3, "loss_a": 3.3, "max_diff": 2e-9, "max_diff_jax_grad": 4e-16}
    ok = DocumentCheck(0, "yuheng", 7, 3184, result, GradCheckConfig())
    assert ok.numerical_ok and ok.autodiff_ok and ok.ok
    lines = ok.lines()
    assert lines[:3] == [
        "training doc 0: yuheng (7 predicted tokens)",
        "num params: 3184",
        "gradient check | loss_n 3.300000 | loss_a 3.300000 | max diff 0.00000000",
    ]
    assert lines[3].endswith("(forward difference, eps 1e-05; tolerance 0.0001): ok")
    assert lines[4] == "analytic vs jax.grad: max diff 4.000e-16 (tolerance 1e-12): ok"
    strict = DocumentCheck(0, "yuheng", 7, 3184, result, GradCheckConfig(tol_numerical=1e-9))
    assert not strict.numerical_ok and strict.autodiff_ok and not strict.ok
    assert strict.lines()[3].endswith(": OUT OF TOLERANCE") and strict.lines()[4].endswith(": ok")


def test_check_document_checks_a_training_document_in_float64(tmp_path: Path) -> None:
    path = tmp_path / "names.txt"
    path.write_text("emma\nava\nmia\nzoe\n")
    data = DataConfig(path=str(path), val_size=1, shuffle_seed=None)
    check = check_document(data, GPTConfig(model="mlp"), TrainConfig(), GradCheckConfig(doc=1))
    assert (check.index, check.doc, check.n) == (1, "ava", 4) and check.ok
    assert check.num_params == 8 * 16 + 64 * 16 + 8 * 64  # 7 letters + BOS
    assert check.result["max_diff_jax_grad"] <= 1e-12 and not jax.config.jax_enable_x64  # x64 only inside
    with pytest.raises(UserError, match=r"`doc` 3: there are 3 training documents: pick one of 0\.\.2"):
        check_document(data, GPTConfig(model="mlp"), TrainConfig(), GradCheckConfig(doc=3))
    with pytest.raises(UserError, match="not `model` gpt's: use `step` 1"):
        check_document(data, GPTConfig(), TrainConfig())
