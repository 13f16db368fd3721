"""experiment/memory.py: the estimate of a step's memory holds the measured peak, and not
by far (tracemalloc, NumPy buffers: what the estimate's constants were measured with)."""
import tracemalloc

import numpy as np
import pytest

from experiment import memory
from ice.trainer import IceTrainer
from experiment.config import Config
from experiment.trainer import Trainer
from scripts.step_fingerprint import config, tiny_dataset

CASES = {"baseline": (Trainer, {"method": "baseline"}),
         "ifm-k64": (Trainer, {"samples": 64, "method": "ifm"}),
         "ifm-all-post-pool": (Trainer, {"samples": "all", "pair_features": "post-pool",
                                         "method": "ifm"}),
         "ice": (IceTrainer, {"method": "ice-firevnet", "optimizer": "adamax",
                              "lr": 1e-3, "flow_depth": 2, "ice_beta": 0.05,
                              "ice_labels": "true"})}


@pytest.mark.parametrize("case", CASES)
def test_the_estimate_holds_the_measured_peak(case):
    kind, changes = CASES[case]
    settings = config(batch_size=24, **changes)
    trainer = kind(settings, tiny_dataset(np.random.default_rng(0), n=48), "cpu")
    order = trainer.epoch_order(1)
    trainer.train_step(trainer.batch_index(order, 0), 1, 0)     # buffers of the first step
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    trainer.train_step(trainer.batch_index(order, 1), 1, 1)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    estimate = memory.step_bytes(settings)
    assert peak <= estimate <= 2 * peak, (peak / 2 ** 20, estimate / 2 ** 20)


def test_pair_positions_follow_k_and_the_maps():
    settings = Config(method="ifm", samples=64)
    assert memory.pair_positions(settings) == 64 + 64 + 64
    assert memory.pair_positions(settings.replace(samples="all")) == 1024 + 256 + 64
    assert memory.pair_positions(settings.replace(pair_features="post-pool", samples="all")) == \
        256 + 64 + 16
