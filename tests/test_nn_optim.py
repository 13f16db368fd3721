"""SGD and Adam against values computed by hand from the textbook formulas."""
import numpy as np
import pytest

import nn
from nn.flat import move_into_flat_buffers
from nn.module import Module, zeros_like_params
from nn.optim import Adamax


def flat_of(params):
    """``params`` (a dict of arrays) moved into flat buffers, as a model's are: a bare Module
    holds the dict (and zero gradients), so the dict's entries become the views."""
    holder = Module()
    holder.params, holder.grads = params, zeros_like_params(params)
    return move_into_flat_buffers(holder)


def setup(xp, rng, dtype=np.float64, steps=3):
    """Two parameters of different shapes, and a fresh gradient for each of ``steps`` steps."""
    p0 = {"a.W": rng.standard_normal((2, 3)), "b.b": rng.standard_normal(4)}
    params = {k: xp.asarray(v.astype(dtype)) for k, v in p0.items()}
    grads = [{k: rng.standard_normal(v.shape) for k, v in p0.items()} for _ in range(steps)]
    return p0, params, grads


def on(xp, grads, dtype=np.float64):
    return {k: xp.asarray(g.astype(dtype)) for k, g in grads.items()}


def assert_params(params, expected, rtol=1e-13):
    for k in expected:
        np.testing.assert_allclose(nn.to_numpy(params[k]), expected[k], rtol=rtol, atol=1e-15,
                                   err_msg=k)


def test_sgd_plain(xp, rng):
    p0, params, grads = setup(xp, rng)
    opt = nn.SGD(flat_of(params), lr=0.1)
    opt.step(on(xp, grads[0]))
    assert_params(params, {k: p0[k] - 0.1 * grads[0][k] for k in p0})
    assert opt.step_count == 1


def test_sgd_momentum_two_steps(xp, rng):
    p0, params, grads = setup(xp, rng)
    opt = nn.SGD(flat_of(params), lr=0.05, momentum=0.9)
    opt.step(on(xp, grads[0]))
    opt.step(on(xp, grads[1]))
    expected = {}
    for k in p0:
        v1 = grads[0][k]                       # v starts at zero: v1 = 0.9 * 0 + g1
        p1 = p0[k] - 0.05 * v1
        v2 = 0.9 * v1 + grads[1][k]
        expected[k] = p1 - 0.05 * v2
    assert_params(params, expected)
    assert opt.step_count == 2


def test_sgd_weight_decay(xp, rng):
    p0, params, grads = setup(xp, rng)
    opt = nn.SGD(flat_of(params), lr=0.1, weight_decay=0.01)
    opt.step(on(xp, grads[0]))
    assert_params(params, {k: p0[k] - 0.1 * (grads[0][k] + 0.01 * p0[k]) for k in p0})


def test_sgd_momentum_with_weight_decay(rng):
    p0, params, grads = setup(np, rng)
    opt = nn.SGD(flat_of(params), lr=0.1, momentum=0.5, weight_decay=0.01)
    opt.step(grads[0])
    opt.step(grads[1])
    for k in p0:
        v1 = grads[0][k] + 0.01 * p0[k]
        p1 = p0[k] - 0.1 * v1
        v2 = 0.5 * v1 + grads[1][k] + 0.01 * p1
        np.testing.assert_allclose(params[k], p1 - 0.1 * v2, rtol=1e-13)


def adam_textbook(p, grads, lr, b1, b2, eps, weight_decay=0.0):
    """Kingma & Ba, Algorithm 1, with the bias corrections written out."""
    m, v = np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        g = g + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1 ** t)
        v_hat = v / (1 - b2 ** t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p


@pytest.mark.parametrize("eps", [1e-8, 0.1])   # a large eps checks where eps enters
def test_adam_three_steps(xp, rng, eps):
    p0, params, grads = setup(xp, rng)
    grads = [{k: 0.05 * g for k, g in step.items()} for step in grads]   # eps comparable to |g|
    opt = nn.Adam(flat_of(params), lr=0.01, betas=(0.9, 0.99), eps=eps)
    for step in grads:
        opt.step(on(xp, step))
    assert opt.step_count == 3
    assert_params(params, {k: adam_textbook(p0[k], [s[k] for s in grads], 0.01, 0.9, 0.99, eps)
                           for k in p0}, rtol=1e-12)


def test_adam_first_step_moves_each_entry_by_lr(rng):
    # With eps negligible, m_hat / sqrt(v_hat) = g / |g| on step one.
    p0, params, grads = setup(np, rng)
    nn.Adam(flat_of(params), lr=0.01).step(grads[0])
    for k in p0:
        np.testing.assert_allclose(params[k], p0[k] - 0.01 * np.sign(grads[0][k]), rtol=1e-7)


def test_adam_weight_decay(rng):
    p0, params, grads = setup(np, rng)
    opt = nn.Adam(flat_of(params), lr=0.01, weight_decay=0.1)
    for step in grads[:2]:
        opt.step(step)
    for k in p0:
        np.testing.assert_allclose(
            params[k], adam_textbook(p0[k], [s[k] for s in grads[:2]], 0.01, 0.9, 0.999, 1e-8,
                                     weight_decay=0.1), rtol=1e-12)


@pytest.mark.parametrize("make", [lambda f: nn.SGD(f, lr=0.1, momentum=0.9, weight_decay=1e-3),
                                  lambda f: nn.Adam(f, lr=0.01, weight_decay=1e-3),
                                  lambda f: Adamax(f, lr=1e-3)],
                         ids=["SGD", "Adam", "Adamax"])
def test_updates_are_in_place_and_keep_float32(xp, rng, make):
    _, params, grads = setup(xp, rng, dtype=np.float32)
    opt = make(flat_of(params))
    before = dict(params)                   # the views into the flat buffer
    for step in grads:
        opt.step(on(xp, step, np.float32))
    for k, p in params.items():
        assert p is before[k]               # every view of the parameter stays valid
        assert p.dtype == np.float32
    for slot in opt.state.values():
        assert all(a.dtype == np.float32 for a in slot.values())


@pytest.mark.parametrize("make", [lambda f: nn.SGD(f, lr=0.1, momentum=0.9),
                                  lambda f: nn.SGD(f, lr=0.1),
                                  lambda f: nn.Adam(f, lr=0.01)],
                         ids=["SGD momentum", "SGD plain", "Adam"])
def test_state_dict_round_trip_continues_identically(rng, tmp_path, make):
    p0, params, grads = setup(np, rng)
    opt = make(flat_of(params))
    opt.step(grads[0])
    opt.step(grads[1])
    path = tmp_path / "opt.npz"
    np.savez(path, **opt.state_dict())
    with np.load(path, allow_pickle=False) as f:
        saved = {k: f[k] for k in f.files}
    snapshot = {k: v.copy() for k, v in params.items()}

    resumed_params = {k: v.copy() for k, v in snapshot.items()}
    resumed = make(flat_of(resumed_params))
    resumed.load_state_dict(saved)
    assert resumed.step_count == 2

    opt.step(grads[2])
    resumed.step(grads[2])
    assert resumed.step_count == opt.step_count == 3
    for k in params:
        np.testing.assert_array_equal(resumed_params[k], params[k], err_msg=k)

    fresh_params = {k: v.copy() for k, v in snapshot.items()}
    fresh = make(flat_of(fresh_params))
    fresh.step(grads[2])                 # without the state the third step differs
    if opt.state:
        assert any(not np.array_equal(fresh_params[k], params[k]) for k in params)


def test_state_dict_keys_and_errors(rng):
    _, params, _ = setup(np, rng)
    opt = nn.Adam(flat_of(params))
    state = opt.state_dict()
    assert set(state) == {"m/a.W", "m/b.b", "v/a.W", "v/b.b", "step_count"}
    with pytest.raises(ValueError, match="m/a.W"):
        opt.load_state_dict({**state, "m/a.W": np.zeros((3, 2))})          # wrong shape
    with pytest.raises(ValueError, match=r"unexpected \['velocity/a.W'\]"):
        opt.load_state_dict({**state, "velocity/a.W": np.zeros((2, 3))})
    without_v = {k: v for k, v in state.items() if not k.startswith("v/")}
    with pytest.raises(ValueError, match=r"missing \['v/a.W', 'v/b.b'\]"):
        opt.load_state_dict(without_v)                  # momentum must not restart at zero


def test_optimizer_follows_the_live_params_of_a_model(rng):
    model = nn.Sequential(nn.Linear(3, 2, rng=rng, dtype=np.float64))
    opt = nn.SGD(move_into_flat_buffers(model), lr=0.5)
    W = model.params["0.W"].copy()
    x = rng.standard_normal((3, 4))                     # (features, N), batch last
    model.forward(x)
    model.backward(np.ones((2, 4)))
    opt.step(model.grads)
    np.testing.assert_allclose(model.params["0.W"], W - 0.5 * np.ones((2, 4)) @ x.T, rtol=1e-13)
    np.testing.assert_allclose(model.params["0.b"], -0.5 * 4 * np.ones(2), rtol=1e-13)


@pytest.mark.parametrize("lr", [0.0, -0.1])
def test_non_positive_learning_rate_is_refused(lr):
    with pytest.raises(ValueError, match="learning rate"):
        nn.SGD(flat_of({"w": np.zeros(2)}), lr=lr)
    with pytest.raises(ValueError, match="learning rate"):
        nn.Adam(flat_of({"w": np.zeros(2)}), lr=lr)



# ---- the flat update against the per-parameter one, exactly -----------------------------

def per_parameter_sgd(p0, grads, lr, momentum=0.0, weight_decay=0.0):
    """The update key by key, each array on its own: (params, per-key state dict)."""
    params = {k: p.copy() for k, p in p0.items()}
    velocity = {k: np.zeros_like(p) for k, p in p0.items()}
    for step in grads:
        for k, p in params.items():
            g = step[k]
            if weight_decay:
                g = g + weight_decay * p
            if momentum:
                v = velocity[k]
                v *= momentum
                v += g
                g = v
            p -= lr * g
    state = {f"velocity/{k}": v for k, v in velocity.items()} if momentum else {}
    return params, {**state, "step_count": np.array(len(grads))}


def per_parameter_adam(p0, grads, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
    """Adam key by key, with the module docstring's host-scalar bias corrections."""
    (b1, b2), params = betas, {k: p.copy() for k, p in p0.items()}
    m = {k: np.zeros_like(p) for k, p in p0.items()}
    v = {k: np.zeros_like(p) for k, p in p0.items()}
    for t, step in enumerate(grads, start=1):
        correction2 = np.sqrt(1 - b2 ** t)
        step_size, eps_hat = lr * correction2 / (1 - b1 ** t), eps * correction2
        for k, p in params.items():
            g = step[k] + weight_decay * p if weight_decay else step[k]
            m[k] += (1 - b1) * (g - m[k])
            v[k] += (1 - b2) * (g * g - v[k])
            p -= step_size * m[k] / (np.sqrt(v[k]) + eps_hat)
    state = {**{f"m/{k}": a for k, a in m.items()}, **{f"v/{k}": a for k, a in v.items()}}
    return params, {**state, "step_count": np.array(len(grads))}


def three_shapes(rng, steps=3):
    """Parameters as small as one update, so that its last bit shows in p."""
    p0 = {"a.W": 0.01 * rng.standard_normal((2, 3)), "b.b": 0.01 * rng.standard_normal(4),
          "c.W": 0.01 * rng.standard_normal((3, 1, 2, 2))}
    grads = [{k: rng.standard_normal(p.shape) for k, p in p0.items()} for _ in range(steps)]
    return p0, grads


FLAT_CASES = {
    "SGD plain": (lambda p: nn.SGD(flat_of(p), lr=0.1),
                  lambda p0, g: per_parameter_sgd(p0, g, 0.1)),
    "SGD momentum": (lambda p: nn.SGD(flat_of(p), lr=0.1, momentum=0.9),
                     lambda p0, g: per_parameter_sgd(p0, g, 0.1, momentum=0.9)),
    "SGD weight decay": (lambda p: nn.SGD(flat_of(p), lr=0.1, weight_decay=0.01),
                         lambda p0, g: per_parameter_sgd(p0, g, 0.1, weight_decay=0.01)),
    "SGD both": (lambda p: nn.SGD(flat_of(p), lr=0.1, momentum=0.9, weight_decay=0.01),
                 lambda p0, g: per_parameter_sgd(p0, g, 0.1, 0.9, 0.01)),
    "Adam": (lambda p: nn.Adam(flat_of(p), lr=0.01, betas=(0.9, 0.99)),
             lambda p0, g: per_parameter_adam(p0, g, 0.01, (0.9, 0.99))),
    "Adam weight decay": (lambda p: nn.Adam(flat_of(p), lr=0.01, weight_decay=0.1),
                          lambda p0, g: per_parameter_adam(p0, g, 0.01, weight_decay=0.1)),
}


@pytest.mark.parametrize("case", list(FLAT_CASES))
def test_flat_update_equals_the_per_parameter_one_exactly(rng, case):
    make, reference = FLAT_CASES[case]
    p0, grads = three_shapes(rng)
    params = {k: p.copy() for k, p in p0.items()}
    opt = make(params)
    for step in grads:
        opt.step(step)
    expected, expected_state = reference(p0, grads)
    for k in p0:
        np.testing.assert_array_equal(params[k], expected[k], err_msg=k)
    state = opt.state_dict()
    assert set(state) == set(expected_state)
    for k, a in expected_state.items():
        np.testing.assert_array_equal(state[k], a, err_msg=k)


@pytest.mark.parametrize("case", [c for c in FLAT_CASES if c != "SGD plain"])
def test_an_old_per_key_state_dict_loads_and_continues_exactly(rng, tmp_path, case):
    """A checkpoint of separate per-key arrays (as written before the flat buffers)."""
    make, reference = FLAT_CASES[case]
    p0, grads = three_shapes(rng)
    after_two, old_state = reference(p0, grads[:2])
    np.savez(tmp_path / "opt.npz", **old_state)
    with np.load(tmp_path / "opt.npz", allow_pickle=False) as f:
        saved = {k: f[k] for k in f.files}
    params = {k: p.copy() for k, p in after_two.items()}
    opt = make(params)
    opt.load_state_dict(saved)
    assert opt.step_count == 2
    opt.step(grads[2])
    expected, _ = reference(p0, grads)
    for k in p0:
        np.testing.assert_array_equal(params[k], expected[k], err_msg=k)


def test_state_dict_of_a_model_keeps_the_per_key_names(rng):
    model = nn.Sequential(nn.Linear(3, 4, rng=rng), nn.BatchNorm1d(4), nn.Linear(4, 2, rng=rng))
    state = nn.SGD(move_into_flat_buffers(model), lr=0.1, momentum=0.9).state_dict()
    assert list(state) == [f"velocity/{k}" for k in ("0.W", "0.b", "1.gamma", "1.beta",
                                                      "2.W", "2.b")] + ["step_count"]
    for k, p in model.params.items():
        assert state[f"velocity/{k}"].shape == p.shape and state[f"velocity/{k}"].dtype == p.dtype
