"""Uniform random arrays drawn where they are used, from integer seeds.

    uniform = SeededUniform()
    u = uniform(seed, shape, xp, np.float32)    # U[0, 1) of ``shape`` on xp's device

The same seed gives the same array on one device, so a draw can be repeated
(the inverting backward of a flow redraws the dropout mask its forward used).
The seeds come from host generators (numpy Generators derived from the run's
seed and the training step); only the arrays are drawn on the device, so
nothing is uploaded and nothing is read back.

One ``SeededUniform`` keeps ONE generator per array module for all its draws
and reseeds it for each one:
- CuPy: a cupy.random.RandomState on Philox4x32-10. Reseeding Philox sets a
  key and an offset; the default XORWOW sets up its state again on every
  reseed (milliseconds), and creating a generator per draw would do that too.
  float32 is drawn directly (curand's single-precision uniform).
- NumPy: a numpy Generator on Philox, made from the seed (a host object that
  costs microseconds), drawing float32 directly.
The two devices' streams differ for one seed (cuRAND is not NumPy).
"""
import numpy as np

from .backend import curand_missing_reason

PHILOX = "CURAND_RNG_PSEUDO_PHILOX4_32_10"      # the method's name in cupy.cuda.curand


class SeededUniform:
    """U[0, 1) arrays from integer seeds on any array module (module docstring)."""

    def __init__(self):
        self._device_states = {}        # array module -> its one reseeded generator

    def __call__(self, seed, shape, xp, dtype=np.float32):
        """U[0, 1) draws of ``shape`` and ``dtype`` (float32 or float64) on xp, from ``seed``."""
        if xp is np:
            return np.random.Generator(np.random.Philox(seed)).random(shape, dtype=dtype)
        state = self._device_states.get(xp)
        if state is None:
            reason = curand_missing_reason(xp)
            if reason:
                raise RuntimeError(reason)
            method = getattr(xp.cuda.curand, PHILOX)
            state = self._device_states[xp] = xp.random.RandomState(seed, method=method)
        else:
            state.seed(seed)
        return state.random_sample(shape, dtype=dtype)
