"""Which OpenBLAS kernels NumPy's matrix products run on (for benchmark reports).

Every convolution and linear layer here ends in a NumPy GEMM, run by the
OpenBLAS that NumPy bundles. OpenBLAS picks its kernel set ("Haswell" for
AVX2, "SkylakeX" for AVX-512, ...) from the CPU when it loads, unless the
environment variable OPENBLAS_CORETYPE names one. On a CPU with AVX-512 the
two differ by about 1.6x in float32 GEMM rate, so a benchmark must say which
one it ran on. The project never sets OPENBLAS_CORETYPE itself: a machine
that pins it (the development machine pins "Haswell") does so on purpose.
"""


def core_name():
    """The kernel set the loaded OpenBLAS uses (e.g. "SkylakeX"), or None if unknown.

    Looks for an OpenBLAS among the libraries this process has loaded (Linux
    only) and asks it; NumPy builds on MKL or Accelerate give None.
    """
    import ctypes

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
        for symbol in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename",
                       "openblas_get_corename64_", "openblas_get_corename"):
            fn = getattr(lib, symbol, None)
            if fn is not None:
                fn.restype = ctypes.c_char_p
                return fn().decode()
    return None
