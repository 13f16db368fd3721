"""Inverted dropout, elementwise (any shape, e.g. maps (C, H, W, N)).

With drop probability p and u ~ U[0, 1) drawn per element:
Mask:      m = [u >= p] / (1 - p)          (kept with probability 1 - p; E[m] = 1)
Forward:   y = m x          (train);       y = x      (eval, and p = 0)
Backward:  dx = m dy        (train);       dx = dy    (eval)

The mask is kept in the dtype of x, already scaled, so forward and backward
are one product each. The uniforms are drawn on x's device from a seed
(nn.random.SeededUniform); each training forward of ``Dropout`` takes a new
seed from its host generator ``rng``, so the masks follow from that
generator alone.
"""
from .backend import get_array_module
from .init import default_rng
from .module import Layer
from .random import SeededUniform


def check_probability(p):
    if not 0 <= p < 1:
        raise ValueError(f"dropout probability must lie in [0, 1), got {p}")


def keep_mask(u, p):
    """m = [u >= p] / (1 - p) in u's dtype, from uniforms u ~ U[0, 1) (any shape)."""
    check_probability(p)
    return (u >= p) * u.dtype.type(1 / (1 - p))


def dropout_forward(x, mask):
    """y = m x; returns (y, cache) with cache = m (None: identity, as in eval)."""
    return (x if mask is None else x * mask), mask


def dropout_backward(dy, mask):
    """dx = m dy (dy itself where mask is None)."""
    return dy if mask is None else dy * mask


def draw_seed(rng):
    """A seed for one draw, from the host generator ``rng``."""
    return int(rng.integers(2 ** 32))


class Dropout(Layer):
    """Dropout with probability p in training mode, the identity in eval mode.

    ``rng``: the numpy Generator each training forward takes its mask's seed
    from (replace it to tie the masks to a training step); ``uniform``: the
    SeededUniform that draws them on x's device (layers may share one).
    """

    def __init__(self, p=0.1, rng=None, uniform=None):
        super().__init__()
        check_probability(p)
        self.p, self.rng = p, default_rng(rng)
        self.uniform = uniform or SeededUniform()
        self._mask = None

    def forward(self, x):
        mask = None
        if self.training and self.p > 0:
            u = self.uniform(draw_seed(self.rng), x.shape, get_array_module(x), x.dtype)
            mask = keep_mask(u, self.p)
        y, self._mask = dropout_forward(x, mask)
        return y

    def backward(self, dy):
        return dropout_backward(dy, self._mask)
