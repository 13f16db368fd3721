"""Max pooling 2x2 (the formula: nn/pooling.py), split over the CPU's cores.

Backward routes dy tap by tap, in the order of TAPS, to the taps equal to y
that no earlier tap took ([x_uv = y] > taken), which is the formula's
"first tap equal to y" without stacking the four comparisons. Each function
writes its result into the block it is given (``per_channel``).
"""
from ..backend import get_array_module
from ..cpu.parallel import per_channel
from ..pooling import MaxPoolCache, output_shape, taps


def maxpool2x2_forward(x):
    """(y, cache)."""
    xp = get_array_module(x)
    shape = output_shape(x)
    Ho, Wo = shape[1:3]

    def window_max(x, y):
        x00, x01, x10, x11 = taps(x, Ho, Wo)
        xp.maximum(x00, x01, out=y)
        xp.maximum(y, xp.maximum(x10, x11), out=y)

    y = xp.empty(shape, dtype=x.dtype)
    per_channel(window_max, x, y)
    return y, MaxPoolCache(x, y)


def maxpool2x2_backward(dy, cache):
    xp = get_array_module(dy)
    x, y = cache
    Ho, Wo = y.shape[1:3]

    def route_to_first_max(x, y, dy, dx):
        taken = xp.zeros(y.shape, dtype=bool)
        for x_uv, dx_uv in zip(taps(x, Ho, Wo), taps(dx, Ho, Wo)):
            hit = (x_uv == y) > taken               # [x_uv = y] and not yet taken
            taken |= hit
            xp.multiply(dy, hit, out=dx_uv)
        if dx.shape[1:3] != (2 * Ho, 2 * Wo):       # the dropped odd edge gets 0
            dx[:, 2 * Ho:] = 0
            dx[:, :, 2 * Wo:] = 0

    dx = xp.empty(x.shape, dtype=dy.dtype)
    per_channel(route_to_first_max, x, y, dy, dx)
    return dx
