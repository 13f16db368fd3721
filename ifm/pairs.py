"""The pair layer, D_l's first layer on the pairs of (H_l, H_{l+1}): the formula.

Shapes (batch last, nn/layout.py): H_l (C_l, h, w, N); H_{l+1} (C_h, h/s, w/s, N)
with an integer factor s (2 between adjacent conv blocks). A map H (C, h, w, N)
read as its channel matrix M = channel_matrix(H) (C, h w N) has in column
p = s N + n the channel vector H[:, s, n] of image n at location s = y w + x.
The S pairs are two rows of columns (sampling.PairPositions): p_low (S,) in
H_l and p_up (S,) in U. W (width, C_l + C_h) and b (width,) are D_l's first
linear layer (width 256 in Table 2).

Forward:
    U = up(H_{l+1})                                 (C_h, h, w, N), nearest or bilinear
    z = [ M_l[:, p_low] ; M_U[:, p_up] ]            (C_l + C_h, S), the pair vectors
    a = W z + b                                     (width, S)
with nearest upsampling U[:, y, x] = H_{l+1}[:, y//s, x//s] and bilinear
U = A_h H_{l+1} A_w^T (nn/upsample.py).

Backward, from da = dL/da (width, S):
    dW = da z^T,   db = sum_r da[:, r],   dz = W^T da
    dM_l = scatter(dz[:C_l], p_low),   dM_U = scatter(dz[C_l:], p_up)
    dH_l = dM_l as a map,   dH_{l+1} = up^T(dU),  dU = dM_U as a map
where scatter, the adjoint of the gather M[:, p], adds column r of its input
into column p_r of a zero (C, h w N): a position drawn several times
(marginals are drawn with replacement) receives the sum of its rows. up^T is
upsampling's adjoint: for nearest the sum of dU over each s x s block
(nn.upsample.nearest_upsample_backward), for bilinear A_h^T dU A_w.

This module is the reference. The regularizer's speed path (ifm/stacked.py)
runs ifm/fast_pairs.py, tested equal to it, which never builds U for nearest
(it reads H_{l+1} at the coarse locations) and computes each half of a = W z + b
as W_half times the gathered vectors, or as the gathered columns of W_half
times the whole map, whichever is cheaper.
"""
from typing import NamedTuple

import numpy as np

from nn.backend import get_array_module
from nn.init import default_rng, kaiming_normal
from nn.module import Module
from nn.upsample import (bilinear_upsample_backward, bilinear_upsample_forward,
                         nearest_upsample_backward, nearest_upsample_forward)

UPSAMPLING = ("nearest", "bilinear")


def channel_matrix(H):
    """H (C, h, w, N) as the matrix (C, h*w*N): column s*N + n holds H[:, s, n] (a view)."""
    return H.reshape(H.shape[0], -1)


def gather(M, columns):
    """M[:, columns] (C, S): the vector of every pair's position."""
    return M[:, columns]


def scatter(dZ, columns, n_columns):
    """The adjoint of ``gather``: (C, n_columns) zeros with dZ[:, r] added into column
    columns[r] (repeated columns receive the sum)."""
    xp = get_array_module(dZ)
    dM = xp.zeros((dZ.shape[0], n_columns), dtype=dZ.dtype)
    xp.add.at(dM, (slice(None), columns), dZ)
    return dM


def check_upsample(upsample):
    if upsample not in UPSAMPLING:
        raise ValueError(f"upsample must be 'nearest' or 'bilinear', got {upsample!r}")


def upsample_scale(low_shape, high_shape):
    """The integer factor s with (h, w) = s * (h', w'); ValueError otherwise."""
    (_, h, w, N), (_, h2, w2, N2) = low_shape, high_shape
    if N != N2:
        raise ValueError(f"H_l and H_l+1 hold different batch sizes: {low_shape} vs {high_shape}")
    if h2 < 1 or w2 < 1 or h % h2 or w % w2 or h // h2 != w // w2:
        raise ValueError(f"H_l+1 {high_shape[1:3]} must be H_l {low_shape[1:3]} divided by one "
                         "integer factor (2 between adjacent conv blocks)")
    return h // h2


def up(h_high, upsample, scale):
    """U = up(H_{l+1}) (C_h, s h', s w', N)."""
    if upsample == "nearest":
        return nearest_upsample_forward(h_high, scale)
    return bilinear_upsample_forward(h_high, scale)


def up_adjoint(dU, upsample, scale, high_shape):
    """dH_{l+1} = up^T(dU) (``high_shape``)."""
    if upsample == "nearest":
        return nearest_upsample_backward(dU, scale)
    return bilinear_upsample_backward(dU, scale, high_shape)


class PairLayerCache(NamedTuple):
    z: object           # (C_l + C_h, S) pair vectors
    columns: object     # (3, S) the positions' columns
    W: object           # (width, C_l + C_h)
    low_shape: tuple    # H_l (C_l, h, w, N)
    high_shape: tuple   # H_{l+1}
    upsample: str
    scale: int


def pair_layer_forward(h_low, h_high, columns, W, b, upsample="nearest"):
    """(a (width, S), cache); ``columns`` (3, S) of PairPositions (rows 0 and 1 are read).
    See the module docstring."""
    xp = get_array_module(h_low)
    scale = upsample_scale(h_low.shape, h_high.shape)
    U = up(h_high, upsample, scale)
    z = xp.concatenate([gather(channel_matrix(h_low), columns[0]),
                        gather(channel_matrix(U), columns[1])])
    a = W @ z + b[:, None]
    return a, PairLayerCache(z, columns, W, h_low.shape, h_high.shape, upsample, scale)


def pair_layer_backward(da, cache):
    """(dH_l, dH_{l+1}, dW, db) from da (width, S). See the module docstring."""
    C_l, h, w, N = cache.low_shape
    dz = cache.W.T @ da
    dh_low = scatter(dz[:C_l], cache.columns[0], h * w * N).reshape(cache.low_shape)
    dU = scatter(dz[C_l:], cache.columns[1], h * w * N).reshape((-1, h, w, N))
    dh_high = up_adjoint(dU, cache.upsample, cache.scale, cache.high_shape)
    return dh_low, dh_high, da @ cache.z.T, da.sum(axis=1)


class PairLayer(Module):
    """D_l's first layer on the pairs: a = W z + b (module docstring).

    forward(h_low (C_l, h, w, N), h_high (C_h, h/s, w/s, N), columns (3, S)) -> a
    (width, S); backward(da) -> (dH_l, dH_{l+1}), and fills grads["W"], grads["b"]
    (overwritten). W and b are drawn as nn.Linear draws them (Kaiming normal for
    fan_in = C_l + C_h, b = 0).
    """

    def __init__(self, c_low, c_high, width, upsample="nearest", rng=None, dtype=np.float32,
                 negative_slope=0.2):
        super().__init__()
        check_upsample(upsample)
        in_features = c_low + c_high
        self.params["W"] = kaiming_normal((width, in_features), in_features, default_rng(rng),
                                          negative_slope, dtype)
        self.params["b"] = np.zeros(width, dtype=dtype)
        self._zero_grads()
        self.c_low, self.c_high, self.upsample = c_low, c_high, upsample
        self._cache = None

    def check(self, h_low, h_high):
        """ValueError unless the maps have this layer's channels and one scale apart."""
        if h_low.shape[0] != self.c_low or h_high.shape[0] != self.c_high:
            raise ValueError(f"a pair layer of {self.c_low} and {self.c_high} channels got "
                             f"maps with {h_low.shape[0]} and {h_high.shape[0]}")
        upsample_scale(h_low.shape, h_high.shape)

    def forward(self, h_low, h_high, columns):
        self.check(h_low, h_high)
        a, self._cache = pair_layer_forward(h_low, h_high, columns, self.params["W"],
                                            self.params["b"], self.upsample)
        return a

    def backward(self, da):
        dh_low, dh_high, dW, db = pair_layer_backward(da, self._cache)
        self._set_grads(W=dW, b=db)
        return dh_low, dh_high
