"""Acceptance: exact to the original microgpt.py (figures vendored from shared/reference)."""

from __future__ import annotations

import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REF_DIR, read_metrics, run_cli

from microgpt_jax.config import GPTConfig, TrainConfig
from microgpt_jax.corpus.documents import encode_docs, load_docs, shuffle_docs
from microgpt_jax.corpus.tokenizer import Tokenizer
from microgpt_jax.model.loss import loss_fn
from microgpt_jax.model.registry import param_shapes
from microgpt_jax.storage.params import load_params
from microgpt_jax.training.loop import train

DOCS_ORDER_SHA256 = "d1bb4465efc0fe91fb0fb0a76fa7f27e2819f9582415f6d47350af732cab8a62"


def as_params(state_dict: dict, dtype) -> dict:
    return {k: jnp.asarray(np.array(v), dtype) for k, v in state_dict.items()}


def max_abs_diff(params: dict, state_dict: dict) -> float:
    return max(float(np.max(np.abs(np.asarray(params[k], np.float64) - np.array(v)))) for k, v in state_dict.items())


def first_doc_batch(ref_docs_path):
    docs = load_docs(ref_docs_path)
    tokenizer = Tokenizer.from_docs(docs)
    tokens, n = encode_docs(docs, tokenizer, 16)
    return docs, tokenizer, tokens, n


def test_param_counts():
    assert sum(a * b for a, b in param_shapes(GPTConfig()).values()) == 4192
    assert sum(a * b for a, b in param_shapes(GPTConfig(block_size=8)).values()) == 4064


def test_full_corpus_order_matches_original(names_path):
    docs = shuffle_docs(load_docs(names_path), 42)
    assert len(docs) == 32033
    assert hashlib.sha256(("\n".join(docs) + "\n").encode()).hexdigest() == DOCS_ORDER_SHA256


@pytest.mark.parametrize("x64, tol", [(True, 1e-10), (False, 1e-5)])
def test_step0_loss_and_gradients(ref, ref_docs_path, x64, tol):
    docs, tokenizer, tokens, n = first_doc_batch(ref_docs_path)
    assert docs[0] == ref["step0"]["doc"] and tokenizer.vocab_size == 27
    with jax.enable_x64(x64):
        params = as_params(ref["init"], jnp.float64 if x64 else jnp.float32)
        loss, grads = jax.value_and_grad(loss_fn)(params, jnp.asarray(tokens[:1]), jnp.asarray(n[:1]), GPTConfig())
        assert abs(float(loss) - ref["step0"]["loss"]) < tol
        assert max_abs_diff(grads, ref["step0"]["grads"]) < tol


def test_float32_trace(ref, ref_docs_path):
    _, _, tokens, n = first_doc_batch(ref_docs_path)
    params = as_params(ref["init"], jnp.float32)
    params, _, losses = train(params, tokens, n, GPTConfig(), TrainConfig())
    assert losses.shape == (1000,)
    assert np.max(np.abs(losses - np.array(ref["trace"]["losses"]))) < 1e-3
    assert max_abs_diff(params, ref["trace"]["final_params"]) < 1e-3


def check_x64_run(out, ref) -> None:
    metrics = read_metrics(out)
    losses = np.array([m["loss"] for m in metrics if "loss" in m])
    assert [m["step"] for m in metrics if "loss" in m] == list(range(1000))
    assert np.max(np.abs(losses - np.array(ref["trace"]["losses"]))) < 1e-5
    params, meta = load_params(out / "params.safetensors")
    assert meta["dtype"] == "float64"
    assert max_abs_diff(params, ref["trace"]["final_params"]) < 1e-4


@pytest.mark.slow
def test_x64_trace_cli_on_reference_order(ref, ref_docs_path, tmp_path):
    """The original's 1000 steps only ever see its first 1000 documents: replay them in file order."""
    args = [
        "--init",
        str(REF_DIR / "microgpt_init.json"),
        "--optimizer",
        "adam",
        "--steps",
        "1000",
        "--val-size",
        "0",
        "--x64",
    ]
    proc = run_cli("train", "--out", str(tmp_path), "--data", str(ref_docs_path), "--no-shuffle", *args)
    assert proc.returncode == 0, proc.stderr
    assert "num params: 4192" in proc.stdout
    check_x64_run(tmp_path, ref)


@pytest.mark.slow
def test_x64_trace_cli_on_names(ref, names_path, tmp_path):
    """The acceptance command itself, on the full corpus with the default shuffle."""
    init = str(REF_DIR / "microgpt_init.json")
    args = ["--init", init, "--optimizer", "adam", "--steps", "1000", "--val-size", "0", "--x64"]
    proc = run_cli("train", "--out", str(tmp_path), "--data", str(names_path), *args)
    assert proc.returncode == 0, proc.stderr
    assert "num docs: 32033" in proc.stdout and "vocab size: 27" in proc.stdout
    check_x64_run(tmp_path, ref)
