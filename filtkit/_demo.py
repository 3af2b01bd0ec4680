"""``filtkit demo``: every image filter on scikit-image's sample photos.

Filters camera, coins and astronaut with each filter of
:data:`filtkit.signal.filters.FILTERS`, computes scikit-image's own result
(scipy.ndimage's ``uniform_filter`` for ``uniform``, which scikit-image
lacks) on the same input, prints the largest absolute difference per filter,
and writes a before/after gallery PNG.
"""

import os
import time

import numpy as np

from . import signal as fs
from .io import imwrite
from .signal.filters import FILTERS

# name -> (filtkit keyword arguments, scikit-image reference)
_PARAMS = {
    "gaussian": {"sigma": 2.0},
    "uniform": {"size": 5},
    "unsharp_mask": {"radius": 2.0, "amount": 1.5},
    "difference_of_gaussians": {"low_sigma": 1.5},
}
_TAKES_CHANNELS = {"gaussian", "uniform", "unsharp_mask", "difference_of_gaussians"}
_PLANAR = {"sobel_h", "sobel_v", "prewitt_h", "prewitt_v", "scharr_h", "scharr_v", "roberts"}


def _reference(name, image, params, channel_axis):
    """scikit-image's (or scipy.ndimage's) result for the same call."""
    import skimage.filters as skf
    from scipy import ndimage
    from skimage.util import img_as_float

    if name == "uniform":
        size = [params["size"]] * image.ndim
        if channel_axis is not None:
            size[channel_axis] = 1
        return ndimage.uniform_filter(img_as_float(image), size, mode="reflect")
    if name == "unsharp_mask" and channel_axis is not None:
        # skimage 0.26 slices the wrong axis for a negative channel_axis
        channel_axis %= image.ndim
    extra = {"channel_axis": channel_axis} if channel_axis is not None else {}
    return getattr(skf, name)(image, **params, **extra)


def _run_one(name, image, impl):
    """(filtkit result, max |filtkit - reference|) for one filter and image."""
    params = _PARAMS.get(name, {})
    fn = FILTERS[name]
    if image.ndim == 3 and name in _PLANAR:  # 2-D only filters: per channel
        pairs = [_run_one(name, image[..., c], impl) for c in range(image.shape[2])]
        return np.stack([p[0] for p in pairs], -1), max(p[1] for p in pairs)
    channel_axis = -1 if image.ndim == 3 and name in _TAKES_CHANNELS else None
    extra = {"channel_axis": channel_axis} if channel_axis is not None else {}
    t0 = time.perf_counter()
    ours = fn(image, **params, **extra)
    impl["seconds"] += time.perf_counter() - t0
    ref = _reference(name, image, params, channel_axis)
    return ours, float(np.max(np.abs(ours - ref)))


def _display(result):
    """Stretch a filter result to [0, 1] for display (1st-99th percentile)."""
    lo, hi = np.percentile(result, [1, 99])
    if hi <= lo:
        return np.zeros_like(result, dtype=np.float64)
    return np.clip((result - lo) / (hi - lo), 0.0, 1.0)


def _tile(image, size=176, label="", pool=3):
    """Downsample ``image`` with avg_pool, centre it on a labelled tile."""
    rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
    small = fs.avg_pool(np.moveaxis(rgb, -1, 0), pool)
    small = np.moveaxis(small, 0, -1)
    h, w = small.shape[:2]
    tile = np.ones((size + 18, size, 3))
    top, left = 18 + (size - h) // 2, (size - w) // 2
    tile[top : top + h, left : left + w] = small
    if label:
        from PIL import Image, ImageDraw

        pic = Image.fromarray((tile * 255).round().astype(np.uint8))
        ImageDraw.Draw(pic).text((4, 3), label, fill=(0, 0, 0))
        tile = np.asarray(pic) / 255.0
    return tile


def train_digits(*, epochs=20, seed=0, progress=True):
    """Train LeNet-5 on the embedded 8x8 digits for a few seconds.

    Returns ``(held-out accuracy, seconds, training images, held-out images)``;
    20 % of the 1797 digits are held out.
    """
    from . import cnn

    X, y = cnn.data.load_digits()
    Xtr, ytr, Xval, yval = cnn.data.train_val_split(X, y, val_fraction=0.2, seed=seed)
    model = cnn.lenet5(input_size=8, seed=seed)
    t0 = time.perf_counter()
    model.fit(Xtr, ytr, epochs=epochs, batch_size=32, seed=seed, progress=progress,
              optimizer=cnn.Adam(model.parameters(), 3e-3))
    seconds = time.perf_counter() - t0
    return model.evaluate(Xval, yval)["accuracy"], seconds, len(Xtr), len(Xval)


def run_demo(out_dir="filtkit-demo", *, progress=True, images=("camera", "coins", "astronaut"),
             train=True):
    """Run the demo; return ``{filter: max difference from scikit-image}``.

    Parameters
    ----------
    out_dir : str
        Folder for ``gallery.png`` (created if missing).
    progress : bool
        Show a tqdm progress bar (compilation happens on the first steps).
    images : sequence of str
        Names of ``skimage.data`` images.
    train : bool
        Also train a small CNN on the embedded digits and report its accuracy.
    """
    import skimage.data
    from tqdm import tqdm

    os.makedirs(out_dir, exist_ok=True)
    photos = {name: getattr(skimage.data, name)() for name in images}
    worst = {name: 0.0 for name in FILTERS}
    impl = {"seconds": 0.0}
    rows = []
    steps = [(p, f) for p in photos for f in FILTERS]
    bar = tqdm(steps, desc="compiling and filtering", unit="filter", disable=not progress)
    for photo, name in bar:
        bar.set_postfix_str(f"{photo}: {name}")
        if name == next(iter(FILTERS)):
            rows.append([_tile(photos[photo] / 255.0, label=f"{photo} (original)")])
        result, diff = _run_one(name, photos[photo], impl)
        worst[name] = max(worst[name], diff)
        rows[-1].append(_tile(_display(result), label=name))
    bar.close()
    gallery = np.concatenate([np.concatenate(r, axis=1) for r in rows], axis=0)
    path = os.path.join(out_dir, "gallery.png")
    imwrite(path, gallery)

    print(f"{'filter':<26}{'max |filtkit - scikit-image|':>30}")
    for name, diff in worst.items():
        print(f"{name:<26}{diff:>30.3e}")
    print(f"filtkit time (incl. first-call compilation): {impl['seconds']:.2f} s")
    print(f"gallery: {path}")
    if train:
        acc, seconds, n_train, n_val = train_digits(progress=progress)
        print(f"LeNet-5 on {n_train} embedded 8x8 digits: {acc:.1%} accuracy on {n_val} "
              f"held-out digits after {seconds:.1f} s of training (incl. first-call "
              f"compilation)")
    return worst
