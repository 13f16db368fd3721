"""Batch normalization per channel, the channel axis first.

x is (C, H, W, N) (maps) or (C, N) (features); X = x.reshape(C, M) holds the
M = H*W*N (or N) values of each channel in its row. With mu, sigma^2 the
batch mean and biased variance of a row, xc = X - mu, s = 1 / sqrt(sigma^2 + eps):

Forward (train):  y = gamma s xc + beta                             (x_hat = s xc)
Running stats:    r_mu  <- r_mu  + m (mu - r_mu)
                  r_var <- r_var + m (sigma^2 M / (M - 1) - r_var)    (unbiased)
Forward (eval):   the same with mu = r_mu, sigma^2 = r_var
Backward (train): dbeta = sum dy,  dgamma = s sum dy xc,
                  dx = gamma s (dy - dbeta / M) - xc gamma s^2 dgamma / M
Backward (eval):  dx = gamma s dy   (the statistics are constants)

The cache keeps x itself and mu; xc is formed again where it is needed,
block by block (``per_channel``: plain xp expressions on CuPy, blocks of
channels on the CPU's cores, so each block stays in cache while its formula
makes its passes over it).
"""
from typing import NamedTuple

from .backend import get_array_module
from .parallel import per_channel


class BatchNormCache(NamedTuple):
    X: object           # the input as (C, M)
    mean: object        # mu (train) or r_mu (eval), (C, 1)
    inv_std: object     # s, (C,)
    gamma: object       # (C,)
    shape: tuple        # x's shape
    train: bool         # batch statistics (True) or running statistics (False)


def _moments(X, out=None):
    """[mu, sigma^2] (C, 2) of the rows of X (C, M)."""
    xp = get_array_module(X)
    mu = X.mean(axis=1, keepdims=True)
    xc = X - mu
    return xp.concatenate([mu, (xc * xc).mean(axis=1, keepdims=True)], axis=1, out=out)


def _normalize(X, mu, g, b, out=None):
    """y = (X - mu) g + b."""
    y = get_array_module(X).subtract(X, mu, out=out)
    y *= g
    y += b
    return y


def _grad_sums(dY, X, mu, out=None):
    """[sum dy, sum dy xc] (C, 2) per row."""
    xp = get_array_module(dY)
    return xp.concatenate([dY.sum(axis=1, keepdims=True),
                           (dY * (X - mu)).sum(axis=1, keepdims=True)], axis=1, out=out)


def _input_grad(dY, X, mu, g, mean_dy, k, out=None):
    """dx = g (dY - mean_dy) - (X - mu) k."""
    dx = get_array_module(dY).subtract(dY, mean_dy, out=out)
    dx *= g
    dx -= (X - mu) * k
    return dx


def _scale(dY, g, out=None):
    """dx = g dY."""
    return get_array_module(dY).multiply(dY, g, out=out)


def batchnorm_forward(x, gamma, beta, running_mean, running_var, train,
                      momentum=0.1, eps=1e-5):
    """Returns (y, cache); in training mode updates running_mean/var in place."""
    C = x.shape[0]
    X = x.reshape(C, -1)
    M = X.shape[1]
    if train and M < 2:
        raise ValueError("batch norm in training mode needs more than one value per channel")
    if train:
        moments = per_channel(_moments, X, shape=(C, 2))
        mu, var = moments[:, 0], moments[:, 1]
        running_mean += momentum * (mu - running_mean)
        running_var += momentum * (var * (M / (M - 1)) - running_var)
    else:
        mu, var = (r.astype(x.dtype, copy=False) for r in (running_mean, running_var))
    s = (var + eps) ** -0.5
    mu = mu[:, None]
    y = per_channel(_normalize, X, mu, (gamma * s)[:, None], beta[:, None])
    return y.reshape(x.shape), BatchNormCache(X, mu, s, gamma, x.shape, train)


def batchnorm_backward(dy, cache):
    """Returns (dx, dgamma, dbeta). See the module docstring."""
    X, mu, s, gamma = cache.X, cache.mean, cache.inv_std, cache.gamma
    C, M = X.shape
    dY = dy.reshape(C, M)
    sums = per_channel(_grad_sums, dY, X, mu, shape=(C, 2), dtype=dy.dtype)
    dbeta, dgamma = sums[:, 0], s * sums[:, 1]
    g = gamma * s
    if cache.train:
        dx = per_channel(_input_grad, dY, X, mu, g[:, None], (dbeta / M)[:, None],
                         (g * s * dgamma / M)[:, None])
    else:
        dx = per_channel(_scale, dY, g[:, None])
    return dx.reshape(cache.shape), dgamma, dbeta
