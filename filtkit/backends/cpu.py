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

No filtering function builds a padded copy of its input (only
:func:`extend2d` does, for the FFT path): out-of-range source indices
are mapped through :func:`_map_index`, one row at a time for the row axis and
only for the border columns of each tap for the column axis, so the interior
of every row runs as a plain vectorisable loop over pre-sliced views (see
``NUMBA_NOTES.md``).  Each parallel stage is its own ``@njit`` function, so
Numba cannot fuse two ``prange`` loops.
"""

import math

import numpy as np
from numba import get_num_threads, njit, prange
from scipy.special import expit as _expit

from .._config import BOUNDARY_CODES, CACHE, FASTMATH, PARALLEL

CONSTANT, REFLECT, MIRROR, NEAREST, WRAP = (
    BOUNDARY_CODES[name] for name in ("constant", "reflect", "mirror", "nearest", "wrap")
)

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


@njit(**_jit)
def extend2d(x, out, idx0, idx1, cval):
    """out[b, a, c] = x[b, idx0[a], idx1[c]], or cval where an index is -1.

    Writes the boundary-extended image (indices from :func:`boundary_index`)
    into the top-left corner of ``out`` in one pass; the FFT path then
    transforms ``out`` (zero beyond that corner) without another copy.
    Serial on purpose: OpenMP threads left spinning after a parallel region
    starve scipy.fft's worker threads that run right after it.
    """
    nb = x.shape[0]
    n0, n1 = idx0.shape[0], idx1.shape[0]
    for t in range(nb * n0):
        b = t // n0
        a = t - b * n0
        r = idx0[a]
        orow = out[b, a]
        if r < 0:
            for c in range(n1):
                orow[c] = cval
        else:
            xrow = x[b, r]
            for c in range(n1):
                k = idx1[c]
                orow[c] = cval if k < 0 else xrow[k]


@njit(inline="always", **_jit)
def _taps8(dst, jlo, jhi, init, xa, ca, wa, xb, cb, wb, xc, cc, wc, xd, cd, wd,
           xe, ce, we, xf, cf, wf, xg, cg, wg, xh, ch, wh):
    """dst[j] (+)= sum of eight taps ``w * x[j + c]`` over [jlo, jhi), stride 1.

    Eight taps per pass halve the output row's load/store traffic of
    :func:`_taps4`; measured 12-20 % faster for 7x7 and 9x9 kernels.
    """
    n = jhi - jlo
    d = dst[jlo:jhi]
    a = xa[jlo + ca : jhi + ca]
    b = xb[jlo + cb : jhi + cb]
    c = xc[jlo + cc : jhi + cc]
    e = xd[jlo + cd : jhi + cd]
    f = xe[jlo + ce : jhi + ce]
    g = xf[jlo + cf : jhi + cf]
    p = xg[jlo + cg : jhi + cg]
    q = xh[jlo + ch : jhi + ch]
    if init:
        for j in range(n):
            d[j] = (wa * a[j] + wb * b[j] + wc * c[j] + wd * e[j]
                    + we * f[j] + wf * g[j] + wg * p[j] + wh * q[j])
    else:
        for j in range(n):
            d[j] += (wa * a[j] + wb * b[j] + wc * c[j] + wd * e[j]
                     + we * f[j] + wf * g[j] + wg * p[j] + wh * q[j])


@njit(inline="always", **_jit)
def _taps4(dst, jlo, jhi, s1, init, xa, ca, wa, xb, cb, wb, xc, cc, wc, xd, cd, wd):
    """dst[j] (+)= sum of up to four taps ``w * x[j*s1 + c]`` over [jlo, jhi).

    Four taps per pass keep the output row's load/store traffic a quarter
    of a tap-by-tap loop; for s1 == 1 the taps are pre-sliced views indexed
    from 0, which LLVM vectorises.
    """
    n = jhi - jlo
    d = dst[jlo:jhi]
    if s1 == 1:
        a = xa[jlo + ca : jhi + ca]
        b = xb[jlo + cb : jhi + cb]
        c = xc[jlo + cc : jhi + cc]
        e = xd[jlo + cd : jhi + cd]
        if init:
            for j in range(n):
                d[j] = wa * a[j] + wb * b[j] + wc * c[j] + wd * e[j]
        else:
            for j in range(n):
                d[j] += wa * a[j] + wb * b[j] + wc * c[j] + wd * e[j]
    else:
        ba, bb, bc, be = jlo * s1 + ca, jlo * s1 + cb, jlo * s1 + cc, jlo * s1 + cd
        for j in range(n):
            v = (wa * xa[ba + j * s1] + wb * xb[bb + j * s1]
                 + wc * xc[bc + j * s1] + wd * xd[be + j * s1])
            d[j] = v if init else d[j] + v


@njit(inline="always", **_jit)
def _taps1(dst, jlo, jhi, s1, init, xa, ca, wa):
    """dst[j] (+)= wa * xa[j*s1 + ca] over [jlo, jhi): the leftover taps."""
    n = jhi - jlo
    d = dst[jlo:jhi]
    if s1 == 1:
        a = xa[jlo + ca : jhi + ca]
        if init:
            for j in range(n):
                d[j] = wa * a[j]
        else:
            for j in range(n):
                d[j] += wa * a[j]
    else:
        base = jlo * s1 + ca
        for j in range(n):
            v = wa * xa[base + j * s1]
            d[j] = v if init else d[j] + v


@njit(inline="always", **_jit)
def _finish(dst, jlo, jhi, s1, init, pend, xa, ca, wa, xb, cb, wb, xc, cc, wc, const,
            has_const):
    """Close a pending-tap pass over [jlo, jhi): the last 0-3 taps one by one, then
    the constant-mode rows beyond the edge (``const``), or only ``const`` when no tap
    touched ``dst`` at all."""
    if pend > 0:
        _taps1(dst, jlo, jhi, s1, init, xa, ca, wa)
        if pend > 1:
            _taps1(dst, jlo, jhi, s1, False, xb, cb, wb)
        if pend > 2:
            _taps1(dst, jlo, jhi, s1, False, xc, cc, wc)
        init = False
    if init:
        for j in range(jlo, jhi):
            dst[j] = const
    elif has_const:
        for j in range(jlo, jhi):
            dst[j] += const


@njit(inline="always", **_jit)
def _border_column(x, w, b, i, j, off0, off1, s0, s1, d0, d1, mode, cv, nzk, nnz, acc):
    """One output column near the left or right edge, tap by tap."""
    h, wdt = x.shape[1], x.shape[2]
    for m in range(w.shape[0]):
        r = _map_index(i * s0 + m * d0 - off0, h, mode)
        if r < 0:
            continue
        for q in range(nnz[m]):
            k = nzk[m, q]
            c = _map_index(j * s1 + k * d1 - off1, wdt, mode)
            acc += w[m, k] * (cv if c < 0 else x[b, r, c])
    return acc


@njit(inline="always", **_jit)
def _taps9(dst, jlo, jhi, xa, xb, xc, ca, cb, cc, w):
    """dst[j] = the whole dense 3x3 kernel over [jlo, jhi) in one pass.

    Rows ``xa, xb, xc`` hold the three source rows; tap ``n`` of each reads
    column ``j + c + n*d`` with ``(ca, cb, cc) = (off, off + d, off + 2*d)``
    relative offsets.  One load/store of ``dst`` per output instead of one per
    four taps: the 3x3 filter runs near the memory-bandwidth limit.
    """
    n = jhi - jlo
    d = dst[jlo:jhi]
    a0 = xa[jlo + ca : jhi + ca]
    a1 = xa[jlo + cb : jhi + cb]
    a2 = xa[jlo + cc : jhi + cc]
    b0 = xb[jlo + ca : jhi + ca]
    b1 = xb[jlo + cb : jhi + cb]
    b2 = xb[jlo + cc : jhi + cc]
    c0 = xc[jlo + ca : jhi + ca]
    c1 = xc[jlo + cb : jhi + cb]
    c2 = xc[jlo + cc : jhi + cc]
    w00, w01, w02 = w[0, 0], w[0, 1], w[0, 2]
    w10, w11, w12 = w[1, 0], w[1, 1], w[1, 2]
    w20, w21, w22 = w[2, 0], w[2, 1], w[2, 2]
    for j in range(n):
        d[j] = (w00 * a0[j] + w01 * a1[j] + w02 * a2[j]
                + w10 * b0[j] + w11 * b1[j] + w12 * b2[j]
                + w20 * c0[j] + w21 * c1[j] + w22 * c2[j])


@njit(parallel=PARALLEL, **_jit)
def correlate2d(x, w, out, off0, off1, s0, s1, d0, d1, mode, cval):
    """Batched 2-D cross-correlation with boundary handling.

    ``out[b, i, j] = sum_m sum_n w[m, n] * X[b, i*s0 + m*d0 - off0,
    j*s1 + n*d1 - off1]`` where ``X`` is ``x`` extended by ``mode``.

    x : (B, H, W), w : (Kh, Kw), out : (B, Ho, Wo), all one float dtype;
    ``off0, off1 >= 0``.

    Each output row is one parallel task.  Its columns split into an
    interior, where every tap reads inside the row, summed eight taps per
    pass by :func:`_taps8` (a dense 3x3 kernel in one pass by :func:`_taps9`),
    and a few border columns on each side, summed
    tap by tap through :func:`_map_index`.  A source row beyond the edge in
    constant mode adds ``cval * sum(w[m])`` to the whole output row.
    """
    nb, h, wdt = x.shape
    kh, kw = w.shape
    ho, wo = out.shape[1], out.shape[2]
    zero = w.dtype.type(0)
    cv = w.dtype.type(cval)
    jlo, jhi = _interior(wdt, wo, kw, off1, s1, d1)
    # non-zero taps of each kernel row (zero weights never touch x, as ndimage)
    nzk = np.empty((kh, kw), dtype=np.int64)
    nnz = np.zeros(kh, dtype=np.int64)
    rowsum = np.zeros(kh, dtype=w.dtype)
    for m in range(kh):
        for k in range(kw):
            if w[m, k] != zero:
                nzk[m, nnz[m]] = k
                nnz[m] += 1
                rowsum[m] += w[m, k] * cv
    # a dense 3x3 kernel at column stride 1 runs in one pass (_taps9); zero
    # weights must keep being skipped (NaN semantics), so only without zeros
    dense3 = kh == 3 and kw == 3 and s1 == 1 and nnz[0] == 3 and nnz[1] == 3 and nnz[2] == 3
    for t in prange(nb * ho):
        b = t // ho
        i = t - b * ho
        orow = out[b, i]
        # rows beyond the edge in constant mode add cval * sum(w[m]) everywhere
        const = zero
        has_const = False
        for m in range(kh):
            if _map_index(i * s0 + m * d0 - off0, h, mode) < 0:
                const += rowsum[m]
                has_const = True
        if dense3 and not has_const:
            r0 = _map_index(i * s0 - off0, h, mode)
            r1 = _map_index(i * s0 + d0 - off0, h, mode)
            r2 = _map_index(i * s0 + 2 * d0 - off0, h, mode)
            _taps9(orow, jlo, jhi, x[b, r0], x[b, r1], x[b, r2],
                   -off1, d1 - off1, 2 * d1 - off1, w)
        else:
            init = True
            pend = 0
            xa = xb = xc = xd = xe = xf = xg = x[b, 0]
            ca = cb = cc = cd = ce = cf = cg = 0
            wa = wb = wc = wd = we = wf = wg = zero
            # up to seven taps wait in (xa, ca, wa) ... (xg, cg, wg); the eighth
            # flushes them through _taps8 (stride 1) or _taps4 twice (strided)
            for m in range(kh):
                r = _map_index(i * s0 + m * d0 - off0, h, mode)
                if r < 0:
                    continue
                xr = x[b, r]
                for q in range(nnz[m]):
                    k = nzk[m, q]
                    ck = k * d1 - off1
                    wk = w[m, k]
                    if pend == 0:
                        xa, ca, wa = xr, ck, wk
                    elif pend == 1:
                        xb, cb, wb = xr, ck, wk
                    elif pend == 2:
                        xc, cc, wc = xr, ck, wk
                    elif pend == 3:
                        xd, cd, wd = xr, ck, wk
                    elif pend == 4:
                        xe, ce, we = xr, ck, wk
                    elif pend == 5:
                        xf, cf, wf = xr, ck, wk
                    elif pend == 6:
                        xg, cg, wg = xr, ck, wk
                    else:
                        if s1 == 1:
                            _taps8(orow, jlo, jhi, init, xa, ca, wa, xb, cb, wb, xc, cc, wc,
                                   xd, cd, wd, xe, ce, we, xf, cf, wf, xg, cg, wg, xr, ck, wk)
                        else:
                            _taps4(orow, jlo, jhi, s1, init,
                                   xa, ca, wa, xb, cb, wb, xc, cc, wc, xd, cd, wd)
                            _taps4(orow, jlo, jhi, s1, False,
                                   xe, ce, we, xf, cf, wf, xg, cg, wg, xr, ck, wk)
                        init = False
                        pend = 0
                        continue
                    pend += 1
            if pend >= 4:  # leftovers: four at once, then one by one
                _taps4(orow, jlo, jhi, s1, init, xa, ca, wa, xb, cb, wb, xc, cc, wc, xd, cd, wd)
                init = False
                xa, ca, wa = xe, ce, we
                xb, cb, wb = xf, cf, wf
                xc, cc, wc = xg, cg, wg
                pend -= 4
            _finish(orow, jlo, jhi, s1, init, pend, xa, ca, wa, xb, cb, wb, xc, cc, wc,
                    const, has_const)
        for j in range(jlo):  # the few border columns, tap by tap
            orow[j] = _border_column(x, w, b, i, j, off0, off1, s0, s1, d0, d1, mode, cv,
                                     nzk, nnz, const)
        for j in range(jhi, wo):
            orow[j] = _border_column(x, w, b, i, j, off0, off1, s0, s1, d0, d1, mode, cv,
                                     nzk, nnz, const)


@njit(**_jit)
def _nonzero(v):
    """Indices of the non-zero entries of a 1-D kernel, and their count."""
    idx = np.empty(v.shape[0], dtype=np.int64)
    n = 0
    for m in range(v.shape[0]):
        if v[m] != 0:
            idx[n] = m
            n += 1
    return idx, n


@njit(**_jit)
def _column_pass(x, b, i, col, nzm, nm, off0, s0, d0, mode, cv, buf):
    """buf[:] = sum_m col[m] * X[b, i*s0 + m*d0 - off0, :], four rows per pass."""
    h, wdt = x.shape[1], x.shape[2]
    zero = col.dtype.type(0)
    const = zero
    has_const = False
    init = True
    pend = 0
    xa = xb = xc = x[b, 0]
    wa = wb = wc = zero
    for q in range(nm):
        m = nzm[q]
        r = _map_index(i * s0 + m * d0 - off0, h, mode)
        if r < 0:
            const += col[m] * cv
            has_const = True
            continue
        if pend == 0:
            xa, wa = x[b, r], col[m]
        elif pend == 1:
            xb, wb = x[b, r], col[m]
        elif pend == 2:
            xc, wc = x[b, r], col[m]
        else:
            _taps4(buf, 0, wdt, 1, init, xa, 0, wa, xb, 0, wb, xc, 0, wc, x[b, r], 0, col[m])
            init = False
            pend = 0
            continue
        pend += 1
    _finish(buf, 0, wdt, 1, init, pend, xa, 0, wa, xb, 0, wb, xc, 0, wc, const, has_const)


@njit(**_jit)
def _row_pass(buf, row, nzk, nk, orow, jlo, jhi, off1, s1, d1, mode, edge):
    """orow[j] = sum_k row[k] * B[j*s1 + k*d1 - off1] with B = buf extended by
    ``mode`` (``edge`` beyond it in constant mode); interior four taps a pass."""
    wdt, wo = buf.shape[0], orow.shape[0]
    zero = row.dtype.type(0)
    init = True
    pend = 0
    ca = cb = cc = 0
    wa = wb = wc = zero
    for q in range(nk):
        k = nzk[q]
        ck = k * d1 - off1
        if pend == 0:
            ca, wa = ck, row[k]
        elif pend == 1:
            cb, wb = ck, row[k]
        elif pend == 2:
            cc, wc = ck, row[k]
        else:
            _taps4(orow, jlo, jhi, s1, init, buf, ca, wa, buf, cb, wb, buf, cc, wc,
                   buf, ck, row[k])
            init = False
            pend = 0
            continue
        pend += 1
    _finish(orow, jlo, jhi, s1, init, pend, buf, ca, wa, buf, cb, wb, buf, cc, wc, zero, False)
    for part in range(2):  # the border columns [0, jlo) and [jhi, wo)
        for j in range(0, jlo) if part == 0 else range(jhi, wo):
            acc = zero
            for q in range(nk):
                k = nzk[q]
                c = _map_index(j * s1 + k * d1 - off1, wdt, mode)
                acc += row[k] * (edge if c < 0 else buf[c])
            orow[j] = acc


@njit(inline="always", **_jit)
def _interior(wdt, wo, kw, off1, s1, d1):
    """Output columns [jlo, jhi) whose every tap reads inside [0, wdt)."""
    jlo = min(wo, (off1 + s1 - 1) // s1)
    jhi = min(wo, (wdt - 1 - (kw - 1) * d1 + off1) // s1 + 1)
    return jlo, max(jlo, jhi)


@njit(parallel=PARALLEL, **_jit)
def separable2d(x, col, row, out, off0, off1, s0, s1, d0, d1, mode, cval):
    """``correlate2d`` with the rank-1 kernel ``outer(col, row)``, fused.

    Each output row is one parallel task: the column pass sums the
    ``col``-weighted source rows into a row buffer, and the row pass
    correlates that buffer with ``row`` into the output, so no image-sized
    intermediate is written.  Beyond the left and right edges in constant
    mode the buffer reads ``cval * sum(col)``, which is what the 2-D kernel
    sees there.  Arguments as :func:`correlate2d`, with ``col : (Kh,)`` and
    ``row : (Kw,)``.
    """
    nb, wdt = x.shape[0], x.shape[2]
    ho, wo = out.shape[1], out.shape[2]
    cv = col.dtype.type(cval)
    jlo, jhi = _interior(wdt, wo, row.shape[0], off1, s1, d1)
    nzm, nm = _nonzero(col)
    nzk, nk = _nonzero(row)
    edge = cv * col.sum()
    for t in prange(nb * ho):
        b = t // ho
        i = t - b * ho
        buf = np.empty(wdt, dtype=x.dtype)
        _column_pass(x, b, i, col, nzm, nm, off0, s0, d0, mode, cv, buf)
        _row_pass(buf, row, nzk, nk, out[b, i], jlo, jhi, off1, s1, d1, mode, edge)


@njit(parallel=PARALLEL, **_jit)
def gradient_magnitude2d(x, edge, smooth, out, mode, cval):
    """scikit-image's edge magnitude of a 2-D image in one pass.

    ``out = sqrt(g0**2 + g1**2) / sqrt(2)`` where ``g0`` correlates ``x``
    with ``outer(edge, smooth)`` and ``g1`` with ``outer(smooth, edge)``
    (odd lengths, centred).  x, out : (B, H, W).
    """
    nb, h, wdt = x.shape
    k = edge.shape[0]
    off = k // 2
    cv = edge.dtype.type(cval)
    jlo, jhi = _interior(wdt, wdt, k, off, 1, 1)
    nze, ne = _nonzero(edge)
    nzs, ns = _nonzero(smooth)
    edge_e = cv * edge.sum()
    edge_s = cv * smooth.sum()
    scale = np.sqrt(x.dtype.type(2))
    for t in prange(nb * h):
        b = t // h
        i = t - b * h
        be = np.empty(wdt, dtype=x.dtype)
        bs = np.empty(wdt, dtype=x.dtype)
        g0 = np.empty(wdt, dtype=x.dtype)
        g1 = np.empty(wdt, dtype=x.dtype)
        _column_pass(x, b, i, edge, nze, ne, off, 1, 1, mode, cv, be)
        _column_pass(x, b, i, smooth, nzs, ns, off, 1, 1, mode, cv, bs)
        _row_pass(be, smooth, nzs, ns, g0, jlo, jhi, off, 1, 1, mode, edge_e)
        _row_pass(bs, edge, nze, ne, g1, jlo, jhi, off, 1, 1, mode, edge_s)
        orow = out[b, i]
        for j in range(wdt):
            orow[j] = np.sqrt(g0[j] * g0[j] + g1[j] * g1[j]) / scale


@njit(inline="always", **_jit)
def _max_pool_row_2x2(xa, xb, orow, arow, base, w):
    """One output row of a 2x2, stride-2 max pool over source rows ``xa``, ``xb``
    (flat index of ``xa[0]``: ``base``), with torch's first-maximum / NaN rule."""
    for j in range(orow.shape[0]):
        c = 2 * j
        best = xa[c]
        at = base + c
        v = xa[c + 1]
        if v > best or v != v:
            best = v
            at = base + c + 1
        v = xb[c]
        if v > best or v != v:
            best = v
            at = base + w + c
        v = xb[c + 1]
        if v > best or v != v:
            best = v
            at = base + w + c + 1
        orow[j] = best
        arow[j] = at


@njit(inline="always", **_jit)
def _window_max(x, b, r0, r1, c0, c1):
    """Max of ``x[b, r0:r1, c0:c1]`` and the flat index ``r*W + c`` of the winner:
    torch's rule, the first maximum in row-major order, or the last NaN.  Shared
    with the CUDA twin, which compiles this same function for the device."""
    w = x.shape[2]
    best = -math.inf
    at = r0 * w + c0
    for r in range(r0, r1):
        for c in range(c0, c1):
            v = x[b, r, c]
            if v > best or v != v:
                best = v
                at = r * w + c
    return best, at


@njit(inline="always", **_jit)
def _window_mean(x, b, r0, r1, c0, c1, area):
    """Sum of ``x[b, r0:r1, c0:c1]`` in ``x``'s dtype, row by row (torch's CPU
    order), divided by ``area``; shared with the CUDA twin."""
    acc = x.dtype.type(0)
    for r in range(r0, r1):
        for c in range(c0, c1):
            acc += x[b, r, c]
    return acc / x.dtype.type(area)


@njit(parallel=PARALLEL, **_jit)
def max_pool2d(x, out, argmax, k0, k1, s0, s1, p0, p1):
    """Max pooling of (B, H, W) into (B, Ho, Wo), as torch's MaxPool2d.

    Windows start at ``i*s0 - p0``; padding never wins.  ``argmax`` (int32,
    like ``out``) receives the flat index ``r*W + c`` of the winner within
    its plane: the first maximum in row-major order, or the last NaN (NaN
    propagates), PyTorch's rule.
    """
    nb, h, w = x.shape
    ho, wo = out.shape[1], out.shape[2]
    pairs = k0 == 2 and k1 == 2 and s0 == 2 and s1 == 2 and p0 == 0 and p1 == 0
    for t in prange(nb * ho):
        b = t // ho
        i = t - b * ho
        if pairs:  # the common 2x2 / stride 2 window, unrolled: 3x faster
            _max_pool_row_2x2(x[b, 2 * i], x[b, 2 * i + 1], out[b, i], argmax[b, i],
                              2 * i * w, w)
            continue
        r0, r1 = max(i * s0 - p0, 0), min(i * s0 - p0 + k0, h)
        for j in range(wo):
            c0, c1 = max(j * s1 - p1, 0), min(j * s1 - p1 + k1, w)
            out[b, i, j], argmax[b, i, j] = _window_max(x, b, r0, r1, c0, c1)


@njit(parallel=PARALLEL, **_jit)
def max_pool2d_backward(dy, argmax, dx, k0, k1, s0, s1, p0, p1):
    """Route each ``dy`` to its window's ``argmax`` (overlapping windows add up).

    dy, argmax : (B, Ho, Wo); dx : (B, H, W), overwritten.  Each plane is one
    parallel task, so no two threads write one element.  The window geometry
    is unused here (the CUDA twin gathers per input element and needs it).
    """
    nb, ho, wo = dy.shape
    zero = dx.dtype.type(0)
    for b in prange(nb):
        flat = dx[b].reshape(dx.shape[1] * dx.shape[2])
        for t in range(flat.size):
            flat[t] = zero
        for i in range(ho):
            for j in range(wo):
                flat[argmax[b, i, j]] += dy[b, i, j]


@njit(parallel=PARALLEL, **_jit)
def avg_pool2d(x, out, k0, k1, s0, s1, p0, p1):
    """Mean pooling of (B, H, W) into (B, Ho, Wo); zero padding counts in the
    mean (torch's AvgPool2d with count_include_pad=True)."""
    nb, h, w = x.shape
    ho, wo = out.shape[1], out.shape[2]
    for t in prange(nb * ho):
        b = t // ho
        i = t - b * ho
        r0, r1 = max(i * s0 - p0, 0), min(i * s0 - p0 + k0, h)
        for j in range(wo):
            c0, c1 = max(j * s1 - p1, 0), min(j * s1 - p1 + k1, w)
            out[b, i, j] = _window_mean(x, b, r0, r1, c0, c1, k0 * k1)


@njit(parallel=PARALLEL, **_jit)
def avg_pool2d_backward(dy, dx, k0, k1, s0, s1, p0, p1):
    """Spread each ``dy / (k0*k1)`` over its window's positions inside the
    plane (overlapping windows add up); dx : (B, H, W), overwritten."""
    nb, ho, wo = dy.shape
    h, w = dx.shape[1], dx.shape[2]
    area = dx.dtype.type(k0 * k1)
    zero = dx.dtype.type(0)
    for b in prange(nb):
        plane = dx[b]
        for r in range(h):
            for c in range(w):
                plane[r, c] = zero
        for i in range(ho):
            r0, r1 = max(i * s0 - p0, 0), min(i * s0 - p0 + k0, h)
            for j in range(wo):
                c0, c1 = max(j * s1 - p1, 0), min(j * s1 - p1 + k1, w)
                g = dy[b, i, j] / area
                for r in range(r0, r1):
                    for c in range(c0, c1):
                        plane[r, c] += g


ALIAS_PERIOD = 4096  # bytes: loads and stores whose addresses agree modulo this falsely collide


def empty_apart(shape, dtype, source):
    """An uninitialised C-contiguous array whose address sits half a page from ``source``'s.

    The filtering loops store an output row while loading source rows a few
    elements to either side.  When the two arrays start at the same offset
    within a 4 KiB page (as two fresh allocations usually do), each store
    falsely conflicts with the next loads ("4K aliasing"); placing the output
    ``ALIAS_PERIOD / 2`` bytes apart measured 1.3-1.5x faster for 5x5 to 9x9
    kernels on 2048x2048 float32.
    """
    dtype = np.dtype(dtype)
    n = 1
    for s in shape:
        n *= s
    pad = ALIAS_PERIOD // dtype.itemsize
    buf = np.empty(n + pad, dtype=dtype)
    want = (source.ctypes.data + ALIAS_PERIOD // 2) % ALIAS_PERIOD
    start = (want - buf.ctypes.data) % ALIAS_PERIOD // dtype.itemsize
    return buf[start : start + n].reshape(shape)


@njit(**_jit)
def _pad_plane(xn, xp, p0, p1):
    """xp[c, r, q] = xn[c, r - p0, q - p1], 0 outside ``xn`` (the zero-padded planes the
    windows read; rows and columns no window reaches are left out)."""
    nc, h, w = xn.shape
    hp, wp = xp.shape[1], xp.shape[2]
    zero = xp.dtype.type(0)
    q1 = min(max(wp - p1, 0), w)  # columns of xn that land in xp
    for c in range(nc):
        for r in range(hp):
            row = xp[c, r]
            if r < p0 or r - p0 >= h:
                for q in range(wp):
                    row[q] = zero
                continue
            src = xn[c, r - p0]
            for q in range(min(p1, wp)):
                row[q] = zero
            seg = row[p1 : p1 + q1]
            for q in range(q1):
                seg[q] = src[q]
            for q in range(p1 + q1, wp):
                row[q] = zero


@njit(inline="always", **_jit)
def _padded_shape(kh, kw, s0, s1, d0, d1, ho, wo):
    """(rows, columns) of the padded plane that the (ho, wo) windows read."""
    return (ho - 1) * s0 + (kh - 1) * d0 + 1, (wo - 1) * s1 + (kw - 1) * d1 + 1


@njit(**_jit)
def _padded(xn, kh, kw, s0, s1, p0, p1, d0, d1, ho, wo):
    """``xn`` zero-padded by (p0, p1) before and cut to what the windows read: ``xn``
    itself where the windows read no padding, else a new array (:func:`_pad_plane`)."""
    hp, wp = _padded_shape(kh, kw, s0, s1, d0, d1, ho, wo)
    if p0 == 0 and p1 == 0 and hp <= xn.shape[1] and wp <= xn.shape[2]:
        return xn
    xp = np.empty((xn.shape[0], hp, wp), dtype=xn.dtype)
    _pad_plane(xn, xp, p0, p1)
    return xp


@njit(**_jit)
def _im2col(xp, cols, kh, kw, s0, s1, d0, d1, ho, wo):
    """cols[(c*kh + m)*kw + k, i*wo + j] = xp[c, i*s0 + m*d0, j*s1 + k*d1] on the padded
    plane ``xp`` (:func:`_padded`): row segments copied without bounds arithmetic."""
    nc = xp.shape[0]
    for c in range(nc):
        for m in range(kh):
            for i in range(ho):
                src = xp[c, i * s0 + m * d0]
                for k in range(kw):
                    dst = cols[(c * kh + m) * kw + k, i * wo : (i + 1) * wo]
                    if s1 == 1:
                        seg = src[k * d1 : k * d1 + wo]
                        for j in range(wo):
                            dst[j] = seg[j]
                    else:
                        for j in range(wo):
                            dst[j] = src[k * d1 + j * s1]


@njit(**_jit)
def _col2im(cols, xp, kh, kw, s0, s1, d0, d1, ho, wo):
    """The adjoint of :func:`_im2col`: xp[c, r, q] += every cols entry that read it."""
    nc = xp.shape[0]
    for c in range(nc):
        for m in range(kh):
            for k in range(kw):
                row = cols[(c * kh + m) * kw + k]
                for i in range(ho):
                    dst = xp[c, i * s0 + m * d0]
                    src = row[i * wo : (i + 1) * wo]
                    if s1 == 1:
                        seg = dst[k * d1 : k * d1 + wo]
                        for j in range(wo):
                            seg[j] += src[j]
                    else:
                        for j in range(wo):
                            dst[k * d1 + j * s1] += src[j]


@njit(parallel=PARALLEL, **_jit)
def conv2d(x, w, b, out, s0, s1, p0, p1, d0, d1):
    """Batched multi-channel correlation, the seed's depth sum, plus a bias.

    ``out[n, o, i, j] = b[o] + sum_c sum_m sum_k w[o, c, m, k] *
    x[n, c, i*s0 + m*d0 - p0, j*s1 + k*d1 - p1]`` with zeros outside ``x``.

    x : (N, C, H, W), w : (O, C, Kh, Kw), b : (O,), out : (N, O, Ho, Wo).
    Each sample is one parallel task: its input unrolled into columns
    (im2col, ``(C*Kh*Kw, Ho*Wo)``) and one matrix product with the kernels
    (GEMM, through the BLAS Numba links; keep that BLAS single-threaded while
    this runs, see ``NUMBA_NOTES.md``).
    """
    nb, nc = x.shape[0], x.shape[1]
    no, _, kh, kw = w.shape
    ho, wo = out.shape[2], out.shape[3]
    w2 = w.reshape(no, nc * kh * kw)
    for n in prange(nb):
        cols = np.empty((nc * kh * kw, ho * wo), dtype=x.dtype)
        xp = _padded(x[n], kh, kw, s0, s1, p0, p1, d0, d1, ho, wo)
        _im2col(xp, cols, kh, kw, s0, s1, d0, d1, ho, wo)
        on = out[n].reshape(no, ho * wo)
        np.dot(w2, cols, on)
        for o in range(no):
            bo = b[o]
            oo = on[o]
            for t in range(ho * wo):
                oo[t] += bo


@njit(parallel=PARALLEL, **_jit)
def conv2d_grad_input(dy, w, dx, s0, s1, p0, p1, d0, d1):
    """Gradient of :func:`conv2d` with respect to ``x``, written into ``dx``.

    Equal to the seed's full-mode correlation of ``dy`` with the kernel
    rotated by 180 degrees (summed over output channels); computed as one
    GEMM per sample, ``w^T dy[n]``, scattered back by :func:`_col2im`.
    dy : (N, O, Ho, Wo), w : (O, C, Kh, Kw), dx : (N, C, H, W).
    """
    nb, no, ho, wo = dy.shape
    nc, kh, kw = w.shape[1], w.shape[2], w.shape[3]
    h, w_ = dx.shape[2], dx.shape[3]
    hp, wp = _padded_shape(kh, kw, s0, s1, d0, d1, ho, wo)
    w2t = np.ascontiguousarray(w.reshape(no, nc * kh * kw).T)
    zero = dx.dtype.type(0)
    for n in prange(nb):
        dcols = np.dot(w2t, dy[n].reshape(no, ho * wo))
        dxn = dx[n]
        if p0 == 0 and p1 == 0 and hp <= h and wp <= w_:
            flat = dxn.reshape(dxn.size)
            for t in range(flat.size):
                flat[t] = zero
            _col2im(dcols, dxn, kh, kw, s0, s1, d0, d1, ho, wo)
            continue
        dxp = np.zeros((nc, hp, wp), dtype=dx.dtype)
        _col2im(dcols, dxp, kh, kw, s0, s1, d0, d1, ho, wo)
        nq = min(max(wp - p1, 0), w_)  # columns of dx inside dxp
        for c in range(nc):
            for r in range(h):
                dst = dxn[c, r]
                q = 0
                if r + p0 < hp:
                    src = dxp[c, r + p0, p1 : p1 + nq]
                    for q in range(nq):
                        dst[q] = src[q]
                    q = nq
                for t in range(q, w_):
                    dst[t] = zero


@njit(parallel=PARALLEL, **_jit)
def conv2d_grad_weight(x, dy, dw, db, s0, s1, p0, p1, d0, d1, nchunks, accumulate):
    """Gradients of :func:`conv2d` with respect to ``w`` and ``b``, written into dw, db
    (added to them when ``accumulate``: ``dw[...] = dw + gradient``, as a layer's
    parameter gradients accumulate).

    ``dw[o, c, m, k] = sum_n sum_i sum_j dy[n, o, i, j] * x[n, c, i*s0 + m*d0 - p0,
    j*s1 + k*d1 - p1]``: the seed's valid-mode correlation of the input with
    the delta.  The batch splits into ``nchunks`` contiguous parts, one
    parallel task each, that sum into their own partial gradient (no two
    threads ever write one element); the partials are then added in a fixed
    order, so the result does not depend on thread scheduling.
    """
    nb, nc = x.shape[0], x.shape[1]
    no, _, kh, kw = dw.shape
    ho, wo = dy.shape[2], dy.shape[3]
    nk = nc * kh * kw
    part = np.zeros((nchunks, no, nk), dtype=dw.dtype)
    pb = np.zeros((nchunks, no), dtype=dw.dtype)
    for t in prange(nchunks):
        cols = np.empty((nk, ho * wo), dtype=x.dtype)
        acc = part[t]
        for n in range(t * nb // nchunks, (t + 1) * nb // nchunks):
            xp = _padded(x[n], kh, kw, s0, s1, p0, p1, d0, d1, ho, wo)
            _im2col(xp, cols, kh, kw, s0, s1, d0, d1, ho, wo)
            dyn = dy[n].reshape(no, ho * wo)
            acc += np.dot(dyn, cols.T)
            for o in range(no):
                pb[t, o] += dyn[o].sum()
    dw2 = dw.reshape(no, nk)
    for o in range(no):
        for q in range(nk):
            s = part[0, o, q]
            for t in range(1, nchunks):
                s += part[t, o, q]
            dw2[o, q] = dw2[o, q] + s if accumulate else s
        s = pb[0, o]
        for t in range(1, nchunks):
            s += pb[t, o]
        db[o] = db[o] + s if accumulate else s


@njit(inline="always", **_jit)
def _relu_value(v, s, zero):
    """x where x > 0 (or NaN), else slope * x; ReLU (s == 0) writes +0.0, never -0.0."""
    return v if v > zero or v != v else (v * s if s != zero else zero)


@njit(inline="always", **_jit)
def _relu_grad(ref, g, s, zero):
    """ReLU (s == 0): torch's threshold_backward, an exact 0 where ref <= 0, g elsewhere
    (NaN ref too); LeakyReLU: g where ref > 0, else s * g."""
    if s == zero:
        return zero if ref <= zero else g
    return g if ref > zero else g * s


@njit(parallel=PARALLEL, **_jit)
def relu(x, out, slope):
    """out = x where x > 0 (or NaN), else slope * x (ReLU for slope 0, LeakyReLU otherwise).

    x, out : 1-D (flattened) arrays of one float dtype.
    """
    n = x.shape[0]
    s = x.dtype.type(slope)
    zero = x.dtype.type(0)
    chunk = 16384
    for c in prange((n + chunk - 1) // chunk):
        lo = c * chunk
        hi = min(n, lo + chunk)
        for i in range(lo, hi):
            out[i] = _relu_value(x[i], s, zero)


@njit(parallel=PARALLEL, **_jit)
def relu_backward(x, dy, dx, slope):
    """dx = dy where x > 0, else slope * dy; for ReLU (slope 0) torch's rule: exactly 0
    where x <= 0, dy elsewhere (a NaN x passes dy, an infinite dy gives no NaN)."""
    n = x.shape[0]
    s = x.dtype.type(slope)
    zero = x.dtype.type(0)
    chunk = 16384
    for c in prange((n + chunk - 1) // chunk):
        lo = c * chunk
        hi = min(n, lo + chunk)
        for i in range(lo, hi):
            dx[i] = _relu_grad(x[i], dy[i], s, zero)


@njit(inline="always", cache=CACHE)  # no fastmath: every operation rounds as numpy's
def _adam_element(theta, g, m, v, weight_decay, w1, small, one, beta2, one_minus_beta2,
                  neg_step_size, sqrt_bc2, eps):
    """One parameter's Adam step in torch's operation order: ``(theta, m, v)`` updated.
    Shared with the CUDA twin."""
    if weight_decay != 0:
        g = g + weight_decay * theta
    if small:
        m = m + w1 * (g - m)
    else:
        m = g - (g - m) * (one - w1)
    v = v * beta2
    v = v + (one_minus_beta2 * g) * g
    d = math.sqrt(v) / sqrt_bc2 + eps
    return theta + (neg_step_size * m) / d, m, v


#: elements per parallel task of the optimizer steps; a parameter of at most this
#: many elements is updated in the calling thread (a parallel region costs more)
STEP_CHUNK = 16384


def _split_step(serial, chunked, args, n):
    """An optimizer step over ``n`` elements: ``serial(*args, 0, n)`` in this thread up to
    :data:`STEP_CHUNK` elements, else ``chunked(*args, chunk)`` with one even chunk per
    Numba thread (at least ``STEP_CHUNK`` long)."""
    if n <= STEP_CHUNK:
        serial(*args, 0, n)
    else:
        chunked(*args, max(STEP_CHUNK, -(-n // get_num_threads())))


def adam_update(theta, g, m, v, weight_decay, w1, beta2, one_minus_beta2, neg_step_size,
                sqrt_bc2, eps):
    """One Adam step on flat arrays, in place, with torch's operation order.

    ``theta``, ``g``, ``m``, ``v`` : 1-D arrays of one float dtype; the scalars
    are already rounded to it.  Per element: ``g += weight_decay * theta``
    (when non-zero); ``m = lerp(m, g, w1)`` with torch's two formulas;
    ``v = v * beta2 + (one_minus_beta2 * g) * g``;
    ``theta += (neg_step_size * m) / (sqrt(v) / sqrt_bc2 + eps)``.  No FMA
    contraction, so the result equals the same steps in numpy bit for bit.
    Parameters longer than :data:`STEP_CHUNK` are split evenly among the threads.
    """
    args = (theta, g, m, v, weight_decay, w1, beta2, one_minus_beta2, neg_step_size,
            sqrt_bc2, eps)
    _split_step(_adam_range, _adam_chunks, args, theta.shape[0])


@njit(cache=CACHE)  # no fastmath: every operation rounds as numpy's
def _adam_range(theta, g, m, v, weight_decay, w1, beta2, one_minus_beta2, neg_step_size,
                sqrt_bc2, eps, lo, hi):
    """:func:`adam_update` on the elements ``lo:hi``."""
    one = theta.dtype.type(1)
    small = abs(w1) < 0.5
    for i in range(lo, hi):
        theta[i], m[i], v[i] = _adam_element(
            theta[i], g[i], m[i], v[i], weight_decay, w1, small, one, beta2,
            one_minus_beta2, neg_step_size, sqrt_bc2, eps)


@njit(parallel=PARALLEL, cache=CACHE)
def _adam_chunks(theta, g, m, v, weight_decay, w1, beta2, one_minus_beta2, neg_step_size,
                 sqrt_bc2, eps, chunk):
    n = theta.shape[0]
    for c in prange((n + chunk - 1) // chunk):
        _adam_range(theta, g, m, v, weight_decay, w1, beta2, one_minus_beta2, neg_step_size,
                    sqrt_bc2, eps, c * chunk, min(n, (c + 1) * chunk))


@njit(inline="always", cache=CACHE)  # no fastmath: every operation rounds as numpy's
def _sgd_element(theta, g, buf, weight_decay, momentum, one_minus_dampening, neg_lr, nesterov,
                 first):
    """One parameter's SGD step in torch's operation order: ``(theta, buf)`` updated
    (``buf`` is unused when ``momentum`` is 0).  Shared with the CUDA twin."""
    if weight_decay != 0:
        g = g + weight_decay * theta
    if momentum != 0:
        if first:
            buf = g
        else:
            buf = buf * momentum
            buf = buf + one_minus_dampening * g
        g = g + momentum * buf if nesterov else buf
    return theta + neg_lr * g, buf


def sgd_update(theta, g, buf, weight_decay, momentum, one_minus_dampening, neg_lr, nesterov,
               first):
    """One SGD step on flat arrays, in place, with torch's operation order.

    ``theta``, ``g``, ``buf`` : 1-D arrays of one float dtype (``buf``, the
    momentum buffer, is neither read nor written when ``momentum`` is 0, and
    only written on the ``first`` step); the scalars are already rounded to
    that dtype.  Per element: ``g += weight_decay * theta`` (when non-zero);
    with momentum, ``buf = g`` on the first step, else
    ``buf = buf * momentum + one_minus_dampening * g``, then ``g = g +
    momentum * buf`` (nesterov) or ``g = buf``; finally ``theta += neg_lr * g``.
    ``g`` itself is not modified.  No FMA contraction, so the result equals
    the same steps in numpy bit for bit.  Parameters longer than
    :data:`STEP_CHUNK` are split evenly among the threads.
    """
    args = (theta, g, buf, weight_decay, momentum, one_minus_dampening, neg_lr, nesterov,
            first)
    _split_step(_sgd_range, _sgd_chunks, args, theta.shape[0])


@njit(cache=CACHE)  # no fastmath: every operation rounds as numpy's
def _sgd_range(theta, g, buf, weight_decay, momentum, one_minus_dampening, neg_lr, nesterov,
               first, lo, hi):
    """:func:`sgd_update` on the elements ``lo:hi``."""
    keep = momentum != 0
    for i in range(lo, hi):
        b = buf[i] if keep and not first else theta.dtype.type(0)
        t, b = _sgd_element(theta[i], g[i], b, weight_decay, momentum,
                            one_minus_dampening, neg_lr, nesterov, first)
        theta[i] = t
        if keep:
            buf[i] = b


@njit(parallel=PARALLEL, cache=CACHE)
def _sgd_chunks(theta, g, buf, weight_decay, momentum, one_minus_dampening, neg_lr, nesterov,
                first, chunk):
    n = theta.shape[0]
    for c in prange((n + chunk - 1) // chunk):
        _sgd_range(theta, g, buf, weight_decay, momentum, one_minus_dampening, neg_lr,
                   nesterov, first, c * chunk, min(n, (c + 1) * chunk))


# -- thin numpy twins ----------------------------------------------------------------------
# Where numpy's own loops or its BLAS already are the CPU's fast path, the CPU
# twin of a CUDA backend function just calls them (nothing to compile): the
# layers then call one backend function by name on either device.


#: below this many multiply-adds a product runs as one GEMM (a parallel region costs more)
MATMUL_SPLIT_MIN = 1 << 21


def matmul(a, b, out, trans_a, trans_b, accumulate):
    """``out = op(a) @ op(b)``, or ``out += op(a) @ op(b)`` when ``accumulate``;
    ``op`` transposes when ``trans_a`` / ``trans_b`` is true.

    a, b, out : 2-D arrays of one float dtype, ``out`` of shape (M, N) for
    ``op(a)`` (M, K) and ``op(b)`` (K, N).  Large products split the rows of
    ``out`` among the Numba threads, one single-threaded BLAS GEMM each (keep
    BLAS single-threaded meanwhile, as for :func:`conv2d`); every element is
    still one GEMM's sum over the whole K.  The CUDA twin is a shared-memory
    tiled kernel.
    """
    m, n = out.shape
    k = a.shape[0] if trans_a else a.shape[1]
    nchunks = min(get_num_threads(), m)
    b = b.T if trans_b else b
    if m * n * k < MATMUL_SPLIT_MIN or nchunks == 1:
        a = a.T if trans_a else a
        if accumulate:
            out += a @ b
        else:
            np.matmul(a, b, out=out)
    else:
        _matmul_rows(a, b, out, trans_a, accumulate, nchunks)


@njit(parallel=PARALLEL, **_jit)
def _matmul_rows(a, b, out, trans_a, accumulate, nchunks):
    """``out (+)= op(a) @ b``: the rows of ``out`` in ``nchunks`` parallel GEMMs (for
    ``trans_a`` each GEMM takes a contiguous copy of its columns of ``a``)."""
    m = out.shape[0]
    for t in prange(nchunks):
        r0, r1 = t * m // nchunks, (t + 1) * m // nchunks
        if trans_a:
            part = np.dot(np.ascontiguousarray(a[:, r0:r1].T), b)
        else:
            part = np.dot(a[r0:r1], b)
        if accumulate:
            out[r0:r1] += part
        else:
            out[r0:r1] = part


def add_row_vector(out, v):
    """``out[i, j] += v[j]``: a bias added to every row of a 2-D ``out``."""
    out += v


def add_column_sums(a, out):
    """``out[j] += sum_i a[i, j]``: a bias gradient accumulated from a 2-D delta."""
    out += a.sum(axis=0)


def add_to(out, x):
    """``out += x`` on flat arrays of one dtype (gradient accumulation)."""
    np.add(out, x, out=out)


@njit(**_jit)
def apply_mask(x, keep, scale, out):
    """A bool mask applied: ``out = x * (scale * keep)``, i.e. ``x * scale`` where
    ``keep``, ``x * 0`` elsewhere (NaN stays NaN), bit for bit the product with the
    float mask ``keep * scale``.

    x, out : 1-D (flattened) arrays of one float dtype (``out`` may be ``x``); keep :
    1-D bool array; scale : in that dtype (``1 / (1 - p)`` for inverted dropout, forward
    and backward; 1 for a filter's mask).  One thread, without a branch: a memory-bound
    pass that threads only slowed (0.11 ms against 0.6 ms for 800,000 float32 on two
    cores).
    """
    for i in range(x.shape[0]):
        out[i] = x[i] * (scale * keep[i])


def fill(out, value):
    """Set every element of the flat array ``out`` to ``value``."""
    out[...] = value


def total(x, out):
    """``out[0] = sum(x)`` in ``x``'s dtype (``x`` flat; numpy's pairwise sum)."""
    out[0] = x.sum()


def count_nonfinite(x, count):
    """``count[0] +=`` the number of NaN and infinite values of the flat ``x``
    (``count`` an int32 array of one element)."""
    count[0] += x.size - np.count_nonzero(np.isfinite(x))


def argmax_rows(x, out):
    """``out[i]`` = the index of the first maximum of row ``x[i]`` (the first NaN,
    if the row holds one), as :func:`numpy.argmax`; ``out`` an int64 (N,) array."""
    out[:] = x.argmax(axis=1)


def softmax(x, out):
    """Row-wise softmax of the 2-D ``x`` (the row maximum subtracted first)."""
    z = x - x.max(axis=1, keepdims=True)
    np.exp(z, out=out)
    out /= out.sum(axis=1, keepdims=True)


def cross_entropy(logits, target, losses, grad):
    """Per-sample softmax cross-entropy and its mean-reduction gradient.

    ``losses[n] = -log_softmax(logits[n])[target[n]]`` and ``grad =
    (softmax(logits) - onehot(target)) / N``, with a stable log-softmax (row
    maximum subtracted first).  logits, grad : (N, K); target : (N,) int64;
    losses : (N,), all floats of one dtype.  A row holding NaN or infinity
    gets a NaN loss (as on the CUDA twin).
    """
    n = logits.shape[0]
    rows = np.arange(n)
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite rows: NaN, as said
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_prob = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        np.exp(log_prob, out=grad)
    losses[:] = -log_prob[rows, target]
    losses[~np.isfinite(logits).all(axis=1)] = np.nan
    grad[rows, target] -= 1
    grad /= grad.dtype.type(n)


def sigmoid(x, out):
    """``out = 1 / (1 + exp(-x))`` without overflow (scipy's ``expit``); flat arrays."""
    _expit(x, out=out)


def sigmoid_backward(y, dy, dx):
    """``dx = dy * y * (1 - y)`` for the sigmoid's output ``y``; flat arrays."""
    np.multiply(dy, y, out=dx)
    dx *= 1 - y


def tanh(x, out):
    """``out = tanh(x)``; flat arrays."""
    np.tanh(x, out=out)


def tanh_backward(y, dy, dx):
    """``dx = dy * (1 - y * y)`` for tanh's output ``y``; flat arrays."""
    np.multiply(y, y, out=dx)
    np.subtract(1, dx, out=dx)
    dx *= dy


# -- element-wise steps of the image filters -----------------------------------------------


def magnitude(g, out, scale):
    """``out = sqrt(g[0]**2 + g[1]**2 + ...) / scale``, summed in order of the first axis.

    g : (K, N), out : (N,), one float dtype; ``scale`` a float (``sqrt(ndim)`` for
    scikit-image's edge magnitude, ``sqrt(2)`` for Roberts' cross).
    """
    np.multiply(g[0], g[0], out=out)
    for k in range(1, g.shape[0]):
        out += g[k] * g[k]
    np.sqrt(out, out=out)
    out /= out.dtype.type(scale)


def count_negative(x, count):
    """``count[0] +=`` the number of values of the flat ``x`` below zero (NaN is not;
    ``count`` an int32 array of one element)."""
    count[0] += np.count_nonzero(x < 0)


def unsharp_combine(x, blurred, out, amount, clip, negatives):
    """scikit-image's unsharp mask from the image and its blur: ``out = x + (x -
    blurred) * amount``, then, when ``clip``, clipped to [0, 1], or to [-1, 1] when
    ``negatives[0] > 0`` (the count of negative values of ``x``, from
    :func:`count_negative`).  NaN stays NaN.  Flat arrays of one float dtype;
    ``out`` may be ``blurred``.
    """
    np.subtract(x, blurred, out=out)
    out *= out.dtype.type(amount)
    out += x
    if clip:
        np.clip(out, -1.0 if negatives[0] > 0 else 0.0, 1.0, out=out)
