"""``Sequential`` networks: training, evaluation, saving and loading.

A model is a list of layers run in order; ``backward`` runs them in reverse.
``fit`` trains with mini-batches and a tqdm progress bar, ``evaluate``,
``predict`` and ``predict_proba`` run in evaluation mode, ``save`` writes
the architecture, the weights and the optimizer state to one ``.npz``
file atomically and :func:`load` rebuilds the model from it.

``model.to("cuda")`` moves the parameters and the optimizer state to the
GPU; training and inference then upload each batch and keep activations and
gradients on the device, and only the loss, a few flags and the predictions
come back.  The numerics are the CPU's (the same backend functions' CUDA
twins), equal within float rounding.
"""

import contextlib
import functools
import json
import os
import zipfile

import numpy as np

from .._files import replace_atomically
from .._validate import check_array, check_int_tuple
from ..backends import is_device_array, single_threaded_blas
from . import functional as F
from . import losses as _losses
from . import optim as _optim
from .layers import (
    LAYERS,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    Layer,
    MaxPool2D,
    ReLU,
    Sigmoid,
    Tanh,
    _MaskPrefetch,
)

FORMAT = "filtkit.cnn.Sequential/1"


class DivergenceError(FloatingPointError):
    """Training stopped because the loss or a gradient became NaN or infinite.

    The model keeps the weights (and optimizer state) of the last step whose
    loss was finite; ``history`` holds the epochs completed before it.
    """

    def __init__(self, message, history=None):
        super().__init__(message)
        self.history = history


def _sample_shape(input_shape):
    """One sample's shape as a tuple of positive ints, e.g. (1, 28, 28)."""
    if isinstance(input_shape, (str, bytes)) or not hasattr(input_shape, "__len__"):
        raise TypeError(f"`input_shape` must be a sequence of ints such as (1, 28, 28), "
                        f"got {input_shape!r}")
    return tuple(check_int_tuple(input_shape, "input_shape", len(input_shape)))


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class Sequential(Layer):
    """Layers applied in order, with PyTorch-style training utilities.

    Parameters
    ----------
    layers : sequence of Layer
    input_shape : tuple of int, optional
        One sample's shape, e.g. ``(1, 28, 28)``; checked against the layers
        and saved with the model (``fit`` records it when not given).

    Attributes
    ----------
    device : {'cpu', 'cuda'}
        Where the parameters, the optimizer state and the activations live;
        changed by :meth:`to`.

    Examples
    --------
    >>> import numpy as np
    >>> from filtkit.cnn import Conv2D, Dense, Flatten, MaxPool2D, ReLU, Sequential
    >>> model = Sequential([Conv2D(1, 4, 3, padding=1, rng=0), ReLU(), MaxPool2D(2),
    ...                     Flatten(), Dense(4 * 4 * 4, 10, rng=1)])
    >>> model.forward(np.zeros((2, 1, 8, 8), np.float32)).shape
    (2, 10)
    >>> sum(p.size for p in model.parameters())
    690
    """

    def __init__(self, layers, *, input_shape=None):
        layers = list(layers)
        if not layers:
            raise ValueError("`layers` must hold at least one layer, got an empty sequence")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer) or isinstance(layer, Sequential):
                raise TypeError(f"`layers[{i}]` must be a filtkit.cnn layer, got {layer!r}")
        self.layers = layers
        self.optimizer = None
        #: one sample's shape, e.g. (1, 28, 28): given, or set by the first ``fit``
        self.input_shape = None
        if input_shape is not None:
            self.input_shape = tuple(_sample_shape(input_shape))
            self.output_shape(self.input_shape)
        dtypes = {p.dtype for p in self.parameters()}
        if len(dtypes) > 1:
            raise ValueError(f"`layers` must share one dtype, got {sorted(map(str, dtypes))}")
        self.dtype = dtypes.pop() if dtypes else np.dtype(np.float32)
        devices = {p.device for p in self.parameters()}
        if len(devices) > 1:
            raise ValueError("`layers` must have their parameters on one device, got "
                             f"{sorted(devices)} (move them with .to())")
        self.device = devices.pop() if devices else "cpu"

    def to(self, device):
        """Move the parameters (values and gradients) and the optimizer state to
        ``device``; returns the model.

        Parameters
        ----------
        device : {'cpu', 'cuda'}
            'cuda': the GPU (numba-cuda, or Numba's simulator). Moving copies the
            arrays exactly, so ``.to("cuda").to("cpu")`` gives back the same bits.
            Moved to the GPU, the parameters' values are views of one flat device
            buffer and their gradients of another, so that zero_grad and the
            optimizer's update are one kernel launch each.

        Raises
        ------
        ValueError
            ``device`` is neither 'cpu' nor 'cuda'.
        RuntimeError
            'cuda' without a GPU (or the simulator) or numba-cuda; nothing is moved.

        Examples
        --------
        >>> model = lenet5(input_size=8, seed=0)
        >>> model.to("gpu")
        Traceback (most recent call last):
            ...
        ValueError: `device` must be one of {'cpu', 'cuda'}, got 'gpu'
        >>> model.to("cpu").device
        'cpu'
        """
        F.check_device(device)
        params = list({id(p): p for p in self.parameters()}.values())
        if device == "cuda" and params and all(p.device == "cpu" for p in params):
            # the values in one flat buffer and the gradients in another, uploaded in one
            # transfer each: zero_grad, the optimizer's update and the finiteness checks
            # then take one launch for all parameters (see functional.pack)
            values = F.pack([p.data for p in params], device)
            grads = F.pack([p.grad for p in params], device)
            for p, v, g in zip(params, values, grads):
                p.data, p.grad = v, g
        for layer in self.layers:
            layer.to(device)
        if self.optimizer is not None:
            self.optimizer._to(device)
        self.device = device
        return self

    # -- the Layer interface ------------------------------------------------
    def forward(self, x):
        """Run every layer in order; ``x`` is converted to the model's dtype.

        On 'cuda' a host ``x`` is uploaded first, and the output is a GPU array.
        """
        if is_device_array(x):
            return self._run(x)  # the first layer checks it
        x = self._prepare_x(x, "x")
        return self._run(F.to_device(x, self.device))

    def _plan(self):
        """The layers in the order they run: a ReLU followed by a MaxPool2D runs after
        it instead, on the pooled (smaller) array.

        ``max(relu(x)) == relu(max(x))``, and the gradients agree too: where a
        window's maximum is positive both orders send the delta to the same first
        maximum, and where it is not the ReLU's gradient zeroes it in both.  Only
        for the plain ReLU: a leaky slope can round two inputs to one output and so
        move a tie.
        """
        layers = list(self.layers)
        i = 0
        while i < len(layers) - 1:
            if type(layers[i]) is ReLU and isinstance(layers[i + 1], MaxPool2D):
                layers[i], layers[i + 1] = layers[i + 1], layers[i]
                i += 2
            else:
                i += 1
        return layers

    def _run(self, x):
        """Forward pass; ReLUs overwrite the intermediates the model itself made."""
        owned = False  # the caller's array, or a view of it, is never overwritten
        with single_threaded_blas():
            for layer in self._plan():
                if owned and isinstance(layer, ReLU):
                    x = layer.forward(x, inplace=True)
                    continue
                y = layer.forward(x)
                if isinstance(layer, (Sigmoid, Tanh)):  # they keep their output
                    owned = False
                elif not (y is x or isinstance(layer, Flatten)):
                    owned = True
                x = y
        return x

    def backward(self, dy):
        """Back-propagate ``dy`` (gradient of the loss w.r.t. the output) through
        every layer, accumulating parameter gradients; returns the input gradient
        (on 'cuda' a host ``dy`` is uploaded first)."""
        if not is_device_array(dy) and self.device == "cuda":
            dy = F.to_device(np.asarray(dy, dtype=self.dtype), "cuda")
        return self._backward(dy, input_grad=True)

    def _backward(self, dy, input_grad):
        """Backward pass; with ``input_grad`` false ``dy`` is the loss's own gradient,
        which the ReLUs may overwrite like every intermediate the model made."""
        owned = not input_grad
        plan = self._plan()
        with single_threaded_blas():
            for layer in reversed(plan[1:]):
                if owned and isinstance(layer, ReLU):
                    dy = layer.backward(dy, inplace=True)
                    continue
                g = layer.backward(dy)
                owned = owned if (g is dy or isinstance(layer, Flatten)) else True
                dy = g
            first = plan[0]
            if not input_grad and isinstance(first, Conv2D):
                return first.backward(dy, input_grad=False)
            return first.backward(dy)

    def parameters(self):
        return [p for layer in self.layers for p in layer.parameters()]

    def train(self, mode=True):
        self.training = bool(mode)
        for layer in self.layers:
            layer.train(mode)
        return self

    def output_shape(self, shape):
        for layer in self.layers:
            shape = layer.output_shape(shape)
        return tuple(shape)

    def __repr__(self):
        lines = [f"  ({i}): {layer!r}" for i, layer in enumerate(self.layers)]
        return "Sequential(\n" + "\n".join(lines) + "\n)"

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, i):
        return self.layers[i]

    def summary(self, input_shape):
        """A table of each layer's output shape and parameter count.

        ``input_shape`` is one sample's shape, e.g. ``(1, 28, 28)``.
        """
        shape = tuple(_sample_shape(input_shape))
        rows = [("Layer", "Output shape", "Params")]
        total = 0
        for i, layer in enumerate(self.layers):
            shape = layer.output_shape(shape)
            n = sum(p.size for p in layer.parameters())
            total += n
            rows.append((f"{i}: {type(layer).__name__}", str((None,) + shape), f"{n:,}"))
        widths = [max(len(r[c]) for r in rows) for c in range(3)]
        fmt = lambda r: f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}"
        rule = "-" * len(fmt(rows[0]))
        out = [fmt(rows[0]), rule] + [fmt(r) for r in rows[1:]]
        out += [rule, f"Total parameters: {total:,} ({self.dtype.name})"]
        return "\n".join(out)

    # -- data checks ----------------------------------------------------------
    def _prepare_x(self, X, name):
        if is_device_array(X):
            raise TypeError(f"`{name}` must be a host (numpy) array: the model uploads "
                            f"each batch itself")
        X = check_array(X, name)
        if X.dtype.kind == "f" and not np.isfinite(X).all():
            raise ValueError(f"`{name}` must be finite, got NaN or infinity")
        return np.ascontiguousarray(X, dtype=self.dtype)

    def _n_classes(self, sample_shape, name="X"):
        try:
            out = self.output_shape(sample_shape)
        except ValueError as exc:
            raise ValueError(f"`{name}` of shape (N, {', '.join(map(str, sample_shape))}) does "
                             f"not fit the model: {exc}") from None
        if len(out) != 1:
            raise ValueError(f"the model's output must be (N, classes), got (N, {out})")
        return out[0]

    def _prepare_xy(self, X, y, xname="X", yname="y"):
        X = self._prepare_x(X, xname)
        n_classes = self._n_classes(X.shape[1:], xname)
        y = check_array(y, yname, ndims=(1,))
        if y.dtype.kind not in "iu":
            raise TypeError(f"`{yname}` must hold integer class labels, got dtype {y.dtype}")
        if len(y) != len(X):
            raise ValueError(f"`{xname}` and `{yname}` must have the same length, "
                             f"got {len(X)} and {len(y)}")
        if y.min() < 0 or y.max() >= n_classes:
            raise ValueError(f"`{yname}` must hold labels in [0, {n_classes - 1}], "
                             f"got values in [{y.min()}, {y.max()}]")
        return X, y.astype(np.int64)

    # -- training -------------------------------------------------------------
    def fit(self, X, y, *, epochs=1, batch_size=32, loss=None, optimizer=None,
            validation_data=None, shuffle=True, seed=None, augment=None, scheduler=None,
            progress=True):
        """Train on ``(X, y)`` with mini-batches; returns the history.

        Parameters
        ----------
        X : array_like, shape (N, C, H, W) (or (N, F) for dense-only models)
        y : array_like of int, shape (N,)
            Class labels in ``[0, classes)``.
        epochs : int, default 1
        batch_size : int, default 32
        loss : Loss, optional
            Default :class:`~filtkit.cnn.losses.CrossEntropyLoss`.
        optimizer : Optimizer, optional
            Default: the optimizer this model was saved or last trained
            with (resuming), else ``Adam(model.parameters())``.
        validation_data : (X_val, y_val), optional
            Evaluated after every epoch.
        shuffle : bool, default True
        seed : None, int or numpy.random.Generator
            Shuffling (and augmentation) order.
        augment : callable, optional
            ``augment(xb, rng) -> xb`` applied to every training batch, e.g.
            ``lambda xb, rng: data.random_shift(xb, seed=rng)``.
        scheduler : optional
            A learning-rate schedule on ``optimizer`` (e.g.
            :class:`~filtkit.cnn.optim.CosineAnnealingLR`), stepped after every epoch.
        progress : bool, default True
            Show a tqdm bar with the running loss and accuracy.

        Returns
        -------
        dict
            ``loss``, ``accuracy`` per epoch (and ``val_loss``, ``val_accuracy``).

        Raises
        ------
        DivergenceError
            When a loss or gradient becomes NaN or infinite; the weights of the
            last step with a finite loss are kept.

        Every argument is checked before any weight changes.  On 'cuda' (see
        :meth:`to`) ``loss`` must be a :class:`~filtkit.cnn.losses.CrossEntropyLoss`,
        the optimizer's state moves to the GPU with the model, each batch is
        uploaded (after ``augment``, which runs on the host) and only the loss,
        two counts of non-finite values and the batch's predicted classes come
        back, once the whole step is queued: the update runs whatever the checks
        find, and is undone when they find a NaN or infinity.
        """
        epochs = check_int_tuple(epochs, "epochs", 1)[0]
        batch_size = check_int_tuple(batch_size, "batch_size", 1)[0]
        X, y = self._prepare_xy(X, y)
        if validation_data is not None:
            try:
                Xv, yv = validation_data
            except (TypeError, ValueError):
                raise TypeError("`validation_data` must be a pair (X_val, y_val)") from None
            Xv, yv = self._prepare_xy(Xv, yv, "validation_data[0]", "validation_data[1]")
        loss = _losses.CrossEntropyLoss() if loss is None else loss
        if not isinstance(loss, _losses.Loss):
            raise TypeError(f"`loss` must be a filtkit.cnn.losses loss, got {loss!r}")
        if self.device == "cuda" and not isinstance(loss, _losses.CrossEntropyLoss):
            raise ValueError(f"`loss` on device 'cuda' must be a CrossEntropyLoss, got {loss!r}")
        if optimizer is None:
            optimizer = self.optimizer or _optim.Adam(self.parameters())
        if not isinstance(optimizer, _optim.Optimizer):
            raise TypeError(f"`optimizer` must be a filtkit.cnn.optim optimizer, "
                            f"got {optimizer!r}")
        if scheduler is not None and getattr(scheduler, "optimizer", None) is not optimizer:
            raise ValueError("`scheduler` must be built on the `optimizer` that trains")
        owned = {id(p) for p in self.parameters()}
        if any(id(p) not in owned for p in optimizer.params):
            raise ValueError("`optimizer` must be built on this model's parameters()")
        rng = np.random.default_rng(seed)
        optimizer._to(self.device)  # the optimizer state follows the model
        self.optimizer = optimizer
        if self.input_shape is None:
            self.input_shape = X.shape[1:]
        if validation_data is not None:
            validation_data = (Xv, yv)
        with single_threaded_blas(), self._training_steps() as step:
            return self._fit_loop(step, X, y, epochs, batch_size, loss, optimizer,
                                  validation_data, shuffle, rng, augment, scheduler, progress)

    def _fit_loop(self, step, X, y, epochs, batch_size, loss, optimizer, validation_data,
                  shuffle, rng, augment, scheduler, progress):
        from tqdm.auto import tqdm

        history = {"loss": [], "accuracy": []}
        if validation_data is not None:
            Xv, yv = validation_data
            history.update(val_loss=[], val_accuracy=[])
        n = len(X)
        n_batches = -(-n // batch_size)
        params = self.parameters()
        snaps = [None, None]  # (weights, optimizer state) before the last updates, newest first
        for epoch in range(epochs):
            self.train()
            order = rng.permutation(n) if shuffle else np.arange(n)
            total_loss, correct, seen = 0.0, 0, 0
            bar = tqdm(total=n, desc=f"epoch {epoch + 1}/{epochs}", unit="img",
                       disable=not progress, leave=True)
            try:
                for b in range(n_batches):
                    idx = order[b * batch_size:(b + 1) * batch_size]
                    xb, yb = X[idx], y[idx]
                    if augment is not None:
                        xb = np.ascontiguousarray(augment(xb, rng), dtype=self.dtype)
                    value, hits, what = step(xb, yb, loss, optimizer, params, snaps)
                    if what is not None:
                        raise DivergenceError(
                            f"training diverged at epoch {epoch + 1}, batch {b + 1}: {what} "
                            f"is NaN or infinite; kept the weights of the last step with a "
                            f"finite loss (try a smaller `lr`)", history)
                    total_loss += value * len(idx)
                    correct += hits
                    seen += len(idx)
                    bar.update(len(idx))
                    bar.set_postfix(loss=f"{total_loss / seen:.4f}",
                                    acc=f"{correct / seen:.4f}", refresh=False)
                if scheduler is not None:
                    scheduler.step()
                history["loss"].append(total_loss / seen)
                history["accuracy"].append(correct / seen)
                if validation_data is not None:
                    res = self.evaluate(Xv, yv, loss=loss)
                    history["val_loss"].append(res["loss"])
                    history["val_accuracy"].append(res["accuracy"])
                    bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.4f}",
                                    val_acc=f"{res['accuracy']:.4f}")
            finally:
                bar.close()
        self.eval()
        return history

    @contextlib.contextmanager
    def _training_steps(self):
        """fit's training step for the model's device.  On the GPU the steps of one fit
        share an arena per batch size (their temporaries, :meth:`_step_cuda`) and a
        :class:`_MaskPrefetch`, which draws each step's dropout masks during the step
        before; it puts back what it drew ahead when fit ends, however it ends."""
        if self.device != "cuda":
            yield self._step
            return
        dropouts = [layer for layer in self._plan() if isinstance(layer, Dropout)]
        masks = _MaskPrefetch() if dropouts else None
        for layer in dropouts:
            layer._masks = masks
        try:
            yield functools.partial(self._step_cuda, arenas={}, masks=masks)
        finally:
            if masks is not None:
                masks.close()
            for layer in dropouts:
                layer._masks = None

    def _step(self, xb, yb, loss, optimizer, params, snaps):
        """One training step on the host: ``(mean loss, hits, None)``, or ``(nan, 0,
        what)`` when ``what`` ("loss" or "a gradient") is NaN or infinite.  A
        non-finite loss puts back the weights of the last step with a finite one
        (``snaps[0]``, taken before its update); a non-finite gradient keeps these
        weights, not updated."""
        self.zero_grad()
        out = self._run(F.to_device(xb, self.device))
        value = loss(out, yb) if F.all_finite(out) else np.nan
        if not np.isfinite(value):
            if snaps[0] is not None:
                self._restore(snaps[0])
            return np.nan, 0, "loss"
        self._backward(loss.backward(), input_grad=False)
        if not F.all_finite(*(p.grad for p in params)):
            return np.nan, 0, "a gradient"
        snaps[0] = self._snapshot(snaps[0])
        optimizer.step()
        return value, int((F.argmax_rows(out) == yb).sum()), None

    def _step_cuda(self, xb, yb, loss, optimizer, params, snaps, arenas=None, masks=None):
        """:meth:`_step` on the GPU, queued whole before the host waits once.

        The checks are counted on the device and the update runs whatever they
        find: the batch, forward, loss, backward, the counts of non-finite logits
        and gradients, a snapshot of the weights before the update and the update
        itself go to the GPU in one go, and only then do the counts, the loss and
        the predicted classes come back.  A wait at each check would leave the
        GPU idle while the host launches what follows it.  Divergence then puts
        back what :meth:`_step` would have kept: the snapshot before the last
        finite step's update (``snaps[1]``; none yet: this step's own) for a
        non-finite loss, this step's own for a non-finite gradient.

        ``arenas`` (batch size -> :func:`F.arena`, kept by the caller from step to
        step): the step's temporaries (the batch, activations, deltas, the loss's and
        the convolutions' work arrays) are then the same device arrays at every step
        of one batch size, none allocated after the first.  Nothing of them is read
        after the step: the host waits for each step's results before the next.
        ``masks`` (:class:`~filtkit.cnn.layers._MaskPrefetch`): the dropout masks of the
        next step are drawn while this one is queued, by a worker thread.
        """
        self.zero_grad()
        arena = None if arenas is None else arenas.get(len(yb))
        if arenas is not None and arena is None:
            arena = arenas[len(yb)] = F.arena()
        with F.reusing(arena):
            if masks is not None:
                masks.begin()
            out = self._run(F.to_device(xb, "cuda"))
            if masks is not None:
                masks.prefetch()
            counts = F.zeros((2,), np.int32, out)
            F.count_nonfinite([out], counts[0:1])
            total = loss._queued(out, yb)
            self._backward(loss.backward(), input_grad=False)
            F.count_nonfinite([p.grad for p in params], counts[1:2])
            predicted = F.argmax_rows(out, download=False)
        snaps[:] = [self._snapshot(snaps[1]), snaps[0]]
        optimizer.step()
        predicted = F.to_host(predicted)  # the first download: the wait for the whole step
        bad_logits, bad_grads = (int(c) for c in F.to_host(counts))
        total = F.to_host(total)[0]
        value = float(total / total.dtype.type(len(yb)))  # the loss's own mean, rounded as it
        if bad_logits or not np.isfinite(value):
            self._restore(snaps[1] if snaps[1] is not None else snaps[0])
            self.zero_grad()  # as :meth:`_step`, which computes no gradient then
            return np.nan, 0, "loss"
        if bad_grads:
            self._restore(snaps[0])
            return np.nan, 0, "a gradient"
        return value, int((predicted == yb).sum()), None

    def _snapshot(self, into=None):
        """Copies of the weights and the optimizer state, where they live (device-to-
        device on the GPU), written into the arrays of the older snapshot ``into``."""
        old_w, old_s = into if into is not None else (None, None)
        weights = F.snapshot([p.data for p in self.parameters()], old_w)
        state = None
        if self.optimizer is not None:
            state = self.optimizer._snapshot(old_s)
        return weights, state

    def _restore(self, snap):
        weights, state = snap
        F.restore([p.data for p in self.parameters()], weights)  # in place: views stay valid
        if state is not None:
            self.optimizer._restore(state)

    # -- inference ------------------------------------------------------------
    def _batches(self, X, batch_size, each):
        """``[each(i, out) for each batch]``, ``out`` the model's output for the batch
        starting at ``i`` (on the model's device), in evaluation mode."""
        batch_size = check_int_tuple(batch_size, "batch_size", 1)[0]
        mode = self.training
        self.eval()
        try:
            return [each(i, self._run(F.to_device(X[i:i + batch_size], self.device)))
                    for i in range(0, len(X), batch_size)]
        finally:
            self.train(mode)

    def _logits(self, X, batch_size):
        return np.concatenate(self._batches(X, batch_size, lambda i, out: F.to_host(out)))

    def evaluate(self, X, y, *, batch_size=256, loss=None):
        """Mean loss and accuracy on ``(X, y)`` in evaluation mode.

        Returns
        -------
        dict
            ``{"loss": float, "accuracy": float}``.
        """
        X, y = self._prepare_xy(X, y)
        loss = _losses.CrossEntropyLoss() if loss is None else loss
        if self.device == "cpu":
            logits = self._logits(X, batch_size)
            return {"loss": float(loss(logits, y)),
                    "accuracy": float((logits.argmax(axis=1) == y).mean())}
        if not isinstance(loss, _losses.CrossEntropyLoss):
            raise ValueError(f"`loss` on device 'cuda' must be a CrossEntropyLoss, got {loss!r}")

        def batch(i, out):  # queued: the batch's summed loss and its predicted classes
            return (loss._queued(out, y[i:i + out.shape[0]]),
                    F.argmax_rows(out, download=False))

        # every batch queued before the first download: only the sums and classes come back
        sums, predicted = zip(*self._batches(X, batch_size, batch))
        total = sum(float(F.to_host(t)[0]) for t in sums)
        if np.isnan(total):  # as the loss itself says for a batch
            raise ValueError("`logits` must be finite, got NaN or infinite values")
        hits = int((np.concatenate([F.to_host(p) for p in predicted]) == y).sum())
        return {"loss": total / len(y), "accuracy": hits / len(y)}

    def predict_proba(self, X, *, batch_size=256):
        """Class probabilities (softmax of the outputs), shape (N, classes)."""
        X = self._prepare_x(X, "X")
        self._n_classes(X.shape[1:], "X")
        if self.device == "cpu":
            return _softmax(self._logits(X, batch_size))
        # every batch queued before the first download
        return np.concatenate([F.to_host(p) for p in
                               self._batches(X, batch_size, lambda i, out: F.softmax(out))])

    def predict(self, X, *, batch_size=256):
        """The most probable class of every sample, shape (N,)."""
        return self.predict_proba(X, batch_size=batch_size).argmax(axis=1)

    # -- saving ---------------------------------------------------------------
    def save(self, path):
        """Write the architecture, the weights and the optimizer state (if any)
        to ``path`` (.npz), atomically: a temporary file, then a rename.  A model
        on 'cuda' writes the same file as on the CPU (its arrays are downloaded)."""
        path = os.fspath(path)
        arch = [{"class": type(layer).__name__, "config": layer.config()}
                for layer in self.layers]
        arrays = {f"param.{i}": F.to_host(p.data) for i, p in enumerate(self.parameters())}
        meta = {"format": FORMAT, "layers": arch, "optimizer": None,
                "input_shape": None if self.input_shape is None else list(self.input_shape)}
        if self.optimizer is not None:
            meta["optimizer"] = {"name": self.optimizer.name,
                                 "hyperparameters": self.optimizer.hyperparameters()}
            for k, v in self.optimizer.state_dict().items():
                arrays[f"optim.{k}"] = np.asarray(v)
        arrays["meta"] = np.array(json.dumps(meta))
        with replace_atomically(path, ".npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)


def load(path):
    """Rebuild a model written by :meth:`Sequential.save`, on the CPU (move it with
    ``.to("cuda")``).

    The optimizer, when one was saved, is rebuilt on the model's parameters
    with its state and attached as ``model.optimizer`` (``fit`` resumes it).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        ``path`` is not a filtkit model file, or it is damaged.
    """
    path = os.fspath(path)
    bad = f"`path` {path!r} is not a filtkit model file"
    if not os.path.exists(path):
        raise FileNotFoundError(f"`path` {path!r} does not exist")
    try:
        f = np.load(path, allow_pickle=False)
        if isinstance(f, np.ndarray):  # a .npy file, not an .npz archive
            raise ValueError("it holds a single array, not an .npz archive")
        with f:
            arrays = {k: f[k] for k in f.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{bad}: {exc}") from None
    try:
        meta = json.loads(str(arrays["meta"]))
        fmt = meta.get("format") if isinstance(meta, dict) else None
        if fmt != FORMAT:
            raise ValueError(f"unknown format {fmt!r}")
        layers = []
        for spec in meta["layers"]:
            cls = LAYERS[spec["class"]]
            layers.append(cls(**spec["config"]))
        model = Sequential(layers, input_shape=meta.get("input_shape"))
        params = model.parameters()
        n_saved = sum(k.startswith("param.") for k in arrays)
        if n_saved != len(params):
            raise ValueError(f"{n_saved} parameter arrays for {len(params)} parameters")
        for i, p in enumerate(params):
            a = arrays[f"param.{i}"]
            if a.shape != p.shape or a.dtype != p.dtype:
                raise ValueError(f"parameter {i} has shape {a.shape} {a.dtype}, "
                                 f"expected {p.shape} {p.dtype}")
            p.data[...] = a
        if meta.get("optimizer"):
            opt = meta["optimizer"]
            cls = {"sgd": _optim.SGD, "adam": _optim.Adam}[opt["name"]]
            optimizer = cls(params, **opt["hyperparameters"])
            state = {k[len("optim."):]: v for k, v in arrays.items() if k.startswith("optim.")}
            optimizer.load_state_dict(state)
            model.optimizer = optimizer
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
        raise ValueError(f"{bad} (or it is damaged): {exc}") from None
    model.eval()
    return model


# -- ready-made architectures -------------------------------------------------
def lenet5(*, in_channels=1, num_classes=10, input_size=28, dtype="float32", seed=None):
    """LeNet-5 with ReLU and max pooling: conv 6@5x5 (padding 2), pool, conv 16@5x5,
    pool, dense 120, 84, ``num_classes``.  Inputs smaller than 10 pixels after the
    first pooling (e.g. 8x8 digits) keep their size in the second convolution.

    Examples
    --------
    >>> lenet5(seed=0).summary((1, 28, 28)).splitlines()[-1]
    'Total parameters: 61,706 (float32)'
    """
    rng = np.random.default_rng(seed)
    half = input_size // 2
    pad2 = 0 if half >= 10 else 2
    side = (half + 2 * pad2 - 4) // 2
    return Sequential(input_shape=(in_channels, input_size, input_size), layers=[
        Conv2D(in_channels, 6, 5, padding=2, dtype=dtype, rng=rng), ReLU(), MaxPool2D(2),
        Conv2D(6, 16, 5, padding=pad2, dtype=dtype, rng=rng), ReLU(), MaxPool2D(2),
        Flatten(),
        Dense(16 * side * side, 120, dtype=dtype, rng=rng), ReLU(),
        Dense(120, 84, dtype=dtype, rng=rng), ReLU(),
        Dense(84, num_classes, dtype=dtype, rng=rng),
    ])


def convnet(*, in_channels=1, num_classes=10, input_size=28, dtype="float32", seed=None):
    """conv 32@3x3 - pool - conv 64@3x3 - pool - dropout 0.25 - dense 128 - dropout 0.5
    - dense ``num_classes`` (ReLU after each hidden layer, 'same' padding).

    Examples
    --------
    >>> convnet(seed=0).summary((1, 28, 28)).splitlines()[-1]
    'Total parameters: 421,642 (float32)'
    """
    rng = np.random.default_rng(seed)
    side = input_size // 2 // 2
    return Sequential(input_shape=(in_channels, input_size, input_size), layers=[
        Conv2D(in_channels, 32, 3, padding=1, dtype=dtype, rng=rng), ReLU(), MaxPool2D(2),
        Conv2D(32, 64, 3, padding=1, dtype=dtype, rng=rng), ReLU(), MaxPool2D(2),
        Dropout(0.25, rng=rng), Flatten(),
        Dense(64 * side * side, 128, dtype=dtype, rng=rng), ReLU(), Dropout(0.5, rng=rng),
        Dense(128, num_classes, dtype=dtype, rng=rng),
    ])


ARCHITECTURES = {"lenet5": lenet5, "convnet": convnet}
