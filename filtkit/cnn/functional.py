"""Forward/backward pairs of the layers, on the shared backend functions.

Everything here takes clean arrays (C-contiguous, one float dtype, NCHW)
and resolved integer pairs; the layers in :mod:`filtkit.cnn.layers` check
their inputs first.  The convolution is the seed's: the forward pass is the
depth-summing correlation plus a bias, the input gradient the full-mode
correlation of the delta with the 180-degree rotated kernel, the kernel
gradient the valid-mode correlation of the input with the delta; the
backend computes each as per-sample GEMMs (im2col), the same functions that
:func:`filtkit.signal.correlate` uses for 3-D (multi-channel) kernels.
"""

import numpy as np

from ..backends import argmax_dtype, cpu, num_threads, single_threaded_blas


def conv_output_size(n, k, stride, pad_total, dilation):
    """PyTorch's output size: floor((n + pad_total - d*(k - 1) - 1) / s) + 1."""
    return (n + pad_total - dilation * (k - 1) - 1) // stride + 1


def conv2d_forward(x, w, b, stride, pad_before, out_size, dilation):
    """``out = correlate(x, w) + b`` over channels; x (N, C, H, W), w (O, C, Kh, Kw).

    ``pad_before`` is the zero padding above and left of the image, and
    ``out_size`` the output's (Ho, Wo); the padding below and right is
    whatever those imply.
    """
    out = np.empty((x.shape[0], w.shape[0]) + tuple(out_size), dtype=x.dtype)
    with single_threaded_blas():
        cpu.conv2d(x, w, b, out, *stride, *pad_before, *dilation)
    return out


def conv2d_backward(x, w, dy, stride, pad_before, dilation, *, need_input_grad=True):
    """Gradients ``(dx, dw, db)`` of :func:`conv2d_forward` for the delta ``dy``.

    ``dx`` is None when ``need_input_grad`` is false (the first layer).
    """
    dw = np.empty_like(w)
    db = np.empty(w.shape[0], dtype=w.dtype)
    dx = np.empty_like(x) if need_input_grad else None
    nchunks = max(1, min(x.shape[0], num_threads()))
    with single_threaded_blas():
        cpu.conv2d_grad_weight(x, dy, dw, db, *stride, *pad_before, *dilation, nchunks)
        if need_input_grad:
            cpu.conv2d_grad_input(dy, w, dx, *stride, *pad_before, *dilation)
    return dx, dw, db


def _planes(a):
    return a.reshape((-1,) + a.shape[-2:])


def max_pool2d_forward(x, kernel, stride, padding, out_size):
    """Max pooling of every (H, W) plane; returns ``(out, argmax)``."""
    out = np.empty(x.shape[:-2] + tuple(out_size), dtype=x.dtype)
    argmax = np.empty(out.shape, dtype=argmax_dtype(x.shape))
    cpu.max_pool2d(_planes(x), _planes(out), _planes(argmax), *kernel, *stride, *padding)
    return out, argmax


def max_pool2d_backward(dy, argmax, x_shape, kernel, stride, padding):
    """The whole delta of each window goes to its maximum."""
    dx = np.empty(x_shape, dtype=dy.dtype)
    cpu.max_pool2d_backward(_planes(dy), _planes(argmax), _planes(dx), *kernel, *stride,
                            *padding)
    return dx


def avg_pool2d_forward(x, kernel, stride, padding, out_size):
    """Mean pooling of every (H, W) plane (zero padding counts in the mean)."""
    out = np.empty(x.shape[:-2] + tuple(out_size), dtype=x.dtype)
    cpu.avg_pool2d(_planes(x), _planes(out), *kernel, *stride, *padding)
    return out


def avg_pool2d_backward(dy, x_shape, kernel, stride, padding):
    """Each window's delta divided by the window size, spread over the window."""
    dx = np.empty(x_shape, dtype=dy.dtype)
    cpu.avg_pool2d_backward(_planes(dy), _planes(dx), *kernel, *stride, *padding)
    return dx


def leaky_relu(x, slope, *, out=None):
    """``x`` where ``x > 0`` (or NaN), else ``slope * x`` (ReLU: slope 0); ``out`` may be ``x``."""
    x = np.ascontiguousarray(x)
    out = np.empty_like(x) if out is None else out
    cpu.relu(x.reshape(-1), out.reshape(-1), slope)
    return out


def leaky_relu_backward(ref, dy, slope, *, out=None):
    """``dy`` where ``ref > 0``, else ``slope * dy`` (PyTorch's gradient, 0 at 0 for ReLU);
    ``ref`` is the input, or the output when ``slope >= 0``; ``out`` may be ``dy``."""
    dy = np.ascontiguousarray(dy, dtype=ref.dtype)
    out = np.empty_like(ref) if out is None else out
    cpu.relu_backward(ref.reshape(-1), dy.reshape(-1), out.reshape(-1), slope)
    return out
