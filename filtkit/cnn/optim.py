"""Optimizers with PyTorch's update rules: ``SGD`` and ``Adam``.

An optimizer holds a list of :class:`~filtkit.cnn.parameter.Parameter`
objects. ``step()`` updates every parameter's ``data`` in place from its
``grad`` (so views of the data stay valid), ``zero_grad()`` clears the
gradients, and ``state_dict()`` / ``load_state_dict()`` save and restore
the hyperparameters, the step count and the per-parameter buffers as plain
numpy arrays and Python scalars (ready for ``numpy.savez``).

The arithmetic follows ``torch.optim`` (single-tensor path, as used on the
CPU) operation by operation and runs in each parameter's dtype: float32
parameters get float32 updates (Python scalars are rounded to float32
first, as PyTorch does), float64 parameters float64 updates.

Parameters on the GPU (a model moved with ``.to("cuda")``) are updated there
by the CUDA twins of the same fused update functions; the buffers follow
their parameters (``_to``, called by ``Sequential.to`` and ``fit``, or at the
next step), and ``state_dict`` always returns host arrays.
"""

import math
import numbers
import re

import numpy as np

from ..backends import is_device_array
from . import functional as F

__all__ = ["Optimizer", "SGD", "Adam", "CosineAnnealingLR"]


# ---------------------------------------------------------------- checks


def _scalar(value):
    """Unwrap a 0-d numpy array (what ``numpy.load`` gives for a saved scalar)."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    return value


def _real(value, name, what, ok):
    """``value`` as a Python float if it is a finite real number with ``ok(v)``."""
    value = _scalar(value)
    bad = ValueError(f"`{name}` must be {what}, got {value!r}")
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (numbers.Real, np.floating, np.integer)
    ):
        raise TypeError(f"`{name}` must be a real number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or not ok(v):
        raise bad
    return v


def _positive(value, name):
    return _real(value, name, "a positive finite number", lambda v: v > 0)


def _non_negative(value, name):
    return _real(value, name, "a non-negative finite number", lambda v: v >= 0)


def _finite(value, name):
    return _real(value, name, "a finite number", lambda v: True)


def _bool(value, name):
    value = _scalar(value)
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be True or False, got {value!r}")
    return bool(value)


def _fmt(v):
    """Readable number for a repr: ``0`` rather than ``0.0``, ``0.01``, ``1e-08``."""
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e16:
        return str(int(v))
    return repr(v)


def _check_params(params):
    if isinstance(params, np.ndarray) or not hasattr(params, "__iter__"):
        raise TypeError(
            f"`params` must be an iterable of Parameter objects, got {type(params).__name__}"
        )
    params = list(params)
    if not params:
        raise ValueError("`params` must hold at least one parameter, got an empty iterable")
    seen = set()
    for i, p in enumerate(params):
        data = getattr(p, "data", None)
        if not (isinstance(data, np.ndarray) or is_device_array(data)) or not hasattr(p, "grad"):
            raise TypeError(
                f"`params` must hold Parameter objects (with `data` and `grad`), "
                f"item {i} is {type(p).__name__}"
            )
        if np.dtype(data.dtype).kind != "f":
            raise TypeError(
                f"`params` item {i} must hold floating-point data, got dtype {data.dtype}"
            )
        if id(p) in seen:
            raise ValueError(f"`params` holds the same parameter twice (item {i})")
        seen.add(id(p))
    return params


_BUFFER_KEY = re.compile(r"^([A-Za-z_]+)\.(\d+)$")


def _hyperparameter(name):
    """A read-only property giving the hyperparameter ``name`` (a key of ``_hp``)."""
    return property(lambda self: self._hp[name],
                    doc=f"The ``{name}`` hyperparameter (read-only; set by the constructor).")


# ---------------------------------------------------------------- base class


class Optimizer:
    """Base class: holds the parameters, the step count and per-parameter buffers.

    Subclasses set ``name``, ``_hyper_names`` (constructor keywords, in repr
    order), ``_buffers`` (names of the per-parameter state arrays) and
    implement ``_validate(hp) -> dict`` and ``_apply(theta, grad, state, first)`` (one
    fused update of flat arrays; ``_needs(buffer)`` says which buffers it keeps).
    Parameters packed into one flat buffer (a model moved with ``.to("cuda")``, see
    :func:`~filtkit.cnn.functional.pack`) are updated by one ``_apply`` over all of
    them, with buffers packed the same way; others one parameter at a time.

    Parameters
    ----------
    params : iterable of Parameter
        The parameters to optimize (at least one, each once, floating-point
        ``data``). Stored as a list in ``params``; its order fixes the
        indices used in ``state_dict`` keys.

    Attributes
    ----------
    params : list of Parameter
    step_count : int
        Number of ``step()`` calls so far (restored by ``load_state_dict``).

    Examples
    --------
    Save an optimizer's state in an ``.npz`` file and restore it in a new one:

    >>> import io
    >>> import numpy as np
    >>> from filtkit.cnn.optim import SGD
    >>> from filtkit.cnn.parameter import Parameter
    >>> p = Parameter(np.zeros(3, np.float32))
    >>> opt = SGD([p], lr=0.5, momentum=0.9)
    >>> p.grad[...] = 1.0
    >>> opt.step()
    >>> file = io.BytesIO()
    >>> np.savez(file, **opt.state_dict())
    >>> _ = file.seek(0)
    >>> restored = SGD([Parameter(p.data)], **opt.hyperparameters())
    >>> restored.load_state_dict(np.load(file))
    >>> restored.step_count, restored.state_dict()["momentum_buffer.0"]
    (1, array([1., 1., 1.], dtype=float32))
    """

    #: short label used when a training setup is saved
    name = ""
    _hyper_names = ()
    _buffers = ()

    def __init__(self, params, **hyperparameters):
        self.params = _check_params(params)
        self._hp = self._validate(hyperparameters)
        self._step_count = 0
        self._state = {b: [None] * len(self.params) for b in self._buffers}

    # -- hyperparameters
    @classmethod
    def _validate(cls, hp):  # pragma: no cover - abstract
        raise NotImplementedError

    def hyperparameters(self):
        """The constructor's keyword arguments, for rebuilding an equal optimizer.

        Returns
        -------
        dict
            ``type(opt)(params, **opt.hyperparameters())`` builds a fresh
            optimizer with the same settings.
        """
        return dict(self._hp)

    @property
    def lr(self):
        """Learning rate (a positive finite float); may be changed between steps."""
        return self._hp["lr"]

    @lr.setter
    def lr(self, value):
        self._hp["lr"] = _positive(value, "lr")

    @property
    def step_count(self):
        return self._step_count

    # -- the update
    def step(self):
        """Update every parameter in place from its current gradient.

        All gradients are checked first (an array of the parameter's shape);
        on a bad one a ValueError is raised and nothing is changed.
        Non-finite gradients are not special: as in PyTorch, the update is
        applied and the parameters become non-finite.
        """
        grads = []
        for i, p in enumerate(self.params):
            g = p.grad
            on_gpu = is_device_array(p.data)
            shape = getattr(g, "shape", None)
            shape = None if shape is None else tuple(shape)
            if (on_gpu != is_device_array(g) or (not on_gpu and not isinstance(g, np.ndarray))
                    or shape != tuple(p.data.shape)):
                where = "a GPU array" if on_gpu else "an array"
                raise ValueError(
                    f"`grad` of parameter {i} ({p.name!r}) must be {where} of shape "
                    f"{tuple(p.data.shape)}, got {type(g).__name__} with shape {shape}"
                )
            if on_gpu:
                if g.dtype != p.data.dtype:
                    raise ValueError(f"`grad` of parameter {i} ({p.name!r}) on the GPU must "
                                     f"have dtype {p.data.dtype}, got {g.dtype}")
                grads.append(g)
            else:
                grads.append(np.ascontiguousarray(g, dtype=p.data.dtype))
        self._step_count += 1
        thetas = [p.data for p in self.params]
        flat_theta, flat_grad = F.packed(thetas), F.packed(grads)
        whole = flat_theta is not None and flat_grad is not None
        first = False
        for b in self._buffers:
            if not self._needs(b):
                continue
            bufs = [self._buffer(b, i) for i in range(len(thetas))]
            first = bufs[0] is None  # all or none (load_state_dict checks it)
            if first:
                bufs = F.pack(thetas, zero=True) if whole else [F.zeros_like(t) for t in thetas]
            elif whole and F.packed(bufs) is None:
                bufs = F.pack(bufs)  # once, after the buffers were moved or restored
            self._state[b] = bufs
        if whole:  # every parameter in one launch: the same arithmetic, element by element
            self._apply(flat_theta, flat_grad, {b: F.packed(self._state[b]) for b in
                                                self._buffers if self._needs(b)}, first)
            return
        for i, (theta, g) in enumerate(zip(thetas, grads)):
            self._apply(F.ravel(theta), F.ravel(g), {b: F.ravel(self._state[b][i]) for b in
                                                    self._buffers if self._needs(b)}, first)

    def _needs(self, name):
        """Does the update keep the buffer ``name`` (SGD without momentum keeps none)?"""
        return True

    def _apply(self, theta, grad, state, first):  # pragma: no cover - abstract
        """Update the flat ``theta`` from ``grad`` and the flat buffers ``state`` (a dict by
        name); ``first``: the buffers were just made (zeros)."""
        raise NotImplementedError

    def zero_grad(self):
        """Set every parameter's gradient to zero (in place)."""
        F.fill_all([p.grad for p in self.params], 0)

    # -- where the buffers live
    def _to(self, device):
        """Move every buffer to ``device`` ('cpu' or 'cuda'), exactly."""
        for bufs in self._state.values():
            for i, arr in enumerate(bufs):
                if arr is not None:
                    bufs[i] = F.to_device(arr, device)

    def _buffer(self, name, i):
        """Buffer ``name`` of parameter ``i``, moved to its parameter's device if it is
        elsewhere (None before the first step)."""
        arr = self._state[name][i]
        if arr is not None:
            arr = self._state[name][i] = F.to_device(arr, self.params[i].device)
        return arr

    def _snapshot(self, into=None):
        """A copy of the whole state, each buffer on its own device (a device-to-device
        copy on the GPU, one per buffer name when the buffers are packed), written into
        the arrays of an older snapshot ``into`` where they fit."""
        old = into[2] if into is not None else {}
        bufs = {b: None if arrs[0] is None else F.snapshot(arrs, old.get(b))
                for b, arrs in self._state.items()}
        return dict(self._hp), self._step_count, bufs

    def _restore(self, snap):
        """Go back to a :meth:`_snapshot` (copied again: the snapshot stays usable)."""
        hp, step, bufs = snap
        self._hp = dict(hp)
        self._step_count = step
        for b, saved in bufs.items():
            if saved is None:
                self._state[b] = [None] * len(self.params)
                continue
            if self._state[b][0] is None:
                self._state[b] = [F.empty_like(p.data) for p in self.params]
            F.restore(self._state[b], saved)

    # -- saving and restoring
    def state_dict(self):
        """Hyperparameters, step count and buffers as numpy arrays and Python scalars.

        Returns
        -------
        dict
            One entry per hyperparameter (``"lr"``, ...), ``"step"`` (int),
            and one copy of each per-parameter buffer under
            ``"<buffer>.<index>"`` (e.g. ``"exp_avg.0"``), index being the
            position in ``params``. Buffers are absent before the first step.
        """
        out = {}
        for k in self._hyper_names:
            v = self._hp[k]
            out[k] = np.array(v, dtype=np.float64) if isinstance(v, tuple) else v
        out["step"] = self._step_count
        for b in self._buffers:
            for i, arr in enumerate(self._state[b]):
                if arr is not None:
                    out[f"{b}.{i}"] = arr.copy_to_host() if is_device_array(arr) else arr.copy()
        return out

    def load_state_dict(self, state_dict):
        """Restore what :meth:`state_dict` returned (also after ``numpy.savez``/``load``).

        Everything is checked before anything is changed: the keys, each
        hyperparameter, the step count, and each buffer's shape against its
        parameter; on any mismatch a ValueError (TypeError for a wrong kind
        of value) is raised and the optimizer is left as it was. Buffers are
        copied, in the parameter's dtype.

        Parameters
        ----------
        state_dict : mapping
        """
        try:
            d = dict(state_dict)
        except (TypeError, ValueError):
            raise TypeError(
                f"`state_dict` must be a mapping, got {type(state_dict).__name__}"
            ) from None
        missing = [k for k in (*self._hyper_names, "step") if k not in d]
        if missing:
            raise ValueError(f"`state_dict` lacks the key(s) {missing}")
        hp = self._validate({k: d[k] for k in self._hyper_names})
        step = _scalar(d["step"])
        if isinstance(step, (bool, np.bool_)) or not isinstance(step, (numbers.Integral,)):
            raise TypeError(f"`step` in `state_dict` must be an integer, got {step!r}")
        step = int(step)
        if step < 0:
            raise ValueError(f"`step` in `state_dict` must be >= 0, got {step}")

        n = len(self.params)
        found = {b: {} for b in self._buffers}
        for key, value in d.items():
            if key in self._hyper_names or key == "step":
                continue
            m = _BUFFER_KEY.match(key)
            if m is None or m.group(1) not in found:
                raise ValueError(
                    f"`state_dict` has an unexpected key {key!r} for {type(self).__name__}"
                )
            i = int(m.group(2))
            if i >= n:
                raise ValueError(
                    f"`state_dict` key {key!r} refers to parameter {i}, "
                    f"but the optimizer has {n} parameter(s)"
                )
            p = self.params[i]
            arr = value.copy_to_host() if is_device_array(value) else np.asarray(value)
            if arr.dtype.kind != "f":
                raise TypeError(f"`state_dict` entry {key!r} must be a float array, got "
                                f"dtype {arr.dtype}")
            if arr.shape != tuple(p.data.shape):
                raise ValueError(
                    f"`state_dict` entry {key!r} has shape {arr.shape}, but parameter {i} "
                    f"({p.name!r}) has shape {tuple(p.data.shape)}"
                )
            found[m.group(1)][i] = np.array(arr, dtype=p.data.dtype, order="C", copy=True)
        for b, got in found.items():
            if got and len(got) != n:
                absent = [i for i in range(n) if i not in got]
                raise ValueError(
                    f"`state_dict` has `{b}` buffers for some parameters but not for "
                    f"parameter(s) {absent}"
                )
        self._check_buffers(step, {b: bool(got) for b, got in found.items()})

        self._hp = hp
        self._step_count = step
        self._state = {b: [found[b].get(i) for i in range(n)] for b in self._buffers}
        for b in self._buffers:  # each buffer where its parameter lives
            for i in range(n):
                self._buffer(b, i)

    def _check_buffers(self, step, present):
        """Subclass hook: ValueError if the set of buffers does not fit ``step``."""

    def __repr__(self):
        parts = []
        for k in self._hyper_names:
            v = self._hp[k]
            if isinstance(v, tuple):
                text = "(" + ", ".join(_fmt(x) for x in v) + ")"
            elif isinstance(v, bool):
                text = repr(v)
            else:
                text = _fmt(v)
            parts.append(f"{k}={text}")
        return f"{type(self).__name__}({', '.join(parts)})"


# ---------------------------------------------------------------- SGD


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, as ``torch.optim.SGD``.

    For each parameter ``theta`` with gradient ``grad``, every step::

        g = grad + weight_decay * theta
        if momentum != 0:
            buf = g                                        # first step
            buf = momentum * buf + (1 - dampening) * g     # later steps
            g = g + momentum * buf if nesterov else buf
        theta -= lr * g

    Parameters
    ----------
    params : iterable of Parameter
        The parameters to update (at least one).
    lr : float, default 0.01
        Learning rate, positive and finite.
    momentum : float, default 0.0
        Momentum factor, ``>= 0``.
    dampening : float, default 0.0
        Dampening of the momentum, finite.
    nesterov : bool, default False
        Nesterov momentum; needs ``momentum > 0`` and ``dampening == 0``.
    weight_decay : float, default 0.0
        L2 penalty added to the gradient, ``>= 0``.

    Examples
    --------
    >>> import numpy as np
    >>> from filtkit.cnn.parameter import Parameter
    >>> p = Parameter(np.array([1.0, -2.0]))
    >>> opt = SGD([p], lr=0.1, momentum=0.9)
    >>> opt
    SGD(lr=0.1, momentum=0.9, dampening=0, nesterov=False, weight_decay=0)
    >>> for _ in range(2):
    ...     p.grad[...] = [1.0, 1.0]
    ...     opt.step()
    >>> p.data
    array([ 0.71, -2.29])
    >>> sorted(opt.state_dict())
    ['dampening', 'lr', 'momentum', 'momentum_buffer.0', 'nesterov', 'step', 'weight_decay']
    """

    name = "sgd"
    _hyper_names = ("lr", "momentum", "dampening", "nesterov", "weight_decay")
    _buffers = ("momentum_buffer",)

    def __init__(self, params, lr=1e-3, *, momentum=0.0, dampening=0.0, nesterov=False,
                 weight_decay=0.0):
        super().__init__(params, lr=lr, momentum=momentum, dampening=dampening,
                         nesterov=nesterov, weight_decay=weight_decay)

    @classmethod
    def _validate(cls, hp):
        out = {
            "lr": _positive(hp["lr"], "lr"),
            "momentum": _non_negative(hp["momentum"], "momentum"),
            "dampening": _finite(hp["dampening"], "dampening"),
            "nesterov": _bool(hp["nesterov"], "nesterov"),
            "weight_decay": _non_negative(hp["weight_decay"], "weight_decay"),
        }
        if out["nesterov"] and (out["momentum"] <= 0 or out["dampening"] != 0):
            raise ValueError(
                "`nesterov` requires `momentum` > 0 and `dampening` == 0, got "
                f"momentum={out['momentum']!r}, dampening={out['dampening']!r}"
            )
        return out

    momentum = _hyperparameter("momentum")
    dampening = _hyperparameter("dampening")
    nesterov = _hyperparameter("nesterov")
    weight_decay = _hyperparameter("weight_decay")

    def _needs(self, name):
        return self._hp["momentum"] != 0

    def _apply(self, theta, grad, state, first):
        # one fused pass (the backends' sgd_update), operation for operation:
        #   g = g + wd * theta
        #   buf = g (first step), else buf = buf * mu + (1 - dampening) * g
        #   g = g + mu * buf (nesterov) or buf;  theta += -lr * g
        hp = self._hp
        t = np.dtype(theta.dtype).type
        buf = state.get("momentum_buffer", theta)
        F.backend(theta).sgd_update(
            theta, grad, buf, t(hp["weight_decay"]), t(hp["momentum"]), t(1 - hp["dampening"]),
            t(-hp["lr"]), hp["nesterov"], first)


# ---------------------------------------------------------------- Adam


class Adam(Optimizer):
    """Adam, as ``torch.optim.Adam`` (``amsgrad=False``).

    For each parameter ``theta`` with gradient ``grad``, at step ``t``
    (1 for the first step), with ``m`` and ``v`` starting at zero::

        g = grad + weight_decay * theta
        m = beta1 * m + (1 - beta1) * g          # as torch: m.lerp_(g, 1 - beta1)
        v = beta2 * v + (1 - beta2) * g * g
        step_size = lr / (1 - beta1 ** t)
        denom = sqrt(v) / sqrt(1 - beta2 ** t) + eps
        theta -= step_size * m / denom

    which is ``theta -= lr * m_hat / (sqrt(v_hat) + eps)`` with PyTorch's
    order of operations.

    Parameters
    ----------
    params : iterable of Parameter
        The parameters to update (at least one).
    lr : float, default 1e-3
        Learning rate, positive and finite.
    betas : (float, float), default (0.9, 0.999)
        Decay rates of the first and second moment averages, each in ``[0, 1)``.
    eps : float, default 1e-8
        Added to the denominator, ``>= 0``.
    weight_decay : float, default 0.0
        L2 penalty added to the gradient, ``>= 0``.

    Examples
    --------
    >>> import numpy as np
    >>> from filtkit.cnn.parameter import Parameter
    >>> p = Parameter(np.array([1.0, -2.0]))
    >>> opt = Adam([p], lr=0.1)
    >>> opt
    Adam(lr=0.1, betas=(0.9, 0.999), eps=1e-08, weight_decay=0)
    >>> p.grad[...] = [0.5, -3.0]
    >>> opt.step()
    >>> p.data.round(6)
    array([ 0.9, -1.9])
    >>> opt.state_dict()["step"], opt.state_dict()["exp_avg_sq.0"].round(6)
    (1, array([0.00025, 0.009  ]))
    """

    name = "adam"
    _hyper_names = ("lr", "betas", "eps", "weight_decay")
    _buffers = ("exp_avg", "exp_avg_sq")

    def __init__(self, params, lr=1e-3, *, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    @classmethod
    def _validate(cls, hp):
        betas = hp["betas"]
        bad = ValueError(f"`betas` must be a pair of numbers in [0, 1), got {betas!r}")
        if isinstance(betas, np.ndarray):
            items = betas.tolist() if betas.shape == (2,) else []
        elif isinstance(betas, (str, bytes)) or not hasattr(betas, "__iter__"):
            items = []
        else:
            items = list(betas)
        if len(items) != 2:
            raise bad
        try:
            b = tuple(_real(x, "betas", "a pair of numbers in [0, 1)", lambda v: 0 <= v < 1)
                      for x in items)
        except (TypeError, ValueError):
            raise bad from None
        return {
            "lr": _positive(hp["lr"], "lr"),
            "betas": b,
            "eps": _non_negative(hp["eps"], "eps"),
            "weight_decay": _non_negative(hp["weight_decay"], "weight_decay"),
        }

    betas = _hyperparameter("betas")
    eps = _hyperparameter("eps")
    weight_decay = _hyperparameter("weight_decay")

    def _check_buffers(self, step, present):
        for b, has in present.items():
            if has != (step > 0):
                raise ValueError(
                    f"`state_dict` with step {step} must "
                    f"{'hold' if step > 0 else 'not hold'} `{b}` buffers"
                )

    def _apply(self, theta, grad, state, first):
        hp = self._hp
        t = np.dtype(theta.dtype).type
        beta1, beta2 = hp["betas"]
        # one fused pass (backends.cpu.adam_update), operation for operation:
        #   g = g + wd * theta
        #   m.lerp_(g, 1 - beta1), with torch's two formulas for small and large weights
        #   v = v * beta2 + ((1 - beta2) * g) * g
        #   theta += (-lr / bias_correction1 * m) / (sqrt(v) / sqrt(bias_correction2) + eps)
        step = self._step_count
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        step_size = hp["lr"] / bias_correction1
        F.backend(theta).adam_update(
            theta, grad, state["exp_avg"], state["exp_avg_sq"],
            t(hp["weight_decay"]), t(1 - beta1), t(beta2), t(1 - beta2), t(-step_size),
            t(bias_correction2**0.5), t(hp["eps"]))


class CosineAnnealingLR:
    """Cosine learning-rate decay over ``T_max`` epochs, as
    ``torch.optim.lr_scheduler.CosineAnnealingLR`` (its closed form):
    after ``t`` calls of :meth:`step`,
    ``lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2``.

    Parameters
    ----------
    optimizer : Optimizer
    T_max : int
        Epochs to reach ``eta_min``; later steps stay there.
    eta_min : float, optional
        The final learning rate, > 0 (filtkit's optimizers refuse a learning
        rate of 0, so a saved model could not be loaded); default
        ``base_lr / 100`` (torch's default is 0).

    Examples
    --------
    >>> import numpy as np
    >>> from filtkit.cnn.parameter import Parameter
    >>> opt = SGD([Parameter(np.zeros(2))], lr=0.1)
    >>> sched = CosineAnnealingLR(opt, T_max=2, eta_min=0.01)
    >>> sched.step(); round(opt.lr, 6)
    0.055
    >>> sched.step(); round(opt.lr, 6)
    0.01
    """

    def __init__(self, optimizer, T_max, *, eta_min=None):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"`optimizer` must be a filtkit.cnn.optim optimizer, got {optimizer!r}")
        if isinstance(T_max, bool) or not isinstance(T_max, numbers.Integral) or T_max < 1:
            raise ValueError(f"`T_max` must be a positive integer, got {T_max!r}")
        eta_min = optimizer.lr / 100 if eta_min is None else _positive(eta_min, "eta_min")
        self.optimizer = optimizer
        self.T_max = int(T_max)
        self.eta_min = eta_min
        self.base_lr = optimizer.lr
        self.last_epoch = 0

    def step(self):
        """Advance one epoch and set the optimizer's learning rate."""
        self.last_epoch += 1
        t = min(self.last_epoch, self.T_max)
        cos = (1 + math.cos(math.pi * t / self.T_max)) / 2
        self.optimizer.lr = self.eta_min + (self.base_lr - self.eta_min) * cos

    def __repr__(self):
        return f"CosineAnnealingLR(T_max={self.T_max}, eta_min={self.eta_min})"
