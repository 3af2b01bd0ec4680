"""The shared numerical layer: the only package that imports Numba.

``cpu`` holds the ``@njit(parallel=True, cache=True)`` backend functions;
a ``numba.cuda`` twin with the same names and arguments is planned beside it.
"""

import contextlib

import numpy as np

from . import cpu

_blas = None


def argmax_dtype(shape):
    """Dtype of :func:`cpu.max_pool2d`'s ``argmax``: int32 flat indices within an
    (H, W) plane (half the memory of int64)."""
    if shape[-2] * shape[-1] > 2**31 - 1:
        raise ValueError(f"`x` planes must hold fewer than 2**31 values, got {shape[-2:]}")
    return np.dtype(np.int32)


def num_threads():
    """The number of threads Numba's parallel loops use."""
    import numba

    return numba.get_num_threads()


@contextlib.contextmanager
def single_threaded_blas():
    """Hold the BLAS libraries to one thread while backend functions that call
    ``np.dot`` run inside their ``prange`` loops.

    Each Numba thread then runs its own single-threaded GEMM; a multi-threaded
    BLAS called from inside (or right after) a parallel region stalls on
    OpenMP threads spinning for work (see ``NUMBA_NOTES.md``).
    """
    global _blas
    if _blas is None:
        from threadpoolctl import ThreadpoolController

        _blas = ThreadpoolController()
    with _blas.limit(limits=1, user_api="blas"):
        yield


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

__all__ = ["argmax_dtype", "cpu", "num_threads", "single_threaded_blas"]
