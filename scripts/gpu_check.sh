#!/usr/bin/env bash
# Everything that needs a GPU, in one call of at most 560 s (a device lease is
# 15 minutes, start-up included): the GPU tests, the benchmark against PyTorch
# (TF32 on and off, host and device time, one full-size step of CuPy against
# NumPy at K = 64 and K = all), the IFM block benchmark, an iCE fi-RevNet step
# at flow depths 2 and 16, the float32 audit (no float64 array left after IFM
# and iCE steps), and one epoch of a baseline and an IFM run on the GPU.
#
#   OUT=/some/folder bash scripts/gpu_check.sh
#
# Each step runs under its share of the budget; its exit code and seconds go
# to summary.txt, and a failing step does not stop the next. At most eight
# files come back in $OUT (default /tmp/gpu_check): summary.txt, gpu_tests.txt,
# bench_gpu.json, checks.txt (the IFM block and iCE benchmarks, the float32
# audit), and history.csv and report.md of each run (<method>_history.csv,
# <method>_report.md).
#
# The data must travel with the working tree: before the call, copy the MNIST
# files and the textures into an ignored folder of the checkout, e.g.
#   echo /.data/ >> .git/info/exclude
#   mkdir -p .data && cp -r "$IFM_MNIST_DIR" .data/mnist && cp -r "$IFM_TEXTURES" .data/textures
# and carry `.data`.
set -u
export PYTHONUNBUFFERED=1
out="${OUT:-/tmp/gpu_check}"
mkdir -p "$out"
deadline=$(( $(date +%s) + ${GPU_CHECK_BUDGET:-560} ))
summary="$out/summary.txt"
: > "$summary"

# step NAME SECONDS COMMAND...: run COMMAND for at most SECONDS (and never past
# the deadline), recording its exit code (124: out of time) and duration.
step() {
  local name=$1 limit=$2 left start code
  shift 2
  left=$(( deadline - $(date +%s) ))
  (( limit > left )) && limit=$left
  if (( limit < 5 )); then
    echo "$name: skipped (budget spent)" >> "$summary"
    return
  fi
  start=$(date +%s)
  timeout "$limit" "$@"
  code=$?
  echo "$name: exit $code in $(( $(date +%s) - start )) s (limit $limit s)" >> "$summary"
}

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
  python3 -c "import sys, numpy, cupy; print('python', sys.version.split()[0], 'numpy',
numpy.__version__, 'cupy', cupy.__version__, 'CUDA runtime',
cupy.cuda.runtime.runtimeGetVersion())" 2>&1
  python3 -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda)" 2>&1
} >> "$summary"

step gpu_tests 150 bash -o pipefail -c "python3 -m pytest -q -m gpu tests 2>&1 | tail -60 > '$out/gpu_tests.txt'"
step bench_gpu 150 bash -c "python3 -m benchmarks.bench --device gpu --compare-cpu --json \
  > '$out/bench_gpu.json' 2>> '$summary'"
step bench_ifm_gpu 45 bash -c "python3 -m benchmarks.bench_ifm --device gpu >> '$out/checks.txt' 2>&1"
step bench_ice_gpu 45 bash -c "python3 -m benchmarks.bench_ice --device gpu --depths 2,16 \
  --repeats 3 >> '$out/checks.txt' 2>&1"
step float32_audit 30 bash -c "python3 -m scripts.float32_audit --device gpu >> '$out/checks.txt' 2>&1"

if [ -d .data/mnist ] && [ -d .data/textures ]; then
  for method in baseline ifm; do
    flag=$([ "$method" = ifm ] && echo --ifm)
    run="/tmp/gpu_check_runs/$method"
    step "run_$method" 60 python3 train.py --device gpu $flag --epochs 1 --out "$run" \
      --restart --quiet --mnist-dir .data/mnist --textures .data/textures \
      --cache-dir /tmp/ifm-cache
    cp "$run/history.csv" "$out/${method}_history.csv" 2>/dev/null
    cp "$run/report.md" "$out/${method}_report.md" 2>/dev/null
    python3 -c "import json; c = json.load(open('$run/config.json'));
print('$method run software:', json.dumps(c['software']))" >> "$summary" 2>&1
  done
else
  echo "runs: skipped (no .data/mnist and .data/textures)" >> "$summary"
fi
cat "$summary"
