"""Benchmark: one training step and inference, ours against PyTorch.

    python -m benchmarks.bench --device cpu|gpu [--json] [--repeats N] [--batch 128]

Columns: ours (until the device is done), ours_host (until the step returned
to Python: on the GPU the host's share), torch, and on the GPU torch_fp32
(TensorFloat-32 off) and, with --compare-cpu, the normwise parameter
difference of one step on CuPy against one on NumPy.

Rows: train_step_baseline, train_step_ifm_k64, train_step_ifm_kall (the
trainer's own step, experiment.methods.ClassifierMethod.train_step: the batch's uint8
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

from experiment.cli import quiet_on_closed_pipe
from experiment.config import Config
from experiment.settings import positive_int
from experiment.trainer import Trainer
from nn.cpu.allocator import retain_freed_memory
from nn.backend import gpu_unavailable_reason
from nn.cpu.openblas import core_name
from nn.cpu.parallel import cores, use_cores

ROWS = (("train_step_baseline", False, None), ("train_step_ifm_k64", True, 64),
        ("train_step_ifm_kall", True, "all"), ("inference", False, None))
MEAN, STD = np.array([0.45, 0.42, 0.40]), np.array([0.25, 0.24, 0.26])


def median_ms(fn, sync, repeats, warmup):
    """(median ms until the device is done, median ms until ``fn`` returned to Python).

    On the CPU the two are the same. On the GPU the second is the host's share:
    the time to issue the step's kernels, which the device may still be running.
    """
    for _ in range(warmup):
        fn()
    sync()
    done, returned = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        returned.append((time.perf_counter() - t) * 1000)
        sync()
        done.append((time.perf_counter() - t) * 1000)
    return statistics.median(done), statistics.median(returned)


def random_batch(batch, rng):
    """One split of ``batch`` random uint8 images (batch, 3, 32, 32) with labels."""
    return SimpleNamespace(images=rng.integers(0, 256, (batch, 3, 32, 32), dtype=np.uint8),
                           digit=rng.integers(0, 10, batch), texture=rng.integers(0, 10, batch))


def ours(device, ifm, samples, batch):
    """(train step, inference, trainer) on one random batch, train.py's defaults."""
    config = Config(method="ifm", samples=samples, batch_size=batch) if ifm else \
        Config(batch_size=batch)
    split = random_batch(batch, np.random.default_rng(0))
    dataset = SimpleNamespace(train=split, val=split, test=split, mean=MEAN, std=STD)
    trainer = Trainer(config, dataset, device)
    index = trainer.plan.batch_index(trainer.plan.epoch_order(1), 0)

    def train_step():
        trainer.method.train_step(index, 1, 0)

    def inference():
        trainer.method.model.eval()
        trainer.method.model.forward(trainer.train_data.inputs(index))
        trainer.method.model.train()

    return train_step, inference, trainer


def param_error(gpu_trainer, cpu_trainer):
    """max |p_gpu - p_cpu| / max |p_cpu| over all parameters, after one step on each."""
    from nn.backend import to_numpy
    for trainer in (gpu_trainer, cpu_trainer):
        trainer.method.train_step(trainer.plan.batch_index(trainer.plan.epoch_order(1), 0), 1, 0)
    cpu, gpu = ({k: to_numpy(v).astype(np.float64) for k, v in t.method.trainable.params.items()}
                for t in (cpu_trainer, gpu_trainer))
    scale = max(np.abs(v).max() for v in cpu.values())
    return max(np.abs(gpu[k] - cpu[k]).max() for k in cpu) / scale


def sync_for(device):
    if device == "gpu":
        import cupy
        return cupy.cuda.Device().synchronize
    return lambda: None


def torch_side(device, ifm, samples, batch, tf32=True):
    """(train step, inference, sync) of the PyTorch reference, or None without torch.

    tf32=True is PyTorch's default: cuDNN convolutions may use TensorFloat-32
    (matrix products do not); tf32=False computes them in float32, as ours do.
    """
    try:
        import torch
    except ImportError:
        return None
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = False
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


@quiet_on_closed_pipe
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--batch", type=positive_int, default=128)
    p.add_argument("--repeats", type=int, default=None,
                   help="timed runs per row (default: 10 on cpu, 50 on gpu)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rows", default=",".join(r[0] for r in ROWS),
                   help="comma-separated subset of rows to run")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch side")
    p.add_argument("--compare-cpu", action="store_true",
                   help="gpu: also run each training row's step once on NumPy and report the "
                        "normwise parameter difference CuPy - NumPy")
    p.add_argument("--cores", type=positive_int, default=None,
                   help="cpu: threads our NumPy work is split over (default: all cores, as "
                        "train.py; 1: one thread plus OpenBLAS's own). See nn/cpu/parallel.py")
    p.add_argument("--malloc", choices=("retain", "default"), default="retain",
                   help="'retain' (as train.py does): keep freed memory in the heap, see "
                        "nn/cpu/allocator.py; 'default': glibc's own policy")
    args = p.parse_args(argv)
    if args.device == "gpu" and gpu_unavailable_reason():
        p.error(f"--device gpu: {gpu_unavailable_reason()}; or use --device cpu")
    if args.device == "cpu":
        use_cores(args.cores)
    if args.malloc == "retain":
        retain_freed_memory()
    repeats = args.repeats or (50 if args.device == "gpu" else 10)
    wanted = set(args.rows.split(","))
    unknown = sorted(wanted - {r[0] for r in ROWS})
    if unknown:
        p.error(f"--rows: no row {', '.join(unknown)}; the rows are "
                + ", ".join(r[0] for r in ROWS))
    sync = sync_for(args.device)
    results = []
    for name, ifm, samples in ROWS:
        if name not in wanted:
            continue
        step, infer, _ = ours(args.device, ifm, samples, args.batch)
        fn = infer if name == "inference" else step
        ours_ms, ours_host_ms = median_ms(fn, sync, repeats, args.warmup)
        row = {"name": name, "batch": args.batch, "ours_ms": round(ours_ms, 3),
               "ours_host_ms": round(ours_host_ms, 3), "torch_ms": None}
        precisions = ((True, "torch_ms"), (False, "torch_fp32_ms")) if args.device == "gpu" \
            else ((True, "torch_ms"),)
        for tf32, key in precisions if not args.no_torch else ():
            side = torch_side(args.device, ifm, samples, args.batch, tf32)
            if side is not None:
                t_step, t_infer, t_sync = side
                row[key] = round(median_ms(t_infer if name == "inference" else t_step, t_sync,
                                           repeats, args.warmup)[0], 3)
        if args.compare_cpu and args.device == "gpu" and name != "inference":
            row["cpu_gpu_param_error"] = float(param_error(
                ours(args.device, ifm, samples, args.batch)[2],
                ours("cpu", ifm, samples, args.batch)[2]))
        results.append(row)
        ours_ms, torch_ms = row["ours_ms"], row["torch_ms"]
        if not args.json:
            print(f"  {name}: ours {ours_ms:.1f} ms" + (f", torch {torch_ms:.1f} ms"
                                                         if torch_ms else ""), file=sys.stderr)
    if args.json:
        print(json.dumps({"device": device_name(args.device), "rows": results}))
        return 0
    print(f"device: {device_name(args.device)}; batch {args.batch}; median of {repeats}")
    columns = [("ours_ms", "ours ms"), ("torch_ms", "torch ms")]
    if args.device == "gpu":
        columns[1:1] = [("ours_host_ms", "ours host ms")]
        columns += [("torch_fp32_ms", "torch fp32 ms")]
    print("| row | " + " | ".join(title for _, title in columns) + " | ours/torch |"
          + (" CuPy - NumPy |" if args.compare_cpu else ""))
    print("|---|" + "---|" * (len(columns) + 1 + args.compare_cpu))
    for r in results:
        cells = [f"{r[key]:.1f}" if r.get(key) else "-" for key, _ in columns]
        cells.append(f"{r['ours_ms'] / r['torch_ms']:.2f}" if r["torch_ms"] else "-")
        if args.compare_cpu:
            error = r.get("cpu_gpu_param_error")
            cells.append("-" if error is None else f"{error:.1e}")
        print(f"| {r['name']} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
