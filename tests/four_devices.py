"""The multi-device checks, run once as one subprocess with 4 simulated CPU devices (one JAX start-up and one
set of compiles for all of them): sampling split over devices, data-parallel training, a sharded sweep.

``python tests/four_devices.py OUT`` with XLA_FLAGS=--xla_force_host_platform_device_count=4 writes
OUT/sample.npz, OUT/data_parallel.npz and OUT/sweep.json; the tests (fixture ``four_devices`` in conftest.py)
compare each with the same computation on this process's single device.
"""

from __future__ import annotations

import json
import sys
from functools import partial
from pathlib import Path

DOCS = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "charlotte", "amelia", "harper", "evelyn"] * 3
SWEEP_GRID = {
    "n_embd": [8],
    "n_head": [2],
    "block_size": [8],
    "optimizer": ["sgd"],
    "lr": [0.1, 0.3, 1.0],
    "steps": [6],
}  # fmt: skip  (3 members padded to 4 devices)
SAMPLE_CUT = {"top_k": 5, "top_p": 0.9}


def data_parallel_setup() -> dict:
    """The data-parallel run's inputs, the same on 4 devices and on 1."""
    import jax

    from microgpt_jax.config import GPTConfig, TrainConfig
    from microgpt_jax.corpus.documents import encode_docs
    from microgpt_jax.corpus.tokenizer import Tokenizer
    from microgpt_jax.model.init import init_params

    tok = Tokenizer.from_docs(DOCS)
    tokens, n = encode_docs(DOCS[:25], tok, 8)
    config = GPTConfig(vocab_size=tok.vocab_size, n_embd=8, n_head=2, block_size=8)
    tc = TrainConfig(optimizer="sgd", lr=0.3, steps=6, batch_size=4)
    return {"tokens": tokens, "n": n, "config": config, "tc": tc, "params": init_params(jax.random.key(0), config)}


def sample_part(out: Path) -> None:
    import jax
    import numpy as np

    from microgpt_jax.config import GPTConfig
    from microgpt_jax.model.init import init_params
    from microgpt_jax.training.sampling import sample_mesh, sample_tokens

    config = GPTConfig(vocab_size=27)
    params = init_params(jax.random.key(0), config, std=0.3)
    assert sample_mesh(400).devices.size == 4 and sample_mesh(402) is None and sample_mesh(400, 1) is None
    spread = sample_tokens(params, jax.random.key(7), 0.8, config=config, num_samples=400)
    assert len(spread.sharding.device_set) == 4
    cut = sample_tokens(params, jax.random.key(7), 0.8, config=config, num_samples=400, **SAMPLE_CUT)
    np.savez(out / "sample.npz", spread=np.asarray(spread), cut=np.asarray(cut))


def data_parallel_part(out: Path) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from microgpt_jax.errors import UserError
    from microgpt_jax.runtime.devices import DATA_AXIS, device_count, make_mesh
    from microgpt_jax.training.loop import Recipe, hparams_of, init_opt_state, train, train_chunk

    s = data_parallel_setup()
    assert device_count(None, 4) == 4 and device_count(None, 3) == 1  # 3 does not split over 4: one device
    try:
        device_count(2, 3)
        raise AssertionError("expected UserError")
    except UserError as e:
        assert "`batch_size` 3" in str(e)
    mesh = make_mesh(DATA_AXIS, 4)
    params, _, losses = train(s["params"], s["tokens"], s["n"], s["config"], s["tc"], chunk=6, mesh=mesh)
    assert params["wte"].sharding.device_set == set(jax.devices())  # replicated on every device
    # the gathered batch is constrained to the data axis inside the compiled scan
    fn = partial(train_chunk, config=s["config"], recipe=Recipe("sgd"), batch_size=4, chunk=6, mesh=mesh)
    args = (s["params"], init_opt_state("sgd", s["params"]), hparams_of(s["tc"], jnp.float32), s["tokens"], s["n"])
    assert "sharding_constraint" in str(jax.make_jaxpr(fn)(*args, 0, 6))
    np.savez(out / "data_parallel.npz", losses=losses, **{k: np.asarray(v) for k, v in params.items()})


def sweep_part(out: Path) -> None:
    from microgpt_jax.config import GPTConfig, TrainConfig
    from microgpt_jax.corpus.tokenizer import Tokenizer
    from microgpt_jax.training import sweep

    tok = Tokenizer.from_docs(DOCS)
    members = sweep.grid_members(GPTConfig(vocab_size=tok.vocab_size), TrainConfig(batch_size=4), SWEEP_GRID)
    res = sweep.run_sweep(members, DOCS[:25], DOCS[25:], tok, mesh=sweep.sweep_mesh(4), chunk=6, progress=False)
    (out / "sweep.json").write_text(json.dumps({"rows": res.rows, "losses": [x.tolist() for x in res.losses]}))


if __name__ == "__main__":
    import jax

    assert len(jax.devices()) == 4, jax.devices()
    target = Path(sys.argv[1])
    for part in (sample_part, data_parallel_part, sweep_part):
        part(target)
