"""Step 0, the bigram: counting, add-k smoothing, the guide's online counting loop, its loss and sampling through
the shared code, and the CLI."""

from __future__ import annotations

import itertools
import json
import math
import string

import jax
import numpy as np
import pytest

from microgpt_jax.cli.program import main
from microgpt_jax.config import GPTConfig
from microgpt_jax.corpus.documents import encode_docs
from microgpt_jax.corpus.tokenizer import Tokenizer
from microgpt_jax.errors import UserError
from microgpt_jax.model.bigram import bigram_params, count_bigrams, online_bigram
from microgpt_jax.training.evaluation import evaluate

DOCS = ["abba", "b", "ca"]
TOK = Tokenizer.from_docs(DOCS)  # a=0 b=1 c=2, BOS=3


def test_counts_are_the_pairs_of_bos_doc_bos() -> None:
    tokens, n = encode_docs(DOCS, TOK, block_size=16)
    counts = count_bigrams(tokens, n, TOK.vocab_size)
    want = np.zeros((4, 4), np.int64)
    for doc in DOCS:
        seq = [3, *TOK.encode(doc), 3]
        for i, j in itertools.pairwise(seq):
            want[i, j] += 1
    np.testing.assert_array_equal(counts, want)
    assert counts.sum() == sum(len(d) + 1 for d in DOCS)  # padding is never counted
    # block_size cuts documents exactly as the loss does: "abba" keeps BOS a b only
    tokens, n = encode_docs(DOCS, TOK, block_size=2)
    assert count_bigrams(tokens, n, TOK.vocab_size)[3].tolist() == [1, 1, 1, 0]
    assert count_bigrams(tokens, n, TOK.vocab_size).sum() == 2 + 2 + 2


@pytest.mark.parametrize("k", [1.0, 0.5])
def test_smoothed_rows_and_held_out_nll(k: float) -> None:
    tokens, n = encode_docs(DOCS, TOK, block_size=16)
    counts = count_bigrams(tokens, n, TOK.vocab_size)
    params = bigram_params(counts, k)
    probs = np.exp(np.asarray(params["wte"], np.float64))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(probs, (counts + k) / (counts + k).sum(axis=1, keepdims=True), rtol=1e-5)
    assert probs[2, 2] > 0  # an unseen pair keeps a chance
    # the shared evaluation (loss.py through registry.forward) is the mean -log P(next | current) per token
    config = GPTConfig(vocab_size=TOK.vocab_size, model="bigram")
    want = -np.sum(counts * np.log(probs)) / counts.sum()
    assert abs(evaluate(params, tokens, n, config) - want) < 1e-5


def guide_online_counting(docs: list[str], uchars: str, steps: int) -> tuple[list[float], dict]:
    """Step 0's loop in plain Python: score docs[step % N] under add-one smoothed counts, then count it."""
    bos, vocab_size = len(uchars), len(uchars) + 1
    counts: dict[tuple[int, int], int] = {}
    losses = []
    for step in range(steps):
        tokens = [bos, *(uchars.index(ch) for ch in docs[step % len(docs)]), bos]
        pairs = list(itertools.pairwise(tokens))  # n = len(tokens) - 1 pairs, no cap
        nll = 0.0
        for i, j in pairs:
            total = sum(counts.get((i, k), 0) for k in range(vocab_size)) + vocab_size
            nll -= math.log((counts.get((i, j), 0) + 1) / total)
        losses.append(nll / len(pairs))
        for pair in pairs:
            counts[pair] = counts.get(pair, 0) + 1
    return losses, counts


@pytest.mark.parametrize(("x64", "tol"), [(True, 1e-12), (False, 1e-5)])
def test_online_counting_is_the_guides_loop(ref_docs_path, x64: bool, tol: float) -> None:
    docs = ref_docs_path.read_text().split()
    tok = Tokenizer.from_docs(docs)
    assert tok.uchars == string.ascii_lowercase and tok.bos == 26
    tokens, n = encode_docs(docs, tok, block_size=16)  # names are at most 15 letters: no document is cut
    assert n.tolist() == [len(doc) + 1 for doc in docs]
    want_losses, want_counts = guide_online_counting(docs, tok.uchars, 1000)
    with jax.enable_x64(x64):
        losses, counts = online_bigram(tokens, n, tok.vocab_size, 1000)
        losses, counts = np.asarray(losses), np.asarray(counts)
    assert losses.dtype == (np.float64 if x64 else np.float32) and np.issubdtype(counts.dtype, np.integer)
    print(f"x64={x64}: max |online_bigram - plain Python| = {np.max(np.abs(losses - want_losses)):.3e}")
    np.testing.assert_allclose(losses, want_losses, rtol=0, atol=tol)
    assert losses[0] == pytest.approx(math.log(27))  # nothing counted yet: uniform
    # 1000 steps over 1000 documents count each once: the batch count of the same documents
    np.testing.assert_array_equal(counts, count_bigrams(tokens, n, tok.vocab_size))
    assert {(i, j): c for (i, j), c in np.ndenumerate(counts) if c} == want_counts


def test_online_counting_wraps_around_the_documents() -> None:
    tokens, n = encode_docs(DOCS, TOK, block_size=16)
    losses, counts = online_bigram(tokens, n, TOK.vocab_size, 7)  # abba b ca abba b ca abba
    want_losses, _ = guide_online_counting(DOCS, TOK.uchars, 7)
    np.testing.assert_allclose(np.asarray(losses), want_losses, atol=1e-5)
    once = count_bigrams(tokens, n, TOK.vocab_size)
    np.testing.assert_array_equal(counts, 2 * once + count_bigrams(tokens[:1], n[:1], TOK.vocab_size))
    assert losses[3] < losses[0]  # "abba" again, now predicted from its own earlier counts


def test_smoothing_must_be_positive() -> None:
    with pytest.raises(UserError, match="smoothing"):
        bigram_params(np.zeros((3, 3)), 0.0)


def test_train_bigram_cli_counts_saves_and_samples(tiny_corpus, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", "--model", "bigram", "--data", str(tiny_corpus), "--val-size", "5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "num params: 289" in printed  # 17 x 17: 16 letters + BOS
    assert printed.count("sample ") == 20
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == 0 and 0 < lines[-1]["val_loss"] < np.log(17)
    assert (out / "params.safetensors").is_file()
    assert main(["sample", "--run", str(out), "--num-samples", "3", "--temperature", "1.0"]) == 0
    names = [line.split(": ", 1)[1].split("  (")[0] for line in capsys.readouterr().out.splitlines()]  # no mark
    assert len(names) == 3 and all(set(name) <= set(tiny_corpus.read_text()) for name in names)


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--model", "bigram", "--steps", "1000"], "drop --steps"),  # even at its default: it would do nothing
        (["--model", "bigram", "--optimizer", "sgd", "--lr", "0.1"], "drop --optimizer, --lr"),
        (["--model", "bigram", "--n-embd", "8"], "drop --n-embd"),
        (["--model", "mlp", "--smoothing", "0.5"], "--model mlp does not use --smoothing: drop it"),
        (["--model", "unknown"], "invalid choice 'unknown': use one of gpt, mlp, bigram"),
        (["--model", "bigram", "--smoothing", "0"], "--smoothing must be a finite number > 0"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(tiny_corpus, tmp_path, capsys, flags, says) -> None:
    argv = ["train", "--data", str(tiny_corpus), "--val-size", "5", "--out", str(tmp_path / "run"), *flags]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2
    assert says in err and err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "run").exists()  # a bad input leaves no run directory
