"""Named convolution kernels as float64 arrays.

Edge kernels are oriented for :func:`filtkit.signal.correlate`: correlating
with ``sobel(axis)`` gives a positive response where the image brightens
along ``axis``.  They are the textbook integer kernels; scikit-image's edge
filters divide them by 4 (Sobel), 3 (Prewitt) and 16 (Scharr).

Examples
--------
>>> from filtkit.signal import kernels
>>> kernels.sobel(1)
array([[-1.,  0.,  1.],
       [-2.,  0.,  2.],
       [-1.,  0.,  1.]])
>>> round(float(kernels.gaussian(1.0).sum()), 12)
1.0
"""

import numpy as np

from .._validate import check_choice, check_int_tuple, check_real


def _axis(axis):
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)) \
            or axis not in (0, 1):
        raise ValueError(f"`axis` must be one of {{0, 1}}, got {axis!r}")
    return int(axis)


def _derivative(smooth, axis):
    edge = np.array([-1.0, 0.0, 1.0])
    k = np.outer(edge, smooth)
    return k if _axis(axis) == 0 else np.ascontiguousarray(k.T)


def box(size=3):
    """Box (mean) kernel, summing to 1.

    Parameters
    ----------
    size : int or (int, int)
        Rows and columns (>= 1).

    Returns
    -------
    ndarray of float64

    Examples
    --------
    >>> box(2)
    array([[0.25, 0.25],
           [0.25, 0.25]])
    """
    shape = check_int_tuple(size, "size", 2)
    return np.full(shape, 1.0 / (shape[0] * shape[1]))


#: Largest kernel radius the Gaussian-based kernels build (2 million taps).
MAX_RADIUS = 10**6


def _radius(sigma, truncate):
    """Check ``sigma``/``truncate``; the radius ``int(truncate * sigma + 0.5)``."""
    sigma = check_real(sigma, "sigma", minimum=0.0, strict=True)
    truncate = check_real(truncate, "truncate", minimum=0.0)
    radius = int(truncate * sigma + 0.5)
    if radius > MAX_RADIUS:
        raise ValueError(
            f"`sigma` * `truncate` gives a kernel radius of {radius}, above {MAX_RADIUS}"
        )
    return sigma, radius


def gaussian1d(sigma, *, truncate=4.0):
    """1-D Gaussian weights as scipy.ndimage builds them, summing to 1.

    Parameters
    ----------
    sigma : float
        Standard deviation (> 0).
    truncate : float
        Radius in standard deviations: ``int(truncate * sigma + 0.5)`` taps
        on each side (at most ``MAX_RADIUS``).

    Returns
    -------
    ndarray of float64, length ``2 * radius + 1``

    Examples
    --------
    >>> gaussian1d(1.0, truncate=1.0).round(4)
    array([0.2741, 0.4519, 0.2741])
    """
    sigma, radius = _radius(sigma, truncate)
    x = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / (sigma * sigma) * x**2)
    return phi / phi.sum()


def gaussian(sigma, *, truncate=4.0):
    """2-D Gaussian kernel, the outer product of two :func:`gaussian1d`.

    Parameters
    ----------
    sigma, truncate : float
        As :func:`gaussian1d`.

    Returns
    -------
    ndarray of float64, square

    Examples
    --------
    >>> gaussian(1.0).shape
    (9, 9)
    """
    g = gaussian1d(sigma, truncate=truncate)
    return np.outer(g, g)


_DERIVATIVE_DOC = """{name} derivative kernel (3x3) along ``axis``.

    ``[-1, 0, 1]`` along ``axis``, smoothed with ``{smooth}`` across it; for
    correlation: positive where the image brightens along ``axis``.

    Parameters
    ----------
    axis : {{0, 1}}
        0 differentiates down the rows, 1 along the columns.

    Returns
    -------
    ndarray of float64, 3x3

    Examples
    --------
    >>> {func}(0)[:, 1]
    array([-{mid}.,  0.,  {mid}.])
"""


def sobel(axis=0):
    return _derivative(np.array([1.0, 2.0, 1.0]), axis)


def prewitt(axis=0):
    return _derivative(np.array([1.0, 1.0, 1.0]), axis)


def scharr(axis=0):
    return _derivative(np.array([3.0, 10.0, 3.0]), axis)


for _f, _name, _smooth, _mid in [(sobel, "Sobel", "[1, 2, 1]", 2),
                                 (prewitt, "Prewitt", "[1, 1, 1]", 1),
                                 (scharr, "Scharr", "[3, 10, 3]", 10)]:
    _f.__doc__ = _DERIVATIVE_DOC.format(name=_name, smooth=_smooth, func=_f.__name__, mid=_mid)


def roberts(diagonal="positive"):
    """Roberts cross, the 2x2 diagonal difference scikit-image convolves with.

    Parameters
    ----------
    diagonal : {'positive', 'negative'}
        ``'positive'`` is ``[[1, 0], [0, -1]]``, ``'negative'``
        ``[[0, 1], [-1, 0]]``.

    Returns
    -------
    ndarray of float64, 2x2

    Examples
    --------
    >>> roberts("negative")
    array([[ 0.,  1.],
           [-1.,  0.]])
    """
    check_choice(diagonal, "diagonal", ("positive", "negative"))
    if diagonal == "positive":
        return np.array([[1.0, 0.0], [0.0, -1.0]])
    return np.array([[0.0, 1.0], [-1.0, 0.0]])


def laplacian(neighbours=4):
    """Discrete Laplacian with 4 or 8 neighbours (centre negative).

    scikit-image's ``laplace`` filter uses the negative of ``laplacian(4)``.

    Parameters
    ----------
    neighbours : {4, 8}
        Face neighbours only, or faces and corners.

    Returns
    -------
    ndarray of float64, 3x3

    Examples
    --------
    >>> laplacian(4)
    array([[ 0.,  1.,  0.],
           [ 1., -4.,  1.],
           [ 0.,  1.,  0.]])
    """
    if isinstance(neighbours, bool) or neighbours not in (4, 8):
        raise ValueError(f"`neighbours` must be one of {{4, 8}}, got {neighbours!r}")
    if neighbours == 4:
        return np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
    k = np.ones((3, 3))
    k[1, 1] = -8.0
    return k


def log(sigma, *, truncate=4.0):
    """Laplacian of Gaussian, shifted to sum to exactly 0.

    ``LoG(r) = -(1 - r^2 / (2 sigma^2)) exp(-r^2 / (2 sigma^2)) / (pi sigma^4)``
    sampled on a ``2 * int(truncate * sigma + 0.5) + 1`` square grid.

    Parameters
    ----------
    sigma, truncate : float
        As :func:`gaussian1d`.

    Returns
    -------
    ndarray of float64, square, summing to 0

    Examples
    --------
    >>> k = log(1.0)
    >>> k.shape, abs(float(k.sum())) < 1e-15
    ((9, 9), True)
    """
    sigma, radius = _radius(sigma, truncate)
    y, x = np.mgrid[-radius : radius + 1, -radius : radius + 1].astype(float)
    q = (x * x + y * y) / (2.0 * sigma * sigma)
    k = -(1.0 - q) * np.exp(-q) / (np.pi * sigma**4)
    return k - k.mean()


def sharpen():
    """Sharpening kernel: the identity minus the 4-neighbour Laplacian.

    Returns
    -------
    ndarray of float64
        ``[[0, -1, 0], [-1, 5, -1], [0, -1, 0]]``, summing to 1.

    Examples
    --------
    >>> float(sharpen().sum())
    1.0
    """
    return np.array([[0.0, -1.0, 0.0], [-1.0, 5.0, -1.0], [0.0, -1.0, 0.0]])


def emboss():
    """Emboss kernel: the identity plus a diagonal relief.

    Returns
    -------
    ndarray of float64
        ``[[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]``, summing to 1.

    Examples
    --------
    >>> emboss()[0, 0], emboss()[2, 2]
    (np.float64(-2.0), np.float64(2.0))
    """
    return np.array([[-2.0, -1.0, 0.0], [-1.0, 1.0, 1.0], [0.0, 1.0, 2.0]])


#: Named kernels with the arguments ``filtkit kernels`` and the CLI use.
NAMED = {
    "box": (box, {"size": 3}),
    "gaussian": (gaussian, {"sigma": 1.0}),
    "sobel": (sobel, {"axis": 0}),
    "prewitt": (prewitt, {"axis": 0}),
    "scharr": (scharr, {"axis": 0}),
    "roberts": (roberts, {"diagonal": "positive"}),
    "laplacian": (laplacian, {"neighbours": 4}),
    "log": (log, {"sigma": 1.0}),
    "sharpen": (sharpen, {}),
    "emboss": (emboss, {}),
}

__all__ = [
    "box",
    "gaussian",
    "gaussian1d",
    "sobel",
    "prewitt",
    "scharr",
    "roberts",
    "laplacian",
    "log",
    "sharpen",
    "emboss",
    "NAMED",
]
