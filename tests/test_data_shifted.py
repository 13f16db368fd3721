"""The shiftedMNIST builder on synthetic MNIST: splits, label rules, rendering, stats, cache."""
import json

import numpy as np
import pytest
from PIL import Image

import data.shifted_mnist as builder
from data import ShiftedMNIST, load_shifted_mnist, save_dataset_figure
from data.figure import main as figure_main
from data.textures import procedural_textures
from fixtures_data import (CHI2_999, chi2_independence, chi2_uniform, mixed_dependence,
                           synthetic_mnist, write_mnist_dir)

N_TRAIN, N_TEST = 3000, 1000


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    arrays = synthetic_mnist(N_TRAIN, N_TEST, seed=1)
    return arrays, write_mnist_dir(tmp_path_factory.mktemp("mnist"), arrays)


@pytest.fixture(scope="module")
def ds(mnist, tmp_path_factory):
    return load_shifted_mnist(mnist[1], "procedural", seed=0,
                              cache_dir=tmp_path_factory.mktemp("cache"))


def test_interface(ds):
    assert isinstance(ds, ShiftedMNIST)
    for split, n in ((ds.train, 2400), (ds.val, 600), (ds.test, 1000)):
        assert len(split) == n
        assert split.images.dtype == np.uint8 and split.images.shape == (n, 3, 32, 32)
        for labels in (split.digit, split.texture, split.index):
            assert labels.dtype == np.int64 and labels.shape == (n,)
        assert split.digit.min() >= 0 and split.digit.max() <= 9
        assert split.texture.min() >= 0 and split.texture.max() <= 9
    assert ds.mean.dtype == ds.std.dtype == np.float32 and ds.mean.shape == ds.std.shape == (3,)
    json.dumps(ds.provenance)
    assert ds.provenance["sizes"] == {"train": 2400, "val": 600, "test": 1000}
    assert ds.provenance["textures"]["kind"] == "procedural"


def test_split_covers_mnist_train_once_and_keeps_labels(ds, mnist):
    arrays, _ = mnist
    both = np.concatenate([ds.train.index, ds.val.index])
    np.testing.assert_array_equal(np.sort(both), np.arange(N_TRAIN))
    np.testing.assert_array_equal(ds.test.index, np.arange(N_TEST))
    np.testing.assert_array_equal(ds.train.digit, arrays["train_labels"][ds.train.index])
    np.testing.assert_array_equal(ds.val.digit, arrays["train_labels"][ds.val.index])
    np.testing.assert_array_equal(ds.test.digit, arrays["test_labels"])


def test_train_texture_is_the_digit(ds):
    np.testing.assert_array_equal(ds.train.texture, ds.train.digit)


@pytest.mark.parametrize("name", ["val", "test"])
def test_val_and_test_textures_are_uniform_and_independent(ds, name):
    split = getattr(ds, name)
    assert chi2_independence(split.digit, split.texture) < CHI2_999[81]
    assert chi2_uniform(split.texture) < CHI2_999[9]


def test_the_independence_test_detects_dependence(ds):
    # The same test must reject train (texture = digit) and a partly dependent rule.
    assert chi2_independence(ds.train.digit, ds.train.texture) > 10 * CHI2_999[81]
    for name in ("val", "test"):
        digit = getattr(ds, name).digit
        assert chi2_independence(digit, mixed_dependence(digit, 0.3, seed=5)) > CHI2_999[81]


def naive_composite(background, digit, composite="white"):
    """One image, pixel by pixel: out = round(bg + (s - bg) * d / 255), ink s = 255 (white),
    0 (black), or for contrast 255 where the crop's mean is below 127.5, else 0."""
    ink = {"white": 255, "black": 0,
           "contrast": 255 if background.astype(float).mean() < 127.5 else 0}[composite]
    out = np.empty((3, 32, 32), np.uint8)
    padded = np.zeros((32, 32), int)
    padded[2:30, 2:30] = digit
    for c in range(3):
        for i in range(32):
            for j in range(32):
                bg, d = int(background[i, j, c]), padded[i, j]
                out[c, i, j] = int(np.floor(bg + (ink - bg) * d / 255 + 0.5))
    return out


@pytest.mark.parametrize("crops, composite", [("inside", "white"), ("wrap", "white"),
                                              ("inside", "black"), ("wrap", "contrast")])
def test_render_matches_a_pixel_loop(crops, composite):
    rng = np.random.default_rng(3)
    # textures of every brightness, so that "contrast" picks both inks
    textures = [(rng.integers(0, 256, (33 + 7 * t, 40 + 5 * t, 3)) * (0.2 + 0.2 * (t % 5))
                 ).astype(np.uint8) for t in range(10)]
    n = 200
    digits = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
    digits[:, :5] = 0
    digits[:, 5, :] = 255
    texture = rng.integers(0, 10, n)
    shapes = [t.shape[:2] for t in textures]
    rows, cols = builder.crop_offsets(texture, shapes, rng, crops)
    heights, widths = (np.array(shapes)[texture, i] for i in (0, 1))
    beyond = (rows > heights - 32) | (cols > widths - 32)
    assert (rows < heights).all() and (cols < widths).all()
    assert beyond.any() if crops == "wrap" else not beyond.any()   # only wrapped crops wrap
    out = builder.render(digits, texture, rows, cols, textures, crops, composite)
    inks = set()
    for k in range(n):
        T = textures[texture[k]]
        crop = T[(rows[k] + np.arange(32))[:, None] % T.shape[0],
                 (cols[k] + np.arange(32))[None, :] % T.shape[1]]
        np.testing.assert_array_equal(out[k], naive_composite(crop, digits[k], composite))
        inks.add(crop.mean() < 127.5)
    assert inks == {True, False}        # both kinds of background were drawn


def test_another_composite_is_another_dataset_with_the_same_draws(ds, mnist, tmp_path):
    black = load_shifted_mnist(mnist[1], "procedural", seed=0, cache_dir=tmp_path,
                               composite="black")
    assert black.provenance["cache_key"] != ds.provenance["cache_key"]
    assert black.provenance["rendering"]["composite"] == "out = bg * (255 - digit) / 255, rounded"
    for name in ("train", "val", "test"):
        a, b = getattr(ds, name), getattr(black, name)
        np.testing.assert_array_equal(a.texture, b.texture)
        np.testing.assert_array_equal(a.index, b.index)
    # where the digit has no ink the pixels are the background's, in both
    blank = ds.test.images == black.test.images
    assert blank.mean() > 0.5 and not blank.all()
    with pytest.raises(ValueError, match="composite must be one of"):
        load_shifted_mnist(mnist[1], "procedural", seed=0, cache_dir=tmp_path, composite="grey")


def test_wrapped_crops_are_another_dataset_and_inside_keeps_its_key(ds, mnist, tmp_path):
    wrap = load_shifted_mnist(mnist[1], "procedural", seed=0, cache_dir=tmp_path, crops="wrap")
    assert wrap.provenance["cache_key"] != ds.provenance["cache_key"]
    assert wrap.provenance["rendering"]["crops"] == "wrap"
    np.testing.assert_array_equal(wrap.test.texture, ds.test.texture)   # same draws, other crops
    assert not np.array_equal(wrap.test.images, ds.test.images)
    # The default's key is the one every earlier build had (no crop rule in it).
    source = builder.load_mnist(mnist[1])
    textures = procedural_textures()
    old_key = builder.hashlib.sha256(builder.json.dumps({
        "builder_version": 1, "seed": 0,
        "mnist_md5": {f: source.source["files"][f]["md5"] for f in builder.FILES},
        "textures": {"kind": "procedural", "sha256": builder.texture_digest(textures)}},
        sort_keys=True).encode()).hexdigest()
    assert ds.provenance["cache_key"] == old_key


def test_every_background_is_a_crop_of_its_texture(ds, mnist):
    # Independent of the offsets the builder drew: search all crops of the texture.
    arrays, _ = mnist
    textures = procedural_textures().images
    for k in range(0, len(ds.test), 97):
        image, t = ds.test.images[k], ds.test.texture[k]
        clear = np.zeros((32, 32), bool)
        clear[2:30, 2:30] = arrays["test_images"][ds.test.index[k]] == 0
        clear[:2], clear[30:], clear[:, :2], clear[:, 30:] = True, True, True, True
        tex = textures[t].transpose(2, 0, 1)
        found = [(r, c) for r in range(tex.shape[1] - 31) for c in range(tex.shape[2] - 31)
                 if np.array_equal(tex[:, r:r + 32, c:c + 32][:, clear], image[:, clear])]
        assert found, f"test image {k}: background is not a crop of texture {t}"
        assert (image[:, ~clear] >= tex[:, found[0][0]:found[0][0] + 32,
                                         found[0][1]:found[0][1] + 32][:, ~clear]).all()


def test_normalization_uses_train_only(ds):
    x = ds.train.images.astype(np.float64) / 255
    np.testing.assert_allclose(ds.mean, x.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(ds.std, x.std(axis=(0, 2, 3)), rtol=1e-6)
    everything = np.concatenate([ds.train.images, ds.val.images, ds.test.images])
    assert not np.allclose(ds.mean, (everything / 255).mean(axis=(0, 2, 3)), rtol=1e-5)


def splits(ds):
    return {f"{name}.{field}": getattr(getattr(ds, name), field)
            for name in ("train", "val", "test") for field in ("images", "digit", "texture")}


def test_deterministic_across_fresh_builds(ds, mnist, tmp_path):
    again = load_shifted_mnist(mnist[1], "procedural", seed=0, cache_dir=tmp_path)
    a, b = splits(ds), splits(again)
    for key in a:
        assert a[key].tobytes() == b[key].tobytes(), key
    assert again.provenance["cache_key"] == ds.provenance["cache_key"]
    other = load_shifted_mnist(mnist[1], "procedural", seed=1, cache_dir=tmp_path)
    assert other.provenance["cache_key"] != ds.provenance["cache_key"]
    assert not np.array_equal(other.val.index, ds.val.index)
    assert not np.array_equal(other.test.texture, ds.test.texture)


@pytest.fixture
def cached(mnist, tmp_path):
    """A fresh cache holding one build; returns (load, npz path)."""
    def load():
        return load_shifted_mnist(mnist[1], "procedural", seed=0, cache_dir=tmp_path)
    ds = load()
    return load, ds


def test_cache_hit_is_silent_and_builds_nothing(cached, monkeypatch, capfd):
    load, first = cached
    capfd.readouterr()
    monkeypatch.setattr(builder, "build_arrays", lambda *a: pytest.fail("rebuilt a valid cache"))
    second = load()
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    for key, value in splits(first).items():
        np.testing.assert_array_equal(value, splits(second)[key])


def rewrite_npz(path, change):
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    change(arrays)
    np.savez(path, **arrays)


def flip_a_pixel(arrays):
    arrays["val_images"][3, 1, 4, 4] ^= 1


DAMAGE = {
    "truncated npz": lambda npz: npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2]),
    "garbage npz": lambda npz: npz.write_bytes(b"not a zip file"),
    "changed pixel": lambda npz: rewrite_npz(npz, flip_a_pixel),
    "missing array": lambda npz: rewrite_npz(npz, lambda a: a.pop("test_texture")),
    "missing json": lambda npz: npz.with_suffix(".json").unlink(),
    "bad json": lambda npz: npz.with_suffix(".json").write_text("{"),
    "missing npz": lambda npz: npz.unlink(),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_cache_is_rebuilt(cached, damage, capfd):
    load, first = cached
    npz = builder.Path(first.provenance["cache_file"])
    DAMAGE[damage](npz)
    capfd.readouterr()
    second = load()
    err = capfd.readouterr().err
    assert "damaged" in err and "rebuilding" in err and "built in" in err
    for key, value in splits(first).items():
        np.testing.assert_array_equal(value, splits(second)[key])
    third = load()      # the rebuilt cache is valid again
    assert capfd.readouterr().err == ""
    np.testing.assert_array_equal(third.val.images, first.val.images)


def test_cache_key_follows_the_texture_content(mnist, tmp_path):
    folder = tmp_path / "textures"
    folder.mkdir()
    for t, image in enumerate(procedural_textures().images):
        Image.fromarray(image).save(folder / f"{t}.png")
    cache = tmp_path / "cache"
    ds = load_shifted_mnist(mnist[1], str(folder), seed=0, cache_dir=cache)
    assert ds.provenance["textures"]["kind"] == "directory"
    Image.fromarray(procedural_textures().images[0][::-1].copy()).save(folder / "0.png")
    changed = load_shifted_mnist(mnist[1], str(folder), seed=0, cache_dir=cache)
    assert changed.provenance["cache_key"] != ds.provenance["cache_key"]
    assert not np.array_equal(changed.train.images[changed.train.texture == 0],
                              ds.train.images[ds.train.texture == 0])


def test_arguments_default_to_environment(mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("IFM_MNIST_DIR", str(mnist[1]))
    monkeypatch.setenv("IFM_TEXTURES", "procedural")
    monkeypatch.setenv("IFM_CACHE_DIR", str(tmp_path / "env-cache"))
    ds = load_shifted_mnist()
    assert ds.provenance["textures"]["spec"] == "procedural"
    assert ds.provenance["cache_file"].startswith(str(tmp_path / "env-cache"))
    monkeypatch.setenv("IFM_TEXTURES", str(tmp_path / "not-there"))
    ds = load_shifted_mnist(textures="procedural")      # the argument wins
    assert ds.provenance["textures"]["spec"] == "procedural"


def test_figure(ds, mnist, tmp_path, monkeypatch, capsys):
    path = save_dataset_figure(ds, tmp_path / "fig" / "figure3.png", n=12)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width == 6 + 10 * 102
        pixels = np.asarray(image.convert("RGB"))
    assert (pixels == 0).any() and (pixels == 255).any()    # text and background drawn
    monkeypatch.delenv("IFM_TEXTURES", raising=False)
    out = tmp_path / "cli.png"
    assert figure_main(["--out", str(out), "--mnist-dir", str(mnist[1]), "--textures",
                        "procedural", "--cache-dir", str(tmp_path / "c"), "--n", "4"]) == 0
    assert out.exists()
    assert figure_main(["--out", str(out), "--mnist-dir", str(tmp_path / "none"),
                        "--cache-dir", str(tmp_path / "c")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_an_unwritable_cache_still_returns_the_data(mnist, tmp_path, monkeypatch, capfd):
    def refuse(*args):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(builder, "write_cache", refuse)
    ds = load_shifted_mnist(mnist[1], "procedural", seed=0, cache_dir=tmp_path)
    assert len(ds.train) == 2400
    assert "NOT cached" in capfd.readouterr().err
