"""The pytree types every model shares."""

from __future__ import annotations

import jax

Params = dict[str, jax.Array]  # a state_dict: microgpt's names, each matrix (nout, nin)
Cache = dict[str, jax.Array]  # what sampling carries between positions (the GPT's keys and values)
