"""Data sets and batching for the networks in :mod:`filtkit.cnn`.

Images are returned in the layout the layers use, ``(N, C, H, W)`` float32
scaled to [0, 1]; labels are int64 class indices ``(N,)``.

* :func:`load_idx` / :func:`save_idx` read and write the IDX format of
  MNIST, Fashion-MNIST and KMNIST, raw or gzip-compressed;
* :func:`load_mnist` turns a pair of IDX files into ``(X, y)``;
* :func:`load_digits` is the data set that needs no download: the 1797
  8x8 handwritten digits bundled with scikit-learn;
* :func:`train_val_split`, :func:`batches` and :func:`random_shift` split,
  iterate over and augment any of them.

The IDX format: two zero bytes, a type code (``0x08`` uint8, ``0x09`` int8,
``0x0B`` int16, ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64), the number
of dimensions in one byte, one big-endian uint32 size per dimension, then the
values in C order, big-endian.  A file that starts with the gzip magic bytes
``1f 8b`` is decompressed whatever its name.  The declared size is checked
against the data actually present before anything of that size is allocated,
so a forged header cannot make :func:`load_idx` reserve memory.
"""

import gzip
import math
import numbers
import operator
import os
import struct
import sys
import zlib

import numpy as np

from .._files import replace_atomically
from .._validate import check_array, check_real

__all__ = [
    "load_idx",
    "save_idx",
    "load_mnist",
    "load_digits",
    "train_val_split",
    "batches",
    "random_shift",
]

#: IDX type code -> numpy dtype (native byte order; the file is big-endian).
IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(np.int16),
    0x0C: np.dtype(np.int32),
    0x0D: np.dtype(np.float32),
    0x0E: np.dtype(np.float64),
}
_IDX_CODES = {dtype: code for code, dtype in IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"
#: bytes decompressed per read, so memory grows only with the data really there
_CHUNK = 1 << 22
#: at most this many trailing bytes are counted for the error message
_TRAILING_COUNT_LIMIT = 1 << 26


# ---------------------------------------------------------------- validation


def _check_path(path, name="path"):
    try:
        return os.fspath(path)
    except TypeError:
        raise TypeError(f"`{name}` must be a str or path-like, got {path!r}") from None


def _check_int(value, name, *, minimum):
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be an int, got {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"`{name}` must be an int, got {value!r}") from None
    if v < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value!r}")
    return int(v)


def _rng(seed):
    """A numpy Generator from ``None``, a non-negative int or a Generator."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        return np.random.default_rng()
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(
            f"`seed` must be None, a non-negative int or a numpy.random.Generator, "
            f"got {seed!r}"
        )
    if seed < 0:
        raise ValueError(f"`seed` must be a non-negative int, got {seed!r}")
    return np.random.default_rng(int(seed))


def _check_samples(x, name):
    """An array with a leading sample axis; empty arrays are allowed."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"`{name}` must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError(f"`{name}` must have a leading sample axis, got a 0-d array")
    return arr


def _check_pair(X, y):
    X = _check_samples(X, "X")
    if y is None:
        return X, None
    y = _check_samples(y, "y")
    if len(y) != len(X):
        raise ValueError(
            f"`y` must have one entry per sample of `X`, got {len(y)} labels "
            f"for {len(X)} samples"
        )
    return X, y


# ---------------------------------------------------------------------- IDX


def _read_exact(fh, n):
    """Read up to ``n`` bytes (fewer only at the end of the stream).

    The buffer grows with what the stream really yields, chunk by chunk, so a
    forged ``n`` costs no memory.
    """
    buf = bytearray()
    while len(buf) < n:
        chunk = fh.read(min(n - len(buf), _CHUNK))
        if not chunk:
            break
        buf += chunk
    return buf


def _parse_header(fh, path):
    head = _read_exact(fh, 4)
    if len(head) < 4 or head[0] != 0 or head[1] != 0:
        raise ValueError(
            f"`path` is not an IDX file (it must start with two zero bytes, a type "
            f"code and the number of dimensions): {path!r}"
        )
    code, ndim = head[2], head[3]
    if code not in IDX_DTYPES:
        raise ValueError(
            f"`path` is not an IDX file: unknown type code 0x{code:02X} (expected one of "
            f"{', '.join(f'0x{c:02X}' for c in IDX_DTYPES)}): {path!r}"
        )
    if ndim == 0:
        raise ValueError(f"`path` is not an IDX file: it declares 0 dimensions: {path!r}")
    raw = _read_exact(fh, 4 * ndim)
    if len(raw) < 4 * ndim:
        raise ValueError(
            f"`path` is truncated: its IDX header declares {ndim} dimensions, which need "
            f"{4 * ndim} size bytes, but only {len(raw)} follow: {path!r}"
        )
    shape = struct.unpack(f">{ndim}I", raw)
    return IDX_DTYPES[code], shape, 4 + 4 * ndim


def _size_error(path, shape, dtype, expected, actual, *, more_than=False):
    what = "truncated" if actual < expected else "followed by trailing bytes"
    holds = f"more than {actual}" if more_than else str(actual)
    return ValueError(
        f"`path` is {what}: its IDX header declares shape {shape} of {dtype}, which "
        f"needs {expected} data bytes, but the file holds {holds}: {path!r}"
    )


def _to_native(arr):
    """Swap a big-endian buffer's bytes in place to native order."""
    if arr.dtype.itemsize > 1 and sys.byteorder == "little":
        arr.byteswap(inplace=True)
    return arr


def _load_raw(fh, path):
    dtype, shape, header = _parse_header(fh, path)
    expected = math.prod(shape) * dtype.itemsize
    actual = os.fstat(fh.fileno()).st_size - header
    if actual != expected:
        raise _size_error(path, shape, dtype, expected, actual)
    arr = np.empty(shape, dtype=dtype)  # only once the file is known to hold it
    got = fh.readinto(arr.reshape(-1).view(np.uint8)) if expected else 0
    if got != expected:  # the file changed while being read
        raise _size_error(path, shape, dtype, expected, got)
    return _to_native(arr)


def _load_gzip(fh, path):
    with gzip.GzipFile(fileobj=fh, mode="rb") as gz:
        dtype, shape, _ = _parse_header(gz, path)
        expected = math.prod(shape) * dtype.itemsize
        buffer = _read_exact(gz, expected)
        if len(buffer) < expected:
            raise _size_error(path, shape, dtype, expected, len(buffer))
        extra = len(gz.read(1))  # at the end, this also checks the CRC
        if extra:
            while extra <= _TRAILING_COUNT_LIMIT:
                chunk = gz.read(_CHUNK)
                if not chunk:
                    break
                extra += len(chunk)
            more_than = extra > _TRAILING_COUNT_LIMIT
            actual = expected + min(extra, _TRAILING_COUNT_LIMIT)
            raise _size_error(path, shape, dtype, expected, actual, more_than=more_than)
    return _to_native(np.frombuffer(buffer, dtype=dtype).reshape(shape))


def load_idx(path):
    """Read an IDX file (MNIST, Fashion-MNIST, KMNIST), raw or gzip-compressed.

    Parameters
    ----------
    path : str or path-like
        The file.  It is decompressed when it starts with the gzip magic bytes
        ``1f 8b``, whatever its extension.

    Returns
    -------
    ndarray
        The declared shape and dtype (uint8, int8, int16, int32, float32 or
        float64), in native byte order, C-contiguous and writeable.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist or is not a file.
    ValueError
        If the file is not IDX (non-zero leading bytes, unknown type code,
        0 dimensions), if its data is shorter or longer than the header
        declares (the message gives both byte counts), or if the gzip stream
        is corrupt.  The declared size is compared with the data present
        before allocating it.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from filtkit.cnn.data import load_idx, save_idx
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "tiny-idx2-short.gz")
    ...     save_idx(path, np.array([[1, -2, 3], [-4, 5, 300]], dtype=np.int16))
    ...     x = load_idx(path)
    >>> x
    array([[  1,  -2,   3],
           [ -4,   5, 300]], dtype=int16)
    """
    path = _check_path(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"`path` does not exist or is not a file: {path!r}")
    with open(path, "rb") as fh:
        magic = fh.read(2)
        fh.seek(0)
        if magic != _GZIP_MAGIC:
            return _load_raw(fh, path)
        try:
            return _load_gzip(fh, path)
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise ValueError(f"`path` is not a valid gzip file: {path!r} ({exc})") from None


def save_idx(path, array):
    """Write an array as an IDX file, atomically; gzip-compressed for ``.gz``.

    Parameters
    ----------
    path : str or path-like
        Target file.  A name ending in ``.gz`` (any case) is written
        gzip-compressed, anything else raw.  The data goes to a temporary file
        in the same directory that replaces ``path`` only once complete, so a
        failed write leaves nothing behind.
    array : array_like
        Of dtype uint8, int8, int16, int32, float32 or float64 (no implicit
        conversion), with 1 to 255 dimensions, each below 2**32.

    Raises
    ------
    TypeError
        For a dtype IDX cannot store.
    ValueError
        For a 0-d array, more than 255 dimensions or a dimension of 2**32 or more.
    FileNotFoundError
        If the directory of ``path`` does not exist.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from filtkit.cnn.data import load_idx, save_idx
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "labels-idx1-ubyte")
    ...     save_idx(path, np.array([7, 2, 1], dtype=np.uint8))
    ...     with open(path, "rb") as fh:
    ...         raw = fh.read()
    ...     back = load_idx(path)
    >>> raw.hex(" ")
    '00 00 08 01 00 00 00 03 07 02 01'
    >>> back
    array([7, 2, 1], dtype=uint8)
    """
    path = _check_path(path)
    arr = np.asarray(array)
    code = _IDX_CODES.get(arr.dtype.newbyteorder("="))
    if code is None:
        raise TypeError(
            f"`array` must have dtype uint8, int8, int16, int32, float32 or float64 to "
            f"be stored as IDX, got {arr.dtype}"
        )
    if not 1 <= arr.ndim <= 255:
        raise ValueError(f"`array` must have 1 to 255 dimensions, got {arr.ndim}")
    if max(arr.shape) >= 2**32:
        raise ValueError(f"`array` dimensions must be below 2**32, got shape {arr.shape}")
    header = struct.pack(f">BBBB{arr.ndim}I", 0, 0, code, arr.ndim, *arr.shape)
    data = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder(">")).reshape(-1)
    compress = path.lower().endswith(".gz")
    with replace_atomically(path, ".idx") as tmp, open(tmp, "wb") as fh:
        if compress:
            name = os.path.basename(path)[:-3]
            with gzip.GzipFile(filename=name, mode="wb", fileobj=fh, mtime=0) as gz:
                gz.write(header)
                gz.write(data.view(np.uint8))
        else:
            fh.write(header)
            fh.write(data.view(np.uint8))


# ----------------------------------------------------------------- data sets


def load_mnist(images_path, labels_path):
    """Load an MNIST-style pair of IDX files as ``(X, y)``.

    Works for MNIST, Fashion-MNIST and KMNIST (raw or gzip-compressed).

    Parameters
    ----------
    images_path : str or path-like
        IDX file of uint8 images, shape ``(N, H, W)``.
    labels_path : str or path-like
        IDX file of integer labels, shape ``(N,)``.

    Returns
    -------
    X : ndarray of float32, shape (N, 1, H, W)
        The images divided by 255, so in [0, 1].
    y : ndarray of int64, shape (N,)

    Raises
    ------
    FileNotFoundError, ValueError
        As :func:`load_idx`; ValueError also when the images are not 3-D uint8,
        the labels not 1-D integers, or their lengths differ.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from filtkit.cnn.data import load_mnist, save_idx
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     images = os.path.join(tmp, "images-idx3-ubyte.gz")
    ...     labels = os.path.join(tmp, "labels-idx1-ubyte.gz")
    ...     save_idx(images, np.array([[[0, 255], [51, 0]]] * 3, dtype=np.uint8))
    ...     save_idx(labels, np.array([3, 1, 4], dtype=np.uint8))
    ...     X, y = load_mnist(images, labels)
    >>> X.shape, X.dtype, y
    ((3, 1, 2, 2), dtype('float32'), array([3, 1, 4]))
    >>> X[0, 0]
    array([[0. , 1. ],
           [0.2, 0. ]], dtype=float32)
    """
    images = load_idx(_check_path(images_path, "images_path"))
    labels = load_idx(_check_path(labels_path, "labels_path"))
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"`images_path` must hold uint8 images of shape (N, H, W), got {images.dtype} "
            f"of shape {images.shape}"
        )
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(
            f"`labels_path` must hold integer labels of shape (N,), got {labels.dtype} "
            f"of shape {labels.shape}"
        )
    if len(labels) != len(images):
        raise ValueError(
            f"`labels_path` holds {len(labels)} labels but `images_path` "
            f"{len(images)} images"
        )
    n, h, w = images.shape
    X = np.divide(images, np.float32(255), dtype=np.float32).reshape(n, 1, h, w)
    return X, labels.astype(np.int64)


def load_digits():
    """The built-in data set: scikit-learn's 1797 8x8 handwritten digits.

    Real scans (the UCI "Optical Recognition of Handwritten Digits" test
    set, 4x4 blocks of a 32x32 bitmap counted into 0..16), shipped with
    scikit-learn, so no download is needed.

    Returns
    -------
    X : ndarray of float32, shape (1797, 1, 8, 8)
        The counts divided by 16, so in [0, 1].
    y : ndarray of int64, shape (1797,)
        The digit, 0 to 9 (about 180 of each).

    Examples
    --------
    >>> from filtkit.cnn.data import load_digits
    >>> X, y = load_digits()
    >>> X.shape, X.dtype, y.dtype
    ((1797, 1, 8, 8), dtype('float32'), dtype('int64'))
    >>> float(X.min()), float(X.max()), y[:10]
    (0.0, 1.0, array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]))
    """
    from sklearn.datasets import load_digits as _sklearn_digits

    digits = _sklearn_digits()
    images = np.asarray(digits.images)
    X = np.divide(images, 16.0, dtype=np.float32).reshape(len(images), 1, 8, 8)
    return X, np.asarray(digits.target, dtype=np.int64)


# ------------------------------------------------- splitting and augmentation


def train_val_split(X, y, *, val_fraction=0.1, seed=None):
    """Split samples at random into a training and a validation part.

    Parameters
    ----------
    X : array_like, shape (N, ...)
        Samples along the first axis.
    y : array_like, shape (N, ...)
        Labels, one per sample.
    val_fraction : float
        Fraction of the samples for validation, in [0, 1):
        ``floor(val_fraction * N + 0.5)`` samples (0 gives empty validation
        arrays of shape ``(0, ...)``).
    seed : None, int or numpy.random.Generator
        Seeds the random permutation; the same seed gives the same split.

    Returns
    -------
    X_train, y_train, X_val, y_val : ndarray
        New arrays (dtypes kept), each part in the permutation's order.

    Raises
    ------
    ValueError
        For ``val_fraction`` outside [0, 1), lengths that differ, or a split
        that leaves no training sample.

    Examples
    --------
    >>> import numpy as np
    >>> from filtkit.cnn.data import train_val_split
    >>> X, y = np.arange(20).reshape(10, 2), np.arange(10)
    >>> X_train, y_train, X_val, y_val = train_val_split(X, y, val_fraction=0.2, seed=0)
    >>> X_train.shape, X_val.shape
    ((8, 2), (2, 2))
    >>> sorted(y_train.tolist() + y_val.tolist()) == list(range(10))
    True
    """
    X, y = _check_pair(X, y)
    val_fraction = check_real(val_fraction, "val_fraction")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"`val_fraction` must be in [0, 1), got {val_fraction!r}")
    rng = _rng(seed)
    n = len(X)
    n_val = math.floor(val_fraction * n + 0.5)
    if n_val >= n:
        raise ValueError(
            f"`val_fraction` {val_fraction!r} of {n} samples leaves no training sample"
        )
    perm = rng.permutation(n)
    train, val = perm[n_val:], perm[:n_val]
    return X[train], y[train], X[val], y[val]


def batches(X, y=None, *, batch_size, shuffle=False, seed=None):
    """Iterate over mini-batches of samples (and labels).

    The arguments are checked when ``batches`` is called, before the first
    batch is asked for.

    Parameters
    ----------
    X : array_like, shape (N, ...)
        Samples along the first axis.
    y : array_like, shape (N, ...), optional
        Labels; when given, each batch is a pair ``(xb, yb)``.
    batch_size : int
        Samples per batch (>= 1); the last batch holds the remainder.
    shuffle : bool
        Visit the samples in a random order (one permutation per call)
        instead of in order.
    seed : None, int or numpy.random.Generator
        Source of the permutation when ``shuffle`` is true.  Pass one
        Generator to successive epochs to get a new order each epoch.

    Yields
    ------
    xb or (xb, yb) : ndarray
        Views of ``X`` and ``y`` in order, copies when shuffled.

    Examples
    --------
    >>> import numpy as np
    >>> from filtkit.cnn.data import batches
    >>> X, y = np.arange(5) * 10, np.arange(5)
    >>> [yb.tolist() for xb, yb in batches(X, y, batch_size=2)]
    [[0, 1], [2, 3], [4]]
    >>> sorted(int(v) for xb in batches(X, batch_size=2, shuffle=True, seed=0) for v in xb)
    [0, 10, 20, 30, 40]
    """
    X, y = _check_pair(X, y)
    batch_size = _check_int(batch_size, "batch_size", minimum=1)
    if not isinstance(shuffle, (bool, np.bool_)):
        raise TypeError(f"`shuffle` must be a bool, got {shuffle!r}")
    rng = _rng(seed)
    return _batches(X, y, batch_size, rng if shuffle else None)


def _batches(X, y, batch_size, rng):
    n = len(X)
    order = None if rng is None else rng.permutation(n)
    for start in range(0, n, batch_size):
        if order is None:
            index = slice(start, start + batch_size)
        else:
            index = order[start : start + batch_size]
        if y is None:
            yield X[index]
        else:
            yield X[index], y[index]


def _span(shift, size):
    """(destination, source) slices along one axis for a shift by ``shift``."""
    if shift >= 0:
        return slice(shift, size), slice(0, size - shift)
    return slice(0, size + shift), slice(-shift, size)


def random_shift(X, *, max_shift=2, seed=None):
    """Shift each image by its own random whole-pixel offset, filling with zeros.

    Every image of the batch gets an independent ``(dy, dx)`` drawn
    uniformly from the integers in ``[-max_shift, max_shift]``; all its
    channels move together, content moves towards higher indices for
    positive shifts (as ``np.roll``), and what moves out of the image is
    dropped instead of wrapping round.

    Parameters
    ----------
    X : array_like, shape (N, C, H, W)
        A batch of images, any real dtype; not modified.
    max_shift : int
        Largest shift in pixels along each axis (>= 0; 0 returns a copy).
    seed : None, int or numpy.random.Generator
        Source of the shifts.

    Returns
    -------
    ndarray
        A new C-contiguous array of the same shape and dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from filtkit.cnn.data import random_shift
    >>> X = np.zeros((4, 1, 3, 3), dtype=np.float32)
    >>> X[:, 0, 1, 1] = 1                      # one bright pixel in the centre
    >>> out = random_shift(X, max_shift=1, seed=0)
    >>> out.shape, out.dtype
    ((4, 1, 3, 3), dtype('float32'))
    >>> out.sum(axis=(1, 2, 3))                # each keeps its pixel, moved by <= 1
    array([1., 1., 1., 1.], dtype=float32)
    >>> bool((random_shift(X, max_shift=0) == X).all())
    True
    """
    X = check_array(X, "X", ndims=(4,))
    max_shift = _check_int(max_shift, "max_shift", minimum=0)
    rng = _rng(seed)
    n, _, h, w = X.shape
    out = np.zeros(X.shape, dtype=X.dtype)
    if max_shift == 0:
        out[...] = X
        return out
    width = 2 * max_shift + 1
    shifts = rng.integers(-max_shift, max_shift + 1, size=(2, n))
    code = (shifts[0] + max_shift) * width + (shifts[1] + max_shift)
    order = np.argsort(code, kind="stable")
    codes, starts = np.unique(code[order], return_index=True)
    ends = np.append(starts[1:], n)
    for c, start, end in zip(codes.tolist(), starts.tolist(), ends.tolist()):
        dy, dx = c // width - max_shift, c % width - max_shift
        if abs(dy) >= h or abs(dx) >= w:
            continue  # shifted right out of the image: all zeros
        idx = order[start:end]
        (ry, sy), (rx, sx) = _span(dy, h), _span(dx, w)
        out[idx, :, ry, rx] = X[idx, :, sy, sx]
    return out
