"""Shared test fixtures: the array backend and a seeded random generator.

``xp`` runs a test once on NumPy and once on CuPy; the CuPy run is marked
``gpu`` and skips, saying why, when CuPy is missing or sees no CUDA device.
Any test marked ``gpu`` skips the same way, whatever fixtures it uses.
"""
import sys

import numpy as np
import pytest

from nn import backend


def require_cupy():
    """The cupy module, or a clean skip when CuPy or a GPU is absent."""
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed")
    if not backend.gpu_available():
        pytest.skip("CuPy is installed but sees no CUDA device")
    return cupy


def pytest_runtest_setup(item):
    if item.get_closest_marker("gpu") is not None and not backend.gpu_available():
        pytest.skip(backend.gpu_unavailable_reason() or "no GPU")


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def xp(request):
    """The array module under test: numpy, or cupy on a GPU machine."""
    return np if request.param == "numpy" else require_cupy()


@pytest.fixture
def cupy():
    """The cupy module (for NumPy/CuPy parity tests); skips without a GPU."""
    return require_cupy()


@pytest.fixture
def rng():
    return np.random.default_rng(2019)


def pytest_terminal_summary(terminalreporter):
    """Print the largest gradient-check error per op, when gradient checks ran."""
    gradcheck = sys.modules.get("gradcheck")
    errors = getattr(gradcheck, "MAX_ERRORS", None)
    if not errors:
        return
    terminalreporter.section("gradient checks: max relative error per op")
    terminalreporter.write_line(f"(float64, central differences, eps={gradcheck.EPS:g}, "
                                f"assert tolerance {gradcheck.TOL:g})")
    width = max(len(name) for name in errors)
    for name in sorted(errors):
        terminalreporter.write_line(f"{name:<{width}}  {errors[name]:.2e}")
