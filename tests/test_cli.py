"""The command line end to end (in-process): train writes a run, sample reads it, bad flags are one line."""

from __future__ import annotations

import json

import pytest
from conftest import read_metrics

from microgpt_jax.cli import main
from microgpt_jax.io import load_params

SMALL_MODEL = ["--n-embd", "8", "--n-head", "2", "--block-size", "8"]


@pytest.fixture
def trained_run(tiny_corpus, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--out", str(out), "--data", str(tiny_corpus), "--val-size", "10", "--steps", "30"]
    assert main([*args, "--eval-every", "10", "--num-samples", "5"]) == 0
    return out, capsys.readouterr().out


def test_train_writes_a_run(trained_run):
    out, stdout = trained_run
    assert "num docs: 50 (40 train, 10 held out)" in stdout
    assert "vocab size: " in stdout and "num params: " in stdout and "val_loss: " in stdout
    assert stdout.count("sample ") == 5
    metrics = read_metrics(out)
    assert [m["step"] for m in metrics if "loss" in m] == list(range(30))
    assert [m["step"] for m in metrics if "val_loss" in m] == [10, 20, 30]
    info = json.loads((out / "config.json").read_text())
    assert info["model"]["block_size"] == 16 and info["train"]["optimizer"] == "adam"
    params, meta = load_params(out / "params.safetensors")
    assert meta["tokenizer"].to_meta() == info["data"]["vocab"] and "layer0.attn_wq" in params
    assert info["data"]["vocab"]["kind"] == info["data"]["tokenizer"] == "char" and info["version"] == 3


def test_sample_from_run(trained_run, capsys):
    out, _ = trained_run
    assert main(["sample", "--run", str(out), "--num-samples", "3", "--seed", "7"]) == 0
    first = capsys.readouterr().out
    assert first.count("sample ") == 3
    assert main(["sample", "--run", str(out), "--num-samples", "3", "--seed", "7"]) == 0
    assert capsys.readouterr().out == first


def test_init_from_run_params_is_checked(trained_run, tiny_corpus, tmp_path, capsys):
    out, _ = trained_run
    args = ["train", "--out", str(tmp_path / "r2"), "--data", str(tiny_corpus), "--steps", "2", "--val-size", "0"]
    assert main([*args, "--init", str(out / "params.safetensors"), "--n-embd", "8"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "differs from the init model's: n_embd 8 (init: 16)" in err
    assert not (tmp_path / "r2").exists()


def test_word_tokenizer_and_filters_on_the_command_line(tmp_path, capsys):
    corpus = tmp_path / "s.txt"
    corpus.write_text("The cat sat\nthe dog ran\na cat ran\nthe dog sat on a mat\n" * 5)
    out = tmp_path / "words"
    flags = [
        "--data",
        str(corpus),
        "--val-size",
        "4",
        "--steps",
        "20",
        "--num-samples",
        "4",
        "--top-k",
        "3",
        *SMALL_MODEL,
    ]
    assert main(["train", "--out", str(out), *flags, "--tokenizer", "word", "--lowercase", "--top-p", "0.9"]) == 0
    stdout = capsys.readouterr().out
    assert "vocab size: 9 (8 words + BOS)" in stdout
    assert "--- inference (new, hallucinated sentences, temperature 0.5, top-k 3, top-p 0.9) ---" in stdout
    vocab = {"a", "cat", "dog", "mat", "on", "ran", "sat", "the"}
    samples = [
        line.split(": ", 1)[1] if ": " in line else "" for line in stdout.splitlines() if line.startswith("sample ")
    ]
    assert len(samples) == 4 and all(set(s.split(" ")) <= vocab for s in samples if s)
    # top-k 1 is the argmax: the same sentence from any seed
    firsts = set()
    for seed in ("1", "2"):
        assert main(["sample", "--run", str(out), "--num-samples", "1", "--top-k", "1", "--seed", seed]) == 0
        firsts.add(capsys.readouterr().out)
    assert len(firsts) == 1
