"""The pair layer (ifm/pairs.py): PairLinear, its fast path and its plain reference.

The reference (z = [M_l E_l ; M_h E_h] with one-hot selection matrices, then
a = W z + b) is checked against a loop over explicitly upsampled maps
and, with its backward, against central differences (tests/gradcheck.py).
The fast path (``pair_linear_forward``/``backward``, either order per half)
is then held to the reference in float64: a and every gradient. Positions
repeat (marginals with replacement, nearest's s*s fine locations per coarse
one), so the scatter's accumulation is covered.
"""
import numpy as np
import pytest
from gradcheck import check_gradients, upstream

from ifm import IFMRegularizer, PairLinear
from ifm.critic import discriminator_layers
from ifm.pairs import pair_linear_reference_backward, pair_linear_reference_forward
from ifm.sampling import coarse_locations, sample_pairs
from nn import Linear, Sequential
from nn.backend import to_device, to_numpy
from nn.upsample import bilinear_upsample_forward, nearest_upsample_forward

pytestmark = pytest.mark.usefixtures("cores_mode")

C_LOW, C_HIGH, OUT = 4, 5, 6


def maps(rng, N=3, h=6, w=4, scale=2):
    """H_l (C_l, h, w, N) and H_{l+1} (C_h, h/scale, w/scale, N), batch last."""
    return (rng.standard_normal((C_LOW, h, w, N)),
            rng.standard_normal((C_HIGH, h // scale, w // scale, N)))


def positions(rng, low_shape, upsample, samples=7, marginal="image", scale=2):
    """(index (4, S) for the pair layer, the PairIndex on the fine grid)."""
    _, h, w, N = low_shape
    idx = sample_pairs(N, h, w, samples, marginal, rng)
    high_s = coarse_locations(idx.high_s, w, scale) if upsample == "nearest" else idx.high_s
    return np.stack([idx.low_n, idx.low_s, idx.high_n, high_s]), idx


def reference_loop(h_low, h_high, idx, W, b, upsample, scale=2):
    """a[:, r] = W [H_l[:, y, x, n]; U[:, y', x', m]] + b, one pair at a time, U built
    explicitly."""
    up = nearest_upsample_forward if upsample == "nearest" else bilinear_upsample_forward
    U = up(h_high, scale)
    w = h_low.shape[2]
    a = np.empty((W.shape[0], len(idx.low_n)))
    for r in range(len(idx.low_n)):
        z = np.concatenate([h_low[:, idx.low_s[r] // w, idx.low_s[r] % w, idx.low_n[r]],
                            U[:, idx.high_s[r] // w, idx.high_s[r] % w, idx.high_n[r]]])
        a[:, r] = W @ z + b
    return a


@pytest.mark.no_split
@pytest.mark.parametrize("upsample", ["nearest", "bilinear"])
def test_reference_is_the_pair_by_pair_formula(upsample):
    rng = np.random.default_rng(0)
    h_low, h_high = maps(rng)
    index, idx = positions(rng, h_low.shape, upsample, marginal="batch")
    W, b = rng.standard_normal((OUT, C_LOW + C_HIGH)), rng.standard_normal(OUT)
    a, _ = pair_linear_reference_forward(h_low, h_high, index, W, b, upsample)
    np.testing.assert_allclose(a, reference_loop(h_low, h_high, idx, W, b, upsample),
                               rtol=1e-13, atol=1e-13)


@pytest.mark.no_split
@pytest.mark.parametrize("upsample", ["nearest", "bilinear"])
def test_reference_gradients(rng, upsample):
    """Every element of H_l, H_{l+1}, W and b against central differences."""
    data = np.random.default_rng(1)
    h_low, h_high = maps(data, N=2, h=4, w=4)
    h_low = np.ascontiguousarray(h_low)
    index, _ = positions(data, h_low.shape, upsample, samples=3)
    W, b = data.standard_normal((OUT, C_LOW + C_HIGH)), data.standard_normal(OUT)
    da = upstream(rng, (OUT, index.shape[1]))

    def loss():
        return np.sum(da * pair_linear_reference_forward(h_low, h_high, index, W, b,
                                                         upsample)[0])

    _, cache = pair_linear_reference_forward(h_low, h_high, index, W, b, upsample)
    dh_low, dh_high, dW, db = pair_linear_reference_backward(da, cache)
    check_gradients(f"pair layer reference, {upsample}", loss,
                    {"h_low": h_low, "h_high": h_high, "W": W, "b": b},
                    {"h_low": dh_low, "h_high": dh_high, "W": dW, "b": db})


@pytest.mark.parametrize("marginal", ["image", "batch"])
@pytest.mark.parametrize("upsample", ["nearest", "bilinear"])
@pytest.mark.parametrize("project", [None, False, True])
def test_pair_layer_equals_the_reference(xp, upsample, marginal, project):
    """PairLinear (fast path, each order) against the reference, float64: a, dH_l,
    dH_{l+1}, dW, db. samples=30 is above h*w = 24, so K = all and the
    default (project=None) projects both maps first (fewer positions than rows)."""
    rng = np.random.default_rng(2)
    h_low, h_high = maps(rng)
    index, _ = positions(rng, h_low.shape, upsample, samples=30, marginal=marginal)
    layer = PairLinear(C_LOW, C_HIGH, OUT, upsample, rng=rng, dtype=np.float64)
    layer.params["b"] = rng.standard_normal(OUT)
    layer.project = project
    da = rng.standard_normal((OUT, index.shape[1]))
    W, b = layer.params["W"].copy(), layer.params["b"].copy()
    a_ref, cache = pair_linear_reference_forward(h_low, h_high, index, W, b, upsample)
    ref = dict(zip(("h_low", "h_high", "W", "b"), pair_linear_reference_backward(da, cache)))

    device = "cpu" if xp is np else "gpu"
    layer.to(device)

    def on(x):
        return to_device(np.ascontiguousarray(x) if device == "gpu" else x, device)

    a = layer.forward(on(h_low), on(h_high), on(index))
    dh_low, dh_high = layer.backward(on(da))
    got = {"h_low": dh_low, "h_high": dh_high, **layer.grads}
    np.testing.assert_allclose(to_numpy(a), a_ref, rtol=1e-12, atol=1e-12)
    for key, r in ref.items():
        np.testing.assert_allclose(to_numpy(got[key]), r, rtol=1e-12, atol=1e-12, err_msg=key)


def test_the_default_order_projects_the_small_map_only():
    """K = 4 on a 6 x 4 map (24 positions per image, 3 images): H_l has 72
    positions, more than the 24 pairs (gathered first); H_{l+1} (3 x 2) has 18
    (projected first). Both orders are covered by the equality test above."""
    rng = np.random.default_rng(3)
    h_low, h_high = maps(rng)
    index, _ = positions(rng, h_low.shape, "nearest", samples=4)
    layer = PairLinear(C_LOW, C_HIGH, OUT, rng=rng, dtype=np.float64)
    layer.forward(h_low, h_high, index)
    assert [half.projected for half in layer._cache.halves] == [False, True]


def test_pair_layer_gradients(rng):
    """The module itself against central differences (every element, random da)."""
    data = np.random.default_rng(4)
    h_low, h_high = maps(data, N=2, h=4, w=6)
    index, _ = positions(data, h_low.shape, "nearest", samples=5, marginal="batch")
    layer = PairLinear(C_LOW, C_HIGH, OUT, rng=data, dtype=np.float64)
    h_low = np.ascontiguousarray(h_low)
    da = upstream(rng, (OUT, index.shape[1]))
    loss = lambda: np.sum(da * layer.forward(h_low, h_high, index))     # noqa: E731
    layer.forward(h_low, h_high, index)
    dh_low, dh_high = layer.backward(da)
    check_gradients("PairLinear nearest", loss,
                    {"h_low": h_low, "h_high": h_high, **layer.params},
                    {"h_low": dh_low, "h_high": dh_high,
                     **{k: g.copy() for k, g in layer.grads.items()}})


@pytest.mark.no_split
def test_pair_layer_draws_as_nn_linear():
    layer = PairLinear(C_LOW, C_HIGH, OUT, rng=np.random.default_rng(7))
    linear = Linear(C_LOW + C_HIGH, OUT, rng=np.random.default_rng(7))
    assert layer.params.keys() == linear.params.keys() == layer.grads.keys()
    for key in layer.params:
        np.testing.assert_array_equal(layer.params[key], linear.params[key])
        assert layer.params[key].dtype == np.float32


def d_as_one_sequential(in_features, hidden, rng):
    """D_l as the paper's Table 2 draws it: one nn.Sequential, (Linear-BN-LeakyReLU) per
    hidden width, then Linear(.., 1)."""
    first = Linear(in_features, hidden[0], rng=rng)
    return Sequential(first, *discriminator_layers(hidden, rng))


@pytest.mark.no_split
def test_each_pair_is_d_as_one_sequential():
    """Pair l's parameters and statistics (its pair layer and member l of the stacked
    critic) have the keys, shapes and initial values of D_l built as one nn.Sequential
    from the same generator, pair after pair: the weights are drawn in the order they
    were drawn when each D_l was a Sequential of its own."""
    hidden = (8, 6, 5)
    channels = [3, 4, 2]
    reg = IFMRegularizer(channels, pairs=[(1, 2), (2, 3)], rng=np.random.default_rng(9),
                         hidden=hidden)
    rng = np.random.default_rng(9)
    named = reg.pair_params()
    for l, name in enumerate(reg.names):
        D = d_as_one_sequential(channels[l] + channels[l + 1], hidden, rng)
        assert [k for k in named if k.startswith(name + ".")] == [
            f"{name}.{k}" for k in D.params]
        for key, value in D.params.items():
            np.testing.assert_array_equal(named[f"{name}.{key}"], value, err_msg=key)
        for key, value in D.buffers.items():
            np.testing.assert_array_equal(reg.buffers[f"D.{key}"][l], value, err_msg=key)
