"""Shared test fixtures: the array backend and a seeded random generator.

``xp`` runs a test once on NumPy and once on CuPy; the CuPy run is marked
``gpu`` and skips, saying why, when CuPy is missing or sees no CUDA device.
Any test marked ``gpu`` skips the same way, whatever fixtures it uses.
"""
import sys
from concurrent.futures import Future

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


@pytest.fixture(autouse=True)
def restore_cores():
    """Undo a test's ``nn.parallel.use_cores`` (train.py's main calls it)."""
    from nn import parallel
    before = parallel.cores()
    yield
    if parallel.cores() != before:
        parallel.use_cores(before)


class InlineExecutor:
    """Stands in for nn.parallel's thread pool: runs each task at once, in this thread."""

    def submit(self, fn):
        future = Future()
        try:
            future.set_result(fn())
        except BaseException as err:  # handed to the caller, as a pool would
            future.set_exception(err)
        return future


@pytest.fixture(params=["serial", "split"])
def cores_mode(request, monkeypatch):
    """Run a test as is, then again with every op split into the most blocks.

    The second run makes nn.parallel cut even tiny arrays and products into
    blocks and bands as for 3 cores (uneven sizes), so the numeric checks of a
    module also cover the blocked code paths. The blocks run one after the
    other in this thread (thread handoffs would make the gradient checks 10x
    slower); tests/test_parallel.py runs the ops on real threads.
    """
    from nn import parallel
    if request.param == "split":
        monkeypatch.setattr(parallel, "MIN_PARALLEL_BYTES", 0)
        monkeypatch.setattr(parallel, "MIN_PARALLEL_FLOPS", 0)
        monkeypatch.setattr(parallel, "BLOCK_BYTES", 1)
        monkeypatch.setattr(parallel, "_pool", InlineExecutor())
        monkeypatch.setattr(parallel, "_cores", 3)
