"""Mutual-information estimators on discriminator scores V.

Every estimator is a pure function ``f(v_joint, v_marg) -> (F, dF_dv_joint,
dF_dv_marg)``: F is an array on the scores' device (never a Python float, so
a training step does not wait on the GPU), and the two gradients have the
shapes of their inputs. F is to be MAXIMIZED (by D and, in IFM, by the CNN).
P is the joint distribution (scores of joint pairs, S_P of them), Q the product
of marginals (scores of marginal pairs, S_Q of them); E_P, E_Q are sample means.
The samples lie on the last axis (InfoNCE: the last two of v_joint); leading
axes index independent estimates (one per critic of a stack), so
v_joint (..., S_P), v_marg (..., S_Q) give F (...): 0-d for one critic.

``jsd`` (Deep InfoMax / f-GAN, the default):
    F = E_P[-softplus(-V)] - E_Q[softplus(V)]                      F <= 0
    dF/dV_i = sigmoid(-V_i) / S_P  (joint),   -sigmoid(V_i) / S_Q  (marginal)
    At the optimal D, F = 2 JS(P || Q) - log 4; ``F + log 4`` (``offset=True``
    or ``jsd_divergence``) is the comparable form, in [0, 2 log 2].
``dv`` (Donsker-Varadhan, MINE):
    F = E_P[V] - log E_Q[e^V] = E_P[V] - (logsumexp(V_Q) - log S_Q)
    dF/dV_i = 1 / S_P  (joint),   -softmax(V_Q)_i  (marginal)
    ``DVMovingAverage`` is MINE's bias-corrected variant of the gradient.
``infonce`` (van den Oord et al.; Poole et al. 2019), on G groups of B joint
    pairs: v_joint (G, B) with v_joint[g, i] = D(x_gi, y_gi), v_marg
    (G, B, B-1) with v_marg[g, i, :] = D(x_gi, y_gj) for the other j != i:
    F = mean_{g,i} [ V_gii - logsumexp_j(V_gij) + log B ]          F <= log B
    dF/dV_gii = (1 - softmax_i(V_gi.)_i) / (G B),
    dF/dV_gij = -softmax_i(V_gi.)_j / (G B)   (j != i)
``paper-eq4`` (the paper's Eq. (4) exactly as printed, kept to be measured):
    F = E_P[sigmoid(V)] - log E_Q[1 - sigmoid(V)]
      = E_P[sigmoid(V)] - (logsumexp(-softplus(V_Q)) - log S_Q)
    dF/dV_i = sigmoid(V_i) sigmoid(-V_i) / S_P  (joint),
              w_i sigmoid(V_i) with w = softmax(-softplus(V_Q))  (marginal)
    It is unbounded above: V_Q -> +inf sends F -> +inf (see docs/math.md).

Stability: softplus(v) = logaddexp(0, v) = max(v, 0) + log1p(exp(-|v|)) and
sigmoid(v) = exp(-softplus(-v)) never overflow; every log-mean-exp subtracts
its maximum. All four are finite for any finite V, in float32 and float64.
"""
import math

import numpy as np

from nn.backend import get_array_module
from nn.module import Module

LOG4 = math.log(4.0)


def softplus(v):
    """log(1 + e^v) = logaddexp(0, v), stable for any v."""
    return get_array_module(v).logaddexp(0, v)


def sigmoid(v):
    """1 / (1 + e^-v) = exp(-softplus(-v)), stable for any v."""
    xp = get_array_module(v)
    return xp.exp(-softplus(-v))


def logsumexp(v, axis=None, keepdims=False):
    """log sum exp(v) with the maximum subtracted (finite for finite v)."""
    xp = get_array_module(v)
    m = v.max(axis=axis, keepdims=True)
    out = m + xp.log(xp.exp(v - m).sum(axis=axis, keepdims=True))
    return out if keepdims else (out.squeeze(axis) if axis is not None else out.reshape(()))


def _softmax(v, axis=None):
    xp = get_array_module(v)
    e = xp.exp(v - v.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _scalar(F, like):
    """F as an array of like's dtype on like's device: 0-d for one critic, where NumPy's
    reductions give scalars."""
    return get_array_module(like).asarray(F, dtype=like.dtype)


def jsd(v_joint, v_marg, offset=False):
    """Jensen-Shannon bound; ``offset=True`` adds log 4 (the comparable form)."""
    F = -softplus(-v_joint).mean(axis=-1) - softplus(v_marg).mean(axis=-1)
    if offset:
        F = F + LOG4
    F = _scalar(F, v_joint)
    d_joint = sigmoid(-v_joint) / v_joint.shape[-1]
    d_marg = -sigmoid(v_marg) / v_marg.shape[-1]
    return F, d_joint, d_marg


def jsd_divergence(F):
    """The comparable form of a ``jsd`` value: F + log 4 (= 2 JS at the optimum)."""
    return F + LOG4


def dv(v_joint, v_marg):
    """Donsker-Varadhan bound with the exact gradient."""
    S_Q = v_marg.shape[-1]
    log_mean_exp = logsumexp(v_marg, axis=-1) - math.log(S_Q)
    F = _scalar(v_joint.mean(axis=-1) - log_mean_exp, v_joint)
    xp = get_array_module(v_joint)
    d_joint = xp.full(v_joint.shape, 1.0 / v_joint.shape[-1], dtype=v_joint.dtype)
    d_marg = -_softmax(v_marg, axis=-1)
    return F, d_joint, d_marg


def infonce(v_joint, v_marg):
    """InfoNCE on groups: v_joint (..., G, B) positives, v_marg (..., G, B, B-1) negatives."""
    xp = get_array_module(v_joint)
    if v_joint.ndim < 2 or v_marg.shape != v_joint.shape + (v_joint.shape[-1] - 1,):
        raise ValueError(f"infonce expects v_joint (G, B) and v_marg (G, B, B-1), got "
                         f"{v_joint.shape} and {v_marg.shape}")
    G, B = v_joint.shape[-2:]
    if B < 2:
        raise ValueError("infonce needs groups of at least two joint pairs")
    scores = xp.concatenate([v_joint[..., None], v_marg], axis=-1)  # (..., G, B, B): positive first
    p = _softmax(scores, axis=-1)
    F = _scalar((v_joint - logsumexp(scores, axis=-1)).mean(axis=(-2, -1)) + math.log(B),
                v_joint)
    d_joint = (1 - p[..., 0]) / (G * B)
    d_marg = -p[..., 1:] / (G * B)
    return F, d_joint, d_marg


def paper_eq4(v_joint, v_marg):
    """The paper's Eq. (4) as printed: E_P[sigmoid(V)] - log E_Q[1 - sigmoid(V)]."""
    s_joint = sigmoid(v_joint)
    log_one_minus = -softplus(v_marg)                          # log(1 - sigmoid(V_Q))
    F = _scalar(s_joint.mean(axis=-1)
                - (logsumexp(log_one_minus, axis=-1) - math.log(v_marg.shape[-1])), v_joint)
    d_joint = s_joint * sigmoid(-v_joint) / v_joint.shape[-1]
    d_marg = _softmax(log_one_minus, axis=-1) * sigmoid(v_marg)
    return F, d_joint, d_marg


ESTIMATORS = {"jsd": jsd, "dv": dv, "infonce": infonce, "paper-eq4": paper_eq4}


class Estimator(Module):
    """The protocol of an estimator of F as a D_l holds it: ``estimate(v_joint, v_marg)
    -> (F, dF/dV_P, dF/dV_Q)``, one of the functions above (no state, no buffers).

    ``members(run)`` is the estimator of the critics ``run`` (a slice) of a stack
    of them (ifm/stacked.py): this one, since the functions take leading axes. A
    subclass with a state per critic (``DVMovingAverage``) keeps it in buffers
    and hands a run the slice of them.
    """

    def __init__(self, name):
        super().__init__()
        if name not in ESTIMATORS:
            raise ValueError(f"unknown estimator {name!r}; choose one of {sorted(ESTIMATORS)}")
        self.name = name

    def __call__(self, v_joint, v_marg):
        return ESTIMATORS[self.name](v_joint, v_marg)

    def members(self, run):
        return self

    def stack(self, estimators):
        """The estimator of a stack of the critics holding ``estimators`` (this one among
        them, all alike): this one, since the functions take leading axes."""
        return self


class DVMovingAverage(Estimator):
    """Donsker-Varadhan with MINE's moving-average gradient correction, per critic.

    The value is the plain DV bound. The gradient of log E_Q[e^V], which is
    E_Q[e^V grad V] / E_Q[e^V] and biased on a minibatch, is replaced by
    E_Q[e^V grad V] / ema with
        ema_t = (1 - alpha) ema_{t-1} + alpha E_Q[e^V]     (batch t included),
    kept in log space and bias-corrected like Adam's moments:
        log_ema <- logaddexp(log(1 - alpha) + log_ema, log(alpha) + log E_Q[e^V])
        weight  <- (1 - alpha) weight + alpha,   ema_hat = exp(log_ema) / weight
    so dF/dV_i = -exp(V_i - log ema_hat) / S_Q on marginal scores. The states
    are buffers of ``shape`` on the device: () for one critic, (G,) for a stack
    of G, whose ``members(run)`` updates the run's. They change in training
    mode only; in eval mode the exact DV gradient is returned. With alpha = 1 it
    equals ``dv``.
    """

    def __init__(self, alpha, dtype, shape=()):
        super().__init__("dv")
        if not 0 < alpha <= 1:
            raise ValueError(f"dv_ema must be in (0, 1], got {alpha}")
        self.alpha = float(alpha)
        self.buffers["log_ema"] = np.full(shape, -np.inf, dtype=dtype)
        self.buffers["weight"] = np.zeros(shape, dtype=dtype)

    def stack(self, estimators):
        """One moving average whose states (G,) stack those of ``estimators`` (shape () each)."""
        stack = DVMovingAverage(self.alpha, self.buffers["weight"].dtype, (len(estimators),))
        stack.buffers = {k: np.stack([e.buffers[k] for e in estimators]) for k in self.buffers}
        return stack

    def members(self, run):
        """The moving average of the critics ``run``: their slice of the states (views)."""
        part = DVMovingAverage(self.alpha, self.buffers["weight"].dtype)
        part.buffers = {k: b[run] for k, b in self.buffers.items()}
        part.training = self.training
        return part

    def __call__(self, v_joint, v_marg):
        F, d_joint, d_marg = dv(v_joint, v_marg)
        if not self.training:
            return F, d_joint, d_marg
        xp = get_array_module(v_marg)
        log_mean_exp = logsumexp(v_marg, axis=-1) - math.log(v_marg.shape[-1])
        log_ema, weight = self.buffers["log_ema"], self.buffers["weight"]
        decay = math.log1p(-self.alpha) if self.alpha < 1 else -math.inf
        log_ema[...] = xp.logaddexp(decay + log_ema, math.log(self.alpha) + log_mean_exp)
        weight[...] = (1 - self.alpha) * weight + self.alpha
        log_ema_hat = log_ema - xp.log(weight)
        d_marg = -xp.exp(v_marg - log_ema_hat[..., None]) / v_marg.shape[-1]
        return F, d_joint, d_marg.astype(v_marg.dtype, copy=False)


def make_estimator(estimator, dv_ema=None, dtype=np.float32, shape=()):
    """The Estimator for a registry name; a ``DVMovingAverage`` (one state of ``shape``)
    for dv with dv_ema."""
    if dv_ema is None:
        return Estimator(estimator)
    if estimator != "dv":
        raise ValueError(f"dv_ema is MINE's correction of the DV gradient; "
                         f"it does not apply to estimator {estimator!r}")
    return DVMovingAverage(dv_ema, dtype, shape)
