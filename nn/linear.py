"""Fully connected layer.

x (N, in), W (out, in), b (out,):
Forward:  y = x W^T + b
Backward: dx = dy W,  dW = dy^T x,  db = sum_n dy
"""


def linear_forward(x, W, b):
    """Returns (y, cache) with cache = x."""
    return x @ W.T + b, x


def linear_backward(dy, x, W):
    """Returns (dx, dW, db)."""
    return dy @ W, dy.T @ x, dy.sum(axis=0)
