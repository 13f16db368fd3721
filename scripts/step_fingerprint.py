"""Record, or compare against a record, a fixed-seed float64 sequence of training steps.

    python -m scripts.step_fingerprint --save before.npz      # on the old code
    python -m scripts.step_fingerprint --compare before.npz   # on the new code

Four configurations (baseline; IFM with nearest and with bilinear upsampling;
batch marginals with K = all), each three SGD steps of the method's ``train_step``
in float64 on a small random dataset. Recorded: the loss, every F and the total
loss of each step, and every parameter of classifier and D after the last step.
``--compare`` prints the largest relative difference per configuration
(normwise: |new - old| over the largest |old| of the step values, or of all
parameters) and exits 1 above ``--tol`` (default 1e-12). A refactoring
that claims "the math does not change" is measured with it.
"""
import argparse
import sys
from types import SimpleNamespace

import numpy as np

from experiment.cli import quiet_on_closed_pipe
from experiment.config import Config
from experiment.trainer import Trainer

CONFIGS = {
    "baseline": {"method": "baseline"},
    "ifm-nearest": {},
    "ifm-bilinear": {"upsample": "bilinear"},
    "ifm-batch-all": {"marginal": "batch", "samples": "all"},
}
STEPS = 3


def tiny_dataset(rng, n=48):
    """A random shiftedMNIST-shaped dataset: n uint8 images per split, random labels."""
    def split():
        return SimpleNamespace(images=rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8),
                               digit=rng.integers(0, 10, n), texture=rng.integers(0, 10, n))
    return SimpleNamespace(train=split(), val=split(), test=split(),
                           mean=np.array([0.4, 0.5, 0.6]), std=np.array([0.2, 0.25, 0.3]))


def config(**changes):
    """The Config of a small IFM run (batch 16, K = 8, train.py's other defaults), with
    ``changes``."""
    return Config(**{"seed": 5, "epochs": 1, "method": "ifm", "batch_size": 16, "samples": 8,
                     **changes})


def fingerprint(name, changes):
    """{key: float64 array} of one configuration's three steps."""
    trainer = Trainer(config(**changes), tiny_dataset(np.random.default_rng(0)), "cpu")
    trainer.method.trainable.astype(np.float64)
    trainer.method.optimizer.reattach()
    split_inputs = trainer.train_data.inputs
    trainer.train_data.inputs = lambda index: split_inputs(index).astype(np.float64)
    order = trainer.plan.epoch_order(1)
    record = {}
    for step in range(STEPS):
        index = trainer.plan.batch_index(order, step)
        loss, _, F_values, total = trainer.method.train_step(index, 1, step)
        record[f"{name}/step{step}/values"] = np.array([loss, *F_values, total], np.float64)
    params = {f"clf.{k}": p for k, p in trainer.method.model.params.items()}
    if trainer.method.regularizer is not None:     # each D_l under its own name
        params.update({f"ifm.{k}": p for k, p in trainer.method.regularizer.params.items()})
    for key, value in params.items():
        record[f"{name}/param/{key}"] = np.array(value, np.float64)
    return record


def relative_differences(new, old):
    """{configuration: max |new - old| / max |old|}, normwise over the configuration.

    The scale is the largest entry of the configuration's step values, or of
    all its parameters together: a conv bias right before batch norm has a
    zero gradient in exact arithmetic, so it holds rounding noise (~1e-19)
    that no per-array relative measure can judge. KeyError if keys differ.
    """
    if set(new) != set(old):
        raise KeyError(f"entries differ: {sorted(set(new) ^ set(old))[:5]}")
    group = lambda key: (key.split("/")[0], "param" if "/param/" in key else "values")  # noqa: E731
    scale, diff = {}, {}
    for key in old:
        g = group(key)
        scale[g] = max(scale.get(g, 0.0), float(np.abs(old[key]).max(initial=0.0)))
        diff[g] = max(diff.get(g, 0.0), float(np.abs(new[key] - old[key]).max(initial=0.0)))
    worst = {}
    for (name, kind), d in diff.items():
        worst[name] = max(worst.get(name, 0.0), d / max(scale[name, kind], 1e-300))
    return worst


@quiet_on_closed_pipe
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--save", metavar="NPZ", help="write the fingerprint here")
    action.add_argument("--compare", metavar="NPZ", help="compare with this fingerprint")
    parser.add_argument("--tol", type=float, default=1e-12)
    args = parser.parse_args(argv)
    record = {}
    for name, changes in CONFIGS.items():
        record.update(fingerprint(name, changes))
    if args.save:
        np.savez(args.save, **record)
        print(f"wrote {len(record)} arrays to {args.save}")
        return 0
    try:
        with np.load(args.compare) as saved:
            old = dict(saved)
    except OSError as error:
        print(f"error: cannot read --compare {args.compare}: {error}", file=sys.stderr)
        return 2
    worst = relative_differences(record, old)
    for name, diff in worst.items():
        print(f"{name:16s} max relative difference {diff:.2e}")
    return 0 if max(worst.values()) <= args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
