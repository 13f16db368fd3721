"""Shared test fixtures: the array backend and a seeded random generator.

``xp`` runs a test once on NumPy and once on CuPy; the CuPy run is marked
``gpu`` and skips, saying why, when CuPy is missing or sees no CUDA device.
Any test marked ``gpu`` skips the same way, whatever fixtures it uses.
"""
import os
import sys

import numpy as np
import pytest

if os.environ.get("IFM_CUPY_STANDIN") == "1":
    # The gpu tests on the CPU: the strict, counting CuPy stand-in (tests/cupy_standin.py)
    # goes into sys.modules as cupy/cupyx before nn.backend looks for CuPy.
    import cupy_standin
    cupy_standin.install()

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


@pytest.fixture(params=[pytest.param("formula", marks=pytest.mark.no_split), "fast"])
def ops(request):
    """The op modules under test: the formulas (nn/conv.py, ...; they never reach
    nn.cpu.parallel, so their split rerun is dropped) or their speed path (nn/fast/)."""
    from types import SimpleNamespace
    if request.param == "formula":
        from nn import activations, batchnorm, conv, linear, pooling
    else:
        from nn.fast import activations, batchnorm, conv, linear, pooling
    return SimpleNamespace(name=request.param, activations=activations, batchnorm=batchnorm,
                           conv=conv, linear=linear, pooling=pooling)


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
    """Undo a test's ``nn.cpu.parallel.use_cores`` (train.py's main calls it)."""
    from nn.cpu import parallel
    before = parallel.cores()
    yield
    if parallel.cores() != before:
        parallel.use_cores(before)


class Done:
    """A task's outcome, as the Future of a pool that has run it: ``result()`` returns its
    value or raises its exception (all nn.cpu.parallel asks of a Future; a real Future
    takes a lock and a Condition for each of the many tiny tasks of a split run)."""
    __slots__ = ("value", "error")

    def __init__(self, value=None, error=None):
        self.value, self.error = value, error

    def result(self):
        if self.error is not None:
            raise self.error
        return self.value


class InlineExecutor:
    """Stands in for nn.cpu.parallel's thread pool: runs each task at once, in this thread."""

    def __init__(self):
        self.tasks = 0          # how many tasks a split path handed over

    def submit(self, fn, *args):
        self.tasks += 1
        try:
            return Done(value=fn(*args))
        except BaseException as err:  # handed to the caller, as a pool would
            return Done(error=err)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "no_split: the code under test never reaches nn.cpu.parallel's split paths "
                   "(run_in_blocks, matmul), so cores_mode runs it serially only")
    config.addinivalue_line(
        "markers", "split_covered_by(where): cores_mode runs the test serially only: the "
                   "split runs of the tests named by `where` reach every call site and branch "
                   "of nn.cpu.parallel that its split run would, so that run repeats theirs")


def pytest_collection_modifyitems(config, items):
    """Drop the split reruns that cannot fail: tests marked ``no_split``, and CuPy
    instances (CuPy arrays always take nn.cpu.parallel's one-call path); and those that
    repeat other tests' split runs: tests marked ``split_covered_by``."""
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        split = params.get("cores_mode") == "split"
        serial_only = (item.get_closest_marker("no_split") is not None
                       or item.get_closest_marker("split_covered_by") is not None
                       or params.get("xp") == "cupy")
        (drop if split and serial_only else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(params=["serial", "split"])
def cores_mode(request, monkeypatch):
    """Run a test as is, then again with every op split into the most blocks.

    The second run makes nn.cpu.parallel cut even tiny arrays and products into
    blocks and bands as for 3 cores (uneven sizes), so the numeric checks of a
    module also cover the blocked code paths. The blocks run one after the
    other in this thread (thread handoffs would make the gradient checks 10x
    slower); tests/test_parallel.py runs the ops on real threads.

    A split run must reach a split path (it fails otherwise): a test whose
    code never does is marked ``no_split`` and runs serially only. A test whose
    split run would only repeat the split paths of others is marked
    ``split_covered_by`` (naming them) and runs serially only too.
    """
    from nn.cpu import parallel
    if request.param == "serial":
        yield
        return
    pool = InlineExecutor()
    monkeypatch.setattr(parallel, "MIN_PARALLEL_BYTES", 0)
    monkeypatch.setattr(parallel, "MIN_PARALLEL_FLOPS", 0)
    monkeypatch.setattr(parallel, "BLOCK_BYTES", 1)
    monkeypatch.setattr(parallel, "_pool", pool)
    monkeypatch.setattr(parallel, "_cores", 3)
    yield
    if getattr(request.node, "rep_call_passed", False) and pool.tasks == 0:
        pytest.fail("the split run never reached a split path of nn.cpu.parallel: it cannot "
                    "fail where the serial run passes; mark the test no_split", pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Tell fixtures whether the test body passed (``item.rep_call_passed``)."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call_passed = report.passed


@pytest.fixture
def read_only(monkeypatch):
    """``read_only(path)``: from then on, writes under ``path`` fail with EROFS.

    Stands in for a read-only file system (root, as in CI, ignores permission
    bits): opening a file for writing, creating one and making a directory
    under ``path`` raise OSError(EROFS), as the kernel would.
    """
    import builtins
    import errno
    import os

    roots = []
    real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir

    def under(path):
        path = os.path.abspath(os.fsdecode(path))
        return any(path == root or path.startswith(root + os.sep) for root in roots)

    def refuse(path):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))

    def fake_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)) and set(mode) & set("wax+") and under(file):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    def fake_os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and under(path):
            refuse(path)
        return real_os_open(path, flags, *args, **kwargs)

    def fake_mkdir(path, *args, **kwargs):
        if under(path):
            refuse(path)
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(os, "open", fake_os_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)
    return lambda path: roots.append(os.path.abspath(os.fspath(path)))
