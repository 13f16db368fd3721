"""The MNIST IDX reader: valid files (gzipped and raw) and every kind of broken file."""
import gzip
import hashlib

import numpy as np
import pytest

from data import DataError, load_mnist, read_idx
from fixtures_data import NAMES, idx_bytes, synthetic_mnist, write_idx, write_mnist_dir


@pytest.fixture(scope="module")
def arrays():
    return synthetic_mnist(n_train=50, n_test=20)


@pytest.mark.parametrize("gz", [True, False])
def test_reads_what_was_written(tmp_path, arrays, gz):
    write_mnist_dir(tmp_path, arrays, gz=gz)
    mnist = load_mnist(tmp_path)
    for field in NAMES:
        got = getattr(mnist, field)
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, arrays[field])
        record = mnist.source["files"][field]
        assert record["count"] == len(arrays[field])
        assert record["md5"] == hashlib.md5(idx_bytes(arrays[field])).hexdigest()
        assert record["md5_is_published"] is False
    assert mnist.source["downloaded_to_cache"] is False


def test_gzip_is_detected_by_content_not_name(tmp_path, arrays):
    # A raw file named .gz and a gzip file without the suffix both read.
    raw = write_idx(tmp_path / "labels.gz", arrays["train_labels"], gz=False)
    packed = write_idx(tmp_path / "labels", arrays["train_labels"], gz=True)
    for path in (raw, packed):
        labels, _ = read_idx(path, "labels")
        np.testing.assert_array_equal(labels, arrays["train_labels"])


def test_dotted_raw_names_are_accepted(tmp_path, arrays):
    for field, name in NAMES.items():
        write_idx(tmp_path / name.replace("-idx", ".idx"), arrays[field], gz=False)
    np.testing.assert_array_equal(load_mnist(tmp_path).test_labels, arrays["test_labels"])


def broken_files(arrays):
    """(kind, raw bytes of the file, words the error must contain) for each kind of damage."""
    images = idx_bytes(arrays["train_images"])
    labels = idx_bytes(arrays["train_labels"])
    bad_labels = arrays["train_labels"].copy()
    bad_labels[7] = 12
    pixels = arrays["train_images"].size
    return [
        ("images", labels, "magic number 2049"),                 # the label file in its place
        ("labels", images, "magic number 2051"),
        ("images", b"\x00\x00\x09\x03" + images[4:], "magic number"),
        ("images", idx_bytes(np.zeros((3, 27, 28), np.uint8)), "27x28"),
        ("images", images[:-100], f"truncated: expected {pixels} bytes of pixels, "
                                  f"found {pixels - 100}"),
        ("images", images[:10], "shorter than the 16-byte IDX header"),
        ("labels", labels + b"\x00\x00", "2 unexpected bytes"),
        ("labels", idx_bytes(bad_labels), "label 12 at index 7"),
        ("labels", b"", "shorter than the 8-byte IDX header"),
    ]


@pytest.mark.parametrize("case", range(9))
@pytest.mark.parametrize("gz", [True, False])
def test_broken_file_names_file_and_fix(tmp_path, arrays, case, gz):
    kind, raw, words = broken_files(arrays)[case]
    path = write_idx(tmp_path / f"broken-{kind}", raw=raw, gz=gz)
    with pytest.raises(DataError) as err:
        read_idx(path, kind)
    message = str(err.value)
    assert str(path) in message and words in message
    assert "IFM_MNIST_DIR" in message


@pytest.mark.parametrize("damage", ["truncated", "garbled"])
def test_damaged_gzip(tmp_path, arrays, damage):
    packed = gzip.compress(idx_bytes(arrays["train_images"]), mtime=0)
    if damage == "truncated":
        packed = packed[: len(packed) // 2]
    else:
        packed = packed[:20] + bytes(255 - b for b in packed[20:60]) + packed[60:]
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(packed)
    with pytest.raises(DataError, match="damaged gzip data") as err:
        read_idx(path, "images")
    assert str(path) in str(err.value)


def test_image_and_label_counts_must_agree(tmp_path, arrays):
    write_mnist_dir(tmp_path, arrays)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", arrays["train_labels"][:-1])
    with pytest.raises(DataError, match="50 images but .* holds 49 labels"):
        load_mnist(tmp_path)


def test_missing_files_are_listed(tmp_path, arrays):
    write_mnist_dir(tmp_path, arrays)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as err:
        load_mnist(tmp_path)
    message = str(err.value)
    assert str(tmp_path) in message and "t10k-labels-idx1-ubyte" in message
    assert "train-images" not in message


def test_missing_directory(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_mnist(tmp_path / "nowhere")


def test_a_file_given_as_the_directory(tmp_path):
    (tmp_path / "mnist.gz").write_bytes(b"not a folder")
    with pytest.raises(DataError, match="is a file, not a directory"):
        load_mnist(tmp_path / "mnist.gz")
