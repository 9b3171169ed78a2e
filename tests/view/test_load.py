"""view/load.py: tolerant reading of metrics, run and sweep directories; new-or-seen marks."""

from __future__ import annotations

import dataclasses
import fcntl
import json
from pathlib import Path

import numpy as np
import pytest

from microgpt_jax.config import DataConfig, GPTConfig, RunConfig, SampleConfig, TrainConfig
from microgpt_jax.corpus.load import Corpus
from microgpt_jax.corpus.source import sha256_file
from microgpt_jax.corpus.tokenizer import Tokenizer
from microgpt_jax.errors import UserError
from microgpt_jax.runs.spec import RunSpec
from microgpt_jax.view.load import being_written, in_corpus, is_sweep, read_metrics, read_run, read_sweep


def test_read_metrics_skips_damaged_lines_and_says_so(tmp_path: Path) -> None:
    lines = [
        '{"step": 0, "loss": 3.5}',
        '{"step": 1, "loss": 3.25}',
        "not json",
        '{"step": 1, "val_loss": 3.0}',
        '{"step": "2", "loss": 1.0}',
        '{"step": true, "loss": 1.0}',
        '{"loss": 1.0}',
        '{"step": 3, "loss": "abc"}',
        '{"step": 3, "loss": null}',
        '{"step": 4, "loss": 2.75',
        '{"step": 4, "loss": 2.5}',
    ]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    m, notes = read_metrics(tmp_path / "metrics.jsonl")
    assert m["steps"].tolist() == [0, 1, 4] and m["loss"].tolist() == [3.5, 3.25, 2.5]
    assert m["val_steps"].tolist() == [1] and m["val_loss"].tolist() == [3.0]
    assert m["steps"].dtype == np.int64 and m["loss"].dtype == np.float64
    assert notes == ["7 lines of metrics.jsonl could not be read and were left out"]


def test_read_metrics_of_a_clean_or_missing_file(tmp_path: Path) -> None:
    (tmp_path / "m.jsonl").write_text('{"step": 0, "loss": 1.0}\n')
    assert read_metrics(tmp_path / "m.jsonl")[1] == []
    (tmp_path / "one.jsonl").write_text('{"step": 0, "loss": 1.0}\nxx\n')
    assert read_metrics(tmp_path / "one.jsonl")[1] == ["1 line of one.jsonl could not be read and was left out"]
    m, notes = read_metrics(tmp_path / "gone.jsonl")
    assert all(len(v) == 0 for v in m.values()) and len(notes) == 1 and "could not be read" in notes[0]


def test_is_sweep(tmp_path: Path) -> None:
    assert not is_sweep(tmp_path)
    (tmp_path / "results.json").write_text("[]")
    assert is_sweep(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    assert not is_sweep(tmp_path)  # a run directory, whatever else it holds


def test_in_corpus_marks_train_held_out_and_new() -> None:
    corpus = Corpus(Path("c"), ["emma", "ava"], ["mia"], Tokenizer.from_docs(["emma", "ava", "mia"]))
    assert in_corpus(["ava", "mia", "zoe", "emm"], corpus) == ["train", "held-out", "new", "new"]
    assert in_corpus(["ava", "x"], None) == [None, None]


def test_being_written_sees_the_writer_lock(tmp_path: Path) -> None:
    assert not being_written(tmp_path)
    (tmp_path / ".lock").write_text("")
    assert not being_written(tmp_path)
    with open(tmp_path / ".lock") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        assert being_written(tmp_path)
    assert not being_written(tmp_path)


def test_read_sweep_rows_losses_and_notes(tmp_path: Path) -> None:
    rows = [{"id": 0, "lr": 0.1, "val_loss": 2.0}, {"id": 1, "lr": 0.3, "val_loss": None}]
    (tmp_path / "results.json").write_text(json.dumps(rows))
    s = read_sweep(tmp_path)
    assert s["rows"] == rows and s["losses"] == {} and "no curves" in s["notes"][0]
    np.savez(tmp_path / "losses.npz", member0=np.array([3.0, 2.0]), member1=np.array([3.0]))
    s = read_sweep(tmp_path)
    assert s["notes"] == [] and sorted(s["losses"]) == [0, 1] and s["losses"][0].tolist() == [3.0, 2.0]
    (tmp_path / "losses.npz").write_bytes(b"damaged")
    assert "could not be read" in read_sweep(tmp_path)["notes"][0]


@pytest.mark.parametrize("text", ["{", '{"a": 1}', '[{"id": 0}]', "[1]"])
def test_read_sweep_refuses_what_is_not_a_sweeps_results(tmp_path: Path, text: str) -> None:
    (tmp_path / "results.json").write_text(text)
    with pytest.raises(UserError, match="not a sweep's results"):
        read_sweep(tmp_path)


def test_read_run_refuses_what_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a directory"):
        read_run(tmp_path / "missing")
    with pytest.raises(UserError, match="neither a run directory"):
        read_run(tmp_path)


def test_read_run_without_params_or_corpus_has_notes(tmp_path: Path) -> None:
    spec = RunSpec(
        GPTConfig(vocab_size=4, n_embd=8, n_head=2, block_size=4),
        TrainConfig(steps=10),
        DataConfig(path=str(tmp_path / "gone.txt"), val_size=1, tokenizer="char"),
        RunConfig(),
        SampleConfig(),
        Tokenizer.from_docs(["abc"]),
        "0" * 64,
    )
    (tmp_path / "config.json").write_text(spec.to_json())
    (tmp_path / "metrics.jsonl").write_text('{"step": 0, "loss": 1.5}\nbad\n')
    run = read_run(tmp_path)
    assert run["spec"] == spec and run["params"] is None and run["corpus"] is None and not run["training"]
    assert run["metrics"]["loss"].tolist() == [1.5]
    notes = " | ".join(run["notes"])
    assert "1 line of metrics.jsonl" in notes and "no parameters yet" in notes and "not readable here" in notes
    assert not any("not readable" in n for n in read_run(tmp_path, with_corpus=False)["notes"])
    corpus = tmp_path / "c.txt"
    corpus.write_text("abc\ncab\n")
    changed = read_run_with_data(tmp_path, spec, corpus, "0" * 64)
    assert any("changed since the run" in n for n in changed["notes"]) and changed["corpus"] is None
    same = read_run_with_data(tmp_path, spec, corpus, sha256_file(corpus))
    assert not any("corpus" in n for n in same["notes"])
    assert sorted([*same["corpus"].train_docs, *same["corpus"].val_docs]) == ["abc", "cab"]


def read_run_with_data(run_dir: Path, spec: RunSpec, corpus: Path, sha: str) -> dict:
    data = dataclasses.replace(spec.data, path=str(corpus))
    (run_dir / "config.json").write_text(dataclasses.replace(spec, data=data, data_sha256=sha).to_json())
    return read_run(run_dir)


def test_a_cut_short_losses_file_is_a_note(tmp_path) -> None:
    import io
    import json

    from microgpt_jax.view.load import read_sweep

    (tmp_path / "results.json").write_text(json.dumps([{"id": 0, "val_loss": 2.0}]))
    buf = io.BytesIO()
    np.savez_compressed(buf, member0=np.ones(50, np.float32))
    (tmp_path / "losses.npz").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    sweep = read_sweep(tmp_path)
    assert sweep["losses"] == {} and any("could not be read" in n for n in sweep["notes"])
