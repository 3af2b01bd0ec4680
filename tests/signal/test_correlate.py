"""correlate / convolve against scipy.signal, scipy.ndimage, numpy and a naive loop."""

import numpy as np
import pytest
import scipy.ndimage as ndi
import scipy.signal as sps
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from filtkit.signal import convolve, correlate, output_size
from tests.reference import BOUNDARIES, naive_correlate

MODES = ["full", "same", "valid"]
FUNCS = {"correlate": (correlate, sps.correlate, ndi.correlate, np.correlate),
         "convolve": (convolve, sps.convolve, ndi.convolve, np.convolve)}


def _close(a, b, rtol=1e-12, atol=1e-12):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


# shapes (x, kernel): odd, even, 1xN, Nx1, kernel as large as the input
SHAPES_2D = [
    ((13, 17), (3, 3)),
    ((13, 17), (4, 2)),
    ((9, 8), (1, 5)),
    ((9, 8), (6, 1)),
    ((7, 6), (7, 6)),
    ((1, 12), (1, 4)),
    ((11, 1), (3, 1)),
    ((5, 5), (2, 2)),
]


@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shapes", SHAPES_2D, ids=str)
def test_2d_matches_scipy_signal(rng, name, mode, shapes):
    ours, ref = FUNCS[name][:2]
    x = rng.standard_normal(shapes[0])
    w = rng.standard_normal(shapes[1])
    _close(ours(x, w, mode=mode), ref(x, w, mode=mode, method="direct"))


@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n,k", [(20, 3), (20, 4), (7, 7), (1, 1), (6, 1), (30, 11)])
def test_1d_matches_numpy_and_scipy(rng, name, mode, n, k):
    ours, ref, _, npref = FUNCS[name]
    x = rng.standard_normal(n)
    w = rng.standard_normal(k)
    got = ours(x, w, mode=mode)
    _close(got, ref(x, w, mode=mode, method="direct"))
    _close(got, npref(x, w, mode=mode))


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("shapes", SHAPES_2D, ids=str)
def test_boundaries_match_ndimage(rng, boundary, shapes):
    x = rng.standard_normal(shapes[0])
    w = rng.standard_normal(shapes[1])
    cval = 0.0 if boundary == "zero" else float(rng.uniform(-2, 2))
    nd_mode = "constant" if boundary == "zero" else boundary
    _close(
        correlate(x, w, boundary=boundary, cval=cval),
        ndi.correlate(x, w, mode=nd_mode, cval=cval),
    )
    # an even kernel's 'same' centring is ndimage's origin -1 for convolution
    origin = [-1 if k % 2 == 0 else 0 for k in w.shape]
    _close(
        convolve(x, w, boundary=boundary, cval=cval),
        ndi.convolve(x, w, mode=nd_mode, cval=cval, origin=origin),
    )


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("mode", ["full", "same"])
def test_boundary_wider_than_input(rng, boundary, mode):
    """Kernels wider than the input extend the boundary over several periods."""
    x = rng.standard_normal((3, 4))
    w = rng.standard_normal((9, 11))
    _close(
        correlate(x, w, mode=mode, boundary=boundary, cval=0.5),
        naive_correlate(x, w, mode, boundary, cval=0.5),
    )


@pytest.mark.parametrize("boundary", ["constant", "reflect", "mirror", "nearest", "wrap"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("stride,dilation", [(1, 2), (2, 1), ((3, 2), (1, 3)), (2, 2)])
def test_stride_dilation_match_naive(rng, boundary, mode, stride, dilation):
    x = rng.standard_normal((15, 14))
    w = rng.standard_normal((3, 4))
    got = correlate(x, w, mode=mode, boundary=boundary, cval=-0.7,
                    stride=stride, dilation=dilation)
    _close(got, naive_correlate(x, w, mode, boundary, -0.7, stride, dilation))


@pytest.mark.parametrize("mode", MODES)
def test_dilation_matches_scipy_with_zero_stuffed_kernel(rng, mode):
    x = rng.standard_normal((16, 15))
    w = rng.standard_normal((3, 2))
    stuffed = np.zeros((5, 4))
    stuffed[::2, ::3] = w
    got = correlate(x, w, mode=mode, dilation=(2, 3))
    _close(got, sps.correlate(x, stuffed, mode=mode, method="direct"))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("stride", [2, 3, (1, 4)])
def test_stride_is_slicing_and_seed_size(rng, mode, stride):
    x = rng.standard_normal((17, 19))
    w = rng.standard_normal((5, 3))
    s = np.broadcast_to(stride, (2,))
    got = correlate(x, w, mode=mode, boundary="reflect", stride=stride)
    full = correlate(x, w, mode=mode, boundary="reflect")
    _close(got, full[:: s[0], :: s[1]])
    pad = {"full": (4, 2), "same": (2, 1), "valid": (0, 0)}[mode]
    assert got.shape == tuple(
        output_size(n, k, stride=si, padding=p) for n, k, si, p in zip(x.shape, w.shape, s, pad)
    )


@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("stride", [(1, 1, 1), (1, 2, 1), (2, 1, 3)])
def test_3d_depth_sum_matches_scipy_and_seed(rng, name, stride):
    ours, ref = FUNCS[name][:2]
    x = rng.standard_normal((4, 9, 10))
    w = rng.standard_normal((4, 3, 2))
    got = ours(x, w, mode="valid", stride=stride)
    expected = ref(x, w, mode="valid", method="direct")
    _close(got, expected[:: stride[0], :: stride[1], :: stride[2]])
    if name == "correlate" and stride == (1, 1, 1):
        # the seed's cov(i, j) = sum_d sum_m sum_n w[d, m, n] x[d, i + m, j + n]
        seed = np.zeros((7, 9))
        for i in range(7):
            for j in range(9):
                seed[i, j] = np.sum(w * x[:, i : i + 3, j : j + 2])
        _close(got[0], seed)


def test_3d_partial_depth_and_dilation(rng):
    x = rng.standard_normal((6, 9, 10))
    w = rng.standard_normal((2, 3, 2))
    got = correlate(x, w, mode="valid", dilation=(2, 1, 2))
    _close(got, naive_correlate(x, w, "valid", dilation=(2, 1, 2)))


@pytest.mark.parametrize("channel_axis", [0, -1, 2])
@pytest.mark.parametrize("boundary", ["reflect", "constant"])
def test_channel_axis_filters_each_channel(rng, channel_axis, boundary):
    x = rng.standard_normal((12, 10, 3))
    if channel_axis == 0:
        x = np.moveaxis(x, -1, 0)
    w = rng.standard_normal((3, 4))
    got = correlate(x, w, boundary=boundary, cval=0.25, channel_axis=channel_axis)
    assert got.shape == x.shape
    for c in range(3):
        sl = [slice(None)] * 3
        sl[channel_axis] = c
        sl = tuple(sl)
        _close(got[sl], ndi.correlate(x[sl], w, mode=boundary, cval=0.25))


def test_channel_axis_with_stride_and_1d_kernel(rng):
    x = rng.standard_normal((20, 2))
    w = rng.standard_normal(3)
    got = convolve(x, w, mode="full", stride=2, channel_axis=1)
    for c in range(2):
        _close(got[:, c], np.convolve(x[:, c], w, "full")[::2])


# --- dtypes and memory layouts ----------------------------------------------


def test_float32_stays_float32(rng):
    x = rng.standard_normal((20, 21)).astype(np.float32)
    w = rng.standard_normal((5, 5))  # float64 kernel: the image decides
    got = correlate(x, w)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ndi.correlate(x.astype(np.float64), w, mode="constant"),
                               rtol=1e-4, atol=1e-5)


def test_float16_becomes_float32(rng):
    x = rng.standard_normal((6, 7)).astype(np.float16)
    assert correlate(x, np.ones((3, 3))).dtype == np.float32


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int64, np.uint16, bool])
def test_integers_convert_by_value_never_wrap(rng, dtype):
    x = (rng.integers(0, 2 if dtype is bool else 250, size=(9, 10))).astype(dtype)
    w = np.full((3, 3), 2, dtype=np.int64)
    got = correlate(x, w)
    assert got.dtype == np.float64
    expected = ndi.correlate(x.astype(np.float64), w.astype(np.float64), mode="constant")
    _close(got, expected)
    if dtype is np.uint8:
        assert got.max() > 255  # uint8 arithmetic would have wrapped


def _layouts(x):
    big = x.astype(x.dtype.newbyteorder(">"))
    padded = np.zeros((x.shape[0] * 2, x.shape[1] * 3))
    padded[::2, ::3] = x
    return {
        "fortran": np.asfortranarray(x),
        "strided_view": padded[::2, ::3],
        "negative_strides": x[::-1, ::-1].copy()[::-1, ::-1],
        "big_endian": big,
    }


@pytest.mark.parametrize("layout", list(_layouts(np.zeros((2, 2)))))
def test_layouts_equal_contiguous(rng, layout):
    x = rng.standard_normal((11, 13))
    w = rng.standard_normal((3, 4))
    view = _layouts(x)[layout]
    w_view = _layouts(w)[layout]
    expected = correlate(np.ascontiguousarray(x), np.ascontiguousarray(w), boundary="wrap")
    np.testing.assert_array_equal(correlate(view, w_view, boundary="wrap"), expected)
    np.testing.assert_array_equal(
        correlate(x[::-1], w, boundary="mirror"),
        correlate(np.ascontiguousarray(x[::-1]), w, boundary="mirror"),
    )


def test_input_not_modified(rng):
    x = rng.standard_normal((8, 9))
    before = x.copy()
    convolve(x, np.ones((3, 3)), boundary="reflect")
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("boundary", ["constant", "reflect", "nearest"])
def test_nan_propagates_like_ndimage(rng, boundary):
    x = rng.standard_normal((9, 9))
    x[4, 6] = np.nan
    w = np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
    got = correlate(x, w, boundary=boundary)
    expected = ndi.correlate(x, w, mode=boundary)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    assert np.isnan(got).sum() == 5
    _close(got[~np.isnan(got)], expected[~np.isnan(expected)])


# --- the seed's algebra, property-based ----------------------------------------

_floats = st.floats(-10, 10, allow_nan=False, allow_infinity=False)


def _arr(max_side):
    shape = st.tuples(st.integers(1, max_side), st.integers(1, max_side))
    return arrays(np.float64, shape, elements=_floats)


@settings(max_examples=40, deadline=None)
@given(a=_arr(8), b=_arr(5), c=_arr(4), s=_floats)
def test_convolution_algebra(a, b, c, s):
    def conv(p, q):
        return convolve(p, q, mode="full")

    tol = dict(rtol=1e-9, atol=1e-9 * (1 + np.abs(a).max()) * (1 + np.abs(b).max())
               * (1 + np.abs(c).max()) * (1 + abs(s)))
    np.testing.assert_allclose(conv(a, b), conv(b, a), **tol)  # commutative
    np.testing.assert_allclose(conv(conv(a, b), c), conv(a, conv(b, c)), **tol)  # associative
    if b.shape == c.shape:
        np.testing.assert_allclose(conv(a, b + c), conv(a, b) + conv(a, c), **tol)  # distributive
    np.testing.assert_allclose(conv(s * a, b), s * conv(a, b), **tol)  # scalars


@settings(max_examples=40, deadline=None)
@given(
    x=_arr(9),
    w=_arr(5),
    mode=st.sampled_from(MODES),
    boundary=st.sampled_from(BOUNDARIES),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
)
def test_correlate_is_convolve_with_rotated_kernel_and_stride_slices(
    x, w, mode, boundary, stride, dilation
):
    keff = [d * (k - 1) + 1 for k, d in zip(w.shape, dilation)]
    if mode == "valid" and any(k > n for k, n in zip(keff, x.shape)):
        return
    kw = dict(mode=mode, boundary=boundary, cval=1.5, dilation=dilation)
    got = correlate(x, w, stride=stride, **kw)
    ref = naive_correlate(x, w, mode, boundary, 0.0 if boundary == "zero" else 1.5, stride,
                          dilation)
    tol = dict(rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(got, ref, **tol)
    # convolution rotates the kernel: convolving with the rotated kernel
    # must give the naive correlation with the kernel itself
    np.testing.assert_allclose(convolve(x, w[::-1, ::-1], stride=stride, **kw), ref, **tol)
    # the strided kernel sums the same taps; FMA contraction may round the
    # last bit differently from the vectorised stride-1 loop
    np.testing.assert_allclose(got, correlate(x, w, **kw)[:: stride[0], :: stride[1]],
                               rtol=1e-14, atol=1e-14 * (1 + np.abs(x).max() * np.abs(w).sum()))


# --- bad input -------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,exc,name",
    [
        (dict(x=np.ones((2, 2, 2, 2))), ValueError, "`x`"),
        (dict(x=np.ones((0, 4))), ValueError, "`x`"),
        (dict(kernel=np.ones((0, 2))), ValueError, "`kernel`"),
        (dict(kernel=np.ones(3)), ValueError, "`kernel`"),
        (dict(kernel=np.ones((9, 2)), mode="valid"), ValueError, "`kernel`"),
        (dict(kernel=np.ones((3, 3)), mode="valid", dilation=5), ValueError, "`kernel`"),
        (dict(stride=0), ValueError, "`stride`"),
        (dict(stride=(1, -1)), ValueError, "`stride`"),
        (dict(stride=(1, 1, 1)), ValueError, "`stride`"),
        (dict(stride=1.5), TypeError, "`stride`"),
        (dict(dilation=0), ValueError, "`dilation`"),
        (dict(dilation=True), TypeError, "`dilation`"),
        (dict(mode="vaild"), ValueError, "`mode`"),
        (dict(boundary="symmetric"), ValueError, "`boundary`"),
        (dict(x=np.ones((4, 4), dtype=complex)), TypeError, "`x`"),
        (dict(kernel=np.ones((2, 2), dtype=complex)), TypeError, "`kernel`"),
        (dict(x=np.array([[object(), 1]], dtype=object)), TypeError, "`x`"),
        (dict(x=[["a", "b"]]), TypeError, "`x`"),
        (dict(cval="0"), TypeError, "`cval`"),
        (dict(cval=None), TypeError, "`cval`"),
        (dict(channel_axis=0), ValueError, "`kernel`"),
        (dict(x=np.ones((4, 4, 3)), channel_axis=3), ValueError, "`channel_axis`"),
        (dict(x=np.ones((3, 4, 4)), kernel=np.ones((3, 2, 2))), ValueError, "`mode`"),
    ],
)
@pytest.mark.parametrize("func", [correlate, convolve])
def test_bad_input(func, kwargs, exc, name):
    args = dict(x=np.ones((6, 7)), kernel=np.ones((2, 2)))
    args.update(kwargs)
    with pytest.raises(exc, match=name):
        func(args.pop("x"), args.pop("kernel"), **args)


# --- methods: direct, separable, fft ----------------------------------------------


@pytest.mark.parametrize("method", ["direct", "separable", "fft", "auto"])
@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_methods_agree_with_naive(rng, method, boundary, mode, dtype):
    x = rng.standard_normal((23, 19)).astype(dtype)
    w = np.outer(rng.standard_normal(5), rng.standard_normal(4))  # rank 1
    kw = dict(mode=mode, boundary=boundary, cval=0.6, stride=(2, 1), dilation=(1, 2))
    got = correlate(x, w, method=method, **kw)
    assert got.dtype == dtype
    cval = 0.0 if boundary == "zero" else 0.6
    ref = naive_correlate(x, w, mode, boundary, cval, (2, 1), (1, 2))
    scale = np.abs(x).max() * np.abs(w).sum()
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, ref, rtol=0, atol=tol * scale)


@pytest.mark.parametrize("channel_axis", [None, -1])
def test_fft_full_rank_and_1d(rng, channel_axis):
    x = rng.standard_normal((30, 26, 2) if channel_axis else (30, 26))
    w = rng.standard_normal((7, 6))
    for boundary in BOUNDARIES:
        a = convolve(x, w, method="fft", boundary=boundary, cval=-1.0, channel_axis=channel_axis)
        cval = 0.0 if boundary == "zero" else -1.0
        for c in range(2 if channel_axis else 1):
            xc = x[..., c] if channel_axis else x
            ac = a[..., c] if channel_axis else a
            ref = naive_correlate(xc, w[::-1, ::-1], "same", boundary, cval)
            np.testing.assert_allclose(ac, ref, atol=1e-11)
    s = rng.standard_normal(300)
    k = rng.standard_normal(150)
    for mode in MODES:
        np.testing.assert_allclose(correlate(s, k, mode=mode, method="fft"),
                                   np.correlate(s, k, mode), atol=1e-10)


def test_auto_picks_by_rank_and_size(rng, monkeypatch):
    from filtkit.signal import _correlate as impl

    calls = []
    for name in ("_fft", "_separable"):
        original = getattr(impl, name)

        def spy(*args, _name=name, _original=original):
            calls.append(_name)
            return _original(*args)

        monkeypatch.setattr(impl, name, spy)
    x = rng.standard_normal((64, 64))
    correlate(x, np.outer(np.arange(1.0, 4.0), [1.0, -2.0, 1.0]))  # rank 1: separable
    correlate(x, rng.standard_normal((5, 5)))  # small full rank: direct
    correlate(x, rng.standard_normal((27, 27)))  # large: fft
    assert calls == ["_separable", "_fft"]


def test_separable_needs_rank1(rng):
    with pytest.raises(ValueError, match="`method`"):
        correlate(np.ones((9, 9)), rng.standard_normal((3, 3)), method="separable")
    with pytest.raises(ValueError, match="`method`"):
        correlate(np.ones((9, 9)), np.ones((3, 3)), method="ftt")
    with pytest.raises(ValueError, match="`method`"):
        correlate(np.ones((3, 9, 9)), np.ones((3, 3, 3)), mode="valid", method="fft")


def test_separable_keeps_integer_kernels_exact(rng):
    from filtkit.signal import kernels

    x = rng.integers(0, 255, size=(40, 40)).astype(np.float64)
    for k in (kernels.sobel(0), kernels.prewitt(1), kernels.box(3) * 9):
        np.testing.assert_array_equal(correlate(x, k, method="separable", boundary="reflect"),
                                      correlate(x, k, method="direct", boundary="reflect"))


@pytest.mark.parametrize("method", ["direct", "separable", "fft"])
@pytest.mark.parametrize("channel_axis", [None, 0, -1])
def test_out_parameter(rng, method, channel_axis):
    shape = {None: (20, 18), 0: (2, 20, 18), -1: (20, 18, 2)}[channel_axis]
    x = rng.standard_normal(shape).astype(np.float32)
    w = np.outer(rng.standard_normal(3), rng.standard_normal(5))
    kw = dict(boundary="wrap", stride=(1, 2), channel_axis=channel_axis, method=method)
    expected = correlate(x, w, **kw)
    out = np.full(expected.shape, np.nan, dtype=np.float32)
    assert correlate(x, w, out=out, **kw) is out
    np.testing.assert_array_equal(out, expected)


def test_out_bad_values_leave_out_untouched(rng):
    x = rng.standard_normal((10, 10))
    w = np.ones((3, 3))
    out = np.full((10, 10), 7.0)
    for bad, exc in [
        (np.empty((10, 9)), ValueError),
        (np.empty((10, 10), np.float32), ValueError),
        (np.empty((10, 20))[:, ::2], ValueError),
        ([[0.0] * 10] * 10, TypeError),
        (x, ValueError),
    ]:
        with pytest.raises(exc, match="`out`"):
            correlate(x, w, out=bad)
    with pytest.raises(ValueError, match="`stride`"):
        correlate(x, w, stride=0, out=out)
    assert (out == 7.0).all()


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_dense_and_sparse_3x3_nan_and_values(rng, boundary):
    """The one-pass dense 3x3 path and the general path (a kernel with zeros)
    both match ndimage, NaN placement included."""
    x = rng.standard_normal((12, 11))
    x[0, 5] = np.nan
    x[7, 10] = np.nan
    nd_mode = "constant" if boundary == "zero" else boundary
    for w in (rng.uniform(0.5, 1.5, (3, 3)), np.array([[0, 1.0, 0], [2, -3, 2], [0, 1, 0]])):
        got = correlate(x, w, boundary=boundary, cval=0.5)
        ref = ndi.correlate(x, w, mode=nd_mode, cval=0.0 if boundary == "zero" else 0.5)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
        _close(got[~np.isnan(got)], ref[~np.isnan(ref)])


def test_nan_and_inf_with_large_kernels(rng):
    """'auto' keeps NaN/inf local by not taking the FFT path for non-finite
    input; an explicit method='fft' spreads them everywhere (documented)."""
    x = rng.standard_normal((60, 60))
    w = rng.standard_normal((25, 25))
    x[30, 30] = np.nan
    ref = ndi.correlate(x, w, mode="constant")
    np.testing.assert_array_equal(np.isnan(correlate(x, w)), np.isnan(ref))
    assert np.isnan(correlate(x, w, method="fft")).all()
    x[30, 30] = np.inf
    got = correlate(x, w)
    ref = ndi.correlate(x, w, mode="constant")
    np.testing.assert_array_equal(np.isinf(got), np.isinf(ref))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))


def test_out_must_not_alias_inputs_and_be_plain_ndarray(rng):
    x = rng.standard_normal((6, 6))
    w = rng.standard_normal((6, 6))
    with pytest.raises(ValueError, match="`out`"):
        correlate(x, w, out=w)  # would overwrite the kernel while reading it
    with pytest.raises(TypeError, match="`out`"):
        correlate(x, w, out=np.empty((6, 6)).view(type("Sub", (np.ndarray,), {})))


def test_channel_axis_result_is_contiguous_and_reusable(rng):
    x = rng.standard_normal((8, 9, 3))
    w = rng.standard_normal((3, 3))
    first = correlate(x, w, channel_axis=-1)
    assert first.flags.c_contiguous
    out = np.empty_like(first)
    np.testing.assert_array_equal(correlate(x, w, channel_axis=-1, out=out), first)


@pytest.mark.parametrize(
    "kwargs,exc,name",
    [
        (dict(stride=[1, [2, 3]]), TypeError, "`stride`"),
        (dict(stride=10**20), ValueError, "`stride`"),
        (dict(dilation=(1, 2**50)), ValueError, "`dilation`"),
    ],
)
def test_bad_sizes(kwargs, exc, name):
    with pytest.raises(exc, match=name):
        correlate(np.ones((5, 5)), np.ones((2, 2)), **kwargs)
