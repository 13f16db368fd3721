"""Textures: a folder, procedural, DTD from a synthetic archive, safe extraction, env resolution."""
import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data import (DataError, load_textures, resolve_cache_dir, resolve_mnist_dir,
                  resolve_textures)
from data.textures import (MIN_SIDE, WORKING_SIDE, extract_tar_safely, procedural_textures,
                           working_texture)

COLOURS = [(10 * i + 5, 255 - 18 * i, (37 * i) % 256) for i in range(14)]


def write_images(folder, names, size=(40, 70)):
    folder.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(names):
        Image.new("RGB", size, COLOURS[k]).save(folder / name)
    return folder


def colour_of(array):
    return tuple(int(v) for v in array[0, 0])


# --- directory --------------------------------------------------------------------------------

def test_directory_ids_follow_sorted_names(tmp_path):
    names = [f"{c}.png" for c in "jihgfedcba"]          # written out of order
    write_images(tmp_path, names)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden.png").write_bytes(b"ignored")
    textures = load_textures(str(tmp_path))
    by_name = dict(zip(names, COLOURS))
    for i, name in enumerate(sorted(names)):
        record = dict(textures.provenance["textures"][i])
        assert len(record.pop("sha256")) == 64
        assert record == {"id": i, "file": name, "size": [70, 40], "working_size": [70, 80]}
        assert colour_of(textures.images[i]) == by_name[name]
    assert textures.provenance["kind"] == "directory"


def test_directory_with_too_few_images(tmp_path):
    write_images(tmp_path, [f"{i}.png" for i in range(9)])
    with pytest.raises(DataError) as err:
        load_textures(str(tmp_path))
    assert str(tmp_path) in str(err.value) and "9 image file(s)" in str(err.value)
    assert "procedural" in str(err.value)


def test_directory_with_an_unreadable_image(tmp_path):
    write_images(tmp_path, [f"{i}.png" for i in range(10)])
    (tmp_path / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n but not really")
    with pytest.raises(DataError) as err:
        load_textures(str(tmp_path))
    assert str(tmp_path / "3.png") in str(err.value) and "cannot read it" in str(err.value)


def test_only_the_listed_decoders_are_tried(tmp_path, monkeypatch):
    """An EPS file named .png must not reach Pillow's EPS plugin (it runs Ghostscript)."""
    from PIL import EpsImagePlugin
    opened = []
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open",
                        lambda self: opened.append(self) or (_ for _ in ()).throw(SyntaxError))
    folder = write_images(tmp_path / "t", [f"{i}.png" for i in range(9)])
    (folder / "9.png").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n")
    with pytest.raises(DataError, match="9.png: cannot read it as an image"):
        load_textures(str(folder))
    assert opened == []


def test_identical_textures_are_accepted_with_a_warning(tmp_path):
    folder = write_images(tmp_path / "t", [f"{i}.png" for i in range(10)])
    Image.new("RGB", (40, 70), COLOURS[2]).save(folder / "7.png")
    warnings = io.StringIO()
    textures = load_textures(str(folder), stream=warnings)
    assert len(textures.images) == 10
    assert "ids 2 (2.png) and 7 (7.png) are identical" in warnings.getvalue()
    quiet = io.StringIO()
    load_textures(str(write_images(tmp_path / "u", [f"{i}.png" for i in range(10)])),
                  stream=quiet)
    assert quiet.getvalue() == ""


def test_each_texture_record_carries_its_checksum(tmp_path):
    textures = load_textures(str(write_images(tmp_path / "t", [f"{i}.png" for i in range(10)])))
    digests = [r["sha256"] for r in textures.provenance["textures"]]
    assert len(set(digests)) == 10
    assert digests[3] == hashlib.sha256(repr(textures.images[3].shape).encode()
                                        + textures.images[3].tobytes()).hexdigest()
    assert all(len(r["sha256"]) == 64 for r in procedural_textures().provenance["textures"])


def test_directory_with_more_than_ten_takes_ten_with_the_seed(tmp_path):
    names = [f"{i:02d}.png" for i in range(14)]
    write_images(tmp_path, names)
    chosen = {}
    for seed in range(4):
        textures = load_textures(str(tmp_path), seed=seed)
        files = [t["file"] for t in textures.provenance["textures"]]
        assert len(files) == 10 == len(set(files)) and files == sorted(files)
        assert textures.provenance["chosen_with_seed"] == seed
        assert textures.provenance["available"] == 14
        for i, f in enumerate(files):
            assert colour_of(textures.images[i]) == COLOURS[names.index(f)]
        assert files == [t["file"] for t in load_textures(str(tmp_path), seed=seed)
                         .provenance["textures"]]
        chosen[seed] = files
    assert len({tuple(f) for f in chosen.values()}) > 1


def test_spec_that_is_neither_mode_nor_directory(tmp_path):
    with pytest.raises(DataError, match="'dtd', 'procedural' or a directory"):
        load_textures(str(tmp_path / "no-such-folder"))


# --- working size -----------------------------------------------------------------------------

def test_small_textures_are_tiled():
    pattern = np.random.default_rng(0).integers(0, 256, (50, 30, 3)).astype(np.uint8)
    out = working_texture(Image.fromarray(pattern))
    assert out.shape == (100, 90, 3) and min(out.shape[:2]) >= MIN_SIDE
    np.testing.assert_array_equal(out, np.tile(pattern, (2, 3, 1)))


def test_large_textures_are_resized_down():
    out = working_texture(Image.new("RGB", (640, 400), (1, 2, 3)))
    assert out.shape == (WORKING_SIDE, 205, 3) and (out == (1, 2, 3)).all()


def test_medium_textures_are_kept():
    pattern = np.random.default_rng(0).integers(0, 256, (100, 128, 3)).astype(np.uint8)
    np.testing.assert_array_equal(working_texture(Image.fromarray(pattern)), pattern)


# --- procedural -------------------------------------------------------------------------------

def test_procedural_textures_are_ten_distinct_fixed_patterns():
    textures = procedural_textures()
    again = procedural_textures()
    assert len(textures.images) == 10
    for a, b in zip(textures.images, again.images):
        assert a.dtype == np.uint8 and a.shape == (64, 64, 3)
        np.testing.assert_array_equal(a, b)
    # Distinct colours: coarse colour histograms (4 levels per channel) of any two
    # textures overlap by less than half (total variation distance > 0.5).
    histograms = []
    for t in textures.images:
        q = t.reshape(-1, 3) // 64
        histograms.append(np.bincount(q[:, 0] * 16 + q[:, 1] * 4 + q[:, 2], minlength=64))
    h = np.array(histograms) / (64 * 64)
    distance = 0.5 * np.abs(h[:, None] - h[None]).sum(-1)
    assert distance[~np.eye(10, dtype=bool)].min() > 0.5
    # Tileable: the jump across the wrap-around edge is about as large as between
    # neighbouring rows (columns) inside the texture (the speckle adds a little
    # noise); a cut through the pattern would jump by the colour contrast, ~100.
    for t in textures.images:
        t = t.astype(int)
        for axis in (0, 1):
            step = np.abs(np.diff(t, axis=axis)).mean(axis=(1 - axis, 2))
            seam = np.abs(t.take(0, axis) - t.take(-1, axis)).mean()
            assert seam <= 1.25 * step.max()


def test_procedural_bytes_are_pinned():
    # Integer-only generation: these bytes must be the same on every machine.
    digest = hashlib.sha256(b"".join(t.tobytes() for t in procedural_textures().images))
    assert digest.hexdigest() == PROCEDURAL_SHA256


PROCEDURAL_SHA256 = "50ad4c173c78bee8ec4ce42846e600524d8424b871701a8f0e6f42438fcb9b1d"


# --- DTD --------------------------------------------------------------------------------------

def jpeg_bytes(colour, size=(300, 260)):
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "JPEG")
    return buffer.getvalue()


def add_file(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def make_archive(path, categories=12, per_category=3, extra=None):
    """A small tar.gz laid out like dtd-r1.0.1: dtd/images/<category>/<category>_NNNN.jpg."""
    with tarfile.open(path, "w:gz") as tar:
        add_file(tar, "dtd/labels/labels_joint_anno.txt", b"")
        for c in range(categories):
            for k in range(per_category):
                add_file(tar, f"dtd/images/cat{c:02d}/cat{c:02d}_{k:04d}.jpg",
                         jpeg_bytes(COLOURS[c]))
        for member, data in (extra or []):
            if data is None:
                tar.addfile(member)
            else:
                add_file(tar, member, data)
    return path, hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_dtd_downloads_extracts_and_chooses_ten_categories(tmp_path):
    archive, sha = make_archive(tmp_path / "dtd-r1.0.1.tar.gz")
    cache = tmp_path / "cache"
    urls = [(tmp_path / "missing.tar.gz").as_uri(), archive.as_uri()]
    textures = load_textures("dtd", seed=1, cache_dir=cache, dtd_urls=urls, dtd_sha256=sha)
    records = textures.provenance["textures"]
    categories = [r["category"] for r in records]
    assert len(set(categories)) == 10 and categories == sorted(categories)
    for r, image in zip(records, textures.images):
        assert r["file"].startswith(r["category"] + "/") and r["file"].endswith(".jpg")
        assert image.shape == (WORKING_SIDE, 148, 3)     # 300x260 resized to shorter side 128
        assert np.abs(image[5, 5].astype(int) - COLOURS[int(r["category"][3:])]).max() < 8
    assert not (cache / "dtd" / "dtd-r1.0.1.tar.gz").exists()   # deleted after extraction
    # Cached: no download is needed any more, and the same seed gives the same choice.
    again = load_textures("dtd", seed=1, cache_dir=cache, dtd_urls=[], dtd_sha256=sha)
    assert again.provenance == textures.provenance
    other = load_textures("dtd", seed=2, cache_dir=cache, dtd_urls=[], dtd_sha256=sha)
    assert other.provenance["textures"] != records


def test_a_damaged_archive_in_the_cache_is_fetched_again(tmp_path, capfd):
    archive, sha = make_archive(tmp_path / "dtd-r1.0.1.tar.gz")
    cache = tmp_path / "cache"
    (cache / "dtd").mkdir(parents=True)
    (cache / "dtd" / "dtd-r1.0.1.tar.gz").write_bytes(archive.read_bytes()[:1000])
    textures = load_textures("dtd", cache_dir=cache, dtd_urls=[archive.as_uri()], dtd_sha256=sha)
    assert len(textures.images) == 10
    assert "wrong sha256" in capfd.readouterr().err


def test_dtd_with_a_bad_checksum_extracts_nothing(tmp_path):
    archive, _ = make_archive(tmp_path / "dtd.tar.gz")
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="checksum mismatch") as err:
        load_textures("dtd", cache_dir=cache, dtd_urls=[archive.as_uri()], dtd_sha256="0" * 64)
    assert "procedural" in str(err.value)
    assert not (cache / "dtd" / "dtd").exists()


def symlink(name, target, hard=False):
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return info


@pytest.mark.parametrize("member, data", [
    ("../evil.txt", b"escaped"),
    ("dtd/images/../../../evil.txt", b"escaped"),
    ("/tmp/ifm-test-evil-absolute.txt", b"escaped"),
    (symlink("dtd/images/link", "../../../evil.txt"), None),
    (symlink("dtd/images/hard", "/etc/passwd", hard=True), None),
])
def test_unsafe_archives_are_refused(tmp_path, member, data):
    archive, sha = make_archive(tmp_path / "evil.tar.gz", extra=[(member, data)])
    cache = tmp_path / "deep" / "cache"
    with pytest.raises(DataError, match="unsafe archive member"):
        load_textures("dtd", cache_dir=cache, dtd_urls=[archive.as_uri()], dtd_sha256=sha)
    assert not list(tmp_path.rglob("evil.txt")) and not list(tmp_path.rglob("link"))
    assert not Path("/tmp/ifm-test-evil-absolute.txt").exists()
    assert not (cache / "dtd" / "dtd").exists()


def small_tar(path, members):
    """A tar.gz of (name, bytes) files and (name, None) directories, in the order given."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members:
            if data is None:
                info = tarfile.TarInfo(name)
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                add_file(tar, name, data)
    return path


@pytest.mark.parametrize("members, why", [
    ([("dtd/a", b"file"), ("dtd/a/b", b"below a file")], "also has a directory"),
    ([("dtd/a/b", b"x"), ("dtd/a", b"file over a directory")], "also has a directory"),
    ([("dtd", None), ("dtd", b"file over a directory")], "also has a directory"),
    ([(".", b"a file named like the folder")], "extraction folder itself"),
], ids=["file-then-below", "below-then-file", "dir-then-file", "dot"])
def test_colliding_members_are_refused_before_anything_is_written(tmp_path, members, why):
    archive = small_tar(tmp_path / "collide.tar.gz", members)
    with pytest.raises(DataError, match=why) as err:
        extract_tar_safely(archive, tmp_path / "out")
    assert str(archive) in str(err.value)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_dot_directory_member_is_fine(tmp_path):
    archive = small_tar(tmp_path / "dot.tar.gz", [(".", None), ("./dtd", None),
                                                   ("./dtd/x.txt", b"x")])
    extract_tar_safely(archive, tmp_path / "out")
    assert (tmp_path / "out" / "dtd" / "x.txt").read_bytes() == b"x"


def test_a_failing_write_during_extraction_is_a_data_error(tmp_path, read_only):
    archive = small_tar(tmp_path / "ok.tar.gz", [("dtd/x.txt", b"x")])
    read_only(tmp_path / "out")
    with pytest.raises(DataError, match="cannot extract member 'dtd/x.txt'"):
        extract_tar_safely(archive, tmp_path / "out")


def test_dtd_into_a_read_only_cache_is_a_data_error(tmp_path, read_only):
    archive, sha = make_archive(tmp_path / "dtd-r1.0.1.tar.gz")
    read_only(tmp_path / "cache")
    with pytest.raises(DataError, match="cannot write there") as err:
        load_textures("dtd", cache_dir=tmp_path / "cache", dtd_urls=[archive.as_uri()],
                      dtd_sha256=sha)
    assert "--cache-dir" in str(err.value)


def test_extract_tar_safely_writes_only_under_dest(tmp_path):
    archive, _ = make_archive(tmp_path / "ok.tar.gz", categories=2, per_category=1)
    extract_tar_safely(archive, tmp_path / "out")
    written = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.*"))
    assert written == ["dtd/images/cat00/cat00_0000.jpg", "dtd/images/cat01/cat01_0000.jpg",
                       "dtd/labels/labels_joint_anno.txt"]


def test_damaged_archive(tmp_path):
    archive, _ = make_archive(tmp_path / "ok.tar.gz", categories=2, per_category=1)
    archive.write_bytes(archive.read_bytes()[:200])
    with pytest.raises(DataError, match="damaged archive"):
        extract_tar_safely(archive, tmp_path / "out")


# --- resolution of arguments and environment --------------------------------------------------

def test_resolution_order(monkeypatch, tmp_path):
    for name in ("IFM_MNIST_DIR", "IFM_TEXTURES", "IFM_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    assert resolve_mnist_dir() is None
    assert resolve_textures() == "dtd"
    assert resolve_cache_dir() == Path.home() / ".cache" / "ifm"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_cache_dir() == tmp_path / "xdg" / "ifm"
    monkeypatch.setenv("IFM_MNIST_DIR", str(tmp_path / "env-mnist"))
    monkeypatch.setenv("IFM_TEXTURES", "procedural")
    monkeypatch.setenv("IFM_CACHE_DIR", str(tmp_path / "env-cache"))
    assert resolve_mnist_dir() == tmp_path / "env-mnist"
    assert resolve_textures() == "procedural"
    assert resolve_cache_dir() == tmp_path / "env-cache"
    assert resolve_mnist_dir("arg") == Path("arg")
    assert resolve_textures("dtd") == "dtd"
    assert resolve_cache_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.setenv("IFM_TEXTURES", "")                 # empty counts as unset
    assert resolve_textures() == "dtd"
