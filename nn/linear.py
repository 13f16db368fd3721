"""Fully connected layer, batch last.

x (in, N), W (out, in), b (out,), y (out, N):
Forward:  y = W x + b
Backward: dx = W^T dy,  dW = dy x^T,  db = sum_n dy
The products go through nn.parallel.matmul (bands over the CPU's cores).
"""
from .parallel import channel_sum, matmul


def linear_forward(x, W, b):
    """Returns (y, cache) with cache = x."""
    return matmul(W, x, bias=b), x


def linear_backward(dy, x, W, out=(None, None)):
    """Returns (dx, dW, db); dW and db go into ``out`` = (dW, db) when given."""
    dW, db = out
    return matmul(W.T, dy), matmul(dy, x.T, out=dW), channel_sum(dy, out=db)
