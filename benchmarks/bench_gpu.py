"""filtkit's CUDA backend against CuPy (cupyx.scipy.ndimage) and torch (cuDNN), on one GPU.

Run on a machine with an NVIDIA GPU, CuPy and torch, from the repository root::

    python benchmarks/bench_gpu.py                  # prints the table
    python benchmarks/bench_gpu.py --md FILE        # also writes it as markdown to FILE

First checks that the GPU results equal the CPU backend's on small random
arrays (every boundary mode, stride and dilation; relative 1e-5), then times
float32 correlations of 4096² and 8192² images with random 3x3 ... 15x15
kernels (constant boundary, zero padding: torch's conv2d computes the same),
and Gaussian filters (sigma 1, 3, 8; 'nearest' boundary, truncate 4) against
cupyx.scipy.ndimage.  filtkit takes and returns device arrays through the
public ``filtkit.signal.correlate`` (validation and kernel upload included).
Times are medians of CUDA-synchronised wall-clock runs after a warm-up; ratios
are peer time / filtkit time (above 1 = filtkit faster).  Bandwidth is
(input + output bytes) / time against a measured device-to-device copy.
Not yet here: Sobel and the CNN training steps (the layers do not run on the
GPU yet).
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cupy as cp  # noqa: E402
import torch  # noqa: E402
from cupyx.scipy import ndimage as cndi  # noqa: E402
from numba import cuda  # noqa: E402

from filtkit import signal  # noqa: E402
from filtkit.signal import kernels  # noqa: E402


def sync():
    cp.cuda.Device().synchronize()
    cuda.synchronize()
    torch.cuda.synchronize()


def timed(f, reps=30):
    f()
    sync()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        sync()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def copy_bandwidth():
    a = cp.random.random(2**28 // 4, dtype=cp.float32)  # 256 MiB
    b = cp.empty_like(a)
    t = timed(lambda: b.__setitem__(Ellipsis, a), 20)
    return 2 * a.nbytes / t / 1e9


def parity():
    rng = np.random.default_rng(0)
    worst = 0.0
    for boundary in ("constant", "reflect", "mirror", "nearest", "wrap"):
        for stride, dilation in ((1, 1), (2, 1), (1, 2)):
            x = rng.standard_normal((67, 45)).astype(np.float32)
            w = rng.standard_normal((5, 4)).astype(np.float32)
            ref = signal.correlate(x, w, boundary=boundary, stride=stride, dilation=dilation)
            got = signal.correlate(cuda.to_device(x), w, boundary=boundary, stride=stride,
                                   dilation=dilation).copy_to_host()
            worst = max(worst, float(np.abs(got - ref).max() / np.abs(ref).max()))
    if worst > 1e-5:
        sys.exit(f"GPU and CPU results differ: {worst:.2e}")
    return worst


def _rel_err(got, ref):
    return float(cp.abs(cp.asarray(got) - ref).max() / cp.abs(ref).max())


def correlation_case(x, k):
    """A random k x k kernel, constant (zero) boundary: filtkit, cupyx and torch."""
    n = x.shape[0]
    xd = cuda.as_cuda_array(x)
    xt = torch.as_tensor(x, device="cuda")[None, None]
    w = np.random.default_rng(k).standard_normal((k, k)).astype(np.float32)
    wc = cp.asarray(w)
    wt = torch.as_tensor(w, device="cuda")[None, None]

    def fk():
        return signal.correlate(xd, w, method="direct")

    def peer():
        return cndi.correlate(x, wc, mode="constant")

    def conv():
        with torch.no_grad():
            return torch.nn.functional.conv2d(xt, wt, padding=k // 2)

    e = _rel_err(fk(), peer())
    t_fk, t_cp, t_th = timed(fk), timed(peer), timed(conv)
    return (f"correlate {n}² f32 K{k}", t_fk, t_cp / t_fk, t_th / t_fk,
            2 * x.nbytes / t_fk / 1e9, e)


def gaussian_case(x, sigma):
    """A Gaussian (truncate 4, 'nearest'): filtkit's separable path and cupyx."""
    n = x.shape[0]
    xd = cuda.as_cuda_array(x)
    g = kernels.gaussian1d(sigma).astype(np.float32)
    w2 = np.outer(g, g)

    def fk():
        return signal.correlate(xd, w2, boundary="nearest")

    def peer():
        return cndi.gaussian_filter(x, sigma, mode="nearest", truncate=4.0)

    e = _rel_err(fk(), peer())
    t_fk, t_cp = timed(fk), timed(peer)
    return (f"gaussian σ{sigma:g} {n}² f32", t_fk, t_cp / t_fk, float("nan"),
            2 * x.nbytes / t_fk / 1e9, e)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--md", help="write the table as markdown to this file")
    args = ap.parse_args(argv)
    bw = copy_bandwidth()
    err = parity()
    rows = []
    for n in (4096, 8192):
        x = cp.random.random((n, n), dtype=cp.float32)
        for k in (3, 5, 7, 9, 15):
            rows.append(correlation_case(x, k))
        for sigma in (1.0, 3.0, 8.0):
            rows.append(gaussian_case(x, sigma))
    name = torch.cuda.get_device_name()
    lines = [f"GPU: {name}; device-to-device copy {bw:.0f} GB/s (read + write); "
             f"parity with the CPU backend: max rel. diff {err:.1e}",
             "",
             "| case | filtkit ms | cupyx / filtkit | torch / filtkit | GB/s (% copy) | err |",
             "|---|---|---|---|---|---|"]
    for label, t, r_cp, r_th, gbs, e in rows:
        th = "-" if r_th != r_th else f"{r_th:.2f}"
        lines.append(f"| {label} | {t * 1e3:.3f} | {r_cp:.2f} | {th} | "
                     f"{gbs:.0f} ({100 * gbs / bw:.0f}%) | {e:.1e} |")
    text = "\n".join(lines)
    print(text)
    if args.md:
        Path(args.md).write_text(text + "\n")


if __name__ == "__main__":
    main()
