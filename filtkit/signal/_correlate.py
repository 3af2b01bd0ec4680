"""``correlate`` and ``convolve``: modes, boundaries, stride, dilation, channels."""

import numpy as np

from .. import _config
from .._validate import (
    MODES,
    as_float,
    check_array,
    check_axis,
    check_boundary,
    check_choice,
    check_int_tuple,
    check_out,
    float_dtype,
)
from ..backends import cpu, is_device_array, single_threaded_blas

METHODS = ("auto", "direct", "separable", "fft")


def _axis_plan(n, k, mode, stride, dilation):
    """Offset of output 0 and output length along one axis.

    Output ``i`` reads the (extended) input at ``i*stride + m*dilation - off``
    for tap ``m``; the stride-1 result is centred on 'full' as scipy.signal
    does, and striding keeps every ``stride``-th output of it.
    """
    keff = dilation * (k - 1) + 1
    if mode == "full":
        off, length = keff - 1, n + keff - 1
    elif mode == "same":
        off, length = (keff - 1) - (keff - 1) // 2, n
    else:
        off, length = 0, n - keff + 1
    return off, (length - 1) // stride + 1


def _check(x, kernel, mode, boundary, cval, stride, dilation, channel_axis):
    """Every check of the arguments, from ``x``'s shape alone (no copy of ``x``)."""
    kernel = check_array(kernel, "kernel", ndims=(1, 2, 3))
    check_choice(mode, "mode", MODES)
    code, cval = check_boundary(boundary, cval)
    if channel_axis is not None:
        if kernel.ndim == 3 or x.ndim != kernel.ndim + 1:
            raise ValueError(
                f"`kernel` must have one dimension fewer than `x` when `channel_axis` "
                f"is given (a 1-D or 2-D kernel applied to every channel), got x "
                f"{x.shape} and kernel {kernel.shape}"
            )
        channel_axis = check_axis(channel_axis, x.ndim, "channel_axis")
    elif x.ndim != kernel.ndim:
        raise ValueError(
            f"`kernel` must have as many dimensions as `x`, got kernel "
            f"{kernel.shape} and x {x.shape}"
        )
    if kernel.ndim == 3 and mode != "valid":
        raise ValueError(
            f"`mode` must be 'valid' for a 3-D (depth-summing) correlation, got {mode!r}"
        )
    nd = kernel.ndim
    stride = check_int_tuple(stride, "stride", nd)
    dilation = check_int_tuple(dilation, "dilation", nd)
    spatial = x.shape[-nd:] if channel_axis is None else tuple(
        n for a, n in enumerate(x.shape) if a != channel_axis)[-nd:]
    if mode == "valid":
        for n, k, d in zip(spatial, kernel.shape, dilation):
            if d * (k - 1) + 1 > n:
                raise ValueError(
                    f"`kernel` (shape {kernel.shape}, dilation {dilation}) must not be "
                    f"larger than `x` (spatial shape {spatial}) in 'valid' mode"
                )
    return kernel, code, cval, stride, dilation, channel_axis


def _prepare(x, kernel, mode, boundary, cval, stride, dilation, channel_axis):
    x = check_array(x, "x", ndims=(1, 2, 3))
    kernel, code, cval, stride, dilation, channel_axis = _check(
        x, kernel, mode, boundary, cval, stride, dilation, channel_axis)
    xf = as_float(x)
    if channel_axis is not None:
        xf = np.ascontiguousarray(np.moveaxis(xf, channel_axis, 0))
    return xf, kernel, float_dtype(x.dtype), code, cval, stride, dilation, channel_axis


def _rank1_factors(w, dtype):
    """``(col, row)`` with ``outer(col, row) == w`` to rounding, or None.

    The rank is decided by the SVD (second singular value below
    ``max(w.shape) * eps`` of the working dtype relative to the first); the
    factors are a column and a row of ``w`` through its largest entry, which
    keeps integer kernels such as Sobel's exact.
    """
    if w.ndim != 2 or min(w.shape) == 1 or not np.all(np.isfinite(w)):
        return None
    sv = np.linalg.svd(w.astype(np.float64), compute_uv=False)
    if sv[0] == 0 or sv[1] > max(w.shape) * np.finfo(dtype).eps * sv[0]:
        return None
    p, q = np.unravel_index(np.argmax(np.abs(w)), w.shape)
    return w[:, q].copy(), w[p, :] / w[p, q]


def _choose_method(method, w, xf):
    """Resolve ``method`` to 'direct', 'separable' or 'fft' (and factors).

    'auto' only takes the FFT path for finite input: a NaN or infinity would
    spread to every output through the transform.  ``xf`` None (a GPU array):
    never the FFT.
    """
    factors = _rank1_factors(w, w.dtype) if method in ("auto", "separable") else None
    if method == "separable" and factors is None:
        raise ValueError(
            f"`method` 'separable' needs a rank-1 2-D kernel, got shape {w.shape} "
            f"(not separable)"
        )
    if w.ndim == 3 and method in ("separable", "fft"):
        raise ValueError(f"`method` must be 'auto' or 'direct' for a 3-D kernel, got {method!r}")
    if method != "auto":
        return method, factors
    if factors is not None:
        return "separable", factors
    large = w.size >= (_config.FFT_MIN_TAPS_2D if w.ndim == 2 else _config.FFT_MIN_TAPS_1D)
    if xf is not None and w.ndim < 3 and large and np.isfinite(xf).all():
        return "fft", None
    return "direct", None


def _fft(x3, w2, plans, code, cval):
    """Correlation through scipy.fft on the boundary-extended input.

    ``plans`` holds ``(offset, outputs, stride, dilation)`` for the two axes.
    scipy.fft (installed with scikit-image) keeps float32 in single precision
    and runs on every core; numpy.fft was 3.5x slower for float32 here.
    """
    import scipy.fft as sfft

    keff = [d * (k - 1) + 1 for k, (_, _, _, d) in zip(w2.shape, plans)]
    wd = np.zeros(keff, dtype=x3.dtype)
    wd[:: plans[0][3], :: plans[1][3]] = w2
    idx, fshape = [], []
    for axis, ((off, n_out, s, _), k) in enumerate(zip(plans, keff), start=1):
        length = (n_out - 1) * s + 1  # stride-1 outputs needed
        after = max(0, length + k - 1 - off - x3.shape[axis])
        idx.append(cpu.boundary_index(x3.shape[axis], off, after, code))
        fshape.append(sfft.next_fast_len(len(idx[-1]), real=True))
    xp = np.zeros((x3.shape[0], *fshape), dtype=x3.dtype)
    cpu.extend2d(x3, xp, idx[0], idx[1], cval)
    workers = _config.THREADS
    spec = sfft.rfft2(xp, workers=workers)
    spec *= sfft.rfft2(wd[::-1, ::-1], s=fshape, workers=workers)
    full = sfft.irfft2(spec, s=fshape, workers=workers)
    (k0, k1), (_, n0, s0, _), (_, n1, s1, _) = keff, *plans
    return np.ascontiguousarray(full[:, k0 - 1 : k0 - 1 + (n0 - 1) * s0 + 1 : s0,
                                     k1 - 1 : k1 - 1 + (n1 - 1) * s1 + 1 : s1])


def _depth_sum(xf, w, shape, stride, dilation, out):
    """Valid 3-D correlation as the multi-channel (depth-summing) 2-D correlation
    of the CNN layers: each output plane ``z`` sums the kernel's ``Kd`` planes over
    the input planes ``z*s0 + d*d0`` (a gather, skipped when they are all of them)."""
    zo = shape[0]
    kd = w.shape[0]
    if zo == 1 and dilation[0] == 1 and kd == xf.shape[0]:
        planes = xf[None]
    else:
        idx = np.arange(zo)[:, None] * stride[0] + np.arange(kd)[None, :] * dilation[0]
        planes = xf[idx]
    res = np.empty((zo, 1) + shape[1:], dtype=xf.dtype)
    with single_threaded_blas():
        cpu.conv2d(planes, np.ascontiguousarray(w[None]), np.zeros(1, xf.dtype), res,
                   stride[1], stride[2], 0, 0, dilation[1], dilation[2])
    if out is None:
        return res.reshape(shape)
    out[...] = res.reshape(shape)
    return out


def _separable(x3, col, row, plans, code, cval, out):
    """The rank-1 kernel ``outer(col, row)`` as one fused column/row pass."""
    (off0, n0, s0, d0), (off1, n1, s1, d1) = plans
    dt = x3.dtype
    cpu.separable2d(x3, np.ascontiguousarray(col, dtype=dt), np.ascontiguousarray(row, dtype=dt),
                    out, off0, off1, s0, s1, d0, d1, code, cval)
    return out


def _run(xf, w, mode, code, cval, stride, dilation, channel_axis, method, x, kernel, out):
    """Dispatch a prepared correlation to the backend."""
    nd = w.ndim
    method, factors = _choose_method(method, w, xf)
    plans = [
        (*_axis_plan(n, k, mode, s, d), s, d)
        for n, k, s, d in zip(xf.shape[-nd:], w.shape, stride, dilation)
    ]
    spatial = tuple(p[1] for p in plans)
    shape = list(xf.shape[: xf.ndim - nd] + spatial)
    if channel_axis is not None:  # xf holds the channels first
        shape.insert(channel_axis, shape.pop(0))
    shape = tuple(shape)
    if out is not None:
        check_out(out, shape, xf.dtype, x, kernel)
    if nd == 3:
        return _depth_sum(xf, w, shape, stride, dilation, out)
    batch = xf.shape[0] if channel_axis is not None else 1
    x3 = xf.reshape(batch, -1, xf.shape[-1])
    w2 = w.reshape(-1, w.shape[-1])
    if nd == 1:
        plans.insert(0, (0, 1, 1, 1))
    (off0, n0, s0, d0), (off1, n1, s1, d1) = plans
    # write straight into `out` when its layout is the backend's (B, Ho, Wo)
    direct_out = out is not None and method != "fft" and channel_axis in (None, 0)
    if method == "fft":
        dest = _fft(x3, w2, plans, code, cval)
    else:
        if direct_out:
            dest = out.reshape(batch, n0, n1)
        else:
            dest = cpu.empty_apart((batch, n0, n1), xf.dtype, x3)
        if method == "separable":
            _separable(x3, *factors, plans, code, cval, dest)
        else:
            cpu.correlate2d(x3, w2, dest, off0, off1, s0, s1, d0, d1, code, cval)
    if direct_out:
        return out
    result = dest.reshape(xf.shape[: xf.ndim - nd] + spatial)
    if channel_axis is not None:
        result = np.ascontiguousarray(np.moveaxis(result, 0, channel_axis))
    if out is not None:
        out[...] = result
        return out
    return result


def _correlate(x, kernel, flip, mode, boundary, cval, stride, dilation, channel_axis,
               method, out, device=None):
    check_choice(method, "method", METHODS)
    if device is not None:
        check_choice(device, "device", ("cpu", "cuda"))
    if is_device_array(x) or device == "cuda":
        from ._gpu import correlate_gpu

        return correlate_gpu(x, kernel, flip, mode, boundary, cval, stride, dilation,
                             channel_axis, method, out, device)
    xf, kernel, dtype, code, cval, stride, dilation, channel_axis = _prepare(
        x, kernel, mode, boundary, cval, stride, dilation, channel_axis
    )
    w = as_float(kernel, dtype=dtype)
    if flip:
        w = np.ascontiguousarray(w[(slice(None, None, -1),) * w.ndim])
    return _run(xf, w, mode, code, cval, stride, dilation, channel_axis, method, x, kernel, out)


_PARAMS_DOC = """
    Parameters
    ----------
    x : array_like
        Input signal or image: 1-D, 2-D, or 3-D ``(D, H, W)`` with a 3-D
        kernel and ``mode='valid'`` (the seed's depth-summing correlation).
        With ``channel_axis``, one more dimension than the kernel.
    kernel : array_like
        Weights, with as many dimensions as ``x`` (one fewer with
        ``channel_axis``).
    mode : {'full', 'same', 'valid'}
        Output size, with scipy.signal's semantics: 'full' has
        ``n + K - 1`` samples per axis, 'same' has ``n`` and is centred on
        'full' (an even kernel reaches one sample further back than forward),
        'valid' only uses windows that lie inside ``x``.  ``K`` is the dilated
        kernel size ``dilation * (k - 1) + 1``.
    boundary : {'constant', 'zero', 'reflect', 'mirror', 'nearest', 'wrap'}
        How 'same' and 'full' read beyond the edge, as scipy.ndimage's modes of
        these names; 'zero' is 'constant' with ``cval=0``.
    cval : float
        Value beyond the edge for ``boundary='constant'``.
    stride : int or tuple of int
        Step between outputs per axis (>= 1).  The result equals the stride-1
        result sliced ``[::stride]``, so each axis has the seed's
        ``floor((O + 2P - K) / S) + 1`` outputs.
    dilation : int or tuple of int
        Spacing between kernel taps per axis (>= 1), as in PyTorch.
    channel_axis : int or None
        Axis of ``x`` holding colour channels; each channel is filtered with
        the same kernel (scikit-image's convention).
    method : {'auto', 'direct', 'separable', 'fft'}
        'direct' sums the taps (no padded copy of ``x``); 'separable' runs a
        rank-1 kernel as a column pass and a row pass; 'fft' multiplies
        spectra (scipy.fft) of the boundary-extended input.  'auto' picks
        separable for a rank-1 kernel (detected by SVD), FFT for kernels of
        at least ``FFT_MIN_TAPS_2D`` taps (``FFT_MIN_TAPS_1D`` in 1-D; see
        ``filtkit._config``) when ``x`` is finite, direct otherwise; a 3-D
        kernel always runs direct.  Direct and separable agree to rounding;
        the FFT's error is relative to the largest values of ``x`` and the
        kernel (as scipy.signal.fftconvolve's), and a NaN or infinity in
        ``x`` makes every FFT output NaN.
    out : ndarray, optional
        Array of the result's shape and dtype to write into (C-contiguous,
        not overlapping ``x``); checked before any work, and returned.
        Reusing it across calls avoids allocating (and page-faulting) a
        fresh output each time.  (CPU only.)
    device : {None, 'cpu', 'cuda'}
        Where to compute.  None: where ``x`` lives; a GPU array (numba device
        array, CuPy array, CUDA torch tensor: anything with
        ``__cuda_array_interface__``) runs on the GPU and returns a numba device
        array.  'cuda' with a numpy ``x`` runs on the GPU and returns numpy.
        On the GPU: methods 'auto' (never the FFT), 'direct' and 'separable';
        ``channel_axis`` None or 0 for GPU arrays; 3-D kernels only over the
        whole depth with unit depth stride and dilation.

    Returns
    -------
    ndarray
        float32 for float32 (and float16) input, float64 otherwise: integer
        and bool input is converted to float64 by value, never wrapped.

    Notes
    -----
    On the direct and separable paths a NaN in ``x`` reaches every output
    whose window holds it under a non-zero weight (zero weights are skipped,
    as in scipy.ndimage).
"""


def correlate(
    x,
    kernel,
    *,
    mode="same",
    boundary="constant",
    cval=0.0,
    stride=1,
    dilation=1,
    channel_axis=None,
    method="auto",
    out=None,
    device=None,
):
    return _correlate(
        x, kernel, False, mode, boundary, cval, stride, dilation, channel_axis, method, out,
        device,
    )


def convolve(
    x,
    kernel,
    *,
    mode="same",
    boundary="constant",
    cval=0.0,
    stride=1,
    dilation=1,
    channel_axis=None,
    method="auto",
    out=None,
    device=None,
):
    return _correlate(
        x, kernel, True, mode, boundary, cval, stride, dilation, channel_axis, method, out,
        device,
    )


correlate.__doc__ = (
    """Cross-correlation ``y[i] = sum_m w[m] x[i + m]`` (no kernel flip).
"""
    + _PARAMS_DOC
    + """
    Examples
    --------
    >>> import numpy as np
    >>> from filtkit.signal import correlate
    >>> correlate(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 0.0, -1.0]))
    array([-2., -2., -2.,  3.])
    >>> correlate(np.arange(16.0).reshape(4, 4), np.ones((3, 3)), mode="valid")
    array([[45., 54.],
           [81., 90.]])
"""
)

convolve.__doc__ = (
    """True convolution ``y[i] = sum_m w[m] x[i - m]``: the kernel is rotated
    180 degrees (flipped on every axis) and correlated.
"""
    + _PARAMS_DOC
    + """
    Examples
    --------
    >>> import numpy as np
    >>> from filtkit.signal import convolve
    >>> convolve(np.array([1.0, 2.0, 3.0]), np.array([0.0, 1.0, 0.5]), mode="full")
    array([0. , 1. , 2.5, 4. , 1.5])
"""
)
