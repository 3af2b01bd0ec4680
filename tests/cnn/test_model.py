"""Sequential models: training parity with torch, fit/predict, checks, divergence, save/load."""

import os
import re
import time

import numpy as np
import pytest

from filtkit import cnn
from filtkit.cnn import (
    SGD,
    Adam,
    AvgPool2D,
    Conv2D,
    CrossEntropyLoss,
    Dense,
    DivergenceError,
    Dropout,
    Flatten,
    MaxPool2D,
    ReLU,
    Sequential,
    Tanh,
    convnet,
    lenet5,
    load,
)


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def torch_sequential(torch, model):
    """The torch.nn.Sequential equivalent of ``model``, holding the same weights."""
    nn = torch.nn
    mods = []
    for layer in model.layers:
        if isinstance(layer, Conv2D):
            mods.append(nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                                  stride=layer.stride, padding=layer.padding,
                                  dilation=layer.dilation, bias=layer.bias is not None))
        elif isinstance(layer, MaxPool2D):
            mods.append(nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding))
        elif isinstance(layer, Dense):
            mods.append(nn.Linear(layer.in_features, layer.out_features,
                                  bias=layer.bias is not None))
        elif isinstance(layer, Dropout):
            mods.append(nn.Dropout(layer.p))
        else:
            mods.append({ReLU: nn.ReLU, Flatten: nn.Flatten}[type(layer)]())
    net = nn.Sequential(*mods)
    if model.dtype == np.float64:
        net = net.double()
    tparams = list(net.parameters())
    assert len(tparams) == len(model.parameters())
    with torch.no_grad():
        for tp, p in zip(tparams, model.parameters()):
            tp.copy_(torch.from_numpy(p.data.copy()))
    return net


def weights(model):
    return [p.data.copy() for p in model.parameters()]


def optimizer_state(model):
    return {k: np.array(v, copy=True) for k, v in model.optimizer.state_dict().items()}


def assert_same_arrays(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


TOL = {"float32": 1e-5, "float64": 1e-10}


def rounding_noise(tgrads):
    """Entries whose gradient was, at some step, under 1e-4 of its tensor's largest.

    There float32 rounding (about 1e-7 of the largest term) is a sizeable part
    of the gradient, and Adam, whose update ``lr * m / (sqrt(v) + eps)`` does
    not depend on the gradient's scale, turns that into a change of order
    ``lr``: float32 Adam cannot match torch there to 1e-5, whoever computes
    the gradients (in float64 the same steps agree to about 1e-13).
    """
    masks = [np.zeros(g.shape, bool) for g in tgrads[0]]
    for step in tgrads:
        for m, g in zip(masks, step):
            m |= np.abs(g) < 1e-4 * np.abs(g).max()
    return masks


def assert_params_match_torch(model, net, tol, exempt=None, lr=None):
    """Every parameter within ``tol * max|param|`` of torch's; entries in ``exempt``
    (see :func:`rounding_noise`) within ``6 * lr`` (twice three Adam steps) and only a
    handful of them beyond ``tol``."""
    bad = 0
    for k, (p, tp) in enumerate(zip(model.parameters(), net.parameters())):
        want = tp.detach().numpy()
        err = np.abs(p.data.astype(np.float64) - want)
        if exempt is not None:
            assert err.max() <= 6 * lr, f"{p!r}: max error {err.max():.3g}"
            bad += int((err[exempt[k]] > tol * np.abs(want).max()).sum())
            err = err[~exempt[k]]
        assert err.max() <= tol * np.abs(want).max(), f"{p!r}: max error {err.max():.3g}"
    if exempt is not None:  # a handful of entries at most
        assert bad <= 1e-4 * sum(p.size for p in model.parameters())


def random_batches(n, size=28, seed=0, classes=10, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return (rng.random((n, 1, size, size), dtype=np.float32).astype(dtype),
            rng.integers(0, classes, n))


def make_optimizers(torch, kind, model, net):
    if kind == "sgd":
        return (SGD(model.parameters(), lr=0.05, momentum=0.9),
                torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9))
    return Adam(model.parameters(), lr=1e-3), torch.optim.Adam(net.parameters(), lr=1e-3)


def torch_steps(torch, net, topt, X, y, batch_size=8):
    """Plain torch training steps over consecutive batches; (losses, correct counts,
    gradients of every step)."""
    losses, correct, grads = [], [], []
    for i in range(0, len(X), batch_size):
        xb, yb = torch.from_numpy(X[i:i + batch_size]), torch.from_numpy(y[i:i + batch_size])
        topt.zero_grad()
        out = net(xb)
        loss = torch.nn.functional.cross_entropy(out, yb)
        loss.backward()
        grads.append([tp.grad.numpy().copy() for tp in net.parameters()])
        topt.step()
        losses.append(loss.item())
        correct.append(int((out.argmax(1) == yb).sum()))
    return losses, correct, grads


# ------------------------------------------------------------------ parity with torch


PARITY = [("sgd", "float32"), ("adam", "float32"), ("adam", "float64")]


@pytest.mark.parametrize("kind,dtype", PARITY)
def test_lenet5_steps_match_torch(torch, kind, dtype):
    """Three SGD (lr 0.05, momentum 0.9) or Adam (lr 1e-3) steps on the same batches."""
    model = lenet5(seed=0, dtype=dtype)
    net = torch_sequential(torch, model)
    start = weights(model)
    opt, topt = make_optimizers(torch, kind, model, net)
    X, y = random_batches(24, seed=1, dtype=dtype)
    tlosses, _, tgrads = torch_steps(torch, net, topt, X, y)
    tol = TOL[dtype]
    loss = CrossEntropyLoss()
    for step in range(3):
        xb, yb = X[8 * step:8 * step + 8], y[8 * step:8 * step + 8]
        model.zero_grad()
        out = model.forward(xb)
        assert out.shape == (8, 10) and out.dtype == dtype
        value = loss(out, yb)
        model.backward(loss.backward())
        if step == 0:  # same weights: the gradients agree
            for p, g in zip(model.parameters(), tgrads[0]):
                assert np.abs(p.grad - g).max() <= tol * np.abs(g).max(), p
        opt.step()
        assert abs(value - tlosses[step]) <= tol * tlosses[step]
    exempt = rounding_noise(tgrads) if (kind, dtype) == ("adam", "float32") else None
    assert_params_match_torch(model, net, tol, exempt, lr=1e-3)
    # the three steps moved every parameter far beyond the tolerance
    for p, w in zip(model.parameters(), start):
        assert np.abs(p.data - w).max() > 100 * 1e-5 * np.abs(w).max()


@pytest.mark.parametrize("kind,dtype", PARITY)
def test_lenet5_fit_matches_torch(torch, kind, dtype):
    """The same through ``fit`` on 24 samples: three batches of 8, in order."""
    model = lenet5(seed=0, dtype=dtype)
    net = torch_sequential(torch, model)
    opt, topt = make_optimizers(torch, kind, model, net)
    X, y = random_batches(24, seed=2, dtype=dtype)
    tlosses, tcorrect, tgrads = torch_steps(torch, net, topt, X, y)
    history = model.fit(X, y, epochs=1, batch_size=8, shuffle=False, optimizer=opt,
                        progress=False)
    assert opt.step_count == 3
    exempt = rounding_noise(tgrads) if (kind, dtype) == ("adam", "float32") else None
    assert_params_match_torch(model, net, TOL[dtype], exempt, lr=1e-3)
    assert history.keys() == {"loss", "accuracy"}
    assert history["loss"][0] == pytest.approx(np.mean(tlosses), rel=TOL[dtype])
    assert history["accuracy"] == [sum(tcorrect) / 24]


def test_float64_model_matches_torch(torch):
    """A small float64 network with padding, stride, average pooling and tanh, to 1e-10."""
    model = Sequential([Conv2D(2, 3, 3, stride=2, padding=1, dtype="float64", rng=0), Tanh(),
                        AvgPool2D(2, stride=1), Flatten(), Dense(3 * 3 * 3, 4, dtype="float64",
                                                                   rng=1)])
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, stride=2, padding=1), torch.nn.Tanh(),
                              torch.nn.AvgPool2d(2, stride=1), torch.nn.Flatten(),
                              torch.nn.Linear(27, 4)).double()
    with torch.no_grad():
        for tp, p in zip(net.parameters(), model.parameters()):
            tp.copy_(torch.from_numpy(p.data))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 2, 8, 7))
    dy = rng.standard_normal((5, 4))
    y = model.forward(x)
    dx = model.backward(dy)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = net(xt)
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=0, atol=1e-10 * np.abs(y).max())
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=0, atol=1e-10 * np.abs(dx).max())
    for p, tp in zip(model.parameters(), net.parameters()):
        g = tp.grad.numpy()
        np.testing.assert_allclose(p.grad, g, rtol=0, atol=1e-10 * np.abs(g).max())


# ------------------------------------------------------------------ Sequential


def test_sequential_shapes_and_gradients():
    model = convnet(input_size=8, seed=0)
    x = np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32)
    model.train()
    y = model.forward(x)
    assert y.shape == (3, 10) and y.dtype == np.float32
    assert model.output_shape((1, 8, 8)) == (10,)
    model.zero_grad()
    dx = model.backward(np.ones_like(y))
    assert dx.shape == x.shape and dx.dtype == np.float32
    for p in model.parameters():
        assert p.grad.shape == p.shape and np.isfinite(p.grad).all()
    assert all(p.grad.any() for p in model.parameters())
    # float64 input is converted to the model's dtype
    assert model.forward(x.astype(np.float64)).dtype == np.float32


def test_train_and_eval_propagate_to_dropout():
    model = convnet(input_size=8, seed=0)
    drops = [layer for layer in model.layers if isinstance(layer, Dropout)]
    assert len(drops) == 2
    x = np.random.default_rng(1).random((4, 1, 8, 8), dtype=np.float32)
    assert model.eval() is model
    assert model.training is False and all(not layer.training for layer in model.layers)
    np.testing.assert_array_equal(model.forward(x), model.forward(x))
    assert model.train() is model
    assert model.training is True and all(layer.training for layer in model.layers)
    assert not np.array_equal(model.forward(x), model.forward(x))  # new masks each call
    model.train(False)
    assert all(not d.training for d in drops)


def test_summary_and_repr():
    model = lenet5(seed=0)
    text = model.summary((1, 28, 28))
    total = sum(p.size for p in model.parameters())
    assert total == 61706
    assert text.splitlines()[-1] == f"Total parameters: {total:,} (float32)"
    names = ["Conv2D", "ReLU", "MaxPool2D", "Conv2D", "ReLU", "MaxPool2D", "Flatten", "Dense",
             "ReLU", "Dense", "ReLU", "Dense"]
    rows = text.splitlines()[2:2 + len(names)]
    for i, (row, name, layer) in enumerate(zip(rows, names, model.layers)):
        assert row.startswith(f"{i}: {name} ")
        assert row.split()[-1] == f"{sum(p.size for p in layer.parameters()):,}"
    assert "(None, 6, 28, 28)" in rows[0] and "(None, 16, 5, 5)" in rows[5]
    assert "(None, 400)" in rows[6] and "(None, 10)" in rows[11]
    text = repr(model)
    assert text.startswith("Sequential(\n") and text.endswith("\n)")
    assert "  (0): Conv2D(1, 6, kernel_size=5, padding=2)" in text
    assert "  (7): Dense(400, 120)" in text
    assert text.count("\n") == len(model) + 1
    assert len(model) == 12 and model[2] is model.layers[2]


def test_sequential_construction_errors():
    with pytest.raises(ValueError, match="`layers`"):
        Sequential([])
    with pytest.raises(TypeError, match=r"`layers\[1\]`"):
        Sequential([ReLU(), "dense"])
    with pytest.raises(ValueError, match="`layers`"):
        Sequential([Dense(2, 2), Dense(2, 2, dtype="float64")])
    with pytest.raises(RuntimeError, match="before forward"):
        lenet5(seed=0).backward(np.ones((2, 10), np.float32))


# ------------------------------------------------------------------ fit, evaluate, predict


def test_fit_history_and_validation():
    X, y = random_batches(40, size=8, seed=3)
    model = lenet5(input_size=8, seed=0)
    history = model.fit(X, y, epochs=2, batch_size=16, seed=0, progress=False,
                        validation_data=(X[:10], y[:10]))
    assert history.keys() == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 2 for v in history.values())
    assert all(np.isfinite(v) for v in history["loss"] + history["val_loss"])
    for acc, n in [(history["accuracy"], 40), (history["val_accuracy"], 10)]:
        assert all(0 <= a <= 1 and (a * n) == pytest.approx(round(a * n)) for a in acc)
    # the last val_* is the evaluation of the final weights
    final = model.evaluate(X[:10], y[:10])
    assert history["val_loss"][-1] == final["loss"]
    assert history["val_accuracy"][-1] == final["accuracy"]
    assert isinstance(model.optimizer, Adam) and model.optimizer.step_count == 2 * 3
    history = model.fit(X, y, epochs=1, batch_size=64, progress=False)
    assert history.keys() == {"loss", "accuracy"} and len(history["loss"]) == 1
    assert model.optimizer.step_count == 7  # resumed the same optimizer


def test_fit_learns_digits():
    X, y = cnn.data.load_digits()
    # standardised with the training part's statistics
    mean, std = X[:600].mean(), X[:600].std()
    X = (X - mean) / std
    Xt, yt, Xv, yv = X[:600], y[:600], X[600:900], y[600:900]
    model = lenet5(input_size=8, seed=0)
    before = model.evaluate(Xv, yv)["accuracy"]
    start = time.perf_counter()
    history = model.fit(Xt, yt, epochs=3, batch_size=8, seed=0, progress=False,
                        optimizer=Adam(model.parameters(), lr=3e-3), validation_data=(Xv, yv))
    elapsed = time.perf_counter() - start
    assert before < 0.3
    assert history["val_accuracy"][-1] > 0.8, history
    assert history["loss"][-1] < history["loss"][0]
    assert elapsed < 60  # about 0.2 s on an idle 2-core machine


def test_predict_and_predict_proba_use_eval_mode():
    model = convnet(input_size=8, seed=0)
    X = np.random.default_rng(4).random((11, 1, 8, 8), dtype=np.float32)
    model.train()
    proba = model.predict_proba(X)
    assert proba.shape == (11, 10) and proba.dtype == np.float32
    assert (proba >= 0).all() and (proba <= 1).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_array_equal(model.predict(X), proba.argmax(axis=1))
    np.testing.assert_array_equal(model.predict_proba(X), proba)  # dropout off: repeatable
    np.testing.assert_allclose(model.predict_proba(X, batch_size=4), proba, rtol=1e-5)
    assert model.training and all(layer.training for layer in model.layers)  # mode restored
    model.eval()
    logits = model.forward(X)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(proba, e / e.sum(axis=1, keepdims=True), rtol=1e-6)
    assert model.predict(X).dtype.kind == "i"


# ------------------------------------------------------------------ bad input


BAD_FITS = [
    (lambda X, y: dict(X=X, y=y[:-1]), ValueError, "`y`"),
    (lambda X, y: dict(X=X, y=np.where(np.arange(len(y)) == 3, 10, y)), ValueError, "`y`"),
    (lambda X, y: dict(X=X, y=np.where(np.arange(len(y)) == 0, -1, y)), ValueError, "`y`"),
    (lambda X, y: dict(X=X, y=y.astype(np.float64)), TypeError, "`y`"),
    (lambda X, y: dict(X=np.where(np.arange(X.size).reshape(X.shape) == 5, np.nan, X), y=y),
     ValueError, "`X`"),
    (lambda X, y: dict(X=np.where(np.arange(X.size).reshape(X.shape) == 7, np.inf, X), y=y),
     ValueError, "`X`"),
    (lambda X, y: dict(X=X.astype(np.complex64), y=y), TypeError, "`X`"),
    (lambda X, y: dict(X=X[:, 0], y=y), ValueError, "`x`"),
    (lambda X, y: dict(X=np.repeat(X, 3, axis=1), y=y), ValueError, "`x`"),
    (lambda X, y: dict(X=X[:, :, :, :20], y=y), ValueError, "`x`"),
    (lambda X, y: dict(X=X, y=y, validation_data=(X, np.full_like(y, 10))), ValueError,
     r"`validation_data\[1\]`"),
    (lambda X, y: dict(X=X, y=y, validation_data=(X[:, 0], y)), ValueError, "`x`"),
    (lambda X, y: dict(X=X, y=y, validation_data=X), TypeError, "`validation_data`"),
    (lambda X, y: dict(X=X, y=y, epochs=0), ValueError, "`epochs`"),
    (lambda X, y: dict(X=X, y=y, batch_size=0), ValueError, "`batch_size`"),
    (lambda X, y: dict(X=X, y=y, optimizer="adam"), TypeError, "`optimizer`"),
    (lambda X, y: dict(X=X, y=y, loss="cross_entropy"), TypeError, "`loss`"),
]


@pytest.fixture(scope="module")
def trained():
    """A LeNet-5 after one SGD step (so it has optimizer state), its data and a snapshot."""
    X, y = random_batches(8, seed=5)
    model = lenet5(seed=0)
    model.fit(X, y, epochs=1, batch_size=8, progress=False,
              optimizer=SGD(model.parameters(), lr=0.01, momentum=0.9))
    return model, X, y


@pytest.mark.parametrize("make,exc,match", BAD_FITS)
def test_bad_fit_input_changes_nothing(trained, make, exc, match):
    model, X, y = trained
    w0, s0, opt = weights(model), optimizer_state(model), model.optimizer
    with pytest.raises(exc, match=match):
        model.fit(**make(X, y), progress=False)
    assert model.optimizer is opt
    assert_same_arrays(weights(model), w0)
    assert_same_state(optimizer_state(model), s0)


def test_fit_with_another_models_optimizer_changes_nothing(trained):
    model, X, y = trained
    w0 = weights(model)
    with pytest.raises(ValueError, match="`optimizer`"):
        model.fit(X, y, optimizer=SGD(lenet5(seed=1).parameters(), lr=0.1), progress=False)
    assert_same_arrays(weights(model), w0)


@pytest.mark.parametrize("cls", [SGD, Adam])
@pytest.mark.parametrize("lr", [0, -0.1, float("nan"), float("inf")])
def test_non_positive_lr_is_refused(cls, lr):
    model = lenet5(seed=0)
    with pytest.raises(ValueError, match="`lr`"):
        cls(model.parameters(), lr=lr)


def test_bad_inference_input(trained):
    model, X, y = trained
    w0 = weights(model)
    with pytest.raises(ValueError, match="`X`"):
        model.predict(np.full_like(X, np.nan))
    with pytest.raises(ValueError, match="`x`"):
        model.predict_proba(X[:, :, :10, :10])
    with pytest.raises(ValueError, match="`y`"):
        model.evaluate(X, np.full_like(y, 10))
    with pytest.raises(ValueError, match="`x`"):
        model.forward(np.full_like(X, np.inf))
    assert_same_arrays(weights(model), w0)


# ------------------------------------------------------------------ divergence


class Recorder:
    """An ``augment`` callable that records the weights and optimizer state each batch
    starts from, and replaces batch number ``poison`` (1-based) with infinities."""

    def __init__(self, model, poison=None):
        self.model, self.poison = model, poison
        self.weights, self.states = [], []

    def __call__(self, xb, rng):
        self.weights.append(weights(self.model))
        self.states.append(optimizer_state(self.model))
        if len(self.weights) == self.poison:
            return np.full_like(xb, np.inf)
        return xb


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_from_an_infinite_batch_keeps_the_last_finite_weights():
    X, y = random_batches(24, size=8, seed=6)
    model = lenet5(input_size=8, seed=0)
    opt = SGD(model.parameters(), lr=0.01, momentum=0.9)
    rec = Recorder(model, poison=5)  # epoch 2, batch 2 (3 batches per epoch)
    with pytest.raises(DivergenceError, match="epoch 2, batch 2") as info:
        model.fit(X, y, epochs=3, batch_size=8, shuffle=False, optimizer=opt, augment=rec,
                  progress=False)
    assert isinstance(info.value, FloatingPointError)
    assert "NaN or infinite" in str(info.value) and "`lr`" in str(info.value)
    # the history holds the completed first epoch only
    assert len(info.value.history["loss"]) == 1 and np.isfinite(info.value.history["loss"][0])
    assert len(rec.weights) == 5
    now = weights(model)
    assert all(np.isfinite(w).all() for w in now)
    # the weights (and optimizer state) the last finite loss was computed with: batch 4's
    assert_same_arrays(now, rec.weights[3])
    assert_same_state(optimizer_state(model), rec.states[3])
    assert opt.step_count == 3
    assert not np.array_equal(now[0], rec.weights[0][0])  # training did happen before
    # training can go on from there
    model.fit(X, y, epochs=1, batch_size=8, shuffle=False, progress=False)
    assert opt.step_count == 6 and all(np.isfinite(w).all() for w in weights(model))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_from_a_huge_learning_rate():
    X, y = random_batches(64, seed=7)
    model = lenet5(seed=0)
    rec = Recorder(model)
    with pytest.raises(DivergenceError, match="diverged") as info:
        model.fit(X, y, epochs=3, batch_size=8, optimizer=SGD(model.parameters(), lr=1e6),
                  seed=0, augment=rec, progress=False)
    m = re.search(r"epoch (\d+), batch (\d+)", str(info.value))
    assert m, str(info.value)
    failed = (int(m.group(1)) - 1) * 8 + int(m.group(2))  # 1-based batch count
    assert failed >= 2 and len(rec.weights) == failed
    now = weights(model)
    assert all(np.isfinite(w).all() for w in now)
    assert_same_arrays(now, rec.weights[failed - 2])
    assert_same_state(optimizer_state(model), rec.states[failed - 2])
    assert not np.array_equal(now[0], rec.weights[failed - 1][0])  # the step was undone


# ------------------------------------------------------------------ save and load


def _trained(kind):
    if kind == "lenet5":
        model = lenet5(input_size=8, seed=0)
        opt = Adam(model.parameters(), lr=1e-3)
    else:
        model = convnet(input_size=8, seed=0)
        opt = SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    X, y = random_batches(16, size=8, seed=8)
    model.fit(X, y, epochs=1, batch_size=8, optimizer=opt, seed=0, progress=False)
    return model


def _continue(model, X, y, optimizer=None):
    """Two more steps in evaluation mode (dropout off, so both copies take the same steps)."""
    opt = optimizer or model.optimizer
    loss = CrossEntropyLoss()
    model.eval()
    for i in (0, 8):
        model.zero_grad()
        loss(model.forward(X[i:i + 8]), y[i:i + 8])
        model.backward(loss.backward())
        opt.step()


@pytest.mark.parametrize("kind", ["lenet5", "convnet"])
def test_save_load_round_trip(tmp_path, kind):
    model = _trained(kind)
    path = tmp_path / "model.npz"
    model.save(path)
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]
    loaded = load(path)
    assert repr(loaded) == repr(model) and loaded.input_shape == model.input_shape
    assert loaded.training is False
    assert_same_arrays(weights(loaded), weights(model))
    X, y = random_batches(16, size=8, seed=9)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert type(loaded.optimizer) is type(model.optimizer)
    assert loaded.optimizer.hyperparameters() == model.optimizer.hyperparameters()
    assert loaded.optimizer.step_count == 2
    assert_same_state(optimizer_state(loaded), optimizer_state(model))
    assert {id(p) for p in loaded.optimizer.params} == {id(p) for p in loaded.parameters()}
    # continuing from the loaded model and optimizer = continuing the original
    fresh = load(path)
    if kind == "lenet5":  # through fit, which resumes the model's optimizer
        for m in (model, loaded):
            m.fit(X, y, epochs=1, batch_size=8, shuffle=False, progress=False)
    else:
        _continue(model, X, y)
        _continue(loaded, X, y)
    assert model.optimizer.step_count == loaded.optimizer.step_count == 4
    assert_same_arrays(weights(loaded), weights(model))
    # ... and the restored state matters: a new optimizer takes other steps
    hp = fresh.optimizer.hyperparameters()
    _continue(fresh, X, y, optimizer=type(fresh.optimizer)(fresh.parameters(), **hp))
    assert not np.array_equal(weights(fresh)[0], weights(model)[0])


def test_save_load_float64_and_untrained(tmp_path):
    model = lenet5(input_size=8, dtype="float64", seed=3)
    model.save(str(tmp_path / "m64.npz"))
    loaded = load(str(tmp_path / "m64.npz"))
    assert loaded.dtype == np.float64 and loaded.optimizer is None
    assert_same_arrays(weights(loaded), weights(model))


def test_save_replaces_an_existing_file_atomically(tmp_path):
    path = tmp_path / "model.npz"
    a, b = lenet5(input_size=8, seed=1), lenet5(input_size=8, seed=2)
    a.save(path)
    b.save(path)
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]
    assert_same_arrays(weights(load(path)), weights(b))


def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    lenet5(input_size=8, seed=1).save(path)
    before = path.read_bytes()

    def broken_savez(file, *args, **kwargs):
        file.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        lenet5(input_size=8, seed=2).save(path)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]
    assert path.read_bytes() == before


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="`path`"):
        load(tmp_path / "nope.npz")


def _bad_files(tmp_path):
    good = tmp_path / "good.npz"
    lenet5(input_size=8, seed=0).save(good)
    data = good.read_bytes()
    rng = np.random.default_rng(0)
    files = {
        "random bytes": rng.integers(0, 256, 5000, dtype=np.uint8).tobytes(),
        "empty": b"",
    }
    for frac in (0.01, 0.3, 0.7, 0.999):
        files[f"truncated to {frac}"] = data[:int(len(data) * frac)]
    out = {}
    for name, content in files.items():
        p = tmp_path / (name.replace(" ", "_") + ".npz")
        p.write_bytes(content)
        out[name] = p
    out["npz with other keys"] = tmp_path / "other.npz"
    np.savez(out["npz with other keys"], weights=np.arange(3.0), labels=np.arange(3))
    out["npy"] = tmp_path / "array.npy"
    np.save(out["npy"], np.arange(3.0))
    out["meta not an object"] = tmp_path / "meta_list.npz"
    np.savez(out["meta not an object"], meta=np.array("[1, 2]"))
    with np.load(good) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["param.0"] = arrays["param.0"][:3]
    out["wrong parameter shape"] = tmp_path / "bad_shape.npz"
    np.savez(out["wrong parameter shape"], **arrays)
    return out


BAD_FILES = ["random bytes", "empty", "truncated to 0.01", "truncated to 0.3",
             "truncated to 0.7", "truncated to 0.999", "npz with other keys", "npy",
             "meta not an object", "wrong parameter shape"]


@pytest.mark.parametrize("name", BAD_FILES)
def test_load_refuses_damaged_files(tmp_path, name):
    files = _bad_files(tmp_path)
    assert sorted(files) == sorted(BAD_FILES)
    with pytest.raises(ValueError, match="`path`"):
        load(files[name])


@pytest.mark.parametrize("act", ["Tanh", "Sigmoid", "ReLU", "LeakyReLU"])
def test_in_place_relu_keeps_every_gradient(act):
    """fit's pass overwrites intermediates with ReLU in place, but never the output a
    Tanh or Sigmoid keeps for its gradient; gradients stay exact."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    layers = [cnn.Dense(6, 5, dtype="float64", rng=1), getattr(cnn, act)(),
              cnn.LeakyReLU(0.1), cnn.Dense(5, 3, dtype="float64", rng=2)]
    model = cnn.Sequential(layers)
    x = rng.standard_normal((4, 6))
    y = np.array([0, 2, 1, 2])
    loss = cnn.CrossEntropyLoss()
    model.zero_grad()
    value = loss(model._run(x.copy()), y)
    model._backward(loss.backward(), input_grad=False)
    t_layers = [torch.nn.Linear(6, 5).double(), getattr(torch.nn, act)(),
                torch.nn.LeakyReLU(0.1), torch.nn.Linear(5, 3).double()]
    with torch.no_grad():
        for t, f in ((t_layers[0], layers[0]), (t_layers[3], layers[3])):
            t.weight.copy_(torch.from_numpy(f.weight.data))
            t.bias.copy_(torch.from_numpy(f.bias.data))
    tmodel = torch.nn.Sequential(*t_layers)
    tloss = torch.nn.functional.cross_entropy(tmodel(torch.from_numpy(x)), torch.from_numpy(y))
    tloss.backward()
    assert value == pytest.approx(tloss.item(), rel=1e-12)
    for f, t in ((layers[0], t_layers[0]), (layers[3], t_layers[3])):
        np.testing.assert_allclose(f.weight.grad, t.weight.grad.numpy(), rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(f.bias.grad, t.bias.grad.numpy(), rtol=1e-10, atol=1e-14)
    assert np.abs(layers[0].weight.grad).max() > 0


@pytest.mark.parametrize("padding", [0, 1])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_relu_before_max_pool_runs_after_it_with_torchs_results(dtype, padding):
    """Sequential runs ReLU -> MaxPool2D as MaxPool2D -> ReLU (a quarter of the work);
    outputs and every gradient stay torch's, also for windows whose values are all
    negative, tied, zero or NaN."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(12)
    conv = cnn.Conv2D(2, 3, 3, padding=1, dtype=dtype, rng=3)
    model = cnn.Sequential([conv, cnn.ReLU(), cnn.MaxPool2D(3, stride=2, padding=padding),
                            cnn.Flatten()])
    assert [type(layer).__name__ for layer in model._plan()] == [
        "Conv2D", "MaxPool2D", "ReLU", "Flatten"]
    x = rng.standard_normal((3, 2, 9, 9)).astype(dtype)
    x[0] = 0.0  # every window all zero
    x[1, :, :4] = -np.abs(x[1, :, :4]) - 5  # strongly negative windows
    x[2, 0, 5, 5] = np.nan
    conv.bias.data[:] = 0.0
    y = model._run(x.copy())  # fit's pass (forward() refuses the NaN)
    dy = rng.standard_normal(y.shape).astype(dtype)
    model.zero_grad()
    dx = model.backward(dy.copy())

    tconv = torch.nn.Conv2d(2, 3, 3, padding=1).to(getattr(torch, dtype))
    with torch.no_grad():
        tconv.weight.copy_(torch.from_numpy(conv.weight.data))
        tconv.bias.copy_(torch.from_numpy(conv.bias.data))
    tx = torch.from_numpy(x).requires_grad_()
    ty = torch.nn.functional.max_pool2d(torch.relu(tconv(tx)), 3, 2, padding).flatten(1)
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ty.detach().numpy()))
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == "float32" else dict(rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(y, ty.detach().numpy(), **tol)
    np.testing.assert_allclose(dx, tx.grad.numpy(), **tol)
    np.testing.assert_allclose(conv.weight.grad, tconv.weight.grad.numpy(), **tol)
    np.testing.assert_allclose(conv.bias.grad, tconv.bias.grad.numpy(), **tol)
    assert np.abs(dx[~np.isnan(dx)]).max() > 0


def test_leaky_relu_before_max_pool_keeps_its_place():
    model = cnn.Sequential([cnn.LeakyReLU(0.1), cnn.MaxPool2D(2), cnn.ReLU(), cnn.Flatten()])
    assert [type(layer).__name__ for layer in model._plan()] == [
        "LeakyReLU", "MaxPool2D", "ReLU", "Flatten"]


def test_input_shape_must_be_a_sequence():
    with pytest.raises(TypeError, match="`input_shape`"):
        cnn.Sequential([cnn.Flatten()], input_shape=28)
    with pytest.raises(TypeError, match="`input_shape`"):
        cnn.lenet5(seed=0).summary(28)


def test_a_non_finite_gradient_keeps_the_weights_that_gave_a_finite_loss(rng):
    """The loss is finite but a gradient is not: fit stops, and the weights that gave
    that finite loss (the current ones, not an older snapshot) stay."""
    model = cnn.Sequential([cnn.Dense(3, 2, dtype="float64", rng=0)])
    X = rng.standard_normal((8, 3))
    y = np.array([0, 1] * 4)

    class InfOnThirdBackward(cnn.CrossEntropyLoss):
        calls = 0

        def backward(self):
            g = super().backward()
            InfOnThirdBackward.calls += 1
            if InfOnThirdBackward.calls == 3:
                g[0, 0] = np.inf
            return g

    seen = []
    opt = cnn.SGD(model.parameters(), lr=0.1)
    original_step = opt.step

    def step():
        original_step()
        seen.append([p.data.copy() for p in model.parameters()])

    opt.step = step
    with pytest.raises(cnn.DivergenceError, match="a gradient"):
        model.fit(X, y, epochs=1, batch_size=2, optimizer=opt, loss=InfOnThirdBackward(),
                  shuffle=False, progress=False)
    assert len(seen) == 2  # two steps done, the third stopped before its update
    for p, w in zip(model.parameters(), seen[-1]):
        np.testing.assert_array_equal(p.data, w)
