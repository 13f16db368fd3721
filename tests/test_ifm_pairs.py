"""The pair layer: its formula (ifm/pairs.py) and its speed path (ifm/fast_pairs.py).

The formula (U = up(H_{l+1}), z the gathered columns, a = W z + b) is checked
against a loop over explicitly upsampled maps and, with its backward, against
central differences (tests/gradcheck.py). The speed path (either order per
half, H_{l+1} read at coarse locations for nearest) is then held to the
formula in float64: a and every gradient. Positions repeat (marginals with
replacement, nearest's s*s fine locations per coarse one), so the scatter's
accumulation is covered.
"""
import numpy as np
import pytest
from gradcheck import check_gradients, upstream
from test_nn_forward import bilinear_naive, nearest_naive

from ifm import IFMRegularizer
from ifm.discriminator import hidden_layers
from ifm.fast_pairs import pair_layer_backward as fast_backward
from ifm.fast_pairs import pair_layer_forward as fast_forward
from ifm.pairs import PairLayer, pair_layer_backward, pair_layer_forward
from ifm.sampling import pair_positions, sample_pairs
from nn import Linear, Sequential
from nn.backend import to_numpy

pytestmark = pytest.mark.usefixtures("cores_mode")

C_LOW, C_HIGH, OUT = 4, 5, 6


def maps(rng, N=3, h=6, w=4, scale=2):
    """H_l (C_l, h, w, N) and H_{l+1} (C_h, h/scale, w/scale, N), batch last."""
    return (rng.standard_normal((C_LOW, h, w, N)),
            rng.standard_normal((C_HIGH, h // scale, w // scale, N)))


def positions(rng, low_shape, upsample, samples=7, marginal="image", scale=2):
    """(columns (3, S) for the pair layer, the PairIndex on the fine grid)."""
    C, h, w, N = low_shape
    idx = sample_pairs(N, h, w, samples, marginal, rng)
    high_shape = (C_HIGH, h // scale, w // scale, N)
    return pair_positions(idx, low_shape, high_shape, upsample).columns, idx


def reference_loop(h_low, h_high, idx, W, b, upsample, scale=2):
    """a[:, r] = W [H_l[:, y, x, n]; U[:, y', x', m]] + b, one pair at a time, U built
    pixel by pixel (test_nn_forward's loop references)."""
    U = (nearest_naive if upsample == "nearest" else bilinear_naive)(h_high, scale)
    w = h_low.shape[2]
    a = np.empty((W.shape[0], len(idx.low_n)))
    for r in range(len(idx.low_n)):
        z = np.concatenate([h_low[:, idx.low_s[r] // w, idx.low_s[r] % w, idx.low_n[r]],
                            U[:, idx.high_s[r] // w, idx.high_s[r] % w, idx.high_n[r]]])
        a[:, r] = W @ z + b
    return a


@pytest.mark.no_split
@pytest.mark.parametrize("upsample", ["nearest", "bilinear"])
def test_the_formula_is_the_pair_by_pair_loop(upsample):
    rng = np.random.default_rng(0)
    h_low, h_high = maps(rng)
    columns, idx = positions(rng, h_low.shape, upsample, marginal="batch")
    W, b = rng.standard_normal((OUT, C_LOW + C_HIGH)), rng.standard_normal(OUT)
    a, _ = pair_layer_forward(h_low, h_high, columns, W, b, upsample)
    np.testing.assert_allclose(a, reference_loop(h_low, h_high, idx, W, b, upsample),
                               rtol=1e-13, atol=1e-13)


@pytest.mark.no_split
@pytest.mark.parametrize("upsample", ["nearest", "bilinear"])
def test_formula_gradients(rng, upsample):
    """Every element of H_l, H_{l+1}, W and b against central differences."""
    data = np.random.default_rng(1)
    h_low, h_high = maps(data, N=2, h=4, w=4)
    h_low = np.ascontiguousarray(h_low)
    columns, _ = positions(data, h_low.shape, upsample, samples=3)
    W, b = data.standard_normal((OUT, C_LOW + C_HIGH)), data.standard_normal(OUT)
    da = upstream(rng, (OUT, columns.shape[1]))

    def loss():
        return np.sum(da * pair_layer_forward(h_low, h_high, columns, W, b, upsample)[0])

    _, cache = pair_layer_forward(h_low, h_high, columns, W, b, upsample)
    dh_low, dh_high, dW, db = pair_layer_backward(da, cache)
    check_gradients(f"pair layer formula, {upsample}", loss,
                    {"h_low": h_low, "h_high": h_high, "W": W, "b": b},
                    {"h_low": dh_low, "h_high": dh_high, "W": dW, "b": db})


@pytest.mark.parametrize("marginal", ["image", "batch"])
@pytest.mark.parametrize("upsample", ["nearest", "bilinear"])
@pytest.mark.parametrize("project", [None, False, True])
def test_the_speed_path_equals_the_formula(xp, upsample, marginal, project):
    """ifm/fast_pairs.py (each order) against the formula, float64: a, dH_l, dH_{l+1}, dW,
    db; dW and db written into the arrays given. samples=30 is above h*w = 24, so K = all
    and the default (project=None) projects both maps first (fewer positions than rows)."""
    rng = np.random.default_rng(2)
    h_low, h_high = maps(rng)
    columns, _ = positions(rng, h_low.shape, upsample, samples=30, marginal=marginal)
    W, b = rng.standard_normal((OUT, C_LOW + C_HIGH)), rng.standard_normal(OUT)
    da = rng.standard_normal((OUT, columns.shape[1]))
    a_ref, cache = pair_layer_forward(h_low, h_high, columns, W, b, upsample)
    ref = dict(zip(("a", "h_low", "h_high", "W", "b"),
                   (a_ref, *pair_layer_backward(da, cache))))

    def on(x):
        return xp.asarray(np.ascontiguousarray(x))

    a, fast_cache = fast_forward(on(h_low), on(h_high), on(columns), on(W), on(b), upsample,
                                 project)
    dW, db = xp.zeros(W.shape), xp.zeros(b.shape)
    got = dict(zip(("a", "h_low", "h_high", "W", "b"),
                   (a, *fast_backward(on(da), fast_cache, dW=dW, db=db))))
    assert got["W"] is dW and got["b"] is db
    for key, r in ref.items():
        np.testing.assert_allclose(to_numpy(got[key]), r, rtol=1e-12, atol=1e-12, err_msg=key)


def test_the_default_order_projects_the_small_map_only():
    """K = 4 on a 6 x 4 map (24 positions per image, 3 images): H_l has 72
    positions, more than the 24 pairs (gathered first); H_{l+1} (3 x 2) has 18
    (projected first). Both orders are covered by the equality test above."""
    rng = np.random.default_rng(3)
    h_low, h_high = maps(rng)
    columns, _ = positions(rng, h_low.shape, "nearest", samples=4)
    _, cache = fast_forward(h_low, h_high, columns, rng.standard_normal((OUT, 9)), np.zeros(OUT))
    assert [half.projected for half in cache.halves] == [False, True]


@pytest.mark.no_split
def test_pair_layer_gradients(rng):
    """The module itself against central differences (every element, random da)."""
    data = np.random.default_rng(4)
    h_low, h_high = maps(data, N=2, h=4, w=6)
    columns, _ = positions(data, h_low.shape, "nearest", samples=5, marginal="batch")
    layer = PairLayer(C_LOW, C_HIGH, OUT, rng=data, dtype=np.float64)
    h_low = np.ascontiguousarray(h_low)
    da = upstream(rng, (OUT, columns.shape[1]))
    loss = lambda: np.sum(da * layer.forward(h_low, h_high, columns))     # noqa: E731
    layer.forward(h_low, h_high, columns)
    dh_low, dh_high = layer.backward(da)
    check_gradients("PairLayer nearest", loss,
                    {"h_low": h_low, "h_high": h_high, **layer.params},
                    {"h_low": dh_low, "h_high": dh_high,
                     **{k: g.copy() for k, g in layer.grads.items()}})


@pytest.mark.no_split
def test_pair_layer_draws_as_nn_linear():
    layer = PairLayer(C_LOW, C_HIGH, OUT, rng=np.random.default_rng(7))
    linear = Linear(C_LOW + C_HIGH, OUT, rng=np.random.default_rng(7))
    assert layer.params.keys() == linear.params.keys() == layer.grads.keys()
    for key in layer.params:
        np.testing.assert_array_equal(layer.params[key], linear.params[key])
        assert layer.params[key].dtype == np.float32


def d_as_one_sequential(in_features, hidden, rng):
    """D_l as the paper's Table 2 draws it: one nn.Sequential, (Linear-BN-LeakyReLU) per
    hidden width, then Linear(.., 1)."""
    first = Linear(in_features, hidden[0], rng=rng)
    return Sequential(first, *hidden_layers(hidden, rng))


@pytest.mark.no_split
def test_each_pair_is_d_as_one_sequential():
    """D_l's parameters and statistics (its pair layer and member l of the stacks) have
    the keys, shapes and initial values of D_l built as one nn.Sequential from the same
    generator, pair after pair."""
    hidden = (8, 6, 5)
    channels = [3, 4, 2]
    reg = IFMRegularizer(channels, pairs=[(1, 2), (2, 3)], rng=np.random.default_rng(9),
                         hidden=hidden)
    rng = np.random.default_rng(9)
    for l, name in enumerate(reg.names):
        D = d_as_one_sequential(channels[l] + channels[l + 1], hidden, rng)
        assert [k for k in reg.params if k.startswith(name + ".")] == [
            f"{name}.{k}" for k in D.params]
        for store in ("params", "buffers"):
            for key, value in getattr(D, store).items():
                np.testing.assert_array_equal(getattr(reg, store)[f"{name}.{key}"], value,
                                              err_msg=key)
