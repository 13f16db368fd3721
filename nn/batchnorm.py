"""Batch normalization per channel, the channel axis first.

x is (C, H, W, N) (maps) or (C, N) (features); X = x.reshape(C, M) holds the
M = H*W*N (or N) values of each channel in its row. Per row, the batch statistics

    mu = mean_m X,   sigma^2 = mean_m (X - mu)^2 (biased),   s = 1 / sqrt(sigma^2 + eps),

and xc = X - mu. gamma, beta, r_mu, r_var are (C,); inside the row functions
below, per-channel values are columns (C, 1).

Forward (train):  y = gamma s xc + beta                             (x_hat = s xc)
Running stats:    r_mu  <- r_mu  + m (mu - r_mu)
                  r_var <- r_var + m (sigma^2 M / (M - 1) - r_var)    (unbiased)
Forward (eval):   y = a X + (beta - a r_mu),  a = gamma / sqrt(r_var + eps)
Backward (train): dbeta  = sum_m dy
                  dgamma = s sum_m dy xc
                  dx     = g dy - (g / M) dbeta - xc (g / M) s dgamma,   g = gamma s
Backward (eval):  dbeta, dgamma as above with xc = X - r_mu and s = 1 / sqrt(r_var + eps);
                  dx = g dy (the statistics are constants). Training never calls it;
                  it gives a trained model's input gradients.

Every function returns its gradients in the order (dx, dgamma, dbeta).
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


class Statistics(NamedTuple):
    """Views of the batch statistics, each (C, 1): the columns of one (C, 3) array, so
    that a block of rows writes all three into one result of ``per_channel``."""
    mean: object        # mu
    var: object         # sigma^2 (biased)
    inv_std: object     # s


def statistics(stats):
    """The named columns of a (C, 3) array [mu, sigma^2, s]."""
    return Statistics(stats[:, 0:1], stats[:, 1:2], stats[:, 2:3])


def _normalize(X, gamma, beta, eps, out=(None, None, None)):
    """(y, xc, stats) of the rows of X (C, M): y = gamma s xc + beta (C, M), xc = X - mu
    (C, M), stats = [mu, sigma^2, s] (C, 3); gamma, beta (C, 1)."""
    xp = get_array_module(X)
    y, xc, stats = out
    if stats is None:
        stats = xp.empty((X.shape[0], 3), dtype=X.dtype)
    mu, var, s = statistics(stats)
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


def _train_gradients(dY, xc, g, s, out=(None, None, None)):
    """(dx, dgamma, dbeta) of the rows in training mode: dx (C, M), dgamma and dbeta (C, 1);
    g = gamma s and s (C, 1)."""
    dx, dgamma, dbeta = _fixed_statistics_gradients(dY, xc, g, s, out)
    g_M = g / dY.shape[1]
    dx -= g_M * dbeta
    dx -= xc * (g_M * s * dgamma)
    return dx, dgamma, dbeta


def _fixed_statistics_gradients(dY, xc, g, s, out=(None, None, None)):
    """(dx, dgamma, dbeta) of the rows with the statistics held constant: dbeta = sum dY,
    dgamma = s sum dY xc, dx = g dY."""
    xp = get_array_module(dY)
    dx, dgamma, dbeta = out
    dbeta = dY.sum(axis=1, keepdims=True, out=dbeta)
    dgamma = (dY * xc).sum(axis=1, keepdims=True, out=dgamma)
    dgamma *= s
    dx = xp.multiply(dY, g, out=dx)
    return dx, dgamma, dbeta


def _centred_eval_gradients(dY, X, mu, g, s, out=(None, None, None)):
    """``_fixed_statistics_gradients`` with xc = X - r_mu formed block by block."""
    return _fixed_statistics_gradients(dY, X - mu, g, s, out)


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
        mu, var, s = stats[:, 0], stats[:, 1], stats[:, 2]      # the columns of Statistics
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
    C, M = cache.data.shape
    dY = dy.reshape(C, M)
    g, s = (cache.gamma * cache.inv_std)[:, None], cache.inv_std[:, None]
    dgamma, dbeta = (None if a is None else a.reshape(C, 1) for a in out)
    shapes = ((C, M), (C, 1), (C, 1))
    if cache.train:
        dx, dgamma, dbeta = per_channel(_train_gradients, dY, cache.data, g, s, shape=shapes,
                                        dtype=dy.dtype, out=(None, dgamma, dbeta))
    else:
        dx, dgamma, dbeta = per_channel(_centred_eval_gradients, dY, cache.data, cache.mean,
                                        g, s, shape=shapes, dtype=dy.dtype,
                                        out=(None, dgamma, dbeta))
    return dx.reshape(cache.shape), dgamma.reshape(C), dbeta.reshape(C)
