"""Fetch one file from a list of mirrors, verified and written atomically.

Rule: the mirrors are tried in order. Each download streams into a temporary
file in the destination directory while its checksum is computed; only a file
whose checksum matches is renamed onto the destination (``os.replace``, atomic
on one file system), so an interrupted or corrupt download never leaves a file
that looks complete. A failing mirror (unreachable, HTTP error, wrong checksum)
is reported on stderr and the next one is tried; when all fail, DataError lists
every mirror's failure and the caller's hint on how to proceed offline.

URLs may be http(s):// or file:// (the tests use both).
"""
import hashlib
import http.client
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from .errors import DataError

CHUNK = 1 << 20


class ChecksumMismatch(Exception):
    pass


def file_digest(path, algorithm="md5"):
    """Hex digest of a file's bytes, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download(urls, dest, checksum, algorithm="md5", hint="", timeout=60.0, stream=None):
    """Download ``dest.name`` from the first of ``urls`` that serves bytes with ``checksum``.

    Parameters: urls, full URLs tried in order; dest, the final path (its folder
    is created); checksum, the expected hex digest under ``algorithm``; hint, a
    sentence appended to the error when every mirror fails. Returns ``dest``.
    """
    stream = sys.stderr if stream is None else stream
    dest = Path(dest)
    ensure_writable(dest.parent, hint)
    failures = []
    for url in urls:
        try:
            _fetch(url, dest, checksum.lower(), algorithm, timeout, stream)
            return dest
        except (OSError, ValueError, http.client.HTTPException, ChecksumMismatch) as err:
            reason = _describe(err)
            failures.append(f"  {url}: {reason}")
            print(f"{dest.name}: {url} failed: {reason}", file=stream)
    tried = "\n".join(failures) if failures else "  (no mirrors given)"
    raise DataError(f"{dest}: could not download it from any mirror:\n{tried}\n{hint}".rstrip())


def ensure_writable(directory, hint=""):
    """Create ``directory`` if needed and check that a file can be written in it.

    A DataError names the folder, the reason and the cache settings (and the
    caller's ``hint``), so that no download starts that could not be kept.
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise DataError(f"{directory}: cannot write there ({err.strerror or err}), so nothing "
                        "can be downloaded into it. Point --cache-dir / IFM_CACHE_DIR at a "
                        f"writable folder. {hint}".rstrip()) from None


def _describe(err):
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return f"cannot connect ({err.reason})"
    return str(err) or type(err).__name__


def _fetch(url, dest, checksum, algorithm, timeout, stream):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        progress = _Progress(dest.name, url, total, stream)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        try:
            digest = hashlib.new(algorithm)
            done = 0
            with os.fdopen(fd, "wb") as out:
                while True:
                    block = response.read(CHUNK)
                    if not block:
                        break
                    out.write(block)
                    digest.update(block)
                    done += len(block)
                    progress.update(done)
                out.flush()
                os.fsync(out.fileno())
            if total is not None and done != total:
                raise ChecksumMismatch(f"truncated: got {done} of {total} bytes")
            got = digest.hexdigest()
            if got != checksum:
                raise ChecksumMismatch(f"checksum mismatch: {algorithm} {got}, expected {checksum}")
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
            progress.finish(done)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


class _Progress:
    """'name: 42% (4.0/9.5 MB)' on stderr: rewritten in place on a terminal, else a few lines."""

    def __init__(self, name, url, total, stream):
        self.name, self.total, self.stream = name, total, stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.start = self.last = time.perf_counter()
        print(f"downloading {name} from {url}", file=stream, flush=True)

    def _line(self, done):
        mb = done / 1e6
        if self.total:
            percent = 100 * done // self.total
            return f"{self.name}: {percent:3d}% ({mb:.1f}/{self.total / 1e6:.1f} MB)"
        return f"{self.name}: {mb:.1f} MB"

    def update(self, done):
        now = time.perf_counter()
        if now - self.last < (0.5 if self.tty else 30.0):
            return
        self.last = now
        end = "\r" if self.tty else "\n"
        print(self._line(done), end=end, file=self.stream, flush=True)

    def finish(self, done):
        seconds = time.perf_counter() - self.start
        print(f"{self._line(done)} done in {seconds:.1f} s, checksum ok", file=self.stream,
              flush=True)
