#!/usr/bin/env bash
# Everything that needs a GPU, in one call sized for a 15-minute device lease:
# the GPU tests (NumPy/CuPy parity of every op, the IFM block and the training
# step), the benchmarks against PyTorch, and a short end-to-end GPU run.
#
# The data must travel with the working tree: before the call, copy the MNIST
# files and the textures into an ignored folder of the checkout, e.g.
#   echo /.data/ >> .git/info/exclude
#   mkdir -p .data && cp -r "$IFM_MNIST_DIR" .data/mnist && cp -r "$IFM_TEXTURES" .data/textures
# and carry `.data`. Results go to $OUT (or /tmp/gpu_check).
set -u
export PYTHONUNBUFFERED=1
out="${OUT:-/tmp/gpu_check}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$out/device.txt"
python3 -c "import cupy, torch; print('cupy', cupy.__version__, 'torch', torch.__version__)" 2>&1 | tee -a "$out/device.txt"

python3 -m pytest -q -m gpu tests 2>&1 | tee "$out/gpu_tests.log"
python3 -m benchmarks.bench --device gpu 2>&1 | tee "$out/bench_gpu.txt"
python3 -m benchmarks.bench --device cpu --rows train_step_baseline,train_step_ifm_k64,inference \
    2>&1 | tee "$out/bench_cpu.txt"
python3 -m benchmarks.bench_ifm --device gpu 2>&1 | tee "$out/bench_ifm_gpu.txt"

if [ -d .data/mnist ] && [ -d .data/textures ]; then
  for method in "" "--ifm"; do
    name="run${method:+_ifm}"
    timeout 240 python3 train.py --device gpu $method --epochs 2 --out "/tmp/$name" \
      --mnist-dir .data/mnist --textures .data/textures --cache-dir /tmp/ifm-cache \
      2>&1 | grep -v " step " | tee "$out/$name.log"
  done
else
  echo "no .data/mnist and .data/textures: skipped the GPU training runs" | tee "$out/runs.log"
fi
