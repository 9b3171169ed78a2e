"""microgpt's GPT and training recipe written the way a PyTorch user would write it: a peer to compare with.

Standalone (torch and numpy only; nothing from microgpt_jax), so the comparison is with ordinary PyTorch,
not with this project's choices. Run from the repository root::

    python experiments/torch_peer.py                      # float64 reference check, then a small speed table
    python experiments/torch_peer.py --check-only         # the reference check only
    python experiments/torch_peer.py --no-compile --steps 200 --repeats 3

The model is microgpt's: token + position embedding, rmsnorm (no gain), then per layer a pre-norm causal
multi-head attention (q, k and v from one fused linear, ``F.scaled_dot_product_attention`` with
``is_causal``) and a pre-norm ReLU MLP (4x), both residual, and lm_head; no biases. Weights are (nout, nin)
under the original's state_dict names (wte, wpe, lm_head, layer{i}.attn_wq/wk/wv/wo, layer{i}.mlp_fc1/fc2).
The loss is the mean NLL over the predicted positions of ``[BOS] + doc + [BOS]`` (``cross_entropy`` with the
padding's targets ignored); the optimizer ``torch.optim.Adam(lr=0.01, betas=(0.85, 0.99), eps=1e-8)`` with
``LambdaLR`` decaying the rate linearly to zero over the run. Step s trains on documents s*B .. s*B+B-1
(modulo the corpus). Without torch every entry point says so in one line (``main`` exits with status 2).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

try:
    import torch
    import torch.nn.functional as F  # noqa: N812 (the PyTorch convention)
    from torch import nn
except ImportError:  # the peer is optional: the entry points raise TorchUnavailableError instead
    torch = None

REF_DIR = Path(__file__).resolve().parent.parent / "tests" / "data" / "reference"
TORCH_MISSING = "torch is not installed: the PyTorch peer needs it (pip install torch==2.13.0)"


class TorchUnavailableError(ImportError):
    """Raised by every entry point when torch cannot be imported; its message is one line."""


def require_torch() -> None:
    """Raise TorchUnavailableError (one line) when torch is missing."""
    if torch is None:
        raise TorchUnavailableError(TORCH_MISSING)


def synthetic_docs(n: int = 32033, seed: int = 0) -> list[str]:
    """Name-like documents: random lowercase strings of 3-9 letters (as experiments/bench.py makes them)."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    return ["".join(rng.choice(letters, int(k))) for k in rng.integers(3, 10, size=n)]


def encode(docs: Sequence[str], block_size: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(inputs_NxT, targets_NxT, vocab_size) for ``[BOS] + doc + [BOS]`` cut to block_size + 1 tokens.

    The vocabulary is the sorted unique characters of all documents, BOS the next id. Targets past a
    document's n = min(block_size, len - 1) predicted positions are -1, which the loss ignores."""
    uchars = sorted(set("".join(docs)))
    stoi = {c: i for i, c in enumerate(uchars)}
    bos = len(uchars)
    tokens = np.full((len(docs), block_size + 1), bos, dtype=np.int64)
    targets = np.full((len(docs), block_size), -1, dtype=np.int64)
    for row, doc in enumerate(docs):
        toks = [bos, *(stoi[c] for c in doc), bos][: block_size + 1]
        tokens[row, : len(toks)] = toks
        targets[row, : len(toks) - 1] = toks[1:]
    return tokens[:, :-1], targets, len(uchars) + 1


if torch is not None:

    def rmsnorm(x: torch.Tensor) -> torch.Tensor:
        """x / sqrt(mean(x^2) + 1e-5) over the last axis, no learned gain."""
        return F.rms_norm(x, (x.shape[-1],), eps=1e-5)

    class Layer(nn.Module):
        """One transformer layer: pre-norm causal self-attention, then a pre-norm ReLU MLP, both residual."""

        def __init__(self, n_embd: int, n_head: int) -> None:
            super().__init__()
            self.n_head = n_head
            C = n_embd
            self.attn_wq = nn.Parameter(torch.empty(C, C))
            self.attn_wk = nn.Parameter(torch.empty(C, C))
            self.attn_wv = nn.Parameter(torch.empty(C, C))
            self.attn_wo = nn.Parameter(torch.empty(C, C))
            self.mlp_fc1 = nn.Parameter(torch.empty(4 * C, C))
            self.mlp_fc2 = nn.Parameter(torch.empty(C, 4 * C))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            B, T, C = x.shape
            H = self.n_head
            # one matmul for q, k and v; the weights stay separate state_dict entries, as the original's
            w_qkv = torch.cat([self.attn_wq, self.attn_wk, self.attn_wv])
            q, k, v = F.linear(rmsnorm(x), w_qkv).split(C, dim=-1)
            q, k, v = (a.view(B, T, H, C // H).transpose(1, 2) for a in (q, k, v))  # (B, H, T, D)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + F.linear(y.transpose(1, 2).reshape(B, T, C), self.attn_wo)
            return x + F.linear(F.relu(F.linear(rmsnorm(x), self.mlp_fc1)), self.mlp_fc2)

    class GPT(nn.Module):
        """microgpt's GPT: (B, T) token ids -> (B, T, V) logits. state_dict names are the original's."""

        def __init__(
            self, vocab_size: int, n_layer: int = 1, n_embd: int = 16, n_head: int = 4, block_size: int = 16
        ) -> None:
            super().__init__()
            self.n_layer = n_layer
            self.wte = nn.Parameter(torch.empty(vocab_size, n_embd))
            self.wpe = nn.Parameter(torch.empty(block_size, n_embd))
            self.lm_head = nn.Parameter(torch.empty(vocab_size, n_embd))
            for i in range(n_layer):  # attributes, not a ModuleList, so the names are layer{i}.attn_wq etc.
                self.add_module(f"layer{i}", Layer(n_embd, n_head))
            for p in self.parameters():
                nn.init.normal_(p, std=0.08)

        def forward(self, idx: torch.Tensor) -> torch.Tensor:
            T = idx.shape[1]
            x = rmsnorm(F.embedding(idx, self.wte) + self.wpe[:T])
            for i in range(self.n_layer):
                x = getattr(self, f"layer{i}")(x)
            return F.linear(x, self.lm_head)

    def loss_fn(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean NLL per predicted token over the batch (targets -1 are padding and do not count)."""
        logits = model(inputs)
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-1)


def train(
    model: Any,
    inputs: Any,
    targets: Any,
    steps: int,
    batch_size: int = 1,
    schedule_steps: int | None = None,
    loss: Callable[..., Any] | None = None,
    lr: float = 0.01,
) -> list[float]:
    """The recipe; returns the per-step losses.

    Adam(lr, betas=(0.85, 0.99), eps=1e-8) with LambdaLR's linear decay lr * (1 - step / schedule_steps)
    (``lr`` defaults to 0.01, ``schedule_steps`` to ``steps``; a shorter run is a prefix of the full one); step s
    trains on rows s*B .. s*B+B-1 of ``inputs``/``targets`` (mod N). ``loss`` defaults to ``loss_fn``; pass
    ``torch.compile(loss_fn)`` to compile the forward and backward passes."""
    require_torch()
    loss = loss or loss_fn
    schedule_steps = schedule_steps or steps
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.85, 0.99), eps=1e-8)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1 - step / schedule_steps)
    N = inputs.shape[0]
    losses = []
    for step in range(steps):
        rows = torch.arange(step * batch_size, (step + 1) * batch_size, device=inputs.device) % N
        value = loss(model, inputs[rows], targets[rows])
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        sched.step()
        losses.append(value.item())  # the original prints every step's loss
    return losses


def load_docs(path: Path) -> list[str]:
    """Non-empty stripped lines of a text file."""
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def reference_check(ref_dir: str | Path = REF_DIR, steps: int = 1000, threads: int = 1) -> dict[str, float]:
    """Replay the original microgpt.py's run in float64; return the largest absolute differences from it.

    Loads its initial state_dict (``microgpt_init.json``) and its first 1000 documents in training order
    (``docs_first1000.txt``), trains ``steps`` steps at batch 1 with the recipe (the schedule spans the full
    run, so fewer steps replay a prefix) and compares with ``microgpt_trace.json``: ``losses`` is the largest
    difference of the per-step losses; ``final_params`` (only when the whole run is replayed) of the weights.
    Runs on ``threads`` torch threads (one is fastest at this size), restoring the setting after."""
    require_torch()
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _reference_check(Path(ref_dir), steps)
    finally:
        torch.set_num_threads(saved_threads)


def _reference_check(ref_dir: Path, steps: int) -> dict[str, float]:
    init = json.loads((ref_dir / "microgpt_init.json").read_text())
    trace = json.loads((ref_dir / "microgpt_trace.json").read_text())
    inputs, targets, vocab_size = encode(load_docs(ref_dir / "docs_first1000.txt"), block_size=16)
    model = GPT(vocab_size).double()
    model.load_state_dict({k: torch.tensor(v, dtype=torch.float64) for k, v in init.items()})
    full = len(trace["losses"])
    losses = train(model, torch.from_numpy(inputs), torch.from_numpy(targets), steps, schedule_steps=full)
    out = {"steps": steps, "losses": float(np.max(np.abs(np.array(losses) - trace["losses"][:steps])))}
    if steps == full:
        final = {k: torch.tensor(v, dtype=torch.float64) for k, v in trace["final_params"].items()}
        out["final_params"] = max(float((p - final[k]).abs().max()) for k, p in model.state_dict().items())
    return out


def bench(
    batch_size: int = 1,
    threads: int = 1,
    compile: bool = False,
    steps: int = 1000,
    repeats: int = 5,
    docs: Sequence[str] | None = None,
    device: str = "cpu",
    model_shape: tuple[int, int, int] = (1, 16, 4),
) -> float:
    """Training speed of the recipe in float32 with ``torch.set_num_threads(threads)`` on ``device`` ("cuda" on a
    GPU), for a GPT of ``model_shape`` (n_layer, n_embd, n_head; default microgpt's).

    Each timed run resets the weights and trains ``steps`` steps at ``batch_size`` (a fresh optimizer and
    schedule); the figure is the median of ``repeats`` runs after one untimed warm-up run (which compiles, with
    ``compile``: ``torch.compile(loss_fn)``, forward and backward; the optimizer stays eager). Returns steps/s
    at batch 1, else tokens/s = batch_size * block_size * steps/s. ``docs`` defaults to synthetic names. The
    thread setting is restored after."""
    require_torch()
    if batch_size < 1 or threads < 1 or steps < 1 or repeats < 1:
        raise ValueError("batch_size, threads, steps and repeats must be >= 1")
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _bench(batch_size, threads, compile, steps, repeats, docs, device, model_shape)
    finally:
        torch.set_num_threads(saved_threads)


def _bench(
    batch_size: int,
    threads: int,
    compile: bool,
    steps: int,
    repeats: int,
    docs: Sequence[str] | None,
    device: str = "cpu",
    model_shape: tuple[int, int, int] = (1, 16, 4),
) -> float:
    torch.manual_seed(42)
    block_size = 16
    inputs, targets, vocab_size = encode(docs if docs is not None else synthetic_docs(), block_size)
    inputs, targets = torch.from_numpy(inputs).to(device), torch.from_numpy(targets).to(device)
    model = GPT(vocab_size, *model_shape, block_size=block_size).to(device)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    if compile:
        torch.compiler.reset()  # compile afresh for this thread count
    # on CUDA, "reduce-overhead": CUDA graphs replay each compiled graph as one launch (a small model's steps are
    # launch-bound there); on the CPU the default mode
    mode = "reduce-overhead" if str(device).startswith("cuda") else "default"
    loss = torch.compile(loss_fn, mode=mode) if compile else loss_fn

    def run() -> float:
        model.load_state_dict(init)
        t0 = time.perf_counter()
        train(model, inputs, targets, steps, batch_size, loss=loss)
        return time.perf_counter() - t0

    run()
    seconds = statistics.median(run() for _ in range(repeats))
    return steps / seconds if batch_size == 1 else batch_size * block_size * steps / seconds


def main(argv: list[str] | None = None) -> int:
    """Print the float64 reference check and a speed table (eager and compiled; batch 1 and batch 256)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check-only", action="store_true", help="the float64 reference check only")
    p.add_argument("--no-check", action="store_true", help="skip the reference check")
    p.add_argument("--no-compile", action="store_true", help="eager rows only (torch.compile needs a C++ compiler)")
    p.add_argument("--threads", default=None, help="comma-separated torch thread counts (default 1 and every core)")
    p.add_argument("--steps", type=int, default=1000, help="steps per timed batch-1 run (default 1000)")
    p.add_argument("--batch-steps", type=int, default=40, help="steps per timed batch-256 run (default 40)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per figure, median reported (default 5)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout (the table goes to stderr)")
    args = p.parse_args(argv)
    try:
        threads = [int(t) for t in args.threads.split(",")] if args.threads else sorted({1, os.cpu_count() or 1})
    except ValueError:
        threads = []
    if not threads or min(threads) < 1:
        p.error(f"--threads must be comma-separated whole numbers >= 1, got {args.threads!r}")
    if min(args.steps, args.batch_steps, args.repeats) < 1:
        p.error("--steps, --batch-steps and --repeats must be >= 1")
    try:
        require_torch()
        res: dict[str, Any] = {"torch": torch.__version__}
        lines = []
        if not args.no_check:
            res["reference_float64"] = reference_check()
            ref = res["reference_float64"]
            lines.append(f"float64 vs microgpt.py: losses {ref['losses']:.1e}, final params {ref['final_params']:.1e}")
        if not args.check_only:
            lines.append(f"{'torch ' + torch.__version__:34s}{'threads':>8s}{'eager':>12s}{'compiled':>12s}")
            for batch, steps, unit in ((1, args.steps, "steps/s"), (256, args.batch_steps, "tokens/s")):
                for t in threads:
                    row = {}
                    for compiled in [False] if args.no_compile else [False, True]:
                        key = f"b{batch}_t{t}_{'compiled' if compiled else 'eager'}"
                        row[compiled] = res[key] = bench(batch, t, compiled, steps, args.repeats)
                    cells = "".join(f"{row[c]:12,.0f}" if c in row else f"{'':12s}" for c in (False, True))
                    lines.append(f"{f'batch {batch}, {unit}':34s}{t:8d}{cells}")
            lines.append(f"medians of {args.repeats} runs; synthetic names; float32")
    except TorchUnavailableError as e:
        print(f"torch_peer: {e}", file=sys.stderr)
        return 2
    if args.json:
        print("\n".join(lines), file=sys.stderr)
        print(json.dumps(res))
    else:
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
