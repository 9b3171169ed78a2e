"""Corpus loading, order, split, tokenizer and the checksum-verified download (against a local server)."""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest

from microgpt_jax.data import (
    DATA_ENV,
    Tokenizer,
    download,
    encode_docs,
    load_docs,
    parse_docs,
    resolve_data_path,
    shuffle_docs,
    split_docs,
)
from microgpt_jax.errors import UserError


def test_docs_are_nonempty_stripped_lines():
    assert parse_docs(b"  emma \n\n\r\nava\r\n  \nmia") == ["emma", "ava", "mia"]


def test_invalid_utf8_names_the_line():
    with pytest.raises(UserError, match="line 3 is not valid UTF-8"):
        parse_docs(b"emma\nava\n\xff\xfe\n")


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(UserError, match="no documents"):
        load_docs(tmp_path / "empty.txt")
    with pytest.raises(UserError, match="not found"):
        load_docs(tmp_path / "missing.txt")


def test_shuffle_is_pythons_random_shuffle():
    import random

    docs = [f"d{i}" for i in range(50)]
    expected = list(docs)
    random.seed(42)
    random.shuffle(expected)
    assert shuffle_docs(docs, 42) == expected
    assert shuffle_docs(docs, None) == docs


def test_split_holds_out_the_last_docs():
    train, val = split_docs(list("abcdefghij"), 3)
    assert train == list("abcdefg") and val == list("hij")
    assert split_docs(list("abc"), 0) == (list("abc"), [])
    with pytest.raises(UserError, match="no training documents"):
        split_docs(list("abc"), 3)


def test_tokenizer_roundtrip_and_unknown_char():
    tok = Tokenizer.from_docs(["emma", "ava"])
    assert tok.uchars == "aemv" and tok.bos == 4 and tok.vocab_size == 5
    assert tok.decode(tok.encode("mave")) == "mave"
    with pytest.raises(UserError, match="'z'"):
        tok.encode("zoe")


def test_encode_docs_pads_and_truncates_like_the_original():
    tok = Tokenizer.from_docs(["ab", "abababab"])
    tokens, n = encode_docs(["ab", "abababab"], tok, block_size=4)
    bos = tok.bos
    assert tokens.shape == (2, 5) and tokens.dtype == np.int32
    assert tokens[0].tolist() == [bos, 0, 1, bos, bos] and n[0] == 3
    assert tokens[1].tolist() == [bos, 0, 1, 0, 1] and n[1] == 4  # n = min(block_size, len(tokens) - 1)


def test_resolve_order(tmp_path, monkeypatch):
    default = tmp_path / "names.txt"
    default.write_text("a\n")
    monkeypatch.setenv(DATA_ENV, "/from/env.txt")
    assert resolve_data_path("/from/flag.txt", default) == Path("/from/flag.txt")
    assert resolve_data_path(None, default) == Path("/from/env.txt")
    monkeypatch.delenv(DATA_ENV)
    assert resolve_data_path(None, default) == default


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def local_server(tmp_path):
    """A static file server on 127.0.0.1 serving tmp_path/www."""
    www = tmp_path / "www"
    www.mkdir()
    handler = lambda *a, **k: _Quiet(*a, directory=str(www), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_verifies_checksum(local_server, tmp_path):
    www, base = local_server
    body = b"emma\nolivia\nava\n"
    (www / "names.txt").write_bytes(body)
    dest = tmp_path / "data" / "names.txt"
    download(f"{base}/names.txt", dest, hashlib.sha256(body).hexdigest(), timeout=5)
    assert dest.read_bytes() == body
    assert sorted(p.name for p in dest.parent.iterdir()) == ["names.txt"]  # no temp file left


def test_download_checksum_mismatch_leaves_nothing(local_server, tmp_path):
    www, base = local_server
    (www / "names.txt").write_bytes(b"tampered\n")
    dest = tmp_path / "data" / "names.txt"
    with pytest.raises(UserError, match="SHA-256"):
        download(f"{base}/names.txt", dest, "0" * 64, timeout=5)
    assert list(dest.parent.iterdir()) == []


def test_download_failure_says_how_to_pass_data(local_server, tmp_path):
    _, base = local_server
    with pytest.raises(UserError, match="--data"):
        download(f"{base}/missing.txt", tmp_path / "names.txt", None, timeout=5)
    assert not (tmp_path / "names.txt").exists()
