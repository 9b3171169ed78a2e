"""Held-out NLL of a trained GPT, recomputed in numpy, independently of microgpt_jax's code.

Reads a ``params.safetensors`` written by ``microgpt-jax train`` (the state_dict, its config and vocabulary in
the file's metadata), splits names.txt the way microgpt.py does (strip, drop empty lines, ``random.seed(42)``
then ``random.shuffle``; the last ``--val-size`` names are held out) and computes the mean negative
log-likelihood per predicted character, in float64, with a forward pass written here from microgpt.py's
description: token + position embedding, RMSNorm (no gain), per layer causal multi-head attention and a ReLU MLP
(each pre-normed and residual), lm_head. No import of microgpt_jax or JAX.

    python experiments/numpy_nll.py --params runs/best/params.safetensors --data data/names.txt
"""

from __future__ import annotations

import argparse
import json
import random
import sys

import numpy as np
from safetensors import safe_open


def load(path: str) -> tuple[dict[str, np.ndarray], dict, list[str]]:
    """(state_dict in float64, config dict, vocabulary) of a microgpt_jax safetensors file."""
    with safe_open(path, "np") as f:
        meta = f.metadata()
        params = {k: f.get_tensor(k).astype(np.float64) for k in f.keys()}
    vocab = json.loads(meta["vocab"])
    return params, json.loads(meta["config"]), list(vocab["vocab"] if isinstance(vocab, dict) else vocab)


def rmsnorm(x: np.ndarray) -> np.ndarray:
    """x / sqrt(mean(x^2) + 1e-5) over the last axis, no gain."""
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + 1e-5)


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def logits(params: dict[str, np.ndarray], ids: list[int], cfg: dict) -> np.ndarray:
    """Next-token logits at each position of one sequence, (T, V)."""
    T, H = len(ids), cfg["n_head"]
    C = params["wte"].shape[1]
    D = C // H
    x = rmsnorm(params["wte"][ids] + params["wpe"][:T])
    future = np.triu(np.ones((T, T), bool), k=1)
    for i in range(cfg["n_layer"]):
        h = rmsnorm(x)
        q, k, v = (h @ params[f"layer{i}.attn_w{n}"].T for n in "qkv")
        q, k, v = (a.reshape(T, H, D).transpose(1, 0, 2) for a in (q, k, v))  # (H, T, D)
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(D)
        scores[:, future] = -np.inf
        attn = (softmax(scores) @ v).transpose(1, 0, 2).reshape(T, C)
        x = x + attn @ params[f"layer{i}.attn_wo"].T
        hidden = np.maximum(rmsnorm(x) @ params[f"layer{i}.mlp_fc1"].T, 0)
        x = x + hidden @ params[f"layer{i}.mlp_fc2"].T
    return x @ params["lm_head"].T


def held_out(data: str, val_size: int, seed: int = 42) -> list[str]:
    """The last ``val_size`` names after microgpt.py's shuffle."""
    with open(data, encoding="utf-8-sig") as f:  # a byte-order mark is not text
        docs = [line.strip() for line in f.read().strip().split("\n") if line.strip()]
    random.Random(seed).shuffle(docs)
    return docs[len(docs) - val_size :]


def mean_nll(params: dict[str, np.ndarray], cfg: dict, vocab: list[str], docs: list[str]) -> float:
    """Mean -log p per predicted character over ``docs`` (each cut to block_size + 1 tokens, as in training)."""
    index, bos = {ch: i for i, ch in enumerate(vocab)}, len(vocab)
    total, count = 0.0, 0
    for doc in docs:
        ids = [bos] + [index[ch] for ch in doc] + [bos]
        n = min(cfg["block_size"], len(ids) - 1)
        z = logits(params, ids[:n], cfg)
        logp = z - z.max(axis=-1, keepdims=True)
        logp = logp - np.log(np.exp(logp).sum(axis=-1, keepdims=True))
        total -= logp[np.arange(n), ids[1 : n + 1]].sum()
        count += n
    return total / count


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--params", required=True, help="params.safetensors of a run")
    p.add_argument("--data", required=True, help="names.txt")
    p.add_argument("--val-size", type=int, default=1000, help="held-out names at the end (default 1000)")
    args = p.parse_args()
    try:
        params, cfg, vocab = load(args.params)
        docs = held_out(args.data, args.val_size)
    except (OSError, KeyError, ValueError) as e:
        print(f"error: cannot read the inputs ({e}): check --params and --data", file=sys.stderr)
        return 2
    if cfg.get("model", "gpt") != "gpt" or any(len(ch) != 1 for ch in vocab):
        print("error: this evaluator reads character-level GPT parameters: pass a names run's file", file=sys.stderr)
        return 2
    print(f"{mean_nll(params, cfg, vocab, docs):.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
