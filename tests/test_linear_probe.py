"""scripts/linear_probe.py: the probe fit, the head inputs, the controls, end to end.

A tiny shiftedMNIST (synthetic digits, procedural textures: 200 train, 50
val, 100 test images) and an untrained classifier saved as best_digit.npz
stand in for a run folder.
"""
import hashlib
import json
import os

import numpy as np
import pytest

from data import load_shifted_mnist
from experiment.classifier import Classifier
from experiment.config import Config
from experiment.settings import parse
from experiment.dataset import DeviceSplit
from fixtures_data import synthetic_mnist, write_mnist_dir
from nn.cpu import openblas
from nn.serialization import save_module

from scripts import linear_probe

SEED = 3


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(run folder, cache dir, dataset) of a tiny baseline run with seed SEED."""
    root = tmp_path_factory.mktemp("probe")
    mnist = write_mnist_dir(root / "mnist", synthetic_mnist(n_train=250, n_test=100))
    cache = str(root / "cache")
    args = ["--mnist-dir", str(mnist), "--textures", "procedural", "--seed", str(SEED)]
    folder = root / "baseline-seed3"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(
        {"settings": parse(args).config.to_json(), "method": "baseline"}))
    save_module(Classifier(rng=np.random.default_rng(5)), folder / "best_digit.npz")
    ds = load_shifted_mnist(mnist_dir=str(mnist), textures="procedural", cache_dir=cache)
    return str(folder), cache, ds


def probe(run, tmp_path, *flags):
    folder, cache, _ = run
    out = tmp_path / "probes.json"
    assert linear_probe.main([folder, "--cache-dir", cache, "--out", str(out), *flags]) == 0
    (entry,) = json.loads(out.read_text())
    return entry


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    """The products here are small: OpenBLAS's threads would only spin (slow on a busy CPU)."""
    before = openblas.get_num_threads()
    openblas.set_num_threads(1)
    yield
    if before is not None:
        openblas.set_num_threads(before)


def test_a_probe_reads_a_label_that_the_features_encode():
    """3000 fitting rows: the probe's fixed 30 epochs are then enough steps (~350)."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 3500)
    X = (np.eye(10)[y] + 0.1 * rng.standard_normal((3500, 10))).astype(np.float32)
    X = np.concatenate([X, rng.standard_normal((3500, 20)).astype(np.float32)], axis=1)
    pred = linear_probe.fit_probe(X[:3000], y[:3000], X[3000:])
    assert pred.shape == (500,)
    assert linear_probe.accuracy(pred, y[3000:]) > 0.99
    shuffled = linear_probe.fit_probe(X[:3000], rng.permutation(y[:3000]), X[3000:])
    assert linear_probe.accuracy(shuffled, y[3000:]) < 0.3      # no signal, no read-out


def test_head_inputs_are_what_the_fc_layer_sees(run):
    _, _, ds = run
    model = Classifier(rng=np.random.default_rng(1)).eval()
    split = DeviceSplit(ds.test, ds.mean, ds.std, np)
    feats = linear_probe.split_features(model, split, batch=30)
    assert [f.shape for f in feats] == [(100, 512), (100, 1024), (100, 2048), (100, 2048),
                                        (100, 512)]
    logits = model.forward(split.inputs(np.arange(split.n)))
    W, b = model.fc.params["W"], model.fc.params["b"]
    np.testing.assert_allclose(feats[-1] @ W.T + b, logits.T, rtol=1e-4, atol=1e-4)
    (head,) = linear_probe.split_features(model, split, blocks=False, batch=30)
    np.testing.assert_array_equal(head, feats[-1])


def test_batchnorm_statistics_are_the_splits(run):
    _, _, ds = run
    model = Classifier(rng=np.random.default_rng(2))
    weights = {k: v.copy() for k, v in model.params.items()}
    split = DeviceSplit(ds.val, ds.mean, ds.std, np)
    linear_probe.estimate_batchnorm_statistics(model, split, batch=25)   # two batches of 25
    conv = model.blocks[0][0].forward(split.inputs(np.arange(split.n)))
    bn = model.blocks[0][1]
    np.testing.assert_allclose(bn.running_mean, conv.mean(axis=(1, 2, 3)), rtol=1e-4,
                               atol=1e-5)
    halves = [conv[..., :25].var(axis=(1, 2, 3), ddof=1),
              conv[..., 25:].var(axis=(1, 2, 3), ddof=1)]
    np.testing.assert_allclose(bn.running_var, np.mean(halves, axis=0), rtol=1e-4)
    assert bn.momentum == 0.1 and not model.training
    for key, value in model.params.items():
        np.testing.assert_array_equal(value, weights[key])


def test_a_trained_checkpoint_with_the_fresh_head(run, tmp_path):
    entry = probe(run, tmp_path, "--fresh-head")
    folder = run[0]
    with open(os.path.join(folder, "best_digit.npz"), "rb") as f:
        assert entry["checkpoint_sha256"] == hashlib.sha256(f.read()).hexdigest()
    assert entry["checkpoint"] == "best_digit" and entry["method"] == "baseline"
    assert entry["data_cache_key"] == run[2].provenance["cache_key"]
    assert [r["layer"] for r in entry["layers"]] == [1, 2, 3, 4, "head_input"]
    assert [r["features"] for r in entry["layers"]] == [512, 1024, 2048, 2048, 512]
    for row in entry["layers"]:
        assert set(row) == {"layer", "features", "digit", "texture"}
        assert 0 <= row["digit"] <= 1 and 0 <= row["texture"] <= 1
    head = entry["fresh_head"]
    assert head["fit_split"] == "train" and head["features"] == 512
    assert 0 <= head["digit"] <= 1 and 0 <= head["texture"] <= 1


def test_the_untrained_control_is_the_seeds_init(run, tmp_path):
    folder, cache, ds = run
    first = probe(run, tmp_path, "--which", "untrained")
    assert first == probe(run, tmp_path, "--which", "untrained")
    assert first["checkpoint"] == "untrained" and first["checkpoint_sha256"] is None
    assert "fresh_head" not in first
    config = Config.from_json(json.load(open(os.path.join(folder, "config.json")))["settings"])
    val = DeviceSplit(ds.val, ds.mean, ds.std, np)
    model, sha256 = linear_probe.probed_model(folder, "untrained", config, ds, val)
    init = Classifier(rng=np.random.default_rng([SEED, 0]))
    for key, value in init.params.items():
        np.testing.assert_array_equal(model.params[key], value)
    assert not np.allclose(model.buffers["block1.1.running_mean"], 0)


def test_summary_lists_head_inputs_and_fresh_heads():
    rows = [{"layer": 1, "features": 512, "digit": 0.5, "texture": 1.0},
            {"layer": "head_input", "features": 512, "digit": 0.75, "texture": 1.0}]
    results = [{"method": "ifm", "layers": rows, "fresh_head": {"digit": d, "texture": 1 - d}}
               for d in (0.2, 0.4)]
    text = linear_probe.summary_markdown(results)
    assert "| ifm | 2 | H_1 | 50.0 ± 0.0 | 100.0 ± 0.0 |" in text
    assert "| ifm | 2 | head_input | 75.0 ± 0.0 | 100.0 ± 0.0 |" in text
    assert "| ifm | 2 | 30.0 ± 14.1 | 70.0 ± 14.1 |" in text
