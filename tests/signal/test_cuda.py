"""filtkit.signal on the CUDA backend: GPU arrays in, GPU arrays out; numpy in with
``device="cuda"``, numpy out.  Every result equals the CPU's.

These run where numba.cuda works (a GPU, or CI's simulator run with
``NUMBA_ENABLE_CUDASIM=1``); elsewhere only the no-GPU error is checked.
"""

import numpy as np
import pytest

from filtkit import signal
from filtkit.backends import is_device_array
from tests.backends.device import BACKENDS

HAVE_CUDA = "cuda" in BACKENDS
needs_cuda = pytest.mark.skipif(not HAVE_CUDA, reason="no GPU and no CUDA simulator")


def _close(got, ref, dtype):
    tol = 2e-5 if dtype == np.float32 else 1e-12
    scale = max(1.0, float(np.abs(ref).max()))
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * scale)


@pytest.mark.skipif(HAVE_CUDA, reason="checks the error raised without a GPU")
def test_cuda_without_a_gpu_is_a_clear_error(rng):
    with pytest.raises(RuntimeError, match="`device` 'cuda' needs"):
        signal.correlate(rng.random((5, 5)), np.ones((3, 3)), device="cuda")


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
def test_cuda_filters_refuse_what_they_cannot_do_yet(rng):
    from numba import cuda

    x = cuda.to_device(rng.random((8, 8)))
    with pytest.raises(ValueError, match="`channel_axis`"):
        signal.gaussian(rng.random((8, 8, 3)), 1.0, channel_axis=-1, device="cuda")
    with pytest.raises(ValueError, match="`axis`"):
        signal.sobel(x, axis=0)
    with pytest.raises(ValueError, match="2-D"):
        signal.gaussian(rng.random((4, 8, 8)), 1.0, device="cuda")
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
