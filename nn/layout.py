"""The activation layout of the library: batch last, and the shape says so.

Feature maps are (C, H, W, N), features and logits (F, N), always
C-contiguous: the shape is the memory order. This is the layout of
Krizhevsky's cuda-convnet (``images: (numColors, imgSizeY, imgSizeX,
numImages)``; pylearn2's "c01b"), chosen for the same reason: im2col reads
runs of W*N contiguous values, the GEMM's output (O, Ho*Wo*N) is the next
map itself, and per-channel statistics are reductions over contiguous rows.
Images arrive as (N, C, H, W); a network converts them once, at its entry.
"""
from .backend import get_array_module


def from_nchw(images, dtype=None):
    """images (N, C, H, W) as a new C-contiguous (C, H, W, N) array (of ``dtype``)."""
    xp = get_array_module(images)
    N, C, H, W = images.shape
    x = xp.empty((C, H, W, N), dtype=images.dtype if dtype is None else dtype)
    x[...] = images.transpose(1, 2, 3, 0)
    return x


def to_nchw(x):
    """x (C, H, W, N) as a new C-contiguous (N, C, H, W) array (to compare with NCHW code)."""
    xp = get_array_module(x)
    return xp.ascontiguousarray(x.transpose(3, 0, 1, 2))
