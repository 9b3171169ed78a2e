"""The catalogue of bad inputs: each is exit status 2, one line naming the problem, no traceback, and no
output file left behind."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from microgpt_jax.cli.program import main
from microgpt_jax.storage.params import save_params

SMALL = ["--val-size", "2", "--n-embd", "8", "--n-head", "2", "--block-size", "8", "--num-samples", "3"]


def fails(argv: list[str], capsys, match: str) -> str:
    """Run the CLI in-process; it must exit 2 with one ``error:`` line containing ``match``."""
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse
        rc = e.code
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert rc == 2, (argv, captured)
    assert "\n" not in err and err.startswith("error: ") and "Traceback" not in err, err
    assert match in err, err
    return err


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> dict[str, Path]:
    """A corpus and a small trained model exported in each format (vocabulary 'abcdefghijklmnop')."""
    d = tmp_path_factory.mktemp("good")
    corpus = d / "corpus.txt"
    corpus.write_text("\n".join(["abcdefgh", "ijklmnop", "ponmlkji", "hgfedcba"] * 3) + "\n")
    run = d / "run"
    assert main(["train", "--out", str(run), "--data", str(corpus), "--steps", "100", *SMALL]) == 0
    files = {"corpus": corpus, "run": run}
    for fmt in ("safetensors", "npz", "json"):
        files[fmt] = d / f"model.{fmt}"
        assert main(["export", "--run", str(run), "--out", str(files[fmt])]) == 0
    return files


def train_argv(out: Path, corpus: Path, *extra: str) -> list[str]:
    return ["train", "--out", str(out), "--data", str(corpus), "--steps", "100", *SMALL, *extra]


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--n-embd", "10", "--n-head", "4"], "n_embd (10) must be divisible by n_head (4)"),
        (["--block-size", "1"], "--block-size must be a whole number >= 2, got 1"),
        (["--steps", "0"], "--steps must be a whole number >= 1"),
        (["--steps", "-3"], "--steps must be a whole number >= 1"),
        (["--lr", "0"], "--lr must be a finite number > 0"),
        (["--lr", "-1"], "--lr must be a finite number > 0"),
        (["--lr", "nan"], "--lr: expected a finite number"),
        (["--lr", "inf"], "--lr: expected a finite number"),
        (["--temperature", "0"], "--temperature must be a finite number > 0"),
        (["--temperature", "-0.5"], "--temperature must be a finite number > 0"),
        (["--num-samples", "0"], "--num-samples must be a whole number >= 1"),
        (["--ckpt-every", "0"], "--ckpt-every must be a whole number >= 1"),
        (["--optimizer", "rmsprop"], "--optimizer: invalid choice 'rmsprop': use one of adam, sgd"),
        (["--tokenizer", "bpe"], "--tokenizer: invalid choice 'bpe': use one of char, word"),
        (["--top-p", "1.01"], "--top-p must be a number > 0 and <= 1"),
        (["--top-k", "2.5"], "--top-k: expected a whole number"),
    ],
)
def test_bad_train_flags(tmp_path: Path, good, capsys, extra: list[str], match: str) -> None:
    out = tmp_path / "out"
    fails(train_argv(out, good["corpus"], *extra), capsys, match)
    assert not out.exists()


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (None, "not found"),
        (b"", "no documents"),
        (b"\n  \n\n", "no documents"),
        (b"abc\n\xff\xfe\n", "line 2 is not valid UTF-8"),
    ],
)
def test_bad_data_file(tmp_path: Path, capsys, content: bytes | None, match: str) -> None:
    data, out = tmp_path / "data.txt", tmp_path / "out"
    if content is not None:
        data.write_bytes(content)
    fails(train_argv(out, data), capsys, match)
    assert not out.exists()


def test_data_path_is_a_directory(tmp_path: Path, capsys) -> None:
    fails(train_argv(tmp_path / "out", tmp_path), capsys, "is a directory")


@pytest.mark.parametrize(
    "extra",
    [
        ["--num-samples", "0"],
        ["--temperature", "0"],
        ["--temperature", "nan"],
        ["--top-k", "-1"],
        ["--top-p", "0"],
        ["--top-p", "1.5"],
        ["--top-p", "nan"],
    ],
)
def test_bad_sample_flags(good, capsys, extra: list[str]) -> None:
    # the range is the config's check, "--flag must be ..."; nan is refused by the flag's syntax, "argument --flag"
    said = f"argument {extra[0]}: expected a finite number" if extra[1] == "nan" else f"{extra[0]} must be"
    fails(["sample", "--run", str(good["run"]), *extra], capsys, said)


def corrupt(good: dict, fmt: str, how: str, tmp: Path) -> Path:
    """A damaged copy of the good model file."""
    raw = good[fmt].read_bytes()
    path = tmp / f"bad.{fmt}"
    if how == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif how == "garbage":
        path.write_bytes(bytes(range(256)) * 4)
    elif how == "empty":
        path.write_bytes(b"")
    return path


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty"])
@pytest.mark.parametrize("fmt", ["safetensors", "npz", "json"])
def test_corrupt_parameter_files(tmp_path: Path, good, capsys, fmt: str, how: str) -> None:
    bad = corrupt(good, fmt, how, tmp_path)
    match = {
        "safetensors": "not a readable safetensors file",
        "npz": "not a readable npz file",
        "json": "not valid JSON",
    }
    fails(["sample", "--params", str(bad)], capsys, match[fmt])
    out = tmp_path / "x.npz"
    fails(["export", "--params", str(bad), "--out", str(out)], capsys, match[fmt])
    assert not out.exists()
    run = tmp_path / "run"
    fails(train_argv(run, good["corpus"], "--init", str(bad)), capsys, match[fmt])
    assert not run.exists() or not list(run.iterdir())


def edited_json(good: dict, tmp: Path, edit) -> Path:
    doc = json.loads(good["json"].read_text())
    edit(doc)
    path = tmp / "edited.json"
    path.write_text(json.dumps(doc))
    return path


def _ragged(d):
    d["wte"][3] = d["wte"][3][:-1]


def _non_number(value):
    def edit(d):
        d["lm_head"][2][5] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: d.pop("wpe"), "missing 'wpe'"),
        (lambda d: d.update(extra=[[1.0]]), "unexpected 'extra'"),
        (_ragged, "'wte' is ragged: row 3 has 7 numbers, row 0 has 8"),
        (_non_number("0.5"), "'lm_head' row 2 holds '0.5', not a number"),
        (_non_number(None), "'lm_head' row 2 holds None, not a number"),
        (_non_number(True), "'lm_head' row 2 holds True, not a number"),
        (_non_number([1.0]), "'lm_head' row 2 holds [1.0], not a number"),
        (_non_number(10**400), "not a finite number"),
        (lambda d: d.update(wte=[]), "'wte' is not a list of rows"),
        (lambda d: d["__metadata__"].update(vocab=123), "bad metadata"),
        (lambda d: d["__metadata__"].update(dtype="int8"), "bad metadata"),
    ],
)
def test_bad_json_state_dicts(tmp_path: Path, good, capsys, edit, match: str) -> None:
    path = edited_json(good, tmp_path, edit)
    fails(["sample", "--params", str(path)], capsys, match)
    out = tmp_path / "x.safetensors"
    fails(["export", "--params", str(path), "--out", str(out)], capsys, match)
    assert not out.exists()


def test_nan_in_json_text(tmp_path: Path, good, capsys) -> None:
    doc = json.loads(good["json"].read_text())
    doc["wte"][0][0] = float("nan")
    path = tmp_path / "nan.json"
    path.write_text(json.dumps(doc))  # Python writes NaN, which Python's JSON parser accepts
    fails(["sample", "--params", str(path)], capsys, "not a finite number")


def test_file_without_config_cannot_be_sampled(tmp_path: Path, good, capsys) -> None:
    doc = json.loads(good["json"].read_text())
    del doc["__metadata__"]
    (tmp_path / "plain.json").write_text(json.dumps(doc))
    fails(["sample", "--params", str(tmp_path / "plain.json")], capsys, "carries no config and vocabulary")


def test_init_that_does_not_fit_the_data_or_flags(tmp_path: Path, good, capsys) -> None:
    other = tmp_path / "other.txt"
    other.write_text("qrstuvwxyzabcdef\nfedcbazyxwvutsrq\n" * 3)  # 16 characters too, but others
    # fine-tuning keeps the init model's tokenizer: a character it lacks is named with its line
    fails(train_argv(tmp_path / "a", other, "--init", str(good["npz"])), capsys, "other.txt line 1: character 'q'")
    fails(
        train_argv(tmp_path / "b", good["corpus"], "--init", str(good["npz"]), "--n-embd", "16"),
        capsys,
        "n_embd 16 (init: 8)",
    )
    fails(
        train_argv(tmp_path / "e", good["corpus"], "--init", str(good["npz"]), "--tokenizer", "word"),
        capsys,
        "--tokenizer word differs from the model's char tokenizer",
    )
    fails(train_argv(tmp_path / "f", good["corpus"], "--init", str(tmp_path)), capsys, "no params.safetensors in it")
    fails(train_argv(tmp_path / "c", good["corpus"], "--init", str(tmp_path / "none.npz")), capsys, "not found")
    fails(train_argv(tmp_path / "d", good["corpus"], "--init", str(good["corpus"])), capsys, "unknown parameter file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.txt"]


def test_file_whose_matrices_do_not_fit_its_config(tmp_path: Path, good, capsys) -> None:
    from microgpt_jax.storage.params import load_params

    params, meta = load_params(good["safetensors"])
    params["wpe"] = np.zeros((3, 8), np.float32)
    save_params(tmp_path / "p.npz", params, meta["config"], meta["tokenizer"])
    # refused from the member's .npy header, before its data is read
    fails(["sample", "--params", str(tmp_path / "p.npz")], capsys, "'wpe' declares shape (3, 8), but the file's "
          "config expects (8, 8)")  # fmt: skip


def test_resume_of_something_that_is_not_a_run(tmp_path: Path, good, capsys) -> None:
    fails(["train", "--resume", str(tmp_path)], capsys, "is not a run directory (no config.json)")
    fails(["train", "--resume", str(tmp_path / "missing")], capsys, "is not a run directory")
    fails(["train", "--resume", str(good["run"])], capsys, "has no checkpoint to resume from")
    fails(["train", "--resume", str(good["run"]), "--out", str(tmp_path)], capsys, "not allowed with argument")
    (tmp_path / "config.json").write_text("{not json")
    fails(["train", "--resume", str(tmp_path)], capsys, "is not a run config this version reads")


def test_unwritable_outputs(tmp_path: Path, good, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where a directory should be")
    fails(train_argv(blocker / "run", good["corpus"]), capsys, "cannot create the run directory")
    fails(["export", "--run", str(good["run"]), "--out", str(blocker / "m.npz")], capsys, "cannot write")
    fails(["export", "--run", str(good["run"]), "--out", str(tmp_path / "m.txt")], capsys, "name it .safetensors")
    fails(
        ["export", "--run", str(good["run"]), "--format", "json", "--out", str(tmp_path / "m.npz")],
        capsys,
        "does not end in .json",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


# ---- issue "No run is ever lost or mixed": readers, numbers and messages -------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_data_that_is_a_fifo_or_a_device_is_refused_without_blocking(tmp_path: Path, good, capsys) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # nobody writes to it: opening it for a plain read would block forever
    fails(train_argv(tmp_path / "a", fifo), capsys, "is a FIFO (named pipe), not a regular file")
    fails(train_argv(tmp_path / "b", Path("/dev/zero")), capsys, "is a device, not a regular file")
    link = tmp_path / "params.safetensors"
    link.symlink_to("/dev/zero")
    fails(["sample", "--params", str(link)], capsys, "is a device, not a regular file")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_an_npz_that_inflates_past_the_limit_is_refused_before_inflating(tmp_path: Path, good, capsys, monkeypatch):

    monkeypatch.setattr(
        "microgpt_jax.storage.params.MAX_PARAMS_BYTES", 1 << 20
    )  # 1 MiB: the same check as 4 GiB, at test size
    bomb = tmp_path / "bomb.npz"
    np.savez_compressed(bomb, wte=np.zeros((2048, 1024), np.float32))  # 8 MiB of zeros in a few KiB
    assert bomb.stat().st_size < 100_000
    fails(["sample", "--params", str(bomb)], capsys, "inflate to 8,388,")


def test_a_byte_order_mark_is_not_a_character() -> None:
    from microgpt_jax.corpus.documents import parse_lines

    assert parse_lines("\ufeffemma\nava\n".encode()) == [(1, "emma"), (2, "ava")]


@pytest.mark.parametrize("seed", ["4294967296", "8589934592", str(2**70), "-1"])
def test_seeds_map_one_to_one_onto_keys_or_are_refused(tmp_path: Path, good, capsys, seed: str) -> None:
    """--seed 8589934592 once gave --seed 0's parameters (keys keep 32 bits); 2**70 was a traceback."""
    try:
        rc = main(train_argv(tmp_path / "out", good["corpus"], "--seed", seed))
    except SystemExit as e:
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1 and "seed" in err
    assert not (tmp_path / "out").exists()


def test_values_beyond_float32_are_refused(tmp_path: Path, good, capsys) -> None:
    doc = json.loads(good["json"].read_text())
    doc["wte"][0][0] = 1e300  # fine as JSON, inf in float32
    big = tmp_path / "big.json"
    big.write_text(json.dumps(doc))
    fails(["sample", "--params", str(big)], capsys, "beyond float32's range")
    fails(["export", "--params", str(big), "--out", str(tmp_path / "x.npz")], capsys, "beyond float32's range")
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.parametrize("flags, says", [(["--lr", "1e308"], "--lr 1e+308 is outside float32's range"),
                                         (["--eps", "1e-50"], "--eps 1e-50 is outside float32's range")])  # fmt: skip
def test_numbers_beyond_the_dtype_are_one_line_without_warnings(tmp_path: Path, good, capsys, flags, says) -> None:
    fails(train_argv(tmp_path / "out", good["corpus"], *flags), capsys, says)  # one line: no RuntimeWarning
    assert not (tmp_path / "out").exists()


def test_saving_what_cannot_be_read_back_is_refused(tmp_path: Path) -> None:
    from microgpt_jax.errors import UserError

    with pytest.raises(UserError, match="2-D float32 or float64"):
        save_params(tmp_path / "a.safetensors", {"wte": np.zeros(4, np.float32)})
    with pytest.raises(UserError, match="2-D float32 or float64"):
        save_params(tmp_path / "b.npz", {"wte": np.zeros((2, 2), np.float16)})
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_is_one_line_and_status_130(monkeypatch, capsys) -> None:
    from microgpt_jax.cli.commands import COMMANDS
    from microgpt_jax.cli.program import main

    def interrupted(given):
        raise KeyboardInterrupt

    monkeypatch.setitem(COMMANDS, "sample", interrupted)
    assert main(["sample", "--params", "x.json"]) == 130
    err = capsys.readouterr().err
    assert err.startswith("interrupted") and err.count("\n") == 1


def test_an_ascii_terminal_gets_escapes_not_a_traceback(tmp_path: Path) -> None:
    from conftest import run_cli

    corpus = tmp_path / "names.txt"
    corpus.write_text("zoë\nchloé\nrenée\n" * 10, encoding="utf-8")
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--data", str(corpus), "--steps", "30", *SMALL]) == 0
    proc = run_cli("sample", "--run", str(run), "--num-samples", "40", "--temperature", "2",
                   env={"PYTHONIOENCODING": "ascii"})  # fmt: skip
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "\\x" in proc.stdout  # ë and é written as escapes


@pytest.mark.parametrize(
    "flags, says",
    [
        (["--block-size", "100000"], "lower --block-size (attention grows as its square)"),
        (["--batch-size", "10000000"], "lower --batch-size"),
    ],
)
def test_configs_that_cannot_fit_are_refused_up_front(tmp_path: Path, good, capsys, flags, says) -> None:
    """These were XLA RESOURCE_EXHAUSTED tracebacks (hundreds of GB asked) with files left behind."""
    err = fails(train_argv(tmp_path / "out", good["corpus"], *flags), capsys, says)
    assert "a training step needs about" in err and not (tmp_path / "out").exists()


def test_many_samples_stream_in_bounded_chunks(monkeypatch) -> None:
    import importlib

    import jax

    from microgpt_jax.config import GPTConfig
    from microgpt_jax.corpus.tokenizer import Tokenizer
    from microgpt_jax.model.init import init_params

    sampling = importlib.import_module("microgpt_jax.training.sampling")
    config, tok = GPTConfig(vocab_size=4, block_size=5), Tokenizer.from_docs(["abc"])
    params = init_params(jax.random.key(0), config)
    first = sampling.sample(params, config, tok, jax.random.key(1), 3, 1.0)
    monkeypatch.setattr(sampling, "MAX_SAMPLE_CHUNK", 3)
    many = sampling.sample(params, config, tok, jax.random.key(1), 8, 1.0)
    assert len(many) == 8 and many[:3] == first  # chunks of 3: the first is what one call draws
    monkeypatch.undo()
    assert sampling.chunk_rows(GPTConfig()) > 20_000 and sampling.chunk_rows(GPTConfig(block_size=100_000)) <= 10


def test_library_entry_points_check_their_inputs() -> None:
    """Token ids outside the vocabulary, 1-D tokens, no documents and a wrong wte once gave plausible numbers."""
    import jax

    from microgpt_jax.config import GPTConfig, TrainConfig
    from microgpt_jax.corpus.tokenizer import Tokenizer
    from microgpt_jax.errors import UserError
    from microgpt_jax.model.init import init_params
    from microgpt_jax.training.evaluation import evaluate
    from microgpt_jax.training.loop import train
    from microgpt_jax.training.sampling import sample

    config = GPTConfig(vocab_size=5, n_embd=8, n_head=2, block_size=4)
    params = init_params(jax.random.key(0), config)
    good_tokens, n = np.array([[4, 1, 2, 4, 4]], np.int32), np.array([3], np.int32)
    for tokens, says in ((good_tokens * 25, "outside the vocabulary 0..4"), (good_tokens - 5, "outside the vocabulary"),
                         (good_tokens[0], "expected (N, T+1) integer token ids")):  # fmt: skip
        with pytest.raises(UserError, match=re.escape(says)):
            evaluate(params, tokens, n, config)
    with pytest.raises(UserError, match="no documents"):
        train(params, good_tokens[:0], n[:0], config, TrainConfig(steps=1))
    with pytest.raises(UserError, match="'wte' has shape"):
        sample({**params, "wte": params["wte"][:3]}, config, Tokenizer.from_docs(["abcd"]), jax.random.key(0), 2)
    with pytest.raises(UserError, match="missing 'lm_head'"):
        train({k: v for k, v in params.items() if k != "lm_head"}, good_tokens, n, config, TrainConfig(steps=1))
