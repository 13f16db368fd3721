"""What a run records about the machine and the data, and how two data records differ.

    software_versions(device)   Python, NumPy (and CuPy) versions; on the GPU also
                                the device model and the CUDA runtime and driver
    code_version(root)          the git commit of the code and whether tracked files
                                differ from it (None outside a git checkout)
    data_changes(old, new)      what differs between two dataset provenance records
                                (data.load_shifted_mnist's ``provenance``), in words
    without_machine_paths(x)    a record or log with each absolute path cut to its
                                file name, for copies that leave the machine (results/)
"""
import importlib.metadata
import os
import platform
import re
import subprocess

import numpy as np


def software_versions(device):
    """Versions that decide a run's rounding: Python, NumPy, and the BLAS kernels (CPU)
    or the GPU, CUDA and CuPy (GPU)."""
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    if device == "cpu":
        from nn.cpu.openblas import core_name
        versions["openblas_kernels"] = core_name()
    if device == "gpu":
        import cupy
        versions.update(gpu_record(cupy))
    return versions


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # the checkout


def package_version(module_file=__file__):
    """The installed ifm-numpy package's version where the code running is that package's
    own copy (``module_file``, this file, is among the files its installation RECORD
    lists); else None: not installed, or a checkout beside an installed copy, whose
    version says nothing about it. Only an installation counts: the ifm_numpy.egg-info
    that `pip install .` leaves in the checkout lists the checkout's sources, but records
    no installation (no RECORD)."""
    here = os.path.realpath(module_file)
    name = os.path.basename(here)
    for dist in importlib.metadata.distributions(name="ifm-numpy"):
        if dist.read_text("RECORD") is None:
            continue
        for file in dist.files or ():
            if file.name == name and os.path.realpath(dist.locate_file(file)) == here:
                return dist.version
    return None


def code_version(root=ROOT):
    """{"commit": HEAD's sha, "modified": tracked files differ from it}; where ``root`` is
    no git checkout or git is missing (an installed copy), {"package": the installed
    package's version}, or None when that is unknown too."""
    def git(*args):
        return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    try:
        if git("rev-parse", "--show-toplevel") == os.path.realpath(root):
            return {"commit": git("rev-parse", "HEAD"),
                    "modified": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        pass                                # no git, or no checkout at root
    version = package_version()
    return None if version is None else {"package": version}


def gpu_record(cupy):
    """The CuPy version, the current device's model and the CUDA runtime and driver versions."""
    runtime = cupy.cuda.runtime
    name = runtime.getDeviceProperties(cupy.cuda.Device().id)["name"]
    return {"cupy": cupy.__version__,
            "gpu": name.decode() if isinstance(name, bytes) else str(name),
            "cuda_runtime": cuda_version(runtime.runtimeGetVersion()),
            "cuda_driver": cuda_version(runtime.driverGetVersion())}


def cuda_version(number):
    """CUDA's integer version 1000 * major + 10 * minor as "major.minor" (12040 -> "12.4")."""
    return f"{number // 1000}.{number % 1000 // 10}"


def data_changes(old, new):
    """Sentences naming what differs between two dataset provenance records ([] when none).

    The cache key hashes everything the arrays depend on, so equal keys mean
    equal data; otherwise the builder version, each MNIST file's md5 and each
    texture's sha256 are compared to say which input changed.
    """
    if old.get("cache_key") == new.get("cache_key"):
        return []
    changes = []
    if old.get("builder_version") != new.get("builder_version"):
        changes.append(f"the dataset builder version ({old.get('builder_version')} -> "
                       f"{new.get('builder_version')})")
    old_files = old.get("mnist", {}).get("files", {})
    for field, record in new.get("mnist", {}).get("files", {}).items():
        before = old_files.get(field, {})
        if before.get("md5") != record.get("md5"):
            changes.append(f"MNIST {field} ({before.get('file')} md5 {before.get('md5')} -> "
                           f"{record.get('file')} md5 {record.get('md5')})")
    changes += texture_changes(old.get("textures", {}), new.get("textures", {}))
    return changes or ["the dataset's cache key (the data differ in a way not itemized)"]


def texture_changes(old, new):
    if old.get("kind") != new.get("kind"):
        return [f"the texture source ({old.get('kind')} -> {new.get('kind')})"]
    if old.get("sha256") == new.get("sha256"):
        return []
    before = {t.get("id"): t for t in old.get("textures", [])}
    changes = []
    for texture in new.get("textures", []):
        previous = before.get(texture.get("id"), {})
        if "sha256" in previous and previous["sha256"] != texture.get("sha256"):
            changes.append(f"texture {texture['id']} ({name_of(previous)} -> "
                           f"{name_of(texture)}: other pixels)")
    return changes or ["the ten textures (their combined sha256 differs)"]


def name_of(texture):
    return texture.get("file") or texture.get("pattern") or f"id {texture.get('id')}"


# An absolute path: "/" not preceded by a word character, a dot, a colon or a
# slash (so "img/s", "runs/x" and URLs stay), up to whitespace, a quote or
# closing punctuation.
ABSOLUTE_PATH = re.compile(r"(?<![\w.~:/])(?:~)?/[^\s\"',;:()\[\]]+")


def without_machine_paths(value):
    """``value`` (text, or JSON-like lists and dicts) with absolute paths cut to their last part.

    "/work/shared/mnist" -> "mnist"; "cached as /tmp/c/x.npz" -> "cached as x.npz".
    File names and checksums stay; where on one machine the files lay does not.
    """
    if isinstance(value, str):
        return ABSOLUTE_PATH.sub(lambda m: m.group(0).rstrip("/").rsplit("/", 1)[-1] or "/",
                                 value)
    if isinstance(value, list):
        return [without_machine_paths(v) for v in value]
    if isinstance(value, dict):
        return {k: without_machine_paths(v) for k, v in value.items()}
    return value
