"""Checkpoint files: written atomically, committed by the manifest, read back bit for bit."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest

from microgpt_jax.config import GPTConfig, TrainConfig
from microgpt_jax.errors import UserError
from microgpt_jax.model.init import init_params
from microgpt_jax.runs.guard import load_checkpoint
from microgpt_jax.storage.checkpoint import read_manifest, save_checkpoint, sha256_hex
from microgpt_jax.training.loop import init_opt_state

CONFIG = GPTConfig(vocab_size=5, n_embd=8, n_head=2, block_size=4)


def state(optimizer: str):
    params = init_params(jax.random.key(0), CONFIG)
    opt = init_opt_state(optimizer, params)
    # make every leaf distinct from a fresh init, so a silently re-initialised state would show
    opt = jax.tree.map(lambda x: x + 3 if x.dtype.kind == "i" else x + 0.25, opt)
    return params, opt


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_checkpoint_round_trip_and_commit(tmp_path: Path, optimizer: str) -> None:
    tc = TrainConfig(optimizer=optimizer, steps=100)
    params, opt = state(optimizer)
    save_checkpoint(tmp_path, 10, params, opt, CONFIG, "abcd", {"steps": 100})
    params2 = jax.tree.map(lambda x: x * 2, params)
    save_checkpoint(tmp_path, 20, params2, opt, CONFIG, "abcd", {"steps": 100})
    ck = tmp_path / "checkpoint"
    assert sorted(p.name for p in ck.iterdir()) == [
        "checkpoint.json",
        "opt_state-00000020.safetensors",
        "params-00000020.safetensors",
    ]  # the older checkpoint's files are gone once the new manifest is in place
    (ck / "params-00000030.safetensors").write_bytes(b"half a file")  # a write cut short: no manifest names it
    got = load_checkpoint(tmp_path, CONFIG, tc, "abcd")
    assert got.step == 20
    for a, b in zip(jax.tree.leaves((params2, opt)), jax.tree.leaves((got.params, got.opt_state)), strict=True):
        assert a.dtype == b.dtype and np.asarray(a).tobytes() == np.asarray(b).tobytes()
    assert jax.tree.structure(got.opt_state) == jax.tree.structure(opt)


def test_checkpoint_file_names() -> None:
    from microgpt_jax.storage.checkpoint import is_checkpoint_file

    for name in ("checkpoint.json", "params-00000010.safetensors", "opt_state-12345678.safetensors",
                 ".params-00000010.safetensors.microgpt-jax-123-abc123.tmp"):  # fmt: skip
        assert is_checkpoint_file(name), name
    for name in ("params.safetensors", "params-10.safetensors", "notes.txt", "checkpoint.json.bak", "x.tmp",
                 ".params-00000010.safetensors.abc123.tmp"):  # fmt: skip
        assert not is_checkpoint_file(name), name


def test_a_checkpoint_leaves_files_it_did_not_write(tmp_path: Path) -> None:
    params, opt = state("sgd")
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "notes.txt").write_text("mine")
    (tmp_path / "checkpoint" / ".params-00000001.safetensors.x.tmp").write_bytes(b"a user's")  # not ours: kept
    (tmp_path / "checkpoint" / ".params-00000001.safetensors.microgpt-jax-9-x.tmp").write_bytes(b"half")  # ours
    save_checkpoint(tmp_path, 5, params, opt, CONFIG, "abcd", {"steps": 100, "extra": [1, 2]})
    names = sorted(p.name for p in (tmp_path / "checkpoint").iterdir())
    assert names == [".params-00000001.safetensors.x.tmp", "checkpoint.json", "notes.txt",
                     "opt_state-00000005.safetensors", "params-00000005.safetensors"]  # fmt: skip
    manifest = read_manifest(tmp_path)
    assert manifest["step"] == 5 and manifest["extra"] == [1, 2] and manifest["version"] == 1
    for name in (manifest["params"], manifest["opt_state"]):
        assert manifest["sha256"][name] == sha256_hex((tmp_path / "checkpoint" / name).read_bytes())


def test_manifests_that_cannot_be_read(tmp_path: Path) -> None:
    assert read_manifest(tmp_path) is None
    (tmp_path / "checkpoint").mkdir()
    for text in ("{", "[]", '{"step": "10"}'):
        (tmp_path / "checkpoint" / "checkpoint.json").write_text(text)
        with pytest.raises(UserError, match="is not a readable checkpoint manifest"):
            read_manifest(tmp_path)


def test_an_optimizer_state_must_match_its_template() -> None:
    from microgpt_jax.storage.checkpoint import opt_state_arrays, opt_state_from_arrays

    _, opt = state("adam")
    arrays = opt_state_arrays(opt)
    back = opt_state_from_arrays(arrays, opt, "ck")
    assert jax.tree.structure(back) == jax.tree.structure(opt)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(opt), strict=True):
        np.testing.assert_array_equal(a, b)
    name = "[0].mu['wte']"
    assert arrays[name].dtype == np.float32
    with pytest.raises(UserError, match="optimizer state lacks"):
        opt_state_from_arrays({k: v for k, v in arrays.items() if k != name}, opt, "ck")
    with pytest.raises(
        UserError, match=r"optimizer state \[0\]\.mu\['wte'\] is float64\[5, 8\], expected float32\[5, 8\]"
    ):
        opt_state_from_arrays({**arrays, name: arrays[name].astype(np.float64)}, opt, "ck")
    with pytest.raises(UserError, match=r"has \d+ arrays, expected"):
        opt_state_from_arrays({**arrays, "extra": np.zeros(1)}, opt, "ck")
