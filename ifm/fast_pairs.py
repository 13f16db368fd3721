"""The pair layer (the formula: ifm/pairs.py), as the regularizer's speed path runs it.

The same a = W z + b and gradients, computed so that z and U are never built:

- the high half is read from the map row 2 of the positions' columns points
  into: H_{l+1} itself for nearest upsampling (the coarse location that
  nearest upsampling copies to the pair's fine one, so U[:, y, x] is read as
  H_{l+1}[:, y//s, x//s]), U for bilinear;
- with W = [W_l | W_h] split at C_l, a = W_l z_l + W_h z_h + b, and each half
  is computed in the cheaper of two equal ways (a linear map commutes with
  picking columns), for its map's channel matrix M (C, L), L = h w N, and the
  S gathered columns G = M[:, cols]:
           gather, then project:  A = W_half G                2 width C S flops
           project, then gather:  A = (W_half M)[:, cols]     2 width C L flops
  ``project_first``: project when the map has fewer positions than there are
  rows (L < S: with K = all always; with K = 64 for the 8x8 and 4x4 maps);
- backward, from da (width, S):
           db = sum_r da[:, r]
           gathered:   dW_half = da G^T,   dG = W_half^T da,   dM = scatter(dG)
           projected:  dP = scatter(da),   dW_half = dP M^T,   dM = W_half^T dP
  dH_l = dM_l as a map; dH_{l+1} = dM_h as a map (nearest: the scatter into the
  coarse locations sums each s x s block, which is up^T), or A_h^T dU A_w
  (bilinear).

The gather copies one row at a time (``take``, several times faster than
M[:, cols] on NumPy) in blocks of rows on the CPU's cores; the scatter-add is
one ``np.add.at`` per channel row on NumPy and ``cupy.add.at`` on CuPy;
products go through nn.cpu.parallel.matmul. tests/test_ifm_pairs.py holds
both orders equal to the formula.
"""
from typing import NamedTuple

import numpy as np

from nn.backend import get_array_module
from nn.cpu.parallel import channel_sum, matmul, per_channel, run_in_blocks
from nn.upsample import bilinear_upsample_backward, bilinear_upsample_forward

from .pairs import channel_matrix, upsample_scale


def gather_columns(M, cols):
    """M[:, cols] (C, S) for M (C, L), by ``take`` a block of rows at a time."""
    xp = get_array_module(M)
    G = xp.empty((M.shape[0], len(cols)), dtype=M.dtype)

    def rows(lo, hi):
        xp.take(M[lo:hi], cols, axis=1, out=G[lo:hi])

    run_in_blocks(rows, M.shape[0], G.nbytes, xp)
    return G


def scatter_add_columns(cols, values, n_columns):
    """(C, n_columns) zeros with column values[:, r] added at column cols[r].

    Repeated columns accumulate. NumPy: one unbuffered ``np.add.at`` per
    channel row (NumPy 2's one-dimensional fast path; the loop runs over
    channels, never over positions). Measured faster than a bincount per row
    and than a segmented sum of the columns sorted once (argsort, take,
    ``np.add.reduceat``): docs/performance.md, ``benchmarks.bench_scatter``.
    CuPy: ``cupy.add.at``, which adds with atomics, so the order of the
    additions, and the float32 rounding, varies from run to run (a plain
    ``M[:, cols] +=`` is undefined for repeated indices on the GPU).
    """
    xp = get_array_module(values)
    dM = xp.zeros((values.shape[0], n_columns), dtype=values.dtype)
    if xp is not np:
        xp.add.at(dM, (slice(None), cols), values)
        return dM
    for row, v in zip(dM, values):
        np.add.at(row, cols, v)
    return dM


class PairHalf(NamedTuple):
    """One half of the layer, as backward needs it."""
    projected: bool     # project, then gather (True) or gather, then project
    data: object        # M (C, L) if projected, else G (C, S)
    cols: object        # (S,) column of each row in M
    W: object           # W_half (width, C), a view of the layer's W
    shape: tuple        # the map M belongs to: H_l, H_{l+1} (nearest) or U (bilinear)


class FastPairCache(NamedTuple):
    halves: tuple       # (low, high) PairHalf
    high_shape: tuple   # H_{l+1} shape
    upsample: str
    scale: int


def project_first(positions, rows):
    """Project the map, then gather, when it has fewer positions than there are rows."""
    return positions < rows


def _sum_of_halves(a_low, a_high, b, a):
    """Into a: a_low + a_high + b."""
    get_array_module(a_low).add(a_low, a_high, out=a)
    a += b


def pair_layer_forward(h_low, h_high, columns, W, b, upsample="nearest", project=None,
                       out=None):
    """(a (width, S), cache), as pairs.pair_layer_forward; a is written into ``out`` when
    given. ``columns`` (3, S) of PairPositions on h_low's device (rows 0 and 2 are read).
    ``project`` (True/False) forces one order for both halves; None picks per half with
    ``project_first``."""
    scale = upsample_scale(h_low.shape, h_high.shape)
    C_l = h_low.shape[0]
    high_map = h_high if upsample == "nearest" else bilinear_upsample_forward(h_high, scale)
    S = columns.shape[1]
    A, halves = [], []
    for H, cols, W_half in ((h_low, columns[0], W[:, :C_l]), (high_map, columns[2], W[:, C_l:])):
        M = channel_matrix(H)
        projected = project_first(M.shape[1], S) if project is None else project
        if projected:
            A.append(gather_columns(matmul(W_half, M), cols))         # (width, S)
        else:
            G = gather_columns(M, cols)                             # (C, S)
            A.append(matmul(W_half, G))
        halves.append(PairHalf(projected, M if projected else G, cols, W_half, H.shape))
    a = get_array_module(A[0]).empty_like(A[0]) if out is None else out
    per_channel(_sum_of_halves, *A, b[:, None], a)
    return a, FastPairCache(tuple(halves), h_high.shape, upsample, scale)


def pair_layer_backward(da, cache, dW=None, db=None):
    """(dH_l, dH_{l+1}, dW, db) from da (width, S); dW and db are written into the arrays
    given (new ones when None). See the module docstring."""
    xp = get_array_module(da)
    dW_halves, dH = [], []
    for half in cache.halves:
        C, h, w, N = half.shape
        if half.projected:
            dP = scatter_add_columns(half.cols, da, h * w * N)       # (width, L)
            dW_halves.append(matmul(dP, half.data.T))
            dM = matmul(half.W.T, dP)                               # (C, L)
        else:
            dW_halves.append(matmul(da, half.data.T))
            dM = scatter_add_columns(half.cols, matmul(half.W.T, da), h * w * N)
        dH.append(dM.reshape(half.shape))
    dh_low, dh_high = dH
    if cache.upsample == "bilinear":
        dh_high = bilinear_upsample_backward(dh_high, cache.scale, cache.high_shape)
    return (dh_low, dh_high, xp.concatenate(dW_halves, axis=1, out=dW),
            channel_sum(da, out=db))
