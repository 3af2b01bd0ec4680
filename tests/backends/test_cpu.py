"""CPU backend functions called directly, against the shared naive references.

These bodies are written to take the backend module as a parameter, so the
CUDA twin (same function names and arguments) can run through them too.
"""

import numpy as np
import pytest

from filtkit._config import BOUNDARY_CODES
from filtkit.backends import cpu
from tests.reference import BOUNDARIES, axis_plan, naive_correlate, naive_pool, np_pad

BACKENDS = {"cpu": cpu}


@pytest.fixture(params=list(BACKENDS))
def backend(request):
    return BACKENDS[request.param]


@pytest.mark.parametrize("boundary", [b for b in BOUNDARIES if b != "zero"])
@pytest.mark.parametrize("n,lo,hi", [(1, 3, 2), (2, 5, 5), (5, 2, 3), (4, 11, 9)])
def test_boundary_index_matches_np_pad(backend, boundary, n, lo, hi):
    idx = backend.boundary_index(n, lo, hi, BOUNDARY_CODES[boundary])
    expected = np_pad(np.arange(n), [(lo, hi)], boundary, cval=-1)
    np.testing.assert_array_equal(idx, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("boundary", [b for b in BOUNDARIES if b != "zero"])
@pytest.mark.parametrize(
    "shape,kshape,mode,stride,dilation",
    [
        ((2, 9, 11), (3, 3), "same", (1, 1), (1, 1)),
        ((1, 8, 7), (2, 4), "full", (2, 3), (1, 1)),
        ((3, 10, 6), (3, 2), "same", (1, 2), (2, 3)),
        ((1, 5, 4), (5, 4), "full", (1, 1), (1, 1)),
        ((2, 12, 13), (4, 3), "valid", (3, 2), (1, 2)),
        ((2, 10, 9), (3, 3), "full", (2, 1), (2, 3)),  # dense 3x3: the one-pass path
        ((1, 7, 8), (3, 3), "same", (1, 3), (1, 1)),
        ((2, 11, 13), (5, 6), "same", (1, 1), (1, 2)),  # dense: two output rows per pass
        ((1, 12, 9), (4, 4), "full", (1, 1), (1, 1)),
    ],
)
def test_correlate2d(rng, backend, dtype, boundary, shape, kshape, mode, stride, dilation):
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(kshape).astype(dtype)
    offs, sizes = zip(*(axis_plan(n, k, mode, s, d)
                        for n, k, s, d in zip(shape[1:], kshape, stride, dilation)))
    out = np.full((shape[0], *sizes), np.nan, dtype=dtype)
    backend.correlate2d(x, w, out, offs[0], offs[1], stride[0], stride[1],
                        dilation[0], dilation[1], BOUNDARY_CODES[boundary], 0.75)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for b in range(shape[0]):
        ref = naive_correlate(x[b].astype(np.float64), w.astype(np.float64), mode, boundary,
                              0.75, stride, dilation)
        np.testing.assert_allclose(out[b], ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_correlate3d_valid(rng, backend, dtype):
    x = rng.standard_normal((7, 11, 9)).astype(dtype)
    w = rng.standard_normal((2, 3, 2)).astype(dtype)
    out = np.full((2, 5, 7), np.nan, dtype=dtype)  # strides (2, 2, 1), dilation (3, 1, 2)
    backend.correlate3d_valid(x, w, out, 2, 2, 1, 3, 1, 2)
    ref = naive_correlate(x.astype(np.float64), w.astype(np.float64), "valid",
                          stride=(2, 2, 1), dilation=(3, 1, 2))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k,s", [((2, 2), (2, 2)), ((3, 2), (1, 2)), ((1, 1), (2, 3))])
def test_pooling(rng, backend, dtype, k, s):
    x = rng.standard_normal((3, 9, 8)).astype(dtype)
    ho, wo = (9 - k[0]) // s[0] + 1, (8 - k[1]) // s[1] + 1
    out = np.empty((3, ho, wo), dtype=dtype)
    backend.max_pool2d(x, out, *k, *s)
    np.testing.assert_array_equal(out, naive_pool(x, k, s, np.max))
    backend.avg_pool2d(x, out, *k, *s)
    np.testing.assert_allclose(out, naive_pool(x, k, s, np.mean), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("boundary", [b for b in BOUNDARIES if b != "zero"])
@pytest.mark.parametrize(
    "kh,kw,mode,stride,dilation",
    [(3, 3, "same", (1, 1), (1, 1)), (5, 2, "full", (2, 1), (1, 3)), (1, 6, "same", (1, 2), (1, 1)),
     (7, 1, "valid", (3, 1), (1, 1)), (9, 13, "full", (1, 1), (1, 1))],
)
def test_separable2d(rng, backend, dtype, boundary, kh, kw, mode, stride, dilation):
    x = rng.standard_normal((2, 11, 12)).astype(dtype)
    col = rng.standard_normal(kh).astype(dtype)
    row = rng.standard_normal(kw).astype(dtype)
    col[kh // 2] = 0.0  # zero taps are skipped
    offs, sizes = zip(*(axis_plan(n, k, mode, s, d)
                        for n, k, s, d in zip(x.shape[1:], (kh, kw), stride, dilation)))
    out = np.full((2, *sizes), np.nan, dtype=dtype)
    backend.separable2d(x, col, row, out, offs[0], offs[1], stride[0], stride[1],
                        dilation[0], dilation[1], BOUNDARY_CODES[boundary], -0.5)
    w = np.outer(col, row).astype(np.float64)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for b in range(2):
        ref = naive_correlate(x[b].astype(np.float64), w, mode, boundary, -0.5, stride, dilation)
        np.testing.assert_allclose(out[b], ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("boundary", [b for b in BOUNDARIES if b != "zero"])
def test_gradient_magnitude2d(rng, backend, dtype, boundary):
    x = rng.standard_normal((2, 9, 14)).astype(dtype)
    edge = np.array([-1.0, 0.0, 1.0], dtype=dtype)
    smooth = np.array([1.0, 2.0, 1.0], dtype=dtype) / 4
    out = np.full_like(x, np.nan)
    backend.gradient_magnitude2d(x, edge, smooth, out, BOUNDARY_CODES[boundary], 0.3)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for b in range(2):
        xb = x[b].astype(np.float64)
        g0 = naive_correlate(xb, np.outer(edge, smooth), "same", boundary, 0.3)
        g1 = naive_correlate(xb, np.outer(smooth, edge), "same", boundary, 0.3)
        np.testing.assert_allclose(out[b], np.sqrt((g0**2 + g1**2) / 2), rtol=tol, atol=tol)


@pytest.mark.parametrize("boundary", [b for b in BOUNDARIES if b != "zero"])
def test_extend2d(rng, backend, boundary):
    x = rng.standard_normal((2, 5, 4))
    code = BOUNDARY_CODES[boundary]
    idx0 = backend.boundary_index(5, 3, 6, code)
    idx1 = backend.boundary_index(4, 9, 2, code)
    out = np.zeros((2, 16, 17))
    backend.extend2d(x, out, idx0, idx1, 1.25)
    for b in range(2):
        np.testing.assert_array_equal(out[b, :14, :15], np_pad(x[b], [(3, 6), (9, 2)], boundary,
                                                                cval=1.25))
    assert not out[:, 14:].any() and not out[:, :, 15:].any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 5, 7), (3, 64, 1024), (2, 4)])
def test_empty_apart_half_a_page_from_the_source(dtype, shape):
    src = np.empty((17, 33), dtype=dtype)
    out = cpu.empty_apart(shape, dtype, src)
    assert out.shape == shape and out.dtype == dtype and out.flags.c_contiguous
    assert out.flags.writeable
    delta = (out.ctypes.data - src.ctypes.data) % cpu.ALIAS_PERIOD
    assert delta == cpu.ALIAS_PERIOD // 2


def test_empty_apart_of_no_elements():
    out = cpu.empty_apart((0, 4), np.float32, np.empty(3, np.float32))
    assert out.shape == (0, 4) and out.dtype == np.float32
