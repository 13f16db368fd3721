"""The full shiftedMNIST from the real MNIST files and a texture folder (found through the env).

CI sets IFM_MNIST_DIR and IFM_TEXTURES; without them these tests skip. The
dataset is built once per session into a temporary cache, timed, then loaded
again from the cache. Expected numbers come from shared/DATA.md.
"""
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from data import load_mnist, load_shifted_mnist, save_dataset_figure
from fixtures_data import CHI2_999, chi2_independence, chi2_uniform, mixed_dependence

MNIST = os.environ.get("IFM_MNIST_DIR")
TEXTURES = os.environ.get("IFM_TEXTURES")
pytestmark = pytest.mark.skipif(
    not (MNIST and TEXTURES),
    reason="set IFM_MNIST_DIR (the four MNIST files) and IFM_TEXTURES (a texture folder, "
           "'procedural' or 'dtd') to build the full shiftedMNIST")

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
RAW_MD5 = {
    "train_images": "6bbc9ace898e44ae57da46a324031adb",
    "train_labels": "a25bea736e30d166cdddb491f175f624",
    "test_images": "2646ac647ad5339dbf082846283269ea",
    "test_labels": "27ae3e4e09519cfbb04c329615203637",
}
BUILD_SECONDS = 60     # generous for slow CI machines; it takes about 2 s on 2 cores


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    cache = tmp_path_factory.mktemp("full-cache")
    start = time.perf_counter()
    ds = load_shifted_mnist(MNIST, TEXTURES, seed=0, cache_dir=cache)
    built = time.perf_counter() - start
    start = time.perf_counter()
    again = load_shifted_mnist(MNIST, TEXTURES, seed=0, cache_dir=cache)
    loaded = time.perf_counter() - start
    print(f"\nfull shiftedMNIST: built in {built:.2f} s, loaded from cache in {loaded:.2f} s")
    return ds, again, built, loaded


def test_mnist_files_match_data_md():
    mnist = load_mnist(MNIST)
    assert mnist.train_labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert np.bincount(mnist.train_labels).tolist() == TRAIN_COUNTS
    assert np.bincount(mnist.test_labels).tolist() == TEST_COUNTS
    for field, md5 in RAW_MD5.items():
        assert mnist.source["files"][field]["md5"] == md5
        assert mnist.source["files"][field]["md5_is_published"]


def test_sizes_and_label_counts(full):
    ds = full[0]
    assert (len(ds.train), len(ds.val), len(ds.test)) == (48000, 12000, 10000)
    counts = np.bincount(ds.train.digit, minlength=10) + np.bincount(ds.val.digit, minlength=10)
    assert counts.tolist() == TRAIN_COUNTS
    assert np.bincount(ds.test.digit).tolist() == TEST_COUNTS
    np.testing.assert_array_equal(ds.train.texture, ds.train.digit)


@pytest.mark.parametrize("name", ["val", "test"])
def test_textures_independent_of_digits(full, name):
    split = getattr(full[0], name)
    assert chi2_independence(split.digit, split.texture) < CHI2_999[81]
    assert chi2_uniform(split.texture) < CHI2_999[9]
    # The test has the power to see a weak dependence (5 % of textures copy the digit).
    assert chi2_independence(split.digit, mixed_dependence(split.digit, 0.05, 7)) > CHI2_999[81]


def test_train_fails_the_independence_test(full):
    ds = full[0]
    assert chi2_independence(ds.train.digit, ds.train.texture) > 100 * CHI2_999[81]


def test_build_is_fast_and_the_cache_returns_the_same_bytes(full):
    ds, again, built, loaded = full
    assert built < BUILD_SECONDS
    assert loaded < built
    for name in ("train", "val", "test"):
        a, b = getattr(ds, name), getattr(again, name)
        assert a.images.tobytes() == b.images.tobytes()
        np.testing.assert_array_equal(a.texture, b.texture)
    np.testing.assert_array_equal(ds.mean, again.mean)


def test_provenance(full):
    ds = full[0]
    record = json.loads(json.dumps(ds.provenance))
    assert record["seed"] == 0 and record["sizes"] == {"train": 48000, "val": 12000,
                                                       "test": 10000}
    assert {f: v["md5"] for f, v in record["mnist"]["files"].items()} == RAW_MD5
    textures = record["textures"]["textures"]
    assert [t["id"] for t in textures] == list(range(10))
    if Path(TEXTURES).is_dir():
        files = sorted(p.name for p in Path(TEXTURES).iterdir()
                       if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        if len(files) == 10:
            assert [t["file"] for t in textures] == files
    assert 0.05 < min(ds.std) and max(ds.mean) < 0.95


def test_figure_from_the_full_set(full, tmp_path):
    path = save_dataset_figure(full[0], tmp_path / "figure3.png")
    assert path.stat().st_size > 10_000
