"""The speed path (nn/fast/) against the formulas (nn/conv.py, ...), in float64.

Each fast function must give its formula's results (outputs, every gradient,
batch norm's running statistics) to rounding, serial and split into blocks
(``cores_mode``), and write each parameter gradient into the array it is
given. Shapes are small and odd; the gradient checks and loop references of
both are in test_nn_gradients.py and test_nn_forward.py.
"""
import numpy as np
import pytest

from nn import activations, batchnorm, conv, linear, pooling
from nn.fast import activations as fast_activations
from nn.fast import batchnorm as fast_batchnorm
from nn.fast import conv as fast_conv
from nn.fast import linear as fast_linear
from nn.fast import pooling as fast_pooling

pytestmark = pytest.mark.usefixtures("cores_mode")


def assert_close(got, expected):
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12)


def into(shape):
    """A destination filled with NaN: a gradient must overwrite every element."""
    return np.full(shape, np.nan)


@pytest.mark.parametrize("k, padding, stride", [(3, 1, 1), (2, 0, 2), (3, 2, 2)])
def test_conv(rng, k, padding, stride):
    x, w, b = (rng.standard_normal((3, 7, 5, 2)), rng.standard_normal((4, 3, k, k)),
               rng.standard_normal(4))
    y, cache = conv.conv2d_forward(x, w, b, padding, stride)
    fast_y, fast_cache = fast_conv.conv2d_forward(x, w, b, padding, stride)
    dy = rng.standard_normal(y.shape)
    dw, db = into(w.shape), into(b.shape)
    got = fast_conv.conv2d_backward(dy, fast_cache, dw=dw, db=db)
    assert got[1] is not None and np.shares_memory(got[1], dw) and got[2] is db
    assert_close((fast_y, *got), (y, *conv.conv2d_backward(dy, cache)))
    dx, dw_only, _ = fast_conv.conv2d_backward(dy, fast_cache, input_grad=False)
    assert dx is None
    np.testing.assert_array_equal(dw_only, dw)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", [(3, 7), (5, 3, 4, 2)], ids=["CN", "CHWN"])
def test_batchnorm(rng, shape, train):
    C = shape[0]
    x = rng.standard_normal(shape) * 2.0 + 0.5
    gamma, beta = rng.uniform(0.5, 1.5, C), rng.standard_normal(C)
    stats = rng.standard_normal(C), rng.uniform(0.5, 2.0, C)
    plain_stats, fast_stats = [s.copy() for s in stats], [s.copy() for s in stats]
    y, cache = batchnorm.batchnorm_forward(x, gamma, beta, *plain_stats, train)
    fast_y, fast_cache = fast_batchnorm.batchnorm_forward(x, gamma, beta, *fast_stats, train)
    dy = rng.standard_normal(shape)
    dgamma, dbeta = into(C), into(C)
    got = fast_batchnorm.batchnorm_backward(dy, fast_cache, dgamma=dgamma, dbeta=dbeta)
    assert got[1] is dgamma and got[2] is dbeta
    assert_close((fast_y, *got, *fast_stats),
                 (y, *batchnorm.batchnorm_backward(dy, cache), *plain_stats))


def test_linear(rng):
    x, W, b = rng.standard_normal((5, 4)), rng.standard_normal((3, 5)), rng.standard_normal(3)
    y, _ = linear.linear_forward(x, W, b)
    fast_y, _ = fast_linear.linear_forward(x, W, b)
    dy = rng.standard_normal(y.shape)
    dW, db = into(W.shape), into(b.shape)
    got = fast_linear.linear_backward(dy, x, W, dW=dW, db=db)
    assert got[1] is dW and got[2] is db
    assert_close((fast_y, *got), (y, *linear.linear_backward(dy, x, W)))


def test_a_stack_of_linear_layers_is_each_member_alone(rng):
    x, W, b = (rng.standard_normal((3, 5, 4)), rng.standard_normal((3, 2, 5)),
               rng.standard_normal((3, 2)))
    y, _ = fast_linear.linear_forward(x, W, b)
    dy = rng.standard_normal(y.shape)
    got = fast_linear.linear_backward(dy, x, W)
    for g in range(3):
        member = linear.linear_forward(x[g], W[g], b[g])[0], *linear.linear_backward(
            dy[g], x[g], W[g])
        assert_close((y[g], *(a[g] for a in got)), member)


@pytest.mark.parametrize("slope", [0.2, 0.0])
def test_leaky_relu_and_relu(rng, slope):
    x = rng.standard_normal((4, 3, 5, 2))
    dy = rng.standard_normal(x.shape)
    if slope:
        y, cache = activations.leaky_relu_forward(x, slope)
        fast_y, fast_cache = fast_activations.leaky_relu_forward(x, slope)
        dx = activations.leaky_relu_backward(dy, cache, slope)
        fast_dx = fast_activations.leaky_relu_backward(dy, fast_cache, slope)
    else:
        y, cache = activations.relu_forward(x)
        fast_y, fast_cache = fast_activations.relu_forward(x)
        dx, fast_dx = activations.relu_backward(dy, cache), fast_activations.relu_backward(
            dy, fast_cache)
    assert_close((fast_y, fast_dx), (y, dx))


@pytest.mark.parametrize("shape", [(3, 4, 6, 2), (3, 5, 7, 2)])
def test_maxpool_with_ties(rng, shape):
    x = rng.integers(0, 3, shape).astype(np.float64)     # many ties: the first tap wins
    y, cache = pooling.maxpool2x2_forward(x)
    fast_y, fast_cache = fast_pooling.maxpool2x2_forward(x)
    dy = rng.standard_normal(y.shape)
    assert_close((fast_y, fast_pooling.maxpool2x2_backward(dy, fast_cache)),
                 (y, pooling.maxpool2x2_backward(dy, cache)))
