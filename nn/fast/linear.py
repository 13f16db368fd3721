"""Fully connected layer (the formula: nn/linear.py), split over the CPU's cores; or a stack.

The products are nn/cpu/parallel.matmul. A stack of G independent layers
(ifm/stacked.py) puts a member axis first, x (G, in, N), W (G, out, in),
b (G, out), and member g has y[g] = W[g] x[g] + b[g]: the same formulas, with
^T the transpose of the last two axes.
"""
from ..cpu.parallel import channel_sum, matmul


def _T(A):
    """A^T of a matrix, or of each matrix of a stack (the last two axes swapped; a view)."""
    return A.swapaxes(-1, -2)


def linear_forward(x, W, b):
    """(y, cache) with cache = x."""
    return matmul(W, x, bias=b), x


def linear_backward(dy, x, W, dW=None, db=None):
    """(dx, dW, db); dW and db are written into the arrays given (new ones when None)."""
    return matmul(_T(W), dy), matmul(dy, _T(x), out=dW), channel_sum(dy, out=db)
