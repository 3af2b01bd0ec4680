"""Run every script in samples/ and check that it writes a PNG."""

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("skimage")

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
SCRIPTS = [
    ("edge_gallery.py", "edge_gallery.png"),
    ("correlation_vs_convolution.py", "correlation_vs_convolution.png"),
    ("moving_average.py", "moving_average.png"),
    ("dice.py", "dice.png"),
    ("echo.py", "echo.png"),
]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_every_sample_is_listed():
    scripts = {p.name for p in SAMPLES.glob("*.py") if not p.name.startswith("_")}
    assert scripts == {script for script, _ in SCRIPTS}


@pytest.mark.parametrize(("script", "png"), SCRIPTS, ids=[s for s, _ in SCRIPTS])
def test_sample_writes_png(script, png, tmp_path):
    out = tmp_path / "out"  # does not exist yet: the script must create it
    result = subprocess.run(
        [sys.executable, str(SAMPLES / script), "--out", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"{script} failed:\n{result.stdout}\n{result.stderr}"
    path = out / png
    assert path.is_file(), f"{script} did not write {path}"
    assert str(path) in result.stdout.splitlines(), "the script must print the PNG's path"
    data = path.read_bytes()
    assert len(data) > len(PNG_SIGNATURE)
    assert data.startswith(PNG_SIGNATURE)
