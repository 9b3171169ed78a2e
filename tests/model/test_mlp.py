"""Step 1, the MLP: its shapes and parameter counts, its hand-written gradient checked numerically and against
jax.grad (alone and over 1000 training steps), and the CLI."""

from __future__ import annotations

import json
import string
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from microgpt_jax.cli.program import main
from microgpt_jax.config import GPTConfig
from microgpt_jax.corpus.documents import encode_docs
from microgpt_jax.corpus.tokenizer import Tokenizer
from microgpt_jax.model.init import init_params
from microgpt_jax.model.loss import loss_fn
from microgpt_jax.model.mlp import analytic_value_and_grad, numerical_gradient
from microgpt_jax.model.optim import sgd
from microgpt_jax.model.registry import forward, num_params, param_shapes

MLP = GPTConfig(vocab_size=27, model="mlp")
# three documents of different lengths, [BOS] + doc + [BOS] padded with BOS: the mask matters
TOKENS_BxT1 = np.array(
    [[26, 3, 0, 17, 8, 0, 26, 26, 26], [26, 10, 26, 26, 26, 26, 26, 26, 26], [26, 4, 4, 1, 9, 13, 2, 14, 26]], np.int32
)
N_B = np.array([6, 2, 8], np.int32)
# the first 1000 training names in the original's order (tests/conftest.py's ref_docs_path)
DOCS = (Path(__file__).resolve().parents[1] / "data" / "reference" / "docs_first1000.txt").read_text().split()


def test_param_counts_of_the_progression() -> None:
    configs = {
        "bigram": GPTConfig(model="bigram"),
        "mlp": MLP,
        "gpt": GPTConfig(),
        "gpt block 8": GPTConfig(block_size=8),
    }
    key = jax.random.key(0)
    # shapes only: jax.eval_shape draws no random numbers
    counts = {k: num_params(jax.eval_shape(lambda key, c=c: init_params(key, c), key)) for k, c in configs.items()}
    # MLP: wte 27x16 + mlp_fc1 64x16 + mlp_fc2 27x64 = 432 + 1,024 + 1,728
    assert counts == {"bigram": 729, "mlp": 3184, "gpt": 4192, "gpt block 8": 4064}
    assert param_shapes(MLP) == {"wte": (27, 16), "mlp_fc1": (64, 16), "mlp_fc2": (27, 64)}


def test_mlp_forward_is_the_formula() -> None:
    params = init_params(jax.random.key(1), MLP)
    w = {k: np.asarray(v, np.float64) for k, v in params.items()}
    want = w["mlp_fc2"] @ np.maximum(w["mlp_fc1"] @ w["wte"][4], 0)
    got = forward(params, jnp.array([[4]]), MLP)[0, 0]
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_numerical_gradient_is_the_forward_difference() -> None:
    def loss_of_params(p: dict) -> jax.Array:
        return jnp.sum(p["a"] ** 2) + jnp.sum(p["b"] ** 3)

    with jax.enable_x64(True):
        params = {"a": jnp.array([[1.0, -2.0]]), "b": jnp.array([[3.0], [0.5]])}
        got = jax.jit(numerical_gradient, static_argnums=0)(loss_of_params, params)
        got, params = jax.tree.map(np.asarray, (got, params))
    assert {k: (v.shape, v.dtype) for k, v in got.items()} == {"a": ((1, 2), np.float64), "b": ((2, 1), np.float64)}
    eps = 1e-5  # ((x + eps)^k - x^k) / eps, exactly
    np.testing.assert_allclose(got["a"], 2 * params["a"] + eps, atol=1e-9)
    np.testing.assert_allclose(got["b"], 3 * params["b"] ** 2 + 3 * params["b"] * eps + eps**2, atol=1e-8)


@pytest.mark.parametrize(("x64", "tol"), [(False, 1e-6), (True, 1e-12)])
def test_analytic_gradient_equals_jax_grad_batched(x64: bool, tol: float) -> None:
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        params = init_params(jax.random.key(7), MLP, dtype=dtype)
        tokens, n = jnp.asarray(TOKENS_BxT1), jnp.asarray(N_B)
        loss_auto, auto = jax.jit(jax.value_and_grad(loss_fn), static_argnums=3)(params, tokens, n, MLP)
        loss_hand, hand = jax.jit(analytic_value_and_grad)(params, tokens, n)
        assert hand["wte"].dtype == dtype and loss_hand.dtype == dtype
        assert abs(float(loss_hand - loss_auto)) <= tol
        for name in params:
            assert hand[name].shape == params[name].shape
            assert float(jnp.max(jnp.abs(auto[name] - hand[name]))) <= tol, name
        # the gradient is not trivially zero: every matrix gets a real signal
        assert all(float(jnp.max(jnp.abs(hand[name]))) > 1e-3 for name in params)


def train_losses(value_and_grad, params: dict, tokens_NxT1: jax.Array, n_N: jax.Array, steps: int) -> jax.Array:
    """Step 1's loop: SGD, lr 1.0 decaying linearly, one document per step, ``docs[step % N]``."""
    opt = sgd(1.0, steps)

    def step(carry, s):
        params, opt_state = carry
        i = s % tokens_NxT1.shape[0]
        loss, grads = value_and_grad(params, tokens_NxT1[i][None], n_N[i][None])
        return opt.update(grads, opt_state, params), loss

    _, losses = jax.lax.scan(step, (params, opt.init(params)), jnp.arange(steps))
    return losses


def test_training_with_the_analytic_gradient_is_training_with_jax_grad() -> None:
    steps = 1000
    tok = Tokenizer.from_docs(DOCS)
    assert tok.uchars == string.ascii_lowercase
    # the guide's n = len(tokens) - 1, uncapped: block_size longer than every name
    tokens_NxT1, n_N = encode_docs(DOCS, tok, block_size=max(map(len, DOCS)) + 1)
    with jax.enable_x64(True):
        params = init_params(jax.random.key(42), MLP, dtype=jnp.float64)
        run = jax.jit(train_losses, static_argnums=(0, 4))
        hand = run(analytic_value_and_grad, params, tokens_NxT1, n_N, steps)
        auto = run(partial(jax.value_and_grad(loss_fn), config=MLP), params, tokens_NxT1, n_N, steps)
    hand, auto = np.asarray(hand), np.asarray(auto)
    diff = float(np.max(np.abs(hand - auto)))
    print(f"{steps} steps: max |loss_analytic - loss_jax_grad| = {diff:.3e}, last losses {hand[-1]:.6f} {auto[-1]:.6f}")
    assert hand.shape == (steps,) and hand.dtype == np.float64
    assert diff <= 1e-10
    assert hand[-100:].mean() < hand[:100].mean()  # it learns


def test_train_mlp_cli_writes_a_run_and_samples(tiny_corpus, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    argv = ["--data", str(tiny_corpus), "--val-size", "5", "--model", "mlp", "--optimizer", "sgd", "--steps", "30"]
    assert main(["train", "--out", str(out), *argv, "--num-samples", "3"]) == 0
    printed = capsys.readouterr().out
    assert "num params: 2384" in printed  # 16 letters + BOS: 17x16 + 64x16 + 17x64
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines if "loss" in line] == list(range(30))
    assert np.isfinite(lines[-1]["val_loss"])
    assert json.loads((out / "config.json").read_text())["model"]["model"] == "mlp"
    assert printed.count("sample ") == 3
    assert main(["sample", "--run", str(out), "--num-samples", "2"]) == 0
    assert capsys.readouterr().out.count("sample ") == 2
