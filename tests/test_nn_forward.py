"""Forward passes against loop-based references, on NumPy and (when present) CuPy.

The ops run twice: the formulas (nn/conv.py, ...) and their speed path (nn/fast/),
the ``ops`` fixture.

Every ``*_naive`` function below is written from the textbook definition with
explicit Python loops over pixels, in the library's batch-last layout (maps
x[c, i, j, n], features and logits z[k, n]), and shares no code with nn/. They
are slow and only ever see tiny inputs.
"""
import math

import numpy as np
import pytest

import nn
from nn import losses, upsample

# Every test runs twice: serial, and with every op split into blocks (conftest.py), except
# those marked no_split (upsampling, the loss and flatten never call nn.cpu.parallel, and
# one channel is never cut into blocks).
pytestmark = pytest.mark.usefixtures("cores_mode")


def on(xp, *arrays):
    return [xp.asarray(a) for a in arrays]


def host(a):
    return nn.to_numpy(a)


# ---- naive references (batch last: maps (C, H, W, N), logits (K, N)) ----------------------

def conv2d_naive(x, W, b, padding, stride):
    C, H, Wd, N = x.shape
    O, _, k, _ = W.shape
    Ho = (H + 2 * padding - k) // stride + 1
    Wo = (Wd + 2 * padding - k) // stride + 1
    y = np.zeros((O, Ho, Wo, N))
    for n in range(N):
        for o in range(O):
            for i in range(Ho):
                for j in range(Wo):
                    total = b[o]
                    for c in range(C):
                        for u in range(k):
                            for v in range(k):
                                r, s = i * stride + u - padding, j * stride + v - padding
                                if 0 <= r < H and 0 <= s < Wd:   # outside: zero padding
                                    total += W[o, c, u, v] * x[c, r, s, n]
                    y[o, i, j, n] = total
    return y


def maxpool2x2_naive(x):
    C, H, W, N = x.shape
    y = np.zeros((C, H // 2, W // 2, N))
    for n in range(N):
        for c in range(C):
            for i in range(H // 2):
                for j in range(W // 2):
                    y[c, i, j, n] = max(x[c, 2 * i + u, 2 * j + v, n]
                                        for u in range(2) for v in range(2))
    return y


def nearest_naive(x, s):
    C, H, W, N = x.shape
    y = np.zeros((C, H * s, W * s, N))
    for n in range(N):
        for c in range(C):
            for i in range(H * s):
                for j in range(W * s):
                    y[c, i, j, n] = x[c, i // s, j // s, n]
    return y


def bilinear_naive(x, s):
    """The per-pixel half-pixel formula (align_corners=False), as the frameworks write it:
    src = (dst + 0.5) / s - 0.5, negative src clamped to 0, the upper neighbour clamped
    to the last row/column, weights 1 - lambda and lambda."""
    C, H, W, N = x.shape

    def source(dst, size):
        src = max((dst + 0.5) / s - 0.5, 0.0)
        lo = min(int(math.floor(src)), size - 1)
        hi = min(lo + 1, size - 1)
        return lo, hi, src - lo

    y = np.zeros((C, H * s, W * s, N))
    for n in range(N):
        for c in range(C):
            for i in range(H * s):
                r0, r1, ly = source(i, H)
                for j in range(W * s):
                    c0, c1, lx = source(j, W)
                    y[c, i, j, n] = ((1 - ly) * ((1 - lx) * x[c, r0, c0, n] + lx * x[c, r0, c1, n])
                                     + ly * ((1 - lx) * x[c, r1, c0, n] + lx * x[c, r1, c1, n]))
    return y


def batchnorm_train_naive(x, gamma, beta, eps=1e-5):
    """Per-channel loops: the mean and biased variance of all values of channel c = x[c]
    (H*W*N of a map, N of a feature)."""
    y = np.zeros_like(x)
    for c in range(x.shape[0]):
        values = [float(v) for v in x[c].ravel()]
        mean = sum(values) / len(values)
        var = sum((v - mean) ** 2 for v in values) / len(values)
        y[c] = gamma[c] * (x[c] - mean) / math.sqrt(var + eps) + beta[c]
    return y


def batchnorm_eval_naive(x, gamma, beta, running_mean, running_var, eps=1e-5):
    y = np.zeros_like(x)
    for c in range(x.shape[0]):
        y[c] = gamma[c] * (x[c] - running_mean[c]) / math.sqrt(running_var[c] + eps) + beta[c]
    return y


def softmax_cross_entropy_naive(z, t):
    """z (K, N): column n holds the K logits of sample n."""
    K, N = z.shape
    total = 0.0
    for n in range(N):
        column = [float(z[k, n]) for k in range(K)]
        top = max(column)
        log_sum = top + math.log(sum(math.exp(v - top) for v in column))
        total += log_sum - column[t[n]]
    return total / N


# ---- the ops against them ----------------------------------------------------------------

@pytest.mark.parametrize("k, padding, stride", [(1, 0, 1), (2, 1, 2), (3, 1, 1), (3, 2, 2),
                                                (5, 2, 1), (3, 0, 2)])
def test_conv2d_matches_loops(xp, rng, ops, k, padding, stride):
    x = rng.standard_normal((3, 7, 6, 2))
    W = rng.standard_normal((5, 3, k, k))
    b = rng.standard_normal(5)
    y, _ = ops.conv.conv2d_forward(*on(xp, x, W, b), padding, stride)
    assert y.flags.c_contiguous
    np.testing.assert_allclose(host(y), conv2d_naive(x, W, b, padding, stride),
                               rtol=1e-12, atol=1e-12)


def test_conv2d_one_hand_computed_value(ops):
    # 1x1 input channel, 3x3 kernel of ones, padding 1: the corner output sums a 2x2 block.
    x = np.arange(12.0).reshape(1, 3, 4, 1)
    y, _ = ops.conv.conv2d_forward(x, np.ones((1, 1, 3, 3)), np.array([0.5]), padding=1)
    assert y.shape == (1, 3, 4, 1)
    assert y[0, 0, 0, 0] == 0 + 1 + 4 + 5 + 0.5
    assert y[0, 1, 1, 0] == sum(range(0, 3)) + sum(range(4, 7)) + sum(range(8, 11)) + 0.5


def test_conv2d_keeps_the_samples_apart(ops):
    # Two samples side by side on the last axis: each output column n sees only x[..., n].
    x = np.stack([np.ones((1, 3, 3)), np.zeros((1, 3, 3))], axis=-1)       # (1, 3, 3, 2)
    y, _ = ops.conv.conv2d_forward(x, np.ones((2, 1, 3, 3)), np.array([0.0, 1.0]))
    np.testing.assert_array_equal(y, [[[[9.0, 0.0]]], [[[10.0, 1.0]]]])


@pytest.mark.parametrize("shape", [(3, 4, 6, 2), (3, 5, 7, 2),      # one channel: no blocks
                                   pytest.param((1, 2, 3, 1), marks=pytest.mark.no_split)])
def test_maxpool_matches_loops(xp, rng, ops, shape):
    x = rng.standard_normal(shape)
    y, _ = ops.pooling.maxpool2x2_forward(*on(xp, x))
    assert y.flags.c_contiguous
    np.testing.assert_array_equal(host(y), maxpool2x2_naive(x))


@pytest.mark.no_split
def test_maxpool_routes_the_gradient_to_the_first_maximum_on_ties(ops):
    x = np.array([[1.0, 3.0], [3.0, 3.0]]).reshape(1, 2, 2, 1)
    y, cache = ops.pooling.maxpool2x2_forward(x)
    dx = ops.pooling.maxpool2x2_backward(np.full((1, 1, 1, 1), 7.0), cache)
    np.testing.assert_array_equal(dx[0, :, :, 0], [[0.0, 7.0], [0.0, 0.0]])


@pytest.mark.no_split
@pytest.mark.parametrize("factor", [1, 2, 3])
def test_nearest_upsample_matches_loops(xp, rng, factor):
    x = rng.standard_normal((2, 3, 5, 2))
    y = upsample.nearest_upsample_forward(*on(xp, x), factor)
    np.testing.assert_array_equal(host(y), nearest_naive(x, factor))


@pytest.mark.no_split
@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
@pytest.mark.parametrize("factor", [1, 2])
def test_upsample_output_is_a_fresh_writable_array(xp, mode, factor):
    x = xp.asarray(np.arange(6.0).reshape(1, 2, 3, 1))
    y = nn.Upsample(factor, mode).forward(x)
    y += 1.0                    # raises if y is a read-only view; must not touch x
    np.testing.assert_array_equal(host(x), np.arange(6.0).reshape(1, 2, 3, 1))


@pytest.mark.no_split
@pytest.mark.parametrize("shape", [(2, 3, 5, 2), (1, 1, 4, 1), (2, 4, 4, 1)])
@pytest.mark.parametrize("factor", [2, 3, 4])
def test_bilinear_upsample_matches_per_pixel_formula(xp, rng, factor, shape):
    x = rng.standard_normal(shape)
    y = upsample.bilinear_upsample_forward(*on(xp, x), factor)
    np.testing.assert_allclose(host(y), bilinear_naive(x, factor), rtol=1e-12, atol=1e-12)


@pytest.mark.no_split
def test_bilinear_upsample_known_values():
    # The align_corners=False example of the common frameworks' documentation.
    x = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 2, 1)
    expected = [[1.00, 1.25, 1.75, 2.00],
                [1.50, 1.75, 2.25, 2.50],
                [2.50, 2.75, 3.25, 3.50],
                [3.00, 3.25, 3.75, 4.00]]
    np.testing.assert_allclose(upsample.bilinear_upsample_forward(x, 2)[0, :, :, 0], expected,
                               rtol=0, atol=1e-15)


@pytest.mark.parametrize("shape", [(3, 7), (3, 3, 5, 3)], ids=["CN", "CHWN"])
def test_batchnorm_train_matches_loops(xp, rng, ops, shape):
    C = shape[0]
    x = rng.standard_normal(shape) * 3.0 + 1.0
    x[1] *= 1e-3             # a channel whose variance is near eps: eps must be 1e-5 exactly
    gamma, beta = rng.standard_normal(C), rng.standard_normal(C)
    y, _ = ops.batchnorm.batchnorm_forward(*on(xp, x, gamma, beta, np.zeros(C), np.ones(C)),
                                           True)
    assert y.shape == shape and y.flags.c_contiguous
    np.testing.assert_allclose(host(y), batchnorm_train_naive(x, gamma, beta),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape", [(3, 7), (3, 3, 5, 3)], ids=["CN", "CHWN"])
def test_batchnorm_eval_matches_loops(xp, rng, ops, shape):
    C = shape[0]
    x = rng.standard_normal(shape)
    gamma, beta, mean = rng.standard_normal(C), rng.standard_normal(C), rng.standard_normal(C)
    var = rng.uniform(1e-5, 2.0, C)
    y, _ = ops.batchnorm.batchnorm_forward(*on(xp, x, gamma, beta, mean, var), False)
    np.testing.assert_allclose(host(y), batchnorm_eval_naive(x, gamma, beta, mean, var),
                               rtol=1e-12, atol=1e-12)


def test_leaky_relu_matches_definition(xp, rng, ops):
    x = rng.standard_normal((3, 4, 5))
    y, _ = ops.activations.leaky_relu_forward(*on(xp, x), 0.2)
    expected = np.array([v if v > 0 else 0.2 * v for v in x.ravel()]).reshape(x.shape)
    np.testing.assert_array_equal(host(y), expected)


def test_linear_matches_loops(xp, rng, ops):
    x, W, b = rng.standard_normal((5, 4)), rng.standard_normal((3, 5)), rng.standard_normal(3)
    y, _ = ops.linear.linear_forward(*on(xp, x, W, b))
    expected = [[b[o] + sum(W[o, i] * x[i, n] for i in range(5)) for n in range(4)]
                for o in range(3)]
    assert y.shape == (3, 4) and y.flags.c_contiguous
    np.testing.assert_allclose(host(y), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.no_split
def test_flatten_orders_features_as_c_then_rows_then_columns(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    y = nn.Flatten().forward(x)
    assert y.shape == (2 * 3 * 4, 5)
    for c in range(2):
        for i in range(3):
            for j in range(4):
                np.testing.assert_array_equal(y[(c * 3 + i) * 4 + j], x[c, i, j])


@pytest.mark.no_split
def test_softmax_cross_entropy_matches_loops(xp, rng):
    z = rng.standard_normal((4, 6)) * 5.0          # K = 4 classes, N = 6 samples
    t = rng.integers(0, 4, size=6)
    loss, dz = losses.softmax_cross_entropy(*on(xp, z, t))
    assert loss.shape == ()
    assert float(loss) == pytest.approx(softmax_cross_entropy_naive(z, t), rel=1e-12)
    probs = np.zeros((4, 6))
    for n in range(6):
        e = [math.exp(z[k, n]) for k in range(4)]
        for k in range(4):
            probs[k, n] = (e[k] / sum(e) - (k == t[n])) / 6
    np.testing.assert_allclose(host(dz), probs, rtol=1e-10, atol=1e-14)


@pytest.mark.no_split
def test_softmax_cross_entropy_is_stable_for_huge_logits(xp):
    z = np.array([[1000.0, 0.0, -1000.0], [-1e4, 1e4, 0.0]]).T      # (K = 3, N = 2)
    loss, dz = losses.softmax_cross_entropy(*on(xp, z, np.array([0, 0])))
    assert float(loss) == pytest.approx((0.0 + 2e4) / 2)
    assert np.all(np.isfinite(host(dz)))


# ---- layout: non-contiguous inputs give the same answers ---------------------------------

def _strided(xp, a):
    """The same values as ``a``, as a strided view (every other element of a bigger array)."""
    big = xp.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype=a.dtype)
    big[..., ::2] = a
    view = big[..., ::2]
    assert not view.flags.c_contiguous
    return view


def _transposed(xp, a):
    """The same values as ``a`` in the reversed memory order (e.g. a (C, H, W, N) view of
    (N, W, H, C) memory): contiguous, but not C-contiguous."""
    view = a.transpose().copy().transpose()
    assert not view.flags.c_contiguous
    return view


@pytest.mark.parametrize("view", ["strided", "transposed"])
@pytest.mark.parametrize("op", ["conv2d", "batchnorm", "leaky_relu", "maxpool", "linear"] + [
    pytest.param(op, marks=pytest.mark.no_split) for op in ("nearest", "bilinear", "flatten")])
def test_noncontiguous_inputs_give_the_same_forward_and_backward(xp, rng, ops, op, view):
    x = rng.standard_normal((3, 5, 6, 2)) if op != "linear" else rng.standard_normal((6, 4))
    W_conv, b_conv = rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    W_lin, b_lin = rng.standard_normal((3, 6)), rng.standard_normal(3)
    as_view = _strided if view == "strided" else _transposed

    def run(x, make_dy):
        if op == "conv2d":
            y, cache = ops.conv.conv2d_forward(x, xp.asarray(W_conv), xp.asarray(b_conv), 1, 2)
            return y, ops.conv.conv2d_backward(make_dy(y), cache)[0]
        if op == "batchnorm":
            C = x.shape[0]
            y, cache = ops.batchnorm.batchnorm_forward(x, xp.ones(C), xp.zeros(C), xp.zeros(C),
                                                   xp.ones(C), True)
            return y, ops.batchnorm.batchnorm_backward(make_dy(y), cache)[0]
        if op == "leaky_relu":
            y, cache = ops.activations.leaky_relu_forward(x)
            return y, ops.activations.leaky_relu_backward(make_dy(y), cache)
        if op == "maxpool":
            y, cache = ops.pooling.maxpool2x2_forward(x)
            return y, ops.pooling.maxpool2x2_backward(make_dy(y), cache)
        if op == "nearest":
            y = upsample.nearest_upsample_forward(x, 2)
            return y, upsample.nearest_upsample_backward(make_dy(y), 2)
        if op == "bilinear":
            y = upsample.bilinear_upsample_forward(x, 2)
            return y, upsample.bilinear_upsample_backward(make_dy(y), 2, x.shape)
        if op == "linear":
            y, cache = ops.linear.linear_forward(x, xp.asarray(W_lin), xp.asarray(b_lin))
            return y, ops.linear.linear_backward(make_dy(y), cache, xp.asarray(W_lin))[0]
        layer = nn.Flatten()
        y = layer.forward(x)
        return y, layer.backward(make_dy(y))

    upstream = {}

    def fresh_dy(y):                      # drawn once, on the contiguous run
        upstream["dy"] = rng.standard_normal(y.shape)
        return xp.asarray(upstream["dy"])

    def same_dy_as_view(y):
        return as_view(xp, xp.asarray(upstream["dy"]))

    y_ref, dx_ref = run(xp.asarray(x), fresh_dy)
    y, dx = run(as_view(xp, xp.asarray(x)), same_dy_as_view)
    np.testing.assert_allclose(host(y), host(y_ref), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(host(dx), host(dx_ref), rtol=1e-12, atol=1e-12)
    assert dx.shape == x.shape
