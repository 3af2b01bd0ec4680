"""Naive reference implementations shared by every backend's tests.

Written for clarity with numpy only (np.pad for the boundaries and explicit
loops over taps), independent of filtkit's code.
"""

import numpy as np

#: filtkit / scipy.ndimage boundary name -> np.pad mode
NP_PAD_MODE = {
    "constant": "constant",
    "zero": "constant",
    "reflect": "symmetric",
    "mirror": "reflect",
    "nearest": "edge",
    "wrap": "wrap",
}

BOUNDARIES = ["constant", "zero", "reflect", "mirror", "nearest", "wrap"]


def np_pad(x, widths, boundary, cval=0.0):
    """np.pad with filtkit's boundary names (large widths allowed)."""
    mode = NP_PAD_MODE[boundary]
    if mode == "constant":
        value = 0.0 if boundary == "zero" else cval
        return np.pad(x, widths, mode="constant", constant_values=value)
    return np.pad(x, widths, mode=mode)


def dilate_kernel(w, dilation):
    """Insert ``dilation - 1`` zeros between the taps on every axis."""
    dilation = np.broadcast_to(dilation, (w.ndim,))
    shape = [d * (k - 1) + 1 for k, d in zip(w.shape, dilation)]
    out = np.zeros(shape, dtype=w.dtype)
    out[tuple(slice(None, None, d) for d in dilation)] = w
    return out


def axis_plan(n, k, mode, stride=1, dilation=1):
    """(offset of output 0, number of outputs) along one axis, scipy.signal's
    centring: K-1 ('full'), (K-1) - (K-1)//2 ('same') or 0 ('valid') for the
    dilated size K, every ``stride``-th output of the stride-1 result."""
    keff = dilation * (k - 1) + 1
    off, length = {"full": (keff - 1, n + keff - 1),
                   "same": ((keff - 1) - (keff - 1) // 2, n),
                   "valid": (0, n - keff + 1)}[mode]
    return off, (length - 1) // stride + 1


def naive_correlate(x, w, mode="same", boundary="constant", cval=0.0, stride=1, dilation=1):
    """Cross-correlation of N-D ``x`` with ``w`` by padding and summing taps.

    Output index ``i`` along an axis reads ``x[i*s + m*d - off]`` for tap
    ``m``, where ``off`` is K-1 ('full'), (K-1) - (K-1)//2 ('same', scipy's
    centring) or 0 ('valid') for the dilated size K.
    """
    x = np.asarray(x, dtype=np.float64)
    wd = dilate_kernel(np.asarray(w, dtype=np.float64), dilation)
    stride = np.broadcast_to(stride, (x.ndim,))
    widths, lengths = [], []
    for n, k in zip(x.shape, wd.shape):
        off, length = axis_plan(n, k, mode)
        widths.append((off, max(0, length + k - 1 - off - n)))
        lengths.append(length)
    xp = np_pad(x, widths, boundary, cval) if mode != "valid" else x
    out = np.zeros(lengths)
    for tap in np.ndindex(*wd.shape):
        sl = tuple(slice(t, t + length) for t, length in zip(tap, lengths))
        out += wd[tap] * xp[sl]
    return out[tuple(slice(None, None, s) for s in stride)]


def naive_pool(x, size, stride, reduce):
    """Pooling over the last two axes with a reduction over each window."""
    x = np.asarray(x, dtype=np.float64)
    windows = np.lib.stride_tricks.sliding_window_view(x, size, axis=(-2, -1))
    windows = windows[..., :: stride[0], :: stride[1], :, :]
    return reduce(windows, axis=(-2, -1))
