"""Leaky ReLU and ReLU (the formula: nn/activations.py), split over the CPU's cores.

The backward computes dx = dy (a + (1 - a) [y > 0]), the formula's
dx = dy if y > 0 else a dy as arithmetic (xp.where is several times slower on
NumPy). Each function writes its result into the block it is given
(``per_channel``).
"""
from ..activations import check_slope
from ..backend import get_array_module
from ..cpu.parallel import per_channel


def leaky_relu_forward(x, negative_slope=0.2):
    """(y, cache) with cache = y; y = max(x, a x)."""
    check_slope(negative_slope)
    xp = get_array_module(x)
    a = x.dtype.type(negative_slope)

    def leaky(x, y):
        xp.multiply(x, a, out=y)
        xp.maximum(x, y, out=y)

    y = xp.empty_like(x)
    per_channel(leaky, x, y)
    return y, y


def leaky_relu_backward(dy, y, negative_slope=0.2):
    xp = get_array_module(dy)
    a, one_minus_a = dy.dtype.type(negative_slope), dy.dtype.type(1 - negative_slope)

    def slope(dy, y, dx):                   # dx = dy (a + (1 - a) [y > 0])
        xp.multiply(y > 0, one_minus_a, out=dx)
        dx += a
        dx *= dy

    dx = xp.empty_like(dy)
    per_channel(slope, dy, y, dx)
    return dx


def relu_forward(x):
    """(y, cache) with cache = y."""
    xp = get_array_module(x)
    y = xp.empty_like(x)
    per_channel(lambda x, y: xp.maximum(x, 0, out=y), x, y)
    return y, y


def relu_backward(dy, y):
    xp = get_array_module(dy)
    dx = xp.empty_like(dy)
    per_channel(lambda dy, y, dx: xp.multiply(dy, y > 0, out=dx), dy, y, dx)
    return dx
