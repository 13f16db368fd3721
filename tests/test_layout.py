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
from ifm.pairs import pair_linear_backward, pair_linear_forward


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
    as_conv_output = lambda shape: np.ascontiguousarray(        # noqa: E731
        rng.standard_normal(shape).transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)
    h_low, h_high = as_conv_output((4, 5, 6, 6)), as_conv_output((4, 3, 3, 3))
    S = 50
    index = np.stack([rng.integers(0, 4, S), rng.integers(0, 36, S),
                      rng.integers(0, 4, S), rng.integers(0, 9, S)])
    for project in (False, True):
        a, cache = pair_linear_forward(h_low, h_high, index, rng.standard_normal((7, 8)),
                                       np.zeros(7), project=project)
        dh_low, dh_high, _, _ = pair_linear_backward(rng.standard_normal(a.shape), cache)
        assert dh_low.shape == h_low.shape and chwn(dh_low)
        assert dh_high.shape == h_high.shape and chwn(dh_high)


def test_linear_layers_and_what_follows_them_are_feature_major():
    """D's activations (S, features) keep memory (features, S): rows of S values."""
    rng = np.random.default_rng(2)
    net = nn.Sequential(nn.Linear(8, 16, rng=rng), nn.BatchNorm1d(16), nn.LeakyReLU(0.2),
                        nn.Linear(16, 4, rng=rng))
    x = rng.standard_normal((300, 8)).astype(np.float32)
    seen = []
    for layer in net.layers:
        x = layer.forward(x)
        seen.append(x)
    d = rng.standard_normal(x.shape).astype(np.float32).T.copy().T
    for layer in reversed(net.layers[1:]):
        d = layer.backward(d)
        seen.append(d)
    assert all(a.T.flags.c_contiguous for a in seen), [a.strides for a in seen]
