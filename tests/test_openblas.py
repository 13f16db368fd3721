"""The OpenBLAS kernel report used by bench.py."""
import os
import platform
import re
import subprocess
import sys

import pytest

from nn.cpu.openblas import core_name

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_core_name_is_a_kernel_name_or_unknown():
    name = core_name()
    if name is not None:        # None: NumPy not on OpenBLAS, or not Linux
        assert re.fullmatch(r"[A-Za-z0-9_]+", name), name


def test_core_name_reports_a_pinned_kernel_set():
    if core_name() is None or platform.machine() != "x86_64":
        pytest.skip("needs NumPy on an OpenBLAS this process can ask, on x86-64")
    env = dict(os.environ, OPENBLAS_CORETYPE="Haswell")
    out = subprocess.run([sys.executable, "-c", "from nn.cpu.openblas import core_name; "
                          "print(core_name())"], cwd=ROOT, env=env, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out.lower() == "haswell"
