"""2-D convolution (cross-correlation) by im2col and one GEMM.

Shapes: x (N, C, H, W), W (O, C, k, k), b (O,), y (N, O, Ho, Wo) with
Ho = (H + 2p - k) // s + 1 and likewise Wo.

Forward:   y[n, o, i, j] = b[o] + sum_{c, u, v} W[o, c, u, v] * xp[n, c, s*i + u, s*j + v]
           where xp is x zero-padded by p on each side of H and W.
As a GEMM: cols[(c, u, v), (n, i, j)] = xp[n, c, s*i + u, s*j + v]
           Y = W2 @ cols,  W2 = W.reshape(O, C*k*k),  Y[(o), (n, i, j)] -> y.
Backward:  dW2 = dY @ cols^T,  db = sum_{n,i,j} dy,  dcols = W2^T @ dY,
           dx = col2im(dcols): each tap (u, v) adds its slice back into dxp.
"""
from typing import NamedTuple

from .backend import get_array_module


class ConvCache(NamedTuple):
    cols: object        # (C*k*k, N*Ho*Wo) columns of the padded input
    x_shape: tuple      # (N, C, H, W)
    W: object           # (O, C, k, k)
    padding: int
    stride: int


def output_size(size, k, padding, stride):
    return (size + 2 * padding - k) // stride + 1


def im2col(x, k, padding, stride):
    """Columns (C*k*k, N*Ho*Wo) of the zero-padded x: one strided slice per tap.

    Only the k*k kernel taps are looped over; each tap copies a whole
    (C, N, Ho, Wo) slab, so there is no loop over images or pixels.
    """
    xp = get_array_module(x)
    N, C, H, W = x.shape
    Ho, Wo = output_size(H, k, padding, stride), output_size(W, k, padding, stride)
    if padding:
        x = xp.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    cols = xp.empty((C, k, k, N, Ho, Wo), dtype=x.dtype)
    x_cnhw = x.transpose(1, 0, 2, 3)
    for u in range(k):
        for v in range(k):
            cols[:, u, v] = x_cnhw[:, :, u:u + stride * Ho:stride, v:v + stride * Wo:stride]
    return cols.reshape(C * k * k, N * Ho * Wo)


def col2im(dcols, x_shape, k, padding, stride):
    """Adjoint of im2col: add each tap's column block back into dx (N, C, H, W)."""
    xp = get_array_module(dcols)
    N, C, H, W = x_shape
    Ho, Wo = output_size(H, k, padding, stride), output_size(W, k, padding, stride)
    dcols = dcols.reshape(C, k, k, N, Ho, Wo)
    dx_cnhw = xp.zeros((C, N, H + 2 * padding, W + 2 * padding), dtype=dcols.dtype)
    for u in range(k):
        for v in range(k):
            dx_cnhw[:, :, u:u + stride * Ho:stride, v:v + stride * Wo:stride] += dcols[:, u, v]
    dx_cnhw = dx_cnhw[:, :, padding:padding + H, padding:padding + W]
    return dx_cnhw.transpose(1, 0, 2, 3)


def conv2d_forward(x, W, b, padding=0, stride=1):
    """y = conv(x, W) + b; returns (y, cache). See the module docstring."""
    N, C, H, Wd = x.shape
    O, Cw, k, k2 = W.shape
    if Cw != C or k != k2:
        raise ValueError(f"conv2d: input has {C} channels, weight expects {Cw} (weight {W.shape})")
    Ho, Wo = output_size(H, k, padding, stride), output_size(Wd, k, padding, stride)
    if Ho < 1 or Wo < 1:
        raise ValueError(f"conv2d: input {H}x{Wd} is smaller than kernel {k} with padding {padding}")
    cols = im2col(x, k, padding, stride)
    Y = W.reshape(O, -1) @ cols                       # (O, N*Ho*Wo)
    Y += b.reshape(O, 1)
    # A transposed view, no copy: its memory is channel-major (O, N, Ho, Wo), the
    # layout the next im2col reads and the elementwise layers preserve.
    y = Y.reshape(O, N, Ho, Wo).transpose(1, 0, 2, 3)
    return y, ConvCache(cols, x.shape, W, padding, stride)


def conv2d_backward(dy, cache, input_grad=True):
    """(dx, dW, db) from dy (N, O, Ho, Wo). See the module docstring.

    With ``input_grad=False`` dx is not computed (returned as None): the first
    layer of a network needs no gradient for its input images.
    """
    O, C, k, _ = cache.W.shape
    dY = dy.transpose(1, 0, 2, 3).reshape(O, -1)     # (O, N*Ho*Wo)
    dW = (dY @ cache.cols.T).reshape(cache.W.shape)
    db = dY.sum(axis=1)
    if not input_grad:
        return None, dW, db
    dcols = cache.W.reshape(O, -1).T @ dY             # (C*k*k, N*Ho*Wo)
    dx = col2im(dcols, cache.x_shape, k, cache.padding, cache.stride)
    return dx, dW, db
