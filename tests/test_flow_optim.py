"""Adamax against its formula, written out step by step (Kingma & Ba, Sec. 7.1)."""
import numpy as np
import pytest

import nn
from nn.optim import Adamax
from test_nn_optim import flat_of, on, setup


def adamax_formula(p, grads, lr, b1, b2, eps):
    """m_t = b1 m + (1 - b1) g;  u_t = max(b2 u, |g| + eps);  p -= lr / (1 - b1^t) m_t / u_t.
    eps = 0 is the paper's Algorithm 2; eps > 0 the form of PyTorch's Adamax."""
    m, u = np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        u = np.maximum(b2 * u, np.abs(g) + eps)
        p = p - (lr / (1 - b1 ** t)) * m / u
    return p


@pytest.mark.parametrize("eps", [0.0, 1e-8, 0.1])      # a large eps checks where eps enters
def test_adamax_four_steps(xp, rng, eps):
    p0, params, grads = setup(xp, rng, steps=4)
    grads[2] = {k: 1e-3 * g for k, g in grads[2].items()}   # u decays: b2 u wins the max
    opt = Adamax(flat_of(params), lr=0.01, betas=(0.9, 0.99), eps=eps)
    for step in grads:
        opt.step(on(xp, step))
    assert opt.step_count == 4
    for k in p0:
        expected = adamax_formula(p0[k], [s[k] for s in grads], 0.01, 0.9, 0.99, eps)
        np.testing.assert_allclose(nn.to_numpy(params[k]), expected, rtol=1e-13, atol=1e-15,
                                   err_msg=k)


def test_adamax_first_step_moves_each_entry_by_lr(rng):
    # Step one: m / (1 - b1) = g and u = |g|, so the paper's update is lr * sign(g).
    p0, params, grads = setup(np, rng, steps=4)
    Adamax(flat_of(params), lr=0.01, eps=0.0).step(grads[0])
    for k in p0:
        np.testing.assert_allclose(params[k], p0[k] - 0.01 * np.sign(grads[0][k]), rtol=1e-13)


def test_adamax_state_dict_round_trip(rng, tmp_path):
    p0, params, grads = setup(np, rng, steps=4)
    opt = Adamax(flat_of(params), lr=0.01)
    opt.step(grads[0])
    opt.step(grads[1])
    assert set(opt.state_dict()) == {"m/a.W", "m/b.b", "u/a.W", "u/b.b", "step_count"}
    np.savez(tmp_path / "opt.npz", **opt.state_dict())
    with np.load(tmp_path / "opt.npz", allow_pickle=False) as f:
        saved = {k: f[k] for k in f.files}
    resumed_params = {k: v.copy() for k, v in params.items()}
    resumed = Adamax(flat_of(resumed_params), lr=0.01)
    resumed.load_state_dict(saved)
    opt.step(grads[2])
    resumed.step(grads[2])
    assert resumed.step_count == 3
    for k in params:
        np.testing.assert_array_equal(resumed_params[k], params[k], err_msg=k)


def test_adamax_refuses_a_non_positive_learning_rate():
    with pytest.raises(ValueError, match="learning rate"):
        Adamax(flat_of({"w": np.zeros(2)}), lr=0.0)
