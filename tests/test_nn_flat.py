"""Flat parameter and gradient buffers (nn/flat.py): the explicit step that moves a model's
parameters into them, and the views that must stay attached."""
import numpy as np
import pytest

import nn
from experiment.trainer import Trainer
from nn.flat import move_into_flat_buffers
from nn.init import fan_in_uniform_
from nn.module import Module, zeros_like_params
from test_nn_module import small_model
from test_nn_optim import per_parameter_sgd
from test_train_gpu_parity import config, tiny_dataset


def backward(model, rng):
    """Fill the model's grads from a random batch and a random upstream gradient."""
    dtype = model.params["0.W"].dtype
    xp = nn.get_array_module(model.params["0.W"])
    y = model.forward(xp.asarray(rng.standard_normal((3, 4, 7, 2)).astype(dtype)))
    model.backward(xp.asarray(rng.standard_normal(y.shape).astype(dtype)))


def assert_attached(model, opt):
    """Every parameter and gradient of ``model`` is a view into the optimizer's buffers."""
    assert opt.flat.model is model and opt.flat.holds()
    xp = nn.get_array_module(opt.flat.P[0])
    for k in model.params:
        p, g = model.params[k], model.grads[k]
        assert nn.get_array_module(p) is xp and nn.get_array_module(g) is xp, k
        if xp is np:
            assert any(np.shares_memory(p, P) for P in opt.flat.P), k
            assert any(np.shares_memory(g, G) for G in opt.flat.G), k


def host(arrays):
    return {k: nn.to_numpy(a).copy() for k, a in arrays.items()}


def holder(params):
    """A bare Module holding the dict ``params`` and zero gradients."""
    module = Module()
    module.params, module.grads = params, zeros_like_params(params)
    return module


# ---- the layout --------------------------------------------------------------------------

def test_one_buffer_per_dtype_and_every_entry_a_view(rng):
    p0 = {"a": rng.standard_normal((2, 3)).astype(np.float32), "b": rng.standard_normal(4),
          "c": rng.standard_normal((3, 1, 2)).astype(np.float32), "d": np.array(1.5)}
    model = holder(dict(p0))
    params, grads = model.params, model.grads
    flat = move_into_flat_buffers(model)
    assert [(P.dtype, P.shape) for P in flat.P] == [(np.float32, (12,)), (np.float64, (5,))]
    assert [(G.dtype, G.shape) for G in flat.G] == [(np.float32, (12,)), (np.float64, (5,))]
    np.testing.assert_array_equal(flat.P[0], np.concatenate([p0["a"].ravel(), p0["c"].ravel()]))
    np.testing.assert_array_equal(flat.P[1], np.concatenate([p0["b"], [1.5]]))
    for k, p in p0.items():
        group = 0 if p.dtype == np.float32 else 1
        assert params[k].shape == p.shape and params[k].dtype == p.dtype
        assert params[k] is flat.params[k] and grads[k] is flat.grads[k]
        assert np.shares_memory(params[k], flat.P[group])
        assert np.shares_memory(grads[k], flat.G[group])
    grads["c"][...] = 7.0
    np.testing.assert_array_equal(flat.G[0][6:], 7.0)


def test_the_layout_follows_flat_keys_and_spans_consecutive_entries(rng):
    """A module may order its keys for the buffer (a stack's members next to each other):
    ``span`` is then one view over them."""
    class Reordered(Module):
        def flat_keys(self):
            return ["b", "a", "c"]

    model = Reordered()
    model.params = {k: np.full((2, 3), float(i)) for i, k in enumerate("abc")}
    model.grads = zeros_like_params(model.params)
    flat = move_into_flat_buffers(model)
    np.testing.assert_array_equal(flat.P[0], np.repeat([1.0, 0.0, 2.0], 6))
    P_span, G_span = flat.span(["a", "c"])
    assert P_span.shape == (2, 2, 3) and np.shares_memory(P_span, flat.P[0])
    np.testing.assert_array_equal(P_span[1], model.params["c"])
    G_span[0] = 5.0
    np.testing.assert_array_equal(model.grads["a"], 5.0)
    with pytest.raises(ValueError, match="one after another"):
        flat.span(["b", "c"])


def test_gradients_copies_entries_that_are_not_views_and_rebinds_nothing(rng):
    flat = move_into_flat_buffers(holder({"a": rng.standard_normal((2, 3)),
                                          "b": rng.standard_normal(4)}))
    other = {"b": rng.standard_normal(4), "a": rng.standard_normal((2, 3))}
    copies = host(other)
    G = flat.gradients(other)
    np.testing.assert_array_equal(G[0], np.concatenate([copies["a"].ravel(), copies["b"]]))
    assert not np.shares_memory(other["a"], G[0])      # the caller's dict is left as it was
    with pytest.raises(KeyError):
        flat.gradients({"a": other["a"]})


def test_holds_until_an_entry_is_replaced(rng):
    model = holder({"a": rng.standard_normal(3)})
    params, grads = model.params, model.grads
    flat = move_into_flat_buffers(model)
    params["a"][...] = 2.0                               # writes into P: still held
    assert flat.holds() and flat.P[0][0] == 2.0
    view = grads["a"]
    grads["a"] = np.ones(3)
    assert not flat.holds()
    grads["a"] = view
    assert flat.holds()
    params["a"] = np.ones(3)
    assert not flat.holds()
    opt = nn.SGD(flat, lr=0.1)
    with pytest.raises(RuntimeError, match="reattach"):
        opt.step()


def test_an_update_over_two_dtypes_equals_the_per_parameter_one(rng):
    p0 = {"a": (0.01 * rng.standard_normal((2, 3))).astype(np.float32),
          "b": 0.01 * rng.standard_normal(4), "c": np.full(3, 0.02, np.float32)}
    grads = [{k: rng.standard_normal(p.shape).astype(p.dtype) for k, p in p0.items()}
             for _ in range(3)]
    params = {k: p.copy() for k, p in p0.items()}
    opt = nn.SGD(move_into_flat_buffers(holder(params)), lr=0.1, momentum=0.9,
                 weight_decay=0.01)
    for step in grads:
        opt.step(step)
    assert len(opt.flat.P) == 2
    expected, _ = per_parameter_sgd(p0, grads, 0.1, momentum=0.9, weight_decay=0.01)
    for k, p in expected.items():
        assert params[k].dtype == p.dtype
        np.testing.assert_array_equal(params[k], p, err_msg=k)


# ---- views stay attached -----------------------------------------------------------------

def test_backward_writes_into_the_flat_gradients(rng):
    model = small_model(rng, np.float64)
    opt = nn.SGD(move_into_flat_buffers(model), lr=0.1, momentum=0.9)
    p0 = host(model.params)
    steps = []
    for _ in range(2):
        backward(model, rng)
        assert_attached(model, opt)
        steps.append(host(model.grads))
        opt.step(model.grads)
    expected, _ = per_parameter_sgd(p0, steps, 0.1, momentum=0.9)
    for k in p0:
        np.testing.assert_array_equal(model.params[k], expected[k], err_msg=k)


@pytest.mark.parametrize("move", ["astype", "cpu"])
def test_reattach_after_astype_or_to_keeps_the_state(rng, move):
    model = small_model(rng, np.float32)
    opt = nn.SGD(move_into_flat_buffers(model), lr=0.1, momentum=0.9)
    backward(model, rng)
    opt.step(model.grads)
    p1, v1 = host(model.params), host(opt.state["velocity"])
    if move == "astype":
        model.astype(np.float64)
    else:
        model.to("cpu")
    dtype = np.float64 if move == "astype" else np.float32
    opt.reattach()
    backward(model, rng)
    g2 = host(model.grads)
    opt.step(model.grads)
    assert_attached(model, opt)
    assert all(P.dtype == dtype for P in opt.flat.P)
    for k in p1:       # the velocity carried over: v2 = 0.9 v1 + g2, p2 = p1 - 0.1 v2
        v2 = 0.9 * v1[k].astype(dtype) + g2[k]
        np.testing.assert_array_equal(opt.state["velocity"][k], v2, err_msg=k)
        np.testing.assert_array_equal(model.params[k], p1[k].astype(dtype) - 0.1 * v2, err_msg=k)


@pytest.mark.gpu
def test_to_gpu_after_building_moves_buffers_and_state(cupy, rng):
    def run(to_gpu):
        step_rng = np.random.default_rng(1)
        model = small_model(np.random.default_rng(0), np.float64)
        opt = nn.Adam(move_into_flat_buffers(model), lr=0.01)
        backward(model, step_rng)
        opt.step(model.grads)
        if to_gpu:
            model.to("gpu")
            opt.reattach()
        backward(model, step_rng)
        opt.step(model.grads)
        return model, opt

    cpu_model, cpu_opt = run(False)
    gpu_model, gpu_opt = run(True)
    assert_attached(gpu_model, gpu_opt)
    assert all(isinstance(a, cupy.ndarray) for k, a in gpu_opt.state_dict().items()
               if k != "step_count")
    for k, a in cpu_model.params.items():
        np.testing.assert_allclose(nn.to_numpy(gpu_model.params[k]), a, rtol=1e-10, atol=1e-12)
    for k, a in cpu_opt.state_dict().items():
        np.testing.assert_allclose(nn.to_numpy(gpu_opt.state_dict()[k]), a, rtol=1e-10,
                                   atol=1e-12, err_msg=k)


def test_loading_a_module_and_optimizer_state_writes_into_the_buffers(rng, tmp_path):
    source = small_model(rng)
    source_opt = nn.Adam(move_into_flat_buffers(source), lr=0.01)
    backward(source, rng)
    source_opt.step(source.grads)
    nn.save_module(source, tmp_path / "m.npz")
    np.savez(tmp_path / "opt.npz", **source_opt.state_dict())

    model = small_model(np.random.default_rng(5))
    opt = nn.Adam(move_into_flat_buffers(model), lr=0.01)
    def buffers():
        return [*opt.flat.P, *opt.flat.G, *opt._slots["m"], *opt._slots["v"]]
    before = buffers()
    nn.load_module(model, tmp_path / "m.npz")
    with np.load(tmp_path / "opt.npz", allow_pickle=False) as f:
        opt.load_state_dict({k: f[k] for k in f.files})
    assert len(buffers()) == len(before) and all(a is b for a, b in zip(buffers(), before))
    assert_attached(model, opt)
    for k, a in source.params.items():
        np.testing.assert_array_equal(model.params[k], a, err_msg=k)
    for k, a in source_opt.state_dict().items():
        np.testing.assert_array_equal(opt.state_dict()[k], a, err_msg=k)


def test_fan_in_uniform_reinit_writes_into_the_buffers(rng):
    model = small_model(rng)
    opt = nn.SGD(move_into_flat_buffers(model), lr=0.1)
    before = opt.flat.P[0].copy()
    fan_in_uniform_(model.params, np.random.default_rng(0))
    assert_attached(model, opt)
    assert not np.array_equal(opt.flat.P[0], before)
    assert np.abs(model.params["0.W"]).max() <= 1 / np.sqrt(27)


def test_the_trainer_updates_through_attached_views():
    trainer = Trainer(config(), tiny_dataset(np.random.default_rng(0), n=32), "cpu")
    trainer.method.train_step(trainer.plan.batch_index(trainer.plan.epoch_order(1), 0), 1, 0)
    assert_attached(trainer.method.trainable, trainer.method.optimizer)
    (P,) = trainer.method.optimizer.flat.P
    assert P.size == sum(p.size for p in trainer.method.trainable.params.values())
