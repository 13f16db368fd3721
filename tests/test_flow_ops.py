"""The invertible ops of ice.flow and the log-likelihoods of ice.gaussian, in float64.

For every op: central-difference gradients of every input and parameter
(gradcheck.py: L = sum(dy * y) + sum(g * log_det) with random dy and g),
inverse(forward(x)) == x, and the log-determinant against log|det J| of the
whole Jacobian on a tiny input (4, 2, 2, 1): exact (columns f(e_i) - f(0))
for the linear ops, central differences for the coupling. Squeeze is checked
against a loop over pixels, the Gaussian log-likelihoods against a loop over
values with math.log. Maps are batch last, (C, H, W, N).
"""
import math

import numpy as np
import pytest
from gradcheck import check_gradients, upstream

from ice import flow, gaussian
from nn.dropout import keep_mask

# Every test runs serially and again with nn.cpu.parallel's primitives split into blocks
# (conftest.py); those whose ops never call nn.cpu.parallel are marked no_split.
pytestmark = pytest.mark.usefixtures("cores_mode")

TINY = (4, 2, 2, 1)         # the shape of the brute-force log-det checks: D = 16


def random_nn_params(rng, C1, C2, hidden, k1=3):
    """Coupling-NN parameters (ice.flow.NN_PARAMS) away from their zero initialization."""
    return dict(W1=0.5 * rng.standard_normal((hidden, C1, k1, k1)),
                an1_b=0.3 * rng.standard_normal(hidden), an1_logs=0.3 * rng.standard_normal(hidden),
                W2=0.5 * rng.standard_normal((hidden, hidden, 1, 1)),
                an2_b=0.3 * rng.standard_normal(hidden), an2_logs=0.3 * rng.standard_normal(hidden),
                W3=0.3 * rng.standard_normal((C2, hidden, 3, 3)),
                b3=0.3 * rng.standard_normal(C2), logs3=0.1 * rng.standard_normal(C2))


def exact_jacobian(f, shape):
    """J (D, D) of an affine f on arrays of ``shape``: column i is f(e_i) - f(0)."""
    D = int(np.prod(shape))
    f0 = f(np.zeros(shape)).ravel()
    J = np.empty((D, D))
    for i in range(D):
        e = np.zeros(D)
        e[i] = 1.0
        J[:, i] = f(e.reshape(shape)).ravel() - f0
    return J


def numeric_jacobian(f, x, eps=1e-6):
    """J (D, D) of f at x by central differences."""
    D = x.size
    J = np.empty((D, D))
    for i in range(D):
        e = np.zeros(D)
        e[i] = eps
        e = e.reshape(x.shape)
        J[:, i] = (f(x + e).ravel() - f(x - e).ravel()) / (2 * eps)
    return J


def log_abs_det(J):
    sign, value = np.linalg.slogdet(J)
    assert sign != 0
    return value


# ---- Gaussian log-likelihoods ---------------------------------------------------------------

def gaussian_naive(z, mean, logs):
    C, H, W, N = z.shape
    out = np.zeros(N)
    for n in range(N):
        for c in range(C):
            for i in range(H):
                for j in range(W):
                    sigma = math.exp(logs[c, i, j, n])
                    d = (z[c, i, j, n] - mean[c, i, j, n]) / sigma
                    out[n] += -0.5 * math.log(2 * math.pi) - math.log(sigma) - 0.5 * d * d
    return out


@pytest.mark.no_split
def test_gaussian_log_likelihoods_values(rng):
    z, mean = rng.standard_normal((2, 3, 3, 2, 4))
    logs = 0.5 * rng.standard_normal(z.shape)
    np.testing.assert_allclose(gaussian.gaussian_log_likelihood(z, mean, logs),
                               gaussian_naive(z, mean, logs), rtol=1e-13)
    zero = np.zeros(z.shape)
    np.testing.assert_allclose(gaussian.standard_normal_log_likelihood(z),
                               gaussian_naive(z, zero, zero), rtol=1e-13)


@pytest.mark.no_split
def test_gaussian_log_likelihood_gradients(rng):
    z, mean = rng.standard_normal((2, 3, 2, 3, 2))
    logs = 0.5 * rng.standard_normal(z.shape)
    g = upstream(rng, (2,))
    dz, dmean, dlogs = gaussian.gaussian_log_likelihood_backward(g, z, mean, logs)

    def loss():
        return np.sum(g * gaussian.gaussian_log_likelihood(z, mean, logs))

    check_gradients("gaussian log-likelihood", loss, {"z": z, "mean": mean, "logs": logs},
                    {"z": dz, "mean": dmean, "logs": dlogs})

    def loss_standard():
        return np.sum(g * gaussian.standard_normal_log_likelihood(z))

    check_gradients("standard normal log-likelihood", loss_standard, {"z": z},
                    {"z": gaussian.standard_normal_log_likelihood_backward(g, z)})


@pytest.mark.no_split
def test_bits_per_dim(rng):
    logp = -50 + rng.standard_normal(5)
    D = 3 * 4 * 4
    bpd, dlogp = gaussian.bits_per_dim(logp, D, n_bins=256)
    expected = np.mean((-logp + D * math.log(256)) / (D * math.log(2)))
    np.testing.assert_allclose(bpd, expected, rtol=1e-14)
    np.testing.assert_allclose(dlogp, -1 / (5 * D * math.log(2)), rtol=1e-14)
    # The gradient check on a small D without the log2(K) constant: a loss of order
    # one and a gradient of order 0.1, or central differences drown in rounding.
    logp, D = rng.standard_normal(5), 3

    def loss():
        return gaussian.bits_per_dim(logp, D, n_bins=1)[0]

    check_gradients("bits_per_dim", loss, {"logp": logp},
                    {"logp": gaussian.bits_per_dim(logp, D, n_bins=1)[1]})


# ---- ActNorm ----------------------------------------------------------------------------

def actnorm_params(rng, C):
    return 0.5 * rng.standard_normal(C), 0.4 * rng.standard_normal(C)


@pytest.mark.parametrize("shape", [(3, 5, 4, 2), (3, 6)], ids=["CHWN", "CN"])
def test_actnorm_gradients(rng, shape):
    x = rng.standard_normal(shape)
    b, logs = actnorm_params(rng, shape[0])
    y, log_det = flow.actnorm_forward(x, b, logs)
    dy, g = upstream(rng, y.shape), upstream(rng, log_det.shape)
    dx, db, dlogs = flow.actnorm_backward(dy, g, y, logs)

    def loss():
        y, log_det = flow.actnorm_forward(x, b, logs)
        return np.sum(dy * y) + np.sum(g * log_det)

    check_gradients("actnorm", loss, {"x": x, "b": b, "logs": logs},
                    {"x": dx, "b": db, "logs": dlogs})


def test_actnorm_inverse_log_det_and_init(rng):
    x = rng.standard_normal(TINY)
    b, logs = actnorm_params(rng, 4)
    y, log_det = flow.actnorm_forward(x, b, logs)
    np.testing.assert_allclose(flow.actnorm_inverse(y, b, logs), x, rtol=0, atol=1e-10)
    J = exact_jacobian(lambda v: flow.actnorm_apply(v, b, logs), TINY)
    np.testing.assert_allclose(log_det, [log_abs_det(J)], rtol=0, atol=1e-12)

    maps = 3.0 + 2.0 * rng.standard_normal((3, 5, 4, 6))
    b0, logs0 = flow.actnorm_init(maps)
    out = flow.actnorm_apply(maps, b0, logs0).reshape(3, -1)
    np.testing.assert_allclose(out.mean(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(out.std(axis=1), 1, atol=1e-5)      # std / (std + 1e-6)
    np.testing.assert_allclose(b0, -maps.reshape(3, -1).mean(axis=1), rtol=1e-13)


# ---- squeeze and reversal ----------------------------------------------------------------

def squeeze_naive(x):
    C, H, W, N = x.shape
    y = np.zeros((4 * C, H // 2, W // 2, N))
    for c in range(C):
        for i in range(H // 2):
            for j in range(W // 2):
                for u in range(2):
                    for v in range(2):
                        for n in range(N):
                            y[4 * c + 2 * u + v, i, j, n] = x[c, 2 * i + u, 2 * j + v, n]
    return y


@pytest.mark.no_split
@pytest.mark.parametrize("shape", [(3, 4, 6, 2), (1, 2, 2, 3), TINY])
def test_squeeze_against_loops_inverse_gradient_log_det(rng, shape):
    x = rng.standard_normal(shape)
    y = flow.squeeze(x)
    np.testing.assert_array_equal(y, squeeze_naive(x))
    assert y.flags.c_contiguous
    np.testing.assert_array_equal(flow.unsqueeze(y), x)
    dy = upstream(rng, y.shape)

    def loss():
        return np.sum(dy * flow.squeeze(x))

    check_gradients("squeeze", loss, {"x": x}, {"x": flow.unsqueeze(dy)})
    J = exact_jacobian(flow.squeeze, TINY)
    assert abs(log_abs_det(J)) < 1e-12


@pytest.mark.no_split
def test_squeeze_refuses_odd_sizes(rng):
    with pytest.raises(ValueError, match="even"):
        flow.squeeze(rng.standard_normal((2, 3, 4, 1)))


@pytest.mark.no_split
def test_reverse_channels(rng):
    x = rng.standard_normal((5, 2, 3, 2))
    y = flow.reverse_channels(x)
    for c in range(5):
        np.testing.assert_array_equal(y[c], x[4 - c])
    np.testing.assert_array_equal(flow.reverse_channels(y), x)
    dy = upstream(rng, y.shape)

    def loss():
        return np.sum(dy * flow.reverse_channels(x))

    check_gradients("reverse channels", loss, {"x": x}, {"x": flow.reverse_channels(dy)})
    assert abs(log_abs_det(exact_jacobian(flow.reverse_channels, TINY))) < 1e-12


# ---- zero-initialized convolution --------------------------------------------------------

def test_zero_conv_gradients(rng):
    x = rng.standard_normal((3, 4, 5, 2))
    W, b = 0.5 * rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    logs = 0.2 * rng.standard_normal(4)
    y, cache = flow.zero_conv_forward(x, W, b, logs)
    assert y.shape == (4, 4, 5, 2)
    dy = upstream(rng, y.shape)
    dx, dW, db, dlogs = flow.zero_conv_backward(dy, cache)

    def loss():
        return np.sum(dy * flow.zero_conv_forward(x, W, b, logs)[0])

    check_gradients("zero conv", loss, {"x": x, "W": W, "b": b, "logs": logs},
                    {"x": dx, "W": dW, "b": db, "logs": dlogs})
    zero = flow.zero_conv_forward(x, 0 * W, 0 * b, 0 * logs)[0]
    assert not zero.any()


# ---- additive coupling -------------------------------------------------------------------

# The four cases' split runs reached the same call sites and branches of nn.cpu.parallel,
# and the same lines of the blocks it runs: only the odd channel split with dropout runs split.
SAME_SPLIT = pytest.mark.split_covered_by("test_coupling_gradients[split-5-dropout]")


@pytest.mark.parametrize("C, dropout", [
    pytest.param(4, False, id="4-no dropout", marks=SAME_SPLIT),
    pytest.param(4, True, id="4-dropout", marks=SAME_SPLIT),
    pytest.param(5, False, id="5-no dropout", marks=SAME_SPLIT),
    pytest.param(5, True, id="5-dropout")])
def test_coupling_gradients(rng, C, dropout):
    x = rng.standard_normal((C, 3, 4, 2))
    C1, hidden = C // 2, 3
    p = random_nn_params(rng, C1, C - C1, hidden)
    mask = keep_mask(rng.random((hidden, 3, 4, 2)), 0.3) if dropout else None
    y, cache = flow.coupling_forward(x, p, mask)
    np.testing.assert_array_equal(y[:C1], x[:C1])
    dy = upstream(rng, y.shape)
    dx, grads = flow.coupling_backward(dy, cache)
    assert set(grads) == set(flow.NN_PARAMS)

    def loss():
        return np.sum(dy * flow.coupling_forward(x, p, mask)[0])

    check_gradients(f"additive coupling{' (dropout)' if dropout else ''}", loss,
                    {"x": x, **p}, {"x": dx, **grads})


def test_coupling_inverse_and_log_det(rng):
    x = rng.standard_normal(TINY)
    p = random_nn_params(rng, 2, 2, 3)
    y, _ = flow.coupling_forward(x, p)
    x_back, _ = flow.coupling_inverse(y, p)
    np.testing.assert_allclose(x_back, x, rtol=0, atol=1e-10)
    J = numeric_jacobian(lambda v: flow.coupling_forward(v, p)[0], x)
    assert abs(log_abs_det(J)) < 1e-8       # log-det 0: triangular, unit diagonal
    assert np.abs(J[8:, :8]).max() > 0.1    # and the coupling is not the identity


def test_coupling_data_dependent_init(rng):
    x = rng.standard_normal((4, 5, 5, 3))
    p = random_nn_params(rng, 2, 2, 6)
    h, cache = flow.coupling_nn_forward(x[:2], p, init=True)
    for a in (cache.a1, cache.a2):                  # each ActNorm's output on its first batch
        A = a.reshape(6, -1)
        np.testing.assert_allclose(A.mean(axis=1), 0, atol=1e-12)
        np.testing.assert_allclose(A.std(axis=1), 1, atol=1e-5)


# ---- split with its learned prior ----------------------------------------------------------

def test_split_gradients_and_prior(rng):
    x = rng.standard_normal((6, 3, 4, 2))
    W, b = 0.4 * rng.standard_normal((6, 3, 3, 3)), 0.3 * rng.standard_normal(6)
    logs = 0.1 * rng.standard_normal(6)
    z1, z2, log_prior, cache = flow.split_forward(x, W, b, logs)
    np.testing.assert_array_equal(np.concatenate([z1, z2]), x)
    h = flow.zero_conv_forward(z1, W, b, logs)[0]
    np.testing.assert_allclose(log_prior, gaussian_naive(z2, h[0::2], h[1::2]), rtol=1e-13)
    dz1, dz2, g = upstream(rng, z1.shape), upstream(rng, z2.shape), upstream(rng, (2,))
    dx, dW, db, dlogs = flow.split_backward(dz1, dz2, g, cache)

    def loss():
        z1, z2, log_prior, _ = flow.split_forward(x, W, b, logs)
        return np.sum(dz1 * z1) + np.sum(dz2 * z2) + np.sum(g * log_prior)

    check_gradients("split", loss, {"x": x, "W": W, "b": b, "logs": logs},
                    {"x": dx, "W": dW, "b": db, "logs": dlogs})


def test_split_starts_as_a_standard_normal_prior(rng):
    layer = flow.Split(6, dtype=np.float64)
    x = rng.standard_normal((6, 2, 2, 3))
    z1, z2, log_prior = layer.forward(x)
    np.testing.assert_allclose(log_prior, gaussian.standard_normal_log_likelihood(z2),
                               rtol=1e-14)
    np.testing.assert_array_equal(layer.inverse(z1, z2), x)
