"""Every backward pass against central differences, in float64, every element.

Each check uses L = sum(dy * f(x)) with a random upstream gradient dy (an
all-ones dy makes the batch-norm input gradient vanish whatever the bug) and
compares d L / d(every input and parameter). Arrays are batch last (maps
(C, H, W, N), features (F, N), nn/layout.py). Shapes are tiny and odd; inputs
of the piecewise-linear ops are kept far (>> eps) from kinks and ties.
The pure functions run twice: the formulas (nn/conv.py, ...) and their speed
path (nn/fast/), the ``ops`` fixture. The measure and the tolerance are in
gradcheck.py.
"""
import numpy as np
import pytest
from gradcheck import (away_from_zero, check_directional, check_gradients, distinct_values,
                       upstream)

import nn
from nn import losses, upsample
from nn.fast import linear as fast_linear

# Every test runs twice: serial, and with every op split into blocks (conftest.py), except
# those marked no_split (upsampling, the loss and flatten never call nn.cpu.parallel) and
# the larger conv kernels, marked split_covered_by (below).
pytestmark = pytest.mark.usefixtures("cores_mode")

# The split runs of the 3 x 3 and 5 x 5 kernels reached no call site or branch of
# nn.cpu.parallel, and no line of the blocks it runs (im2col's bands of output rows,
# col2im's blocks of channels), that those of the 1 x 1 and 2 x 2 kernels (every padding
# and stride) and the other split runs of this file do not; they run serially only.
LARGER_KERNEL = pytest.mark.split_covered_by(
    "test_conv2d_gradients[split-fast-1-*], test_conv2d_gradients[split-fast-2-*], "
    "test_conv2d_gradients_random_direction_larger_shape[split-fast], "
    "test_module_gradients[split-*], test_network_gradients[split-*]")


# ---- pure functions ---------------------------------------------------------------------

@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("padding", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 2, pytest.param(3, marks=LARGER_KERNEL),
                               pytest.param(5, marks=LARGER_KERNEL)])
def test_conv2d_gradients(rng, ops, k, padding, stride):
    x = rng.standard_normal((3, 7, 5, 2))          # C = 3, odd non-square H x W, N = 2
    W = rng.standard_normal((5, 3, k, k))           # O = 5
    b = rng.standard_normal(5)
    y, cache = ops.conv.conv2d_forward(x, W, b, padding, stride)
    dy = upstream(rng, y.shape)
    dx, dW, db = ops.conv.conv2d_backward(dy, cache)

    def loss():
        return np.sum(dy * ops.conv.conv2d_forward(x, W, b, padding, stride)[0])

    check_gradients(f"conv2d {ops.name}", loss, {"x": x, "W": W, "b": b},
                    {"x": dx, "W": dW, "b": db})


def test_conv2d_gradients_random_direction_larger_shape(rng, ops):
    x = rng.standard_normal((4, 13, 11, 3))
    W = rng.standard_normal((6, 4, 3, 3))
    b = rng.standard_normal(6)
    y, cache = ops.conv.conv2d_forward(x, W, b, 1, 2)
    dy = upstream(rng, y.shape)
    dx, dW, db = ops.conv.conv2d_backward(dy, cache)

    def loss():
        return np.sum(dy * ops.conv.conv2d_forward(x, W, b, 1, 2)[0])

    check_directional(f"conv2d {ops.name} (random direction)", loss, {"x": x, "W": W, "b": b},
                      {"x": dx, "W": dW, "b": db}, rng)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", [(3, 5), (3, 3, 5, 3)], ids=["CN", "CHWN"])
def test_batchnorm_gradients(rng, ops, shape, train):
    C = shape[0]
    x = rng.standard_normal(shape) * 2.0 + 0.5
    gamma = rng.uniform(0.5, 1.5, C) * rng.choice([-1.0, 1.0], C)
    beta = rng.standard_normal(C)
    running_mean = rng.standard_normal(C)
    running_var = rng.uniform(0.5, 2.0, C)

    def forward():
        # Fresh copies: the training forward updates the running statistics in place.
        return ops.batchnorm.batchnorm_forward(x, gamma, beta, running_mean.copy(),
                                           running_var.copy(), train)

    y, cache = forward()
    dy = upstream(rng, y.shape)
    dx, dgamma, dbeta = ops.batchnorm.batchnorm_backward(dy, cache)

    def loss():
        return np.sum(dy * forward()[0])

    check_gradients(f"batchnorm {ops.name} {len(shape)}-D {'train' if train else 'eval'}", loss,
                    {"x": x, "gamma": gamma, "beta": beta},
                    {"x": dx, "gamma": dgamma, "beta": dbeta})


@pytest.mark.parametrize("slope", [0.2, 0.01])
def test_leaky_relu_gradients(rng, ops, slope):
    x = away_from_zero(rng, (3, 4, 5))
    y, cache = ops.activations.leaky_relu_forward(x, slope)
    dy = upstream(rng, y.shape)
    dx = ops.activations.leaky_relu_backward(dy, cache, slope)

    def loss():
        return np.sum(dy * ops.activations.leaky_relu_forward(x, slope)[0])

    check_gradients(f"leaky_relu {ops.name}", loss, {"x": x}, {"x": dx})


@pytest.mark.parametrize("shape", [(3, 4, 6, 2), (3, 5, 7, 2), (2, 3, 2, 1)])
def test_maxpool_gradients(rng, ops, shape):
    x = distinct_values(rng, shape)
    y, cache = ops.pooling.maxpool2x2_forward(x)
    dy = upstream(rng, y.shape)
    dx = ops.pooling.maxpool2x2_backward(dy, cache)

    def loss():
        return np.sum(dy * ops.pooling.maxpool2x2_forward(x)[0])

    check_gradients(f"maxpool2x2 {ops.name}", loss, {"x": x}, {"x": dx})


def test_linear_gradients(rng, ops):
    x = rng.standard_normal((5, 4))                 # (in, N)
    W = rng.standard_normal((3, 5))
    b = rng.standard_normal(3)
    y, cache = ops.linear.linear_forward(x, W, b)
    dy = upstream(rng, y.shape)
    dx, dW, db = ops.linear.linear_backward(dy, cache, W)

    def loss():
        return np.sum(dy * ops.linear.linear_forward(x, W, b)[0])

    check_gradients(f"linear {ops.name}", loss, {"x": x, "W": W, "b": b},
                    {"x": dx, "W": dW, "b": db})


def test_stacked_linear_gradients(rng):
    """The speed path's stack of 3 linear layers (ifm/stacked.py runs D's layers so)."""
    x = rng.standard_normal((3, 5, 4))              # (G, in, N)
    W = rng.standard_normal((3, 3, 5))
    b = rng.standard_normal((3, 3))
    y, cache = fast_linear.linear_forward(x, W, b)
    dy = upstream(rng, y.shape)
    dx, dW, db = fast_linear.linear_backward(dy, cache, W)

    def loss():
        return np.sum(dy * fast_linear.linear_forward(x, W, b)[0])

    check_gradients("linear fast, stack of 3", loss, {"x": x, "W": W, "b": b},
                    {"x": dx, "W": dW, "b": db})


@pytest.mark.no_split
def test_softmax_cross_entropy_gradient(rng):
    logits = rng.standard_normal((7, 5)) * 3.0      # K = 7 classes, N = 5 samples
    labels = rng.integers(0, 7, size=5)
    _, dlogits = losses.softmax_cross_entropy(logits, labels)

    def loss():
        return losses.softmax_cross_entropy(logits, labels)[0]

    check_gradients("softmax_cross_entropy", loss, {"logits": logits}, {"logits": dlogits})


@pytest.mark.no_split
@pytest.mark.parametrize("factor", [2, 3])
@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_upsample_gradients(rng, mode, factor):
    x = rng.standard_normal((3, 3, 5, 2))
    if mode == "nearest":
        def forward():
            return upsample.nearest_upsample_forward(x, factor)
        y = forward()
        dy = upstream(rng, y.shape)
        dx = upsample.nearest_upsample_backward(dy, factor)
    else:
        def forward():
            return upsample.bilinear_upsample_forward(x, factor)
        y = forward()
        dy = upstream(rng, y.shape)
        dx = upsample.bilinear_upsample_backward(dy, factor, x.shape)

    def loss():
        return np.sum(dy * forward())

    check_gradients(f"upsample {mode}", loss, {"x": x}, {"x": dx})


# ---- layer objects (the same math through the classes that hold the parameters) -----------

def check_module(name, module, x, rng):
    """Gradient check of a module wrt its input and every parameter it owns."""
    y = module.forward(x)
    dy = upstream(rng, y.shape)
    dx = module.backward(dy)
    keys = list(module.params)
    assert list(module.grads) == keys
    wrt = {"x": x, **{k: module.params[k] for k in keys}}
    analytic = {"x": dx, **{k: module.grads[k] for k in keys}}

    def loss():
        return np.sum(dy * module.forward(x))

    return check_gradients(name, loss, wrt, analytic)


def with_running_stats(bn, rng):
    C = bn.params["gamma"].shape[0]
    bn.params["gamma"][...] = rng.uniform(0.5, 1.5, C)
    bn.params["beta"][...] = rng.standard_normal(C)
    bn.buffers["running_mean"][...] = rng.standard_normal(C)
    bn.buffers["running_var"][...] = rng.uniform(0.5, 2.0, C)
    return bn


F64 = np.float64
MODULES = {
    "Conv2d": lambda r: (nn.Conv2d(3, 5, 3, padding=1, stride=2, rng=r, dtype=F64),
                         r.standard_normal((3, 5, 6, 2))),
    "Linear": lambda r: (nn.Linear(5, 3, rng=r, dtype=F64), r.standard_normal((5, 4))),
    "BatchNorm1d train": lambda r: (with_running_stats(nn.BatchNorm1d(3, dtype=F64), r),
                                    r.standard_normal((3, 6))),
    "BatchNorm1d eval": lambda r: (with_running_stats(nn.BatchNorm1d(3, dtype=F64), r).eval(),
                                   r.standard_normal((3, 6))),
    "BatchNorm2d train": lambda r: (with_running_stats(nn.BatchNorm2d(3, dtype=F64), r),
                                    r.standard_normal((3, 3, 5, 2))),
    "BatchNorm2d eval": lambda r: (with_running_stats(nn.BatchNorm2d(3, dtype=F64), r).eval(),
                                   r.standard_normal((3, 3, 5, 2))),
    "LeakyReLU": lambda r: (nn.LeakyReLU(0.2), away_from_zero(r, (3, 3, 5, 2))),
    "MaxPool2d": lambda r: (nn.MaxPool2d(2), distinct_values(r, (3, 5, 7, 2))),
    "Upsample nearest": lambda r: (nn.Upsample(3, "nearest"), r.standard_normal((2, 3, 5, 2))),
    "Upsample bilinear": lambda r: (nn.Upsample(2, "bilinear"), r.standard_normal((2, 3, 5, 2))),
    "Flatten": lambda r: (nn.Flatten(), r.standard_normal((3, 3, 5, 2))),
}
# Layers whose code never calls nn.cpu.parallel: their split reruns are dropped (conftest.py).
SERIAL_ONLY = {"Upsample nearest", "Upsample bilinear", "Flatten"}


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.no_split)
                                  if name in SERIAL_ONLY else name for name in MODULES])
def test_module_gradients(rng, name):
    module, x = MODULES[name](rng)
    check_module(f"module {name}", module, x, rng)


# ---- a whole network ---------------------------------------------------------------------

def build_network(rng, dtype=np.float64):
    """conv-bn-lrelu-pool-flatten-linear on (3, 6, 7, N) inputs, 5 classes."""
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, rng=rng, dtype=dtype),
        nn.BatchNorm2d(4, dtype=dtype),
        nn.LeakyReLU(0.2),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 3 * 3, 5, rng=rng, dtype=dtype),
    )
    model.params["0.b"] = rng.standard_normal(4).astype(dtype)
    model.params["1.gamma"] = rng.uniform(0.5, 1.5, 4).astype(dtype)
    model.params["1.beta"] = (0.3 * rng.standard_normal(4)).astype(dtype)
    return model


def min_margins(model, x):
    """Smallest |pre-activation| and smallest gap between a pool window's top two values."""
    z = model[1].forward(model[0].forward(x))
    a = model[2].forward(z)
    C, H, W, N = a.shape
    win = a[:, :H // 2 * 2, :W // 2 * 2].reshape(C, H // 2, 2, W // 2, 2, N)
    win = np.sort(win.transpose(0, 1, 3, 5, 2, 4).reshape(C, H // 2, W // 2, N, 4), axis=-1)
    return np.abs(z).min(), (win[..., 3] - win[..., 2]).min()


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_network_gradients(mode):
    # Resample until no pre-activation is near the leaky-ReLU kink and no pool window
    # is near a tie: a perturbation of 1e-6 must not change which branch is taken.
    for seed in range(50):
        rng = np.random.default_rng(seed)
        model = build_network(rng)
        x = rng.standard_normal((3, 6, 7, 4))
        labels = rng.integers(0, 5, size=4)
        if mode == "eval":
            for _ in range(3):          # non-trivial running statistics, then freeze them
                model.forward(rng.standard_normal(x.shape) + 0.5)
            model.eval()
        if min(min_margins(model, x)) > 1e-3:
            break
    else:
        pytest.fail("no seed gave inputs away from kinks and ties")
    assert all(layer.training == (mode == "train") for layer in model.layers)

    def loss():
        return losses.softmax_cross_entropy(model.forward(x), labels)[0]

    _, dlogits = losses.softmax_cross_entropy(model.forward(x), labels)
    dx = model.backward(dlogits)
    wrt = {"x": x, **{k: model.params[k] for k in model.params}}
    analytic = {"x": dx, **{k: model.grads[k] for k in model.params}}
    assert set(model.grads) == set(model.params)
    # Training-mode batch norm subtracts the batch mean, so the conv bias right before
    # it has no effect on the loss: its gradient is zero in exact arithmetic.
    zero = ("0.b",) if mode == "train" else ()
    errors = check_gradients(f"Sequential network ({mode})", loss, wrt, analytic, zero=zero)
    assert set(errors) == set(wrt) - set(zero)
