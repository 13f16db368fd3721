"""nn.save_module / nn.load_module: a pickle-free .npz round trip of params and buffers."""
import re

import numpy as np
import pytest

import nn


def build(seed, out_ch=4, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return nn.Sequential(
        nn.Conv2d(3, out_ch, 3, padding=1, rng=rng, dtype=dtype),
        nn.BatchNorm2d(out_ch, dtype=dtype),
        nn.LeakyReLU(0.2),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(out_ch * 3 * 3, 5, rng=rng, dtype=dtype),
    )


def trained(seed=0):
    """A model whose every parameter and running statistic differs from a fresh one."""
    model = build(seed)
    rng = np.random.default_rng(seed + 100)
    for _ in range(3):
        model.forward(rng.standard_normal((3, 6, 7, 4)).astype(np.float32))
    for k, p in model.params.items():
        p += rng.standard_normal(p.shape).astype(np.float32)
    return model


def test_round_trip_into_a_fresh_model(tmp_path):
    model = trained()
    path = tmp_path / "model.npz"
    nn.save_module(model, path)
    fresh = build(seed=7)
    for k, a in fresh.state_dict().items():
        assert not np.array_equal(a, model.state_dict()[k]), k   # the load must do the work
    assert nn.load_module(fresh, path) is fresh
    for k, a in model.state_dict().items():
        np.testing.assert_array_equal(fresh.state_dict()[k], a, err_msg=k)
        assert fresh.state_dict()[k].dtype == np.float32
    x = np.random.default_rng(1).standard_normal((3, 6, 7, 2)).astype(np.float32)
    np.testing.assert_array_equal(fresh.eval().forward(x), model.eval().forward(x))


def test_file_holds_plain_arrays_readable_without_pickle(tmp_path):
    model = trained()
    path = tmp_path / "model.npz"
    nn.save_module(model, path)
    with np.load(path, allow_pickle=False) as f:
        stored = {k: f[k] for k in f.files}
    assert set(stored) == set(model.state_dict())
    assert {"1.running_mean", "1.running_var"} <= set(stored)
    for k, a in model.state_dict().items():
        assert stored[k].dtype == a.dtype and stored[k].dtype != object
        np.testing.assert_array_equal(stored[k], a)
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]   # no temporary file left


def test_load_copies_into_the_existing_arrays(tmp_path):
    model = trained()
    nn.save_module(model, tmp_path / "m.npz")
    fresh = build(seed=7)
    optimizer = nn.SGD(nn.move_into_flat_buffers(fresh), lr=0.1)
    arrays = dict(fresh.state_dict())  # the parameters: views into the optimizer's buffer
    nn.load_module(fresh, tmp_path / "m.npz")
    for k, a in fresh.state_dict().items():
        assert a is arrays[k], k       # optimizers and other views keep working
    assert optimizer.flat.params["0.W"] is arrays["0.W"] and optimizer.flat.holds()
    assert np.shares_memory(arrays["0.W"], optimizer.flat.P[0])


def test_mismatched_shape_names_the_key(tmp_path):
    nn.save_module(build(0, out_ch=4), tmp_path / "m.npz")
    with pytest.raises(ValueError, match=re.escape("'0.W'")):
        nn.load_module(build(0, out_ch=5), tmp_path / "m.npz")


def test_missing_key_is_named(tmp_path):
    model = build(0)
    state = {k: v for k, v in model.state_dict().items() if k != "1.running_var"}
    np.savez(tmp_path / "m.npz", **state)
    with pytest.raises(ValueError, match=re.escape("1.running_var")):
        nn.load_module(build(1), tmp_path / "m.npz")


def test_unexpected_key_is_named(tmp_path):
    state = dict(build(0).state_dict())
    state["7.W"] = np.zeros(3, dtype=np.float32)
    np.savez(tmp_path / "m.npz", **state)
    with pytest.raises(ValueError, match=re.escape("7.W")):
        nn.load_module(build(1), tmp_path / "m.npz")


def test_pickled_object_arrays_are_refused(tmp_path):
    state = dict(build(0).state_dict())
    state["0.W"] = np.array([{"evil": 1}], dtype=object)
    np.savez(tmp_path / "m.npz", **state)
    with pytest.raises(ValueError):
        nn.load_module(build(1), tmp_path / "m.npz")


@pytest.mark.gpu
def test_load_onto_a_gpu_model(cupy, tmp_path):
    model = trained()
    nn.save_module(model.to("gpu"), tmp_path / "m.npz")     # saved from the device
    fresh = build(seed=7).to("gpu")
    nn.load_module(fresh, tmp_path / "m.npz")
    for k, a in fresh.state_dict().items():
        assert isinstance(a, cupy.ndarray), k
        np.testing.assert_array_equal(cupy.asnumpy(a), cupy.asnumpy(model.state_dict()[k]))
