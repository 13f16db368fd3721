"""IFMBlock / IFMRegularizer as modules: live params, modes, state, and the training step."""
import numpy as np
import pytest
from gradcheck import check_directional

from experiment.classifier import Classifier
from ifm import IFMBlock, IFMRegularizer
from nn import SGD, softmax_cross_entropy
from nn.module import Container

SMALL = (8, 6, 5)
D_KEYS = ["0.W", "0.b", "1.gamma", "1.beta", "3.W", "3.b", "4.gamma", "4.beta",
          "6.W", "6.b", "7.gamma", "7.beta", "9.W", "9.b"]


def maps(N=4, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((3, 8, 8, N)).astype(dtype),
            rng.standard_normal((4, 4, 4, N)).astype(dtype))


def test_block_params_are_Ds_table2_layers():
    block = IFMBlock(3, 4, rng=np.random.default_rng(0))
    assert list(block.params) == D_KEYS and list(block.grads) == D_KEYS
    shapes = {k: block.params[k].shape for k in D_KEYS}
    assert shapes["0.W"] == (256, 7) and shapes["3.W"] == (128, 256)
    assert shapes["6.W"] == (64, 128) and shapes["9.W"] == (1, 64)
    assert all(p.dtype == np.float32 for p in block.params.values())
    assert set(block.buffers) == {f"{i}.{b}" for i in (1, 4, 7)
                                  for b in ("running_mean", "running_var")}


def test_forward_returns_a_0d_array_and_replays():
    block = IFMBlock(3, 4, samples=5, rng=np.random.default_rng(0))
    h_low, h_high = maps()
    F1 = block.forward(h_low, h_high, np.random.default_rng(9))
    F2 = block.forward(h_low, h_high, np.random.default_rng(9))
    F3 = block.forward(h_low, h_high, np.random.default_rng(10))
    assert isinstance(F1, np.ndarray) and F1.shape == () and F1.dtype == np.float32
    assert F1 == F2 and F1 != F3
    dh_low, dh_high = block.backward(1.0)
    assert dh_low.dtype == np.float32 and dh_high.dtype == np.float32


def test_assigning_a_param_takes_effect():
    block = IFMBlock(3, 4, samples=5, rng=np.random.default_rng(0))
    h_low, h_high = maps()
    before = block.forward(h_low, h_high, np.random.default_rng(1))
    block.params["9.b"] = block.params["9.b"] + np.float32(3.0)
    after = block.forward(h_low, h_high, np.random.default_rng(1))
    assert after != before
    reg = IFMRegularizer([3, 4], pairs=[(1, 2)], samples=5, rng=np.random.default_rng(0))
    F0 = reg.forward([h_low, h_high], np.random.default_rng(1))[0]
    reg.params["ifm12.9.b"] = reg.params["ifm12.9.b"] + np.float32(3.0)
    assert reg.blocks[0].params["9.b"][0] == pytest.approx(3.0)
    assert reg.forward([h_low, h_high], np.random.default_rng(1))[0] != F0


def test_train_eval_and_astype():
    reg = IFMRegularizer([3, 4, 5], samples=4, pairs=[(1, 2), (2, 3)], estimator="dv",
                         dv_ema=0.1, rng=np.random.default_rng(0), hidden=SMALL)
    assert reg.eval() is reg
    assert all(not b.critic.estimate.training for b in reg.blocks)
    assert all(not layer.training for b in reg.blocks for layer in b.children())
    reg.train()
    assert all(layer.training for b in reg.blocks for layer in b.children())
    assert "ifm12.dv.log_ema" in reg.state_dict() and "ifm23.4.running_var" in reg.state_dict()
    reg.astype(np.float64).to("cpu")
    assert all(p.dtype == np.float64 for p in reg.params.values())
    assert all(b.dtype == np.float64 for b in reg.buffers.values())


def test_eval_mode_uses_running_statistics():
    block = IFMBlock(3, 4, samples=5, rng=np.random.default_rng(0))
    h_low, h_high = maps()
    block.forward(h_low, h_high, np.random.default_rng(1))
    rm = block.buffers["1.running_mean"].copy()
    block.eval()
    block.forward(h_low, h_high, np.random.default_rng(1))
    np.testing.assert_array_equal(block.buffers["1.running_mean"], rm)


def test_regularizer_keys_and_validation():
    reg = IFMRegularizer([32, 64, 128, 128], rng=np.random.default_rng(0), hidden=SMALL)
    assert reg.names == ["ifm12", "ifm23", "ifm34"]
    assert [(b.c_low, b.c_high) for b in reg.blocks] == [(32, 64), (64, 128), (128, 128)]
    assert set(reg.params) == {f"{n}.{k}" for n in reg.names for k in D_KEYS}
    assert set(reg.grads) == set(reg.params)
    for pairs in ([(1, 3)], [(0, 1)], [(4, 5)], [(1, 2), (1, 2)]):
        with pytest.raises(ValueError):
            IFMRegularizer([32, 64, 128, 128], pairs=pairs)


@pytest.mark.parametrize("features_at", ["pre-pool", "post-pool"])
def test_training_step_with_the_classifier(features_at):
    """One step as the trainer does it: the classifier holds no IFM parameter, the
    optimizer updates both, and the regularizer's dH enters the classifier's backward
    with the sign of L = L_clf - lam * sum F (checked by a directional derivative of L
    over every parameter of both, in float64), with H_l taken before or after pooling."""
    rng = np.random.default_rng(0)
    model = Classifier(rng=rng, dtype=np.float64, features_at=features_at)
    reg = IFMRegularizer(list(model.channels), lam=2.0, samples=4, rng=rng, hidden=SMALL,
                         dtype=np.float64)
    assert not any("ifm" in k for k in model.state_dict())
    x = rng.standard_normal((3, 32, 32, 2))
    y = np.array([3, 7])

    def total_loss():
        loss, _ = softmax_cross_entropy(model.forward(x), y)
        return float(loss + reg.loss(reg.forward(model.features, np.random.default_rng(5))))

    loss, dlogits = softmax_cross_entropy(model.forward(x), y)
    reg.forward(model.features, np.random.default_rng(5))
    model.backward(dlogits, reg.backward())
    trainable = Container([("clf", model), ("ifm", reg)])
    originals = {k: p.copy() for k, p in trainable.params.items()}
    # eps small: 65k LeakyReLU units and max-pool windows must not switch
    check_directional(f"training step, classifier + IFMRegularizer, {features_at} "
                      "(random direction, eps 1e-7)", total_loss, dict(trainable.params),
                      dict(trainable.grads), np.random.default_rng(1), eps=1e-7)
    SGD(trainable.params, lr=0.1).step(trainable.grads)
    assert not np.array_equal(reg.params["ifm12.0.W"], originals["ifm.ifm12.0.W"])
    assert not np.array_equal(model.params["block1.0.W"], originals["clf.block1.0.W"])
