"""The invertible ops of iCE fi-RevNet (Jacobsen et al., ICLR 2019), a Glow-style flow.

Maps are batch last, x (C, H, W, N); "per image" arrays are (N,). Every op is
a bijection y = f(x) with its inverse and its log-determinant
log|det df/dx| per image (N,). Backward takes dy = dL/dy and dlog_det =
dL/dlog_det (N,) and returns dL/dx and the parameter gradients.

ActNorm (per channel c, s = exp(l)):
    y = s (x + b),   x = y / s - b,   log_det_n = H W sum_c l_c
    dx = s dy,   db = s sum_{h,w,n} dy,   dl = sum_{h,w,n} dy y + H W sum_n dlog_det_n
    Initialized on its first batch: b = -mean, l = -log(std + 1e-6) per channel
    (the output of that batch has zero mean and unit variance per channel).
Squeeze, 2x2 space to depth, (C, H, W, N) -> (4C, H/2, W/2, N):
    y[4c + 2u + v, i, j, n] = x[c, 2i + u, 2j + v, n],   log_det = 0
    A permutation: its backward and its inverse are unsqueeze.
Channel reversal: y[c] = x[C - 1 - c],   log_det = 0, its own backward and inverse.
Additive coupling, x = (x1, x2) split along channels, x1 the first C1 = C // 2:
    y1 = x1,   y2 = x2 + NN(x1);   x1 = y1,   x2 = y2 - NN(y1);   log_det = 0
    dx1 = dy1 + J_NN(x1)^T dy2,   dx2 = dy2
    NN = conv3x3(C1 -> F) + ActNorm, ReLU, conv1x1(F -> F) + ActNorm, ReLU,
         dropout, ZeroConv3x3(F -> C - C1)   (convs without bias, F = ``hidden``)
ZeroConv (zero-initialized, with a learned output scale, as in Glow):
    y = (conv(x, W) + b) exp(k l),  k = 3;   dl = k sum_{h,w,n} dy y,   d(conv) = exp(k l) dy
Split, x = (z1, z2) halves along channels; z2 leaves the flow under a learned prior:
    h = ZeroConv3x3(z1) (C channels),  mean = h[0::2],  log-scale = h[1::2]
    log_prior_n = log N(z2_n; mean, exp(log-scale)^2)    (ice.gaussian)

The layer classes own the parameters. Each invertible layer has
``forward(x) -> (y, log_det)``, ``inverse(y) -> x`` and
``backward(y, dy, dlog_det) -> (x, dx)``: backward gets the layer's output y
back and returns its input x along with dx, so a chain of them can be run
backwards without any stored activation. With ``keep_activations=False``
backward recomputes x = inverse(y) (and the coupling's NN activations from
y1 = x1) and the layer keeps no arrays between forward and backward; with
``keep_activations=True`` forward caches everything backward reads and y is
not used. Both give the same gradients up to the inverse's rounding: it
reproduces x to about 1e-15 relative in float64 and 1e-6 in float32 (measured
on a perturbed depth-2 net: 4e-15 and 2e-6; after float32 training, 7.8e-7),
so in float32 the two backwards differ by about that much.

Dropout in the coupling draws its mask on x's device from a seed
(nn.random.SeededUniform) that forward takes from the layer's host ``rng`` (a
numpy Generator); the inverting backward redraws the same mask from that
seed, so it undoes exactly the map forward applied.
``inverse`` is the inverse of the map without dropout (eval mode).
"""
from typing import NamedTuple

import numpy as np

from nn.backend import get_array_module
from nn.cpu.parallel import channel_dot, channel_sum, per_channel
from nn.dropout import draw_seed, dropout_backward, dropout_forward, keep_mask
from nn.fast.activations import relu_backward, relu_forward
from nn.fast.conv import conv2d_backward, conv2d_forward
from nn.init import default_rng, kaiming_normal
from nn.module import Module
from nn.random import SeededUniform

from .gaussian import gaussian_log_likelihood, gaussian_log_likelihood_backward

ACTNORM_EPS = 1e-6
ZERO_CONV_LOGSCALE = 3.0


def scale_rows(X, s):
    """s X for X (C, M) and s (C,): row c times s[c], block by block of rows."""
    xp = get_array_module(X)
    y = xp.empty_like(X)
    per_channel(lambda X, s, y: xp.multiply(X, s, out=y), X, s[:, None], y)
    return y


# ---- ActNorm -----------------------------------------------------------------------------

def actnorm_init(x, eps=ACTNORM_EPS):
    """(b, logs) (C,) from x (C, ..., N): b = -mean, logs = -log(std + eps) per channel."""
    xp = get_array_module(x)
    X = x.reshape(x.shape[0], -1)
    M = X.shape[1]
    mu = channel_sum(X) / M
    xc = xp.empty_like(X)
    per_channel(lambda X, mu, xc: xp.subtract(X, mu, out=xc), X, mu[:, None], xc)
    return -mu, -xp.log(xp.sqrt(channel_dot(xc, xc) / M) + eps)


def actnorm_apply(x, b, logs):
    """y = exp(logs) (x + b) per channel; x, y (C, ..., N), b, logs (C,)."""
    xp = get_array_module(x)
    X = x.reshape(x.shape[0], -1)
    s = xp.exp(logs)

    def shift_scale(X, b, s, y):                # (X + b) s
        xp.add(X, b, out=y)
        y *= s

    y = xp.empty_like(X)
    per_channel(shift_scale, X, b[:, None], s[:, None], y)
    return y.reshape(x.shape)


def actnorm_log_det(logs, x_shape):
    """log_det (N,) = H W sum(logs) for x of shape (C, H, W, N) (or (C, N): H W = 1)."""
    xp = get_array_module(logs)
    N = x_shape[-1]
    pixels = int(np.prod(x_shape[1:-1]))
    return xp.zeros(N, dtype=logs.dtype) + pixels * logs.sum()


def actnorm_forward(x, b, logs):
    """(y, log_det (N,)); see the module docstring."""
    return actnorm_apply(x, b, logs), actnorm_log_det(logs, x.shape)


def actnorm_inverse(y, b, logs):
    """x = y exp(-logs) - b per channel."""
    xp = get_array_module(y)
    Y = y.reshape(y.shape[0], -1)
    def scale_shift(Y, r, b, x):                # Y r - b
        xp.multiply(Y, r, out=x)
        x -= b

    x = xp.empty_like(Y)
    per_channel(scale_shift, Y, xp.exp(-logs)[:, None], b[:, None], x)
    return x.reshape(y.shape)


def actnorm_backward(dy, dlog_det, y, logs):
    """(dx, db, dlogs) from dy (C, ..., N), dlog_det (N,) or None (log-det unused), output y."""
    xp = get_array_module(dy)
    C = dy.shape[0]
    dY, Y = dy.reshape(C, -1), y.reshape(C, -1)
    s = xp.exp(logs)
    dx = scale_rows(dY, s).reshape(dy.shape)
    db = s * channel_sum(dY)
    dlogs = channel_dot(dY, Y)
    if dlog_det is not None:
        dlogs = dlogs + int(np.prod(dy.shape[1:-1])) * dlog_det.sum()
    return dx, db, dlogs


# ---- squeeze and channel reversal -----------------------------------------------------------

def squeeze(x):
    """(C, H, W, N) -> (4C, H/2, W/2, N): y[4c + 2u + v, i, j, n] = x[c, 2i + u, 2j + v, n]."""
    C, H, W, N = x.shape
    if H % 2 or W % 2:
        raise ValueError(f"squeeze needs even height and width, got {H}x{W}")
    y = x.reshape(C, H // 2, 2, W // 2, 2, N).transpose(0, 2, 4, 1, 3, 5)
    return y.reshape(4 * C, H // 2, W // 2, N)      # reshaping the transposed view copies


def unsqueeze(y):
    """(4C, H, W, N) -> (C, 2H, 2W, N), the inverse (and the transpose) of squeeze."""
    C4, H, W, N = y.shape
    if C4 % 4:
        raise ValueError(f"unsqueeze needs a multiple of 4 channels, got {C4}")
    x = y.reshape(C4 // 4, 2, 2, H, W, N).transpose(0, 3, 1, 4, 2, 5)
    return x.reshape(C4 // 4, 2 * H, 2 * W, N)


def reverse_channels(x):
    """y[c] = x[C - 1 - c]; its own inverse and transpose."""
    return x[::-1].copy()


# ---- zero-initialized convolution with an output scale ----------------------------------------

class ZeroConvCache(NamedTuple):
    conv: object        # nn.conv.ConvCache of the input
    y: object           # the output (O, H, W, N)
    logs: object        # (O,)


def zero_conv_forward(x, W, b, logs, k=ZERO_CONV_LOGSCALE):
    """y = (conv3x3(x, W) + b) exp(k logs), padding 1.

    x (C, H, W, N), W (O, C, 3, 3), b and logs (O,), y (O, H, W, N); returns (y, cache).
    """
    xp = get_array_module(x)
    pre, conv = conv2d_forward(x, W, b, padding=W.shape[-1] // 2)
    O = pre.shape[0]
    y = scale_rows(pre.reshape(O, -1), xp.exp(k * logs)).reshape(pre.shape)
    return y, ZeroConvCache(conv, y, logs)


def zero_conv_backward(dy, cache, k=ZERO_CONV_LOGSCALE):
    """(dx, dW, db, dlogs) from dy (O, H, W, N)."""
    xp = get_array_module(dy)
    O = dy.shape[0]
    dY = dy.reshape(O, -1)
    dlogs = k * channel_dot(dY, cache.y.reshape(O, -1))
    dpre = scale_rows(dY, xp.exp(k * cache.logs))
    dx, dW, db = conv2d_backward(dpre.reshape(dy.shape), cache.conv)
    return dx, dW, db, dlogs


# ---- additive coupling ------------------------------------------------------------------------

NN_PARAMS = ("W1", "an1_b", "an1_logs", "W2", "an2_b", "an2_logs", "W3", "b3", "logs3")


class CouplingCache(NamedTuple):
    conv1: object       # ConvCache of x1 (C1, H, W, N)
    a1: object          # ActNorm output after conv1 (F, H, W, N) (ReLU reads its sign)
    an1_logs: object    # (F,)
    conv2: object       # ConvCache of ReLU(a1)
    a2: object          # (F, H, W, N)
    an2_logs: object    # (F,)
    mask: object        # dropout mask (F, H, W, N), or None
    conv3: object       # ZeroConvCache of the dropped-out ReLU(a2)


def coupling_nn_forward(x1, p, mask=None, init=False):
    """NN(x1) (C2, H, W, N) of x1 (C1, H, W, N) with parameters ``p`` (keys NN_PARAMS); (h, cache).

    ``mask``: the dropout mask (F, H, W, N) or None. ``init=True`` first sets
    each ActNorm's b and logs in place from this batch (data-dependent init).
    """
    h1, conv1 = conv2d_forward(x1, p["W1"], None, padding=p["W1"].shape[-1] // 2)
    if init:
        p["an1_b"][...], p["an1_logs"][...] = actnorm_init(h1)
    a1 = actnorm_apply(h1, p["an1_b"], p["an1_logs"])
    r1, _ = relu_forward(a1)
    h2, conv2 = conv2d_forward(r1, p["W2"], None, padding=p["W2"].shape[-1] // 2)
    if init:
        p["an2_b"][...], p["an2_logs"][...] = actnorm_init(h2)
    a2 = actnorm_apply(h2, p["an2_b"], p["an2_logs"])
    r2, _ = relu_forward(a2)
    d, _ = dropout_forward(r2, mask)
    h, conv3 = zero_conv_forward(d, p["W3"], p["b3"], p["logs3"])
    return h, CouplingCache(conv1, a1, p["an1_logs"], conv2, a2, p["an2_logs"], mask, conv3)


def coupling_nn_backward(dh, cache):
    """(dx1, grads) from dh (C2, H, W, N); grads keyed like NN_PARAMS."""
    dd, dW3, db3, dlogs3 = zero_conv_backward(dh, cache.conv3)
    da2 = relu_backward(dropout_backward(dd, cache.mask), cache.a2)
    dh2, dan2_b, dan2_logs = actnorm_backward(da2, None, cache.a2, cache.an2_logs)
    dr1, dW2, _ = conv2d_backward(dh2, cache.conv2)
    da1 = relu_backward(dr1, cache.a1)
    dh1, dan1_b, dan1_logs = actnorm_backward(da1, None, cache.a1, cache.an1_logs)
    dx1, dW1, _ = conv2d_backward(dh1, cache.conv1)
    return dx1, dict(W1=dW1, an1_b=dan1_b, an1_logs=dan1_logs, W2=dW2, an2_b=dan2_b,
                     an2_logs=dan2_logs, W3=dW3, b3=db3, logs3=dlogs3)


def coupling_forward(x, p, mask=None, init=False):
    """y = (x1, x2 + NN(x1)) for x (C, H, W, N), x1 = x[:C // 2]; (y, cache of NN(x1))."""
    xp = get_array_module(x)
    C1 = x.shape[0] // 2
    h, cache = coupling_nn_forward(x[:C1], p, mask, init)
    return xp.concatenate([x[:C1], x[C1:] + h]), cache


def coupling_inverse(y, p, mask=None):
    """x = (y1, y2 - NN(y1)); (x, cache of NN(y1)), the cache that backward reads."""
    xp = get_array_module(y)
    C1 = y.shape[0] // 2
    h, cache = coupling_nn_forward(y[:C1], p, mask)
    return xp.concatenate([y[:C1], y[C1:] - h]), cache


def coupling_backward(dy, cache):
    """(dx, grads): dx = (dy1 + J_NN^T dy2, dy2); the log-det is 0, so it has no gradient."""
    xp = get_array_module(dy)
    C1 = cache.conv1.x_shape[0]
    dx1, grads = coupling_nn_backward(dy[C1:], cache)
    return xp.concatenate([dy[:C1] + dx1, dy[C1:]]), grads


# ---- split with its learned prior -------------------------------------------------------------

class SplitCache(NamedTuple):
    conv: object        # ZeroConvCache of z1
    z2: object          # (C/2, H, W, N)
    mean: object        # (C/2, H, W, N), a view of the prior conv's output
    logs: object        # (C/2, H, W, N)


def split_forward(x, W, b, logs):
    """(z1, z2, log_prior (N,), cache) for x (C, H, W, N), C even.

    W (C, C/2, 3, 3), b and logs (C,): the prior's ZeroConv; z1, z2 (C/2, H, W, N).
    """
    C = x.shape[0]
    if C % 2:
        raise ValueError(f"split needs an even number of channels, got {C}")
    z1, z2 = x[:C // 2], x[C // 2:]
    h, conv = zero_conv_forward(z1, W, b, logs)
    mean, log_scale = h[0::2], h[1::2]
    return z1, z2, gaussian_log_likelihood(z2, mean, log_scale), SplitCache(conv, z2, mean,
                                                                              log_scale)


def split_backward(dz1, dz2, dlog_prior, cache):
    """(dx, dW, db, dlogs) from dz1, dz2 (C/2, H, W, N) (dz2 None: z2 used nowhere else)."""
    xp = get_array_module(dz1)
    dz2_prior, dmean, dlog_scale = gaussian_log_likelihood_backward(
        dlog_prior, cache.z2, cache.mean, cache.logs)
    dh = xp.empty(cache.conv.y.shape, dtype=dz1.dtype)
    dh[0::2], dh[1::2] = dmean, dlog_scale
    dz1_prior, dW, db, dlogs = zero_conv_backward(dh, cache.conv)
    dz2 = dz2_prior if dz2 is None else dz2 + dz2_prior
    return xp.concatenate([dz1 + dz1_prior, dz2]), dW, db, dlogs


# ---- layers -----------------------------------------------------------------------------------

class Invertible(Module):
    """The protocol of the flow's layers, not nn's Layer: forward(x) -> (y, log_det),
    inverse(y) -> x, backward(y, dy, dlog_det) -> (x, dx) (module docstring)."""

    def __init__(self, keep_activations=False):
        super().__init__()
        self.keep_activations = keep_activations
        self._kept = None       # keep_activations: what backward reads, else None

    def _keep(self, value):
        self._kept = value if self.keep_activations else None

    def _take(self):
        kept, self._kept = self._kept, None
        return kept


class ActNorm(Invertible):
    """Per-channel affine y = exp(logs) (x + b), initialized from its first batch."""

    def __init__(self, num_channels, dtype=np.float32, keep_activations=False):
        super().__init__(keep_activations)
        self.params["b"] = np.zeros(num_channels, dtype=dtype)
        self.params["logs"] = np.zeros(num_channels, dtype=dtype)
        self._zero_grads()
        self.initialized = False    # set on the first forward (or by hand after loading)

    def forward(self, x):
        if not self.initialized:
            self.params["b"][...], self.params["logs"][...] = actnorm_init(x)
            self.initialized = True
        y, log_det = actnorm_forward(x, self.params["b"], self.params["logs"])
        self._keep((x, y))
        return y, log_det

    def inverse(self, y):
        return actnorm_inverse(y, self.params["b"], self.params["logs"])

    def backward(self, y, dy, dlog_det):
        kept = self._take()
        x, y = kept if kept is not None else (self.inverse(y), y)
        dx, db, dlogs = actnorm_backward(dy, dlog_det, y, self.params["logs"])
        self._set_grads(b=db, logs=dlogs)
        return x, dx


class _Rearrangement(Invertible):
    """A layer that only moves values: y = move(x), log-det 0, dx = move_back(dy).

    Subclasses set ``move`` and its inverse ``move_back``.
    """

    def forward(self, x):
        self._keep(x)
        return self.move(x), get_array_module(x).zeros(x.shape[-1], dtype=x.dtype)

    def inverse(self, y):
        return self.move_back(y)

    def backward(self, y, dy, dlog_det):
        x = self._take()
        return (self.move_back(y) if x is None else x), self.move_back(dy)


class Squeeze(_Rearrangement):
    """2x2 space to depth, (C, H, W, N) -> (4C, H/2, W/2, N)."""
    move, move_back = staticmethod(squeeze), staticmethod(unsqueeze)


class Reverse(_Rearrangement):
    """Channel reversal (its own inverse)."""
    move = move_back = staticmethod(reverse_channels)


class AdditiveCoupling(Invertible):
    """y = (x1, x2 + NN(x1)) on C channels; NN of width ``hidden`` with dropout ``p``.

    The first forward initializes the NN's two ActNorms from its batch. ``rng``
    (numpy Generator) draws the weights of the two hidden convolutions (He
    normal for ReLU) and each forward's dropout seed; ``uniform`` (a
    SeededUniform, which the couplings of a net share) draws the masks. The
    last convolution starts at zero, so the coupling starts as the identity.
    """

    def __init__(self, num_channels, hidden=128, p=0.1, rng=None, dtype=np.float32,
                 keep_activations=False, uniform=None):
        super().__init__(keep_activations)
        C1, C2 = num_channels // 2, num_channels - num_channels // 2
        self.p, self.rng = p, default_rng(rng)
        self.uniform = uniform or SeededUniform()
        P = self.params
        P["W1"] = kaiming_normal((hidden, C1, 3, 3), C1 * 9, self.rng, 0.0, dtype)
        P["an1_b"], P["an1_logs"] = np.zeros(hidden, dtype), np.zeros(hidden, dtype)
        P["W2"] = kaiming_normal((hidden, hidden, 1, 1), hidden, self.rng, 0.0, dtype)
        P["an2_b"], P["an2_logs"] = np.zeros(hidden, dtype), np.zeros(hidden, dtype)
        P["W3"] = np.zeros((C2, hidden, 3, 3), dtype)
        P["b3"], P["logs3"] = np.zeros(C2, dtype), np.zeros(C2, dtype)
        self._zero_grads()
        self.initialized = False
        self._seed = None           # the dropout seed of the last training forward

    def _mask(self, x, draw):
        """The dropout mask (F, H, W, N) for x: from a new seed (``draw``) or the last one."""
        if not (self.training and self.p > 0):
            return None
        if draw:
            self._seed = draw_seed(self.rng)
        shape = (self.params["W1"].shape[0],) + x.shape[1:]
        return keep_mask(self.uniform(self._seed, shape, get_array_module(x), x.dtype), self.p)

    def forward(self, x):
        y, cache = coupling_forward(x, self.params, self._mask(x, draw=True),
                                    init=not self.initialized)
        self.initialized = True
        self._keep((x, cache))
        return y, get_array_module(x).zeros(x.shape[-1], dtype=x.dtype)

    def inverse(self, y):
        return coupling_inverse(y, self.params)[0]

    def backward(self, y, dy, dlog_det):
        kept = self._take()
        x, cache = kept if kept is not None else coupling_inverse(
            y, self.params, self._mask(y, draw=False))
        dx, grads = coupling_backward(dy, cache)
        self._set_grads(**grads)
        return x, dx


class Split(Module):
    """Half the channels, z2, leave under a Gaussian predicted from the other half z1.

    forward(x) -> (z1, z2, log_prior (N,)); inverse(z1, z2) -> x;
    backward(z1, z2, dz1, dz2, dlog_prior) -> (x, dx). The prior's ZeroConv
    (C/2 -> C channels) starts at zero: a standard normal prior.
    """

    def __init__(self, num_channels, dtype=np.float32, keep_activations=False):
        super().__init__()
        self.keep_activations = keep_activations
        self.params["W"] = np.zeros((num_channels, num_channels // 2, 3, 3), dtype)
        self.params["b"] = np.zeros(num_channels, dtype)
        self.params["logs"] = np.zeros(num_channels, dtype)
        self._zero_grads()
        self._cache = None

    def forward(self, x):
        z1, z2, log_prior, cache = split_forward(x, self.params["W"], self.params["b"],
                                                 self.params["logs"])
        self._cache = (x, cache) if self.keep_activations else None
        return z1, z2, log_prior

    def inverse(self, z1, z2):
        return get_array_module(z1).concatenate([z1, z2])

    def backward(self, z1, z2, dz1, dz2, dlog_prior):
        kept, self._cache = self._cache, None
        if kept is None:
            x = self.inverse(z1, z2)
            kept = x, split_forward(x, self.params["W"], self.params["b"], self.params["logs"])[3]
        x, cache = kept
        dx, dW, db, dlogs = split_backward(dz1, dz2, dlog_prior, cache)
        self._set_grads(W=dW, b=db, logs=dlogs)
        return x, dx
