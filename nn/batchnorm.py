"""Batch normalization per channel, the channel axis first.

x is (C, H, W, N) (maps) or (C, N) (features); X = x.reshape(C, M) holds the
M = H*W*N (or N) values of each channel in its row. With mu, sigma^2 the
batch mean and biased variance of a row, s = 1 / sqrt(sigma^2 + eps):

Forward (train):  xc = X - mu,  y = gamma * s * xc + beta        (x_hat = s xc)
Running stats:    r_mu  <- r_mu  + m (mu - r_mu)
                  r_var <- r_var + m (sigma^2 M / (M - 1) - r_var)    (unbiased)
Forward (eval):   the same with mu = r_mu, sigma^2 = r_var
Backward (train): dbeta = sum dy,  dgamma = s * sum dy * xc,
                  dx = gamma s (dy - dbeta / M) - xc * gamma s^2 dgamma / M
Backward (eval):  dx = gamma s dy   (the statistics are constants)

The cache holds xc and s rather than x_hat = s xc (one pass fewer). The sums
are ``channel_sum``/``channel_dot`` and the maps ``per_channel`` (nn.parallel:
plain xp expressions on CuPy, channel blocks on the CPU's cores).
"""
from typing import NamedTuple

from .parallel import channel_dot, channel_sum, per_channel


class BatchNormCache(NamedTuple):
    xc: object          # X - mu, (C, M)
    inv_std: object     # s, (C,)
    gamma: object       # (C,)
    shape: tuple        # x's shape
    train: bool         # batch statistics (True) or running statistics (False)


def batchnorm_forward(x, gamma, beta, running_mean, running_var, train,
                      momentum=0.1, eps=1e-5):
    """Returns (y, cache); in training mode updates running_mean/var in place."""
    C = x.shape[0]
    X = x.reshape(C, -1)
    M = X.shape[1]
    if train and M < 2:
        raise ValueError("batch norm in training mode needs more than one value per channel")
    if train:
        mu = channel_sum(X) / M
        xc = per_channel(lambda X, mu: X - mu, X, mu[:, None])
        var = channel_dot(xc, xc) / M
        running_mean += momentum * (mu - running_mean)
        running_var += momentum * (var * (M / (M - 1)) - running_var)
    else:
        mu, var = (r.astype(x.dtype, copy=False) for r in (running_mean, running_var))
        xc = per_channel(lambda X, mu: X - mu, X, mu[:, None])
    s = (var + eps) ** -0.5
    y = per_channel(lambda xc, g, b: xc * g + b, xc, (gamma * s)[:, None], beta[:, None])
    return y.reshape(x.shape), BatchNormCache(xc, s, gamma, x.shape, train)


def batchnorm_backward(dy, cache):
    """Returns (dx, dgamma, dbeta). See the module docstring."""
    xc, s, gamma = cache.xc, cache.inv_std, cache.gamma
    C, M = xc.shape
    dY = dy.reshape(C, M)
    dbeta = channel_sum(dY)
    dgamma = s * channel_dot(dY, xc)
    g = gamma * s
    if cache.train:
        dx = per_channel(lambda dY, xc, g, mean_dy, k: g * (dY - mean_dy) - xc * k,
                         dY, xc, g[:, None], (dbeta / M)[:, None], (g * s * dgamma / M)[:, None])
    else:
        dx = per_channel(lambda dY, g: g * dY, dY, g[:, None])
    return dx.reshape(cache.shape), dgamma, dbeta
