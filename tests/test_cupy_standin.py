"""The CuPy stand-in (tests/cupy_standin.py): what it refuses, what it counts, and
the device traffic of one training step on it.

These run on any machine (the stand-in is installed for each test and removed
after, also where a real CuPy exists). ``IFM_CUPY_STANDIN=1 python3 -m pytest
-q -m gpu`` runs the gpu tests against the same stand-in.
"""

import numpy as np
import pytest

import cupy_standin
from nn import backend
from test_train_gpu_parity import config, tiny_dataset

# One train_step on the stand-in (K = 64, SGD, batch 128; step 1 of a two-step epoch, whose
# IFM pair positions came to the device at step 0), measured with this stand-in (which
# counts the copies CuPy makes of non-contiguous product operands): IFM 1283 calls, of which
# 564 launch device work (12 of them copies of the pair layer's column halves of W);
# baseline 717 calls, 342 launches; 0 host reads, 0 uploads, 0 generators and 0 float64
# arrays (calls include the allocations made before an op writes into them). The code
# before the GPU audit gave IFM 1200 calls and 571 launches (its batched critic products
# copied their transposed operands, about 90 MB per step). Step 0 adds the positions of the
# steps ahead: 3 uploads (one per pair). The bounds are the target of 600 launches per IFM
# step and about the measurement + 10% elsewhere; they catch growth.
MAX_CALLS = {"ifm": 1400, "baseline": 768}
MAX_LAUNCHES = {"ifm": 600, "baseline": 376}


@pytest.fixture
def cp():
    with cupy_standin.installed() as module:
        yield module


def test_refuses_implicit_conversion_to_numpy(cp):
    x = cp.asarray(np.arange(6.0).reshape(2, 3))
    for convert in (np.asarray, np.array, lambda a: np.asarray(a, dtype=np.float32)):
        with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
            convert(x)
    for numpy_call in (np.exp, np.sum, lambda a: np.add(a, 1.0), lambda a: np.maximum(a, 0),
                       lambda a: np.concatenate([a, a]),
                       lambda a: np.testing.assert_array_equal(a, a)):
        with pytest.raises(TypeError):
            numpy_call(x)


def test_refuses_host_arrays_mixed_into_device_ops(cp):
    x = cp.asarray(np.arange(6.0).reshape(2, 3))
    host, host0 = np.ones((2, 3)), np.array(2.0)
    mixed = [lambda: x + host, lambda: host + x, lambda: x * host, lambda: host < x,
             lambda: cp.subtract(x, host), lambda: cp.maximum(host, x), lambda: cp.exp(host),
             lambda: cp.subtract(x, host0),    # 0-d host arrays too: CuPy takes only scalars
             lambda: cp.concatenate([x, host]), lambda: cp.stack([host, x]),
             lambda: cp.where(x > 0, host, x), lambda: cp.empty_like(host),
             lambda: cp.broadcast_to(host, (2, 3)), lambda: cp.einsum("ij->j", host),
             lambda: cp.multiply(x, 2.0, out=host), lambda: cp.subtract(x, [1.0, 2.0, 3.0])]
    for op in mixed:
        with pytest.raises(TypeError, match="Unsupported type|cupy.ndarray"):
            op()
    with pytest.raises(TypeError):
        x += host
    with pytest.raises(ValueError, match="non-scalar numpy.ndarray"):
        x[...] = host
    with pytest.raises(ValueError, match="repeats a location"):
        x[:, cp.asarray(np.array([0, 0]))] = cp.ones((2, 2))
    # Python and NumPy scalars are fine, as in CuPy; results stay on the device
    y = np.float32(2) * x + 1 - np.float64(0.5)
    x[0, 0] = np.float64(3.0)
    x[1] = 7.0
    x[...] = np.array(1.0)                     # a 0-d host array fills, as CuPy's fill
    for result in (y, cp.maximum(x, 0), x.sum(), x[0, 1], cp.exp(1.0)):
        assert isinstance(result, cp.ndarray)
    assert x.sum().shape == () and type(cp.asnumpy(x)) is np.ndarray


def test_counts_calls_host_reads_and_uploads(cp):
    host = np.arange(6.0).reshape(2, 3)
    with cupy_standin.counting() as c:
        x = cp.asarray(host)                    # 1 call, 1 upload
        y = x * 2                               # 1
        s = y.sum()                             # 1
        float(s), int(s), bool(s > 0), s.item()     # 5 calls (s > 0 too), 4 reads
        y.get(), cp.asnumpy(y), y.tolist()      # 3 calls, 3 reads (asnumpy's get is not recounted)
        cp.asnumpy(host)                        # 1 call, nothing read from the device
    assert (c.calls, c.host_reads, c.uploads) == (12, 7, 1), c.report()
    assert c.launches == 4, c.launches_by_name     # the upload, x * 2, the sum, s > 0
    assert c.reads_by_name == {"cupy.ndarray.__float__": 1, "cupy.ndarray.__int__": 1,
                               "cupy.ndarray.__bool__": 1, "cupy.ndarray.item": 1,
                               "cupy.ndarray.get": 1, "cupy.asnumpy": 1,
                               "cupy.ndarray.tolist": 1}
    with cupy_standin.counting() as mask:
        x[x > 2.0]                              # CuPy reads the mask's count back
    assert mask.host_reads == 1


def test_counts_as_launches_what_runs_on_the_device(cp):
    """A kernel or a copy is a launch; views, allocation without a fill and queries are not."""
    x = cp.asarray(np.arange(24.0).reshape(4, 6))
    rows = cp.asarray(np.array([0, 2]))
    free = [lambda: x.reshape(6, 4), lambda: x[1:3, ::2], lambda: x.T, lambda: x[0, 1],
            lambda: x.astype(x.dtype, copy=False), lambda: cp.asarray(x),
            lambda: cp.ascontiguousarray(x), lambda: cp.empty((3, 3)), lambda: cp.empty_like(x),
            lambda: cp.broadcast_to(x[0], (4, 6)), lambda: cp.get_array_module(x),
            lambda: list(x), lambda: x[None].swapaxes(-1, -2)]
    one = [lambda: x.T.reshape(24), lambda: x[rows], lambda: x + 1,
           lambda: x.astype(np.float32), lambda: cp.ascontiguousarray(x.T),
           lambda: cp.zeros(3), lambda: x.sum(axis=0), lambda: cp.exp(x),
           lambda: x.__setitem__((0, 0), 1.0), lambda: x @ x.T,
           lambda: cp.matmul(x, x.T, out=cp.empty((4, 4))), lambda: cp.dot(x, x.T),
           lambda: cp.dot(x, x.T, out=cp.empty((4, 4))),
           lambda: cp.matmul(x[None], x[None].reshape(1, 6, 4))]
    copied = [lambda: cp.matmul(x[None], x.T[None]),       # batched: the transpose is copied
              lambda: cp.dot(x[:, ::2], x[:3]),            # neither C nor F: copied
              lambda: cp.matmul(x, x.T, out=cp.empty((4, 4)).T)]  # out not C: a copy into it
    for i, op in enumerate(free):
        with cupy_standin.counting() as c:
            op()
        assert c.launches == 0, (i, c.launches_by_name)
    for i, op in enumerate(one):
        with cupy_standin.counting() as c:
            op()
        assert c.launches == 1, (i, c.launches_by_name)
    for i, op in enumerate(copied):
        with cupy_standin.counting() as c:
            op()
        assert c.launches == 2, (i, c.launches_by_name)


def test_reports_one_fake_device(cp):
    import cupyx
    from experiment.provenance import gpu_record
    runtime = cp.cuda.runtime
    assert runtime.getDeviceCount() == 1
    assert runtime.getDeviceProperties(0)["name"] == b"CuPy stand-in"
    assert isinstance(runtime.runtimeGetVersion(), int)
    assert isinstance(runtime.driverGetVersion(), int)
    device = cp.cuda.Device()
    device.synchronize()
    assert device.id == 0 and isinstance(cp.__version__, str)
    x = cp.zeros(3, dtype=np.float32)
    assert cp.get_array_module(x) is cp and cp.get_array_module(np.zeros(3)) is np
    assert backend.gpu_available() and backend.xp_for("gpu") is cp
    assert gpu_record(cp)["gpu"] == "CuPy stand-in"
    with pytest.warns(DeprecationWarning, match="cupy.add.at"):    # as CuPy >= 12 warns
        cupyx.scatter_add(x, cp.asarray(np.array([0, 2, 0])), cp.ones(3, dtype=np.float32))
    np.testing.assert_array_equal(cp.asnumpy(x), [2.0, 0.0, 1.0])


@pytest.mark.parametrize("method", ["ifm", "baseline"])
def test_one_training_step_reads_nothing_back(cp, method, capsys):
    """Steps 0 and 1 of a two-step epoch. Step 0 also draws the IFM pair positions
    of both steps and uploads them, one upload per pair; step 1 only slices them."""
    from experiment.trainer import Trainer
    trainer = Trainer(config(batch_size=128, samples=64, method=method),
                      tiny_dataset(np.random.default_rng(0), n=256), "gpu")
    order = trainer.plan.epoch_order(1)
    counts = []
    for step in (0, 1):
        index = trainer.plan.batch_index(order, step)
        with cupy_standin.counting() as c:
            loss, correct, F_values, total = trainer.method.train_step(index, 1, step)
        counts.append(c)
        with capsys.disabled():
            print(f"\n{method} train_step (step {step} of the epoch), K = 64, batch 128, "
                  f"on the CuPy stand-in: {c.report(8)}")
        assert c.host_reads == 0, f"the step read the device back: {dict(c.reads_by_name)}"
        assert c.float64_arrays == 0 and c.generators == 0, c
        assert len(F_values) == (3 if method == "ifm" else 0)
        for value in (loss, correct, total, *F_values):
            assert isinstance(value, cp.ndarray) and value.shape == ()
        assert np.isfinite(float(total))
    first, later = counts
    assert later.calls <= MAX_CALLS[method], later.report(20)
    assert later.launches <= MAX_LAUNCHES[method], later.report(20)
    assert (first.uploads, later.uploads) == ((3 if method == "ifm" else 0), 0)


@pytest.mark.parametrize("labels", ["true", "shuffled"])
def test_one_ice_step_reads_nothing_back_and_makes_no_generator(cp, labels, capsys):
    """Steps 0 and 1 of iCE at flow depth 2: no host read, no float64 array; the random
    generators (one per SeededUniform: the noise, the couplings' and D_nc's dropout) are
    made at step 0 and reseeded after; shuffled labels upload an epoch's permutations at
    step 0."""
    from experiment.trainer import Trainer
    settings = config(method="ice-firevnet", batch_size=32, flow_depth=2, ice_labels=labels)
    trainer = Trainer(settings, tiny_dataset(np.random.default_rng(0), n=64), "gpu")
    order = trainer.plan.epoch_order(1)
    counts = []
    for step in (0, 1):
        with cupy_standin.counting() as c:
            index = trainer.plan.batch_index(order, step)
            loss, correct, terms, total = trainer.method.train_step(index, 1, step)
        counts.append(c)
        assert c.host_reads == 0, f"the step read the device back: {dict(c.reads_by_name)}"
        assert c.float64_arrays == 0, c
        for value in (loss, correct, total, *terms):
            assert isinstance(value, cp.ndarray) and value.shape == ()
    with capsys.disabled():
        print(f"\niCE train_step (step 1, depth 2, batch 32, labels {labels}) on the CuPy "
              f"stand-in: {counts[1]}")
    assert (counts[0].generators, counts[1].generators) == (3, 0)
    assert (counts[0].uploads, counts[1].uploads) == ((1, 0) if labels == "shuffled" else (0, 0))
