#!/usr/bin/env bash
# Every GPU measurement in one call, for the lent device machine (run from the repository root):
#   run(command="bash benchmarks/gpu.sh", timeout_s=600)
# Checks ShuffleBits bit for bit on the device, then prints Markdown tables; writes the full log
# to $OUT/gpu.log and the ResNet-50 HLO texts to $OUT/hlo/ when $OUT is set (else under /tmp).
# Each step runs under its own `timeout` (caps 10 + 40 + 80 + 110 + 100 + 230 = 570 s, so the
# whole stays under 9.5 minutes even if every step hangs); a step that fails or times out is
# reported and the next one runs. Expected on one H100: about 3-5 minutes, most of it XLA
# compiles and autotuning (each step prints its seconds, the scripts their compile times).
# Compiles are cached in $JAX_COMPILATION_CACHE_DIR (default /tmp/invfeat-jax-cache): a rerun on
# the same warm machine is faster, and its "compile s" columns then show cache loads.
# Needs only jax, flax, optax and numpy (the device image has them; no grain, no
# tensorflow-datasets, no array-record), so no wheels travel.
#
#   SMOKE=1 bash benchmarks/gpu.sh    # the same steps at tiny sizes on CPU, 1-2 minutes
#
# Smoke mode forces JAX_PLATFORMS=cpu, makes every DeprecationWarning an error, and hides grain,
# tensorflow_datasets and array_record (importing them fails, as on the device image).
# Exit status: the number of failed steps. $PYTHON picks the interpreter (default python3).
set -uo pipefail
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
out=${OUT:-/tmp}
mkdir -p "$out"
log=$out/gpu.log

if [[ ${SMOKE:-0} == 1 ]]; then
  export JAX_PLATFORMS=cpu PYTHONWARNINGS=error::DeprecationWarning
  hidden=$(mktemp -d)
  trap 'rm -rf "$hidden"' EXIT
  for module in grain tensorflow_datasets array_record; do
    mkdir "$hidden/$module"
    echo "raise ImportError('$module is not on the GPU machine image (SMOKE=1 hides it)')" \
      >"$hidden/$module/__init__.py"
  done
  export PYTHONPATH=$hidden:$PYTHONPATH
  shufflebits_args=(--mib 4 --repeats 3 --sample 2000)
  resnet_args=(--batch 2 --height 32 --width 16 --repeats 3)
  stream_args=(--mib 1 --width 256 --repeats 2 --serve-config cpu-tiny --serve-batch 4)
  victim_args=(--configs cpu-tiny --dtypes float32,bfloat16 --train-batch 4 --infer-batch 4
    --repeats 1 --warmup 1 --matmul-size 64)
  mode="smoke (tiny sizes, CPU)"
else
  export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/invfeat-jax-cache}
  shufflebits_args=(--mib 1024)
  resnet_args=()  # ResNet-50, batch 256, 256x128, bf16, 60 rounds
  # 1 GiB (target: stream >= 0.5 of a device copy); fused into ResNet-50, batch 256, 256x128,
  # bf16 as the step above (target: < 0.5 % of the step)
  stream_args=(--mib 1024 --repeats 20 --serve-config resnet50 --serve-dtype bfloat16)
  victim_args=()  # ResNet-50 at 256x128, fp32 and bf16, train batch 64, infer batch 256
  mode="full"
fi

failed=0
step() {  # step TITLE SECONDS COMMAND...: run COMMAND under `timeout SECONDS`, report failures
  local title=$1 limit=$2 start=$SECONDS rc
  shift 2
  echo
  echo "## $title"
  timeout -k 5 "$limit" "$@"
  rc=$?
  if ((rc == 0)); then
    echo "(step took $((SECONDS - start)) s of its $limit s)"
  else
    ((rc == 124 || rc == 137)) && why="timed out after $limit s" || why="exit status $rc"
    echo "!! step failed: $title: $why (after $((SECONDS - start)) s)"
    failed=$((failed + 1))
  fi
}

selftest='import sys, device_info
from invfeat.selftest import run_checks
print(device_info.describe())
results = list(run_checks())
for name, ok, detail in results: print("ok  " if ok else "FAIL", name, detail)
sys.exit(not all(ok for _, ok, _ in results))'

{
  echo "# benchmarks/gpu.sh, $mode, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  if command -v nvidia-smi >/dev/null; then
    timeout 10 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  else
    echo "nvidia-smi: not found (no NVIDIA driver here)"
  fi
  step "ShuffleBits self-test on this device (published vectors, special values, one-time mode)" \
    40 env PYTHONPATH="benchmarks:$PYTHONPATH" "$py" -c "$selftest"
  step "ShuffleBits throughput, ${shufflebits_args[1]} MiB float32, with alternative kernels" \
    80 "$py" benchmarks/shufflebits.py --formulations "${shufflebits_args[@]}"
  step "ShuffleBits fused into a ResNet-50 re-ID forward (GPU: batch 256, 256x128, bf16)" \
    110 "$py" benchmarks/shufflebits_resnet.py --hlo-dir "$out/hlo" "${resnet_args[@]}"
  step "Stream mode (ChaCha20) throughput, ${stream_args[1]} MiB, and fused into a re-ID forward" \
    100 "$py" benchmarks/stream.py "${stream_args[@]}"
  step "Victim re-ID training and inference (GPU: ResNet-50, fp32 and bf16)" \
    230 "$py" benchmarks/victim.py "${victim_args[@]}"
  echo
  echo "# gpu.sh done in $SECONDS s; $failed step(s) failed"
  exit "$failed"
} 2>&1 | tee "$log"
