"""The discriminator D (paper Table 2) and the estimator it feeds.

D maps pair vectors z = [h_l; h_{l+1}] (C_l + C_{l+1}, S), batch last, to one
score per column:
    FC(C_l+C_{l+1}, 256)-BN-LReLU(0.2)-FC(256, 128)-BN-LReLU(0.2)
    -FC(128, 64)-BN-LReLU(0.2)-FC(64, 1)
built from nn layers (``hidden`` changes the widths; tests use small ones).

``PairCritic`` runs D on the joint and marginal pairs in ONE batch, joint pairs
first: V = D(z)[0], V_P = V[:S_P], V_Q = V[S_P:]. The batch-norm layers of D
therefore normalize with statistics of joint and marginal rows together, the
same statistics for both kinds of sample; in two separate batches BN would
normalize each kind by its own mean and variance, which both hides the
difference D must detect and hands it a shortcut (the batch a row came in).

Forward:   V = D(z)[0];  F, dF/dV_P, dF/dV_Q = estimator(V_P, V_Q)
Backward:  dV = dF * [dF/dV_P, dF/dV_Q];  dz = D.backward(dV[None, :])
           (fills D's gradients with dF * dF/dtheta, overwriting them)
``forward_after_first``/``backward_to_first`` start and stop after D's first
linear layer: IFMBlock computes that layer fused with the pair gather
(ifm/pairs.py) and fills its gradients itself.
"""
import numpy as np

from nn import BatchNorm1d, LeakyReLU, Linear, Sequential
from nn.backend import get_array_module
from nn.init import default_rng
from nn.module import Container

from .estimators import ESTIMATORS, DVMovingAverage

HIDDEN = (256, 128, 64)
NEGATIVE_SLOPE = 0.2


def make_discriminator(in_features, hidden=HIDDEN, rng=None, dtype=np.float32):
    """nn.Sequential: (Linear-BN-LeakyReLU) per hidden width, then Linear(.., 1)."""
    rng = default_rng(rng)
    layers, width = [], in_features
    for out in hidden:
        layers += [Linear(width, out, rng=rng, dtype=dtype), BatchNorm1d(out, dtype=dtype),
                   LeakyReLU(NEGATIVE_SLOPE)]
        width = out
    layers.append(Linear(width, 1, rng=rng, dtype=dtype))
    return Sequential(*layers)


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


class PairCritic(Container):
    """D and an estimator on ready-made pair vectors (see the module docstring).

    params/grads/buffers are D's, keyed "i.name" as in nn.Sequential (plus the
    moving-average buffers "dv.log_ema", "dv.weight" when ``dv_ema`` is set).
    """

    def __init__(self, in_features, estimator="jsd", hidden=HIDDEN, rng=None,
                 dtype=np.float32, dv_ema=None):
        self.D = make_discriminator(in_features, hidden, rng, dtype)
        self.estimate = make_estimator(estimator, dv_ema, dtype)
        self.estimator = estimator
        self.named_layers = [(str(i), layer) for i, layer in enumerate(self.D.layers)]
        if isinstance(self.estimate, DVMovingAverage):
            self.named_layers.append(("dv", self.estimate))
        super().__init__(self.named_layers)
        self._dV = None

    @property
    def first_layer(self):
        """D's first Linear (C_l + C_h -> 256); IFMBlock applies it fused with the gather."""
        return self.D.layers[0]

    def forward(self, z, n_joint, groups=None):
        """F (0-d) for z (in_features, S) whose first n_joint columns are joint pairs.

        ``groups`` = (G, B) reshapes the scores for InfoNCE: V_P (G, B), V_Q (G, B, B-1).
        """
        return self.forward_after_first(self.first_layer.forward(z), n_joint, groups)

    def forward_after_first(self, a, n_joint, groups=None):
        """F from a = first_layer(z) (256, S): D's remaining layers, then the estimator."""
        V = a
        for layer in self.D.layers[1:]:
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
        """dz = dF * dF/dz (in_features, S); D's grads become dF * dF/dtheta."""
        return self.first_layer.backward(self.backward_to_first(dF))

    def backward_to_first(self, dF=1.0):
        """da = dF * dF/da for a = first_layer(z); fills the grads of every layer but the first."""
        if self._dV is None:
            raise RuntimeError("backward called before forward")
        xp = get_array_module(self._dV)
        d = (self._dV * xp.asarray(dF, dtype=self._dV.dtype))[None, :]
        for layer in reversed(self.D.layers[1:]):
            d = layer.backward(d)
        return d
