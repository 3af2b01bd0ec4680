"""filtkit.signal on the CUDA backend: GPU arrays in, GPU arrays out; numpy in with
``device="cuda"``, numpy out.  Every result equals the CPU's.

These run where numba.cuda works (a GPU, or CI's simulator run with
``NUMBA_ENABLE_CUDASIM=1``); elsewhere only the no-GPU error is checked.
"""

import numpy as np
import pytest

from filtkit import signal
from filtkit.backends import is_device_array
from tests.backends.device import BACKENDS, strict_device_arrays

HAVE_CUDA = "cuda" in BACKENDS
needs_cuda = pytest.mark.skipif(not HAVE_CUDA, reason="no GPU and no CUDA simulator")


@pytest.fixture(autouse=True)
def device_arrays_are_strict(monkeypatch):
    """On the simulator, device arrays behave as a real GPU's (no host arithmetic, element
    access or numpy arguments to kernels), so a hidden host transfer fails here."""
    strict_device_arrays(monkeypatch)


def _close(got, ref, dtype):
    tol = 2e-5 if dtype == np.float32 else 1e-12
    scale = max(1.0, float(np.abs(ref).max()))
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * scale)


@pytest.mark.skipif(HAVE_CUDA, reason="checks the error raised without a GPU")
def test_cuda_without_a_gpu_is_a_clear_error(rng):
    img = rng.random((5, 5))
    with pytest.raises(RuntimeError, match="`device` 'cuda' needs"):
        signal.correlate(img, np.ones((3, 3)), device="cuda")
    for name in ("gaussian", "uniform", "sobel", "sobel_h", "roberts", "laplace",
                 "unsharp_mask", "difference_of_gaussians", "max_pool", "avg_pool"):
        args = (1.0,) if name == "difference_of_gaussians" else ()
        with pytest.raises(RuntimeError, match="`device` 'cuda' needs"):
            getattr(signal, name)(img, *args, device="cuda")


@needs_cuda
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("boundary", ["constant", "reflect", "mirror", "nearest", "wrap"])
@pytest.mark.parametrize("mode,stride,dilation", [("same", 1, 1), ("full", (2, 1), 1),
                                                  ("valid", 1, (1, 2)), ("same", 2, 2)])
def test_cuda_correlate_equals_cpu(rng, dtype, boundary, mode, stride, dilation):
    from numba import cuda

    x = rng.standard_normal((13, 17)).astype(dtype)
    w = rng.standard_normal((3, 4)).astype(dtype)
    kw = dict(mode=mode, boundary=boundary, cval=0.5 if boundary == "constant" else 0.0,
              stride=stride, dilation=dilation)
    ref = signal.correlate(x, w, **kw)
    host = signal.correlate(x, w, device="cuda", **kw)
    assert isinstance(host, np.ndarray) and host.dtype == dtype and host.shape == ref.shape
    _close(host, ref, dtype)
    dev = signal.correlate(cuda.to_device(x), w, **kw)
    assert is_device_array(dev)
    _close(dev.copy_to_host(), ref, dtype)
    conv = signal.convolve(cuda.to_device(x), w, **kw)
    _close(conv.copy_to_host(), signal.convolve(x, w, **kw), dtype)


@needs_cuda
@pytest.mark.parametrize("method", ["auto", "separable"])
def test_cuda_separable_kernel_and_channels(rng, method):
    from numba import cuda

    x = rng.standard_normal((3, 12, 10)).astype(np.float32)
    w = np.outer([1.0, 2.0, 1.0], [1.0, 0.0, -1.0])
    ref = signal.correlate(x, w, channel_axis=0, boundary="reflect", method="separable")
    got = signal.correlate(cuda.to_device(x), w, channel_axis=0, boundary="reflect",
                           method=method)
    _close(got.copy_to_host(), ref, np.float32)
    rgb = np.moveaxis(x, 0, -1).copy()  # a numpy image may keep its channels last
    got = signal.correlate(rgb, w, channel_axis=-1, boundary="reflect", device="cuda")
    _close(got, np.moveaxis(ref, 0, -1), np.float32)


@needs_cuda
def test_cuda_1d_and_depth_sum(rng):
    from numba import cuda

    s = rng.standard_normal(40)
    k = rng.standard_normal(5)
    _close(signal.correlate(cuda.to_device(s), k, mode="full").copy_to_host(),
           signal.correlate(s, k, mode="full"), np.float64)
    vol = rng.standard_normal((3, 9, 8)).astype(np.float32)
    ker = rng.standard_normal((3, 2, 3)).astype(np.float32)
    ref = signal.correlate(vol, ker, mode="valid", stride=(1, 2, 1))
    _close(signal.correlate(vol, ker, mode="valid", stride=(1, 2, 1), device="cuda"), ref,
           np.float32)


@needs_cuda
def test_cuda_bad_input_is_refused(rng):
    from numba import cuda

    x = cuda.to_device(rng.standard_normal((6, 6)).astype(np.float32))
    w = np.ones((3, 3))
    with pytest.raises(ValueError, match="`method` 'fft'"):
        signal.correlate(x, w, method="fft")
    with pytest.raises(ValueError, match="`out`"):
        signal.correlate(x, w, out=np.empty((6, 6), np.float32))
    with pytest.raises(ValueError, match="`device` 'cpu'"):
        signal.correlate(x, w, device="cpu")
    with pytest.raises(ValueError, match="`device` must be one of"):
        signal.correlate(x, w, device="gpu")
    with pytest.raises(ValueError, match="`mode`"):
        signal.correlate(x, w, mode="vaild")
    with pytest.raises(TypeError, match="float32 or float64"):
        signal.correlate(cuda.to_device(np.ones((6, 6), np.int32)), w)
    with pytest.raises(ValueError, match="`channel_axis`"):
        signal.correlate(cuda.to_device(np.ones((6, 6, 3), np.float32)), w, channel_axis=2)
    with pytest.raises(ValueError, match="`kernel`"):
        signal.correlate(x, np.ones((9, 9)), mode="valid")


@needs_cuda
@pytest.mark.parametrize("mode", ["nearest", "reflect", "constant", "wrap"])
@pytest.mark.parametrize("sigma", [1.0, (2.0, 0.0)])
def test_cuda_gaussian_equals_cpu(rng, mode, sigma):
    from numba import cuda

    img = rng.integers(0, 256, (20, 23), dtype=np.uint8)
    ref = signal.gaussian(img, sigma, mode=mode, cval=0.25)
    got = signal.gaussian(img, sigma, mode=mode, cval=0.25, device="cuda")
    assert isinstance(got, np.ndarray) and got.dtype == ref.dtype
    _close(got, ref, np.float64)
    x = (img / 255.0).astype(np.float32)
    dev = signal.gaussian(cuda.to_device(x), sigma, mode=mode, cval=0.25)
    _close(dev.copy_to_host(), signal.gaussian(x, sigma, mode=mode, cval=0.25), np.float32)


@needs_cuda
@pytest.mark.parametrize("name", ["sobel", "prewitt", "scharr"])
@pytest.mark.parametrize("mode", ["reflect", "constant", "mirror"])
def test_cuda_edge_magnitude_equals_cpu(rng, name, mode):
    from numba import cuda

    fn = getattr(signal, name)
    img = rng.random((17, 21))
    _close(fn(img, mode=mode, device="cuda"), fn(img, mode=mode), np.float64)
    x = img.astype(np.float32)
    _close(fn(cuda.to_device(x), mode=mode).copy_to_host(), fn(x, mode=mode), np.float32)


@needs_cuda
def test_cuda_filters_refuse_what_the_gpu_cannot_do(rng):
    from numba import cuda

    x = cuda.to_device(rng.random((8, 8)))
    with pytest.raises(ValueError, match="`out` is supported on the CPU only"):
        signal.gaussian(x, 1.0, out=np.empty((8, 8)))
    with pytest.raises(ValueError, match="`out` is supported on the CPU only"):
        signal.gaussian(rng.random((8, 8)), 1.0, out=np.empty((8, 8)), device="cuda")
    with pytest.raises(TypeError, match="`image` on the GPU must be float32 or float64"):
        signal.uniform(cuda.to_device(np.ones((8, 8), np.uint8)))
    with pytest.raises(ValueError, match="`x` on the GPU must be C-contiguous"):
        signal.max_pool(cuda.to_device(np.ones((8, 8)))[:, ::2])
    with pytest.raises(ValueError, match="`device` 'cpu' needs a host `image`"):
        signal.laplace(x, device="cpu")
    with pytest.raises(ValueError, match="`device`"):
        signal.sobel(rng.random((8, 8)), device="tpu")


@needs_cuda
def test_cuda_kernel_uploads_are_reused_and_never_stale(rng):
    """Filtering with the same kernel again reuses its device copy; a kernel that differs
    in one value, its dtype or its shape gets its own."""
    from numba import cuda

    from filtkit.signal import _gpu

    x = rng.standard_normal((10, 11)).astype(np.float32)
    xd = cuda.to_device(x)
    w = rng.standard_normal((3, 3))
    a = _gpu._weights(w, np.float32)
    assert _gpu._weights(w.copy(), np.float32) is a
    assert _gpu._weights(w, np.float64) is not a
    w2 = w.copy()
    w2[1, 1] += 1.0
    assert _gpu._weights(w2, np.float32) is not a
    for k in (w, w2, w, w.reshape(1, 9).reshape(3, 3)[::-1].copy()):
        _close(signal.correlate(xd, k, method="direct").copy_to_host(),
               signal.correlate(x, k, method="direct"), np.float32)


# -- the other filters and pooling: each on a device array against the CPU, float32 and
# float64; numpy in with device="cuda"; tiny shapes (the simulator runs a thread per thread)

#: (filter, positional arguments, keywords, data): "unit" data in [0, 1), "signed" normal
FILTER_CASES = [
    ("uniform", (3,), dict(mode="reflect"), "unit"),
    ("uniform", ((4, 2),), dict(mode="constant", cval=0.5), "unit"),
    ("sobel_h", (), {}, "unit"),
    ("sobel_v", (), {}, "unit"),
    ("prewitt_h", (), {}, "unit"),
    ("prewitt_v", (), {}, "unit"),
    ("scharr_h", (), {}, "unit"),
    ("scharr_v", (), {}, "unit"),
    ("sobel", (), dict(axis=1, mode="wrap"), "signed"),
    ("prewitt", (), dict(axis=(0, 1, 1), mode="constant", cval=0.3), "unit"),
    ("scharr", (), dict(axis=[-2], mode="nearest"), "unit"),
    ("roberts", (), {}, "signed"),
    ("roberts_pos_diag", (), {}, "unit"),
    ("roberts_neg_diag", (), {}, "unit"),
    ("laplace", (), {}, "signed"),
    ("unsharp_mask", (), dict(radius=1.5, amount=2.0), "unit"),  # clipped to [0, 1]
    ("unsharp_mask", (), dict(radius=(1.0, 0.5), amount=0.7), "signed"),  # to [-1, 1]
    ("unsharp_mask", ((0.0, 2.0), 3.0, True), {}, "signed"),  # preserve_range: no clipping
    ("difference_of_gaussians", (1.0,), dict(mode="nearest"), "unit"),
    ("difference_of_gaussians", ((0.5, 0.0), (1.0, 2.0)), dict(mode="mirror"), "signed"),
]


def _data(rng, kind, shape):
    return rng.random(shape) if kind == "unit" else 0.6 * rng.standard_normal(shape)


@needs_cuda
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,args,kw,data", FILTER_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(FILTER_CASES)])
def test_cuda_filter_equals_cpu(rng, dtype, name, args, kw, data):
    from numba import cuda

    fn = getattr(signal, name)
    img = _data(rng, data, (9, 11)).astype(dtype)
    ref = fn(img, *args, **kw)
    got = fn(cuda.to_device(img), *args, **kw)
    assert is_device_array(got) and got.dtype == ref.dtype and got.shape == ref.shape
    _close(got.copy_to_host(), ref, dtype)


@needs_cuda
@pytest.mark.parametrize("name,args,kw,data", FILTER_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(FILTER_CASES)])
def test_cuda_filter_numpy_in_numpy_out(rng, name, args, kw, data):
    """``device='cuda'`` on a numpy image: integers converted on the host as on the CPU
    (uint8 / 255; int16 / 32767, negative values for the "signed" cases)."""
    fn = getattr(signal, name)
    img = rng.integers(0, 256, (9, 11)).astype(np.uint8)
    if data == "signed":
        img = (img.astype(np.int16) - 128) * 200
    ref = fn(img, *args, **kw)
    got = fn(img, *args, device="cuda", **kw)
    assert isinstance(got, np.ndarray) and got.dtype == ref.dtype == np.float64
    _close(got, ref, np.float64)


@needs_cuda
def test_cuda_filters_on_volumes_channels_and_masks(rng):
    """Beyond one grey image: channels first (one fused pass over the planes) or last
    (1-D passes), 3-D volumes (the edge filters' N-D passes, the 3-gradient magnitude), a
    1-D signal, and masks (eroded on the host, applied on the device)."""
    from numba import cuda

    planes = rng.random((2, 9, 11)).astype(np.float32)
    rgb = rng.random((5, 6, 3))
    vol = rng.standard_normal((3, 5, 6))
    mask = np.ones((9, 11), bool)
    mask[2:4, 5:9] = False
    img = rng.standard_normal((9, 11)).astype(np.float32)
    cases = [
        (signal.gaussian, planes, (1.0,), dict(channel_axis=0, mode="constant", cval=0.2)),
        (signal.gaussian, rgb, ((1.0, 0.7),), dict(channel_axis=-1, mode="reflect")),
        (signal.uniform, rgb, (3,), dict(channel_axis=2, mode="constant", cval=-1.0)),
        (signal.unsharp_mask, rgb, (1.0, 1.5), dict(channel_axis=-1)),
        (signal.difference_of_gaussians, planes, (0.8,), dict(channel_axis=0)),
        (signal.sobel, vol, (), dict(mode="constant", cval=0.5)),
        (signal.scharr, vol, (), dict(axis=(0, 2), mode="mirror")),
        (signal.laplace, vol, (), {}),
        (signal.uniform, rng.random(13), (4,), {}),
        (signal.prewitt, rng.standard_normal(13), (), {}),
        (signal.sobel, img, (mask,), {}),
        (signal.prewitt_v, img, (mask,), {}),
        (signal.roberts, img, (mask,), {}),
        (signal.laplace, img, (3, cuda.to_device(mask)), {}),  # a mask on the GPU
    ]
    for fn, x, args, kw in cases:
        host_args = tuple(a.copy_to_host() if is_device_array(a) else a for a in args)
        ref = fn(x, *host_args, **kw)
        got = fn(cuda.to_device(x), *args, **kw)
        assert is_device_array(got) and got.shape == ref.shape, fn.__name__
        _close(got.copy_to_host(), ref, x.dtype)
    x = np.moveaxis(planes, 0, -1)  # a numpy image may keep its channels last, any layout
    _close(signal.gaussian(x, 1.0, channel_axis=-1, device="cuda"),
           signal.gaussian(x, 1.0, channel_axis=-1), np.float32)


@needs_cuda
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cuda_pooling_equals_cpu(rng, dtype):
    from numba import cuda

    x = rng.standard_normal((2, 9, 11)).astype(dtype)
    x[1, 4, 4] = np.nan  # NaN wins its window, as on the CPU (and in torch)
    for fn in (signal.max_pool, signal.avg_pool):
        for x_in, kw in [(x, {}), (x[None], dict(size=(3, 2), stride=(2, 3))),
                         (x[0], dict(size=3, stride=1))]:
            ref = fn(x_in, **kw)
            got = fn(cuda.to_device(x_in), **kw)
            assert is_device_array(got) and got.shape == ref.shape and got.dtype == dtype
            np.testing.assert_array_equal(np.isnan(got.copy_to_host()), np.isnan(ref))
            _close(np.nan_to_num(got.copy_to_host()), np.nan_to_num(ref), dtype)
    counts = rng.integers(0, 9, (9, 11), dtype=np.uint8)  # integers: values kept
    got = signal.avg_pool(counts, 2, device="cuda")
    assert isinstance(got, np.ndarray) and got.dtype == np.float64
    _close(got, signal.avg_pool(counts, 2), np.float64)


#: bad arguments: each must raise the CPU's error, word for word, on the GPU too
BAD_CALLS = [
    ("uniform", (0,), {}),
    ("uniform", ((1, 2, 3),), {}),
    ("uniform", (3,), dict(mode="vaild")),
    ("uniform", (3,), dict(channel_axis=2)),
    ("gaussian", (-1.0,), {}),
    ("gaussian", (1.0,), dict(truncate=-1.0)),
    ("gaussian", (1.0,), dict(cval="a", mode="constant")),
    ("sobel", (), dict(axis=2)),
    ("sobel", (), dict(axis=())),
    ("prewitt", (), dict(mode="zeros")),
    ("scharr", (np.ones((3, 3), bool),), {}),
    ("sobel_h", (np.ones((9, 12), bool),), {}),
    ("roberts", (np.ones((2, 2)),), {}),
    ("laplace", (3, np.ones((9, 10))), {}),
    ("unsharp_mask", (1.0, "a"), {}),
    ("unsharp_mask", ((1.0, 2.0, 3.0),), {}),
    ("unsharp_mask", (1.0,), dict(channel_axis=-3)),
    ("difference_of_gaussians", (2.0, 1.0), {}),
    ("difference_of_gaussians", (1.0,), dict(mode="nearest", cval=None)),
    ("max_pool", (12,), {}),
    ("max_pool", (2,), dict(stride=0)),
    ("avg_pool", ((1, 2, 3),), {}),
    ("avg_pool", (2.5,), {}),
    ("gaussian", (1.0,), dict(device="gpu")),
    ("correlate", (np.ones((3, 3)),), dict(mode="vaild")),
    ("correlate", (np.ones((10, 3)),), dict(mode="valid")),
    ("convolve", (np.ones((3, 3)),), dict(boundary="edge")),
    ("correlate", (np.ones((3, 3)),), dict(stride=(1, 0))),
    ("convolve", (np.ones((3, 3)),), dict(dilation=1.5)),
]

#: images of shapes the functions refuse (3-D for the 2-D-only filters, 1-D for
#: pooling, 4-D for correlate, empty), with their other positional arguments
BAD_IMAGES = [("sobel_v", (3, 9, 11), ()), ("roberts_neg_diag", (3, 9, 11), ()),
              ("max_pool", (11,), ()), ("uniform", (0, 11), ()),
              ("correlate", (2, 2, 9, 11), (np.ones((3, 3)),))]


def _error(fn, *args, **kw):
    try:
        fn(*args, **kw)
    except Exception as exc:  # any error: compared below
        return type(exc), str(exc)
    return None


def test_cuda_bad_arguments_raise_the_cpus_errors(rng):
    """Validation happens once, before anything runs: the same error type and message
    for a numpy image on the CPU, with device='cuda' (also where there is no GPU), and
    for a GPU image."""
    img = rng.random((9, 11))
    cases = [(name, img, args, kw) for name, args, kw in BAD_CALLS]
    cases += [(name, np.zeros(shape), args, {}) for name, shape, args in BAD_IMAGES]
    for name, x, args, kw in cases:
        fn = getattr(signal, name)
        cpu = _error(fn, x, *args, **kw)
        assert cpu is not None and cpu[0] is not RuntimeError, (name, args, kw)
        assert _error(fn, x, *args, **{"device": "cuda", **kw}) == cpu, (name, args, kw)
        if HAVE_CUDA:
            from numba import cuda

            assert _error(fn, cuda.to_device(x), *args, **kw) == cpu, (name, args, kw)
