"""Parameter files: exact round trips in safetensors, npz and json, the json layout, export and --init."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load as st_load

from microgpt_jax.cli.program import main
from microgpt_jax.config import GPTConfig
from microgpt_jax.corpus.tokenizer import Tokenizer
from microgpt_jax.errors import UserError
from microgpt_jax.model.registry import param_shapes
from microgpt_jax.storage.params import load_params, params_to_bytes, save_params

CONFIG = GPTConfig(vocab_size=5, n_layer=2, n_embd=8, n_head=2, block_size=4)
VOCAB = '"a c'  # a quote and a space: the vocabulary must survive every format
TOKENIZERS = {
    "char": Tokenizer("char", VOCAB),
    "word": Tokenizer("word", ('"', "a\tb", "naïve", "\\u00e9")),  # a tab, a non-ASCII letter, a backslash
}
LEGACY = Path(__file__).resolve().parents[1] / "data" / "legacy_v2"  # written by the code before the word tokenizer
SMALL = ["--val-size", "2", "--n-embd", "8", "--n-head", "2", "--block-size", "8", "--num-samples", "3"]


def awkward_params(dtype: str, seed: int = 0) -> dict[str, np.ndarray]:
    """Random matrices with the hard cases of float printing in them: -0.0, subnormals, extremes."""
    rng = np.random.default_rng(seed)
    info = np.finfo(dtype)
    params = {}
    for name, shape in param_shapes(CONFIG).items():
        a = (rng.standard_normal(shape) * 10.0 ** rng.integers(-30, 30, shape)).astype(dtype)
        a.flat[:4] = [-0.0, info.smallest_subnormal, info.max, -info.tiny]
        params[name] = a
    return params


@pytest.mark.parametrize("kind", ["char", "word"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("fmt", ["safetensors", "npz", "json"])
def test_round_trip_is_bitwise(tmp_path: Path, fmt: str, dtype: str, kind: str) -> None:
    params = awkward_params(dtype)
    tokenizer = TOKENIZERS[kind]
    path = save_params(tmp_path / f"p.{fmt}", params, CONFIG, tokenizer)
    loaded, meta = load_params(path)
    assert list(loaded) == list(params) if fmt != "safetensors" else sorted(loaded) == sorted(params)
    for k, v in params.items():
        assert loaded[k].dtype == v.dtype and loaded[k].shape == v.shape
        assert loaded[k].tobytes() == v.tobytes(), k  # bitwise, -0.0 and subnormals included
    assert meta == {"config": CONFIG, "tokenizer": tokenizer, "dtype": dtype}
    assert save_params(tmp_path / f"q.{fmt}", loaded, CONFIG, tokenizer).read_bytes() == path.read_bytes()


def test_json_is_the_microgpt_layout(tmp_path: Path) -> None:
    params = awkward_params("float32")
    doc = json.loads(save_params(tmp_path / "p.json", params, CONFIG, VOCAB).read_text())
    meta = doc.pop("__metadata__")
    assert list(doc) == list(param_shapes(CONFIG))  # the original's state_dict order
    for name, (nout, nin) in param_shapes(CONFIG).items():
        rows = doc[name]
        assert len(rows) == nout and all(len(r) == nin and all(type(x) is float for x in r) for r in rows)
        # Python floats that equal the float32 values exactly: the original can fill its Values from them
        assert np.array_equal(np.array(rows, np.float64), params[name].astype(np.float64))
    assert meta["config"] == CONFIG.to_dict() and meta["dtype"] == "float32"
    assert meta["vocab"] == {"kind": "char", "vocab": list(VOCAB)}  # a string stands for a char tokenizer


def test_plain_microgpt_json_loads_as_float64(tmp_path: Path) -> None:
    """A state_dict dumped by the original ({name: rows of floats}, no metadata) is read as it is."""
    rows = {
        name: [[0.5 * i - j for j in range(nin)] for i in range(nout)]
        for name, (nout, nin) in param_shapes(CONFIG).items()
    }
    (tmp_path / "sd.json").write_text(json.dumps(rows))
    params, meta = load_params(tmp_path / "sd.json")
    assert meta == {} and all(v.dtype == np.float64 for v in params.values())
    assert params["wte"][3, 2] == 1.5 - 2


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "p.npz"
    save_params(path, awkward_params("float32"), CONFIG, VOCAB)
    before = path.read_bytes()

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.replace", full_disk)
    with pytest.raises(UserError, match="No space left"):
        save_params(path, awkward_params("float32", seed=1), CONFIG, VOCAB)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["p.npz"]


def test_params_to_bytes_refuses_mixed_dtypes() -> None:
    params = awkward_params("float32")
    params["wte"] = params["wte"].astype(np.float64)
    with pytest.raises(UserError, match="mix dtypes"):
        params_to_bytes(params, "npz")


def test_export_and_sample_from_the_file_alone(tmp_path: Path, tiny_corpus: Path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--data", str(tiny_corpus), "--steps", "100", *SMALL]) == 0
    capsys.readouterr()
    assert main(["sample", "--run", str(run), "--seed", "3", "--num-samples", "3"]) == 0
    expected = capsys.readouterr().out.replace("  (new)", "").replace("  (in training data)", "")  # a file: no marks
    ref = st_load((run / "params.safetensors").read_bytes())
    for fmt in ("safetensors", "npz", "json"):
        out = tmp_path / "elsewhere" / f"model.{fmt}"
        out.parent.mkdir(exist_ok=True)
        assert main(["export", "--run", str(run), "--format", fmt, "--out", str(out)]) == 0
        assert f"wrote {out}" in capsys.readouterr().out
        params, meta = load_params(out)
        assert all(params[k].tobytes() == v.tobytes() for k, v in ref.items()) and set(params) == set(ref)
        assert meta["tokenizer"].to_meta() == json.loads((run / "config.json").read_text())["data"]["vocab"]
        assert main(["sample", "--params", str(out), "--seed", "3", "--num-samples", "3"]) == 0
        assert capsys.readouterr().out == expected
    # file to file, the format taken from the suffix
    assert (
        main(["export", "--params", str(tmp_path / "elsewhere" / "model.json"), "--out", str(tmp_path / "x.npz")]) == 0
    )
    assert load_params(tmp_path / "x.npz")[0]["wte"].tobytes() == ref["wte"].tobytes()


def test_init_accepts_every_format(tmp_path: Path, tiny_corpus: Path, capsys) -> None:
    """--init from the same parameters in each format starts from the same point: equal step-0 losses."""
    base = tmp_path / "base"
    flags = ["--data", str(tiny_corpus), "--steps", "100", *SMALL]
    assert main(["train", "--out", str(base), *flags]) == 0
    first = {}
    for fmt in ("safetensors", "npz", "json"):
        f = tmp_path / f"init.{fmt}"
        assert main(["export", "--run", str(base), "--out", str(f)]) == 0
        run = tmp_path / f"from_{fmt}"
        assert main(["train", "--out", str(run), "--init", str(f), *flags]) == 0
        first[fmt] = (run / "metrics.jsonl").read_text().splitlines()[0]
        init = json.loads((run / "config.json").read_text())["init"]
        assert init["path"] == str(f.resolve()) and init["run"] is None and len(init["sha256"]) == 64
    capsys.readouterr()
    assert len(set(first.values())) == 1, first


@pytest.mark.parametrize("name", ["model.json", "model.npz", "run/params.safetensors"])
def test_files_written_before_the_word_tokenizer_still_load(name: str) -> None:
    """tests/data/legacy_v2 was written by the code before this change (41e811a): the vocabulary is the string
    of characters ("abc"), read as a char tokenizer."""
    params, meta = load_params(LEGACY / name)
    assert meta["tokenizer"] == Tokenizer("char", "abc") and meta["config"].vocab_size == 4
    raw = json.loads(LEGACY.joinpath("model.json").read_text())["__metadata__"]
    assert raw["vocab"] == "abc"  # the old form, as written then
    ref, _ = load_params(LEGACY / "run" / "params.safetensors")
    assert all(params[k].tobytes() == v.tobytes() for k, v in ref.items())


def test_sample_from_a_file_written_before_the_word_tokenizer(tmp_path: Path, capsys) -> None:
    argv = ["sample", "--params", str(LEGACY / "model.npz"), "--num-samples", "6", "--seed", "3", "--temperature", "1"]
    assert main(argv) == 0
    # what the code of 41e811a printed for the same command
    assert capsys.readouterr().out.split("\n")[:-1] == [
        f"sample {i + 1:2d}: {s}" for i, s in enumerate(["aa", "ba", "b", "bbc", "ab", "abab"])
    ]
    # exported again, it carries the {kind, vocab} form
    assert main(["export", "--params", str(LEGACY / "model.npz"), "--out", str(tmp_path / "new.json")]) == 0
    assert json.loads((tmp_path / "new.json").read_text())["__metadata__"]["vocab"] == {
        "kind": "char",
        "vocab": list("abc"),
    }
