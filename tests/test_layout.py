"""Memory layout of the activations: batch last, and the shape says so (nn/layout.py).

Feature maps are (C, H, W, N) and features (F, N), C-contiguous: the shape is
the memory order. The CPU speed of the conv stack rests on it (nn/conv.py,
docs/performance.md): the conv GEMM's output is the next map itself, the
elementwise layers and the pooling keep the layout, every backward pass hands
it back, and so do the IFM pair gradients. Values are checked elsewhere; these
tests fail when a change silently falls back to another layout.
"""
import numpy as np
import pytest

import nn
from experiment.classifier import Classifier
from ifm import fast_pairs, pairs
from nn.layout import from_nchw, to_nchw


def batch_last_order(a):
    """True when the strides of a (C, H, W, N) map fall from C to N, with N fastest.

    Cropped views (col2im's dx, the unpadded window of a padded buffer) count:
    the order of the strides matters, not whether the memory is gap-free.
    """
    c, h, w, n = a.strides
    return n == a.itemsize and c > h > w > n


def test_from_nchw_and_to_nchw_convert_and_return_c_contiguous_arrays():
    images = np.arange(2 * 3 * 4 * 5, dtype=np.uint8).reshape(2, 3, 4, 5)     # (N, C, H, W)
    x = from_nchw(images, np.float32)
    assert x.shape == (3, 4, 5, 2) and x.dtype == np.float32 and x.flags.c_contiguous
    for n in range(2):
        for c in range(3):
            np.testing.assert_array_equal(x[c, :, :, n], images[n, c])
    assert from_nchw(images).dtype == np.uint8
    back = to_nchw(x)
    assert back.shape == images.shape and back.flags.c_contiguous
    np.testing.assert_array_equal(back, images)


@pytest.mark.parametrize("features_at", ["pre-pool", "post-pool"])
def test_the_classifier_keeps_the_layout_forward_and_backward(features_at):
    rng = np.random.default_rng(0)
    model = Classifier(rng=rng, features_at=features_at)
    N = 6
    x = rng.standard_normal((3, 32, 32, N)).astype(np.float32)
    seen = {}

    def watch(name, layer):
        """Record what ``layer`` hands on, forward and backward."""
        forward, backward = layer.forward, layer.backward

        def watched_forward(a):
            seen[f"{name} forward"] = y = forward(a)
            return y

        def watched_backward(d):
            seen[f"{name} backward"] = dx = backward(d)
            return dx
        layer.forward, layer.backward = watched_forward, watched_backward

    for i, (block, pool) in enumerate(zip(model.blocks, model.pools)):
        for j, layer in enumerate(block.layers):
            watch(f"block{i + 1}.{j}", layer)
        watch(f"pool{i + 1}", pool)
    watch("flatten", model.flatten)
    watch("fc", model.fc)

    logits = model.forward(x)
    sides = {"pre-pool": (32, 16, 8, 4), "post-pool": (16, 8, 4, 2)}[features_at]
    assert [h.shape for h in model.features] == [
        (c, s, s, N) for c, s in zip((32, 64, 128, 128), sides)]
    assert all(h.flags.c_contiguous for h in model.features), [h.strides for h in model.features]
    for i in range(4):
        for j in range(3):
            assert seen[f"block{i + 1}.{j} forward"].flags.c_contiguous, (i, j)
        assert seen[f"pool{i + 1} forward"].flags.c_contiguous, i
    assert seen["flatten forward"].shape == (512, N) and seen["flatten forward"].flags.c_contiguous
    assert logits.shape == (10, N) and logits.flags.c_contiguous

    _, dlogits = nn.softmax_cross_entropy(logits, np.arange(N) % 10)
    assert dlogits.shape == (10, N) and dlogits.flags.c_contiguous
    model.backward(dlogits, [rng.standard_normal(h.shape).astype(np.float32)
                             for h in model.features])
    assert seen["fc backward"].shape == (512, N) and seen["fc backward"].flags.c_contiguous
    assert seen["flatten backward"].shape == (128, 2, 2, N)
    assert seen["flatten backward"].flags.c_contiguous
    for i in range(4):
        pool_dx = seen[f"pool{i + 1} backward"]
        assert pool_dx.flags.c_contiguous, (i, pool_dx.strides)
        for j in (1, 2):            # leaky ReLU and batch norm: whole arrays
            d = seen[f"block{i + 1}.{j} backward"]
            assert d.flags.c_contiguous, (i, j, d.strides)
    assert seen["block1.0 backward"] is None       # no gradient for the images
    for i in range(1, 4):           # col2im's dx: a cropped view of a padded buffer
        d = seen[f"block{i + 1}.0 backward"]
        assert d.shape == seen[f"pool{i} forward"].shape and batch_last_order(d), (i, d.strides)


def test_linear_layers_and_what_follows_them_are_features_by_samples():
    """D's activations are (features, S), C-contiguous: rows of S values per feature."""
    rng = np.random.default_rng(2)
    net = nn.Sequential(nn.Linear(8, 16, rng=rng), nn.BatchNorm1d(16), nn.LeakyReLU(0.2),
                        nn.Linear(16, 4, rng=rng))
    S = 300
    x = rng.standard_normal((8, S)).astype(np.float32)
    seen = []
    for layer in net.layers:
        x = layer.forward(x)
        seen.append(x)
    d = rng.standard_normal(x.shape).astype(np.float32)
    for layer in reversed(net.layers):
        d = layer.backward(d)
        seen.append(d)
    assert [a.shape for a in seen] == [(16, S), (16, S), (16, S), (4, S),
                                       (16, S), (16, S), (16, S), (8, S)]
    assert all(a.flags.c_contiguous for a in seen), [a.strides for a in seen]
    assert all(g.shape == net.params[k].shape for k, g in net.grads.items())


@pytest.mark.parametrize("upsample", ["nearest", "bilinear"])
def test_pair_gradients_come_back_in_the_layout_of_the_features(upsample):
    """The pair layer's formula and its speed path (each order of each half)."""
    rng = np.random.default_rng(1)
    N, S = 4, 50
    h_low = rng.standard_normal((5, 6, 6, N))        # (C_l, h, w, N), as the conv stack makes
    h_high = rng.standard_normal((3, 3, 3, N))       # (C_h, h/2, w/2, N)
    high_columns = 9 * N if upsample == "nearest" else 36 * N   # H_{l+1} itself / U
    columns = np.stack([rng.integers(0, 36 * N, S), rng.integers(0, 36 * N, S),
                        rng.integers(0, high_columns, S)])
    W, b = rng.standard_normal((7, 8)), np.zeros(7)
    runs = [(pairs.pair_layer_forward, pairs.pair_layer_backward, {})] + [
        (fast_pairs.pair_layer_forward, fast_pairs.pair_layer_backward, {"project": project})
        for project in (False, True)]
    for forward, backward, options in runs:
        a, cache = forward(h_low, h_high, columns, W, b, upsample=upsample, **options)
        assert a.shape == (7, S) and a.flags.c_contiguous
        da = rng.standard_normal(a.shape)
        dh_low, dh_high, dW, db = backward(da, cache)
        assert dh_low.shape == h_low.shape and dh_low.flags.c_contiguous
        assert dh_high.shape == h_high.shape and dh_high.flags.c_contiguous
        assert dW.shape == (7, 8) and db.shape == (7,)
