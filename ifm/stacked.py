"""Stacked layers: G independent layers of one shape, their parameters on a leading axis.

Member g of a stack is an ordinary layer with its own parameters, e.g. for a
linear stack W[g] (out, in), b[g] (out,) of W (G, out, in), b (G, out). A call
evaluates a run of consecutive members ``members`` = slice(lo, hi) whose
batches have one shape, stacked as x (g, F, S), g = hi - lo:
Linear:      y[g] = W[g] x[g] + b[g]                         (nn/linear.py, batched)
BatchNorm:   each (member, feature) row of x normalized by its own statistics,
             i.e. nn/batchnorm.py on the rows of x.reshape(g*F, S)
LeakyReLU:   elementwise (nn/activations.py)
So a run costs one pass per layer however many members it holds, and a
member's output depends on its own input and parameters only. A member whose
batch has another shape is run alone (a run of one).

forward(x, members) returns (y, cache) and keeps nothing, so several runs can
be in flight; backward(dy, cache, members) returns dx and writes the run's
parameter gradients into ``grads[name][members]`` (overwriting them).
``from_layers`` stacks the parameters and buffers of G nn layers (on the host,
as layers are built; ``.to("gpu")`` moves the stack).
"""
import numpy as np

from nn.fast import activations, batchnorm, linear
from nn.module import Module


def member_rows(a, members):
    """a[members] (g, F) as the (g*F,) vector of those rows' parameters (a view)."""
    return a[members].reshape(-1)


def rows(x):
    """x (g, F, S) as the (g*F, S) rows the per-row ops see (a view of a contiguous x)."""
    return x.reshape(-1, x.shape[-1])


class StackedLinear(Module):
    """W (G, out, in), b (G, out)."""

    def __init__(self, W, b):
        super().__init__()
        self.params["W"], self.params["b"] = W, b
        self._zero_grads()

    @classmethod
    def from_layers(cls, layers):
        return cls(*(np.stack([layer.params[k] for layer in layers]) for k in ("W", "b")))

    def forward(self, x, members):
        return linear.linear_forward(x, self.params["W"][members], self.params["b"][members])

    def backward(self, dy, x, members):
        dx, _, _ = linear.linear_backward(dy, x, self.params["W"][members],
                                          dW=self.grads["W"][members],
                                          db=self.grads["b"][members])
        return dx


class StackedBatchNorm(Module):
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
        stack = lambda store, k: np.stack([getattr(layer, store)[k] for layer in layers])  # noqa: E731
        first = layers[0]
        return cls(stack("params", "gamma"), stack("params", "beta"),
                   stack("buffers", "running_mean"), stack("buffers", "running_var"),
                   first.momentum, first.eps)

    def forward(self, x, members):
        p, b = self.params, self.buffers
        y, cache = batchnorm.batchnorm_forward(
            rows(x), member_rows(p["gamma"], members), member_rows(p["beta"], members),
            member_rows(b["running_mean"], members), member_rows(b["running_var"], members),
            self.training, self.momentum, self.eps)
        return y.reshape(x.shape), cache

    def backward(self, dy, cache, members):
        g = self.grads
        dx, _, _ = batchnorm.batchnorm_backward(
            rows(dy), cache, dgamma=member_rows(g["gamma"], members),
            dbeta=member_rows(g["beta"], members))
        return dx.reshape(dy.shape)


class StackedLeakyReLU(Module):
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
