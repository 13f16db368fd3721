"""Max pooling with a 2x2 window and stride 2, batch last.

x (C, H, W, N) -> y (C, H//2, W//2, N); an odd last row/column is dropped
(floor mode, as the common frameworks do). With the taps
x_uv = x[:, u::2, v::2, :] (u, v in {0, 1}, cut to H//2 x W//2):

Forward:  y = max(x_00, x_01, x_10, x_11)
Backward: dx_uv = dy * [x_uv is the first tap equal to y], in the order
          00, 01, 10, 11: the whole gradient goes to one input, also on ties.

Backward recomputes which tap held the maximum from the cached x and y (no
argmax is kept). Channels are independent (``per_channel``).
"""
from typing import NamedTuple

from .backend import get_array_module
from .cpu.parallel import per_channel

TAPS = ((0, 0), (0, 1), (1, 0), (1, 1))


class MaxPoolCache(NamedTuple):
    x: object           # (C, H, W, N) input
    y: object           # (C, H//2, W//2, N) output


def _taps(x, Ho, Wo):
    """The four strided views x_uv (C, Ho, Wo, N)."""
    return [x[:, u:2 * Ho:2, v:2 * Wo:2] for u, v in TAPS]


def maxpool2x2_forward(x):
    """Returns (y, cache)."""
    xp = get_array_module(x)
    C, H, W, N = x.shape
    if H < 2 or W < 2:
        raise ValueError(f"max-pool 2x2 needs an input of at least 2x2, got {H}x{W}")
    Ho, Wo = H // 2, W // 2

    def window_max(x, out=None):
        a, b, c, d = _taps(x, Ho, Wo)
        y = xp.maximum(a, b, out=out)
        return xp.maximum(y, xp.maximum(c, d), out=y)

    y = per_channel(window_max, x, shape=(C, Ho, Wo, N))
    return y, MaxPoolCache(x, y)


def maxpool2x2_backward(dy, cache):
    xp = get_array_module(dy)
    x, y = cache
    Ho, Wo = y.shape[1:3]

    def route_to_first_max(x, y, dy, out=None):
        dx = xp.empty(x.shape, dtype=dy.dtype) if out is None else out
        taken = xp.zeros(y.shape, dtype=bool)
        for x_uv, dx_uv in zip(_taps(x, Ho, Wo), _taps(dx, Ho, Wo)):
            hit = (x_uv == y) > taken               # [x_uv = y] and not yet taken
            taken |= hit
            xp.multiply(dy, hit, out=dx_uv)
        if dx.shape[1:3] != (2 * Ho, 2 * Wo):       # the dropped odd edge gets 0
            dx[:, 2 * Ho:] = 0
            dx[:, :, 2 * Wo:] = 0
        return dx

    return per_channel(route_to_first_max, x, y, dy, dtype=dy.dtype)
