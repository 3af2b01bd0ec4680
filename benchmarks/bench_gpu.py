"""filtkit's CUDA backend against CuPy (cupyx.scipy.ndimage) and torch (cuDNN), on one GPU.

Run on a machine with an NVIDIA GPU, CuPy and torch, from the repository root::

    python benchmarks/bench_gpu.py                  # prints the tables
    python benchmarks/bench_gpu.py --md FILE        # also writes them as markdown to FILE
    python benchmarks/bench_gpu.py --sweep          # also times the tile shapes
    python benchmarks/bench_gpu.py --launch         # also numba's launch against filtkit's
    python benchmarks/bench_gpu.py --profile        # also where the host's time goes

First checks that the GPU results equal the CPU backend's on small random
arrays (every boundary mode, stride and dilation, the direct and the separable
path; relative 1e-5), then times, on 4096² and 8192² float32 images:

- correlations with random 3x3 ... 15x15 kernels (constant boundary, zero
  padding: torch's conv2d computes the same) against cupyx.scipy.ndimage and
  torch's conv2d;
- Gaussian filters (sigma 1, 3, 8; 'nearest' boundary, truncate 4) against
  cupyx.scipy.ndimage.gaussian_filter;
- scikit-image's Sobel magnitude (``filtkit.signal.sobel``, 'reflect') against
  the same formula from cupyx's sobel (two passes, hypot / sqrt 2).

filtkit takes and returns device arrays through its public functions
(validation and kernel upload included).  Times are medians of CUDA-synchronised
wall-clock runs after a warm-up (the warm-up, with any compilation, is reported
as "first call"), and per call of 30 calls in a row with one synchronisation
at the end ("pipelined": the host's work hides behind the GPU's, so this is the
GPU time where the GPU is the slower); ratios are peer time / filtkit time
(above 1 = filtkit faster).  Bandwidth is (input + output bytes) / time against
a measured device-to-device copy.

Then one training step of filtkit's LeNet-5 and convnet on the GPU against the
same network in torch on CUDA (cuDNN), batches 64 and 256: filtkit's is fit's
own step (the host batch uploaded, forward, cross-entropy, backward, the
finiteness checks, the snapshot, Adam's update, then the loss and the predicted
classes read back); torch's uploads the same host batch, then forward, loss,
backward, Adam and ``loss.item()``.
"""

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cupy as cp  # noqa: E402
import torch  # noqa: E402
from cupyx.scipy import ndimage as cndi  # noqa: E402
from numba import cuda  # noqa: E402

from filtkit import cnn, signal  # noqa: E402
from filtkit.backends import cuda as cuda_backend  # noqa: E402
from filtkit.signal import kernels  # noqa: E402


def sync():
    cp.cuda.Device().synchronize()
    cuda.synchronize()
    torch.cuda.synchronize()


def timed(f, reps=30):
    """(median of ``reps`` synchronised runs, the first call's time)."""
    t0 = time.perf_counter()
    f()
    sync()
    first = time.perf_counter() - t0
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        sync()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), first


def pipelined(f, reps=30):
    """Seconds per call of ``reps`` calls in a row, one synchronisation at the end: the
    host's work overlaps the GPU's, so this is the GPU time where the GPU is the slower."""
    f()
    sync()
    t0 = time.perf_counter()
    for _ in range(reps):
        f()
    sync()
    return (time.perf_counter() - t0) / reps


def filter_row(label, x, fk, peer, peer2=None):
    """A table row: filtkit's function ``fk`` against cupyx's ``peer`` (and torch's
    ``peer2``) on the image ``x``, each call synchronised and pipelined."""
    (t_fk, first), (t_cp, _) = timed(fk), timed(peer)
    r_th = timed(peer2)[0] / t_fk if peer2 is not None else float("nan")
    p_fk, p_cp = pipelined(fk), pipelined(peer)
    return (label, t_fk, t_cp / t_fk, r_th, 2 * x.nbytes / t_fk / 1e9, p_fk, p_cp / p_fk,
            2 * x.nbytes / p_fk / 1e9, _rel_err(fk(), peer()), first)


def copy_bandwidth():
    a = cp.random.random(2**28 // 4, dtype=cp.float32)  # 256 MiB
    b = cp.empty_like(a)
    t, _ = timed(lambda: b.__setitem__(Ellipsis, a), 20)
    return 2 * a.nbytes / t / 1e9


def parity():
    rng = np.random.default_rng(0)
    worst = 0.0
    for boundary in ("constant", "reflect", "mirror", "nearest", "wrap"):
        for stride, dilation in ((1, 1), (2, 1), (1, 2)):
            x = rng.standard_normal((67, 45)).astype(np.float32)
            w = rng.standard_normal((5, 4)).astype(np.float32)
            for kernel in (w, np.outer(w[:, 0], w[0])):  # the direct and the separable path
                ref = signal.correlate(x, kernel, boundary=boundary, stride=stride,
                                       dilation=dilation)
                got = signal.correlate(cuda.to_device(x), kernel, boundary=boundary,
                                       stride=stride, dilation=dilation).copy_to_host()
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

    return filter_row(f"correlate {n}² f32 K{k}", x, fk, peer, conv)


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

    return filter_row(f"gaussian σ{sigma:g} {n}² f32", x, fk, peer)


def sobel_case(x):
    """scikit-image's Sobel magnitude ('reflect'): filtkit against the same formula on
    cupyx's sobel (each axis's derivative divided by 4, as scikit-image's kernels)."""
    n = x.shape[0]
    xd = cuda.as_cuda_array(x)

    def fk():
        return signal.sobel(xd)

    def peer():
        g0 = cndi.sobel(x, 0, mode="reflect")
        g1 = cndi.sobel(x, 1, mode="reflect")
        return cp.hypot(g0, g1) / np.float32(4 * np.sqrt(2))

    return filter_row(f"sobel {n}² f32", x, fk, peer)


def network(arch, batch, size=28):
    """filtkit's network ``arch`` (seed 0, still on the CPU), Adam on its parameters,
    the loss, and a random batch ``(x, y)`` of ``size`` x ``size`` images."""
    from bench_cnn import ARCHS, LR

    model = ARCHS[arch](seed=0)
    opt, loss = cnn.Adam(model.parameters(), lr=LR), cnn.CrossEntropyLoss()
    rng = np.random.default_rng(batch)
    x = rng.standard_normal((batch, 1, size, size), dtype=np.float32)
    return model, opt, loss, x, rng.integers(0, 10, batch)


def fit_step(model, opt, loss, x, y):
    """fit's own training step on the GPU, as a function: the host batch ``(x, y)``
    uploaded, forward, loss, backward, the finiteness counts, the snapshot and Adam's
    update queued whole, then the one wait, for the loss and the predicted classes;
    with fit's arena of step temporaries and its dropout masks drawn a step ahead
    (``model._training_steps``, left open for the process)."""
    params, snaps = model.parameters(), [None, None]
    model.optimizer = opt
    run = contextlib.ExitStack().enter_context(model._training_steps())

    def step():
        value, _, what = run(x, y, loss, opt, params, snaps)
        if what is not None:
            sys.exit(f"filtkit's training step diverged: {what}")
        return value

    return step


def training_steps(arch, batch):
    """One training step of filtkit (fit's) on the GPU and of the same torch network on
    CUDA, each from a host batch uploaded in the step (as a training loop over a data
    set does), as two functions, and their first losses' relative difference."""
    from bench_cnn import LR, to_torch

    model, opt, loss, x, y = network(arch, batch)
    tmodel = to_torch(model).cuda()
    model.to("cuda")
    topt, crit = torch.optim.Adam(tmodel.parameters(), lr=LR), torch.nn.CrossEntropyLoss()
    # the same loss from the same weights and batch (evaluation mode: no dropout masks)
    model.eval()
    tmodel.eval()
    l_fk = loss(model._run(cuda.to_device(x)), y)
    l_th = float(crit(tmodel(torch.as_tensor(x, device="cuda")), torch.as_tensor(
        y, device="cuda")))
    agree = abs(l_fk - l_th) / abs(l_th)
    model.train()
    tmodel.train()
    fk = fit_step(model, opt, loss, x, y)

    def th():
        xt, yt = torch.as_tensor(x).to("cuda"), torch.as_tensor(y).to("cuda")
        topt.zero_grad()
        value = crit(tmodel(xt), yt)
        value.backward()
        topt.step()
        return value.item()

    return fk, th, agree


def training_case(arch, batch):
    fk, th, agree = training_steps(arch, batch)
    (t_fk, first), (t_th, _) = timed(fk, 50), timed(th, 50)
    return arch, batch, t_fk, t_th, agree, first


def filter_call():
    """One public call that filters a 4096² image with a random 3x3 kernel (direct)."""
    xd = cuda.as_cuda_array(cp.random.random((4096, 4096), dtype=cp.float32))
    w = np.random.default_rng(3).standard_normal((3, 3)).astype(np.float32)
    return lambda: signal.correlate(xd, w, method="direct")


def launch_comparison():
    """numba's own kernel launch against filtkit's (``FAST_LAUNCH``), in turns."""
    lines = ["", "Kernel launch: numba's against filtkit's fast path (medians of two turns "
             "each):", "", "| case | numba's launch ms | fast launch ms | numba / fast |",
             "|---|---|---|---|"]
    cases = [("correlate 4096² K3", filter_call())]
    for arch, batch in (("lenet5", 64), ("lenet5", 256), ("convnet", 256)):
        cases.append((f"{arch} batch {batch} training step", training_steps(arch, batch)[0]))
    saved = cuda_backend.FAST_LAUNCH
    for label, f in cases:
        times = {False: [], True: []}
        for fast in (False, True, False, True):
            cuda_backend.FAST_LAUNCH = fast and saved
            times[fast].append(timed(f, 30)[0])
        slow, fast = statistics.median(times[False]), statistics.median(times[True])
        lines.append(f"| {label} | {slow * 1e3:.3f} | {fast * 1e3:.3f} | {slow / fast:.2f} |")
    cuda_backend.FAST_LAUNCH = saved
    return lines


def step_phases(arch, batch, reps=20, size=28):
    """fit's training step on the GPU (:func:`fit_step`) in two phases (medians, ms): the
    host queuing the whole step, up to its first download, then the wait for the GPU
    and the downloads; and the kernel launches and GEMMs of one step (with CuPy the
    GEMMs are cuBLAS calls, not among the launches; without it they are tiled-GEMM
    launches, counted in both)."""
    from filtkit.cnn import functional as F

    model, opt, loss, x, y = network(arch, batch, size)
    model.to("cuda")
    run = fit_step(model, opt, loss, x, y)
    argmax_rows, marks = F.argmax_rows, []

    def queued(out):  # the step's first download
        marks.append(time.perf_counter())
        return argmax_rows(out)

    def step():
        t0 = time.perf_counter()
        run()
        return marks[-1] - t0, time.perf_counter() - marks[-1]

    F.argmax_rows = queued
    try:
        for _ in range(3):
            step()
        phases = [statistics.median(p) * 1e3 for p in zip(*(step() for _ in range(reps)))]
    finally:
        F.argmax_rows = argmax_rows
    # the GEMMs: each cuBLAS call (every matmul and batched_matmul where CuPy is), else
    # each batched_matmul (matmul calls it)
    gemm_name = "_gemm" if cuda_backend._blas() is not None else "batched_matmul"
    kernel_type, gemm = type(cuda_backend._fill_kernel), getattr(cuda_backend, gemm_name)
    counts = [0, 0]
    getitem = kernel_type.__getitem__

    def launch(self, config):
        counts[0] += 1
        return getitem(self, config)

    def counted_gemm(*args):
        counts[1] += 1
        return gemm(*args)

    kernel_type.__getitem__ = launch
    setattr(cuda_backend, gemm_name, counted_gemm)
    try:
        run()
    finally:
        kernel_type.__getitem__ = getitem
        setattr(cuda_backend, gemm_name, gemm)
    return (f"| {arch} batch {batch} | {phases[0]:.3f} | {phases[1]:.3f} | {counts[0]} "
            f"| {counts[1]} |")


def host_costs(reps=2000):
    """The host's time per call (enqueue only, median of blocks of 100 calls) of what a
    training step is made of: an allocation, a small kernel launch, a GEMM call (LeNet-5's
    second convolution at batch 256, cuBLAS through CuPy's binding) and a small upload."""
    a = cuda_backend.device_empty((1, 16, 150), np.float32)
    b = cuda_backend.device_empty((256, 150, 100), np.float32)
    c = cuda_backend.device_empty((256, 16, 100), np.float32)
    small = cuda_backend.device_empty((10,), np.float32)
    labels = np.arange(256, dtype=np.int64)
    cases = [("device_empty((256, 6, 28, 28))",
              lambda: cuda_backend.device_empty((256, 6, 28, 28), np.float32)),
             ("fill of 10 values (one launch)", lambda: cuda_backend.fill(small, 0.0)),
             ("batched_matmul (1x16x150 @ 256x150x100)",
              lambda: cuda_backend.batched_matmul(a, b, c, False, False, False)),
             ("to_device of 256 int64", lambda: cuda_backend.to_device(labels))]
    lines = ["", "Host time per call (us, enqueue only, median of blocks of 100 calls):", ""]
    for label, f in cases:
        f()
        sync()
        blocks = []
        for _ in range(reps // 100):
            t0 = time.perf_counter()
            for _ in range(100):
                f()
            blocks.append((time.perf_counter() - t0) / 100)
            sync()
        lines.append(f"- {label}: {statistics.median(blocks) * 1e6:.1f}")
    return lines


def host_profile():
    """Where the host's time goes: a 4096² 3x3 correlation's enqueue time against its
    time with the GPU's work; training steps in phases (:func:`step_phases`); then
    cProfile's top entries over 20 LeNet-5 training steps at batch 256."""
    import cProfile
    import io
    import pstats

    call = filter_call()
    pipelined(call)
    t0 = time.perf_counter()
    for _ in range(200):
        call()
    t1 = time.perf_counter()
    sync()
    t2 = time.perf_counter()
    lines = ["", f"correlate 4096² K3, 200 calls in a row: the host enqueues one in "
             f"{1e6 * (t1 - t0) / 200:.0f} us; with the GPU's work, {1e6 * (t2 - t0) / 200:.0f} "
             f"us a call", "", "fit's training steps in phases (ms, medians of 20; kernel "
             "launches besides the GEMMs):", "",
             "| step | the whole step queued by the host | wait for the GPU, downloads "
             "| kernel launches | GEMMs |", "|---|---|---|---|---|"]
    lines += [step_phases(arch, batch) for arch in ("lenet5", "convnet") for batch in (64, 256)]
    lines += host_costs()
    lines += ["", "cProfile of 20 LeNet-5 training steps, batch 256:", "```"]
    step = training_steps("lenet5", 256)[0]
    pipelined(step, 3)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(20):
        step()
    sync()
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(25)
    return lines + out.getvalue().strip().splitlines() + ["```"]


def sweep(x):
    """Tile shapes of the unrolled 2-D kernel and of the separable passes (8192²)."""
    lines = ["", "Tile sweep (8192², ms, medians):", ""]
    xd = cuda.as_cuda_array(x)
    w3, w7 = (np.random.default_rng(k).standard_normal((k, k)).astype(np.float32)
              for k in (3, 7))
    g = kernels.gaussian1d(3.0).astype(np.float32)
    saved = (cuda_backend.UNROLL_TY, cuda_backend.UNROLL_ROWS, cuda_backend.PASS_TY,
             cuda_backend.PASS_ROWS)
    for ty, rows in ((8, 8), (4, 8), (8, 4), (4, 16), (8, 16), (16, 4)):
        cuda_backend.UNROLL_TY, cuda_backend.UNROLL_ROWS = ty, rows
        cuda_backend._UNROLLED.clear()
        t3, _ = timed(lambda: signal.correlate(xd, w3, method="direct"), 10)
        t7, _ = timed(lambda: signal.correlate(xd, w7, method="direct"), 10)
        lines.append(f"- unrolled TY={ty} ROWS={rows}: K3 {t3 * 1e3:.3f}, K7 {t7 * 1e3:.3f}")
    for ty, rows in ((8, 8), (8, 4), (4, 8), (16, 4), (8, 2)):
        cuda_backend.PASS_TY, cuda_backend.PASS_ROWS = ty, rows
        cuda_backend._PASSES.clear()
        t, _ = timed(lambda: signal.correlate(xd, np.outer(g, g), boundary="nearest"), 10)
        lines.append(f"- passes TY={ty} ROWS={rows}: gaussian σ3 {t * 1e3:.3f}")
    (cuda_backend.UNROLL_TY, cuda_backend.UNROLL_ROWS, cuda_backend.PASS_TY,
     cuda_backend.PASS_ROWS) = saved
    cuda_backend._UNROLLED.clear()
    cuda_backend._PASSES.clear()
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--md", help="write the tables as markdown to this file")
    ap.add_argument("--sweep", action="store_true", help="also time the tile shapes")
    ap.add_argument("--skip-training", action="store_true")
    ap.add_argument("--skip-filters", action="store_true")
    ap.add_argument("--launch", action="store_true",
                    help="also time numba's kernel launch against filtkit's fast path")
    ap.add_argument("--profile", action="store_true",
                    help="also profile the host's work (a filter call, training steps)")
    args = ap.parse_args(argv)
    bw = copy_bandwidth()
    err = parity()
    rows = []
    for n in () if args.skip_filters else (4096, 8192):
        x = cp.random.random((n, n), dtype=cp.float32)
        cases = [(correlation_case, k) for k in (3, 5, 7, 9, 15)]
        cases += [(gaussian_case, s) for s in (1.0, 3.0, 8.0)] + [(sobel_case,)]
        for case, *arg in cases:
            rows.append(case(x, *arg))
            label, t, r_cp, _, _, p, p_cp = rows[-1][:7]
            print(f"... {label}: {t * 1e3:.3f} ms, cupyx / filtkit {r_cp:.2f}; pipelined "
                  f"{p * 1e3:.3f} ms, {p_cp:.2f}", file=sys.stderr, flush=True)
    name = torch.cuda.get_device_name()
    lines = [f"GPU: {name}; device-to-device copy {bw:.0f} GB/s (read + write); "
             f"parity with the CPU backend: max rel. diff {err:.1e}",
             "",
             "Each call synchronised, then (pipelined) 30 calls in a row and one "
             "synchronisation:",
             "",
             "| case | filtkit ms | cupyx / filtkit | torch / filtkit | GB/s (% copy) "
             "| pipelined: filtkit ms | cupyx / filtkit | GB/s (% copy) | err | first call s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for label, t, r_cp, r_th, gbs, p, p_cp, p_gbs, e, first in rows:
        th = "-" if r_th != r_th else f"{r_th:.2f}"
        lines.append(f"| {label} | {t * 1e3:.3f} | {r_cp:.2f} | {th} | "
                     f"{gbs:.0f} ({100 * gbs / bw:.0f}%) | {p * 1e3:.3f} | {p_cp:.2f} | "
                     f"{p_gbs:.0f} ({100 * p_gbs / bw:.0f}%) | {e:.1e} | {first:.2f} |")
    if not args.skip_training:
        lines += ["", "| training step | filtkit ms | torch ms | torch / filtkit "
                  "| filtkit img/s | first loss rel. diff | first call s |",
                  "|---|---|---|---|---|---|---|"]
        for arch in ("lenet5", "convnet"):
            for batch in (64, 256):
                a, b, t_fk, t_th, agree, first = training_case(arch, batch)
                print(f"... {a} batch {b}: {t_fk * 1e3:.3f} ms, torch {t_th * 1e3:.3f} ms",
                      file=sys.stderr, flush=True)
                lines.append(f"| {a} batch {b} | {t_fk * 1e3:.3f} | {t_th * 1e3:.3f} | "
                             f"{t_th / t_fk:.2f} | {b / t_fk:,.0f} | {agree:.1e} | {first:.2f} |")
    if args.launch:
        lines += launch_comparison()
    if args.profile:
        lines += host_profile()
    if args.sweep:
        lines += sweep(cp.random.random((8192, 8192), dtype=cp.float32))
    text = "\n".join(lines)
    print(text)
    if args.md:
        Path(args.md).write_text(text + "\n")


if __name__ == "__main__":
    main()
