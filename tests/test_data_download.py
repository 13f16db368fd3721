"""Downloads: mirrors in order, checksums, atomic writes, offline errors (local server, file://)."""
import functools
import gzip
import hashlib
import http.server
import socket
import threading

import numpy as np
import pytest

import data.mnist
from data import DataError, load_mnist, load_shifted_mnist
from data.download import download
from fixtures_data import NAMES, idx_bytes, synthetic_mnist


class Server:
    """http.server on 127.0.0.1 serving a folder; counts the requests it answers."""

    def __init__(self, root):
        outer = self
        self.requests = []

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.requests.append(self.path)
                super().do_GET()

        handler = functools.partial(Handler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        # close() waits for serve_forever to see the shutdown flag: poll it every 10 ms
        # (the default, 0.5 s, made each test's teardown wait half a second)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.01,),
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    s = Server(root)
    s.root = root
    yield s
    s.close()


def closed_port_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def md5(data):
    return hashlib.md5(data).hexdigest()


def no_partial_files(folder):
    return not [p for p in folder.rglob("*") if p.name.endswith(".part")]


def test_mirrors_are_tried_in_order_until_the_checksum_matches(server, tmp_path, capsys):
    good = b"the right bytes" * 1000
    (server.root / "bad").mkdir()
    (server.root / "bad" / "f.bin").write_bytes(b"wrong bytes")
    (server.root / "good").mkdir()
    (server.root / "good" / "f.bin").write_bytes(good)
    urls = [server.url + "/missing/f.bin", server.url + "/bad/f.bin", closed_port_url() + "/f.bin",
            server.url + "/good/f.bin", server.url + "/never/f.bin"]
    dest = tmp_path / "cache" / "f.bin"
    assert download(urls, dest, md5(good)) == dest
    assert dest.read_bytes() == good
    assert server.requests == ["/missing/f.bin", "/bad/f.bin", "/good/f.bin"]
    err = capsys.readouterr().err
    assert "HTTP 404" in err and "checksum mismatch" in err and "cannot connect" in err
    assert "checksum ok" in err
    assert no_partial_files(tmp_path)


def test_all_mirrors_failing_leaves_nothing_and_says_why(server, tmp_path):
    (server.root / "f.bin").write_bytes(b"corrupted")
    dest = tmp_path / "cache" / "f.bin"
    urls = [server.url + "/f.bin", closed_port_url() + "/f.bin"]
    with pytest.raises(DataError) as err:
        download(urls, dest, md5(b"original"), hint="Put f.bin in the cache by hand.")
    message = str(err.value)
    assert str(dest) in message and urls[0] in message and urls[1] in message
    assert "checksum mismatch" in message and "Put f.bin in the cache by hand." in message
    assert not dest.exists() and no_partial_files(tmp_path)


def test_file_urls(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"local bytes")
    dest = tmp_path / "out" / "dest.bin"
    download([src.as_uri()], dest, md5(b"local bytes"))
    assert dest.read_bytes() == b"local bytes"
    with pytest.raises(DataError, match="checksum mismatch"):
        download([src.as_uri()], tmp_path / "out" / "other.bin", md5(b"other"))
    assert not (tmp_path / "out" / "other.bin").exists()


@pytest.fixture
def mirror(tmp_path):
    """A folder laid out like an MNIST mirror, and the md5 table of its .gz files."""
    arrays = synthetic_mnist(n_train=60, n_test=20)
    folder = tmp_path / "mirror"
    folder.mkdir()
    table = {}
    for field, name in NAMES.items():
        packed = gzip.compress(idx_bytes(arrays[field]), compresslevel=1, mtime=0)
        (folder / (name + ".gz")).write_bytes(packed)
        table[name + ".gz"] = md5(packed)
    return arrays, folder, table


def test_mnist_downloads_into_the_cache_once(server, tmp_path, mirror):
    arrays, folder, table = mirror
    (server.root / "mnist").symlink_to(folder)
    cache = tmp_path / "cache"
    mirrors = [closed_port_url() + "/mnist/", server.url + "/mnist"]
    mnist = load_mnist(None, cache, mirrors=mirrors, md5=table)
    np.testing.assert_array_equal(mnist.train_images, arrays["train_images"])
    assert mnist.source["downloaded_to_cache"] is True
    assert sorted(p.name for p in (cache / "mnist").iterdir()) == sorted(table)
    served = len(server.requests)
    assert served == 4
    load_mnist(None, cache, mirrors=mirrors, md5=table)
    assert len(server.requests) == served       # cached: nothing fetched again


def test_offline_error_says_where_to_put_the_files(tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as err:
        load_mnist(None, cache, mirrors=[closed_port_url() + "/", closed_port_url() + "/"])
    message = str(err.value)
    assert "offline" in message and str(cache / "mnist") in message
    assert "IFM_MNIST_DIR" in message and "train-images-idx3-ubyte.gz" in message


def test_a_read_only_cache_is_a_data_error_before_any_download(server, tmp_path, read_only):
    cache = tmp_path / "cache"
    read_only(cache)
    with pytest.raises(DataError) as err:
        load_mnist(None, cache, mirrors=[server.url + "/"])
    message = str(err.value)
    assert str(cache / "mnist") in message and "Read-only file system" in message
    assert "--cache-dir" in message and "IFM_MNIST_DIR" in message
    assert server.requests == []


def test_a_read_only_cache_that_exists_is_refused_too(server, tmp_path, read_only):
    (tmp_path / "cache" / "mnist").mkdir(parents=True)
    read_only(tmp_path / "cache")
    with pytest.raises(DataError, match="cannot write there"):
        download([server.url + "/x"], tmp_path / "cache" / "mnist" / "x", "0" * 32)
    assert server.requests == []


def test_default_mirrors_are_public_and_pinned():
    assert len(data.mnist.MNIST_MIRRORS) >= 2
    assert all(m.startswith("https://") for m in data.mnist.MNIST_MIRRORS)
    md5s = data.mnist.MNIST_GZ_MD5
    assert md5s["train-images-idx3-ubyte.gz"] == "f68b3c2dcbeaaa9fbdd348bbdeb94873"


def test_load_shifted_mnist_downloads_when_no_directory_is_given(tmp_path, mirror, monkeypatch):
    arrays, folder, table = mirror
    monkeypatch.delenv("IFM_MNIST_DIR", raising=False)
    monkeypatch.setattr(data.mnist, "MNIST_MIRRORS", [folder.as_uri() + "/"])
    monkeypatch.setattr(data.mnist, "MNIST_GZ_MD5", table)
    ds = load_shifted_mnist(textures="procedural", cache_dir=tmp_path / "cache")
    assert len(ds.train) + len(ds.val) == 60 and len(ds.test) == 20
    assert ds.provenance["mnist"]["downloaded_to_cache"] is True
