"""``Parameter``: a trainable array and its gradient, as ``torch.nn.Parameter``."""

import numpy as np


class Parameter:
    """A trainable array with a gradient of the same shape and dtype.

    Layers hold their weights as parameters; ``backward`` adds into
    ``grad`` (gradients accumulate until ``zero_grad``, as in PyTorch) and
    optimizers update ``data`` in place, so every view of it stays valid.

    Parameters
    ----------
    data : numpy.ndarray
        The initial values (float32 or float64); copied into a C-contiguous array.
    name : str, optional
        A short label (``"weight"``, ``"bias"``) used in summaries and saved files.

    Examples
    --------
    >>> import numpy as np
    >>> p = Parameter(np.ones((2, 3), np.float32), name="weight")
    >>> p
    Parameter(name='weight', shape=(2, 3), dtype=float32)
    >>> float(p.grad.sum())
    0.0
    """

    __slots__ = ("data", "grad", "name")

    def __init__(self, data, name=""):
        self.data = np.array(data, order="C", copy=True)
        self.grad = np.zeros_like(self.data)
        self.name = name

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self):
        return self.data.size

    def zero_grad(self):
        """Set the gradient to zero (in place)."""
        self.grad[...] = 0

    def __repr__(self):
        return f"Parameter(name={self.name!r}, shape={self.shape}, dtype={self.dtype})"
