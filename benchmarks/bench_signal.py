"""filtkit.signal against OpenCV, scipy and scikit-image, timed in one process.

Run from the repository root::

    python benchmarks/bench_signal.py            # full run, about 2 minutes on 2 cores;
                                                 # prints the table and rewrites its section
                                                 # of benchmarks/RESULTS.md
    python benchmarks/bench_signal.py --quick    # smoke run (< 30 s), prints only

Every library gets the same arrays and the machine's cores: numba's default thread count,
``cv2.setNumThreads(n)``, ``scipy.fft.set_workers(n)`` around fftconvolve/oaconvolve (filtkit's
own FFT path passes ``workers=n``) and OpenBLAS with n threads for the matmul peak.
scipy.ndimage and scikit-image (which filters through scipy.ndimage) are single-threaded.

Each case first calls every function once (Numba compiles, caches warm) and checks that the
results agree: the largest difference, relative to ``max|x| * sum|w|`` for correlations (a
bound on the output) or to ``max|reference|`` for the image filters, must stay below 1e-5 for
float32 and 1e-11 for float64, otherwise the script stops with an error, so that every ratio
compares equal work.  Then the functions are timed in three interleaved rounds (filtkit,
peer 1, peer 2, ..., again), adaptively: about 0.3 s of runs per function, at least 5 runs
and at most 30; a function slower than 0.5 s per call gets 3 runs.  The median is reported.

Columns of the table:

``case``
    what is computed: image size, dtype, kernel size K, boundary, and filtkit's method
    ("auto->fft" is what method="auto" picked).  Correlations use mode="same" and random
    full-rank kernels.
``filtkit ms``
    median filtkit time; ``*`` marks a noisy one (interquartile range above 25 % of it).
``cv2``, ``ndimage``, ``fftconv``, ``oaconv``, ``skimage``
    peer time / filtkit time: above 1 means filtkit is faster.  cv2 is cv2.filter2D for the
    correlations (a correlation with a centred anchor, matching border type), cv2.GaussianBlur
    for gaussian and two cv2.Sobel calls plus cv2.magnitude for sobel; fftconv/oaconv are
    scipy.signal.fftconvolve/oaconvolve (mode "same", flipped kernel, so a correlation with a
    zero boundary); ndimage is scipy.ndimage.correlate with the same mode.
    "-" means not applicable, "skip (~T s)" that the peer would take about T s per call.
``GB/s (%BW)``
    direct correlations only: (input + output bytes) / time, and its share of the measured
    memory bandwidth (2-thread numba prange copy, read + write bytes / time).  Above 100 %
    means the data stayed in cache (a 512² image does).  Every call returns a new array,
    as filtkit's API does, so at 4096² (64 MiB, beyond glibc's reuse of freed blocks) each
    call also pays the kernel's page faults and zeroing of a fresh output; the summary
    reports that cost on its own.
``GFLOP/s (%peak)``
    direct correlations only: 2 * taps * outputs / time, and its share of the matmul peak of
    that dtype (numpy matmul, OpenBLAS with n threads).
``err``
    the largest relative difference found by the agreement check.

A summary with the headline ratios and pass/fail against the project's targets ends the
output.
"""

import os
import sys

# first: sets OPENBLAS_NUM_THREADS before numpy is imported and puts this tree on sys.path
from _common import (
    NCORES,
    bench,
    child_env,
    cpu_busy,
    numba_all_cores,
    progress,
    publish,
    run_description,
    run_json,
    table,
    timed,
    warn_if_busy,
)

# isort: split
import argparse
import datetime
import math
import statistics
import textwrap
import time

import cv2
import numba
import numpy as np
import scipy
import scipy.fft as sfft
import scipy.ndimage as ndi
import scipy.signal as ssig
import skimage
import skimage.data
import skimage.filters as skf

from filtkit import signal as fs  # this working tree: _common put it first on sys.path

CV_BORDER = {"constant": cv2.BORDER_CONSTANT, "reflect": cv2.BORDER_REFLECT}
TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-11}
PEERS = ("cv2", "ndimage", "fftconv", "oaconv", "skimage")
NOISY = 0.25  # interquartile range / median above which a filtkit time is starred
# skimage.filters.sobel = sqrt((gx**2 + gy**2) / 2) with kernels [1, 2, 1] / 4 x [1, 0, -1];
# cv2.Sobel is unnormalised, so this scale makes cv2.magnitude of its two derivatives equal.
SOBEL_SCALE = 1.0 / (4.0 * math.sqrt(2.0))


class Config:
    """The grid and the timing policy, full or --quick."""

    def __init__(self, quick):
        self.quick = quick
        if quick:
            self.grid = [(256, np.float32, (3, 7, 31)), (256, np.float64, (5,))]
            self.filter_size, self.sigmas = 512, (1, 3)
            self.target_s, self.min_runs, self.max_runs = 0.02, 3, 5
            self.copy_mb, self.matmul_n, self.memory_n = 64, 512, 2048
        else:
            ks = (3, 5, 7, 9, 15, 31, 63)
            self.grid = [
                (512, np.float32, ks),
                (512, np.float64, ks),
                (2048, np.float32, ks),
                (2048, np.float64, ks),
                (4096, np.float32, (3, 7)),
            ]
            self.filter_size, self.sigmas = 2048, (1, 3, 8)
            self.target_s, self.min_runs, self.max_runs = 0.3, 5, 30
            self.copy_mb, self.matmul_n, self.memory_n = 512, 2048, 8192
        self.slow_s, self.slow_runs = 0.5, 3
        self.ndimage_max_s = 1.0  # predicted seconds per call above which ndimage is skipped
        self.boundaries = ("constant", "reflect")


# ---------------------------------------------------------------------------------------------
# agreement


def check(label, peer, got, ref, scale, dtype):
    """Abort unless ``got`` (filtkit) and ``ref`` (peer) agree to the dtype's tolerance."""
    got, ref = np.asarray(got), np.asarray(ref)
    if got.shape != ref.shape:
        sys.exit(f"RESULTS DISAGREE: {label} vs {peer}: shape {got.shape} != {ref.shape}")
    err = float(np.max(np.abs(got.astype(np.float64) - ref))) / scale
    tol = TOL[np.dtype(dtype)]
    if not err <= tol:  # also catches NaN
        sys.exit(
            f"RESULTS DISAGREE: {label} vs {peer}: max relative difference {err:.3g} "
            f"> tolerance {tol:g}; the timings would not compare equal work"
        )
    return err


# ---------------------------------------------------------------------------------------------
# machine limits


@numba.njit(parallel=True, cache=False)
def _copy_rows(src, dst):
    for r in numba.prange(src.shape[0]):
        dst[r, :] = src[r, :]


def measure_limits(cfg):
    """Memory bandwidth (GB/s, read + write) and float32/float64 matmul GFLOP/s.

    The matmuls run first: OpenBLAS threads starve when they follow Numba's OpenMP
    regions (see ../shared/NUMBA_NOTES.md).
    """
    peak = {}
    n = cfg.matmul_n
    rng = np.random.default_rng(7)
    for dt in (np.float32, np.float64):
        a = rng.random((n, n)).astype(dt)
        b = rng.random((n, n)).astype(dt)
        a @ b
        ts = [timed(lambda a=a, b=b: a @ b) for _ in range(7)]
        peak[np.dtype(dt)] = 2.0 * n**3 / statistics.median(ts) / 1e9
    rows = cfg.copy_mb * 2**20 // (4 * 4096)
    src = np.random.default_rng(8).random((rows, 4096), dtype=np.float32)
    dst = np.zeros_like(src)
    _copy_rows(src, dst)
    if not np.array_equal(src, dst):
        sys.exit("bandwidth copy kernel is wrong")
    ts = [timed(lambda: _copy_rows(src, dst)) for _ in range(11)]
    bw = 2.0 * src.nbytes / statistics.median(ts) / 1e9
    return bw, peak


# ---------------------------------------------------------------------------------------------
# cases


def _fftconv(x, w):
    with sfft.set_workers(NCORES):
        return ssig.fftconvolve(x, w[::-1, ::-1], mode="same")


def _oaconv(x, w):
    with sfft.set_workers(NCORES):
        return ssig.oaconvolve(x, w[::-1, ::-1], mode="same")


def _method_label(w, method):
    if method != "auto":
        return method
    try:  # which path "auto" takes (private helper, only for the label)
        from filtkit.signal._correlate import _choose_method

        return "auto->" + _choose_method("auto", w, w.dtype)[0]
    except (ImportError, AttributeError, TypeError, ValueError):
        return "auto"


def _dt(dtype):
    return "f32" if np.dtype(dtype) == np.float32 else "f64"


class Runner:
    def __init__(self, cfg, bw, peak):
        self.cfg, self.bw, self.peak = cfg, bw, peak
        self.rows = []
        self.facts = {}  # (kind, size, dtype, K, boundary) -> per-library medians
        self.ndimage_ns_per_tap = None

    def calibrate_ndimage(self):
        x = np.random.default_rng(3).random((256, 256)).astype(np.float32)
        w = np.ones((9, 9), np.float32)
        ndi.correlate(x, w, mode="constant")
        t = min(timed(lambda: ndi.correlate(x, w, mode="constant")) for _ in range(3))
        self.ndimage_ns_per_tap = t / (x.size * w.size) * 1e9

    def add_row(self, case, timings, errs, skipped, direct=None):
        fk, spread, _ = timings["filtkit"]
        ratios = {}
        for peer in PEERS:
            if peer in timings:
                ratios[peer] = f"{timings[peer][0] / fk:.2f}"
            elif peer in skipped:
                ratios[peer] = skipped[peer]
            else:
                ratios[peer] = "-"
        gbs = gfl = "-"
        if direct is not None:
            nbytes, flops, dtype = direct
            g = nbytes / fk / 1e9
            f = flops / fk / 1e9
            gbs = f"{g:.1f} ({100 * g / self.bw:.0f}%)"
            gfl = f"{f:.1f} ({100 * f / self.peak[np.dtype(dtype)]:.0f}%)"
        star = " *" if spread > NOISY else ""
        self.rows.append(
            [case, f"{fk * 1e3:.3f}{star}", *(ratios[p] for p in PEERS), gbs, gfl,
             f"{max(errs.values(), default=0.0):.1e}"]
        )

    def correlation(self, n, dtype, k, boundary, x, rng):
        w = rng.standard_normal((k, k)).astype(dtype)
        method = "direct" if k <= 15 else "auto"
        label = f"corr {n}² {_dt(dtype)} K{k} {boundary} {_method_label(w, method)}"
        progress(f"  {label}")

        def fk():
            return fs.correlate(x, w, mode="same", boundary=boundary, method=method)

        ref = fk()  # warm-up: compiles or loads the Numba cache
        scale = float(np.abs(x).max() * np.abs(w).sum())
        fns = {"filtkit": fk}
        fns["cv2"] = lambda: cv2.filter2D(x, -1, w, borderType=CV_BORDER[boundary])
        skipped = {}
        predicted = self.ndimage_ns_per_tap * 1e-9 * x.size * w.size
        required = n == 2048 and dtype == np.float32 and k <= 15 and boundary == "constant"
        if predicted <= self.cfg.ndimage_max_s or required:
            fns["ndimage"] = lambda: ndi.correlate(x, w, mode=boundary, cval=0.0)
        else:
            skipped["ndimage"] = f"skip (~{predicted:.0f} s)"
        if method == "auto" and boundary == "constant":
            fns["fftconv"] = lambda: _fftconv(x, w)
            fns["oaconv"] = lambda: _oaconv(x, w)
        errs = {}
        for peer, f in fns.items():
            if peer != "filtkit":
                errs[peer] = check(label, peer, ref, f(), scale, dtype)
        timings = bench(fns, self.cfg)
        direct = None
        if method == "direct":
            direct = (2 * x.nbytes, 2.0 * k * k * x.size, dtype)
        self.add_row(label, timings, errs, skipped, direct)
        self.facts[("corr", n, np.dtype(dtype), k, boundary)] = {
            p: t[0] for p, t in timings.items()
        }
        if direct is not None:
            self.facts[("gbs", n, np.dtype(dtype), k, boundary)] = (
                direct[0] / timings["filtkit"][0] / 1e9
            )

    def fresh_output(self, n=4096):
        """Median time to allocate and first touch an n x n float32 array, and the
        3x3 correlation writing into a reused ``out=`` array (no allocation)."""
        ts = [timed(lambda: np.empty((n, n), np.float32).fill(0.0)) for _ in range(11)]
        self.facts["fresh_output_s"] = statistics.median(ts)
        x = np.random.default_rng(n).random((n, n)).astype(np.float32)
        w = np.random.default_rng(5).standard_normal((3, 3)).astype(np.float32)
        out = np.empty_like(x)
        fs.correlate(x, w, method="direct", out=out)
        t = bench({"filtkit": lambda: fs.correlate(x, w, method="direct", out=out)}, self.cfg)
        self.facts["reused_out_gbs"] = 2 * x.nbytes / t["filtkit"][0] / 1e9

    def correlations(self):
        for n, dtype, ks in self.cfg.grid:
            x = np.random.default_rng(n).random((n, n)).astype(dtype)
            rng = np.random.default_rng(n + 1)
            for k in ks:
                for boundary in self.cfg.boundaries:
                    self.correlation(n, dtype, k, boundary, x, rng)

    def _filter_case(self, label, kind, fk, peers, dtype):
        progress(f"  {label}")
        ref = fk()
        scale = max(float(np.abs(ref).max()), 1e-30)
        errs = {p: check(label, p, ref, f(), scale, dtype) for p, f in peers.items()}
        timings = bench({"filtkit": fk, **peers}, self.cfg)
        self.add_row(label, timings, errs, {})
        self.facts[kind] = {p: t[0] for p, t in timings.items()}

    def image_filters(self):
        n = self.cfg.filter_size
        for dtype in (np.float32, np.float64):
            x = np.random.default_rng(11).random((n, n)).astype(dtype)
            for sigma in self.cfg.sigmas:
                r = int(4.0 * sigma + 0.5)
                self._filter_case(
                    f"gaussian σ{sigma} {n}² {_dt(dtype)} nearest",
                    ("gaussian", np.dtype(dtype), sigma),
                    lambda x=x, s=sigma: fs.gaussian(x, s, mode="nearest"),
                    {
                        "skimage": lambda x=x, s=sigma: skf.gaussian(x, sigma=s, mode="nearest"),
                        "cv2": lambda x=x, s=sigma, r=r: cv2.GaussianBlur(
                            x, (2 * r + 1, 2 * r + 1), sigmaX=s, sigmaY=s,
                            borderType=cv2.BORDER_REPLICATE),
                    },
                    dtype,
                )
            self._filter_case(
                f"sobel {n}² {_dt(dtype)} reflect",
                ("sobel", np.dtype(dtype)),
                lambda x=x: fs.sobel(x),
                {
                    "skimage": lambda x=x: skf.sobel(x),
                    "cv2": lambda x=x: cv2.magnitude(
                        cv2.Sobel(x, -1, 1, 0, ksize=3, scale=SOBEL_SCALE,
                                  borderType=cv2.BORDER_REFLECT),
                        cv2.Sobel(x, -1, 0, 1, ksize=3, scale=SOBEL_SCALE,
                                  borderType=cv2.BORDER_REFLECT)),
                },
                dtype,
            )

    def photos(self):
        cam, ast = skimage.data.camera(), skimage.data.astronaut()
        cases = [
            ("camera gaussian σ2", lambda: fs.gaussian(cam, 2),
             lambda: skf.gaussian(cam, sigma=2)),
            ("astronaut gaussian σ2 channel_axis=-1",
             lambda: fs.gaussian(ast, 2, channel_axis=-1),
             lambda: skf.gaussian(ast, sigma=2, channel_axis=-1)),
            ("camera sobel", lambda: fs.sobel(cam), lambda: skf.sobel(cam)),
            ("camera laplace", lambda: fs.laplace(cam), lambda: skf.laplace(cam)),
            ("camera unsharp_mask r1 a1", lambda: fs.unsharp_mask(cam, 1, 1),
             lambda: skf.unsharp_mask(cam, 1, 1)),
            # skimage 0.26's unsharp_mask slices the wrong axis for a negative channel_axis
            # (scikit-image issue 7264), so it gets the same axis as 2.
            ("astronaut unsharp_mask r1 a1 channel_axis=-1",
             lambda: fs.unsharp_mask(ast, 1, 1, channel_axis=-1),
             lambda: skf.unsharp_mask(ast, 1, 1, channel_axis=2)),
        ]
        for name, fk, sk in cases:
            shape = "x".join(map(str, (ast if "astronaut" in name else cam).shape))
            self._filter_case(f"{name} ({shape} uint8)", ("photo", name), fk,
                              {"skimage": sk}, np.float64)


# ---------------------------------------------------------------------------------------------
# peak memory in a fresh process

_MEMORY_SNIPPET = """
import json, resource, sys, tracemalloc
import numpy as np
from filtkit import signal

n = int(sys.argv[1])
w = np.random.default_rng(1).standard_normal((7, 7)).astype(np.float32)
signal.correlate(np.ones((64, 64), np.float32), w, method="direct", boundary="constant")
x = np.random.default_rng(0).random((n, n), dtype=np.float32)

def rss():
    # (current, peak) resident bytes: VmRSS / VmHWM, else ru_maxrss for both
    try:
        with open("/proc/self/status") as fh:
            kb = dict(line.split(":", 1) for line in fh if line.startswith(("VmRSS", "VmHWM")))
        return int(kb["VmRSS"].split()[0]) * 1024, int(kb["VmHWM"].split()[0]) * 1024
    except (OSError, KeyError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return peak, peak

try:  # reset the peak RSS (Linux >= 4.0) so that VmHWM measures this call only
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
except OSError:
    pass
before_now, before_max = rss()
tracemalloc.start()
y = signal.correlate(x, w, method="direct", boundary="constant")
traced_peak = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
after_max = rss()[1]
print(json.dumps(dict(in_bytes=x.nbytes, out_bytes=y.nbytes, traced_peak=traced_peak,
                      rss_before=before_now, maxrss_before=before_max, maxrss_after=after_max)))
"""


_STARTUP_SNIPPET = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import filtkit.signal as fs
t1 = time.perf_counter()
x = np.random.default_rng(0).random((512, 512))
t2 = time.perf_counter()
fs.gaussian(x, 2.0)
t3 = time.perf_counter()
fs.correlate(x, np.ones((5, 5)), method="direct")
t4 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "gaussian": t3 - t2, "correlate": t4 - t3}))
"""


def measure_startup():
    """Import and first-call times in fresh processes: warm cache (median of 3 runs after a
    run that fills the cache) and cold cache (an empty NUMBA_CACHE_DIR)."""
    import tempfile

    def once(cache_dir):
        return run_json(["-c", _STARTUP_SNIPPET], "start-up measurement", 600,
                        env=child_env(NUMBA_CACHE_DIR=cache_dir))

    with tempfile.TemporaryDirectory() as cache:
        cold = once(cache)
        warm = [once(cache) for _ in range(3)]
    med = {k: statistics.median(r[k] for r in warm) for k in warm[0]}
    return {"cold": cold, "warm": med}


def measure_memory(n):
    m = run_json(["-c", _MEMORY_SNIPPET, str(n)], "memory measurement", 300)
    io_bytes = m["in_bytes"] + m["out_bytes"]
    # extra = peak during the call beyond input and output, by both measures
    extra_traced = m["traced_peak"] - m["out_bytes"]
    extra_rss = max(m["maxrss_after"], m["rss_before"]) - m["rss_before"] - m["out_bytes"]
    m.update(io_bytes=io_bytes, extra_traced=extra_traced, extra_rss=extra_rss,
             ratio=(io_bytes + max(extra_traced, extra_rss)) / io_bytes,
             # an earlier peak that the reset did not clear hides this call's peak
             baseline_caveat=m["maxrss_before"] > m["rss_before"] + m["out_bytes"] // 10)
    return m


# ---------------------------------------------------------------------------------------------
# report


def geomean(vals):
    return math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else float("nan")


def summary(run, mem, bw, startup=None):
    facts, lines, verdicts = run.facts, [], []

    def verdict(ok, text):
        tag = "n/a " if ok is None else ("PASS" if ok else "FAIL")
        verdicts.append(ok)
        lines.append(f"[{tag}] {text}")

    f32 = np.dtype(np.float32)
    cases = [("corr", 2048, f32, k, "constant") for k in (3, 5, 7, 9, 15)]
    have = [c for c in cases if c in facts]
    if have:
        cv = {c[3]: facts[c]["cv2"] / facts[c]["filtkit"] for c in have}
        nd = {c[3]: facts[c]["ndimage"] / facts[c]["filtkit"] for c in have}
        g, worst = geomean(list(cv.values())), min(cv, key=cv.get)
        per_k = ", ".join(f"K{k} {v:.2f}" for k, v in cv.items())
        verdict(g >= 1.5 and cv[worst] >= 1.0,
                f"cv2.filter2D / filtkit, 2048² f32 constant K3-15: geomean {g:.2f} "
                f"(target >= 1.5), min {cv[worst]:.2f} at K{worst} (target >= 1.0) [{per_k}]")
        g, worst = geomean(list(nd.values())), min(nd, key=nd.get)
        per_k = ", ".join(f"K{k} {v:.1f}" for k, v in nd.items())
        verdict(g >= 20, f"scipy.ndimage / filtkit, same cases: geomean {g:.1f} (target >= 20), "
                         f"min {nd[worst]:.1f} at K{worst} [{per_k}]")
    else:
        verdict(None, "cv2.filter2D and scipy.ndimage targets: 2048² f32 cases not run")

    for peer, name, target in (("skimage", "skimage.filters.gaussian", 10),
                               ("cv2", "cv2.GaussianBlur", 1.0)):
        r = {k: v[peer] / v["filtkit"] for k, v in facts.items() if k[0] == "gaussian"}
        if r:
            worst = min(r, key=r.get)
            detail = ", ".join(f"{_dt(k[1])} σ{k[2]} {v:.2f}" for k, v in r.items())
            verdict(geomean(list(r.values())) >= target,
                    f"{name} / filtkit gaussian, {run.cfg.filter_size}² f32+f64: geomean "
                    f"{geomean(list(r.values())):.2f} (target >= {target}), min {r[worst]:.2f} "
                    f"[{detail}]")
    r = {k: v["skimage"] / v["filtkit"] for k, v in facts.items() if k[0] == "sobel"}
    if r:
        detail = ", ".join(f"{_dt(k[1])} {v:.1f}" for k, v in r.items())
        verdict(geomean(list(r.values())) >= 10,
                f"skimage.filters.sobel / filtkit, {run.cfg.filter_size}² f32+f64: geomean "
                f"{geomean(list(r.values())):.1f} (target >= 10) [{detail}]")
    r = {k: v["cv2"] / v["filtkit"] for k, v in facts.items() if k[0] == "sobel"}
    if r:
        detail = ", ".join(f"{_dt(k[1])} {v:.2f}" for k, v in r.items())
        lines.append(f"[info] cv2 (2x Sobel + magnitude) / filtkit sobel: [{detail}]")

    fft = {k: v["filtkit"] / min(v["fftconv"], v["oaconv"])
           for k, v in facts.items() if k[0] == "corr" and "fftconv" in v}
    if fft:
        worst = max(fft, key=fft.get)
        detail = ", ".join(f"{k[1]}² {_dt(k[2])} K{k[3]} {v:.2f}" for k, v in fft.items())
        verdict(fft[worst] <= 1.2,
                f"filtkit auto / min(fftconvolve, oaconvolve), K31+K63 constant: worst "
                f"{fft[worst]:.2f} at {worst[1]}² {_dt(worst[2])} K{worst[3]} "
                f"(target <= 1.2) [{detail}]")

    for boundary in run.cfg.boundaries:
        key = ("gbs", 4096, f32, 3, boundary)
        if key in facts:
            g = facts[key]
            ms = 1e3 * facts[("corr", 4096, f32, 3, boundary)]["filtkit"]
            verdict(g >= 0.75 * bw, f"3x3 {boundary} on 4096² f32: {g:.1f} GB/s = "
                                    f"{100 * g / bw:.0f}% of {bw:.1f} GB/s (target >= 75%), "
                                    f"{ms:.2f} ms per call")
        else:
            verdict(None, f"3x3 {boundary} on 4096² f32: not run")

    if "reused_out_gbs" in facts:
        g = facts["reused_out_gbs"]
        verdict(g >= 0.75 * bw, f"3x3 constant on 4096² f32 into a reused out= array: {g:.1f} "
                                f"GB/s = {100 * g / bw:.0f}% of {bw:.1f} GB/s (target >= 75%)")
    if "fresh_output_s" in facts:
        lines.append(f"[info] allocating and first touching a fresh 4096² f32 output "
                     f"(np.empty + fill) alone takes {1e3 * facts['fresh_output_s']:.2f} ms "
                     "(page faults + zeroing), part of every call above")

    if startup is not None:
        w, c = startup["warm"], startup["cold"]
        verdict(w["import"] < 1.0, f"`import filtkit.signal` in a fresh process: "
                                   f"{w['import']:.2f} s (target < 1 s)")
        verdict(w["gaussian"] < 0.2, f"first gaussian call on 512² with a warm Numba cache: "
                                     f"{w['gaussian']:.3f} s (target < 0.2 s)")
        lines.append(f"[info] cold Numba cache (empty NUMBA_CACHE_DIR): import {c['import']:.2f} "
                     f"s, first gaussian {c['gaussian']:.2f} s, first 5x5 correlate "
                     f"{c['correlate']:.2f} s (compilation)")

    mib = 2**20
    caveat = " (rss baseline uncertain)" if mem["baseline_caveat"] else ""
    verdict(mem["ratio"] <= 1.10,
            f"peak memory, {mem['n']}² f32 7x7 direct constant: input+output "
            f"{mem['io_bytes'] / mib:.0f} MiB, extra {mem['extra_traced'] / mib:.1f} MiB "
            f"(tracemalloc) / {mem['extra_rss'] / mib:.1f} MiB (peak RSS){caveat}; total "
            f"{mem['ratio']:.3f} x (input+output) (target <= 1.10)")
    return lines, verdicts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny smoke run (< 30 s); does not write RESULTS.md")
    args = parser.parse_args(argv)
    cfg = Config(args.quick)
    t_start = time.perf_counter()
    started = datetime.datetime.now().astimezone()

    busy_before = warn_if_busy()
    cv2.setNumThreads(NCORES)
    numba_all_cores()
    progress("measuring machine limits ...")
    bw, peak = measure_limits(cfg)
    run = Runner(cfg, bw, peak)
    run.calibrate_ndimage()
    progress("correlations ...")
    run.correlations()
    if any(n == 4096 for n, _, _ in cfg.grid):
        run.fresh_output()
    progress("image filters ...")
    run.image_filters()
    progress("photographs ...")
    run.photos()
    progress("peak memory (fresh process) ...")
    mem = measure_memory(cfg.memory_n)
    startup = None
    if not cfg.quick:
        progress("start-up latency (fresh processes) ...")
        startup = measure_startup()
    mem["n"] = cfg.memory_n
    busy_after = cpu_busy()
    elapsed = time.perf_counter() - t_start

    description = run_description(started, elapsed, {
        "scipy": scipy.__version__,
        "scikit-image": skimage.__version__,
        "opencv": cv2.__version__,
    })
    reductions = (
        "quick smoke run: tiny grid, few repeats" if cfg.quick else
        "4096² only float32 with K3 and K7; scipy.ndimage skipped where it would take more "
        f"than {cfg.ndimage_max_s:g} s per call (predicted from {run.ndimage_ns_per_tap:.2f} "
        "ns per tap and pixel), except 2048² f32 K3-15 constant; fftconvolve/oaconvolve only "
        "for K31/K63 with the constant (zero) boundary"
    )
    head = "\n".join(["## bench_signal: filtkit.signal vs OpenCV, scipy, scikit-image", "",
                      description, textwrap.dedent(f"""\
        - Threads: numba {numba.get_num_threads()} ({numba.threading_layer()} layer), \
cv2.setNumThreads({cv2.getNumThreads()}), scipy.fft workers {NCORES}, OpenBLAS \
{os.environ['OPENBLAS_NUM_THREADS']}; scipy.ndimage and scikit-image run single-threaded
        - Measured limits: memory bandwidth {bw:.1f} GB/s (read + write, 2-thread numba prange \
copy of {cfg.copy_mb} MiB); matmul peak float32 {peak[np.dtype(np.float32)]:.0f} GFLOP/s, \
float64 {peak[np.dtype(np.float64)]:.0f} GFLOP/s
        - CPU busy before / after: {100 * busy_before:.0f}% / {100 * busy_after:.0f}% \
(other load makes the timings unreliable)
        - Reductions: {reductions}
        - Ratios are peer time / filtkit time (above 1 = filtkit faster), medians of \
interleaved runs after a warm-up and an agreement check; see the docstring of \
benchmarks/bench_signal.py for the columns. `*` = noisy filtkit time.
        """)])
    lines, _ = summary(run, mem, bw, startup)
    columns = ["case", "filtkit ms", *PEERS, "GB/s (%BW)", "GFLOP/s (%peak)", "err"]
    publish("bench_signal", [head, table(columns, run.rows), ""], lines, elapsed, cfg.quick)


if __name__ == "__main__":
    main()
