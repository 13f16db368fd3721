"""Audit: after float32 training steps, no float64 array is left anywhere in the trainer.

    python -m scripts.float32_audit --device cpu|gpu

Runs two training steps of IFM (K = 64) and of iCE fi-RevNet (flow depth 2) at batch
32 on random images, then walks everything the trainer holds (models, D, optimizers,
their flat buffers and state, the layers' caches, the data on the device) and the
steps' outputs, and lists every floating-point array whose dtype is not float32, by
where it was found. Exit status 1 if there is one. On the CuPy stand-in the tests
count the float64 arrays each step creates (tests/test_cupy_standin.py); this is the
check that also runs on a real GPU (scripts/gpu_check.sh).
"""
import argparse
import sys
import types

import numpy as np

from experiment.cli import quiet_on_closed_pipe
from experiment.trainer import Trainer
from nn.backend import gpu_unavailable_reason
from scripts.step_fingerprint import config, tiny_dataset

RUNS = {"ifm": {"batch_size": 32, "samples": 64},
        "ice-firevnet": {"method": "ice-firevnet", "batch_size": 32, "flow_depth": 2}}


def is_array(value):
    return hasattr(value, "dtype") and hasattr(value, "shape") and not isinstance(value, type)


def not_float32(root, name):
    """[(path, dtype)] of the floating arrays reachable from ``root`` that are not float32."""
    found, seen, stack = [], set(), [(name, root)]
    while stack:
        path, value = stack.pop()
        if id(value) in seen or isinstance(value, (str, bytes, int, float, type(None))):
            continue
        seen.add(id(value))
        if is_array(value):
            if np.dtype(value.dtype).kind == "f" and value.dtype != np.float32:
                found.append((path, str(value.dtype)))
            continue
        if isinstance(value, dict) or hasattr(value, "items") and hasattr(value, "keys"):
            stack += [(f"{path}[{k!r}]", v) for k, v in value.items()]
        elif isinstance(value, (list, tuple)):
            stack += [(f"{path}[{i}]", v) for i, v in enumerate(value)]
        elif hasattr(value, "__dict__") and not isinstance(value, (type, types.ModuleType,
                                                                    types.FunctionType,
                                                                    types.MethodType)):
            stack += [(f"{path}.{k}", v) for k, v in vars(value).items()]
    return sorted(found)


def audit(method, device):
    trainer = Trainer(config(**RUNS[method]), tiny_dataset(np.random.default_rng(0), n=64), device)
    order = trainer.plan.epoch_order(1)
    outputs = [trainer.method.train_step(trainer.plan.batch_index(order, s), 1, s)
               for s in range(2)]
    return not_float32(trainer, "trainer") + not_float32(outputs, "outputs")


@quiet_on_closed_pipe
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    args = p.parse_args(argv)
    if args.device == "gpu" and gpu_unavailable_reason():
        print(f"float32_audit: --device gpu: {gpu_unavailable_reason()}", file=sys.stderr)
        return 2
    bad = 0
    for method in RUNS:
        found = audit(method, args.device)
        bad += len(found)
        print(f"{method} on {args.device}: {len(found)} floating arrays not float32"
              + "".join(f"\n  {path}: {dtype}" for path, dtype in found))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
