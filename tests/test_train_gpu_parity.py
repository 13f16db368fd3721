"""NumPy/CuPy parity of the whole training step: the method's train_step on both devices.

Same configuration, same initial weights (from the seed), same data, same IFM
sampling (drawn on the host from the seed): after each of three steps the
loss, the F of every pair and every parameter of classifier and D must agree
within float32 tolerance, normwise over all parameters (a bias right before a
training-mode batch norm has a gradient that is zero in exact arithmetic, so
its updates are rounding noise on both sides). Skips without CuPy and a GPU.
"""
import numpy as np
import pytest

import nn
from experiment.trainer import Trainer
from scripts.step_fingerprint import config, tiny_dataset  # noqa: F401 (shared by tests)

pytestmark = pytest.mark.gpu

TOL = 1e-4


def normwise_error(gpu_arrays, cpu_arrays):
    scale = max(float(np.abs(a).max(initial=0.0)) for a in cpu_arrays.values())
    return max(float(np.abs(nn.to_numpy(gpu_arrays[k]).astype(np.float64) - a).max(initial=0.0))
               for k, a in cpu_arrays.items()) / scale


@pytest.mark.parametrize("changes", [{}, {"method": "baseline"}, {"upsample": "bilinear"},
                                     {"marginal": "batch", "samples": "all"},
                                     {"pair_features": "post-pool", "optimizer": "adam"}],
                         ids=["ifm", "baseline", "bilinear", "batch-all", "postpool-adam"])
def test_training_steps_agree(cupy, changes):
    settings = config(**changes)
    dataset = tiny_dataset(np.random.default_rng(0))
    cpu, gpu = Trainer(settings, dataset, "cpu"), Trainer(settings, dataset, "gpu")
    order_cpu, order_gpu = cpu.plan.epoch_order(1), gpu.plan.epoch_order(1)
    for step in range(3):
        out_cpu = cpu.method.train_step(cpu.plan.batch_index(order_cpu, step), 1, step)
        out_gpu = gpu.method.train_step(gpu.plan.batch_index(order_gpu, step), 1, step)
        loss_cpu, correct_cpu, F_cpu, total_cpu = out_cpu
        loss_gpu, correct_gpu, F_gpu, total_gpu = out_gpu
        assert isinstance(loss_gpu, cupy.ndarray), "the loss stays on the device"
        assert abs(float(loss_gpu) - float(loss_cpu)) <= TOL * max(1.0, abs(float(loss_cpu)))
        assert abs(float(total_gpu) - float(total_cpu)) <= TOL * max(1.0, abs(float(total_cpu)))
        assert int(correct_gpu) == int(correct_cpu)
        for f_gpu, f_cpu in zip(F_gpu, F_cpu):
            assert abs(float(f_gpu) - float(f_cpu)) <= TOL
        params_cpu = {k: nn.to_numpy(v) for k, v in cpu.method.trainable.params.items()}
        error = normwise_error(gpu.method.trainable.params, params_cpu)
        assert error < TOL, f"step {step}: parameters differ by {error:.2e} (normwise)"
