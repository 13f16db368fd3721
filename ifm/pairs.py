"""Pair vectors from two feature maps, and the adjoint that scatters gradients back.

Shapes: H_l (N, C_l, h, w), H_{l+1} (N, C_h, h/s, w/s) with an integer factor s
(2 in the paper), U = up(H_{l+1}) (N, C_h, h, w). For rows r = 0..S-1 with
positions (n_r, s_r) from ``sampling`` (low side) and (m_r, t_r) (high side):

Forward:   z[r] = [ H_l[n_r, :, s_r] , U[m_r, :, t_r] ]              z (S, C_l + C_h)
Nearest:   U[m, :, y*w + x] = H_{l+1}[m, :, (y//s)*(w/s) + x//s], so the high
           half is gathered straight from H_{l+1} at the coarse location
           (no upsampled map is built).
Bilinear:  U = A_h H_{l+1} A_w^T (nn.upsample), then gathered.
Backward:  the gather's adjoint is a scatter-add; a position drawn several
           times (marginals are drawn with replacement; nearest maps s*s fine
           locations to one coarse one) receives the sum of its rows:
           dH_l[n, :, s]  = sum_{r: (n_r, s_r) = (n, s)} dz[r, :C_l]
           dU[m, :, t]    = sum_{r: (m_r, t_r) = (m, t)} dz[r, C_l:]
           dH_{l+1} = dU scattered directly at coarse locations (nearest), or
                    = A_h^T dU A_w (bilinear_upsample_backward).
"""
from typing import NamedTuple

import numpy as np

from nn.backend import get_array_module
from nn.parallel import run_in_blocks
from nn.upsample import bilinear_upsample_backward, bilinear_upsample_forward


class PairCache(NamedTuple):
    index: object       # (4, S) int64 device array: low_n, low_s, high_n, high_s
    low_shape: tuple    # H_l shape
    high_shape: tuple   # H_{l+1} shape
    upsample: str       # "nearest" (high_s on H_{l+1}'s grid) or "bilinear" (on U's grid)
    scale: int


def channel_matrix(H):
    """H (N, C, h, w) as the matrix (C, h*w*N): column s*N + n holds H[n, :, s].

    A view when H's memory is (C, h, w, N), the layout the conv layers hand
    over (nn.conv); a copy otherwise.
    """
    return H.transpose(1, 2, 3, 0).reshape(H.shape[1], -1)


def gather_vectors(H, n, s, out=None):
    """(S, C) channel vectors H[n_r, :, s_r] of H (N, C, h, w), s = y*w + x.

    Returned as the transposed view of a (C, S) array, ``out`` if given: the
    feature-major layout nn.linear works in.
    """
    xp = get_array_module(H)
    M = channel_matrix(H)
    cols = s * H.shape[0] + n
    if out is None:
        out = xp.empty((M.shape[0], len(cols)), dtype=H.dtype)

    # take along axis 1 copies one channel row at a time (several times faster
    # than M[:, cols] on NumPy for 64-128 channels).
    def channels(lo, hi):
        xp.take(M[lo:hi], cols, axis=1, out=out[lo:hi])

    run_in_blocks(channels, M.shape[0], out.nbytes, xp)
    return out.T


def scatter_add_columns(cols, values, num_cols):
    """(C, num_cols) zeros with column values[:, r] added at column cols[r].

    Repeated columns accumulate. NumPy: the distinct columns u_j and each
    row's slot j come from one sort (np.unique); per channel row, one
    ``bincount`` over the slots sums the values of equal columns (in float64)
    and one indexed store puts the sums at u_j. The loop runs over channels,
    never over positions, and every pass is as long as the S rows or the
    distinct columns, not the whole map (measured several times faster than a
    sorted indexed add or a bincount over all num_cols). CuPy:
    ``cupyx.scatter_add`` (a plain ``out[:, cols] +=`` is undefined for
    repeated indices on the GPU).
    """
    xp = get_array_module(values)
    C = values.shape[0]
    out = xp.zeros((C, num_cols), dtype=values.dtype)
    if xp is not np:
        import cupyx
        cupyx.scatter_add(out, (slice(None), cols), values)
        return out
    distinct, slot = np.unique(cols, return_inverse=True)
    for row, v in zip(out, values):
        row[distinct] = np.bincount(slot, weights=v, minlength=len(distinct))
    return out


def scatter_vectors(dvectors, n, s, shape):
    """Adjoint of ``gather_vectors``: dH (shape) from dvectors (S, C).

    dH comes back with memory (C, h, w, N), the conv layers' layout, so the
    classifier adds it to its own gradient without a layout change.
    """
    N, C, h, w = shape
    dM = scatter_add_columns(s * N + n, dvectors.T, h * w * N)      # (C, h*w*N)
    return dM.reshape(C, h, w, N).transpose(3, 0, 1, 2)


def upsample_scale(low_shape, high_shape):
    """The integer factor s with (h, w) = s * (h', w'); ValueError otherwise."""
    (N, _, h, w), (N2, _, h2, w2) = low_shape, high_shape
    if N != N2:
        raise ValueError(f"H_l and H_l+1 hold different batch sizes: {low_shape} vs {high_shape}")
    if h2 < 1 or w2 < 1 or h % h2 or w % w2 or h // h2 != w // w2:
        raise ValueError(f"H_l+1 {high_shape[2:]} must be H_l {low_shape[2:]} divided by one "
                         "integer factor (2 between adjacent conv blocks)")
    return h // h2


def pair_features_forward(h_low, h_high, index, upsample="nearest"):
    """z (S, C_l + C_h) and the cache; ``index`` (4, S) on h_low's device.

    With upsample="nearest" index[3] holds locations on H_{l+1}'s own grid
    (``sampling.coarse_locations``); with "bilinear" on the (h, w) grid.
    """
    xp = get_array_module(h_low)
    scale = upsample_scale(h_low.shape, h_high.shape)
    if upsample not in ("nearest", "bilinear"):
        raise ValueError(f"upsample must be 'nearest' or 'bilinear', got {upsample!r}")
    low_n, low_s, high_n, high_s = index
    C_l = h_low.shape[1]
    zT = xp.empty((C_l + h_high.shape[1], len(low_n)), dtype=h_low.dtype)
    gather_vectors(h_low, low_n, low_s, out=zT[:C_l])
    U = h_high if upsample == "nearest" else bilinear_upsample_forward(h_high, scale)
    gather_vectors(U, high_n, high_s, out=zT[C_l:])
    return zT.T, PairCache(index, h_low.shape, h_high.shape, upsample, scale)


def pair_features_backward(dz, cache):
    """(dH_l, dH_{l+1}) from dz (S, C_l + C_h)."""
    low_n, low_s, high_n, high_s = cache.index
    C_l = cache.low_shape[1]
    dh_low = scatter_vectors(dz[:, :C_l], low_n, low_s, cache.low_shape)
    if cache.upsample == "nearest":
        dh_high = scatter_vectors(dz[:, C_l:], high_n, high_s, cache.high_shape)
    else:
        N, C_h = cache.high_shape[:2]
        up_shape = (N, C_h) + tuple(cache.low_shape[2:])
        d_up = scatter_vectors(dz[:, C_l:], high_n, high_s, up_shape)
        dh_high = bilinear_upsample_backward(d_up, cache.scale, cache.high_shape)
    return dh_low, dh_high
