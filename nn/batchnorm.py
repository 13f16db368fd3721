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
"""
from typing import NamedTuple


class BatchNormCache(NamedTuple):
    x_hat: object       # normalized input, same shape as x
    inv_std: object     # 1 / sqrt(var + eps), per channel (C,)
    gamma: object       # (C,)
    train: bool         # batch statistics (True) or running statistics (False)


def _axes(x):
    return (0,) if x.ndim == 2 else (0,) + tuple(range(2, x.ndim))


def _per_channel(v, ndim):
    """Reshape a (C,) vector to broadcast against (N, C, ...)."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def batchnorm_forward(x, gamma, beta, running_mean, running_var, train,
                      momentum=0.1, eps=1e-5):
    """Returns (y, cache); in training mode updates running_mean/var in place."""
    axes = _axes(x)
    if train:
        M = x.size // x.shape[1]
        if M < 2:
            raise ValueError("batch norm in training mode needs more than one value per channel")
        mean = x.mean(axis=axes)
        centered = x - _per_channel(mean, x.ndim)
        var = (centered * centered).mean(axis=axes)
        inv_std = 1.0 / (var + eps) ** 0.5
        x_hat = centered * _per_channel(inv_std, x.ndim)
        running_mean *= 1 - momentum
        running_mean += momentum * mean.astype(running_mean.dtype, copy=False)
        running_var *= 1 - momentum
        running_var += (momentum * M / (M - 1)) * var.astype(running_var.dtype, copy=False)
    else:
        inv_std = (1.0 / (running_var + eps) ** 0.5).astype(x.dtype, copy=False)
        x_hat = (x - _per_channel(running_mean.astype(x.dtype, copy=False), x.ndim)) \
            * _per_channel(inv_std, x.ndim)
    y = x_hat * _per_channel(gamma, x.ndim) + _per_channel(beta, x.ndim)
    return y, BatchNormCache(x_hat, inv_std, gamma, train)


def batchnorm_backward(dy, cache):
    """Returns (dx, dgamma, dbeta). See the module docstring."""
    axes = _axes(dy)
    nd = dy.ndim
    dbeta = dy.sum(axis=axes)
    dgamma = (dy * cache.x_hat).sum(axis=axes)
    scale = _per_channel(cache.gamma * cache.inv_std, nd)
    if not cache.train:
        return dy * scale, dgamma, dbeta
    M = dy.size // dy.shape[1]
    dx = (scale / M) * (M * dy - _per_channel(dbeta, nd) - cache.x_hat * _per_channel(dgamma, nd))
    return dx, dgamma, dbeta
