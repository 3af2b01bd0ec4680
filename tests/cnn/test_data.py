"""filtkit.cnn.data: IDX files, the data sets, splitting, batching, augmentation."""

import gzip
import os
import struct
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from filtkit.cnn.data import (
    batches,
    load_digits,
    load_idx,
    load_mnist,
    random_shift,
    save_idx,
    train_val_split,
)

MNIST_DIR = Path(__file__).resolve().parents[2].parent / "shared/data/mnist"

# type code, struct format character, numpy dtype: written out by hand from the spec
IDX_TYPES = [
    (0x08, "B", np.uint8),
    (0x09, "b", np.int8),
    (0x0B, "h", np.int16),
    (0x0C, "i", np.int32),
    (0x0D, "f", np.float32),
    (0x0E, "d", np.float64),
]


def idx_bytes(code, shape, values, fmt):
    """An IDX file built byte by byte with struct, independently of save_idx."""
    header = bytes([0, 0, code, len(shape)]) + b"".join(struct.pack(">I", s) for s in shape)
    return header + struct.pack(f">{len(values)}{fmt}", *values)


def sample_values(dtype, n, rng):
    """Values that use the whole range of ``dtype`` (sign, high bytes, fractions)."""
    if np.dtype(dtype).kind == "f":
        v = rng.standard_normal(n) * 1e3
        v[:3] = [np.finfo(dtype).max, np.finfo(dtype).tiny, -0.0]
        return v.astype(dtype)
    info = np.iinfo(dtype)
    v = rng.integers(info.min, int(info.max) + 1, size=n)
    v[:2] = [info.min, info.max]
    return v.astype(dtype)


def write(path, data):
    path.write_bytes(data)
    return path


# ------------------------------------------------------------- load / save IDX


@pytest.mark.parametrize("code, fmt, dtype", IDX_TYPES)
def test_load_idx_reads_hand_built_file(tmp_path, rng, code, fmt, dtype):
    shape = (3, 4, 5)
    values = sample_values(dtype, 60, rng)
    data = idx_bytes(code, shape, values.tolist(), fmt)
    raw = write(tmp_path / "a.idx", data)
    # gzip detected by its magic bytes, not by the name
    packed = write(tmp_path / "b.idx", gzip.compress(data))
    for path in (raw, packed):
        got = load_idx(path)
        assert got.dtype == dtype and got.dtype.isnative
        assert got.shape == shape
        assert got.flags.c_contiguous and got.flags.writeable
        np.testing.assert_array_equal(got, values.reshape(shape))


@pytest.mark.parametrize("code, fmt, dtype", IDX_TYPES)
@pytest.mark.parametrize("name", ["x-idx-ubyte", "x-idx-ubyte.gz", "x.GZ"])
def test_save_idx_round_trip_and_bytes(tmp_path, rng, code, fmt, dtype, name):
    values = sample_values(dtype, 24, rng)
    arr = values.reshape(2, 3, 4)
    path = tmp_path / name
    save_idx(path, arr)
    got = load_idx(path)
    assert got.dtype == dtype and got.shape == (2, 3, 4)
    np.testing.assert_array_equal(got, arr)
    stored = path.read_bytes()
    if name.lower().endswith(".gz"):
        assert stored[:2] == b"\x1f\x8b"
        stored = gzip.decompress(stored)
    assert stored == idx_bytes(code, (2, 3, 4), values.tolist(), fmt)
    assert os.listdir(tmp_path) == [name]  # no temporary file left


def test_save_idx_keeps_values_of_non_native_and_strided_input(tmp_path):
    arr = np.arange(24, dtype=">i4").reshape(4, 6)[:, ::2]
    save_idx(tmp_path / "a", arr)
    got = load_idx(tmp_path / "a")
    np.testing.assert_array_equal(got, [[0, 2, 4], [6, 8, 10], [12, 14, 16], [18, 20, 22]])
    assert got.dtype == np.int32 and got.dtype.isnative


def test_idx_one_dimensional_and_empty(tmp_path):
    save_idx(tmp_path / "labels", np.array([5, 0, 4], dtype=np.uint8))
    assert (tmp_path / "labels").read_bytes() == bytes.fromhex("0000 0801 00000003 050004")
    save_idx(tmp_path / "empty.gz", np.zeros((0, 28, 28), np.uint8))
    got = load_idx(tmp_path / "empty.gz")
    assert got.shape == (0, 28, 28) and got.dtype == np.uint8


def test_save_idx_refuses_bad_arrays_and_leaves_nothing(tmp_path):
    with pytest.raises(TypeError, match="`array` must have dtype uint8"):
        save_idx(tmp_path / "a", np.zeros(3, np.int64))
    with pytest.raises(TypeError, match="`array`"):
        save_idx(tmp_path / "a", np.zeros(3, bool))
    with pytest.raises(ValueError, match="`array` must have 1 to 255 dimensions"):
        save_idx(tmp_path / "a", np.uint8(3))
    with pytest.raises(FileNotFoundError, match="`path` directory"):
        save_idx(tmp_path / "missing" / "a", np.zeros(3, np.uint8))
    with pytest.raises(TypeError, match="`path`"):
        save_idx(3.5, np.zeros(3, np.uint8))
    assert os.listdir(tmp_path) == []


def test_save_idx_replaces_existing_file(tmp_path):
    path = tmp_path / "a.gz"
    save_idx(path, np.arange(10, dtype=np.uint8))
    save_idx(path, np.array([1.5, -2.0], np.float32))
    np.testing.assert_array_equal(load_idx(path), np.array([1.5, -2.0], np.float32))
    assert os.listdir(tmp_path) == ["a.gz"]


def test_load_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.idx"):
        load_idx(tmp_path / "nope.idx")
    with pytest.raises(FileNotFoundError, match="`path`"):
        load_idx(tmp_path)  # a directory


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_load_idx_truncated_and_trailing(tmp_path, compress):
    good = idx_bytes(0x0B, (2, 3), [1, 2, 3, 4, 5, 6], "h")  # 12 data bytes
    pack = gzip.compress if compress else (lambda b: b)
    path = write(tmp_path / "short", pack(good[:-3]))
    with pytest.raises(ValueError, match=r"truncated.*needs 12 data bytes.*holds 9\b"):
        load_idx(path)
    path = write(tmp_path / "long", pack(good + b"\x00" * 5))
    with pytest.raises(ValueError, match=r"trailing bytes.*needs 12 data bytes.*holds 17\b"):
        load_idx(path)
    path = write(tmp_path / "header", pack(good[:9]))  # sizes cut short
    with pytest.raises(ValueError, match="truncated.*8 size bytes"):
        load_idx(path)


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x00\x01\x08\x01\x00\x00\x00\x01\x07", "not an IDX file"),  # bad magic
        (b"\x50\x4b\x03\x04rest-of-a-zip", "not an IDX file"),
        (b"\x00\x00\x0a\x01\x00\x00\x00\x01\x07", r"unknown type code 0x0A"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (b"\x00\x00", "not an IDX file"),
        (b"", "not an IDX file"),
    ],
)
def test_load_idx_not_idx(tmp_path, compress, data, message):
    path = write(tmp_path / "f", gzip.compress(data) if compress else data)
    with pytest.raises(ValueError, match=message):
        load_idx(path)


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize(
    "code, shape",
    [
        (0x08, (1024, 1024, 1024)),  # 1 GiB: np.empty would succeed lazily
        (0x0E, (2**32 - 1,) * 3),  # ~6e29 bytes: no integer overflow either
    ],
)
def test_load_idx_forged_header_allocates_nothing(tmp_path, compress, code, shape):
    data = bytes([0, 0, code, len(shape)]) + struct.pack(">3I", *shape) + b"\x01" * 100
    path = write(tmp_path / "forged", gzip.compress(data) if compress else data)
    expected = np.prod(shape, dtype=object) * (1 if code == 0x08 else 8)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ValueError, match=rf"truncated.*needs {expected} data.*holds 100\b"):
            load_idx(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 2.0
    assert peak < 8 * 2**20


def test_load_idx_corrupt_gzip(tmp_path):
    good = gzip.compress(idx_bytes(0x08, (100,), list(range(100)), "B"))
    crc = bytearray(good)
    crc[-8] ^= 0xFF  # CRC32 of the data
    cases = {
        "crc": bytes(crc),
        "cut": good[:-10],  # stream ends before its end marker
        "method": good[:2] + b"\x07" + good[3:],  # unknown compression method
        "junk": b"\x1f\x8b" + b"\xff" * 40,
    }
    for name, data in cases.items():
        path = write(tmp_path / name, data)
        with pytest.raises(ValueError, match="`path` is not a valid gzip file"):
            load_idx(path)
    # sanity: the uncorrupted stream loads
    np.testing.assert_array_equal(load_idx(write(tmp_path / "good", good)), np.arange(100))


# ----------------------------------------------------------------- data sets


def test_load_mnist_real_files():
    images = MNIST_DIR / "mnist8k-images-idx3-ubyte.gz"
    labels = MNIST_DIR / "mnist8k-labels-idx1-ubyte.gz"
    if not (images.is_file() and labels.is_file()):
        pytest.skip(f"MNIST sample files not present in {MNIST_DIR}")
    X, y = load_mnist(images, labels)
    assert X.shape == (8000, 1, 28, 28) and X.dtype == np.float32
    assert y.shape == (8000,) and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0
    assert set(np.unique(y).tolist()) == set(range(10))
    # independent parse: fixed 16- and 8-byte headers, then raw uint8
    ref_images = np.frombuffer(gzip.decompress(images.read_bytes())[16:], np.uint8)
    ref_labels = np.frombuffer(gzip.decompress(labels.read_bytes())[8:], np.uint8)
    np.testing.assert_array_equal(X.reshape(-1) * np.float32(255), ref_images)
    np.testing.assert_array_equal(y, ref_labels)
    assert y[:10].tolist() == [2, 4, 4, 8, 7, 8, 0, 6, 7, 6]
    # a real digit: ink covers a minority of the pixels, and sits in the middle
    ink = (X[:, 0] > 0.5).mean(axis=0)
    assert 0.05 < (X > 0).mean() < 0.4
    assert ink[10:18, 10:18].mean() > 10 * ink[:3, :].mean()


def test_load_mnist_scaling_and_checks(tmp_path):
    imgs = np.array([[[0, 255, 128]], [[1, 2, 3]]], dtype=np.uint8)  # (2, 1, 3)
    save_idx(tmp_path / "i", imgs)
    save_idx(tmp_path / "l", np.array([9, 0], np.uint8))
    X, y = load_mnist(tmp_path / "i", tmp_path / "l")
    np.testing.assert_array_equal(X, (imgs / np.float32(255)).astype(np.float32)[:, None])
    assert X.shape == (2, 1, 1, 3) and X[0, 0, 0, 1] == 1.0
    assert y.tolist() == [9, 0] and y.dtype == np.int64

    save_idx(tmp_path / "l3", np.array([1, 2, 3], np.uint8))
    with pytest.raises(ValueError, match="3 labels but `images_path` 2 images"):
        load_mnist(tmp_path / "i", tmp_path / "l3")
    save_idx(tmp_path / "i2d", np.zeros((2, 9), np.uint8))
    with pytest.raises(ValueError, match="`images_path` must hold uint8 images"):
        load_mnist(tmp_path / "i2d", tmp_path / "l")
    save_idx(tmp_path / "ifloat", np.zeros((2, 3, 3), np.float32))
    with pytest.raises(ValueError, match="`images_path`.*float32"):
        load_mnist(tmp_path / "ifloat", tmp_path / "l")
    save_idx(tmp_path / "l2d", np.zeros((2, 1), np.uint8))
    with pytest.raises(ValueError, match="`labels_path` must hold integer labels"):
        load_mnist(tmp_path / "i", tmp_path / "l2d")
    with pytest.raises(FileNotFoundError):
        load_mnist(tmp_path / "i", tmp_path / "missing")


def test_load_digits():
    from sklearn.datasets import load_digits as sk_digits

    X, y = load_digits()
    assert X.shape == (1797, 1, 8, 8) and X.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0
    np.testing.assert_array_equal(np.bincount(y) >= 174, [True] * 10)
    counts = X * 16
    np.testing.assert_array_equal(counts, np.round(counts))  # 0..16 counts, exactly
    ref = sk_digits()
    np.testing.assert_array_equal(counts[:, 0], ref.images)
    np.testing.assert_array_equal(y, ref.target)


# ------------------------------------------------------------ train_val_split


def test_train_val_split_sizes_disjoint_paired():
    X = np.arange(1000).reshape(100, 10)  # row i holds 10*i .. 10*i+9
    y = np.arange(100) * 3
    X_tr, y_tr, X_val, y_val = train_val_split(X, y, val_fraction=0.25, seed=1)
    assert X_tr.shape == (75, 10) and X_val.shape == (25, 10)
    assert y_tr.shape == (75,) and y_val.shape == (25,)
    rows_tr, rows_val = X_tr[:, 0] // 10, X_val[:, 0] // 10
    assert set(rows_tr.tolist()).isdisjoint(rows_val.tolist())
    assert sorted(rows_tr.tolist() + rows_val.tolist()) == list(range(100))
    np.testing.assert_array_equal(y_tr, rows_tr * 3)
    np.testing.assert_array_equal(y_val, rows_val * 3)
    assert rows_tr.tolist() != sorted(rows_tr.tolist())  # really shuffled


def test_train_val_split_rounding_and_default():
    X, y = np.zeros((1797, 1, 8, 8), np.float32), np.zeros(1797, np.int64)
    X_tr, y_tr, X_val, y_val = train_val_split(X, y, seed=0)
    assert len(X_val) == 180 and len(X_tr) == 1617  # floor(179.7 + 0.5)
    assert X_tr.dtype == np.float32 and y_val.dtype == np.int64
    assert len(train_val_split(X[:10], y[:10], val_fraction=0.14, seed=0)[2]) == 1
    assert len(train_val_split(X[:10], y[:10], val_fraction=0.16, seed=0)[2]) == 2


def test_train_val_split_reproducible():
    X, y = np.arange(50.0), np.arange(50)
    a = train_val_split(X, y, val_fraction=0.2, seed=7)
    b = train_val_split(X, y, val_fraction=0.2, seed=7)
    c = train_val_split(X, y, val_fraction=0.2, seed=8)
    d = train_val_split(X, y, val_fraction=0.2, seed=np.random.default_rng(7))
    for u, v, w in zip(a, b, d):
        np.testing.assert_array_equal(u, v)
        np.testing.assert_array_equal(u, w)
    assert not np.array_equal(a[2], c[2])


def test_train_val_split_zero_fraction_and_errors():
    X, y = np.ones((6, 2, 3), np.float32), np.arange(6)
    X_tr, y_tr, X_val, y_val = train_val_split(X, y, val_fraction=0.0, seed=0)
    assert X_tr.shape == (6, 2, 3) and X_val.shape == (0, 2, 3) and y_val.shape == (0,)
    assert X_val.dtype == np.float32
    for bad in (1.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="`val_fraction`"):
            train_val_split(X, y, val_fraction=bad)
    with pytest.raises(TypeError, match="`val_fraction`"):
        train_val_split(X, y, val_fraction="0.1")
    with pytest.raises(ValueError, match="`val_fraction`.*no training sample"):
        train_val_split(X[:1], y[:1], val_fraction=0.9)
    with pytest.raises(ValueError, match="`y` must have one entry per sample"):
        train_val_split(X, y[:5])
    with pytest.raises(ValueError, match="`seed`"):
        train_val_split(X, y, seed=-1)
    with pytest.raises(TypeError, match="`seed`"):
        train_val_split(X, y, seed=1.5)


# -------------------------------------------------------------------- batches


def test_batches_in_order():
    X = np.arange(23 * 2).reshape(23, 2)
    y = np.arange(23) + 100
    out = list(batches(X, y, batch_size=5))
    assert [len(xb) for xb, _ in out] == [5, 5, 5, 5, 3]
    np.testing.assert_array_equal(np.concatenate([xb for xb, _ in out]), X)
    np.testing.assert_array_equal(np.concatenate([yb for _, yb in out]), y)
    only_x = list(batches(X, batch_size=23))
    assert len(only_x) == 1 and isinstance(only_x[0], np.ndarray)
    np.testing.assert_array_equal(only_x[0], X)
    assert len(list(batches(X, batch_size=100))) == 1


def test_batches_shuffled_covers_everything_once():
    X = np.arange(103) * 10
    y = np.arange(103)
    out = list(batches(X, y, batch_size=8, shuffle=True, seed=3))
    assert [len(yb) for _, yb in out] == [8] * 12 + [7]
    order = np.concatenate([yb for _, yb in out])
    assert sorted(order.tolist()) == list(range(103))
    assert order.tolist() != list(range(103))
    for xb, yb in out:
        np.testing.assert_array_equal(xb, yb * 10)  # pairs stay together
    again = np.concatenate([yb for _, yb in batches(X, y, batch_size=8, shuffle=True, seed=3)])
    np.testing.assert_array_equal(order, again)
    # one Generator across epochs gives a fresh order each epoch
    gen = np.random.default_rng(0)
    e1 = np.concatenate(list(batches(X, batch_size=8, shuffle=True, seed=gen)))
    e2 = np.concatenate(list(batches(X, batch_size=8, shuffle=True, seed=gen)))
    assert sorted(e1.tolist()) == sorted(e2.tolist()) and not np.array_equal(e1, e2)


def test_batches_empty_and_errors():
    assert list(batches(np.zeros((0, 3)), np.zeros(0), batch_size=4)) == []
    X, y = np.zeros((4, 2)), np.zeros(4)
    # checked at the call, before iterating
    with pytest.raises(ValueError, match="`batch_size` must be >= 1"):
        batches(X, y, batch_size=0)
    with pytest.raises(ValueError, match="`batch_size`"):
        batches(X, y, batch_size=-3)
    for bad in (2.5, True, "4", None):
        with pytest.raises(TypeError, match="`batch_size` must be an int"):
            batches(X, y, batch_size=bad)
    with pytest.raises(ValueError, match="`y` must have one entry per sample"):
        batches(X, y[:3], batch_size=2)
    with pytest.raises(TypeError, match="`seed`"):
        batches(X, y, batch_size=2, shuffle=True, seed="x")
    with pytest.raises(TypeError, match="`shuffle`"):
        batches(X, y, batch_size=2, shuffle="yes")


# --------------------------------------------------------------- random_shift


def shifted(img, dy, dx):
    """Reference: np.roll, then zero what wrapped round."""
    h, w = img.shape[-2:]
    if abs(dy) >= h or abs(dx) >= w:
        return np.zeros_like(img)
    out = np.roll(img, (dy, dx), axis=(-2, -1))
    if dy > 0:
        out[..., :dy, :] = 0
    elif dy < 0:
        out[..., dy:, :] = 0
    if dx > 0:
        out[..., :, :dx] = 0
    elif dx < 0:
        out[..., :, dx:] = 0
    return out


def found_shifts(X, out, max_shift):
    """For every image, the shift whose reference equals the output.

    Exactly one shift must match, except for an all-zero output (the image
    shifted right out of the frame), reported as None.
    """
    span = range(-max_shift, max_shift + 1)
    found = []
    for img, res in zip(X, out):
        hits = [(dy, dx) for dy in span for dx in span if np.array_equal(shifted(img, dy, dx), res)]
        assert hits, "output is no shift of its input"
        if len(hits) > 1:
            assert not res.any(), hits
            found.append(None)
        else:
            found.append(hits[0])
    return found


def test_random_shift_matches_reference(rng):
    X = rng.uniform(0.5, 1.0, size=(400, 3, 7, 6)).astype(np.float32)  # no zeros: shifts differ
    before = X.copy()
    out = random_shift(X, max_shift=2, seed=11)
    assert out.shape == X.shape and out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_array_equal(X, before)
    found = found_shifts(X, out, 2)
    # all 25 shifts occur (each has probability 1/25 per image) and are independent
    assert set(found) == {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}
    dys = np.array([f[0] for f in found])
    assert abs(dys.mean()) < 0.4
    np.testing.assert_array_equal(out, random_shift(X, max_shift=2, seed=11))
    assert not np.array_equal(out, random_shift(X, max_shift=2, seed=12))


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float64, bool])
def test_random_shift_dtypes_and_readonly_input(rng, dtype):
    # no zeros in the input, so every shift leaves a different pattern
    X = rng.integers(1, 120, size=(60, 2, 5, 5)).astype(dtype)
    X.flags.writeable = False
    out = random_shift(X, max_shift=1, seed=rng)
    assert out.dtype == X.dtype and out.flags.writeable
    found_shifts(X, out, 1)


def test_random_shift_larger_than_image():
    X = np.ones((300, 1, 3, 3))
    found = found_shifts(X, random_shift(X, max_shift=4, seed=0), 4)
    # blank unless both |dy| and |dx| are below 3: probability 1 - (5/9)**2 = 0.69
    blank = sum(f is None for f in found)
    assert 160 < blank < 250
    assert all(abs(f[0]) < 3 and abs(f[1]) < 3 for f in found if f is not None)


def test_random_shift_zero_is_identity_copy(rng):
    X = rng.standard_normal((5, 2, 4, 4))
    out = random_shift(X, max_shift=0, seed=0)
    np.testing.assert_array_equal(out, X)
    assert out.dtype == X.dtype and not np.shares_memory(out, X)


def test_random_shift_errors():
    X = np.zeros((2, 1, 4, 4))
    with pytest.raises(ValueError, match="`X` must be 4-dimensional"):
        random_shift(X[0])
    with pytest.raises(ValueError, match="`max_shift` must be >= 0"):
        random_shift(X, max_shift=-1)
    with pytest.raises(TypeError, match="`max_shift` must be an int"):
        random_shift(X, max_shift=1.0)
    with pytest.raises(TypeError, match="`seed`"):
        random_shift(X, seed=object())
    with pytest.raises(TypeError, match="`X`"):
        random_shift(X.astype(complex))
