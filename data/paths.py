"""Where the data come from: explicit argument, else environment variable, else default.

One small function per setting, so that train.py, the figure CLI and the tests
resolve them the same way. An empty environment variable counts as unset.

    IFM_MNIST_DIR   a directory holding the four MNIST IDX files (.gz or raw)
    IFM_TEXTURES    "dtd", "procedural" or a directory of texture images
    IFM_CACHE_DIR   cache root for downloads and built datasets
"""
import os
from pathlib import Path

ENV_MNIST_DIR = "IFM_MNIST_DIR"
ENV_TEXTURES = "IFM_TEXTURES"
ENV_CACHE_DIR = "IFM_CACHE_DIR"

DEFAULT_TEXTURES = "dtd"


def _env(name):
    value = os.environ.get(name, "").strip()
    return value or None


def resolve_mnist_dir(arg=None):
    """A local MNIST directory (``arg``, else $IFM_MNIST_DIR), or None: download to the cache."""
    value = arg if arg not in (None, "") else _env(ENV_MNIST_DIR)
    return None if value is None else Path(value).expanduser()


def resolve_textures(arg=None):
    """The texture spec: ``arg``, else $IFM_TEXTURES, else "dtd" (the paper's choice)."""
    value = arg if arg not in (None, "") else _env(ENV_TEXTURES)
    return DEFAULT_TEXTURES if value is None else str(value)


def resolve_cache_dir(arg=None):
    """The cache root: ``arg``, else $IFM_CACHE_DIR, else $XDG_CACHE_HOME/ifm or ~/.cache/ifm."""
    value = arg if arg not in (None, "") else _env(ENV_CACHE_DIR)
    if value is not None:
        return Path(value).expanduser()
    xdg = _env("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "ifm"
