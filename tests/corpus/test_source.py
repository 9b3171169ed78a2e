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
