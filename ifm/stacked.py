"""The speed path of the regularizer: the D_l of several layer pairs run as one stack.

Every D_l (ifm/discriminator.py) has Table 2's widths after its first layer,
so layers 1..9 of all of them can be stored and run as stacks: G layers of one
shape with their parameters on a leading member axis ("3.W" of the G critics
is one (G, 128, 256) array; member l is D_l's (128, 256)). A call evaluates a
run of consecutive members ``members`` = slice(lo, hi) whose batches have one
shape (all three pairs with K = 64 pre-pool), stacked as x (R, F, S),
R = hi - lo members:

    Linear:     y[g] = W[g] x[g] + b[g]               (nn/fast/linear.py, batched)
    BatchNorm:  each (member, feature) row of x normalized by its own statistics,
                i.e. batch norm on the rows of x.reshape(R*F, S)
    LeakyReLU:  elementwise

So a run costs one pass per layer however many members it holds (on the GPU,
one launch instead of three), and a member's output depends on its own input
and parameters only. A member whose batch has another shape (K = all) is run
alone, as a run of one.

``DiscriminatorStack`` is the storage of those parameters and the runner: the
stacks hold layers 1..9 and the estimator's state of every D_l, and each D_l's
layers read member l of them (views, re-pointed by ``share`` whenever the
stacks are replaced). Its forward puts each pair's first layer (ifm/fast_pairs.py)
into the run's stacked input, runs the stacked layers and the estimator of the
run, and its backward returns each pair's (dH_l, dH_{l+1}).
tests/test_ifm_regularizer.py holds it equal to each D_l alone.
"""
from typing import NamedTuple

import numpy as np

from nn import BatchNorm1d, LeakyReLU, Linear
from nn.backend import get_array_module
from nn.fast import activations, batchnorm, linear
from nn.module import Module

from . import fast_pairs
from .discriminator import joint_and_marginal, score_gradient, upstream


class StackedLayer(Module):
    """The protocol of a stack of G layers of one shape (module docstring), not nn's Layer:
    forward(x (R, F, S), members) -> (y, cache), keeping nothing, so several runs can be
    in flight; backward(dy, cache, members) -> dx, writing the run's parameter gradients
    into ``grads[name][members]`` (overwriting them). ``from_layers`` stacks the
    parameters and buffers of G nn layers (on the host, as layers are built)."""


def member_rows(a, members):
    """a[members] (R, F) as the (R*F,) vector of those rows' parameters (a view)."""
    return a[members].reshape(-1)


def rows(x):
    """x (R, F, S) as the (R*F, S) rows the per-row ops see (a view of a contiguous x)."""
    return x.reshape(-1, x.shape[-1])


def stack_of(layers, store, key):
    """np.stack of ``getattr(layer, store)[key]`` over ``layers``."""
    return np.stack([getattr(layer, store)[key] for layer in layers])


class StackedLinear(StackedLayer):
    """W (G, out, in), b (G, out)."""

    def __init__(self, W, b):
        super().__init__()
        self.params["W"], self.params["b"] = W, b
        self._zero_grads()

    @classmethod
    def from_layers(cls, layers):
        return cls(stack_of(layers, "params", "W"), stack_of(layers, "params", "b"))

    def forward(self, x, members):
        return linear.linear_forward(x, self.params["W"][members], self.params["b"][members])

    def backward(self, dy, x, members):
        dx, _, _ = linear.linear_backward(dy, x, self.params["W"][members],
                                          dW=self.grads["W"][members],
                                          db=self.grads["b"][members])
        return dx


class StackedBatchNorm(StackedLayer):
    """gamma, beta (G, F); buffers running_mean, running_var (G, F); training-mode
    statistics per (member, feature) row, running statistics updated in place."""

    def __init__(self, gamma, beta, running_mean, running_var, momentum=0.1, eps=1e-5):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.params["gamma"], self.params["beta"] = gamma, beta
        self.buffers["running_mean"], self.buffers["running_var"] = running_mean, running_var
        self._zero_grads()

    @classmethod
    def from_layers(cls, layers):
        return cls(stack_of(layers, "params", "gamma"), stack_of(layers, "params", "beta"),
                   stack_of(layers, "buffers", "running_mean"),
                   stack_of(layers, "buffers", "running_var"), layers[0].momentum,
                   layers[0].eps)

    def forward(self, x, members):
        p, b = self.params, self.buffers
        y, cache = batchnorm.batchnorm_forward(
            rows(x), member_rows(p["gamma"], members), member_rows(p["beta"], members),
            member_rows(b["running_mean"], members), member_rows(b["running_var"], members),
            self.training, self.momentum, self.eps)
        return y.reshape(x.shape), cache

    def backward(self, dy, cache, members):
        grads = self.grads
        dx, _, _ = batchnorm.batchnorm_backward(
            rows(dy), cache, dgamma=member_rows(grads["gamma"], members),
            dbeta=member_rows(grads["beta"], members))
        return dx.reshape(dy.shape)


class StackedLeakyReLU(StackedLayer):
    """No parameters; the slope a of every member."""

    def __init__(self, negative_slope=0.2):
        super().__init__()
        self.negative_slope = negative_slope

    @classmethod
    def from_layers(cls, layers):
        return cls(layers[0].negative_slope)

    def forward(self, x, members):
        y, cache = activations.leaky_relu_forward(rows(x), self.negative_slope)
        return y.reshape(x.shape), cache

    def backward(self, dy, y, members):
        return activations.leaky_relu_backward(rows(dy), y, self.negative_slope).reshape(dy.shape)


STACKS = {BatchNorm1d: StackedBatchNorm, LeakyReLU: StackedLeakyReLU, Linear: StackedLinear}


def runs(positions):
    """Slices of consecutive pairs whose PairPositions have one row count, n_joint and
    groups (they can share one stacked batch)."""
    form = [(p.columns.shape[1], p.n_joint, p.groups) for p in positions]
    starts = [i for i in range(len(form)) if i == 0 or form[i] != form[i - 1]]
    return [slice(a, b) for a, b in zip(starts, starts[1:] + [len(form)])]


class Run(NamedTuple):
    """What the backward of one run reads."""
    members: slice
    pairs: list         # each member's fast_pairs cache
    layers: list        # each stacked layer's cache, in forward order
    dF_dV: object       # (R, S)


class DiscriminatorStack(Module):
    """Layers 1..9 and the estimator of the D_l's ``discriminators`` as stacks (module
    docstring). forward(maps, positions) -> [F_l] (0-d); backward(dF) -> [(dH_l, dH_{l+1})]
    per pair, with dF one host number or 0-d array for every pair or an array (pairs,).
    Its params, grads and buffers are the stacks; the D_l show them under their own names.
    """

    def __init__(self, discriminators):
        super().__init__()
        self.discriminators = discriminators
        self.layers = [STACKS[type(layers[0])].from_layers(layers)
                       for layers in zip(*(D.layers for D in discriminators))]
        self.estimate = discriminators[0].estimate.stack([D.estimate for D in discriminators])
        self.estimator = discriminators[0].estimator
        self.width = discriminators[0].pair_layer.params["W"].shape[0]
        self._runs = None
        self.share()

    def children(self):
        return self.layers + [self.estimate]

    def share(self):
        """Point each D_l's layers and estimator state at member l of the stacks."""
        for l, D in enumerate(self.discriminators):
            for stack, member in zip(self.layers + [self.estimate], D.layers + [D.estimate]):
                for store in ("params", "grads", "buffers"):
                    mine = getattr(member, store)
                    for key, array in getattr(stack, store).items():
                        mine[key] = array[l, ...]

    def stacked_keys(self, names):
        """{(layer, key): [the member keys]} of every stacked parameter, the D_l named by
        ``names`` ("D12", ...): e.g. the keys "D12.3.W", "D23.3.W", "D34.3.W"."""
        return {(layer, key): [f"{name}.{i}.{key}" for name in names]
                for i, layer in enumerate(self.layers, start=1) for key in layer.params}

    def attach(self, flat, names):
        """Make each stacked parameter and gradient the span of flat's buffers over its
        members' keys (which flat lays out one after another)."""
        for (layer, key), members in self.stacked_keys(names).items():
            layer.params[key], layer.grads[key] = flat.span(members)

    def forward(self, maps, positions):
        xp = get_array_module(maps[0][0])
        self._runs, F = [], []
        for members in runs(positions):
            first = positions[members.start]
            dtype = np.result_type(maps[members.start][0].dtype,
                                   self.layers[0].params["gamma"].dtype)
            a = xp.empty((members.stop - members.start, self.width, first.columns.shape[1]),
                         dtype=dtype)
            pairs = []
            for j, l in enumerate(range(members.start, members.stop)):
                layer = self.discriminators[l].pair_layer
                _, cache = fast_pairs.pair_layer_forward(
                    *maps[l], positions[l].columns, layer.params["W"], layer.params["b"],
                    layer.upsample, out=a[j])
                pairs.append(cache)
            V, caches = a, []
            for layer in self.layers:
                V, cache = layer.forward(V, members)
                caches.append(cache)
            V = V[:, 0]
            F_run, d_joint, d_marg = self.estimate.members(members)(*joint_and_marginal(
                V, first.n_joint, first.groups, self.estimator))
            self._runs.append(Run(members, pairs, caches, score_gradient(d_joint, d_marg, V)))
            F += [F_run[j, ...] for j in range(len(a))]     # 0-d views
        return F

    def backward(self, dF):
        if self._runs is None:
            raise RuntimeError("backward called before forward")
        dmaps = [None] * len(self.discriminators)
        for run in self._runs:
            dF_run = upstream(dF if np.ndim(dF) == 0 else dF[run.members], run.dF_dV)
            d = (run.dF_dV * (dF_run if dF_run.ndim == 0 else dF_run[:, None]))[:, None]
            for layer, cache in zip(reversed(self.layers), reversed(run.layers)):
                d = layer.backward(d, cache, run.members)
            for j, l in enumerate(range(run.members.start, run.members.stop)):
                grads = self.discriminators[l].pair_layer.grads
                dh_low, dh_high, _, _ = fast_pairs.pair_layer_backward(
                    d[j], run.pairs[j], dW=grads["W"], db=grads["b"])
                dmaps[l] = (dh_low, dh_high)
        return dmaps
