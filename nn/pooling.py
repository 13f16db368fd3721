"""Max pooling with a 2x2 window and stride 2, batch last: the formula.

x (C, H, W, N) -> y (C, H//2, W//2, N); an odd last row/column is dropped
(floor mode, as the common frameworks do). With the four taps
x_uv = x[:, u:2Ho:2, v:2Wo:2, :] (u, v in {0, 1}, each (C, Ho, Wo, N)):

Forward:  y = max(x_00, x_01, x_10, x_11)
Backward: dx_uv = dy [uv is the first tap, in the order 00, 01, 10, 11, with x_uv = y]:
          the whole gradient goes to one input, also on ties; the dropped odd
          edge gets 0.

The cache is x and y (backward finds the tap that held the maximum again).
The layers run nn/fast/pooling.py, the same split over the CPU's cores.
"""
from typing import NamedTuple

from .backend import get_array_module

TAPS = ((0, 0), (0, 1), (1, 0), (1, 1))


class MaxPoolCache(NamedTuple):
    x: object           # (C, H, W, N) input
    y: object           # (C, H//2, W//2, N) output


def taps(x, Ho, Wo):
    """The four strided views x_uv (C, Ho, Wo, N), in the order of TAPS."""
    return [x[:, u:2 * Ho:2, v:2 * Wo:2] for u, v in TAPS]


def output_shape(x):
    C, H, W, N = x.shape
    if H < 2 or W < 2:
        raise ValueError(f"max-pool 2x2 needs an input of at least 2x2, got {H}x{W}")
    return C, H // 2, W // 2, N


def maxpool2x2_forward(x):
    """(y, cache)."""
    xp = get_array_module(x)
    _, Ho, Wo, _ = output_shape(x)
    x00, x01, x10, x11 = taps(x, Ho, Wo)
    y = xp.maximum(xp.maximum(x00, x01), xp.maximum(x10, x11))
    return y, MaxPoolCache(x, y)


def maxpool2x2_backward(dy, cache):
    xp = get_array_module(dy)
    x, y = cache
    Ho, Wo = y.shape[1:3]
    first = xp.stack([x_uv == y for x_uv in taps(x, Ho, Wo)]).argmax(axis=0)
    dx = xp.zeros(x.shape, dtype=dy.dtype)
    for k, dx_uv in enumerate(taps(dx, Ho, Wo)):
        dx_uv[...] = dy * (first == k)
    return dx
