"""IFMBlock: the mutual information F between adjacent feature maps (paper Sec. 3).

    block = IFMBlock(c_low, c_high, samples=64, estimator="jsd", upsample="nearest")
    F = block.forward(h_low, h_high, rng)        # 0-d array, to be maximized
    dh_low, dh_high = block.backward(dF)         # dF * dF/dH_l, dF * dF/dH_{l+1}

Forward, for H_l (C_l, h, w, N) and H_{l+1} (C_{l+1}, h/2, w/2, N) (batch last):
    1. positions of S_P joint and S_Q marginal pairs (``sampling``), drawn on
       the host from ``rng`` and moved to the device in one ``xp.asarray``;
    2. z = [H_l vector; up(H_{l+1}) vector] per column, (C_l+C_{l+1}, S), and
       D's first layer a = W z + b, computed together (``pairs.pair_linear_forward``:
       where a map has fewer positions than there are rows, it is projected
       first and the projections are gathered, so z is never built for it);
    3. V = D's remaining layers on a, all rows in one batch,
       F = estimator(V_P, V_Q) (``critic``).
Backward, the same steps in reverse:
    dF -> dV = dF * dF/dV -> D's layers: their grads and da -> first layer:
    dW, db, and the scatter-add into dH_l and into dU = d up(H_{l+1}) ->
    dH_{l+1} (directly at coarse locations for nearest, A_h^T dU A_w for
    bilinear).
D is not part of the classifier: its parameters live here only.
"""
import numpy as np

from nn.backend import get_array_module
from nn.module import Container

from .critic import HIDDEN, PairCritic
from .pairs import pair_linear_backward, pair_linear_forward, upsample_scale
from .sampling import coarse_locations, locations_per_image, sample_infonce_pairs, sample_pairs


class IFMBlock(Container):
    """F between H_l (c_low channels) and H_{l+1} (c_high channels); see the module docstring.

    samples:   K locations per image (an int, capped at h*w) or "all"; as many
               marginal pairs (InfoNCE: negatives within groups, see ``sampling``).
    estimator: "jsd" (default), "dv", "infonce" or "paper-eq4" (``estimators``).
    upsample:  "nearest" (default) or "bilinear".
    marginal:  "image" (default: both halves of a marginal pair from one image)
               or "batch" (each half from an independently drawn image).
    rng:       numpy Generator for D's initial weights.
    dv_ema:    alpha of MINE's moving-average gradient correction (estimator "dv").
    hidden:    D's hidden widths (Table 2: 256, 128, 64).

    ``params``/``grads``/``buffers`` are live flat views of D's, keyed "i.name".
    """

    def __init__(self, c_low, c_high, samples=64, estimator="jsd", upsample="nearest",
                 marginal="image", rng=None, dtype=np.float32, dv_ema=None, hidden=HIDDEN):
        if upsample not in ("nearest", "bilinear"):
            raise ValueError(f"upsample must be 'nearest' or 'bilinear', got {upsample!r}")
        if marginal not in ("image", "batch"):
            raise ValueError(f"marginal must be 'image' or 'batch', got {marginal!r}")
        locations_per_image(samples, 1)                     # validates samples
        self.critic = PairCritic(c_low + c_high, estimator, hidden, rng, dtype, dv_ema)
        super().__init__(self.critic.named_layers)
        self.c_low, self.c_high = c_low, c_high
        self.samples, self.estimator = samples, estimator
        self.upsample, self.marginal = upsample, marginal
        self._cache = None
        self.last_index = None      # the host PairIndex of the last forward (for inspection)

    def train(self, mode=True):
        super().train(mode)
        self.critic.training = mode
        return self

    def sample(self, low_shape, rng):
        """PairIndex for an H_l of this shape (host arrays, nothing moved)."""
        _, h, w, N = low_shape
        draw = sample_infonce_pairs if self.estimator == "infonce" else sample_pairs
        return draw(N, h, w, self.samples, self.marginal, rng)

    def forward(self, h_low, h_high, rng):
        """F (0-d array on the maps' device). ``rng``: numpy Generator driving the sampling."""
        if h_low.shape[0] != self.c_low or h_high.shape[0] != self.c_high:
            raise ValueError(f"IFMBlock({self.c_low}, {self.c_high}) got maps with "
                             f"{h_low.shape[0]} and {h_high.shape[0]} channels")
        scale = upsample_scale(h_low.shape, h_high.shape)
        index = self.sample(h_low.shape, rng)
        high_s = index.high_s
        if self.upsample == "nearest":
            high_s = coarse_locations(high_s, h_low.shape[2], scale)
        xp = get_array_module(h_low)
        device_index = xp.asarray(np.stack([index.low_n, index.low_s, index.high_n, high_s]))
        first = self.critic.first_layer
        a, pair_cache = pair_linear_forward(h_low, h_high, device_index, first.params["W"],
                                            first.params["b"], self.upsample)
        F = self.critic.forward_after_first(a, index.n_joint, index.groups)
        self._cache = pair_cache
        self.last_index = index
        return F

    def backward(self, dF=1.0):
        """(dH_l, dH_{l+1}) = dF * dF/dH; D's grads become dF * dF/dtheta (overwritten)."""
        if self._cache is None:
            raise RuntimeError("backward called before forward")
        da = self.critic.backward_to_first(dF)
        dh_low, dh_high, dW, db = pair_linear_backward(da, self._cache)
        self.critic.first_layer._set_grads(W=dW, b=db)
        return dh_low, dh_high
