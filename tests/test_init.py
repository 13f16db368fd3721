"""--init: Kaiming as built, fan-in uniform everywhere, or only at the FC head."""
import numpy as np
import pytest

from experiment.classifier import Classifier
from experiment.config import Config
from experiment.methods import build_regularizer, reinitialize
from nn.init import fan_in_uniform_

CFG = Config(method="ifm", pairs=((1, 2), (2, 3)), samples=8)


def built(init, seed=5):
    rng = np.random.default_rng([seed, 0])
    model = Classifier(rng=rng)
    regularizer = build_regularizer(CFG, model.channels, rng)
    reinitialize(init, model, regularizer, seed)
    return model, regularizer


def weights(module):
    return {k: v.copy() for k, v in module.params.items()}


def test_fan_in_uniform_bounds_weights_and_biases_and_skips_batch_norm():
    model, regularizer = built("fan-in-uniform")
    for params in (model.params, regularizer.params):    # each D_l on its own
        for key, value in params.items():
            if key.endswith("W"):
                bound = 1 / np.sqrt(np.prod(value.shape[1:]))
                assert np.abs(value).max() <= bound
                if value.size > 5000:     # uniform: std = bound / sqrt(3)
                    assert value.std() == pytest.approx(bound / np.sqrt(3), rel=0.05)
                bias = params[key[:-1] + "b"]
                assert np.abs(bias).max() <= bound and np.abs(bias).max() > 0
            elif key.endswith("gamma"):
                np.testing.assert_array_equal(value, 1)


def test_kaiming_is_the_built_init_and_head_only_changes_the_head():
    kaiming_model, kaiming_reg = built("kaiming")
    head_model, head_reg = built("head-fan-in-uniform")
    plain = Classifier(rng=np.random.default_rng([5, 0]))
    a, b, c = weights(kaiming_model), weights(head_model), weights(plain)
    for key in a:
        np.testing.assert_array_equal(a[key], c[key])           # kaiming: nothing redrawn
        if key.startswith("fc."):
            assert not np.array_equal(a[key], b[key])
        else:
            np.testing.assert_array_equal(a[key], b[key])
    for key, value in weights(kaiming_reg).items():
        np.testing.assert_array_equal(value, head_reg.params[key])
    # The Kaiming head weights are about 2.4x larger than fan-in uniform ones (a = 0.2).
    ratio = a["fc.W"].std() / b["fc.W"].std()
    assert ratio == pytest.approx(np.sqrt(2 / 1.04) * np.sqrt(3), rel=0.1)


def test_fan_in_uniform_is_reproducible_from_the_seed():
    (a, _), (b, _), (c, _) = built("fan-in-uniform"), built("fan-in-uniform"), \
        built("fan-in-uniform", seed=6)
    np.testing.assert_array_equal(a.params["block2.0.W"], b.params["block2.0.W"])
    assert not np.array_equal(a.params["block2.0.W"], c.params["block2.0.W"])


def test_fan_in_uniform_keeps_dtypes():
    params = {"x.W": np.zeros((4, 3, 3, 3), np.float32), "x.b": np.zeros(4, np.float32),
              "y.gamma": np.ones(4, np.float32)}
    fan_in_uniform_(params, np.random.default_rng(0))
    assert params["x.W"].dtype == np.float32 and params["x.b"].dtype == np.float32
    assert np.abs(params["x.W"]).max() <= 1 / np.sqrt(27)
    np.testing.assert_array_equal(params["y.gamma"], 1)
