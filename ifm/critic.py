"""The discriminators D_l (paper Table 2) after their first layer, as one stack, and the
estimator they feed.

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

``Critic`` is D after its first linear layer, and the estimator, for G
critics D_1..D_G of one architecture (one per layer pair), their parameters
stacked on a leading member axis (ifm/stacked.py): "1.gamma" (G, 256),
"3.W" (G, 128, 256), ..., keyed by the layer's index in D ("0" is the first
linear layer, which the pair layer owns; "1" .. the rest, as in
nn.Sequential). A call runs the members ``members`` (a slice of g of them)
whose first-layer outputs have one shape, stacked:
Forward:   a (g, hidden[0], S);  V = D_rest(a)[:, 0] (g, S);
           F, dF/dV_P, dF/dV_Q = estimator(V_P, V_Q)        F (g,), one per member
Backward:  dV = dF * [dF/dV_P, dF/dV_Q];  da = D_rest.backward(dV[:, None])
           (fills the members' gradients with dF_g * dF_g/dtheta_g, overwriting them)
Every layer makes one pass over the whole run, so three critics cost the
launches of one. The regularizer puts the pair layers (``pairs.PairLinear``)
in front; ``PairCritic`` puts an nn.Linear in front of one critic, for
ready-made pair vectors z.
"""
import numbers
from typing import NamedTuple

import numpy as np

from nn import BatchNorm1d, LeakyReLU, Linear
from nn.backend import get_array_module
from nn.init import default_rng
from nn.module import Container

from .estimators import ESTIMATORS, DVMovingAverage
from .stacked import StackedBatchNorm, StackedLeakyReLU, StackedLinear

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


def make_estimator(estimator, dv_ema=None, dtype=np.float32, shape=()):
    """The estimate function for a registry name; a ``DVMovingAverage`` (one state of
    ``shape``) for dv + dv_ema."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of {sorted(ESTIMATORS)}")
    if dv_ema is None:
        return ESTIMATORS[estimator]
    if estimator != "dv":
        raise ValueError(f"dv_ema is MINE's correction of the DV gradient; "
                         f"it does not apply to estimator {estimator!r}")
    return DVMovingAverage(dv_ema, dtype, shape)


STACKS = {BatchNorm1d: StackedBatchNorm, LeakyReLU: StackedLeakyReLU, Linear: StackedLinear}


class CriticCache(NamedTuple):
    layers: list        # each layer's cache, in forward order
    dV: object          # dF/dV (g, S)
    members: slice


class Critic(Container):
    """G critics after their first layer, and the estimator (see the module docstring).

    forward(a (g, hidden[0], S), n_joint, groups, members) -> (F (g,), cache);
    backward(dF, cache) -> da (g, hidden[0], S). ``member_layers``: the G
    members' ``discriminator_layers`` to stack (drawn here from ``rng`` when
    None). params/grads/buffers are the stacked layers', keyed by their index
    in D ("1.gamma", "3.W", ...), plus the moving-average buffers
    "dv.log_ema", "dv.weight" (G,) when ``dv_ema`` is set.
    """

    def __init__(self, members=1, estimator="jsd", hidden=HIDDEN, rng=None, dtype=np.float32,
                 dv_ema=None, member_layers=None):
        if member_layers is None:
            rng = default_rng(rng)
            member_layers = [discriminator_layers(hidden, rng, dtype) for _ in range(members)]
        if len(member_layers) != members:
            raise ValueError(f"Critic of {members} members got {len(member_layers)} layer lists")
        self.layers = [STACKS[type(layers[0])].from_layers(layers)
                       for layers in zip(*member_layers)]
        self.members, self.width = members, hidden[0]
        self.estimate = make_estimator(estimator, dv_ema, dtype, (members,))
        self.estimator = estimator
        named = [(str(i), layer) for i, layer in enumerate(self.layers, start=1)]
        if isinstance(self.estimate, DVMovingAverage):
            named.append(("dv", self.estimate))
        super().__init__(named)

    @property
    def dtype(self):
        """The parameters' dtype."""
        return self.layers[0].params["gamma"].dtype

    def forward(self, a, n_joint, groups=None, members=None):
        """(F (g,), cache) for a (g, hidden[0], S) whose first n_joint columns are joint
        pairs, of the members ``members`` (default: all).

        ``groups`` = (G, B) reshapes the scores for InfoNCE: V_P (g, G, B),
        V_Q (g, G, B, B-1).
        """
        members = slice(0, self.members) if members is None else members
        if not isinstance(members, slice) or members.step not in (None, 1):
            raise ValueError(f"members must be a slice of consecutive critics, got {members}")
        if (groups is not None) != (self.estimator == "infonce"):
            raise ValueError("groups (G, B) go with estimator 'infonce' and only with it")
        g = len(range(self.members)[members])
        if a.shape[0] != g:
            raise ValueError(f"Critic members {members} take {g} stacked inputs, got {a.shape}")
        V, caches = a, []
        for layer in self.layers:
            V, cache = layer.forward(V, members)
            caches.append(cache)
        V = V[:, 0]
        v_joint, v_marg = V[:, :n_joint], V[:, n_joint:]
        if groups is not None:
            G, B = groups
            v_joint, v_marg = v_joint.reshape(g, G, B), v_marg.reshape(g, G, B, B - 1)
        if isinstance(self.estimate, DVMovingAverage):
            F, d_joint, d_marg = self.estimate(v_joint, v_marg, members)
        else:
            F, d_joint, d_marg = self.estimate(v_joint, v_marg)
        xp = get_array_module(V)
        dV = xp.concatenate([d_joint.reshape(g, -1), d_marg.reshape(g, -1)], axis=1)
        return F, CriticCache(caches, dV.astype(V.dtype, copy=False), members)

    def backward(self, dF, cache):
        """da = dF * dF/da (g, hidden[0], S); the members' grads become dF * dF/dtheta.

        dF: a host number or 0-d array (for every member), or an array (g,).
        """
        dV = cache.dV
        if isinstance(dF, numbers.Number):      # a host scalar: no upload
            dF = dV.dtype.type(dF)
        else:
            dF = get_array_module(dV).asarray(dF, dtype=dV.dtype)
        d = dV * (dF if dF.ndim == 0 else dF[:, None])
        d = d[:, None]
        for layer, layer_cache in zip(reversed(self.layers), reversed(cache.layers)):
            d = layer.backward(d, layer_cache, cache.members)
        return d


class PairCritic(Container):
    """One D and the estimator on ready-made pair vectors z (in_features, S).

    forward(z, n_joint, groups) -> F (0-d); backward(dF) -> dz (in_features, S).
    params/grads/buffers are D's, keyed "i.name" as in nn.Sequential, the
    layers after the first stacked as a ``Critic`` of one member (shapes
    (1, ...); plus "dv.log_ema", "dv.weight" when ``dv_ema`` is set).
    """

    def __init__(self, in_features, estimator="jsd", hidden=HIDDEN, rng=None,
                 dtype=np.float32, dv_ema=None):
        rng = default_rng(rng)
        self.first = Linear(in_features, hidden[0], rng=rng, dtype=dtype)
        self.critic = Critic(1, estimator, hidden, rng, dtype, dv_ema)
        self.estimator = estimator
        super().__init__([("0", self.first)] + self.critic.named_children())
        self._cache = None

    def forward(self, z, n_joint, groups=None):
        F, self._cache = self.critic.forward(self.first.forward(z)[None], n_joint, groups)
        return F[0, ...]                        # a 0-d array, as on CuPy

    def backward(self, dF=1.0):
        if self._cache is None:
            raise RuntimeError("backward called before forward")
        return self.first.backward(self.critic.backward(dF, self._cache)[0])
