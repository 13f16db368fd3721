"""nn.parallel on real threads: the split products, the block partition, and a whole step.

The numeric suites (gradient checks, loop references) also run every op split
into blocks, one block after the other (the ``cores_mode`` fixture); here the
blocks run on worker threads, as in training.
"""
import threading

import numpy as np
import pytest

import nn
from nn import openblas, parallel
from test_train_gpu_parity import config, normwise_error, tiny_dataset

from experiment.trainer import Trainer


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("shape", [(64, 288, 4099), (4099, 96, 64), (33, 20001, 29), (5, 7, 3)],
                         ids=["columns", "rows", "shared", "small"])
def test_split_product_equals_the_product(rng, shape, n):
    M, K, N = shape
    a, b = rng.standard_normal((M, K)), rng.standard_normal((K, N))
    with parallel.using_cores(n):
        got = parallel.matmul(a, b)
        got_transposed = parallel.matmul(b.T, a.T)      # non-contiguous operands
    np.testing.assert_allclose(got, a @ b, rtol=1e-12, atol=1e-12 * np.sqrt(K))
    np.testing.assert_allclose(got_transposed, (a @ b).T, rtol=1e-12, atol=1e-12 * np.sqrt(K))
    assert got.shape == (M, N) and got.dtype == np.float64


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


@pytest.mark.parametrize("changes", [{}, {"ifm": False}, {"upsample": "bilinear"},
                                     {"pair_features": "post-pool", "samples": "all"}],
                         ids=["ifm", "baseline", "bilinear", "postpool-all"])
def test_a_training_step_on_two_threads_matches_one(changes):
    """One Trainer step (float32, arrays large enough to split) with 1 and 2 cores.

    Blocked ops and split products round differently (~1e-7 relative: sums
    taken in another order). One step, not several: after a step
    those differences move some of D's pre-activations across leaky ReLU's
    kink, which changes the next gradients by much more than the rounding
    (measured: 0.3% in one of D's weights at step 2 of the bilinear case).
    """
    cfg = config(**changes)
    dataset = tiny_dataset(np.random.default_rng(0))
    results = []
    for n in (1, 2):
        with parallel.using_cores(n):
            trainer = Trainer(cfg, dataset, "cpu")
            loss, _, F, _ = trainer.train_step(trainer.batch_index(trainer.epoch_order(1), 0),
                                               1, 0)
            params = {k: nn.to_numpy(v).astype(np.float64)
                      for k, v in trainer.trainable.params.items()}
        results.append((float(loss), [float(f) for f in F], params))
    (loss_1, F_1, params_1), (loss_2, F_2, params_2) = results
    assert loss_2 == pytest.approx(loss_1, rel=1e-6)
    np.testing.assert_allclose(F_2, F_1, rtol=1e-6)
    assert normwise_error(params_2, params_1) < 1e-6
