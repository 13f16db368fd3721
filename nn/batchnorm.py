"""Batch normalization over every axis but the channel axis 1.

x is (N, C) or (N, C, H, W); statistics are per channel over the M = N (*H*W)
values of that channel. With mu, sigma^2 the batch mean and biased variance:

Forward (train):  x_hat = (x - mu) / sqrt(sigma^2 + eps),  y = gamma * x_hat + beta
Running stats:    r_mu  <- (1 - m) r_mu  + m mu
                  r_var <- (1 - m) r_var + m sigma^2 * M / (M - 1)   (unbiased)
Forward (eval):   x_hat = (x - r_mu) / sqrt(r_var + eps)
Backward (train): dbeta = sum dy,  dgamma = sum dy * x_hat,
                  dx = gamma / (M sqrt(sigma^2 + eps)) * (M dy - dbeta - x_hat dgamma)
Backward (eval):  dx = gamma / sqrt(r_var + eps) * dy   (the statistics are constants)

How it is computed (few passes over x, which is large): the cache holds the
centred input xc = x - mu and s = 1 / sqrt(sigma^2 + eps) rather than x_hat =
xc * s, and every per-channel sum of a product (sigma^2 = mean xc^2,
sum dy * xc) is one einsum with no temporary. Then, with g = gamma * s,
forward is y = xc * g + beta and backward is
dgamma = s * sum dy * xc  and  dx = g * (dy - dbeta / M) - xc * (g * s * dgamma / M).
"""
from typing import NamedTuple

from .backend import get_array_module


class BatchNormCache(NamedTuple):
    centered: object    # x - mu (train) or x - r_mu (eval), same shape as x
    inv_std: object     # s = 1 / sqrt(var + eps), per channel (C,)
    gamma: object       # (C,)
    train: bool         # batch statistics (True) or running statistics (False)


def _axes(x):
    return (0,) if x.ndim == 2 else (0,) + tuple(range(2, x.ndim))


def _per_channel(v, ndim):
    """Reshape a (C,) vector to broadcast against (N, C, ...)."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def _channel_dot(a, b):
    """sum over every axis but 1 of a * b, per channel, without a temporary."""
    xp = get_array_module(a)
    letters = "nchwdefg"[:a.ndim]
    return xp.einsum(f"{letters},{letters}->c", a, b)


def batchnorm_forward(x, gamma, beta, running_mean, running_var, train,
                      momentum=0.1, eps=1e-5):
    """Returns (y, cache); in training mode updates running_mean/var in place."""
    nd = x.ndim
    if train:
        M = x.size // x.shape[1]
        if M < 2:
            raise ValueError("batch norm in training mode needs more than one value per channel")
        mean = x.mean(axis=_axes(x))
        centered = x - _per_channel(mean, nd)
        var = _channel_dot(centered, centered) / M
        inv_std = 1.0 / (var + eps) ** 0.5
        running_mean *= 1 - momentum
        running_mean += momentum * mean.astype(running_mean.dtype, copy=False)
        running_var *= 1 - momentum
        running_var += (momentum * M / (M - 1)) * var.astype(running_var.dtype, copy=False)
    else:
        inv_std = (1.0 / (running_var + eps) ** 0.5).astype(x.dtype, copy=False)
        centered = x - _per_channel(running_mean.astype(x.dtype, copy=False), nd)
    y = centered * _per_channel(gamma * inv_std, nd)
    y += _per_channel(beta, nd)
    return y, BatchNormCache(centered, inv_std, gamma, train)


def batchnorm_backward(dy, cache):
    """Returns (dx, dgamma, dbeta). See the module docstring."""
    nd = dy.ndim
    s = cache.inv_std
    g = cache.gamma * s
    dbeta = dy.sum(axis=_axes(dy))
    dgamma = _channel_dot(dy, cache.centered) * s
    if not cache.train:
        return dy * _per_channel(g, nd), dgamma, dbeta
    M = dy.size // dy.shape[1]
    dx = dy - _per_channel(dbeta / M, nd)
    dx *= _per_channel(g, nd)
    dx -= cache.centered * _per_channel(g * s * dgamma / M, nd)
    return dx, dgamma, dbeta
