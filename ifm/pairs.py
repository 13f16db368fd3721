"""The pair layer: pair vectors from two feature maps, fused with D's first linear layer.

Shapes (batch last, nn/layout.py): H_l (C_l, h, w, N), H_{l+1} (C_h, h/s, w/s, N)
with an integer factor s (2 in the paper), U = up(H_{l+1}) (C_h, h, w, N). For
rows r = 0..S-1 with positions (n_r, s_r) from ``sampling`` (low side) and
(m_r, t_r) (high side), s_r = y*w + x a location on the (h, w) grid:

Pairs:     z[:, r] = [ H_l[:, s_r, n_r] ; U[:, t_r, m_r] ]          z (C_l + C_h, S)
Nearest:   U[:, y*w + x, m] = H_{l+1}[:, (y//s)*(w/s) + x//s, m], so the high
           half is gathered straight from H_{l+1} at the coarse location
           (no upsampled map is built).
Bilinear:  U = A_h H_{l+1} A_w^T (nn.upsample), then gathered.
D's first layer, W = [W_l | W_h] (out, C_l + C_h), b (out,):
           a[:, r] = W z[:, r] + b = W_l H_l[:, s_r, n_r] + W_h U[:, t_r, m_r] + b
With M = channel_matrix(map) (C, L), L = h*w*N positions, and G = the S
gathered columns of M, each half is computed in the cheaper of two equal ways
(a linear map commutes with picking columns):
           gather, then project:  A = W_half G                2 out C S flops
           project, then gather:  A = (W_half M)[:, cols]     2 out C L flops
``project_first``: project when the map has fewer positions than there are
rows (L < S: with K = all always; with K = 64 for the 8x8 and 4x4 maps).
Backward, from da (out, S):
           db = sum_r da[:, r]
           gathered:   dW_half = da G^T,   dG = W_half^T da,   dM = scatter(dG)
           projected:  dP = scatter(da),   dW_half = dP M^T,   dM = W_half^T dP
The scatter is the gather's adjoint: a position drawn several times
(marginals are drawn with replacement; nearest maps s*s fine locations to one
coarse one) receives the sum of its rows. dH_l = dM_l as a map; dH_{l+1} =
dM_h as a map at coarse locations (nearest), or A_h^T dU A_w (bilinear).

``PairLinear`` is the layer (it owns W and b); ``pair_linear_forward``/
``pair_linear_backward`` its fast path, and ``pair_linear_reference_forward``/
``pair_linear_reference_backward`` the plain formula it is tested against
(z built column by column, then a = W z + b).
"""
from typing import NamedTuple

import numpy as np

from nn.backend import get_array_module
from nn.init import default_rng, kaiming_normal
from nn.module import Module
from nn.cpu.parallel import channel_sum, matmul, per_channel, run_in_blocks
from nn.upsample import bilinear_upsample_backward, bilinear_upsample_forward


def channel_matrix(H):
    """H (C, h, w, N) as the matrix (C, h*w*N): column s*N + n holds H[:, s, n] (a view)."""
    return H.reshape(H.shape[0], -1)


def map_from_channel_matrix(M, shape):
    """The inverse of ``channel_matrix``: M (C, h*w*N) as a map of ``shape`` (C, h, w, N)."""
    return M.reshape(shape)


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
    channel row (NumPy 2's one-dimensional fast path; the loop runs over
    channels, never over positions). Measured faster than a bincount per row
    and than a segmented sum of the columns sorted once (argsort, take,
    ``np.add.reduceat``): docs/performance.md, ``benchmarks.bench_scatter``.
    CuPy: ``cupy.add.at``, which adds with atomics, so the order of the
    additions, and the float32 rounding, varies from run to run (a plain
    ``out[:, cols] +=`` is undefined for repeated indices on the GPU).
    """
    xp = get_array_module(values)
    out = xp.zeros((values.shape[0], num_cols), dtype=values.dtype)
    if xp is not np:
        xp.add.at(out, (slice(None), cols), values)
        return out
    for row, v in zip(out, values):
        np.add.at(row, cols, v)
    return out


def upsample_scale(low_shape, high_shape):
    """The integer factor s with (h, w) = s * (h', w'); ValueError otherwise."""
    (_, h, w, N), (_, h2, w2, N2) = low_shape, high_shape
    if N != N2:
        raise ValueError(f"H_l and H_l+1 hold different batch sizes: {low_shape} vs {high_shape}")
    if h2 < 1 or w2 < 1 or h % h2 or w % w2 or h // h2 != w // w2:
        raise ValueError(f"H_l+1 {high_shape[1:3]} must be H_l {low_shape[1:3]} divided by one "
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


def _sum_of_halves(a_low, a_high, b, a):
    """Into a: a_low + a_high + b."""
    get_array_module(a_low).add(a_low, a_high, out=a)
    a += b


def pair_linear_forward(h_low, h_high, index, W, b, upsample="nearest", project=None,
                        out=None):
    """a = W z + b (out, S) for the pair vectors z (into ``out`` when given), and the cache.

    ``index`` (4, S) on h_low's device; with upsample="nearest" index[3] holds
    locations on H_{l+1}'s own grid (``sampling.coarse_locations``), with
    "bilinear" on the (h, w) grid. ``project`` (True/False) forces one order
    for both halves; None picks per half with ``project_first``.
    """
    scale = upsample_scale(h_low.shape, h_high.shape)
    low_n, low_s, high_n, high_s = index
    C_l, N = h_low.shape[0], h_low.shape[3]
    U = _high_map(h_high, upsample, scale)
    S = len(low_n)
    A, halves = [], []
    for H, cols, W_half in ((h_low, low_s * N + low_n, W[:, :C_l]),
                            (U, high_s * N + high_n, W[:, C_l:])):
        M = channel_matrix(H)
        projected = project_first(M.shape[1], S) if project is None else project
        if projected:
            A.append(gather_columns(matmul(W_half, M), cols))         # (out, S)
        else:
            G = gather_columns(M, cols)                             # (C, S)
            A.append(matmul(W_half, G))
        halves.append(PairHalf(projected, M if projected else G, cols, W_half, H.shape))
    a = get_array_module(A[0]).empty_like(A[0]) if out is None else out
    per_channel(_sum_of_halves, *A, b[:, None], a)
    return a, PairLinearCache(tuple(halves), h_high.shape, upsample, scale)


def pair_linear_backward(da, cache, dW=None, db=None):
    """(dH_l, dH_{l+1}, dW, db) from da (out, S); dW and db are written into the arrays
    given (new ones when None). See the module docstring."""
    xp = get_array_module(da)
    dW_halves, dH = [], []
    for half in cache.halves:
        C, h, w, N = half.shape
        if half.projected:
            dP = scatter_add_columns(half.cols, da, h * w * N)       # (out, L)
            dW_halves.append(matmul(dP, half.data.T))
            dM = matmul(half.W.T, dP)                               # (C, L)
        else:
            dW_halves.append(matmul(da, half.data.T))
            dM = scatter_add_columns(half.cols, matmul(half.W.T, da), h * w * N)
        dH.append(map_from_channel_matrix(dM, half.shape))
    dh_low, dh_high = dH
    if cache.upsample == "bilinear":
        dh_high = bilinear_upsample_backward(dh_high, cache.scale, cache.high_shape)
    return (dh_low, dh_high, xp.concatenate(dW_halves, axis=1, out=dW),
            channel_sum(da, out=db))


class PairReferenceCache(NamedTuple):
    z: object           # (C_l + C_h, S) pair vectors
    E_low: object       # (h*w*N, S) selection matrix of the H_l half
    E_high: object      # (h'*w'*N, S) selection matrix of the high half
    W: object           # (out, C_l + C_h)
    low_shape: tuple    # H_l shape
    gathered_shape: tuple   # the map the high half is gathered from (H_{l+1} or U)
    high_shape: tuple   # H_{l+1} shape
    upsample: str
    scale: int


def _selection(n, s, shape, dtype):
    """E (h*w*N, S): E[s_r*N + n_r, r] = 1, so M E picks column r's vector of M (C, h*w*N)."""
    xp = get_array_module(n)
    _, h, w, N = shape
    E = xp.zeros((h * w * N, len(n)), dtype=dtype)
    E[s * N + n, xp.arange(len(n))] = 1
    return E


def pair_linear_reference_forward(h_low, h_high, index, W, b, upsample="nearest"):
    """The plain formula, the oracle for ``pair_linear_forward``. Returns (a, cache).

        z = [M_l E_l ; M_h E_h] (C_l + C_h, S),   a = W z + b (out, S)

    M_l = channel_matrix(H_l) (C_l, h*w*N), M_h that of the map the high half
    is read from, and E the one-hot selection matrices of ``index`` (4, S) =
    (n, s, m, t), as for ``pair_linear_forward``: with "nearest", t is a
    location on H_{l+1}'s own grid, where U's value is H_{l+1}'s; with
    "bilinear", on the (h, w) grid of U = A_h H_{l+1} A_w^T.
    """
    scale = upsample_scale(h_low.shape, h_high.shape)
    xp = get_array_module(h_low)
    low_n, low_s, high_n, high_s = index
    U = _high_map(h_high, upsample, scale)
    E_low = _selection(low_n, low_s, h_low.shape, h_low.dtype)
    E_high = _selection(high_n, high_s, U.shape, U.dtype)
    z = xp.concatenate([channel_matrix(h_low) @ E_low, channel_matrix(U) @ E_high], axis=0)
    a = W @ z + b[:, None]
    return a, PairReferenceCache(z, E_low, E_high, W, h_low.shape, U.shape, h_high.shape,
                                 upsample, scale)


def pair_linear_reference_backward(da, cache):
    """(dH_l, dH_{l+1}, dW, db) from da (out, S), by the plain formula:

        dz = W^T da (C_l + C_h, S),  dW = da z^T,  db = sum_r da[:, r],
        dM_l = dz[:C_l] E_l^T,  dM_h = dz[C_l:] E_h^T  (repeated columns add up),
        dH_{l+1} = dM_h as a map (nearest) or A_h^T dU A_w (bilinear, dU = dM_h as a map).
    """
    C_l = cache.low_shape[0]
    dz = cache.W.T @ da
    dh_low = map_from_channel_matrix(dz[:C_l] @ cache.E_low.T, cache.low_shape)
    dh_high = map_from_channel_matrix(dz[C_l:] @ cache.E_high.T, cache.gathered_shape)
    if cache.upsample == "bilinear":
        dh_high = bilinear_upsample_backward(dh_high, cache.scale, cache.high_shape)
    return dh_low, dh_high, da @ cache.z.T, da.sum(axis=1)


class PairLinear(Module):
    """The pair layer: D's first linear layer on the pair vectors of H_l and up(H_{l+1}).

        a = W z + b,   z[:, r] = [H_l[:, s_r, n_r] ; U[:, t_r, m_r]]

    W (out, C_l + C_h) and b (out,) are D's first layer's, drawn as nn.Linear
    draws them (Kaiming normal for fan_in = C_l + C_h, b = 0).
    forward(h_low (C_l, h, w, N), h_high (C_h, h/s, w/s, N), index (4, S), out) -> a (out, S)
    (written into ``out`` when given);
    backward(da (out, S)) -> (dH_l, dH_{l+1}), and fills grads["W"], grads["b"]
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

    def __call__(self, h_low, h_high, index, out=None):
        return self.forward(h_low, h_high, index, out)

    def forward(self, h_low, h_high, index, out=None):
        if h_low.shape[0] != self.c_low or h_high.shape[0] != self.c_high:
            raise ValueError(f"PairLinear({self.c_low}, {self.c_high}) got maps with "
                             f"{h_low.shape[0]} and {h_high.shape[0]} channels")
        a, self._cache = pair_linear_forward(h_low, h_high, index, self.params["W"],
                                             self.params["b"], self.upsample, self.project,
                                             out)
        return a

    def backward(self, da):
        if self._cache is None:
            raise RuntimeError("backward called before forward")
        dh_low, dh_high, _, _ = pair_linear_backward(
            da, self._cache, dW=self.grads["W"], db=self.grads["b"])
        return dh_low, dh_high
