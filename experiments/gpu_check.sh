#!/usr/bin/env bash
# The GPU check: one prepared run, at most 8 minutes, on a machine with a GPU and no network (jax with CUDA,
# torch, optax and safetensors already installed there). Installs this checkout against what is there, then
# runs experiments/gpu_check.py (the suite on the GPU, determinism and resume bits, speed against PyTorch on
# the same GPU, sweeps at GPU sizes), which writes OUT/gpu_check.json as each part ends.
#
#   bash experiments/gpu_check.sh OUT            # e.g. bash experiments/gpu_check.sh "$OUT"
#   bash experiments/gpu_check.sh OUT --quick    # short runs: checks the script (also on a CPU)
set -uo pipefail
if [ $# -lt 1 ]; then
  echo "usage: bash experiments/gpu_check.sh OUT [--quick]: OUT is the folder gpu_check.json goes to" >&2
  exit 2
fi
out=$1
shift
cd "$(dirname "$0")/.."
mkdir -p "$out"
{ nvidia-smi || true; } > "$out/nvidia-smi.txt" 2>&1
python -m pip install -q --no-deps --no-build-isolation -e . > "$out/install.log" 2>&1 || {
  echo "error: pip install -e . failed: see $out/install.log" >&2
  exit 2
}
# GPU memory is taken as it is needed (the suite runs 4 processes on the one GPU)
export XLA_PYTHON_CLIENT_PREALLOCATE=false
# 8 minutes at most: the parts share 450 s, and the whole is cut at 470 s
timeout 470 python experiments/gpu_check.py --out "$out" --budget 450 "$@" 2>&1 | tee "$out/gpu_check.log"
