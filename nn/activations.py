"""Leaky ReLU.

Forward:  y = x if x > 0 else a * x
Backward: dx = dy if x > 0 else a * dy
The output has the sign of the input, so backward reads the cached output y.
"""
from .backend import get_array_module


def leaky_relu_forward(x, negative_slope=0.2):
    """Returns (y, cache) with cache = y."""
    xp = get_array_module(x)
    y = xp.where(x > 0, x, x * negative_slope)
    return y, y


def leaky_relu_backward(dy, y, negative_slope=0.2):
    xp = get_array_module(dy)
    return xp.where(y > 0, dy, dy * negative_slope)
