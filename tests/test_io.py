"""filtkit.io: img_as_float reads, explicit uint8 conversion, atomic writes.

References are independent of filtkit: images are written and read back with
imageio.v3 directly, conversions are checked against skimage.util.img_as_float
and explicit numpy arithmetic.
"""

import os
import stat

import imageio.v3 as iio
import numpy as np
import pytest
from skimage.util import img_as_float

from filtkit import io as fio

SHAPE = (13, 17)


def _rng(seed):
    return np.random.default_rng(seed)


def _listing(directory):
    return sorted(os.listdir(directory))


def _assert_no_temp(directory):
    leftovers = [n for n in os.listdir(directory) if n.startswith(".filtkit-")]
    assert leftovers == []


# --------------------------------------------------------------------------- imread


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [None, 3], ids=["grey", "rgb"])
def test_imread_matches_img_as_float(tmp_path, dtype, channels):
    shape = SHAPE if channels is None else SHAPE + (channels,)
    arr = _rng(1).integers(0, np.iinfo(dtype).max + 1, size=shape, dtype=dtype)
    path = tmp_path / "in.png"
    if dtype == np.uint16 and channels is not None:
        # Pillow (imageio's PNG reader) would drop the low byte of 16-bit
        # colour PNGs; filtkit refuses them instead of losing precision.
        iio.imwrite(path, arr, plugin="opencv")
        with pytest.raises(ValueError, match="`path`.*16-bit colour"):
            fio.imread(path)
        path = tmp_path / "in.tif"
    iio.imwrite(path, arr)
    got = fio.imread(path)
    expected = img_as_float(arr)
    assert got.dtype == np.float64
    assert got.shape == arr.shape
    np.testing.assert_array_equal(got, expected)


def test_imread_float32_tiff_stays_float32(tmp_path):
    arr = _rng(2).random(SHAPE, dtype=np.float32) * 3 - 1  # also outside [0, 1]
    path = tmp_path / "in.tif"
    iio.imwrite(path, arr)
    got = fio.imread(path)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, img_as_float(arr))
    np.testing.assert_array_equal(got, arr)


def test_imread_accepts_str_path(tmp_path):
    arr = _rng(3).integers(0, 256, size=SHAPE, dtype=np.uint8)
    path = tmp_path / "in.png"
    iio.imwrite(path, arr)
    np.testing.assert_array_equal(fio.imread(str(path)), img_as_float(arr))


def test_round_trip_uint8_exact(tmp_path):
    arr = _rng(4).integers(0, 256, size=SHAPE + (3,), dtype=np.uint8)
    path = tmp_path / "rt.png"
    fio.imwrite(path, arr)
    got = fio.imread(path)
    assert got.dtype == np.float64
    # img_as_float multiplies by 1/255, which can differ from arr / 255 in the last bit:
    # exact against img_as_float, within one ulp of the true quotient.
    np.testing.assert_array_equal(got, img_as_float(arr))
    np.testing.assert_array_max_ulp(got, arr / 255.0, maxulp=1)
    assert np.abs(got - arr / 255.0).max() <= 2.0**-52
    # and the file itself holds the very same pixel values
    np.testing.assert_array_equal(iio.imread(path), arr)


def test_imread_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="`path`"):
        fio.imread(tmp_path / "nope.png")


def test_imread_directory_is_not_a_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="`path`"):
        fio.imread(tmp_path)


@pytest.mark.parametrize("nbytes", [0, 1000])
def test_imread_garbage_file(tmp_path, nbytes):
    path = tmp_path / "garbage.png"
    path.write_bytes(_rng(5).integers(0, 256, size=nbytes, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match="`path`"):
        fio.imread(path)


# --------------------------------------------------------------------------- to_uint8


def _expected_uint8(x):
    return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_to_uint8_float_clip_scale_round(dtype):
    x = (_rng(6).random(SHAPE) * 1.6 - 0.3).astype(dtype)  # about 30% below 0 / above 1
    assert (x < 0).any() and (x > 1).any()
    got = fio.to_uint8(x)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, _expected_uint8(x.astype(np.float64)))


def test_to_uint8_rounds_to_nearest_not_truncates():
    # k / 255 + 0.4 / 255 rounds down, k / 255 + 0.6 / 255 rounds up
    k = _rng(7).integers(0, 255, size=50)
    np.testing.assert_array_equal(fio.to_uint8((k + 0.4) / 255.0), k.astype(np.uint8))
    np.testing.assert_array_equal(fio.to_uint8((k + 0.6) / 255.0), (k + 1).astype(np.uint8))


def test_to_uint8_extremes():
    got = fio.to_uint8(np.array([-np.inf, -5.0, 0.0, 1.0, 5.0, np.inf]))
    np.testing.assert_array_equal(got, [0, 0, 0, 255, 255, 255])


def test_to_uint8_bool():
    b = _rng(8).random(SHAPE) > 0.5
    got = fio.to_uint8(b)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, np.where(b, 255, 0))


def test_to_uint8_uint8_unchanged():
    a = _rng(9).integers(0, 256, size=SHAPE, dtype=np.uint8)
    got = fio.to_uint8(a)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, a)


@pytest.mark.parametrize("dtype", [np.int64, np.int16, np.uint16, np.int32])
def test_to_uint8_integer_in_range_kept(dtype):
    a = _rng(10).integers(0, 256, size=SHAPE).astype(dtype)
    got = fio.to_uint8(a)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got.astype(np.int64), a.astype(np.int64))


@pytest.mark.parametrize("bad", [300, 256, -1, 2**40])
def test_to_uint8_integer_out_of_range_raises(bad):
    a = _rng(11).integers(0, 256, size=SHAPE).astype(np.int64)
    a[3, 4] = bad
    with pytest.raises(ValueError, match="`image`"):
        fio.to_uint8(a)


def test_to_uint8_nan_raises():
    x = _rng(12).random(SHAPE)
    x[2, 2] = np.nan
    with pytest.raises(ValueError, match="`image`"):
        fio.to_uint8(x)


# --------------------------------------------------------------------------- imwrite


def test_imwrite_float_matches_explicit_conversion(tmp_path):
    x = _rng(13).random(SHAPE + (3,)) * 1.6 - 0.3
    path = tmp_path / "f.png"
    fio.imwrite(path, x)
    got = iio.imread(path)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, _expected_uint8(x))


def test_imwrite_bool(tmp_path):
    b = _rng(14).random(SHAPE) > 0.5
    path = tmp_path / "b.png"
    fio.imwrite(path, b)
    got = iio.imread(path)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, np.where(b, 255, 0))


def test_imwrite_int64_in_range(tmp_path):
    a = _rng(15).integers(0, 256, size=SHAPE).astype(np.int64)
    path = tmp_path / "i.png"
    fio.imwrite(path, a)
    got = iio.imread(path)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, a)


@pytest.mark.parametrize(
    "name, shape",
    [("g.png", SHAPE), ("g.tif", SHAPE), ("c.tif", SHAPE + (3,)), ("c.png", SHAPE + (3,))],
)
def test_imwrite_uint16_stored_unchanged(tmp_path, name, shape):
    a = _rng(16).integers(0, 65536, size=shape, dtype=np.uint16)
    path = tmp_path / name
    if name == "c.png":
        # Pillow cannot store 16-bit colour PNG: a clear error, nothing written
        with pytest.raises(ValueError, match="`image`"):
            fio.imwrite(path, a)
        assert _listing(tmp_path) == []
        return
    fio.imwrite(path, a)
    got = iio.imread(path)
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, a)


def test_imwrite_int64_out_of_range_never_wraps(tmp_path):
    a = _rng(17).integers(0, 256, size=SHAPE).astype(np.int64)
    a[0, 0] = 300  # would wrap to 44 as uint8
    path = tmp_path / "w.png"
    with pytest.raises(ValueError, match="`image`"):
        fio.imwrite(path, a)
    assert _listing(tmp_path) == []


def test_imwrite_respects_umask(tmp_path):
    a = _rng(18).integers(0, 256, size=SHAPE, dtype=np.uint8)
    old = os.umask(0o022)
    try:
        fio.imwrite(tmp_path / "p.png", a)
        mode_022 = stat.S_IMODE(os.stat(tmp_path / "p.png").st_mode)
        os.umask(0o027)
        fio.imwrite(tmp_path / "q.png", a)
        mode_027 = stat.S_IMODE(os.stat(tmp_path / "q.png").st_mode)
    finally:
        os.umask(old)
    assert mode_022 == 0o644
    assert mode_027 == 0o640


def test_imwrite_overwrites_existing_target(tmp_path):
    path = tmp_path / "o.png"
    first = _rng(19).integers(0, 256, size=SHAPE, dtype=np.uint8)
    second = _rng(20).integers(0, 256, size=SHAPE, dtype=np.uint8)
    fio.imwrite(path, first)
    fio.imwrite(path, second)
    np.testing.assert_array_equal(iio.imread(path), second)
    assert _listing(tmp_path) == ["o.png"]


# ------------------------------------------------------------------- failed writes


def _nan_image():
    x = _rng(21).random(SHAPE)
    x[5, 6] = np.nan
    return x


def _good_image():
    return _rng(22).random(SHAPE)


# (file name, image, exception type, parameter named in the message)
_FAILURES = {
    "nan": ("t.png", _nan_image, ValueError, "image"),
    "int-out-of-range": ("t.png", lambda: np.full(SHAPE, 300, dtype=np.int64), ValueError, "image"),
    "unknown-extension": ("t.xyz", _good_image, ValueError, "path"),
    "no-extension": ("t", _good_image, ValueError, "path"),
    "five-channels": ("t.png", lambda: _rng(23).random(SHAPE + (5,)), ValueError, "image"),
    "four-dims": ("t.png", lambda: _rng(24).random((2,) + SHAPE + (3,)), ValueError, "image"),
    "rgba-as-jpeg": ("t.jpg", lambda: _rng(25).random(SHAPE + (4,)), ValueError, "path"),
}


@pytest.mark.parametrize("case", sorted(_FAILURES))
def test_failed_write_leaves_nothing(tmp_path, case):
    name, make, exc, param = _FAILURES[case]
    with pytest.raises(exc, match=f"`{param}`"):
        fio.imwrite(tmp_path / name, make())
    assert _listing(tmp_path) == []


@pytest.mark.parametrize("case", sorted(_FAILURES))
def test_failed_write_keeps_existing_target(tmp_path, case):
    name, make, exc, param = _FAILURES[case]
    target = tmp_path / name
    original = _rng(26).integers(0, 256, size=200, dtype=np.uint8).tobytes()
    target.write_bytes(original)
    with pytest.raises(exc, match=f"`{param}`"):
        fio.imwrite(target, make())
    assert target.read_bytes() == original
    assert _listing(tmp_path) == [name]
    _assert_no_temp(tmp_path)


def test_failed_write_missing_directory(tmp_path):
    target = tmp_path / "missing" / "t.png"
    with pytest.raises(FileNotFoundError, match="`path`"):
        fio.imwrite(target, _good_image())
    assert _listing(tmp_path) == []
    assert not target.exists()


def test_failed_write_keeps_existing_good_image(tmp_path):
    """A real image at the target survives a write that fails inside the encoder."""
    target = tmp_path / "keep.jpg"
    fio.imwrite(target, _rng(27).integers(0, 256, size=SHAPE + (3,), dtype=np.uint8))
    before = target.read_bytes()
    with pytest.raises(ValueError, match="`path`"):
        fio.imwrite(target, _rng(28).random(SHAPE + (4,)))  # JPEG has no alpha
    assert target.read_bytes() == before
    assert _listing(tmp_path) == ["keep.jpg"]


def test_to_uint8_rounds_float16_in_double_precision():
    x = np.linspace(0, 1, 2048, endpoint=False).astype(np.float16)
    expected = np.rint(np.clip(x.astype(np.float64), 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(fio.to_uint8(x), expected)


def test_grey_alpha_round_trip(tmp_path):
    a = _rng(21).random(SHAPE + (2,))
    fio.imwrite(tmp_path / "la.png", a)
    np.testing.assert_array_equal(iio.imread(tmp_path / "la.png"), fio.to_uint8(a))
