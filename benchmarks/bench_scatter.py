"""Benchmark: the pair layer's scatter-add on NumPy, per-row np.add.at against a sorted sum.

    python -m benchmarks.bench_scatter [--repeats 5]

ifm.fast_pairs.scatter_add_columns adds the columns of values (C, S) into a (C, L)
zero array at columns cols (S,), repeated columns accumulating. Rows: the four
scatters of an IFM step at K = 64, batch 128 (dH_1's 32 channels, dH_2's 64
channels on the coarse grid, and D's first layer's 256 outputs projected onto
the 8x8 and 4x4 maps). Columns: ms of
  add.at     one unbuffered np.add.at per channel row (what the code does);
  sorted     argsort of cols once (a cost paid when positions are drawn, shown
             apart as ``sort``), then take in that order, np.add.reduceat per
             segment of equal columns, and one assignment of the sums;
the median of --repeats runs each, on one thread, timed in one run.
"""
import argparse
import sys
import time

import numpy as np

from experiment.cli import quiet_on_closed_pipe
from ifm.fast_pairs import scatter_add_columns

CASES = (("dH_1, 32 channels", 32, 32 * 32 * 128), ("dH_2, 64 channels", 64, 16 * 16 * 128),
         ("256 outputs into 8x8", 256, 8 * 8 * 128), ("256 outputs into 4x4", 256, 4 * 4 * 128))
S = 2 * 64 * 128            # joint and marginal pairs of a batch of 128 at K = 64


def sort_plan(cols):
    """(order, segment starts, the distinct columns) of cols sorted."""
    order = np.argsort(cols, kind="stable")
    ordered = cols[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    return order, starts, ordered[starts]


def sorted_sum(values, num_cols, plan):
    order, starts, distinct = plan
    out = np.zeros((values.shape[0], num_cols), values.dtype)
    out[:, distinct] = np.add.reduceat(np.take(values, order, axis=1), starts, axis=1)
    return out


def median_ms(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t))
    return float(np.median(times))


@quiet_on_closed_pipe
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"scatter-add of (C, {S}) float32 columns, median of {args.repeats}, ms")
    print(f"{'case':<22} {'add.at':>8} {'sorted':>8} {'sort':>8}")
    for name, C, L in CASES:
        cols = rng.integers(0, L, S)
        values = rng.standard_normal((C, S)).astype(np.float32)
        plan = sort_plan(cols)
        np.testing.assert_allclose(scatter_add_columns(cols, values, L),
                                   sorted_sum(values, L, plan), atol=1e-4)
        add_at = median_ms(lambda: scatter_add_columns(cols, values, L), args.repeats)
        by_sort = median_ms(lambda: sorted_sum(values, L, plan), args.repeats)
        sort = median_ms(lambda: sort_plan(cols), args.repeats)
        print(f"{name:<22} {add_at:>8.2f} {by_sort:>8.2f} {sort:>8.2f}")


if __name__ == "__main__":
    sys.exit(main())
