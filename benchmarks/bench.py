"""Benchmark: one training step and inference, ours against PyTorch.

    python -m benchmarks.bench --device cpu|gpu [--json] [--repeats N] [--batch 128]

Rows: train_step_baseline, train_step_ifm_k64, train_step_ifm_kall (the
trainer's own step, experiment.trainer.Trainer.train_step: the batch's uint8
images normalized, forward, backward and an SGD-momentum update of classifier
and D; batch 128, float32, the data already on the device) and inference
(eval-mode forward of the normalized batch). Each row is the median over
--repeats timed runs after warm-up; on the GPU the device is synchronized
before the clock is read. When torch is importable, the same network and IFM
computation written in PyTorch (benchmarks/torch_reference.py) is timed in the
same run, normalizing the same uint8 batch in each step, and the ratio
ours/torch is printed.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time
from types import SimpleNamespace

import numpy as np

from experiment.run import settings_from_args
from experiment.settings import parse, positive_int
from experiment.trainer import Trainer
from nn.allocator import retain_freed_memory
from nn.backend import gpu_unavailable_reason
from nn.openblas import core_name
from nn.parallel import cores, use_cores

ROWS = (("train_step_baseline", False, None), ("train_step_ifm_k64", True, 64),
        ("train_step_ifm_kall", True, "all"), ("inference", False, None))
MEAN, STD = np.array([0.45, 0.42, 0.40]), np.array([0.25, 0.24, 0.26])


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


def random_batch(batch, rng):
    """One split of ``batch`` random uint8 images (batch, 3, 32, 32) with labels."""
    return SimpleNamespace(images=rng.integers(0, 256, (batch, 3, 32, 32), dtype=np.uint8),
                           digit=rng.integers(0, 10, batch), texture=rng.integers(0, 10, batch))


def ours(device, ifm, samples, batch):
    """(train step, inference) of the trainer on one random batch, train.py's defaults."""
    flags = ["--batch-size", str(batch)] + (["--ifm", "--samples", str(samples)] if ifm else [])
    cfg = settings_from_args(parse(flags))
    split = random_batch(batch, np.random.default_rng(0))
    dataset = SimpleNamespace(train=split, val=split, test=split, mean=MEAN, std=STD)
    trainer = Trainer(cfg, dataset, device)
    index = trainer.batch_index(trainer.epoch_order(1), 0)

    def train_step():
        trainer.train_step(index, 1, 0)

    def inference():
        trainer.model.eval()
        trainer.model.forward(trainer.train_data.inputs(index))
        trainer.model.train()

    return train_step, inference


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
    train_step, inference = build(dev, ifm, samples, lam=30.0)
    split = random_batch(batch, np.random.default_rng(0))
    images = torch.from_numpy(split.images).to(dev)
    y = torch.from_numpy(split.digit).to(dev)
    mean = torch.tensor(MEAN, dtype=torch.float32, device=dev).view(1, 3, 1, 1)
    inv_std = torch.tensor(1 / STD, dtype=torch.float32, device=dev).view(1, 3, 1, 1)

    def inputs():
        return (images.float() / 255 - mean) * inv_std

    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    return (lambda: train_step(inputs(), y)), (lambda: inference(inputs())), sync


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
        step, infer = ours(args.device, ifm, samples, args.batch)
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
