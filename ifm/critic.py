"""The discriminator D (paper Table 2) and the estimator it feeds.

D maps pair vectors z = [h_l; h_{l+1}] (C_l + C_{l+1}, S), batch last, to one
score per column:
    FC(C_l+C_{l+1}, 256)-BN-LReLU(0.2)-FC(256, 128)-BN-LReLU(0.2)
    -FC(128, 64)-BN-LReLU(0.2)-FC(64, 1)
built from nn layers (``hidden`` changes the widths; tests use small ones).

D's joint and marginal pairs go through in ONE batch, joint pairs first:
V = D(z)[0], V_P = V[:S_P], V_Q = V[S_P:]. The batch-norm layers of D
therefore normalize with statistics of joint and marginal pairs together, the
same statistics for both kinds of sample; in two separate batches BN would
normalize each kind by its own mean and variance, which both hides the
difference D must detect and hands it a shortcut (the batch a row came in).

``Critic`` is D after its first linear layer, and the estimator:
Forward:   a (hidden[0], S) = D's first layer on z;  V = D_rest(a)[0];
           F, dF/dV_P, dF/dV_Q = estimator(V_P, V_Q)
Backward:  dV = dF * [dF/dV_P, dF/dV_Q];  da = D_rest.backward(dV[None, :])
           (fills the layers' gradients with dF * dF/dtheta, overwriting them)
IFMBlock puts the pair layer (``pairs.PairLinear``: the pair gather fused with
D's first layer) in front of it; ``PairCritic`` puts an nn.Linear in front of
it, for ready-made pair vectors z. Either way the layers are keyed by their
index in D: "0" is the first linear layer, "1" .. the rest, as in nn.Sequential.
"""
import numbers

import numpy as np

from nn import BatchNorm1d, LeakyReLU, Linear, Sequential
from nn.backend import get_array_module
from nn.init import default_rng
from nn.module import Container

from .estimators import ESTIMATORS, DVMovingAverage

HIDDEN = (256, 128, 64)
NEGATIVE_SLOPE = 0.2


def discriminator_layers(hidden=HIDDEN, rng=None, dtype=np.float32):
    """D's layers after its first Linear: BN-LeakyReLU, then (Linear-BN-LeakyReLU) per
    further hidden width, then Linear(.., 1)."""
    rng = default_rng(rng)
    layers = [BatchNorm1d(hidden[0], dtype=dtype), LeakyReLU(NEGATIVE_SLOPE)]
    for width, out in zip(hidden[:-1], hidden[1:]):
        layers += [Linear(width, out, rng=rng, dtype=dtype), BatchNorm1d(out, dtype=dtype),
                   LeakyReLU(NEGATIVE_SLOPE)]
    layers.append(Linear(hidden[-1], 1, rng=rng, dtype=dtype))
    return layers


def make_discriminator(in_features, hidden=HIDDEN, rng=None, dtype=np.float32):
    """nn.Sequential: (Linear-BN-LeakyReLU) per hidden width, then Linear(.., 1)."""
    rng = default_rng(rng)
    first = Linear(in_features, hidden[0], rng=rng, dtype=dtype)
    return Sequential(first, *discriminator_layers(hidden, rng, dtype))


def make_estimator(estimator, dv_ema=None, dtype=np.float32):
    """The estimate function for a registry name; a ``DVMovingAverage`` for dv + dv_ema."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of {sorted(ESTIMATORS)}")
    if dv_ema is None:
        return ESTIMATORS[estimator]
    if estimator != "dv":
        raise ValueError(f"dv_ema is MINE's correction of the DV gradient; "
                         f"it does not apply to estimator {estimator!r}")
    return DVMovingAverage(dv_ema, dtype)


class Critic(Container):
    """D after its first linear layer, and the estimator (see the module docstring).

    forward(a (hidden[0], S), n_joint, groups) -> F (0-d); backward(dF) -> da (hidden[0], S).
    params/grads/buffers are the layers', keyed by their index in D ("1.gamma",
    "3.W", ...), plus the moving-average buffers "dv.log_ema", "dv.weight" when
    ``dv_ema`` is set; ``named_layers`` lists them for a container that adds
    layer "0".
    """

    def __init__(self, estimator="jsd", hidden=HIDDEN, rng=None, dtype=np.float32,
                 dv_ema=None):
        self.layers = discriminator_layers(hidden, rng, dtype)
        self.estimate = make_estimator(estimator, dv_ema, dtype)
        self.estimator = estimator
        self.named_layers = [(str(i), layer) for i, layer in enumerate(self.layers, start=1)]
        if isinstance(self.estimate, DVMovingAverage):
            self.named_layers.append(("dv", self.estimate))
        super().__init__(self.named_layers)
        self._dV = None

    def forward(self, a, n_joint, groups=None):
        """F (0-d) for a (hidden[0], S) whose first n_joint columns are joint pairs.

        ``groups`` = (G, B) reshapes the scores for InfoNCE: V_P (G, B), V_Q (G, B, B-1).
        """
        V = a
        for layer in self.layers:
            V = layer.forward(V)
        V = V[0]
        v_joint, v_marg = V[:n_joint], V[n_joint:]
        if groups is not None:
            G, B = groups
            v_joint, v_marg = v_joint.reshape(G, B), v_marg.reshape(G, B, B - 1)
        F, d_joint, d_marg = self.estimate(v_joint, v_marg)
        xp = get_array_module(V)
        self._dV = xp.concatenate([d_joint.reshape(-1), d_marg.reshape(-1)]).astype(V.dtype,
                                                                                     copy=False)
        return F

    def backward(self, dF=1.0):
        """da = dF * dF/da (hidden[0], S); the layers' grads become dF * dF/dtheta."""
        if self._dV is None:
            raise RuntimeError("backward called before forward")
        if isinstance(dF, numbers.Number):      # a host scalar: no upload
            dF = self._dV.dtype.type(dF)
        else:
            dF = get_array_module(self._dV).asarray(dF, dtype=self._dV.dtype)
        d = (self._dV * dF)[None, :]
        for layer in reversed(self.layers):
            d = layer.backward(d)
        return d


class PairCritic(Container):
    """D and the estimator on ready-made pair vectors z (in_features, S).

    forward(z, n_joint, groups) -> F (0-d); backward(dF) -> dz (in_features, S).
    params/grads/buffers are D's, keyed "i.name" as in nn.Sequential (plus
    "dv.log_ema", "dv.weight" when ``dv_ema`` is set).
    """

    def __init__(self, in_features, estimator="jsd", hidden=HIDDEN, rng=None,
                 dtype=np.float32, dv_ema=None):
        rng = default_rng(rng)
        self.first = Linear(in_features, hidden[0], rng=rng, dtype=dtype)
        self.critic = Critic(estimator, hidden, rng, dtype, dv_ema)
        self.estimator = estimator
        super().__init__([("0", self.first)] + self.critic.named_layers)

    def train(self, mode=True):
        super().train(mode)
        self.critic.training = mode
        return self

    def forward(self, z, n_joint, groups=None):
        return self.critic.forward(self.first.forward(z), n_joint, groups)

    def backward(self, dF=1.0):
        return self.first.backward(self.critic.backward(dF))
