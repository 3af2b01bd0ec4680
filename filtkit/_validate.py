"""Argument checks and normalisation shared by every public function.

Public functions call these once, at the boundary; below them the backend
functions receive C-contiguous, native-byte-order float32/float64 arrays and
plain integer tuples.

Dtype rules (documented in the README and in each public docstring):

* ``as_float(x, scale=False)`` keeps values: float32 and float64 are kept,
  float16 becomes float32, integer and bool arrays become float64 (values
  unchanged, so nothing can wrap around).
* ``as_float(x, scale=True)`` follows scikit-image's ``img_as_float``:
  unsigned integers are divided by their maximum (uint8 / 255,
  uint16 / 65535), signed integers likewise and clipped at -1, bool becomes
  0.0/1.0, float16 becomes float32, float32/float64 are kept.
"""

import numbers
import operator

import numpy as np

from ._config import BOUNDARY_CODES

MODES = ("full", "same", "valid")
#: largest size, stride, dilation or width accepted (far beyond any real array,
#: well inside the 64-bit index arithmetic of the backend)
MAX_INT = 2**40
BOUNDARIES = ("constant", "zero", "reflect", "mirror", "nearest", "wrap")


def _fmt_choices(choices):
    return "{" + ", ".join(repr(c) for c in choices) + "}"


def check_choice(value, name, choices):
    """Return ``value`` if it is one of ``choices``, else raise ValueError."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(
            f"`{name}` must be one of {_fmt_choices(choices)}, got {value!r}"
        )
    return value


def check_array(x, name, *, ndims=None):
    """Return ``x`` as a real numeric ndarray with one of ``ndims`` dimensions.

    Raises TypeError for complex, object, string and other non-numeric
    dtypes, ValueError for a wrong number of dimensions or an empty array.
    """
    if isinstance(x, np.ndarray):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except (ValueError, TypeError) as exc:
            raise TypeError(
                f"`{name}` must be a real numeric array, could not convert: {exc}"
            ) from None
    kind = arr.dtype.kind
    if kind == "c":
        raise TypeError(f"`{name}` must be real, got complex dtype {arr.dtype}")
    if kind not in "biuf":
        raise TypeError(
            f"`{name}` must be a real numeric array, got dtype {arr.dtype}"
        )
    if ndims is not None and arr.ndim not in ndims:
        want = " or ".join(str(n) for n in ndims)
        raise ValueError(
            f"`{name}` must be {want}-dimensional, got {arr.ndim} dimensions "
            f"(shape {arr.shape})"
        )
    if arr.size == 0:
        raise ValueError(f"`{name}` must not be empty, got shape {arr.shape}")
    return arr


def float_dtype(dtype):
    """The float dtype that ``as_float`` gives for ``dtype``."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return np.dtype(np.float64) if dtype.itemsize > 4 else np.dtype(np.float32)
    return np.dtype(np.float64)


def as_float(x, *, scale=False, dtype=None):
    """Convert a checked array to a C-contiguous native float array.

    Parameters
    ----------
    x : ndarray
        Output of :func:`check_array`.
    scale : bool
        Apply scikit-image's ``img_as_float`` scaling to integer and bool
        input (see the module docstring); otherwise keep values.
    dtype : dtype, optional
        Force this float dtype instead of the one derived from ``x``.
    """
    target = float_dtype(x.dtype) if dtype is None else np.dtype(dtype)
    kind = x.dtype.kind
    if scale and kind in "ui":
        info = np.iinfo(x.dtype)
        y = np.multiply(x, 1.0 / info.max, dtype=np.float64)
        if kind == "i":
            np.maximum(y, -1.0, out=y)
        x = y
    return np.ascontiguousarray(x, dtype=target.newbyteorder("="))


def check_int_tuple(value, name, n, *, minimum=1):
    """Normalise an int or a length-``n`` sequence of ints to a tuple.

    Every entry must be an integer (bool excluded) ``>= minimum``.
    """
    bad_type = TypeError(f"`{name}` must be an int or a sequence of ints, got {value!r}")
    if isinstance(value, (str, bytes)) or value is None:
        raise bad_type
    try:
        items = list(value)
    except TypeError:
        items = [value] * n
    if len(items) != n:
        raise ValueError(
            f"`{name}` must be an int or a sequence of {n} ints, "
            f"got {len(items)} values: {value!r}"
        )
    out = []
    for item in items:
        if isinstance(item, (bool, np.bool_)):
            raise bad_type
        try:
            v = operator.index(item)
        except TypeError:
            raise bad_type from None
        if not minimum <= v <= MAX_INT:
            raise ValueError(f"`{name}` must be in [{minimum}, {MAX_INT}], got {value!r}")
        out.append(int(v))
    return tuple(out)


def check_real(value, name, *, minimum=None, strict=False, finite=True):
    """Return ``value`` as a Python float; TypeError if it is not a real number.

    ValueError for NaN or infinity unless ``finite=False`` (only ``cval``
    may be NaN or infinite, as in scipy.ndimage), or below ``minimum``.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (numbers.Real, np.floating, np.integer)
    ):
        raise TypeError(f"`{name}` must be a real number, got {value!r}")
    v = float(value)
    if finite and not np.isfinite(v):
        raise ValueError(f"`{name}` must be finite, got {value!r}")
    if minimum is not None and (v < minimum or (strict and v == minimum)):
        op = ">" if strict else ">="
        raise ValueError(f"`{name}` must be {op} {minimum}, got {value!r}")
    return v


def check_boundary(boundary, cval, *, name="boundary"):
    """Resolve a boundary name and ``cval`` to ``(code, cval)`` for the backend.

    ``name`` is the parameter's public name: ``boundary`` for
    correlate/convolve, ``mode`` for the scikit-image style filters.
    """
    check_choice(boundary, name, BOUNDARIES)
    cval = check_real(cval, "cval", finite=False)
    if boundary == "zero":
        return BOUNDARY_CODES["constant"], 0.0
    return BOUNDARY_CODES[boundary], cval


def check_axis(axis, ndim, name):
    """Normalise a possibly negative axis; ValueError when out of range."""
    if isinstance(axis, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be an int, got {axis!r}")
    try:
        a = operator.index(axis)
    except TypeError:
        raise TypeError(f"`{name}` must be an int, got {axis!r}") from None
    if not -ndim <= a < ndim:
        raise ValueError(
            f"`{name}` must be in [{-ndim}, {ndim - 1}] for a {ndim}-D array, got {axis}"
        )
    return a % ndim


def check_out(out, shape, dtype, *inputs):
    """Validate a caller's output array before any work is done.

    It must be a plain ndarray of exactly ``shape`` and ``dtype``, writeable,
    C-contiguous, and share no memory with any of ``inputs``.
    """
    if type(out) is not np.ndarray:
        raise TypeError(f"`out` must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != tuple(shape) or out.dtype != dtype:
        raise ValueError(
            f"`out` must have shape {tuple(shape)} and dtype {np.dtype(dtype)}, "
            f"got {out.shape} {out.dtype}"
        )
    if not (out.flags.c_contiguous and out.flags.writeable):
        raise ValueError("`out` must be a writeable C-contiguous array")
    if any(isinstance(a, np.ndarray) and np.shares_memory(out, a) for a in inputs):
        raise ValueError("`out` must not share memory with the inputs")
