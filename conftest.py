"""Collection rules for the whole repository (doctests of filtkit/ included)."""

collect_ignore = []
try:  # the CUDA backend's module needs numba-cuda (extra "cuda"); without it, skip collecting it
    import numba.cuda  # noqa: F401
except Exception:
    collect_ignore.append("filtkit/backends/cuda.py")
