"""The host's share of a GPU training step, measured without a GPU.

A small network's training step on a GPU is mostly host work: for each of its
few dozen kernels and GEMMs Python checks arguments, takes arrays and launches,
while the GPU itself needs microseconds a kernel.  That work can be timed on any
machine.  Here ``fit`` trains LeNet-5 and the convnet "on the GPU" with numba's
real device-array objects and filtkit's own launch path (``_Launcher``, with the
real choice between its fast path and numba's, and cuda.core's parameter packing),
and what reaches the CUDA driver replaced by stand-ins that do nothing:

- allocations (CuPy's pool on a GPU machine) hand out made-up addresses;
- copies copy nothing (downloads give zeros), numba's own checks around them
  included;
- launches and cuBLAS calls queue nothing; a launch that would take numba's own
  path (a first signature, an array without C strides: about 0.3 ms each on a
  GPU) is counted apart.

Each step's operations are counted as well.

Printed per network and batch size, for one training step:
- the wall time of ``fit`` per batch (the median of several calls of a few epochs,
  each call's first step filling its arena);
- the main thread's CPU time;
- the operations: kernel launches, cuBLAS GEMMs, device allocations, uploads,
  downloads and device-to-device copies.

With a GPU that does nothing, the wall time includes waiting for the worker thread
that draws the next step's dropout masks; on a GPU that wait overlaps the step's
kernels.  What is not included is the driver's own time per launch or copy (a few
microseconds each, on the GPU's machine) and anything the GPU computes: a
bound on what the host costs, not a GPU timing (``bench_gpu.py`` is that).

::

    python benchmarks/host_cost.py                  # lenet5 and convnet, batch 64 and 256
    python benchmarks/host_cost.py --profile convnet 256
    python benchmarks/host_cost.py --filters        # also filter calls on a device image

To compare with an older commit (back to f30511f), copy this file into a
checkout of it and run it there (or set ``PYTHONPATH`` to the checkout); the
filtkit measured is printed first.
"""

import argparse
import contextlib
import cProfile
import ctypes
import inspect
import os
import pstats
import statistics
import sys
import time
from pathlib import Path

import numpy as np

if not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

COUNTS = dict.fromkeys(("launches", "numba launches", "GEMMs", "allocations", "uploads",
                        "downloads", "device copies"), 0)


def stub_the_driver():
    """Replace every call filtkit makes into the CUDA driver (through numba, cuda.core
    and CuPy) with a stand-in that does nothing but count.  Returns the patched
    :mod:`filtkit.backends.cuda`."""
    from cuda.core._kernel_arg_handler import ParamHolder
    from numba import cuda
    from numba.cuda.cudadrv import devicearray, devices, driver

    cuda.is_available = lambda: True
    devices._runtime.ensure_context = contextlib.nullcontext  # cuCtxGetCurrent on a GPU
    from filtkit.backends import cuda as cb

    if not cb.FAST_LAUNCH:
        sys.exit("filtkit's fast launch path is off: this numba-cuda launches otherwise")
    top = [1 << 20]  # the next free made-up address

    def allocate(shape, dtype):
        shape = tuple(int(n) for n in (shape if isinstance(shape, (tuple, list)) else (shape,)))
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        start = top[0]
        top[0] += -(-max(nbytes, 1) // 4096) * 4096
        COUNTS["allocations"] += 1
        data = driver.MemoryPointer(None, driver.binding.CUdeviceptr(start), nbytes)
        return devicearray.DeviceNDArray(shape, cb.c_strides(shape, dtype.itemsize), dtype,
                                         gpu_data=data)

    cb._allocate = allocate
    if not hasattr(cb, "Arena"):  # before the arena: device_empty allocated itself
        cb.device_empty = allocate
    cuda.device_array = lambda shape, dtype=np.float64, **kw: allocate(shape, dtype)
    cuda.to_device = lambda a, **kw: allocate(np.shape(a), np.asarray(a).dtype)
    cuda.pinned_array = lambda n, dtype: np.empty(n, dtype)

    class Event:
        def record(self, stream=0):
            pass

        def query(self):
            return True

        def synchronize(self):
            pass

    cuda.event = lambda timing=True: Event()
    cuda.default_stream = lambda: 0

    def copy_to_device(self, ary, stream=0):
        COUNTS["device copies" if isinstance(ary, devicearray.DeviceNDArray) else "uploads"] += 1

    def copy_to_host(self, ary=None, stream=0):
        COUNTS["downloads"] += 1
        if ary is None:
            return np.zeros(self.shape, self.dtype)
        ary[...] = 0
        return ary

    devicearray.DeviceNDArray.copy_to_device = copy_to_device
    devicearray.DeviceNDArray.copy_to_host = copy_to_host

    class Dispatcher:  # numba's, which compiles and launches at a signature's first call
        def __init__(self, real):
            self.real = real

        def __getitem__(self, launch):
            def numba_launch(*args):
                COUNTS["numba launches"] += 1

            return numba_launch

        def typeof_pyval(self, a):
            return self.real.typeof_pyval(a)

    def compiled(dispatcher, args):  # as _compiled, the kernel itself aside
        from numba.core import types

        signature = tuple(dispatcher.typeof_pyval(a) for a in args)
        if not cb._STREAM:
            cb._STREAM.append(None)
        if hasattr(cb, "_converters"):  # the real rules of the fast path
            converters = cb._converters(signature)
            if converters is None or any(convert is None and type(a) is not cb._DeviceNDArray
                                         for a, convert in zip(args, converters)):
                return None
            return object(), converters
        converters = []  # before cb._converters (f30511f): its rules, as _compiled had them
        for t in signature:
            if isinstance(t, types.Array):
                if t.layout != "C":
                    return None
                converters.append(None)
            elif isinstance(t, types.Integer):
                converters.append(getattr(ctypes, f"c_{t}"))
            elif t in (types.float32, types.float64):
                converters.append(ctypes.c_float if t == types.float32 else ctypes.c_double)
            elif t == types.boolean:
                converters.append(bool)
            else:
                return None
        return object(), tuple(converters)

    def launch(stream, config, kernel, *params):
        COUNTS["launches"] += 1
        ParamHolder(params)  # cuda.core's packing of the parameters, as on a GPU

    cb._compiled, cb._core_launch = compiled, launch
    for value in list(vars(cb).values()):
        if isinstance(value, cb._Launcher):
            value.dispatcher = Dispatcher(value.dispatcher)
    make_kernel = cb._kernel

    def kernel(fn):
        launcher = make_kernel(fn)
        launcher.dispatcher = Dispatcher(launcher.dispatcher)
        return launcher

    cb._kernel = kernel

    class Cublas:  # CuPy's binding, as _blas hands it out
        CUBLAS_OP_N, CUBLAS_OP_T, CUBLAS_POINTER_MODE_HOST = 0, 1, 0

        @staticmethod
        def setPointerMode(handle, mode):
            pass

        @staticmethod
        def sgemmStridedBatched(*args):
            COUNTS["GEMMs"] += 1

        dgemmStridedBatched = sgemmStridedBatched

    cb._blas = lambda: (Cublas, 1)
    stub_the_driver.backend = cb
    return cb


def measure(arch, batch, epochs, repeats, profile):
    from filtkit import cnn

    model = getattr(cnn, arch)(seed=0).to("cuda")
    rng = np.random.default_rng(0)
    nbatches = 10
    X = rng.standard_normal((batch * nbatches, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, batch * nbatches)
    quiet = {"progress": False} if "progress" in inspect.signature(model.fit).parameters else {}
    optimizer = cnn.Adam(model.parameters(), lr=1e-3)
    # the first launch of each signature (numba's path), and the arena's first step
    model.fit(X, y, epochs=1, batch_size=batch, optimizer=optimizer, **quiet)
    before = dict(COUNTS)
    wall, cpu = [], []
    steps = epochs * nbatches
    for _ in range(repeats):
        t, c = time.perf_counter(), time.thread_time()
        model.fit(X, y, epochs=epochs, batch_size=batch, optimizer=optimizer, **quiet)
        cpu.append((time.thread_time() - c) / steps)
        wall.append((time.perf_counter() - t) / steps)
    ops = {k: (COUNTS[k] - before[k]) / (repeats * steps) for k in COUNTS}
    row = (f"| {arch} | {batch} | {statistics.median(wall) * 1e3:.3f} | "
           f"{statistics.median(cpu) * 1e3:.3f} | "
           + " | ".join(f"{v:g}" for v in ops.values()) + " |")
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        model.fit(X, y, epochs=epochs, batch_size=batch, optimizer=optimizer, **quiet)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    return row


def filter_rows(calls=200):
    """Rows of the filters' table: the host's work per call on a 4096² float32 device
    array (median of ``calls``) and its operations."""
    from filtkit import signal

    cb = stub_the_driver.backend
    x = cb._allocate((4096, 4096), np.float32)
    w = np.random.default_rng(0).standard_normal((3, 3)).astype(np.float32)
    rows = []
    for name, call in [("correlate 3x3", lambda: signal.correlate(x, w)),
                       ("gaussian σ1", lambda: signal.gaussian(x, sigma=1.0)),
                       ("sobel", lambda: signal.sobel(x))]:
        call()  # the first launch of each signature: numba's path
        before, times = dict(COUNTS), []
        for _ in range(calls):
            t = time.perf_counter()
            call()
            times.append(time.perf_counter() - t)
        ops = {k: (COUNTS[k] - before[k]) / calls for k in COUNTS}
        rows.append(f"| {name} | {statistics.median(times) * 1e6:.0f} | "
                    + " | ".join(f"{v:g}" for v in ops.values()) + " |")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("arch", nargs="?", choices=["lenet5", "convnet"])
    parser.add_argument("batch", nargs="?", type=int)
    parser.add_argument("--epochs", type=int, default=5,
                        help="epochs of 10 batches a fit call (default 5)")
    parser.add_argument("--repeats", type=int, default=7,
                        help="fit calls timed, their median printed (default 7)")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile")
    parser.add_argument("--filters", action="store_true",
                        help="also time filter calls on a 4096x4096 device array")
    args = parser.parse_args(argv)
    stub_the_driver()
    import filtkit

    print(f"filtkit from {Path(filtkit.__file__).parent}\n")
    print("| network | batch | fit ms a step (wall) | main thread CPU ms | "
          + " | ".join(COUNTS) + " |")
    print("|---|---|---|---|" + "---|" * len(COUNTS))
    for arch in [args.arch] if args.arch else ["lenet5", "convnet"]:
        for batch in [args.batch] if args.batch else [64, 256]:
            print(measure(arch, batch, args.epochs, args.repeats, args.profile), flush=True)
    if args.filters:
        print("\n| filter, 4096² float32 on the device | host us a call | "
              + " | ".join(COUNTS) + " |")
        print("|---|---|" + "---|" * len(COUNTS))
        print("\n".join(filter_rows()))


if __name__ == "__main__":
    main()
