"""Max pooling with a 2x2 window and stride 2.

x (N, C, H, W) -> y (N, C, H//2, W//2); an odd last row/column is dropped
(floor mode, as the common frameworks do).

Forward:  y[n, c, i, j] = max_{u, v in {0, 1}} x[n, c, 2i + u, 2j + v]
Backward: the whole dy[n, c, i, j] goes to the first maximum of its window in
          the order (0,0), (0,1), (1,0), (1,1): deterministic on ties.

Each of the four taps (u, v) is a strided view x[:, :, u::2, v::2], so both
directions are a few elementwise passes over quarter-size arrays: no window
copies, no argmax. Backward recomputes which tap held the maximum from the
cached input and output (tap == y, and no earlier tap did). Channels are
independent: both directions run over channel blocks (nn.parallel).
"""
from typing import NamedTuple

from .backend import get_array_module
from .parallel import run_in_blocks

TAPS = ((0, 0), (0, 1), (1, 0), (1, 1))


class MaxPoolCache(NamedTuple):
    x: object           # (N, C, H, W) input
    y: object           # (N, C, H//2, W//2) output


def _tap(x, u, v, Ho, Wo):
    return x[:, :, u:2 * Ho:2, v:2 * Wo:2]


def maxpool2x2_forward(x):
    """Returns (y, cache)."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    if H < 2 or W < 2:
        raise ValueError(f"max-pool 2x2 needs an input of at least 2x2, got {H}x{W}")
    Ho, Wo = H // 2, W // 2
    y = xp.empty_like(_tap(x, 0, 0, Ho, Wo))     # x's memory layout, quarter size

    def channels(lo, hi):
        xc, yc = x[:, lo:hi], y[:, lo:hi]
        a, b, c, d = (_tap(xc, u, v, Ho, Wo) for u, v in TAPS)
        xp.maximum(a, b, out=yc)
        xp.maximum(yc, xp.maximum(c, d), out=yc)

    run_in_blocks(channels, C, x.nbytes, xp)
    return y, MaxPoolCache(x, y)


def maxpool2x2_backward(dy, cache):
    xp = get_array_module(dy)
    x, y = cache
    Ho, Wo = y.shape[2], y.shape[3]
    # The four taps cover dx unless H or W is odd (the dropped edge gets 0).
    # *_like keeps x's memory layout (the conv layers hand over channel-major views).
    even = x.shape[2:] == (2 * Ho, 2 * Wo)
    dx = xp.empty_like(x, dtype=dy.dtype) if even else xp.zeros_like(x, dtype=dy.dtype)

    def channels(lo, hi):
        xc, yc, dyc, dxc = x[:, lo:hi], y[:, lo:hi], dy[:, lo:hi], dx[:, lo:hi]
        taken = None
        for u, v in TAPS:
            hit = _tap(xc, u, v, Ho, Wo) == yc
            if taken is None:
                taken = hit
            else:
                hit &= ~taken
                taken |= hit
            xp.multiply(dyc, hit, out=_tap(dxc, u, v, Ho, Wo))

    run_in_blocks(channels, x.shape[1], x.nbytes, xp)
    return dx
