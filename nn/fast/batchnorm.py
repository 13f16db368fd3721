"""Batch normalization (the formula: nn/batchnorm.py), block by block of channels.

Channels are independent, so each direction is one function of a block of
rows, run by ``per_channel`` (the whole array on CuPy, blocks of channels on
the CPU's cores, each block staying in cache while the function makes its
passes over it). The functions write their results into the blocks they are
given. With X (C, M), xc = X - mu and s, gamma_s = gamma s (C, 1) per block:

    train forward:  mu, sigma^2, s as the formula; y = (gamma s) xc + beta
    eval forward:   y = a X + (beta - a r_mu),  a = gamma / sqrt(r_var + eps)
    train backward: dbeta = sum dy, dgamma = s sum dy xc,
                    dx = gamma_s dy - (gamma_s / M) dbeta - xc (gamma_s / M) s dgamma
    eval backward:  dbeta, dgamma as above with xc = X - r_mu; dx = gamma_s dy

which is the formula's dx = gamma s (dy - dbeta / M - x_hat dgamma / M) with
x_hat = s xc. The cache keeps xc and s rather than x_hat (one pass fewer).
"""
from typing import NamedTuple

from ..backend import get_array_module
from ..batchnorm import channel_rows
from ..cpu.parallel import per_channel


class BlockedCache(NamedTuple):
    data: object        # xc = X - mu (train) or X itself (eval), (C, M)
    mean: object        # r_mu (eval; None in training), (C, 1)
    inv_std: object     # s, (C,)
    gamma: object       # (C,)
    shape: tuple        # x's shape
    train: bool         # batch statistics (True) or running statistics (False)


def _normalize(X, gamma, beta, eps, y, xc, mu, var, s):
    """Into y, xc (C, M) and mu, var, s (C, 1): the batch statistics of the rows of X and
    y = gamma s xc + beta; gamma, beta (C, 1)."""
    xp = get_array_module(X)
    X.mean(axis=1, keepdims=True, out=mu)
    xp.subtract(X, mu, out=xc)
    (xc * xc).mean(axis=1, keepdims=True, out=var)
    xp.power(var + eps, -0.5, out=s)
    xp.multiply(xc, gamma * s, out=y)
    y += beta


def _affine(X, a, c, y):
    """Into y: a X + c."""
    get_array_module(X).multiply(X, a, out=y)
    y += c


def _fixed_statistics_gradients(dY, xc, gamma_s, s, dx, dgamma, dbeta):
    """Into dx (C, M), dgamma, dbeta (C, 1), the statistics held constant: dbeta = sum dY,
    dgamma = s sum dY xc, dx = gamma_s dY."""
    dY.sum(axis=1, keepdims=True, out=dbeta)
    (dY * xc).sum(axis=1, keepdims=True, out=dgamma)
    dgamma *= s
    get_array_module(dY).multiply(dY, gamma_s, out=dx)


def _train_gradients(dY, xc, gamma_s, s, dx, dgamma, dbeta):
    """``_fixed_statistics_gradients`` and the two batch-statistics terms of dx."""
    _fixed_statistics_gradients(dY, xc, gamma_s, s, dx, dgamma, dbeta)
    gamma_s_M = gamma_s / dY.shape[1]
    dx -= gamma_s_M * dbeta
    dx -= xc * (gamma_s_M * s * dgamma)


def _eval_gradients(dY, X, mu, gamma_s, s, dx, dgamma, dbeta):
    """``_fixed_statistics_gradients`` with xc = X - r_mu formed block by block."""
    _fixed_statistics_gradients(dY, X - mu, gamma_s, s, dx, dgamma, dbeta)


def batchnorm_forward(x, gamma, beta, running_mean, running_var, train,
                      momentum=0.1, eps=1e-5):
    """(y, cache), as nn.batchnorm.batchnorm_forward; running statistics updated in place."""
    xp = get_array_module(x)
    X = channel_rows(x, train)
    C, M = X.shape
    y = xp.empty_like(X)
    if train:
        xc = xp.empty_like(X)
        mu, var, s = (xp.empty((C, 1), dtype=X.dtype) for _ in range(3))
        per_channel(_normalize, X, gamma[:, None], beta[:, None], eps, y, xc, mu, var, s)
        mu, var, s = mu[:, 0], var[:, 0], s[:, 0]
        running_mean += momentum * (mu - running_mean)
        running_var += momentum * (var * (M / (M - 1)) - running_var)
        cache = BlockedCache(xc, None, s, gamma, x.shape, True)
    else:
        mu, var = (r.astype(x.dtype, copy=False) for r in (running_mean, running_var))
        s = 1 / xp.sqrt(var + eps)
        a = gamma * s
        per_channel(_affine, X, a[:, None], (beta - mu * a)[:, None], y)
        cache = BlockedCache(X, mu[:, None], s, gamma, x.shape, False)
    return y.reshape(x.shape), cache


def batchnorm_backward(dy, cache, dgamma=None, dbeta=None):
    """(dx, dgamma, dbeta) from dy; dgamma and dbeta (C,) are written into the arrays given
    (new ones when None)."""
    xp = get_array_module(dy)
    C, M = cache.data.shape
    dY = dy.reshape(C, M)
    gamma_s, s = (cache.gamma * cache.inv_std)[:, None], cache.inv_std[:, None]
    dgamma, dbeta = (xp.empty(C, dtype=dy.dtype) if d is None else d for d in (dgamma, dbeta))
    dx = xp.empty_like(dY)
    if cache.train:
        per_channel(_train_gradients, dY, cache.data, gamma_s, s, dx, dgamma.reshape(C, 1),
                    dbeta.reshape(C, 1))
    else:
        per_channel(_eval_gradients, dY, cache.data, cache.mean, gamma_s, s, dx,
                    dgamma.reshape(C, 1), dbeta.reshape(C, 1))
    return dx.reshape(cache.shape), dgamma, dbeta
