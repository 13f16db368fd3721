"""experiment/memory.py: the estimate of a step's memory holds the measured peak, and not
by far (tracemalloc, NumPy buffers: what the estimate's constants were measured with)."""
import tracemalloc

import numpy as np
import pytest

from experiment import memory
from experiment.config import Config
from experiment.trainer import Trainer
from scripts.step_fingerprint import config, tiny_dataset

CASES = {"baseline": {"method": "baseline"},
         "ifm-k64": {"samples": 64, "method": "ifm"},
         "ifm-all-post-pool": {"samples": "all", "pair_features": "post-pool", "method": "ifm"},
         "ice": {"method": "ice-firevnet", "flow_depth": 2}}


@pytest.mark.parametrize("case", CASES)
def test_the_estimate_holds_the_measured_peak(case):
    settings = config(batch_size=24, **CASES[case])
    trainer = Trainer(settings, tiny_dataset(np.random.default_rng(0), n=48), "cpu")
    order = trainer.plan.epoch_order(1)
    trainer.method.train_step(trainer.plan.batch_index(order, 0), 1, 0)  # the first step's buffers
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    trainer.method.train_step(trainer.plan.batch_index(order, 1), 1, 1)
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
