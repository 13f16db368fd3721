"""2-D convolution (cross-correlation) by im2col and one GEMM, batch last.

Shapes: x (C, H, W, N), W (O, C, k, k), b (O,), y (O, Ho, Wo, N) with
Ho = (H + 2p - k) // s + 1 and likewise Wo; xp is x zero-padded by p on
each side of H and W.

Forward:   y[o, i, j, n] = b[o] + sum_{c, u, v} W[o, c, u, v] xp[c, s*i + u, s*j + v, n]
As a GEMM: cols[(c, u, v), (i, j, n)] = xp[c, s*i + u, s*j + v, n]
           Y = W2 cols + b,  W2 = W.reshape(O, C*k*k),  y = Y.reshape(O, Ho, Wo, N)
Backward:  dY = dy.reshape(O, Ho*Wo*N)
           dW2 = dY cols^T,  db = sum_{i,j,n} dy,  dcols = W2^T dY,
           dx = col2im(dcols): each tap (u, v) adds its slab back into dxp.
With the batch last, the GEMM's output is y itself and im2col's slabs are
runs of Wo*N contiguous values: no transposes anywhere.
"""
from typing import NamedTuple

from .backend import get_array_module
from .cpu.parallel import channel_sum, matmul, run_in_blocks


class ConvCache(NamedTuple):
    cols: object        # (C*k*k, Ho*Wo*N) columns of the padded input
    x_shape: tuple      # (C, H, W, N)
    W: object           # (O, C, k, k)
    padding: int
    stride: int


def output_size(size, k, padding, stride):
    return (size + 2 * padding - k) // stride + 1


def _tap(a, u, v, rows, Wo, stride):
    """The slab a[:, s*i + u, s*j + v, :] for output rows i in ``rows`` and all j < Wo."""
    return a[:, u + stride * rows.start:u + stride * rows.stop:stride,
             v:v + stride * Wo:stride]


def im2col(x, k, padding, stride):
    """cols (C*k*k, Ho*Wo*N) of the zero-padded x (C, H, W, N): one strided slab per tap.

    Only the k*k kernel taps are looped over, never images or pixels. Bands of
    output rows i are independent (``run_in_blocks`` splits them over the
    CPU's cores; bands, not channels, so the 3-channel input splits evenly).
    """
    xp = get_array_module(x)
    C, H, W, N = x.shape
    Ho, Wo = output_size(H, k, padding, stride), output_size(W, k, padding, stride)
    if padding:
        x = xp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    cols = xp.empty((C, k, k, Ho, Wo, N), dtype=x.dtype)

    def output_rows(lo, hi):
        for u in range(k):
            for v in range(k):
                cols[:, u, v, lo:hi] = _tap(x, u, v, range(lo, hi), Wo, stride)

    run_in_blocks(output_rows, Ho, cols.nbytes, xp)
    return cols.reshape(C * k * k, Ho * Wo * N)


def col2im(dcols, x_shape, k, padding, stride):
    """The adjoint of im2col: dx (C, H, W, N), each tap's slab added back.

    dx is the unpadded window of a padded buffer: a view, ordered (C, H, W, N).
    """
    xp = get_array_module(dcols)
    C, H, W, N = x_shape
    Ho, Wo = output_size(H, k, padding, stride), output_size(W, k, padding, stride)
    dcols = dcols.reshape(C, k, k, Ho, Wo, N)
    dxp = xp.empty((C, H + 2 * padding, W + 2 * padding, N), dtype=dcols.dtype)

    def channels(lo, hi):
        dxp[lo:hi] = 0                      # zeroed block by block, while in cache
        for u in range(k):
            for v in range(k):
                slab = _tap(dxp[lo:hi], u, v, range(Ho), Wo, stride)
                xp.add(slab, dcols[lo:hi, u, v], out=slab)

    run_in_blocks(channels, C, dcols.nbytes, xp)
    return dxp[:, padding:padding + H, padding:padding + W]


def conv2d_forward(x, W, b, padding=0, stride=1):
    """y = conv(x, W) + b; returns (y, cache). See the module docstring."""
    C, H, Wd, N = x.shape
    O, Cw, k, k2 = W.shape
    if Cw != C or k != k2:
        raise ValueError(f"conv2d: input has {C} channels, weight expects {Cw} (weight {W.shape})")
    Ho, Wo = output_size(H, k, padding, stride), output_size(Wd, k, padding, stride)
    if Ho < 1 or Wo < 1:
        raise ValueError(f"conv2d: input {H}x{Wd} is smaller than kernel {k} "
                         f"with padding {padding}")
    cols = im2col(x, k, padding, stride)
    Y = matmul(W.reshape(O, -1), cols, bias=b)          # (O, Ho*Wo*N)
    return Y.reshape(O, Ho, Wo, N), ConvCache(cols, x.shape, W, padding, stride)


def conv2d_backward(dy, cache, input_grad=True, out=(None, None)):
    """(dx, dW, db) from dy (O, Ho, Wo, N). See the module docstring.

    dW and db go into ``out`` = (dW, db) when given (dW C-contiguous). With
    ``input_grad=False`` dx is not computed (returned as None): the first
    layer of a network needs no gradient for its input images.
    """
    O, C, k, _ = cache.W.shape
    dY = dy.reshape(O, -1)
    dW, db = out
    dW = matmul(dY, cache.cols.T, out=None if dW is None else dW.reshape(O, -1))
    dW = dW.reshape(cache.W.shape)
    db = channel_sum(dY, out=db)
    if not input_grad:
        return None, dW, db
    dcols = matmul(cache.W.reshape(O, -1).T, dY)        # (C*k*k, Ho*Wo*N)
    return col2im(dcols, cache.x_shape, k, cache.padding, cache.stride), dW, db
