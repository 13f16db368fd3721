"""2-D convolution (cross-correlation) by im2col and one product, batch last: the formula.

Shapes: x (C, H, W, N), weights w (O, C, k, k), bias b (O,), y (O, Ho, Wo, N)
with Ho = (H + 2p - k) // s + 1 and Wo = (W + 2p - k) // s + 1 (padding p,
stride s); x_p is x zero-padded by p on each side of H and W.

Forward:   y[o, i, j, n] = b[o] + sum_{c,u,v} w[o, c, u, v] x_p[c, s i + u, s j + v, n]
im2col:    cols[(c, u, v), (i, j, n)] = x_p[c, s i + u, s j + v, n]      (C k k, Ho Wo N)
           one strided slab per kernel tap (u, v), over every image at once
As one product, with w2 = w.reshape(O, C k k):
           Y = w2 cols + b,   y = Y.reshape(O, Ho, Wo, N)
Backward, from dy (O, Ho, Wo, N) as dY (O, Ho Wo N):
           dw2 = dY cols^T,   db = sum_{i,j,n} dy,   dcols = w2^T dY
           dx = col2im(dcols): each tap's slab of dcols added back where im2col read it
           (col2im is the adjoint, i.e. the transpose, of im2col).
With the batch last, Y is y itself and each slab is a run of Wo N contiguous
values: no transposes anywhere.

The layers run nn/fast/conv.py, the same split over the CPU's cores.
"""
from typing import NamedTuple

from .backend import get_array_module


class ConvCache(NamedTuple):
    cols: object        # (C*k*k, Ho*Wo*N) columns of the padded input
    x_shape: tuple      # (C, H, W, N)
    w: object           # (O, C, k, k)
    padding: int
    stride: int


def output_size(size, k, padding, stride):
    return (size + 2 * padding - k) // stride + 1


def output_sizes(x_shape, w_shape, padding, stride):
    """(Ho, Wo) for x (C, H, W, N) and w (O, C, k, k); ValueError when they do not fit."""
    C, H, W, _ = x_shape
    O, Cw, k, k2 = w_shape
    if Cw != C or k != k2:
        raise ValueError(f"conv2d: input has {C} channels, weight expects {Cw} (weight {w_shape})")
    Ho, Wo = output_size(H, k, padding, stride), output_size(W, k, padding, stride)
    if Ho < 1 or Wo < 1:
        raise ValueError(f"conv2d: input {H}x{W} is smaller than kernel {k} "
                         f"with padding {padding}")
    return Ho, Wo


def tap(a, u, v, rows, Wo, stride):
    """The slab a[:, s*i + u, s*j + v, :] for output rows i in ``rows`` and every j < Wo."""
    return a[:, u + stride * rows.start:u + stride * rows.stop:stride,
             v:v + stride * Wo:stride]


def pad(x, padding):
    """x (C, H, W, N) with ``padding`` zeros on each side of H and W."""
    p = padding
    return get_array_module(x).pad(x, ((0, 0), (p, p), (p, p), (0, 0))) if p else x


def columns_shape(x_shape, k, padding, stride):
    """(C, k, k, Ho, Wo, N): im2col's columns before the reshape to (C*k*k, Ho*Wo*N)."""
    C, H, W, N = x_shape
    return C, k, k, output_size(H, k, padding, stride), output_size(W, k, padding, stride), N


def im2col(x, k, padding, stride):
    """cols (C*k*k, Ho*Wo*N) of x (C, H, W, N): one strided slab per kernel tap."""
    x_p = pad(x, padding)
    cols = get_array_module(x).empty(columns_shape(x.shape, k, padding, stride), dtype=x.dtype)
    Ho, Wo = cols.shape[3:5]
    for u in range(k):
        for v in range(k):
            cols[:, u, v] = tap(x_p, u, v, range(Ho), Wo, stride)
    return cols.reshape(k * k * x.shape[0], -1)


def col2im(dcols, x_shape, k, padding, stride):
    """The adjoint of im2col: dx (C, H, W, N), each tap's slab added back where it was read."""
    C, H, W, N = x_shape
    dcols = dcols.reshape(columns_shape(x_shape, k, padding, stride))
    Ho, Wo = dcols.shape[3:5]
    dx_p = get_array_module(dcols).zeros((C, H + 2 * padding, W + 2 * padding, N),
                                         dtype=dcols.dtype)
    for u in range(k):
        for v in range(k):
            tap(dx_p, u, v, range(Ho), Wo, stride)[...] += dcols[:, u, v]
    return dx_p[:, padding:padding + H, padding:padding + W]


def conv2d_forward(x, w, b, padding=0, stride=1):
    """(y, cache): y = conv(x, w) + b (no bias when b is None). See the module docstring."""
    O, _, k, _ = w.shape
    Ho, Wo = output_sizes(x.shape, w.shape, padding, stride)
    cols = im2col(x, k, padding, stride)
    Y = w.reshape(O, -1) @ cols
    if b is not None:
        Y = Y + b[:, None]
    return Y.reshape(O, Ho, Wo, x.shape[3]), ConvCache(cols, x.shape, w, padding, stride)


def conv2d_backward(dy, cache):
    """(dx, dw, db) from dy (O, Ho, Wo, N). See the module docstring."""
    O, _, k, _ = cache.w.shape
    dY = dy.reshape(O, -1)
    w2 = cache.w.reshape(O, -1)
    dw = (dY @ cache.cols.T).reshape(cache.w.shape)
    dx = col2im(w2.T @ dY, cache.x_shape, k, cache.padding, cache.stride)
    return dx, dw, dY.sum(axis=1)
