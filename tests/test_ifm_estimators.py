"""The MI estimators on hand-computable scores, extreme scores, and by central differences."""
import math

import numpy as np
import pytest
from gradcheck import check_gradients, upstream

from ifm.estimators import (ESTIMATORS, LOG4, DVMovingAverage, dv, infonce, jsd,
                            jsd_divergence, paper_eq4, sigmoid, softplus)

LOG2 = math.log(2.0)


def shapes(name, rng, scale=1.0):
    """Random (v_joint, v_marg) of the shapes each estimator takes."""
    if name == "infonce":
        return rng.normal(0, scale, (3, 4)), rng.normal(0, scale, (3, 4, 3))
    return rng.normal(0, scale, 5), rng.normal(0, scale, 7)


# ---------------------------------------------------------------- hand values
def test_jsd_at_zero_scores():
    F, dj, dm = jsd(np.zeros(4), np.zeros(2))
    assert F.shape == () and isinstance(F, np.ndarray)
    assert F == pytest.approx(-LOG4)                       # -log 2 - log 2
    assert jsd_divergence(F) == pytest.approx(0.0, abs=1e-15)
    assert jsd(np.zeros(4), np.zeros(2), offset=True)[0] == pytest.approx(0.0, abs=1e-15)
    np.testing.assert_allclose(dj, 0.5 / 4)                # sigmoid(0) / S_P
    np.testing.assert_allclose(dm, -0.5 / 2)


def test_jsd_hand_values():
    vj, vm = np.array([1.0, -2.0]), np.array([0.5])
    F, dj, dm = jsd(vj, vm)
    expect = -(math.log1p(math.exp(-1)) + math.log1p(math.exp(2))) / 2 - math.log1p(math.exp(0.5))
    assert F == pytest.approx(expect, rel=1e-14)
    np.testing.assert_allclose(dj, [1 / (1 + math.e) / 2, 1 / (1 + math.exp(-2)) / 2], rtol=1e-14)
    np.testing.assert_allclose(dm, [-1 / (1 + math.exp(-0.5))], rtol=1e-14)


def test_dv_hand_values():
    F, dj, dm = dv(np.array([1.0, 2.0, 3.0]), np.array([0.0, math.log(3.0)]))
    assert F == pytest.approx(2.0 - math.log(2.0), rel=1e-14)     # mean 2, log mean(1, 3)
    np.testing.assert_allclose(dj, 1 / 3)
    np.testing.assert_allclose(dm, [-0.25, -0.75], rtol=1e-14)


def test_infonce_hand_values():
    # all scores equal: every positive is as likely as any negative -> F = 0
    F, dj, dm = infonce(np.zeros((2, 3)), np.zeros((2, 3, 2)))
    assert F == pytest.approx(0.0, abs=1e-15)
    np.testing.assert_allclose(dj, (1 - 1 / 3) / 6)
    np.testing.assert_allclose(dm, -(1 / 3) / 6)
    # one group of B = 2: F = mean_i [v_ii - log(e^v_ii + e^v_ij)] + log 2
    vj, vm = np.array([[1.0, 0.0]]), np.array([[[0.0], [2.0]]])
    F, _, _ = infonce(vj, vm)
    expect = ((1 - math.log(math.e + 1)) + (0 - math.log(1 + math.e ** 2))) / 2 + LOG2
    assert F == pytest.approx(expect, rel=1e-14)


def test_paper_eq4_hand_values():
    F, dj, dm = paper_eq4(np.zeros(2), np.zeros(4))
    assert F == pytest.approx(0.5 + LOG2)                  # 1/2 - log(1/2)
    np.testing.assert_allclose(dj, 0.25 / 2)               # s(1-s) / S_P
    np.testing.assert_allclose(dm, 0.25 / 4 / 0.5)         # s(1-s) / (S_Q E_Q[1-s])


def test_registry():
    assert set(ESTIMATORS) == {"jsd", "dv", "infonce", "paper-eq4"}


# ---------------------------------------------------------------- extremes
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_scores_stay_finite(dtype):
    big = np.array([1e4, -1e4, 800.0, -800.0, 0.0], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        for name, f in ESTIMATORS.items():
            if name == "infonce":
                vj, vm = big[:4].reshape(2, 2), big[1:5].reshape(2, 2, 1)
            else:
                vj, vm = big, big[::-1].copy()
            F, dj, dm = f(vj, vm)
            assert F.dtype == dtype and F.shape == ()
            assert np.isfinite(F) and np.isfinite(dj).all() and np.isfinite(dm).all(), name


def test_extreme_values_are_the_limits():
    # JSD: a perfect D gives F -> 0 (the bound's maximum) with vanishing gradients
    F, dj, dm = jsd(np.full(3, 1000.0), np.full(2, -1000.0))
    assert F == 0.0 and np.all(dj == 0) and np.all(dm == 0)
    # JSD: a confidently wrong D costs linearly, gradient 1 / S
    F, dj, dm = jsd(np.full(3, -1000.0), np.full(2, 1000.0))
    assert F == pytest.approx(-2000.0) and np.allclose(dj, 1 / 3) and np.allclose(dm, -1 / 2)
    # DV: log E_Q[e^V] of (1000, -1000) is 1000 - log 2; softmax puts all weight on 1000
    F, dj, dm = dv(np.array([0.0]), np.array([1000.0, -1000.0]))
    assert F == pytest.approx(-1000.0 + LOG2)
    np.testing.assert_allclose(dm, [-1.0, 0.0])
    # InfoNCE saturates at log B
    F, _, _ = infonce(np.full((1, 3), 500.0), np.full((1, 3, 2), -500.0))
    assert F == pytest.approx(math.log(3))
    # paper Eq. (4): marginal scores -> +inf drive F -> +inf (linearly, finite here)
    F, _, dm = paper_eq4(np.zeros(2), np.full(2, 1000.0))
    assert F == pytest.approx(0.5 + 1000.0)
    assert np.all(dm > 0)                                   # ascent raises V_Q further


def test_softplus_and_sigmoid_are_stable():
    v = np.array([-1e4, -50.0, 0.0, 50.0, 1e4])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        np.testing.assert_allclose(softplus(v), [0.0, math.exp(-50), LOG2, 50.0, 1e4], rtol=1e-15)
        np.testing.assert_allclose(sigmoid(v), [0.0, math.exp(-50), 0.5, 1.0, 1.0], rtol=1e-15)


# -------------------------------------------------------- central differences
@pytest.mark.parametrize("scale", [1.0, 20.0])
@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_estimator_gradients(name, scale):
    """dF/dv_joint and dF/dv_marg, every score. An estimator returns its own
    gradient (it ends the graph), so the upstream gradient is a random scalar dF."""
    f = ESTIMATORS[name]
    rng = np.random.default_rng(0)
    vj, vm = shapes(name, rng, scale)
    dF = upstream(rng)
    _, dj, dm = f(vj, vm)
    check_gradients(f"estimator {name}", lambda: dF * f(vj, vm)[0],
                    {"v_joint": vj, "v_marg": vm}, {"v_joint": dF * dj, "v_marg": dF * dm})


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_stacked_estimator_gradients(name):
    """Scores of 2 critics on a leading axis: F (2,), one estimate per critic, and
    L = sum_g dF_g F_g against central differences, every score of both."""
    f = ESTIMATORS[name]
    rng = np.random.default_rng(3)
    draws = [shapes(name, rng) for _ in range(2)]
    vj, vm = (np.stack(parts) for parts in zip(*draws))
    dF = rng.standard_normal(2)
    F, dj, dm = f(vj, vm)
    assert F.shape == (2,)
    for g, (vj_g, vm_g) in enumerate(draws):
        np.testing.assert_allclose(F[g], f(vj_g, vm_g)[0], rtol=1e-14)
    expand = lambda d: dF.reshape((2,) + (1,) * (d.ndim - 1)) * d    # noqa: E731
    check_gradients(f"estimator {name}, stack of 2", lambda: np.sum(dF * f(vj, vm)[0]),
                    {"v_joint": vj, "v_marg": vm}, {"v_joint": expand(dj), "v_marg": expand(dm)})


def test_jsd_offset_does_not_change_gradients():
    vj, vm = shapes("jsd", np.random.default_rng(1))
    a, b = jsd(vj, vm), jsd(vj, vm, offset=True)
    assert float(b[0]) == pytest.approx(float(a[0]) + LOG4)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[2], b[2])


# ----------------------------------------------- the paper's Eq. (4), measured
def ascend(f, steps=300, lr=1.0):
    """Gradient ascent on free scores (an infinitely flexible D): where does F go?"""
    vj, vm = np.zeros(4), np.zeros(4)
    history = []
    for _ in range(steps):
        F, dj, dm = f(vj, vm)
        history.append(float(F))
        vj += lr * dj * vj.size
        vm += lr * dm * vm.size
    return np.array(history), vj, vm


def test_paper_eq4_diverges_and_rewards_saying_joint_on_marginals():
    F, vj, vm = ascend(paper_eq4)
    assert np.all(np.diff(F) > 0) and F[-1] > F[0] + 50     # unbounded above, still climbing
    assert np.all(sigmoid(vm) > 0.999999)                   # D says "joint" on marginal pairs
    F_jsd, vj_jsd, vm_jsd = ascend(jsd)
    assert -0.05 < F_jsd[-1] <= 0                           # JSD: bounded, approaches its max 0
    assert np.all(sigmoid(vj_jsd) > 0.98) and np.all(sigmoid(vm_jsd) < 0.02)


# ---------------------------------------------------- MINE's moving average
def test_dv_moving_average_hand_values():
    alpha = 0.25
    est = DVMovingAverage(alpha, np.float64)
    vj = np.array([0.3, -0.1])
    batches = [np.array([0.0, math.log(3.0)]), np.array([1.0, 1.0])]
    ema = weight = 0.0
    for vm in batches:
        F, dj, dm = est(vj, vm)
        mean_exp = np.exp(vm).mean()
        ema = (1 - alpha) * ema + alpha * mean_exp
        weight = (1 - alpha) * weight + alpha
        assert float(F) == pytest.approx(float(dv(vj, vm)[0]), rel=1e-14)   # the value is DV's
        np.testing.assert_allclose(dm, -np.exp(vm) / (ema / weight) / vm.size, rtol=1e-12)
        np.testing.assert_allclose(dj, 1 / 2)
    # first batch: bias correction makes ema_hat = E_Q[e^V], the exact gradient
    est2 = DVMovingAverage(alpha, np.float64)
    np.testing.assert_allclose(est2(vj, batches[0])[2], dv(vj, batches[0])[2], rtol=1e-12)
    # the second batch's gradient differs from the exact one (the correction is real)
    assert not np.allclose(dm, dv(vj, batches[1])[2])
    # eval mode: exact gradient, state untouched
    state = {k: v.copy() for k, v in est.buffers.items()}
    est.eval()
    np.testing.assert_allclose(est(vj, batches[0])[2], dv(vj, batches[0])[2])
    assert all(np.array_equal(state[k], est.buffers[k]) for k in state)


def test_dv_moving_average_extreme_scores_are_finite():
    est = DVMovingAverage(0.01, np.float32)
    for shift in (0.0, 500.0, -500.0, 80.0):
        F, dj, dm = est(np.zeros(3, np.float32), np.array([shift, shift - 1], np.float32))
        assert np.isfinite(F) and np.isfinite(dm).all()
    assert np.isfinite(est.buffers["log_ema"]) and est.buffers["log_ema"].dtype == np.float32


def test_dv_moving_average_rejects_bad_alpha():
    for alpha in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError):
            DVMovingAverage(alpha, np.float32)
