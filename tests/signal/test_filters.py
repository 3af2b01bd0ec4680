"""Image filters against scikit-image 0.26 (and scipy.ndimage for ``uniform``)."""

import numpy as np
import pytest
import scipy.ndimage as ndi
import skimage.data
import skimage.filters as skf
from skimage.util import img_as_float

import filtkit.signal as fs

IMAGES = {name: getattr(skimage.data, name)() for name in ("camera", "coins", "moon", "astronaut")}
MODES = ["reflect", "mirror", "nearest", "wrap", "constant"]
EDGE = ["sobel", "prewitt", "scharr"]
DIRECTIONAL = [f"{n}_{d}" for n in EDGE for d in "hv"]
TOL = dict(rtol=0, atol=1e-12)


def _channel_axis(image):
    return -1 if image.ndim == 3 else None


def _check(ours, ref, tol=TOL):
    assert ours.shape == ref.shape
    assert ours.dtype == ref.dtype
    np.testing.assert_allclose(ours, ref, **tol)


@pytest.mark.parametrize("image", IMAGES)
@pytest.mark.parametrize("mode", MODES)
def test_gaussian_and_dog(image, mode):
    img = IMAGES[image]
    ca = _channel_axis(img)
    _check(fs.gaussian(img, 2.5, mode=mode, cval=0.3, channel_axis=ca),
           skf.gaussian(img, 2.5, mode=mode, cval=0.3, channel_axis=ca))
    _check(fs.difference_of_gaussians(img, 1.2, 3.0, mode=mode, cval=0.3, channel_axis=ca),
           skf.difference_of_gaussians(img, 1.2, 3.0, mode=mode, cval=0.3, channel_axis=ca))


@pytest.mark.parametrize("image", IMAGES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", EDGE)
def test_edge_filters(image, mode, name):
    img = IMAGES[image]  # astronaut is a 3-D volume here, as in scikit-image
    ours, ref = getattr(fs, name), getattr(skf, name)
    _check(ours(img, mode=mode, cval=0.2), ref(img, mode=mode, cval=0.2))
    _check(ours(img, axis=1, mode=mode), ref(img, axis=1, mode=mode))


@pytest.mark.parametrize("image", ["camera", "coins", "moon"])
def test_directional_roberts_laplace(image):
    img = IMAGES[image]
    for name in DIRECTIONAL + ["roberts", "roberts_pos_diag", "roberts_neg_diag", "laplace"]:
        _check(getattr(fs, name)(img), getattr(skf, name)(img))


def test_laplace_volume():
    img = IMAGES["astronaut"]
    _check(fs.laplace(img), skf.laplace(img))


@pytest.mark.parametrize("image", IMAGES)
@pytest.mark.parametrize("mode", MODES)
def test_uniform_matches_ndimage(image, mode):
    img = IMAGES[image]
    ca = _channel_axis(img)
    size = [5, 4, 1][: img.ndim]
    ref = ndi.uniform_filter(img_as_float(img), size, mode=mode, cval=0.4)
    _check(fs.uniform(img, size[:2], mode=mode, cval=0.4, channel_axis=ca), ref, dict(atol=1e-12))


@pytest.mark.parametrize("image", IMAGES)
@pytest.mark.parametrize("preserve_range", [False, True])
def test_unsharp_mask(image, preserve_range):
    img = IMAGES[image]
    ca = _channel_axis(img)
    ours = fs.unsharp_mask(img, 2.0, 1.5, preserve_range, channel_axis=ca)
    # scikit-image 0.26 slices axis 0 for channel_axis=-1 (a bug); 2 is right
    ref = skf.unsharp_mask(img, 2.0, 1.5, preserve_range, channel_axis=None if ca is None else 2)
    _check(ours, ref, dict(atol=1e-12 * (255 if preserve_range else 1)))


def test_unsharp_mask_negative_range(rng):
    img = rng.uniform(-1, 1, (40, 30))
    _check(fs.unsharp_mask(img, 1.0, 3.0), skf.unsharp_mask(img, 1.0, 3.0))
    assert fs.unsharp_mask(img, 1.0, 3.0).min() == -1.0


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, bool, np.float16])
def test_input_conversion_matches_img_as_float(rng, dtype):
    if dtype is bool:
        img = rng.random((30, 40)) > 0.5
    elif dtype is np.float16:
        img = rng.random((30, 40)).astype(np.float16)
    else:
        info = np.iinfo(dtype)
        img = rng.integers(info.min, info.max, size=(30, 40), endpoint=True).astype(dtype)
    for name in ["gaussian", "sobel", "laplace", "unsharp_mask", "difference_of_gaussians"]:
        kw = {"difference_of_gaussians": dict(low_sigma=1.0)}.get(name, {})
        ref = getattr(skf, name)(img, **kw)
        tol = dict(atol=1e-12) if ref.dtype == np.float64 else dict(atol=1e-6)
        _check(getattr(fs, name)(img, **kw), ref, tol)


def test_preserve_range_gaussian(rng):
    img = rng.integers(0, 1000, size=(25, 20)).astype(np.uint16)
    _check(fs.gaussian(img, 1.5, preserve_range=True),
           skf.gaussian(img, 1.5, preserve_range=True))


@pytest.mark.parametrize("name", ["gaussian", "sobel", "uniform", "unsharp_mask", "roberts"])
def test_float32_stays_float32(name):
    img = img_as_float(IMAGES["camera"]).astype(np.float32)
    ours = getattr(fs, name)(img)
    assert ours.dtype == np.float32
    ref = getattr(skf, name)(img) if name != "uniform" else ndi.uniform_filter(img, 3)
    np.testing.assert_allclose(ours, ref, atol=2e-6)


def test_sigma_per_axis_and_truncate():
    img = IMAGES["coins"]
    _check(fs.gaussian(img, (1.0, 4.0), truncate=2.5),
           skf.gaussian(img, (1.0, 4.0), truncate=2.5))
    _check(fs.gaussian(img, (0.0, 2.0)), skf.gaussian(img, (0.0, 2.0)))
    zero = fs.gaussian(img, 0)
    _check(zero, img_as_float(img))


@pytest.mark.parametrize("name", EDGE + ["roberts", "laplace"])
def test_mask(rng, name):
    img = IMAGES["camera"][100:200, 150:260]
    mask = np.zeros(img.shape, bool)
    mask[10:70, 20:90] = True
    mask[5, 5] = True
    _check(getattr(fs, name)(img, mask=mask), getattr(skf, name)(img, mask=mask))


def test_out_parameter():
    img = IMAGES["camera"]
    out = np.empty(img.shape)
    got = fs.gaussian(img, 1.0, out=out)
    assert got is out
    _check(out, skf.gaussian(img, 1.0))


def test_filters_do_not_modify_or_alias_input():
    img = img_as_float(IMAGES["moon"])
    before = img.copy()
    for name in ["gaussian", "uniform", "sobel", "laplace", "unsharp_mask"]:
        result = getattr(fs, name)(img, **({"sigma": 0} if name == "gaussian" else {}))
        assert not np.shares_memory(result, img)
    np.testing.assert_array_equal(img, before)


def test_layouts_equal_contiguous():
    img = img_as_float(IMAGES["coins"])
    expected = fs.sobel(img)
    np.testing.assert_array_equal(fs.sobel(np.asfortranarray(img)), expected)
    np.testing.assert_array_equal(fs.sobel(img.astype(">f8")), expected)
    flipped = img[::-1, ::-1]
    np.testing.assert_array_equal(fs.sobel(flipped), fs.sobel(np.ascontiguousarray(flipped)))


@pytest.mark.parametrize(
    "call,exc,name",
    [
        (lambda: fs.gaussian(np.ones((5, 5)), -1), ValueError, "`sigma`"),
        (lambda: fs.gaussian(np.ones((5, 5)), (1, 2, 3)), ValueError, "`sigma`"),
        (lambda: fs.gaussian(np.ones((5, 5)), "big"), TypeError, "`sigma`"),
        (lambda: fs.gaussian(np.ones((5, 5)), mode="symmetric"), ValueError, "`mode`"),
        (lambda: fs.gaussian(np.ones((5, 5)), cval="x"), TypeError, "`cval`"),
        (lambda: fs.gaussian(np.ones((5, 5)), truncate=-1), ValueError, "`truncate`"),
        (lambda: fs.gaussian(np.ones((5, 5, 3)), channel_axis=3), ValueError, "`channel_axis`"),
        (lambda: fs.gaussian(np.ones((5, 5)), out=np.empty((4, 4))), ValueError, "`out`"),
        (lambda: fs.gaussian(np.ones((5, 5), complex)), TypeError, "`image`"),
        (lambda: fs.gaussian(np.ones((0, 5))), ValueError, "`image`"),
        (lambda: fs.uniform(np.ones((5, 5)), 0), ValueError, "`size`"),
        (lambda: fs.uniform(np.ones((5, 5)), 2.5), ValueError, "`size`"),
        (lambda: fs.sobel(np.ones((5, 5)), mode="vaild"), ValueError, "`mode`"),
        (lambda: fs.sobel(np.ones((5, 5)), axis=2), ValueError, "`axis`"),
        (lambda: fs.sobel(np.ones((5, 5)), axis=[]), ValueError, "`axis`"),
        (lambda: fs.gaussian(np.ones((5, 5)), float("inf")), ValueError, "`sigma`"),
        (lambda: fs.gaussian(np.ones((5, 5)), float("nan")), ValueError, "`sigma`"),
        (lambda: fs.gaussian(np.ones((5, 5)), 1e9), ValueError, "`sigma`"),
        (lambda: fs.gaussian(np.ones((5, 5)), out=np.empty((5, 5), np.float32)), ValueError,
         "`out`"),
        (lambda: fs.uniform(np.ones((5, 5)), float("inf")), ValueError, "`size`"),
        (lambda: fs.sobel(np.ones((5, 5)), mask=np.ones((4, 5), bool)), ValueError, "`mask`"),
        (lambda: fs.sobel_h(np.ones((5, 5, 3))), ValueError, "`image`"),
        (lambda: fs.roberts(np.ones(5)), ValueError, "`image`"),
        (lambda: fs.unsharp_mask(np.ones((5, 5)), amount="a"), TypeError, "`amount`"),
        (lambda: fs.unsharp_mask(np.ones((5, 5)), radius=-2), ValueError, "`radius`"),
        (lambda: fs.difference_of_gaussians(np.ones((5, 5)), 2, 1), ValueError, "`high_sigma`"),
        (lambda: fs.difference_of_gaussians(np.ones((5, 5)), [1, 2, 3]), ValueError,
         "`low_sigma`"),
    ],
)
def test_bad_input(call, exc, name):
    with pytest.raises(exc, match=name):
        call()


@pytest.mark.parametrize("cval", [1e3, 1e8, np.nan])
def test_edge_filters_constant_cval_on_volumes(rng, cval):
    vol = rng.random((5, 6, 7))
    for name in EDGE:
        ours = getattr(fs, name)(vol, mode="constant", cval=cval)
        ref = getattr(skf, name)(vol, mode="constant", cval=cval)
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))
        ok = ~np.isnan(ref)
        np.testing.assert_allclose(ours[ok], ref[ok], rtol=1e-12, atol=1e-12)
