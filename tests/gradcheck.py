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

with floor = 1e-12 only to avoid dividing by zero. A gradient that is zero in
exact arithmetic (both arrays pure rounding noise) is therefore NOT accepted
by this measure: such a case must be asserted explicitly by the test.

Every check records its largest error under a name in ``MAX_ERRORS``; the
conftest prints that table at the end of the run.
"""
import numpy as np

EPS = 1e-6
FLOOR = 1e-12
TOL = 1e-7          # the assert tolerance for every check in the suite

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


def check_gradients(name, loss, wrt, analytic, tol=TOL, eps=EPS, skip=()):
    """Assert analytic[k] matches the numeric gradient of ``loss()`` wrt ``wrt[k]``.

    ``wrt`` and ``analytic`` are dicts with the same keys (the arrays that
    ``loss`` reads, and their hand-computed gradients); keys in ``skip`` are
    not compared here (the caller asserts them another way). Returns the
    errors by key; every one is recorded under ``name``.
    """
    assert set(analytic) == set(wrt), f"{name}: gradients {sorted(analytic)} for {sorted(wrt)}"
    errors = {}
    for key, x in wrt.items():
        if key in skip:
            continue
        a = analytic[key]
        assert a.shape == x.shape, f"{name}: d/d{key} has shape {a.shape}, {key} is {x.shape}"
        errors[key] = relative_error(a, numeric_gradient(loss, x, eps))
        record(name, errors[key])
    bad = {k: e for k, e in errors.items() if not e < tol}
    assert not bad, f"{name}: relative gradient error above {tol:g}: {bad}"
    return errors


def check_directional(name, loss, wrt, analytic, rng, tol=TOL, eps=EPS):
    """The random-direction check for shapes too large to visit every element.

    With d a random direction per array (all arrays moved together),
    (L(x + eps d) - L(x - eps d)) / (2 eps) must equal sum_k <analytic_k, d_k>.
    """
    directions = {k: rng.standard_normal(x.shape) for k, x in wrt.items()}
    originals = {k: x.copy() for k, x in wrt.items()}

    def moved(sign):
        for k, x in wrt.items():
            x[...] = originals[k] + sign * eps * directions[k]
        value = float(loss())
        for k, x in wrt.items():
            x[...] = originals[k]
        return value

    numeric = (moved(+1) - moved(-1)) / (2 * eps)
    predicted = sum(float(np.sum(analytic[k] * directions[k])) for k in wrt)
    error = abs(numeric - predicted) / max(abs(numeric), abs(predicted), FLOOR)
    record(name, error)
    assert error < tol, f"{name}: directional derivative {predicted} vs numeric {numeric}"
    return error
