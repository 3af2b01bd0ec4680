"""Loss functions with PyTorch's semantics: ``CrossEntropyLoss`` and ``MSELoss``.

A loss is called on a batch (``loss(prediction, target)``, or
``loss.forward(...)``), returns the mean loss as a Python float and keeps
what its ``backward`` needs; ``backward()`` then returns the gradient of
that mean with respect to the prediction, in the prediction's dtype.
Everything is computed in the dtype of the prediction: float32 stays
float32, float64 stays float64.  ``CrossEntropyLoss`` also takes GPU logits
(a model on 'cuda'): the loss and its gradient are computed there, only the
mean comes back, and ``backward()`` returns a GPU array.
"""

import numpy as np

from .._validate import as_float, check_array
from ..backends import as_device_array, is_device_array
from . import functional as F

__all__ = ["Loss", "CrossEntropyLoss", "MSELoss"]


def _check_finite(x, name):
    if not np.all(np.isfinite(x)):
        bad = int(x.size - np.count_nonzero(np.isfinite(x)))
        raise ValueError(
            f"`{name}` must be finite, got {bad} NaN or infinite value(s) of {x.size}"
        )


class Loss:
    """Base class of the losses: ``forward`` computes, ``backward`` differentiates.

    Subclasses implement ``forward(prediction, target) -> float`` and
    ``_backward() -> ndarray``; calling the loss object calls ``forward``.

    Examples
    --------
    >>> import numpy as np
    >>> loss = MSELoss()
    >>> loss.backward()
    Traceback (most recent call last):
        ...
    RuntimeError: MSELoss.backward() called before computing the loss on a batch
    >>> loss(np.zeros(2), np.ones(2)), loss.backward()
    (1.0, array([-1., -1.]))
    """

    #: short label used when a model and its training setup are saved
    name = ""

    def __init__(self):
        self._cache = None

    def __call__(self, prediction, target):
        return self.forward(prediction, target)

    def forward(self, prediction, target):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self):
        """Gradient of the last computed loss with respect to the prediction.

        Returns
        -------
        ndarray
            Same shape and dtype as the (float) prediction of the last call.

        Raises
        ------
        RuntimeError
            If the loss has not been computed yet.
        """
        if self._cache is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward() called before computing the loss on a batch"
            )
        return self._backward()

    def _backward(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}()"


class CrossEntropyLoss(Loss):
    """Softmax cross-entropy averaged over the batch, as ``torch.nn.CrossEntropyLoss()``.

    For logits ``z`` of shape ``(N, K)`` and integer class labels ``y`` the
    loss is ``-mean_n log_softmax(z)[n, y[n]]``, computed with a numerically
    stable log-softmax (the row maximum is subtracted first). ``backward()``
    returns ``(softmax(z) - onehot(y)) / N``.

    Call it as ``loss(logits, target)``:

    logits : array_like, shape (N, K)
        Unnormalised class scores, finite, ``N >= 1``, ``K >= 1``. float32
        and float64 are kept; float16 becomes float32, integers float64.
    target : array_like of int, shape (N,)
        Class indices in ``[0, K)``.

    The call returns the mean loss as a Python float. Arguments are checked
    before anything is computed: a wrong shape or out-of-range label raises
    ValueError (non-integer labels TypeError) and leaves the stored state
    of a previous call unchanged.

    Examples
    --------
    >>> import numpy as np
    >>> loss = CrossEntropyLoss()
    >>> logits = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]], np.float32)
    >>> round(loss(logits, np.array([0, 2])), 6)
    0.669079
    >>> loss.backward().round(4)
    array([[-0.1065,  0.0533,  0.0533],
           [ 0.1667,  0.1667, -0.3333]], dtype=float32)
    >>> loss
    CrossEntropyLoss()

    GPU logits (float32/float64, C-contiguous) are accepted with host
    labels; a non-finite logit raises the same ValueError, found from the
    mean that comes back.
    """

    name = "cross_entropy"

    def forward(self, logits, target):
        """Mean negative log-likelihood of ``target`` under ``softmax(logits)``.

        Parameters
        ----------
        logits : array_like, shape (N, K)
        target : array_like of int, shape (N,)

        Returns
        -------
        float
        """
        logits, target = self._check(logits, target)
        loss, grad = F.cross_entropy(logits, target)
        if np.isnan(loss):  # only a non-finite logit gives NaN (GPU logits: checked here)
            raise ValueError("`logits` must be finite, got NaN or infinite values")
        self._cache = grad
        return loss

    def _queued(self, logits, target):
        """The summed loss of the batch as a one-element array on the logits' device,
        its gradient kept for :meth:`backward`: checked as :meth:`forward` checks, but
        nothing waits for the GPU, so a non-finite logit shows only in that sum (fit on
        the GPU reads it, with its other checks, once the whole step is queued)."""
        logits, target = self._check(logits, target)
        total, self._cache = F.cross_entropy_total(logits, target)
        return total

    @staticmethod
    def _check(logits, target):
        if is_device_array(logits):
            logits = as_device_array(logits)
            if logits.ndim != 2 or logits.size == 0:
                raise ValueError(f"`logits` must be a non-empty 2-D array, got shape "
                                 f"{tuple(logits.shape)}")
            if np.dtype(logits.dtype) not in (np.float32, np.float64):
                raise TypeError(f"`logits` on the GPU must be float32 or float64, got "
                                f"{logits.dtype}")
            if not logits.is_c_contiguous():
                raise ValueError("`logits` on the GPU must be C-contiguous")
        else:
            logits = as_float(check_array(logits, "logits", ndims=(2,)))
            _check_finite(logits, "logits")
        n, k = logits.shape
        if is_device_array(target):
            raise TypeError("`target` must be a host (numpy) array of class indices; "
                            "it is uploaded with the logits")
        if isinstance(target, np.ndarray):
            tgt = target
        else:
            tgt = np.asarray(target)
        if tgt.dtype.kind not in "iu":
            raise TypeError(
                f"`target` must hold integer class indices, got dtype {tgt.dtype}"
            )
        if tgt.shape != (n,):
            raise ValueError(
                f"`target` must have shape ({n},) to match `logits` of shape {logits.shape}, "
                f"got shape {tgt.shape}"
            )
        lo, hi = int(tgt.min()), int(tgt.max())
        if lo < 0 or hi >= k:
            raise ValueError(
                f"`target` must hold class indices in [0, {k}) for {k} classes, "
                f"got values from {lo} to {hi}"
            )
        return logits, tgt.astype(np.intp, copy=True)

    def _backward(self):
        return F.copy(self._cache)  # a copy: the caller may overwrite it


class MSELoss(Loss):
    """Mean squared error over all elements, as ``torch.nn.MSELoss()``.

    ``loss(pred, target)`` returns ``mean((pred - target) ** 2)`` as a Python
    float; ``backward()`` returns ``2 * (pred - target) / pred.size``.

    pred : array_like
        Any shape with at least one element, finite. float32 and float64
        are kept; float16 becomes float32, integers float64.
    target : array_like
        Same shape as ``pred``, finite; converted to ``pred``'s float dtype.

    Examples
    --------
    >>> import numpy as np
    >>> loss = MSELoss()
    >>> loss(np.array([1.0, 2.0, 4.0]), np.array([1.0, 0.0, 3.0]))
    1.6666666666666667
    >>> loss.backward()
    array([0.        , 1.33333333, 0.66666667])
    >>> loss
    MSELoss()
    """

    name = "mse"

    def forward(self, pred, target):
        """Mean of ``(pred - target) ** 2`` over all elements.

        Parameters
        ----------
        pred : array_like
        target : array_like, same shape as ``pred``

        Returns
        -------
        float
        """
        if is_device_array(pred):
            raise TypeError("`pred` must be a numpy array: MSELoss runs on the host only "
                            "(download GPU arrays with .copy_to_host())")
        pred = as_float(check_array(pred, "pred"))
        _check_finite(pred, "pred")
        tgt = check_array(target, "target")
        if tgt.shape != pred.shape:
            raise ValueError(
                f"`target` must have the shape of `pred` {pred.shape}, got shape {tgt.shape}"
            )
        tgt = as_float(tgt, dtype=pred.dtype)
        _check_finite(tgt, "target")
        diff = pred - tgt
        loss = np.square(diff).mean()
        self._cache = diff
        return float(loss)

    def _backward(self):
        diff = self._cache
        return diff * diff.dtype.type(2.0 / diff.size)
