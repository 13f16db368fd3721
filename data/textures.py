"""The ten background textures of shiftedMNIST, from one of three sources.

Texture spec (``load_textures(spec, ...)``):

- ``"dtd"`` (default, as in the paper): the Describable Textures Dataset r1.0.1
  (47 categories x 120 photos). The official archive is downloaded once into
  ``<cache>/dtd``, verified by sha256, and extracted safely (an absolute path,
  a ``..`` component, a link or a device in the archive refuses the whole
  archive). Ten of the 47 categories are drawn with the seed, then one photo
  from each; ids 0..9 follow the alphabetical order of the chosen categories.
- a directory: its image files (by suffix, hidden files skipped) in sorted
  order of name are texture ids 0..9. Fewer than ten, or a file that does not
  decode, is a DataError. With more than ten, ten are drawn with the seed and
  keep their sorted order.
- ``"procedural"``: ten two-colour patterns (stripes, checks, dots, rings ...)
  in distinct colours, 64x64 and tileable, made with integer arithmetic only so
  that every machine produces the same bytes. No files, no seed.

Working size (each texture becomes one uint8 (H, W, 3) array): an image whose
shorter side exceeds WORKING_SIDE = 128 px is resized (Lanczos) so that its
shorter side is 128, so that a 32x32 crop shows a quarter of the texture's
extent rather than a featureless patch of a 640 px photo; a side shorter than
MIN_SIDE = 64 px is tiled (repeated) until it reaches 64, so that crops vary.
The shiftedMNIST builder then cuts 32x32 crops at uniform offsets.

The provenance records which file (and DTD category) became which id.
"""
import hashlib
import shutil
import sys
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import numpy as np
from PIL import Image

from .download import download, ensure_writable, file_digest
from .errors import DataError
from .images import IMAGE_SUFFIXES, read_rgb8, rgb8

TEXTURE_COUNT = 10
WORKING_SIDE = 128
MIN_SIDE = 64

DTD_ARCHIVE = "dtd-r1.0.1.tar.gz"
DTD_URLS = [
    "https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz",
    "https://thor.robots.ox.ac.uk/dtd/dtd-r1.0.1.tar.gz",
]
# sha256 of dtd-r1.0.1.tar.gz (625,239,812 bytes) as pinned by torchvision's
# prototype datasets and anomalib; its md5, pinned by torchvision.datasets.DTD,
# is fff73e5086ae6bdbea199a49dfb8a4c1. Override with load_textures(dtd_sha256=...).
DTD_SHA256 = "e42855a52a4950a3b59612834602aa253914755c95b0cff9ead6d07395f8e205"


class Textures(NamedTuple):
    """Ten uint8 (H, W, 3) arrays, index = texture id, and a JSON-ready record of their origin."""
    images: tuple
    provenance: dict


def load_textures(spec, seed=0, cache_dir=None, dtd_urls=None, dtd_sha256=None, stream=None):
    """The ten textures for ``spec``: "dtd", "procedural" or a directory path (see module doc).

    Each provenance record carries the sha256 of its working array. Two ids
    with identical working arrays are accepted with a warning on ``stream``
    (stderr): their texture no longer tells the two digits apart in train.
    """
    if spec == "procedural":
        textures = procedural_textures()
    elif spec == "dtd":
        if cache_dir is None:
            raise ValueError("textures 'dtd' need a cache_dir")
        textures = dtd_textures(cache_dir, seed, dtd_urls, dtd_sha256)
    else:
        directory = Path(spec).expanduser()
        if not directory.is_dir():
            raise DataError(f"{spec}: textures must be 'dtd', 'procedural' or a directory of at "
                            f"least {TEXTURE_COUNT} images, and this is none of them. Fix "
                            "--textures / IFM_TEXTURES.")
        textures = directory_textures(directory, seed)
    warn_identical(textures, sys.stderr if stream is None else stream)
    return textures


def array_sha256(array):
    """sha256 of one working array's shape and bytes."""
    digest = hashlib.sha256(repr(array.shape).encode())
    digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def warn_identical(textures, stream):
    first = {}
    for record in textures.provenance["textures"]:
        same = first.setdefault(record["sha256"], record)
        if same is not record:
            name = lambda r: r.get("file") or r.get("pattern")        # noqa: E731
            print(f"textures: warning: ids {same['id']} ({name(same)}) and {record['id']} "
                  f"({name(record)}) are identical images, so in train their texture does not "
                  "tell those two digits apart; choose distinct textures", file=stream)


def working_texture(image):
    """A PIL image as a uint8 (H, W, 3) array at working size (resized down or tiled, see above)."""
    image = rgb8(image)
    w, h = image.size
    if min(w, h) > WORKING_SIDE:
        scale = WORKING_SIDE / min(w, h)
        size = (max(WORKING_SIDE, round(w * scale)), max(WORKING_SIDE, round(h * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    array = np.asarray(image, dtype=np.uint8)
    reps = (-(-MIN_SIDE // array.shape[0]), -(-MIN_SIDE // array.shape[1]), 1)
    return np.ascontiguousarray(np.tile(array, reps))


def read_image(path):
    """Decode one texture file fully as 8-bit RGB (data/images.py: only the formats it lists),
    or a DataError naming it."""
    return read_rgb8(path, "Replace or remove it, or choose other textures with --textures / "
                           "IFM_TEXTURES.").image


def _from_files(paths, root, kind, categories=None, extra=None):
    images, records = [], []
    for i, path in enumerate(paths):
        image = read_image(path)
        array = working_texture(image)
        record = {"id": i, "file": str(Path(path).relative_to(root)),
                  "size": [image.height, image.width], "working_size": list(array.shape[:2]),
                  "sha256": array_sha256(array)}
        if categories is not None:
            record["category"] = categories[i]
        images.append(array)
        records.append(record)
    provenance = {"kind": kind, "dir": str(Path(root).resolve()), "textures": records,
                  **(extra or {})}
    return Textures(tuple(images), provenance)


def image_files(directory):
    """Image files directly in ``directory`` (by suffix, no hidden files), sorted by name."""
    return sorted((p for p in Path(directory).iterdir()
                   if p.is_file() and not p.name.startswith(".")
                   and p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: p.name)


def directory_textures(directory, seed=0):
    """Texture ids 0..9 = the image files in sorted order (ten drawn with the seed if more)."""
    directory = Path(directory)
    files = image_files(directory)
    if len(files) < TEXTURE_COUNT:
        names = ", ".join(p.name for p in files) or "none"
        raise DataError(f"{directory}: {len(files)} image file(s) ({names}), but shiftedMNIST "
                        f"needs {TEXTURE_COUNT} textures. Add images (suffixes "
                        f"{', '.join(IMAGE_SUFFIXES)}) or use --textures procedural.")
    extra = {"available": len(files)}
    if len(files) > TEXTURE_COUNT:
        chosen = np.sort(np.random.default_rng([seed, 3]).choice(len(files), TEXTURE_COUNT,
                                                                 replace=False))
        files = [files[i] for i in chosen]
        extra["chosen_with_seed"] = seed
    return _from_files(files, directory, "directory", extra=extra)


def dtd_textures(cache_dir, seed=0, urls=None, sha256=None):
    """Ten DTD photos from ten categories drawn with the seed (downloading DTD once)."""
    images_dir = ensure_dtd(cache_dir, urls, sha256)
    categories = sorted(d.name for d in images_dir.iterdir()
                        if d.is_dir() and any(image_files(d)))
    if len(categories) < TEXTURE_COUNT:
        raise DataError(f"{images_dir}: {len(categories)} DTD categories with images, expected 47. "
                        f"Delete {images_dir.parent.parent} to download DTD again.")
    rng = np.random.default_rng([seed, 3])
    chosen = [categories[i] for i in np.sort(rng.choice(len(categories), TEXTURE_COUNT,
                                                        replace=False))]
    files = []
    for category in chosen:
        candidates = image_files(images_dir / category)
        files.append(candidates[int(rng.integers(len(candidates)))])
    return _from_files(files, images_dir, "dtd", categories=chosen,
                       extra={"release": DTD_ARCHIVE, "chosen_with_seed": seed})


def ensure_dtd(cache_dir, urls=None, sha256=None):
    """``<cache>/dtd/dtd/images``, downloading, verifying and extracting the release if needed.

    The archive is extracted into a staging folder and moved into place whole;
    a marker file written last says the extraction completed. The archive is
    deleted afterwards (its sha256 stays in the marker).
    """
    urls = DTD_URLS if urls is None else urls
    sha256 = DTD_SHA256 if sha256 is None else sha256
    root = Path(cache_dir) / "dtd"
    images_dir = root / "dtd" / "images"
    marker = root / "extracted.sha256"
    if marker.is_file() and images_dir.is_dir():
        return images_dir
    archive = root / DTD_ARCHIVE
    if archive.is_file() and file_digest(archive, "sha256") != sha256:
        print(f"{archive}: wrong sha256 (damaged or another release); downloading it again",
              file=sys.stderr, flush=True)
        archive.unlink()
    if not archive.is_file():
        hint = (f"If this machine is offline, put {DTD_ARCHIVE} in {root} (it is checked against "
                "its sha256), or use --textures procedural or --textures <a directory of images>.")
        download(urls, archive, sha256, "sha256", hint)
    ensure_writable(root)
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=root))
    try:
        extract_tar_safely(archive, staging)
        if not (staging / "dtd" / "images").is_dir():
            raise DataError(f"{archive}: holds no dtd/images folder; it is not the DTD release. "
                            "Delete it to download it again.")
        if (root / "dtd").exists():
            shutil.rmtree(root / "dtd")
        (staging / "dtd").rename(root / "dtd")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    marker.write_text(sha256 + "\n")
    archive.unlink()
    return images_dir


def extract_tar_safely(archive, dest):
    """Extract the directories and regular files of a tar archive under ``dest``.

    Every member is checked before anything is written; the archive is refused
    (DataError) if any member has an absolute path, a '..' component, resolves
    outside ``dest``, is a symlink, hard link, device or fifo, is a file named
    like the extraction folder itself (``.``), or is a file at a path that
    another member uses as a directory. Files are written by this function (not
    tarfile.extract), with default permissions; a write that fails all the
    same (a full disk) is a DataError too.
    """
    dest = Path(dest).resolve()
    fix = "Delete it and download it again; do not extract it by hand."
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member, why in _unsafe_members(members, dest):
                raise DataError(f"{archive}: unsafe archive member {member.name!r} ({why}); "
                                f"refusing to extract the archive. {fix}")
            for member in members:
                target = dest / member.name
                try:
                    if member.isdir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(member) as src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out)
                except OSError as err:
                    raise DataError(f"{archive}: cannot extract member {member.name!r} to "
                                    f"{target} ({err.strerror or err}). Free space in, or "
                                    "choose another, --cache-dir / IFM_CACHE_DIR.") from None
    except (tarfile.TarError, EOFError, zlib.error) as err:
        raise DataError(f"{archive}: damaged archive ({err}). {fix}") from None


def _unsafe_members(members, dest):
    """(member, reason) for each member that must not be extracted under ``dest``."""
    paths = {m: PurePosixPath(m.name) for m in members}
    directories = {p for m, p in paths.items() if m.isdir()}
    directories |= {parent for p in paths.values() for parent in p.parents}
    for member, path in paths.items():
        why = _unsafe(member, dest)
        if why is None and member.isfile() and not path.parts:
            why = "a file named like the extraction folder itself"
        elif why is None and member.isfile() and path in directories:
            why = "a file where the archive also has a directory"
        if why:
            yield member, why


def _unsafe(member, dest):
    name = member.name
    parts = PurePosixPath(name).parts
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in parts or "\\" in name:
        return "path leaves the extraction folder"
    if not (member.isfile() or member.isdir()):
        return "link or special file"
    target = (dest / name).resolve()
    if target != dest and dest not in target.parents:
        return "path leaves the extraction folder"
    return None


def texture_digest(textures):
    """sha256 over the shapes and bytes of the ten working arrays (part of the cache key)."""
    digest = hashlib.sha256()
    for array in textures.images:
        digest.update(repr(array.shape).encode())
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


# --- procedural -------------------------------------------------------------------------------

def _hash(*coords):
    """Deterministic integer hash of integer grids (uint32 arithmetic, wraps on purpose)."""
    h = np.uint32(2166136261)
    for c in coords:
        h = (h ^ c.astype(np.uint32)) * np.uint32(16777619)
        h ^= h >> np.uint32(13)
    return h


def procedural_textures(size=64):
    """Ten tileable two-colour patterns in distinct colours, uint8 (size, size, 3), no randomness.

    Periods divide 64, so the patterns tile seamlessly; a small hashed speckle
    (+-12 grey levels) keeps the flat regions from being perfectly uniform.
    """
    y, x = np.mgrid[0:size, 0:size]
    # Squared and absolute distance to the centre of a p-periodic cell.
    sq = lambda a, p: (a % p - p // 2) ** 2             # noqa: E731
    ab = lambda a, p: np.abs(a % p - p // 2)             # noqa: E731
    # IEEE sqrt is correctly rounded, so the floor of the sqrt of an integer is the same everywhere.
    radius = np.floor(np.sqrt((sq(x, 32) + sq(y, 32)).astype(np.float64))).astype(np.int64)
    patterns = [
        ("horizontal stripes", (y // 4) % 2 == 0, (200, 40, 40), (240, 220, 180)),
        ("vertical stripes", (x // 4) % 2 == 0, (40, 60, 200), (240, 210, 60)),
        ("diagonal stripes", ((x + y) // 8) % 2 == 0, (40, 160, 70), (200, 60, 180)),
        ("checkerboard", (x // 8 + y // 8) % 2 == 0, (20, 20, 20), (60, 200, 220)),
        ("polka dots", sq(x, 16) + sq(y, 16) < 25, (250, 140, 30), (20, 30, 90)),
        ("rings", (radius // 4) % 2 == 0, (120, 50, 160), (170, 230, 60)),
        ("grid", (x % 16 < 2) | (y % 16 < 2), (30, 30, 30), (150, 200, 120)),
        ("random blocks", _hash(x // 8, y // 8) % 2 == 0, (150, 90, 40), (90, 50, 20)),
        ("zigzag", ((y + ab(x, 16)) // 4) % 2 == 0, (0, 128, 128), (255, 170, 190)),
        ("diamonds", ab(x, 16) + ab(y, 16) < 6, (230, 200, 90), (110, 110, 110)),
    ]
    speckle = (_hash(x, y, np.full_like(x, 7)) % 25).astype(np.int16) - 12
    images, records = [], []
    for i, (name, mask, fg, bg) in enumerate(patterns):
        colour = np.where(mask[..., None], np.array(fg, np.int16), np.array(bg, np.int16))
        images.append(np.clip(colour + speckle[..., None], 0, 255).astype(np.uint8))
        records.append({"id": i, "pattern": name, "working_size": [size, size],
                        "sha256": array_sha256(images[-1])})
    return Textures(tuple(images), {"kind": "procedural", "textures": records})
