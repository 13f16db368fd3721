"""The multi-scale fully invertible RevNet of iCE (Jacobsen et al., ICLR 2019, Sec. 4).

Glow's architecture (Kingma & Dhariwal 2018) with additive coupling and
channel reversal, on images x (C, H, W, N), batch last. Level l = 1..L:
    squeeze -> K flow steps -> split (every level but the last)
A flow step (ice.flow): ActNorm -> channel reversal -> additive coupling.

Outputs: z (C_L, H_L, W_L, N), the last level's maps, under N(0, I); zs, the
halves z2 the splits took out, first split first; per image (N,)
    log_det   = sum of the ActNorm log-dets (the other ops preserve volume)
    log_prior = sum of the splits' learned-prior log-likelihoods + log N(z; 0, I)
    log p(x)  = log_det + log_prior      (ice.gaussian.bits_per_dim turns it into bits/dim)
backward(dz, dzs, dlogp) takes dL/dz and dL/dzs from whatever else reads the
latents (the iCE classifiers; None where nothing does) and dlogp = dL/dlog p
(N,), and returns dL/dx. Every layer gets dlogp for its log-det or prior, and
    dz <- dz - dlogp z      (the standard normal prior on z)
then the layers run backwards, each handing its input to the layer before it
(ice.flow.Invertible). With ``keep_activations=False`` each layer recomputes its
input from its output by inversion, and the net keeps only references to its
own outputs z and zs between forward and backward.
"""
from typing import List, NamedTuple

import numpy as np

from nn.backend import get_array_module
from nn.init import default_rng
from nn.module import Container
from nn.random import SeededUniform

from .flow import ActNorm, AdditiveCoupling, Reverse, Split, Squeeze
from .gaussian import standard_normal_log_likelihood, standard_normal_log_likelihood_backward


class FlowOutput(NamedTuple):
    z: object               # (C_L, H_L, W_L, N)
    zs: List[object]        # the split-off halves (C_l / 2, H_l, W_l, N), l = 1..L-1
    log_det: object         # (N,)
    log_prior: object       # (N,)

    @property
    def log_likelihood(self):
        """log p(x) (N,) = log_det + log_prior."""
        return self.log_det + self.log_prior


class FlowStep(Container):
    """ActNorm -> channel reversal -> additive coupling on C channels (ice.flow.Invertible)."""

    def __init__(self, num_channels, hidden=128, p=0.1, rng=None, dtype=np.float32,
                 keep_activations=False, uniform=None):
        self.layers = [ActNorm(num_channels, dtype, keep_activations),
                       Reverse(keep_activations),
                       AdditiveCoupling(num_channels, hidden, p, rng, dtype, keep_activations,
                                        uniform)]
        super().__init__(zip(("actnorm", "reverse", "coupling"), self.layers))

    def forward(self, x):
        """(y, log_det (N,))."""
        log_det = 0
        for layer in self.layers:
            x, ld = layer.forward(x)
            log_det = log_det + ld
        return x, log_det

    def inverse(self, y):
        for layer in reversed(self.layers):
            y = layer.inverse(y)
        return y

    def backward(self, y, dy, dlog_det):
        """(x, dx) from the step's output y, dy and dlog_det (N,)."""
        for layer in reversed(self.layers):
            y, dy = layer.backward(y, dy, dlog_det)
        return y, dy


class FiRevNet(Container):
    """``levels`` levels of ``depth`` flow steps each on ``in_channels``-channel images.

    ``hidden``: the width of the couplings' NN (128 in the paper); ``p``:
    their dropout; ``rng``: one numpy Generator for all initial weights and
    dropout seeds; the couplings draw their masks with one shared
    SeededUniform. Height and width must be divisible by 2^levels.
    """

    def __init__(self, in_channels, levels=3, depth=16, hidden=128, p=0.1, rng=None,
                 dtype=np.float32, keep_activations=False):
        rng = default_rng(rng)
        uniform = SeededUniform()
        self.layers = []
        C = in_channels
        for level in range(levels):
            C *= 4
            self.layers.append(Squeeze(keep_activations))
            self.layers += [FlowStep(C, hidden, p, rng, dtype, keep_activations, uniform)
                            for _ in range(depth)]
            if level < levels - 1:
                self.layers.append(Split(C, dtype, keep_activations))
                C //= 2
        super().__init__((str(i), layer) for i, layer in enumerate(self.layers))
        self.out_channels = C
        self._outputs = None        # (z, zs) of the last forward, for backward

    def _initializable(self):
        for layer in self.layers:
            for part in getattr(layer, "layers", [layer]):
                if hasattr(part, "initialized"):
                    yield part

    def initialize(self, x):
        """Data-dependent ActNorm initialization from the batch x, dropout off."""
        training = self.training
        self.eval()
        self.forward(x)
        self._outputs = None
        self.train(training)

    def set_dropout_rng(self, rng):
        """Make every coupling draw its dropout seeds from ``rng`` (one numpy Generator)."""
        for part in self._initializable():
            if isinstance(part, AdditiveCoupling):
                part.rng = rng

    def mark_initialized(self):
        """Skip the data-dependent initialization (parameters loaded from a checkpoint)."""
        for part in self._initializable():
            part.initialized = True

    def forward(self, x):
        """FlowOutput(z, zs, log_det, log_prior) of images x (C, H, W, N)."""
        xp = get_array_module(x)
        zs = []
        log_det = xp.zeros(x.shape[-1], dtype=x.dtype)
        log_prior = xp.zeros(x.shape[-1], dtype=x.dtype)
        for layer in self.layers:
            if isinstance(layer, Split):
                x, z2, lp = layer.forward(x)
                zs.append(z2)
                log_prior += lp
            else:
                x, ld = layer.forward(x)
                log_det += ld
        log_prior += standard_normal_log_likelihood(x)
        self._outputs = (x, zs)
        return FlowOutput(x, zs, log_det, log_prior)

    def inverse(self, z, zs):
        """The images x (C, H, W, N) of the latents z and zs (dropout off)."""
        k = len(zs)
        for layer in reversed(self.layers):
            if isinstance(layer, Split):
                k -= 1
                z = layer.inverse(z, zs[k])
            else:
                z = layer.inverse(z)
        return z

    def backward(self, dz, dzs, dlogp):
        """dL/dx (C, H, W, N); fills grads. See the module docstring."""
        z, zs = self._outputs
        self._outputs = None
        dy = standard_normal_log_likelihood_backward(dlogp, z)
        if dz is not None:
            dy = dy + dz
        y, k = z, len(zs)
        for layer in reversed(self.layers):
            if isinstance(layer, Split):
                k -= 1
                y, dy = layer.backward(y, zs[k], dy, None if dzs is None else dzs[k], dlogp)
            else:
                y, dy = layer.backward(y, dy, dlogp)
        return dy
