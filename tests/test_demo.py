"""``filtkit demo``: every filter against scikit-image, and the gallery PNG."""

import re

import imageio.v3 as iio
import numpy as np

from filtkit import cli
from filtkit._demo import run_demo
from filtkit.signal.filters import FILTERS

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TILE_H, TILE_W = 176 + 18, 176  # _tile's default size plus the label strip


def _check_gallery(path, rows):
    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    gallery = iio.imread(path)
    assert gallery.dtype == np.uint8
    # one row per photo: the original, then one tile per filter
    assert gallery.shape == (rows * TILE_H, (1 + len(FILTERS)) * TILE_W, 3)
    assert gallery.std() > 10  # pictures, not a blank canvas
    return gallery


def test_run_demo_one_image(tmp_path, capsys):
    worst = run_demo(tmp_path, progress=False, images=("camera",))
    out = capsys.readouterr().out
    assert set(worst) == set(FILTERS)
    for name, diff in worst.items():
        assert np.isfinite(diff), name
        assert 0.0 <= diff < 1e-12, (name, diff)
        assert name in out
    _check_gallery(tmp_path / "gallery.png", rows=1)
    # the network part: LeNet-5 trained on the embedded digits, judged on held-out ones
    m = re.search(r"LeNet-5 on (\d+) embedded 8x8 digits: ([\d.]+)% accuracy on (\d+) "
                  r"held-out", out)
    assert m, out
    assert int(m.group(1)) + int(m.group(3)) == 1797
    assert float(m.group(2)) > 90.0


def test_cli_demo_all_images(tmp_path, capsys):
    out_dir = tmp_path / "d"
    assert cli.main(["demo", "--out", str(out_dir)]) == 0
    capsys.readouterr()
    _check_gallery(out_dir / "gallery.png", rows=3)
