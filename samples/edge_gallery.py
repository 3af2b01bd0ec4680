"""A gallery of smoothing and edge filters on three scikit-image photos.

Every panel is a small kernel slid over the image (a correlation or
convolution), sometimes followed by a pointwise step:

* **gaussian** ``(sigma=2)``: weights ``G(u, v) ∝ exp(-(u² + v²) / (2 sigma²))``
  summing to 1; a weighted average that blurs detail finer than ~sigma
  pixels.  It is separable, ``G(u, v) = g(u) g(v)``, so it runs as a 1-D pass
  down the columns and another along the rows.
* **uniform** ``(size=7)``: the plain mean of a 7x7 box.  Its sharp-edged
  window leaves faint blocky ripples a Gaussian does not.
* **unsharp_mask** ``(radius=2, amount=1.5)``: ``x + amount * (x - G * x)``.  The
  difference ``x - G * x`` holds only the fine detail; adding it back makes
  edges crisper.
* **difference_of_gaussians** ``(1, 4)``: ``G_1 * x - G_4 * x``, a band-pass that
  keeps structures between roughly 1 and 4 pixels across.
* **sobel**, **prewitt**, **scharr**: a derivative ``[1, 0, -1]`` along one
  axis times a smoothing ``[1, 2, 1] / 4``, ``[1, 1, 1] / 3`` or
  ``[3, 10, 3] / 16`` along the other, so that noise is averaged before it is
  differentiated.  With ``g_r`` and ``g_c`` the derivatives down the rows and
  along the columns, the panel shows the gradient magnitude
  ``sqrt((g_r² + g_c²) / 2)``: bright where the image changes fast, dark where
  it is flat.  Scharr's weights make the magnitude depend least on the
  edge's direction.
* **roberts**: the 2x2 diagonal differences ``[[1, 0], [0, -1]]`` and
  ``[[0, 1], [-1, 0]]``; the smallest edge detector, and the noisiest.
* **laplace**: ``4 x[i, j] - x[i-1, j] - x[i+1, j] - x[i, j-1] - x[i, j+1]``,
  minus the discrete second derivative ``d²/di² + d²/dj²``.  It is zero on
  flat areas *and* on even ramps, and changes sign across an edge.

The edge filters (sobel ... laplace) work on grey levels: the astronaut is
first turned into luminance ``0.2125 R + 0.7154 G + 0.0721 B``.  (Given an
``(H, W, 3)`` array they would treat it as a 3-D volume and differentiate
across the colour channels too.)  The smoothing filters take
``channel_axis=-1`` and filter each colour channel separately.  Signed
results (difference of Gaussians, Laplacian) are shown with mid-grey at 0.
Each photo is filtered whole and a detail of it is shown.

The script also checks that ``sobel(image, axis=1)`` is nothing but the
correlation of the image with ``kernels.sobel(1) / 4`` (boundary 'reflect').
"""

import numpy as np
from _common import output_dir, plt, save_figure
from skimage import data

from filtkit import signal
from filtkit.signal import kernels

LUMA = np.array([0.2125, 0.7154, 0.0721])  # scikit-image's rgb2gray weights


# Each photo is filtered whole, then a detail is shown so that blur and
# sharpening stay visible at the gallery's small panel size.
CROPS = {
    "camera": np.s_[40:296, 140:396],
    "coins": np.s_[0:150, 0:200],
    "astronaut": np.s_[10:266, 110:366],
}


def photos():
    """(name, image as float in [0, 1], is_colour) for the three photos."""
    for name in CROPS:
        image = getattr(data, name)() / 255.0
        yield name, image, image.ndim == 3


def panels(image, colour):
    """(title, result, kind) per filter; kind says how to display it."""
    grey = image @ LUMA if colour else image
    ch = -1 if colour else None
    return [
        ("original", image, "image"),
        ("gaussian σ=2", signal.gaussian(image, sigma=2, channel_axis=ch), "image"),
        ("uniform 7x7", signal.uniform(image, size=7, channel_axis=ch), "image"),
        ("unsharp_mask", signal.unsharp_mask(image, 2, 1.5, channel_axis=ch), "image"),
        ("difference of\ngaussians σ=1, 4",
         signal.difference_of_gaussians(image, 1, 4, channel_axis=ch), "signed"),
        ("sobel", signal.sobel(grey), "edges"),
        ("prewitt", signal.prewitt(grey), "edges"),
        ("scharr", signal.scharr(grey), "edges"),
        ("roberts", signal.roberts(grey), "edges"),
        ("laplace", signal.laplace(grey), "signed"),
    ]


def show(ax, result, kind):
    """Display one filter result; the crop is applied before calling."""
    if kind == "image":
        ax.imshow(np.clip(result, 0.0, 1.0), cmap="gray", vmin=0.0, vmax=1.0)
    elif kind == "edges":  # magnitudes >= 0: stretch so the top 0.5 % saturate
        ax.imshow(result, cmap="gray", vmin=0.0, vmax=np.percentile(result, 99.5))
    else:  # signed: symmetric limits, 0 is mid-grey
        if result.ndim == 3:
            result = result @ LUMA
        limit = np.percentile(np.abs(result), 99.5)
        ax.imshow(result, cmap="gray", vmin=-limit, vmax=limit)


def main():
    out = output_dir(__doc__.splitlines()[0])

    camera = data.camera()
    by_filter = signal.sobel(camera, axis=1)  # uint8 in, scaled by 1/255 as skimage does
    by_kernel = signal.correlate(camera / 255.0, kernels.sobel(1) / 4, boundary="reflect")
    if not np.allclose(by_filter, by_kernel, atol=1e-12):
        raise AssertionError("sobel(axis=1) should equal correlate with kernels.sobel(1) / 4")

    rows = list(photos())
    n_cols = len(panels(rows[0][1], rows[0][2]))
    fig, axes = plt.subplots(
        len(rows), n_cols, figsize=(2.2 * n_cols, 2.5 * len(rows)), constrained_layout=True
    )
    for row, (name, image, colour) in zip(axes, rows, strict=True):
        for ax, (title, result, kind) in zip(row, panels(image, colour), strict=True):
            show(ax, result[CROPS[name]], kind)
            ax.set_title(title, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(name)
    fig.suptitle("filtkit.signal filters on scikit-image photos")
    save_figure(fig, out, "edge_gallery.png")


if __name__ == "__main__":
    main()
