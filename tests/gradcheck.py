"""Numeric gradients by central differences, to check hand-written backward passes.

For a scalar loss L and every element i of a float64 array x that L reads:

    n_i = (L(x + eps e_i) - L(x - eps e_i)) / (2 eps),        eps = 1e-6

The truncation error is O(eps^2 |L'''|) ~ 1e-12 and the rounding error about
1e-16 |L| / eps ~ 1e-10 for L of order one, so in float64 the numeric gradient
is good to roughly 1e-9 relative. Piecewise-linear ops (leaky ReLU, max-pool)
are exact between kinks: keep every input further than eps from a kink or tie.

Agreement between the analytic gradient a and the numeric one n is measured
normwise, one number per array (not elementwise, so tiny entries do not blow
up; a wrong entry of any size still shows, relative to the largest one):

    relative_error(a, n) = max_i |a_i - n_i| / max(max_i |a_i|, max_i |n_i|, floor)

with floor = 1e-12 only to avoid dividing by zero. Every check in the suite
asserts it below the one tolerance TOL = 1e-7; there is no per-call tolerance.

A gradient that is zero in exact arithmetic (the bias of a layer that feeds
training-mode batch norm; the last bias of a critic whose estimate ignores a
shift of its scores) is pure rounding noise on both sides, which this measure
cannot judge. The test names such arrays (``zero=``) and they are held to
absolute bounds instead: |analytic| < 1e-12 and |numeric| < 1e-8 everywhere
(the numeric noise is ~1e-16 |L| / eps ~ 1e-10). Nothing is zero by default.

The loss of an op check is L = sum(dy * f(x)) with a random upstream gradient
dy (``upstream``): an all-ones dy makes the batch-norm input gradient vanish
whatever the bug. Shapes too large to visit every element (a conv on 13 x 11
maps, the paper's critic widths, a whole training step) take
``check_directional`` instead: the derivative along a random direction that
moves every element at once.

Every check records its largest error under a name in ``MAX_ERRORS``; the
conftest prints that table at the end of the run.
"""
import numpy as np

EPS = 1e-6
FLOOR = 1e-12
TOL = 1e-7          # the assert tolerance for every check in the suite
ZERO_ANALYTIC = 1e-12   # bounds for gradients that are zero in exact arithmetic
ZERO_NUMERIC = 1e-8

MAX_ERRORS = {}     # name -> largest relative error measured under that name


def numeric_gradient(loss, x, eps=EPS):
    """dL/dx by central differences, every element.

    ``loss()`` takes no argument and reads ``x`` (an array it closes over);
    ``x`` is perturbed in place, one element at a time, and restored exactly.
    """
    if x.dtype != np.float64:
        raise TypeError(f"numeric gradients need float64, got {x.dtype}")
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + eps
        plus = float(loss())
        x[idx] = old - eps
        minus = float(loss())
        x[idx] = old
        grad[idx] = (plus - minus) / (2 * eps)
    return grad


def relative_error(analytic, numeric, floor=FLOOR):
    """max|a - n| / max(max|a|, max|n|, floor); see the module docstring."""
    analytic = np.asarray(analytic, dtype=np.float64)
    numeric = np.asarray(numeric, dtype=np.float64)
    if analytic.shape != numeric.shape:
        raise ValueError(f"shapes differ: analytic {analytic.shape}, numeric {numeric.shape}")
    scale = max(np.abs(analytic).max(initial=0.0), np.abs(numeric).max(initial=0.0), floor)
    return float(np.abs(analytic - numeric).max(initial=0.0) / scale)


def record(name, error):
    MAX_ERRORS[name] = max(error, MAX_ERRORS.get(name, 0.0))


def upstream(rng, shape=()):
    """A random upstream gradient dy (standard normal) for an output of this shape."""
    return rng.standard_normal(shape)


def away_from_zero(rng, shape, low=0.1):
    """Random values with |x| in [low, 1.5]: a kink at 0 (leaky ReLU) is never crossed."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(low, 1.5, size=shape)


def distinct_values(rng, shape, gap=0.1):
    """A random permutation of evenly spaced values: no two inputs closer than ``gap``
    (a max-pool window never meets a tie)."""
    n = int(np.prod(shape))
    return ((rng.permutation(n) - n / 2) * gap).reshape(shape)


def check_gradients(name, loss, wrt, analytic, eps=EPS, zero=()):
    """Assert analytic[k] matches the numeric gradient of ``loss()`` wrt ``wrt[k]``.

    ``wrt`` and ``analytic`` are dicts with the same keys (the arrays that
    ``loss`` reads, and their hand-computed gradients). Every element of every
    array is compared. Keys in ``zero`` name gradients that are zero in exact
    arithmetic: both sides must be below the absolute bounds of the module
    docstring. Returns the relative errors by key; each is recorded under ``name``.
    """
    assert set(analytic) == set(wrt), f"{name}: gradients {sorted(analytic)} for {sorted(wrt)}"
    assert set(zero) <= set(wrt), f"{name}: zero gradients {sorted(zero)} not among {sorted(wrt)}"
    errors, not_zero = {}, {}
    for key, x in wrt.items():
        a = analytic[key]
        assert a.shape == x.shape, f"{name}: d/d{key} has shape {a.shape}, {key} is {x.shape}"
        numeric = numeric_gradient(loss, x, eps)
        if key in zero:
            sizes = (float(np.abs(a).max(initial=0.0)), float(np.abs(numeric).max(initial=0.0)))
            if not (sizes[0] < ZERO_ANALYTIC and sizes[1] < ZERO_NUMERIC):
                not_zero[key] = sizes
            continue
        errors[key] = relative_error(a, numeric)
        record(name, errors[key])
    assert not not_zero, (f"{name}: gradients that should be zero are not "
                          f"(max |analytic|, max |numeric|): {not_zero}")
    bad = {k: e for k, e in errors.items() if not e < TOL}
    assert not bad, f"{name}: relative gradient error above {TOL:g}: {bad}"
    return errors


def check_directional(name, loss, wrt, analytic, rng, eps=EPS, zero=()):
    """The random-direction check for shapes too large to visit every element.

    With d a random direction per array (all arrays not in ``zero`` moved
    together), (L(x + eps d) - L(x - eps d)) / (2 eps) must equal
    sum_k <analytic_k, d_k>; call it once per array to judge each gradient on
    its own. Each key in ``zero`` (a gradient that is zero in exact arithmetic)
    is moved alone: max |analytic| < 1e-12 and |numeric| < 1e-8.
    """
    assert set(analytic) == set(wrt), f"{name}: gradients {sorted(analytic)} for {sorted(wrt)}"
    assert set(zero) <= set(wrt), f"{name}: zero gradients {sorted(zero)} not among {sorted(wrt)}"
    directions = {k: rng.standard_normal(x.shape) for k, x in wrt.items()}
    originals = {k: x.copy() for k, x in wrt.items()}

    def derivative(keys):
        """(numeric, predicted) derivative along the directions of ``keys``."""
        def moved(sign):
            for k in keys:
                wrt[k][...] = originals[k] + sign * eps * directions[k]
            value = float(loss())
            for k in keys:
                wrt[k][...] = originals[k]
            return value
        numeric = (moved(+1) - moved(-1)) / (2 * eps)
        return numeric, sum(float(np.sum(analytic[k] * directions[k])) for k in keys)

    for key in zero:
        numeric, _ = derivative([key])
        largest = float(np.abs(analytic[key]).max(initial=0.0))
        assert largest < ZERO_ANALYTIC and abs(numeric) < ZERO_NUMERIC, (
            f"{name}: d/d{key} should be zero: max |analytic| {largest:.1e}, "
            f"numeric directional derivative {numeric:.1e}")
    keys = [k for k in wrt if k not in zero]
    if not keys:
        return None
    numeric, predicted = derivative(keys)
    error = abs(numeric - predicted) / max(abs(numeric), abs(predicted), FLOOR)
    record(name, error)
    assert error < TOL, f"{name}: directional derivative {predicted} vs numeric {numeric}"
    return error
