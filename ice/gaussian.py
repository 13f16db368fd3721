"""Gaussian log-likelihoods per image, and the negative log-likelihood in bits per dimension.

z is batch last: any shape (..., N), e.g. maps (C, H, W, N); each image n has
D = z.size / N values, and every log-likelihood is summed over them: (N,).

Diagonal Gaussian with mean mu and log-scale l (arrays of z's shape), sigma = exp(l):
    log p_n = sum_d -1/2 (log 2 pi + 2 l + (z - mu)^2 exp(-2 l))
With dlogp = dL/dlog p (N,), broadcast over each image's values, and
r = (z - mu) exp(-2 l):
    dz = -dlogp r,   dmu = dlogp r,   dl = dlogp (r (z - mu) - 1)
Standard normal (mu = 0, l = 0):
    log p_n = sum_d -1/2 (log 2 pi + z^2),   dz = -dlogp z

Bits per dimension of a flow on data quantized to K bins per value
(Dinh et al., Kingma & Dhariwal: the density of the dequantized x, counted
as a discrete probability over bins of width 1/K, plus log K per value):
    bpd = mean_n (-log p_n / (D log 2)) + log2 K,     dL/dlog p_n = -1 / (N D log 2)
where log p_n = log p(z_n) + log |det dz/dx|_n is the flow's continuous
log-likelihood of image n.
"""
import math

from nn.backend import get_array_module

LOG_2PI = math.log(2 * math.pi)


def per_image_sum(a):
    """sum over all axes but the last (the batch): (..., N) -> (N,)."""
    return a.reshape(-1, a.shape[-1]).sum(axis=0)


def gaussian_log_likelihood(z, mean, logs):
    """log p_n (N,) of z (..., N) under N(mean, exp(logs)^2) elementwise (arrays of z's shape)."""
    xp = get_array_module(z)
    d = z - mean
    return -0.5 * per_image_sum(LOG_2PI + 2 * logs + d * d * xp.exp(-2 * logs))


def gaussian_log_likelihood_backward(dlogp, z, mean, logs):
    """(dz, dmean, dlogs) from dlogp = dL/dlog p (N,); see the module docstring."""
    xp = get_array_module(z)
    d = z - mean
    r = d * xp.exp(-2 * logs)
    dmean = dlogp * r
    return -dmean, dmean, dlogp * (r * d - 1)


def standard_normal_log_likelihood(z):
    """log p_n (N,) of z (..., N) under N(0, I)."""
    return -0.5 * per_image_sum(LOG_2PI + z * z)


def standard_normal_log_likelihood_backward(dlogp, z):
    """dz = -dlogp z from dlogp = dL/dlog p (N,)."""
    return -dlogp * z


def bits_per_dim(logp, D, n_bins=256):
    """(bpd, dlogp): the mean NLL in bits per dimension as a 0-d array, and dbpd/dlog p (N,).

    ``logp`` (N,) is the continuous log-likelihood of each image, D its number
    of values, ``n_bins`` the quantization levels per value (256 for 8 bits;
    1 leaves the continuous NLL).
    """
    xp = get_array_module(logp)
    N = logp.shape[0]
    scale = 1.0 / (D * math.log(2))
    bpd = -logp.mean() * scale + math.log2(n_bins)
    return bpd, xp.full(N, -scale / N, dtype=logp.dtype)
