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

import numpy as np

from .._validate import check_choice
from ..backends import (
    argmax_dtype,
    cpu,
    cuda_backend,
    is_device_array,
    num_threads,
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


def empty(shape, dtype, like):
    """An uninitialised C-contiguous array on the device of ``like``."""
    if is_device_array(like):
        return cuda_backend().device_empty(tuple(shape), np.dtype(dtype))
    return np.empty(shape, dtype=dtype)


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
    a GPU array keeps its flat view (parameters, gradients and optimizer state are
    flattened every step, and each new view is a numba array object, which costs host
    time)."""
    if not is_device_array(a):
        return a.reshape(-1)
    view = getattr(a, "_filtkit_flat", None)
    if view is None:
        view = a.reshape(-1)
        try:
            a._filtkit_flat = view
        except AttributeError:  # pragma: no cover - an array type without attributes
            pass
    return view


def _flat(a):
    """A GPU array as its flat view (:func:`ravel`); numpy arrays as they are (their CPU
    twins are numpy calls that take any shape)."""
    return ravel(a) if is_device_array(a) else a


def fill(a, value):
    """Set every element of ``a`` to ``value``, in place."""
    backend(a).fill(_flat(a), value)


def copy(src, out=None):
    """A copy of ``src`` on its device, written into ``out`` (same shape, dtype and
    device) when given: a device-to-device copy for GPU arrays."""
    if out is None:
        out = empty_like(src)
    if is_device_array(src):
        out.copy_to_device(src)
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
    from numba import cuda

    return cuda.to_device(np.ascontiguousarray(a))


def to_host(a):
    """``a`` as a numpy array (a download for GPU arrays)."""
    return to_device(a, "cpu")


def all_finite(*arrays):
    """True when no array holds NaN or infinity.  On the GPU the arrays are checked
    there and one count comes back."""
    if not arrays:
        return True
    if not is_device_array(arrays[0]):
        return all(bool(np.isfinite(a).all()) for a in arrays)
    bk = cuda_backend()
    count = zeros((1,), np.int32, arrays[0])
    for a in arrays:
        bk.count_nonfinite(ravel(a), count)
    return int(count.copy_to_host()[0]) == 0


def argmax_rows(x):
    """The index of the first maximum of every row of the 2-D ``x``, as a host int64
    array (on the GPU only these indices come back)."""
    out = empty((x.shape[0],), np.int64, x)
    backend(x).argmax_rows(x, out)
    return to_host(out)


def softmax(x):
    """Row-wise softmax of the 2-D ``x``, on its device."""
    out = empty_like(x)
    backend(x).softmax(x, out)
    return out


def add_to(out, x):
    """``out += x`` (same shape, dtype and device), in place."""
    backend(out).add_to(_flat(out), _flat(x))


def multiply(a, b):
    """``a * b`` (same shape, dtype and device)."""
    out = empty_like(a)
    backend(a).multiply(_flat(a), _flat(b), _flat(out))
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


def conv2d_backward(x, w, dy, stride, pad_before, dilation, *, need_input_grad=True):
    """Gradients ``(dx, dw, db)`` of :func:`conv2d_forward` for the delta ``dy``.

    ``dx`` is None when ``need_input_grad`` is false (the first layer).
    """
    bk = backend(x)
    dw = empty_like(w)
    db = empty((w.shape[0],), w.dtype, w)
    dx = empty_like(x) if need_input_grad else None
    nchunks = max(1, min(x.shape[0], num_threads()))
    with single_threaded_blas():
        bk.conv2d_grad_weight(x, dy, dw, db, *stride, *pad_before, *dilation, nchunks)
        if need_input_grad:
            bk.conv2d_grad_input(dy, w, dx, *stride, *pad_before, *dilation)
    return dx, dw, db


def _planes(a):
    return a.reshape((-1,) + a.shape[-2:])


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
    bk = backend(logits)
    n = logits.shape[0]
    dtype = np.dtype(logits.dtype)
    target = to_device(np.ascontiguousarray(target, dtype=np.int64), device_of(logits))
    losses = empty((n,), dtype, logits)
    grad = empty_like(logits)
    bk.cross_entropy(logits, target, losses, grad)
    out = empty((1,), dtype, logits)
    bk.total(losses, out)
    return float(to_host(out)[0] / dtype.type(n)), grad
