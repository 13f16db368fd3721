"""The CPU seam: a few named primitives, plain xp expressions, split over the cores on NumPy.

The ops of nn/ and ifm/ are written as their formulas on xp. Where a formula
has a CPU-specific fast form, they reach it through one of these primitives,
each equal to a plain expression (tests/test_parallel.py checks each):

- ``matmul(a, b, bias, out)``     a @ b + bias[..., None] (2-D, or a stack of products)
- ``per_channel(f, *arrays)``     f(*arrays), for f acting on each row of axis 0 alone and
                                  writing its results into some of the arrays
- ``channel_sum(A)``              A.sum(axis=-1)
- ``channel_dot(A, B)``           (A * B).sum(axis=1)
- ``run_in_blocks(fn, n, ...)``   fn(0, n), for fn(lo, hi) acting on rows lo..hi alone

On CuPy, and on NumPy until ``use_cores(n)`` is called, each is exactly that
expression (one call). ``use_cores(n)`` makes OpenBLAS single-threaded and
keeps n - 1 worker threads that, with the calling thread, split each
primitive: a product into n bands (rows of a, columns of b, or the shared
dimension, whichever is largest), the others into blocks of rows of about
BLOCK_BYTES, so that the several passes of a formula over a block stay in a
core's L2 cache. NumPy releases the GIL inside its loops, so the threads run
at the same time. (OpenBLAS's own threads keep spinning after each product,
so a Python thread of ours beside them gains nothing; docs/performance.md.)

The split changes which thread computes what, never the formula. Results
differ from the unsplit ones only by float rounding: a block may be summed in
another order than the whole array, and a product split along its shared
dimension adds its partial products at the end.
"""
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np

from . import openblas
from ..backend import get_array_module

# Below these sizes a thread handoff (tens of microseconds) costs more than it saves.
MIN_PARALLEL_BYTES = 1 << 18
MIN_PARALLEL_FLOPS = 1 << 22
# Blocks of about this size stay in a core's L2 cache while an op makes its
# several passes over them (2 MB per core on the development machine).
BLOCK_BYTES = 1 << 21

_pool = None            # ThreadPoolExecutor with cores - 1 workers, or None
_cores = 1
_blas_threads = None    # OpenBLAS's own thread count before use_cores took over


def available_cores():
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:      # not Linux
        return os.cpu_count() or 1


def cores():
    """How many threads the NumPy work is split over (1: not split)."""
    return _cores


def use_cores(n=None):
    """Split NumPy work over n threads; returns the n in use.

    n = None: all available cores, but only where NumPy's BLAS is an OpenBLAS
    whose thread count can be set (to 1); elsewhere its own threads would
    compete with ours, so it stays at 1. An explicit n is always honoured
    (OpenBLAS is set to one thread where possible). n = 1 undoes it and gives
    OpenBLAS its own threads back.
    """
    global _pool, _cores, _blas_threads
    automatic = n is None
    n = available_cores() if automatic else int(n)
    if n < 1:
        raise ValueError(f"use_cores needs n >= 1, got {n}")
    if _pool is not None:
        _pool.shutdown(wait=True)
        _pool = None
    if n > 1:
        previous = openblas.get_num_threads()
        if previous is not None and openblas.set_num_threads(1):
            if _blas_threads is None:
                _blas_threads = previous
        elif automatic:
            n = 1
    if n == 1 and _blas_threads is not None:
        openblas.set_num_threads(_blas_threads)
        _blas_threads = None
    if n > 1:
        _pool = ThreadPoolExecutor(n - 1, thread_name_prefix="nn-core")
    _cores = n
    return n


@contextmanager
def using_cores(n):
    """``use_cores(n)`` for the duration of a with-block (tests, benchmarks)."""
    before = cores()
    try:
        yield use_cores(n)
    finally:
        use_cores(before)


def _run(tasks):
    """Run the callables, the first in this thread and the rest in the pool.

    Each pool task runs under the caller's ``np.errstate`` (thread-local in
    NumPy 1.x, a context variable in 2.x; neither reaches a pool thread by itself).
    """
    errstate = np.geterr()

    def under_errstate(task):
        with np.errstate(**errstate):
            return task()

    futures = [_pool.submit(under_errstate, task) for task in tasks[1:]]
    try:
        tasks[0]()
    finally:
        for f in futures:
            f.result()


def _splits(on_host):
    """Whether work on these arrays is split: NumPy arrays (``on_host``) under ``use_cores``.

    CuPy arrays never are (a GPU kernel is parallel already); asking costs no
    call into CuPy.
    """
    return _pool is not None and on_host


def _bands(n, parts):
    """Edges of ``parts`` nearly equal consecutive ranges covering range(n)."""
    return [n * i // parts for i in range(parts + 1)]


def run_in_blocks(fn, n, nbytes, xp=np):
    """Call fn(lo, hi) for consecutive blocks covering range(n), in parallel.

    ``nbytes`` is the size of the data the whole range touches; it sets the
    number of blocks (about BLOCK_BYTES each, at least one per core). Each
    core gets a run of consecutive blocks. One call fn(0, n) on CuPy, without
    ``use_cores``, or for small work.
    """
    if not _splits(xp is np) or n < 2 or nbytes < MIN_PARALLEL_BYTES:
        fn(0, n)
        return
    blocks = min(n, max(_cores, -(-nbytes // BLOCK_BYTES)))
    edges = _bands(n, blocks)
    per_core = _bands(blocks, min(_cores, blocks))

    def core_task(first, last):
        def task():
            for b in range(first, last):
                fn(edges[b], edges[b + 1])
        return task

    _run([core_task(per_core[i], per_core[i + 1]) for i in range(len(per_core) - 1)])


def matmul(a, b, bias=None, out=None):
    """a @ b (+ bias[..., None]) for a (M, K), b (K, N), bias (M,), split over the cores;
    or a stack of G such products: a (G, M, K), b (G, K, N), bias (G, M) -> (G, M, N).

    The result goes into ``out`` when given (C-contiguous, of the operands'
    result dtype). On CuPy, or without ``use_cores``: ``xp.dot`` for a
    product, which reads a transposed operand (an F-contiguous view) in
    place; for a stack, one batched ``xp.matmul`` when both operands are
    C-contiguous, else a dot per member (a batched matmul copies every operand
    that is not C-contiguous: on CuPy, ``dW = dy x^T`` of a critic stack would
    copy x, about 50 MB at K = 64). Split: bands of rows of a, of columns of b,
    or of the shared dimension (partial products summed at the end),
    whichever is largest; each band adds its bias while its output is still
    in cache.
    """
    if a.ndim == 3:
        return _stacked_matmul(a, b, bias, out)
    M, K = a.shape
    N = b.shape[-1]
    if not _splits(isinstance(a, np.ndarray)) or 2 * M * K * N < MIN_PARALLEL_FLOPS:
        out = get_array_module(a).dot(a, b, out=out)
        if bias is not None:
            out += bias[:, None]
        return out
    parts = _cores
    if K > max(M, N):
        edges = _bands(K, parts)
        partial = [None] * parts

        def shared_band(i):
            def task():
                partial[i] = a[:, edges[i]:edges[i + 1]] @ b[edges[i]:edges[i + 1]]
            return task

        _run([shared_band(i) for i in range(parts)])
        out = np.add(partial[0], partial[1], out=out)
        for p in partial[2:]:
            out += p
        if bias is not None:
            out += bias[:, None]
        return out
    if out is None:
        out = np.empty((M, N), dtype=np.result_type(a, b))
    rows_of_a = N < M
    edges = _bands(M if rows_of_a else N, parts)

    def band(i):
        cut = slice(edges[i], edges[i + 1])

        def task():
            if rows_of_a:
                np.matmul(a[cut], b, out=out[cut])
                if bias is not None:
                    out[cut] += bias[cut, None]
            else:
                np.matmul(a, b[:, cut], out=out[:, cut])
                if bias is not None:
                    out[:, cut] += bias[:, None]
        return task

    _run([band(i) for i in range(parts)])
    return out


def _stacked_matmul(a, b, bias, out):
    """``matmul`` of a stack: one batched product when both operands are C-contiguous
    (on NumPy under ``use_cores``, one split product per member), else one ``xp.dot``
    per member, which reads transposed operands in place."""
    xp = get_array_module(a)
    batched = a.flags.c_contiguous and b.flags.c_contiguous
    if batched and not _splits(xp is np):
        out = xp.matmul(a, b, out=out)
        if bias is not None:
            out += bias[..., None]
        return out
    if out is None:
        out = xp.empty((a.shape[0], a.shape[1], b.shape[2]),
                       dtype=np.result_type(a.dtype, b.dtype))
    for g in range(a.shape[0]):
        matmul(a[g], b[g], None if bias is None else bias[g], out=out[g])
    return out


def _sliced(arrays, n):
    """For each array: slice its axis 0 by the block (it has n rows) or pass it whole."""
    rows = [getattr(a, "ndim", 0) > 0 and a.shape[0] == n for a in arrays]
    return lambda lo, hi: [a[lo:hi] if r else a for a, r in zip(arrays, rows)]


def per_channel(f, *arrays):
    """f(*arrays), for an f that treats each index of axis 0 (a channel) on its own.

    f returns nothing: it writes its results into arrays among its arguments,
    which the caller allocated. On CuPy, without ``use_cores`` or for small
    arrays: one call f(*arrays). Split: every array with as many rows as the
    first one, inputs and results alike, is cut into the same blocks of rows
    (per-channel columns (C, 1, ...) included; the others, shape (1, ...) or
    scalars, go to every block whole), and each core runs f on L2-sized
    blocks, so f writes each block of its results while its inputs are in cache.
    """
    first = arrays[0]
    if not _splits(isinstance(first, np.ndarray)):
        f(*arrays)
        return
    n = first.shape[0]
    nbytes = max(a.nbytes for a in arrays if getattr(a, "ndim", 0) > 0 and a.shape[0] == n)
    if n < 2 or nbytes < MIN_PARALLEL_BYTES:
        f(*arrays)
        return
    blocks = _sliced(arrays, n)
    run_in_blocks(lambda lo, hi: f(*blocks(lo, hi)), n, nbytes)


def channel_sum(A, out=None):
    """sum_m A[..., m], per row of A (..., M): shape A.shape[:-1], into ``out`` when given."""
    if not _splits(isinstance(A, np.ndarray)):
        return A.sum(axis=-1, out=out)
    if out is None:
        out = np.empty(A.shape[:-1], dtype=A.dtype)
    if out.ndim > 1 and not out.flags.c_contiguous:
        raise ValueError("channel_sum of a stack writes into a C-contiguous out only")
    rows_in, rows_out = A.reshape(-1, A.shape[-1]), out.reshape(-1)

    def rows(lo, hi):
        rows_in[lo:hi].sum(axis=1, out=rows_out[lo:hi])
    run_in_blocks(rows, rows_in.shape[0], A.nbytes)
    return out


def channel_dot(A, B):
    """sum_m A[c, m] B[c, m], per row of A, B (C, M): (C,).

    (A * B).sum(axis=1), over row blocks: the product of a block stays in
    cache, and NumPy's pairwise sum keeps float32 accurate (an einsum would
    accumulate M products in one running sum: 1e-5 relative at M = 5e5).
    """
    if not _splits(isinstance(A, np.ndarray)):
        return (A * B).sum(axis=1)
    out = np.empty(A.shape[0], dtype=np.result_type(A, B))

    def rows(lo, hi):
        out[lo:hi] = (A[lo:hi] * B[lo:hi]).sum(axis=1)
    run_in_blocks(rows, A.shape[0], A.nbytes + B.nbytes)
    return out
