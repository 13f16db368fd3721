"""The memory a training step needs, estimated before a run starts.

A batch too large for the machine would otherwise be killed by the kernel's
out-of-memory killer mid-step, with no message and a run folder holding no
checkpoint. train.py compares the estimate with the memory available and
refuses what cannot fit.

Peak memory of one training step beyond the model and the data grows
linearly with the batch. Measured 2026-12-06 with tracemalloc (NumPy's
buffers), float32, the step's peak at batch 16 and 48 (the difference over 32
images), per image:
    the Table 1 classifier (baseline)                 1.62 MiB
    IFM, per joint position (and its marginal pair)   0.011 MiB, summed over
        the pairs: K = 64 adds 192 positions (2.0 MiB), K = all 1344 (14.7 MiB)
    iCE fi-RevNet, inverting backward                 3.1 MiB, whatever the depth
The estimate takes these with a margin of MARGIN for what tracemalloc does not
see (BLAS workspaces, fragmentation) and adds the dataset on the device.
tests/test_memory.py holds it above the measured peak.
"""
import os

import numpy as np

MIB = 2 ** 20
CLASSIFIER_PER_IMAGE = 1.62 * MIB
IFM_PER_POSITION = 0.011 * MIB
ICE_PER_IMAGE = 3.1 * MIB
MARGIN = 1.25
MAP_SIDES = {"pre-pool": (32, 16, 8, 4), "post-pool": (16, 8, 4, 2)}     # H_1..H_4 sides


def pair_positions(config):
    """Joint positions per image over the IFM pairs: sum_l min(K, h_l w_l)."""
    sides = MAP_SIDES[config.pair_features]
    cap = (lambda n: n) if config.samples == "all" else (lambda n: min(config.samples, n))
    return sum(cap(sides[low - 1] ** 2) for low, _ in config.pairs)


def step_bytes(config):
    """Estimated peak bytes of one training step beyond the model and the data."""
    if config.method == "ice-firevnet":
        per_image = ICE_PER_IMAGE
    else:
        per_image = CLASSIFIER_PER_IMAGE
        if config.ifm:
            per_image += IFM_PER_POSITION * pair_positions(config)
    return MARGIN * per_image * config.batch_size


def available_bytes(device):
    """Memory this process can still take: the host's MemAvailable, or the GPU's free memory
    (None where it cannot be read)."""
    if device == "gpu":
        import cupy
        return cupy.cuda.Device().mem_info[0]
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def data_bytes(dataset, config):
    """Bytes of the splits on the device (uint8 images and int64 labels)."""
    total = 0
    for name, limit in (("train", config.limit_train), ("val", config.limit_eval),
                        ("test", config.limit_eval)):
        split = getattr(dataset, name)
        n = len(split.digit) if limit is None else min(limit, len(split.digit))
        total += n * (int(np.prod(split.images.shape[1:])) + 16)
    return total


def too_large(config, dataset, device):
    """A sentence saying why the run cannot fit in memory, or None when it can."""
    available = available_bytes(device)
    if available is None:
        return None
    needed = step_bytes(config) + data_bytes(dataset, config)
    if needed <= available:
        return None
    gib = lambda b: f"{b / 2 ** 30:.1f} GiB"        # noqa: E731
    where = "the GPU has" if device == "gpu" else "this machine has"
    return (f"--batch-size {config.batch_size}: a training step would need about "
            f"{gib(needed)} (the data, and {step_bytes(config) / config.batch_size / MIB:.1f} "
            f"MiB per image), and {where} {gib(available)} available; use a smaller "
            "--batch-size")
