"""filtkit: Numba-JIT image filtering and small convolutional networks.

``filtkit.signal`` holds convolution, correlation and scikit-image style
filters; ``filtkit.io`` reads and writes images.
"""

__version__ = "0.1.0"

from . import signal  # noqa: E402

__all__ = ["signal", "__version__"]
