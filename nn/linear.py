"""Fully connected layer, batch last; or a stack of G independent ones.

x (in, N), W (out, in), b (out,), y (out, N):
Forward:  y = W x + b
Backward: dx = W^T dy,  dW = dy x^T,  db = sum_n dy
A stack (ifm/stacked.py) puts a member axis first, x (G, in, N), W (G, out, in),
b (G, out), and each member g has y[g] = W[g] x[g] + b[g]: the same formulas,
with ^T the transpose of the last two axes.
The products go through nn.cpu.parallel.matmul (bands over the CPU's cores).
"""
from .cpu.parallel import channel_sum, matmul


def _T(A):
    """A^T of a matrix, or of each matrix of a stack (the last two axes swapped; a view)."""
    return A.swapaxes(-1, -2)


def linear_forward(x, W, b):
    """Returns (y, cache) with cache = x."""
    return matmul(W, x, bias=b), x


def linear_backward(dy, x, W, out=(None, None)):
    """Returns (dx, dW, db); dW and db go into ``out`` = (dW, db) when given."""
    dW, db = out
    return matmul(_T(W), dy), matmul(dy, _T(x), out=dW), channel_sum(dy, out=db)
