"""A strict, counting stand-in for the part of CuPy this project uses (CPU only).

``install()`` puts modules named ``cupy``, ``cupy.cuda``, ``cupy.cuda.runtime``,
``cupy.cuda.curand``, ``cupy.random`` and ``cupyx`` into ``sys.modules``; ``nn.backend`` then takes them for CuPy and
reports one fake CUDA device, so the code's CuPy branches and the ``gpu`` tests
run on a machine without a GPU. tests/conftest.py installs it when
``IFM_CUPY_STANDIN=1``; ``installed()`` does it for the duration of a with-block
(tests/test_cupy_standin.py).

Device arrays. ``cupy.ndarray`` wraps a NumPy array (the "device memory") and
holds nothing else. Results are never NumPy scalars: reductions, ``x[i]`` and
ufuncs of scalars give 0-d device arrays, as in CuPy. ``cupy.asarray`` of a host
array copies it (the upload), so the device array shares no memory with it.

What it refuses, as CuPy does (CuPy 13-14 source, cupy/_core/core.pyx,
_kernel.pyx, _routines_indexing.pyx):
- implicit conversion to NumPy: ``np.asarray(x)``, ``np.array(x)`` raise
  TypeError("Implicit conversion to a NumPy array is not allowed. ...");
- a host ``numpy.ndarray`` (0-d ones included: CuPy takes only Python and NumPy
  scalars as scalars; only its comparison operators read a 0-d one as its
  scalar) or a list as an operand of a ufunc, an operator or a function:
  TypeError("Unsupported type ...");
- a host array assigned into a basic slice, ``x[...] = host``: ValueError
  ("non-scalar numpy.ndarray cannot be used for fill"); a 0-d one or a scalar
  fills, as in CuPy;
- ``out=`` that is not a device array; dtypes CuPy lacks (object, strings,
  longdouble, ...): ValueError("Unsupported dtype ...");
- ``operator.index(x)`` and device arrays as slice bounds (CuPy's ndarray has no
  ``__index__``).

Stricter than CuPy, on purpose:
- NumPy functions and ufuncs called on a device array (``np.exp(x)``,
  ``np.sum(x)``) raise TypeError. Real CuPy dispatches most of them to cupy.*
  through ``__array_ufunc__``/``__array_function__``; the project's convention
  is ``xp = get_array_module(...)``, and a ``np.`` call on a device array only
  works where CuPy happens to have that function. Operators with NumPy scalars
  on the left (``np.float32(2) * x``) work, as in CuPy.
- ``x[idx] = values`` (so also ``x[idx] += v``) where the integer index repeats
  a location raises ValueError: CuPy leaves the stored value undefined (its
  ``__setitem__`` documentation); ``cupy.add.at`` accumulates.
- ``cupy.einsum``, which CuPy feeds through ``cupy.asarray``, refuses host
  arrays too; out-of-range integer indices raise (CuPy wraps them around).

Allowed host arrays, as in CuPy: ``cupy.asarray`` (an upload),
index arrays and lists in ``x[...]``, ``take`` and ``cupy.add.at``, and
host values assigned through an advanced index (each counted as an upload).

As CuPy does, where it differs from NumPy (cupy/_core/_routines_linalg.pyx,
_routines_indexing.pyx, cupy/random/_generator.py):
- ``dot(a, b, out)`` needs ``out`` C-contiguous and of the operands' result
  dtype (ValueError); a 2-D operand neither C- nor F-contiguous is copied
  first (one more launch). ``matmul`` of more than two dimensions copies every
  operand that is not C-contiguous, and one whose ``out`` is not usable
  writes it by a copy (launches). ``take(..., out=)`` needs out's dtype to be
  the input's exactly (TypeError);
- ``cupy.random.RandomState(seed, method)``: creating one is counted
  (``generators``: CuPy creates and seeds a cuRAND generator); ``seed()``
  reseeds it; ``random_sample(size, dtype)`` draws float32 or float64;
- ``argsort`` is a host wait (CuPy 13 sorts through thrust with a
  synchronizing policy): counted as a host read;
- ``np.ndim(x)`` reaches ``cupy.ndim`` through ``__array_function__``, as
  for CuPy (the one NumPy function this project calls on device arrays).

Counting: every call into the API (module functions, ufuncs, ndarray methods
and operators, ``.T``, the device queries) is one call; reading the device on
the host (``float``, ``int``, ``bool``, ``complex``, ``item``, ``tolist``,
``get``, ``cupy.asnumpy``, ``repr``/``str``/``format``, pickling) is one host
read, and so is boolean-mask indexing (CuPy reads the number of selected
elements back to size the result). Attribute reads (shape, dtype, strides,
flags, ...) and ``len()`` are not calls. A call made by another stand-in call
is not counted again. A call that runs work on the device (a kernel, or a
copy onto it) is also one launch; views (reshape, basic indexing, ``.T``,
``astype`` without conversion), ``empty``, the array-module and device
queries and host reads are not (``_api``'s ``kernel``)::

    with cupy_standin.counting() as c:
        ...
    c.calls, c.launches, c.host_reads, c.uploads, c.by_name.most_common(10)

``cupyx.scatter_add`` warns DeprecationWarning as CuPy 12 and later do
("use cupy.add.at"); the rest behaves as NumPy does (results are NumPy's).
Every device array of dtype float64 that a call produces is counted
(``float64_arrays``), and the keyword arguments of each top-level call are
recorded (``keywords``: tests/test_cupy_api.py checks them against real CuPy).
"""
import contextlib
import functools
import importlib.machinery
import operator
import sys
import threading
import types
import warnings
from collections import Counter

import numpy as np

VERSION = "14.0.0+standin"      # the CuPy release whose behaviour it follows
DEVICE_NAME = b"CuPy stand-in"
CUDA_VERSION = 12080            # what runtimeGetVersion and driverGetVersion report


# ----------------------------------------------------------------------------- counting

class Counts:
    """Calls, host reads and uploads seen while a ``counting()`` block was open."""

    def __init__(self):
        self.calls = 0
        self.launches = 0                   # calls that launch device work (see _api)
        self.host_reads = 0
        self.uploads = 0
        self.generators = 0                 # cupy.random.RandomState objects created
        self.float64_arrays = 0             # device arrays of dtype float64 produced
        self.by_name = Counter()            # calls by API name
        self.keywords = {}                  # API name -> keyword arguments it was given
        self.launches_by_name = Counter()
        self.reads_by_name = Counter()
        self.uploads_by_name = Counter()

    def __repr__(self):
        return (f"Counts(calls={self.calls}, launches={self.launches}, "
                f"host_reads={self.host_reads}, uploads={self.uploads}, "
                f"generators={self.generators}, float64_arrays={self.float64_arrays})")

    def report(self, top=12):
        """A few lines: the totals and the most frequent calls (for test output)."""
        lines = [repr(self)]
        lines += [f"  {n:6d}  {name}" for name, n in self.by_name.most_common(top)]
        for title, counter in (("host reads", self.reads_by_name),
                               ("uploads", self.uploads_by_name)):
            if counter:
                lines.append(f"  {title}: " + ", ".join(f"{k} x{v}" for k, v in counter.items()))
        return "\n".join(lines)


total = Counts()        # everything since this module was imported
_open = []              # Counts of the open counting() blocks
_tls = threading.local()
API = {}                # every counted entry point by name: the stand-in's API surface


@contextlib.contextmanager
def counting():
    """Count the stand-in calls, host reads and uploads made inside the block."""
    counts = Counts()
    _open.append(counts)
    try:
        yield counts
    finally:
        _open.remove(counts)


def _note(kind, name):
    for counts in (total, *_open):
        if kind == "generator":
            counts.generators += 1
        elif kind == "float64":
            counts.float64_arrays += 1
        elif kind == "call":
            counts.calls += 1
            counts.by_name[name] += 1
        elif kind == "launch":
            counts.launches += 1
            counts.launches_by_name[name] += 1
        elif kind == "read":
            counts.host_reads += 1
            counts.reads_by_name[name] += 1
        else:
            counts.uploads += 1
            counts.uploads_by_name[name] += 1


def _keywords(name, kwargs):
    """Record the keyword arguments a top-level call passed (the API-surface check)."""
    for counts in (total, *_open):
        counts.keywords.setdefault(name, set()).update(kwargs)


def _api(name, read=False, kernel="always"):
    """Register and count an entry point; ``read``: it copies device data to the host.

    ``kernel`` says whether the call launches device work: "always"; "never"
    (array-module and device queries, allocation without a fill, views by
    construction, host copies); "unless view": none when the result is a view
    of the first argument's memory (reshape, basic indexing, astype without a
    conversion), one otherwise (the copy).
    """
    def decorate(fn):
        @functools.wraps(fn)
        def counted(*args, **kwargs):
            depth = getattr(_tls, "depth", 0)
            if depth == 0:
                _note("call", name)
                _keywords(name, kwargs)
                if read:
                    _note("read", name)
            _tls.depth = depth + 1
            try:
                result = fn(*args, **kwargs)
            finally:
                _tls.depth = depth
            if depth == 0 and (kernel == "always" or (kernel == "unless view"
                                                      and not _is_view(result, args))):
                _note("launch", name)
            return result
        API[name] = counted
        return counted
    return decorate


def _is_view(result, args):
    """Whether ``result`` is a device array whose memory overlaps the first argument's
    (a view of it: reshape, basic indexing and astype without conversion return one)."""
    return (bool(args) and type(result) is ndarray and type(args[0]) is ndarray
            and np.may_share_memory(result._a, args[0]._a))


def _upload(name):
    _note("upload", name)


def _sync_read(name):
    """A host read that CuPy makes inside a call (counted even inside another call)."""
    _note("read", name)


# ----------------------------------------------------------------------------- values

_PY_SCALARS = (bool, int, float, complex)
_DTYPES = frozenset(np.dtype(t) for t in (
    np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
    np.uint64, np.float16, np.float32, np.float64, np.complex64, np.complex128))


def _dtype(dtype):
    """numpy.dtype of ``dtype`` (None stays None); ValueError for dtypes CuPy lacks."""
    if dtype is None:
        return None
    d = np.dtype(dtype)
    if d not in _DTYPES:
        raise ValueError(f"Unsupported dtype {d}")
    return d


def _is_scalar(x):
    return type(x) in _PY_SCALARS or isinstance(x, np.generic)


def _wrap(a):
    """A device array around the NumPy result ``a`` (a NumPy scalar becomes 0-d)."""
    if isinstance(a, np.generic):
        a = np.asarray(a)
    if type(a) is not np.ndarray:
        raise TypeError(f"stand-in internal error: cannot wrap {type(a)}")
    _dtype(a.dtype)
    if a.dtype == np.float64:
        _note("float64", "a float64 device array")
    w = object.__new__(ndarray)
    w._a = a
    return w


def _refuse(x, where):
    if isinstance(x, np.ndarray):
        return TypeError(
            f"Unsupported type {type(x)}: {where} got a host numpy.ndarray (shape {x.shape}). "
            "CuPy does not mix host arrays into device operations; move it with "
            "cupy.asarray first")
    return TypeError(f"Unsupported type {type(x)} (in {where})")


def _operand(x, where):
    """The NumPy value behind a ufunc/operator operand: a device array or a scalar."""
    if type(x) is ndarray:
        return x._a
    if _is_scalar(x):
        if isinstance(x, np.generic):
            _dtype(x.dtype)
        return x
    raise _refuse(x, where)


def _array_arg(x, where):
    """The NumPy array behind an argument that must be a device array."""
    if type(x) is ndarray:
        return x._a
    raise _refuse(x, where) if isinstance(x, np.ndarray) else TypeError(
        f"{where}: expected a cupy.ndarray, got {type(x)}")


def _out(out, where):
    if out is None:
        return None
    if isinstance(out, tuple) and len(out) == 1:
        out = out[0]
    if type(out) is not ndarray:
        raise TypeError(f"Output arguments must be cupy.ndarray (in {where}, got {type(out)})")
    return out


def _index_key(key, where):
    """(NumPy key, has a boolean mask, has an array index) for ``x[key]``.

    As CuPy's _prepare_slice_list: ints, slices, None, Ellipsis and device
    arrays as they are; lists and host arrays are uploaded (counted); a device
    array as a slice bound fails as CuPy's does (no __index__).
    """
    items = key if isinstance(key, tuple) else (key,)
    out, mask, advanced = [], False, False
    for s in items:
        if s is None or s is Ellipsis:
            out.append(s)
        elif isinstance(s, slice):
            if any(type(b) is ndarray for b in (s.start, s.stop, s.step)):
                raise TypeError("slice indices must be integers or None or have an "
                                "__index__ method (a cupy.ndarray has none)")
            out.append(s)
        elif type(s) is ndarray:
            if s.dtype.kind not in "biu":
                raise IndexError("arrays used as indices must be of integer or boolean "
                                 f"type (actual: {s.dtype.type})")
            mask = mask or s.dtype.kind == "b"
            advanced = True
            out.append(s._a)
        elif isinstance(s, (int, np.integer)) and not isinstance(s, (bool, np.bool_)):
            out.append(s)
        else:                           # list, tuple, host array, bool: uploaded
            a = np.asarray(s)
            if a.dtype.kind not in "biu" and a.size:
                raise IndexError("arrays used as indices must be of integer or boolean "
                                 f"type (actual: {a.dtype.type})")
            if a.size == 0:
                a = a.astype(np.intp)
            _upload(f"{where} index")
            mask = mask or a.dtype.kind == "b"
            advanced = True
            out.append(a)
    return (tuple(out) if isinstance(key, tuple) else out[0]), mask, advanced


# ----------------------------------------------------------------------------- ndarray

class _Flags:
    """CuPy's ndarray.flags: c_contiguous, f_contiguous, owndata (read only)."""

    def __init__(self, a):
        self.c_contiguous = bool(a.flags.c_contiguous)
        self.f_contiguous = bool(a.flags.f_contiguous)
        self.owndata = bool(a.flags.owndata)

    def __getitem__(self, name):
        return {"C_CONTIGUOUS": self.c_contiguous, "F_CONTIGUOUS": self.f_contiguous,
                "OWNDATA": self.owndata}[name]

    def __repr__(self):
        return (f"  C_CONTIGUOUS : {self.c_contiguous}\n  F_CONTIGUOUS : {self.f_contiguous}\n"
                f"  OWNDATA : {self.owndata}")


class ndarray:
    """A device array of the stand-in: a NumPy array that refuses to leave implicitly."""

    __slots__ = ("_a", "__weakref__")
    __array_ufunc__ = None      # NumPy ufuncs refuse it; operators defer to ours
    __hash__ = None

    @_api("cupy.ndarray", kernel="never")
    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        if memptr is not None or strides is not None:
            raise NotImplementedError("the stand-in's ndarray() takes no memptr or strides")
        self._a = np.empty(shape, dtype=_dtype(dtype), order=order)
        if self._a.dtype == np.float64:
            _note("float64", "a float64 device array")

    # -------------------------------------------------------------- NumPy interop
    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    def __array_function__(self, func, types, args, kwargs):
        name = getattr(func, "__name__", str(func))
        if name in _DISPATCHED:         # CuPy has these: NumPy hands them over, as to CuPy
            return getattr(cupy, name)(*args, **kwargs)
        raise TypeError(
            f"numpy.{name} was called with a cupy.ndarray (CuPy stand-in). Call it through "
            f"the array module, xp.{name} with xp = get_array_module(...): real CuPy would "
            "dispatch it only where CuPy has the function, and never convert implicitly")

    # -------------------------------------------------------------- attributes
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: _Flags(self._a))
    device = property(lambda self: cuda.Device(0))

    @property
    def T(self):
        return _ndarray_T(self)

    def __len__(self):
        if self._a.ndim == 0:
            raise TypeError("len() of unsized object")
        return self._a.shape[0]

    # -------------------------------------------------------------- host reads
    @_api("cupy.ndarray.get", read=True, kernel="never")
    def get(self, stream=None, order="C", out=None, blocking=True):
        if out is not None:
            if not isinstance(out, np.ndarray):
                raise TypeError("Only numpy.ndarray can be obtained from cupy.ndarray")
            np.copyto(out, self._a)
            return out
        return np.array(self._a, order=order, copy=True)

    @_api("cupy.ndarray.item", read=True, kernel="never")
    def item(self):
        if self._a.size != 1:
            raise ValueError("can only convert an array of size 1 to a Python scalar")
        return self._a.item()

    @_api("cupy.ndarray.tolist", read=True, kernel="never")
    def tolist(self):
        return self._a.tolist()

    @_api("cupy.ndarray.__float__", read=True, kernel="never")
    def __float__(self):
        return float(self._a)

    @_api("cupy.ndarray.__int__", read=True, kernel="never")
    def __int__(self):
        return int(self._a)

    @_api("cupy.ndarray.__complex__", read=True, kernel="never")
    def __complex__(self):
        return complex(self._a)

    @_api("cupy.ndarray.__bool__", read=True, kernel="never")
    def __bool__(self):
        return bool(self._a)

    @_api("cupy.ndarray.__repr__", read=True, kernel="never")
    def __repr__(self):
        return repr(self._a)

    @_api("cupy.ndarray.__str__", read=True, kernel="never")
    def __str__(self):
        return str(self._a)

    @_api("cupy.ndarray.__format__", read=True, kernel="never")
    def __format__(self, spec):
        return format(self._a, spec)

    @_api("cupy.ndarray.__reduce__", read=True, kernel="never")
    def __reduce__(self):
        return _from_host, (self._a.copy(),)

    # -------------------------------------------------------------- copies
    @_api("cupy.ndarray.__copy__")
    def __copy__(self):
        return _wrap(self._a.copy(order="K"))

    @_api("cupy.ndarray.__deepcopy__")
    def __deepcopy__(self, memo):
        return _wrap(self._a.copy(order="K"))

    @_api("cupy.ndarray.copy")
    def copy(self, order="C"):
        return _wrap(self._a.copy(order=order))

    @_api("cupy.ndarray.astype", kernel="unless view")
    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        kwargs = {} if casting is None else {"casting": casting}
        return _wrap(self._a.astype(_dtype(dtype), order=order, copy=copy, **kwargs))

    # -------------------------------------------------------------- shape
    @_api("cupy.ndarray.reshape", kernel="unless view")
    def reshape(self, *shape, order="C"):
        return _wrap(self._a.reshape(*shape, order=order))

    @_api("cupy.ndarray.transpose", kernel="never")
    def transpose(self, *axes):
        return _wrap(self._a.transpose(*axes))

    @_api("cupy.ndarray.swapaxes", kernel="never")
    def swapaxes(self, axis1, axis2):
        return _wrap(self._a.swapaxes(axis1, axis2))

    @_api("cupy.ndarray.squeeze", kernel="unless view")
    def squeeze(self, axis=None):
        return _wrap(self._a.squeeze(axis=axis))

    # -------------------------------------------------------------- reductions
    @_api("cupy.ndarray.sum")
    def sum(self, axis=None, dtype=None, out=None, keepdims=False):
        return _reduce(self, "sum", out, axis=axis, dtype=_dtype(dtype), keepdims=keepdims)

    @_api("cupy.ndarray.mean")
    def mean(self, axis=None, dtype=None, out=None, keepdims=False):
        return _reduce(self, "mean", out, axis=axis, dtype=_dtype(dtype), keepdims=keepdims)

    @_api("cupy.ndarray.max")
    def max(self, axis=None, out=None, keepdims=False):
        return _reduce(self, "max", out, axis=axis, keepdims=keepdims)

    @_api("cupy.ndarray.argmax")
    def argmax(self, axis=None, out=None, dtype=None, keepdims=False):
        result = self._a.argmax(axis=axis, keepdims=keepdims)
        if dtype is not None:
            result = result.astype(_dtype(dtype))
        return _into(out, result, "cupy.ndarray.argmax")

    # -------------------------------------------------------------- filling
    @_api("cupy.ndarray.fill")
    def fill(self, value):
        _fill(self._a, value)

    # -------------------------------------------------------------- indexing
    @_api("cupy.ndarray.__getitem__", kernel="unless view")
    def __getitem__(self, key):
        key, mask, advanced = _index_key(key, "cupy.ndarray.__getitem__")
        if mask:
            _sync_read("cupy.ndarray.__getitem__ (boolean mask: its count)")
        items = key if isinstance(key, tuple) else (key,)
        if not advanced and not any(k is Ellipsis for k in items):
            key = items + (Ellipsis,)       # x[i, j] a 0-d view, as in CuPy (NumPy: a scalar)
        return _wrap(self._a[key])

    @_api("cupy.ndarray.__setitem__")
    def __setitem__(self, key, value):
        key, mask, advanced = _index_key(key, "cupy.ndarray.__setitem__")
        if mask:
            _sync_read("cupy.ndarray.__setitem__ (boolean mask: its count)")
        if advanced and not mask and not _is_scalar(value) and _repeats(self._a, key):
            raise ValueError(
                "cupy.ndarray.__setitem__: an integer index array repeats a location. CuPy "
                "stores an undefined one of the values given for it (NumPy the last); "
                "accumulate with cupyx.scatter_add, or index without repeats")
        if type(value) is ndarray:
            self._a[key] = value._a
        elif advanced and not _is_scalar(value):
            # CuPy's _scatter_op_single converts the values with core.array: an upload
            self._a[key] = np.asarray(value)
            _upload("cupy.ndarray.__setitem__ value")
        else:
            # basic indexing with a non-device value: CuPy's ndarray.fill, which
            # takes scalars and 0-d arrays only (gh-2079: no host array assignment)
            self._a[key] = _fill_value(value)

    def __iter__(self):
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (_ndarray_item(self, i) for i in range(self._a.shape[0]))


def _repeats(a, key):
    """Whether the advanced index ``key`` selects some element of ``a`` more than once."""
    where = np.arange(a.size).reshape(a.shape)[key]
    return np.unique(where).size < where.size


def _fill(a, value):
    """CuPy's ndarray.fill of the NumPy array ``a``."""
    a[...] = _fill_value(value)


def _fill_value(value):
    """What CuPy's ndarray.fill takes: a 0-d device array, a scalar or a 0-d host array."""
    if type(value) is ndarray:
        if value.shape != ():
            raise ValueError("non-scalar cupy.ndarray cannot be used for fill")
        return value._a
    if isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.shape != ()):
        raise ValueError("non-scalar numpy.ndarray cannot be used for fill (CuPy refuses "
                         "host arrays assigned into device slices; use cupy.asarray)")
    if not (_is_scalar(value) or isinstance(value, np.ndarray)):
        raise TypeError(f"Unsupported type {type(value)}")
    return value


def _into(out, result, where):
    out = _out(out, where)
    if out is None:
        return _wrap(result)
    out._a[...] = result
    return out


def _reduce(x, method, out, **kwargs):
    out = _out(out, f"cupy.ndarray.{method}")
    if out is not None:
        getattr(x._a, method)(out=out._a, **kwargs)
        return out
    return _wrap(getattr(x._a, method)(**kwargs))


@_api("cupy.ndarray.T", kernel="never")
def _ndarray_T(x):
    return _wrap(x._a.T)


@_api("cupy.ndarray.__iter__ (element)", kernel="never")
def _ndarray_item(x, i):
    return _wrap(x._a[i])


def _from_host(a):
    """Unpickling: the host copy back onto the device."""
    _upload("unpickling")
    return _wrap(np.array(a, copy=True))


def _binary(name, fn, reflected=False):
    where = f"cupy.ndarray.{name}"

    def method(self, other):
        other = _operand(other, where)
        return _wrap(fn(other, self._a) if reflected else fn(self._a, other))
    method.__name__ = name
    return _api(where)(method)


def _inplace(name, fn):
    where = f"cupy.ndarray.{name}"

    def method(self, other):
        fn(self._a, _operand(other, where))         # NumPy's in-place operator
        return self
    method.__name__ = name
    return _api(where)(method)


def _unary(name, fn):
    def method(self):
        return _wrap(fn(self._a))
    method.__name__ = name
    return _api(f"cupy.ndarray.{name}")(method)


_BINARY = {"add": operator.add, "sub": operator.sub, "mul": operator.mul,
           "matmul": operator.matmul, "truediv": operator.truediv,
           "floordiv": operator.floordiv, "mod": operator.mod, "pow": operator.pow,
           "and": operator.and_, "or": operator.or_, "xor": operator.xor}
for _name, _fn in _BINARY.items():
    setattr(ndarray, f"__{_name}__", _binary(f"__{_name}__", _fn))
    setattr(ndarray, f"__r{_name}__", _binary(f"__r{_name}__", _fn, reflected=True))
    if _name != "matmul":                       # CuPy has no in-place @=
        setattr(ndarray, f"__i{_name}__",
                _inplace(f"__i{_name}__", getattr(operator, f"i{_name.rstrip('_')}")))


def _compare(name, fn):
    """A comparison as CuPy's __richcmp__: a 0-d host array counts as its scalar there,
    and == / != with an object of default equality (None, ...) give all False / True."""
    where = f"cupy.ndarray.{name}"

    def method(self, other):
        if isinstance(other, np.ndarray) and other.ndim == 0:
            other = other.item()
        elif name in ("__eq__", "__ne__") and type(other) is not ndarray and (
                other is None or type(other).__eq__ is object.__eq__):
            return _wrap(np.full(self._a.shape, name == "__ne__"))
        return _wrap(fn(self._a, _operand(other, where)))
    method.__name__ = name
    return _api(where)(method)


for _name, _fn in {"lt": operator.lt, "le": operator.le, "eq": operator.eq,
                   "ne": operator.ne, "gt": operator.gt, "ge": operator.ge}.items():
    setattr(ndarray, f"__{_name}__", _compare(f"__{_name}__", _fn))
for _name, _fn in {"neg": operator.neg, "pos": operator.pos, "abs": operator.abs,
                   "invert": operator.invert}.items():
    setattr(ndarray, f"__{_name}__", _unary(f"__{_name}__", _fn))


# ----------------------------------------------------------------------------- ufuncs

class ufunc:
    """A CuPy ufunc: device arrays and scalars in, a device array out (``out=``, ``dtype=``)."""

    def __init__(self, name, np_ufunc):
        self.__name__ = name
        self.name = f"cupy_{name}"
        self._np = np_ufunc
        self.nin, self.nout, self.nargs = np_ufunc.nin, np_ufunc.nout, np_ufunc.nargs
        self._where = f"cupy.{name}"
        API[self._where] = self

    def __repr__(self):
        return f"<ufunc '{self.name}' (CuPy stand-in)>"

    def __call__(self, *args, out=None, dtype=None, casting="same_kind"):
        depth = getattr(_tls, "depth", 0)
        if depth == 0:
            _note("call", self._where)
            _note("launch", self._where)
            _keywords(self._where, [k for k, v in (("out", out), ("dtype", dtype),
                                                   ("casting", casting))
                                    if v is not None and (k != "casting" or v != "same_kind")])
        _tls.depth = depth + 1
        try:
            if len(args) != self.nin:
                raise TypeError(f"Wrong number of arguments for {self.name}: "
                                f"{len(args)} given, {self.nin} expected")
            inputs = [_operand(a, self._where) for a in args]
            out = _out(out, self._where)
            kwargs = {"casting": casting}
            if dtype is not None:
                kwargs["dtype"] = _dtype(dtype)
            if out is not None:
                self._np(*inputs, out=out._a, **kwargs)
                return out
            return _wrap(self._np(*inputs, **kwargs))
        finally:
            _tls.depth = depth


    def at(self, a, indices, b=None):
        """In place at ``indices`` (repeated ones accumulate), as CuPy's ufunc.at: add only
        (CuPy has a scatter kernel for add, subtract, maximum, minimum; this code uses add)."""
        if self.__name__ != "add":
            raise NotImplementedError(f"`{self.name}.at` is not supported by the stand-in")
        _scatter(a, indices, b, f"{self._where}.at")


_UFUNCS = ["abs", "add", "exp", "greater", "isfinite", "log", "log1p", "logaddexp",
           "maximum", "minimum", "multiply", "power", "sqrt", "subtract"]


# ----------------------------------------------------------------------------- functions

@_api("cupy.get_array_module", kernel="never")
def get_array_module(*args):
    for a in args:
        if type(a) is ndarray:
            return cupy
    return np


def _host_to_device(a, dtype, where):
    """cupy.asarray/array of a host value: a fresh device copy (an upload)."""
    if isinstance(a, (list, tuple)) and any(type(v) is ndarray for v in a):
        return _wrap(np.array([_array_arg(v, where) for v in a], dtype=_dtype(dtype)))
    host = np.asarray(a, dtype=dtype)
    _dtype(host.dtype)
    order = "F" if host.flags.f_contiguous and not host.flags.c_contiguous else "C"
    _upload(where)
    return _wrap(np.array(host, order=order, copy=True))


@_api("cupy.asarray", kernel="unless view")
def asarray(a, dtype=None, order=None, *, copy=None, blocking=False):
    if type(a) is ndarray:
        result = np.asarray(a._a, dtype=_dtype(dtype), order=order, copy=copy)
        return a if result is a._a else _wrap(result)
    return _host_to_device(a, dtype, "cupy.asarray")


@_api("cupy.asnumpy", kernel="never")
def asnumpy(a, stream=None, order="C", out=None, *, blocking=True):
    if type(a) is ndarray:
        _sync_read("cupy.asnumpy")
        return a.get(stream=stream, order=order, out=out)
    if out is not None:         # a host value: nothing leaves the device
        out[...] = a
        return out
    return np.asarray(a, order=order)


@_api("cupy.empty", kernel="never")
def empty(shape, dtype=float, order="C"):
    return _wrap(np.empty(shape, dtype=_dtype(dtype), order=order))


@_api("cupy.zeros")
def zeros(shape, dtype=float, order="C"):
    return _wrap(np.zeros(shape, dtype=_dtype(dtype), order=order))


@_api("cupy.ones")
def ones(shape, dtype=float, order="C"):
    return _wrap(np.ones(shape, dtype=_dtype(dtype), order=order))


@_api("cupy.full")
def full(shape, fill_value, dtype=None, order="C"):
    if dtype is None:
        if type(fill_value) is ndarray:
            dtype = fill_value.dtype
        else:
            dtype = np.asarray(fill_value).dtype
    a = np.empty(shape, dtype=_dtype(dtype), order=order)
    _fill(a, fill_value)
    return _wrap(a)


def _like(name, make, kernel="always"):
    where = f"cupy.{name}"

    def fn(a, dtype=None, order="K", subok=None, shape=None):
        return _wrap(make(_array_arg(a, where), dtype=_dtype(dtype), order=order, shape=shape))
    fn.__name__ = name
    return _api(where, kernel=kernel)(fn)


empty_like = _like("empty_like", np.empty_like, kernel="never")
zeros_like = _like("zeros_like", np.zeros_like)


@_api("cupy.arange")
def arange(start, stop=None, step=None, dtype=None):
    for v in (start, stop, step):
        if v is not None and not _is_scalar(v):
            raise _refuse(v, "cupy.arange")
    args = [v for v in (start, stop, step) if v is not None]
    if step is not None and stop is None:
        args = [0, start, step]
    return _wrap(np.arange(*args, dtype=_dtype(dtype)))


def _sequence(tup, where):
    if type(tup) is ndarray or isinstance(tup, np.ndarray):
        raise TypeError(f"{where}: give a sequence of cupy.ndarray")
    return [_array_arg(a, where) for a in tup]


@_api("cupy.concatenate")
def concatenate(tup, axis=0, out=None, *, dtype=None, casting="same_kind"):
    arrays = _sequence(tup, "cupy.concatenate")
    out = _out(out, "cupy.concatenate")
    if out is not None:
        np.concatenate(arrays, axis=axis, out=out._a, dtype=_dtype(dtype), casting=casting)
        return out
    return _wrap(np.concatenate(arrays, axis=axis, dtype=_dtype(dtype), casting=casting))


def _copy_launch(name):
    """A copy CuPy makes inside a call (an operand made contiguous, a result copied out)."""
    _note("launch", f"{name} (copy)")


def _usable_out(out, a, b):
    """Whether a product can write into ``out`` directly: C-contiguous, the result dtype."""
    return out._a.flags.c_contiguous and out.dtype == np.result_type(a.dtype, b.dtype)


@_api("cupy.dot")
def dot(a, b, out=None):
    """As CuPy's dot (cupy/_core/_routines_linalg.pyx): ``out`` must be C-contiguous and
    of the operands' result dtype (ValueError otherwise, as there); a 2-D operand that
    is neither C- nor F-contiguous is copied first (cuBLAS reads a transposed view in
    place: it is F-contiguous)."""
    a, b = _array_arg(a, "cupy.dot"), _array_arg(b, "cupy.dot")
    out = _out(out, "cupy.dot")
    if out is not None:
        if out.dtype != np.result_type(a.dtype, b.dtype):
            raise ValueError("Not supported dtype combination.")
        if not out._a.flags.c_contiguous:
            raise ValueError("Output array must be C-contiguous")
    for operand in (a, b):
        if operand.ndim == 2 and not (operand.flags.c_contiguous or operand.flags.f_contiguous):
            _copy_launch("cupy.dot")
    if out is not None:
        np.dot(a, b, out=out._a)
        return out
    return _wrap(np.dot(a, b))


@_api("cupy.matmul")
def matmul(x1, x2, out=None):
    """As CuPy's matmul: for more than two dimensions every operand that is not
    C-contiguous is copied (ascontiguousarray before the batched GEMM); two dimensions
    go to dot, which copies operands that are neither C- nor F-contiguous; an ``out``
    that is not C-contiguous of the result dtype gets the result by a copy."""
    a, b = _array_arg(x1, "cupy.matmul"), _array_arg(x2, "cupy.matmul")
    out = _out(out, "cupy.matmul")
    for operand in (a, b):
        batched = max(a.ndim, b.ndim) > 2     # 2-D goes to dot, which reads F-order too
        if not (operand.flags.c_contiguous or (operand.flags.f_contiguous and not batched)):
            _copy_launch("cupy.matmul")
    if out is not None:
        if not _usable_out(out, a, b):
            _copy_launch("cupy.matmul")
        np.matmul(a, b, out=out._a)
        return out
    return _wrap(np.matmul(a, b))


@_api("cupy.argsort")
def argsort(a, axis=-1, kind=None):
    """A sort waits for the device: CuPy 13 sorts through thrust with a synchronizing
    execution policy (counted as a host read)."""
    _sync_read("cupy.argsort (thrust's synchronizing sort)")
    return _wrap(np.argsort(_array_arg(a, "cupy.argsort"), axis=axis, kind="stable"))


@_api("cupy.ndim", kernel="never")
def ndim(a):
    return a.ndim if type(a) is ndarray else np.ndim(a)


_DISPATCHED = ("ndim",)     # NumPy functions that reach the stand-in through __array_function__


@_api("cupy.stack")
def stack(tup, axis=0, out=None, *, dtype=None, casting="same_kind"):
    arrays = _sequence(tup, "cupy.stack")
    out = _out(out, "cupy.stack")
    if out is not None:
        np.stack(arrays, axis=axis, out=out._a, dtype=_dtype(dtype), casting=casting)
        return out
    return _wrap(np.stack(arrays, axis=axis, dtype=_dtype(dtype), casting=casting))


@_api("cupy.broadcast_to", kernel="never")
def broadcast_to(array, shape):
    return _wrap(np.broadcast_to(_array_arg(array, "cupy.broadcast_to"), shape))


@_api("cupy.ascontiguousarray", kernel="unless view")
def ascontiguousarray(a, dtype=None):
    return _wrap(np.ascontiguousarray(_array_arg(a, "cupy.ascontiguousarray"), dtype=dtype))


@_api("cupy.take")
def take(a, indices, axis=None, out=None):
    a = _array_arg(a, "cupy.take")
    if type(indices) is ndarray:
        indices = indices._a
    elif not _is_scalar(indices):
        indices = np.asarray(indices, dtype=np.intp)      # CuPy: core.array(indices)
        _upload("cupy.take indices")
    out = _out(out, "cupy.take")
    if out is not None:
        if out.dtype != a.dtype:        # CuPy's _take: no casting into out
            raise TypeError("Output dtype mismatch")
        np.take(a, indices, axis=axis, out=out._a)
        return out
    return _wrap(np.take(a, indices, axis=axis))


@_api("cupy.where")
def where(condition, x=None, y=None):
    if (x is None) != (y is None):
        raise ValueError("Must provide both 'x' and 'y' or neither.")
    condition = _operand(condition, "cupy.where")
    if x is None:
        _sync_read("cupy.where (one argument: the nonzero count)")
        return tuple(_wrap(i) for i in np.nonzero(condition))
    return _wrap(np.where(condition, _operand(x, "cupy.where"), _operand(y, "cupy.where")))


@_api("cupy.pad")
def pad(array, pad_width, mode="constant", **kwargs):
    if "constant_values" in kwargs and not _is_scalar(kwargs["constant_values"]) \
            and not isinstance(kwargs["constant_values"], (tuple, list)):
        raise _refuse(kwargs["constant_values"], "cupy.pad")
    return _wrap(np.pad(_array_arg(array, "cupy.pad"), pad_width, mode=mode, **kwargs))


@_api("cupy.einsum")
def einsum(*operands, **kwargs):
    if not operands or not isinstance(operands[0], str):
        raise NotImplementedError("the stand-in's einsum takes a subscripts string first")
    for key in kwargs:
        if key not in ("dtype", "optimize", "casting", "out"):
            raise TypeError(f"einsum() got an unexpected keyword argument '{key}'")
    out = _out(kwargs.pop("out", None), "cupy.einsum")
    arrays = [_array_arg(a, "cupy.einsum") for a in operands[1:]]
    if out is not None:
        np.einsum(operands[0], *arrays, out=out._a, **kwargs)
        return out
    return _wrap(np.einsum(operands[0], *arrays, **kwargs))


# ----------------------------------------------------------------------------- device

class CUDARuntimeError(RuntimeError):
    pass


def _runtime_module():
    m = types.ModuleType("cupy.cuda.runtime", "The fake CUDA runtime of the CuPy stand-in.")

    @_api("cupy.cuda.runtime.getDeviceCount", kernel="never")
    def getDeviceCount():
        return 1

    @_api("cupy.cuda.runtime.getDeviceProperties", kernel="never")
    def getDeviceProperties(device):
        _check_device(device)
        return {"name": DEVICE_NAME, "totalGlobalMem": 1 << 30, "major": 0, "minor": 0,
                "multiProcessorCount": 1}

    @_api("cupy.cuda.runtime.runtimeGetVersion", kernel="never")
    def runtimeGetVersion():
        return CUDA_VERSION

    @_api("cupy.cuda.runtime.driverGetVersion", kernel="never")
    def driverGetVersion():
        return CUDA_VERSION

    for fn in (getDeviceCount, getDeviceProperties, runtimeGetVersion, driverGetVersion):
        setattr(m, fn.__name__, fn)
    m.CUDARuntimeError = CUDARuntimeError
    return m


def _check_device(device):
    if device != 0:
        raise CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal "
                               "(the CuPy stand-in has one device, 0)")


class Device:
    """The stand-in's one CUDA device (id 0)."""

    @_api("cupy.cuda.Device", kernel="never")
    def __init__(self, device=None):
        device = 0 if device is None else int(device)
        _check_device(device)
        self.id = device

    @_api("cupy.cuda.Device.synchronize", kernel="never")
    def synchronize(self):
        pass                    # NumPy work is done when its call returns

    def __repr__(self):
        return f"<CUDA Device {self.id} (CuPy stand-in)>"


# ----------------------------------------------------------------------------- cupyx

def _scatter(a, slices, value, where):
    """numpy.add.at on the device array ``a``; repeated indices accumulate, as in CuPy."""
    target = _array_arg(a, where)
    key, mask, advanced = _index_key(slices, where)
    if mask:
        _sync_read(f"{where} (boolean mask: its count)")
    if type(value) is ndarray:
        value = value._a
    elif not _is_scalar(value):
        if not advanced:        # CuPy adds with a ufunc there: host arrays refused
            raise _refuse(value, where)
        value = np.asarray(value)
        _upload(f"{where} value")
    np.add.at(target, key, value)


ufunc.at = _api("cupy.ufunc.at")(ufunc.at)


@_api("cupyx.scatter_add")
def scatter_add(a, slices, value):
    """``cupy.add.at`` under its old name, which CuPy 12 and later deprecate."""
    warnings.warn("`ndarray.scatter_add` is deprecated. Please use `cupy.add.at` instead.",
                  DeprecationWarning, stacklevel=3)
    _scatter(a, slices, value, "cupyx.scatter_add")


class RandomState:
    """cupy.random.RandomState: draws made on the device. Creating one is counted
    (``Counts.generators``): CuPy creates and seeds a cuRAND generator for it.

    Behind it, for the seed s: numpy's Generator(Philox(s)), the stream nn.random
    draws from on NumPy, so a run on the stand-in draws what the same run draws on
    NumPy. Real CuPy's numbers (cuRAND) differ from both for the same seed.
    """

    @_api("cupy.random.RandomState", kernel="never")
    def __init__(self, seed=None, method=None):
        _note("generator", "cupy.random.RandomState")
        self.method = curand.CURAND_RNG_PSEUDO_DEFAULT if method is None else method
        self.seed(seed)

    @_api("cupy.random.RandomState.seed", kernel="never")
    def seed(self, seed=None):
        self._bits = np.random.Generator(np.random.Philox(seed))

    @_api("cupy.random.RandomState.random_sample")
    def random_sample(self, size=None, dtype=float):
        dtype = _dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"cupy.random: unsupported dtype {dtype}")
        return _wrap(np.asarray(self._bits.random(size, dtype=dtype)))


# ----------------------------------------------------------------------------- modules

def _module(name, doc):
    m = types.ModuleType(name, doc)
    m.__spec__ = importlib.machinery.ModuleSpec(name, None)
    m.__file__ = __file__
    m.__cupy_standin__ = True
    return m


cupy = _module("cupy", "CuPy stand-in (tests/cupy_standin.py): NumPy behind a strict, "
                       "counting device-array API.")
cuda = _module("cupy.cuda", "The CuPy stand-in's fake CUDA: one device.")
runtime = _runtime_module()
runtime.__spec__ = importlib.machinery.ModuleSpec("cupy.cuda.runtime", None)
cuda.runtime, cuda.Device = runtime, Device
curand = _module("cupy.cuda.curand", "The curand constants of the CuPy stand-in.")
curand.CURAND_RNG_PSEUDO_DEFAULT = 100           # curand.h's values
curand.CURAND_RNG_PSEUDO_PHILOX4_32_10 = 161
cuda.curand = curand
random = _module("cupy.random", "cupy.random of the CuPy stand-in: RandomState only.")
random.RandomState = RandomState
_global_state = RandomState()
random.random_sample = _global_state.random_sample
cupyx = _module("cupyx", "cupyx of the CuPy stand-in.")
cupyx.scatter_add = scatter_add

cupy.__version__ = VERSION
cupy.ndarray, cupy.ufunc, cupy.cuda, cupy.random = ndarray, ufunc, cuda, random
for _fn in (get_array_module, asarray, asnumpy, empty, zeros, ones, full, empty_like,
            zeros_like, arange, concatenate, dot, matmul, stack, broadcast_to,
            ascontiguousarray, take, where, pad, einsum, argsort, ndim):
    setattr(cupy, _fn.__name__, _fn)
for _name in _UFUNCS:
    setattr(cupy, _name, ufunc(_name, getattr(np, "absolute" if _name == "abs" else _name)))
for _name in ("bool_", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
              "uint64", "float16", "float32", "float64", "complex64", "complex128", "intp",
              "dtype", "newaxis", "inf", "nan", "pi", "e"):
    setattr(cupy, _name, getattr(np, _name))

MODULES = {"cupy": cupy, "cupy.cuda": cuda, "cupy.cuda.runtime": runtime,
           "cupy.cuda.curand": curand, "cupy.random": random, "cupyx": cupyx}


def is_standin(module):
    return getattr(module, "__cupy_standin__", False)


def install():
    """Put the stand-in's modules (MODULES) into sys.modules as cupy, cupy.cuda, ....

    Call it before ``nn.backend`` is imported (it caches the cupy module it
    finds); refuses when a real CuPy or an nn.backend without the stand-in is
    already loaded.
    """
    present = sys.modules.get("cupy")
    if present is not None and not is_standin(present):
        raise RuntimeError("a real CuPy is already imported; the stand-in cannot replace it")
    backend = sys.modules.get("nn.backend")
    if backend is not None and not is_standin(backend._cupy):
        raise RuntimeError("nn.backend was imported before the CuPy stand-in was installed")
    sys.modules.update(MODULES)


@contextlib.contextmanager
def installed():
    """The stand-in as cupy/cupyx, and as nn.backend's CuPy, for a with-block (restored after)."""
    from nn import backend
    saved_modules = {name: sys.modules.get(name) for name in MODULES}
    saved_cupy = backend._cupy
    sys.modules.update(MODULES)
    backend._cupy = cupy
    try:
        yield cupy
    finally:
        backend._cupy = saved_cupy
        for name, module in saved_modules.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
