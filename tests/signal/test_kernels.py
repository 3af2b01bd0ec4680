"""Named kernels against scipy.ndimage, OpenCV and scikit-image."""

import cv2
import numpy as np
import pytest
import scipy.ndimage as ndi
import skimage.filters as skf

from filtkit.signal import correlate, kernels


def test_gaussian1d_is_ndimage_impulse_response():
    for sigma, truncate in [(0.5, 4.0), (1.0, 4.0), (2.3, 3.0), (5.0, 1.5)]:
        g = kernels.gaussian1d(sigma, truncate=truncate)
        r = len(g) // 2
        assert r == int(truncate * sigma + 0.5)
        impulse = np.zeros(2 * r + 1)
        impulse[r] = 1.0
        ref = ndi.gaussian_filter1d(impulse, sigma, truncate=truncate, mode="constant")
        np.testing.assert_allclose(g, ref, rtol=0, atol=1e-15)
        np.testing.assert_allclose(kernels.gaussian(sigma, truncate=truncate), np.outer(ref, ref),
                                   atol=1e-15)


@pytest.mark.parametrize("name,scale", [("sobel", 4), ("prewitt", 3), ("scharr", 16)])
@pytest.mark.parametrize("axis,suffix", [(0, "h"), (1, "v")])
def test_edge_kernels_match_skimage_directional_filters(rng, name, scale, axis, suffix):
    img = rng.random((20, 23))
    got = correlate(img, getattr(kernels, name)(axis) / scale, boundary="reflect")
    np.testing.assert_allclose(got, getattr(skf, f"{name}_{suffix}")(img), atol=1e-14)


@pytest.mark.parametrize("name,ksize", [("sobel", 3), ("scharr", -1)])  # cv2.FILTER_SCHARR = -1
def test_edge_kernels_match_opencv(name, ksize):
    for axis in (0, 1):
        dx, dy = (0, 1) if axis == 0 else (1, 0)
        kx, ky = cv2.getDerivKernels(dx, dy, ksize)
        np.testing.assert_array_equal(getattr(kernels, name)(axis), np.outer(ky, kx))


def test_prewitt_is_box_smoothed_difference():
    np.testing.assert_array_equal(kernels.prewitt(1), np.outer([1, 1, 1], [-1, 0, 1]))


def test_roberts_matches_skimage_diagonals(rng):
    img = rng.random((15, 12))
    for diagonal in ("positive", "negative"):
        ref = getattr(skf, f"roberts_{diagonal[:3]}_diag")(img)
        got = ndi.convolve(img, kernels.roberts(diagonal))
        np.testing.assert_allclose(got, ref, atol=1e-15)


def test_laplacian_matches_ndimage(rng):
    img = rng.random((14, 16))
    np.testing.assert_allclose(correlate(img, kernels.laplacian(4), boundary="reflect"),
                               ndi.laplace(img, mode="reflect"), atol=1e-14)
    eight = correlate(img, kernels.laplacian(8), boundary="nearest")
    ref = ndi.uniform_filter(img, 3, mode="nearest") * 9 - 9 * img
    np.testing.assert_allclose(eight, ref, atol=1e-13)


def test_box_matches_uniform_filter(rng):
    img = rng.random((10, 11))
    for size in (3, (2, 5)):
        np.testing.assert_allclose(correlate(img, kernels.box(size), boundary="wrap"),
                                   ndi.uniform_filter(img, size, mode="wrap"), atol=1e-14)


def test_log_is_analytic_zero_sum():
    sigma = 1.4
    k = kernels.log(sigma)
    r = len(k) // 2
    assert k.shape == (2 * r + 1, 2 * r + 1) and r == int(4 * sigma + 0.5)
    assert abs(k.sum()) < 1e-14
    np.testing.assert_allclose(k, k.T)
    np.testing.assert_allclose(k, k[::-1, ::-1])
    # independent evaluation of the analytic formula at two points
    def analytic(y, x):
        q = (x * x + y * y) / (2 * sigma**2)
        return -(1 - q) * np.exp(-q) / (np.pi * sigma**4)

    offset = k[r, r] - analytic(0, 0)
    assert k[r + 1, r + 2] - offset == pytest.approx(analytic(1, 2), abs=1e-15)
    assert k[r, r] == k.min()


def test_sharpen_and_emboss(rng):
    img = rng.random((9, 9))
    np.testing.assert_allclose(correlate(img, kernels.sharpen(), boundary="mirror"),
                               img - ndi.laplace(img, mode="mirror"), atol=1e-14)
    assert kernels.sharpen().sum() == 1 and kernels.emboss().sum() == 1
    # emboss = identity + an antisymmetric diagonal relief
    e = kernels.emboss()
    identity = np.zeros((3, 3))
    identity[1, 1] = 1.0
    np.testing.assert_array_equal(e + e[::-1, ::-1], 2 * identity)
    assert e[0, 0] == -2 and e[2, 2] == 2


def test_named_registry_builds_every_kernel():
    for name, (factory, params) in kernels.NAMED.items():
        k = factory(**params)
        assert k.dtype == np.float64 and k.ndim == 2, name


@pytest.mark.parametrize(
    "call,exc,name",
    [
        (lambda: kernels.gaussian1d(0), ValueError, "`sigma`"),
        (lambda: kernels.gaussian(-1), ValueError, "`sigma`"),
        (lambda: kernels.gaussian(1, truncate=-1), ValueError, "`truncate`"),
        (lambda: kernels.log("1"), TypeError, "`sigma`"),
        (lambda: kernels.sobel(2), ValueError, "`axis`"),
        (lambda: kernels.scharr(True), ValueError, "`axis`"),
        (lambda: kernels.laplacian(6), ValueError, "`neighbours`"),
        (lambda: kernels.box(0), ValueError, "`size`"),
        (lambda: kernels.roberts("up"), ValueError, "`diagonal`"),
    ],
)
def test_bad_input(call, exc, name):
    with pytest.raises(exc, match=name):
        call()
