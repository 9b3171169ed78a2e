"""Property-based: arbitrary text through the data loader and tokenizer, arbitrary bytes through load_params.
Only the documented error (UserError) may ever escape."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microgpt_jax.config import GPTConfig
from microgpt_jax.corpus.documents import encode_docs, load_docs, parse_lines
from microgpt_jax.corpus.tokenizer import Tokenizer
from microgpt_jax.errors import UserError
from microgpt_jax.model.registry import param_shapes
from microgpt_jax.storage.params import check_params, load_params, params_from_bytes, params_to_bytes

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CONFIG = GPTConfig(vocab_size=4, n_embd=4, n_head=2, block_size=3)
GOOD_PARAMS = {k: np.arange(np.prod(s), dtype=np.float32).reshape(s) / 7 for k, s in param_shapes(CONFIG).items()}
GOOD = {fmt: params_to_bytes(GOOD_PARAMS, fmt, CONFIG, "abc") for fmt in ("safetensors", "npz", "json")}


@FAST
@given(st.text())
def test_text_through_loader_and_tokenizer(text: str) -> None:
    try:
        docs = [doc for _, doc in parse_lines(text.encode("utf-8"))]
    except UserError as e:
        assert "no documents" in str(e)
        return
    assert all(d and d == d.strip() and "\n" not in d for d in docs)
    tok = Tokenizer.from_docs(docs)
    assert tok.vocab_size == len(set("".join(docs))) + 1
    for d in docs:
        assert tok.decode(tok.encode(d)) == d
    tokens, n = encode_docs(docs, tok, 4)
    assert tokens.shape == (len(docs), 5) and np.all((n >= 1) & (n <= 4))
    assert np.all(tokens[:, 0] == tok.bos)


@FAST
@given(st.text(min_size=1), st.text(min_size=1))
def test_tokenizer_rejects_only_with_user_error(vocab_text: str, other: str) -> None:
    tok = Tokenizer.from_docs([vocab_text])
    try:
        ids = tok.encode(other)
    except UserError as e:
        assert "is not in the vocabulary" in str(e)
        assert set(other) - set(tok.uchars)
        return
    assert tok.decode(ids) == other


@FAST
@given(st.binary(max_size=300))
def test_bytes_through_the_data_loader(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "data.txt"
        path.write_bytes(raw)
        try:
            docs = load_docs(path)
        except UserError:
            return
        assert docs and all(isinstance(x, str) and x for x in docs)


def check_loaded(result) -> None:
    """Whatever loads is float matrices that are finite and fit the config the file names."""
    params, meta = result
    for v in params.values():
        assert v.ndim == 2 and np.issubdtype(v.dtype, np.floating) and np.all(np.isfinite(v))
    if "config" in meta:
        check_params(params, meta["config"])


@FAST
@pytest.mark.parametrize("fmt", ["safetensors", "npz", "json"])
@given(raw=st.binary(max_size=2000))
def test_arbitrary_bytes_to_load_params(fmt: str, raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"p.{fmt}"
        path.write_bytes(raw)
        try:
            check_loaded(load_params(path))
        except UserError:
            pass


@FAST
@pytest.mark.parametrize("fmt", ["safetensors", "npz", "json"])
@given(data=st.data())
def test_damaged_good_files(fmt: str, data) -> None:
    """Cut a good file short, or change some of its bytes: a UserError or a file that is still sound."""
    raw = bytearray(GOOD[fmt])
    if data.draw(st.booleans(), label="truncate"):
        raw = raw[: data.draw(st.integers(0, len(raw) - 1), label="length")]
    else:
        for _ in range(data.draw(st.integers(1, 4), label="edits")):
            i = data.draw(st.integers(0, len(raw) - 1), label="at")
            raw[i] = data.draw(st.integers(0, 255), label="byte")
    try:
        check_loaded(params_from_bytes(bytes(raw), fmt))
    except UserError:
        pass


@FAST
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
        max_leaves=20,
    )
)
def test_arbitrary_json_values(value) -> None:
    import json

    for doc in (value, {"wte": value}, {"__metadata__": value}, {"wte": [[1.0]], "__metadata__": {"config": value}}):
        try:
            check_loaded(params_from_bytes(json.dumps(doc).encode(), "json"))
        except UserError:
            pass
