"""Bounded reads and atomic writes: regular files only, sizes checked before reading, no half-written file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from microgpt_jax.errors import UserError
from microgpt_jax.files import MIB, atomic_write_bytes, atomic_write_text, read_regular

FIX = "pass a text file"


def read(path: Path, limit: int = MIB) -> bytes:
    return read_regular(path, limit, "data file", FIX)


def one_line_error(path: Path, limit: int = MIB) -> str:
    with pytest.raises(UserError) as e:
        read(path, limit)
    message = str(e.value)
    assert "\n" not in message and message.endswith(FIX) and str(path) in message, message
    return message


def test_a_regular_file_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"emma\nava\n")
    assert read(path) == b"emma\nava\n"
    assert read(path, limit=9) == b"emma\nava\n"  # exactly the limit is allowed
    (tmp_path / "empty.txt").write_bytes(b"")
    assert read(tmp_path / "empty.txt") == b""


def test_missing_directory_and_oversized_files_are_one_line(tmp_path: Path) -> None:
    assert "not found" in one_line_error(tmp_path / "missing.txt")
    assert "is a directory" in one_line_error(tmp_path)
    big = tmp_path / "big.txt"
    big.write_bytes(b"x" * (3 * MIB))
    assert "is 3 MiB, over the 2 MiB this reads" in one_line_error(big, limit=2 * MIB)
    # a link is followed: the file it names is what is checked
    (tmp_path / "link").symlink_to(big)
    assert "over the 1 MiB" in one_line_error(tmp_path / "link")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # nobody writes to it: a blocking open or read would hang the test
    assert "is a FIFO (named pipe), not a regular file" in one_line_error(fifo)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_a_device_is_refused() -> None:
    assert "is a device, not a regular file" in one_line_error(Path("/dev/zero"))


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads a 0000 file")
def test_an_unreadable_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "secret.txt"
    path.write_bytes(b"x")
    path.chmod(0)
    try:
        assert "cannot read data file" in one_line_error(path)
    finally:
        path.chmod(0o600)


def test_atomic_write_replaces_and_gets_the_usual_permissions(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    atomic_write_text(path, "first ✓\n")
    atomic_write_bytes(path, b"second\n")
    assert path.read_bytes() == b"second\n"
    atomic_write_text(path, "third ✓\n")
    assert path.read_text(encoding="utf-8") == "third ✓\n"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]  # no temp file left


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "out.txt"
    atomic_write_text(path, "old\n")

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(UserError, match=r"cannot write .*out\.txt: No space left on device") as e:
        atomic_write_text(path, "new\n")
    assert "\n" not in str(e.value)
    assert path.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_a_write_into_a_missing_directory_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="pick a writable location"):
        atomic_write_bytes(tmp_path / "no" / "such" / "dir" / "f.bin", b"x")


def test_an_interrupted_write_leaves_no_temp(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "out.txt"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(path, "new\n")
    assert list(tmp_path.iterdir()) == []
