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


# --- CNN layers (PyTorch's conventions, the seed's formulas for the gradients) ---

def _pair(v):
    return tuple(int(t) for t in np.broadcast_to(v, (2,)))


def conv_out_size(n, k, s, p, d):
    """PyTorch's Conv2d output size floor((n + 2p - d(k-1) - 1) / s) + 1."""
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def insert_zeros(a, stride):
    """Insert ``stride - 1`` zeros between the entries of the last two axes."""
    s0, s1 = _pair(stride)
    out = np.zeros((*a.shape[:-2], (a.shape[-2] - 1) * s0 + 1, (a.shape[-1] - 1) * s1 + 1))
    out[..., ::s0, ::s1] = a
    return out


def naive_conv2d(x, w, b, stride=1, padding=0, dilation=1):
    """Conv2d forward: x (N, C, H, W), w (O, C, Kh, Kw), b (O,) -> (N, O, Ho, Wo).

    Zero padding ``p0`` rows top and bottom, ``p1`` columns left and right;
    each output channel is the seed's depth sum of 2-D valid correlations.
    """
    x, w, b = (np.asarray(a, dtype=np.float64) for a in (x, w, b))
    (p0, p1), s, d = _pair(padding), _pair(stride), _pair(dilation)
    nb, nc = x.shape[:2]
    no = w.shape[0]
    xp = np.pad(x, [(0, 0), (0, 0), (p0, p0), (p1, p1)])
    ho = conv_out_size(x.shape[2], w.shape[2], s[0], p0, d[0])
    wo = conv_out_size(x.shape[3], w.shape[3], s[1], p1, d[1])
    out = np.zeros((nb, no, ho, wo))
    for n in range(nb):
        for o in range(no):
            out[n, o] = b[o]
            for c in range(nc):
                out[n, o] += naive_correlate(xp[n, c], w[o, c], "valid", stride=s, dilation=d)
    return out


def naive_conv2d_grad_input(dy, w, x_shape, stride=1, padding=0, dilation=1):
    """dL/dx the seed's way: zero-insert the delta (stride), dilate the kernel,
    rotate it by 180 degrees, full-mode correlate, sum over output channels,
    then crop the padding off (zero-extending where the strided delta never
    reached the bottom/right of the padded input)."""
    dy, w = np.asarray(dy, dtype=np.float64), np.asarray(w, dtype=np.float64)
    (p0, p1), d = _pair(padding), _pair(dilation)
    nb, nc, h, wd = x_shape
    no = w.shape[0]
    z = insert_zeros(dy, stride)
    dx = np.zeros(x_shape)
    for n in range(nb):
        for c in range(nc):
            full = 0.0
            for o in range(no):
                rot = dilate_kernel(w[o, c], d)[::-1, ::-1]
                full = full + naive_correlate(z[n, o], rot, "full")
            ext = np.zeros((max(full.shape[0], p0 + h), max(full.shape[1], p1 + wd)))
            ext[: full.shape[0], : full.shape[1]] = full
            dx[n, c] = ext[p0 : p0 + h, p1 : p1 + wd]
    return dx


def naive_conv2d_grad_weight(x, dy, w_shape, stride=1, padding=0, dilation=1):
    """(dL/dw, dL/db) the seed's way: valid-mode correlation of the zero-padded
    input with the zero-inserted delta, sampled every d-th tap, summed over the
    batch; the bias gradient is dy summed over N, H and W."""
    x, dy = np.asarray(x, dtype=np.float64), np.asarray(dy, dtype=np.float64)
    (p0, p1), (d0, d1) = _pair(padding), _pair(dilation)
    no, nc, kh, kw = w_shape
    xp = np.pad(x, [(0, 0), (0, 0), (p0, p0), (p1, p1)])
    z = insert_zeros(dy, stride)
    dw = np.zeros(w_shape)
    for n in range(x.shape[0]):
        for o in range(no):
            for c in range(nc):
                v = naive_correlate(xp[n, c], z[n, o], "valid")
                dw[o, c] += v[: (kh - 1) * d0 + 1 : d0, : (kw - 1) * d1 + 1 : d1]
    return dw, dy.sum(axis=(0, 2, 3))


def _pool_windows(h, w, k, s, p):
    """Yield (i, j, rows, cols) of every pooling window, clipped to the plane."""
    (k0, k1), (s0, s1), (p0, p1) = _pair(k), _pair(s), _pair(p)
    ho, wo = (h + 2 * p0 - k0) // s0 + 1, (w + 2 * p1 - k1) // s1 + 1
    for i in range(ho):
        for j in range(wo):
            r0, c0 = i * s0 - p0, j * s1 - p1
            yield (i, j, range(max(r0, 0), min(r0 + k0, h)),
                   range(max(c0, 0), min(c0 + k1, w)), ho, wo)


def naive_max_pool(x, k, s, p=0):
    """MaxPool2d over the last two axes -> (out, argmax), PyTorch's rules.

    Padding is -inf and never wins; the first maximum in row-major order wins
    ties; a NaN wins over numbers, and among NaNs the last one wins (torch's
    ``val > max || isnan(val)``).  argmax is the flat index r*W + c in the plane.
    """
    x = np.asarray(x)
    h, w = x.shape[-2:]
    planes = x.reshape(-1, h, w).astype(np.float64)
    out = argmax = None
    for i, j, rows, cols, ho, wo in _pool_windows(h, w, k, s, p):
        if out is None:
            out = np.empty((planes.shape[0], ho, wo))
            argmax = np.empty((planes.shape[0], ho, wo), dtype=np.int64)
        flat = [r * w + c for r in rows for c in cols]
        for b in range(planes.shape[0]):
            vals = planes[b].ravel()[flat]
            nans = np.flatnonzero(np.isnan(vals))
            t = nans[-1] if nans.size else int(np.argmax(vals))  # argmax: first max
            out[b, i, j], argmax[b, i, j] = vals[t], flat[t]
    lead = x.shape[:-2]
    return out.reshape(*lead, *out.shape[1:]), argmax.reshape(*lead, *out.shape[1:])


def naive_max_pool_backward(dy, argmax, x_shape):
    """Every dy goes to its window's argmax; overlapping windows add up."""
    h, w = x_shape[-2:]
    dyp = np.asarray(dy, dtype=np.float64).reshape(-1, *dy.shape[-2:])
    amp = np.asarray(argmax).reshape(dyp.shape)
    dx = np.zeros((dyp.shape[0], h * w))
    for b in range(dyp.shape[0]):
        for i, j in np.ndindex(*dyp.shape[1:]):
            dx[b, amp[b, i, j]] += dyp[b, i, j]
    return dx.reshape(x_shape)


def naive_avg_pool(x, k, s, p=0):
    """AvgPool2d over the last two axes, count_include_pad=True: the window sum
    of the zero-padded input divided by k0*k1."""
    x = np.asarray(x, dtype=np.float64)
    (k0, k1), (s0, s1), (p0, p1) = _pair(k), _pair(s), _pair(p)
    xp = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(p0, p0), (p1, p1)])
    return naive_pool(xp, (k0, k1), (s0, s1), np.sum) / (k0 * k1)


def naive_avg_pool_backward(dy, x_shape, k, s, p=0):
    """Every dy / (k0*k1) goes to each position of its window (padding dropped)."""
    (k0, k1), (s0, s1), (p0, p1) = _pair(k), _pair(s), _pair(p)
    dy = np.asarray(dy, dtype=np.float64)
    h, w = x_shape[-2:]
    dxp = np.zeros((*x_shape[:-2], h + 2 * p0, w + 2 * p1))
    for i, j in np.ndindex(*dy.shape[-2:]):
        g = dy[..., i, j, None, None] / (k0 * k1)
        dxp[..., i * s0 : i * s0 + k0, j * s1 : j * s1 + k1] += g
    return dxp[..., p0 : p0 + h, p1 : p1 + w]
