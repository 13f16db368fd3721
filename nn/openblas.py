"""The OpenBLAS under NumPy's matrix products: which kernels, how many threads.

Every convolution and linear layer here ends in a NumPy GEMM, run by the
OpenBLAS that NumPy bundles. OpenBLAS picks its kernel set ("Haswell" for
AVX2, "SkylakeX" for AVX-512, ...) from the CPU when it loads, unless the
environment variable OPENBLAS_CORETYPE names one. On a CPU with AVX-512 the
two differ by about 1.6x in float32 GEMM rate, so a benchmark must say which
one it ran on. The project never sets OPENBLAS_CORETYPE itself: a machine
that pins it (the development machine pins "Haswell") does so on purpose.

``set_num_threads`` is what ``nn.parallel.use_cores`` calls to make OpenBLAS
single-threaded while the project runs its own threads.

Everything here looks for an OpenBLAS among the libraries this process has
loaded (Linux only) and calls it through ctypes; NumPy builds on MKL or
Accelerate, and other systems, get None / False.
"""
import ctypes
from functools import lru_cache

# Symbol prefixes/suffixes of the OpenBLAS builds NumPy ships (scipy-openblas,
# 64-bit integers) and of a plain system OpenBLAS.
_NAMES = ("scipy_openblas_{}64_", "scipy_openblas_{}", "openblas_{}64_", "openblas_{}")


@lru_cache(maxsize=None)
def _library():
    import numpy  # noqa: F401  (loads NumPy's OpenBLAS)

    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower()}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        if _function(lib, "get_corename") is not None:
            return lib
    return None


def _function(lib, name):
    for pattern in _NAMES:
        fn = getattr(lib, pattern.format(name), None)
        if fn is not None:
            return fn
    return None


def core_name():
    """The kernel set the loaded OpenBLAS uses (e.g. "SkylakeX"), or None if unknown."""
    lib = _library()
    if lib is None:
        return None
    fn = _function(lib, "get_corename")
    fn.restype = ctypes.c_char_p
    return fn().decode()


def get_num_threads():
    """OpenBLAS's current thread count, or None if unknown."""
    lib = _library()
    fn = None if lib is None else _function(lib, "get_num_threads")
    if fn is None:
        return None
    fn.restype = ctypes.c_int
    return int(fn())


def set_num_threads(n):
    """Ask OpenBLAS to use n threads; True if there was an OpenBLAS to ask."""
    lib = _library()
    fn = None if lib is None else _function(lib, "set_num_threads")
    if fn is None:
        return False
    fn.argtypes = (ctypes.c_int,)
    fn.restype = None
    fn(int(n))
    return True
