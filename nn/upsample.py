"""Upsampling of (C, H, W, N) maps by an integer factor s.

Nearest:  y[c, i, j, n] = x[c, i // s, j // s, n]
          dx[c, i, j, n] = sum_{u, v < s} dy[c, s*i + u, s*j + v, n]
Bilinear (half-pixel centres, align_corners=False): output row i samples the
source coordinate t = (i + 0.5) / s - 0.5, clamped to [0, H - 1]; with
i0 = floor(t), i1 = min(i0 + 1, H - 1), w = t - i0 the row weights are
(1 - w) on i0 and w on i1. The map is separable and linear:
          y[c, :, :, n] = A_H x[c, :, :, n] A_W^T   (A_H (sH, H), A_W (sW, W))
          dx[c, :, :, n] = A_H^T dy[c, :, :, n] A_W
computed as two batched products, one per spatial axis, with N innermost.
"""
from functools import lru_cache

import numpy as np

from .backend import get_array_module


def nearest_upsample_forward(x, s):
    C, H, W, N = x.shape
    if s == 1:      # the reshape below would return a read-only view aliasing x
        return x.copy()
    xp = get_array_module(x)
    y = xp.broadcast_to(x[:, :, None, :, None], (C, H, s, W, s, N))
    return y.reshape(C, H * s, W * s, N)


def nearest_upsample_backward(dy, s):
    C, Hs, Ws, N = dy.shape
    return dy.reshape(C, Hs // s, s, Ws // s, s, N).sum(axis=(2, 4))


def bilinear_matrix(size, s, dtype=np.float64):
    """The (s*size, size) half-pixel interpolation matrix A, built on the host."""
    out = np.arange(size * s)
    t = np.clip((out + 0.5) / s - 0.5, 0, size - 1)
    i0 = np.floor(t).astype(np.int64)
    i1 = np.minimum(i0 + 1, size - 1)
    w = t - i0
    A = np.zeros((size * s, size), dtype=dtype)
    np.add.at(A, (out, i0), 1 - w)
    np.add.at(A, (out, i1), w)
    return A


@lru_cache(maxsize=64)
def _device_matrix(size, s, xp, dtype_name):
    """bilinear_matrix on the device, built and copied once per shape (no per-step copy)."""
    return xp.asarray(bilinear_matrix(size, s, np.dtype(dtype_name)))


def _matrices(shape, s, xp, dtype):
    _, H, W, _ = shape
    name = np.dtype(dtype).name
    return _device_matrix(H, s, xp, name), _device_matrix(W, s, xp, name)


def bilinear_upsample_forward(x, s):
    xp = get_array_module(x)
    C, H, W, N = x.shape
    A_h, A_w = _matrices(x.shape, s, xp, x.dtype)
    rows = A_h @ x.reshape(C, H, W * N)                             # (C, sH, W*N)
    return (A_w @ rows.reshape(C * s * H, W, N)).reshape(C, s * H, s * W, N)


def bilinear_upsample_backward(dy, s, x_shape):
    xp = get_array_module(dy)
    C, H, W, N = x_shape
    A_h, A_w = _matrices(x_shape, s, xp, dy.dtype)
    cols = A_w.T @ dy.reshape(C * s * H, s * W, N)                  # (C*sH, W, N)
    return (A_h.T @ cols.reshape(C, s * H, W * N)).reshape(C, H, W, N)
