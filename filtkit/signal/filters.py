"""Image filters with scikit-image's names, parameters, defaults and results.

Every filter converts its input as ``skimage.util.img_as_float`` does
(uint8 / 255, uint16 / 65535, bool 0/1; float32 stays float32, float16
becomes float32) unless ``preserve_range=True`` where scikit-image offers it,
and returns a new float array.  They are separable: two filtered axes run as
one fused column/row pass (:func:`filtkit.backends.cpu.separable2d`; the
2-D edge magnitude as :func:`~filtkit.backends.cpu.gradient_magnitude2d`),
other axis counts as one-dimensional passes along each axis, so they agree
with scikit-image 0.26 to rounding (1e-12 in float64) for every ``mode``.

Given a GPU image (or ``device='cuda'``) each filter makes the same checks,
then runs on the CUDA twins through :mod:`filtkit.signal._gpu` (the same
passes; a device array comes back, or numpy for a numpy input).
"""

import numpy as np

from .._config import BOUNDARY_CODES
from .._validate import (
    as_float,
    check_axis,
    check_boundary,
    check_out,
    check_real,
    float_dtype,
)
from ..backends import as_device_array, cpu, is_device_array
from . import _gpu
from . import kernels as _k
from ._gpu import source as _source

_REFLECT = BOUNDARY_CODES["reflect"]
_EDGE = np.array([-1.0, 0.0, 1.0])  # correlation form of skimage's convolution [1, 0, -1]


def _correlate_axis(x, weights, axis, code, cval):
    """scipy.ndimage.correlate1d(x, weights, axis, mode, cval) on float x."""
    w = np.ascontiguousarray(weights, dtype=x.dtype)
    off = len(w) // 2
    shape = x.shape
    a = int(np.prod(shape[:axis], dtype=np.int64))
    n = shape[axis]
    b = int(np.prod(shape[axis + 1 :], dtype=np.int64))
    out = cpu.empty_apart(x.shape, x.dtype, x)
    if b == 1:  # filtering along the last axis: rows of length n
        cpu.correlate2d(
            x.reshape(a, 1, n), w.reshape(1, -1), out.reshape(a, 1, n),
            0, off, 1, 1, 1, 1, code, cval,
        )
    else:  # whole rows of length b combine, one tap at a time
        cpu.correlate2d(
            x.reshape(a, n, b), w.reshape(-1, 1), out.reshape(a, n, b),
            off, 0, 1, 1, 1, 1, code, cval,
        )
    return out


def _per_axis(value, name, ndim, channel_axis):
    """Normalise a scalar-or-sequence parameter to one value per axis.

    With ``channel_axis`` the sequence covers the spatial axes and the channel
    axis gets 0 (no filtering across channels).
    """
    spatial = ndim - (channel_axis is not None)
    vals = np.atleast_1d(np.asarray(value, dtype=object))
    if vals.ndim != 1 or len(vals) not in (1, spatial):
        raise ValueError(
            f"`{name}` must be a scalar or a sequence of {spatial} values "
            f"(one per spatial axis), got {value!r}"
        )
    vals = [check_real(v, name, minimum=0.0) for v in vals]
    vals = vals * spatial if len(vals) == 1 else vals
    if channel_axis is not None:
        vals.insert(channel_axis, 0.0)
    return vals


def _channel_axis(channel_axis, ndim):
    return None if channel_axis is None else check_axis(channel_axis, ndim, "channel_axis")


def _separable(x, weights, code, cval):
    """Correlate ``x`` along every axis whose entry of ``weights`` is not None.

    Exactly two filtered axes (a grey image, or a colour image with its
    channel axis left alone) run as one fused pass with the 2-D kernel's
    meaning in constant mode: ``cval`` beyond every edge.  For weights that
    sum to 1 (Gaussian, box) that equals scipy.ndimage's sequence of 1-D
    passes to rounding; for an edge filter it equals ndimage's 2-D convolution.
    Other axis counts run as 1-D passes.
    """
    axes = [a for a, w in enumerate(weights) if w is not None]
    if len(axes) != 2:
        for a in axes:
            x = _correlate_axis(x, weights[a], a, code, cval)
        return x
    moved = np.ascontiguousarray(np.moveaxis(x, axes, (-2, -1)))
    batch = moved.reshape(-1, *moved.shape[-2:])
    out = cpu.empty_apart(batch.shape, batch.dtype, batch)
    col, row = (np.ascontiguousarray(weights[a], dtype=x.dtype) for a in axes)
    cpu.separable2d(batch, col, row, out, len(col) // 2, len(row) // 2,
                    1, 1, 1, 1, code, cval)
    return np.ascontiguousarray(np.moveaxis(out.reshape(moved.shape), (-2, -1), axes))


def _gaussian_weights(sigmas, truncate):
    """The 1-D Gaussian of each axis in correlation form; None where sigma is 0."""
    return [_k.gaussian1d(sg, truncate=truncate)[::-1] if sg > 1e-15 else None
            for sg in sigmas]


def _gaussian_float(x, sigmas, code, cval, truncate):
    return _separable(x, _gaussian_weights(sigmas, truncate), code, cval)


def gaussian(
    image,
    sigma=1.0,
    *,
    mode="nearest",
    cval=0,
    preserve_range=False,
    truncate=4.0,
    channel_axis=None,
    out=None,
    device=None,
):
    """Multi-dimensional Gaussian filter, as ``skimage.filters.gaussian``.

    Parameters
    ----------
    image : array_like
        Input image (any number of dimensions).
    sigma : float or sequence of float
        Standard deviation per axis (>= 0; 0 leaves an axis unfiltered).
    mode : {'nearest', 'reflect', 'mirror', 'wrap', 'constant', 'zero'}
        Boundary handling, as scipy.ndimage.
    cval : float
        Value beyond the edge for ``mode='constant'``.
    preserve_range : bool
        Keep integer values instead of scaling them as ``img_as_float``.
    truncate : float
        Radius of the kernel in standard deviations: ``int(truncate*sigma+0.5)``.
    channel_axis : int or None
        Axis of colour channels, each filtered separately.
    out : ndarray, optional
        Array of the image's shape and the result's dtype (float32 for
        float32/float16 input, else float64) to write the result into.
    device : {None, 'cpu', 'cuda'}
        As :func:`filtkit.signal.correlate`: a GPU ``image`` (float32/float64,
        C-contiguous; a device array comes back) or ``device='cuda'`` (numpy in
        and out) runs on the GPU (``out`` is CPU only).

    Returns
    -------
    ndarray
        Filtered image (float32 for float32 input, else float64).

    Examples
    --------
    >>> import numpy as np
    >>> from filtkit.signal import gaussian
    >>> a = np.zeros((3, 3)); a[1, 1] = 1
    >>> gaussian(a, sigma=1, mode="reflect").round(4)
    array([[0.0877, 0.1208, 0.0877],
           [0.1208, 0.1663, 0.1208],
           [0.0877, 0.1208, 0.0877]])
    """
    image, gpu = _source(image, device)
    channel_axis = _channel_axis(channel_axis, image.ndim)
    sigmas = _per_axis(sigma, "sigma", image.ndim, channel_axis)
    code, cval = check_boundary(mode, cval, name="mode")
    truncate = check_real(truncate, "truncate", minimum=0.0)
    weights = _gaussian_weights(sigmas, truncate)
    if gpu is not None:
        if out is not None:
            raise ValueError("`out` is supported on the CPU only")
        return _gpu.separable_filter(gpu, weights, code, cval, scale=not preserve_range)
    if out is not None:
        check_out(out, image.shape, float_dtype(image.dtype), image)
    x = as_float(image, scale=not preserve_range)
    result = _separable(x, weights, code, cval)
    if out is not None:
        out[...] = result
        return out
    return result.copy() if np.shares_memory(result, image) else result


def uniform(
    image,
    size=3,
    *,
    mode="reflect",
    cval=0.0,
    preserve_range=False,
    channel_axis=None,
    device=None,
):
    """Box (mean) blur, as ``scipy.ndimage.uniform_filter`` on ``img_as_float``.

    scikit-image has no uniform filter; the name, ``size`` and the default
    ``mode='reflect'`` follow scipy.ndimage, the conversion and
    ``preserve_range``/``channel_axis`` follow scikit-image.  An even size
    puts the extra sample before the centre, as scipy.ndimage does.

    Parameters
    ----------
    image : array_like
        Input image.
    size : int or sequence of int
        Window length per spatial axis (>= 1).
    mode, cval, preserve_range, channel_axis, device
        As :func:`gaussian`.

    Returns
    -------
    ndarray

    Examples
    --------
    >>> import numpy as np
    >>> from filtkit.signal import uniform
    >>> uniform(np.array([0.0, 0.0, 3.0, 0.0, 0.0]), 3)
    array([0., 1., 1., 1., 0.])
    """
    image, gpu = _source(image, device)
    channel_axis = _channel_axis(channel_axis, image.ndim)
    sizes = _per_axis(size, "size", image.ndim, channel_axis)
    code, cval = check_boundary(mode, cval, name="mode")
    for axis, s in enumerate(sizes):
        if s != int(s) or (s < 1 and axis != channel_axis):
            raise ValueError(f"`size` must be integers >= 1, got {size!r}")
    weights = [np.full(int(s), 1.0 / int(s)) if s > 1 else None for s in sizes]
    if gpu is not None:
        return _gpu.separable_filter(gpu, weights, code, cval, scale=not preserve_range)
    x = as_float(image, scale=not preserve_range)
    x = _separable(x, weights, code, cval)
    return x.copy() if np.shares_memory(x, image) else x


def _mask_keep(mask, shape):
    """``mask`` (array_like of bool, on the host or the GPU) eroded by a full 3^n
    neighbourhood, as a host bool array of ``shape``; None for no mask."""
    if mask is None:
        return None
    if is_device_array(mask):
        mask = as_device_array(mask).copy_to_host()
    mask = np.asarray(mask)
    if mask.shape != tuple(shape):
        raise ValueError(
            f"`mask` must have the image's shape {tuple(shape)}, got {mask.shape}"
        )
    count = as_float(mask.astype(bool), dtype=np.float64)
    for axis in range(count.ndim):
        count = _correlate_axis(count, np.ones(3), axis, 0, 0.0)
    return count == 3**count.ndim


def _mask_result(result, mask):
    """Zero the result outside ``mask`` eroded by a full 3^n neighbourhood."""
    if mask is None:
        return result
    result *= _mask_keep(mask, result.shape)
    return result


def _edge_filter(image, smooth, axis, mode, cval, mask, device=None, ndims=None):
    image, gpu = _source(image, device, ndims=ndims)
    code, cval = check_boundary(mode, cval, name="mode")
    ndim = image.ndim
    if axis is None:
        axes = list(range(ndim))
    elif np.ndim(axis) == 0:
        axes = [check_axis(axis, ndim, "axis")]
    else:
        axes = [check_axis(a, ndim, "axis") for a in axis]
    if not axes:
        raise ValueError("`axis` must name at least one axis, got an empty sequence")
    if gpu is not None:
        return _gpu.edge_filter(gpu, _EDGE, smooth, axes, code, cval,
                                _mask_keep(mask, image.shape))
    x = as_float(image, scale=True)
    if ndim == 2 and sorted(axes) == [0, 1]:
        out = cpu.empty_apart(x.shape, x.dtype, x)
        cpu.gradient_magnitude2d(x[None], _EDGE.astype(x.dtype), smooth.astype(x.dtype),
                                 out[None], code, cval)
        return _mask_result(out, mask)
    if ndim == 2:
        gradients = [
            _separable(x, [_EDGE, smooth] if a == 0 else [smooth, _EDGE], code, cval)
            for a in axes
        ]
        return _mask_result(_magnitude(gradients) if len(axes) > 1 else gradients[0], mask)
    # ndimage's N-D convolution sees cval beyond every edge; after the edge
    # pass that constant has become cval * sum([-1, 0, 1]) = 0, so the
    # smoothing passes read 0 there in constant mode.
    smooth_cval = 0.0 if code == BOUNDARY_CODES["constant"] else cval
    gradients = []
    for edge_dim in axes:
        r = _correlate_axis(x, _EDGE, edge_dim, code, cval)
        for smooth_dim in range(ndim):
            if smooth_dim != edge_dim:
                r = _correlate_axis(r, smooth, smooth_dim, code, smooth_cval)
        gradients.append(r)
    return _mask_result(_magnitude(gradients) if len(axes) > 1 else gradients[0], mask)


def _magnitude(gradients):
    """``sqrt(sum(g**2) / ndim)`` in scikit-image's order of operations."""
    output = gradients[0] * gradients[0]
    for g in gradients[1:]:
        g *= g
        output += g
    np.sqrt(output, out=output)
    output /= np.sqrt(output.ndim, dtype=output.dtype)
    return output


_EDGE_DOC = """{title}, as ``skimage.filters.{name}``.

    The derivative kernel ``[1, 0, -1]`` (convolved) along each axis in
    ``axis``, smoothed with ``{smooth}`` along every other axis; with several
    axes the result is ``sqrt(sum(g_i**2) / ndim)``.  A colour image is
    treated as a volume (scikit-image's edge filters have no channel_axis).

    Parameters
    ----------
    image : array_like
        Input image, any number of dimensions.
    mask : array_like of bool, optional
        Only keep results inside the mask eroded by one pixel.
    axis : int or sequence of int, optional
        Axes to differentiate along; all by default.
    mode : {{'reflect', 'mirror', 'nearest', 'wrap', 'constant', 'zero'}}
        Boundary handling, default 'reflect'.
    cval : float
        Value beyond the edge for ``mode='constant'``.
    device : {{None, 'cpu', 'cuda'}}
        As :func:`filtkit.signal.gaussian`: a GPU ``image`` or ``device='cuda'``
        runs on the GPU (every ``axis``, ``mode`` and ``mask`` too).

    Returns
    -------
    ndarray
        Float image of the input's shape.

    Examples
    --------
    >>> import numpy as np
    >>> from filtkit.signal import {name}
    >>> step = np.repeat([[0.0, 0.0, 1.0, 1.0]], 3, axis=0)
    >>> {name}(step, axis=1)[1]
    array([0., 1., 1., 0.])
"""

_SMOOTH = {
    "sobel": np.array([1.0, 2.0, 1.0]) / 4,
    "prewitt": np.full(3, 1 / 3),
    "scharr": np.array([3.0, 10.0, 3.0]) / 16,
}


def sobel(image, mask=None, *, axis=None, mode="reflect", cval=0.0, device=None):
    return _edge_filter(image, _SMOOTH["sobel"], axis, mode, cval, mask, device)


def prewitt(image, mask=None, *, axis=None, mode="reflect", cval=0.0, device=None):
    return _edge_filter(image, _SMOOTH["prewitt"], axis, mode, cval, mask, device)


def scharr(image, mask=None, *, axis=None, mode="reflect", cval=0.0, device=None):
    return _edge_filter(image, _SMOOTH["scharr"], axis, mode, cval, mask, device)


for _fn, _title, _smooth_doc in [
    (sobel, "Sobel edge filter", "[1, 2, 1] / 4"),
    (prewitt, "Prewitt edge filter", "[1, 1, 1] / 3"),
    (scharr, "Scharr edge filter", "[3, 10, 3] / 16"),
]:
    _fn.__doc__ = _EDGE_DOC.format(title=_title, name=_fn.__name__, smooth=_smooth_doc)


def _make_directional(base, axis, direction):
    smooth = _SMOOTH[base.__name__]

    def directional(image, mask=None, *, device=None):
        return _edge_filter(image, smooth, axis, "reflect", 0.0, mask, device, ndims=(2,))

    name = f"{base.__name__}_{'h' if axis == 0 else 'v'}"
    directional.__name__ = directional.__qualname__ = name
    directional.__doc__ = f"""{base.__name__.capitalize()} derivative of a 2-D image, axis {axis}.

    Finds {direction} edges.

    Same as ``{base.__name__}(image, mask, axis={axis}, device=device)``; matches
    ``skimage.filters.{name}``.

    Examples
    --------
    >>> import numpy as np
    >>> from filtkit.signal import {name}
    >>> {name}(np.eye(4)).shape
    (4, 4)
    """
    return directional


sobel_h = _make_directional(sobel, 0, "horizontal")
sobel_v = _make_directional(sobel, 1, "vertical")
prewitt_h = _make_directional(prewitt, 0, "horizontal")
prewitt_v = _make_directional(prewitt, 1, "vertical")
scharr_h = _make_directional(scharr, 0, "horizontal")
scharr_v = _make_directional(scharr, 1, "vertical")


def _roberts(image, diagonals, mask, device):
    """Roberts' cross along each of ``diagonals``; with both, their magnitude."""
    image, gpu = _source(image, device, ndims=(2,))
    # ndi.convolve with a 2x2 kernel = correlation with the rotated kernel,
    # anchored at its top-left tap, mode 'reflect'.
    kernels = [np.ascontiguousarray(_k.roberts(d)[::-1, ::-1]) for d in diagonals]
    if gpu is not None:
        return _gpu.roberts(gpu, kernels, _mask_keep(mask, image.shape))
    x = as_float(image, scale=True)
    grads = []
    for w in kernels:
        out = cpu.empty_apart(x.shape, x.dtype, x)
        cpu.correlate2d(x[None], w.astype(x.dtype), out[None], 0, 0, 1, 1, 1, 1, _REFLECT,
                        0.0)
        grads.append(_mask_result(out, mask))
    if len(grads) == 1:
        return grads[0]
    out = np.sqrt(grads[0] ** 2 + grads[1] ** 2)
    out /= np.sqrt(2)
    return out


def roberts_pos_diag(image, mask=None, *, device=None):
    return _roberts(image, ["positive"], mask, device)


def roberts_neg_diag(image, mask=None, *, device=None):
    return _roberts(image, ["negative"], mask, device)


for _fn, _diag in [(roberts_pos_diag, "positive"), (roberts_neg_diag, "negative")]:
    _fn.__doc__ = f"""Roberts cross along the {_diag} diagonal, as scikit-image's {_fn.__name__}.

    Parameters
    ----------
    image : array_like
        2-D image.
    mask : array_like of bool, optional
        Only keep results inside the mask eroded by one pixel.
    device : {{None, 'cpu', 'cuda'}}
        As :func:`gaussian`: a GPU ``image`` or ``device='cuda'`` runs on the GPU.

    Returns
    -------
    ndarray

    Examples
    --------
    >>> import numpy as np
    >>> from filtkit.signal import {_fn.__name__}
    >>> {_fn.__name__}(np.eye(3)).shape
    (3, 3)
    """


def roberts(image, mask=None, *, device=None):
    """Roberts cross edge magnitude ``sqrt(pos**2 + neg**2) / sqrt(2)``.

    Parameters
    ----------
    image : array_like
        2-D image.
    mask : array_like of bool, optional
        Only keep results inside the mask eroded by one pixel.
    device : {None, 'cpu', 'cuda'}
        As :func:`gaussian`: a GPU ``image`` or ``device='cuda'`` runs on the GPU.

    Returns
    -------
    ndarray

    Examples
    --------
    >>> import numpy as np
    >>> from filtkit.signal import roberts
    >>> roberts(np.eye(3)).round(3)
    array([[0.   , 0.707, 0.   ],
           [0.707, 0.   , 1.   ],
           [0.   , 1.   , 0.   ]])
    """
    return _roberts(image, ["positive", "negative"], mask, device)


def laplace(image, ksize=3, mask=None, *, device=None):
    """Laplace operator, as ``skimage.filters.laplace``.

    ``2 * ndim`` at the centre and -1 at each face neighbour (the negative
    of ``scipy.ndimage.laplace``), boundary 'reflect'.  ``ksize`` is accepted
    and, as in scikit-image, only 3 is used.

    Parameters
    ----------
    image : array_like
        Input image, any number of dimensions.
    ksize : int
        Kept for compatibility with scikit-image.
    mask : array_like of bool, optional
        Only keep results inside the mask eroded by one pixel.
    device : {None, 'cpu', 'cuda'}
        As :func:`gaussian`: a GPU ``image`` or ``device='cuda'`` runs on the GPU.

    Returns
    -------
    ndarray

    Examples
    --------
    >>> import numpy as np
    >>> from filtkit.signal import laplace
    >>> laplace(np.array([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]))
    array([[ 0., -1.,  0.],
           [-1.,  4., -1.],
           [ 0., -1.,  0.]])
    """
    image, gpu = _source(image, device)
    lap = np.array([-1.0, 2.0, -1.0])
    if gpu is not None:
        return _gpu.laplace(gpu, lap, _mask_keep(mask, image.shape))
    x = as_float(image, scale=True)
    out = np.zeros_like(x)
    for axis in range(x.ndim):
        out += _correlate_axis(x, lap, axis, _REFLECT, 0.0)
    return _mask_result(out, mask)


def unsharp_mask(image, radius=1.0, amount=1.0, preserve_range=False, *, channel_axis=None,
                 device=None):
    """Unsharp masking, as ``skimage.filters.unsharp_mask``.

    ``image + amount * (image - gaussian(image, radius, mode='reflect'))``,
    clipped to [0, 1] ([-1, 1] when the image has negative values) unless
    ``preserve_range=True``.

    Parameters
    ----------
    image : array_like
        Input image.
    radius : float or sequence of float
        Sigma of the Gaussian blur per spatial axis.
    amount : float
        Strength of the sharpening; 0 or negative allowed.
    preserve_range : bool
        Keep integer values instead of ``img_as_float`` scaling, and skip
        the clipping.
    channel_axis : int or None
        Axis of colour channels, each sharpened separately.
    device : {None, 'cpu', 'cuda'}
        As :func:`gaussian`: a GPU ``image`` or ``device='cuda'`` runs on the GPU.

    Returns
    -------
    ndarray

    Examples
    --------
    >>> import numpy as np
    >>> from filtkit.signal import unsharp_mask
    >>> a = np.full((5, 5), 100, dtype=np.uint8); a[2, 2] = 120
    >>> float(unsharp_mask(a, radius=0.5, amount=2)[2, 2].round(2))
    0.53
    """
    image, gpu = _source(image, device)
    channel_axis = _channel_axis(channel_axis, image.ndim)
    amount = check_real(amount, "amount")
    radii = _per_axis(radius, "radius", image.ndim, channel_axis)
    if gpu is not None:
        return _gpu.unsharp_mask(gpu, _gaussian_weights(radii, 4.0), amount,
                                 preserve_range=preserve_range)
    fimg = as_float(image, scale=not preserve_range)
    blurred = _gaussian_float(fimg, radii, _REFLECT, 0.0, 4.0)
    result = fimg + (fimg - blurred) * fimg.dtype.type(amount)
    if not preserve_range:
        lo = -1.0 if np.any(fimg < 0) else 0.0
        np.clip(result, lo, 1.0, out=result)
    return result


def difference_of_gaussians(
    image,
    low_sigma,
    high_sigma=None,
    *,
    mode="nearest",
    cval=0,
    channel_axis=None,
    truncate=4.0,
    device=None,
):
    """Band-pass by subtracting two Gaussian blurs, as scikit-image.

    ``gaussian(image, low_sigma) - gaussian(image, high_sigma)``;
    ``high_sigma`` defaults to ``1.6 * low_sigma`` and must be at least
    ``low_sigma`` on every axis.

    Parameters
    ----------
    image : array_like
        Input image (converted as ``img_as_float``).
    low_sigma, high_sigma : float or sequence of float
        Standard deviations per spatial axis.
    mode, cval, channel_axis, truncate, device
        As :func:`gaussian`.

    Returns
    -------
    ndarray

    Examples
    --------
    >>> import numpy as np
    >>> from filtkit.signal import difference_of_gaussians
    >>> flat = np.full((8, 8), 0.5)
    >>> bool(np.abs(difference_of_gaussians(flat, 1)).max() < 1e-15)
    True
    """
    image, gpu = _source(image, device)
    channel_axis = _channel_axis(channel_axis, image.ndim)
    low = _per_axis(low_sigma, "low_sigma", image.ndim, channel_axis)
    if high_sigma is None:
        high = [1.6 * s for s in low]
    else:
        high = _per_axis(high_sigma, "high_sigma", image.ndim, channel_axis)
    if any(h < lo for h, lo in zip(high, low)):
        raise ValueError(
            f"`high_sigma` must be >= `low_sigma` on every axis, got {high_sigma!r} "
            f"and {low_sigma!r}"
        )
    code, cval = check_boundary(mode, cval, name="mode")
    truncate = check_real(truncate, "truncate", minimum=0.0)
    if gpu is not None:
        return _gpu.difference_of_gaussians(gpu, _gaussian_weights(low, truncate),
                                            _gaussian_weights(high, truncate), code, cval)
    x = as_float(image, scale=True)
    return _gaussian_float(x, low, code, cval, truncate) - _gaussian_float(
        x, high, code, cval, truncate
    )


#: The image filters by name, for the command line and the demo.
FILTERS = {
    "gaussian": gaussian,
    "uniform": uniform,
    "sobel": sobel,
    "sobel_h": sobel_h,
    "sobel_v": sobel_v,
    "prewitt": prewitt,
    "prewitt_h": prewitt_h,
    "prewitt_v": prewitt_v,
    "scharr": scharr,
    "scharr_h": scharr_h,
    "scharr_v": scharr_v,
    "roberts": roberts,
    "laplace": laplace,
    "unsharp_mask": unsharp_mask,
    "difference_of_gaussians": difference_of_gaussians,
}
