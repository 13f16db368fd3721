"""`pip install .`: the wheel holds the six library packages and the train entry point."""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_holds_the_library_and_nothing_else(tmp_path):
    pytest.importorskip("setuptools")
    # Built from a copy of the checkout: setuptools writes build/ beside the sources.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", "build", "results", "runs", "__pycache__", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(source)], check=True, capture_output=True,
                   cwd=tmp_path)
    (wheel,) = tmp_path.glob("ifm_numpy-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"nn", "training", "ifm", "ice", "data", "experiment"}
    assert {"experiment/run.py", "nn/conv.py", "nn/cpu/parallel.py", "ice/method.py",
            "training/method.py"} <= set(names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "ifm-train = experiment.run:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
