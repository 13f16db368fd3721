"""nn.cpu.parallel on real threads: each primitive split, the block partition, and a whole step.

Each primitive (matmul with and without bias, per_channel, channel_sum,
channel_dot), run on arrays large enough to split, must equal the plain
expression it stands for. The numeric suites (gradient checks, loop
references) also run every op split into blocks, one block after the other
(the ``cores_mode`` fixture); here the blocks run on worker threads, as in
training.
"""
import threading

import numpy as np
import pytest

import nn
from nn.cpu import openblas, parallel
from test_train_gpu_parity import config, normwise_error, tiny_dataset

from experiment.trainer import Trainer


@pytest.fixture
def split_calls(monkeypatch):
    """How many tasks each split of nn.cpu.parallel handed over (a list, one entry per split).

    Proves that a result came from the split path, not from the plain expression.
    """
    calls, run = [], parallel._run

    def counted(tasks):
        calls.append(len(tasks))
        return run(tasks)

    monkeypatch.setattr(parallel, "_run", counted)
    return calls


PRODUCTS = [(64, 288, 4099), (4099, 96, 64), (33, 20001, 29), (5, 7, 3)]
PRODUCT_IDS = ["columns", "rows", "shared", "small"]


@pytest.mark.parametrize("bias", [False, True], ids=["no bias", "bias"])
@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("shape", PRODUCTS, ids=PRODUCT_IDS)
def test_split_product_equals_the_product(rng, shape, n, bias, split_calls):
    M, K, N = shape
    a, b = rng.standard_normal((M, K)), rng.standard_normal((K, N))
    c = rng.standard_normal(M) if bias else None
    plus = c[:, None] if bias else 0.0
    out = np.full((M, N), np.nan)
    with parallel.using_cores(n):
        got = parallel.matmul(a, b, bias=c)
        got_transposed = parallel.matmul(b.T, a.T)      # non-contiguous operands
        into = parallel.matmul(a, b, bias=c, out=out)
    expected = a @ b + plus
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12 * np.sqrt(K))
    np.testing.assert_allclose(got_transposed, (a @ b).T, rtol=1e-12, atol=1e-12 * np.sqrt(K))
    assert into is out
    np.testing.assert_array_equal(out, got)
    assert got.shape == (M, N) and got.dtype == np.float64
    if shape == (5, 7, 3):
        assert split_calls == [], "a small product is not split"
    else:
        assert split_calls == [n, n, n], "every product was split into one band per core"


@pytest.mark.parametrize("n", [2, 3])
def test_split_product_with_bias_keeps_float32(rng, n, split_calls):
    a = rng.standard_normal((64, 288)).astype(np.float32)
    b = rng.standard_normal((288, 4099)).astype(np.float32)
    c = rng.standard_normal(64).astype(np.float32)
    with parallel.using_cores(n):
        got = parallel.matmul(a, b, bias=c)
    assert got.dtype == np.float32 and split_calls == [n]
    expected = a.astype(np.float64) @ b.astype(np.float64) + c[:, None]
    assert np.abs(got - expected).max() < 1e-6 * np.abs(expected).max()     # normwise


def _writing_into_last(f, record=None):
    """f as per_channel takes it: its result written into its last argument (a block of the
    caller's destination); ``record`` collects the threads that ran it."""
    def g(*arrays):
        if record is not None:
            record.add(threading.get_ident())
        arrays[-1][...] = f(*arrays[:-1])
    return g


@pytest.mark.parametrize("n", [2, 3])
def test_per_channel_with_column_arguments_equals_the_expression(rng, n):
    """Batch norm's map: blocks of rows of x, of the per-channel columns, a scalar whole."""
    x = rng.standard_normal((37, 5, 6, 300))             # ~2.7 MB, above MIN_PARALLEL_BYTES
    scale, shift = rng.standard_normal((37, 1, 1, 1)), rng.standard_normal((37, 1, 1, 1))
    offset = rng.standard_normal((1, 1, 1, 300))         # one row: every block gets it whole
    assert x.nbytes > parallel.MIN_PARALLEL_BYTES

    def f(x, scale, shift, offset, k):
        return (x * scale + shift) * k + offset

    threads = set()
    y = np.full_like(x, np.nan)
    with parallel.using_cores(n):
        parallel.per_channel(_writing_into_last(f, threads), x, scale, shift, offset, 0.5, y)
    np.testing.assert_array_equal(y, f(x, scale, shift, offset, 0.5))
    assert len(threads) > 1, "the blocks ran on the worker threads too"


@pytest.mark.parametrize("n", [2, 3])
def test_per_channel_with_other_result_shapes_and_dtypes(rng, n):
    """A max-pool-like map with two results: (C, H/2, W/2, N) values and a bool mask."""
    x = rng.standard_normal((16, 8, 10, 64)).astype(np.float32)       # ~0.33 MB
    C, H, W, N = x.shape
    assert x.nbytes > parallel.MIN_PARALLEL_BYTES

    def pool(x):
        return np.maximum(np.maximum(x[:, 0::2, 0::2], x[:, 0::2, 1::2]),
                          np.maximum(x[:, 1::2, 0::2], x[:, 1::2, 1::2]))

    def pool_and_sign(x, y, positive):
        threads.add(threading.get_ident())
        y[...] = pool(x)
        np.greater(y, 0, out=positive)

    threads = set()
    y = np.empty((C, H // 2, W // 2, N), np.float32)
    positive = np.empty(y.shape, bool)
    with parallel.using_cores(n):
        parallel.per_channel(pool_and_sign, x, y, positive)
    np.testing.assert_array_equal(y, pool(x))
    np.testing.assert_array_equal(positive, pool(x) > 0)
    assert len(threads) > 1, "the blocks ran on the worker threads too"


@pytest.mark.parametrize("n", [2, 3])
def test_per_channel_leaves_small_arrays_and_one_channel_to_f(rng, n):
    """Below MIN_PARALLEL_BYTES, or with one channel: f(*arrays) itself, in this thread."""
    small, one = rng.standard_normal((4, 10)), rng.standard_normal((1, 10 ** 5))
    calls = []

    def f(x, y):
        calls.append(threading.get_ident())
        np.multiply(x, 2.0, out=y)

    with parallel.using_cores(n):
        for x in (small, one):
            y = np.empty_like(x)
            parallel.per_channel(f, x, y)
            np.testing.assert_array_equal(y, x * 2.0)
    assert calls == [threading.get_ident()] * 2


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_channel_sum_equals_the_row_sums(rng, n, dtype, split_calls):
    A = rng.standard_normal((96, 4099)).astype(dtype)          # (C, M), above MIN_PARALLEL_BYTES
    assert A.nbytes > parallel.MIN_PARALLEL_BYTES
    out = np.full(96, np.nan, dtype=dtype)
    with parallel.using_cores(n):
        got = parallel.channel_sum(A)
        into = parallel.channel_sum(A, out=out)
    assert split_calls == [n, n], "the sums were split over the cores"
    assert got.shape == (96,) and got.dtype == dtype
    assert into is out
    np.testing.assert_array_equal(out, got)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(got, A.sum(axis=1), rtol=rtol,
                               atol=rtol * np.abs(A).sum(axis=1).max())


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_channel_dot_equals_the_row_products(rng, n, dtype, split_calls):
    A = rng.standard_normal((96, 4099)).astype(dtype)
    B = rng.standard_normal((96, 4099)).astype(dtype)
    with parallel.using_cores(n):
        got = parallel.channel_dot(A, B)
    assert split_calls == [n], "the dot products were split over the cores"
    assert got.shape == (96,) and got.dtype == dtype
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(got, (A * B).sum(axis=1), rtol=rtol,
                               atol=rtol * np.abs(A * B).sum(axis=1).max())


def test_workers_run_under_the_callers_errstate():
    """np.errstate is a context variable; the pool's tasks must see the caller's."""
    seen, lock = [], threading.Lock()

    def record(lo, hi):
        with lock:
            seen.append((threading.get_ident(), np.geterr()["over"]))

    with parallel.using_cores(3), np.errstate(over="ignore"):
        parallel.run_in_blocks(record, 3, 10 ** 8)
    assert len({ident for ident, _ in seen}) > 1, "the blocks ran on one thread only"
    assert [mode for _, mode in seen] == ["ignore"] * 3


@pytest.mark.parametrize("n_items, nbytes", [(7, 10 ** 8), (100, 10 ** 8), (1, 10 ** 8), (50, 10)])
def test_blocks_cover_the_range_once(n_items, nbytes):
    calls, lock = [], threading.Lock()

    def record(lo, hi):
        with lock:
            calls.append((lo, hi, threading.get_ident()))

    with parallel.using_cores(2):
        parallel.run_in_blocks(record, n_items, nbytes)
    covered = sorted(i for lo, hi, _ in calls for i in range(lo, hi))
    assert covered == list(range(n_items))
    assert all(lo < hi for lo, hi, _ in calls)
    if n_items >= 2 and nbytes >= parallel.MIN_PARALLEL_BYTES:
        assert len({t for _, _, t in calls}) == 2, "both threads take part"
    else:
        assert calls == [(0, n_items, threading.get_ident())], "small work: one call, here"


def test_one_core_runs_everything_in_the_calling_thread():
    calls = []
    with parallel.using_cores(1):
        parallel.run_in_blocks(lambda lo, hi: calls.append((lo, hi, threading.get_ident())),
                               64, 10 ** 9)
    assert calls == [(0, 64, threading.get_ident())]


def test_an_error_in_a_worker_reaches_the_caller():
    def fail_late(lo, hi):
        if hi == 10:
            raise RuntimeError("block failed")

    with parallel.using_cores(2), pytest.raises(RuntimeError, match="block failed"):
        parallel.run_in_blocks(fail_late, 10, 10 ** 9)


def test_use_cores_takes_openblas_to_one_thread_and_back():
    if openblas.get_num_threads() is None:
        pytest.skip("NumPy's BLAS is not an OpenBLAS this process can ask")
    with parallel.using_cores(1):
        own = openblas.get_num_threads()
        with parallel.using_cores(2):
            assert openblas.get_num_threads() == 1
            assert parallel.cores() == 2
        assert openblas.get_num_threads() == own
        assert parallel.cores() == 1


def test_use_cores_rejects_zero():
    with pytest.raises(ValueError, match="n >= 1"):
        parallel.use_cores(0)


@pytest.mark.parametrize("changes", [{}, {"method": "baseline"}, {"upsample": "bilinear"},
                                     {"pair_features": "post-pool", "samples": "all"}],
                         ids=["ifm", "baseline", "bilinear", "postpool-all"])
def test_a_training_step_on_two_threads_matches_one(changes):
    """One Trainer step in float64 (arrays large enough to split) with 1 and 2 cores.

    Blocked ops and split products differ from the unsplit ones only in
    rounding, so in float64 the two agree to ~1e-15. (In float32 the ~1e-7
    differences can move a few of D's pre-activations across leaky ReLU's
    kink, and the gradients then differ by far more than the rounding:
    measured up to 4% in one of D's weights after one step.)
    """
    settings = config(**changes)
    dataset = tiny_dataset(np.random.default_rng(0))
    results = []
    for n in (1, 2):
        with parallel.using_cores(n):
            trainer = Trainer(settings, dataset, "cpu")
            trainer.method.trainable.astype(np.float64)
            trainer.method.optimizer.reattach()
            split_inputs = trainer.train_data.inputs
            trainer.train_data.inputs = lambda index: split_inputs(index).astype(np.float64)
            index = trainer.plan.batch_index(trainer.plan.epoch_order(1), 0)
            loss, _, F, _ = trainer.method.train_step(index, 1, 0)
            params = {k: nn.to_numpy(v) for k, v in trainer.method.trainable.params.items()}
        results.append((float(loss), [float(f) for f in F], params))
    (loss_1, F_1, params_1), (loss_2, F_2, params_2) = results
    assert loss_2 == pytest.approx(loss_1, rel=1e-12)
    np.testing.assert_allclose(F_2, F_1, rtol=1e-12)
    assert normwise_error(params_2, params_1) < 1e-12


@pytest.mark.parametrize("n", [2, 3])
def test_a_split_stack_of_products_equals_the_batched_product(rng, n, split_calls):
    """matmul of a stack (G, M, K) @ (G, K, N) + bias (G, M): each product split alone."""
    a, b = rng.standard_normal((3, 64, 288)), rng.standard_normal((3, 288, 129))
    bias = rng.standard_normal((3, 64))
    out = np.full((3, 64, 129), np.nan)
    with parallel.using_cores(n):
        got = parallel.matmul(a, b, bias)
        into = parallel.matmul(a, b.swapaxes(-1, -2).copy().swapaxes(-1, -2), bias, out=out)
    assert split_calls == [n] * 6, "each of the 3 products, twice, was split"
    np.testing.assert_allclose(got, np.matmul(a, b) + bias[..., None], rtol=1e-12, atol=1e-12)
    assert into is out
    np.testing.assert_allclose(out, got, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n", [2, 3])
def test_channel_sum_of_a_stack_sums_the_last_axis(rng, n, split_calls):
    A = rng.standard_normal((3, 32, 4099))
    out = np.full((3, 32), np.nan)
    with parallel.using_cores(n):
        into = parallel.channel_sum(A, out=out)
        with pytest.raises(ValueError, match="contiguous"):
            parallel.channel_sum(A, out=np.empty((32, 3)).T)
    assert split_calls == [n]
    assert into is out
    np.testing.assert_allclose(out, A.sum(axis=-1), rtol=1e-12)
