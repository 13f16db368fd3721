"""Softmax cross-entropy, mean over the batch.

logits z (N, K), integer labels t (N,):
Forward:  log p = z - max(z) - log sum_k exp(z_k - max(z))     (stable log-sum-exp)
          L = -(1/N) sum_n log p[n, t_n]
Backward: dL/dz = (softmax(z) - onehot(t)) / N
"""
from .backend import get_array_module


def log_softmax(z):
    xp = get_array_module(z)
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))


def softmax_cross_entropy(logits, labels):
    """Returns (loss, dlogits); loss is a 0-d array on the logits' device (no host sync)."""
    xp = get_array_module(logits)
    N = logits.shape[0]
    logp = log_softmax(logits)
    rows = xp.arange(N)
    loss = -logp[rows, labels].mean()
    dlogits = xp.exp(logp)
    dlogits[rows, labels] -= 1
    dlogits /= N
    return loss, dlogits
