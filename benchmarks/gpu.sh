#!/usr/bin/env bash
# Every GPU measurement in one call, for the lent device machine (run from the repository root):
#   run(command="bash benchmarks/gpu.sh", timeout_s=540)
# Checks ShuffleBits bit for bit on the device, then prints Markdown tables; writes the full log
# to $OUT/gpu.log when $OUT is set. About 4-6 minutes on one H100/H200. Everything below needs
# only jax, flax, optax and numpy (the device image has them), so no wheels travel.
set -uo pipefail
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
log=${OUT:-/tmp}/gpu.log
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import jax; print('jax', jax.__version__, jax.devices())"
  echo "## ShuffleBits self-test on this device (published vectors, special values, one-time mode)"
  timeout 60 python3 -c "import sys; from invfeat.shufflebits_selftest import run_checks
results = list(run_checks())
for name, ok, detail in results: print('ok  ' if ok else 'FAIL', name, detail)
sys.exit(not all(ok for _, ok, _ in results))"
  echo "## ShuffleBits throughput, 1 GiB float32"
  timeout 150 python3 benchmarks/shufflebits.py --mib 1024 --formulations
  echo "## ShuffleBits fused into a ResNet-50 re-ID forward (batch 256, 256x128, bf16)"
  timeout 150 python3 benchmarks/shufflebits_resnet.py --hlo-dir /tmp/hlo
  echo "## Victim ResNet-50 training and inference, fp32 and bf16"
  timeout 200 python3 benchmarks/victim.py
} 2>&1 | tee "$log"
