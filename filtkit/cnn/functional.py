"""Forward/backward pairs of the layers, on the shared backend functions.

Everything here takes clean arrays (C-contiguous, one float dtype, NCHW)
and resolved integer pairs; the layers in :mod:`filtkit.cnn.layers` check
their inputs first.  The convolution is the seed's: the forward pass is the
depth-summing correlation plus a bias, the input gradient the full-mode
correlation of the delta with the 180-degree rotated kernel, the kernel
gradient the valid-mode correlation of the input with the delta; the
backend computes each as per-sample GEMMs (im2col), the same functions that
:func:`filtkit.signal.correlate` uses for 3-D (multi-channel) kernels.

Every function runs where its arrays live: numpy arrays on the CPU backend
(:mod:`filtkit.backends.cpu`), GPU arrays on its CUDA twin, which has the
same names and arguments; outputs are allocated on the same device.  Nothing
below checks its arguments (the layers did), except that all arrays of one
call must live on one device.
"""

import contextlib

import numpy as np

from .._validate import check_choice
from ..backends import (
    argmax_dtype,
    cpu,
    cuda_backend,
    is_device_array,
    num_threads,
    reshaped,
    single_threaded_blas,
)

#: where a model's parameters and activations can live
DEVICES = ("cpu", "cuda")


# -- devices and arrays on them --------------------------------------------------------------
def check_device(device):
    """``device`` if it is 'cpu' or 'cuda' (ValueError otherwise); for 'cuda', the CUDA
    backend must work (RuntimeError naming what is missing)."""
    check_choice(device, "device", DEVICES)
    if device == "cuda":
        cuda_backend()
    return device


def device_of(a):
    """'cuda' for a GPU array, 'cpu' for a numpy array."""
    return "cuda" if is_device_array(a) else "cpu"


def backend(a):
    """The backend module for the array ``a``: :mod:`~filtkit.backends.cpu` for numpy
    arrays, the CUDA twins for GPU arrays."""
    return cuda_backend() if is_device_array(a) else cpu


def _empty_on(device, shape, dtype):
    if device == "cuda":
        return cuda_backend().device_empty(tuple(shape), np.dtype(dtype))
    return np.empty(shape, dtype=dtype)


def arena():
    """A new arena for the GPU's allocations of a repeated sequence: see :func:`reusing`."""
    return cuda_backend().Arena()


def reusing(arena):
    """A context in which the GPU's allocations come from ``arena``
    (:class:`filtkit.backends.cuda.Arena`: the same arrays each time the block runs
    the same allocations, for temporaries that are dead when it runs again); None:
    allocations as usual.  The CPU's allocations are never affected."""
    if arena is None:
        return contextlib.nullcontext()
    return cuda_backend().reusing(arena)


def empty(shape, dtype, like):
    """An uninitialised C-contiguous array on the device of ``like``."""
    return _empty_on(device_of(like), shape, dtype)


def empty_like(a):
    """An uninitialised array of ``a``'s shape and dtype, on its device."""
    return empty(a.shape, a.dtype, a)


def zeros(shape, dtype, like):
    """Zeros on the device of ``like``."""
    out = empty(shape, dtype, like)
    fill(out, 0)
    return out


def zeros_like(a):
    """Zeros of ``a``'s shape and dtype, on its device."""
    return zeros(a.shape, a.dtype, a)


def ravel(a):
    """``a`` as the flat (1-D) view the element-wise twins take: numpy's ``reshape(-1)``;
    a GPU array keeps its flat view (:func:`~filtkit.backends.reshaped`)."""
    return reshaped(a, (a.size,))


def _flat(a):
    """A GPU array as its flat view (:func:`ravel`); numpy arrays as they are (their CPU
    twins are numpy calls that take any shape)."""
    return ravel(a) if is_device_array(a) else a


def fill(a, value):
    """Set every element of ``a`` to ``value``, in place."""
    backend(a).fill(_flat(a), value)


def copy(src, out=None):
    """A copy of ``src`` on its device, written into ``out`` (same shape and dtype, on
    any device) when given: a device-to-device copy for GPU arrays."""
    if out is None:
        out = empty_like(src)
    if is_device_array(out):
        out.copy_to_device(src)
    elif is_device_array(src):
        src.copy_to_host(out)
    else:
        np.copyto(out, src)
    return out


def to_device(a, device):
    """``a`` moved (copied) to ``device`` ('cpu' or 'cuda'); returned as it is when it
    is already there."""
    if device_of(a) == device:
        return a
    if device == "cpu":
        return a.copy_to_host()
    return cuda_backend().to_device(a)


def to_host(a):
    """``a`` as a numpy array (a download for GPU arrays)."""
    return to_device(a, "cpu")


def all_finite(*arrays):
    """True when no array holds NaN or infinity.  On the GPU the arrays are checked
    there (their flat buffer in one launch when they are :func:`packed`) and one count
    comes back."""
    if not arrays:
        return True
    if not is_device_array(arrays[0]):
        return all(bool(np.isfinite(a).all()) for a in arrays)
    count = zeros((1,), np.int32, arrays[0])
    count_nonfinite(arrays, count)
    return int(count.copy_to_host()[0]) == 0


def count_nonfinite(arrays, count):
    """Add the number of NaN and infinite values in the GPU ``arrays`` to the device
    int32 ``count`` (shape (1,)), without waiting for it."""
    bk = cuda_backend()
    for a in _whole(arrays):
        bk.count_nonfinite(ravel(a), count)


# -- arrays packed into one flat buffer --------------------------------------------------------
# A model's parameters on the GPU (and their gradients and optimizer state) are views of one
# flat buffer each, so that an element-wise pass over all of them (zero_grad, the optimizer's
# update, the finiteness check, a snapshot) is one kernel launch instead of one per array:
# launches, not arithmetic, are most of a small network's training step on a GPU.
def pack(arrays, device=None, *, zero=False):
    """Views of one new flat buffer on ``device`` (default: where ``arrays[0]`` lives),
    shaped as ``arrays`` (one dtype) and holding their values, or zeros when ``zero``;
    :func:`packed` gives the buffer back.  Host arrays packed for the GPU go up in one
    transfer."""
    arrays = list(arrays)
    device = device_of(arrays[0]) if device is None else device
    dtype = np.dtype(arrays[0].dtype)
    sizes = [int(a.size) for a in arrays]
    if not zero and all(device_of(a) == "cpu" for a in arrays):
        flat = to_device(np.concatenate([np.ravel(a) for a in arrays]).astype(dtype), device)
    else:
        flat = _empty_on(device, (sum(sizes),), dtype)
        if zero:
            fill(flat, 0)
    views, start = [], 0
    for a, n in zip(arrays, sizes):
        part = flat[start:start + n]
        if not zero and device_of(a) != "cpu":
            copy(ravel(a), part)
        view = part.reshape(tuple(a.shape))
        try:
            view._filtkit_packed = (flat, start)
        except AttributeError:  # a numpy array takes no tag: the views are not `packed`
            pass
        views.append(view)
        start += n
    return views


def packed(arrays):
    """The flat buffer that ``arrays`` fill one after another, in order, when they are the
    views :func:`pack` made (and nothing else lives in it); None otherwise."""
    tag = getattr(arrays[0], "_filtkit_packed", None) if arrays else None
    if tag is None:
        return None
    flat, start = tag[0], 0
    for a in arrays:
        tag = getattr(a, "_filtkit_packed", None)
        if tag is None or tag[0] is not flat or tag[1] != start:
            return None
        start += a.size
    return flat if start == flat.size else None


def _whole(arrays):
    """``[flat]`` for :func:`packed` arrays, else the arrays themselves."""
    flat = packed(arrays)
    return list(arrays) if flat is None else [flat]


def fill_all(arrays, value):
    """:func:`fill` every array of ``arrays`` (one launch on a GPU when they are packed)."""
    for a in _whole(arrays):
        fill(a, value)


def snapshot(arrays, into=None):
    """A copy of the values of ``arrays`` (one dtype, one device) as one flat array on
    their device, written into the older snapshot ``into`` when it fits: one
    device-to-device copy when the arrays are :func:`packed`."""
    arrays = list(arrays)
    like = arrays[0]
    total = sum(int(a.size) for a in arrays)
    out = into
    if (out is None or tuple(out.shape) != (total,) or out.dtype != like.dtype
            or device_of(out) != device_of(like)):
        out = empty((total,), like.dtype, like)
    flat = packed(arrays)
    if flat is not None:
        return copy(flat, out)
    start = 0
    for a in arrays:
        copy(ravel(a), out[start:start + a.size])
        start += a.size
    return out


def restore(arrays, snap):
    """Copy a :func:`snapshot` back into ``arrays``, in place (views of them stay
    valid); the snapshot stays as it was."""
    arrays = list(arrays)
    flat = packed(arrays)
    if flat is not None:
        copy(snap, flat)
        return
    start = 0
    for a in arrays:
        copy(snap[start:start + a.size].reshape(tuple(a.shape)), a)
        start += a.size


def argmax_rows(x, *, download=True):
    """The index of the first maximum of every row of the 2-D ``x``, as a host int64
    array (on the GPU only these indices come back), or left on ``x``'s device
    without ``download``."""
    out = empty((x.shape[0],), np.int64, x)
    backend(x).argmax_rows(x, out)
    return to_host(out) if download else out


def softmax(x):
    """Row-wise softmax of the 2-D ``x``, on its device."""
    out = empty_like(x)
    backend(x).softmax(x, out)
    return out


def dropout(x, keep, scale):
    """``x * scale`` where the bool array ``keep`` (``x``'s shape, on its device) is
    true, ``x * 0`` elsewhere: inverted dropout's forward and backward pass."""
    if not is_device_array(x):
        x = np.ascontiguousarray(x)
    out = empty_like(x)
    backend(x).apply_mask(ravel(x), ravel(keep), np.dtype(x.dtype).type(scale), ravel(out))
    return out


# -- the layers' forward/backward pairs -----------------------------------------------------
def conv_output_size(n, k, stride, pad_total, dilation):
    """PyTorch's output size: floor((n + pad_total - d*(k - 1) - 1) / s) + 1."""
    return (n + pad_total - dilation * (k - 1) - 1) // stride + 1


def conv2d_forward(x, w, b, stride, pad_before, out_size, dilation):
    """``out = correlate(x, w) + b`` over channels; x (N, C, H, W), w (O, C, Kh, Kw).

    ``pad_before`` is the zero padding above and left of the image, and
    ``out_size`` the output's (Ho, Wo); the padding below and right is
    whatever those imply.
    """
    out = empty((x.shape[0], w.shape[0]) + tuple(out_size), x.dtype, x)
    with single_threaded_blas():
        backend(x).conv2d(x, w, b, out, *stride, *pad_before, *dilation)
    return out


def conv2d_backward(x, w, dy, w_grad, b_grad, stride, pad_before, dilation, *,
                    need_input_grad=True):
    """Add the gradients of :func:`conv2d_forward` for the delta ``dy`` into ``w_grad``
    and ``b_grad`` (None: no bias, its gradient is dropped) and return the input
    gradient ``dx`` (None when ``need_input_grad`` is false: the first layer)."""
    bk = backend(x)
    db = b_grad if b_grad is not None else empty((w.shape[0],), w.dtype, w)
    dx = empty_like(x) if need_input_grad else None
    nchunks = max(1, min(x.shape[0], num_threads()))
    with single_threaded_blas():
        bk.conv2d_grad_weight(x, dy, w_grad, db, *stride, *pad_before, *dilation, nchunks,
                              True)
        if need_input_grad:
            bk.conv2d_grad_input(dy, w, dx, *stride, *pad_before, *dilation)
    return dx


def _planes(a):
    return reshaped(a, (-1,) + tuple(a.shape[-2:]))


def max_pool2d_forward(x, kernel, stride, padding, out_size):
    """Max pooling of every (H, W) plane; returns ``(out, argmax)``."""
    out = empty(x.shape[:-2] + tuple(out_size), x.dtype, x)
    argmax = empty(out.shape, argmax_dtype(tuple(x.shape)), x)
    backend(x).max_pool2d(_planes(x), _planes(out), _planes(argmax), *kernel, *stride, *padding)
    return out, argmax


def max_pool2d_backward(dy, argmax, x_shape, kernel, stride, padding):
    """The whole delta of each window goes to its maximum."""
    dx = empty(x_shape, dy.dtype, dy)
    backend(dy).max_pool2d_backward(_planes(dy), _planes(argmax), _planes(dx), *kernel, *stride,
                            *padding)
    return dx


def avg_pool2d_forward(x, kernel, stride, padding, out_size):
    """Mean pooling of every (H, W) plane (zero padding counts in the mean)."""
    out = empty(x.shape[:-2] + tuple(out_size), x.dtype, x)
    backend(x).avg_pool2d(_planes(x), _planes(out), *kernel, *stride, *padding)
    return out


def avg_pool2d_backward(dy, x_shape, kernel, stride, padding):
    """Each window's delta divided by the window size, spread over the window."""
    dx = empty(x_shape, dy.dtype, dy)
    backend(dy).avg_pool2d_backward(_planes(dy), _planes(dx), *kernel, *stride, *padding)
    return dx


def leaky_relu(x, slope, *, out=None):
    """``x`` where ``x > 0`` (or NaN), else ``slope * x`` (ReLU: slope 0); ``out`` may be ``x``."""
    if not is_device_array(x):
        x = np.ascontiguousarray(x)
    out = empty_like(x) if out is None else out
    backend(x).relu(ravel(x), ravel(out), slope)
    return out


def leaky_relu_backward(ref, dy, slope, *, out=None):
    """``dy`` where ``ref > 0``, else ``slope * dy`` (PyTorch's gradient, 0 at 0 for ReLU);
    ``ref`` is the input, or the output when ``slope >= 0``; ``out`` may be ``dy``."""
    if not is_device_array(ref):
        dy = np.ascontiguousarray(dy, dtype=ref.dtype)
    out = empty_like(ref) if out is None else out
    backend(ref).relu_backward(ravel(ref), ravel(dy), ravel(out), slope)
    return out


def _elementwise(name, *arrays):
    out = empty_like(arrays[0])
    getattr(backend(arrays[0]), name)(*(_flat(a) for a in arrays), _flat(out))
    return out


def sigmoid(x):
    """``1 / (1 + exp(-x))`` without overflow."""
    return _elementwise("sigmoid", x)


def sigmoid_backward(y, dy):
    """``dy * y * (1 - y)`` for the sigmoid's output ``y``."""
    return _elementwise("sigmoid_backward", y, dy)


def tanh(x):
    """``tanh(x)``."""
    return _elementwise("tanh", x)


def tanh_backward(y, dy):
    """``dy * (1 - y * y)`` for tanh's output ``y``."""
    return _elementwise("tanh_backward", y, dy)


def linear_forward(x, w, b):
    """``x @ w.T + b`` (``b`` may be None); x (N, F), w (O, F)."""
    bk = backend(x)
    out = empty((x.shape[0], w.shape[0]), x.dtype, x)
    with single_threaded_blas():
        bk.matmul(x, w, out, False, True, False)
    if b is not None:
        bk.add_row_vector(out, b)
    return out


def linear_backward(x, w, dy, w_grad, b_grad):
    """Add ``dy.T @ x`` into ``w_grad`` and the column sums of ``dy`` into ``b_grad``
    (unless None); return the input gradient ``dy @ w``."""
    bk = backend(x)
    dx = empty(x.shape, x.dtype, x)
    with single_threaded_blas():
        bk.matmul(dy, x, w_grad, True, False, True)
        bk.matmul(dy, w, dx, False, False, False)
    if b_grad is not None:
        bk.add_column_sums(dy, b_grad)
    return dx


def cross_entropy(logits, target):
    """Mean softmax cross-entropy of the 2-D ``logits`` for the int ``target`` (a host
    array; uploaded for GPU logits) and its gradient ``(softmax - onehot) / N``.

    Returns ``(loss, grad)``: the loss as a Python float (NaN when a logit is
    not finite; on the GPU the only value that comes back), the gradient on
    the logits' device.
    """
    total, grad = cross_entropy_total(logits, target)
    return float(to_host(total)[0] / total.dtype.type(logits.shape[0])), grad


def cross_entropy_total(logits, target):
    """:func:`cross_entropy`'s summed (not averaged) loss as a one-element array on the
    logits' device, and the gradient: nothing waits for the GPU."""
    bk = backend(logits)
    n = logits.shape[0]
    dtype = np.dtype(logits.dtype)
    target = to_device(np.ascontiguousarray(target, dtype=np.int64), device_of(logits))
    losses = empty((n,), dtype, logits)
    grad = empty_like(logits)
    bk.cross_entropy(logits, target, losses, grad)
    total = empty((1,), dtype, logits)
    bk.total(losses, total)
    return total, grad
