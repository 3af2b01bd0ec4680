"""CrossEntropyLoss and MSELoss against torch, finite differences and exact values."""

import numpy as np
import pytest

from filtkit.cnn.losses import CrossEntropyLoss, MSELoss

torch = pytest.importorskip("torch")
F = torch.nn.functional

TOL = {np.float32: dict(rtol=1e-5, atol=1e-7), np.float64: dict(rtol=1e-10, atol=1e-15)}


def torch_cross_entropy(logits, target):
    t = torch.from_numpy(logits.copy()).requires_grad_(True)
    loss = F.cross_entropy(t, torch.from_numpy(target.astype(np.int64)))
    loss.backward()
    return loss.item(), t.grad.numpy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,k,scale", [(1, 1, 1.0), (1, 4, 1.0), (5, 3, 1.0), (17, 10, 3.0),
                                       (8, 6, 60.0)])
def test_cross_entropy_matches_torch(rng, dtype, n, k, scale):
    logits = (scale * rng.standard_normal((n, k))).astype(dtype)
    target = rng.integers(0, k, n)
    ce = CrossEntropyLoss()
    got = ce(logits, target)
    grad = ce.backward()
    want, want_grad = torch_cross_entropy(logits, target)
    assert isinstance(got, float)
    assert grad.dtype == dtype and grad.shape == (n, k)
    np.testing.assert_allclose(got, want, **TOL[dtype])
    np.testing.assert_allclose(grad, want_grad, **TOL[dtype])
    # each row of (softmax - onehot) / N sums to zero
    np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=1e-6 if dtype == np.float32 else 1e-15)


def test_cross_entropy_exact_values_and_stability():
    ce = CrossEntropyLoss()
    # uniform logits: log(K) whatever the label
    assert ce(np.zeros((3, 4)), np.array([0, 1, 3])) == pytest.approx(np.log(4.0), rel=1e-15)
    np.testing.assert_allclose(ce.backward(), (0.25 - np.eye(4)[[0, 1, 3]]) / 3, rtol=1e-15)
    # huge logits: a naive softmax overflows, the stable one gives 0 and 1000
    logits = np.array([[1000.0, 0.0], [-1000.0, 0.0]])
    assert ce(logits, np.array([0, 0])) == 500.0
    np.testing.assert_array_equal(ce.backward(), [[0.0, 0.0], [-0.5, 0.5]])
    # float32 with huge logits stays finite as well
    assert ce(logits.astype(np.float32), np.array([0, 0])) == 500.0


def test_cross_entropy_finite_difference_gradient(rng):
    n, k, h = 6, 5, 1e-5
    logits = rng.standard_normal((n, k))
    target = rng.integers(0, k, n)
    ce = CrossEntropyLoss()
    ce(logits, target)
    grad = ce.backward()
    numeric = np.empty_like(logits)
    for idx in np.ndindex(logits.shape):
        up, down = logits.copy(), logits.copy()
        up[idx] += h
        down[idx] -= h
        numeric[idx] = (CrossEntropyLoss()(up, target) - CrossEntropyLoss()(down, target)) / (2 * h)
    rel = np.linalg.norm(grad - numeric) / np.linalg.norm(grad + numeric)
    assert rel < 1e-6


def test_cross_entropy_accepts_lists_and_unsigned_labels():
    logits = np.array([[0.5, -1.0, 2.0], [1.0, 1.0, 0.0]])
    want = CrossEntropyLoss()(logits, np.array([2, 0]))
    assert CrossEntropyLoss()(logits.tolist(), [2, 0]) == want
    assert CrossEntropyLoss()(logits, np.array([2, 0], np.uint8)) == want


def test_cross_entropy_keeps_its_own_copy_of_the_target():
    ce = CrossEntropyLoss()
    target = np.array([0, 1])
    ce(np.array([[1.0, 0.0], [0.0, 1.0]]), target)
    before = ce.backward()
    target[:] = [1, 0]
    np.testing.assert_array_equal(ce.backward(), before)


def test_float16_logits_become_float32():
    ce = CrossEntropyLoss()
    ce(np.zeros((2, 3), np.float16), [0, 1])
    assert ce.backward().dtype == np.float32


@pytest.mark.parametrize(
    "logits,target,exc,match",
    [
        (np.zeros(3), [0], ValueError, "`logits`"),
        (np.zeros((2, 3, 1)), [0, 1], ValueError, "`logits`"),
        (np.zeros((0, 3)), np.zeros(0, int), ValueError, "`logits`"),
        (np.zeros((2, 0)), [0, 0], ValueError, "`logits`"),
        (np.array([[0.0, np.nan], [0.0, 0.0]]), [0, 1], ValueError, "`logits` must be finite"),
        (np.array([[0.0, np.inf], [0.0, 0.0]]), [0, 1], ValueError, "`logits` must be finite"),
        (np.zeros((2, 3), complex), [0, 1], TypeError, "`logits`"),
        (np.zeros((2, 3)), [0, 3], ValueError, r"`target`.*\[0, 3\).*0 to 3"),
        (np.zeros((2, 3)), [-1, 2], ValueError, r"`target`.*\[0, 3\).*-1 to 2"),
        (np.zeros((2, 3)), [0, 1, 2], ValueError, r"`target` must have shape \(2,\)"),
        (np.zeros((2, 3)), [[0, 1]], ValueError, r"`target` must have shape \(2,\)"),
        (np.zeros((2, 3)), [0.0, 1.0], TypeError, "`target` must hold integer"),
        (np.zeros((2, 3)), [True, False], TypeError, "`target` must hold integer"),
    ],
)
def test_cross_entropy_validation(logits, target, exc, match):
    ce = CrossEntropyLoss()
    ce(np.array([[2.0, 0.0, 1.0]]), [1])
    before = ce.backward()
    with pytest.raises(exc, match=match):
        ce(logits, target)
    # a rejected call leaves the previous forward's state in place
    np.testing.assert_array_equal(ce.backward(), before)


@pytest.mark.parametrize("loss", [CrossEntropyLoss(), MSELoss()])
def test_backward_before_forward(loss):
    with pytest.raises(RuntimeError, match="before computing the loss"):
        type(loss)().backward()


def test_repr_and_names():
    assert repr(CrossEntropyLoss()) == "CrossEntropyLoss()"
    assert repr(MSELoss()) == "MSELoss()"
    assert CrossEntropyLoss.name == "cross_entropy"
    assert MSELoss.name == "mse"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1,), (7,), (4, 3), (2, 3, 4, 5)])
def test_mse_matches_torch(rng, dtype, shape):
    pred = rng.standard_normal(shape).astype(dtype)
    target = rng.standard_normal(shape).astype(dtype)
    mse = MSELoss()
    got = mse(pred, target)
    grad = mse.backward()
    t = torch.from_numpy(pred.copy()).requires_grad_(True)
    want = F.mse_loss(t, torch.from_numpy(target))
    want.backward()
    assert isinstance(got, float)
    assert grad.dtype == dtype and grad.shape == shape
    np.testing.assert_allclose(got, want.item(), **TOL[dtype])
    np.testing.assert_allclose(grad, t.grad.numpy(), **TOL[dtype])


def test_mse_exact_values_and_target_dtype():
    mse = MSELoss()
    assert mse(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[1.0, 0.0], [0.0, 4.0]])) == 3.25
    np.testing.assert_array_equal(mse.backward(), [[0.0, 1.0], [1.5, 0.0]])
    # the target follows the prediction's dtype
    assert mse(np.ones(3, np.float32), np.zeros(3)) == 1.0
    assert mse.backward().dtype == np.float32


@pytest.mark.parametrize(
    "pred,target,match",
    [
        (np.zeros((2, 3)), np.zeros((3, 2)), r"`target` must have the shape of `pred`"),
        (np.zeros(3), np.zeros((1, 3)), r"`target` must have the shape of `pred`"),
        (np.array([0.0, np.nan]), np.zeros(2), "`pred` must be finite"),
        (np.zeros(2), np.array([np.inf, 0.0]), "`target` must be finite"),
        (np.zeros(0), np.zeros(0), "`pred` must not be empty"),
    ],
)
def test_mse_validation(pred, target, match):
    with pytest.raises(ValueError, match=match):
        MSELoss()(pred, target)
