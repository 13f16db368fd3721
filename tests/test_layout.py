"""Memory layout of the activations: (C, H, W, N) behind the (N, C, H, W) shape.

The CPU speed of the conv stack rests on it (nn/conv.py, docs/performance.md):
conv outputs come out in that layout, the elementwise layers and the pooling
keep it, every backward pass hands it back, and so do the IFM pair gradients.
Values are checked elsewhere; these tests fail when a change silently falls
back to a slower layout.
"""
import numpy as np

import nn
from experiment.classifier import Classifier
from ifm.pairs import scatter_vectors


def chwn(a):
    """True when a (N, C, H, W) has memory ordered (C, H, W, N), batch fastest.

    Cropped views (col2im's, of a padded buffer) count: the order of the
    strides matters, not whether the memory is gap-free.
    """
    c, h, w, n = a.transpose(1, 2, 3, 0).strides
    return n == a.itemsize and c > h > w > n


def test_the_classifier_keeps_the_layout_forward_and_backward():
    rng = np.random.default_rng(0)
    model = Classifier(rng=rng)
    x = rng.standard_normal((6, 3, 32, 32)).astype(np.float32)
    logits = model.forward(x)
    assert all(chwn(h) for h in model.features), [h.strides for h in model.features]
    seen = []
    for layer in list(model.blocks[1:]) + list(model.pools[:-1]):
        original = layer.backward

        def record(dy, original=original):
            dx = original(dy)
            seen.append(dx)
            return dx
        layer.backward = record
    _, dlogits = nn.softmax_cross_entropy(logits, np.arange(6) % 10)
    model.backward(dlogits)
    assert len(seen) == 6 and all(chwn(d) for d in seen), [d.strides for d in seen]


def test_pair_gradients_come_back_in_the_layout_of_the_features():
    rng = np.random.default_rng(1)
    n, s = rng.integers(0, 4, 50), rng.integers(0, 36, 50)
    dH = scatter_vectors(rng.standard_normal((50, 5)), n, s, (4, 5, 6, 6))
    assert dH.shape == (4, 5, 6, 6) and chwn(dH)
