"""Inverted dropout, elementwise (any shape, e.g. maps (C, H, W, N)).

With drop probability p and u ~ U[0, 1) drawn per element:
Mask:      m = [u >= p] / (1 - p)          (kept with probability 1 - p; E[m] = 1)
Forward:   y = m x          (train);       y = x      (eval, and p = 0)
Backward:  dx = m dy        (train);       dx = dy    (eval)

The mask is kept in the dtype of x, already scaled, so forward and backward
are one product each. The uniforms come from ``rng``:
- a ``numpy.random.Generator``: drawn on the host and copied to x's device
  (reproducible on both backends from one seed);
- an array module's random state (``np.random.RandomState(s)``,
  ``cupy.random.RandomState(s)``): drawn where that state lives, on the device
  for CuPy;
- None: x's array module's global random state (``xp.random``), on the device
  for CuPy.
"""
import numpy as np

from .backend import get_array_module
from .module import Module


def uniform(shape, rng, xp):
    """U[0, 1) float64 draws of ``shape`` as an xp array; ``rng`` as in the module docstring."""
    if isinstance(rng, np.random.Generator):
        return xp.asarray(rng.random(shape))
    return (xp.random if rng is None else rng).random_sample(shape)


def keep_mask(shape, p, rng=None, xp=np, dtype=np.float64):
    """m = [u >= p] / (1 - p), shape ``shape``, dtype ``dtype``, on xp."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout probability must lie in [0, 1), got {p}")
    scale = np.dtype(dtype).type(1 / (1 - p))
    return (uniform(shape, rng, xp) >= p).astype(dtype) * scale


def dropout_forward(x, mask):
    """y = m x; returns (y, cache) with cache = m (None: identity, as in eval)."""
    return (x if mask is None else x * mask), mask


def dropout_backward(dy, mask):
    """dx = m dy (dy itself where mask is None)."""
    return dy if mask is None else dy * mask


class Dropout(Module):
    """Dropout with probability p in training mode, the identity in eval mode.

    ``rng``: where each forward draws its mask (module docstring); None draws
    from the array module of x.
    """

    def __init__(self, p=0.1, rng=None):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must lie in [0, 1), got {p}")
        self.p, self.rng = p, rng
        self._mask = None

    def forward(self, x):
        mask = None
        if self.training and self.p > 0:
            mask = keep_mask(x.shape, self.p, self.rng, get_array_module(x), x.dtype.type)
        y, self._mask = dropout_forward(x, mask)
        return y

    def backward(self, dy):
        return dropout_backward(dy, self._mask)
