"""Max pooling with a 2x2 window and stride 2.

x (N, C, H, W) -> y (N, C, H//2, W//2); an odd last row/column is dropped
(floor mode, as the common frameworks do).

Forward:  y[n, c, i, j] = max_{u, v in {0, 1}} x[n, c, 2i + u, 2j + v]
Backward: the whole dy[n, c, i, j] goes to the first maximum of its window in
          the order (0,0), (0,1), (1,0), (1,1): deterministic on ties.
"""
from typing import NamedTuple

from .backend import get_array_module


class MaxPoolCache(NamedTuple):
    argmax: object      # (N, C, Ho, Wo) int8 index 0..3 of the max in each window
    x_shape: tuple


def _windows(x):
    """(N, C, Ho, Wo, 4) view-copy: the four values of each 2x2 window."""
    N, C, H, W = x.shape
    Ho, Wo = H // 2, W // 2
    x = x[:, :, :2 * Ho, :2 * Wo].reshape(N, C, Ho, 2, Wo, 2)
    return x.transpose(0, 1, 2, 4, 3, 5).reshape(N, C, Ho, Wo, 4)


def maxpool2x2_forward(x):
    """Returns (y, cache)."""
    N, C, H, W = x.shape
    if H < 2 or W < 2:
        raise ValueError(f"max-pool 2x2 needs an input of at least 2x2, got {H}x{W}")
    win = _windows(x)
    argmax = win.argmax(axis=-1)
    xp = get_array_module(x)
    y = xp.take_along_axis(win, argmax[..., None], axis=-1)[..., 0]
    return y, MaxPoolCache(argmax.astype(xp.int8), x.shape)


def maxpool2x2_backward(dy, cache):
    xp = get_array_module(dy)
    N, C, H, W = cache.x_shape
    Ho, Wo = H // 2, W // 2
    taps = xp.arange(4, dtype=xp.int8)
    dwin = (cache.argmax[..., None] == taps) * dy[..., None]          # (N, C, Ho, Wo, 4)
    dwin = dwin.reshape(N, C, Ho, Wo, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(N, C, 2 * Ho, 2 * Wo)
    if (2 * Ho, 2 * Wo) == (H, W):
        return xp.ascontiguousarray(dwin)
    dx = xp.zeros(cache.x_shape, dtype=dy.dtype)
    dx[:, :, :2 * Ho, :2 * Wo] = dwin
    return dx
