"""The seed's pooling: ``max_pool`` and ``avg_pool`` over the last two axes."""

import numpy as np

from .._validate import as_float, check_int_tuple
from ..backends import argmax_dtype, cpu
from . import _gpu
from .padding import output_size


def _pool(kind, x, size, stride, device):
    x, gpu = _gpu.source(x, device, name="x", ndims=(2, 3, 4))
    size = check_int_tuple(size, "size", 2)
    stride = size if stride is None else check_int_tuple(stride, "stride", 2)
    h, w = x.shape[-2:]
    if size[0] > h or size[1] > w:
        raise ValueError(f"`size` {size} must not exceed the image size {(h, w)}")
    ho = output_size(h, size[0], stride=stride[0])
    wo = output_size(w, size[1], stride=stride[1])
    if gpu is not None:
        return _gpu.pool(gpu, kind, size, stride, (ho, wo))
    xf = as_float(x)
    out = np.empty(xf.shape[:-2] + (ho, wo), dtype=xf.dtype)
    kernel_fn = _max_pool2d if kind == "max" else _avg_pool2d
    kernel_fn(xf.reshape(-1, h, w), out.reshape(-1, ho, wo), *size, *stride)
    return out


def _max_pool2d(x, out, k0, k1, s0, s1):
    argmax = np.empty(out.shape, dtype=argmax_dtype(x.shape))  # unused here
    cpu.max_pool2d(x, out, argmax, k0, k1, s0, s1, 0, 0)


def _avg_pool2d(x, out, k0, k1, s0, s1):
    cpu.avg_pool2d(x, out, k0, k1, s0, s1, 0, 0)


_DOC = """{what} pooling over the last two axes, as in the seed.

    Each output is the {stat} of a ``size`` window; windows start every
    ``stride`` samples (``stride = size`` by default: non-overlapping 2x2
    blocks) and only whole windows count, so each axis has
    ``floor((n - size) / stride) + 1`` outputs (PyTorch's ``{torch}`` with
    ``ceil_mode=False`` and no padding).{nan}

    Parameters
    ----------
    x : array_like
        ``(H, W)``, ``(C, H, W)`` or ``(N, C, H, W)``.
    size : int or (int, int)
        Window size (>= 1, at most the image size).
    stride : int or (int, int), optional
        Step between windows (>= 1); defaults to ``size``.
    device : {{None, 'cpu', 'cuda'}}
        As :func:`filtkit.signal.correlate`: a GPU ``x`` (float32/float64,
        C-contiguous) gives a device array, ``device='cuda'`` runs a numpy ``x``
        on the GPU and gives numpy.

    Returns
    -------
    ndarray
        float32 for float32 input, else float64.

    Examples
    --------
    >>> import numpy as np
    >>> from filtkit.signal import {name}
    >>> {name}(np.array([[1.0, 2.0, 5.0, 6.0],
    ...                  [3.0, 4.0, 7.0, 8.0]]))
    {example}
"""


def max_pool(x, size=2, *, stride=None, device=None):
    return _pool("max", x, size, stride, device)


def avg_pool(x, size=2, *, stride=None, device=None):
    return _pool("avg", x, size, stride, device)


max_pool.__doc__ = _DOC.format(
    what="Max", stat="maximum", torch="MaxPool2d", name="max_pool",
    nan=" A NaN in a window makes that output NaN.",
    example="array([[4., 8.]])",
)
avg_pool.__doc__ = _DOC.format(
    what="Mean", stat="mean", torch="AvgPool2d", name="avg_pool", nan="",
    example="array([[2.5, 6.5]])",
)
