"""Batch-norm semantics: running statistics, eval mode, and train()/eval() propagation.

The expected running statistics are computed by hand with np.mean and
np.var(ddof=1) per channel, from the framework convention: momentum 0.1,
unbiased running variance, eps 1e-5, running_mean starting at 0 and
running_var at 1. Arrays are batch last: the channel axis is axis 0, maps
(C, H, W, N) and features (C, N).
"""
import numpy as np
import pytest

import nn

# Every test runs twice: serial, and with every op split into blocks (conftest.py), except
# those marked no_split (they only set up layers and run no batch norm).
pytestmark = pytest.mark.usefixtures("cores_mode")


def per_channel(x):
    """(C, M) matrix: row c holds all H*W*N (or N) values of channel c = x[c]."""
    return np.stack([x[c].ravel() for c in range(x.shape[0])])


def make_bn(ndim, C, dtype=np.float64):
    return nn.BatchNorm2d(C, dtype=dtype) if ndim == 4 else nn.BatchNorm1d(C, dtype=dtype)


SHAPES = [(3, 6), (3, 2, 5, 3)]
IDS = ["BatchNorm1d", "BatchNorm2d"]


@pytest.mark.no_split
def test_defaults():
    bn = nn.BatchNorm2d(4)
    assert bn.momentum == 0.1 and bn.eps == 1e-5
    np.testing.assert_array_equal(bn.running_mean, np.zeros(4))
    np.testing.assert_array_equal(bn.running_var, np.ones(4))
    np.testing.assert_array_equal(bn.params["gamma"], np.ones(4))
    np.testing.assert_array_equal(bn.params["beta"], np.zeros(4))
    assert bn.training


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_one_training_forward_updates_running_statistics(xp, rng, shape):
    x = rng.standard_normal(shape) * 2.0 + 3.0
    bn = make_bn(len(shape), shape[0])
    if xp is not np:
        bn.to("gpu")
    bn.forward(xp.asarray(x))
    values = per_channel(x)
    expected_mean = 0.9 * 0.0 + 0.1 * values.mean(axis=1)
    expected_var = 0.9 * 1.0 + 0.1 * values.var(axis=1, ddof=1)
    np.testing.assert_allclose(nn.to_numpy(bn.running_mean), expected_mean, rtol=1e-12)
    np.testing.assert_allclose(nn.to_numpy(bn.running_var), expected_var, rtol=1e-12)


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_running_statistics_compound_over_steps(rng, shape):
    bn = make_bn(len(shape), shape[0])
    mean, var = np.zeros(shape[0]), np.ones(shape[0])
    for _ in range(3):
        x = rng.standard_normal(shape) * 0.5 - 1.0
        bn.forward(x)
        values = per_channel(x)
        mean = 0.9 * mean + 0.1 * values.mean(axis=1)
        var = 0.9 * var + 0.1 * values.var(axis=1, ddof=1)
    np.testing.assert_allclose(bn.running_mean, mean, rtol=1e-12)
    np.testing.assert_allclose(bn.running_var, var, rtol=1e-12)


def test_running_statistics_keep_float32(rng):
    bn = nn.BatchNorm2d(3)
    x = (rng.standard_normal((3, 3, 3, 4)) * 2.0 + 3.0).astype(np.float32)
    bn.forward(x)
    assert bn.running_mean.dtype == np.float32 and bn.running_var.dtype == np.float32
    values = per_channel(x.astype(np.float64))
    np.testing.assert_allclose(bn.running_var, 0.9 + 0.1 * values.var(axis=1, ddof=1), rtol=1e-5)


def test_custom_momentum(rng):
    bn = nn.BatchNorm1d(2, momentum=0.25, dtype=np.float64)
    x = rng.standard_normal((2, 5))                 # (C, N)
    bn.forward(x)
    np.testing.assert_allclose(bn.running_mean, 0.25 * x.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(bn.running_var, 0.75 + 0.25 * x.var(axis=1, ddof=1), rtol=1e-12)


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_eval_uses_running_statistics_and_leaves_them_alone(xp, rng, shape):
    C = shape[0]
    bn = make_bn(len(shape), C)
    gamma, beta = rng.standard_normal(C), rng.standard_normal(C)
    r_mean, r_var = rng.standard_normal(C), rng.uniform(1e-5, 3.0, C)
    bn.params["gamma"][...], bn.params["beta"][...] = gamma, beta
    bn.buffers["running_mean"][...], bn.buffers["running_var"][...] = r_mean, r_var
    if xp is not np:
        bn.to("gpu")
    bn.eval()
    x = rng.standard_normal(shape)
    y = nn.to_numpy(bn.forward(xp.asarray(x)))
    bshape = (C,) + (1,) * (len(shape) - 1)
    expected = (gamma.reshape(bshape) * (x - r_mean.reshape(bshape))
                / np.sqrt(r_var.reshape(bshape) + 1e-5) + beta.reshape(bshape))
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(nn.to_numpy(bn.running_mean), r_mean)
    np.testing.assert_array_equal(nn.to_numpy(bn.running_var), r_var)


def test_eval_treats_each_sample_alone(rng):
    bn = nn.BatchNorm2d(3, dtype=np.float64)
    for _ in range(4):
        bn.forward(rng.standard_normal((3, 3, 3, 4)) + 1.0)
    bn.eval()
    x = rng.standard_normal((3, 3, 3, 4))
    batch = bn.forward(x)
    for n in range(4):            # a single sample is fine in eval, and gives the same values
        one = np.ascontiguousarray(x[..., n:n + 1])
        np.testing.assert_allclose(bn.forward(one)[..., 0], batch[..., n], rtol=1e-13)


def test_training_output_is_normalized_per_channel(rng):
    bn = nn.BatchNorm2d(3, dtype=np.float64)
    y = bn.forward(rng.standard_normal((3, 5, 3, 4)) * 4.0 + 2.0)
    values = per_channel(y)
    np.testing.assert_allclose(values.mean(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(values.var(axis=1), 1.0, rtol=1e-5)   # eps makes it a hair under


def test_training_mode_needs_more_than_one_value_per_channel():
    with pytest.raises(ValueError, match="more than one value"):
        nn.BatchNorm1d(3).forward(np.ones((3, 1), dtype=np.float32))
    nn.BatchNorm1d(3).eval().forward(np.ones((3, 1), dtype=np.float32))   # fine in eval


@pytest.mark.no_split
def test_train_and_eval_propagate_through_sequential():
    inner = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.Flatten(), inner)
    modules = [model, *model.layers, *inner.layers]
    assert model.eval() is model
    assert not any(m.training for m in modules)
    assert model.train() is model
    assert all(m.training for m in modules)
    model.train(False)
    assert not any(m.training for m in modules)


def test_sequential_eval_forward_uses_running_statistics(rng):
    model = nn.Sequential(nn.Linear(4, 3, rng=rng, dtype=np.float64),
                          nn.BatchNorm1d(3, dtype=np.float64))
    x = rng.standard_normal((4, 5))                 # (features, N)
    model.forward(x)
    mean, var = model.buffers["1.running_mean"].copy(), model.buffers["1.running_var"].copy()
    model.eval()
    y = model.forward(x)
    h = model.params["0.W"] @ x + model.params["0.b"][:, None]
    np.testing.assert_allclose(y, (h - mean[:, None]) / np.sqrt(var[:, None] + 1e-5),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(model.buffers["1.running_mean"], mean)
