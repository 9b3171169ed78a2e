"""Where the corpus comes from: a path, $MICROGPT_JAX_DATA, the shipped names.txt; its digest."""

from __future__ import annotations

from pathlib import Path

from microgpt_jax.corpus.source import DATA_ENV, NAMES, NAMES_SHA256, resolve_data_path, sha256_file


def test_resolve_order(monkeypatch):
    monkeypatch.setenv(DATA_ENV, "/from/env.txt")
    assert resolve_data_path("/from/flag.txt") == Path("/from/flag.txt")
    assert resolve_data_path(None) == Path("/from/env.txt")
    monkeypatch.delenv(DATA_ENV)
    assert resolve_data_path(None) == NAMES


def test_the_shipped_names_corpus_is_makemores():
    assert sha256_file(NAMES) == NAMES_SHA256
    assert len(NAMES.read_text().split()) == 32_033
    assert "MIT License" in (NAMES.parent / "NAMES_LICENSE").read_text()


def test_sha256_file_is_hashlibs(tmp_path) -> None:
    import hashlib

    path = tmp_path / "big.bin"
    data = bytes(range(256)) * 9000  # over the 1 MiB block it reads at a time
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert sha256_file(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()


def test_a_path_given_wins_and_may_be_any_path_like(monkeypatch) -> None:
    monkeypatch.delenv(DATA_ENV, raising=False)
    assert resolve_data_path(Path("rel/x.txt")) == Path("rel/x.txt")
    assert resolve_data_path("") == Path("")  # given, even empty: not the environment's
    monkeypatch.setenv(DATA_ENV, "")  # an empty variable is no choice
    assert resolve_data_path() == NAMES
    assert NAMES.name == "names.txt" and NAMES.parent.name == "corpus"
