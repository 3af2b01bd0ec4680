"""Layers with PyTorch's names, shapes, defaults and numerics (NCHW).

Every layer checks its hyperparameters in ``__init__`` and its input in
``forward``, keeps what ``backward`` needs, and has ``backward`` beside
``forward``: ``backward(dy)`` takes the gradient of the loss with respect to
the layer's output, adds the gradients of its parameters into their
``grad`` (they accumulate until ``zero_grad``, as in PyTorch) and returns
the gradient with respect to its input.

Weights start as PyTorch's defaults: ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``
for the weights and biases of :class:`Conv2D` and :class:`Dense`, drawn
from ``rng`` (a seed or a :class:`numpy.random.Generator`), so a seed
reproduces a network exactly.

``layer.to("cuda")`` moves a layer's parameters to the GPU; it then takes GPU
arrays (numba device arrays, or anything with ``__cuda_array_interface__``)
of its own dtype and returns numba device arrays, computed by the CUDA twins
of the same backend functions.  Layers without parameters run wherever their
input lives.
"""

import concurrent.futures
import math
import numbers

import numpy as np

from .._validate import check_choice, check_int_tuple, check_real
from ..backends import as_device_array, is_device_array
from . import functional as F
from .parameter import Parameter

DTYPES = ("float32", "float64")
FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _dtype(dtype):
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = repr(dtype)
    return np.dtype(check_choice(name, "dtype", DTYPES))


def _rng(rng):
    if rng is None or isinstance(rng, (numbers.Integral, np.random.SeedSequence)):
        return np.random.default_rng(rng)
    if isinstance(rng, np.random.Generator):
        return rng
    raise TypeError(f"`rng` must be None, an int seed or a numpy Generator, got {rng!r}")


def _positive_int(value, name):
    return check_int_tuple(value, name, 1)[0]


def _pair_repr(v):
    return v[0] if v[0] == v[1] else v


def _writable(a):
    """May an activation overwrite ``a``: a C-contiguous, writable float array (GPU
    arrays always are writable)."""
    if is_device_array(a):
        a = as_device_array(a)
        return np.dtype(a.dtype) in FLOATS and a.is_c_contiguous()
    return (isinstance(a, np.ndarray) and a.dtype in FLOATS and a.flags.c_contiguous
            and a.flags.writeable)


class Layer:
    """Base class: no parameters, identity shape, training mode on, on the CPU."""

    training = True
    #: where the parameters live: 'cpu' or 'cuda' (see :meth:`to`)
    device = "cpu"

    def __call__(self, x):
        return self.forward(x)

    def forward(self, x):  # pragma: no cover - every layer overrides it
        raise NotImplementedError

    def backward(self, dy):  # pragma: no cover - every layer overrides it
        raise NotImplementedError

    def parameters(self):
        """The layer's trainable :class:`Parameter` objects, in a fixed order."""
        return []

    def zero_grad(self):
        """Set every parameter's gradient to zero (one launch on the GPU when the
        gradients are packed, as a model's are after ``.to("cuda")``)."""
        F.fill_all([p.grad for p in self.parameters()], 0)

    def to(self, device):
        """Move the parameters (values and gradients) to ``device``, 'cpu' or 'cuda';
        returns the layer.

        Raises
        ------
        ValueError
            ``device`` is neither 'cpu' nor 'cuda'.
        RuntimeError
            'cuda' without a GPU (or Numba's simulator), or without numba-cuda.
        """
        F.check_device(device)
        for p in self.parameters():
            p.to(device)
        self.device = device
        return self

    def train(self, mode=True):
        """Switch training mode (dropout active) on or off; returns the layer."""
        self.training = bool(mode)
        return self

    def eval(self):
        """Switch to evaluation mode; returns the layer."""
        return self.train(False)

    def output_shape(self, shape):
        """The output shape (without the batch axis) for an input of ``shape``."""
        return tuple(shape)

    def config(self):
        """Constructor arguments that rebuild this layer (saved with a model)."""
        return {}

    def _extra_repr(self):
        return ""

    def __repr__(self):
        return f"{type(self).__name__}({self._extra_repr()})"

    def _check_input(self, x, ndim, what):
        if is_device_array(x):
            self._device_input(x, ndim, what)
            return
        if not isinstance(x, np.ndarray) or x.ndim != ndim:
            shape = getattr(x, "shape", None)
            raise ValueError(f"`x` for {self!r} must be a {ndim}-D array {what}, "
                             f"got shape {shape}")
        if x.dtype.kind not in "biuf":
            raise TypeError(f"`x` for {self!r} must be a real numeric array, got dtype "
                            f"{x.dtype}")

    def _device_input(self, x, ndim=None, what="", dtype=None, name="x"):
        """A numba view (no copy) of the GPU array ``x``, checked: ``ndim`` dimensions,
        float32/float64 (``dtype`` when given), C-contiguous."""
        xd = as_device_array(x)
        if ndim is not None and xd.ndim != ndim:
            raise ValueError(f"`{name}` for {self!r} must be a {ndim}-D array {what}, "
                             f"got shape {tuple(xd.shape)}")
        dt = np.dtype(xd.dtype)
        if dt not in FLOATS or (dtype is not None and dt != dtype):
            want = "float32 or float64" if dtype is None else f"{np.dtype(dtype)}, the layer's"
            raise TypeError(f"`{name}` for {self!r} on the GPU must be {want} dtype, got "
                            f"{dt} (convert it on the device first)")
        if not xd.is_c_contiguous():
            raise ValueError(f"`{name}` for {self!r} on the GPU must be C-contiguous")
        return xd

    def _same_device(self, a, name="x"):
        """``a`` must live where the parameters do (layers with parameters only)."""
        if F.device_of(a) != self.device:
            got = "a GPU array" if is_device_array(a) else "a numpy array"
            raise ValueError(f"`{name}` for {self!r} must be on the layer's device "
                             f"{self.device!r}, got {got} (move one of them with .to())")

    def _input(self, x, ndim, what, dtype):
        """``x`` checked and ready for the kernels: C-contiguous ``dtype`` (converted on the
        host; on the GPU it must already be so)."""
        self._check_input(x, ndim, what)
        if is_device_array(x):
            return self._device_input(x, ndim, what, dtype)
        return np.ascontiguousarray(x, dtype=dtype)

    def _grad(self, dy, shape, ref, dtype=None):
        """``dy`` checked against the last output's ``shape`` and the device of the forward
        pass's array ``ref``, as C-contiguous ``dtype`` (``ref``'s by default)."""
        self._check_dy(dy, shape)
        dtype = np.dtype(ref.dtype) if dtype is None else np.dtype(dtype)
        if F.device_of(dy) != F.device_of(ref):
            got = "a GPU array" if is_device_array(dy) else "a numpy array"
            raise ValueError(f"`dy` for {self!r} must be on the device of the forward pass "
                             f"({F.device_of(ref)!r}), got {got}")
        if is_device_array(dy):
            return self._device_input(dy, None, "", dtype, name="dy")
        return np.ascontiguousarray(dy, dtype=dtype)

    def _need_forward(self, *names):
        if any(getattr(self, n, None) is None for n in names):
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")

    def _check_dy(self, dy, shape):
        """``dy`` must have the shape of the last output (the kernels index by it)."""
        got = getattr(dy, "shape", None)
        got = None if got is None else tuple(got)
        if got != tuple(shape):
            raise ValueError(f"`dy` for {self!r} must have the shape of the output "
                             f"{tuple(shape)}, got shape {got}")

    def _float_input(self, x):
        """``x`` as a float32/float64 array (other dtypes become float32, as in pooling;
        on the GPU it must already be float32/float64)."""
        if is_device_array(x):
            return self._device_input(x)
        if not isinstance(x, np.ndarray):
            raise ValueError(f"`x` for {self!r} must be a numpy array, got {type(x).__name__}")
        return x if x.dtype in (np.float32, np.float64) else x.astype(np.float32)


class Conv2D(Layer):
    """2-D convolution layer (a cross-correlation, as ``torch.nn.Conv2d``).

    ``y[n, o] = b[o] + sum_c correlate(x[n, c], w[o, c])``: the seed's
    depth-summing correlation, with zero padding, stride and dilation.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels ``C`` of the input and ``O`` of the output.
    kernel_size : int or (int, int)
        ``(Kh, Kw)``; the weight has shape ``(O, C, Kh, Kw)``.
    stride : int or (int, int), default 1
    padding : int, (int, int) or 'same', default 0
        Zeros added on each side.  ``'same'`` keeps the size (stride 1
        only); for an even dilated kernel the extra row and column go
        below and to the right, as in PyTorch.
    dilation : int or (int, int), default 1
    bias : bool, default True
    dtype : {'float32', 'float64'}, default 'float32'
    rng : None, int or numpy.random.Generator
        Source of the initial weights.

    Examples
    --------
    >>> import numpy as np
    >>> conv = Conv2D(1, 4, 3, padding=1, rng=0)
    >>> conv
    Conv2D(1, 4, kernel_size=3, padding=1)
    >>> y = conv(np.zeros((2, 1, 8, 8), np.float32))
    >>> y.shape
    (2, 4, 8, 8)
    >>> conv.backward(np.ones_like(y)).shape
    (2, 1, 8, 8)
    """

    def __init__(self, in_channels, out_channels, kernel_size, *, stride=1, padding=0,
                 dilation=1, bias=True, dtype="float32", rng=None):
        self.in_channels = _positive_int(in_channels, "in_channels")
        self.out_channels = _positive_int(out_channels, "out_channels")
        self.kernel_size = check_int_tuple(kernel_size, "kernel_size", 2)
        self.stride = check_int_tuple(stride, "stride", 2)
        self.dilation = check_int_tuple(dilation, "dilation", 2)
        if isinstance(padding, str):
            check_choice(padding, "padding", ("same",))
            if self.stride != (1, 1):
                raise ValueError(f"`padding` 'same' needs stride 1, got stride {stride!r}")
            self.padding = "same"
        else:
            self.padding = check_int_tuple(padding, "padding", 2, minimum=0)
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"`bias` must be True or False, got {bias!r}")
        self.dtype = _dtype(dtype)
        gen = _rng(rng)
        kh, kw = self.kernel_size
        bound = 1.0 / math.sqrt(self.in_channels * kh * kw)
        shape = (self.out_channels, self.in_channels, kh, kw)
        self.weight = Parameter(gen.uniform(-bound, bound, shape).astype(self.dtype), "weight")
        self.bias = None
        if bias:
            b = gen.uniform(-bound, bound, self.out_channels).astype(self.dtype)
            self.bias = Parameter(b, "bias")
        self._x = None

    def _pads(self):
        """(pad before, total padding) along each axis."""
        if self.padding == "same":
            totals = [d * (k - 1) for k, d in zip(self.kernel_size, self.dilation)]
            return tuple(t // 2 for t in totals), tuple(totals)
        return self.padding, tuple(2 * p for p in self.padding)

    def output_shape(self, shape):
        if len(shape) != 3 or shape[0] != self.in_channels:
            raise ValueError(f"`x` for {self!r} must have shape (N, {self.in_channels}, H, W), "
                             f"got (N, {', '.join(map(str, shape))})")
        _, totals = self._pads()
        size = tuple(F.conv_output_size(n, k, s, t, d) for n, k, s, t, d in
                     zip(shape[1:], self.kernel_size, self.stride, totals, self.dilation))
        if min(size) < 1:
            raise ValueError(f"`x` of spatial size {tuple(shape[1:])} is too small for "
                             f"{self!r} (output size {size})")
        return (self.out_channels,) + size

    def forward(self, x):
        self._check_input(x, 4, f"(N, {self.in_channels}, H, W)")
        self._same_device(x)
        size = self.output_shape(tuple(x.shape[1:]))[1:]
        x = self._input(x, 4, f"(N, {self.in_channels}, H, W)", self.dtype)
        if self.bias is not None:
            b = self.bias.data
        else:
            b = F.zeros((self.out_channels,), self.dtype, x)
        before, _ = self._pads()
        self._x = x
        self._out_shape = (x.shape[0], self.out_channels) + tuple(size)
        return F.conv2d_forward(x, self.weight.data, b, self.stride, before, size,
                                self.dilation)

    def backward(self, dy, *, input_grad=True):
        """Add the weight and bias gradients; return the input gradient (None when
        ``input_grad`` is false, which saves its computation in a first layer)."""
        self._need_forward("_x")
        dy = self._grad(dy, self._out_shape, self._x)
        before, _ = self._pads()
        return F.conv2d_backward(self._x, self.weight.data, dy, self.weight.grad,
                                 None if self.bias is None else self.bias.grad, self.stride,
                                 before, self.dilation, need_input_grad=input_grad)

    def parameters(self):
        return [self.weight] + ([self.bias] if self.bias is not None else [])

    def config(self):
        return dict(in_channels=self.in_channels, out_channels=self.out_channels,
                    kernel_size=list(self.kernel_size), stride=list(self.stride),
                    padding=self.padding if self.padding == "same" else list(self.padding),
                    dilation=list(self.dilation), bias=self.bias is not None,
                    dtype=self.dtype.name)

    def _extra_repr(self):
        parts = [str(self.in_channels), str(self.out_channels),
                 f"kernel_size={_pair_repr(self.kernel_size)}"]
        if self.stride != (1, 1):
            parts.append(f"stride={_pair_repr(self.stride)}")
        if self.padding == "same":
            parts.append("padding='same'")
        elif self.padding != (0, 0):
            parts.append(f"padding={_pair_repr(self.padding)}")
        if self.dilation != (1, 1):
            parts.append(f"dilation={_pair_repr(self.dilation)}")
        if self.bias is None:
            parts.append("bias=False")
        if self.dtype != np.float32:
            parts.append(f"dtype={self.dtype.name!r}")
        return ", ".join(parts)


class _Pool2D(Layer):
    def __init__(self, kernel_size, *, stride=None, padding=0):
        self.kernel_size = check_int_tuple(kernel_size, "kernel_size", 2)
        self.stride = self.kernel_size if stride is None else check_int_tuple(stride, "stride", 2)
        self.padding = check_int_tuple(padding, "padding", 2, minimum=0)
        for p, k in zip(self.padding, self.kernel_size):
            if p > k // 2:
                raise ValueError(f"`padding` must be at most half the kernel size "
                                 f"{self.kernel_size}, got {padding!r}")
        self._shape = None

    def output_shape(self, shape):
        if len(shape) != 3:
            raise ValueError(f"`x` for {self!r} must have shape (N, C, H, W), "
                             f"got (N, {', '.join(map(str, shape))})")
        size = tuple(F.conv_output_size(n, k, s, 2 * p, 1) for n, k, s, p in
                     zip(shape[1:], self.kernel_size, self.stride, self.padding))
        if min(size) < 1:
            raise ValueError(f"`x` of spatial size {tuple(shape[1:])} is smaller than the "
                             f"window of {self!r}")
        return (shape[0],) + size

    def config(self):
        return dict(kernel_size=list(self.kernel_size), stride=list(self.stride),
                    padding=list(self.padding))

    def _extra_repr(self):
        parts = [f"kernel_size={_pair_repr(self.kernel_size)}"]
        if self.stride != self.kernel_size:
            parts.append(f"stride={_pair_repr(self.stride)}")
        if self.padding != (0, 0):
            parts.append(f"padding={_pair_repr(self.padding)}")
        return ", ".join(parts)

    def _prepare(self, x):
        self._check_input(x, 4, "(N, C, H, W)")
        size = self.output_shape(tuple(x.shape[1:]))[1:]
        if is_device_array(x):
            x = self._device_input(x, 4, "(N, C, H, W)")
        elif x.dtype not in (np.float32, np.float64):
            x = x.astype(np.float32)
        self._shape = tuple(x.shape)
        self._out_shape = self._shape[:2] + tuple(size)
        self._x_device = F.device_of(x)
        return (x if is_device_array(x) else np.ascontiguousarray(x)), size

    def _pool_grad(self, dy):
        """``dy`` checked, on the forward pass's device, as float (float32 at least)."""
        self._check_dy(dy, self._out_shape)
        if F.device_of(dy) != self._x_device:
            got = "a GPU array" if is_device_array(dy) else "a numpy array"
            raise ValueError(f"`dy` for {self!r} must be on the device of the forward pass "
                             f"({self._x_device!r}), got {got}")
        if is_device_array(dy):
            return self._device_input(dy, None, "", name="dy")
        return np.ascontiguousarray(dy, dtype=np.dtype(np.result_type(dy.dtype, np.float32)))


class MaxPool2D(_Pool2D):
    """Max pooling over (H, W) windows, as ``torch.nn.MaxPool2d``.

    The first maximum of a window in row-major order receives its whole
    gradient (NaN propagates); ``stride`` defaults to ``kernel_size``;
    padding (at most half the window) never wins.

    Examples
    --------
    >>> import numpy as np
    >>> pool = MaxPool2D(2)
    >>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    >>> pool(x)[0, 0]
    array([[ 5.,  7.],
           [13., 15.]], dtype=float32)
    >>> pool.backward(np.ones((1, 1, 2, 2), np.float32))[0, 0]
    array([[0., 0., 0., 0.],
           [0., 1., 0., 1.],
           [0., 0., 0., 0.],
           [0., 1., 0., 1.]], dtype=float32)
    """

    def forward(self, x):
        x, size = self._prepare(x)
        out, self._argmax = F.max_pool2d_forward(x, self.kernel_size, self.stride,
                                                 self.padding, size)
        return out

    def backward(self, dy):
        self._need_forward("_shape")
        dy = self._pool_grad(dy)
        return F.max_pool2d_backward(dy, self._argmax, self._shape, self.kernel_size,
                                     self.stride, self.padding)


class AvgPool2D(_Pool2D):
    """Mean pooling over (H, W) windows, as ``torch.nn.AvgPool2d``
    (``count_include_pad=True``, ``ceil_mode=False``).

    Each window's gradient is divided by the window size and spread over it.

    Examples
    --------
    >>> import numpy as np
    >>> AvgPool2D(2)(np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4))[0, 0]
    array([[ 2.5,  4.5],
           [10.5, 12.5]], dtype=float32)
    """

    def forward(self, x):
        x, size = self._prepare(x)
        return F.avg_pool2d_forward(x, self.kernel_size, self.stride, self.padding, size)

    def backward(self, dy):
        self._need_forward("_shape")
        dy = self._pool_grad(dy)
        return F.avg_pool2d_backward(dy, self._shape, self.kernel_size, self.stride,
                                     self.padding)


class Dropout(Layer):
    """Inverted dropout, as ``torch.nn.Dropout``: in training each value is
    zeroed with probability ``p`` and the rest scaled by ``1 / (1 - p)``; in
    evaluation mode the layer is the identity.

    Parameters
    ----------
    p : float in [0, 1), default 0.5
    rng : None, int or numpy.random.Generator
        Source of the masks.

    On the GPU the mask is still drawn on the host from ``rng`` (the same
    draws as on the CPU) and uploaded (one byte a value), then applied there:
    the same seed gives the same mask on either device, which keeps GPU
    training equal to CPU training at the cost of one upload per forward pass.

    Examples
    --------
    >>> import numpy as np
    >>> drop = Dropout(0.5, rng=0)
    >>> y = drop(np.ones((2, 4), np.float32))
    >>> sorted(set(y.ravel().tolist()))
    [0.0, 2.0]
    >>> drop.eval()(np.ones((2, 4), np.float32)).sum()
    np.float32(8.0)
    """

    def __init__(self, p=0.5, *, rng=None):
        self.p = check_real(p, "p", minimum=0.0)
        if self.p >= 1.0:
            raise ValueError(f"`p` must be in [0, 1), got {p!r}")
        self._rng = _rng(rng)
        self._keep = None
        self._dtype = None
        self._shape = None
        self._masks = None  # a _MaskPrefetch while fit trains on the GPU

    def forward(self, x):
        x = self._float_input(x)
        self._shape = tuple(x.shape)
        if not self.training or self.p == 0.0:
            self._keep = None
            return x
        self._dtype = np.dtype(x.dtype)
        rdtype = np.float32 if self._dtype == np.float32 else np.float64
        if self._masks is None:
            keep = self._draw(self._shape, rdtype)
        else:
            keep = self._masks.take(self, self._shape, rdtype)
        self._keep = F.to_device(keep, F.device_of(x))
        return F.dropout(x, self._keep, 1.0 / (1.0 - self.p))

    def _draw(self, shape, rdtype):
        """A mask: True where the value is kept."""
        return self._rng.random(shape, dtype=rdtype) >= self.p

    def backward(self, dy):
        self._need_forward("_shape")
        if self._keep is None:
            self._check_dy(dy, self._shape)
            return dy
        return F.dropout(self._grad(dy, self._shape, self._keep, self._dtype), self._keep,
                         1.0 / (1.0 - self.p))

    def config(self):
        return dict(p=self.p)

    def _extra_repr(self):
        return f"p={self.p}"


class _MaskPrefetch:
    """Dropout masks of fit's next GPU step, drawn by a worker thread while the host
    queues the rest of this one (numpy's generators release the GIL as they fill).

    The worker makes the draws this step's forward pass made (:meth:`take`), in the
    same order and from the same generators, so the next forward pass gets exactly
    the masks it would draw, and the generators end in the same states: GPU training
    stays equal to the CPU's.  Where a forward pass asks for other masks (another
    batch size), each generator is put back to its state before its first mask not
    taken, and the rest are drawn as usual; :meth:`close` puts back what was drawn
    ahead and never taken.
    """

    def __init__(self):
        self._worker = None
        self._pending = None  # the worker's future: the next step's masks
        self._ready = []  # (layer, shape, dtype, generator state before, mask)
        self._taken = 0
        self._asked = []  # (layer, shape, dtype) of this forward pass's masks

    def begin(self):
        """At the start of a forward pass: the masks drawn ahead for it."""
        self._ready, self._pending = [] if self._pending is None else self._pending.result(), None
        self._taken = 0
        self._asked = []

    def take(self, layer, shape, rdtype):
        """The mask ``layer`` asks for: the next one drawn ahead where it matches."""
        self._asked.append((layer, shape, rdtype))
        if self._taken < len(self._ready):
            other, other_shape, other_dtype, _, keep = self._ready[self._taken]
            if other is layer and other_shape == shape and other_dtype == rdtype:
                self._taken += 1
                return keep
            self._put_back()
        return layer._draw(shape, rdtype)

    def prefetch(self):
        """After a forward pass: its masks drawn again, for the next one, by the worker."""
        self._put_back()
        if self._asked:
            if self._worker is None:
                self._worker = concurrent.futures.ThreadPoolExecutor(1)
            self._pending = self._worker.submit(self._draw_all, list(self._asked))

    @staticmethod
    def _draw_all(asked):
        return [(layer, shape, rdtype, layer._rng.bit_generator.state,
                 layer._draw(shape, rdtype)) for layer, shape, rdtype in asked]

    def close(self):
        """Wait for the worker and put back every mask drawn ahead and not taken."""
        self._put_back()
        if self._pending is not None:
            self._ready, self._pending, self._taken = self._pending.result(), None, 0
            self._put_back()
        if self._worker is not None:
            self._worker.shutdown()
            self._worker = None

    def _put_back(self):
        """Each generator back to its state before its first mask not taken."""
        done = set()
        for layer, _, _, state, _ in self._ready[self._taken:]:
            generator = layer._rng.bit_generator
            if id(generator) not in done:
                done.add(id(generator))
                generator.state = state
        del self._ready[self._taken:]


class Dense(Layer):
    """Fully connected layer ``y = x W^T + b``, as ``torch.nn.Linear``.

    Parameters
    ----------
    in_features, out_features : int
    bias : bool, default True
    dtype : {'float32', 'float64'}, default 'float32'
    rng : None, int or numpy.random.Generator

    Examples
    --------
    >>> import numpy as np
    >>> fc = Dense(3, 2, rng=0)
    >>> fc.weight.shape, fc(np.ones((5, 3), np.float32)).shape
    ((2, 3), (5, 2))
    """

    def __init__(self, in_features, out_features, *, bias=True, dtype="float32", rng=None):
        self.in_features = _positive_int(in_features, "in_features")
        self.out_features = _positive_int(out_features, "out_features")
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"`bias` must be True or False, got {bias!r}")
        self.dtype = _dtype(dtype)
        gen = _rng(rng)
        bound = 1.0 / math.sqrt(self.in_features)
        w = gen.uniform(-bound, bound, (self.out_features, self.in_features))
        self.weight = Parameter(w.astype(self.dtype), "weight")
        self.bias = None
        if bias:
            self.bias = Parameter(gen.uniform(-bound, bound, self.out_features)
                                  .astype(self.dtype), "bias")
        self._x = None

    def output_shape(self, shape):
        if tuple(shape) != (self.in_features,):
            raise ValueError(f"`x` for {self!r} must have shape (N, {self.in_features}), "
                             f"got (N, {', '.join(map(str, shape))})")
        return (self.out_features,)

    def forward(self, x):
        self._check_input(x, 2, f"(N, {self.in_features})")
        self._same_device(x)
        self.output_shape(tuple(x.shape[1:]))
        x = self._input(x, 2, f"(N, {self.in_features})", self.dtype)
        self._x = x
        return F.linear_forward(x, self.weight.data,
                                None if self.bias is None else self.bias.data)

    def backward(self, dy):
        self._need_forward("_x")
        dy = self._grad(dy, (self._x.shape[0], self.out_features), self._x)
        return F.linear_backward(self._x, self.weight.data, dy, self.weight.grad,
                                 None if self.bias is None else self.bias.grad)

    def parameters(self):
        return [self.weight] + ([self.bias] if self.bias is not None else [])

    def config(self):
        return dict(in_features=self.in_features, out_features=self.out_features,
                    bias=self.bias is not None, dtype=self.dtype.name)

    def _extra_repr(self):
        s = f"{self.in_features}, {self.out_features}"
        if self.bias is None:
            s += ", bias=False"
        if self.dtype != np.float32:
            s += f", dtype={self.dtype.name!r}"
        return s


class Flatten(Layer):
    """``(N, C, H, W) -> (N, C*H*W)`` in C order, as ``torch.nn.Flatten``.

    Examples
    --------
    >>> import numpy as np
    >>> Flatten()(np.zeros((2, 3, 4, 5))).shape
    (2, 60)
    """

    def __init__(self):
        self._shape = None

    def output_shape(self, shape):
        return (int(np.prod(shape)),)

    def forward(self, x):
        if is_device_array(x):
            x = as_device_array(x)
        elif not isinstance(x, np.ndarray):
            x = None
        if x is None or x.ndim < 2:
            raise ValueError(f"`x` for Flatten() must have a batch axis and at least one "
                             f"more, got shape {getattr(x, 'shape', None)}")
        self._shape = tuple(x.shape)
        return x.reshape(self._shape[0], int(np.prod(self._shape[1:])))

    def backward(self, dy):
        self._need_forward("_shape")
        self._check_dy(dy, (self._shape[0], int(np.prod(self._shape[1:]))))
        if is_device_array(dy):
            dy = self._device_input(dy, None, "", name="dy")
        return dy.reshape(self._shape)


class _Activation(Layer):
    #: what backward needs: the input ("x") or the output ("y"); only that is kept
    _keeps = "x"

    def __init__(self):
        self._saved = None

    def forward(self, x):
        x = self._float_input(x)
        y = self._f(x)
        self._saved = (x if self._keeps == "x" else None, y if self._keeps == "y" else None,
                       tuple(y.shape))
        return y

    def backward(self, dy):
        self._need_forward("_saved")
        x, y, shape = self._saved
        return self._df(x, y, self._grad(dy, shape, y if x is None else x))


class ReLU(_Activation):
    """``max(x, 0)``; its gradient is 0 at 0, as PyTorch's (NaN passes through).

    ``forward(x, inplace=True)`` and ``backward(dy, inplace=True)`` overwrite
    their argument instead of allocating (``torch.nn.ReLU(inplace=True)``);
    :class:`~filtkit.cnn.Sequential` does so for the intermediates it owns.

    Examples
    --------
    >>> import numpy as np
    >>> ReLU()(np.array([-1.0, 0.0, 2.0]))
    array([0., 0., 2.])
    """

    negative_slope = 0.0

    @property
    def _keeps(self):
        # while the slope is >= 0, y > 0 exactly where x > 0: the output decides the gradient
        return "y" if self.negative_slope >= 0 else "x"

    def _f(self, x, out=None):
        return F.leaky_relu(x, self.negative_slope, out=out)

    def _df(self, x, y, dy, out=None):
        return F.leaky_relu_backward(y if x is None else x, dy, self.negative_slope, out=out)

    def forward(self, x, *, inplace=False):
        if not inplace or self._keeps != "y" or not _writable(x):
            return super().forward(x)
        x = self._float_input(x)
        y = self._f(x, out=x)
        self._saved = (None, y, tuple(y.shape))
        return y

    def backward(self, dy, *, inplace=False):
        self._need_forward("_saved")
        x, y, shape = self._saved
        ref = y if x is None else x
        if not (inplace and _writable(dy) and dy.dtype == ref.dtype
                and F.device_of(dy) == F.device_of(ref)):
            return super().backward(dy)
        dy = self._grad(dy, shape, ref)
        return self._df(x, y, dy, out=dy)


class LeakyReLU(ReLU):
    """``x`` for ``x > 0``, else ``negative_slope * x`` (default 0.01).

    Examples
    --------
    >>> import numpy as np
    >>> LeakyReLU(0.1)(np.array([-1.0, 2.0]))
    array([-0.1,  2. ])
    """

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = check_real(negative_slope, "negative_slope")

    def config(self):
        return dict(negative_slope=self.negative_slope)

    def _extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class Sigmoid(_Activation):
    """``1 / (1 + exp(-x))``, computed without overflow.

    Examples
    --------
    >>> import numpy as np
    >>> Sigmoid()(np.array([0.0]))
    array([0.5])
    """

    _keeps = "y"

    def _f(self, x):
        return F.sigmoid(x)

    def _df(self, x, y, dy):
        return F.sigmoid_backward(y, dy)


class Tanh(_Activation):
    """``tanh(x)``.

    Examples
    --------
    >>> import numpy as np
    >>> Tanh()(np.array([0.0]))
    array([0.])
    """

    _keeps = "y"

    def _f(self, x):
        return F.tanh(x)

    def _df(self, x, y, dy):
        return F.tanh_backward(y, dy)


#: every layer class by name, for rebuilding saved models
LAYERS = {cls.__name__: cls for cls in (Conv2D, MaxPool2D, AvgPool2D, Dropout, Dense, Flatten,
                                         ReLU, LeakyReLU, Sigmoid, Tanh)}
