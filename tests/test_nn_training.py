"""End to end on the layers: a tiny network must memorize 32 random samples.

Random labels carry no signal, so reaching 100% train accuracy needs every
gradient to point the right way through conv, batch norm, leaky ReLU,
max-pool and the linear layer, plus a working optimizer. Batch last: the
inputs are (3, 8, 8, 32), the logits (10, 32).
"""
import numpy as np
import pytest

import nn


def tiny_network(rng):
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, rng=rng),
        nn.BatchNorm2d(8),
        nn.LeakyReLU(0.2),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 10, rng=rng),
    )


@pytest.mark.parametrize("optimizer", ["sgd_momentum", "adam"])
def test_tiny_network_overfits_32_random_samples(optimizer):
    rng = np.random.default_rng(0)
    # The samples as drawn (N, C, H, W), laid out (C, H, W, N).
    x = np.ascontiguousarray(rng.standard_normal((32, 3, 8, 8)).astype(np.float32)
                             .transpose(1, 2, 3, 0))
    labels = rng.integers(0, 10, size=32)
    model = tiny_network(rng)
    if optimizer == "adam":
        opt = nn.Adam(nn.move_into_flat_buffers(model), lr=1e-2)
    else:
        opt = nn.SGD(nn.move_into_flat_buffers(model), lr=0.05, momentum=0.9)

    losses = []
    for step in range(300):
        logits = model.forward(x)
        loss, dlogits = nn.softmax_cross_entropy(logits, labels)
        losses.append(float(loss))
        model.backward(dlogits)
        opt.step(model.grads)
        if (logits.argmax(axis=0) == labels).all() and float(loss) < 0.05:
            break

    assert losses[0] > 2.0                     # chance level is log(10) = 2.3
    assert (model.forward(x).argmax(axis=0) == labels).mean() == 1.0
    assert losses[-1] < 0.05, f"loss only fell to {losses[-1]:.3f} in {len(losses)} steps"
    assert model.forward(x).dtype == np.float32
    # With the running statistics frozen, eval mode must classify the samples too.
    model.eval()
    assert (model.forward(x).argmax(axis=0) == labels).mean() >= 0.9
