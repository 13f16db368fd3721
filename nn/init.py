"""Weight initialization.

He/Kaiming normal for a layer followed by a leaky ReLU of slope a:
    W ~ N(0, std^2),  std = gain / sqrt(fan_in),  gain = sqrt(2 / (1 + a^2))
fan_in = in_channels * k * k for a convolution, in_features for a linear layer.
Biases start at zero.
"""
import numpy as np


def kaiming_normal(shape, fan_in, rng, negative_slope=0.2, dtype=np.float32):
    gain = np.sqrt(2.0 / (1.0 + negative_slope ** 2))
    return (rng.standard_normal(shape) * (gain / np.sqrt(fan_in))).astype(dtype)


def default_rng(rng):
    """Use the given numpy Generator, or a fresh unseeded one."""
    return rng if rng is not None else np.random.default_rng()
