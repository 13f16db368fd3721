"""Batch normalization per channel, the channel axis first.

x is (C, H, W, N) (maps) or (C, N) (features); X = x.reshape(C, M) holds the
M = H*W*N (or N) values of each channel in its row. With mu, sigma^2 the
batch mean and biased variance of a row, xc = X - mu, s = 1 / sqrt(sigma^2 + eps):

Forward (train):  y = gamma s xc + beta                             (x_hat = s xc)
Running stats:    r_mu  <- r_mu  + m (mu - r_mu)
                  r_var <- r_var + m (sigma^2 M / (M - 1) - r_var)    (unbiased)
Forward (eval):   y = a X + (beta - a r_mu),  a = gamma / sqrt(r_var + eps)
Backward (train): dbeta = sum dy,  dgamma = s sum dy xc,
                  dx = gamma s (dy - dbeta / M) - xc gamma s^2 dgamma / M
Backward (eval):  dbeta, dgamma as above with xc = X - r_mu;  dx = a dy

Channels are independent, so each direction is one function of a block of
rows (``per_channel``: the whole array on CuPy, blocks of channels on the
CPU's cores, each block staying in cache while its formula makes its passes).
The training cache holds xc and s rather than x_hat = s xc.
"""
from typing import NamedTuple

from .backend import get_array_module
from .cpu.parallel import per_channel


class BatchNormCache(NamedTuple):
    data: object        # xc = X - mu (train) or X itself (eval), (C, M)
    mean: object        # r_mu (eval; None in training), (C, 1)
    inv_std: object     # s, (C,)
    gamma: object       # (C,)
    shape: tuple        # x's shape
    train: bool         # batch statistics (True) or running statistics (False)


def _normalize(X, gamma, beta, eps, out=None):
    """(y, xc, stats) of the rows of X (C, M); stats = [mu, sigma^2, s] (C, 3), gamma, beta
    (C, 1)."""
    xp = get_array_module(X)
    y, xc, stats = out or (None, None, xp.empty((X.shape[0], 3), dtype=X.dtype))
    mu, var, s = stats[:, 0:1], stats[:, 1:2], stats[:, 2:3]
    X.mean(axis=1, keepdims=True, out=mu)
    xc = xp.subtract(X, mu, out=xc)
    (xc * xc).mean(axis=1, keepdims=True, out=var)
    xp.power(var + eps, -0.5, out=s)
    y = xp.multiply(xc, gamma * s, out=y)
    y += beta
    return y, xc, stats


def _affine(X, a, c, out=None):
    """y = a X + c."""
    y = get_array_module(X).multiply(X, a, out=out)
    y += c
    return y


def _gradients(dY, xc, g, s, train, out=None):
    """(dx, dbeta, dgamma) of the rows, dbeta and dgamma (C, 1); g = gamma s and s (C, 1)."""
    xp = get_array_module(dY)
    dx, dbeta, dgamma = out or (None, None, None)
    dbeta = dY.sum(axis=1, keepdims=True, out=dbeta)
    dgamma = (dY * xc).sum(axis=1, keepdims=True, out=dgamma)
    dgamma *= s
    dx = xp.multiply(dY, g, out=dx)
    if train:
        g_M = g / dY.shape[1]
        dx -= g_M * dbeta
        dx -= xc * (g_M * s * dgamma)
    return dx, dbeta, dgamma


def _centred_gradients(dY, X, mu, g, s, out=None):
    """``_gradients`` in eval mode, forming xc = X - r_mu block by block."""
    return _gradients(dY, X - mu, g, s, False, out)


def batchnorm_forward(x, gamma, beta, running_mean, running_var, train,
                      momentum=0.1, eps=1e-5):
    """Returns (y, cache); in training mode updates running_mean/var in place."""
    xp = get_array_module(x)
    C = x.shape[0]
    X = x.reshape(C, -1)
    M = X.shape[1]
    if train and M < 2:
        raise ValueError("batch norm in training mode needs more than one value per channel")
    if train:
        y, xc, stats = per_channel(_normalize, X, gamma[:, None], beta[:, None], eps,
                                   shape=(X.shape, X.shape, (C, 3)))
        mu, var, s = stats[:, 0], stats[:, 1], stats[:, 2]
        running_mean += momentum * (mu - running_mean)
        running_var += momentum * (var * (M / (M - 1)) - running_var)
        cache = BatchNormCache(xc, None, s, gamma, x.shape, True)
    else:
        mu, var = (r.astype(x.dtype, copy=False) for r in (running_mean, running_var))
        s = 1 / xp.sqrt(var + eps)
        a = gamma * s
        y = per_channel(_affine, X, a[:, None], (beta - mu * a)[:, None])
        cache = BatchNormCache(X, mu[:, None], s, gamma, x.shape, False)
    return y.reshape(x.shape), cache


def batchnorm_backward(dy, cache, out=(None, None)):
    """Returns (dx, dgamma, dbeta); dgamma, dbeta go into ``out`` = (dgamma, dbeta) when
    given. See the module docstring."""
    data, s, gamma = cache.data, cache.inv_std, cache.gamma
    C, M = data.shape
    dY = dy.reshape(C, M)
    g, s = (gamma * s)[:, None], s[:, None]
    dgamma, dbeta = (None if a is None else a.reshape(C, 1) for a in out)
    shapes = ((C, M), (C, 1), (C, 1))
    if cache.train:
        dx, dbeta, dgamma = per_channel(_gradients, dY, data, g, s, True, shape=shapes,
                                        dtype=dy.dtype, out=(None, dbeta, dgamma))
    else:
        dx, dbeta, dgamma = per_channel(_centred_gradients, dY, data, cache.mean, g, s,
                                        shape=shapes, dtype=dy.dtype, out=(None, dbeta, dgamma))
    return dx.reshape(cache.shape), dgamma.reshape(C), dbeta.reshape(C)
