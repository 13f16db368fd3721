"""Benchmark: one iCE fi-RevNet training step (ice/method.py) per flow depth K.

For each K it prints the median over --repeats timed steps (after --warmup
untimed ones) of IceMethod.train_step on random 3x32x32 images: flow
forward, D_nc's 5 inner steps, the objective, the flow's backward and both
Adamax updates, float32; the time of an epoch is that times the steps of
--train-images (48000, shiftedMNIST's training split) at --batch. Then, at
--memory-depth, the peak of the memory allocated during one step beyond what
was allocated before it (the parameters, optimizer state and data), with the
inverting backward (the default: the flow keeps only z and zs) and with every
activation cached (keep_activations). The peak comes from tracemalloc, which
NumPy reports its array buffers to; BLAS workspaces and Python objects other
than arrays are not in it. On the GPU (--device gpu) only the step times are
measured (each step waits for the device before the clock is read).

    python -m benchmarks.bench_ice                       # K = 1, 2, 4 at batch 128
    python -m benchmarks.bench_ice --depths 1,2,4,16 --repeats 2
    python -m benchmarks.bench_ice --device gpu --depths 2,16
"""
import argparse
import sys
import time
import tracemalloc
from types import SimpleNamespace

import numpy as np

from experiment.cli import quiet_on_closed_pipe
from experiment.config import Config
from experiment.trainer import Trainer
from nn.cpu.allocator import retain_freed_memory
from nn.backend import gpu_unavailable_reason
from nn.cpu.parallel import use_cores


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--depths", default="1,2,4", help="comma-separated K (default: 1,2,4)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--train-images", type=int, default=48000)
    p.add_argument("--memory-depth", type=int, default=None,
                   help="K of the memory measurement (default: the first of --depths)")
    p.add_argument("--cores", type=int, default=None, help="threads (default: all)")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    return p.parse_args(argv)


def fake_dataset(n, rng):
    def split(count):
        return SimpleNamespace(images=rng.integers(0, 256, (count, 3, 32, 32), dtype=np.uint8),
                               digit=rng.integers(0, 10, count),
                               texture=rng.integers(0, 10, count))
    return SimpleNamespace(train=split(n), val=split(2), test=split(2), mean=[0.5] * 3,
                           std=[0.5] * 3)


def trainer(depth, batch, keep_activations=False, device="cpu"):
    config = Config(method="ice-firevnet", flow_depth=depth, batch_size=batch)
    t = Trainer(config, fake_dataset(4 * batch, np.random.default_rng(0)), device)
    for layer in t.method.model.flow.layers:
        for part in getattr(layer, "layers", [layer]):
            part.keep_activations = keep_activations
    return t


def steps(t, count, start=0):
    order = t.plan.epoch_order(1)
    for s in range(start, start + count):
        out = t.method.train_step(t.plan.batch_index(order, s % t.plan.steps_per_epoch), 1, s)
        float(out[0])       # wait for the result


def step_seconds(t, repeats, warmup):
    steps(t, warmup)
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        steps(t, 1, warmup + r)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def peak_bytes(depth, batch, keep_activations):
    t = trainer(depth, batch, keep_activations)
    steps(t, 1)                         # initialization and optimizer state allocated
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    steps(t, 1, 1)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak


@quiet_on_closed_pipe
def main(argv=None):
    args = parse(argv)
    if args.device == "gpu" and gpu_unavailable_reason():
        print(f"bench_ice: error: --device gpu: {gpu_unavailable_reason()}", file=sys.stderr)
        raise SystemExit(2)
    retain_freed_memory()
    where = "GPU" if args.device == "gpu" else f"CPU ({use_cores(args.cores)} cores)"
    depths = [int(k) for k in args.depths.split(",")]
    print(f"iCE fi-RevNet training step, batch {args.batch}, float32, {where}; "
          f"median of {args.repeats}")
    print(f"{'K':>3} {'s/step':>8} {'min/epoch':>10}")
    per_epoch = -(-args.train_images // args.batch)
    for K in depths:
        sec = step_seconds(trainer(K, args.batch, device=args.device), args.repeats,
                           args.warmup)
        print(f"{K:>3} {sec:>8.3f} {sec * per_epoch / 60:>10.1f}")
    if args.device == "gpu":
        return
    K = args.memory_depth or depths[0]
    print(f"\npeak memory of one step beyond the model and data, K = {K}, batch {args.batch} "
          "(tracemalloc, NumPy buffers)")
    for keep, name in ((False, "inverting backward"), (True, "cached activations")):
        print(f"  {name:<20} {peak_bytes(K, args.batch, keep) / 2 ** 20:>8.0f} MiB")


if __name__ == "__main__":
    sys.exit(main())
