"""SGD and Adam against torch.optim, state_dict round trips and argument checks."""

import io

import numpy as np
import pytest

from filtkit.cnn.optim import SGD, Adam, CosineAnnealingLR, Optimizer
from filtkit.cnn.parameter import Parameter

torch = pytest.importorskip("torch")

SHAPE_SETS = [[(3,), (4, 5)], [(2, 3, 3, 3), (2,), (7, 1)], [(1,), (6, 2)]]

CONFIGS = [
    (SGD, "torch_sgd", {"lr": 0.1}),
    (SGD, "torch_sgd", {"lr": 0.05, "momentum": 0.9}),
    (SGD, "torch_sgd", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    (SGD, "torch_sgd", {"lr": 0.02, "momentum": 0.8, "dampening": 0.3}),
    (SGD, "torch_sgd", {"lr": 0.1, "weight_decay": 0.05}),
    (SGD, "torch_sgd", {"lr": 0.03, "momentum": 0.7, "nesterov": True, "weight_decay": 0.01}),
    (Adam, "torch_adam", {}),
    (Adam, "torch_adam", {"lr": 0.01, "weight_decay": 0.1}),
    # 1 - beta1 >= 0.5 takes torch's other lerp formula
    (Adam, "torch_adam", {"lr": 0.02, "betas": (0.3, 0.99), "eps": 1e-6}),
]
TORCH_OPT = {"torch_sgd": lambda: torch.optim.SGD, "torch_adam": lambda: torch.optim.Adam}
TORCH_BUFFERS = {"torch_sgd": ["momentum_buffer"], "torch_adam": ["exp_avg", "exp_avg_sq"]}


def assert_close(got, want, dtype):
    """Lists of arrays equal to 1e-6 (float32) / 1e-12 (float64) relative to their scale.

    The absolute part (tolerance times the largest magnitude over all the
    arrays) covers entries that cancel to nearly zero, where an ulp of the
    update is a large relative error: the operations are the same as torch's,
    but torch fuses some multiply-adds (one rounding instead of two).
    """
    want = [np.asarray(w) for w in want]
    tol = 1e-6 if dtype == np.float32 else 1e-12
    scale = max(float(np.abs(w).max()) for w in want)
    assert scale > 0
    for g, w in zip(got, want, strict=True):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol * scale)


def make_params(rng, shapes, dtype):
    return [Parameter(rng.standard_normal(s).astype(dtype), name=f"p{i}")
            for i, s in enumerate(shapes)]


def set_grads(rng, params, torch_params=()):
    for p in params:
        p.grad[...] = rng.standard_normal(p.shape)
    for p, t in zip(params, torch_params):
        t.grad = torch.from_numpy(p.grad.copy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shapes", SHAPE_SETS)
@pytest.mark.parametrize("cls,torch_name,kwargs", CONFIGS)
def test_matches_torch(rng, dtype, shapes, cls, torch_name, kwargs):
    params = make_params(rng, shapes, dtype)
    tparams = [torch.nn.Parameter(torch.from_numpy(p.data.copy())) for p in params]
    views = [p.data for p in params]
    opt = cls(params, **kwargs)
    topt = TORCH_OPT[torch_name]()(tparams, **kwargs)
    for step in range(1, 6):
        set_grads(rng, params, tparams)
        grads = [p.grad.copy() for p in params]
        opt.step()
        topt.step()
        assert opt.step_count == step
        for p, v, g in zip(params, views, grads):
            assert p.data is v  # updated in place
            np.testing.assert_array_equal(p.grad, g)  # the gradient is not modified
        assert_close([p.data for p in params], [t.detach().numpy() for t in tparams], dtype)
    state = opt.state_dict()
    n = len(params)
    for b in TORCH_BUFFERS[torch_name]:
        if b == "momentum_buffer" and not kwargs.get("momentum"):
            assert not any(k.startswith(b) for k in state)
            continue
        assert_close([state[f"{b}.{i}"] for i in range(n)],
                     [topt.state[t][b].numpy() for t in tparams], dtype)
    assert state["step"] == 5


def test_sgd_exact_values():
    p = Parameter(np.array([1.0, -1.0]))
    opt = SGD([p], lr=0.5, momentum=0.5, dampening=0.5, weight_decay=1.0)
    p.grad[...] = [1.0, 3.0]
    opt.step()  # g = grad + theta = [2, 2]; buf = g; theta -= 0.5 * buf
    np.testing.assert_array_equal(p.data, [0.0, -2.0])
    opt.step()  # g = [1, 1]; buf = 0.5 * [2, 2] + 0.5 * g = [1.5, 1.5]
    np.testing.assert_array_equal(p.data, [-0.75, -2.75])
    np.testing.assert_array_equal(opt.state_dict()["momentum_buffer.0"], [1.5, 1.5])


def test_adam_first_step_moves_by_lr():
    # m_hat = g and v_hat = g**2 after one step, so each entry moves by lr * sign(g)
    p = Parameter(np.array([0.0, 0.0, 5.0], np.float32))
    opt = Adam([p], lr=0.25, eps=0.0)
    p.grad[...] = [3.0, -0.01, 100.0]
    opt.step()
    np.testing.assert_allclose(p.data, [-0.25, 0.25, 4.75], rtol=1e-6)
    assert p.data.dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls,kwargs", [
    (SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    (SGD, {"lr": 0.1}),
    (Adam, {"lr": 0.01, "betas": (0.8, 0.99), "weight_decay": 0.1}),
])
def test_state_dict_round_trip(rng, dtype, cls, kwargs):
    params = make_params(rng, [(3, 2), (4,), (1, 2, 2)], dtype)
    opt = cls(params, **kwargs)
    for _ in range(3):
        set_grads(rng, params)
        opt.step()
    file = io.BytesIO()
    np.savez(file, **opt.state_dict())
    file.seek(0)
    copies = [Parameter(p.data, name=p.name) for p in params]
    fresh = cls(copies)  # default hyperparameters: load_state_dict must restore them
    fresh.load_state_dict(np.load(file))
    assert fresh.hyperparameters() == opt.hyperparameters()
    assert repr(fresh) == repr(opt)
    assert fresh.step_count == 3
    for _ in range(2):
        set_grads(rng, params)
        for p, c in zip(params, copies):
            c.grad[...] = p.grad
        opt.step()
        fresh.step()
    for p, c in zip(params, copies):
        assert c.data.dtype == dtype
        np.testing.assert_array_equal(c.data, p.data)
    a, b = opt.state_dict(), fresh.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_state_dict_holds_copies_and_plain_values(rng):
    params = make_params(rng, [(2,), (3,)], np.float32)
    opt = Adam(params, lr=0.01)
    set_grads(rng, params)
    opt.step()
    state = opt.state_dict()
    assert sorted(state) == ["betas", "eps", "exp_avg.0", "exp_avg.1", "exp_avg_sq.0",
                             "exp_avg_sq.1", "lr", "step", "weight_decay"]
    assert state["lr"] == 0.01 and state["step"] == 1 and type(state["step"]) is int
    np.testing.assert_array_equal(state["betas"], [0.9, 0.999])
    saved = state["exp_avg.0"].copy()
    state["exp_avg.0"][...] = 99.0
    np.testing.assert_array_equal(opt.state_dict()["exp_avg.0"], saved)
    empty = Adam(params).state_dict()
    np.testing.assert_array_equal(empty.pop("betas"), [0.9, 0.999])
    assert empty == {"lr": 0.001, "eps": 1e-8, "weight_decay": 0.0, "step": 0}


def _bad_states():
    def with_(**changes):
        def edit(state):
            state.update(changes)
            return state
        return edit

    def without(key):
        def edit(state):
            del state[key]
            return state
        return edit

    return [
        (with_(**{"exp_avg.1": np.zeros((4, 3))}), ValueError, r"'exp_avg.1' has shape \(4, 3\)"),
        (with_(**{"exp_avg_sq.0": np.zeros(3)}), ValueError, "'exp_avg_sq.0' has shape"),
        (with_(**{"exp_avg.2": np.zeros(2)}), ValueError, "refers to parameter 2"),
        (with_(**{"momentum_buffer.0": np.zeros(2)}), ValueError, "unexpected key"),
        (without("exp_avg.1"), ValueError, r"parameter\(s\) \[1\]"),
        (without("lr"), ValueError, "lacks"),
        (with_(lr=-1.0), ValueError, "`lr`"),
        (with_(betas=np.array([0.9, 1.5])), ValueError, "`betas`"),
        (with_(step=-1), ValueError, "`step`"),
        (with_(step=2.5), TypeError, "`step`"),
        (with_(step=0), ValueError, "must not hold"),
        (with_(**{"exp_avg.0": np.zeros(2, complex)}), TypeError, "'exp_avg.0'"),
    ]


@pytest.mark.parametrize("edit,exc,match", _bad_states())
def test_load_state_dict_rejects_and_changes_nothing(rng, edit, exc, match):
    params = make_params(rng, [(2,), (3, 4)], np.float64)
    opt = Adam(params, lr=0.01)
    for _ in range(2):
        set_grads(rng, params)
        opt.step()
    before = opt.state_dict()
    other = Adam(make_params(rng, [(2,), (3, 4)], np.float64), lr=0.5)
    set_grads(rng, other.params)
    other.step()
    with pytest.raises(exc, match=match):
        opt.load_state_dict(edit(other.state_dict()))
    after = opt.state_dict()
    assert after.keys() == before.keys()
    for key in before:
        np.testing.assert_array_equal(after[key], before[key])
    assert opt.lr == 0.01 and opt.step_count == 2


def test_sgd_load_requires_all_or_no_momentum_buffers(rng):
    params = make_params(rng, [(2,), (3,)], np.float32)
    opt = SGD(params, lr=0.1, momentum=0.9)
    set_grads(rng, params)
    opt.step()
    state = opt.state_dict()
    del state["momentum_buffer.0"]
    with pytest.raises(ValueError, match=r"`momentum_buffer` buffers .* parameter\(s\) \[0\]"):
        SGD(params).load_state_dict(state)
    del state["momentum_buffer.1"]
    fresh = SGD(params)
    fresh.load_state_dict(state)  # no buffers at all: the next step starts them from g
    assert fresh.momentum == 0.9 and fresh.step_count == 1


@pytest.mark.parametrize(
    "make,exc,match",
    [
        (lambda ps: SGD(ps, lr=-1.0), ValueError,
         r"^`lr` must be a positive finite number, got -1.0$"),
        (lambda ps: SGD(ps, lr=0), ValueError, "`lr` must be a positive"),
        (lambda ps: SGD(ps, lr=float("nan")), ValueError, "`lr`"),
        (lambda ps: SGD(ps, lr=float("inf")), ValueError, "`lr`"),
        (lambda ps: SGD(ps, lr="0.1"), TypeError, "`lr`"),
        (lambda ps: SGD(ps, lr=True), TypeError, "`lr`"),
        (lambda ps: SGD(ps, momentum=-0.1), ValueError, "`momentum` must be a non-negative"),
        (lambda ps: SGD(ps, weight_decay=-1e-4), ValueError, "`weight_decay`"),
        (lambda ps: SGD(ps, dampening=float("nan")), ValueError, "`dampening`"),
        (lambda ps: SGD(ps, nesterov=True), ValueError, "`nesterov` requires `momentum` > 0"),
        (lambda ps: SGD(ps, momentum=0.9, dampening=0.1, nesterov=True), ValueError,
         "`nesterov` requires"),
        (lambda ps: SGD(ps, momentum=0.9, nesterov=1), TypeError, "`nesterov`"),
        (lambda ps: Adam(ps, lr=0.0), ValueError, "`lr`"),
        (lambda ps: Adam(ps, betas=(1.0, 0.999)), ValueError, r"`betas` must be a pair"),
        (lambda ps: Adam(ps, betas=(0.9, -0.1)), ValueError, "`betas`"),
        (lambda ps: Adam(ps, betas=(0.9,)), ValueError, "`betas`"),
        (lambda ps: Adam(ps, betas=0.9), ValueError, "`betas`"),
        (lambda ps: Adam(ps, betas=("a", 0.9)), ValueError, "`betas`"),
        (lambda ps: Adam(ps, eps=-1e-8), ValueError, "`eps`"),
        (lambda ps: Adam(ps, weight_decay=-0.1), ValueError, "`weight_decay`"),
        (lambda ps: SGD([]), ValueError, "`params` must hold at least one"),
        (lambda ps: SGD(iter([])), ValueError, "`params`"),
        (lambda ps: SGD(ps[0]), TypeError, "`params`"),
        (lambda ps: SGD([np.zeros(3)]), TypeError, "`params`"),
        (lambda ps: SGD([ps[0], ps[0]]), ValueError, "same parameter twice"),
        (lambda ps: SGD([Parameter(np.zeros(2, int))]), TypeError, "floating-point"),
    ],
)
def test_invalid_arguments(make, exc, match):
    params = [Parameter(np.zeros(2)), Parameter(np.zeros((2, 2)))]
    with pytest.raises(exc, match=match):
        make(params)


def test_lr_can_be_changed_but_is_checked():
    p = Parameter(np.array([1.0]))
    opt = SGD([p], 0.1)
    opt.lr = 0.5
    p.grad[...] = 1.0
    opt.step()
    np.testing.assert_array_equal(p.data, [0.5])
    with pytest.raises(ValueError, match="`lr`"):
        opt.lr = -0.5
    assert opt.lr == 0.5


def test_step_checks_every_gradient_before_updating():
    a, b = Parameter(np.ones(2)), Parameter(np.ones(3))
    opt = Adam([a, b])
    a.grad[...] = 1.0
    b.grad = np.ones(4)
    with pytest.raises(ValueError, match=r"`grad` of parameter 1 .*shape \(3,\)"):
        opt.step()
    np.testing.assert_array_equal(a.data, [1.0, 1.0])
    assert opt.step_count == 0 and "exp_avg.0" not in opt.state_dict()


def test_non_finite_gradient_is_applied_like_torch():
    p = Parameter(np.array([1.0, 2.0]))
    opt = SGD([p], lr=0.1)
    p.grad[...] = [np.nan, 1.0]
    opt.step()
    assert np.isnan(p.data[0]) and p.data[1] == pytest.approx(1.9)


def test_zero_grad_and_params_list():
    params = [Parameter(np.ones(2), name="w"), Parameter(np.ones(3), name="b")]
    grads = [p.grad for p in params]
    opt = SGD(p for p in params)  # any iterable, kept as a list
    assert opt.params == params
    for p in params:
        p.grad[...] = 3.0
    opt.zero_grad()
    for p, g in zip(params, grads):
        assert p.grad is g
        np.testing.assert_array_equal(p.grad, 0.0)


def test_repr_name_and_rebuild():
    params = [Parameter(np.zeros(2))]
    sgd = SGD(params, lr=0.01, momentum=0.9)
    assert repr(sgd) == "SGD(lr=0.01, momentum=0.9, dampening=0, nesterov=False, weight_decay=0)"
    adam = Adam(params, weight_decay=1e-4)
    assert repr(adam) == "Adam(lr=0.001, betas=(0.9, 0.999), eps=1e-08, weight_decay=0.0001)"
    assert (SGD.name, Adam.name) == ("sgd", "adam")
    assert isinstance(sgd, Optimizer) and isinstance(adam, Optimizer)
    assert sgd.hyperparameters() == {"lr": 0.01, "momentum": 0.9, "dampening": 0.0,
                                     "nesterov": False, "weight_decay": 0.0}
    assert adam.hyperparameters() == {"lr": 0.001, "betas": (0.9, 0.999), "eps": 1e-8,
                                      "weight_decay": 1e-4}
    assert repr(SGD(params, **sgd.hyperparameters())) == repr(sgd)
    assert repr(Adam(params, **adam.hyperparameters())) == repr(adam)


@pytest.mark.parametrize("T_max,eta_min,steps", [(5, 1e-4, 7), (3, 0.05, 3), (1, 1e-3, 2)])
def test_cosine_annealing_matches_torch(T_max, eta_min, steps):
    """The learning rate after each epoch equals torch's scheduler (closed form within
    rounding), and stays at eta_min past T_max."""
    p = Parameter(np.zeros(3))
    opt = SGD([p], lr=0.1)
    sched = CosineAnnealingLR(opt, T_max, eta_min=eta_min)
    tp = torch.nn.Parameter(torch.zeros(3))
    topt = torch.optim.SGD([tp], lr=0.1)
    tsched = torch.optim.lr_scheduler.CosineAnnealingLR(topt, T_max, eta_min=eta_min)
    for epoch in range(steps):
        topt.step()
        tsched.step()
        sched.step()
        expected = eta_min if epoch + 1 >= T_max else topt.param_groups[0]["lr"]
        assert opt.lr == pytest.approx(expected, rel=1e-12, abs=1e-15), epoch


def test_cosine_annealing_default_floor_and_bad_input():
    opt = SGD([Parameter(np.zeros(2))], lr=0.2)
    sched = CosineAnnealingLR(opt, 2)
    sched.step()
    sched.step()
    assert opt.lr == pytest.approx(0.002)  # base_lr / 100, never the 0 SGD would refuse
    with pytest.raises(ValueError, match="`T_max`"):
        CosineAnnealingLR(opt, 0)
    with pytest.raises(ValueError, match="`eta_min`"):
        CosineAnnealingLR(opt, 3, eta_min=-1.0)
    with pytest.raises(TypeError, match="`optimizer`"):
        CosineAnnealingLR("sgd", 3)
