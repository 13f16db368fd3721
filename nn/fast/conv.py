"""2-D convolution (the formula: nn/conv.py), split over the CPU's cores.

im2col fills bands of output rows i on the cores (bands, not channels, so the
3-channel input splits evenly); col2im adds back blocks of channels, each
block zeroed and filled while it is in cache; the products are
nn/cpu/parallel.matmul (the bias added while a band is in cache). Backward
writes dw and db into the arrays given and, with ``input_grad=False`` (a
network's first layer: no gradient for the images), skips dx.
"""
from ..backend import get_array_module
from ..conv import ConvCache, columns_shape, output_sizes, pad, tap
from ..cpu.parallel import channel_sum, matmul, run_in_blocks


def im2col(x, k, padding, stride):
    """cols (C*k*k, Ho*Wo*N) of x (C, H, W, N), as nn.conv.im2col, in bands of output rows."""
    xp = get_array_module(x)
    x_p = pad(x, padding)
    cols = xp.empty(columns_shape(x.shape, k, padding, stride), dtype=x.dtype)
    Ho, Wo = cols.shape[3:5]

    def output_rows(lo, hi):
        for u in range(k):
            for v in range(k):
                cols[:, u, v, lo:hi] = tap(x_p, u, v, range(lo, hi), Wo, stride)

    run_in_blocks(output_rows, Ho, cols.nbytes, xp)
    return cols.reshape(k * k * x.shape[0], -1)


def col2im(dcols, x_shape, k, padding, stride):
    """dx (C, H, W, N), as nn.conv.col2im, in blocks of channels.

    dx is the unpadded window of a padded buffer: a view, ordered (C, H, W, N).
    """
    xp = get_array_module(dcols)
    C, H, W, N = x_shape
    dcols = dcols.reshape(columns_shape(x_shape, k, padding, stride))
    Ho, Wo = dcols.shape[3:5]
    dx_p = xp.empty((C, H + 2 * padding, W + 2 * padding, N), dtype=dcols.dtype)

    def channels(lo, hi):
        dx_p[lo:hi] = 0                      # zeroed block by block, while in cache
        for u in range(k):
            for v in range(k):
                slab = tap(dx_p[lo:hi], u, v, range(Ho), Wo, stride)
                xp.add(slab, dcols[lo:hi, u, v], out=slab)

    run_in_blocks(channels, C, dcols.nbytes, xp)
    return dx_p[:, padding:padding + H, padding:padding + W]


def conv2d_forward(x, w, b, padding=0, stride=1):
    """(y, cache), as nn.conv.conv2d_forward."""
    O, _, k, _ = w.shape
    Ho, Wo = output_sizes(x.shape, w.shape, padding, stride)
    cols = im2col(x, k, padding, stride)
    Y = matmul(w.reshape(O, -1), cols, bias=b)          # (O, Ho*Wo*N)
    return Y.reshape(O, Ho, Wo, x.shape[3]), ConvCache(cols, x.shape, w, padding, stride)


def conv2d_backward(dy, cache, input_grad=True, dw=None, db=None):
    """(dx, dw, db) from dy (O, Ho, Wo, N); dw (C-contiguous) and db are written into the
    arrays given (new ones when None); dx is None when ``input_grad`` is False."""
    O, _, k, _ = cache.w.shape
    dY = dy.reshape(O, -1)
    dw = matmul(dY, cache.cols.T, out=None if dw is None else dw.reshape(O, -1))
    dw = dw.reshape(cache.w.shape)
    db = channel_sum(dY, out=db)
    if not input_grad:
        return None, dw, db
    dcols = matmul(cache.w.reshape(O, -1).T, dY)        # (C*k*k, Ho*Wo*N)
    return col2im(dcols, cache.x_shape, k, cache.padding, cache.stride), dw, db
