"""A weighted moving average is a 1-D convolution.

A moving average replaces each sample by a weighted mean of its neighbours:

    y[i] = sum_{m=-r}^{r} w[m] x[i - m],     with sum_m w[m] = 1

which is the convolution ``y = x * w`` with ``mode="same"`` (one output per
input, the window centred on the sample).  Weights summing to 1 keep the
level of the signal: a constant stays the same constant.  Here the weights
are triangular, ``w[m] ∝ r + 1 - |m|``, so close neighbours count more than
far ones.  The triangle is itself the full convolution of two boxes (two
11-tap boxes give 11 + 11 - 1 = 21 taps), so it is the same as averaging
twice with a plain box of about half the width.  The triangle is
symmetric, so convolution and correlation give the same result here.

Near the ends the window reaches past the data and *some* value has to be
assumed there, the ``boundary``:

* ``"constant"`` (zeros, the default) pulls both ends towards 0;
* ``"nearest"`` repeats the first and last sample, which keeps the ends level.

The series is a sine wave plus Gaussian noise of standard deviation
``sigma``, with a fixed seed so every run draws the same picture.  Averaging
independent noise samples with weights ``w`` shrinks the noise's
standard deviation by ``sqrt(sum w**2)``; the script prints the predicted and
the measured residual noise.
"""

import numpy as np
from _common import output_dir, plt, save_figure

from filtkit.signal import convolve


def triangular_weights(radius):
    """Weights r+1-|m| for m = -r..r, normalised to sum to 1."""
    w = radius + 1.0 - np.abs(np.arange(-radius, radius + 1))
    return w / w.sum()


def main():
    out = output_dir(__doc__.splitlines()[0])

    rng = np.random.default_rng(42)
    t = np.linspace(0.0, 4.0, 400)  # 4 seconds, 100 samples per second
    clean = np.sin(2 * np.pi * 0.5 * t) + 1.0  # 0.5 Hz, offset so the ends are not near 0
    sigma = 0.3
    noisy = clean + sigma * rng.standard_normal(t.size)

    w = triangular_weights(radius=10)  # 21 taps: 0.2 s window
    smooth = convolve(noisy, w, mode="same", boundary="nearest")
    smooth_zero = convolve(noisy, w, mode="same", boundary="constant")

    if smooth.shape != noisy.shape:
        raise AssertionError("mode='same' must keep the length")
    box = np.full(11, 1 / 11)
    if not np.allclose(w, convolve(box, box, mode="full")):
        raise AssertionError("a triangle should be the convolution of two boxes")
    interior = slice(len(w), -len(w))  # away from the ends, where the boundary matters
    predicted = sigma * np.sqrt(np.sum(w**2))
    measured = np.std(smooth[interior] - clean[interior])
    print(f"noise std: input {sigma:.3f}, predicted after averaging {predicted:.3f}, "
          f"measured {measured:.3f} (one random draw)")

    fig, (ax, ax_w) = plt.subplots(
        1, 2, figsize=(13, 4.2), width_ratios=(4, 1), constrained_layout=True
    )
    ax.plot(t, noisy, ".", color="0.65", markersize=3, label="noisy samples")
    ax.plot(t, clean, "k--", linewidth=1, label="true sine")
    ax.plot(t, smooth_zero, color="tab:red", linewidth=1.2, alpha=0.8,
            label='moving average, boundary="constant" (zeros)')
    ax.plot(t, smooth, color="tab:blue", linewidth=2,
            label='moving average, boundary="nearest"')
    ax.set_xlabel("time (s)")
    ax.set_title(f'convolve(noisy, w, mode="same"): {len(w)}-tap triangular average')
    ax.legend(loc="lower left", fontsize=8)

    ax_w.stem(np.arange(-10, 11), w, basefmt=" ")
    ax_w.set_title("weights w[m]  (sum = 1)")
    ax_w.set_xlabel("offset m")
    save_figure(fig, out, "moving_average.png")


if __name__ == "__main__":
    main()
