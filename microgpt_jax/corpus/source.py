"""Where the corpus comes from: a path given, $MICROGPT_JAX_DATA, or the names corpus shipped in the package.

names.txt (makemore commit 988aa59, MIT: NAMES_LICENSE beside it) ships in this folder, so the default run
needs no network and nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

NAMES = Path(__file__).with_name("names.txt")  # 32,033 names, one per line
NAMES_SHA256 = "0a30b5557f192f32ab962680889aac5f6fda0f4cecf40a6d0b5694f58ea8cc4d"
DATA_ENV = "MICROGPT_JAX_DATA"


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def resolve_data_path(data: str | os.PathLike[str] | None = None) -> Path:
    """The corpus's path, first match wins: ``data``, $MICROGPT_JAX_DATA, the names.txt shipped in the package."""
    if data is not None:
        return Path(data)
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else NAMES
