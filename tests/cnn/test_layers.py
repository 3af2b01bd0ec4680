"""filtkit.cnn layers against torch.nn, central finite differences and argument checks.

Every layer is run forward and backward beside the torch module holding the
same weights (float32 to 1e-5 and float64 to 1e-10 of the largest reference
value); float64 layers are also checked against central finite differences
of ``sum(out * R)`` for a fixed random ``R``.
"""

import math

import numba
import numpy as np
import pytest

from filtkit import cnn
from filtkit.cnn import (
    AvgPool2D,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    LeakyReLU,
    MaxPool2D,
    ReLU,
    Sigmoid,
    Tanh,
)
from filtkit.cnn.functional import conv_output_size
from filtkit.cnn.losses import CrossEntropyLoss, MSELoss

DTYPES = ["float32", "float64"]
TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-10}


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def assert_rel(got, want, dtype, what=""):
    """``|got - want| <= tol * max|want| + tiny`` elementwise, tol by dtype."""
    dtype = np.dtype(dtype)
    got = np.asarray(got)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    scale = float(np.abs(want).max()) if want.size else 0.0
    err = float(np.abs(got.astype(np.float64) - want).max()) if want.size else 0.0
    bound = TOL[dtype] * scale + np.finfo(dtype).tiny
    assert err <= bound, f"{what}: max error {err:.3g} > {bound:.3g} (scale {scale:.3g})"


def to_torch(torch, a):
    return torch.from_numpy(np.array(a, copy=True))


def copy_params(torch, layer, module):
    params = list(module.parameters())
    assert len(params) == len(layer.parameters())
    with torch.no_grad():
        for p, tp in zip(layer.parameters(), params):
            assert tuple(tp.shape) == p.shape
            tp.copy_(to_torch(torch, p.data))


def check_against_torch(torch, layer, module, x, rng):
    """Forward, input gradient and parameter gradients of ``layer`` vs ``module``."""
    dtype = x.dtype
    if dtype == np.float64:
        module = module.double()
    copy_params(torch, layer, module)
    layer.zero_grad()
    y = layer.forward(x)
    xt = to_torch(torch, x).requires_grad_(True)
    yt = module(xt)
    assert y.dtype == dtype
    assert_rel(y, yt.detach().numpy(), dtype, "forward")
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = layer.backward(dy)
    yt.backward(to_torch(torch, dy))
    assert dx.dtype == dtype
    assert_rel(dx, xt.grad.numpy(), dtype, "input gradient")
    for p, tp in zip(layer.parameters(), module.parameters()):
        assert p.grad.dtype == dtype
        assert_rel(p.grad, tp.grad.numpy(), dtype, f"{p.name} gradient")
    return y, dx


# ------------------------------------------------------------------ Conv2D configurations


def _pair(rng, lo, hi, square):
    if square:
        v = int(rng.integers(lo, hi + 1))
        return v if rng.random() < 0.5 else (v, v)
    return tuple(int(v) for v in rng.integers(lo, hi + 1, 2))


def _conv_configs(count=25, seed=20240611):
    """Random valid Conv2D configurations spanning the ranges the layer supports."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        cfg = dict(
            n=int(rng.integers(1, 9)),
            cin=int(rng.integers(1, 9)),
            cout=int(rng.integers(1, 9)),
            kernel=_pair(rng, 1, 5, rng.random() < 0.6),
            dilation=_pair(rng, 1, 2, rng.random() < 0.8),
            bias=bool(rng.random() < 0.7),
            size=tuple(int(v) for v in rng.integers(3, 13, 2)),
        )
        if rng.random() < 0.3:
            cfg.update(stride=1, padding="same")
        else:
            cfg.update(stride=_pair(rng, 1, 3, rng.random() < 0.6),
                       padding=_pair(rng, 0, 2, rng.random() < 0.6))
        pair = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
        k, s, d = pair(cfg["kernel"]), pair(cfg["stride"]), pair(cfg["dilation"])
        pads = ([dd * (kk - 1) for kk, dd in zip(k, d)] if cfg["padding"] == "same"
                else [2 * p for p in pair(cfg["padding"])])
        sizes = [conv_output_size(*a) for a in zip(cfg["size"], k, s, pads, d)]
        if min(sizes) >= 1:
            out.append(cfg)
    return out


CONV_CONFIGS = _conv_configs()


def test_conv_configurations_cover_the_ranges():
    """The seeded set really holds the cases the parity test is meant to reach."""
    pair = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
    ks = [pair(c["kernel"]) for c in CONV_CONFIGS]
    same = [c for c in CONV_CONFIGS if c["padding"] == "same"]
    explicit = [c for c in CONV_CONFIGS if c["padding"] != "same"]
    assert len(CONV_CONFIGS) == 25
    assert any(k[0] != k[1] for k in ks)
    assert {v for k in ks for v in k} == {1, 2, 3, 4, 5}
    assert any(pair(c["kernel"])[0] % 2 == 0 for c in same)
    assert any(pair(c["kernel"])[0] % 2 == 1 for c in same)
    assert {v for c in explicit for v in pair(c["stride"])} == {1, 2, 3}
    assert {v for c in explicit for v in pair(c["padding"])} == {0, 1, 2}
    assert {v for c in CONV_CONFIGS for v in pair(c["dilation"])} == {1, 2}
    assert {v % 2 for c in CONV_CONFIGS for v in c["size"]} == {0, 1}
    assert {c["bias"] for c in CONV_CONFIGS} == {True, False}
    assert min(c["n"] for c in CONV_CONFIGS) == 1 and max(c["n"] for c in CONV_CONFIGS) >= 6
    assert {1, 8} <= {c["cin"] for c in CONV_CONFIGS} | {c["cout"] for c in CONV_CONFIGS}


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("i", range(len(CONV_CONFIGS)))
def test_conv2d_matches_torch(torch, i, dtype):
    c = CONV_CONFIGS[i]
    rng = np.random.default_rng(i)
    layer = Conv2D(c["cin"], c["cout"], c["kernel"], stride=c["stride"], padding=c["padding"],
                   dilation=c["dilation"], bias=c["bias"], dtype=dtype, rng=rng)
    module = torch.nn.Conv2d(c["cin"], c["cout"], c["kernel"], stride=c["stride"],
                             padding=c["padding"], dilation=c["dilation"], bias=c["bias"])
    x = rng.standard_normal((c["n"], c["cin"]) + c["size"]).astype(dtype)
    y, _ = check_against_torch(torch, layer, module, x, rng)
    assert y.shape[:2] == (c["n"], c["cout"])
    assert y.shape[1:] == layer.output_shape(x.shape[1:])
    if c["padding"] == "same":
        assert y.shape[2:] == c["size"]


# ------------------------------------------------------------------ pooling


def _pool_configs(count=16, seed=7):
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        k = _pair(rng, 1, 3, rng.random() < 0.7)
        kk = k if isinstance(k, tuple) else (k, k)
        stride = None if rng.random() < 0.2 else _pair(rng, 1, 3, rng.random() < 0.7)
        ss = kk if stride is None else (stride if isinstance(stride, tuple) else (stride,) * 2)
        pad = tuple(int(rng.integers(0, q // 2 + 1)) for q in kk)
        size = tuple(int(v) for v in rng.integers(2, 10, 2))
        n_out = [conv_output_size(a, b, c, 2 * d, 1) for a, b, c, d in zip(size, kk, ss, pad)]
        if min(n_out) >= 1:
            out.append(dict(kernel=k, stride=stride, padding=pad, size=size,
                            n=int(rng.integers(1, 4)), c=int(rng.integers(1, 4))))
    return out


POOL_CONFIGS = _pool_configs()


def test_pool_configurations_overlap_and_pad():
    pair = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
    assert any(c["stride"] is None for c in POOL_CONFIGS)
    assert any(c["stride"] is not None and
               any(s < k for s, k in zip(pair(c["stride"]), pair(c["kernel"])))
               for c in POOL_CONFIGS)  # overlapping windows
    assert any(max(c["padding"]) > 0 for c in POOL_CONFIGS)
    assert {v for c in POOL_CONFIGS for v in pair(c["kernel"])} == {1, 2, 3}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("i", range(len(POOL_CONFIGS)))
def test_pool_matches_torch(torch, i, kind, dtype):
    c = POOL_CONFIGS[i]
    rng = np.random.default_rng(100 + i)
    cls, tcls = {"max": (MaxPool2D, torch.nn.MaxPool2d),
                 "avg": (AvgPool2D, torch.nn.AvgPool2d)}[kind]
    layer = cls(c["kernel"], stride=c["stride"], padding=c["padding"])
    module = tcls(c["kernel"], stride=c["stride"], padding=c["padding"])
    x = rng.standard_normal((c["n"], c["c"]) + c["size"]).astype(dtype)
    y, _ = check_against_torch(torch, layer, module, x, rng)
    assert layer.parameters() == []
    assert y.shape[1:] == layer.output_shape(x.shape[1:])


MAXPOOL_TIES = [(2, None, 0), (2, 1, 0), (3, 1, 1), (3, 2, 1), ((2, 3), (1, 2), (1, 1)),
                (3, 3, 1), (1, 1, 0)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k,s,p", MAXPOOL_TIES)
def test_max_pool_ties_route_like_torch(torch, k, s, p, dtype):
    """Integer-valued input: many ties, and the gradient goes exactly where torch's goes."""
    rng = np.random.default_rng(5)
    x = rng.integers(0, 3, (3, 2, 9, 8)).astype(dtype)
    layer = MaxPool2D(k, stride=s, padding=p)
    y = layer.forward(x)
    dy = rng.integers(1, 5, y.shape).astype(dtype)
    dx = layer.backward(dy)
    xt = to_torch(torch, x).requires_grad_(True)
    yt = torch.nn.functional.max_pool2d(xt, k, s, p)
    yt.backward(to_torch(torch, dy))
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(dx, xt.grad.numpy())
    # the routing is not trivial: some windows tie, and the gradient total is kept
    assert dx.sum() == dy.sum()


def test_max_pool_first_maximum_and_padding_never_wins(torch):
    x = np.ones((1, 1, 4, 4))
    layer = MaxPool2D(2, stride=2)
    layer.forward(x)
    dx = layer.backward(np.arange(1.0, 5.0).reshape(1, 1, 2, 2))
    want = np.zeros((4, 4))
    want[0, 0], want[0, 2], want[2, 0], want[2, 2] = 1, 2, 3, 4
    np.testing.assert_array_equal(dx[0, 0], want)
    # all values negative: the zero padding must never be the maximum
    x = -1.0 - np.random.default_rng(0).random((2, 2, 5, 5))
    layer = MaxPool2D(3, stride=2, padding=1)
    y = layer.forward(x)
    assert (y < -1).all()
    want = torch.nn.functional.max_pool2d(to_torch(torch, x), 3, 2, 1).numpy()
    np.testing.assert_array_equal(y, want)


def test_max_pool_nan_propagates_like_torch(torch):
    rng = np.random.default_rng(3)
    x = rng.integers(0, 3, (2, 2, 7, 6)).astype(np.float64)
    x[0, 0, 1, 1] = x[0, 0, 1, 2] = x[1, 1, 4, 4] = np.nan
    for k, s, p in [(2, 2, 0), (3, 1, 1), (3, 2, 1)]:
        layer = MaxPool2D(k, stride=s, padding=p)
        y = layer.forward(x)
        dy = rng.standard_normal(y.shape)
        dx = layer.backward(dy)
        xt = to_torch(torch, x).requires_grad_(True)
        yt = torch.nn.functional.max_pool2d(xt, k, s, p)
        yt.backward(to_torch(torch, dy))
        assert np.isnan(y).any()
        np.testing.assert_array_equal(y, yt.detach().numpy())
        np.testing.assert_array_equal(dx, xt.grad.numpy())


def test_avg_pool_counts_padding_in_the_mean():
    layer = AvgPool2D(3, stride=1, padding=1)
    y = layer.forward(np.ones((1, 1, 3, 3)))
    want = np.array([[4, 6, 4], [6, 9, 6], [4, 6, 4]]) / 9
    np.testing.assert_allclose(y[0, 0], want, rtol=1e-15)
    dx = layer.backward(np.ones((1, 1, 3, 3)))
    np.testing.assert_allclose(dx[0, 0], want, rtol=1e-15)


# ------------------------------------------------------------------ dense, flatten, activations


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,fin,fout,bias", [(1, 1, 1, True), (5, 7, 3, True), (8, 16, 10, False),
                                             (3, 40, 12, True)])
def test_dense_matches_torch(torch, n, fin, fout, bias, dtype):
    rng = np.random.default_rng(fin * 100 + fout)
    layer = Dense(fin, fout, bias=bias, dtype=dtype, rng=rng)
    x = rng.standard_normal((n, fin)).astype(dtype)
    y, _ = check_against_torch(torch, layer, torch.nn.Linear(fin, fout, bias=bias), x, rng)
    assert y.shape == (n, fout)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 6), (3, 2, 5)])
def test_flatten_matches_torch(torch, shape, dtype):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(dtype)
    layer = Flatten()
    y, dx = check_against_torch(torch, layer, torch.nn.Flatten(), x, rng)
    np.testing.assert_array_equal(y, x.reshape(shape[0], -1))  # C order over (C, H, W)
    assert dx.shape == shape


ACTIVATIONS = [
    (ReLU, {}, "ReLU", {}),
    (LeakyReLU, {}, "LeakyReLU", {}),
    (LeakyReLU, {"negative_slope": 0.2}, "LeakyReLU", {"negative_slope": 0.2}),
    (Sigmoid, {}, "Sigmoid", {}),
    (Tanh, {}, "Tanh", {}),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls,kw,tname,tkw", ACTIVATIONS)
def test_activation_matches_torch(torch, cls, kw, tname, tkw, dtype):
    rng = np.random.default_rng(2)
    x = (3 * rng.standard_normal((4, 3, 5, 5))).astype(dtype)
    x[0, 0, 0, :] = 0.0  # the kink: gradient at exactly 0 must be torch's
    x[1, 1, 1, :2] = [60.0, -60.0]  # saturation without overflow
    y, dx = check_against_torch(torch, cls(**kw), getattr(torch.nn, tname)(**tkw), x, rng)
    assert np.isfinite(y).all() and np.isfinite(dx).all()


def test_activation_gradient_at_zero_is_torchs():
    x = np.array([[-1.0, 0.0, 2.0]])
    relu, leaky = ReLU(), LeakyReLU(0.1)
    relu.forward(x)
    leaky.forward(x)
    np.testing.assert_array_equal(relu.backward(np.ones((1, 3))), [[0.0, 0.0, 1.0]])
    np.testing.assert_array_equal(leaky.backward(np.ones((1, 3))), [[0.1, 0.1, 1.0]])


def test_activations_convert_integer_input_to_float():
    """An int array is not rounded through its own dtype (-10 * 0.1 must be -1, not 0)."""
    y = LeakyReLU(0.1).forward(np.array([[-10, 5]]))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, [[-1.0, 5.0]])
    y = Dropout(0.3, rng=0).forward(np.ones((50, 50), dtype=np.int64))
    assert y.dtype == np.float32
    assert set(np.unique(y).tolist()) == {0.0, np.float32(1 / 0.7)}


# ------------------------------------------------------------------ dropout


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_eval_mode_is_identity(dtype):
    x = np.random.default_rng(0).standard_normal((4, 3, 5, 5)).astype(dtype)
    layer = Dropout(0.5, rng=0).eval()
    assert layer.training is False
    y = layer.forward(x)
    np.testing.assert_array_equal(y, x)
    dy = np.random.default_rng(1).standard_normal(x.shape).astype(dtype)
    np.testing.assert_array_equal(layer.backward(dy), dy)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.1, 0.3, 0.75])
def test_dropout_training_mask(p, dtype):
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((200, 500)) + 0.01).astype(dtype)
    assert (x != 0).all()
    layer = Dropout(p, rng=11)
    assert layer.training is True
    y = layer.forward(x)
    assert y.dtype == dtype
    dropped = y == 0
    rtol = 1e-6 if dtype == "float32" else 1e-15
    np.testing.assert_allclose(y[~dropped], x[~dropped] / (1 - p), rtol=rtol)
    # the fraction of zeros is p: 100,000 draws, standard deviation < 0.0016
    assert abs(dropped.mean() - p) < 0.01
    dy = rng.standard_normal(x.shape).astype(dtype)
    dx = layer.backward(dy)
    assert dx.dtype == dtype
    assert (dx[dropped] == 0).all()
    np.testing.assert_allclose(dx[~dropped], dy[~dropped] / (1 - p), rtol=rtol)
    # a second forward draws a new mask
    assert not np.array_equal(layer.forward(x) == 0, dropped)


def test_dropout_seeded_and_p_zero():
    x = np.ones((30, 40), np.float32)
    a, b, c = Dropout(0.5, rng=3), Dropout(0.5, rng=3), Dropout(0.5, rng=4)
    ya, yb, yc = a.forward(x), b.forward(x), c.forward(x)
    np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(ya, yc)
    assert set(np.unique(ya).tolist()) == {0.0, 2.0}
    zero = Dropout(0.0, rng=0)
    np.testing.assert_array_equal(zero.forward(x), x)
    np.testing.assert_array_equal(zero.backward(2 * x), 2 * x)


# ------------------------------------------------------------------ finite differences


@pytest.fixture
def one_thread():
    """Hundreds of tiny kernel calls: one Numba thread keeps them fast on a busy machine."""
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(before)


def numeric_grad(f, a, eps=1e-6):
    """Central differences of the scalar ``f()`` with respect to every entry of ``a``."""
    g = np.empty_like(a)
    flat, gflat = a.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = f()
        flat[i] = old - eps
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return g


def assert_grad_close(analytic, numeric, what):
    scale = np.abs(numeric).max()
    assert scale > 1e-3, f"{what}: degenerate check (gradient {scale})"
    err = np.abs(analytic - numeric).max() / scale
    assert err < 1e-6, f"{what}: relative error {err:.3g}"


def gradcheck_layer(layer, x, seed=0):
    """Input and parameter gradients of a float64 layer against finite differences."""
    rng = np.random.default_rng(seed)
    y = layer.forward(x)
    r = rng.standard_normal(y.shape)
    f = lambda: float(np.sum(layer.forward(x) * r))  # noqa: E731
    layer.zero_grad()
    layer.forward(x)
    dx = layer.backward(r)
    grads = [p.grad.copy() for p in layer.parameters()]
    assert_grad_close(dx, numeric_grad(f, x), f"{layer!r} input")
    for p, g in zip(layer.parameters(), grads):
        assert_grad_close(g, numeric_grad(f, p.data), f"{layer!r} {p.name}")
    return dx


def separated(rng, shape, low=0.1):
    """Random values at least 0.1 away from 0, and from each other (no kinks or ties)."""
    n = int(np.prod(shape))
    v = (rng.permutation(n) - n / 2 + 0.5) * 0.1 + rng.uniform(-0.02, 0.02, n)
    v[np.abs(v) < low] += np.sign(v[np.abs(v) < low] + 1e-9) * low
    return v.reshape(shape)


GRADCHECK_CONV = [
    dict(cin=2, cout=3, k=3, stride=1, padding=1, dilation=1, bias=True, size=(5, 6)),
    dict(cin=3, cout=2, k=(3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2), bias=True,
         size=(7, 6)),
    dict(cin=1, cout=2, k=4, stride=1, padding="same", dilation=1, bias=False, size=(5, 5)),
    dict(cin=2, cout=2, k=2, stride=3, padding=0, dilation=2, bias=True, size=(8, 7)),
]


@pytest.mark.parametrize("c", GRADCHECK_CONV)
def test_conv2d_finite_differences(one_thread, c):
    rng = np.random.default_rng(0)
    layer = Conv2D(c["cin"], c["cout"], c["k"], stride=c["stride"], padding=c["padding"],
                   dilation=c["dilation"], bias=c["bias"], dtype="float64", rng=1)
    x = rng.standard_normal((2, c["cin"]) + c["size"])
    gradcheck_layer(layer, x)


@pytest.mark.parametrize("k,s,p", [(2, None, 0), (3, 1, 1), (3, 2, 1), ((2, 3), (2, 1), (1, 0))])
@pytest.mark.parametrize("cls", [MaxPool2D, AvgPool2D])
def test_pool_finite_differences(one_thread, cls, k, s, p):
    rng = np.random.default_rng(1)
    gradcheck_layer(cls(k, stride=s, padding=p), separated(rng, (2, 2, 5, 6)))


@pytest.mark.parametrize("bias", [True, False])
def test_dense_finite_differences(one_thread, bias):
    rng = np.random.default_rng(2)
    gradcheck_layer(Dense(6, 4, bias=bias, dtype="float64", rng=0), rng.standard_normal((3, 6)))


@pytest.mark.parametrize("layer", [Flatten(), ReLU(), LeakyReLU(), LeakyReLU(0.3), Sigmoid(),
                                   Tanh()], ids=repr)
def test_shape_and_activation_finite_differences(one_thread, layer):
    x = separated(np.random.default_rng(3), (2, 3, 4, 3))
    dx = gradcheck_layer(layer, x)
    if isinstance(layer, (ReLU, LeakyReLU)):
        assert (x < 0).any() and (x > 0).any() and (dx != 0).any()


def test_dropout_finite_differences(one_thread):
    """A fixed seed fixes the mask, so training-mode dropout is a differentiable function."""
    x = np.random.default_rng(4).standard_normal((5, 8))
    r = np.random.default_rng(5).standard_normal((5, 8))
    f = lambda: float(np.sum(Dropout(0.4, rng=7).forward(x) * r))  # noqa: E731
    layer = Dropout(0.4, rng=7)
    y = layer.forward(x)
    assert (y == 0).any() and (y != 0).any()
    assert_grad_close(layer.backward(r), numeric_grad(f, x), "dropout")


def test_loss_finite_differences(one_thread):
    rng = np.random.default_rng(6)
    logits = 2 * rng.standard_normal((5, 4))
    target = np.array([0, 3, 1, 3, 2])
    ce = CrossEntropyLoss()
    ce(logits, target)
    analytic = ce.backward()
    assert_grad_close(analytic, numeric_grad(lambda: ce(logits, target), logits), "cross entropy")
    pred, tgt = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    mse = MSELoss()
    mse(pred, tgt)
    analytic = mse.backward()
    assert_grad_close(analytic, numeric_grad(lambda: mse(pred, tgt), pred), "mse")


# ------------------------------------------------------------------ bad input


X4 = np.zeros((2, 3, 8, 8), np.float32)

BAD_CALLS = [
    # wrong input ndim / channels / size
    (lambda: Conv2D(3, 2, 3).forward(np.zeros((3, 8, 8), np.float32)), ValueError, "`x`"),
    (lambda: Conv2D(3, 2, 3).forward(np.zeros((2, 1, 3, 8, 8))), ValueError, "`x`"),
    (lambda: Conv2D(2, 2, 3).forward(X4), ValueError, "`x`"),
    (lambda: Conv2D(3, 2, 9).forward(X4), ValueError, "`x`"),
    (lambda: Conv2D(3, 2, 3, dilation=4).forward(X4), ValueError, "`x`"),
    (lambda: Conv2D(3, 2, 3).forward(X4.tolist()), ValueError, "`x`"),
    (lambda: MaxPool2D(2).forward(np.zeros((8, 8))), ValueError, "`x`"),
    (lambda: MaxPool2D(3).forward(np.zeros((1, 1, 2, 2))), ValueError, "`x`"),
    (lambda: AvgPool2D(2, stride=1).forward(np.zeros((1, 1, 1, 5))), ValueError, "`x`"),
    (lambda: Dense(4, 2).forward(np.zeros((3, 5))), ValueError, "`x`"),
    (lambda: Dense(4, 2).forward(np.zeros((3, 4, 1))), ValueError, "`x`"),
    (lambda: Dense(4, 2).forward(np.zeros(4)), ValueError, "`x`"),
    (lambda: Flatten().forward(np.zeros(4)), ValueError, "`x`"),
    # Dropout p
    (lambda: Dropout(1), ValueError, "`p`"),
    (lambda: Dropout(1.5), ValueError, "`p`"),
    (lambda: Dropout(-0.1), ValueError, "`p`"),
    (lambda: Dropout(float("nan")), ValueError, "`p`"),
    (lambda: Dropout("0.5"), TypeError, "`p`"),
    # kernel_size / stride / padding / dilation
    (lambda: Conv2D(1, 1, 0), ValueError, "`kernel_size`"),
    (lambda: Conv2D(1, 1, -3), ValueError, "`kernel_size`"),
    (lambda: Conv2D(1, 1, (3, 0)), ValueError, "`kernel_size`"),
    (lambda: Conv2D(1, 1, 2.5), TypeError, "`kernel_size`"),
    (lambda: Conv2D(1, 1, (3, 3, 3)), ValueError, "`kernel_size`"),
    (lambda: Conv2D(1, 1, 3, stride=0), ValueError, "`stride`"),
    (lambda: Conv2D(1, 1, 3, stride=-1), ValueError, "`stride`"),
    (lambda: Conv2D(1, 1, 3, stride=1.0), TypeError, "`stride`"),
    (lambda: Conv2D(1, 1, 3, padding=-1), ValueError, "`padding`"),
    (lambda: Conv2D(1, 1, 3, padding=1.5), TypeError, "`padding`"),
    (lambda: Conv2D(1, 1, 3, padding="same", stride=2), ValueError, "`padding`"),
    (lambda: Conv2D(1, 1, 3, padding="full"), ValueError, "`padding`"),
    (lambda: Conv2D(1, 1, 3, dilation=0), ValueError, "`dilation`"),
    (lambda: MaxPool2D(0), ValueError, "`kernel_size`"),
    (lambda: MaxPool2D(-2), ValueError, "`kernel_size`"),
    (lambda: MaxPool2D(2.0), TypeError, "`kernel_size`"),
    (lambda: AvgPool2D(2, stride=0), ValueError, "`stride`"),
    (lambda: AvgPool2D(2, stride=-1), ValueError, "`stride`"),
    (lambda: AvgPool2D(2, stride=0.5), TypeError, "`stride`"),
    (lambda: MaxPool2D(3, padding=2), ValueError, "`padding`"),
    (lambda: AvgPool2D(2, padding=-1), ValueError, "`padding`"),
    # channels, features, dtype, bias, rng, slope
    (lambda: Conv2D(0, 1, 3), ValueError, "`in_channels`"),
    (lambda: Conv2D(1, -1, 3), ValueError, "`out_channels`"),
    (lambda: Dense(0, 2), ValueError, "`in_features`"),
    (lambda: Dense(2, 1.0), TypeError, "`out_features`"),
    (lambda: Conv2D(1, 1, 3, dtype="int32"), ValueError, "`dtype`"),
    (lambda: Conv2D(1, 1, 3, dtype=np.float16), ValueError, "`dtype`"),
    (lambda: Dense(2, 2, dtype="int32"), ValueError, "`dtype`"),
    (lambda: Conv2D(1, 1, 3, bias=1), TypeError, "`bias`"),
    (lambda: Dense(2, 2, rng="seed"), TypeError, "`rng`"),
    (lambda: LeakyReLU("0.1"), TypeError, "`negative_slope`"),
]


@pytest.mark.parametrize("call,exc,match", BAD_CALLS)
def test_bad_arguments_raise_naming_the_parameter(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


LAYER_FACTORIES = {
    "Conv2D": lambda: Conv2D(3, 2, 3, rng=0), "MaxPool2D": lambda: MaxPool2D(2),
    "AvgPool2D": lambda: AvgPool2D(2), "Dense": lambda: Dense(3, 2, rng=0),
    "Flatten": lambda: Flatten(), "ReLU": lambda: ReLU(), "LeakyReLU": lambda: LeakyReLU(),
    "Sigmoid": lambda: Sigmoid(), "Tanh": lambda: Tanh(), "Dropout": lambda: Dropout(0.5, rng=0),
}
INPUTS = {Dense: np.ones((2, 3), np.float32)}


@pytest.mark.parametrize("make", LAYER_FACTORIES.values(), ids=LAYER_FACTORIES.keys())
def test_backward_before_forward_raises(make):
    layer = make()
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.ones((2, 3, 4, 4), np.float32))


@pytest.mark.parametrize("make", LAYER_FACTORIES.values(), ids=LAYER_FACTORIES.keys())
def test_backward_with_wrong_shape_raises(make):
    """A ``dy`` that is not the output's shape is refused (the kernels index by it)."""
    layer = make()
    x = INPUTS.get(type(layer), np.ones((2, 3, 4, 4), np.float32))
    y = layer.forward(x)
    for shape in [(1,) + y.shape[1:], y.shape[:-1] + (y.shape[-1] + 1,), y.shape[:-1]]:
        with pytest.raises(ValueError, match="`dy`"):
            layer.backward(np.ones(shape, np.float32))
    assert layer.backward(np.ones(y.shape, np.float32)).shape == x.shape


# ------------------------------------------------------------------ repr, parameters, init


REPRS = [
    (lambda: Conv2D(1, 4, 3, padding=1), "Conv2D(1, 4, kernel_size=3, padding=1)"),
    (lambda: Conv2D(3, 8, (3, 2), stride=(1, 2), padding=(0, 1), dilation=2, bias=False,
                    dtype="float64"),
     "Conv2D(3, 8, kernel_size=(3, 2), stride=(1, 2), padding=(0, 1), dilation=2, bias=False, "
     "dtype='float64')"),
    (lambda: Conv2D(2, 2, 4, padding="same"), "Conv2D(2, 2, kernel_size=4, padding='same')"),
    (lambda: MaxPool2D(2), "MaxPool2D(kernel_size=2)"),
    (lambda: MaxPool2D(3, stride=1, padding=1), "MaxPool2D(kernel_size=3, stride=1, padding=1)"),
    (lambda: AvgPool2D((2, 3), stride=(2, 3)), "AvgPool2D(kernel_size=(2, 3))"),
    (lambda: Dense(120, 84), "Dense(120, 84)"),
    (lambda: Dense(3, 2, bias=False, dtype="float64"), "Dense(3, 2, bias=False, dtype='float64')"),
    (lambda: Dropout(0.25), "Dropout(p=0.25)"),
    (lambda: Flatten(), "Flatten()"),
    (lambda: ReLU(), "ReLU()"),
    (lambda: LeakyReLU(), "LeakyReLU(negative_slope=0.01)"),
    (lambda: Sigmoid(), "Sigmoid()"),
    (lambda: Tanh(), "Tanh()"),
]


@pytest.mark.parametrize("make,text", REPRS)
def test_repr(make, text):
    assert repr(make()) == text


@pytest.mark.parametrize("bias", [True, False])
def test_parameters_and_zero_grad(bias):
    conv = Conv2D(2, 3, (3, 2), bias=bias, rng=0)
    params = conv.parameters()
    assert [p.name for p in params] == (["weight", "bias"] if bias else ["weight"])
    assert params[0] is conv.weight and conv.parameters()[0] is params[0]
    assert params[0].shape == (3, 2, 3, 2)
    if bias:
        assert params[1].shape == (3,)
    else:
        assert conv.bias is None
    assert all(p.dtype == np.float32 and not p.grad.any() for p in params)
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 5)).astype(np.float32)
    conv.backward(np.ones_like(conv.forward(x)))
    assert all(p.grad.any() for p in params)
    conv.zero_grad()
    assert all(p.grad.shape == p.shape and not p.grad.any() for p in params)
    for layer in [MaxPool2D(2), AvgPool2D(2), Flatten(), ReLU(), Dropout(), Tanh()]:
        assert layer.parameters() == []
    assert [p.name for p in Dense(3, 2, bias=bias).parameters()] == [p.name for p in params]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("make,shape", [
    (lambda dt: Conv2D(2, 3, (3, 2), stride=2, padding=1, dtype=dt, rng=0), (2, 2, 7, 6)),
    (lambda dt: Dense(5, 4, dtype=dt, rng=0), (3, 5)),
])
def test_gradients_accumulate_until_zero_grad(make, shape, dtype):
    layer = make(dtype)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    y = layer.forward(x)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx1 = layer.backward(dy)
    once = [p.grad.copy() for p in layer.parameters()]
    dx2 = layer.backward(dy)
    np.testing.assert_array_equal(dx1, dx2)
    for p, g in zip(layer.parameters(), once):
        assert g.any()
        np.testing.assert_array_equal(p.grad, 2 * g)
    # a different batch adds its own gradient
    x2 = rng.standard_normal(shape).astype(dtype)
    layer.zero_grad()
    layer.forward(x2)
    layer.backward(dy)
    alone = [p.grad.copy() for p in layer.parameters()]
    layer.forward(x)
    layer.backward(dy)
    for p, a, g in zip(layer.parameters(), alone, once):
        np.testing.assert_allclose(p.grad, a + g, rtol=1e-6, atol=1e-6 * np.abs(a + g).max())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("make,fan_in", [
    (lambda dt, r: Conv2D(8, 16, (3, 4), dtype=dt, rng=r), 8 * 3 * 4),
    (lambda dt, r: Conv2D(1, 64, 5, dtype=dt, rng=r), 25),
    (lambda dt, r: Dense(300, 40, dtype=dt, rng=r), 300),
])
def test_seeded_init_is_reproducible_and_within_torch_bound(make, fan_in, dtype):
    a, b, c = make(dtype, 5), make(dtype, 5), make(dtype, 6)
    g = make(dtype, np.random.default_rng(5))
    bound = 1 / math.sqrt(fan_in)
    for pa, pb, pc, pg in zip(a.parameters(), b.parameters(), c.parameters(), g.parameters()):
        assert pa.dtype == dtype
        np.testing.assert_array_equal(pa.data, pb.data)
        np.testing.assert_array_equal(pa.data, pg.data)  # a seed or its Generator
        assert not np.array_equal(pa.data, pc.data)
        assert np.abs(pa.data).max() <= bound
        if pa.size >= 1000:  # uniform over the whole interval, centred on 0
            assert np.abs(pa.data).max() > 0.95 * bound
            assert abs(pa.data.mean()) < 0.1 * bound
    assert not np.array_equal(a.weight.data, make(dtype, None).weight.data)


def test_train_eval_switch_returns_the_layer():
    layer = Dropout(0.5)
    assert layer.eval() is layer and layer.training is False
    assert layer.train() is layer and layer.training is True
    assert layer.train(False).training is False


def test_relu_in_place_only_where_it_can_write():
    """inplace=True overwrites a C-contiguous float array, and falls back to a new
    array (never a silently unchanged one) for any other input."""
    x = np.array([[-1.0, 2.0], [3.0, -4.0]], np.float32)
    relu = cnn.ReLU()
    y = relu.forward(x, inplace=True)
    assert y is x and np.array_equal(x, [[0.0, 2.0], [3.0, 0.0]])
    f = np.asfortranarray(np.array([[-1.0, 2.0], [3.0, -4.0]], np.float32))
    y = relu.forward(f, inplace=True)
    np.testing.assert_array_equal(y, [[0.0, 2.0], [3.0, 0.0]])
    dy = np.asfortranarray(np.ones((2, 2), np.float32))
    np.testing.assert_array_equal(relu.backward(dy, inplace=True), [[0, 1], [1, 0]])


@pytest.mark.parametrize("layer,x", [
    (lambda: cnn.Dense(2, 3, rng=0), np.ones((4, 2), np.complex64)),
    (lambda: cnn.Conv2D(1, 2, 3, rng=0), np.ones((1, 1, 5, 5), np.complex128)),
])
def test_layers_refuse_complex_input(layer, x):
    with pytest.raises(TypeError, match="`x`.*real numeric"):
        layer().forward(x)
