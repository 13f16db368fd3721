"""MNIST: read and validate the four IDX files, downloading them when there is no local copy.

IDX format (big-endian): bytes 0-1 are zero, byte 2 the element type (0x08 =
unsigned byte), byte 3 the number of dimensions n; then n uint32 sizes, then
the elements in C order. MNIST images are (N, 28, 28) with magic 0x00000803 =
2051; labels are (N,) with magic 0x00000801 = 2049 and values 0..9.

A file may be gzip-compressed or raw; which one is decided by its first two
bytes (0x1f 0x8b), not by its name. Every file is checked for magic number,
dimensions and exact length, and each image file must hold as many images as
its label file holds labels. Anything else is a DataError naming the file.

Two sources: a local directory (``mnist_dir``: nothing is downloaded; missing
files are an error), or the download cache ``<cache>/mnist``, where missing
files are fetched from MNIST_MIRRORS and checked against MNIST_GZ_MD5. Files
already present are validated by format only: their gzip containers may differ
from the mirrors' while holding the same bytes.
"""
import gzip
import hashlib
import struct
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .download import download
from .errors import DataError

# Field -> file name without ".gz".
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# Tried in order; the tests point this (or the ``mirrors`` argument) at a local server.
MNIST_MIRRORS = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
]

# md5 of the .gz files the mirrors serve (the widely published values, e.g. torchvision's).
MNIST_GZ_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}

# md5 of the decompressed files of the original distribution; recorded in the
# provenance as a match or not, never required (a local copy is checked by format).
MNIST_RAW_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}

IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049
ROWS = COLS = 28

FIX = ("Re-download it (delete it if it sits in the download cache) or point --mnist-dir / "
       "IFM_MNIST_DIR at a directory holding the four MNIST files ("
       + ", ".join(f"{name}[.gz]" for name in FILES.values()) + ").")


class MNIST(NamedTuple):
    """The MNIST arrays (uint8; images (N, 28, 28), labels (N,)) and where they came from."""
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: dict   # {"dir": ..., "files": {field: {"file", "count", "md5", "md5_is_published"}}}


def read_idx(path, kind):
    """Read one validated IDX file; ``kind`` is "images" or "labels".

    Returns (array, md5 hex of the decompressed bytes). The array is a read-only
    uint8 view: (N, 28, 28) for images, (N,) for labels.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read it ({err.strerror or err}). {FIX}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as err:
            raise DataError(f"{path}: damaged gzip data ({err}). {FIX}") from None
    ndim, magic = (3, IMAGE_MAGIC) if kind == "images" else (1, LABEL_MAGIC)
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated: {len(raw)} bytes, shorter than the {header}-byte "
                        f"IDX header of an MNIST {kind} file. {FIX}")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        other = {IMAGE_MAGIC: "an image file", LABEL_MAGIC: "a label file"}.get(found)
        what = f" (that of {other}: are the files swapped?)" if other else ""
        raise DataError(f"{path}: not an MNIST {kind} file: magic number {found}{what}, "
                        f"expected {magic}. {FIX}")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    if kind == "images" and dims[1:] != (ROWS, COLS):
        raise DataError(f"{path}: images are {dims[1]}x{dims[2]}, expected {ROWS}x{COLS}. {FIX}")
    count = int(np.prod(dims))
    body = len(raw) - header
    noun = "pixels" if kind == "images" else "labels"
    if body < count:
        raise DataError(f"{path}: truncated: expected {count} bytes of {noun}, found {body}. {FIX}")
    if body > count:
        raise DataError(f"{path}: {body - count} unexpected bytes after the {count} bytes of "
                        f"{noun}. {FIX}")
    array = np.frombuffer(raw, np.uint8, count, header).reshape(dims)
    if kind == "labels" and count and array.max() > 9:
        bad = int(np.flatnonzero(array > 9)[0])
        raise DataError(f"{path}: label {array[bad]} at index {bad} is not a digit 0..9. {FIX}")
    return array, hashlib.md5(raw).hexdigest()


def find_file(directory, name):
    """The file for ``name``: name.gz or raw (or spelt like 'train-images.idx3-ubyte')."""
    dotted = name.replace("-idx", ".idx")
    for candidate in (name + ".gz", name, dotted + ".gz", dotted):
        path = Path(directory) / candidate
        if path.is_file():
            return path
    return None


def load_mnist(mnist_dir=None, cache_dir=None, mirrors=None, md5=None):
    """Load MNIST from ``mnist_dir``, or from ``<cache_dir>/mnist`` downloading what is missing.

    mnist_dir: a local directory (nothing is downloaded) or None. cache_dir: the
    cache root (needed when mnist_dir is None). mirrors: base URLs
    (default MNIST_MIRRORS); md5: file name -> md5 of the .gz (default MNIST_GZ_MD5).
    """
    if mnist_dir is not None:
        directory = Path(mnist_dir)
        if directory.exists() and not directory.is_dir():
            raise DataError(f"{directory}: is a file, not a directory. Point --mnist-dir / "
                            "IFM_MNIST_DIR at the directory that holds the four MNIST files.")
        if not directory.is_dir():
            raise DataError(f"{directory}: MNIST directory does not exist. Point --mnist-dir / "
                            "IFM_MNIST_DIR at a directory holding the four MNIST files, or leave "
                            "both unset to download them into the cache.")
        paths = {field: find_file(directory, name) for field, name in FILES.items()}
        missing = [FILES[f] for f, p in paths.items() if p is None]
        if missing:
            raise DataError(f"{directory}: missing MNIST file(s) {', '.join(missing)} (.gz or "
                            "raw). Put them there, or leave --mnist-dir / IFM_MNIST_DIR unset to "
                            "download them into the cache.")
    else:
        if cache_dir is None:
            raise ValueError("load_mnist needs mnist_dir or cache_dir")
        directory = Path(cache_dir) / "mnist"
        paths = download_mnist(directory, mirrors, md5)

    arrays, files = {}, {}
    for field, path in paths.items():
        array, digest = read_idx(path, "images" if field.endswith("images") else "labels")
        arrays[field] = array
        files[field] = {"file": path.name, "count": int(array.shape[0]), "md5": digest,
                        "md5_is_published": digest == MNIST_RAW_MD5[FILES[field]]}
    for split in ("train", "test"):
        images, labels = paths[f"{split}_images"], paths[f"{split}_labels"]
        if len(arrays[f"{split}_images"]) != len(arrays[f"{split}_labels"]):
            raise DataError(f"{images} holds {len(arrays[f'{split}_images'])} images but {labels} "
                            f"holds {len(arrays[f'{split}_labels'])} labels: they do not belong "
                            f"together. {FIX}")
    source = {"dir": str(directory.resolve()), "downloaded_to_cache": mnist_dir is None,
              "files": files}
    return MNIST(source=source, **arrays)


def download_mnist(directory, mirrors=None, md5=None):
    """Paths of the four files in ``directory``, downloading the missing ones (verified by md5)."""
    mirrors = MNIST_MIRRORS if mirrors is None else mirrors
    md5 = MNIST_GZ_MD5 if md5 is None else md5
    paths = {}
    for field, name in FILES.items():
        path = find_file(directory, name)
        if path is None:
            hint = (f"If this machine is offline, put the four MNIST files "
                    f"({', '.join(FILES.values())}, .gz or raw) in {directory}, or point "
                    "--mnist-dir / IFM_MNIST_DIR at a directory holding them.")
            urls = [m.rstrip("/") + "/" + name + ".gz" for m in mirrors]
            path = download(urls, Path(directory) / (name + ".gz"), md5[name + ".gz"], "md5", hint)
        paths[field] = path
    return paths
