"""The shared numerical layer: the only package that imports Numba.

``cpu`` holds the ``@njit(parallel=True, cache=True)`` backend functions;
``cuda`` (imported only on demand, through :func:`cuda_backend`) their
``numba.cuda`` twins with the same names and arguments.
"""

import contextlib
import threading

import numpy as np

from . import cpu

_blas = None


def argmax_dtype(shape):
    """Dtype of :func:`cpu.max_pool2d`'s ``argmax``: int32 flat indices within an
    (H, W) plane (half the memory of int64)."""
    if shape[-2] * shape[-1] > 2**31 - 1:
        raise ValueError(f"`x` planes must hold fewer than 2**31 values, got {shape[-2:]}")
    return np.dtype(np.int32)


def is_device_array(x):
    """True for GPU arrays: numba device arrays, CuPy arrays, CUDA torch tensors, ... (any
    object exposing ``__cuda_array_interface__``), and the device arrays of Numba's CUDA
    simulator (which expose none); numpy arrays are host arrays."""
    if isinstance(x, np.ndarray):
        return False
    if getattr(type(x), "__cuda_ndarray__", False):  # numba's (and the simulator's) arrays,
        return True  # without building the interface's dict, as the instance's property does
    return hasattr(x, "__cuda_array_interface__")


def as_device_array(x):
    """A numba device-array view of the GPU array ``x`` (no copy); a numba device
    array itself is returned as it is (a new view costs more than many kernels:
    0.15 ms each in a profile of a training step on the H200), unless it is
    C-contiguous with another stride on a length-1 axis (``x[None]``): numba counts
    that as not contiguous and cannot reshape it, so it gets a view with C strides.
    A numba array returned as it is remembers that (the layers check the same
    arrays, parameters and an arena's temporaries, every step)."""
    if getattr(x, "_filtkit_as_is", False):
        return x
    from numba import cuda

    if type(x).__name__ != "FakeCUDAArray":  # else the simulator's own array
        from numba.cuda.cudadrv.devicearray import DeviceNDArray

        if not isinstance(x, DeviceNDArray):
            x = cuda.as_cuda_array(x)
    shape = tuple(int(n) for n in x.shape)
    strides = c_strides(shape, np.dtype(x.dtype).itemsize)
    if tuple(x.strides) == strides or any(
            n > 1 and s != c for n, s, c in zip(shape, x.strides, strides)):
        # C strides already, or not C-contiguous at all (refused by the caller)
        remember(x, "_filtkit_as_is", True)
        return x
    if type(x).__name__ == "FakeCUDAArray":
        return type(x)(np.lib.stride_tricks.as_strided(x._ary, shape, strides))
    return DeviceNDArray(shape, strides, x.dtype, stream=x.stream, gpu_data=x.gpu_data)


def reshaped(a, shape):
    """``a.reshape(shape)``.  A GPU array keeps the view and gives it again for the same
    shape: each new view is a numba array object, which costs more host time than
    many kernels, and a training step reshapes the same arrays (parameters, and its
    temporaries, which an arena hands out again) every time."""
    if isinstance(a, np.ndarray):
        return a.reshape(shape)
    shape = tuple(shape)
    views = getattr(a, "_filtkit_views", None)
    if views is None:
        views = remember(a, "_filtkit_views", {})
    view = views.get(shape)
    if view is None:
        view = views[shape] = a.reshape(shape)
    return view


def remember(a, name, value):
    """``value``, kept on the GPU array ``a`` as its attribute ``name`` where ``a``'s
    type takes attributes (numba's device arrays do), so the host finds it there
    again instead of computing it anew."""
    try:
        setattr(a, name, value)
    except AttributeError:  # pragma: no cover - an array type without attributes
        pass
    return value


def c_strides(shape, itemsize):
    """The strides of a C-contiguous array of ``shape``, in bytes."""
    strides, step = [], itemsize
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def cuda_backend():
    """The CUDA twin module, or a RuntimeError that says what is missing.

    Importing filtkit never needs CUDA: this is only called when a GPU array
    arrives or ``device="cuda"`` is asked for.
    """
    global _cuda_module
    if _cuda_module is not None:
        return _cuda_module
    try:
        from numba import cuda
    except ImportError as exc:  # pragma: no cover - numba-cuda missing
        raise RuntimeError(
            "`device` 'cuda' needs the numba-cuda package (pip install 'filtkit[cuda]'): "
            f"{exc}") from None
    if not cuda.is_available():
        raise RuntimeError("`device` 'cuda' needs an NVIDIA GPU with a working driver (or "
                           "Numba's simulator, NUMBA_ENABLE_CUDASIM=1); none was found")
    from . import cuda as cuda_module

    _cuda_module = cuda_module  # found once: each array's operation asks again
    return cuda_module


_cuda_module = None


def num_threads():
    """The number of threads Numba's parallel loops use."""
    import numba

    return numba.get_num_threads()


_blas_lock = threading.Lock()
_blas_depth = 0  # how many single_threaded_blas blocks are open, in all threads
_blas_limiter = None


@contextlib.contextmanager
def single_threaded_blas():
    """Hold the BLAS libraries to one thread while backend functions that call
    ``np.dot`` run inside their ``prange`` loops.

    Each Numba thread then runs its own single-threaded GEMM; a multi-threaded
    BLAS called from inside (or right after) a parallel region stalls on
    OpenMP threads spinning for work (see ``NUMBA_NOTES.md``).  The limit is
    process-wide: the first block to open sets it and the last to close
    restores the previous thread counts, also when blocks of several threads
    overlap.
    """
    global _blas, _blas_depth, _blas_limiter
    with _blas_lock:
        if _blas is None:
            from threadpoolctl import ThreadpoolController

            _blas = ThreadpoolController()
        if _blas_depth == 0:
            _blas_limiter = _blas.limit(limits=1, user_api="blas")
        _blas_depth += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_depth -= 1
            if _blas_depth == 0:
                _blas_limiter.restore_original_limits()
                _blas_limiter = None


def _initialise_numba():
    """Do Numba's one-time set-up now rather than inside the first filter call.

    The first compiled call of a process fills Numba's typing and lowering
    registries (about 0.3 s here, most of it importing scipy.linalg to find
    BLAS).  Doing it at import keeps the first ``gaussian`` call on a warm
    cache fast; ``import filtkit.signal`` stays under half a second.
    """
    try:
        from numba.core.registry import cpu_target

        cpu_target.target_context.refresh()
    except Exception:  # an internal API: if it moves, the first call pays instead
        pass


_initialise_numba()

__all__ = [
    "argmax_dtype", "as_device_array", "cpu", "cuda_backend", "is_device_array", "num_threads",
    "single_threaded_blas",
]
