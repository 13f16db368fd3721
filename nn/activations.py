"""Leaky ReLU with slope 0 < a < 1.

Forward:  y = x if x > 0 else a * x,   computed as y = max(x, a * x)
Backward: dx = dy if x > 0 else a * dy, computed as dx = dy * (a + (1 - a) [y > 0])
The output has the sign of the input, so backward reads the cached output y.
Both forms are plain elementwise passes (xp.where is several times slower on
NumPy for arrays of this size), run over blocks of axis 1 (nn.parallel).
"""
from .backend import get_array_module
from .parallel import run_in_blocks


def _by_channel_blocks(fn, out, *arrays):
    """fn(*blocks, out_block) over blocks of axis 1 (channels/features)."""
    if out.ndim < 2:
        fn(*arrays, out)
        return
    run_in_blocks(lambda lo, hi: fn(*(a[:, lo:hi] for a in arrays), out[:, lo:hi]),
                  out.shape[1], out.nbytes, get_array_module(out))


def leaky_relu_forward(x, negative_slope=0.2):
    """Returns (y, cache) with cache = y."""
    if not 0 <= negative_slope < 1:
        raise ValueError(f"leaky ReLU slope must lie in [0, 1), got {negative_slope}")
    xp = get_array_module(x)
    a = x.dtype.type(negative_slope)

    def block(xb, yb):
        xp.multiply(xb, a, out=yb)
        xp.maximum(xb, yb, out=yb)

    y = xp.empty_like(x)
    _by_channel_blocks(block, y, x)
    return y, y


def leaky_relu_backward(dy, y, negative_slope=0.2):
    xp = get_array_module(dy)
    a, one_minus_a = dy.dtype.type(negative_slope), dy.dtype.type(1 - negative_slope)

    def block(dyb, yb, dxb):
        xp.greater(yb, 0, out=dxb)          # 1.0 / 0.0 in dy's dtype
        dxb *= one_minus_a
        dxb += a
        dxb *= dyb

    dx = xp.empty_like(y, dtype=dy.dtype)
    _by_channel_blocks(block, dx, dy, y)
    return dx
