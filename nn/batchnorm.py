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
In eval mode the map is affine with constants, y = x * g + (beta - r_mu * g):
two passes, and the cache keeps x itself (backward, rarely needed in eval,
forms xc = x - r_mu block by block). Channels are independent, so each pass runs over channel blocks
(``nn.parallel.run_in_blocks``: in parallel on a multi-core CPU).
"""
from typing import NamedTuple

from .backend import get_array_module
from .parallel import run_in_blocks


class BatchNormCache(NamedTuple):
    data: object        # x - mu (train) or x itself (eval), same shape as x
    mean: object        # mu (train) or r_mu (eval), per channel (C,)
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
    xp = get_array_module(x)
    nd, C = x.ndim, x.shape[1]
    M = x.size // C
    if train and M < 2:
        raise ValueError("batch norm in training mode needs more than one value per channel")
    y = xp.empty_like(x)                    # *_like keeps x's memory layout
    if not train:
        mean = running_mean.astype(x.dtype, copy=False)
        inv_std = 1.0 / (running_var.astype(x.dtype, copy=False) + eps) ** 0.5
        g = gamma * inv_std
        shift = beta - mean * g

        def channels(lo, hi):
            c = slice(lo, hi)
            yc = y[:, c]
            xp.multiply(x[:, c], _per_channel(g[c], nd), out=yc)
            yc += _per_channel(shift[c], nd)

        run_in_blocks(channels, C, x.nbytes, xp)
        return y, BatchNormCache(x, mean, inv_std, gamma, train)

    centered = xp.empty_like(x)
    mean, var = xp.empty(C, dtype=x.dtype), xp.empty(C, dtype=x.dtype)

    def channels(lo, hi):
        c = slice(lo, hi)
        xc, yc = centered[:, c], y[:, c]
        mean[c] = x[:, c].mean(axis=_axes(x))
        xp.subtract(x[:, c], _per_channel(mean[c], nd), out=xc)
        var[c] = _channel_dot(xc, xc) / M
        xp.multiply(xc, _per_channel(gamma[c] / (var[c] + eps) ** 0.5, nd), out=yc)
        yc += _per_channel(beta[c], nd)

    run_in_blocks(channels, C, x.nbytes, xp)
    running_mean *= 1 - momentum
    running_mean += momentum * mean.astype(running_mean.dtype, copy=False)
    running_var *= 1 - momentum
    running_var += (momentum * M / (M - 1)) * var.astype(running_var.dtype, copy=False)
    return y, BatchNormCache(centered, mean, 1.0 / (var + eps) ** 0.5, gamma, train)


def batchnorm_backward(dy, cache):
    """Returns (dx, dgamma, dbeta). See the module docstring."""
    xp = get_array_module(dy)
    nd, C = dy.ndim, dy.shape[1]
    M = dy.size // C
    s = cache.inv_std
    g = cache.gamma * s
    k = g * s / M           # dx = g * (dy - dbeta / M) - xc * (k * dgamma)
    dx = xp.empty_like(cache.data)
    dgamma, dbeta = xp.empty(C, dtype=dy.dtype), xp.empty(C, dtype=dy.dtype)

    def channels(lo, hi):
        c = slice(lo, hi)
        dyc, dxc = dy[:, c], dx[:, c]
        xc = cache.data[:, c]
        if not cache.train:
            xc = xc - _per_channel(cache.mean[c], nd)
        dbeta[c] = dyc.sum(axis=_axes(dy))
        dgamma[c] = _channel_dot(dyc, xc) * s[c]
        if not cache.train:
            xp.multiply(dyc, _per_channel(g[c], nd), out=dxc)
            return
        xp.subtract(dyc, _per_channel(dbeta[c] / M, nd), out=dxc)
        dxc *= _per_channel(g[c], nd)
        dxc -= xc * _per_channel(k[c] * dgamma[c], nd)

    run_in_blocks(channels, C, dy.nbytes, xp)
    return dx, dgamma, dbeta
