"""Softmax cross-entropy, mean over the batch, batch last.

logits z (K, N), integer labels t (N,):
Forward:  log p = z - max_k z - log sum_k exp(z_k - max_k z)     (stable log-sum-exp)
          L = -(1/N) sum_n log p[t_n, n]
Backward: dL/dz = (softmax(z) - onehot(t)) / N
"""
from .backend import get_array_module


def log_softmax(z):
    """log p (K, N) for logits z (K, N): the softmax runs over axis 0."""
    xp = get_array_module(z)
    shifted = z - z.max(axis=0, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=0, keepdims=True))


def softmax_cross_entropy(logits, labels):
    """Returns (loss, dlogits); loss is a 0-d array on the logits' device (no host sync)."""
    xp = get_array_module(logits)
    N = logits.shape[1]
    logp = log_softmax(logits)
    samples = xp.arange(N)
    loss = -logp[labels, samples].mean()
    dlogits = xp.exp(logp)
    dlogits[labels, samples] -= 1
    dlogits /= N
    return loss, dlogits
