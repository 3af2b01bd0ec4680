"""filtkit.distributed against dask-image on one dask.distributed LocalCluster.

A 16384x16384 float32 image in a zarr store (uncompressed, 2048² chunks) is filtered
into another zarr store by each library on the same 2-worker cluster (processes, one
thread each) with the same chunks: a Gaussian (sigma 4, 'reflect') and a 7x7 correlation
('reflect').  Reported: the median wall time of the whole read-filter-write over
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


def _pipelines(kernel):
    import dask_image.ndfilters as dif

    from filtkit import distributed as fd

    return {
        ("gaussian σ4", "filtkit"): lambda x: fd.gaussian(x, sigma=4, mode="reflect"),
        ("gaussian σ4", "dask-image"): lambda x: dif.gaussian_filter(x, sigma=4,
                                                                     mode="reflect"),
        ("correlate 7x7", "filtkit"): lambda x: fd.correlate(x, kernel, boundary="reflect"),
        ("correlate 7x7", "dask-image"): lambda x: dif.correlate(x, kernel, mode="reflect"),
    }


def _run(client, fn, src, dst):
    """Filter the zarr store ``src`` into ``dst``; seconds and each worker's peak gain."""
    import dask.array as da

    base = client.run(_reset_peak)
    t0 = time.perf_counter()
    out = fn(da.from_zarr(src))
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
            for fn in pipelines.values():  # compile and import on every worker
                _run(client, fn, small, f"{tmp}/warm.zarr")

            _common.progress("checking the results ...")
            img = zarr.open_array(src, mode="r")[...]
            checks = {}
            for case, ref in [("gaussian σ4", gaussian(img, sigma=4, mode="reflect")),
                              ("correlate 7x7", signal.correlate(img, kernel,
                                                                 boundary="reflect"))]:
                for lib in ("filtkit", "dask-image"):
                    _run(client, pipelines[case, lib], src, f"{tmp}/{lib}.zarr")
                got = {lib: zarr.open_array(f"{tmp}/{lib}.zarr", mode="r")[...]
                       for lib in ("filtkit", "dask-image")}
                checks[case] = (float(np.abs(got["filtkit"] - ref).max()),
                                float(np.abs(got["filtkit"] - got["dask-image"]).max()))
                del got, ref
            del img

            times = {key: [] for key in pipelines}
            peaks = {key: 0 for key in pipelines}
            floor, floor_peak = [], 0  # the storage alone: the same read and write, no filter
            for r in range(args.runs):  # interleaved: every case sees the same machine
                for key, fn in pipelines.items():
                    _common.progress(f"run {r + 1}/{args.runs}: {key[0]}, {key[1]}")
                    s, p = _run(client, fn, src, f"{tmp}/out.zarr")
                    times[key].append(s)
                    peaks[key] = max(peaks[key], p)
                s, p = _run(client, lambda x: x, src, f"{tmp}/out.zarr")
                floor.append(s)
                floor_peak = max(floor_peak, p)

            _common.progress("filtering in the workers' memory ...")
            import dask.array as da

            image = client.persist(da.from_zarr(src))
            distributed.wait(image)
            mem_times = {key: [] for key in pipelines}
            for _ in range(args.runs):
                for key, fn in pipelines.items():
                    mem_times[key].append(_run_in_memory(client, fn, image))
            del image
        finally:
            client.close()
            cluster.close()

    mpix = size * size / 1e6
    io = statistics.median(floor)
    rows, mem_rows, summary = [], [], []
    for case in ("gaussian σ4", "correlate 7x7"):
        ft = statistics.median(times[case, "filtkit"])
        dt = statistics.median(times[case, "dask-image"])
        fmem = peaks[case, "filtkit"] / chunk_bytes
        dmem = peaks[case, "dask-image"] / chunk_bytes
        exact, vs_peer = checks[case]
        rows.append([case, f"{ft:.2f}", f"{dt:.2f}", f"{mpix / ft:.0f}", f"{mpix / dt:.0f}",
                     f"{dt / ft:.2f}", f"{(dt - io) / (ft - io):.2f}", f"{fmem:.1f}",
                     f"{dmem:.1f}", f"{exact:.1e}", f"{vs_peer:.1e}"])
        fm = statistics.median(mem_times[case, "filtkit"])
        dm = statistics.median(mem_times[case, "dask-image"])
        mem_rows.append([case, f"{fm:.2f}", f"{dm:.2f}", f"{mpix / fm:.0f}", f"{mpix / dm:.0f}",
                         f"{dm / fm:.2f}"])
        summary.append(f"{case}: throughput filtkit / dask-image {dt / ft:.2f} zarr to zarr "
                       f"(target >= 5; at most {(dt) / io:.2f} with a filter costing nothing), "
                       f"{dm / fm:.2f} in the workers' memory; peak per worker {fmem:.1f} "
                       f"chunks (target < 4; dask-image {dmem:.1f})")
    peers = {"dask": dask.__version__, "distributed": distributed.__version__,
             "dask-image": getattr(dask_image, "__version__", "?"), "zarr": zarr.__version__}
    elapsed = time.perf_counter() - t_start
    parts = [
        "## filtkit.distributed vs dask-image (bench_dask.py)", "",
        _common.run_description(started, elapsed, peers), "",
        f"{size}² float32 in an uncompressed zarr store, {CHUNK}² chunks, written to another "
        f"store; LocalCluster of 2 worker processes x 1 thread; median of {args.runs} "
        f"interleaved runs.  Peak memory: the most any worker process gained during a run, "
        f"in chunks of {chunk_bytes / 2**20:.0f} MiB.  max|err|: filtkit's chunked result "
        f"against its in-memory result, and against dask-image's.", "",
        _common.table(["case", "filtkit s", "dask-image s", "filtkit Mpx/s", "dask-image Mpx/s",
                       "ratio", "ratio above storage", "filtkit peak (chunks)",
                       "dask-image peak (chunks)", "max|err| in-memory", "max|err| dask-image"],
                      rows), "",
        f"Storage alone (the same zarr read and write, no filter): {io:.2f} s, "
        f"{mpix / io:.0f} Mpx/s, peak per worker {floor_peak / chunk_bytes:.1f} chunks.  "
        f"'ratio above storage' compares the time each library adds to it.", "",
        "Filtering alone: the image persisted in the workers' memory, results persisted there "
        "too (no storage):", "",
        _common.table(["case", "filtkit s", "dask-image s", "filtkit Mpx/s", "dask-image Mpx/s",
                       "ratio"], mem_rows), "",
    ]
    _common.publish("bench_dask", parts, summary, elapsed, args.quick)


if __name__ == "__main__":
    main()
