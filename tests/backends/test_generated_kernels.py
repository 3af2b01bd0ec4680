"""The generated CUDA filtering kernels and the reductions compile for a real GPU (sm_90:
H100, H200).

The CUDA twins' tests run on Numba's CUDA simulator, which runs a kernel as
Python: it never types or compiles one, so a kernel numba's CUDA target cannot
compile (a numpy call inside it, say) passes there and fails on the first GPU.
Here each kernel source that :mod:`filtkit.backends.cuda` writes out is compiled
to PTX, with the argument types its launch gives it, by numba's own compiler
(NVVM and NVRTC from the ``nvidia-nvvm`` and ``nvidia-cuda-nvrtc`` packages of
the ``dev`` extra); no GPU is needed.  The PTX also shows what the source was
written for: shared-memory reads at constant offsets from one address.  Under
the simulator (or without NVVM) there is no compiler: skipped.
"""

import re

import numpy as np
import pytest
from numba import config

pytestmark = pytest.mark.skipif(config.ENABLE_CUDASIM,
                                reason="the simulator compiles nothing")

SM_90 = (9, 0)


@pytest.fixture(scope="module")
def compile_ptx():
    from numba import cuda, float32

    def probe(a):
        a[0] = 1.0

    try:
        cuda.compile_ptx(probe, (float32[::1],), cc=SM_90)
    except Exception as exc:  # no NVVM or NVRTC: nothing here can be checked
        pytest.skip(f"numba cannot compile for CUDA here: {exc}")
    return cuda.compile_ptx


def _types(dtype):
    from numba import float64, int64
    from numba.np.numpy_support import from_dtype

    t = from_dtype(np.dtype(dtype))
    return t[:, :, ::1], t[:, ::1], t[::1], int64, float64


def _shared_reads(ptx):
    """The address of every shared-memory read of a float, as ``(register, offset)``."""
    return [(reg, int(off or 0)) for reg, off in
            re.findall(r"ld\.shared\.f(?:32|64)\s+%fd?\d+, \[(%r[d]?\d+)(?:\+(\d+))?\]", ptx)]


@pytest.mark.parametrize("dtype,kh,kw,taps", [
    (np.float32, 3, 3, "all"),
    (np.float64, 3, 3, "all"),
    (np.float32, 5, 5, "cross"),  # zero taps left out of the code
    (np.float32, 7, 7, "all"),
    (np.float32, 9, 11, None),  # more than UNROLL_MAX_TAPS: a loop over the columns
])
def test_unrolled_correlate2d_compiles(compile_ptx, dtype, kh, kw, taps):
    from filtkit.backends import cuda as cb

    if taps == "all":
        taps = frozenset((m, k) for m in range(kh) for k in range(kw))
    elif taps == "cross":
        taps = frozenset((m, k) for m in range(kh) for k in range(kw)
                         if m == kh // 2 or k == kw // 2)
    a3, a2, _, i64, f64 = _types(dtype)
    kernel = cb._unrolled(np.dtype(dtype), kh, kw, taps)
    fn = getattr(kernel, "dispatcher", kernel).py_func
    # (x, w, out, off0, off1, mode, cval), as correlate2d launches it
    ptx, _ = compile_ptx(fn, (a3, a2, a3, i64, i64, i64, f64), cc=SM_90)
    reads = _shared_reads(ptx)
    assert ".entry" in ptx and "fma.rn" in ptx and reads
    # the window's values come from a few addresses, at constant offsets from each
    assert sum(off > 0 for _, off in reads) >= 0.8 * len(reads)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["column", "row"])
@pytest.mark.parametrize("unit", [True, False])
def test_separable_passes_compile(compile_ptx, dtype, kind, unit):
    from filtkit.backends import cuda as cb

    a3, _, a1, i64, f64 = _types(dtype)
    kernel = cb._make_pass(kind, np.dtype(dtype), unit)
    fn = getattr(kernel, "dispatcher", kernel).py_func
    if kind == "column":  # (x, col, tmp, off0, s0, d0, mode, cval, rows_in)
        sig = (a3, a1, a3, i64, i64, i64, i64, f64, i64)
    else:  # (tmp, row, col, out, off1, s1, d1, mode, cval, cols_in)
        sig = (a3, a1, a1, a3, i64, i64, i64, i64, f64, i64)
    ptx, _ = compile_ptx(fn, sig, cc=SM_90)
    reads = _shared_reads(ptx)
    assert ".entry" in ptx and reads
    if unit:  # each tap's PASS_ROWS reads: one address, the others at constant offsets
        step = (cb.PASS_TY * 32 if kind == "column" else 32) * np.dtype(dtype).itemsize
        assert {r * step for r in range(1, cb.PASS_ROWS)} <= {off for _, off in reads}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reductions_compile(compile_ptx, dtype):
    """The sums of the layers' gradients and of the loss (a shared array of the
    dtype, a tree over it between barriers)."""
    from numba import boolean

    from filtkit.backends import cuda as cb

    _, a2, a1, _, _ = _types(dtype)
    columns, rows = cb._make_reductions(cb.numba_dtype(np.dtype(dtype)))
    for kernel, sig in ((columns, (a2, a1, boolean)), (rows, (a2, a1))):
        fn = getattr(kernel, "dispatcher", kernel).py_func
        ptx, _ = compile_ptx(fn, sig, cc=SM_90)
        assert ".entry" in ptx and "bar.sync" in ptx and "st.shared" in ptx


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_im2col_compiles(compile_ptx, dtype):
    """im2col's views and unsigned indices (each thread several elements of a row)."""
    from numba import from_dtype

    from filtkit.backends import cuda as cb

    a3, _, _, i64, _ = _types(dtype)
    a4 = from_dtype(np.dtype(dtype))[:, :, :, ::1]
    fn = getattr(cb._im2col_kernel, "dispatcher", cb._im2col_kernel).py_func
    # (x, cols, s0, s1, p0, p1, d0, d1, kh, kw, wo, di, dj, row0)
    ptx, _ = compile_ptx(fn, (a4, a3) + (i64,) * 12, cc=SM_90)
    assert ".entry" in ptx and ptx.count("st.global") >= cb.IM2COL_PER_THREAD
