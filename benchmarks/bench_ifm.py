"""Benchmark: forward + backward time of IFM on each of the paper's three layer pairs alone.

The conv-block outputs of a 32x32 input before pooling are H_1 (N, 32, 32, 32),
H_2 (N, 64, 16, 16), H_3 (N, 128, 8, 8), H_4 (N, 128, 4, 4); the blocks are
(1,2), (2,3), (3,4). For each pair and each K it prints the median over
--repeats timed runs (after --warmup untimed ones) of the forward of
``IFMRegularizer.one_pair`` (sampling included; one critic, so not the
stacked run of the training step), of its backward alone and of the two
together, float32, D in training mode. On the GPU the times come from CUDA events
(cupyx.profiler.benchmark), after warm-up.

    python -m benchmarks.bench_ifm                    # CPU, batch 128, K = 64 and all
    python -m benchmarks.bench_ifm --device gpu
    python -m benchmarks.bench_ifm --batch 32 --repeats 3 --samples 64,all
"""
import argparse
import sys
import time

import numpy as np

from experiment.cli import quiet_on_closed_pipe
from experiment.settings import positive_int
from ifm import IFMRegularizer
from ifm.sampling import count_rows
from nn.cpu.allocator import retain_freed_memory
from nn.backend import gpu_unavailable_reason, xp_for
from nn.cpu.parallel import use_cores

SHAPES = {1: (32, 32), 2: (64, 16), 3: (128, 8), 4: (128, 4)}     # layer: (channels, side)
PAIRS = ((1, 2), (2, 3), (3, 4))
MAX_ROWS = 1_000_000   # skip a setting with more rows through D (memory: ~10 GB per 1M rows)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--samples", default="64,all", help="comma-separated K values (default: 64,all)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--estimator", default="jsd")
    p.add_argument("--upsample", default="nearest", choices=("nearest", "bilinear"))
    p.add_argument("--marginal", default="image", choices=("image", "batch"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cores", type=positive_int, default=None,
                   help="cpu: threads the NumPy work is split over (default: all; nn/cpu/parallel.py)")
    args = p.parse_args(argv)
    if args.device == "gpu" and gpu_unavailable_reason():
        p.error(f"--device gpu: {gpu_unavailable_reason()}; or use --device cpu")
    return args


def feature_map(rng, xp, N, layer):
    C, side = SHAPES[layer]
    h = rng.standard_normal((C, side, side, N)).astype(np.float32)
    h = np.where(h > 0, h, np.float32(0.2) * h)                      # post-LeakyReLU-like
    return xp.asarray(h)                                             # (C, h, w, N), batch last


def time_cpu(fn, repeats, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def time_gpu(fn, repeats, warmup):
    from cupyx.profiler import benchmark
    result = benchmark(fn, (), n_repeat=repeats, n_warmup=warmup)
    return float(np.median(result.gpu_times[0]))


@quiet_on_closed_pipe
def main(argv=None):
    args = parse(argv)
    xp = xp_for(args.device)
    if args.device == "cpu":
        retain_freed_memory()
        use_cores(args.cores)
    timer = time_cpu if args.device == "cpu" else time_gpu
    rng = np.random.default_rng(args.seed)
    features = {layer: feature_map(rng, xp, args.batch, layer) for layer in SHAPES}
    samples = [s if s == "all" else int(s) for s in args.samples.split(",")]
    device = "cpu"
    if args.device == "gpu":
        import cupy
        device = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"].decode()
    print(f"# IFM of one layer pair, forward+backward, device {args.device} ({device}), "
          f"batch {args.batch}, estimator {args.estimator}, upsample {args.upsample}, marginal {args.marginal}, "
          f"float32, median of {args.repeats} after {args.warmup} warm-up")
    print(f"{'pair':>5} {'H_l':>14} {'H_l+1':>14} {'K':>5} {'rows':>9} "
          f"{'fwd ms':>9} {'bwd ms':>9} {'total ms':>9}")
    for low, high in PAIRS:
        h_low, h_high = features[low], features[high]
        block = IFMRegularizer.one_pair(
            SHAPES[low][0], SHAPES[high][0], samples=1, estimator=args.estimator,
            upsample=args.upsample, marginal=args.marginal,
            rng=np.random.default_rng(args.seed)).to(args.device)
        for K in samples:
            block.samples = K
            _, h, w, N = h_low.shape
            rows = count_rows(N, h, w, K, args.marginal, args.estimator == "infonce")
            label = f"{low}-{high}"
            if rows > MAX_ROWS:
                print(f"{label:>5} {str(h_low.shape[:3]):>14} {str(h_high.shape[:3]):>14} "
                      f"{K!s:>5} {rows:>9}  skipped (more than {MAX_ROWS} rows)")
                continue
            step = [0]

            def forward():
                step[0] += 1
                return block.forward([h_low, h_high],
                                     np.random.default_rng([args.seed, step[0]]))

            def forward_backward():
                forward()
                block.backward(1.0)

            t_fwd = timer(forward, args.repeats, args.warmup)
            t_bwd = timer(lambda: block.backward(1.0), args.repeats, args.warmup)   # same cache
            t_all = timer(forward_backward, args.repeats, args.warmup)
            print(f"{label:>5} {str(h_low.shape[:3]):>14} {str(h_high.shape[:3]):>14} {K!s:>5} "
                  f"{rows:>9} {t_fwd * 1e3:>9.1f} {t_bwd * 1e3:>9.1f} {t_all * 1e3:>9.1f}")


if __name__ == "__main__":
    sys.exit(main())
