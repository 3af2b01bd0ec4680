"""The shared numerical layer: the only package that imports Numba.

``cpu`` holds the ``@njit(parallel=True, cache=True)`` backend functions;
a ``numba.cuda`` twin with the same names and arguments is planned beside it.
"""

from . import cpu

__all__ = ["cpu"]
