"""IFMPair: one layer pair (H_l, H_{l+1}) of IFM: where its pairs lie, and D_l's first layer.

    pair = IFMPair(c_low, c_high, samples=64, estimator="jsd", upsample="nearest")
    positions = pair.positions(h_low, h_high, rng)   # drawn on the host, uploaded once
    a = pair.forward(h_low, h_high, positions.index) # D_l's first layer on the pairs
    dh_low, dh_high = pair.backward(da)

For H_l (C_l, h, w, N) and H_{l+1} (C_{l+1}, h/2, w/2, N) (batch last):
    1. positions of S_P joint and S_Q marginal pairs (``sampling``), drawn on
       the host from ``rng`` (``draw``) and moved to the device in one
       ``xp.asarray``; or given ready on the device (e.g. one step's slice of
       an epoch's positions, see ``upload_positions``);
    2. z = [H_l vector; up(H_{l+1}) vector] per column, (C_l+C_{l+1}, S), and
       D_l's first layer a = W z + b, computed together by the pair layer
       (``pairs.PairLinear``: where a map has fewer positions than there are
       rows, it is projected first and the projections are gathered, so z is
       never built for it).
The rest of D_l, and F, is member l of the regularizer's ``critic.Critic``.
Backward: da -> pair layer: dW, db, and the scatter-add into dH_l and into
dU = d up(H_{l+1}) -> dH_{l+1} (directly at coarse locations for nearest,
A_h^T dU A_w for bilinear).
"""
from typing import NamedTuple, Optional

import numpy as np

from nn.backend import get_array_module
from nn.init import default_rng
from nn.module import Container

from .critic import HIDDEN
from .pairs import PairLinear, upsample_scale
from .sampling import coarse_locations, locations_per_image, sample_infonce_pairs, sample_pairs


class PairPositions(NamedTuple):
    """The pair positions of one forward, as the pair layer takes them.

    index (4, S) int: rows n, s, m, t of ``pairs.pair_linear_forward`` (image and
    location of the H_l half, image and location of the H_{l+1} half; t on
    H_{l+1}'s own grid for nearest upsampling), on the host or on the device.
    """
    index: object
    n_joint: int
    groups: Optional[tuple] = None   # (G, B) for InfoNCE, else None


def upload_positions(steps, xp):
    """One block's positions of many steps, moved to the device in ONE ``xp.asarray``.

    ``steps``: host PairPositions of steps 0..T-1 (index (4, S_t) each). The
    indices are joined into one (4, sum_t S_t) int32 array (every value is
    below N*h*w < 2^31) and uploaded; step t gets the view [:, o_t:o_t + S_t].
    Returns the device PairPositions, in order.
    """
    sizes = [p.index.shape[1] for p in steps]
    host = np.empty((4, sum(sizes)), dtype=np.int32)
    offsets = np.cumsum([0] + sizes)
    for p, lo, hi in zip(steps, offsets[:-1], offsets[1:]):
        host[:, lo:hi] = p.index
    device = xp.asarray(host)
    return [p._replace(index=device[:, lo:hi])
            for p, lo, hi in zip(steps, offsets[:-1], offsets[1:])]


class IFMPair(Container):
    """One layer pair's pair positions and pair layer; see the module docstring.

    samples:   K locations per image (an int, capped at h*w) or "all"; as many
               marginal pairs (InfoNCE: negatives within groups, see ``sampling``).
    estimator: the estimator the pairs are drawn for ("infonce" draws groups).
    upsample:  "nearest" (default) or "bilinear".
    marginal:  "image" (default: both halves of a marginal pair from one image)
               or "batch" (each half from an independently drawn image).
    rng:       numpy Generator for the pair layer's initial weights.
    out_features: D's first width (Table 2: 256).

    ``params``/``grads`` are the pair layer's, keyed "0.W", "0.b" (layer 0 of D_l).
    """

    def __init__(self, c_low, c_high, samples=64, estimator="jsd", upsample="nearest",
                 marginal="image", rng=None, dtype=np.float32, out_features=HIDDEN[0]):
        if upsample not in ("nearest", "bilinear"):
            raise ValueError(f"upsample must be 'nearest' or 'bilinear', got {upsample!r}")
        if marginal not in ("image", "batch"):
            raise ValueError(f"marginal must be 'image' or 'batch', got {marginal!r}")
        locations_per_image(samples, 1)                     # validates samples
        self.pair_layer = PairLinear(c_low, c_high, out_features, upsample, default_rng(rng),
                                     dtype)
        super().__init__([("0", self.pair_layer)])
        self.c_low, self.c_high = c_low, c_high
        self.samples, self.estimator = samples, estimator
        self.upsample, self.marginal = upsample, marginal
        self.last_index = None      # the host PairIndex of the last ``positions`` that drew one

    def sample(self, low_shape, rng):
        """PairIndex for an H_l of this shape (host arrays, nothing moved)."""
        _, h, w, N = low_shape
        draw = sample_infonce_pairs if self.estimator == "infonce" else sample_pairs
        return draw(N, h, w, self.samples, self.marginal, rng)

    def draw(self, low_shape, high_shape, rng):
        """(PairIndex, host PairPositions) for maps H_l, H_{l+1} of these shapes, from ``rng``."""
        scale = upsample_scale(low_shape, high_shape)
        index = self.sample(low_shape, rng)
        high_s = index.high_s
        if self.upsample == "nearest":
            high_s = coarse_locations(high_s, low_shape[2], scale)
        rows = np.stack([index.low_n, index.low_s, index.high_n, high_s])
        return index, PairPositions(rows, index.n_joint, index.groups)

    def positions(self, h_low, h_high, rng=None, positions=None):
        """The PairPositions on the maps' device for this forward.

        Either ``rng`` (numpy Generator: the positions are drawn here, then
        uploaded) or ``positions`` (PairPositions already on the maps' device,
        returned as they are). The maps' shapes are checked either way.
        """
        self._check(h_low, h_high)
        if (rng is None) == (positions is None):
            raise ValueError("give exactly one of rng and positions")
        self.last_index = None
        if positions is None:
            self.last_index, positions = self.draw(h_low.shape, h_high.shape, rng)
            positions = positions._replace(index=get_array_module(h_low).asarray(positions.index))
        return positions

    def _check(self, h_low, h_high):
        if h_low.shape[0] != self.c_low or h_high.shape[0] != self.c_high:
            raise ValueError(f"IFMPair({self.c_low}, {self.c_high}) got maps with "
                             f"{h_low.shape[0]} and {h_high.shape[0]} channels")
        upsample_scale(h_low.shape, h_high.shape)           # validates the shapes

    def forward(self, h_low, h_high, index, out=None):
        """a (out_features, S) = D_l's first layer on the pairs at ``index`` (into ``out``)."""
        return self.pair_layer.forward(h_low, h_high, index, out=out)

    def backward(self, da):
        """(dH_l, dH_{l+1}) from da (out_features, S); the pair layer's grads are overwritten."""
        return self.pair_layer.backward(da)
