"""The CUDA backend behind the CPU backend's calling convention, for shared test bodies.

``BACKENDS`` maps "cpu" to :mod:`filtkit.backends.cpu` and, where ``numba.cuda``
works (a GPU, or the simulator with ``NUMBA_ENABLE_CUDASIM=1`` set before the
first import), "cuda" to :class:`HostCalls` around :mod:`filtkit.backends.cuda`:
every numpy argument goes to the device, the kernels run, and every array is
copied back into the numpy argument it came from, so one test body, written
for host arrays, checks both twins against the same reference.
"""

import functools
import threading

import numpy as np

from filtkit.backends import cpu


class HostCalls:
    """Call a device backend with host arrays (results written back in place)."""

    def __init__(self, module):
        self._module = module

    def __getattr__(self, name):
        fn = getattr(self._module, name)
        if not callable(fn):
            return fn

        def call(*args):
            from numba import cuda

            dev = [cuda.to_device(a) if isinstance(a, np.ndarray) else a for a in args]
            result = fn(*dev)
            cuda.synchronize()
            for a, d in zip(args, dev):
                if isinstance(a, np.ndarray):
                    d.copy_to_host(a)
            return result

        return call


def _cuda_works():
    try:
        from numba import cuda

        return cuda.is_available()
    except Exception:  # numba-cuda missing, or no driver: the CPU alone is tested
        return False


BACKENDS = {"cpu": cpu}
if _cuda_works():
    from filtkit.backends import cuda as _cuda

    BACKENDS["cuda"] = HostCalls(_cuda)


#: what a real numba device array has beyond the simulator's own class attributes
_DEVICE_ARRAY_ATTRIBUTES = {"ndim", "size", "dtype", "strides", "flags", "squeeze"}
_HOST_OPERATORS = ("__add__", "__sub__", "__mul__", "__truediv__", "__floordiv__", "__mod__",
                   "__pow__", "__lt__", "__le__", "__gt__", "__ge__")


@functools.cache
def _numba_layout():
    """numba's own layout class for device arrays (``cudadrv.dummyarray.Array``), which
    the simulator replaces with None: loaded from its file (plain Python and numpy),
    once per process."""
    import importlib.util
    from pathlib import Path

    from numba import cuda

    path = Path(cuda.__file__).parent / "cudadrv" / "dummyarray.py"
    spec = importlib.util.spec_from_file_location("_numba_dummyarray", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Array


def _check_launch(kernel):
    """A GPU refuses a launch beyond CUDA's limits, which the simulator runs: an empty
    grid, or one of more than 2**31 - 1 blocks along x or more than
    ``backends.cuda.MAX_GRID_Z`` (65535, lowered by some tests) along y or z; blocks of
    more than 1024 threads or 64 along z."""
    from filtkit.backends import cuda as cuda_backend

    (gx, gy, gz), (bx, by, bz) = kernel.grid_dim, kernel.block_dim
    if min(gx, gy, gz) < 1 or gx > 2**31 - 1 or max(gy, gz) > cuda_backend.MAX_GRID_Z:
        raise ValueError(f"the kernel {kernel.fn.__name__} launched with grid {(gx, gy, gz)}, "
                         f"beyond CUDA's limits")
    if bx * by * bz > 1024 or bz > 64:
        raise ValueError(f"the kernel {kernel.fn.__name__} launched with blocks of "
                         f"{(bx, by, bz)} threads, beyond CUDA's limits")


def strict_device_arrays(monkeypatch):
    """Hold the simulator's device arrays to a real GPU array's interface.

    The simulator's arrays wrap numpy arrays and forward every other
    attribute, numpy's conversion (``__array__``) and the arithmetic
    operators to them; a real numba device array has none of that (or, for
    ``__array__`` and element access, copies to or from the host).  Here
    they raise, as does a numpy array given to a kernel (numba would copy it
    to the device and back), so host arithmetic on a device array, or a
    hidden transfer, fails in CI as it would (or would be slow) on a GPU.
    Contiguity and reshaping follow numba's layout rules, which are stricter than
    numpy's about the strides of length-1 axes (``x[None]``), and a new device array
    holds NaN (integers: their largest value) where a GPU's holds whatever was there
    before, so an output element no kernel writes shows.  Launches are held to CUDA's
    limits on grids and blocks (:func:`_check_launch`).
    """
    if "cuda" not in BACKENDS:
        return
    from numba import cuda

    FakeCUDAArray = type(cuda.to_device(np.zeros(1)))
    if FakeCUDAArray.__name__ != "FakeCUDAArray":  # a real GPU: its arrays are real already
        return
    forward = FakeCUDAArray.__getattr__

    def getattr_(self, name):
        if name not in _DEVICE_ARRAY_ATTRIBUTES:
            raise AttributeError(f"a device array has no attribute {name!r} on a real GPU")
        return forward(self, name)

    def no_host_operator(self, other):
        raise TypeError("device arrays have no arithmetic or comparison operators")

    from numba.cuda.simulator.kernel import BlockThread

    getitem = FakeCUDAArray.__getitem__

    def getitem_(self, index):  # the host may take views (slices), not values
        parts = index if isinstance(index, tuple) else (index,)
        if not isinstance(threading.current_thread(), BlockThread) and not all(
                isinstance(i, slice) for i in parts):
            raise TypeError("reading elements of a device array from the host")
        return getitem(self, index)

    setitem = FakeCUDAArray.__setitem__

    def setitem_(self, index, value):  # a real array would upload: only kernels write here
        if not isinstance(threading.current_thread(), BlockThread):
            raise TypeError("writing elements of a device array from the host")
        setitem(self, index, value)

    copy_to_device = FakeCUDAArray.copy_to_device

    def copy_to_device_(self, ary, stream=0):  # device to device without numpy's conversion
        if not isinstance(ary, FakeCUDAArray):
            return copy_to_device(self, ary, stream)
        if tuple(ary.shape) != tuple(self.shape) or ary.dtype != self.dtype:
            raise ValueError("device-to-device copy between different arrays")
        np.copyto(self._ary, ary._ary)

    from numba.cuda.simulator.kernel import FakeCUDAKernel

    launch = FakeCUDAKernel.__call__

    def launch_(self, *args):  # a numpy argument would be an implicit copy each way
        if not isinstance(threading.current_thread(), BlockThread):
            if any(isinstance(a, np.ndarray) and a.ndim > 0 for a in args):
                raise TypeError(f"a host array passed to the kernel {self.fn.__name__}")
            _check_launch(self)
        return launch(self, *args)

    Layout = _numba_layout()

    def layout(self):
        return Layout.from_desc(0, self.shape, self.strides, self.dtype.itemsize)

    def is_c_contiguous_(self):  # numba's rule: a length-1 axis must carry its C stride too
        return layout(self).is_c_contig

    reshape = FakeCUDAArray.reshape

    def reshape_(self, *shape, **kws):  # a real device array never copies to reshape
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        if tuple(shape) != tuple(self.shape):
            current = layout(self)
            _, extents = current.reshape(*shape, **kws)
            if extents != [current.extent]:
                raise NotImplementedError("operation requires copying")
        return reshape(self, *shape, **kws)

    device_array = cuda.device_array

    def device_array_(*args, **kwargs):  # uninitialised memory: NaN (or a huge integer)
        a = device_array(*args, **kwargs)
        if a._ary.dtype.kind in "fc":
            a._ary[...] = np.nan
        elif a._ary.dtype.kind in "iu":
            a._ary[...] = np.iinfo(a._ary.dtype).max
        return a

    monkeypatch.setattr(cuda, "device_array", device_array_)
    monkeypatch.setattr(FakeCUDAArray, "is_c_contiguous", is_c_contiguous_)
    monkeypatch.setattr(FakeCUDAArray, "reshape", reshape_)
    monkeypatch.setattr(FakeCUDAKernel, "__call__", launch_)
    monkeypatch.setattr(FakeCUDAArray, "__getattr__", getattr_)
    monkeypatch.setattr(FakeCUDAArray, "copy_to_device", copy_to_device_)
    monkeypatch.setattr(FakeCUDAArray, "__getitem__", getitem_)
    monkeypatch.setattr(FakeCUDAArray, "__setitem__", setitem_)
    for op in _HOST_OPERATORS:
        monkeypatch.setattr(FakeCUDAArray, op, no_host_operator)
    monkeypatch.setattr(FakeCUDAArray, "__eq__", object.__eq__)
    monkeypatch.setattr(FakeCUDAArray, "__ne__", object.__ne__)


class ColumnMajorBlas:
    """cuBLAS's strided batched GEMMs (``sgemmStridedBatched``, ``dgemmStridedBatched``,
    CuPy's binding of them and its ``setPointerMode``), as cuBLAS documents them, for
    the simulator.

    For ``i < batchCount``: ``C_i = alpha op(A_i) op(B_i) + beta C_i``, where ``op(A_i)``
    is m x k, ``op(B_i)`` k x n, ``C_i`` m x n; every matrix is column-major with its
    leading dimension (element (r, c) at ``r + c * ld``) and starts ``i * stride``
    elements after the first; alpha and beta are read through pointers (host memory
    in host pointer mode), and ``C_i`` is not read where beta is 0.  Leading
    dimensions below what the matrices need raise, as cuBLAS refuses them.  The
    simulator's device arrays are numpy arrays, so the addresses are host addresses.
    """

    CUBLAS_OP_N, CUBLAS_OP_T = 0, 1
    CUBLAS_POINTER_MODE_HOST, CUBLAS_POINTER_MODE_DEVICE = 0, 1

    def __init__(self):
        self.pointer_mode = self.CUBLAS_POINTER_MODE_DEVICE  # as another user may leave it
        self.calls = 0

    def setPointerMode(self, handle, mode):
        self.pointer_mode = mode

    def sgemmStridedBatched(self, *args):
        self._gemm(np.float32, *args)

    def dgemmStridedBatched(self, *args):
        self._gemm(np.float64, *args)

    @staticmethod
    def _matrix(address, dtype, rows, cols, ld):
        """The column-major rows x cols matrix at ``address``, as a writable view."""
        import ctypes

        size = np.dtype(dtype).itemsize
        extent = (cols - 1) * ld + rows if rows and cols else 0
        base = np.frombuffer((ctypes.c_char * (extent * size)).from_address(address), dtype)
        return np.lib.stride_tricks.as_strided(base, (rows, cols), (size, ld * size))

    def _gemm(self, dtype, handle, transa, transb, m, n, k, alpha, a, lda, stride_a, b, ldb,
              stride_b, beta, c, ldc, stride_c, count):
        if self.pointer_mode != self.CUBLAS_POINTER_MODE_HOST:
            raise RuntimeError("alpha and beta read as device pointers")
        shape_a = (m, k) if transa == self.CUBLAS_OP_N else (k, m)
        shape_b = (k, n) if transb == self.CUBLAS_OP_N else (n, k)
        if (min(m, n, k, count) < 0 or lda < max(1, shape_a[0]) or ldb < max(1, shape_b[0])
                or ldc < max(1, m)):
            raise ValueError("CUBLAS_STATUS_INVALID_VALUE")
        self.calls += 1
        alpha, beta = (self._matrix(p, dtype, 1, 1, 1)[0, 0] for p in (alpha, beta))
        size = np.dtype(dtype).itemsize
        for i in range(count):
            op_a = self._matrix(a + i * stride_a * size, dtype, *shape_a, lda)
            op_b = self._matrix(b + i * stride_b * size, dtype, *shape_b, ldb)
            op_a = op_a if transa == self.CUBLAS_OP_N else op_a.T
            op_b = op_b if transb == self.CUBLAS_OP_N else op_b.T
            out = self._matrix(c + i * stride_c * size, dtype, m, n, ldc)
            product = alpha * (op_a.astype(np.float64) @ op_b)
            out[...] = product if beta == 0 else product + beta * out
