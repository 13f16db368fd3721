"""The CPU runtime behind nn's one seam: speed only, never the math.

``parallel`` (the primitives every op reaches its CPU-fast form through, each equal to a
plain xp expression), ``openblas`` (NumPy's BLAS: its kernel set and thread count),
``allocator`` (glibc's malloc keeps freed blocks). On CuPy arrays the primitives are the
plain expressions, and nothing here runs.
"""
