"""shiftedMNIST: MNIST digits on texture crops; the texture gives the digit away in train only.

Rules (BUILDER_VERSION = 1; change it whenever a rule changes, it is part of the cache key):

Splits. The 60k MNIST training images are split with the seed into train
(80 %, 48k) and validation (20 %, 12k); the 10k MNIST test images are the test
split. Within a split, images keep their MNIST order (``Split.index``).

Texture ids. train: texture = digit. val and test: texture drawn uniformly from
0..9, independently of the digit. Both labels are kept for every image.

Rendering, 32x32 RGB, uint8, layout (N, 3, 32, 32):
    background  a 32x32 crop of texture t (working-size array, see textures.py)
                at a top-left offset drawn uniformly from all crops that fit
                (crops="inside", the default), or from every pixel of the
                texture, which then repeats periodically past its right and
                bottom edges (crops="wrap": H x W distinct backgrounds instead
                of (H - 31) x (W - 31), and every texture pixel equally often);
    digit       the 28x28 MNIST image d padded by 2 px of zeros to 32x32;
    out         = (1 - a) * bg + a * s with a = d / 255, rounded to the nearest
                integer: ink of value s blended over the background by the
                digit's intensity, computed in integers, so it is exact on
                every machine. The ink s is the composite rule (neither the
                paper nor Jacobsen et al. say how the digit is drawn):
                  white     s = 255: out = bg + (255 - bg) * d / 255 (the default);
                  black     s = 0:   out = bg * (255 - d) / 255;
                  contrast  per image, s = 255 on a crop whose mean (over its
                            32x32x3 values) is below 127.5, else 0: the ink of the
                            two that lies farther from the background it is on.

Randomness: one numpy Generator per purpose, ``default_rng([seed, purpose, split])``:
purpose 0 = the train/val split, 1 = texture ids, 2 = crop offsets (3 = the texture
choice, in textures.py). The same inputs and seed give byte-identical arrays; the
composite rule changes only the pixels, never a split, texture id or crop.

Normalization: per-channel mean and (population) std of the train images
scaled to [0, 1], from exact integer sums; val and test are never looked at.

Cache: ``<cache>/shifted_mnist/<key>.npz`` (no pickles) and ``<key>.json``
beside it, holding the key, the builder version and a sha256 of every array.
The key hashes the builder version, the seed, the md5 of the four
decompressed MNIST files, the texture kind and the sha256 of the ten
working texture arrays (so it follows the texture content, not its path),
and the crop and composite rules when they are not the defaults. A
cache whose json or npz is missing, unreadable, of the wrong shapes or whose
checksum differs is reported on stderr and rebuilt, never trusted.
"""
import hashlib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .mnist import FILES, load_mnist
from .paths import resolve_cache_dir, resolve_mnist_dir, resolve_textures
from .textures import TEXTURE_COUNT, load_textures, texture_digest

BUILDER_VERSION = 1
SIZE = 32
PAD = 2
VAL_FRACTION = 0.2
SPLITS = ("train", "val", "test")
SPLIT_RNG, TEXTURE_RNG, CROP_RNG = 0, 1, 2
CROPS = ("inside", "wrap")
COMPOSITES = ("white", "black", "contrast")
WHITE, BLACK = 255, 0


@dataclass(frozen=True, eq=False)
class Split:
    """One split: images uint8 (N, 3, 32, 32); digit, texture and index int64 (N,).

    ``index`` is the row of each image in the MNIST file it came from.
    """
    images: np.ndarray
    digit: np.ndarray
    texture: np.ndarray
    index: np.ndarray

    def __len__(self):
        return len(self.digit)


@dataclass(frozen=True, eq=False)
class ShiftedMNIST:
    """train / val / test splits, train-only normalization (float32 (3,)) and provenance."""
    train: Split
    val: Split
    test: Split
    mean: np.ndarray
    std: np.ndarray
    provenance: dict


def load_shifted_mnist(mnist_dir=None, textures=None, seed=0, cache_dir=None, crops="inside",
                       composite="white"):
    """Build shiftedMNIST (or load it from the cache).

    mnist_dir: local MNIST directory; None: $IFM_MNIST_DIR, else download into the cache.
    textures: "dtd", "procedural" or a directory; None: $IFM_TEXTURES, else "dtd".
    seed: the data seed (split, texture ids, crops, texture choice).
    crops: "inside" or "wrap", how background crops are placed (see module doc).
    composite: "white", "black" or "contrast", the digit's ink (see module doc).
    cache_dir: cache root; None: $IFM_CACHE_DIR, else $XDG_CACHE_HOME/ifm or ~/.cache/ifm.
    Raises DataError for data the user must fix. Prints nothing when the cache is valid.
    """
    cache_root = resolve_cache_dir(cache_dir)
    spec = resolve_textures(textures)
    mnist = load_mnist(resolve_mnist_dir(mnist_dir), cache_root)
    texture_set = load_textures(spec, seed, cache_root)
    texture_sha256 = texture_digest(texture_set)
    if crops not in CROPS:
        raise ValueError(f"crops must be one of {CROPS}, got {crops!r}")
    if composite not in COMPOSITES:
        raise ValueError(f"composite must be one of {COMPOSITES}, got {composite!r}")
    key = cache_key(mnist, texture_set.provenance["kind"], texture_sha256, seed, crops, composite)
    path = cache_root / "shifted_mnist" / f"shifted-mnist-{key[:20]}.npz"

    arrays = read_cache(path, key)
    if arrays is None:
        start = time.perf_counter()
        print(f"shiftedMNIST: building (seed {seed}, textures {spec}) ...", file=sys.stderr,
              flush=True)
        arrays = build_arrays(mnist, texture_set, seed, crops, composite)
        try:
            write_cache(path, arrays, key)
            where = f"cached as {path}"
        except OSError as err:      # the data are fine; only the next start will be slower
            where = f"NOT cached ({path}: {err.strerror or err}; set --cache-dir / IFM_CACHE_DIR)"
        print(f"shiftedMNIST: built in {time.perf_counter() - start:.1f} s, {where}",
              file=sys.stderr, flush=True)

    splits = {name: Split(images=arrays[f"{name}_images"],
                          **{f: arrays[f"{name}_{f}"].astype(np.int64)
                             for f in ("digit", "texture", "index")})
              for name in SPLITS}
    provenance = {
        "dataset": "shiftedMNIST",
        "builder_version": BUILDER_VERSION,
        "seed": int(seed),
        "cache_key": key,
        "cache_file": str(path),
        "mnist": mnist.source,
        "textures": {"spec": spec, **texture_set.provenance, "sha256": texture_sha256},
        "sizes": {name: len(split) for name, split in splits.items()},
        "rendering": {"size": SIZE, "pad": PAD, "val_fraction": VAL_FRACTION, "crops": crops,
                      "composite": COMPOSITE_RULES[composite]},
        "mean": [float(v) for v in arrays["mean"]],
        "std": [float(v) for v in arrays["std"]],
    }
    return ShiftedMNIST(mean=arrays["mean"], std=arrays["std"], provenance=provenance, **splits)


# --- building ---------------------------------------------------------------------------------

def split_indices(n, seed):
    """(train, val) row indices into the n MNIST training images, each sorted; val is 20 %."""
    perm = np.random.default_rng([seed, SPLIT_RNG]).permutation(n)
    n_val = int(round(n * VAL_FRACTION))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def assign_textures(digit, split, seed):
    """Texture ids: the digit itself in train; else uniform on 0..9, independent of the digit."""
    if split == "train":
        return digit.astype(np.uint8)
    rng = np.random.default_rng([seed, TEXTURE_RNG, SPLITS.index(split)])
    return rng.integers(0, TEXTURE_COUNT, size=len(digit)).astype(np.uint8)


def crop_offsets(texture, shapes, rng, crops="inside"):
    """Top-left (row, col) of each image's 32x32 crop, uniform over the crops allowed.

    texture: (N,) ids; shapes: the (H, W) of each working texture. "inside":
    0 <= row <= H - 32 (the crop fits); "wrap": 0 <= row < H (it may wrap
    around). Columns alike. Returns two int64 (N,).
    """
    heights = np.array([s[0] for s in shapes], np.int64)[texture]
    widths = np.array([s[1] for s in shapes], np.int64)[texture]
    beyond = 0 if crops == "wrap" else SIZE - 1
    return rng.integers(0, heights - beyond), rng.integers(0, widths - beyond)


COMPOSITE_RULES = {"white": "out = bg + (255 - bg) * digit / 255, rounded",
                   "black": "out = bg * (255 - digit) / 255, rounded",
                   "contrast": "out = (bg * (255 - digit) + s * digit) / 255, rounded; s = 255 "
                               "if the crop's mean is below 127.5, else 0"}


def ink(background, composite):
    """The ink s of each image, uint16 (N,), for backgrounds uint8 (N, 3, 32, 32)."""
    n = len(background)
    if composite == "white":
        return np.full(n, WHITE, np.uint16)
    if composite == "black":
        return np.full(n, BLACK, np.uint16)
    # mean < 127.5  <=>  2 * sum < 255 * count, in integers
    total = background.reshape(n, -1).sum(axis=1, dtype=np.int64)
    dark = 2 * total < 255 * background[0].size
    return np.where(dark, WHITE, BLACK).astype(np.uint16)


def render(digits, texture, rows, cols, texture_images, crops="inside", composite="white"):
    """Composite digits over texture crops: uint8 (N, 3, 32, 32).

    digits (N, 28, 28) uint8; texture (N,) ids; rows, cols (N,) crop offsets;
    texture_images: ten uint8 (H, W, 3); crops="wrap" first extends each plane
    periodically by 31 px right and down; composite picks the ink s (``ink``).
    One gather per texture and channel, no loop over images (W_c is the
    (H-31, W-31, 32, 32) view of all crops of channel c):
        bg[n, c] = T[rows[n] : rows[n] + 32, cols[n] : cols[n] + 32, c] = W_c[rows[n], cols[n]]
        x = bg * (255 - d) + s * d + 127            (uint16, at most 65152)
        out = x // 255 = (x + 1 + (x >> 8)) >> 8    (exact for 0 <= x <= 65152)
    """
    n = len(digits)
    out = np.empty((n, 3, SIZE, SIZE), np.uint8)
    d = np.pad(digits, ((0, 0), (PAD, PAD), (PAD, PAD)))
    for t, image in enumerate(texture_images):
        sel = np.flatnonzero(texture == t)
        if sel.size == 0:
            continue
        planes = np.ascontiguousarray(image.transpose(2, 0, 1))
        if crops == "wrap":
            planes = np.pad(planes, ((0, 0), (0, SIZE - 1), (0, SIZE - 1)), mode="wrap")
        windows = sliding_window_view(planes, (SIZE, SIZE), axis=(1, 2))
        r, c, ds = rows[sel], cols[sel], d[sel]
        background = np.stack([windows[channel][r, c] for channel in range(3)], axis=1)
        inverse = 255 - ds
        ink_d = ink(background, composite)[:, None, None] * ds + 127
        for channel in range(3):
            x = background[:, channel].astype(np.uint16) * inverse + ink_d
            out[sel, channel] = (x + 1 + (x >> 8)) >> 8
    return out


def channel_stats(images, chunk=4096):
    """Per-channel mean and population std of images / 255, float32 (3,).

    Exact: the sums S1 = sum x and S2 = sum x^2 over each channel are integers
    (uint64), and N * S2 - S1^2 is formed in Python integers, so the variance
    (N * S2 - S1^2) / N^2 does not cancel as it would in floating point.
    """
    s1 = np.zeros(3, np.uint64)
    s2 = np.zeros(3, np.uint64)
    for start in range(0, len(images), chunk):
        x = images[start:start + chunk].astype(np.uint32)
        s1 += x.sum(axis=(0, 2, 3), dtype=np.uint64)
        s2 += (x * x).sum(axis=(0, 2, 3), dtype=np.uint64)
    n = images.size // 3
    mean = [int(a) / n / 255 for a in s1]
    var = [(n * int(b) - int(a) ** 2) / n ** 2 / 255 ** 2 for a, b in zip(s1, s2)]
    return np.array(mean, np.float32), np.sqrt(np.array(var)).astype(np.float32)


def build_arrays(mnist, texture_set, seed, crops="inside", composite="white"):
    """Every array of the dataset by cache name: {split}_{images,digit,texture,index}, mean, std."""
    train_idx, val_idx = split_indices(len(mnist.train_labels), seed)
    sources = {"train": (mnist.train_images, mnist.train_labels, train_idx),
               "val": (mnist.train_images, mnist.train_labels, val_idx),
               "test": (mnist.test_images, mnist.test_labels,
                        np.arange(len(mnist.test_labels)))}
    shapes = [image.shape[:2] for image in texture_set.images]
    arrays = {}
    for k, name in enumerate(SPLITS):
        images, labels, index = sources[name]
        digit = labels[index]
        texture = assign_textures(digit, name, seed)
        rows, cols = crop_offsets(texture, shapes, np.random.default_rng([seed, CROP_RNG, k]),
                                  crops)
        arrays[f"{name}_images"] = render(images[index], texture, rows, cols, texture_set.images,
                                          crops, composite)
        arrays[f"{name}_digit"] = digit.astype(np.uint8)
        arrays[f"{name}_texture"] = texture
        arrays[f"{name}_index"] = index.astype(np.int32)
    arrays["mean"], arrays["std"] = channel_stats(arrays["train_images"])
    return arrays


# --- cache ------------------------------------------------------------------------------------

def cache_key(mnist, texture_kind, texture_sha256, seed, crops="inside", composite="white"):
    """sha256 (hex) of everything the arrays depend on (see module doc)."""
    parts = {
        "builder_version": BUILDER_VERSION,
        "seed": int(seed),
        "mnist_md5": {f: mnist.source["files"][f]["md5"] for f in FILES},
        "textures": {"kind": texture_kind, "sha256": texture_sha256},
    }
    if crops != "inside":       # so that the defaults keep the keys of earlier builds
        parts["crops"] = crops
    if composite != "white":
        parts["composite"] = composite
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def arrays_digest(arrays):
    """sha256 over the names, dtypes, shapes and bytes of the arrays, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        digest.update(a.data.cast("B"))
    return digest.hexdigest()


def _expected_layout(arrays):
    """None when the arrays have the names, dtypes and shapes of a build, else the problem."""
    names = {f"{s}_{f}" for s in SPLITS for f in ("images", "digit", "texture", "index")}
    names |= {"mean", "std"}
    if set(arrays) != names:
        return f"arrays {sorted(set(arrays) ^ names)} missing or unexpected"
    for s in SPLITS:
        images = arrays[f"{s}_images"]
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (3, SIZE, SIZE):
            return f"{s}_images has dtype {images.dtype} and shape {images.shape}"
        for f in ("digit", "texture", "index"):
            if arrays[f"{s}_{f}"].shape != (len(images),):
                return f"{s}_{f} has shape {arrays[f'{s}_{f}'].shape}, expected ({len(images)},)"
    if arrays["mean"].shape != (3,) or arrays["std"].shape != (3,):
        return "mean or std is not of shape (3,)"
    return None


def read_cache(path, key):
    """The cached arrays for ``key``, or None (missing: silently; damaged: with a warning)."""
    path = Path(path)
    meta_path = path.with_suffix(".json")
    if not path.exists() and not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("key") != key or meta.get("builder_version") != BUILDER_VERSION:
            raise ValueError("its key or builder version does not match")
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        problem = _expected_layout(arrays)
        if problem:
            raise ValueError(problem)
        if arrays_digest(arrays) != meta.get("sha256"):
            raise ValueError("checksum mismatch")
    except Exception as err:   # any unreadable or inconsistent cache is rebuilt, never trusted
        print(f"shiftedMNIST: cache {path} is damaged ({type(err).__name__}: {err}); rebuilding it",
              file=sys.stderr, flush=True)
        return None
    return arrays


def write_cache(path, arrays, key):
    """Write ``<path>`` (npz) then ``<path>.json`` (key, version, checksum), each atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"key": key, "builder_version": BUILDER_VERSION, "sha256": arrays_digest(arrays)}
    _atomic_write(path, lambda f: np.savez(f, **arrays))
    _atomic_write(path.with_suffix(".json"),
                  lambda f: f.write(json.dumps(meta, indent=1).encode() + b"\n"))


def _atomic_write(path, write):
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
