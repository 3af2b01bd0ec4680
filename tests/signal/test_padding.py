"""pad, output_size and same_padding against np.pad, the seed's formulas and torch's."""

import numpy as np
import pytest

from filtkit.signal import correlate, output_size, pad, same_padding
from tests.reference import BOUNDARIES, np_pad


@pytest.mark.parametrize("mode", BOUNDARIES)
@pytest.mark.parametrize(
    "shape,width",
    [((5,), 2), ((5,), (0, 7)), ((1,), 3), ((4, 3), 1), ((4, 3), ((2, 9), (5, 0))), ((2, 3, 4), 4)],
)
def test_pad_matches_np_pad(rng, mode, shape, width):
    x = rng.standard_normal(shape)
    widths = np.broadcast_to(np.asarray(width, dtype=object), (len(shape), 2)).tolist() \
        if np.ndim(width) < 2 else width
    got = pad(x, width, mode=mode, cval=2.5)
    np.testing.assert_array_equal(got, np_pad(x, widths, mode, cval=2.5))


@pytest.mark.parametrize("mode", ["reflect", "wrap", "nearest", "mirror"])
def test_pad_keeps_integer_dtype(rng, mode):
    x = rng.integers(0, 255, size=(4, 6)).astype(np.uint8)
    got = pad(x, 3, mode=mode)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, np_pad(x, 3, mode))


def test_pad_integer_cval_must_fit():
    x = np.arange(6, dtype=np.uint8).reshape(2, 3)
    np.testing.assert_array_equal(pad(x, 1, cval=7), np.pad(x, 1, constant_values=7))
    for bad in (300, -1, 0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="`cval`"):
            pad(x, 1, cval=bad)


@pytest.mark.parametrize(
    "call,exc,name",
    [
        (lambda: pad(np.ones(3), -1), ValueError, "`width`"),
        (lambda: pad(np.ones((3, 3)), ((1, 1), (1, 1), (1, 1))), ValueError, "`width`"),
        (lambda: pad(np.ones(3), 1.5), TypeError, "`width`"),
        (lambda: pad(np.ones(3), 1, mode="symmetric"), ValueError, "`mode`"),
        (lambda: pad(np.ones(3), 1, cval="a"), TypeError, "`cval`"),
        (lambda: pad(np.ones(3, complex), 1), TypeError, "`x`"),
        (lambda: pad(np.ones(0), 1), ValueError, "`x`"),
        (lambda: pad(np.ones(3), 2**63), ValueError, "`width`"),
    ],
)
def test_pad_bad_input(call, exc, name):
    with pytest.raises(exc, match=name):
        call()


@pytest.mark.parametrize("n", [1, 5, 28, 31])
@pytest.mark.parametrize("k", [1, 2, 3, 5])
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("padding", [0, 1, 2])
@pytest.mark.parametrize("dilation", [1, 2])
def test_output_size_formula(n, k, stride, padding, dilation):
    keff = dilation * (k - 1) + 1
    if keff > n + 2 * padding:
        with pytest.raises(ValueError, match="`k`"):
            output_size(n, k, stride=stride, padding=padding, dilation=dilation)
        return
    got = output_size(n, k, stride=stride, padding=padding, dilation=dilation)
    # count the window starts in the padded input directly
    assert got == len(range(0, n + 2 * padding - keff + 1, stride))
    xp = np.pad(np.ones(n), padding)
    real = correlate(xp, np.ones(k), mode="valid", stride=stride, dilation=dilation)
    assert got == len(real)


def test_output_size_matches_torch():
    torch = pytest.importorskip("torch")
    for n, k, s, p, d in [(28, 5, 1, 0, 1), (28, 3, 2, 1, 1), (9, 3, 3, 2, 2), (7, 2, 1, 0, 3)]:
        conv = torch.nn.Conv2d(1, 1, k, stride=s, padding=p, dilation=d)
        assert conv(torch.zeros(1, 1, n, n)).shape[-1] == output_size(
            n, k, stride=s, padding=p, dilation=d
        )


def test_same_padding_keeps_size():
    for k in (1, 3, 5, 7):
        p = same_padding(k)
        assert p == (k - 1) // 2
        assert output_size(20, k, padding=p) == 20
    assert same_padding(3, dilation=3) == 3
    with pytest.raises(ValueError, match="`k`"):
        same_padding(4)
    with pytest.raises(ValueError, match="`k`"):
        same_padding(0)
    with pytest.raises(TypeError, match="`dilation`"):
        same_padding(3, dilation=1.0)
