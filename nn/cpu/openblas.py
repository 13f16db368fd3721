"""The OpenBLAS under NumPy's matrix products: which kernels, how many threads.

Every convolution and linear layer here ends in a NumPy GEMM, run by the
OpenBLAS that NumPy bundles. OpenBLAS picks its kernel set ("Haswell" for
AVX2, "SkylakeX" for AVX-512, ...) from the CPU when it loads, unless the
environment variable OPENBLAS_CORETYPE names one. On a CPU with AVX-512 the
two differ by about 1.6x in float32 GEMM rate, so a benchmark must say which
one it ran on. The project never sets OPENBLAS_CORETYPE itself: a machine
that pins it does so on purpose.

``set_num_threads`` is what ``nn.cpu.parallel.use_cores`` calls to make OpenBLAS
single-threaded while the project runs its own threads.

threadpoolctl finds the BLAS libraries this process has loaded and talks to
them; where NumPy's BLAS is not an OpenBLAS (MKL, Accelerate) the functions
here answer None / False.
"""
from functools import lru_cache

from threadpoolctl import ThreadpoolController


@lru_cache(maxsize=None)
def _openblas():
    """threadpoolctl's controller of NumPy's OpenBLAS, or None."""
    import numpy  # noqa: F401  (loads NumPy's BLAS)

    for lib in ThreadpoolController().lib_controllers:
        if lib.internal_api == "openblas":
            return lib
    return None


def core_name():
    """The kernel set the loaded OpenBLAS uses (e.g. "SkylakeX"), or None if unknown."""
    lib = _openblas()
    return None if lib is None else lib.architecture


def get_num_threads():
    """OpenBLAS's current thread count, or None if unknown."""
    lib = _openblas()
    return None if lib is None else int(lib.get_num_threads())


def set_num_threads(n):
    """Ask OpenBLAS to use n threads; True if there was an OpenBLAS to ask."""
    lib = _openblas()
    if lib is None:
        return False
    lib.set_num_threads(int(n))
    return True
