"""A run's description as config.json records it: its configs, tokenizer, corpus digest and init source."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from microgpt_jax.config import GUIDE_STEPS, DataConfig, GPTConfig, RunConfig, SampleConfig, TrainConfig
from microgpt_jax.corpus.tokenizer import Tokenizer
from microgpt_jax.errors import UserError
from microgpt_jax.files import MAX_CONFIG_BYTES, read_regular
from microgpt_jax.runs import rundir
from microgpt_jax.runs.rundir import CONFIG_FILE

VERSION = 3  # of config.json: 1 held the raw command-line flags beside the configs; 2 the vocabulary as a string


READS = (2, 3)  # the versions RunSpec.read accepts


@dataclass(frozen=True)
class InitSource:
    """Where a fine-tuned run's parameters came from: the file read (resolved), its SHA-256 and the run
    directory it belongs to when a directory was given (else None)."""

    path: str
    sha256: str | None = None
    run: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj: object) -> InitSource | None:
        """config.json's ``init``: null, an object, or (version 2) the path as a string."""
        if obj is None:
            return None
        if isinstance(obj, str):
            return cls(obj)
        if not isinstance(obj, dict) or set(obj) - {"path", "sha256", "run"} or not isinstance(obj.get("path"), str):
            raise TypeError("init must be null or an object with a path")
        if not all(obj.get(k) is None or isinstance(obj[k], str) for k in ("sha256", "run")):
            raise TypeError("init.sha256 and init.run must be strings or null")
        return cls(obj["path"], obj.get("sha256"), obj.get("run"))

    @property
    def given(self) -> str:
        """What was passed as the init: the run directory, or the file."""
        return self.run or self.path


@dataclass(frozen=True)
class RunSpec:
    """Everything ``config.json`` records: the configs of a run, its tokenizer, and where its data and init
    came from."""

    model: GPTConfig
    train: TrainConfig
    data: DataConfig
    run: RunConfig
    sample: SampleConfig
    tokenizer: Tokenizer
    data_sha256: str
    init: InitSource | None = None
    step: int | None = None  # the guide's step the configs came from (config.GUIDE_STEPS), or None

    def to_doc(self) -> dict[str, Any]:
        """config.json's content."""
        return {
            "version": VERSION,
            "model": self.model.to_dict(),
            "train": self.train.to_dict(),
            "data": {**self.data.to_dict(), "sha256": self.data_sha256, "vocab": self.tokenizer.to_meta()},
            "run": self.run.to_dict(),
            "sample": self.sample.to_dict(),
            "init": None if self.init is None else self.init.to_dict(),
            "step": self.step,
        }

    def to_json(self) -> str:
        """config.json's text."""
        return json.dumps(self.to_doc(), indent=2) + "\n"

    def digest(self) -> str:
        """The run's identity, what defines its numbers (``rundir.config_digest``): checkpoints and the final
        params.safetensors record it, so a resume or a reader can tell the files belong to this config."""
        return rundir.config_digest(self.to_doc())

    @classmethod
    def read(cls, run_dir: str | os.PathLike[str]) -> RunSpec:
        """The spec in ``run_dir/config.json`` (this version's or version 2's, whose vocabulary is a string of
        characters); anything missing or malformed is a one-line UserError."""
        return cls.parse(cls.config_text(run_dir), Path(run_dir) / CONFIG_FILE)

    @staticmethod
    def config_text(run_dir: str | os.PathLike[str]) -> str:
        """``run_dir/config.json``'s text; a UserError when there is none to read."""
        path = Path(run_dir) / CONFIG_FILE
        if not os.path.lexists(path):
            raise UserError(f"{run_dir} is not a run directory (no {CONFIG_FILE}): pass the `out` of a train run")
        raw = read_regular(path, MAX_CONFIG_BYTES, "run config", "train the run again", follow=False)
        try:
            return raw.decode("utf-8")
        except ValueError as e:
            raise UserError(f"{path} is not a run config this version reads ({e}): train the run again") from None

    @classmethod
    def parse(cls, text: str, path: Path) -> RunSpec:
        """The spec in config.json's ``text`` (read from ``path``, named in errors)."""
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict) or doc.get("version") not in READS:
                raise ValueError(f"version {doc.get('version') if isinstance(doc, dict) else None}, not {VERSION}")
            data = dict(doc["data"])
            sha, vocab = data.pop("sha256"), data.pop("vocab")
            if not isinstance(sha, str):
                raise TypeError("data.sha256 must be a string")
            tokenizer = Tokenizer.from_meta(vocab)
            data_config = DataConfig.from_dict(data)
            if data_config.tokenizer is None:  # version 2: always characters
                data_config = dataclasses.replace(data_config, tokenizer=tokenizer.kind)
            step = doc.get("step")  # absent in the files of earlier versions of this package
            if step is not None and (isinstance(step, bool) or step not in GUIDE_STEPS):
                raise ValueError(f"step {step!r} is not one of the guide's steps")
            return cls(
                GPTConfig.from_dict(doc["model"]),
                TrainConfig.from_dict(doc["train"]),
                data_config,
                RunConfig.from_dict(doc["run"]),
                SampleConfig.from_dict(doc["sample"]),
                tokenizer,
                sha,
                InitSource.from_json(doc["init"]),
                step,
            )
        except (OSError, ValueError, KeyError, TypeError, UserError) as e:
            raise UserError(f"{path} is not a run config this version reads ({e}): train the run again") from None
