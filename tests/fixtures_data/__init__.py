"""Helpers for the data tests: synthetic IDX files and a chi-square test of independence.

The IDX writer is written from the format description (big-endian magic
0x0000080n, n uint32 sizes, then the bytes), not with data.mnist, so that the
reader is checked against an independent writer.
"""
import gzip
import struct
from pathlib import Path

import numpy as np

NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# Upper 0.1 % points of the chi-square distribution (computed from the regularized
# incomplete gamma function): 10x10 independence has 81 degrees of freedom, a
# uniform 10-way marginal 9. A correct build fails a test at this level one time in 1000.
CHI2_999 = {81: 126.08, 9: 27.88}


def idx_bytes(array):
    array = np.asarray(array, np.uint8)
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_idx(path, array=None, raw=None, gz=True):
    """Write an IDX file (from ``array``, or the given ``raw`` bytes), gzipped or not."""
    data = idx_bytes(array) if raw is None else raw
    Path(path).write_bytes(gzip.compress(data, compresslevel=1, mtime=0) if gz else data)
    return Path(path)


def synthetic_mnist(n_train=3000, n_test=1000, seed=0):
    """Random 'digits' (sparse bright strokes on black) and uniform labels, as in MNIST files."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
        images[rng.random((n, 28, 28)) < 0.8] = 0
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = rng.integers(0, 10, n).astype(np.uint8)
    return arrays


def write_mnist_dir(directory, arrays, gz=True):
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for field, name in NAMES.items():
        write_idx(directory / (name + (".gz" if gz else "")), arrays[field], gz=gz)
    return directory


def chi2_independence(a, b, k=10):
    """Pearson chi-square statistic of the k x k contingency table of labels a and b."""
    table = np.zeros((k, k))
    np.add.at(table, (np.asarray(a), np.asarray(b)), 1)
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    return float(((table - expected) ** 2 / expected).sum())


def chi2_uniform(a, k=10):
    """Pearson chi-square statistic of the counts of a against a uniform distribution on 0..k-1."""
    counts = np.bincount(np.asarray(a), minlength=k)
    expected = len(a) / k
    return float(((counts - expected) ** 2 / expected).sum())


def mixed_dependence(digit, strength, seed):
    """Texture ids that copy the digit with probability ``strength``, else uniform (dependent)."""
    rng = np.random.default_rng(seed)
    random = rng.integers(0, 10, len(digit))
    return np.where(rng.random(len(digit)) < strength, digit, random)
