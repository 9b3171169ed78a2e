"""view/inference.py: the probe table, the attention maps, the samples table."""

from __future__ import annotations

import re

import numpy as np

from microgpt_jax.config import GPTConfig
from microgpt_jax.corpus.tokenizer import Tokenizer
from microgpt_jax.model.init import init_params
from microgpt_jax.view.inference import MAX_BARS, attention_maps, probe_table, samples_table
from microgpt_jax.view.probe import probe_run


def _probe(tok: Tokenizer, text: str, n_layer: int = 2) -> dict:
    config = GPTConfig(vocab_size=tok.vocab_size, n_embd=8, n_head=2, n_layer=n_layer, block_size=8)
    params = {k: np.asarray(v) for k, v in init_params(1, config, std=0.5).items()}
    return probe_run(params, config, tok, text)


def test_probe_table_has_each_tokens_p_and_escapes_the_text() -> None:
    tok = Tokenizer.from_docs(["a<b&", "ab"])
    result = _probe(tok, "a<&")
    html = probe_table(result, tok)
    rows = html.split("<tr><td>")[1:]
    assert len(rows) == 4  # BOS + 3 characters + BOS: 4 predictions
    for t, row in enumerate(rows):
        p = float(result["probs_TxV"][t][result["ids"][t + 1]])
        assert f'<td title="{p:.8g}">{p:.4f}</td>' in row
        assert f'<td title="{result["nll_T"][t]:.8g}">' in row
        assert row.count("<rect") == tok.vocab_size and row.count('fill="#d62728"') == 1  # the true token in red
    assert "<code>&lt;</code>" in html and "<code>&amp;</code>" in html and "<code>&lt;BOS&gt;</code>" in html
    assert "<code><</code>" not in html
    assert f'data-nll="{result["nll"]:.9g}"' in html


def test_probe_table_of_a_large_vocabulary_shows_the_most_likely() -> None:
    words = [f"w{i}" for i in range(40)]
    tok = Tokenizer.from_docs([" ".join(words)], kind="word")
    result = _probe(tok, "w1 w2", n_layer=1)
    html = probe_table(result, tok)
    for row in html.split("<tr><td>")[1:]:
        assert row.count("<rect") == MAX_BARS
        assert row.count('fill="#d62728"') <= 1  # the true token is red only when among the most likely


def test_attention_maps_one_figure_per_layer_and_head() -> None:
    tok = Tokenizer.from_docs(["emma"])
    result = _probe(tok, "emma")
    html = attention_maps(result)
    assert re.findall(r'data-layer="(\d)" data-head="(\d)"', html) == [("0", "0"), ("0", "1"), ("1", "0"), ("1", "1")]
    T = len(result["ids"]) - 1
    assert html.count("<rect") == 2 * 2 * T * T
    w = result["attention_LxHxTxT"][1, 0, 2, 1]
    assert f"layer 1 head 0: 2:m attends to 1:e with weight {w:.5f}" in html
    assert "<h3" not in attention_maps({**result, "attention_LxHxTxT": np.zeros((0, 0, T, T))})


def test_samples_table_marks_and_escapes() -> None:
    html = samples_table(
        {1.0: ["emma", "<b>", ""], 0.5: ["ava"]},
        {1.0: ["train", "new", "held-out"], 0.5: [None]},
    )
    assert "temperature 1" in html and "temperature 0.5" in html
    assert "1 new of 3" in html and "1 samples" in html
    assert "&lt;b&gt;" in html and "<b>" not in html and "(empty)" in html
    assert 'class="s-train"' in html and "in training data" in html and "in held-out data" in html
    assert "corpus unknown" in html and 'class="s-None"' in html
