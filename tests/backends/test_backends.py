"""Backend functions called directly, against the shared naive references.

Each body takes the backend as a parameter (the ``backend`` fixture): the CPU
functions, and their CUDA twins (same names and arguments) wherever numba.cuda
works, through :mod:`tests.backends.device`.  CI runs the CUDA half on Numba's
simulator in its own pytest run (``NUMBA_ENABLE_CUDASIM=1``).
"""

import ctypes

import numpy as np
import pytest

from filtkit._config import BOUNDARY_CODES
from filtkit.backends import cpu, single_threaded_blas
from tests.backends.device import BACKENDS, ColumnMajorBlas, strict_device_arrays
from tests.reference import (
    BOUNDARIES,
    axis_plan,
    conv_out_size,
    naive_avg_pool,
    naive_avg_pool_backward,
    naive_conv2d,
    naive_conv2d_grad_input,
    naive_conv2d_grad_weight,
    naive_correlate,
    naive_max_pool,
    naive_max_pool_backward,
    np_pad,
)


@pytest.fixture(params=list(BACKENDS))
def backend(request):
    return BACKENDS[request.param]


@pytest.fixture(autouse=True)
def device_arrays_are_strict(monkeypatch):
    """The CUDA twins' own temporaries hold NaN until written, as garbage on a GPU
    (tests.backends.device.strict_device_arrays)."""
    strict_device_arrays(monkeypatch)


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
        ((2, 11, 13), (5, 6), "same", (1, 1), (1, 2)),
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


@pytest.mark.parametrize("boundary,kshape", [("reflect", (3, 5)), ("constant", (3, 5)),
                                             ("mirror", (9, 7))])
def test_filters_over_several_tiles_skip_zero_taps(rng, backend, boundary, kshape):
    """Images larger than one GPU tile in both directions (the tiles' seams and ragged
    last tiles), with zero taps beside a NaN: the NaN reaches exactly the outputs whose
    non-zero taps read it, as on the CPU.  A 3x5 kernel is written out whole on the
    GPU, a 9x7 one loops over its columns."""
    x = rng.standard_normal((1, 70, 300)).astype(np.float32)
    nan_at = np.zeros(x.shape[1:])
    nan_at[35, 40] = 1.0
    kh, kw = kshape
    w = rng.standard_normal(kshape).astype(np.float32)
    w[kh // 2, :] = 0.0  # the centre row: the NaN's own row of outputs never reads it
    col = w[:, 0].copy()
    row = np.zeros(kw, np.float32)
    row[::2] = rng.standard_normal(len(row[::2]))  # the centre and every other tap zero
    row[kw // 2] = 0.0
    code = BOUNDARY_CODES[boundary]
    for name, args, kernel in (("correlate2d", (w,), w), ("separable2d", (col, row),
                                                           np.outer(col, row))):
        xn = x.copy()
        xn[0, 35, 40] = np.nan
        out = np.full_like(x, -7.0)
        getattr(backend, name)(xn, *args, out, kh // 2, kw // 2, 1, 1, 1, 1, code, 0.5)
        reached = naive_correlate(nan_at, (kernel != 0).astype(np.float64), "same", boundary,
                                  0.0) > 0
        assert reached.any() and not reached[35, 40]
        np.testing.assert_array_equal(np.isnan(out[0]), reached)
        ref = naive_correlate(x[0].astype(np.float64), kernel.astype(np.float64), "same",
                              boundary, 0.5)
        np.testing.assert_allclose(out[0][~reached], ref[~reached], rtol=1e-5, atol=1e-5)


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


# --- CNN layers: conv2d and its gradients, max / mean pooling --------------------------

#: (N, C, O, H, W, (kh, kw), stride, padding, dilation)
CONV_CASES = [
    (1, 1, 1, 5, 5, (1, 1), (1, 1), (0, 0), (1, 1)),
    (2, 3, 4, 9, 8, (3, 3), (1, 1), (1, 1), (1, 1)),
    (3, 2, 5, 10, 11, (2, 4), (2, 1), (0, 2), (1, 1)),
    (4, 4, 2, 12, 9, (5, 3), (3, 2), (2, 1), (2, 1)),
    (2, 1, 3, 7, 13, (4, 2), (1, 3), (2, 0), (1, 2)),
    (1, 4, 1, 11, 10, (3, 5), (2, 2), (1, 2), (2, 2)),
    (3, 3, 3, 8, 8, (2, 2), (2, 2), (0, 0), (1, 1)),
    (4, 2, 5, 13, 6, (1, 3), (3, 1), (1, 1), (1, 2)),  # strides leave the last rows unread
]


def _tol(dtype):
    return 1e-5 if dtype == np.float32 else 1e-12


def _assert_close(got, ref, dtype):
    """Within tol relative to the largest magnitude of a non-trivial reference."""
    scale = np.abs(ref).max()
    assert scale > 0 and np.isfinite(got).all()
    np.testing.assert_allclose(got, ref, rtol=_tol(dtype), atol=_tol(dtype) * scale)


def _conv_data(rng, dtype, case):
    nb, nc, no, h, w, k, s, p, d = case
    ho, wo = (conv_out_size(n, kk, ss, pp, dd) for n, kk, ss, pp, dd in zip((h, w), k, s, p, d))
    assert ho >= 1 and wo >= 1
    x = rng.standard_normal((nb, nc, h, w)).astype(dtype)
    wt = rng.standard_normal((no, nc, *k)).astype(dtype)
    b = rng.standard_normal(no).astype(dtype)
    dy = rng.standard_normal((nb, no, ho, wo)).astype(dtype)
    return x, wt, b, dy


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d(rng, backend, dtype, case):
    x, w, b, dy = _conv_data(rng, dtype, case)
    s, p, d = case[6:]
    out = np.full(dy.shape, np.nan, dtype=dtype)
    with single_threaded_blas():
        backend.conv2d(x, w, b, out, *s, *p, *d)
    _assert_close(out, naive_conv2d(x, w, b, s, p, d), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_grad_input(rng, backend, dtype, case):
    x, w, _, dy = _conv_data(rng, dtype, case)
    s, p, d = case[6:]
    dx = np.full(x.shape, np.nan, dtype=dtype)
    with single_threaded_blas():
        backend.conv2d_grad_input(dy, w, dx, *s, *p, *d)
    _assert_close(dx, naive_conv2d_grad_input(dy, w, x.shape, s, p, d), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("accumulate", [False, True])
def test_conv2d_grad_weight(rng, backend, dtype, case, accumulate):
    x, w, _, dy = _conv_data(rng, dtype, case)
    s, p, d = case[6:]
    ref_w, ref_b = naive_conv2d_grad_weight(x, dy, w.shape, s, p, d)
    # accumulate: added to what the outputs hold (a layer's gradients), else overwritten
    w0 = rng.standard_normal(w.shape).astype(dtype) if accumulate else np.nan
    b0 = rng.standard_normal(w.shape[0]).astype(dtype) if accumulate else np.nan
    # the CPU splits the batch into `nchunks` partial sums; the GPU twin takes the
    # argument and ignores it (one summing order), so one call checks it
    for nchunks in range(1, x.shape[0] + 1) if backend is cpu else (x.shape[0],):
        dw = np.full(w.shape, w0, dtype=dtype)
        db = np.full(w.shape[0], b0, dtype=dtype)
        with single_threaded_blas():
            backend.conv2d_grad_weight(x, dy, dw, db, *s, *p, *d, nchunks, accumulate)
        _assert_close(dw, ref_w + w0 if accumulate else ref_w, dtype)
        _assert_close(db, ref_b + b0 if accumulate else ref_b, dtype)


@pytest.mark.skipif("cuda" not in BACKENDS, reason="no GPU and no CUDA simulator")
@pytest.mark.parametrize("per_slice", [0, 2])
def test_cuda_conv_layers_beyond_the_columns_limit(rng, monkeypatch, per_slice):
    """The GPU's convolution layers unroll at most COLS_LIMIT column elements at once:
    longer batches go in slices (2 samples each here: 2 slices, the weight gradient
    summed across them), and a sample beyond it alone takes the direct kernels (0).
    The same three test bodies as above, under the lowered limit."""
    from filtkit.backends import cuda as cuda_backend

    case = CONV_CASES[3]  # 4 samples, stride, padding and dilation
    x, w, _, dy = _conv_data(rng, np.float64, case)
    monkeypatch.setattr(cuda_backend, "COLS_LIMIT", per_slice * w[0].size * dy[0, 0].size)
    cu = BACKENDS["cuda"]
    for test in (test_conv2d, test_conv2d_grad_input):
        test(rng, cu, np.float64, case)
    for accumulate in (False, True):
        test_conv2d_grad_weight(rng, cu, np.float64, case, accumulate)


@pytest.mark.skipif("cuda" not in BACKENDS, reason="no GPU and no CUDA simulator")
@pytest.mark.parametrize("case", [
    (1, 2, 2, 23, 21, (3, 3), (1, 1), (0, 0), (1, 1)),  # 21 x 19 outputs a plane
    (2, 1, 2, 30, 29, (3, 2), (1, 1), (1, 0), (1, 2)),  # 30 x 27, padding and dilation
    (1, 1, 1, 3, 600, (1, 3), (1, 2), (0, 1), (1, 1)),  # 3 x 300, stride: rows > 256 wide
])
def test_cuda_conv_layers_on_planes_longer_than_a_block(rng, case):
    """The GPU's im2col writes several elements of a row of columns a thread, each
    next position found by additions: planes of more outputs than a block has
    threads (256), so that each thread writes two or more.  The same test bodies."""
    cu = BACKENDS["cuda"]
    for test in (test_conv2d, test_conv2d_grad_input):
        test(rng, cu, np.float64, case)
    for accumulate in (False, True):
        test_conv2d_grad_weight(rng, cu, np.float64, case, accumulate)


#: ((k0, k1), (s0, s1), (p0, p1)): padding at most k // 2, mostly overlapping windows
POOL_CASES = [
    ((2, 2), (2, 2), (0, 0)),
    ((3, 3), (1, 1), (1, 1)),
    ((3, 2), (2, 1), (1, 0)),
    ((2, 3), (1, 2), (1, 1)),
    ((4, 3), (3, 2), (2, 1)),
    ((5, 4), (2, 3), (2, 2)),
    ((1, 1), (2, 3), (0, 0)),
]


def _pool_input(rng, dtype, data, shape=(3, 9, 8)):
    """'normal'; 'ties': integers in {-2, -1, 0} (so zero padding would win);
    'nan': ties with about one NaN in five."""
    if data == "normal":
        return rng.standard_normal(shape).astype(dtype)
    x = rng.integers(-2, 1, shape).astype(dtype)
    if data == "nan":
        x[rng.random(shape) < 0.2] = np.nan
    return x


def _pool_size(x, k, s, p):
    return tuple((n + 2 * pp - kk) // ss + 1 for n, kk, ss, pp in zip(x.shape[-2:], k, s, p))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("data", ["normal", "ties", "nan"])
@pytest.mark.parametrize("k,s,p", POOL_CASES)
def test_max_pool2d(rng, backend, dtype, data, k, s, p):
    x = _pool_input(rng, dtype, data)
    ref, ref_arg = naive_max_pool(x, k, s, p)
    if data == "nan":
        assert np.isnan(ref).any() and not np.isnan(ref).all()
    out = np.full((x.shape[0], *_pool_size(x, k, s, p)), np.nan, dtype=dtype)
    argmax = np.full(out.shape, -1, dtype=np.int32)
    backend.max_pool2d(x, out, argmax, *k, *s, *p)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(argmax, ref_arg)

    dy = rng.standard_normal(out.shape).astype(dtype)
    dx = np.full(x.shape, np.nan, dtype=dtype)
    backend.max_pool2d_backward(dy, argmax, dx, *k, *s, *p)
    _assert_close(dx, naive_max_pool_backward(dy, ref_arg, x.shape), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("data", ["normal", "ties"])
@pytest.mark.parametrize("k,s,p", POOL_CASES)
def test_avg_pool2d(rng, backend, dtype, data, k, s, p):
    x = _pool_input(rng, dtype, data, (2, 10, 11))
    out = np.full((x.shape[0], *_pool_size(x, k, s, p)), np.nan, dtype=dtype)
    backend.avg_pool2d(x, out, *k, *s, *p)
    _assert_close(out, naive_avg_pool(x, k, s, p), dtype)

    dy = rng.standard_normal(out.shape).astype(dtype)
    dx = np.full(x.shape, np.nan, dtype=dtype)
    backend.avg_pool2d_backward(dy, dx, *k, *s, *p)
    _assert_close(dx, naive_avg_pool_backward(dy, x.shape, k, s, p), dtype)


def test_avg_pool2d_propagates_nan(rng, backend):
    x = rng.standard_normal((1, 6, 6))
    x[0, 2, 3] = np.nan
    out = np.zeros((1, 3, 3))
    backend.avg_pool2d(x, out, 2, 2, 2, 2, 0, 0)
    ref = naive_avg_pool(x, (2, 2), (2, 2), (0, 0))
    assert np.isnan(ref[0, 1, 1]) and np.isnan(ref).sum() == 1
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", [CONV_CASES[1], CONV_CASES[3], CONV_CASES[4]])
def test_conv2d_matches_torch(rng, backend, dtype, case):
    torch = pytest.importorskip("torch")
    x, w, b, dy = _conv_data(rng, dtype, case)
    s, p, d = case[6:]
    tx, tw, tb = (torch.tensor(a.astype(np.float64), requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, stride=s, padding=p, dilation=d)
    ty.backward(torch.from_numpy(dy.astype(np.float64)))
    out = np.full(dy.shape, np.nan, dtype=dtype)
    dx = np.full(x.shape, np.nan, dtype=dtype)
    dw = np.full(w.shape, np.nan, dtype=dtype)
    db = np.full(b.shape, np.nan, dtype=dtype)
    with single_threaded_blas():
        backend.conv2d(x, w, b, out, *s, *p, *d)
        backend.conv2d_grad_input(dy, w, dx, *s, *p, *d)
        backend.conv2d_grad_weight(x, dy, dw, db, *s, *p, *d, min(2, x.shape[0]), False)
    _assert_close(out, ty.detach().numpy(), dtype)
    _assert_close(dx, tx.grad.numpy(), dtype)
    _assert_close(dw, tw.grad.numpy(), dtype)
    _assert_close(db, tb.grad.numpy(), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("data", ["normal", "ties", "nan"])
@pytest.mark.parametrize("k,s,p", [POOL_CASES[1], POOL_CASES[4], POOL_CASES[5]])
def test_pooling_matches_torch(rng, backend, dtype, data, k, s, p):
    torch = pytest.importorskip("torch")
    x = _pool_input(rng, dtype, data, (2, 3, 10, 9))
    planes = x.reshape(6, 10, 9)
    size = _pool_size(x, k, s, p)
    tx = torch.from_numpy(x)
    ty, tidx = torch.nn.functional.max_pool2d(tx, k, s, p, return_indices=True)
    out = np.full((6, *size), np.nan, dtype=dtype)
    argmax = np.full(out.shape, -1, dtype=np.int32)
    backend.max_pool2d(planes, out, argmax, *k, *s, *p)
    np.testing.assert_array_equal(out.reshape(ty.shape), ty.numpy())
    np.testing.assert_array_equal(argmax.reshape(ty.shape), tidx.numpy())
    if data == "nan":
        return
    ta = torch.nn.functional.avg_pool2d(tx, k, s, p)
    backend.avg_pool2d(planes, out, *k, *s, *p)
    _assert_close(out.reshape(ta.shape), ta.numpy(), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("slope", [0.0, 0.1])
def test_relu_and_its_gradient(rng, backend, dtype, slope):
    x = rng.standard_normal(1000).astype(dtype)
    x[:3] = [0.0, np.nan, -0.0]
    out = np.full_like(x, 7.0)
    backend.relu(x, out, slope)
    expected = np.where((x > 0) | np.isnan(x), x, x * dtype(slope))
    np.testing.assert_array_equal(out, expected + 0.0)  # +0.0: ReLU gives +0, never -0
    assert not np.signbit(out[(out == 0)]).any() or slope != 0.0
    dy = rng.standard_normal(1000).astype(dtype)
    dx = np.full_like(x, 7.0)
    dy[3:5] = [np.inf, np.nan]
    backend.relu_backward(x, dy, dx, slope)
    if slope == 0.0:  # torch's threshold_backward: 0 where x <= 0, dy elsewhere (NaN x too)
        expected = np.where(x <= 0, dtype(0), dy)
    else:  # torch's leaky_relu_backward
        expected = np.where(x > 0, dy, dy * dtype(slope))
    np.testing.assert_array_equal(dx, expected)


def _step_check(backend, dtype):
    """Equality for an optimizer step against numpy: exact on the CPU (compiled without
    FMA contraction, so numpy's rounding), within a few units in the last place on the
    GPU (the CUDA compiler fuses multiply-adds)."""
    if backend is cpu:
        return np.testing.assert_array_equal
    eps_t = np.finfo(dtype).eps

    def check(a, b):
        np.testing.assert_allclose(a, b, rtol=8 * eps_t, atol=8 * eps_t * np.abs(b).max())
    return check


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weight_decay,beta1", [(0.0, 0.9), (0.01, 0.3)])
def test_adam_update_rounds_as_numpy(rng, backend, dtype, weight_decay, beta1):
    """The fused Adam step equals the same operations done by numpy, bit for bit."""
    t = dtype
    n = 777
    theta = rng.standard_normal(n).astype(t)
    g = (rng.standard_normal(n) * 1e-3).astype(t)
    m = (rng.standard_normal(n) * 1e-3).astype(t)
    v = (np.abs(rng.standard_normal(n)) * 1e-6).astype(t)
    beta2, lr, eps, step = 0.999, 1e-3, 1e-8, 3
    bc1, bc2 = 1 - beta1**step, 1 - beta2**step
    gg = g + t(weight_decay) * theta if weight_decay else g
    w1 = t(1 - beta1)
    m_ref = m + w1 * (gg - m) if abs(w1) < 0.5 else gg - (gg - m) * (t(1) - w1)
    v_ref = v * t(beta2) + (t(1 - beta2) * gg) * gg
    theta_ref = theta + (t(-lr / bc1) * m_ref) / (np.sqrt(v_ref) / t(bc2**0.5) + t(eps))
    backend.adam_update(theta, g, m, v, t(weight_decay), w1, t(beta2), t(1 - beta2),
                        t(-lr / bc1), t(bc2**0.5), t(eps))
    check = _step_check(backend, dtype)
    check(m, m_ref)
    check(v, v_ref)
    check(theta, theta_ref)


def test_single_threaded_blas_overlapping_blocks_restore_once():
    """Blocks that open and close out of order (two threads) keep BLAS at one thread
    until the last closes, then restore the original counts."""
    from threadpoolctl import threadpool_info

    def counts():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    before = counts()
    a, b = single_threaded_blas(), single_threaded_blas()
    a.__enter__()
    b.__enter__()
    a.__exit__(None, None, None)
    assert all(n == 1 for n in counts())
    b.__exit__(None, None, None)
    assert counts() == before


@pytest.mark.skipif("cuda" not in BACKENDS, reason="no GPU and no CUDA simulator")
def test_cuda_batches_beyond_the_grid_limit_launch_in_slices(rng, monkeypatch):
    """More planes than CUDA's gridDim.z limit: the twins launch over slices of the
    batch (the limit lowered to 2 here, so 5 planes take three launches); and more
    rows of columns (im2col) and output channels (the bias) than gridDim.y's, the same
    limit: slices of those.  The simulator holds every launch to the lowered limit."""
    from filtkit.backends import cuda as cuda_backend

    monkeypatch.setattr(cuda_backend, "MAX_GRID_Z", 2)
    cu = BACKENDS["cuda"]
    x = rng.standard_normal((5, 9, 8)).astype(np.float32)
    w = rng.standard_normal((3, 3)).astype(np.float32)
    for fn in ("correlate2d",):
        got, ref = np.full_like(x, np.nan), np.empty_like(x)
        getattr(cu, fn)(x, w, got, 1, 1, 1, 1, 1, 1, 1, 0.0)
        cpu.correlate2d(x, w, ref, 1, 1, 1, 1, 1, 1, 1, 0.0)
        _assert_close(got, ref, np.float32)
    out = np.full((5, 4, 4), np.nan, np.float32)
    arg = np.full((5, 4, 4), -1, np.int32)
    cu.max_pool2d(x, out, arg, 2, 2, 2, 2, 0, 0)
    ref_out, ref_arg = naive_max_pool(x, (2, 2), (2, 2), (0, 0))
    np.testing.assert_array_equal(out, ref_out)
    xb = rng.standard_normal((3, 2, 6, 6)).astype(np.float32)  # 3 samples x 4 out channels
    wb = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    bb = rng.standard_normal(4).astype(np.float32)
    got = np.full((3, 4, 4, 4), np.nan, np.float32)
    cu.conv2d(xb, wb, bb, got, 1, 1, 0, 0, 1, 1)
    _assert_close(got, naive_conv2d(xb, wb, bb, (1, 1), (0, 0), (1, 1)), np.float32)


@pytest.mark.skipif("cuda" not in BACKENDS, reason="no GPU and no CUDA simulator")
def test_cuda_arena_hands_out_a_repeated_sequence_again(monkeypatch):
    """Inside ``reusing(arena)`` each allocation takes the next array the arena recorded
    where shape and dtype agree; where the sequence changes the rest is recorded
    afresh; arrays above ARENA_MAX_ARRAY and beyond ARENA_MAX_TOTAL are allocated each
    time; outside the block every allocation is new."""
    from filtkit.backends import cuda as cuda_backend

    monkeypatch.setattr(cuda_backend, "ARENA_MAX_ARRAY", 64)  # bytes
    monkeypatch.setattr(cuda_backend, "ARENA_MAX_TOTAL", 200)
    arena = cuda_backend.Arena()
    f4, f8 = np.dtype(np.float32), np.dtype(np.float64)
    steps = [[((3,), f4), ((100,), f4), ((2, 4), f8), ((5,), f8)],  # 12, 400, 64, 40 bytes
             [((3,), f4), ((100,), f4), ((2, 4), f8), ((5,), f8)],
             [((3,), f4), ((100,), f4), ((2, 4), f4), ((5,), f8)]]  # changed from the third
    taken = []
    for step in steps:
        with cuda_backend.reusing(arena):
            taken.append([cuda_backend.device_empty(shape, dtype) for shape, dtype in step])
    first, second, third = taken
    for arrays, step in zip(taken, steps):
        assert [(tuple(a.shape), np.dtype(a.dtype)) for a in arrays] == step
    assert len({id(a) for a in first}) == 4  # one sequence: all different arrays
    assert second[0] is first[0] and second[2] is first[2] and second[3] is first[3]
    assert second[1] is not first[1]  # 400 bytes: above ARENA_MAX_ARRAY
    assert third[0] is first[0] and third[1] is not first[1]
    assert third[2] is not first[2] and third[3] is not first[3]  # recorded afresh
    with cuda_backend.reusing(arena):
        again = [cuda_backend.device_empty(shape, dtype) for shape, dtype in steps[2]]
    assert again[2] is third[2] and again[3] is third[3]
    assert cuda_backend.device_empty((3,), f4) is not first[0]  # outside: new

    total = cuda_backend.Arena()  # 4 x 60 bytes: the fourth is beyond ARENA_MAX_TOTAL
    rounds = []
    for _ in range(2):
        with cuda_backend.reusing(total):
            rounds.append([cuda_backend.device_empty((15,), f4) for _ in range(4)])
    assert [b is a for a, b in zip(*rounds)] == [True, True, True, False]
    with cuda_backend.reusing(arena):
        with cuda_backend.reusing(total):
            assert cuda_backend.device_empty((15,), f4) is rounds[0][0]
        assert cuda_backend.device_empty((3,), f4) is first[0]  # the outer arena again


@pytest.mark.skipif("cuda" not in BACKENDS, reason="no GPU and no CUDA simulator")
def test_cuda_small_uploads_are_queued_through_a_pinned_ring(rng, monkeypatch):
    """Each upload takes the next stretch of the pinned ring and records an event behind
    its copy; a stretch is written again only after the event of the earlier copy
    from it has passed (waited for when it has not; not when it has)."""
    from filtkit.backends import cuda as cuda_backend

    events = []

    class Event:  # a GPU that has not yet run the copies, until told (or waited for)
        def __init__(self, *args, **kwargs):
            self.passed = self.waited = False
            events.append(self)

        def record(self, stream=0):
            pass

        def query(self):
            return self.passed

        def synchronize(self):
            self.passed = self.waited = True

    monkeypatch.setattr(cuda_backend.cuda, "event", Event)
    ring = cuda_backend._Staging(1024)
    arrays = [rng.standard_normal(40).astype(np.float32) for _ in range(7)]  # 160 bytes
    outs = []
    for k, a in enumerate(arrays):
        if k == 6:
            events[2].passed = True  # the GPU has passed the third copy by itself
        out = cuda_backend.device_empty(a.shape, a.dtype)
        sent = a.copy()
        ring.upload(sent, out)
        sent[...] = np.nan  # the caller may change its array at once
        outs.append(out)
    # stretches at bytes 0, 256, 512 and 768; the fifth upload starts again at 0
    assert [e.waited for e in events] == [True, True, False, False, False, False, False]
    assert [s for s, _, _ in ring.pending] == [768, 0, 256, 512]
    assert ring.pos == 768  # the next stretch starts 256-aligned
    for out, a in zip(outs, arrays):
        np.testing.assert_array_equal(out.copy_to_host(), a)
    # to_device: through the ring up to STAGING_MAX bytes, directly beyond
    monkeypatch.setattr(cuda_backend, "STAGING_MAX", 100)
    monkeypatch.setattr(cuda_backend, "_staging", lambda: ring)
    before = len(events)
    small, large = arrays[0][:25], arrays[1]
    for a in (small, large):
        np.testing.assert_array_equal(cuda_backend.to_device(a).copy_to_host(), a)
    assert len(events) == before + 1


class _DeviceMemory:
    """A stand-in for a device allocation at ``address``, all a numba device array reads
    of it when it is passed to a kernel: arrays built on it need no GPU."""

    def __init__(self, address):
        self.device_ctypes_pointer = ctypes.c_void_p(address)


class _Kernel:
    extensions = []  # what numba's _Kernel._prepare_args reads of its kernel


def test_fast_launch_passes_arguments_as_numba_does():
    """The CUDA twins' own launch (``backends.cuda._params``) passes every argument as
    numba's launch does (numba's ``_Kernel._prepare_args`` is the reference), and leaves
    arrays without C strides and other parameter types to numba's path.  Runs on the
    host: numba device arrays over stand-in allocations, no kernel launched."""
    from filtkit.backends import cuda as cuda_backend

    if not cuda_backend.FAST_LAUNCH:
        pytest.skip("this numba.cuda (the simulator here) launches through numba only")
    from numba.cuda import dispatcher
    from numba.cuda.cudadrv.devicearray import DeviceNDArray

    from filtkit.backends import c_strides

    def device_array(shape, dtype, address, strides=None):
        strides = strides or c_strides(shape, np.dtype(dtype).itemsize)
        return DeviceNDArray(shape, strides, dtype, gpu_data=_DeviceMemory(address))

    args = (device_array((2, 3, 5), np.float32, 4096), device_array((7,), np.int64, 8192),
            device_array((1, 4), np.float64, 12288), 7, -3, 0.5, np.float32(0.25), True,
            np.float64(2.0), np.int32(5))
    types = [dispatcher.typeof(a, dispatcher.Purpose.argument) for a in args]
    expected = []
    for t, a in zip(types, args):
        dispatcher._Kernel._prepare_args(_Kernel(), t, a, 0, [], expected)

    def values(params):  # ctypes scalars compare by identity: compare type and value
        return [(type(p), p.value if isinstance(p, ctypes._SimpleCData) else p)
                for p in params]

    for _ in range(2):  # the second time from what each array keeps
        assert values(cuda_backend._params(args, cuda_backend._converters(types))) == values(
            expected)
    # numba counts a length-1 axis with another stride as not C-contiguous ('A' layout)
    odd = device_array((1, 4), np.float32, 4096, strides=(0, 4))
    assert dispatcher.typeof(odd, dispatcher.Purpose.argument).layout == "A"
    assert cuda_backend._params((odd,), (None,)) is None
    assert cuda_backend._params((odd,), (None,)) is None
    assert cuda_backend._converters(
        [dispatcher.typeof(odd, dispatcher.Purpose.argument)]) is None
    assert cuda_backend._converters([dispatcher.types.complex64]) is None


# --- dense layers, losses, optimizers: the twins the networks train with on the GPU ------


#: (M, K, N, trans_a, trans_b): every transposition within one 16x16 tile, then ragged
#: shapes over several tiles (three along K, two along N) for the layers' two GEMMs
MATMUL_CASES = [(3, 5, 4, False, False), (3, 5, 4, False, True), (3, 5, 4, True, False),
                (3, 5, 4, True, True), (5, 37, 18, False, True), (5, 37, 18, True, False)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,k,n,trans_a,trans_b", MATMUL_CASES)
def test_matmul(rng, backend, dtype, m, k, n, trans_a, trans_b):
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    ref = (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b).astype(np.float64)
    out = np.full((m, n), np.nan, dtype=dtype)
    backend.matmul(a, b, out, trans_a, trans_b, False)
    _assert_close(out, ref, dtype)
    np.testing.assert_allclose(out, (a.T if trans_a else a) @ (b.T if trans_b else b),
                               rtol=_tol(dtype), atol=_tol(dtype) * np.abs(ref).max())
    start = rng.standard_normal((m, n)).astype(dtype)
    out = start.copy()
    backend.matmul(a, b, out, trans_a, trans_b, True)  # accumulate: out += op(a) @ op(b)
    _assert_close(out, start + ref, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,k,n,trans_a,trans_b", MATMUL_CASES)
def test_matmul_cpu_split_rows(rng, dtype, m, k, n, trans_a, trans_b, monkeypatch):
    """The CPU's parallel path (the rows of ``out`` split among the threads, taken by
    large products), forced on the small shapes."""
    monkeypatch.setattr(cpu, "MATMUL_SPLIT_MIN", 0)
    test_matmul(rng, cpu, dtype, m, k, n, trans_a, trans_b)


@pytest.fixture
def cublas(monkeypatch):
    """The CUDA twins' GEMMs on their cuBLAS path (CuPy's binding, where CuPy is
    installed), run on the simulator by :class:`ColumnMajorBlas` (cuBLAS's semantics
    at the simulator arrays' addresses)."""
    from numba import config

    if "cuda" not in BACKENDS or not config.ENABLE_CUDASIM:
        pytest.skip("the simulator's arrays (a GPU runs the real cuBLAS where CuPy is)")
    from filtkit.backends import cuda as cuda_backend

    blas = ColumnMajorBlas()
    monkeypatch.setattr(cuda_backend, "_blas", lambda: (blas, 0))
    monkeypatch.setattr(cuda_backend, "_address", lambda a: a._ary.ctypes.data)
    return blas


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,k,n,trans_a,trans_b", MATMUL_CASES)
def test_cuda_matmul_on_cublas(rng, cublas, dtype, m, k, n, trans_a, trans_b):
    test_matmul(rng, BACKENDS["cuda"], dtype, m, k, n, trans_a, trans_b)
    assert cublas.calls == 2  # one GEMM each, the accumulating one included


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shared", ["a", "b", None])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True),
                                             (True, True)])
def test_cuda_batched_matmul_on_cublas(rng, cublas, monkeypatch, dtype, shared, trans_a, trans_b):
    """Five products, ``a`` or ``b`` one matrix for all of them (``shared``), in
    cuBLAS calls of at most two (GEMM_BATCH lowered): against numpy's matmul."""
    from filtkit.backends import cuda as cuda_backend

    monkeypatch.setattr(cuda_backend, "GEMM_BATCH", 2)
    nz, m, k, n = 5, 3, 7, 4
    a = rng.standard_normal((1 if shared == "a" else nz,) + ((k, m) if trans_a else (m, k)))
    b = rng.standard_normal((1 if shared == "b" else nz,) + ((n, k) if trans_b else (k, n)))
    a, b = a.astype(dtype), b.astype(dtype)
    ref = np.matmul(a.swapaxes(1, 2) if trans_a else a, b.swapaxes(1, 2) if trans_b else b)
    out = np.full((nz, m, n), np.nan, dtype=dtype)
    BACKENDS["cuda"].batched_matmul(a, b, out, trans_a, trans_b, False)
    _assert_close(out, ref, dtype)
    start = rng.standard_normal((nz, m, n)).astype(dtype)
    out = start.copy()
    BACKENDS["cuda"].batched_matmul(a, b, out, trans_a, trans_b, True)
    _assert_close(out, start + ref, dtype)
    assert cublas.calls == 6  # 2 + 2 + 1 matrices, twice


@pytest.mark.parametrize("case", [CONV_CASES[1], CONV_CASES[3]])
def test_cuda_conv_layers_on_cublas(rng, cublas, case):
    """The convolution layers' three GEMMs (forward, input and weight gradients) on the
    cuBLAS path: the same test bodies as above."""
    cu = BACKENDS["cuda"]
    for test in (test_conv2d, test_conv2d_grad_input):
        test(rng, cu, np.float32, case)
    for accumulate in (False, True):
        test_conv2d_grad_weight(rng, cu, np.float32, case, accumulate)
    assert cublas.calls == 4


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_optimizer_steps_cpu_chunked(rng, dtype, monkeypatch):
    """The CPU's parallel path of the optimizer steps (parameters longer than
    STEP_CHUNK, split among the threads), forced with chunks of 100."""
    monkeypatch.setattr(cpu, "STEP_CHUNK", 100)
    test_adam_update_rounds_as_numpy(rng, cpu, dtype, 0.01, 0.3)
    test_sgd_update_rounds_as_numpy(rng, cpu, dtype, 0.02, 0.7, 0.0, True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bias_helpers_and_elementwise_products(rng, backend, dtype):
    y = rng.standard_normal((6, 5)).astype(dtype)
    v = rng.standard_normal(5).astype(dtype)
    out = y.copy()
    backend.add_row_vector(out, v)
    _assert_close(out, y.astype(np.float64) + v, dtype)
    acc = rng.standard_normal(5).astype(dtype)
    want = acc.astype(np.float64) + y.astype(np.float64).sum(axis=0)
    backend.add_column_sums(y, acc)
    _assert_close(acc, want, dtype)
    a, b = (rng.standard_normal(300).astype(dtype) for _ in range(2))
    c = a.copy()
    backend.add_to(c, b)
    np.testing.assert_array_equal(c, a + b)
    backend.fill(c, 0.0)
    assert (c == 0).all() and not np.signbit(c).any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", [1 / 0.7, 1.0])  # inverted dropout; a filter's mask
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the simulator's inf * 0
def test_apply_mask_equals_the_scaled_mask_product(rng, backend, dtype, scale):
    """The bool mask applied as the float mask ``keep * scale`` multiplied in would
    be, bit for bit (NaN and infinity dropped to NaN, as ``x * 0`` gives)."""
    x = rng.standard_normal(40_000 if backend is cpu else 1000).astype(dtype)
    x[[5, 17, 29]] = [np.nan, np.inf, -np.inf]
    keep = rng.random(x.size) >= 0.3
    keep[[5, 17]] = False
    scale = dtype(scale)
    out = np.full_like(x, 7.0)
    with np.errstate(invalid="ignore"):
        want = x * (keep.astype(dtype) * scale)
        backend.apply_mask(x, keep, scale, out)
    assert np.isnan(out[[5, 17]]).all() and (out[~keep & np.isfinite(x)] == 0).all()
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_total_count_nonfinite_argmax(rng, backend, dtype):
    x = rng.standard_normal(77).astype(dtype)
    out = np.full(1, np.nan, dtype=dtype)
    backend.total(x, out)
    _assert_close(out, [x.astype(np.float64).sum()], dtype)
    count = np.array([2], np.int32)
    x[[3, 40, 41]] = [np.nan, np.inf, -np.inf]
    backend.count_nonfinite(x, count)
    assert count[0] == 5  # added to what was there
    z = rng.integers(-3, 3, (9, 6)).astype(dtype)  # ties: the first maximum wins
    z[4, 2] = z[7, 0] = z[7, 5] = np.nan  # a NaN wins, the first one, as numpy's
    got = np.full(9, -1, np.int64)
    backend.argmax_rows(z, got)
    np.testing.assert_array_equal(got, np.argmax(z, axis=1))
    assert got[4] == 2 and got[7] == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (300, 1), (70, 5), (40, 70)])
def test_sums_of_many_rows(rng, backend, dtype, shape):
    """The column sums and the total with more rows than a GPU block has threads for
    them (each thread several), and more columns than one block takes."""
    a = rng.standard_normal(shape).astype(dtype)
    acc = rng.standard_normal(shape[1]).astype(dtype)
    want = acc.astype(np.float64) + a.astype(np.float64).sum(axis=0)
    backend.add_column_sums(a, acc)
    _assert_close(acc, want, dtype)
    x = np.ascontiguousarray(a.ravel())
    out = np.full(1, np.nan, dtype=dtype)
    backend.total(x, out)
    _assert_close(out, [x.astype(np.float64).sum()], dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_filter_elementwise_steps(rng, backend, dtype):
    """The image filters' element-wise twins: the root-sum-square magnitude, the count of
    negative values and the unsharp combination with its clipping, against numpy."""
    g = rng.standard_normal((3, 50)).astype(dtype)
    g[1, 7] = np.nan
    g64 = g.astype(np.float64)
    for k, scale in [(1, 1.0), (2, np.sqrt(2.0)), (3, np.sqrt(3.0))]:
        out = np.full(50, -7.0, dtype=dtype)
        backend.magnitude(np.ascontiguousarray(g[:k]), out, scale)
        ref = np.sqrt((g64[:k] ** 2).sum(axis=0)) / scale
        np.testing.assert_allclose(out, ref, rtol=8 * np.finfo(dtype).eps, atol=0)
    x = rng.uniform(0.0, 1.0, 60).astype(dtype)
    blurred = (x + 0.2 * rng.standard_normal(60)).astype(dtype)
    count = np.array([0], np.int32)
    backend.count_negative(x, count)
    assert count[0] == 0
    for clip in (True, False):
        out = np.full_like(x, np.nan)
        backend.unsharp_combine(x, blurred, out, 3.0, clip, count)
        ref = x.astype(np.float64) + (x - blurred.astype(np.float64)) * 3.0
        if clip:
            ref = np.clip(ref, 0.0, 1.0)
        else:  # clipping would change something
            assert ref.min() < 0 and ref.max() > 1
        _assert_close(out, ref, dtype)
    x[[3, 9]] = [-0.25, np.nan]  # a negative value: the lower bound becomes -1
    blurred[3] = 0.5
    count[0] = 5
    backend.count_negative(x, count)
    assert count[0] == 6  # added to what was there; NaN is not negative
    ref = np.clip(x.astype(np.float64) + (x - blurred.astype(np.float64)) * 4.0, -1.0, 1.0)
    backend.unsharp_combine(x, blurred, blurred, 4.0, True, count)  # in place
    assert ref[3] == -1.0 and blurred[3] == -1.0 and np.isnan(blurred[9])
    _assert_close(np.nan_to_num(blurred), np.nan_to_num(ref), dtype)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the simulator's inf - inf
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_and_cross_entropy_match_torch(rng, backend, dtype):
    torch = pytest.importorskip("torch")
    logits = (3 * rng.standard_normal((7, 5))).astype(dtype)
    logits[2] += 80.0  # exp would overflow without the row maximum subtracted
    target = rng.integers(0, 5, 7).astype(np.int64)
    tz = torch.tensor(logits.astype(np.float64), requires_grad=True)
    tloss = torch.nn.functional.cross_entropy(tz, torch.from_numpy(target), reduction="none")
    tloss.mean().backward()
    losses = np.full(7, np.nan, dtype=dtype)
    grad = np.full_like(logits, np.nan)
    backend.cross_entropy(logits, target, losses, grad)
    _assert_close(losses, tloss.detach().numpy(), dtype)
    _assert_close(grad, tz.grad.numpy(), dtype)
    prob = np.full_like(logits, np.nan)
    backend.softmax(logits, prob)
    _assert_close(prob, torch.softmax(tz.detach(), 1).numpy(), dtype)
    logits[3, 1] = np.inf  # a non-finite row: a NaN loss there, the others unchanged
    logits[5, 0] = np.nan
    backend.cross_entropy(logits, target, losses, grad)
    bad = np.isnan(losses)
    np.testing.assert_array_equal(np.flatnonzero(bad), [3, 5])
    _assert_close(losses[~bad], tloss.detach().numpy()[~bad], dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_tanh_and_their_gradients(rng, backend, dtype):
    from scipy.special import expit

    x = (4 * rng.standard_normal(500)).astype(dtype)
    x[:4] = [0.0, -800.0, 800.0, -30.0]  # exp(-x) or exp(x) overflows: no inf, no NaN
    dy = rng.standard_normal(500).astype(dtype)
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    y = np.full_like(x, np.nan)
    dx = np.full_like(x, np.nan)
    backend.sigmoid(x, y)
    ref = expit(x64)
    np.testing.assert_allclose(y, ref, rtol=4 * np.finfo(dtype).eps, atol=0)
    backend.sigmoid_backward(y, dy, dx)
    y64 = y.astype(np.float64)
    _assert_close(dx, dy64 * y64 * (1 - y64), dtype)
    backend.tanh(x, y)
    np.testing.assert_allclose(y, np.tanh(x64), rtol=4 * np.finfo(dtype).eps,
                               atol=np.finfo(dtype).tiny)
    backend.tanh_backward(y, dy, dx)
    y64 = y.astype(np.float64)
    _assert_close(dx, dy64 * (1 - y64 * y64), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weight_decay,momentum,dampening,nesterov",
                         [(0.0, 0.0, 0.0, False), (0.01, 0.9, 0.0, False),
                          (0.0, 0.8, 0.3, False), (0.02, 0.7, 0.0, True)])
def test_sgd_update_rounds_as_numpy(rng, backend, dtype, weight_decay, momentum, dampening,
                                    nesterov):
    """Two fused SGD steps (the first starts the momentum buffer) equal torch's operations
    done by numpy, bit for bit on the CPU; the gradient is not modified."""
    t = dtype
    n = 555
    theta = rng.standard_normal(n).astype(t)
    buf = np.full(n, np.nan, t)  # the first step writes it without reading it
    lr = 0.05
    ref_theta, ref_buf = theta.copy(), None
    for step in range(2):
        g = rng.standard_normal(n).astype(t)
        g0 = g.copy()
        gg = g + t(weight_decay) * ref_theta if weight_decay else g
        if momentum:
            if ref_buf is None:
                ref_buf = gg.copy()
            else:
                ref_buf = ref_buf * t(momentum)
                ref_buf = ref_buf + t(1 - dampening) * gg
            gg = gg + t(momentum) * ref_buf if nesterov else ref_buf
        ref_theta = ref_theta + t(-lr) * gg
        backend.sgd_update(theta, g, buf, t(weight_decay), t(momentum),
                           t(1 - dampening), t(-lr), nesterov, step == 0)
        np.testing.assert_array_equal(g, g0)
    check = _step_check(backend, dtype)
    check(theta, ref_theta)
    if momentum:
        check(buf, ref_buf)
    else:  # without momentum the buffer is neither read nor written
        assert np.isnan(buf).all()
