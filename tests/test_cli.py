"""The ``filtkit`` command line, run in-process through ``filtkit.cli.main``.

Filter results are compared with scikit-image / scipy.ndimage on
``img_as_float`` of the very pixels written with imageio, converted to uint8 by
``filtkit.io.to_uint8`` (itself checked against numpy in test_io.py).
"""

import os
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest
import skimage.filters as skf
from scipy import ndimage
from skimage.util import img_as_float

from filtkit import cli
from filtkit.io import to_uint8
from filtkit.signal import kernels
from filtkit.signal.filters import FILTERS

GREY_SHAPE = (40, 50)
RGB_SHAPE = (40, 50, 3)


def _write_random(path, shape, seed):
    img = np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)
    iio.imwrite(path, img)
    return img


@pytest.fixture
def grey(tmp_path):
    path = tmp_path / "grey.png"
    return path, _write_random(path, GREY_SHAPE, 101)


@pytest.fixture
def rgb(tmp_path):
    path = tmp_path / "rgb.png"
    return path, _write_random(path, RGB_SHAPE, 102)


def _run_ok(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert err == ""
    return out


def _read(path):
    out = iio.imread(path)
    assert out.dtype == np.uint8
    return out


def _assert_uint8_matches(got, ref):
    """``got`` equals ``to_uint8(ref)``, except at exact rounding ties.

    filtkit agrees with scikit-image to ~1e-16, not bit for bit; edge
    magnitudes of uint8 data often land exactly on k + 0.5 after scaling by
    255, where a last-bit difference may round either way.  Only there (the
    reference within 1e-9 of a tie) is a difference of one allowed.
    """
    expected = to_uint8(ref)
    assert got.shape == expected.shape
    assert got.dtype == np.uint8
    scaled = np.clip(ref, 0.0, 1.0) * 255.0
    tie = np.abs(scaled - np.floor(scaled) - 0.5) < 1e-9
    diff = np.abs(got.astype(np.int16) - expected.astype(np.int16))
    np.testing.assert_array_equal(np.where(tie, 0, diff), 0)
    assert diff.max() <= 1
    assert tie.mean() < 0.05  # the exemption stays an exception


# --------------------------------------------------------------------------- filter


def test_gaussian_grey(tmp_path, grey, capsys):
    src, img = grey
    dst = tmp_path / "out.png"
    out = _run_ok(capsys, "filter", src, dst, "--filter", "gaussian", "--sigma", "2")
    assert out.strip() == str(dst)
    got = _read(dst)
    assert got.shape == GREY_SHAPE
    _assert_uint8_matches(got, skf.gaussian(img_as_float(img), 2))
    assert not np.array_equal(got, img)  # the filter did something


def test_gaussian_rgb(tmp_path, rgb, capsys):
    src, img = rgb
    dst = tmp_path / "out.png"
    _run_ok(capsys, "filter", src, dst, "--filter", "gaussian", "--sigma", "2")
    got = _read(dst)
    assert got.shape == RGB_SHAPE
    _assert_uint8_matches(got, skf.gaussian(img_as_float(img), 2, channel_axis=-1))


def test_gaussian_options_reach_the_filter(tmp_path, grey, capsys):
    src, img = grey
    dst = tmp_path / "out.png"
    _run_ok(
        capsys, "filter", src, dst, "--filter", "gaussian", "--sigma", "1.5",
        "--mode", "constant", "--cval", "0.75", "--truncate", "2",
    )
    ref = skf.gaussian(img_as_float(img), 1.5, mode="constant", cval=0.75, truncate=2)
    _assert_uint8_matches(_read(dst), ref)


def test_sobel_grey(tmp_path, grey, capsys):
    src, img = grey
    dst = tmp_path / "out.png"
    _run_ok(capsys, "filter", src, dst, "--filter", "sobel")
    _assert_uint8_matches(_read(dst), skf.sobel(img_as_float(img)))


def test_convolve_sharpen_reflect(tmp_path, grey, capsys):
    src, img = grey
    dst = tmp_path / "out.png"
    _run_ok(
        capsys, "filter", src, dst, "--filter", "convolve", "--kernel", "sharpen",
        "--mode", "reflect",
    )
    ref = ndimage.convolve(img_as_float(img), kernels.sharpen(), mode="reflect")
    assert (ref < 0).any() and (ref > 1).any()  # the clipping matters
    _assert_uint8_matches(_read(dst), ref)


def test_convolve_asymmetric_kernel_is_flipped(tmp_path, grey, capsys):
    # emboss is not symmetric, so convolve and correlate differ
    src, img = grey
    dst_conv, dst_corr = tmp_path / "conv.png", tmp_path / "corr.png"
    x = img_as_float(img)
    k = kernels.emboss()
    _run_ok(capsys, "filter", src, dst_conv, "--filter", "convolve", "--kernel", "emboss",
            "--mode", "nearest")
    _run_ok(capsys, "filter", src, dst_corr, "--filter", "correlate", "--kernel", "emboss",
            "--mode", "nearest")
    _assert_uint8_matches(_read(dst_conv), ndimage.convolve(x, k, mode="nearest"))
    _assert_uint8_matches(_read(dst_corr), ndimage.correlate(x, k, mode="nearest"))


def test_rescale_stretches_to_full_range(tmp_path, grey, capsys):
    src, img = grey
    plain, stretched = tmp_path / "plain.png", tmp_path / "stretched.png"
    _run_ok(capsys, "filter", src, plain, "--filter", "gaussian", "--sigma", "2")
    _run_ok(capsys, "filter", src, stretched, "--filter", "gaussian", "--sigma", "2",
            "--rescale")
    ref = skf.gaussian(img_as_float(img), 2)
    p, s = _read(plain), _read(stretched)
    assert p.min() > 0 and p.max() < 255  # a blur of noise: narrow range before
    assert s.min() == 0 and s.max() == 255
    lo, hi = ref.min(), ref.max()
    _assert_uint8_matches(s, (ref - lo) / (hi - lo))


# --------------------------------------------------------------------------- errors


def _assert_usage_error(capsys, argv, tmp_path, expected_files):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("filtkit: error:")
    assert err.endswith("\n")
    assert "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == sorted(expected_files)
    return lines[0]


def test_error_missing_input(tmp_path, capsys):
    line = _assert_usage_error(
        capsys, ["filter", tmp_path / "nope.png", tmp_path / "out.png", "--filter", "sobel"],
        tmp_path, [],
    )
    assert "nope.png" in line


def test_error_unreadable_input(tmp_path, capsys):
    src = tmp_path / "garbage.png"
    src.write_bytes(np.random.default_rng(103).integers(0, 256, 500, dtype=np.uint8).tobytes())
    _assert_usage_error(
        capsys, ["filter", src, tmp_path / "out.png", "--filter", "sobel"],
        tmp_path, ["garbage.png"],
    )


@pytest.mark.parametrize(
    "options, mention",
    [
        (["--filter", "nosuchfilter"], "nosuchfilter"),
        (["--filter", "gaussian", "--mode", "bogus"], "bogus"),
        (["--filter", "convolve", "--kernel", "sharpen", "--mode", "bogus"], "bogus"),
        (["--filter", "gaussian", "--sigma", "-1"], "sigma"),
        (["--filter", "sobel", "--sigma", "2"], "--sigma"),
        (["--filter", "laplace", "--size", "3"], "--size"),
        (["--filter", "convolve", "--kernel", "sharpen", "--sigma", "1"], "--sigma"),
        (["--filter", "convolve"], "--kernel"),
        (["--filter", "convolve", "--kernel", "nosuchkernel"], "nosuchkernel"),
        (["--filter", "gaussian", "--kernel", "sharpen"], "--kernel"),
        (["--filter", "gaussian", "--sigma", "abc"], "abc"),
        (["--filter", "gaussian", "--bogus-flag"], "--bogus-flag"),
        ([], "--filter"),
        (["--filter", "gaussian", "--sigma", "inf"], "sigma"),
        (["--filter", "gaussian", "--sigma", "nan"], "sigma"),
        (["--filter", "gaussian", "--sigma", "1e9"], "sigma"),
        (["--filter", "gaussian", "--truncate", "nan"], "truncate"),
        (["--filter", "unsharp_mask", "--radius", "inf"], "radius"),
        (["--filter", "difference_of_gaussians"], "--low-sigma"),
    ],
    ids=[
        "unknown-filter", "unknown-mode", "unknown-boundary", "negative-sigma",
        "sigma-for-sobel", "size-for-laplace", "sigma-for-sharpen", "missing-kernel",
        "unknown-kernel", "kernel-for-gaussian", "non-numeric-sigma", "unknown-flag",
        "missing-filter", "infinite-sigma", "nan-sigma", "huge-sigma", "nan-truncate",
        "infinite-radius", "dog-without-low-sigma",
    ],
)
def test_error_bad_options(tmp_path, grey, capsys, options, mention):
    src, _ = grey
    line = _assert_usage_error(
        capsys, ["filter", src, tmp_path / "out.png", *options], tmp_path, ["grey.png"]
    )
    assert mention in line


@pytest.mark.parametrize(
    "argv", [["bogus"], ["--bogus"], ["kernels", "--bogus"], ["demo", "--bogus"]],
)
def test_error_argparse(tmp_path, capsys, argv):
    _assert_usage_error(capsys, argv, tmp_path, [])


def test_error_output_is_input(tmp_path, grey, capsys):
    src, _ = grey
    before = src.read_bytes()
    _assert_usage_error(
        capsys, ["filter", src, src, "--filter", "gaussian"], tmp_path, ["grey.png"]
    )
    assert src.read_bytes() == before


def test_error_output_is_input_by_another_name(tmp_path, grey, capsys):
    src, _ = grey
    before = src.read_bytes()
    (tmp_path / "sub").mkdir()
    other = tmp_path / "sub" / ".." / "grey.png"
    _assert_usage_error(
        capsys, ["filter", src, other, "--filter", "gaussian"], tmp_path, ["grey.png", "sub"]
    )
    assert src.read_bytes() == before


def test_error_unsupported_output_extension(tmp_path, grey, capsys):
    src, _ = grey
    line = _assert_usage_error(
        capsys, ["filter", src, tmp_path / "out.xyz", "--filter", "gaussian"],
        tmp_path, ["grey.png"],
    )
    assert "`path`" in line


def test_error_output_directory_missing(tmp_path, grey, capsys):
    src, _ = grey
    _assert_usage_error(
        capsys, ["filter", src, tmp_path / "missing" / "out.png", "--filter", "gaussian"],
        tmp_path, ["grey.png"],
    )


def test_subprocess_exit_code_and_single_stderr_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "filtkit.cli", "filter", str(tmp_path / "nope.png"),
         str(tmp_path / "out.png"), "--filter", "gaussian"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("filtkit: error:")
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- kernels


def test_kernels_lists_every_name(capsys):
    out = _run_ok(capsys, "kernels")
    head, sep, tail = out.partition("\nfilters")
    assert sep, out
    kernel_names = {line.split()[0] for line in head.splitlines()[1:]}
    filter_names = {line.split()[0] for line in tail.splitlines()[1:]}
    assert kernel_names == set(kernels.NAMED)
    assert filter_names == set(FILTERS)


def test_no_command_prints_help(capsys):
    code = cli.main([])
    out, err = capsys.readouterr()
    assert code == 0
    assert "usage:" in out
    for command in ("demo", "filter", "kernels"):
        assert command in out


def test_error_animation_input(tmp_path, capsys):
    src = tmp_path / "anim.gif"
    iio.imwrite(src, np.random.default_rng(7).integers(0, 255, (3, 20, 30, 3), dtype=np.uint8))
    line = _assert_usage_error(
        capsys, ["filter", src, tmp_path / "out.png", "--filter", "sobel"], tmp_path,
        ["anim.gif"],
    )
    assert "`input`" in line


@pytest.mark.parametrize("channels", [2, 4])
def test_alpha_is_kept_and_not_rescaled(tmp_path, capsys, channels):
    rng = np.random.default_rng(8)
    colour = rng.integers(0, 256, (20, 30, channels - 1), dtype=np.uint8)
    alpha = np.full((20, 30, 1), 200, dtype=np.uint8)
    src, dst = tmp_path / "in.png", tmp_path / "out.png"
    iio.imwrite(src, np.concatenate([colour, alpha], axis=2))
    _run_ok(capsys, "filter", src, dst, "--filter", "gaussian", "--sigma", "3", "--rescale")
    got = iio.imread(dst)
    assert got.shape == (20, 30, channels)
    assert (got[..., -1] == 200).all()
    blurred = skf.gaussian(img_as_float(colour), 3, channel_axis=-1)
    stretched = (blurred - blurred.min()) / (blurred.max() - blurred.min())
    _assert_uint8_matches(got[..., :-1], stretched)


# --------------------------------------------------------------------------- batch on Dask
def test_batch_filters_every_file_and_reports_the_corrupt_one(tmp_path, capsys):
    pytest.importorskip("distributed")
    src = tmp_path / "in"
    src.mkdir()
    images = {f"img{i}.png": _write_random(src / f"img{i}.png", GREY_SHAPE, 200 + i)
              for i in range(3)}
    images["colour.png"] = _write_random(src / "colour.png", RGB_SHAPE, 210)
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    out = tmp_path / "out"
    code = cli.main(["filter", str(src / "*.png"), str(out), "--filter", "gaussian",
                     "--sigma", "1.5", "--workers", "2"])
    stdout, stderr = capsys.readouterr()
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == sorted(images)
    assert sorted(stdout.split()) == sorted(str(out / name) for name in images)
    skipped = [line for line in stderr.splitlines() if "skipped" in line]
    assert len(skipped) == 1 and "broken.png" in skipped[0]
    assert stderr.rstrip().splitlines()[-1] == "filtkit: error: 1 of 5 files could not be filtered"
    assert "Traceback" not in stderr
    for name, img in images.items():  # each equals the one-file command's result
        ref = skf.gaussian(img_as_float(img), sigma=1.5,
                           channel_axis=-1 if img.ndim == 3 else None)
        _assert_uint8_matches(_read(out / name), ref)
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before


def test_batch_never_overwrites_an_input(tmp_path, capsys):
    pytest.importorskip("distributed")
    for i in range(2):
        _write_random(tmp_path / f"img{i}.png", GREY_SHAPE, 220 + i)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    line = _assert_usage_error(
        capsys, ["filter", tmp_path / "*.png", tmp_path, "--filter", "sobel"],
        tmp_path, list(before))
    assert "overwrite the input" in line
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize("argv, mention", [
    (["filter", "{tmp}/none-*.png", "{tmp}/out", "--filter", "sobel"], "no files match"),
    (["filter", "{tmp}/a.png", "{tmp}/b.png", "--filter", "sobel", "--workers", "2"],
     "pattern"),
    (["filter", "{tmp}/*.png", "{tmp}/out", "--filter", "sobel", "--workers", "0"],
     "--workers"),
    (["filter", "{tmp}/*.png", "{tmp}/out", "--filter", "sobel", "--workers", "2",
      "--scheduler", "tcp://127.0.0.1:1"], "not both"),
])
def test_batch_usage_errors(tmp_path, capsys, argv, mention):
    _write_random(tmp_path / "a.png", GREY_SHAPE, 230)
    line = _assert_usage_error(capsys, [a.format(tmp=tmp_path) for a in argv], tmp_path,
                               ["a.png"])
    assert mention in line


def test_batch_unreachable_scheduler_creates_nothing(tmp_path, capsys, monkeypatch):
    distributed = pytest.importorskip("distributed")

    def refuse(address, **kwargs):
        raise OSError(f"Timed out trying to connect to {address} after 10 s")

    monkeypatch.setattr(distributed, "Client", refuse)
    _write_random(tmp_path / "a.png", GREY_SHAPE, 231)
    line = _assert_usage_error(
        capsys, ["filter", tmp_path / "*.png", tmp_path / "out", "--filter", "sobel",
                 "--scheduler", "tcp://192.0.2.1:8786"], tmp_path, ["a.png"])
    assert "192.0.2.1" in line
