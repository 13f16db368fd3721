"""Benchmark: one training step and inference, ours against PyTorch.

    python bench.py --device cpu|gpu [--json] [--repeats N] [--batch 128]

Rows: train_step_baseline, train_step_ifm_k64, train_step_ifm_kall (forward,
backward and an SGD-momentum update of classifier and D; batch 128, float32,
data already on the device) and inference (eval-mode forward). Each row is the
median over --repeats timed runs after warm-up; on the GPU the device is
synchronized before the clock is read. When torch is importable, the same
network and IFM computation written in PyTorch (benchmarks/torch_reference.py)
is timed in the same run and the ratio ours/torch is printed.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

import nn
from nn.allocator import retain_freed_memory
from nn.backend import gpu_unavailable_reason, xp_for
from nn.openblas import core_name
from nn.parallel import cores, use_cores
from nn.module import Container
from experiment.classifier import Classifier
from experiment.settings import positive_int

ROWS = (("train_step_baseline", False, None), ("train_step_ifm_k64", True, 64),
        ("train_step_ifm_kall", True, "all"), ("inference", False, None))


def median_ms(fn, sync, repeats, warmup):
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def ours(device, ifm, samples, batch):
    xp = xp_for(device)
    rng = np.random.default_rng(0)
    model = Classifier(rng=rng)
    parts = [("clf", model)]
    reg = None
    if ifm:
        from ifm import IFMRegularizer
        reg = IFMRegularizer(channels=list(model.channels), pairs=[(1, 2), (2, 3), (3, 4)],
                             lam=1.0, samples=samples, estimator="jsd", upsample="nearest",
                             marginal="image", rng=rng)
        parts.append(("ifm", reg))
    trainable = Container(parts).to(device)
    opt = nn.SGD(trainable.params, lr=0.01, momentum=0.9)
    # The batch in the layout the trainer hands over (experiment.trainer.DeviceSplit:
    # memory (3, H, W, N)); PyTorch gets its own NCHW.
    x = xp.asarray(rng.standard_normal((3, 32, 32, batch)).astype(np.float32)).transpose(3, 0, 1, 2)
    y = xp.asarray(rng.integers(0, 10, batch))
    step_rng = np.random.default_rng(1)

    def train_step():
        logits = model.forward(x)
        loss, dlogits = nn.softmax_cross_entropy(logits, y)
        dfeatures = None
        if reg is not None:
            reg.forward(model.features, step_rng)
            dfeatures = reg.backward()
        model.backward(dlogits, dfeatures)
        opt.step(trainable.grads)

    def inference():
        model.eval()
        model.forward(x)
        model.train()

    return train_step, inference, xp


def sync_for(device):
    if device == "gpu":
        import cupy
        return cupy.cuda.Device().synchronize
    return lambda: None


def torch_side(device, ifm, samples, batch):
    try:
        import torch
    except ImportError:
        return None
    from benchmarks.torch_reference import build
    dev = "cuda" if device == "gpu" else "cpu"
    train_step, inference = build(dev, ifm, samples)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, generator=g).to(dev)
    y = torch.randint(0, 10, (batch,), generator=g).to(dev)
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    return (lambda: train_step(x, y)), (lambda: inference(x)), sync


def device_name(device):
    if device == "gpu":
        import cupy
        return cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    blas = core_name()
    return (f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores, "
            f"OpenBLAS kernels {blas or 'unknown'}, ours split over {cores()} threads")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=None,
                   help="timed runs per row (default: 10 on cpu, 50 on gpu)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rows", default=",".join(r[0] for r in ROWS),
                   help="comma-separated subset of rows to run")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch side")
    p.add_argument("--cores", type=positive_int, default=None,
                   help="cpu: threads our NumPy work is split over (default: all cores, as "
                        "train.py; 1: one thread plus OpenBLAS's own). See nn/parallel.py")
    p.add_argument("--malloc", choices=("retain", "default"), default="retain",
                   help="'retain' (as train.py does): keep freed memory in the heap, see "
                        "nn/allocator.py; 'default': glibc's own policy")
    args = p.parse_args(argv)
    if args.device == "gpu" and gpu_unavailable_reason():
        p.error(f"--device gpu: {gpu_unavailable_reason()}")
    if args.device == "cpu":
        use_cores(args.cores)
    if args.malloc == "retain":
        retain_freed_memory()
    repeats = args.repeats or (50 if args.device == "gpu" else 10)
    wanted = set(args.rows.split(","))
    sync = sync_for(args.device)
    results = []
    for name, ifm, samples in ROWS:
        if name not in wanted:
            continue
        step, infer, _ = ours(args.device, ifm, samples, args.batch)
        fn = infer if name == "inference" else step
        ours_ms = median_ms(fn, sync, repeats, args.warmup)
        torch_ms = None
        if not args.no_torch:
            side = torch_side(args.device, ifm, samples, args.batch)
            if side is not None:
                t_step, t_infer, t_sync = side
                torch_ms = median_ms(t_infer if name == "inference" else t_step, t_sync,
                                     repeats, args.warmup)
        results.append({"name": name, "batch": args.batch, "ours_ms": round(ours_ms, 3),
                        "torch_ms": None if torch_ms is None else round(torch_ms, 3)})
        if not args.json:
            print(f"  {name}: ours {ours_ms:.1f} ms" + (f", torch {torch_ms:.1f} ms"
                                                         if torch_ms else ""), file=sys.stderr)
    if args.json:
        print(json.dumps({"device": device_name(args.device), "rows": results}))
        return 0
    print(f"device: {device_name(args.device)}; batch {args.batch}; median of {repeats}")
    print(f"| {'row':<22} | {'ours ms':>9} | {'torch ms':>9} | {'ours/torch':>10} |")
    print(f"|{'-' * 24}|{'-' * 11}|{'-' * 11}|{'-' * 12}|")
    for r in results:
        t = r["torch_ms"]
        ratio = f"{r['ours_ms'] / t:.2f}" if t else "-"
        print(f"| {r['name']:<22} | {r['ours_ms']:>9.1f} | "
              f"{(f'{t:.1f}' if t else '-'):>9} | {ratio:>10} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
