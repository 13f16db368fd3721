"""The pair layer: pair vectors from two feature maps, fused with D's first linear layer.

Shapes: H_l (N, C_l, h, w), H_{l+1} (N, C_h, h/s, w/s) with an integer factor s
(2 in the paper), U = up(H_{l+1}) (N, C_h, h, w). For rows r = 0..S-1 with
positions (n_r, s_r) from ``sampling`` (low side) and (m_r, t_r) (high side):

Pairs:     z[r] = [ H_l[n_r, :, s_r] , U[m_r, :, t_r] ]              z (S, C_l + C_h)
Nearest:   U[m, :, y*w + x] = H_{l+1}[m, :, (y//s)*(w/s) + x//s], so the high
           half is gathered straight from H_{l+1} at the coarse location
           (no upsampled map is built).
Bilinear:  U = A_h H_{l+1} A_w^T (nn.upsample), then gathered.
D's first layer, W = [W_l | W_h] (out, C_l + C_h), b (out,):
           a[r] = z[r] W^T + b = W_l H_l[n_r, :, s_r] + W_h U[m_r, :, t_r] + b
With M = channel_matrix(map) (C, L), L = h*w*N positions, and G = the S
gathered columns of M, each half is computed in the cheaper of two equal ways
(a linear map commutes with picking columns):
           gather, then project:  A = W_half G                2 out C S flops
           project, then gather:  A = (W_half M)[:, cols]     2 out C L flops
``project_first``: project when the map has fewer positions than there are
rows (L < S: with K = all always; with K = 64 for the 8x8 and 4x4 maps).
Backward, from da (S, out) and dA = da^T:
           db = sum_r da[r]
           gathered:   dW_half = dA G^T,   dG = W_half^T dA,   dM = scatter(dG)
           projected:  dP = scatter(dA),   dW_half = dP M^T,   dM = W_half^T dP
The scatter is the gather's adjoint: a position drawn several times
(marginals are drawn with replacement; nearest maps s*s fine locations to one
coarse one) receives the sum of its rows. dH_l = dM_l as a map; dH_{l+1} =
dM_h as a map at coarse locations (nearest), or A_h^T dU A_w (bilinear).
Every array is feature-major, as in nn.linear: A is (out, S), a = A^T.

``PairLinear`` is the layer (it owns W and b); ``pair_linear_forward``/
``pair_linear_backward`` its fast path, and ``pair_linear_reference_forward``/
``pair_linear_reference_backward`` the plain formula it is tested against
(z built row by row, then a = z W^T + b).
"""
from typing import NamedTuple

import numpy as np

from nn.backend import get_array_module
from nn.init import default_rng, kaiming_normal
from nn.module import Module
from nn.parallel import add_to_rows, matmul, run_in_blocks, sum_rows
from nn.upsample import bilinear_upsample_backward, bilinear_upsample_forward


def channel_matrix(H):
    """H (N, C, h, w) as the matrix (C, h*w*N): column s*N + n holds H[n, :, s].

    A view when H's memory is (C, h, w, N), the layout the conv layers hand
    over (nn.conv); a copy otherwise.
    """
    return H.transpose(1, 2, 3, 0).reshape(H.shape[1], -1)


def map_from_channel_matrix(M, shape):
    """The inverse of ``channel_matrix``: M (C, h*w*N) as a map of ``shape`` (N, C, h, w).

    A view whose memory is (C, h, w, N), the conv layers' layout, so the
    classifier adds the pair gradients to its own without a layout change.
    """
    N, C, h, w = shape
    return M.reshape(C, h, w, N).transpose(3, 0, 1, 2)


def gather_columns(M, cols):
    """M[:, cols] (C, S) for M (C, L).

    take along axis 1 copies one row at a time (several times faster than
    M[:, cols] on NumPy for 64-256 rows); rows are split over the CPU cores.
    """
    xp = get_array_module(M)
    out = xp.empty((M.shape[0], len(cols)), dtype=M.dtype)

    def rows(lo, hi):
        xp.take(M[lo:hi], cols, axis=1, out=out[lo:hi])

    run_in_blocks(rows, M.shape[0], out.nbytes, xp)
    return out


def scatter_add_columns(cols, values, num_cols):
    """(C, num_cols) zeros with column values[:, r] added at column cols[r].

    Repeated columns accumulate. NumPy: one unbuffered ``np.add.at`` per
    channel row (NumPy 2's one-dimensional fast path; measured 2x faster than
    a bincount per row, and several times faster than add.at on the 2-D
    array). The loop runs over channels, never over positions. CuPy:
    ``cupyx.scatter_add`` (a plain ``out[:, cols] +=`` is undefined for
    repeated indices on the GPU).
    """
    xp = get_array_module(values)
    out = xp.zeros((values.shape[0], num_cols), dtype=values.dtype)
    if xp is not np:
        import cupyx
        cupyx.scatter_add(out, (slice(None), cols), values)
        return out
    for row, v in zip(out, values):
        np.add.at(row, cols, v)
    return out


def upsample_scale(low_shape, high_shape):
    """The integer factor s with (h, w) = s * (h', w'); ValueError otherwise."""
    (N, _, h, w), (N2, _, h2, w2) = low_shape, high_shape
    if N != N2:
        raise ValueError(f"H_l and H_l+1 hold different batch sizes: {low_shape} vs {high_shape}")
    if h2 < 1 or w2 < 1 or h % h2 or w % w2 or h // h2 != w // w2:
        raise ValueError(f"H_l+1 {high_shape[2:]} must be H_l {low_shape[2:]} divided by one "
                         "integer factor (2 between adjacent conv blocks)")
    return h // h2


class PairHalf(NamedTuple):
    """One half of the fused layer, as backward needs it."""
    projected: bool     # project, then gather (True) or gather, then project
    data: object        # M (C, L) if projected, else G (C, S)
    cols: object        # (S,) column of each row in M
    W: object           # W_half (out, C), a view of the layer's W
    shape: tuple        # the map M belongs to: H_l, H_{l+1} (nearest) or U (bilinear)


class PairLinearCache(NamedTuple):
    halves: tuple       # (low, high) PairHalf
    high_shape: tuple   # H_{l+1} shape
    upsample: str
    scale: int


def project_first(positions, rows):
    """Project the map, then gather, when it has fewer positions than there are rows."""
    return positions < rows


def _high_map(h_high, upsample, scale):
    """The map the high half is gathered from: H_{l+1} itself (nearest) or U (bilinear)."""
    if upsample == "nearest":
        return h_high
    if upsample == "bilinear":
        return bilinear_upsample_forward(h_high, scale)
    raise ValueError(f"upsample must be 'nearest' or 'bilinear', got {upsample!r}")


def pair_linear_forward(h_low, h_high, index, W, b, upsample="nearest", project=None):
    """a = z W^T + b (S, out) for the pair vectors z, and the cache.

    ``index`` (4, S) on h_low's device; with upsample="nearest" index[3] holds
    locations on H_{l+1}'s own grid (``sampling.coarse_locations``), with
    "bilinear" on the (h, w) grid. ``project`` (True/False) forces one order
    for both halves; None picks per half with ``project_first``.
    """
    scale = upsample_scale(h_low.shape, h_high.shape)
    low_n, low_s, high_n, high_s = index
    N, C_l = h_low.shape[:2]
    U = _high_map(h_high, upsample, scale)
    S = len(low_n)
    A, halves = None, []
    for H, cols, W_half in ((h_low, low_s * N + low_n, W[:, :C_l]),
                            (U, high_s * N + high_n, W[:, C_l:])):
        M = channel_matrix(H)
        projected = project_first(M.shape[1], S) if project is None else project
        if projected:
            A_half = gather_columns(matmul(W_half, M), cols)        # (out, S)
        else:
            G = gather_columns(M, cols)                             # (C, S)
            A_half = matmul(W_half, G)
        halves.append(PairHalf(projected, M if projected else G, cols, W_half, H.shape))
        if A is None:
            A = A_half
        else:
            add_to_rows(A, A_half)
    add_to_rows(A, b)
    return A.T, PairLinearCache(tuple(halves), h_high.shape, upsample, scale)


def pair_linear_backward(da, cache):
    """(dH_l, dH_{l+1}, dW, db) from da (S, out). See the module docstring."""
    xp = get_array_module(da)
    dA = da.T                                       # (out, S)
    dW_halves, dH = [], []
    for half in cache.halves:
        L = half.shape[0] * half.shape[2] * half.shape[3]
        if half.projected:
            dP = scatter_add_columns(half.cols, dA, L)              # (out, L)
            dW_halves.append(matmul(dP, half.data.T))
            dM = matmul(half.W.T, dP)                               # (C, L)
        else:
            dW_halves.append(matmul(dA, half.data.T))
            dM = scatter_add_columns(half.cols, matmul(half.W.T, dA), L)
        dH.append(map_from_channel_matrix(dM, half.shape))
    dh_low, dh_high = dH
    if cache.upsample == "bilinear":
        dh_high = bilinear_upsample_backward(dh_high, cache.scale, cache.high_shape)
    return dh_low, dh_high, xp.concatenate(dW_halves, axis=1), sum_rows(dA)


class PairReferenceCache(NamedTuple):
    z: object           # (S, C_l + C_h) pair vectors
    E_low: object       # (S, N*h*w) selection matrix of the H_l half
    E_high: object      # (S, N*h'*w') selection matrix of the high half
    W: object           # (out, C_l + C_h)
    low_shape: tuple    # H_l shape
    gathered_shape: tuple   # the map the high half is gathered from (H_{l+1} or U)
    high_shape: tuple   # H_{l+1} shape
    upsample: str
    scale: int


def _rows(H):
    """H (N, C, h, w) as X (N*h*w, C): row (n*h + y)*w + x holds H[n, :, y, x]."""
    return H.transpose(0, 2, 3, 1).reshape(-1, H.shape[1])


def _selection(n, s, shape, dtype):
    """E (S, N*h*w): E[r, n_r*h*w + s_r] = 1, so E X picks the vector of each row."""
    xp = get_array_module(n)
    N, _, h, w = shape
    E = xp.zeros((len(n), N * h * w), dtype=dtype)
    E[xp.arange(len(n)), n * (h * w) + s] = 1
    return E


def pair_linear_reference_forward(h_low, h_high, index, W, b, upsample="nearest"):
    """The plain formula, the oracle for ``pair_linear_forward``. Returns (a, cache).

        z = [E_l X_l, E_h X_h] (S, C_l + C_h),   a = z W^T + b (S, out)

    X_l (N*h*w, C_l) holds H_l's vectors as rows, X_h those of the map the high
    half is read from, and E (S, positions) the one-hot selection matrices of
    ``index`` (4, S) = (n, s, m, t), as for ``pair_linear_forward``: with
    "nearest", t is a location on H_{l+1}'s own grid, where U's value is
    H_{l+1}'s; with "bilinear", on the (h, w) grid of U = A_h H_{l+1} A_w^T.
    """
    scale = upsample_scale(h_low.shape, h_high.shape)
    xp = get_array_module(h_low)
    low_n, low_s, high_n, high_s = index
    U = _high_map(h_high, upsample, scale)
    E_low = _selection(low_n, low_s, h_low.shape, h_low.dtype)
    E_high = _selection(high_n, high_s, U.shape, U.dtype)
    z = xp.concatenate([E_low @ _rows(h_low), E_high @ _rows(U)], axis=1)
    a = z @ W.T + b
    return a, PairReferenceCache(z, E_low, E_high, W, h_low.shape, U.shape, h_high.shape,
                                 upsample, scale)


def pair_linear_reference_backward(da, cache):
    """(dH_l, dH_{l+1}, dW, db) from da (S, out), by the plain formula:

        dz = da W (S, C_l + C_h),  dW = da^T z,  db = sum_r da[r],
        dX_l = E_l^T dz[:, :C_l],  dX_h = E_h^T dz[:, C_l:]  (repeated rows add up),
        dH_{l+1} = dX_h as a map (nearest) or A_h^T dU A_w (bilinear, dU = dX_h as a map).
    """
    C_l = cache.low_shape[1]
    dz = da @ cache.W

    def as_map(dX, shape):
        N, C, h, w = shape
        return dX.reshape(N, h, w, C).transpose(0, 3, 1, 2)

    dh_low = as_map(cache.E_low.T @ dz[:, :C_l], cache.low_shape)
    dh_high = as_map(cache.E_high.T @ dz[:, C_l:], cache.gathered_shape)
    if cache.upsample == "bilinear":
        dh_high = bilinear_upsample_backward(dh_high, cache.scale, cache.high_shape)
    return dh_low, dh_high, da.T @ cache.z, da.sum(axis=0)


class PairLinear(Module):
    """The pair layer: D's first linear layer on the pair vectors of H_l and up(H_{l+1}).

        a = z W^T + b,   z[r] = [H_l[n_r, :, s_r], U[m_r, :, t_r]]

    W (out, C_l + C_h) and b (out,) are D's first layer's, drawn as nn.Linear
    draws them (Kaiming normal for fan_in = C_l + C_h, b = 0).
    forward(h_low (N, C_l, h, w), h_high (N, C_h, h/s, w/s), index (4, S)) -> a (S, out);
    backward(da (S, out)) -> (dH_l, dH_{l+1}), and fills grads["W"], grads["b"]
    (overwritten). ``index`` as for ``pair_linear_forward``. ``project``
    (None, True or False) chooses the order of each half (``project_first``).
    """

    def __init__(self, c_low, c_high, out_features, upsample="nearest", rng=None,
                 dtype=np.float32, negative_slope=0.2):
        super().__init__()
        if upsample not in ("nearest", "bilinear"):
            raise ValueError(f"upsample must be 'nearest' or 'bilinear', got {upsample!r}")
        in_features = c_low + c_high
        self.params["W"] = kaiming_normal((out_features, in_features), in_features,
                                          default_rng(rng), negative_slope, dtype)
        self.params["b"] = np.zeros(out_features, dtype=dtype)
        self._zero_grads()
        self.c_low, self.c_high, self.upsample = c_low, c_high, upsample
        self.project = None
        self._cache = None

    def __call__(self, h_low, h_high, index):
        return self.forward(h_low, h_high, index)

    def forward(self, h_low, h_high, index):
        if h_low.shape[1] != self.c_low or h_high.shape[1] != self.c_high:
            raise ValueError(f"PairLinear({self.c_low}, {self.c_high}) got maps with "
                             f"{h_low.shape[1]} and {h_high.shape[1]} channels")
        a, self._cache = pair_linear_forward(h_low, h_high, index, self.params["W"],
                                             self.params["b"], self.upsample, self.project)
        return a

    def backward(self, da):
        if self._cache is None:
            raise RuntimeError("backward called before forward")
        dh_low, dh_high, dW, db = pair_linear_backward(da, self._cache)
        self._set_grads(W=dW, b=db)
        return dh_low, dh_high
