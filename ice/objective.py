"""iCE fi-RevNet (Jacobsen, Behrmann, Zemel, Bethge, ICLR 2019): the model and its objective.

Inputs, uint8 images I (N, 3, H, W) -> x (3, H, W, N), batch last:
    v = (I + u) / 256,  u ~ U[0, 1) per value (dequantization; eval: u = 1/2),
    x = 2 v - 1 in [-1, 1)
so log p(v) = log p_flow(x) + D log 2 (D = 3 H W values), and the NLL in bits
per dimension of the 8-bit data is ice.gaussian.bits_per_dim(log p(v), D, 256).

Encoder f = ice.firevnet.FiRevNet (L levels; on 3x32x32 and L = 3:
z (48, 4, 4, N), split-off halves zs = [(6, 16, 16, N), (12, 8, 8, N)]).
    z_s = z[0:10, H_L/2, W_L/2]   (10, N): ten channels at one position,
                                   (2, 2) on 4x4 as in the authors' code
    logits = BN(z_s)               (nn.BatchNorm1d, momentum 0.9 as theirs)
    z_n = [vec(z) with z_s set to 0.1; vec(zs_1); vec(zs_2)]    (D, N), D = 3072:
          every latent value, the ten logit entries replaced by the constant
          0.1 (as the authors: they carry no gradient and no information)
Nuisance classifier D_nc: Linear(D, 512) ReLU Dropout(0.1) Linear(512, 512)
ReLU Dropout(0.1) Linear(512, 10), PyTorch's default init U(+-1/sqrt(fan_in)).

One training step (the authors' order):
    1. forward f; 2. D_nc takes ``inner_steps`` Adamax steps on CE(D_nc(z_n), y)
    with z_n held fixed (detached); 3. with the updated D_nc, the encoder and BN
    take one step on
        L = bpd(x) + CE(logits, y) - beta * CE(D_nc(z_n), y_enc)
    y_enc = y (the paper's text) or a random permutation of y within the batch
    (the authors' code). dL/dz_n comes through D_nc; its parameters stay.
"""
from typing import NamedTuple

import numpy as np

from nn import BatchNorm1d, LeakyReLU, Linear, Sequential, softmax_cross_entropy
from nn.backend import get_array_module
from nn.dropout import Dropout
from nn.init import fan_in_uniform_
from nn.layout import from_nchw
from nn.module import Container
from nn.random import SeededUniform

from .firevnet import FiRevNet
from .gaussian import bits_per_dim

NUM_CLASSES = 10
NUISANCE_FILL = 0.1       # what z_n holds in place of the logit entries
N_BINS = 256


def dequantize(images, noise):
    """x = 2 (I + u) / 256 - 1, float32 (C, H, W, N), from uint8 images (N, C, H, W).

    ``noise`` u: an array (C, H, W, N) of U[0, 1) draws, or a number (0.5 in eval).
    """
    x = from_nchw(images, np.float32)
    x += noise
    x *= np.float32(2 / N_BINS)
    x -= np.float32(1)
    return x


def input_log_det(D):
    """log |dx/dv| = D log 2 of x = 2 v - 1 per image; log p(v) = log p_flow(x) + this."""
    return D * float(np.log(2))


def logit_view(z):
    """z_s: z[0:10, H/2, W/2] (10, N), a view into z (C, H, W, N)."""
    return z[:NUM_CLASSES, z.shape[1] // 2, z.shape[2] // 2]


def nuisance(z, zs):
    """z_n (D, N): vec(z) with the logit entries set to 0.1, then each vec(zs_l)."""
    xp = get_array_module(z)
    N = z.shape[-1]
    z_n = xp.concatenate([z.reshape(-1, N)] + [h.reshape(-1, N) for h in zs])
    logit_view(z_n[:z.size // N].reshape(z.shape))[...] = NUISANCE_FILL
    return z_n


def nuisance_backward(dz_n, dz_s, z, zs):
    """(dz, dzs) from dz_n (D, N) and dz_s (10, N): the logit entries get dz_s alone."""
    N = z.shape[-1]
    sizes = np.cumsum([z.size // N] + [h.size // N for h in zs])
    dz = dz_n[:sizes[0]].reshape(z.shape).copy()
    logit_view(dz)[...] = dz_s
    dzs = [dz_n[a:b].reshape(h.shape) for a, b, h in zip(sizes[:-1], sizes[1:], zs)]
    return dz, dzs


class IceModel(Container):
    """The encoder: FiRevNet (``levels`` levels of ``depth`` steps) and BN of the logits.

    ``forward(x)`` returns logits (10, N) and keeps the FlowOutput in ``out`` and
    z_n (D, N) in ``nuisance_input``; ``backward(dlogits, dz_n, dlogp)`` returns dL/dx.
    """

    def __init__(self, in_channels=3, levels=3, depth=16, hidden=128, p=0.1, rng=None,
                 dtype=np.float32, keep_activations=False):
        self.flow = FiRevNet(in_channels, levels, depth, hidden, p, rng, dtype, keep_activations)
        if self.flow.out_channels < NUM_CLASSES:
            raise ValueError(f"the last level has {self.flow.out_channels} channels, fewer "
                             f"than the {NUM_CLASSES} logits")
        self.bn = BatchNorm1d(NUM_CLASSES, momentum=0.9, dtype=dtype)
        super().__init__([("flow", self.flow), ("bn", self.bn)])
        self.out, self.nuisance_input = None, None

    def initialize(self, x):
        self.flow.initialize(x)

    def mark_initialized(self):
        self.flow.mark_initialized()

    def forward(self, x):
        self.out = self.flow.forward(x)
        self.nuisance_input = nuisance(self.out.z, self.out.zs)
        return self.bn.forward(logit_view(self.out.z))

    def backward(self, dlogits, dz_n, dlogp):
        out, self.out, self.nuisance_input = self.out, None, None
        dz, dzs = nuisance_backward(dz_n, self.bn.backward(dlogits), out.z, out.zs)
        return self.flow.backward(dz, dzs, dlogp)


class NuisanceClassifier(Sequential):
    """D_nc (module docstring): (D, N) -> logits (10, N).

    ``set_dropout_rng(rng)`` makes both dropouts take the seeds of their masks
    from the numpy Generator ``rng``; the masks are drawn on the device, by
    one SeededUniform the two share.
    """

    def __init__(self, in_features, hidden=512, p=0.1, rng=None, dtype=np.float32):
        uniform = SeededUniform()
        layers = []
        for n_in, n_out in ((in_features, hidden), (hidden, hidden)):
            layers += [Linear(n_in, n_out, rng=rng, dtype=dtype), LeakyReLU(0.0),
                       Dropout(p, uniform=uniform)]
        layers.append(Linear(hidden, NUM_CLASSES, rng=rng, dtype=dtype))
        super().__init__(*layers)
        fan_in_uniform_(self.params, rng)
        self.dropouts = [layer for layer in layers if isinstance(layer, Dropout)]

    def set_dropout_rng(self, rng):
        for layer in self.dropouts:
            layer.rng = rng


def fit_nuisance(critic, optimizer, z_n, y, steps):
    """``steps`` optimizer steps of D_nc on CE(D_nc(z_n), y), z_n (D, N) fixed; the last CE."""
    loss = None
    for _ in range(steps):
        loss, dlogits = softmax_cross_entropy(critic.forward(z_n), y)
        critic.backward(dlogits)
        optimizer.step(critic.grads)
    return loss


class IceTerms(NamedTuple):
    loss: object            # L, 0-d
    bpd: object             # NLL of the 8-bit data in bits per dimension, 0-d
    ce_logits: object       # CE(BN(z_s), y)
    ce_nuisance: object     # CE(D_nc(z_n), y_enc)


def ice_objective(model, critic, logits, y, y_enc, beta, x_log_det):
    """(IceTerms, upstream) of L after ``logits = model.forward(x)``.

    upstream = (dL/dlogits (10, N), dL/dD_nc-logits (10, N), dL/dlog p (N,)) for
    ``ice_backward``. D_nc runs forward in its current mode (dropout as drawn).
    """
    out = model.out
    D = out.z.size // out.z.shape[-1] + sum(h.size // h.shape[-1] for h in out.zs)
    bpd, dlogp = bits_per_dim(out.log_likelihood + x_log_det, D, N_BINS)
    ce_s, dlogits = softmax_cross_entropy(logits, y)
    ce_n, dcritic = softmax_cross_entropy(critic.forward(model.nuisance_input), y_enc)
    return IceTerms(bpd + ce_s - beta * ce_n, bpd, ce_s, ce_n), (dlogits, -beta * dcritic, dlogp)


def ice_backward(model, critic, upstream):
    """dL/dx; fills the model's grads (and overwrites D_nc's, which its own steps ignore)."""
    dlogits, dcritic, dlogp = upstream
    return model.backward(dlogits, critic.backward(dcritic), dlogp)
