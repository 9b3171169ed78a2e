"""Shared fixtures: the vendored reference run, the full corpus (optional), small corpora, CLI runners."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REF_DIR = Path(__file__).resolve().parent / "data" / "reference"


@pytest.fixture(scope="session")
def ref() -> dict:
    """The original microgpt.py's run, vendored from shared/reference: init, step0 and trace."""
    return {name: json.loads((REF_DIR / f"microgpt_{name}.json").read_text()) for name in ("init", "step0", "trace")}


@pytest.fixture(scope="session")
def ref_docs_path() -> Path:
    """The first 1000 documents in the original's training order (all 26 letters occur)."""
    return REF_DIR / "docs_first1000.txt"


@pytest.fixture(scope="session")
def names_path() -> Path:
    """The full names corpus: $MICROGPT_JAX_DATA when set, else the copy shipped in the package."""
    from microgpt_jax.corpus.source import NAMES

    env = os.environ.get("MICROGPT_JAX_DATA")
    return Path(env) if env else NAMES


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    """A small corpus of names for quick end-to-end runs."""
    names = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "charlotte", "amelia", "harper", "evelyn"] * 5
    path = tmp_path / "tiny.txt"
    path.write_text("\n".join(names) + "\n", encoding="utf-8")
    return path


def run_cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m microgpt_jax ARGS`` in a fresh process (for --x64, signals, exit codes)."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "microgpt_jax", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=ROOT,
    )


def read_metrics(run_dir: Path) -> list[dict]:
    """The JSON lines of a run's metrics.jsonl."""
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="session")
def four_devices(tmp_path_factory) -> Path:
    """The results of tests/four_devices.py, run once per session in a process with 4 simulated CPU devices."""
    out = tmp_path_factory.mktemp("four_devices")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    script = Path(__file__).resolve().parent / "four_devices.py"
    proc = subprocess.run([sys.executable, str(script), str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out
