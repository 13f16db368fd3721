"""Leaky ReLU with slope 0 < a < 1.

Forward:  y = x if x > 0 else a * x,   computed as y = max(x, a * x)
Backward: dx = dy if x > 0 else a * dy, computed as dx = dy * (a + (1 - a) [y > 0])
The output has the sign of the input, so backward reads the cached output y.
Both forms are plain elementwise passes (xp.where is several times slower on
NumPy for arrays of this size).
"""
from .backend import get_array_module


def leaky_relu_forward(x, negative_slope=0.2):
    """Returns (y, cache) with cache = y."""
    if not 0 <= negative_slope < 1:
        raise ValueError(f"leaky ReLU slope must lie in [0, 1), got {negative_slope}")
    xp = get_array_module(x)
    y = x * x.dtype.type(negative_slope)
    xp.maximum(x, y, out=y)
    return y, y


def leaky_relu_backward(dy, y, negative_slope=0.2):
    slope = (y > 0).astype(dy.dtype)
    slope *= dy.dtype.type(1 - negative_slope)
    slope += dy.dtype.type(negative_slope)
    slope *= dy
    return slope
