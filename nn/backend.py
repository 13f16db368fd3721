"""The one place that knows about NumPy versus CuPy.

Every op takes its array module from its inputs (``xp = get_array_module(x)``),
so the same expression runs on the CPU and on the GPU. There is no global
device switch. CuPy is optional: when it is not installed, everything here
still works and reports that no GPU is available.
"""
import numpy as np

try:  # CuPy is an optional extra; the NumPy path must never need it.
    import cupy as _cupy
except Exception:  # ImportError, or a CUDA library that fails to load
    _cupy = None


def get_array_module(*arrays):
    """Return ``cupy`` if any argument is a CuPy array, else ``numpy``."""
    if _cupy is not None:
        return _cupy.get_array_module(*arrays)
    return np


def _device_count():
    """(number of CUDA devices CuPy sees, or 0; CUDA's error message, or None)."""
    try:
        return _cupy.cuda.runtime.getDeviceCount(), None
    except Exception as err:        # CUDARuntimeError: no driver, no device, ...
        return 0, str(err).strip() or type(err).__name__


def gpu_available():
    """True when CuPy is importable and sees at least one CUDA device."""
    return _cupy is not None and _device_count()[0] > 0


# CuPy and the CUDA libraries it loads, from PyPI, for a machine with only a driver.
GPU_INSTALL = 'python3 -m pip install "cupy-cuda12x[ctk]"'


def gpu_unavailable_reason():
    """A sentence saying why the GPU cannot be used (None when it can)."""
    if _cupy is None:
        return ("CuPy is not installed: install the CuPy wheel matching your CUDA "
                f"version with the CUDA libraries it loads, e.g. `{GPU_INSTALL}`")
    count, error = _device_count()
    if count == 0:
        return "CuPy is installed but sees no CUDA device" + (f" ({error})" if error else "")
    return curand_missing_reason(_cupy)


def curand_missing_reason(cupy):
    """Why ``cupy`` cannot load cuRAND, which the GPU path's random draws (dropout, noise)
    use, and what to install; None when it loads. The cupy-cuda12x wheel does not carry
    cuRAND: without a CUDA toolkit it comes from the nvidia-curand-cu12 wheel."""
    try:
        cupy.cuda.curand
    except ImportError as err:      # CuPy's own: 'Failure finding "libcurand.so.11 or ..."'
        why = (str(err).strip().splitlines() or [type(err).__name__])[0]
        return (f"CuPy cannot load cuRAND ({why}), which the GPU path's random draws need: "
                "install it with `python3 -m pip install nvidia-curand-cu12`, or every CUDA "
                f"library CuPy loads with `{GPU_INSTALL}`")
    return None


def xp_for(device):
    """The array module for a device name: ``"cpu"`` -> numpy, ``"gpu"`` -> cupy."""
    if device == "cpu":
        return np
    if device == "gpu":
        reason = gpu_unavailable_reason()
        if reason is not None:
            raise RuntimeError(reason)
        return _cupy
    raise ValueError(f"unknown device {device!r}: use 'cpu' or 'gpu'")


def to_device(array, device):
    """Copy ``array`` to ``device`` ("cpu" or "gpu"); a no-op when already there."""
    xp = xp_for(device)
    if xp is np:
        return to_numpy(array)
    return xp.asarray(array)


def copy_into(target, value):
    """``target[...] = value`` from either device, cast to target's dtype (in place)."""
    if get_array_module(target) is np:
        target[...] = to_numpy(value)
    else:
        target[...] = get_array_module(target).asarray(value)


def to_numpy(array):
    """A NumPy view/copy of a NumPy or CuPy array (a device-to-host copy on GPU)."""
    if _cupy is not None and isinstance(array, _cupy.ndarray):
        return _cupy.asnumpy(array)
    return np.asarray(array)

