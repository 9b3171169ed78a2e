"""The run library: a run directory from Python without argparse, and every check before the first file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from microgpt_jax.cli.program import main
from microgpt_jax.config import DataConfig, GPTConfig, RunConfig, SampleConfig, TrainConfig
from microgpt_jax.errors import UserError
from microgpt_jax.runs import fresh
from microgpt_jax.runs.load import load_run, sample_model
from microgpt_jax.runs.loop import RunResult
from microgpt_jax.runs.resume import resume_run

SMALL = GPTConfig(n_embd=8, n_head=2, block_size=8)


def test_train_run_writes_a_run_that_loads_back(tiny_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = fresh.train_run(
        out, SMALL, TrainConfig(steps=12), DataConfig(path=tiny_corpus, val_size=10),
        RunConfig(eval_every=6), SampleConfig(num_samples=4), verbose=False,
    )  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == [".lock", "config.json", "metrics.jsonl", "params.safetensors"]
    info = json.loads((out / "config.json").read_text())
    assert sorted(info) == ["data", "init", "model", "run", "sample", "step", "train", "version"]  # no raw flags
    assert info["step"] is None  # configs not built from one of the guide's steps
    assert info["train"]["lr"] == 0.01 and info["data"]["path"] == str(tiny_corpus.resolve())
    assert len(result.losses) == 12 and result.val_loss is not None and len(result.samples) == 4
    loaded = load_run(out)
    assert loaded.config == result.config and loaded.tokenizer == result.tokenizer
    for k, v in result.params.items():
        np.testing.assert_array_equal(loaded.params[k], np.asarray(v))
    # sampling the run with its own seed gives the names its training printed
    assert sample_model(loaded, SampleConfig(num_samples=4)) == result.samples


def test_library_and_cli_runs_are_the_same_run(tiny_corpus: Path, tmp_path: Path, capsys) -> None:
    flags = ["--data", str(tiny_corpus), "--val-size", "10", "--steps", "7", "--n-embd", "8", "--n-head", "2"]
    assert main(["train", "--out", str(tmp_path / "cli"), *flags, "--block-size", "8"]) == 0
    assert "wrote the run to" in capsys.readouterr().out.strip().splitlines()[-1]
    fresh.train_run(tmp_path / "lib", SMALL, TrainConfig(steps=7), DataConfig(path=tiny_corpus, val_size=10),
                  verbose=False)  # fmt: skip
    for name in ("config.json", "metrics.jsonl", "params.safetensors"):
        assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "lib" / name).read_bytes(), name


@pytest.mark.parametrize(
    "flags, says",
    [
        (["--batch-size", "3", "--devices", "2"], "--devices 2: there are 1 device(s)"),
        (["--devices", "99"], "--devices 99"),
        (["--b1", "1"], "--b1 must be in [0, 1)"),
        (["--step", "10"], "--step: invalid choice '10': the guide's steps are 0, 1, 2, 3, 4, 5"),
        (["--ste", "10"], "unrecognized arguments: --ste"),  # no abbreviations
        (["--init", "missing.json"], "not found"),
        (["--model", "mlp", "--n-head", "2"], "--model mlp does not use --n-head"),
        (["--model", "mlp", "--dropout", "0.1"], "--model mlp does not use --dropout"),
        (["--optimizer", "sgd", "--weight-decay", "0.1"], "weight_decay is AdamW's: use --optimizer adam"),
        (["--steps", "10", "--warmup", "10"], "must be shorter than the run"),
        (["--dropout", "1"], "--dropout must be in [0, 1)"),
    ],
)
def test_a_bad_run_leaves_no_directory(tiny_corpus: Path, tmp_path: Path, capsys, flags: list[str], says: str) -> None:
    out = tmp_path / "run"
    try:
        code = main(["train", "--out", str(out), "--data", str(tiny_corpus), "--val-size", "10", *flags])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and says in err, err
    assert not out.exists()


def test_empty_out_is_refused(tiny_corpus: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="`out` is empty"):
        fresh.train_run("", SMALL, TrainConfig(steps=2), DataConfig(path=tiny_corpus, val_size=10), verbose=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.txt"]


def test_counted_model_is_a_run_too(tiny_corpus: Path, tmp_path: Path) -> None:
    data = DataConfig(path=tiny_corpus, val_size=10)
    result = fresh.train_run(
        tmp_path / "bigram", GPTConfig(model="bigram"), data=data, sample=SampleConfig(num_samples=3), verbose=False
    )
    assert result.val_loss is not None and len(result.samples) == 3
    assert load_run(tmp_path / "bigram").config.model == "bigram"


# a small word corpus: capitalised words lower-case into the vocabulary; the questions use only its words
SENTENCES = [
    "The cat sat on the mat",
    "the dog can run",
    "a cat ran to the dog",
    "can the dog sit",
    "the mat is red",
] * 6
QUESTIONS = ["can the cat sit", "can the dog run", "is the mat red", "can a cat sit on the mat"] * 4
WORDS = GPTConfig(n_embd=8, n_head=2, block_size=8)


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def word_run(tmp_path_factory) -> RunResult:
    """A word-level run of the sentences (one per module: every test that fine-tunes starts from it)."""
    tmp_path = tmp_path_factory.mktemp("words")
    data = DataConfig(path=_write(tmp_path / "sentences.txt", SENTENCES), val_size=5, tokenizer="word", lowercase=True)
    return fresh.train_run(tmp_path / "pre", WORDS, TrainConfig(steps=40), data, sample=SampleConfig(num_samples=6),
                         verbose=False)  # fmt: skip


def test_word_run_carries_its_tokenizer(word_run: RunResult, tmp_path: Path) -> None:
    tok = word_run.tokenizer
    assert tok.kind == "word" and tok.vocab == tuple(sorted({w for s in SENTENCES for w in s.lower().split(" ")}))
    assert word_run.config.vocab_size == len(tok.vocab) + 1
    info = json.loads((word_run.out / "config.json").read_text())
    assert info["version"] == 3 and info["data"]["tokenizer"] == "word" and info["data"]["lowercase"] is True
    assert info["data"]["vocab"] == {"kind": "word", "vocab": list(tok.vocab)}
    # every sample is made of vocabulary words (or is empty: BOS first)
    assert all(set(s.split(" ")) <= set(tok.vocab) for s in word_run.samples if s)
    loaded = load_run(word_run.out)
    assert loaded.tokenizer == tok and sample_model(loaded, SampleConfig(num_samples=6)) == word_run.samples
    filtered = sample_model(loaded, SampleConfig(num_samples=6, top_k=3, top_p=0.9))
    assert all(set(s.split(" ")) <= set(tok.vocab) for s in filtered if s)
    greedy = {sample_model(loaded, SampleConfig(num_samples=3, top_k=1, seed=s))[0] for s in range(3)}
    assert len(greedy) == 1  # top-k 1 is the argmax whatever the seed


def test_fine_tune_keeps_the_init_tokenizer_and_architecture(word_run: RunResult, tmp_path: Path) -> None:
    from microgpt_jax.corpus.documents import encode_docs
    from microgpt_jax.corpus.source import sha256_file
    from microgpt_jax.model.loss import loss_fn

    questions = DataConfig(path=_write(tmp_path / "q.txt", QUESTIONS), val_size=0, shuffle_seed=None)
    ft = fresh.train_run(tmp_path / "ft", None, TrainConfig(steps=10, lr=0.001), questions, RunConfig(ckpt_every=4),
                       init=word_run.out, verbose=False)  # fmt: skip
    assert ft.tokenizer == word_run.tokenizer and ft.config == word_run.config  # not the questions' own words
    info = json.loads((tmp_path / "ft" / "config.json").read_text())
    params_file = word_run.out / "params.safetensors"
    assert info["init"] == {
        "path": str(params_file.resolve()),
        "sha256": sha256_file(params_file),
        "run": str(word_run.out.resolve()),
    }
    assert info["data"]["tokenizer"] == "word"
    # step 0 trains the init model: its loss is the pre-trained parameters' loss on the first question
    tokens, n = encode_docs(QUESTIONS[:1], word_run.tokenizer, WORDS.block_size)
    first = float(loss_fn({k: np.asarray(v) for k, v in word_run.params.items()}, tokens, n, word_run.config))
    assert abs(ft.losses[0] - first) < 1e-5
    # a fine-tuned run resumes with its init's tokenizer: from the step-8 checkpoint to the same parameters
    again = resume_run(tmp_path / "ft", verbose=False)
    for k, v in ft.params.items():
        np.testing.assert_array_equal(np.asarray(again.params[k]), np.asarray(v))


def test_word_run_from_the_command_line_is_the_library_run(word_run: RunResult, tmp_path: Path, capsys) -> None:
    """The same run as the fixture's, by flags (so the same compiled programs): the same parameters; the sampling
    flags --top-k and --top-p in train and sample."""
    corpus = word_run.spec.data.path
    out = tmp_path / "cli"
    flags = ["--data", corpus, "--val-size", "5", "--tokenizer", "word", "--lowercase", "--steps", "40"]
    model = ["--n-embd", "8", "--n-head", "2", "--block-size", "8"]
    assert (
        main(["train", "--out", str(out), *flags, *model, "--num-samples", "6", "--top-k", "3", "--top-p", "0.9"]) == 0
    )
    stdout = capsys.readouterr().out
    assert f"vocab size: {word_run.config.vocab_size} ({word_run.config.vocab_size - 1} words + BOS)" in stdout
    assert "--- inference (sampled sentences, temperature 0.5, top-k 3, top-p 0.9) ---" in stdout
    assert (out / "params.safetensors").read_bytes() == (word_run.out / "params.safetensors").read_bytes()
    samples = [line.split(": ", 1)[-1] for line in stdout.splitlines() if line.startswith("sample ")]
    assert samples == sample_model(load_run(out), SampleConfig(num_samples=6, top_k=3, top_p=0.9))
    # top-k 1 is the argmax: the same sentences from any seed
    firsts = set()
    for seed in ("1", "2"):
        assert main(["sample", "--run", str(out), "--num-samples", "3", "--top-k", "1", "--seed", seed]) == 0
        firsts.add(capsys.readouterr().out)
    assert len(firsts) == 1


@pytest.mark.parametrize(
    ("line3", "lowercase", "says"),
    [
        ("can the zebra run", True, "q.txt line 3: word 'zebra' is not in the model's vocabulary (14 words):"),
        ("Can the dog run", False, "q.txt line 3: word 'Can' is not in the model's vocabulary (14 words) (`lowercase`"),
        ("can the  dog run", True, "q.txt line 3: 'can the  dog run' has an empty word at word 3"),
    ],
)
def test_fine_tune_names_what_the_init_vocabulary_lacks(
    word_run: RunResult, tmp_path: Path, line3: str, lowercase: bool, says: str
) -> None:
    data = DataConfig(path=_write(tmp_path / "q.txt", ["can the cat sit", "", line3]), val_size=0, lowercase=lowercase)
    with pytest.raises(UserError) as e:
        fresh.train_run(tmp_path / "ft", None, TrainConfig(steps=2), data, init=word_run.out, verbose=False)
    assert says in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert not (tmp_path / "ft").exists()
