"""Trust nothing on disk (issue 24): links in run and sweep folders, the tool's own temp files, bounded reads of
run files, the compile cache's directories and entries, escaped output, digests of the bytes used.

Every refusal is one line and exit status 2, before any file is written. Tests about "another user" chown files
to uid 65534 and skip where that is impossible (not root)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest

from microgpt_jax.cli.program import main
from microgpt_jax.errors import UserError, printable
from microgpt_jax.files import is_temp, read_regular, remove_temps, temp_prefix
from microgpt_jax.runs import rundir, sweep_dir
from microgpt_jax.runs.spec import RunSpec

SMALL = ["--val-size", "5", "--n-embd", "8", "--n-head", "2", "--block-size", "8", "--num-samples", "2"]
OTHER_UID = 65534


def train_flags(corpus: Path, steps: int = 5, *extra: str) -> list[str]:
    return ["--data", str(corpus), "--steps", str(steps), *SMALL, *extra]


def refused(argv: list[str], capsys: pytest.CaptureFixture, *says: str) -> str:
    """Run the CLI, expect a one-line refusal (exit status 2) holding every one of ``says``; return it."""
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    for text in says:
        assert text in err, err
    return err


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny run (copy it before changing it) and its corpus beside it."""
    base = tmp_path_factory.mktemp("finished")
    corpus = base / "tiny.txt"
    corpus.write_text("\n".join(["emma", "olivia", "ava", "isabella", "sophia", "mia"] * 5) + "\n")
    assert main(["train", "--out", str(base / "run"), *train_flags(corpus, 5, "--ckpt-every", "2")]) == 0
    return base / "run"


def copy_run(finished: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(finished, out, symlinks=True)
    return out


def unfinished(finished: Path, tmp_path: Path) -> Path:
    """A copy of the run made unfinished: its final params removed, a checkpoint left to resume (none was written
    at the end of 5 steps with --ckpt-every 2: the last is at step 4)."""
    out = copy_run(finished, tmp_path)
    (out / "params.safetensors").unlink()
    assert rundir.state(out) == "unfinished"
    return out


def chown_other(path: Path) -> None:
    try:
        os.chown(path, OTHER_UID, OTHER_UID, follow_symlinks=False)
    except (PermissionError, AttributeError):
        pytest.skip("cannot give a file to another user here (not root)")


# --- items 1, 7, 8: links in a run directory, the tool's temp files, --overwrite through a link -----------------


@pytest.mark.parametrize("name", [".lock", "metrics.jsonl", "config.json"])
def test_a_link_in_an_empty_run_directory_is_refused_and_its_target_untouched(
    name: str, tmp_path: Path, tiny_corpus: Path, capsys: pytest.CaptureFixture
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / name).symlink_to(victim)
    refused(["train", "--out", str(out), *train_flags(tiny_corpus)], capsys, "symbolic link", name)
    assert victim.read_text() == "precious" and os.listdir(out) == [name]


def test_the_lock_and_metrics_are_opened_without_following_links(tmp_path: Path) -> None:
    """The second line of defence, for a link put there after the directory was checked."""
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / ".lock").symlink_to(victim)
    with pytest.raises(UserError, match="symbolic link"):
        rundir.lock(tmp_path)
    (tmp_path / "metrics.jsonl").symlink_to(victim)
    for append in (False, True):
        with pytest.raises(UserError, match="symbolic link"):
            rundir.Metrics(tmp_path / "metrics.jsonl", append=append)
    with pytest.raises(UserError, match="symbolic link"):
        rundir.restore_metrics(tmp_path / "metrics.jsonl", {"bytes": 0, "sha256": hashlib.sha256(b"").hexdigest()})
    hard = tmp_path / "hard.jsonl"
    os.link(victim, hard)  # a second name for a file elsewhere
    with pytest.raises(UserError, match="2 names"):
        rundir.Metrics(hard, append=True)
    assert victim.read_text() == "precious"


@pytest.mark.parametrize("name", ["config.json", "metrics.jsonl", "params.safetensors"])
def test_a_link_in_a_finished_run_is_refused_by_sample_and_overwrite(
    name: str, finished: Path, tmp_path: Path, tiny_corpus: Path, capsys: pytest.CaptureFixture
) -> None:
    out = copy_run(finished, tmp_path)
    real = tmp_path / f"real-{name}"
    os.replace(out / name, real)
    (out / name).symlink_to(real)
    refused(["train", "--out", str(out), *train_flags(tiny_corpus), "--overwrite"], capsys, "symbolic link")
    refused(["sample", "--run", str(out)], capsys, "symbolic link" if name != "metrics.jsonl" else "")
    assert real.exists() and (out / name).is_symlink()


@pytest.mark.parametrize("name", ["metrics.jsonl", "config.json", ".lock", "checkpoint/checkpoint.json"])
def test_resume_refuses_a_link_in_the_run(
    name: str, finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = unfinished(finished, tmp_path)
    real = tmp_path / "elsewhere"
    if (out / name).exists():
        os.replace(out / name, real)
    else:
        real.write_text("")
    (out / name).symlink_to(real)
    before = real.read_bytes()
    refused(["train", "--resume", str(out)], capsys, "symbolic link")
    assert real.read_bytes() == before


def test_a_checkpoint_file_that_is_a_link_or_a_fifo_is_refused_not_followed_or_waited_on(
    finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = unfinished(finished, tmp_path)
    manifest = json.loads((out / "checkpoint" / "checkpoint.json").read_text())
    params = out / "checkpoint" / manifest["params"]
    os.replace(params, tmp_path / "p")
    params.symlink_to(tmp_path / "p")
    refused(["train", "--resume", str(out)], capsys, "symbolic link")
    params.unlink()
    os.mkfifo(params)  # reading a FIFO blocks: the resume must not hang
    refused(["train", "--resume", str(out)], capsys, "FIFO")


def test_overwrite_through_a_linked_out_is_refused(
    finished: Path, tmp_path: Path, tiny_corpus: Path, capsys: pytest.CaptureFixture
) -> None:
    out = copy_run(finished, tmp_path)
    link = tmp_path / "link"
    link.symlink_to(out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    refused(["train", "--out", str(link), *train_flags(tiny_corpus), "--overwrite"], capsys, "symbolic link", "--out")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before and link.is_symlink()


def test_only_the_tools_own_temp_files_are_removed(tmp_path: Path, tiny_corpus: Path, capsys) -> None:
    name = Path(temp_prefix("config.json") + "abc123.tmp").name
    assert is_temp(name) and f"-{os.getpid()}-" in name and name.startswith(".config.json.microgpt-jax-")
    assert not is_temp(".notes.tmp") and not is_temp(".config.json.1234.tmp")
    (tmp_path / name).write_text("ours")
    (tmp_path / ".notes.tmp").write_text("the user's")
    remove_temps(tmp_path)
    assert sorted(os.listdir(tmp_path)) == [".notes.tmp", "tiny.txt"]
    # a run directory holding a user's .tmp file is not a run's: refused, even with --overwrite
    out = tmp_path / "out"
    out.mkdir()
    (out / ".draft.tmp").write_text("mine")
    refused(["train", "--out", str(out), *train_flags(tiny_corpus), "--overwrite"], capsys, ".draft.tmp")
    assert (out / ".draft.tmp").read_text() == "mine"


def test_a_checkpoint_removes_its_own_temp_files_only(tmp_path: Path) -> None:
    from microgpt_jax.config import GPTConfig
    from microgpt_jax.model.registry import param_shapes
    from microgpt_jax.storage.checkpoint import save_checkpoint

    config = GPTConfig(vocab_size=5, n_embd=4, n_head=2, n_layer=1, block_size=4)
    params = {k: np.zeros(s, np.float32) for k, s in param_shapes(config).items()}
    ck = tmp_path / "checkpoint"
    ck.mkdir()
    ours = ck / ".params-00000001.safetensors.microgpt-jax-99999-x1y2.tmp"
    ours.write_text("left by a killed writer")
    (ck / ".mine.tmp").write_text("the user's")
    save_checkpoint(tmp_path, 2, params, {"m": np.zeros(3, np.float32)}, config, "abcd")
    assert not ours.exists() and (ck / ".mine.tmp").read_text() == "the user's"
    (tmp_path / "elsewhere").mkdir()
    shutil.rmtree(ck)
    ck.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UserError, match="symbolic link"):
        save_checkpoint(tmp_path, 3, params, {"m": np.zeros(3, np.float32)}, config, "abcd")
    assert os.listdir(tmp_path / "elsewhere") == []


# --- item 15: sweep --out is a transaction ----------------------------------------------------------------------


def test_sweep_out_holding_results_is_refused_without_overwrite(
    tmp_path: Path, tiny_corpus: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "sw"
    out.mkdir()
    (out / "results.csv").write_text("earlier")
    argv = ["sweep", "--out", str(out), "--data", str(tiny_corpus), "--steps", "2", "--no-progress"]
    refused(argv, capsys, "holds a sweep's results", "--overwrite")
    assert (out / "results.csv").read_text() == "earlier"
    (out / "notes.txt").write_text("mine")
    refused([*argv, "--overwrite"], capsys, "not a sweep's", "notes.txt")
    (out / "notes.txt").unlink()
    (out / "results.json").symlink_to(tmp_path / "victim")
    refused([*argv, "--overwrite"], capsys, "symbolic links", "results.json")
    (out / "results.json").unlink()
    link = tmp_path / "link"
    link.symlink_to(out)
    refused(["sweep", "--out", str(link), *argv[3:], "--overwrite"], capsys, "symbolic link")
    assert sorted(os.listdir(out)) == ["results.csv"]


def test_sweep_overwrite_replaces_the_results_only_once_complete(tmp_path: Path) -> None:
    out = tmp_path / "sw"
    (out / "members" / "0").mkdir(parents=True)
    (out / "members" / "0" / "params.safetensors").write_text("old")
    (out / "results.csv").write_text("old")
    sd = sweep_dir.open_sweep(out, overwrite=True)
    assert sd.path != out and (out / "results.csv").read_text() == "old"  # staged beside it
    with pytest.raises(UserError, match="being written"):
        sweep_dir.open_sweep(out, overwrite=True)  # the lock keeps a second writer out
    (sd.path / "results.csv").write_text("new")
    sd.commit()
    sd.close()
    assert sorted(os.listdir(out)) == [".lock", "results.csv"] and (out / "results.csv").read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == ["sw"]  # no staging or old directory left
    sd = sweep_dir.open_sweep(tmp_path / "fresh")
    sd.abandon()
    sd.close()
    assert sweep_dir.sweep_state(tmp_path / "fresh") == "empty"


# --- items 13, 12: bounded reads of run files and parameter files -----------------------------------------------


def test_run_files_are_read_bounded_a_fifo_or_a_huge_file_is_one_line(
    finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = copy_run(finished, tmp_path)
    (out / "config.json").unlink()
    os.mkfifo(out / "config.json")
    refused(["sample", "--run", str(out)], capsys, "FIFO")
    (out / "config.json").unlink()
    with open(out / "config.json", "wb") as f:
        f.truncate(100 << 20)  # sparse: 100 MiB of nothing
    refused(["sample", "--run", str(out)], capsys, "over the 64 MiB")
    with open(tmp_path / "metrics.jsonl", "wb") as f:
        f.truncate((1 << 30) + 1)
    with pytest.raises(UserError, match="over the 1,024 MiB"):
        rundir.describe(tmp_path / "metrics.jsonl")
    with pytest.raises(UserError, match="over the 64 MiB"):
        RunSpec.read(out)


def npz_bytes(arrays: dict, meta: dict | None = None, compressed: bool = True) -> bytes:
    buf = io.BytesIO()
    extra = {} if meta is None else {"__metadata__": np.array(json.dumps(meta))}
    (np.savez_compressed if compressed else np.savez)(buf, **arrays, **extra)
    return buf.getvalue()


def test_an_npz_members_header_is_checked_before_its_data_is_inflated(tmp_path: Path) -> None:
    import tracemalloc

    from microgpt_jax.config import GPTConfig
    from microgpt_jax.storage.params import _read_npz, load_params

    config = GPTConfig(vocab_size=5, n_embd=4, n_head=2, n_layer=1, block_size=4)
    raw = npz_bytes({"wte": np.zeros((4096, 4096), np.float64)}, {"config": json.dumps(config.to_dict())})
    assert len(raw) < 1 << 20  # 128 MiB of zeros in a small archive
    path = tmp_path / "bomb.npz"
    path.write_bytes(raw)
    with pytest.raises(UserError, match="expects"):
        load_params(path)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="expects"):
            _read_npz(raw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, peak  # refused from the header: the 128 MiB never inflated
    # without a config, the limit bounds each member's declared bytes before it is read
    with pytest.raises(ValueError, match="over"):
        _read_npz(npz_bytes({"w": np.zeros((512, 512), np.float64)}), limit=1 << 20)
    with pytest.raises(ValueError, match="not floating-point"):
        _read_npz(npz_bytes({"w": np.zeros((2, 2), np.int64)}))
    arrays, _ = _read_npz(npz_bytes({"w": np.arange(6.0).reshape(2, 3)}, compressed=False))
    np.testing.assert_array_equal(arrays["w"], np.arange(6.0).reshape(2, 3))
    # a member whose data is shorter than its header declares
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        one = io.BytesIO()
        np.save(one, np.zeros((3, 3)))
        zf.writestr("w.npy", one.getvalue()[:-8])
    with pytest.raises(ValueError, match="holds"):
        _read_npz(buf.getvalue())


def test_json_parameters_are_bounded_by_what_they_become(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from microgpt_jax.storage import params

    path = tmp_path / "p.json"
    path.write_text(json.dumps({"w": [[0.5] * 40] * 40}))
    monkeypatch.setattr(params, "MAX_JSON_PARAMS_BYTES", 1000)
    with pytest.raises(UserError, match="safetensors"):
        params.load_params(path)
    with pytest.raises(UserError, match="safetensors"):
        params.params_from_bytes(path.read_bytes(), "json", path)


# --- items 5, 6: escaped output, digests of the bytes used --------------------------------------------------------


def test_control_characters_are_printed_escaped() -> None:
    assert printable("emma") == "emma" and printable("zoë é") == "zoë é"
    assert printable("a\x1b]0;owned\x07b\n\u202e") == "a\\x1b]0;owned\\x07b\\n\\u202e"


def test_sample_prints_a_crafted_vocabularys_escape_sequences_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from microgpt_jax.config import GPTConfig
    from microgpt_jax.corpus.tokenizer import Tokenizer
    from microgpt_jax.model.registry import param_shapes
    from microgpt_jax.storage.params import save_params

    tok = Tokenizer.from_docs(["\x1b[2J\x1b]0;x\x07"], "char")
    config = GPTConfig(vocab_size=tok.vocab_size, n_embd=4, n_head=2, n_layer=1, block_size=8)
    params = {k: np.zeros(s, np.float32) for k, s in param_shapes(config).items()}
    save_params(tmp_path / "p.safetensors", params, config, tok)
    assert main(["sample", "--params", str(tmp_path / "p.safetensors"), "--num-samples", "20"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\\x1b" in out


def test_the_recorded_digests_are_of_the_bytes_used(
    finished: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A data or init file swapped for another just after it was read: config.json records what was used."""
    import microgpt_jax.corpus.load as corpus_load
    import microgpt_jax.storage.params as params_module

    data = tmp_path / "data.txt"
    data.write_text("\n".join(["emma", "olivia", "ava", "isabella", "sophia", "mia"] * 5) + "\n")
    init = tmp_path / "init.safetensors"
    shutil.copy(finished / "params.safetensors", init)
    used = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (data, init)}

    def swapping(read):
        def read_then_swap(path, *args, **kwargs):
            raw = read(path, *args, **kwargs)
            Path(path).write_bytes(raw + b"\n")  # another file now, once read
            return raw

        return read_then_swap

    monkeypatch.setattr(corpus_load, "read_regular", swapping(read_regular))
    monkeypatch.setattr(params_module, "read_regular", swapping(read_regular))
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--data", str(data), "--init", str(init), "--steps", "2",
                 "--val-size", "5", "--num-samples", "1"]) == 0  # fmt: skip
    doc = json.loads((out / "config.json").read_text())
    assert doc["data"]["sha256"] == used[data] and doc["init"]["sha256"] == used[init]


# --- items 2, 3: the compile cache's directories and the executables store's entries ------------------------------


@pytest.fixture
def cache_settings():
    import jax

    from microgpt_jax.runtime import executables

    keys = ("jax_compilation_cache_dir", "jax_enable_compilation_cache", "jax_persistent_cache_min_compile_time_secs",
            "jax_persistent_cache_min_entry_size_bytes", "jax_raise_persistent_cache_errors",
            "jax_persistent_cache_enable_xla_caches")  # fmt: skip
    saved = {k: jax.config.values[k] for k in keys}
    yield
    for k, v in saved.items():
        jax.config.update(k, v)
    executables.enable(None)


def test_cache_folders_are_made_0700_even_under_umask_000(tmp_path: Path, cache_settings) -> None:
    from microgpt_jax.runtime.compile_cache import EXECUTABLES, enable_compile_cache

    old = os.umask(0)
    try:
        path = enable_compile_cache(str(tmp_path / "a" / "b" / "cache"))
    finally:
        os.umask(old)
    assert path == tmp_path / "a" / "b" / "cache"
    for p in (tmp_path / "a", tmp_path / "a" / "b", path, path / EXECUTABLES):
        assert stat.S_IMODE(p.stat().st_mode) == 0o700, p


def test_a_cache_below_a_directory_another_user_could_swap_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture, cache_settings
) -> None:
    from microgpt_jax.runtime.compile_cache import enable_compile_cache

    shared = tmp_path / "shared"
    (shared / "cache").mkdir(parents=True, mode=0o700)
    shared.chmod(0o777)  # anyone may rename "cache" and put theirs there
    assert enable_compile_cache(str(shared / "cache")) is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "changed by another user" in err
    shared.chmod(0o1777)  # sticky, as /tmp: others may not rename what is ours
    assert enable_compile_cache(str(shared / "cache")) == shared / "cache"
    theirs = tmp_path / "theirs"
    (theirs / "cache").mkdir(parents=True, mode=0o700)
    theirs.chmod(0o755)
    chown_other(theirs)
    assert enable_compile_cache(str(theirs / "cache")) is None
    assert "changed by another user" in capsys.readouterr().err


def test_a_linked_cache_is_resolved_once_and_its_target_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture, cache_settings
) -> None:
    import jax

    from microgpt_jax.runtime.compile_cache import enable_compile_cache

    mine = tmp_path / "mine"
    mine.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(mine)
    assert enable_compile_cache(str(tmp_path / "link")) == mine  # JAX is given the resolved directory
    assert jax.config.values["jax_compilation_cache_dir"] == str(mine)
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    chown_other(theirs)
    (tmp_path / "link2").symlink_to(theirs)
    assert enable_compile_cache(str(tmp_path / "link2")) is None
    assert "owned by another user" in capsys.readouterr().err


class _Planted:
    """What a crafted entry would run when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_a_damaged_or_crafted_entry_is_never_unpickled_but_deleted_and_compiled_again(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import jax
    import jax.numpy as jnp

    from microgpt_jax.runtime import executables

    @jax.jit
    def double(x):
        return x * 2

    store = tmp_path / "store"
    executables.enable(store)
    executables._state["fingerprint"] = None
    try:
        x = jnp.arange(3.0)
        want = np.asarray(executables.call(double, "double", x))
        (entry,) = store.iterdir()
        good = entry.read_bytes()
        head = len(executables.FORMAT) + 130
        marker = tmp_path / "ran"
        crafted = pickle.dumps(_Planted(marker))
        cases = {
            "flipped": good[:-10] + bytes([good[-10] ^ 1]) + good[-9:],
            "crafted": good[:head] + crafted,  # the right key, another payload: its checksum does not match
            "cut": good[: head - 20],
            "another key": good[: len(executables.FORMAT)] + b"0" * 64 + good[len(executables.FORMAT) + 64 :],
        }
        for what, data in cases.items():
            entry.write_bytes(data)
            executables.enable(store)  # a new process: nothing in memory
            np.testing.assert_array_equal(executables.call(double, "double", x), want)
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and "deleted the damaged entry" in err, (what, err)
            key = good[len(executables.FORMAT) : len(executables.FORMAT) + 64].decode()
            assert executables._entry_payload(entry, key), what  # compiled again and kept again, whole
            assert not marker.exists()
    finally:
        executables.enable(None)
        executables._state["fingerprint"] = None


# --- items 9, 14, 4: sampling memory, the distributed timeout, the coordinator's port -----------------------------


def test_sampling_memory_is_o_batch_times_vocab() -> None:
    """A 30,000-word vocabulary once built a 30,000 x 30,000 triangle (3.8 GB) per draw."""
    import math

    import jax
    import jax.numpy as jnp

    from microgpt_jax.training.sampling import draw

    N, V = 4, 30_000
    for filters in ({}, {"top_k": 5}, {"top_p": 0.9}):
        jaxpr = jax.make_jaxpr(lambda logits, u, f=filters: draw(logits, u, 1.0, **f))(jnp.zeros((N, V)), jnp.zeros(N))
        sizes = [math.prod(v.aval.shape) for eqn in jaxpr.jaxpr.eqns for v in eqn.outvars]
        sizes += [math.prod(np.shape(c)) for c in jaxpr.consts]
        assert max(sizes) <= N * V, filters


@pytest.mark.parametrize("value", ["-5", "0", "abc", "1.5"])
def test_a_bad_distributed_timeout_is_one_line(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from microgpt_jax.runtime import distributed

    monkeypatch.setenv(distributed.TIMEOUT_ENV, value)
    with pytest.raises(UserError, match="whole number of seconds >= 1"):
        distributed.initialize("localhost:5555", 2, 1)
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "7")
    assert distributed._timeouts()["initialization_timeout"] == 7


@pytest.mark.parametrize(
    "coordinator, says",
    [("localhost:99999", "1 to 65535"), ("localhost:0", "1 to 65535"), ("localhost:abc", "1 to 65535"),
     (":5555", "HOST:PORT"), ("localhost", "HOST:PORT")],
)  # fmt: skip
def test_a_bad_coordinator_port_is_one_line(coordinator: str, says: str) -> None:
    from microgpt_jax.runtime import distributed

    with pytest.raises(UserError, match=says):
        distributed.initialize(coordinator, 2, 0)


def test_a_coordinator_port_another_job_listens_on_is_refused() -> None:
    import socket

    from microgpt_jax.runtime import distributed

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other_job:
        other_job.bind(("127.0.0.1", 0))
        other_job.listen()
        port = other_job.getsockname()[1]
        with pytest.raises(UserError, match=f"port {port} is in use"):
            distributed.initialize(f"localhost:{port}", 2, 0)


def test_the_program_refuses_a_bad_port_in_one_line(tmp_path: Path, tiny_corpus: Path) -> None:
    from conftest import run_cli

    job = ["--coordinator", "localhost:99999", "--num-processes", "2", "--process-id", "0"]
    proc = run_cli("train", "--out", str(tmp_path / "r"), *train_flags(tiny_corpus), *job,
                   env={"MICROGPT_JAX_CACHE": "off"}, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--coordinator" in proc.stderr, proc.stderr
    assert not (tmp_path / "r").exists()


# --- items 10, 11: impossible work refused before it starts --------------------------------------------------------


def test_sampling_a_file_whose_sizes_make_it_impossible_is_refused_before_it_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """16 MB of params declaring block_size 2,000,000 once sampled for more than 300 s."""
    from microgpt_jax.config import GPTConfig
    from microgpt_jax.model.registry import param_shapes
    from microgpt_jax.storage.params import save_params

    config = GPTConfig(vocab_size=4, n_embd=2, n_head=1, n_layer=1, block_size=2_000_000)
    params = {k: np.zeros(s, np.float32) for k, s in param_shapes(config).items()}
    save_params(tmp_path / "p.safetensors", params, config, "abc")
    refused(["sample", "--params", str(tmp_path / "p.safetensors")], capsys, "operations", "--num-samples")


def test_a_sweep_that_cannot_fit_is_refused_with_the_figure_and_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    from microgpt_jax.config import GPTConfig, TrainConfig
    from microgpt_jax.runtime import devices
    from microgpt_jax.training import sweep

    monkeypatch.setattr(devices, "available_memory", lambda: 1 << 30)  # the same check as a machine's RAM
    members = sweep.grid_members(GPTConfig(vocab_size=27), TrainConfig(), {"seed": list(range(20_000))})
    with pytest.raises(UserError, match=r"20,000 members need about .* GiB at once, more than the 1.0 GiB"):
        sweep.check_sweep_fits(members, n_docs=1000)
    sweep.check_sweep_fits(members[:10], n_docs=1000)  # ten fit


def test_a_read_only_cache_says_so_once_not_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, cache_settings
) -> None:
    """A read-only cache once warned that whole programs are not kept, and then again at JAX's first write."""
    from microgpt_jax.runtime import compile_cache, executables

    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    (cache / compile_cache.EXECUTABLES).write_text("")  # cannot become the store's directory
    real_access = os.access
    monkeypatch.setattr(compile_cache.os, "access", lambda p, m: False if m == os.W_OK else real_access(p, m))
    assert compile_cache.enable_compile_cache(str(cache)) == cache
    assert executables.directory() is None and capsys.readouterr().err == ""


def test_a_hard_link_is_refused_before_it_is_truncated(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    os.link(victim, tmp_path / "metrics.jsonl")
    with pytest.raises(UserError, match="2 names"):
        rundir.Metrics(tmp_path / "metrics.jsonl", append=False)  # a fresh run's metrics: opened to truncate
    assert victim.read_text() == "precious"


def test_a_million_member_sweep_is_refused_before_its_members_are_built(
    tmp_path: Path, tiny_corpus: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sweep --seeds 1000000 once crashed; building its members alone takes about a minute."""
    import time

    from microgpt_jax.runtime import devices

    monkeypatch.setattr(devices, "available_memory", lambda: 16 << 30)
    t0 = time.perf_counter()
    argv = ["sweep", "--out", str(tmp_path / "sw"), "--data", str(tiny_corpus), "--seeds", "1000000"]
    refused(argv, capsys, "1,000,000 members need at least", "more than the 16.0 GiB")
    assert time.perf_counter() - t0 < 10 and not (tmp_path / "sw").exists()
