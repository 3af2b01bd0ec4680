"""``Parameter``: a trainable array and its gradient, as ``torch.nn.Parameter``."""

import numpy as np

from . import functional as F


class Parameter:
    """A trainable array with a gradient of the same shape and dtype.

    Layers hold their weights as parameters; ``backward`` adds into
    ``grad`` (gradients accumulate until ``zero_grad``, as in PyTorch) and
    optimizers update ``data`` in place, so every view of it stays valid.
    :meth:`to` moves both arrays to the GPU (numba device arrays) and back.

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
        return tuple(self.data.shape)

    @property
    def dtype(self):
        return np.dtype(self.data.dtype)

    @property
    def size(self):
        return self.data.size

    @property
    def device(self):
        """Where ``data`` and ``grad`` live: 'cpu' or 'cuda'."""
        return F.device_of(self.data)

    def to(self, device):
        """Move ``data`` and ``grad`` to ``device`` ('cpu' or 'cuda'), exactly (copies of
        the same bits); returns the parameter.  Views of the old arrays stay as they were."""
        F.check_device(device)
        self.data = F.to_device(self.data, device)
        self.grad = F.to_device(self.grad, device)
        return self

    def zero_grad(self):
        """Set the gradient to zero (in place)."""
        F.fill(self.grad, 0)

    def __repr__(self):
        dev = "" if self.device == "cpu" else ", device='cuda'"
        return f"Parameter(name={self.name!r}, shape={self.shape}, dtype={self.dtype}{dev})"
