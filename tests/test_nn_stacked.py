"""Stacked layers (ifm/stacked.py) against their members as plain nn layers.

A stack of G layers run on stacked batches must give, member by member, what
each member gives as an nn layer of its own: outputs, input gradients,
parameter gradients and (batch norm) running statistics. A run of some
members (a slice) must touch only theirs.
"""
import numpy as np
import pytest

from nn import BatchNorm1d, LeakyReLU, Linear
from ifm.stacked import StackedBatchNorm, StackedLeakyReLU, StackedLinear

pytestmark = pytest.mark.usefixtures("cores_mode")

G, F_IN, F_OUT, S = 3, 5, 4, 7


def members(kind, rng):
    """G nn layers of one kind, with random parameters and statistics."""
    layers = []
    for _ in range(G):
        if kind is Linear:
            layer = Linear(F_IN, F_OUT, rng=rng, dtype=np.float64)
            layer.params["b"][...] = rng.standard_normal(F_OUT)
        elif kind is BatchNorm1d:
            layer = BatchNorm1d(F_IN, dtype=np.float64)
            layer.params["gamma"][...] = rng.uniform(0.5, 1.5, F_IN)
            layer.params["beta"][...] = rng.standard_normal(F_IN)
            layer.buffers["running_mean"][...] = rng.standard_normal(F_IN)
        else:
            layer = LeakyReLU(0.2)
        layers.append(layer)
    return layers


STACKS = {Linear: StackedLinear, BatchNorm1d: StackedBatchNorm, LeakyReLU: StackedLeakyReLU}


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("run", [slice(0, G), slice(1, 2), slice(1, 3)],
                         ids=["all", "one", "two"])
@pytest.mark.parametrize("kind", [Linear, BatchNorm1d, LeakyReLU],
                         ids=["linear", "batchnorm", "leaky"])
def test_a_run_equals_its_members_alone(rng, kind, run, training):
    layers = members(kind, rng)
    stack = STACKS[kind].from_layers(layers).train(training)
    for layer in layers:
        layer.train(training)
    before = {k: v.copy() for k, v in stack.buffers.items()}
    ids = range(G)[run]
    x = rng.standard_normal((len(ids), F_IN, S))
    y, cache = stack.forward(x, run)
    dy = rng.standard_normal(y.shape)
    dx = stack.backward(dy, cache, run)
    for j, g in enumerate(ids):
        np.testing.assert_allclose(y[j], layers[g].forward(x[j]), rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(dx[j], layers[g].backward(dy[j]), rtol=1e-13, atol=1e-13)
        for key, grad in layers[g].grads.items():
            np.testing.assert_allclose(stack.grads[key][g], grad, rtol=1e-13, atol=1e-13)
        for key, buffer in layers[g].buffers.items():
            np.testing.assert_allclose(stack.buffers[key][g], buffer, rtol=1e-13, atol=1e-15)
    for g in set(range(G)) - set(ids):          # members outside the run: untouched
        for key in stack.grads:
            assert not stack.grads[key][g].any()
        for key in stack.buffers:
            np.testing.assert_array_equal(stack.buffers[key][g], before[key][g])


@pytest.mark.no_split
def test_from_layers_stacks_parameters_on_axis_0(rng):
    layers = members(Linear, rng)
    stack = StackedLinear.from_layers(layers)
    assert stack.params["W"].shape == (G, F_OUT, F_IN) and stack.params["b"].shape == (G, F_OUT)
    for g, layer in enumerate(layers):
        np.testing.assert_array_equal(stack.params["W"][g], layer.params["W"])
