"""CPU backend functions: ``@njit(parallel=True, cache=True)`` kernels.

Every function here assumes clean input, prepared once by the public API
(:mod:`filtkit._validate`): C-contiguous float32 or float64 arrays of the
documented shapes, output arrays already allocated with the input's dtype,
and plain Python ints for every size, offset, stride and dilation.  Nothing
here checks its arguments.

Boundary modes are passed as small integer codes
(:data:`filtkit._config.BOUNDARY_CODES`): 0 constant, 1 reflect, 2 mirror,
3 nearest, 4 wrap, with the meanings of :mod:`scipy.ndimage`.

Zero weights are skipped, as scipy.ndimage does, so a NaN in the input
reaches exactly the outputs whose window holds it under a non-zero weight.

No function builds a padded copy of its input: out-of-range source indices
are mapped through :func:`_map_index`, one row at a time for the row axis and
only for the border columns of each tap for the column axis, so the interior
of every row runs as a plain vectorisable loop over pre-sliced views (see
``NUMBA_NOTES.md``).  Each parallel stage is its own ``@njit`` function, so
Numba cannot fuse two ``prange`` loops.
"""

import numpy as np
from numba import njit, prange

from .._config import CACHE, FASTMATH, PARALLEL

CONSTANT, REFLECT, MIRROR, NEAREST, WRAP = 0, 1, 2, 3, 4

_jit = dict(cache=CACHE, fastmath=FASTMATH)


@njit(inline="always", **_jit)
def _map_index(i, n, mode):
    """Map a possibly out-of-range index into ``[0, n)``; -1 means "use cval"."""
    if 0 <= i < n:
        return i
    if mode == CONSTANT:
        return -1
    if mode == NEAREST:
        return 0 if i < 0 else n - 1
    if mode == WRAP:
        return i % n
    if mode == REFLECT:
        period = 2 * n
        i = i % period
        return period - 1 - i if i >= n else i
    # MIRROR
    if n == 1:
        return 0
    period = 2 * n - 2
    i = i % period
    return period - i if i >= n else i


@njit(**_jit)
def boundary_index(n, lo, hi, mode):
    """Source indices of the extended axis ``[-lo, n + hi)`` (-1: constant)."""
    out = np.empty(n + lo + hi, dtype=np.int64)
    for t in range(n + lo + hi):
        out[t] = _map_index(t - lo, n, mode)
    return out


@njit(parallel=PARALLEL, **_jit)
def correlate2d(x, w, out, off0, off1, s0, s1, d0, d1, mode, cval):
    """Batched 2-D cross-correlation with boundary handling.

    ``out[b, i, j] = sum_m sum_n w[m, n] * X[b, i*s0 + m*d0 - off0,
    j*s1 + n*d1 - off1]`` where ``X`` is ``x`` extended by ``mode``.

    x : (B, H, W), w : (Kh, Kw), out : (B, Ho, Wo), all one float dtype.
    """
    nb, h, wd = x.shape
    kh, kw = w.shape
    ho, wo = out.shape[1], out.shape[2]
    for t in prange(nb * ho):
        b = t // ho
        i = t - b * ho
        orow = out[b, i]
        for j in range(wo):
            orow[j] = 0.0
        for m in range(kh):
            r = _map_index(i * s0 + m * d0 - off0, h, mode)
            if r < 0:
                acc = 0.0
                for k in range(kw):
                    if w[m, k] != 0.0:
                        acc += w[m, k] * cval
                for j in range(wo):
                    orow[j] += acc
                continue
            xrow = x[b, r]
            for k in range(kw):
                wk = w[m, k]
                if wk == 0.0:
                    continue  # as scipy.ndimage: zero weights never touch x
                c0 = k * d1 - off1  # source column of output j is j*s1 + c0
                # output columns whose source lies inside [0, wd)
                jlo = min(wo, max(0, (s1 - 1 - c0) // s1))
                jhi = min(wo, (wd - 1 - c0) // s1 + 1)
                if jhi < jlo:
                    jhi = jlo
                for j in range(jlo):
                    c = _map_index(j * s1 + c0, wd, mode)
                    orow[j] += wk * (cval if c < 0 else xrow[c])
                n_in = jhi - jlo
                if s1 == 1:
                    src = xrow[jlo + c0 : jhi + c0]
                    dst = orow[jlo:jhi]
                    for j in range(n_in):
                        dst[j] += wk * src[j]
                else:
                    base = jlo * s1 + c0
                    dst = orow[jlo:jhi]
                    for j in range(n_in):
                        dst[j] += wk * xrow[base + j * s1]
                for j in range(jhi, wo):
                    c = _map_index(j * s1 + c0, wd, mode)
                    orow[j] += wk * (cval if c < 0 else xrow[c])


@njit(parallel=PARALLEL, **_jit)
def correlate3d_valid(x, w, out, s0, s1, s2, d0, d1, d2):
    """Depth-summing valid-mode correlation, the seed's cov(i, j).

    ``out[z, i, j] = sum_d sum_m sum_n w[d, m, n] *
    x[z*s0 + d*d0, i*s1 + m*d1, j*s2 + n*d2]``.

    x : (D, H, W), w : (Kd, Kh, Kw), out : (Zo, Ho, Wo).
    """
    kd, kh, kw = w.shape
    zo, ho, wo = out.shape
    for t in prange(zo * ho):
        z = t // ho
        i = t - z * ho
        orow = out[z, i]
        for j in range(wo):
            orow[j] = 0.0
        for d in range(kd):
            for m in range(kh):
                xrow = x[z * s0 + d * d0, i * s1 + m * d1]
                for k in range(kw):
                    wk = w[d, m, k]
                    if wk == 0.0:
                        continue
                    base = k * d2
                    for j in range(wo):
                        orow[j] += wk * xrow[base + j * s2]


@njit(parallel=PARALLEL, **_jit)
def max_pool2d(x, out, k0, k1, s0, s1):
    """Max pooling of (B, H, W) into (B, Ho, Wo); NaN propagates."""
    nb = x.shape[0]
    ho, wo = out.shape[1], out.shape[2]
    for t in prange(nb * ho):
        b = t // ho
        i = t - b * ho
        for j in range(wo):
            best = x[b, i * s0, j * s1]
            for m in range(k0):
                for n in range(k1):
                    v = x[b, i * s0 + m, j * s1 + n]
                    if v > best or (v != v and best == best):
                        best = v
            out[b, i, j] = best


@njit(parallel=PARALLEL, **_jit)
def avg_pool2d(x, out, k0, k1, s0, s1):
    """Mean pooling of (B, H, W) into (B, Ho, Wo)."""
    nb = x.shape[0]
    ho, wo = out.shape[1], out.shape[2]
    for t in prange(nb * ho):
        b = t // ho
        i = t - b * ho
        for j in range(wo):
            acc = 0.0
            for m in range(k0):
                for n in range(k1):
                    acc += x[b, i * s0 + m, j * s1 + n]
            out[b, i, j] = acc / (k0 * k1)
