"""Step 1, the MLP: its shapes and parameter counts, its gradient derived by hand against jax.grad, and the CLI."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from microgpt_jax import model
from microgpt_jax.cli import main
from microgpt_jax.config import GPTConfig
from microgpt_jax.loss import loss_fn
from microgpt_jax.model import num_params
from microgpt_jax.models import forward, init_params, param_shapes

MLP = GPTConfig(vocab_size=27, model="mlp")
# three documents of different lengths, [BOS] + doc + [BOS] padded with BOS: the mask matters
TOKENS_BxT1 = np.array(
    [[26, 3, 0, 17, 8, 0, 26, 26, 26], [26, 10, 26, 26, 26, 26, 26, 26, 26], [26, 4, 4, 1, 9, 13, 2, 14, 26]], np.int32
)
N_B = np.array([6, 2, 8], np.int32)


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


def test_gpt_init_is_the_core_init() -> None:
    key = jax.random.key(42)
    ours, core = init_params(key, GPTConfig()), model.init_params(key, GPTConfig())
    assert list(ours) == list(core)
    assert all(np.array_equal(ours[k], core[k]) for k in core)


def test_mlp_forward_is_the_formula() -> None:
    params = init_params(jax.random.key(1), MLP)
    w = {k: np.asarray(v, np.float64) for k, v in params.items()}
    want = w["mlp_fc2"] @ np.maximum(w["mlp_fc1"] @ w["wte"][4], 0)
    got = forward(params, jnp.array([[4]]), MLP)[0, 0]
    np.testing.assert_allclose(got, want, atol=1e-5)


def hand_grad(params: dict, tokens_BxT1: np.ndarray, n_B: np.ndarray) -> dict:
    """The gradient of the mean NLL derived by hand, as Step 1 of the progression does, in params' dtype."""
    wte, fc1, fc2 = params["wte"], params["mlp_fc1"], params["mlp_fc2"]
    inputs, targets = tokens_BxT1[:, :-1], tokens_BxT1[:, 1:]
    mask_BxT = jnp.arange(inputs.shape[1]) < n_B[:, None]
    emb_BxTxC = wte[inputs]
    pre_BxTx4C = emb_BxTxC @ fc1.T
    hidden_BxTx4C = jax.nn.relu(pre_BxTx4C)
    logits_BxTxV = hidden_BxTx4C @ fc2.T
    # d loss / d logits: softmax minus one-hot, over the counted positions, divided by their number
    dlogits_BxTxV = jax.nn.softmax(logits_BxTxV, axis=-1) - jax.nn.one_hot(targets, wte.shape[0], dtype=wte.dtype)
    dlogits_BxTxV = jnp.where(mask_BxT[..., None], dlogits_BxTxV, 0) / jnp.sum(mask_BxT)
    dfc2 = jnp.einsum("btv,bth->vh", dlogits_BxTxV, hidden_BxTx4C)
    dpre_BxTx4C = (dlogits_BxTxV @ fc2) * (pre_BxTx4C > 0)  # through fc2, then the relu mask
    dfc1 = jnp.einsum("bth,btc->hc", dpre_BxTx4C, emb_BxTxC)
    demb_BxTxC = dpre_BxTx4C @ fc1
    dwte = jnp.zeros_like(wte).at[inputs].add(demb_BxTxC)  # each position's row of the embedding
    return {"wte": dwte, "mlp_fc1": dfc1, "mlp_fc2": dfc2}


@pytest.mark.parametrize(("x64", "tol"), [(False, 1e-6), (True, 1e-12)])
def test_hand_gradient_equals_jax_grad(x64: bool, tol: float) -> None:
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        params = init_params(jax.random.key(7), MLP, dtype=dtype)
        tokens, n = jnp.asarray(TOKENS_BxT1), jnp.asarray(N_B)
        auto = jax.jit(jax.grad(loss_fn), static_argnums=3)(params, tokens, n, MLP)
        hand = jax.jit(hand_grad)(params, tokens, n)
        assert auto["wte"].dtype == dtype
        for name in params:
            assert float(jnp.max(jnp.abs(auto[name] - hand[name]))) <= tol, name
        # the gradient is not trivially zero: every matrix gets a real signal
        assert all(float(jnp.max(jnp.abs(hand[name]))) > 1e-3 for name in params)


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
