"""Padding and the seed's size formulas: ``pad``, ``output_size``, ``same_padding``."""

import numpy as np

from .._validate import check_array, check_boundary, check_int_tuple
from ..backends import cpu


def _as_int(value, name, minimum):
    return check_int_tuple(value, name, 1, minimum=minimum)[0]


def _pad_widths(width, ndim):
    """Normalise ``width`` the way np.pad does: n, (b, a) or ((b, a), ...)."""
    arr = np.asarray(width, dtype=object)
    if arr.ndim == 0:
        arr = np.array([[width, width]] * ndim, dtype=object)
    elif arr.shape == (1,):
        arr = np.array([[width[0], width[0]]] * ndim, dtype=object)
    elif arr.shape in ((2,), (1, 2)):
        arr = np.array([list(arr.reshape(2))] * ndim, dtype=object)
    if arr.shape != (ndim, 2):
        raise ValueError(
            f"`width` must be an int, a (before, after) pair or {ndim} such pairs, "
            f"got {width!r}"
        )
    return [(_as_int(b, "width", 0), _as_int(a, "width", 0)) for b, a in arr]


def pad(x, width, *, mode="constant", cval=0.0):
    """Pad an array with one of filtkit's boundary modes.

    The padded values are exactly the ones the filters read beyond the edge,
    so ``pad`` shows what each boundary mode means.

    Parameters
    ----------
    x : array_like
        Real array of any number of dimensions.
    width : int or sequence
        ``n`` on every side, ``(before, after)`` for every axis, or one
        ``(before, after)`` pair per axis, as :func:`numpy.pad`.
    mode : {'constant', 'zero', 'reflect', 'mirror', 'nearest', 'wrap'}
        scipy.ndimage's names; the :func:`numpy.pad` equivalents are
        constant, constant (0), symmetric, reflect, edge and wrap.  Widths
        larger than the array keep extending periodically, as in np.pad.
    cval : float
        Fill value for ``mode='constant'``.  For an integer array it must be
        an integer the dtype can hold (nothing is ever wrapped or truncated).

    Returns
    -------
    ndarray
        Padded array of the same dtype as ``x``.

    Examples
    --------
    >>> from filtkit.signal import pad
    >>> pad([1, 2, 3], 2, mode="reflect")
    array([2, 1, 1, 2, 3, 3, 2])
    >>> pad([1, 2, 3], 2, mode="mirror")
    array([3, 2, 1, 2, 3, 2, 1])
    """
    x = check_array(x, "x")
    code, cval = check_boundary(mode, cval, name="mode")
    widths = _pad_widths(width, x.ndim)
    if code == 0 and x.dtype.kind in "biu":
        info = np.iinfo(x.dtype) if x.dtype.kind != "b" else None
        lo, hi = (0, 1) if info is None else (info.min, info.max)
        if not np.isfinite(cval) or cval != int(cval) or not lo <= int(cval) <= hi:
            raise ValueError(
                f"`cval` must be an integer in [{lo}, {hi}] to pad a {x.dtype} array, "
                f"got {cval!r}"
            )
    out = x
    for axis, (before, after) in enumerate(widths):
        out = _extend(out, axis, before, after, code, cval)
    return out


def _extend(x, axis, before, after, code, cval):
    """``x`` extended along ``axis`` by the boundary mode with ``code``.

    Uses the backend's :func:`~filtkit.backends.cpu.boundary_index`, the same
    index map the filters read through, so ``pad`` shows exactly what they
    see beyond the edge.
    """
    idx = cpu.boundary_index(x.shape[axis], before, after, code)
    out = np.take(x, np.maximum(idx, 0), axis=axis)
    if code == 0:
        sl = [slice(None)] * x.ndim
        sl[axis] = idx < 0
        out[tuple(sl)] = cval
    return out


def output_size(n, k, *, stride=1, padding=0, dilation=1):
    """The seed's output size ``N = floor((O + 2P - K) / S) + 1``.

    ``K`` is the dilated kernel size ``dilation * (k - 1) + 1``, as in
    PyTorch's ``Conv2d``.

    Parameters
    ----------
    n : int
        Input length ``O`` (>= 1).
    k : int
        Kernel length (>= 1).
    stride : int
        Step ``S`` between outputs (>= 1).
    padding : int
        Zeros ``P`` added on each side (>= 0).
    dilation : int
        Spacing between kernel taps (>= 1).

    Returns
    -------
    int

    Examples
    --------
    >>> from filtkit.signal import output_size
    >>> output_size(28, 5)
    24
    >>> output_size(28, 5, padding=2)
    28
    >>> output_size(7, 3, stride=2)
    3
    """
    n = _as_int(n, "n", 1)
    k = _as_int(k, "k", 1)
    stride = _as_int(stride, "stride", 1)
    padding = _as_int(padding, "padding", 0)
    dilation = _as_int(dilation, "dilation", 1)
    keff = dilation * (k - 1) + 1
    if keff > n + 2 * padding:
        raise ValueError(
            f"`k` (dilated size {keff}) must not exceed the padded input size "
            f"{n + 2 * padding}"
        )
    return (n + 2 * padding - keff) // stride + 1


def same_padding(k, *, dilation=1):
    """The seed's padding ``P = (K - 1) / 2`` that keeps the size at stride 1.

    Parameters
    ----------
    k : int
        Kernel length; its dilated size ``dilation * (k - 1) + 1`` must be odd
        for the padding to be the same on both sides.
    dilation : int
        Spacing between kernel taps (>= 1).

    Returns
    -------
    int

    Examples
    --------
    >>> from filtkit.signal import same_padding
    >>> same_padding(3), same_padding(5), same_padding(3, dilation=2)
    (1, 2, 2)
    """
    k = _as_int(k, "k", 1)
    dilation = _as_int(dilation, "dilation", 1)
    keff = dilation * (k - 1) + 1
    if keff % 2 == 0:
        raise ValueError(
            f"`k` must give an odd dilated size for symmetric 'same' padding, got "
            f"size {keff}; an even kernel needs one more on one side "
            f"(correlate(..., mode='same') centres it as scipy.signal does)"
        )
    return (keff - 1) // 2


__all__ = ["pad", "output_size", "same_padding"]
