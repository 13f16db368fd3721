"""Dropout (mask, scaling, train/eval) and ReLU: values against their definitions, gradients
against central differences (gradcheck.py)."""
import numpy as np
import pytest
from gradcheck import away_from_zero, check_gradients, upstream

import nn
from nn import activations
from nn.dropout import Dropout, draw_seed, dropout_backward, dropout_forward, keep_mask
from nn.random import SeededUniform


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_mask_values_and_kept_fraction(p):
    shape = (8, 25, 25, 40)                     # 200,000 draws
    m = keep_mask(SeededUniform()(0, shape, np, np.float32), p)
    assert m.shape == shape and m.dtype == np.float32
    scale = np.float32(1 / (1 - p))
    assert set(np.unique(m)) == {np.float32(0), scale}      # dropped, or kept and scaled
    kept = np.mean(m > 0)
    assert abs(kept - (1 - p)) < 5 * np.sqrt(p * (1 - p) / m.size)
    assert abs(m.mean(dtype=np.float64) - 1) < 5 * np.sqrt(p / (1 - p) / m.size)  # E[m] = 1


def test_mask_is_its_uniforms_thresholded(rng):
    u = rng.random((3, 4, 5, 2))
    np.testing.assert_array_equal(keep_mask(u, 0.3), np.where(u >= 0.3, 1 / 0.7, 0.0))
    assert keep_mask(u.astype(np.float32), 0.3).dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_seeded_uniform_repeats_a_seed_and_draws_in_the_dtype_asked(dtype):
    uniform = SeededUniform()
    a, b = uniform(5, (6, 7), np, dtype), uniform(5, (6, 7), np, dtype)
    assert a.dtype == dtype and a.shape == (6, 7) and 0 <= a.min() and a.max() < 1
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, uniform(6, (6, 7), np, dtype))


def test_seeded_uniform_keeps_one_device_generator_and_reseeds_it():
    # CuPy: one cupy.random.RandomState (Philox) for all draws of a SeededUniform, reseeded
    # per draw (tests/cupy_standin.py counts the generators created). The stand-in's draws
    # for a seed are NumPy's, so the two devices agree there.
    import cupy_standin
    uniform = SeededUniform()
    with cupy_standin.installed() as cp:
        with cupy_standin.counting() as c:
            draws = [uniform(seed, (4, 5), cp, np.float32) for seed in (1, 2, 1)]
        assert c.generators == 1 and c.host_reads == 0 and c.float64_arrays == 0
        assert all(isinstance(d, cp.ndarray) and d.dtype == np.float32 for d in draws)
        np.testing.assert_array_equal(cp.asnumpy(draws[0]), cp.asnumpy(draws[2]))
        np.testing.assert_array_equal(cp.asnumpy(draws[0]), uniform(1, (4, 5), np, np.float32))


def test_dropout_forward_backward_use_the_mask(rng):
    x = rng.standard_normal((3, 4, 5, 2))
    mask = keep_mask(rng.random(x.shape), 0.4)
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
    seed = draw_seed(np.random.default_rng(11))         # its first mask's seed
    expected = keep_mask(SeededUniform()(seed, x.shape, np, x.dtype), 0.5)
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
        keep_mask(np.zeros(2), -0.1)


def test_dropout_on_the_device_draws_there(xp):
    x = xp.asarray(np.ones((3, 4, 2), dtype=np.float32))
    y = Dropout(0.5, rng=np.random.default_rng(0)).forward(x)
    assert nn.get_array_module(y) is xp and y.dtype == np.float32
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
