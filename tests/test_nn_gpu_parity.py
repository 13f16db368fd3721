"""NumPy/CuPy parity: the same inputs give the same outputs and gradients on both.

Every op runs once with NumPy arrays and once with CuPy arrays built from the
same host data; forward outputs, input and parameter gradients (and batch-norm
running statistics) must agree. The NumPy side is itself checked against
central differences and loop references elsewhere, so agreement here carries
those checks over to the GPU. Arrays are batch last (maps (C, H, W, N),
features and logits (F, N), nn/layout.py). All tests skip without CuPy and a
CUDA device.

Agreement is normwise: max|gpu - cpu| / max|cpu| below 1e-10 in float64 (only
summation order differs) and 1e-4 in float32.
"""
import numpy as np
import pytest
from gradcheck import distinct_values

import nn
from nn import activations, batchnorm, conv, layout, linear, losses, pooling, upsample
from nn.flat import move_into_flat_buffers
from test_nn_optim import flat_of

pytestmark = pytest.mark.gpu

TOL = {np.float64: 1e-10, np.float32: 1e-4}


def assert_same(gpu, cpu, dtype, what, scale=None):
    """max|gpu - cpu| / scale < TOL[dtype]; ``scale`` defaults to max|cpu|."""
    gpu, cpu = nn.to_numpy(gpu), nn.to_numpy(cpu)
    assert gpu.shape == cpu.shape, f"{what}: shape {gpu.shape} on GPU, {cpu.shape} on CPU"
    assert gpu.dtype == cpu.dtype, f"{what}: dtype {gpu.dtype} on GPU, {cpu.dtype} on CPU"
    if scale is None:
        scale = float(np.abs(cpu).max(initial=0.0))
    error = float(np.abs(gpu.astype(np.float64) - cpu).max(initial=0.0)) / max(scale, 1e-30)
    assert error < TOL[dtype], f"{what}: GPU and CPU differ by {error:.2e} (relative)"


def largest(arrays):
    return max(float(np.abs(nn.to_numpy(a)).max(initial=0.0)) for a in arrays)


# Each case is (data, run): data(rng) gives the host inputs; run(xp, normal, *inputs) runs
# forward and backward on those inputs (already on xp's device) with an upstream gradient
# drawn on the host from normal(shape), and returns every output and gradient by name.

def conv_case(k, padding, stride):
    def data(rng):
        return [rng.standard_normal((3, 7, 6, 2)), rng.standard_normal((5, 3, k, k)),
                rng.standard_normal(5)]

    def run(xp, normal, x, W, b):
        y, cache = conv.conv2d_forward(x, W, b, padding, stride)
        dx, dW, db = conv.conv2d_backward(xp.asarray(normal(y.shape).astype(x.dtype)), cache)
        return {"y": y, "dx": dx, "dW": dW, "db": db}
    return data, run


def batchnorm_case(shape, train):
    def data(rng):
        C = shape[0]
        return [rng.standard_normal(shape) * 2.0 + 1.0, rng.standard_normal(C),
                rng.standard_normal(C), rng.standard_normal(C), rng.uniform(0.5, 2.0, C)]

    def run(xp, normal, x, gamma, beta, r_mean, r_var):
        y, cache = batchnorm.batchnorm_forward(x, gamma, beta, r_mean, r_var, train)
        dx, dgamma, dbeta = batchnorm.batchnorm_backward(
            xp.asarray(normal(y.shape).astype(x.dtype)), cache)
        return {"y": y, "dx": dx, "dgamma": dgamma, "dbeta": dbeta,
                "running_mean": r_mean, "running_var": r_var}
    return data, run


def layer_case(make_layer, make_x):
    """A parameter-free layer object (its forward caches what its backward needs)."""
    def data(rng):
        return [make_x(rng)]

    def run(xp, normal, x):
        layer = make_layer()
        y = layer.forward(x)
        return {"y": y, "dx": layer.backward(xp.asarray(normal(y.shape).astype(x.dtype)))}
    return data, run


def linear_case():
    def data(rng):
        return [rng.standard_normal((5, 4)), rng.standard_normal((3, 5)), rng.standard_normal(3)]

    def run(xp, normal, x, W, b):
        y, cache = linear.linear_forward(x, W, b)
        dx, dW, db = linear.linear_backward(xp.asarray(normal(y.shape).astype(x.dtype)), cache, W)
        return {"y": y, "dx": dx, "dW": dW, "db": db}
    return data, run


def softmax_case():
    def data(rng):
        return [rng.standard_normal((7, 6)) * 3.0, rng.integers(0, 7, size=6)]

    def run(xp, normal, logits, labels):
        loss, dlogits = losses.softmax_cross_entropy(logits, labels)
        return {"loss": loss, "dlogits": dlogits}
    return data, run


def leaky_relu_case():
    def data(rng):
        return [rng.standard_normal((3, 4, 5))]

    def run(xp, normal, x):
        y, cache = activations.leaky_relu_forward(x, 0.2)
        dy = xp.asarray(normal(y.shape).astype(x.dtype))
        return {"y": y, "dx": activations.leaky_relu_backward(dy, cache, 0.2)}
    return data, run


def maxpool_case():
    def data(rng):
        return [distinct_values(rng, (3, 5, 7, 2))]

    def run(xp, normal, x):
        y, cache = pooling.maxpool2x2_forward(x)
        dy = xp.asarray(normal(y.shape).astype(x.dtype))
        return {"y": y, "dx": pooling.maxpool2x2_backward(dy, cache)}
    return data, run


def layout_case():
    """nn.layout.from_nchw, the network's entry (also with the cast the trainer fuses in)."""
    def data(rng):
        return [rng.standard_normal((2, 3, 4, 5))]

    def run(xp, normal, images):
        x = layout.from_nchw(images)
        x32 = layout.from_nchw(images, np.float32)
        assert x.flags.c_contiguous and x32.flags.c_contiguous and x32.dtype == np.float32
        return {"x": x, "x float32": x32.astype(images.dtype)}
    return data, run


def upsample_case(mode, s):
    def data(rng):
        return [rng.standard_normal((3, 3, 5, 2))]

    def run(xp, normal, x):
        if mode == "nearest":
            y = upsample.nearest_upsample_forward(x, s)
            dx = upsample.nearest_upsample_backward(xp.asarray(normal(y.shape).astype(x.dtype)), s)
        else:
            y = upsample.bilinear_upsample_forward(x, s)
            dx = upsample.bilinear_upsample_backward(
                xp.asarray(normal(y.shape).astype(x.dtype)), s, x.shape)
        return {"y": y, "dx": dx}
    return data, run


CASES = {
    **{f"conv2d k{k} p{p} s{s}": conv_case(k, p, s)
       for k, p, s in [(1, 0, 1), (2, 1, 2), (3, 1, 1), (3, 2, 2), (5, 2, 1)]},
    **{f"batchnorm {len(shape)}-D {'train' if t else 'eval'}": batchnorm_case(shape, t)
       for shape in [(3, 6), (3, 3, 5, 3)] for t in (True, False)},
    "leaky_relu": leaky_relu_case(),
    "maxpool2x2": maxpool_case(),
    **{f"upsample {mode} x{s}": upsample_case(mode, s)
       for mode in ("nearest", "bilinear") for s in (2, 3)},
    "Flatten": layer_case(nn.Flatten, lambda r: r.standard_normal((3, 3, 5, 2))),
    "MaxPool2d": layer_case(nn.MaxPool2d, lambda r: distinct_values(r, (2, 4, 6, 2))),
    "Upsample bilinear": layer_case(lambda: nn.Upsample(2, "bilinear"),
                                    lambda r: r.standard_normal((2, 4, 3, 1))),
    "layout": layout_case(),
    "linear": linear_case(),
    "softmax_cross_entropy": softmax_case(),
}


def host_inputs(data, seed, dtype):
    """The case's inputs, floating-point ones cast to ``dtype`` (labels stay integers)."""
    return [v.astype(dtype) if v.dtype.kind == "f" else v
            for v in data(np.random.default_rng(seed))]


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", list(CASES))
def test_op_parity(cupy, name, dtype):
    data, run = CASES[name]
    inputs = host_inputs(data, 0, dtype)
    results = {}
    for xp in (np, cupy):
        normal = np.random.default_rng(1).standard_normal   # the same dy on both sides
        results[xp] = run(xp, normal, *[xp.asarray(v.copy()) for v in inputs])
    cpu, gpu = results[np], results[cupy]
    assert set(cpu) == set(gpu)
    for key in cpu:
        assert isinstance(gpu[key], cupy.ndarray), f"{name}: {key} left the GPU"
        assert_same(gpu[key], cpu[key], dtype, f"{name} {key}")


def network(seed, dtype):
    rng = np.random.default_rng(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, rng=rng, dtype=dtype),
        nn.BatchNorm2d(4, dtype=dtype),
        nn.LeakyReLU(0.2),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1, stride=2, rng=rng, dtype=dtype),
        nn.Upsample(2, "bilinear"),
        nn.Flatten(),
        nn.Linear(6 * 4 * 4, 10, rng=rng, dtype=dtype),
        nn.BatchNorm1d(10, dtype=dtype),
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_network_parity(cupy, dtype):
    """Three SGD steps of a small network, compared after every step.

    A bias right before a training-mode batch norm (here 0.b, 4.b and 7.b) has a
    gradient that is zero in exact arithmetic, so on each side it is rounding noise:
    gradients are compared on the scale of all the gradients, parameters on the scale
    of all the parameters (a normwise check of the whole vector), not one by one.
    """
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 8, 9, 5)).astype(dtype)
    labels = rng.integers(0, 10, size=5)
    cpu_model, gpu_model = network(1, dtype), network(1, dtype).to("gpu")
    cpu_opt, gpu_opt = (nn.SGD(move_into_flat_buffers(model), lr=0.1, momentum=0.9,
                               weight_decay=1e-3) for model in (cpu_model, gpu_model))
    for step in range(3):
        out = {}
        for xp, model, opt in ((np, cpu_model, cpu_opt), (cupy, gpu_model, gpu_opt)):
            logits = model.forward(xp.asarray(x))
            loss, dlogits = nn.softmax_cross_entropy(logits, xp.asarray(labels))
            dx = model.backward(dlogits)
            out[xp] = {"logits": logits, "loss": loss, "dx": dx, "grads": dict(model.grads)}
            opt.step(model.grads)
        cpu, gpu = out[np], out[cupy]
        for key in ("logits", "loss", "dx"):
            assert isinstance(gpu[key], cupy.ndarray), key
            assert_same(gpu[key], cpu[key], dtype, f"step {step} {key}")
        grad_scale = largest(cpu["grads"].values())
        for k, g in cpu["grads"].items():
            assert isinstance(gpu["grads"][k], cupy.ndarray), k
            assert_same(gpu["grads"][k], g, dtype, f"step {step} grad {k}", scale=grad_scale)
        cpu_state, gpu_state = cpu_model.state_dict(), gpu_model.state_dict()
        state_scale = largest(cpu_state.values())
        for k, a in cpu_state.items():
            assert isinstance(gpu_state[k], cupy.ndarray), k
            assert_same(gpu_state[k], a, dtype, f"after step {step}: {k}", scale=state_scale)
    cpu_model.eval(), gpu_model.eval()
    assert_same(gpu_model.forward(cupy.asarray(x)), cpu_model.forward(x), dtype, "eval logits")


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("make", [lambda f: nn.SGD(f, lr=0.1, momentum=0.9, weight_decay=1e-2),
                                  lambda f: nn.Adam(f, lr=1e-2, weight_decay=1e-2)],
                         ids=["SGD", "Adam"])
def test_optimizer_parity(cupy, make, dtype):
    rng = np.random.default_rng(4)
    p0 = {"a": rng.standard_normal((3, 4)).astype(dtype), "b": rng.standard_normal(5).astype(dtype)}
    grads = [{k: rng.standard_normal(v.shape).astype(dtype) for k, v in p0.items()}
             for _ in range(3)]
    cpu_params = {k: v.copy() for k, v in p0.items()}
    gpu_params = {k: cupy.asarray(v) for k, v in p0.items()}
    cpu_opt, gpu_opt = make(flat_of(cpu_params)), make(flat_of(gpu_params))
    for g in grads:
        cpu_opt.step(g)
        gpu_opt.step({k: cupy.asarray(v) for k, v in g.items()})
    for k in p0:
        assert isinstance(gpu_params[k], cupy.ndarray)
        assert_same(gpu_params[k], cpu_params[k], dtype, f"param {k}")
    for slot, arrays in cpu_opt.state.items():
        for k, a in arrays.items():
            assert_same(gpu_opt.state[slot][k], a, dtype, f"state {slot}/{k}")
    assert gpu_opt.step_count == cpu_opt.step_count == 3


def test_to_nchw_on_the_device(cupy):
    """nn.layout.to_nchw (used to compare with NCHW code) on CuPy arrays."""
    x = np.random.default_rng(5).standard_normal((3, 4, 5, 2))
    back = layout.to_nchw(cupy.asarray(x))
    assert isinstance(back, cupy.ndarray) and back.flags.c_contiguous
    np.testing.assert_array_equal(nn.to_numpy(back), x.transpose(3, 0, 1, 2))


def test_loss_stays_on_the_device(cupy):
    logits = cupy.asarray(np.random.default_rng(0).standard_normal((3, 4)))     # (K, N)
    loss, dlogits = nn.softmax_cross_entropy(logits, cupy.asarray(np.array([0, 1, 2, 0])))
    assert isinstance(loss, cupy.ndarray) and loss.shape == ()
    assert isinstance(dlogits, cupy.ndarray)


def test_backend_helpers(cupy):
    a = np.arange(6.0).reshape(2, 3)
    g = nn.to_device(a, "gpu")
    assert isinstance(g, cupy.ndarray)
    assert nn.get_array_module(g) is cupy and nn.get_array_module(a) is np
    assert nn.xp_for("gpu") is cupy and nn.xp_for("cpu") is np
    back = nn.to_numpy(g)
    assert type(back) is np.ndarray
    np.testing.assert_array_equal(back, a)
    np.testing.assert_array_equal(nn.to_numpy(nn.to_device(g, "gpu")), a)
    assert nn.backend.gpu_unavailable_reason() is None
