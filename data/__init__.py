"""shiftedMNIST data: MNIST reader and downloader, textures, the builder and its cache.

    from data import load_shifted_mnist
    ds = load_shifted_mnist(mnist_dir=None, textures=None, seed=0, cache_dir=None)
    ds.train.images  # uint8 (48000, 3, 32, 32); ds.train.digit, ds.train.texture int64 (N,)
    ds.mean, ds.std  # float32 (3,), train split only, images scaled to [0, 1]
    ds.provenance    # JSON-ready: sources, checksums, textures used, seed, cache key

See docs/data.md for the sources, environment variables and rendering rules.
"""
from .errors import DataError
from .mnist import load_mnist, read_idx
from .paths import (ENV_CACHE_DIR, ENV_MNIST_DIR, ENV_TEXTURES, resolve_cache_dir,
                    resolve_mnist_dir, resolve_textures)
from .shifted_mnist import BUILDER_VERSION, ShiftedMNIST, Split, load_shifted_mnist
from .textures import load_textures

__all__ = [
    "BUILDER_VERSION", "DataError", "ENV_CACHE_DIR", "ENV_MNIST_DIR", "ENV_TEXTURES",
    "ShiftedMNIST", "Split", "load_mnist", "load_shifted_mnist", "load_textures", "read_idx",
    "resolve_cache_dir", "resolve_mnist_dir", "resolve_textures", "save_dataset_figure",
]


def __getattr__(name):
    # Imported on first use, so that `python -m data.figure` does not find the module
    # already imported by the package (runpy warns about that).
    if name == "save_dataset_figure":
        from .figure import save_dataset_figure
        return save_dataset_figure
    raise AttributeError(f"module 'data' has no attribute {name!r}")
