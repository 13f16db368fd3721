"""Leaky ReLU with slope 0 <= a < 1, and ReLU (a = 0), elementwise (any shape).

Forward:  y = x if x > 0 else a x,       computed as y = max(x, a x)
Backward: dx = dy if x > 0 else a dy,    computed as dx = dy (a + (1 - a) [y > 0])
The output has the sign of the input, so backward reads the cached output y.
(xp.where is several times slower than this arithmetic on NumPy.)

ReLU:     y = max(x, 0),                 dx = dy [y > 0]
"""
from .backend import get_array_module
from .cpu.parallel import per_channel


def leaky_relu_forward(x, negative_slope=0.2):
    """Returns (y, cache) with cache = y."""
    if not 0 <= negative_slope < 1:
        raise ValueError(f"leaky ReLU slope must lie in [0, 1), got {negative_slope}")
    xp = get_array_module(x)
    a = x.dtype.type(negative_slope)

    def leaky(x, out=None):                 # y = max(x, a x)
        y = xp.multiply(x, a, out=out)
        return xp.maximum(x, y, out=y)

    y = per_channel(leaky, x)
    return y, y


def leaky_relu_backward(dy, y, negative_slope=0.2):
    xp = get_array_module(dy)
    a, one_minus_a = dy.dtype.type(negative_slope), dy.dtype.type(1 - negative_slope)

    def slope(dy, y, out=None):             # dx = dy (a + (1 - a) [y > 0])
        dx = xp.multiply(y > 0, one_minus_a, out=out)
        dx += a
        dx *= dy
        return dx

    return per_channel(slope, dy, y, dtype=dy.dtype)


def relu_forward(x):
    """Returns (y, cache) with cache = y."""
    xp = get_array_module(x)
    y = per_channel(lambda x, out=None: xp.maximum(x, 0, out=out), x)
    return y, y


def relu_backward(dy, y):
    xp = get_array_module(dy)
    return per_channel(lambda dy, y, out=None: xp.multiply(dy, y > 0, out=out), dy, y,
                       dtype=dy.dtype)
