"""Data-parallel train: the batch split over a ``data`` mesh of 4 simulated CPU devices equals one device."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from microgpt_jax.devices import device_count
from microgpt_jax.errors import UserError

ROOT = Path(__file__).resolve().parent.parent


def test_device_count_on_one_device():
    assert device_count(None, 1) == 1  # a single device
    assert device_count(1, 4) == 1
    with pytest.raises(UserError, match="--devices 2"):
        device_count(2, 4)  # this process sees one CPU device


DOCS = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "charlotte", "amelia", "harper", "evelyn"] * 3
SETUP = """
import jax, jax.numpy as jnp, numpy as np
from microgpt_jax.config import GPTConfig, TrainConfig
from microgpt_jax.data import Tokenizer, encode_docs
from microgpt_jax.models import init_params
docs = {docs!r}
tok = Tokenizer.from_docs(docs)
tokens, n = encode_docs(docs[:25], tok, 8)
config = GPTConfig(vocab_size=tok.vocab_size, n_embd=8, n_head=2, block_size=8)
tc = TrainConfig(optimizer="sgd", lr=0.3, steps=6, batch_size=4)
p0 = init_params(jax.random.key(0), config, 0.08)
"""


def test_four_devices_equal_one_device(tmp_path):
    script = SETUP.format(docs=DOCS) + textwrap.dedent(
        """
        from functools import partial
        from microgpt_jax.errors import UserError
        from microgpt_jax.devices import DATA_AXIS, device_count, make_mesh
        from microgpt_jax.train import hparams_of, init_opt_state, train, train_chunk
        assert len(jax.devices()) == 4
        assert device_count(None, 4) == 4
        mesh = make_mesh(DATA_AXIS, 4)
        assert mesh.devices.size == 4 and mesh.axis_names == ("data",)
        assert device_count(None, 3) == 1  # 3 does not split over 4: one device
        try:
            device_count(2, 3)
            raise AssertionError("expected UserError")
        except UserError as e:
            assert "--batch-size 3" in str(e)
        params, _, losses = train(p0, tokens, n, config, tc, chunk=6, mesh=mesh)
        assert params["wte"].sharding.device_set == set(jax.devices())  # replicated on every device
        # the gathered batch is constrained to the data axis inside the compiled scan
        fn = partial(train_chunk, config=config, optimizer="sgd", batch_size=4, chunk=6, mesh=mesh)
        args = (p0, init_opt_state("sgd", p0), hparams_of(tc, jnp.float32), tokens, n, 0, 6)
        assert "sharding_constraint" in str(jax.make_jaxpr(fn)(*args))
        np.savez(OUT, losses=losses, **{k: np.asarray(v) for k, v in params.items()})
        """
    ).replace("OUT", repr(str(tmp_path / "dp.npz")))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    four = np.load(tmp_path / "dp.npz")
    scope: dict = {}
    exec(SETUP.format(docs=DOCS), scope)  # the same run on this process's one device
    from microgpt_jax.train import train

    params, _, losses = train(scope["p0"], scope["tokens"], scope["n"], scope["config"], scope["tc"], chunk=6)
    np.testing.assert_allclose(four["losses"], losses, atol=1e-5, rtol=0)
    assert np.all(np.isfinite(losses)) and losses[0] != losses[-1]
    for k, v in params.items():
        np.testing.assert_allclose(four[k], v, atol=1e-5, rtol=0)
