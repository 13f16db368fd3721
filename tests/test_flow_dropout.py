"""Dropout (mask, scaling, train/eval) and ReLU: values against their definitions, gradients
against central differences (gradcheck.py)."""
import numpy as np
import pytest
from gradcheck import away_from_zero, check_gradients, upstream

import nn
from nn import activations
from nn.dropout import Dropout, dropout_backward, dropout_forward, keep_mask


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_mask_values_and_kept_fraction(p):
    shape = (8, 25, 25, 40)                     # 200,000 draws
    m = keep_mask(shape, p, np.random.default_rng(0), np, np.float32)
    assert m.shape == shape and m.dtype == np.float32
    scale = np.float32(1 / (1 - p))
    assert set(np.unique(m)) == {np.float32(0), scale}      # dropped, or kept and scaled
    kept = np.mean(m > 0)
    assert abs(kept - (1 - p)) < 5 * np.sqrt(p * (1 - p) / m.size)
    assert abs(m.mean(dtype=np.float64) - 1) < 5 * np.sqrt(p / (1 - p) / m.size)  # E[m] = 1


def test_mask_from_a_generator_is_its_uniforms_thresholded():
    shape = (3, 4, 5, 2)
    m = keep_mask(shape, 0.3, np.random.default_rng(7))
    u = np.random.default_rng(7).random(shape)
    np.testing.assert_array_equal(m, np.where(u >= 0.3, 1 / 0.7, 0.0))


def test_mask_from_an_array_modules_random_state():
    # The device path: the uniforms of xp.random.RandomState(seed) (numpy's here).
    m = keep_mask((6, 7), 0.25, np.random.RandomState(3), np)
    u = np.random.RandomState(3).random_sample((6, 7))
    np.testing.assert_array_equal(m, np.where(u >= 0.25, 1 / 0.75, 0.0))


def test_dropout_forward_backward_use_the_mask(rng):
    x = rng.standard_normal((3, 4, 5, 2))
    mask = keep_mask(x.shape, 0.4, rng)
    y, cache = dropout_forward(x, mask)
    np.testing.assert_array_equal(y, x * mask)
    dy = upstream(rng, y.shape)
    np.testing.assert_array_equal(dropout_backward(dy, cache), dy * mask)

    def loss():
        return np.sum(dy * dropout_forward(x, mask)[0])

    check_gradients("dropout", loss, {"x": x}, {"x": dropout_backward(dy, cache)})


def test_dropout_module_train_and_eval(rng):
    x = rng.standard_normal((4, 3, 3, 5))
    layer = Dropout(0.5, rng=np.random.default_rng(11))
    y = layer.forward(x)
    expected = keep_mask(x.shape, 0.5, np.random.default_rng(11))
    np.testing.assert_array_equal(y, x * expected)
    dy = rng.standard_normal(x.shape)
    np.testing.assert_array_equal(layer.backward(dy), dy * expected)
    assert not np.array_equal(layer.forward(x), y)        # a new mask each forward
    layer.eval()
    assert layer.forward(x) is x and layer.backward(dy) is dy
    assert Dropout(0.0).forward(x) is x


def test_dropout_refuses_p_outside_0_1():
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(1.0)
    with pytest.raises(ValueError, match="dropout probability"):
        keep_mask((2,), -0.1)


def test_dropout_on_the_device_draws_there(xp):
    x = xp.asarray(np.ones((3, 4, 2)))
    layer = Dropout(0.5)                    # rng None: xp.random
    y = layer.forward(x)
    assert nn.get_array_module(y) is xp
    values = set(np.unique(nn.to_numpy(y)))
    assert values <= {0.0, 2.0}


def test_relu_values_and_gradient(rng):
    x = away_from_zero(rng, (3, 4, 5, 2))
    y, cache = activations.relu_forward(x)
    np.testing.assert_array_equal(y, np.where(x > 0, x, 0.0))
    dy = upstream(rng, y.shape)
    dx = activations.relu_backward(dy, cache)

    def loss():
        return np.sum(dy * activations.relu_forward(x)[0])

    check_gradients("relu", loss, {"x": x}, {"x": dx})
    assert activations.relu_forward(x.astype(np.float32))[0].dtype == np.float32
