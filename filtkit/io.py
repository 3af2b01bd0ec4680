"""Image input and output through imageio, with explicit dtype conversion.

Reading (:func:`imread`) follows scikit-image's ``img_as_float``: uint8 is
divided by 255, uint16 by 65535, bool becomes 0.0/1.0, and float images are
kept (float16 becomes float32).  Writing (:func:`imwrite`) converts back
explicitly and never wraps around:

* float images are clipped to [0, 1], multiplied by 255, rounded to the
  nearest integer (halves to even) and stored as uint8; NaN is refused;
* bool images are stored as 0/255 uint8;
* uint8 and uint16 images are stored unchanged (16-bit colour only as TIFF:
  imageio's PNG backend, Pillow, handles 16 bits for grey images only);
* other integer images must already lie in [0, 255] and are stored as uint8.

Writes go to a temporary file in the target directory that is renamed over
the target only once complete, so a failed write leaves no partial file.
"""

import os

import numpy as np

from ._files import replace_atomically
from ._validate import as_float, check_array

#: File extensions :func:`imwrite` accepts.
WRITE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


def _refuse_16bit_colour_png(path):
    """Pillow, imageio's PNG reader, silently truncates 16-bit colour PNGs."""
    with open(path, "rb") as fh:
        head = fh.read(26)
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        depth, colour_type = head[24], head[25]
        if depth == 16 and colour_type in (2, 4, 6):
            raise ValueError(
                f"`path` is a 16-bit colour PNG, which cannot be read without losing "
                f"precision here; convert it to 16-bit TIFF: {path!r}"
            )


def imread(path):
    """Read an image as float, converted as scikit-image's ``img_as_float``.

    Parameters
    ----------
    path : str or path-like
        Any format imageio reads (PNG, JPEG, TIFF, BMP, ...).

    Returns
    -------
    ndarray
        ``(H, W)`` or ``(H, W, C)`` float64 in [0, 1] for integer images
        (float32 for float32/float16 files).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file cannot be decoded as an image, or is a 16-bit colour
        PNG (whose low byte imageio's Pillow reader would drop).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from filtkit.io import imread, imwrite
    >>> path = os.path.join(tempfile.mkdtemp(), "tiny.png")
    >>> imwrite(path, np.array([[0.0, 0.5], [1.0, 0.25]]))
    >>> imread(path)
    array([[0.        , 0.50196078],
           [1.        , 0.25098039]])
    """
    import imageio.v3 as iio

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"`path` does not exist or is not a file: {path!r}")
    _refuse_16bit_colour_png(path)
    try:
        image = iio.imread(path)
    except Exception as exc:  # imageio raises many types for undecodable files
        raise ValueError(f"`path` could not be read as an image: {path!r} ({exc})") from None
    image = np.asarray(image)
    if image.dtype.kind not in "biuf":
        raise ValueError(f"`path` holds an unsupported pixel type {image.dtype}: {path!r}")
    return as_float(check_array(image, "image"), scale=True)


def to_uint8(image):
    """Convert an image to uint8 by the documented rule (see module docstring).

    Parameters
    ----------
    image : array_like
        Float (expected in [0, 1]), bool or integer image.

    Returns
    -------
    ndarray of uint8

    Raises
    ------
    ValueError
        For NaN, or integers outside [0, 255]: nothing is ever wrapped.

    Examples
    --------
    >>> to_uint8(np.array([-0.2, 0.0, 0.5, 1.0, 7.0]))
    array([  0,   0, 128, 255, 255], dtype=uint8)
    """
    image = check_array(image, "image")
    kind = image.dtype.kind
    if kind == "b":
        return image.astype(np.uint8) * np.uint8(255)
    if kind == "f":
        if np.isnan(image).any():
            raise ValueError("`image` contains NaN, which has no 8-bit value")
        scaled = np.clip(image.astype(np.float64, copy=False), 0.0, 1.0) * 255.0
        return np.rint(scaled).astype(np.uint8)
    if image.dtype == np.uint8:
        return image
    if image.min() < 0 or image.max() > 255:
        raise ValueError(
            f"`image` of dtype {image.dtype} must lie in [0, 255] to be stored as uint8, "
            f"got [{image.min()}, {image.max()}]"
        )
    return image.astype(np.uint8)


def imwrite(path, image):
    """Write an image atomically, converting it as the module docstring says.

    Parameters
    ----------
    path : str or path-like
        Target file; the extension chooses the format.
    image : array_like
        ``(H, W)`` or ``(H, W, C)`` with 1 (grey), 2 (grey + alpha), 3 (RGB)
        or 4 (RGBA) channels.

    Raises
    ------
    ValueError
        For a bad shape, NaN, out-of-range integers or an unknown extension;
        nothing is written then.
    """
    import imageio.v3 as iio

    image = check_array(image, "image", ndims=(2, 3))
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 3 and image.shape[2] not in (2, 3, 4):
        raise ValueError(
            f"`image` must be (H, W) or (H, W, C) with C in 1-4, got shape {image.shape}"
        )
    path = os.fspath(path)
    if image.dtype == np.uint16 and image.ndim == 3 and path.lower().endswith(".png"):
        raise ValueError(
            "`image` is 16-bit colour, which the PNG writer cannot store; use .tif or "
            "convert to float"
        )
    data = image if image.dtype == np.uint16 else to_uint8(image)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"`path` directory does not exist: {directory!r}")
    suffix = os.path.splitext(path)[1]
    if suffix.lower() not in WRITE_EXTENSIONS:
        raise ValueError(
            f"`path` must end in one of {', '.join(WRITE_EXTENSIONS)}, got {path!r}"
        )
    with replace_atomically(path, suffix) as tmp:
        try:
            iio.imwrite(tmp, data)
        except Exception as exc:
            raise ValueError(f"`path` could not be written as an image: {path!r} ({exc})") from None
