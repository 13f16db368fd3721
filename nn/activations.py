"""Leaky ReLU with slope 0 <= a < 1, and ReLU (a = 0), elementwise (any shape): the formula.

Forward:  y = x if x > 0 else a x   =  max(x, a x)
Backward: dx = dy if x > 0 else a dy
The output has the sign of the input, so backward reads the cached output y.
ReLU:     y = max(x, 0),   dx = dy [y > 0]

The layers run nn/fast/activations.py, the same split over the CPU's cores.
"""
from .backend import get_array_module


def check_slope(negative_slope):
    if not 0 <= negative_slope < 1:
        raise ValueError(f"leaky ReLU slope must lie in [0, 1), got {negative_slope}")


def leaky_relu_forward(x, negative_slope=0.2):
    """(y, cache) with cache = y."""
    check_slope(negative_slope)
    y = get_array_module(x).maximum(x, negative_slope * x)
    return y, y


def leaky_relu_backward(dy, y, negative_slope=0.2):
    return get_array_module(dy).where(y > 0, dy, negative_slope * dy)


def relu_forward(x):
    """(y, cache) with cache = y."""
    y = get_array_module(x).maximum(x, 0)
    return y, y


def relu_backward(dy, y):
    return dy * (y > 0)
