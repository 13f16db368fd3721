"""Weight initialization.

He/Kaiming normal for a layer followed by a leaky ReLU of slope a:
    W ~ N(0, std^2),  std = gain / sqrt(fan_in),  gain = sqrt(2 / (1 + a^2))
fan_in = in_channels * k * k for a convolution, in_features for a linear layer.
Biases start at zero.

Fan-in uniform, the common framework default for convolutions and linear
layers, draws weights and biases alike from
    U(-1 / sqrt(fan_in), 1 / sqrt(fan_in)),
a weight std of 1 / sqrt(3 fan_in): about 2.4x smaller than Kaiming's with a = 0.2.
"""
import numpy as np

from .backend import copy_into


def kaiming_normal(shape, fan_in, rng, negative_slope=0.2, dtype=np.float32):
    gain = np.sqrt(2.0 / (1.0 + negative_slope ** 2))
    return (rng.standard_normal(shape) * (gain / np.sqrt(fan_in))).astype(dtype)


def default_rng(rng):
    """Use the given numpy Generator, or a fresh unseeded one."""
    return rng if rng is not None else np.random.default_rng()


def fan_in_uniform_(params, rng):
    """Redraw every weight W (ndim >= 2, fan_in = prod(W.shape[1:])) and its bias b in place.

    ``params`` maps "<layer>.W" / "<layer>.b" to arrays (a module's ``params``, on
    either device; written into, so views stay attached); other entries
    (batch-norm gamma and beta) are left as they are.
    """
    for key in [k for k in params if k.endswith("W") and params[k].ndim >= 2]:
        W = params[key]
        bound = 1.0 / np.sqrt(np.prod(W.shape[1:]))
        copy_into(W, rng.uniform(-bound, bound, W.shape).astype(W.dtype))
        bias = key[:-1] + "b"
        if bias in params:
            copy_into(params[bias], rng.uniform(-bound, bound, params[bias].shape).astype(W.dtype))
