"""An echo is a convolution with an impulse response.

A linear, time-invariant system (a room, a canyon, a delay effect pedal) is
described completely by its *impulse response* ``h``: what comes out when a
single click ``delta[n]`` goes in.  Any input is a sum of scaled, shifted
clicks, ``x[n] = sum_k x[k] delta[n - k]``, so by linearity and time
invariance the output is the same sum of scaled, shifted responses:

    y[n] = sum_k x[k] h[n - k] = (x * h)[n]

Here ``h`` holds a direct path (gain 1 at delay 0) and echoes that come back
every ``D`` samples, each weaker by a factor ``g``:

    h = delta[n] + g delta[n - D] + g^2 delta[n - 2D] + ... + g^E delta[n - E D]

so ``y[n] = x[n] + g x[n - D] + g^2 x[n - 2D] + ...``: the input followed by
fading copies of itself.  ``mode="full"`` keeps the whole tail: the output
is ``len(x) + len(h) - 1`` samples long, longer than the input by exactly
the length of the echo.

The input is a short chirp (a tone sweeping from 400 Hz to 2 kHz under a
smooth window) followed by a single click; the click's output is a copy of
``h`` itself.  The script checks ``convolve(x, h)`` against the sum of
delayed copies written out by hand, and that convolution is commutative.
"""

import numpy as np
from _common import output_dir, plt, save_figure

from filtkit.signal import convolve

RATE = 8000  # samples per second


def chirp(duration, f0, f1):
    """A linear sweep from f0 to f1 Hz under a Hann window."""
    t = np.arange(int(duration * RATE)) / RATE
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * duration))
    return np.sin(phase) * np.hanning(t.size)


def main():
    out = output_dir(__doc__.splitlines()[0])

    x = np.zeros(int(0.1 * RATE))  # 0.1 s of input
    burst = chirp(0.04, 400.0, 2000.0)
    x[: burst.size] = burst
    click_at = int(0.07 * RATE)
    x[click_at] = 1.0

    delay, gain, n_echoes = int(0.15 * RATE), 0.6, 4  # an echo every 0.15 s
    h = np.zeros(n_echoes * delay + 1)
    h[::delay] = gain ** np.arange(n_echoes + 1)  # 1, g, g^2, ...

    y = convolve(x, h, mode="full")

    by_hand = np.zeros(x.size + h.size - 1)
    for k in range(n_echoes + 1):
        by_hand[k * delay : k * delay + x.size] += gain**k * x
    if y.shape != by_hand.shape or not np.allclose(y, by_hand, atol=1e-12):
        raise AssertionError("convolve(x, h) differs from the sum of delayed copies")
    if not np.allclose(y, convolve(h, x, mode="full"), atol=1e-12):
        raise AssertionError("convolution should be commutative: x * h == h * x")
    print(f"input {x.size} samples * response {h.size} samples -> output {y.size} samples")

    t_end = y.size / RATE
    fig, axes = plt.subplots(3, 1, figsize=(12, 7), sharex=True, constrained_layout=True)
    axes[0].plot(np.arange(x.size) / RATE, x, color="tab:blue", linewidth=0.8)
    axes[0].set_title("input x: a chirp, then a click")
    taps = np.flatnonzero(h)
    axes[1].vlines(taps / RATE, 0, h[taps], color="tab:orange", linewidth=2)
    axes[1].plot(taps / RATE, h[taps], "o", color="tab:orange")
    axes[1].axhline(0, color="0.6", linewidth=0.8)
    axes[1].set_title(f"impulse response h: direct path + echoes every {delay / RATE:.2f} s, "
                      f"each {gain} x the one before")
    axes[2].plot(np.arange(y.size) / RATE, y, color="tab:green", linewidth=0.8)
    axes[2].set_title('output y = convolve(x, h, mode="full")')
    axes[2].set_xlabel("time (s)")
    for ax in axes:
        ax.set_xlim(-0.01, t_end)
        ax.set_ylim(-1.15, 1.15)
    fig.suptitle("An echo = convolution of the sound with the room's impulse response")
    save_figure(fig, out, "echo.png")


if __name__ == "__main__":
    main()
