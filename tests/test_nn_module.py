"""Module plumbing: live parameter views, devices, dtypes, and input validation.

Activations are batch last (nn/layout.py): maps (C, H, W, N), features (F, N).
"""
import numpy as np
import pytest

import nn
from nn import conv


def small_model(rng, dtype=np.float32):
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, rng=rng, dtype=dtype),
        nn.BatchNorm2d(4, dtype=dtype),
        nn.LeakyReLU(0.2),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 2 * 3, 5, rng=rng, dtype=dtype),
    )


# ---- Sequential's flat, live views -------------------------------------------------------

def test_keys_of_params_grads_and_buffers(rng):
    model = small_model(rng)
    keys = ["0.W", "0.b", "1.gamma", "1.beta", "5.W", "5.b"]
    assert list(model.params) == keys
    assert list(model.grads) == keys
    assert list(model.buffers) == ["1.running_mean", "1.running_var"]
    assert len(model.params) == 6
    assert "0.W" in model.params and "2.W" not in model.params and "W" not in model.params
    assert set(model.state_dict()) == set(keys) | {"1.running_mean", "1.running_var"}
    for k in keys:
        assert model.grads[k].shape == model.params[k].shape


def test_backward_fills_every_gradient_with_its_parameters_shape(rng):
    model = small_model(rng)
    x = rng.standard_normal((3, 4, 7, 2)).astype(np.float32)
    y = model.forward(x)
    assert y.shape == (5, 2)
    model.backward(rng.standard_normal(y.shape).astype(np.float32))
    for k in model.params:
        assert model.grads[k].shape == model.params[k].shape, k
        assert np.any(model.grads[k] != 0), k


def test_backward_overwrites_gradients_instead_of_accumulating(rng):
    model = small_model(rng, np.float64)
    x = rng.standard_normal((3, 4, 7, 2))
    dy = rng.standard_normal((5, 2))
    model.forward(x)
    model.backward(dy)
    first = {k: g.copy() for k, g in model.grads.items()}
    model.forward(x)
    model.backward(dy)
    for k in first:
        np.testing.assert_array_equal(model.grads[k], first[k])


def test_assigning_a_parameter_through_the_view_changes_the_next_forward(rng):
    model = small_model(rng, np.float64)
    model.eval()
    x = rng.standard_normal((3, 4, 7, 2))
    before = model.forward(x)
    new_W = rng.standard_normal((4, 3, 3, 3))
    model.params["0.W"] = new_W
    assert model[0].params["W"] is new_W
    assert model.params["0.W"] is new_W
    h, _ = conv.conv2d_forward(x, new_W, model.params["0.b"], padding=1)
    expected = model[5].forward(model[4].forward(model[3].forward(
        model[2].forward(model[1].forward(h)))))
    after = model.forward(x)
    np.testing.assert_array_equal(after, expected)
    assert not np.allclose(after, before)


def test_in_place_edits_through_the_view_reach_the_layer(rng):
    model = small_model(rng)
    model.params["1.gamma"][...] = 3.0
    np.testing.assert_array_equal(model[1].params["gamma"], np.full(4, 3.0))
    model.buffers["1.running_var"][...] = 2.0
    np.testing.assert_array_equal(model[1].running_var, np.full(4, 2.0))


def test_unknown_keys_and_deletion_are_refused(rng):
    model = small_model(rng)
    with pytest.raises(KeyError):
        model.params["9.W"]
    with pytest.raises(KeyError):
        model.params["0.gamma"] = np.zeros(4)
    with pytest.raises(KeyError):
        model.params["0W"]
    with pytest.raises(TypeError):
        del model.params["0.W"]


def test_nested_sequential_keys(rng):
    model = nn.Sequential(nn.Linear(2, 3, rng=rng), nn.Sequential(nn.Linear(3, 2, rng=rng),
                                                                  nn.BatchNorm1d(2)))
    assert list(model.params) == ["0.W", "0.b", "1.0.W", "1.0.b", "1.1.gamma", "1.1.beta"]
    assert list(model.buffers) == ["1.1.running_mean", "1.1.running_var"]
    new = np.ones((2, 3), dtype=np.float32)
    model.params["1.0.W"] = new
    assert model[1][0].params["W"] is new


# ---- devices and dtypes ------------------------------------------------------------------

def test_to_cpu_keeps_numpy_arrays(rng):
    model = small_model(rng)
    assert model.to("cpu") is model
    for store in (model.params, model.grads, model.buffers):
        for k, a in store.items():
            assert type(a) is np.ndarray, k
    y = model.forward(rng.standard_normal((3, 4, 7, 2)).astype(np.float32))
    assert type(y) is np.ndarray


def test_to_gpu_without_a_gpu_says_why(rng):
    if nn.gpu_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="CuPy|CUDA"):
        small_model(rng).to("gpu")


def test_unknown_device_is_refused(rng):
    with pytest.raises(ValueError, match="tpu"):
        small_model(rng).to("tpu")


@pytest.mark.gpu
def test_to_gpu_and_back(cupy, rng):
    model = small_model(rng)
    host = {k: v.copy() for k, v in model.state_dict().items()}
    model.to("gpu")
    for k, a in model.state_dict().items():
        assert isinstance(a, cupy.ndarray), k
    assert isinstance(model.grads["0.W"], cupy.ndarray)
    model.to("cpu")
    for k, a in model.state_dict().items():
        np.testing.assert_array_equal(a, host[k])


def test_astype_float64_casts_params_grads_and_buffers(rng):
    model = small_model(rng)
    W32 = model.params["0.W"].copy()
    assert model.astype(np.float64) is model
    for store in (model.params, model.grads, model.buffers):
        for k, a in store.items():
            assert a.dtype == np.float64, k
    np.testing.assert_array_equal(model.params["0.W"], W32)
    x = rng.standard_normal((3, 4, 7, 2))
    y = model.forward(x)
    assert y.dtype == np.float64
    assert model.backward(np.ones_like(y)).dtype == np.float64
    model.astype(np.float32)
    assert all(a.dtype == np.float32 for a in model.state_dict().values())


# ---- dtype: float32 in, float32 out, forward and backward, every layer ---------------------

F32_LAYERS = {
    "Conv2d": lambda r: (nn.Conv2d(3, 5, 3, padding=1, stride=2, rng=r), (3, 5, 6, 2)),
    "Linear": lambda r: (nn.Linear(6, 3, rng=r), (6, 4)),
    "BatchNorm1d": lambda r: (nn.BatchNorm1d(3), (3, 4)),
    "BatchNorm1d eval": lambda r: (nn.BatchNorm1d(3).eval(), (3, 4)),
    "BatchNorm2d": lambda r: (nn.BatchNorm2d(3), (3, 3, 5, 2)),
    "BatchNorm2d eval": lambda r: (nn.BatchNorm2d(3).eval(), (3, 3, 5, 2)),
    "LeakyReLU": lambda r: (nn.LeakyReLU(0.2), (3, 3, 5, 2)),
    "MaxPool2d": lambda r: (nn.MaxPool2d(2), (3, 5, 7, 2)),
    "Upsample nearest": lambda r: (nn.Upsample(2), (3, 3, 5, 2)),
    "Upsample bilinear": lambda r: (nn.Upsample(3, "bilinear"), (3, 3, 5, 2)),
    "Flatten": lambda r: (nn.Flatten(), (3, 3, 5, 2)),
}


@pytest.mark.parametrize("name", list(F32_LAYERS))
def test_layers_keep_float32(xp, rng, name):
    layer, shape = F32_LAYERS[name](rng)
    if xp is not np:
        layer.to("gpu")
    x = xp.asarray(rng.standard_normal(shape).astype(np.float32))
    y = layer.forward(x)
    assert y.dtype == np.float32
    dx = layer.backward(xp.asarray(rng.standard_normal(y.shape).astype(np.float32)))
    assert dx.dtype == np.float32 and dx.shape == x.shape
    for store in (layer.params, layer.grads, layer.buffers):
        for k, a in store.items():
            assert a.dtype == np.float32, k


def test_float32_network_and_loss_stay_float32(xp, rng):
    model = small_model(rng)
    if xp is not np:
        model.to("gpu")
    x = xp.asarray(rng.standard_normal((3, 4, 7, 2)).astype(np.float32))
    logits = model.forward(x)
    assert logits.dtype == np.float32 and logits.shape == (5, 2)
    loss, dlogits = nn.softmax_cross_entropy(logits, xp.asarray(np.array([1, 4])))
    assert loss.dtype == np.float32 and loss.shape == ()
    assert dlogits.dtype == np.float32
    assert model.backward(dlogits).dtype == np.float32
    assert all(a.dtype == np.float32 for a in model.state_dict().values())
    assert all(g.dtype == np.float32 for g in model.grads.values())


# ---- input validation --------------------------------------------------------------------

def test_conv_with_wrong_channels_is_refused(rng):
    layer = nn.Conv2d(3, 4, 3, rng=rng)
    with pytest.raises(ValueError, match="2 channels.*expects 3"):
        layer.forward(np.zeros((2, 5, 5, 1), dtype=np.float32))


def test_conv_input_smaller_than_the_kernel_is_refused(rng):
    with pytest.raises(ValueError, match="smaller than kernel"):
        nn.Conv2d(3, 4, 5, rng=rng).forward(np.zeros((3, 4, 6, 1), dtype=np.float32))


@pytest.mark.parametrize("layer, shape", [(nn.BatchNorm2d(3), (3, 4)),
                                          (nn.BatchNorm2d(3), (3, 5, 4)),
                                          (nn.BatchNorm1d(3), (3, 2, 2, 4))])
def test_batchnorm_refuses_the_wrong_rank(layer, shape):
    with pytest.raises(ValueError, match=f"{type(layer).__name__} expects"):
        layer.forward(np.zeros(shape, dtype=np.float32))


@pytest.mark.parametrize("factor", [1.5, 0, -2, 0.5])
def test_upsample_refuses_a_non_integer_or_non_positive_factor(factor):
    with pytest.raises(ValueError, match="scale_factor"):
        nn.Upsample(factor)


def test_upsample_refuses_an_unknown_mode():
    with pytest.raises(ValueError, match="bicubic"):
        nn.Upsample(2, mode="bicubic")


def test_upsample_accepts_an_integral_float_factor():
    y = nn.Upsample(2.0).forward(np.ones((1, 2, 3, 1), dtype=np.float32))
    assert y.shape == (1, 4, 6, 1)


@pytest.mark.parametrize("kernel_size", [1, 3, 4])
def test_maxpool_refuses_other_window_sizes(kernel_size):
    with pytest.raises(ValueError, match="kernel_size=2"):
        nn.MaxPool2d(kernel_size)


def test_maxpool_refuses_an_input_below_2x2():
    with pytest.raises(ValueError, match="at least 2x2"):
        nn.MaxPool2d(2).forward(np.zeros((1, 1, 4, 1), dtype=np.float32))


# ---- initialization ----------------------------------------------------------------------

@pytest.mark.parametrize("make, fan_in", [(lambda r: nn.Conv2d(32, 48, 3, rng=r), 32 * 9),
                                          (lambda r: nn.Linear(300, 200, rng=r), 300)])
def test_kaiming_normal_initialization(make, fan_in):
    layer = make(np.random.default_rng(0))
    W = layer.params["W"]
    assert W.dtype == np.float32
    expected_std = np.sqrt(2.0 / (1.0 + 0.2 ** 2)) / np.sqrt(fan_in)   # gain for slope 0.2
    assert W.std() == pytest.approx(expected_std, rel=0.02)          # ~14k draws: ~0.6% noise
    assert abs(W.mean()) < 0.02 * expected_std * 3
    np.testing.assert_array_equal(layer.params["b"], 0.0)
    np.testing.assert_array_equal(make(np.random.default_rng(0)).params["W"], W)   # seeded


def test_conv_without_input_grad_gives_the_same_parameter_gradients():
    from nn import Conv2d
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 5, 6, 2))
    dy = rng.standard_normal((4, 5, 6, 2))
    full = Conv2d(3, 4, 3, padding=1, rng=np.random.default_rng(1)).astype(np.float64)
    lean = Conv2d(3, 4, 3, padding=1, rng=np.random.default_rng(1)).astype(np.float64)
    lean.input_grad = False
    full.forward(x)
    lean.forward(x)
    assert full.backward(dy) is not None
    assert lean.backward(dy) is None
    for k in ("W", "b"):
        np.testing.assert_array_equal(full.grads[k], lean.grads[k])
