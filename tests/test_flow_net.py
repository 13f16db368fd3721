"""Flow steps and the whole 2-level fi-RevNet (ice.firevnet), in float64.

- the inverting backward (keep_activations=False, no stored activations) gives
  the gradients of the cache-everything backward;
- central-difference gradients of a flow step (every element) and of the whole
  flow's NLL in bits per dimension plus random linear readouts of its latents
  (every element of x, each parameter array along a random direction);
- inverse(forward(x)) == x, and the log-det against log|det J| of the full
  Jacobian of x -> (z, zs) by central differences on a tiny image.
Dropout is on (training mode); a loss evaluation restores the shared host
Generator first, so every evaluation draws the same masks.
"""
import numpy as np
import pytest
from gradcheck import check_directional, check_gradients, upstream

from ice import flow, gaussian
from ice.firevnet import FiRevNet, FlowStep
from test_flow_ops import log_abs_det, numeric_jacobian

IMAGE = (3, 4, 4, 2)        # C, H, W, N: 2 levels take it to (24, 1, 1, 2)


def randomize(module, rng):
    """Every parameter away from its (zero or data-dependent) initial value.

    The zero-initialized convolutions (the couplings' last, the split prior's)
    get small weights: large ones compound over the steps, and the prior's
    log-scale exp(-2 l) then overflows.
    """
    for k in list(module.params):
        p = module.params[k]
        name = k.rsplit(".", 1)[-1]
        zero_init = name in ("W3", "b3", "logs3") or isinstance(module, FiRevNet) and k[0] == "3"
        p[...] = p + (0.05 if zero_init else 0.2) * rng.standard_normal(p.shape)


def build(keep_activations, seed=1, hidden=3, p=0.2):
    rng = np.random.default_rng(seed)
    net = FiRevNet(3, levels=2, depth=2, hidden=hidden, p=p, rng=np.random.default_rng(seed + 1),
                   dtype=np.float64, keep_activations=keep_activations)
    net.initialize(rng.standard_normal((3, 4, 4, 16)))
    randomize(net, rng)
    return net


def dropout_rng(net):
    """The one host Generator all couplings of ``net`` draw their dropout seeds from."""
    rngs = {id(step.layers[2].rng): step.layers[2].rng
            for step in net.layers if isinstance(step, FlowStep)}
    assert len(rngs) == 1
    return next(iter(rngs.values()))


def arrays_held(module):
    """Arrays a layer holds besides its params, grads and buffers (its kept activations)."""
    def count(v):
        if isinstance(v, np.ndarray):
            return 1
        if isinstance(v, (tuple, list)):
            return sum(count(u) for u in v)
        return 0
    skip = {"params", "grads", "buffers", "_named", "layers"}
    return sum(count(v) for k, v in vars(module).items() if k not in skip)


def leaves(net):
    for layer in net.layers:
        yield from getattr(layer, "layers", [layer])


def test_architecture():
    net = build(False)
    kinds = [type(layer).__name__ for layer in net.layers]
    assert kinds == ["Squeeze", "FlowStep", "FlowStep", "Split", "Squeeze", "FlowStep",
                     "FlowStep"]
    assert net.out_channels == 24
    assert all(part.initialized for part in net._initializable())


def test_zero_initialized_flow_is_actnorm_squeeze_and_reversal(rng):
    # At initialization every coupling and the split prior are zero: the flow is linear.
    net = FiRevNet(3, levels=2, depth=2, hidden=3, rng=np.random.default_rng(0),
                   dtype=np.float64).eval()
    net.mark_initialized()
    x = rng.standard_normal(IMAGE)
    out = net.forward(x)
    s = flow.squeeze
    np.testing.assert_array_equal(out.zs[0], s(x)[6:])
    np.testing.assert_array_equal(out.z, s(s(x)[:6]))
    # Two reversals per level cancel, ActNorm is the identity before its initialization.
    np.testing.assert_array_equal(out.log_det, 0)
    np.testing.assert_allclose(out.log_prior, gaussian.standard_normal_log_likelihood(out.z)
                               + gaussian.standard_normal_log_likelihood(out.zs[0]), rtol=1e-14)


@pytest.mark.usefixtures("cores_mode")
def test_flow_step_gradients_every_element(rng):
    step = FlowStep(4, hidden=3, p=0.3, rng=np.random.default_rng(5), dtype=np.float64)
    x = rng.standard_normal((4, 2, 3, 2))
    step.forward(x)                                 # data-dependent init
    randomize(step, rng)
    state = step.layers[2].rng.bit_generator.state

    def forward():
        step.layers[2].rng.bit_generator.state = state     # the same dropout mask each time
        return step.forward(x)

    y, log_det = forward()
    dy, g = upstream(rng, y.shape), upstream(rng, log_det.shape)
    x_back, dx = step.backward(y, dy, g)
    np.testing.assert_allclose(x_back, x, rtol=0, atol=1e-12)
    keys = list(step.params)
    assert sorted(step.grads) == sorted(keys) and len(keys) == 11

    def loss():
        y, log_det = forward()
        return np.sum(dy * y) + np.sum(g * log_det)

    check_gradients("flow step (inverting backward)", loss,
                    {"x": x, **{k: step.params[k] for k in keys}},
                    {"x": dx, **{k: step.grads[k] for k in keys}})


def relative(a, b):
    return np.abs(a - b).max() / max(np.abs(a).max(), np.abs(b).max(), 1e-300)


def test_inverting_backward_equals_caching_backward(rng):
    x = rng.standard_normal(IMAGE)
    nets = {keep: build(keep) for keep in (False, True)}
    dz, dzs, grads, dxs = None, None, {}, {}
    for keep, net in nets.items():
        out = net.forward(x)
        held = sum(arrays_held(layer) for layer in leaves(net))
        if keep:
            assert held > 0
        else:
            assert held == 0, "the inverting flow keeps activations between forward and backward"
        if dz is None:
            dz, dzs = upstream(rng, out.z.shape), [upstream(rng, z.shape) for z in out.zs]
        _, dlogp = gaussian.bits_per_dim(out.log_likelihood, 48)
        dxs[keep] = net.backward(dz, dzs, dlogp)
        grads[keep] = {k: net.grads[k].copy() for k in net.params}
        assert sum(arrays_held(layer) for layer in leaves(net)) == 0   # backward lets go
    assert set(grads[True]) == set(grads[False]) and len(grads[True]) == 47
    errors = {k: relative(grads[False][k], grads[True][k]) for k in grads[True]}
    errors["x"] = relative(dxs[False], dxs[True])
    worst = max(errors, key=errors.get)
    assert errors[worst] < 1e-10, (worst, errors[worst])


def test_whole_flow_gradients():
    rng = np.random.default_rng(3)
    net = build(False)
    x = rng.standard_normal(IMAGE)
    gen = dropout_rng(net)
    state = gen.bit_generator.state

    def forward():
        gen.bit_generator.state = state
        return net.forward(x)

    out = forward()
    dz, dzs = upstream(rng, out.z.shape), [upstream(rng, z.shape) for z in out.zs]
    D = int(np.prod(IMAGE[:3]))
    bpd, dlogp = gaussian.bits_per_dim(out.log_likelihood, D)
    dx = net.backward(dz, dzs, dlogp)

    def loss():
        out = forward()
        readout = np.sum(dz * out.z) + sum(np.sum(d * z) for d, z in zip(dzs, out.zs))
        return gaussian.bits_per_dim(out.log_likelihood, D)[0] + readout

    assert abs(float(bpd) - float(gaussian.bits_per_dim(forward().log_likelihood, D)[0])) == 0
    check_gradients("2-level flow: dL/dx", loss, {"x": x}, {"x": dx})
    keys = list(net.params)
    assert len(keys) == 47
    # One array at a time, eps = 1e-5: some arrays' directional derivatives are ~1e-3 of
    # the largest (6.coupling.an1_logs: 2e-3), and at eps = 1e-6 the rounding of the loss
    # (~1e-15 of its 60-nat log-likelihoods) alone is 1e-7 of them; measured errors fall
    # about 10x from eps 1e-6 to 1e-5 (rounding), and rise again by 1e-4 (truncation).
    for k in keys:
        check_directional("2-level flow: dL/dparams (per array)", loss, {k: net.params[k]},
                          {k: net.grads[k]}, rng, eps=1e-5)
    check_directional("2-level flow: all at once", loss,
                      {"x": x, **{k: net.params[k] for k in keys}},
                      {"x": dx, **{k: net.grads[k] for k in keys}}, rng)


@pytest.mark.parametrize("keep", [False, True], ids=["inverting", "caching"])
def test_whole_flow_inverse(rng, keep):
    net = build(keep).eval()
    x = rng.standard_normal(IMAGE)
    out = net.forward(x)
    np.testing.assert_allclose(net.inverse(out.z, out.zs), x, rtol=0, atol=1e-10)
    for layer in net.layers:                        # and layer by layer
        if isinstance(layer, flow.Split):
            z1, z2, _ = layer.forward(x)
            np.testing.assert_array_equal(layer.inverse(z1, z2), x)
            x = z1
        else:
            y, _ = layer.forward(x)
            np.testing.assert_allclose(layer.inverse(y), x, rtol=0, atol=1e-10)
            x = y


def test_whole_flow_log_det_and_prior_brute_force(rng):
    net = build(False).eval()
    x = rng.standard_normal((3, 4, 4, 1))

    def latents(v):
        out = net.forward(v)
        return np.concatenate([out.z.ravel()] + [z.ravel() for z in out.zs])

    out = net.forward(x)
    J = numeric_jacobian(latents, x)
    np.testing.assert_allclose(out.log_det, [log_abs_det(J)], rtol=0, atol=1e-7)
    # log p(x) = log N(z; 0, I) + log N(z2; prior(z1)) + log|det J|, the split's prior
    # recomputed from the split's input with the ops of ice.flow.
    v = x
    for layer in net.layers[:3]:
        v = layer.forward(v)[0]
    split = net.layers[3]
    z1, z2, _, _ = flow.split_forward(v, split.params["W"], split.params["b"],
                                      split.params["logs"])
    h = flow.zero_conv_forward(z1, split.params["W"], split.params["b"], split.params["logs"])[0]
    prior = (gaussian.gaussian_log_likelihood(z2, h[0::2], h[1::2])
             + gaussian.standard_normal_log_likelihood(out.z))
    np.testing.assert_allclose(out.log_prior, prior, rtol=1e-13)
    np.testing.assert_allclose(out.log_likelihood, prior + log_abs_det(J), rtol=0, atol=1e-7)


def test_float32_stays_float32(rng):
    net = FiRevNet(3, levels=2, depth=1, hidden=4, rng=np.random.default_rng(0))
    x = rng.standard_normal(IMAGE).astype(np.float32)
    net.initialize(x)
    out = net.forward(x)
    assert out.z.dtype == out.log_det.dtype == out.log_prior.dtype == np.float32
    _, dlogp = gaussian.bits_per_dim(out.log_likelihood, 48)
    dx = net.backward(None, None, dlogp)
    assert dx.dtype == np.float32
    assert all(net.grads[k].dtype == np.float32 for k in net.params)


def test_on_the_cupy_standin_no_host_reads_and_numpy_results(rng):
    # The device path without a GPU: tests/cupy_standin.py refuses host arrays in device
    # ops and counts host reads (float(), .item(), ...). Dropout off: the stand-in has no
    # random states (on a real GPU the mask comes from cupy.random.RandomState(seed)).
    import cupy_standin
    net = build(False, p=0.0)
    x = rng.standard_normal(IMAGE)
    out = net.forward(x)
    dx = net.backward(None, None, gaussian.bits_per_dim(out.log_likelihood, 48)[1])
    grads = {k: net.grads[k].copy() for k in net.params}
    with cupy_standin.installed() as cp:
        net.to("gpu")
        xd = cp.asarray(x)
        with cupy_standin.counting() as c:
            out_d = net.forward(xd)
            bpd, dlogp = gaussian.bits_per_dim(out_d.log_likelihood, 48)
            dx_d = net.backward(None, None, dlogp)
            x_back = net.inverse(out_d.z, out_d.zs)
        assert c.host_reads == 0 and c.uploads == 0, c.by_name.most_common(5)
        np.testing.assert_allclose(cp.asnumpy(dx_d), dx, rtol=0, atol=1e-13)
        for k in grads:
            np.testing.assert_allclose(cp.asnumpy(net.grads[k]), grads[k], rtol=0, atol=1e-12,
                                       err_msg=k)
        np.testing.assert_allclose(cp.asnumpy(x_back), x, rtol=0, atol=1e-10)
        net.to("cpu")
