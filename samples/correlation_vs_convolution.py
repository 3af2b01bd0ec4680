"""Convolution is correlation with the kernel rotated by 180 degrees.

With the kernel's taps indexed by offsets ``(m, n)`` from its centre,

* correlation slides the kernel over the image as it is:
  ``(x ⋆ w)[i, j] = sum_{m,n} w[m, n] x[i + m, j + n]``;
* convolution reverses the offsets:
  ``(x * w)[i, j] = sum_{m,n} w[m, n] x[i - m, j - n]``.

Renaming ``(m, n) -> (-m, -n)`` in the second sum gives
``sum w[-m, -n] x[i + m, j + n]``: convolving with ``w`` is correlating with
``w[-m, -n]``, the kernel flipped on both axes, i.e. rotated 180 degrees
(``np.rot90(w, 2)`` or ``w[::-1, ::-1]``).

An image of single bright pixels (impulses) makes the difference visible.
For an impulse at ``p``, convolution writes ``w[m]`` at ``p + m``: a copy of
the kernel as it is (the *impulse response*), while correlation writes it at
``p - m``: a rotated copy.  The kernel here is the letter F, which has no
symmetry, so the rotation is plain to see.  For a symmetric kernel (a
Gaussian, a box) the two operations agree; for edge kernels such as Sobel
they differ in sign.

Before plotting, the script checks (and raises if not) that
``convolve(x, w) == correlate(x, rot180(w))`` exactly, on the impulses and on
random noise, and that the impulses reproduce ``w`` (convolution) and
``rot180(w)`` (correlation).
"""

import numpy as np
from _common import output_dir, plt, save_figure

from filtkit.signal import convolve, correlate

# The letter F: no rotation or mirror maps it onto itself.
F = np.array(
    [
        [1.0, 1.0, 1.0, 1.0, 0.0],
        [1.0, 0.0, 0.0, 0.0, 0.0],
        [1.0, 1.0, 1.0, 0.0, 0.0],
        [1.0, 0.0, 0.0, 0.0, 0.0],
        [1.0, 0.0, 0.0, 0.0, 0.0],
    ]
)


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def main():
    out = output_dir(__doc__.splitlines()[0])

    kernel = F * np.linspace(1.0, 0.6, 5)[:, None]  # fade downwards: shows "up" too
    rotated = np.rot90(kernel, 2)  # == kernel[::-1, ::-1]

    image = np.zeros((17, 17))
    impulses = [(4, 4), (11, 11)]
    for i, j in impulses:
        image[i, j] = 1.0

    corr = correlate(image, kernel, mode="same")
    conv = convolve(image, kernel, mode="same")
    corr_rot = correlate(image, rotated, mode="same")

    # The identity, exactly (same arithmetic in the same order), on impulses and on noise.
    check(np.array_equal(conv, corr_rot), "convolve(x, w) != correlate(x, rot180(w))")
    noise = np.random.default_rng(0).standard_normal((20, 24))
    for mode in ("full", "same", "valid"):
        check(
            np.array_equal(
                convolve(noise, kernel, mode=mode), correlate(noise, rotated, mode=mode)
            ),
            f"convolve != correlate(rot180) on noise, mode={mode!r}",
        )
    # Around each impulse, convolution stamps the kernel, correlation its rotation.
    for i, j in impulses:
        window = (slice(i - 2, i + 3), slice(j - 2, j + 3))
        check(np.array_equal(conv[window], kernel), "convolving an impulse must copy w")
        check(np.array_equal(corr[window], rotated), "correlating an impulse must copy rot180(w)")
    print("checked: convolve(x, w) == correlate(x, rot180(w))")

    panels = [
        (image, "input: two impulses"),
        (kernel, "kernel w (the letter F)"),
        (corr, "correlate(x, w)\n(rotated copies)"),
        (conv, "convolve(x, w)\n(upright copies)"),
        (corr_rot, "correlate(x, rot180(w))\n(= convolve(x, w))"),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(16, 3.9), constrained_layout=True)
    for ax, (data, title) in zip(axes, panels, strict=True):
        ax.imshow(data, cmap="magma", vmin=0.0, vmax=1.0)
        ax.set_xticks(np.arange(-0.5, data.shape[1], 1), minor=True)
        ax.set_yticks(np.arange(-0.5, data.shape[0], 1), minor=True)
        ax.grid(which="minor", color="0.3", linewidth=0.3)
        ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
        ax.set_title(title, fontsize=10)
    fig.suptitle("Convolution = correlation with the kernel rotated 180 degrees")
    save_figure(fig, out, "correlation_vs_convolution.png")


if __name__ == "__main__":
    main()
