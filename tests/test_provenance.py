"""What a run records: the GPU and CUDA versions, and what changed in the data."""
import copy
from types import SimpleNamespace

from experiment.provenance import (cuda_version, data_changes, gpu_record, software_versions,
                                   without_machine_paths)


def fake_cupy(name=b"NVIDIA H200", runtime=12040, driver=12080):
    runtime_api = SimpleNamespace(getDeviceProperties=lambda i: {"name": name},
                                  runtimeGetVersion=lambda: runtime,
                                  driverGetVersion=lambda: driver)
    cuda = SimpleNamespace(runtime=runtime_api, Device=lambda: SimpleNamespace(id=0))
    return SimpleNamespace(__version__="13.6.0", cuda=cuda)


def test_gpu_record_names_the_device_cuda_and_cupy():
    assert gpu_record(fake_cupy()) == {"cupy": "13.6.0", "gpu": "NVIDIA H200",
                                       "cuda_runtime": "12.4", "cuda_driver": "12.8"}
    assert gpu_record(fake_cupy(name="NVIDIA H100"))["gpu"] == "NVIDIA H100"
    assert cuda_version(13000) == "13.0" and cuda_version(11080) == "11.8"


def test_cpu_runs_record_no_gpu():
    versions = software_versions("cpu")
    assert set(versions) == {"python", "numpy", "openblas_kernels"}


def record():
    return {"cache_key": "k1", "builder_version": 1,
            "mnist": {"files": {"train_images": {"file": "train.gz", "md5": "a"},
                                "test_labels": {"file": "labels.gz", "md5": "b"}}},
            "textures": {"kind": "directory", "sha256": "t1",
                         "textures": [{"id": 0, "file": "0.png", "sha256": "x0"},
                                      {"id": 1, "file": "1.png", "sha256": "x1"}]}}


def test_equal_cache_keys_are_no_change():
    assert data_changes(record(), record()) == []


def test_each_changed_input_is_named():
    new = copy.deepcopy(record())
    new["cache_key"] = "k2"
    new["mnist"]["files"]["test_labels"]["md5"] = "c"
    new["textures"]["sha256"] = "t2"
    new["textures"]["textures"][1].update(file="other.png", sha256="y1")
    assert data_changes(record(), new) == [
        "MNIST test_labels (labels.gz md5 b -> labels.gz md5 c)",
        "texture 1 (1.png -> other.png: other pixels)"]


def test_a_change_without_per_texture_checksums_is_still_reported():
    old, new = record(), copy.deepcopy(record())
    for texture in old["textures"]["textures"]:
        del texture["sha256"]                       # runs recorded before per-texture sums
    new.update(cache_key="k2")
    new["textures"]["sha256"] = "t2"
    assert data_changes(old, new) == ["the ten textures (their combined sha256 differs)"]
    new["textures"]["sha256"] = "t1"
    new["builder_version"] = 2
    assert data_changes(old, new) == ["the dataset builder version (1 -> 2)"]
    new["builder_version"] = 1
    assert data_changes(old, new) == [
        "the dataset's cache key (the data differ in a way not itemized)"]


def test_machine_paths_are_cut_to_file_names():
    config = {"cache_file": "/tmp/ifmcache/shifted_mnist/shifted-mnist-9bd7.npz",
              "mnist": {"dir": "/work/shared/mnist/", "files": [{"md5": "6bbc", "count": 3}]},
              "command": "python train.py --out /work/runs/ifm-seed0 --ifm --lam 1",
              "home": "~/.cache/ifm", "relative": "runs/ifm-seed0", "none": None}
    assert without_machine_paths(config) == {
        "cache_file": "shifted-mnist-9bd7.npz",
        "mnist": {"dir": "mnist", "files": [{"md5": "6bbc", "count": 3}]},
        "command": "python train.py --out ifm-seed0 --ifm --lam 1",
        "home": "ifm", "relative": "runs/ifm-seed0", "none": None}
    assert without_machine_paths("https://host/a/f.gz from /data/f.gz") == \
        "https://host/a/f.gz from f.gz"                 # URLs are not machine paths
    log = ("shiftedMNIST: building (seed 0, textures /work/shared/textures) ...\n"
           "run folder /work/runs/x: ifm, 212 img/s, loss 0.5/step\n")
    assert without_machine_paths(log) == ("shiftedMNIST: building (seed 0, textures textures) "
                                          "...\nrun folder x: ifm, 212 img/s, loss 0.5/step\n")


def test_code_version_names_the_commit_and_local_changes(tmp_path):
    import subprocess
    from experiment.provenance import code_version

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t",
                        *args], check=True, capture_output=True)

    assert code_version(str(tmp_path)) is None              # not a checkout
    git("init", "-q")
    (tmp_path / "f.py").write_text("x = 1\n")
    git("add", "f.py")
    git("commit", "-q", "-m", "one")
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert code_version(str(tmp_path)) == {"commit": head, "modified": False}
    (tmp_path / "new.txt").write_text("untracked files do not count\n")
    assert code_version(str(tmp_path))["modified"] is False
    (tmp_path / "f.py").write_text("x = 2\n")
    assert code_version(str(tmp_path)) == {"commit": head, "modified": True}
    (tmp_path / "sub").mkdir()
    assert code_version(str(tmp_path / "sub")) is None      # inside another repository


def test_an_installed_copy_records_its_package_version(tmp_path, monkeypatch):
    from experiment import provenance
    monkeypatch.setattr(provenance, "package_version", lambda: "0.1.0")
    assert provenance.code_version(str(tmp_path)) == {"package": "0.1.0"}


def fake_installation(site, files, version="9.9.9"):
    """An ifm-numpy distribution as pip installs one into ``site``, listing ``files``."""
    info = site / f"ifm_numpy-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: ifm-numpy\nVersion: {version}\n")
    (info / "RECORD").write_text("".join(f"{f},,\n" for f in files))


def test_a_checkout_beside_an_installed_copy_records_no_package_version(tmp_path, monkeypatch):
    # `pip install .` in the checkout's own venv: the installed copy is found, but the code
    # running is the checkout's, so its version must not be recorded for it
    import importlib.metadata
    from experiment import provenance
    fake_installation(tmp_path / "site", ["experiment/__init__.py", "experiment/provenance.py"])
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert importlib.metadata.version("ifm-numpy") == "9.9.9"
    assert provenance.package_version() is None
    assert provenance.code_version(str(tmp_path / "no-checkout")) is None


def test_the_installed_copy_itself_records_its_version(tmp_path, monkeypatch):
    import os
    from experiment import provenance
    site = tmp_path / "site"
    fake_installation(site, [os.path.relpath(provenance.__file__, site)])   # this very file
    monkeypatch.syspath_prepend(str(site))
    assert provenance.package_version() == "9.9.9"
    assert provenance.code_version(str(tmp_path / "no-checkout")) == {"package": "9.9.9"}


def test_the_egg_info_pip_leaves_in_the_checkout_records_no_package_version(tmp_path,
                                                                            monkeypatch):
    # `pip install .` builds in the checkout and leaves ifm_numpy.egg-info there, listing the
    # checkout's own sources; with the checkout on sys.path it is found first, but it is no
    # installation of the code running
    import os
    from experiment import provenance
    info = tmp_path / "checkout" / "ifm_numpy.egg-info"
    info.mkdir(parents=True)
    (info / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: ifm-numpy\nVersion: 9.9.9\n")
    (info / "SOURCES.txt").write_text(os.path.relpath(provenance.__file__, info.parent) + "\n")
    monkeypatch.syspath_prepend(str(info.parent))
    assert provenance.package_version() is None
    assert provenance.code_version(str(tmp_path / "no-checkout")) is None
