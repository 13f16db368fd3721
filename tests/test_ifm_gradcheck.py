"""Float64 central-difference checks of IFMBlock and IFMRegularizer.

F is a scalar, so its gradient is checked directly: every element of H_l,
H_{l+1} and of every parameter of D (small hidden widths; one test with the
Table 2 widths checks a random subset of each parameter). The analytic side is
``backward(dF)`` with dF = 0.7, so the scaling by dF is checked too. The
sampling is replayed from a fresh Generator with the same seed every call.
"""
import numpy as np
import pytest

from ifm import IFMBlock, IFMRegularizer

# Every test runs twice: serial, and with every op split into blocks (conftest.py).
pytestmark = pytest.mark.usefixtures("cores_mode")

EPS = 1e-6
TOL = 1e-6
DF = 0.7
SEED = 123
SMALL = (8, 6, 5)


ZERO = 1e-7      # a gradient this small everywhere is zero up to finite-difference noise


def rel_error(analytic, numeric):
    """max |a - n| / max(|a|, |n|): normwise, so exact zeros inside a tensor (unsampled
    positions) are fine. A gradient that is zero as a whole (the bias of a Linear
    feeding batch norm) is compared absolutely: its numeric noise is ~1e-10."""
    scale = max(np.abs(numeric).max(), np.abs(analytic).max())
    diff = np.abs(analytic - numeric).max()
    if scale < ZERO:
        return float(diff)
    return float(diff / scale)


def numeric_grad(f, array, elements=None):
    """Central differences of the scalar f() w.r.t. array (perturbed in place)."""
    grad = np.zeros_like(array)
    flat, gflat = array.reshape(-1), grad.reshape(-1)
    for i in (range(flat.size) if elements is None else elements):
        old = flat[i]
        flat[i] = old + EPS
        up = f()
        flat[i] = old - EPS
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * EPS)
    return grad


def maps(N=2, c_low=3, c_high=4, h=4, w=4, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((N, c_low, h, w)),
            rng.standard_normal((N, c_high, h // 2, w // 2)))


def check_block(block, h_low, h_high, param_elements=None):
    """Max relative error over h_low, h_high and every parameter; asserts each."""
    def F():
        return float(block.forward(h_low, h_high, np.random.default_rng(SEED)))

    block.forward(h_low, h_high, np.random.default_rng(SEED))
    dh_low, dh_high = block.backward(DF)
    analytic = {"h_low": dh_low, "h_high": dh_high}
    analytic.update({k: g.copy() for k, g in block.grads.items()})
    errors = {"h_low": rel_error(dh_low, DF * numeric_grad(F, h_low)),
              "h_high": rel_error(dh_high, DF * numeric_grad(F, h_high))}
    rng = np.random.default_rng(7)
    for key in list(block.params):
        p = block.params[key]
        elements = None
        if param_elements is not None and p.size > param_elements:
            elements = rng.choice(p.size, param_elements, replace=False)
        num = DF * numeric_grad(F, p, elements)
        a = analytic[key]
        if elements is not None:
            a, num = a.reshape(-1)[elements], num.reshape(-1)[elements]
        errors[key] = rel_error(a, num)
    for name, err in errors.items():
        assert err < TOL, f"{name}: relative error {err:.2e}"
    return max(errors.values())


def has_repeats(n, s):
    keys = n * 10_000 + s
    return len(np.unique(keys)) < len(keys)


MAX_ERRORS = {}


@pytest.mark.parametrize("samples", [3, "all"])
@pytest.mark.parametrize("marginal", ["image", "batch"])
@pytest.mark.parametrize("upsample", ["nearest", "bilinear"])
@pytest.mark.parametrize("estimator", ["jsd", "dv", "infonce", "paper-eq4"])
def test_block_gradients(estimator, upsample, marginal, samples):
    block = IFMBlock(3, 4, samples=samples, estimator=estimator, upsample=upsample,
                     marginal=marginal, rng=np.random.default_rng(0), hidden=SMALL,
                     dtype=np.float64)
    h_low, h_high = maps()
    err = check_block(block, h_low, h_high)
    idx = block.last_index
    # Repeated positions must be present for the check to cover the accumulation:
    # the H_{l+1} side always repeats (nearest: 4 fine locations share a coarse one;
    # InfoNCE reuses every joint vector as a negative; otherwise marginals repeat).
    assert has_repeats(idx.high_n, idx.high_s // 2 if upsample == "nearest" else idx.high_s)
    if samples == "all" and estimator != "infonce":
        assert has_repeats(idx.low_n[idx.n_joint:], idx.low_s[idx.n_joint:])
    MAX_ERRORS[(estimator, upsample, marginal, samples)] = err


@pytest.mark.parametrize("upsample", ["nearest", "bilinear"])
@pytest.mark.parametrize("estimator", ["jsd", "dv"])
def test_block_gradients_non_square_odd(estimator, upsample):
    """h x w = 6 x 4 with H_{l+1} 3 x 2: odd coarse height, non-square grid."""
    block = IFMBlock(3, 4, samples=5, estimator=estimator, upsample=upsample,
                     rng=np.random.default_rng(1), hidden=SMALL, dtype=np.float64)
    h_low, h_high = maps(N=3, h=6, w=4, seed=2)
    check_block(block, h_low, h_high)


def test_block_gradients_table2_widths():
    """The paper's D (256-128-64): a random subset of every parameter's elements."""
    block = IFMBlock(3, 4, samples=4, rng=np.random.default_rng(3), dtype=np.float64)
    h_low, h_high = maps(seed=4)
    check_block(block, h_low, h_high, param_elements=6)


def test_dv_moving_average_with_alpha_one_is_the_exact_gradient():
    block = IFMBlock(3, 4, samples=3, estimator="dv", dv_ema=1.0,
                     rng=np.random.default_rng(0), hidden=SMALL, dtype=np.float64)
    check_block(block, *maps())


def test_backward_scales_linearly_with_dF():
    block = IFMBlock(3, 4, samples=3, rng=np.random.default_rng(0), hidden=SMALL,
                     dtype=np.float64)
    h_low, h_high = maps()
    block.forward(h_low, h_high, np.random.default_rng(SEED))
    one = [a.copy() for a in block.backward(1.0)]
    g_one = {k: g.copy() for k, g in block.grads.items()}
    scaled = block.backward(np.asarray(-2.5))
    for a, b in zip(one, scaled):
        np.testing.assert_allclose(b, -2.5 * a, rtol=1e-12, atol=1e-13)
    for k, g in block.grads.items():
        np.testing.assert_allclose(g, -2.5 * g_one[k], rtol=1e-12, atol=1e-13)


def test_regularizer_gradients_of_the_loss_term():
    """dL/dH and D's grads for L = -lam * sum_l F_l over pairs (1,2), (2,3), (3,4);
    H_2 and H_3 each belong to two pairs, so their gradients are sums."""
    lam = 1.7
    channels = [3, 4, 5, 2]
    reg = IFMRegularizer(channels, lam=lam, samples=3, rng=np.random.default_rng(0),
                         hidden=SMALL, dtype=np.float64)
    rng = np.random.default_rng(5)
    features = [rng.standard_normal((2, c, 8 >> i, 8 >> i)) for i, c in enumerate(channels)]

    def L():
        return float(reg.loss(reg.forward(features, np.random.default_rng(SEED))))

    reg.forward(features, np.random.default_rng(SEED))
    dfeatures = reg.backward()
    grads = {k: g.copy() for k, g in reg.grads.items()}
    assert len(dfeatures) == 4 and all(d is not None for d in dfeatures)
    for H, dH in zip(features, dfeatures):
        assert rel_error(dH, numeric_grad(L, H)) < TOL
    sub = np.random.default_rng(8)
    for key in reg.params:
        p = reg.params[key]
        elements = sub.choice(p.size, min(p.size, 5), replace=False)
        num = numeric_grad(L, p, elements).reshape(-1)[elements]
        assert rel_error(grads[key].reshape(-1)[elements], num) < TOL, key


def test_regularizer_leaves_unpaired_features_alone():
    reg = IFMRegularizer([3, 4, 5], pairs=[(2, 3)], samples=2, rng=np.random.default_rng(0),
                         hidden=SMALL, dtype=np.float64)
    rng = np.random.default_rng(1)
    features = [rng.standard_normal((2, c, 8 >> i, 8 >> i)) for i, c in enumerate([3, 4, 5])]
    reg.forward(features, rng)
    d = reg.backward()
    assert d[0] is None and d[1].shape == features[1].shape and d[2].shape == features[2].shape


# ------------------------------------------------------- backends and dtypes
from nn.backend import gpu_available, to_device, to_numpy  # noqa: E402

BACKENDS = ["cpu", pytest.param("gpu", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not gpu_available(), reason="needs CuPy and a CUDA device")])]


def run_block(device, dtype, estimator, upsample, marginal, dv_ema=None):
    """F, dH_l, dH_{l+1} and D's grads (as NumPy) after forward + backward(0.7)."""
    block = IFMBlock(3, 4, samples=3, estimator=estimator, upsample=upsample,
                     marginal=marginal, rng=np.random.default_rng(0), hidden=SMALL,
                     dv_ema=dv_ema).astype(dtype).to(device)
    h_low, h_high = (to_device(a.astype(dtype), device) for a in maps(N=3, h=6, w=4))
    F = block.forward(h_low, h_high, np.random.default_rng(SEED))
    assert F.shape == () and F.dtype == dtype and type(F) is type(h_low)   # 0-d, on device
    dh_low, dh_high = block.backward(DF)
    assert type(dh_low) is type(h_low) and dh_low.dtype == dtype and dh_high.dtype == dtype
    out = {"F": F, "h_low": dh_low, "h_high": dh_high}
    out.update(block.grads)
    return {k: to_numpy(v).astype(np.float64) for k, v in out.items()}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("device", BACKENDS)
@pytest.mark.parametrize("marginal", ["image", "batch"])
@pytest.mark.parametrize("upsample", ["nearest", "bilinear"])
@pytest.mark.parametrize("estimator", ["jsd", "dv", "infonce", "paper-eq4"])
def test_backends_and_dtypes_agree_with_the_float64_reference(estimator, upsample, marginal,
                                                             device, dtype):
    ref = run_block("cpu", np.float64, estimator, upsample, marginal)
    got = run_block(device, dtype, estimator, upsample, marginal)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    # the floor: a zero gradient (the bias before a BN) holds float32 round-off of the
    # size of the other gradients times 1e-7, so compare it against 1% of the largest
    floor = 1e-2 * max(np.abs(r).max() for key, r in ref.items() if key != "F")
    for key, r in ref.items():
        scale = max(np.abs(r).max(), 1.0 if key == "F" else floor)
        assert np.abs(got[key] - r).max() <= tol * scale, key


@pytest.mark.parametrize("device", BACKENDS)
def test_dv_moving_average_state_on_device(device):
    ref = run_block("cpu", np.float64, "dv", "nearest", "image", dv_ema=0.3)
    got = run_block(device, np.float64, "dv", "nearest", "image", dv_ema=0.3)
    for key, r in ref.items():
        np.testing.assert_allclose(got[key], r, rtol=1e-10, atol=1e-12)
