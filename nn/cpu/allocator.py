"""Keep large freed blocks in the process heap (glibc's malloc only).

A training step allocates and frees the same large temporaries (activations,
im2col columns, gradients of several MB each) every step. By default glibc
serves such blocks with a fresh mmap, and returns them to the kernel on free.
Every page is then zero-filled again, on first touch, at the next step. The
cost is a few milliseconds per step on the CPU; docs/performance.md has the
measurement. ``retain_freed_memory`` asks malloc to serve every block from the
heap and to keep freed memory for reuse. Peak memory stays the same; it is
just not handed back to the OS between steps.

Calling it is optional and only changes speed. It is a no-op, returning
False, where the C library has no ``mallopt`` (macOS, Windows, musl).
CuPy has its own memory pool on the GPU, so the GPU path never needs it.
"""
import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4


def retain_freed_memory():
    """Serve every malloc block from the heap and never trim it; True if applied."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    ok = mallopt(M_MMAP_MAX, 0) == 1
    ok &= mallopt(M_TRIM_THRESHOLD, 2 ** 31 - 1) == 1
    return bool(ok)
