"""Tunables in one place.

Everything that changes how the compiled backend functions are built lives
here, so that no kernel module hard-codes them.

``CACHE``
    Compile with ``cache=True`` so that Numba's machine code is reused across
    processes.  When the package directory is not writable (a read-only or
    system-wide install) and ``NUMBA_CACHE_DIR`` is not set, the cache is
    redirected to a per-user directory; if no writable directory can be
    found, caching is switched off and functions are compiled in memory.
``FASTMATH``
    Only ``contract``: LLVM may fuse ``a * b + c`` into one FMA instruction
    (one rounding instead of two).  No reassociation and no assumptions about
    NaN or infinity, so results stay within a few ulps of scipy and
    scikit-image and NaN propagates.
``PARALLEL``
    Run the outer loop of the CPU backend functions in Numba ``prange``.
"""

import os
import tempfile

FASTMATH = {"contract"}
#: threads for library calls made outside Numba (scipy.fft's ``workers``)
THREADS = os.cpu_count() or 1
PARALLEL = True

BOUNDARY_CODES = {
    "constant": 0,
    "reflect": 1,
    "mirror": 2,
    "nearest": 3,
    "wrap": 4,
}


def _writable(path):
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            pass
        return True
    except OSError:
        return False


def _choose_cache():
    """Decide whether Numba may cache, redirecting the cache if needed.

    Must run before ``numba`` is imported for the redirection to take effect.
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return _writable(os.environ["NUMBA_CACHE_DIR"])
    here = os.path.join(os.path.dirname(__file__), "backends", "__pycache__")
    if _writable(here):
        return True
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache"
    )
    for candidate in (
        os.path.join(xdg, "filtkit-numba"),
        os.path.join(tempfile.gettempdir(), f"filtkit-numba-{getattr(os, 'getuid', lambda: 0)()}"),
    ):
        if _writable(candidate):
            os.environ["NUMBA_CACHE_DIR"] = candidate
            return True
    return False


CACHE = _choose_cache()

# correlate(method="auto") switches to the FFT path (scipy.fft) at this many kernel
# taps: direct and FFT took the same time near 25x25 on 2048^2 images (float32 and
# float64) on the project's 2-core machine; smaller float32 images cross earlier (~17x17).
FFT_MIN_TAPS_2D = 25 * 25
FFT_MIN_TAPS_1D = 128
