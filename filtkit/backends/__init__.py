"""The shared numerical layer: the only package that imports Numba.

``cpu`` holds the ``@njit(parallel=True, cache=True)`` backend functions;
a ``numba.cuda`` twin with the same names and arguments is planned beside it.
"""

from . import cpu


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

__all__ = ["cpu"]
