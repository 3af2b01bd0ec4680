"""max_pool / avg_pool against a sliding-window reference and torch."""

import numpy as np
import pytest

from filtkit.signal import avg_pool, max_pool
from tests.reference import naive_pool

CASES = [((8, 8), 2, None), ((9, 7), 2, None), ((3, 10, 11), 3, 2), ((2, 3, 6, 5), (2, 3), (1, 2))]


@pytest.mark.parametrize("shape,size,stride", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pooling_matches_reference(rng, shape, size, stride, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    s2 = np.broadcast_to(size, (2,))
    st2 = s2 if stride is None else np.broadcast_to(stride, (2,))
    got_max = max_pool(x, size, stride=stride)
    got_avg = avg_pool(x, size, stride=stride)
    assert got_max.dtype == dtype and got_avg.dtype == dtype
    np.testing.assert_array_equal(got_max, naive_pool(x, tuple(s2), tuple(st2), np.max))
    # float32 sums in float32, as torch does: error relative to the window's values
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(got_avg, naive_pool(x, tuple(s2), tuple(st2), np.mean),
                               rtol=tol, atol=tol * float(np.abs(x).max()))


def test_pooling_matches_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 3, 11, 10))
    t = torch.from_numpy(x)
    for k, s in [(2, None), (3, 2), (2, 1)]:
        np.testing.assert_allclose(max_pool(x, k, stride=s),
                                   torch.nn.functional.max_pool2d(t, k, s).numpy())
        np.testing.assert_allclose(avg_pool(x, k, stride=s),
                                   torch.nn.functional.avg_pool2d(t, k, s).numpy(), rtol=1e-12)


def test_max_pool_nan_propagates():
    x = np.arange(16.0).reshape(4, 4)
    x[0, 1] = np.nan
    x[3, 3] = np.nan
    got = max_pool(x)
    assert np.isnan(got[0, 0]) and np.isnan(got[1, 1])
    assert got[0, 1] == 7.0 and got[1, 0] == 13.0


def test_integer_input_by_value():
    x = np.array([[250, 251], [252, 253]], dtype=np.uint8)
    assert avg_pool(x)[0, 0] == 251.5
    assert max_pool(x).dtype == np.float64


@pytest.mark.parametrize(
    "call,exc,name",
    [
        (lambda: max_pool(np.ones(4)), ValueError, "`x`"),
        (lambda: max_pool(np.ones((4, 4)), 0), ValueError, "`size`"),
        (lambda: max_pool(np.ones((4, 4)), 5), ValueError, "`size`"),
        (lambda: avg_pool(np.ones((4, 4)), 2, stride=0), ValueError, "`stride`"),
        (lambda: avg_pool(np.ones((4, 4)), 2.0), TypeError, "`size`"),
        (lambda: avg_pool(np.ones((4, 4), complex)), TypeError, "`x`"),
    ],
)
def test_bad_input(call, exc, name):
    with pytest.raises(exc, match=name):
        call()
