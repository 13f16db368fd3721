"""Fully connected layer.

x (N, in), W (out, in), b (out,):
Forward:  y = x W^T + b
Backward: dx = dy W,  dW = dy^T x,  db = sum_n dy

Computed transposed, y^T = W x^T + b and dx^T = W^T dy^T, so y and dx come
back as transposed views whose memory is (features, N), batch fastest, as the
conv layers keep theirs: batch norm and leaky ReLU after a linear layer then
run over contiguous rows of N values per feature (the IFM critic D has
N = 16,384 pair rows). The products go through nn.parallel.matmul.
"""
from .parallel import add_to_rows, matmul, sum_rows


def linear_forward(x, W, b):
    """Returns (y, cache) with cache = x."""
    yT = matmul(W, x.T)                 # (out, N)
    add_to_rows(yT, b)
    return yT.T, x


def linear_backward(dy, x, W):
    """Returns (dx, dW, db)."""
    dyT = dy.T                          # (out, N), contiguous when dy is feature-major
    return matmul(W.T, dyT).T, matmul(dyT, x), sum_rows(dyT)
