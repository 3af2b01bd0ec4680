"""filtkit.distributed against dask-image on one dask.distributed LocalCluster.

A 16384x16384 float32 image in a zarr store (uncompressed, 2048² chunks) is filtered
into another zarr store by each library on the same 2-worker cluster (processes, one
thread each) with the same chunks: a Gaussian (sigma 4, 'reflect') and a 7x7 correlation
('reflect').  filtkit runs twice: given the zarr array (its tasks read their halos from the
store) and given ``da.from_zarr`` (halos through ``dask.array.overlap``, as dask-image's).
Reported: the median wall time of the whole read-filter-write over
interleaved runs, the throughput ratio dask-image time / filtkit time (above 1: filtkit
faster; the target is >= 5), and the peak memory each worker process gained during the
run (``VmHWM`` reset through ``/proc/self/clear_refs`` before it), in chunks' worth (the
target is under 4).  Before timing, filtkit's chunked output is compared with filtkit's
in-memory result on the whole image and with dask-image's.

    python benchmarks/bench_dask.py            # full run, writes RESULTS.md (~3 minutes)
    python benchmarks/bench_dask.py --quick    # 4096² image, prints only
"""

import _common  # noqa: I001 - sets the BLAS threads and sys.path first

import argparse
import datetime
import logging
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

CHUNK = 2048


def _reset_peak():
    """In a worker: reset this process's peak RSS; return its current RSS in bytes."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status("VmRSS")


def _status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _peak():
    return _status("VmHWM")


def _write_input(path, size):
    import zarr

    spec = dict(shape=(size, size), chunks=(CHUNK, CHUNK), dtype="float32")
    if hasattr(zarr, "create_array"):  # zarr 3
        z = zarr.create_array(path, **spec, compressors=None, overwrite=True)
    else:
        z = zarr.open_array(path, mode="w", **spec, compressor=None)
    rng = np.random.default_rng(0)
    for i in range(0, size, CHUNK):
        z[i:i + CHUNK] = rng.random((min(CHUNK, size - i), size), dtype=np.float32)


#: the pipelines compared: filtkit given the zarr array (each task reads its own halo from
#: the store), filtkit given ``da.from_zarr`` (halos through ``dask.array.overlap``, as
#: dask-image), and dask-image
LIBS = ("filtkit", "filtkit overlap", "dask-image")


def _pipelines(kernel):
    import dask_image.ndfilters as dif

    from filtkit import distributed as fd

    def gaussian(x):
        return fd.gaussian(x, sigma=4, mode="reflect")

    def correlate(x):
        return fd.correlate(x, kernel, boundary="reflect")

    return {
        ("gaussian σ4", "filtkit"): gaussian,
        ("gaussian σ4", "filtkit overlap"): gaussian,
        ("gaussian σ4", "dask-image"): lambda x: dif.gaussian_filter(x, sigma=4,
                                                                     mode="reflect"),
        ("correlate 7x7", "filtkit"): correlate,
        ("correlate 7x7", "filtkit overlap"): correlate,
        ("correlate 7x7", "dask-image"): lambda x: dif.correlate(x, kernel, mode="reflect"),
    }


def _run(client, fn, src, dst, lib="dask-image"):
    """Filter the zarr store ``src`` into ``dst``; seconds and each worker's peak gain.
    ``lib`` "filtkit" passes the zarr array itself, the others ``da.from_zarr``."""
    import dask.array as da
    import zarr

    base = client.run(_reset_peak)
    t0 = time.perf_counter()
    out = fn(zarr.open_array(src, mode="r") if lib == "filtkit" else da.from_zarr(src))
    da.to_zarr(out, dst, overwrite=True, compute=False).compute(scheduler=client)
    seconds = time.perf_counter() - t0
    peaks = client.run(_peak)
    return seconds, max(peaks[w] - base[w] for w in peaks)


def _run_in_memory(client, fn, image):
    """Filter ``image`` (persisted on the workers) into results kept on the workers: the
    filtering alone, without storage; seconds."""
    from distributed import wait

    t0 = time.perf_counter()
    out = client.persist(fn(image))
    wait(out)
    seconds = time.perf_counter() - t0
    del out
    return seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4096² image; print only")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per case (default 3)")
    args = ap.parse_args()
    size = 4096 if args.quick else 16384
    started = datetime.datetime.now()
    t_start = time.perf_counter()
    _common.warn_if_busy()

    import dask
    import dask_image
    import distributed
    import zarr
    from distributed import Client, LocalCluster

    from filtkit import signal
    from filtkit.signal.filters import gaussian

    kernel = np.random.default_rng(1).random((7, 7)).astype(np.float32)
    pipelines = _pipelines(kernel)
    chunk_bytes = CHUNK * CHUNK * 4
    with tempfile.TemporaryDirectory(prefix="bench_dask_", dir=".") as tmp:
        src, small = f"{tmp}/in.zarr", f"{tmp}/small.zarr"
        _common.progress(f"writing a {size}² float32 zarr store ...")
        _write_input(src, size)
        _write_input(small, 2 * CHUNK)
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
        client = Client(cluster)
        try:
            for (_, lib), fn in pipelines.items():  # compile and import on every worker
                _run(client, fn, small, f"{tmp}/warm.zarr", lib)

            _common.progress("checking the results ...")
            img = zarr.open_array(src, mode="r")[...]
            checks = {}
            for case, ref in [("gaussian σ4", gaussian(img, sigma=4, mode="reflect")),
                              ("correlate 7x7", signal.correlate(img, kernel,
                                                                 boundary="reflect"))]:
                for i, lib in enumerate(LIBS):
                    _run(client, pipelines[case, lib], src, f"{tmp}/out{i}.zarr", lib)
                got = {lib: zarr.open_array(f"{tmp}/out{i}.zarr", mode="r")[...]
                       for i, lib in enumerate(LIBS)}
                checks[case] = tuple(float(np.abs(got[lib] - ref).max())
                                     for lib in LIBS[:2]) + (
                    float(np.abs(got["filtkit"] - got["dask-image"]).max()),)
                del got, ref
            del img

            times = {key: [] for key in pipelines}
            peaks = {key: 0 for key in pipelines}
            floor, floor_peak = [], 0  # the storage alone: the same read and write, no filter
            for r in range(args.runs):  # interleaved: every case sees the same machine
                for key, fn in pipelines.items():
                    _common.progress(f"run {r + 1}/{args.runs}: {key[0]}, {key[1]}")
                    s, p = _run(client, fn, src, f"{tmp}/out.zarr", key[1])
                    times[key].append(s)
                    peaks[key] = max(peaks[key], p)
                s, p = _run(client, lambda x: x, src, f"{tmp}/out.zarr")
                floor.append(s)
                floor_peak = max(floor_peak, p)

            _common.progress("filtering in the workers' memory ...")
            import dask.array as da

            image = client.persist(da.from_zarr(src))
            distributed.wait(image)
            mem_times = {key: [] for key in pipelines if key[1] != "filtkit"}
            for _ in range(args.runs):
                for key in mem_times:
                    mem_times[key].append(_run_in_memory(client, pipelines[key], image))
            del image
        finally:
            client.close()
            cluster.close()

    mpix = size * size / 1e6
    io = statistics.median(floor)
    rows, mem_rows, summary = [], [], []
    for case in ("gaussian σ4", "correlate 7x7"):
        t = {lib: statistics.median(times[case, lib]) for lib in LIBS}
        mem = {lib: peaks[case, lib] / chunk_bytes for lib in LIBS}
        dt = t["dask-image"]
        for lib in LIBS:
            err = checks[case][LIBS.index(lib)] if lib != "dask-image" else None
            rows.append([case, lib, f"{t[lib]:.2f}", f"{mpix / t[lib]:.0f}",
                         f"{dt / t[lib]:.2f}", f"{(dt - io) / (t[lib] - io):.2f}",
                         f"{mem[lib]:.1f}", "-" if err is None else f"{err:.1e}"])
        fm = statistics.median(mem_times[case, "filtkit overlap"])
        dm = statistics.median(mem_times[case, "dask-image"])
        mem_rows.append([case, f"{fm:.2f}", f"{dm:.2f}", f"{mpix / fm:.0f}", f"{mpix / dm:.0f}",
                         f"{dm / fm:.2f}"])
        for lib in LIBS[:2]:
            summary.append(
                f"{case}, {lib}: throughput / dask-image {dt / t[lib]:.2f} zarr to zarr (target "
                f">= 5; at most {dt / io:.2f} with a filter costing nothing); peak per worker "
                f"{mem[lib]:.1f} chunks (target < 4; dask-image {mem['dask-image']:.1f})")
        summary.append(f"{case}: filtering alone, in the workers' memory: filtkit / "
                       f"dask-image {dm / fm:.2f}")
        summary.append(f"{case}: filtkit vs dask-image max|diff| {checks[case][2]:.1e}")
    peers = {"dask": dask.__version__, "distributed": distributed.__version__,
             "dask-image": getattr(dask_image, "__version__", "?"), "zarr": zarr.__version__}
    elapsed = time.perf_counter() - t_start
    parts = [
        "## filtkit.distributed vs dask-image (bench_dask.py)", "",
        _common.run_description(started, elapsed, peers), "",
        f"{size}² float32 in an uncompressed zarr store, {CHUNK}² chunks, written to another "
        f"store; LocalCluster of 2 worker processes x 1 thread (distributed's default worker "
        f"environment); median of {args.runs} interleaved runs.  'filtkit': the zarr array "
        f"itself is passed, and every task reads its own chunk from the store, its halo from "
        f"small bands that one task per stored chunk cuts out (each chunk read twice, none "
        f"held for its neighbours); 'filtkit overlap': `da.from_zarr` is passed, and halos "
        f"come from the neighbouring chunks through dask.array.overlap, as in dask-image.  "
        f"Peak memory: the most any worker process gained during a run, in chunks of "
        f"{chunk_bytes / 2**20:.0f} MiB.  ratio: dask-image time / this time.  max|err|: "
        f"against filtkit's in-memory result on the whole image.", "",
        _common.table(["case", "library", "seconds", "Mpx/s", "ratio", "ratio above storage",
                       "peak per worker (chunks)", "max|err| in-memory"], rows), "",
        f"Storage alone (the same zarr read and write, no filter): {io:.2f} s, "
        f"{mpix / io:.0f} Mpx/s, peak per worker {floor_peak / chunk_bytes:.1f} chunks.  "
        f"'ratio above storage' compares the time each library adds to it.", "",
        "Filtering alone: the image persisted in the workers' memory, results persisted there "
        "too (no storage; filtkit through dask.array.overlap, as there is no store to read "
        "halos from):", "",
        _common.table(["case", "filtkit s", "dask-image s", "filtkit Mpx/s", "dask-image Mpx/s",
                       "ratio"], mem_rows), "",
    ]
    _common.publish("bench_dask", parts, summary, elapsed, args.quick)


if __name__ == "__main__":
    main()
