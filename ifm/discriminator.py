"""D_l, the discriminator of one layer pair (paper Table 2), and its estimate F_l.

D_l scores the S pairs of (H_l, H_{l+1}) that ``positions`` name
(sampling.PairPositions: S_P joint pairs first, then the marginal ones), all
in one batch, batch last:

    0  a = W_0 z + b_0          the pair layer on the pair vectors z (ifm/pairs.py)   (256, S)
    1  BatchNorm1d(256)    2  LeakyReLU(0.2)    3  Linear(256, 128)
    4  BatchNorm1d(128)    5  LeakyReLU(0.2)    6  Linear(128, 64)
    7  BatchNorm1d(64)     8  LeakyReLU(0.2)    9  Linear(64, 1)
    V = the last output (S,),   V_P = V[:S_P],   V_Q = V[S_P:]
    F, dF/dV_P, dF/dV_Q = estimate(V_P, V_Q)       (ifm/estimators.py)

(``hidden`` changes the widths 256, 128, 64; tests use small ones.) The joint
and the marginal pairs go through in ONE batch, so every batch norm
normalizes both kinds with the same statistics; in two batches BN would
normalize each kind by its own mean and variance, which both hides the
difference D must detect and hands it a shortcut (the batch a row came in).

Backward, from dF = dL/dF_l (the regularizer's -lambda):

    dV = dF [dF/dV_P ; dF/dV_Q]                      (S,), the estimator's closed form
    layers 9..1, each its own backward:
        Linear     dx = W^T dy,   dW = dy x^T,   db = sum_r dy          (nn/linear.py)
        LeakyReLU  dx = dy where y > 0, else 0.2 dy                      (nn/activations.py)
        BatchNorm  dx = gamma s (dy - mean_r dy - x_hat mean_r(dy x_hat)) (nn/batchnorm.py):
                   the batch statistics couple every pair, joint and marginal
    layer 0, the pair layer: dW_0 = da z^T, db_0 = sum_r da, and dz = W_0^T da
        scattered back to H_l and to U, then through upsampling's adjoint to
        H_{l+1} (ifm/pairs.py)                         -> (dH_l, dH_{l+1})

and every parameter's gradient is dF dF/dtheta. ``params`` and ``grads`` are
keyed by the layer's index in D, as in nn.Sequential ("0.W", "0.b",
"1.gamma", ..., "9.b"); ``buffers`` are the batch norms' running statistics
("1.running_mean", ...) and, with MINE's moving average, "dv.log_ema",
"dv.weight".

This is the reading path: the regularizer runs the D_l of all its layer
pairs as one stack (ifm/stacked.py), tested equal to each D_l alone.
"""
import numbers

import numpy as np

from nn import BatchNorm1d, LeakyReLU, Linear
from nn.backend import get_array_module
from nn.init import default_rng
from nn.module import Container

from .estimators import make_estimator
from .pairs import PairLayer

HIDDEN = (256, 128, 64)
NEGATIVE_SLOPE = 0.2


def hidden_layers(hidden=HIDDEN, rng=None, dtype=np.float32):
    """D's layers 1..9 (Table 2, after its first linear layer): BN-LeakyReLU, then
    (Linear-BN-LeakyReLU) per further hidden width, then Linear(.., 1)."""
    rng = default_rng(rng)
    layers = [BatchNorm1d(hidden[0], dtype=dtype), LeakyReLU(NEGATIVE_SLOPE)]
    for width, out in zip(hidden[:-1], hidden[1:]):
        layers += [Linear(width, out, rng=rng, dtype=dtype), BatchNorm1d(out, dtype=dtype),
                   LeakyReLU(NEGATIVE_SLOPE)]
    layers.append(Linear(hidden[-1], 1, rng=rng, dtype=dtype))
    return layers


def joint_and_marginal(V, n_joint, groups, estimator):
    """(V_P, V_Q) of scores V (..., S), joint pairs first; for InfoNCE, groups = (G, B)
    shapes them (..., G, B) and (..., G, B, B-1)."""
    if (groups is not None) != (estimator == "infonce"):
        raise ValueError("groups (G, B) go with estimator 'infonce' and only with it")
    v_joint, v_marg = V[..., :n_joint], V[..., n_joint:]
    if groups is not None:
        G, B = groups
        lead = V.shape[:-1]
        v_joint, v_marg = v_joint.reshape(lead + (G, B)), v_marg.reshape(lead + (G, B, B - 1))
    return v_joint, v_marg


def score_gradient(d_joint, d_marg, like):
    """dF/dV (..., S) of like's dtype: dF/dV_P and dF/dV_Q in the order of the scores."""
    lead = like.shape[:-1]
    xp = get_array_module(like)
    return xp.concatenate([d_joint.reshape(lead + (-1,)), d_marg.reshape(lead + (-1,))],
                          axis=-1).astype(like.dtype, copy=False)


def upstream(dF, like):
    """dF as a factor for arrays like ``like``: a host number stays on the host (no upload);
    an array goes to like's device and dtype."""
    if isinstance(dF, numbers.Number):
        return like.dtype.type(dF)
    return get_array_module(like).asarray(dF, dtype=like.dtype)


class Discriminator(Container):
    """D_l and its estimate (module docstring).

    forward(h_low, h_high, positions) -> F (0-d); backward(dF) -> (dH_l, dH_{l+1}), with
    dF a host number or a 0-d array; every gradient is overwritten. ``dF_dV`` (S,) is
    the last forward's dF/dV, which backward reads.
    """

    def __init__(self, c_low, c_high, estimator="jsd", upsample="nearest", hidden=HIDDEN,
                 rng=None, dtype=np.float32, dv_ema=None):
        rng = default_rng(rng)
        self.pair_layer = PairLayer(c_low, c_high, hidden[0], upsample, rng, dtype)
        self.layers = hidden_layers(hidden, rng, dtype)
        self.estimate = make_estimator(estimator, dv_ema, dtype)
        self.estimator = estimator
        named = [("0", self.pair_layer)] + [(str(i), layer)
                                             for i, layer in enumerate(self.layers, start=1)]
        if dv_ema is not None:
            named.append(("dv", self.estimate))
        super().__init__(named)
        self.dF_dV = None

    def forward(self, h_low, h_high, positions):
        a = self.pair_layer.forward(h_low, h_high, positions.columns)
        for layer in self.layers:
            a = layer.forward(a)
        V = a[0]
        F, d_joint, d_marg = self.estimate(*joint_and_marginal(V, positions.n_joint,
                                                               positions.groups, self.estimator))
        self.dF_dV = score_gradient(d_joint, d_marg, V)
        return F

    def backward(self, dF):
        if self.dF_dV is None:
            raise RuntimeError("backward called before forward")
        d = (upstream(dF, self.dF_dV) * self.dF_dV)[None]
        for layer in reversed(self.layers):
            d = layer.backward(d)
        return self.pair_layer.backward(d)
