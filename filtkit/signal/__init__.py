"""filtkit.signal: convolution, correlation, padding, named kernels, image
filters that reproduce scikit-image, and pooling.

Examples
--------
>>> import numpy as np
>>> from filtkit import signal
>>> signal.convolve(np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0]), mode="full")
array([1., 3., 5., 3.])
"""

from . import kernels
from ._correlate import convolve, correlate
from .filters import (
    difference_of_gaussians,
    gaussian,
    laplace,
    prewitt,
    prewitt_h,
    prewitt_v,
    roberts,
    roberts_neg_diag,
    roberts_pos_diag,
    scharr,
    scharr_h,
    scharr_v,
    sobel,
    sobel_h,
    sobel_v,
    uniform,
    unsharp_mask,
)
from .padding import output_size, pad, same_padding
from .pooling import avg_pool, max_pool

__all__ = [
    "kernels",
    "correlate",
    "convolve",
    "pad",
    "output_size",
    "same_padding",
    "gaussian",
    "uniform",
    "sobel",
    "sobel_h",
    "sobel_v",
    "prewitt",
    "prewitt_h",
    "prewitt_v",
    "scharr",
    "scharr_h",
    "scharr_v",
    "roberts",
    "roberts_pos_diag",
    "roberts_neg_diag",
    "laplace",
    "unsharp_mask",
    "difference_of_gaussians",
    "max_pool",
    "avg_pool",
]
