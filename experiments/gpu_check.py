"""The checks a GPU machine answers: the suite on the GPU, determinism and resume bits there, speed against
PyTorch on the same GPU, and sweeps at sizes a GPU is for. Run by ``experiments/gpu_check.sh OUT`` (which
installs the checkout first); writes ``OUT/gpu_check.json`` after every part, so a part cut short by the time
limit still leaves the others' figures. Runs on a CPU too (the figures then say so): that is how it is tested.

    python experiments/gpu_check.py --out OUT [--budget SECONDS] [--quick]

Parts, each with its own share of ``--budget`` (default 450 s):

- ``tests``: ``pytest -m "not slow"`` on the default device (4 workers, no preallocation of GPU memory);
- ``determinism``: the default ``microgpt-jax train`` twice, every parameter compared bit for bit;
- ``resume``: the same run stopped by SIGTERM after its first checkpoint and resumed, against the first run;
- ``speed``: ours (train's programs) and the PyTorch peer (eager and ``torch.compile``; on CUDA
  ``mode="reduce-overhead"``, CUDA graphs) on the same device: microgpt at batch 1 and batch 256, 4x128x4 at
  batch 256;
- ``sweeps``: member-steps per second of the default model's seeds (16, 256, 4,096 members).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))


def write(out: Path, result: dict[str, Any]) -> None:
    tmp = out / "gpu_check.json.tmp"
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(tmp, out / "gpu_check.json")


def program(*args: str) -> list[str]:
    return [sys.executable, "-m", "microgpt_jax", *args]


def params_of(run: Path) -> dict[str, Any]:
    from safetensors.numpy import load_file

    return load_file(run / "params.safetensors")


def same_bits(a: Path, b: Path) -> bool:
    pa, pb = params_of(a), params_of(b)
    return pa.keys() == pb.keys() and all(pa[k].tobytes() == pb[k].tobytes() for k in pa)


def part_tests(budget: float) -> dict[str, Any]:
    env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-n", "4", "-m", "not slow", "-p", "no:cacheprovider"]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=budget)
    except subprocess.TimeoutExpired:
        return {"summary": f"not finished in {budget:.0f} s"}
    lines = proc.stdout.strip().splitlines()
    failed = [x for x in lines if x.startswith("FAILED")][:20]
    return {"returncode": proc.returncode, "summary": lines[-1] if lines else proc.stderr[-500:], "failed": failed}


def part_bits(work: Path, data: str, steps: int, budget: float) -> dict[str, Any]:
    base = ["train", "--data", data, "--steps", str(steps), "--num-samples", "2"]
    t0 = time.perf_counter()
    for name in ("a", "b"):
        subprocess.run(program(*base, "--out", str(work / name)), check=True, capture_output=True, timeout=budget)
    out: dict[str, Any] = {"determinism_bit_identical": same_bits(work / "a", work / "b"),
                           "train_seconds": (time.perf_counter() - t0) / 2}  # fmt: skip
    # resume: SIGTERM once the first checkpoint is on disk, then --resume; the result against run a
    proc = subprocess.Popen(program(*base, "--out", str(work / "c"), "--ckpt-every", str(max(steps // 10, 1))),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    manifest = work / "c" / "checkpoint" / "checkpoint.json"
    deadline = time.monotonic() + budget / 2
    while not manifest.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=budget / 2)
    out["resume_stopped_early"] = proc.returncode != 0
    subprocess.run(program("train", "--resume", str(work / "c")), check=True, capture_output=True, timeout=budget)
    out["resume_bit_identical"] = same_bits(work / "a", work / "c")
    return out


def part_speed(quick: bool) -> dict[str, Any]:
    import bench
    import jax
    import torch_peer

    tokens, n, config, _ = bench.load_data(None)
    docs = bench.synthetic_docs()
    b1, bb = (50, 4) if quick else (1000, 40)
    out: dict[str, Any] = {}
    t = bench.median_times({"b1": bench.project_train(tokens, n, config, 1, b1, b1),
                            "b256": bench.project_train(tokens, n, config, 256, bb, bb)}, 3)  # fmt: skip
    out["ours_b1_steps_per_s"] = b1 / t["b1"]
    out["ours_b256_tokens_per_s"] = bb * 256 * 16 / t["b256"]
    wide = config.__class__(vocab_size=config.vocab_size, n_layer=4, n_embd=128, n_head=4)
    tw = bench.median_times({"w": bench.project_train(tokens, n, wide, 256, bb, bb)}, 3)
    out["ours_4x128x4_b256_tokens_per_s"] = bb * 256 * 16 / tw["w"]
    try:
        import torch
    except ImportError:
        return {**out, "torch": None}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    out["torch"] = f"{torch.__version__} on {device}"
    for compiled in (False, True):
        tag = "compiled" if compiled else "eager"
        try:
            out[f"torch_b1_{tag}"] = torch_peer.bench(1, 1, compiled, b1, 3, docs, device=device)
            out[f"torch_b256_{tag}"] = torch_peer.bench(256, 1, compiled, bb, 3, docs, device=device)
            out[f"torch_4x128x4_b256_{tag}"] = torch_peer.bench(256, 1, compiled, bb, 3, docs, device=device,
                                                                model_shape=(4, 128, 4))  # fmt: skip
        except Exception as e:  # torch.compile needs its toolchain: say so, keep the rest
            out[f"torch_{tag}_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    best = max((v for k, v in out.items() if k.startswith("torch_4x128x4") and isinstance(v, float)), default=None)
    if best:
        out["ours_over_torch_4x128x4_b256"] = out["ours_4x128x4_b256_tokens_per_s"] / best
    out["jax_device"] = str(jax.devices()[0])
    return out


def part_sweeps(quick: bool) -> dict[str, Any]:
    import bench
    import bench_grids

    docs = bench.synthetic_docs(2000)
    out = {}
    for members in (16, 256) if quick else (16, 256, 4096):
        grid = bench_grids.Grid(1, 16, 4, 1, (0.01,), tuple(range(members)), 100 if quick else 1000)
        r = bench_grids.ours(grid, docs, grid.steps, 3)
        out[f"seeds_{members}_member_steps_per_s"] = r["member_steps_per_s"]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="the folder gpu_check.json goes to (made if missing)")
    p.add_argument("--budget", type=float, default=450.0, help="seconds for all the parts (default 450)")
    p.add_argument("--quick", action="store_true", help="short runs: checks the script itself")
    p.add_argument("--skip", default="", help="comma-separated parts to skip (tests, bits, speed, sweeps)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    work.mkdir(exist_ok=True)
    import jax

    result: dict[str, Any] = {"platform": f"{platform.machine()}, jax {jax.__version__}, {jax.default_backend()}",
                              "devices": [str(d) for d in jax.devices()]}  # fmt: skip
    data = str(ROOT / "microgpt_jax" / "corpus" / "names.txt")
    skip = set(args.skip.split(",")) - {""}
    parts = {
        "tests": lambda: part_tests(0.4 * args.budget),
        "bits": lambda: part_bits(work, data, 200 if args.quick else 1000, 0.2 * args.budget),
        "speed": lambda: part_speed(args.quick),
        "sweeps": lambda: part_sweeps(args.quick),
    }
    for name, run in parts.items():
        if name in skip:
            continue
        t0 = time.perf_counter()
        try:
            result[name] = run()
        except Exception as e:  # one part's failure is a figure too; the others still run
            result[name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"}
        result[name]["seconds"] = round(time.perf_counter() - t0, 1)
        write(out, result)
        print(f"{name}: {json.dumps(result[name])[:400]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
