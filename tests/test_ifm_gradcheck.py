"""Float64 central-difference checks of IFMRegularizer (tests/gradcheck.py), for one pair
of maps and for several.

For one pair, F is a scalar, so the loss is dF * F with a random scalar dF, and the
analytic side is ``backward(dF)``: the scaling by dF is checked too. Every element of
H_l, H_{l+1} and of every parameter of D is compared (small hidden widths; the
test with the Table 2 widths moves each parameter along a random direction).
The sampling is replayed from a fresh Generator with the same seed every call.
"""
import numpy as np
import pytest
from gradcheck import check_directional, check_gradients, upstream

from ifm import IFMRegularizer

# Every test runs twice: serial, and with every op split into blocks (conftest.py), but for
# those marked split_covered_by, whose split runs repeated the blocked paths of others.
pytestmark = pytest.mark.usefixtures("cores_mode")

SEED = 123
SMALL = (8, 6, 5)

# Gradients that are zero in exact arithmetic (gradcheck.py): the biases of D's linear
# layers that feed training-mode batch norm (the pair layer's 0.b, 3.b, 6.b), and the last
# bias where the estimate does not change when every score moves by one constant (DV and
# InfoNCE).
BIASES_BEFORE_BN = ("0.b", "3.b", "6.b")
SHIFT_INVARIANT = ("dv", "infonce")


def zero_gradients(reg):
    """The keys of reg's gradients that are zero in exact arithmetic."""
    keys = BIASES_BEFORE_BN + (("9.b",) if reg.estimator in SHIFT_INVARIANT else ())
    return tuple(f"{name}.{key}" for name in reg.names for key in keys)


def one_pair(**options):
    return IFMRegularizer.one_pair(3, 4, **options)


def maps(N=2, c_low=3, c_high=4, h=4, w=4, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((c_low, h, w, N)),
            rng.standard_normal((c_high, h // 2, w // 2, N)))


def block_gradients(block, h_low, h_high, rng):
    """(loss, wrt, analytic): loss() = dF * F with a random dF, the arrays it reads
    (H_l, H_{l+1} and D's live parameters) and their gradients from backward(dF), for
    the one-pair regularizer ``block``."""
    dF = upstream(rng)

    def loss():
        return dF * block.forward([h_low, h_high], np.random.default_rng(SEED))[0]

    block.forward([h_low, h_high], np.random.default_rng(SEED))
    dh_low, dh_high = block.backward(dF)
    wrt = {"h_low": h_low, "h_high": h_high, **block.params}
    analytic = {"h_low": dh_low, "h_high": dh_high,
                **{k: g.copy() for k, g in block.grads.items()}}
    return loss, wrt, analytic


def check_block(name, block, h_low, h_high, rng):
    """Every element of h_low, h_high and every parameter, against central differences."""
    return check_gradients(name, *block_gradients(block, h_low, h_high, rng),
                           zero=zero_gradients(block))


def has_repeats(columns):
    return len(np.unique(columns)) < len(columns)


# Each factor where it acts, and one combination: the estimator acts only on the scores V
# (each one with the default sampling); upsampling, the marginal draw and K act only on
# which vectors are paired (each one with JSD); the last case changes all of them at once.
FACTORS = [(estimator, "nearest", "image", "all")
           for estimator in ("jsd", "dv", "infonce", "paper-eq4")] + [
    ("jsd", "bilinear", "image", "all"), ("jsd", "nearest", "batch", "all"),
    ("jsd", "nearest", "image", 3), ("dv", "bilinear", "batch", 3)]

# Split runs that repeat others: they reached no call site or branch of nn.cpu.parallel,
# nor line of the blocks it runs, that the split runs named do not. The estimator acts on
# the scores V alone (ifm/estimators.py never calls nn.cpu.parallel): DV, InfoNCE and
# paper-eq4 repeat JSD's split runs (so does the DV moving average's, below). Bilinear
# upsampling and the batch marginal alone repeat the split runs of the combined case,
# which changes them at once, and of JSD with K = all. K = 3 alone runs split.
ESTIMATOR_ONLY = pytest.mark.split_covered_by("test_block_gradients[split-jsd-nearest-image-all-*]")
ONE_PAIRING_FACTOR = pytest.mark.split_covered_by(
    "test_block_gradients[split-dv-bilinear-batch-3-*], "
    "test_block_gradients[split-jsd-nearest-image-all-*]")
SPLIT_REPEATS = {**{(estimator, "nearest", "image", "all"): ESTIMATOR_ONLY
                    for estimator in ("dv", "infonce", "paper-eq4")},
                 ("jsd", "bilinear", "image", "all"): ONE_PAIRING_FACTOR,
                 ("jsd", "nearest", "batch", "all"): ONE_PAIRING_FACTOR}
BLOCK_CASES = [pytest.param(*factors, marks=SPLIT_REPEATS[factors])
               if factors in SPLIT_REPEATS else factors for factors in FACTORS]


@pytest.mark.parametrize("stacked", [True, False], ids=["stack", "D alone"])
@pytest.mark.parametrize("estimator, upsample, marginal, samples", BLOCK_CASES)
def test_block_gradients(rng, estimator, upsample, marginal, samples, stacked):
    """The stack the regularizer runs (a run of one here) and D_l alone, the formula."""
    block = one_pair(samples=samples, estimator=estimator, upsample=upsample,
                     marginal=marginal, rng=np.random.default_rng(0), hidden=SMALL,
                     dtype=np.float64, stacked=stacked)
    h_low, h_high = maps()
    check_block(f"one pair {estimator} {upsample}, {'stack' if stacked else 'D alone'}",
                block, h_low, h_high, rng)
    [p] = block.draw([h_low.shape, h_high.shape], np.random.default_rng(SEED))
    # Repeated positions must be present for the check to cover the accumulation:
    # the H_{l+1} side always repeats (nearest: 4 fine locations share a coarse one;
    # InfoNCE reuses every joint vector as a negative; otherwise marginals repeat).
    assert has_repeats(p.columns[2])
    if samples == "all" and estimator != "infonce":
        assert has_repeats(p.columns[0, p.n_joint:])


@pytest.mark.split_covered_by("test_block_gradients[split-*]")
@pytest.mark.parametrize("upsample", ["nearest", "bilinear"])
@pytest.mark.parametrize("estimator", ["jsd", "dv"])
def test_block_gradients_non_square_odd(rng, estimator, upsample):
    """h x w = 6 x 4 with H_{l+1} 3 x 2: odd coarse height, non-square grid.

    Serial only: its split runs reached no call site or branch of nn.cpu.parallel that
    test_block_gradients[split-*] does not (with nearest upsampling some products split
    into equal bands, where those tests split them unevenly)."""
    block = one_pair(samples=5, estimator=estimator, upsample=upsample,
                     rng=np.random.default_rng(1), hidden=SMALL, dtype=np.float64)
    h_low, h_high = maps(N=3, h=6, w=4, seed=2)
    check_block(f"one pair {estimator} {upsample}, 6 x 4 grid", block, h_low, h_high, rng)


def test_block_gradients_table2_widths(rng):
    """The paper's D (256-128-64): every element of H_l and H_{l+1}; each of D's
    parameters (44k elements, too many to visit one by one) along its own random
    direction."""
    block = one_pair(samples=4, rng=np.random.default_rng(3), dtype=np.float64)
    loss, wrt, analytic = block_gradients(block, *maps(seed=4), rng)
    inputs = ("h_low", "h_high")
    check_gradients("one pair jsd nearest, Table 2 widths", loss,
                    {k: wrt[k] for k in inputs}, {k: analytic[k] for k in inputs})
    zero = zero_gradients(block)
    for key in block.params:
        check_directional("one pair jsd nearest, Table 2 widths (random direction)", loss,
                          {key: wrt[key]}, {key: analytic[key]}, rng,
                          zero=(key,) if key in zero else ())


@pytest.mark.split_covered_by("test_block_gradients[split-jsd-nearest-image-3-*]")
def test_dv_moving_average_with_alpha_one_is_the_exact_gradient(rng):
    block = one_pair(samples=3, estimator="dv", dv_ema=1.0,
                     rng=np.random.default_rng(0), hidden=SMALL, dtype=np.float64)
    check_block("one pair dv, moving average alpha = 1", block, *maps(), rng)


def test_backward_scales_linearly_with_dF():
    block = one_pair(samples=3, rng=np.random.default_rng(0), hidden=SMALL,
                     dtype=np.float64)
    h_low, h_high = maps()
    block.forward([h_low, h_high], np.random.default_rng(SEED))
    one = [a.copy() for a in block.backward(1.0)]
    g_one = {k: g.copy() for k, g in block.grads.items()}
    scaled = block.backward(np.asarray(-2.5))
    for a, b in zip(one, scaled):
        np.testing.assert_allclose(b, -2.5 * a, rtol=1e-12, atol=1e-13)
    for k, g in block.grads.items():
        np.testing.assert_allclose(g, -2.5 * g_one[k], rtol=1e-12, atol=1e-13)


@pytest.mark.split_covered_by("test_block_gradients[split-*], "
                              "test_block_gradients_table2_widths[split]")
@pytest.mark.parametrize("samples, runs", [(3, 1), ("all", 3)])
def test_regularizer_gradients_of_the_loss_term(samples, runs):
    """dL/dH and D's grads for L = -lam * sum_l F_l over pairs (1,2), (2,3), (3,4);
    H_2 and H_3 each belong to two pairs, so their gradients are sums. L is a
    scalar whose upstream gradient is 1 (it is the loss); every element is compared.
    K = 3 puts the three critics in one stacked run; K = all gives each pair its own
    row count, so each runs alone.

    Serial only: its split runs reached no call site or branch of nn.cpu.parallel that
    the one-pair checks' split runs do not (the 8 x 8 maps' products split along the
    shared dimension as with the Table 2 widths). The regularizer still runs split in
    test_regularizer_leaves_unpaired_features_alone[split]."""
    lam = 1.7
    channels = [3, 4, 5, 2]
    reg = IFMRegularizer(channels, lam=lam, samples=samples, rng=np.random.default_rng(0),
                         hidden=SMALL, dtype=np.float64)
    rng = np.random.default_rng(5)
    features = [rng.standard_normal((c, 8 >> i, 8 >> i, 2)) for i, c in enumerate(channels)]

    def L():
        return reg.loss(0.0, reg.forward(features, np.random.default_rng(SEED)))

    reg.forward(features, np.random.default_rng(SEED))
    assert len(reg.stack._runs) == runs
    dfeatures = reg.backward()
    assert len(dfeatures) == 4 and all(d is not None for d in dfeatures)
    wrt = {**{f"H_{i + 1}": H for i, H in enumerate(features)}, **reg.params}
    analytic = {**{f"H_{i + 1}": dH for i, dH in enumerate(dfeatures)},
                **{k: g.copy() for k, g in reg.grads.items()}}
    check_gradients("IFMRegularizer", L, wrt, analytic, zero=zero_gradients(reg))


def test_regularizer_leaves_unpaired_features_alone():
    reg = IFMRegularizer([3, 4, 5], pairs=[(2, 3)], samples=2, rng=np.random.default_rng(0),
                         hidden=SMALL, dtype=np.float64)
    rng = np.random.default_rng(1)
    features = [rng.standard_normal((c, 8 >> i, 8 >> i, 2)) for i, c in enumerate([3, 4, 5])]
    reg.forward(features, rng)
    d = reg.backward()
    assert d[0] is None and d[1].shape == features[1].shape and d[2].shape == features[2].shape


# ------------------------------------------------------- backends and dtypes
from nn.backend import to_device, to_numpy  # noqa: E402

DF = 0.7
# float32 on the CPU, and both dtypes on the GPU, against the float64 CPU reference
# (float64 on the CPU is the reference itself).
DEVICES_AND_DTYPES = [("cpu", np.float32),
                      pytest.param("gpu", np.float32, marks=pytest.mark.gpu),
                      pytest.param("gpu", np.float64, marks=pytest.mark.gpu)]


def run_block(device, dtype, estimator, upsample, marginal, dv_ema=None):
    """F, dH_l, dH_{l+1} and D's grads (as NumPy) after forward + backward(0.7)."""
    block = one_pair(samples=3, estimator=estimator, upsample=upsample,
                     marginal=marginal, rng=np.random.default_rng(0), hidden=SMALL,
                     dv_ema=dv_ema).astype(dtype).to(device)
    h_low, h_high = (to_device(a.astype(dtype), device) for a in maps(N=3, h=6, w=4))
    F = block.forward([h_low, h_high], np.random.default_rng(SEED))[0]
    assert F.shape == () and F.dtype == dtype and type(F) is type(h_low)   # 0-d, on device
    dh_low, dh_high = block.backward(DF)
    assert type(dh_low) is type(h_low) and dh_low.dtype == dtype and dh_high.dtype == dtype
    out = {"F": F, "h_low": dh_low, "h_high": dh_high}
    out.update(block.grads)
    return {k: to_numpy(v).astype(np.float64) for k, v in out.items()}


def assert_agrees_with_reference(got, ref, dtype):
    """Normwise per array: 1e-4 in float32, 1e-10 in float64."""
    tol = 1e-4 if dtype == np.float32 else 1e-10
    # the floor: a zero gradient (the bias before a BN) holds float32 round-off of the
    # size of the other gradients times 1e-7, so compare it against 1% of the largest
    floor = 1e-2 * max(np.abs(r).max() for key, r in ref.items() if key != "F")
    for key, r in ref.items():
        scale = max(np.abs(r).max(), 1.0 if key == "F" else floor)
        assert np.abs(got[key] - r).max() <= tol * scale, key


@pytest.mark.parametrize("device, dtype", DEVICES_AND_DTYPES)
@pytest.mark.parametrize("estimator, upsample, marginal",
                         sorted({factors[:3] for factors in FACTORS}))
def test_backends_and_dtypes_agree_with_the_float64_reference(estimator, upsample, marginal,
                                                             device, dtype):
    ref = run_block("cpu", np.float64, estimator, upsample, marginal)
    got = run_block(device, dtype, estimator, upsample, marginal)
    assert_agrees_with_reference(got, ref, dtype)


@pytest.mark.parametrize("device, dtype", [("cpu", np.float32),
                                           pytest.param("gpu", np.float64, marks=pytest.mark.gpu)])
def test_dv_moving_average_state_on_device(device, dtype):
    ref = run_block("cpu", np.float64, "dv", "nearest", "image", dv_ema=0.3)
    got = run_block(device, dtype, "dv", "nearest", "image", dv_ema=0.3)
    if dtype == np.float64:
        for key, r in ref.items():
            np.testing.assert_allclose(got[key], r, rtol=1e-10, atol=1e-12)
    else:
        assert_agrees_with_reference(got, ref, dtype)
