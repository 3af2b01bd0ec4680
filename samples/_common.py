"""Shared plumbing for the sample scripts (not a sample itself).

Importing this module

* selects matplotlib's non-interactive ``Agg`` backend, so the samples run
  without a display (on a server, in CI, over ssh);
* makes ``import filtkit`` work when the samples are run straight from a
  source checkout (``python samples/dice.py``) without installing filtkit.

It also holds the two things every sample does: read ``--out DIR`` and save
one figure as a PNG there, printing its path.
"""

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "out"

try:
    import filtkit  # noqa: F401
except ImportError:  # a source checkout: the package sits next to samples/
    sys.path.insert(0, str(HERE.parent))

__all__ = ["plt", "output_dir", "save_figure"]


def output_dir(description):
    """Parse the command line (just ``--out DIR``) and return DIR, created."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"folder to write the PNG into (default: {DEFAULT_OUT})",
    )
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    return out


def save_figure(fig, out, name):
    """Save ``fig`` as ``out/name``, close it, print and return the path."""
    path = Path(out) / name
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(path)
    return path
