"""A run's dataset: where its files are read from, shiftedMNIST built as its Config says, and
its splits on the device.

train.py, evaluate.py and the scripts that rebuild a run's data all come
through here, so that a run's data are found and built one way.
"""
import numpy as np

from data import (DataError, load_shifted_mnist, resolve_cache_dir, resolve_mnist_dir,
                  resolve_textures)

from .cli import UsageError
from .saved_model import normalization_arrays, normalize

SOURCES = ("mnist_dir", "textures", "cache_dir")


def data_sources(given, record=None):
    """{mnist_dir, textures, cache_dir}, resolved: each location ``given`` (a typed flag;
    None or "" where none), else the one ``record`` (a run's config.json, or a saved
    model's record) says the run read, else the environment variables and defaults
    (data/paths.py). So a resume or an evaluation finds the data a run started from
    $IFM_MNIST_DIR / $IFM_TEXTURES without them; their content is checked after.
    Runs made before "sources" was recorded: the flags they were given."""
    record = record or {}
    settings = record.get("settings") or {}
    recorded = record.get("sources") or {k: settings.get(k) for k in SOURCES}
    chosen = {k: given.get(k) or recorded.get(k) for k in SOURCES}
    mnist_dir = resolve_mnist_dir(chosen["mnist_dir"])
    return {"mnist_dir": None if mnist_dir is None else str(mnist_dir),
            "textures": resolve_textures(chosen["textures"]),
            "cache_dir": str(resolve_cache_dir(chosen["cache_dir"]))}


def load_dataset(config, sources):
    """The ShiftedMNIST of ``config`` (data seed, texture crops, composite) from ``sources``;
    a UsageError saying why where it cannot be built."""
    try:
        return load_shifted_mnist(mnist_dir=sources["mnist_dir"], textures=sources["textures"],
                                  seed=config.data_seed, cache_dir=sources["cache_dir"],
                                  crops=config.texture_crops, composite=config.composite)
    except DataError as err:
        raise UsageError(str(err))


class DeviceSplit:
    """One split on the device: uint8 images, labels, and the normalization."""

    def __init__(self, split, mean, std, xp, limit=None):
        n = len(split.digit) if limit is None else min(limit, len(split.digit))
        self.n = n
        self.images = xp.asarray(split.images[:n])
        self.digit = xp.asarray(split.digit[:n].astype(np.int64))
        self.texture = xp.asarray(split.texture[:n].astype(np.int64))
        self.mean, self.inv_std = normalization_arrays(mean, std, xp)

    def inputs(self, index):
        """x = (image / 255 - mean) / std, float32 (3, H, W, B), for the rows in ``index``.

        The one conversion from the (B, 3, H, W) images to the library's
        batch-last layout (nn/layout.py) happens here, fused with the cast.
        """
        return normalize(self.images[index], self.mean, self.inv_std)
