"""2-D convolution (cross-correlation) by im2col and one GEMM.

Shapes: x (N, C, H, W), W (O, C, k, k), b (O,), y (N, O, Ho, Wo) with
Ho = (H + 2p - k) // s + 1 and likewise Wo.

Forward:   y[n, o, i, j] = b[o] + sum_{c, u, v} W[o, c, u, v] * xp[n, c, s*i + u, s*j + v]
           where xp is x zero-padded by p on each side of H and W.
As a GEMM: cols[(c, u, v), (i, j, n)] = xp[n, c, s*i + u, s*j + v]
           Y = W2 @ cols,  W2 = W.reshape(O, C*k*k),  Y[(o), (i, j, n)] -> y.
Backward:  dW2 = dY @ cols^T,  db = sum_{n,i,j} dy,  dcols = W2^T @ dY,
           dx = col2im(dcols): each tap (u, v) adds its slice back into dxp.
"""
from typing import NamedTuple

from .backend import get_array_module
from .parallel import add_to_rows, matmul, run_in_blocks, sum_rows


class ConvCache(NamedTuple):
    cols: object        # (C*k*k, Ho*Wo*N) columns of the padded input
    x_shape: tuple      # (N, C, H, W)
    W: object           # (O, C, k, k)
    padding: int
    stride: int


def output_size(size, k, padding, stride):
    return (size + 2 * padding - k) // stride + 1


def im2col(x, k, padding, stride):
    """Columns (C*k*k, Ho*Wo*N) of the zero-padded x: one strided slice per tap.

    Rows are ordered (c, u, v) and columns (i, j, n): the batch index is the
    fastest. Only the k*k kernel taps are looped over; each tap copies a whole
    (C, Ho, Wo, N) slab whose innermost runs are Wo*N values long (with stride
    1), so there is no loop over images or pixels and NumPy's inner loops are
    long. Bands of output rows i are independent (nn.parallel runs them in
    parallel; bands, not channel blocks, so the 3-channel input splits evenly).
    """
    xp = get_array_module(x)
    N, C, H, W = x.shape
    Ho, Wo = output_size(H, k, padding, stride), output_size(W, k, padding, stride)
    x_chwn = x.transpose(1, 2, 3, 0)
    if padding:
        x_chwn = xp.pad(x_chwn, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    cols = xp.empty((C, k, k, Ho, Wo, N), dtype=x.dtype)

    def output_rows(lo, hi):
        for u in range(k):
            for v in range(k):
                cols[:, u, v, lo:hi] = x_chwn[:, u + stride * lo:u + stride * hi:stride,
                                              v:v + stride * Wo:stride]

    run_in_blocks(output_rows, Ho, cols.nbytes, xp)
    return cols.reshape(C * k * k, Ho * Wo * N)


def col2im(dcols, x_shape, k, padding, stride):
    """Adjoint of im2col: add each tap's column block back into dx (N, C, H, W).

    dx is returned as a view whose memory is (C, H, W, N), the layout of the
    conv outputs (see ``conv2d_forward``).
    """
    xp = get_array_module(dcols)
    N, C, H, W = x_shape
    Ho, Wo = output_size(H, k, padding, stride), output_size(W, k, padding, stride)
    dcols = dcols.reshape(C, k, k, Ho, Wo, N)
    dx_chwn = xp.empty((C, H + 2 * padding, W + 2 * padding, N), dtype=dcols.dtype)

    def channels(lo, hi):
        dxc = dx_chwn[lo:hi]
        dxc.fill(0)
        for u in range(k):
            for v in range(k):
                dxc[:, u:u + stride * Ho:stride, v:v + stride * Wo:stride] += dcols[lo:hi, u, v]

    run_in_blocks(channels, C, dcols.nbytes, xp)
    dx_chwn = dx_chwn[:, padding:padding + H, padding:padding + W]
    return dx_chwn.transpose(3, 0, 1, 2)


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
    Y = matmul(W.reshape(O, -1), cols)                # (O, Ho*Wo*N)
    add_to_rows(Y, b)
    # A transposed view, no copy: its memory is (O, Ho, Wo, N), batch fastest.
    # The elementwise layers keep that layout and the next im2col reads it
    # with long contiguous runs.
    y = Y.reshape(O, Ho, Wo, N).transpose(3, 0, 1, 2)
    return y, ConvCache(cols, x.shape, W, padding, stride)


def conv2d_backward(dy, cache, input_grad=True):
    """(dx, dW, db) from dy (N, O, Ho, Wo). See the module docstring.

    With ``input_grad=False`` dx is not computed (returned as None): the first
    layer of a network needs no gradient for its input images.
    """
    O, C, k, _ = cache.W.shape
    dY = dy.transpose(1, 2, 3, 0).reshape(O, -1)     # (O, Ho*Wo*N): a view in that layout
    dW = matmul(dY, cache.cols.T).reshape(cache.W.shape)
    db = sum_rows(dY)
    if not input_grad:
        return None, dW, db
    dcols = matmul(cache.W.reshape(O, -1).T, dY)      # (C*k*k, Ho*Wo*N)
    dx = col2im(dcols, cache.x_shape, k, cache.padding, cache.stride)
    return dx, dW, db
