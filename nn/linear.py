"""Fully connected layer, batch last: the formula.

x (in, N), W (out, in), b (out,), y (out, N):

Forward:  y = W x + b
Backward: dx = W^T dy,   dW = dy x^T,   db = sum_n dy

The layers run nn/fast/linear.py: the products split over the CPU's cores,
and a stack of G layers (x (G, in, N), W (G, out, in), b (G, out)) for
ifm/stacked.py.
"""


def linear_forward(x, W, b):
    """(y, cache) with cache = x."""
    return W @ x + b[:, None], x


def linear_backward(dy, x, W):
    """(dx, dW, db)."""
    return W.T @ dy, dy @ x.T, dy.sum(axis=1)
