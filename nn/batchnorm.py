"""Batch normalization per channel, the channel axis first: the formula.

Shapes: x is (C, H, W, N) (maps) or (C, N) (features); X = x.reshape(C, M) holds
the M = H*W*N (or N) values of channel c in row c. gamma, beta, running_mean,
running_var and every per-channel value below are (C,); in a product with a
(C, M) array, a (C,) value scales each row (gamma X means gamma[c] X[c, m]).
Sums over m run along the rows.

Training mode, the batch statistics of each row:

    mu = (1/M) sum_m X                 sigma^2 = (1/M) sum_m (X - mu)^2   (biased)
    s = 1 / sqrt(sigma^2 + eps)        x_hat = s (X - mu)
    y = gamma x_hat + beta
    running_mean <- running_mean + momentum (mu - running_mean)
    running_var  <- running_var + momentum (sigma^2 M / (M - 1) - running_var)  (unbiased)

Backward, from dy = dL/dy (the shape of x):

    dbeta  = sum_m dy
    dgamma = sum_m dy x_hat
    dx     = gamma s (dy - dbeta / M - x_hat dgamma / M)

Why dx: write dx_hat = gamma dy. x_hat_m depends on X_k directly and through mu
and s, with d mu / d X_k = 1/M and d s / d X_k = -s^3 (X_k - mu) / M (the
mean's part of d sigma^2 sums to zero), so

    dX_k = sum_m dx_hat_m d x_hat_m / d X_k
         = s dx_hat_k - (s/M) sum_m dx_hat_m - (s/M) x_hat_k sum_m dx_hat_m x_hat_m,

which is the line above, since sum_m dx_hat_m = gamma dbeta and
sum_m dx_hat_m x_hat_m = gamma dgamma.

Eval mode, the running statistics (constants): mu = running_mean,
sigma^2 = running_var, the same y; dbeta and dgamma as above, dx = gamma s dy.
Training never calls the eval backward; it gives a trained model's input
gradients.

This module is the reference: nn/fast/batchnorm.py computes the same, block by
block of channels, and the layers (nn/layers.py) run that; tests/test_nn_fast.py
holds the two equal.
"""
from typing import NamedTuple

from .backend import get_array_module


class BatchNormCache(NamedTuple):
    x_hat: object       # (C, M) normalized rows
    inv_std: object     # s (C,)
    gamma: object       # (C,)
    train: bool         # batch statistics (True) or running statistics (False)


def channel_rows(x, train):
    """X = x.reshape(C, M); training mode needs M >= 2 (a variance of one value is 0)."""
    X = x.reshape(x.shape[0], -1)
    if train and X.shape[1] < 2:
        raise ValueError("batch norm in training mode needs more than one value per channel")
    return X


def batchnorm_forward(x, gamma, beta, running_mean, running_var, train,
                      momentum=0.1, eps=1e-5):
    """(y, cache); in training mode updates running_mean and running_var in place."""
    xp = get_array_module(x)
    X = channel_rows(x, train)
    M = X.shape[1]
    if train:
        mu = X.mean(axis=1)
        var = ((X - mu[:, None]) ** 2).mean(axis=1)
        running_mean += momentum * (mu - running_mean)
        running_var += momentum * (var * (M / (M - 1)) - running_var)
    else:
        mu, var = running_mean, running_var
    s = 1 / xp.sqrt(var + eps)
    x_hat = (X - mu[:, None]) * s[:, None]
    y = gamma[:, None] * x_hat + beta[:, None]
    return y.reshape(x.shape), BatchNormCache(x_hat, s, gamma, train)


def batchnorm_backward(dy, cache):
    """(dx, dgamma, dbeta) from dy (the shape of x); see the module docstring."""
    C, M = cache.x_hat.shape
    dY = dy.reshape(C, M)
    dbeta = dY.sum(axis=1)
    dgamma = (dY * cache.x_hat).sum(axis=1)
    if cache.train:
        dY = dY - (dbeta[:, None] + cache.x_hat * dgamma[:, None]) / M
    dx = (cache.gamma * cache.inv_std)[:, None] * dY
    return dx.reshape(dy.shape), dgamma, dbeta
