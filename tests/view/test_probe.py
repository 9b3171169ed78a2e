"""view/probe.py: the numpy forward equals the model's, attention rows are causal softmaxes."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from microgpt_jax.config import GPTConfig
from microgpt_jax.corpus.tokenizer import Tokenizer
from microgpt_jax.model import registry
from microgpt_jax.model.dtypes import precision
from microgpt_jax.model.init import init_params
from microgpt_jax.view.probe import logits_and_attention, probe_run

TOK = Tokenizer.from_docs(["emma", "olivia", "ava"])
CONFIGS = {
    "gpt": GPTConfig(vocab_size=TOK.vocab_size, n_embd=8, n_head=2, n_layer=2, block_size=8),
    "mlp": GPTConfig(vocab_size=TOK.vocab_size, n_embd=8, block_size=8, model="mlp"),
    "bigram": GPTConfig(vocab_size=TOK.vocab_size, block_size=8, model="bigram"),
}


def _params(model: str) -> dict[str, np.ndarray]:
    config = CONFIGS[model]
    with precision(True):
        params = init_params(3, config, std=0.5)
        if model == "bigram":  # counted: starts at zeros; give it some numbers
            rng = np.random.default_rng(0)
            params = {k: jnp.asarray(rng.normal(size=v.shape)) for k, v in params.items()}
    return {k: np.asarray(v, np.float64) for k, v in params.items()}


@pytest.mark.parametrize("model", ["gpt", "mlp", "bigram"])
def test_logits_equal_the_models_forward(model: str) -> None:
    config, params = CONFIGS[model], _params(model)
    tokens = np.array([TOK.bos, *TOK.encode("olivia")])
    logits, attention = logits_and_attention(params, tokens, config)
    with precision(True):
        want = registry.forward({k: jnp.asarray(v) for k, v in params.items()}, jnp.asarray(tokens[None]), config)
    assert logits.shape == (len(tokens), config.vocab_size)
    np.testing.assert_allclose(logits, np.asarray(want)[0], rtol=1e-9, atol=1e-9)
    if model == "gpt":
        assert attention.shape == (2, 2, len(tokens), len(tokens))
    else:
        assert attention.shape == (0, 0, len(tokens), len(tokens))


def test_attention_rows_sum_to_one_and_are_causal() -> None:
    tokens = np.array([TOK.bos, *TOK.encode("emma")])
    _, w = logits_and_attention(_params("gpt"), tokens, CONFIGS["gpt"])
    np.testing.assert_allclose(w.sum(axis=-1), 1.0, rtol=1e-12)
    T = len(tokens)
    assert np.all(w[..., np.triu(np.ones((T, T), bool), k=1)] == 0)
    assert np.all(w[..., 0, 0] == 1.0)  # the first position sees only itself
    assert np.all(w >= 0)


def test_probe_run_scores_bos_text_bos() -> None:
    config, params = CONFIGS["gpt"], _params("gpt")
    r = probe_run(params, config, TOK, "ava")
    assert r["ids"] == [TOK.bos, *TOK.encode("ava"), TOK.bos]
    assert r["tokens"] == ["<BOS>", "a", "v", "a", "<BOS>"]
    assert r["probs_TxV"].shape == (4, config.vocab_size)
    np.testing.assert_allclose(r["probs_TxV"].sum(axis=1), 1.0, rtol=1e-12)
    want = -np.log(r["probs_TxV"][np.arange(4), r["ids"][1:]])
    np.testing.assert_allclose(r["nll_T"], want, rtol=1e-9)
    assert r["nll"] == pytest.approx(float(want.mean()))
    assert r["attention_LxHxTxT"].shape == (2, 2, 4, 4)
