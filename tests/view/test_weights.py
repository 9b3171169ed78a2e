"""view/weights.py: labels, heatmaps of every matrix, the bigram grid, PCA, position similarity."""

from __future__ import annotations

import base64
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from microgpt_jax.config import GPTConfig
from microgpt_jax.corpus.load import Corpus
from microgpt_jax.corpus.tokenizer import Tokenizer
from microgpt_jax.model.bigram import count_bigrams
from microgpt_jax.model.init import init_params
from microgpt_jax.view import weights
from microgpt_jax.view.weights import (
    all_matrices,
    bigram_counts,
    bigram_grid,
    embedding_map,
    labels,
    matrix,
    pca_2d,
    position_similarity,
)

TOK = Tokenizer.from_docs(["emma", "olivia", "ava"])


def test_labels_are_the_vocabulary_then_bos() -> None:
    lab = labels(TOK)
    assert len(lab) == TOK.vocab_size and lab[TOK.bos] == "." and lab[:-1] == list(TOK.vocab)


def test_pca_of_a_rank_two_matrix_keeps_its_geometry() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 2)) @ rng.normal(size=(2, 6)) + rng.normal(size=6)
    xy, share = pca_2d(x)
    assert xy.shape == (12, 2)
    assert share.sum() == pytest.approx(1.0) and share[0] >= share[1] > 0
    xc = x - x.mean(axis=0)
    # a rank-2 cloud lies in the plane of its first two components: the projection loses nothing
    np.testing.assert_allclose(xy @ xy.T, xc @ xc.T, atol=1e-9)
    np.testing.assert_allclose(xy.mean(axis=0), 0.0, atol=1e-12)


def test_pca_of_a_one_column_embedding_pads_the_second_component() -> None:
    xy, share = pca_2d(np.arange(5.0)[:, None])
    assert xy.shape == (5, 2) and np.all(xy[:, 1] == 0) and share.tolist() == [1.0, 0.0]
    np.testing.assert_allclose(np.abs(xy[:, 0]), np.abs(np.arange(5.0) - 2))


def test_matrix_has_a_tooltip_per_value_and_its_norm() -> None:
    w = np.array([[0.5, -1.0, 2.0], [0.0, 0.25, -3.0]])
    html = matrix("w<1>", w)
    titles = re.findall(r"<title>(.*?)</title>", html)
    assert titles == [f"w&lt;1&gt;[{i}, {j}] = {w[i, j]:.6g}" for i in range(2) for j in range(3)]
    assert f'data-norm="{np.linalg.norm(w):.9g}"' in html and "(2×3)" in html and "|max| 3" in html


def test_a_tall_matrix_is_drawn_transposed_with_its_own_indices() -> None:
    w = np.arange(12.0).reshape(6, 2)
    html = matrix("t", w)
    assert "drawn transposed" in html
    assert sorted(re.findall(r"<title>(.*?)</title>", html)) == sorted(
        f"t[{i}, {j}] = {w[i, j]:.6g}" for i in range(6) for j in range(2)
    )


def test_a_large_matrix_is_a_png_of_its_shape() -> None:
    w = np.random.default_rng(1).normal(size=(40, 64))
    assert w.size > weights.MAX_SVG_CELLS
    html = matrix("big", w)
    assert "<rect" not in html and "2560 values" in html
    png = base64.b64decode(re.search(r"base64,([^\"]+)", html).group(1))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (64, 40)
    n = struct.unpack(">I", png[33:37])[0]
    raw = zlib.decompress(png[41 : 41 + n])
    assert len(raw) == 40 * (1 + 64 * 3)


def test_all_matrices_draws_each_in_order() -> None:
    config = GPTConfig(vocab_size=TOK.vocab_size, n_embd=4, n_head=2, n_layer=1, block_size=4)
    params = {k: np.asarray(v) for k, v in init_params(0, config).items()}
    html = all_matrices(params, TOK)
    assert re.findall(r'data-name="([^"]+)"', html) == list(params)


def test_bigram_counts_all_or_online() -> None:
    corpus = Corpus(Path("c"), ["ab", "ba", "aa"], [], Tokenizer.from_docs(["ab"]))
    tok, n, _, _ = corpus.encoded(8)
    V = corpus.tokenizer.vocab_size
    np.testing.assert_array_equal(bigram_counts(corpus, 8, "all", 0), count_bigrams(tok, n, V))
    online = bigram_counts(corpus, 8, "online", 4)  # documents 0, 1, 2, 0
    np.testing.assert_array_equal(online, count_bigrams(tok, n, V) + count_bigrams(tok[:1], n[:1], V))
    assert online.sum() == 3 + 3 + 3 + 3


def test_bigram_grid_shows_counts_and_probabilities() -> None:
    tok = Tokenizer.from_docs(["ab"])
    counts = np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]])
    p = (counts + 1) / (counts + 1).sum(axis=1, keepdims=True)
    html = bigram_grid(np.log(p), tok, counts)
    assert html.count("<rect") == 9
    assert "a → b: count 1, p = 0.50000, -log p = 0.6931" in html
    assert ". → a: count 1, p = 0.50000" in html and "b → .: count 1" in html
    without = bigram_grid(np.log(p), tok, None)
    assert "count" not in re.sub(r"counts in the cells", "", without) and "a → b: p = 0.50000" in without


def test_embedding_map_and_position_similarity() -> None:
    rng = np.random.default_rng(2)
    html = embedding_map(rng.normal(size=(TOK.vocab_size, 4)), TOK)
    assert html.count("<circle") == TOK.vocab_size and ">.</text>" in html and "PCA of wte" in html
    sim = position_similarity(rng.normal(size=(3, 4)))
    assert sim.count("<rect") == 9
    for i in range(3):
        assert f"cos(wpe[{i}], wpe[{i}]) = 1.0000" in sim
