"""The machine code of filtkit's generated filtering kernels, read without a GPU.

Sessions without a GPU can still see what a change does to a kernel's code:
each kernel :mod:`filtkit.backends.cuda` writes out is compiled by numba to PTX
(NVVM, from the ``dev`` extra), then by ``ptxas`` to sm_90 (H100, H200) machine
code, which ``nvdisasm`` lists.  Printed per kernel (float32, stride and
dilation 1, the argument types its launch gives it): registers a thread, bytes
spilled; for the 2-D kernels the instructions that load a block's window when
it lies inside the image (compiled with that test forced true); and in the code
after the block's barrier (the arithmetic and the stores) the instructions,
shared-memory reads and FMAs, and the instructions per FMA.  Static counts, not
timings: fewer instructions per FMA is less work per output in the loops that
run most, not a measured speed.

Needs ``ptxas`` of NVVM's release or newer and ``nvdisasm``: from the pip packages
``nvidia-cuda-nvcc`` and ``nvidia-cuda-nvdisasm``, ``$CUDA_HOME/bin`` or the PATH::

    python benchmarks/kernel_code.py
    python benchmarks/kernel_code.py column row k3      # some of them

To compare with another commit, run the same file from a worktree of it with
``PYTHONPATH`` set to that worktree.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from numba import cuda, float32, float64, int64  # noqa: E402

from filtkit.backends import cuda as cb  # noqa: E402

A3, A2, A1 = float32[:, :, ::1], float32[:, ::1], float32[::1]
SIGNATURES = {  # as correlate2d and separable2d launch them
    "column": (A3, A1, A3, int64, int64, int64, int64, float64, int64),
    "row": (A3, A1, A1, A3, int64, int64, int64, int64, float64, int64),
    "unrolled": (A3, A2, A3, int64, int64, int64, float64),
}


def tool(name):
    """The path of a CUDA tool: from a pip package (``nvidia-cuda-nvcc`` has a ptxas of
    the same release as ``nvidia-nvvm``), in $CUDA_HOME/bin, or on the PATH."""
    for base in map(Path, sys.path):
        for path in base.glob(f"nvidia/*/bin/{name}"):
            return str(path)
    home = os.environ.get("CUDA_HOME")
    if home and (Path(home) / "bin" / name).exists():
        return str(Path(home) / "bin" / name)
    found = shutil.which(name)
    if found:
        return found
    sys.exit(f"{name} not found: pip install nvidia-cuda-nvcc nvidia-cuda-nvdisasm, or set "
             f"CUDA_HOME")


def machine_code(kernel, signature):
    """(instruction lines, registers, spilled bytes) of ``kernel`` for sm_90."""
    fn = getattr(kernel, "dispatcher", kernel).py_func
    ptx, _ = cuda.compile_ptx(fn, signature, cc=(9, 0))
    with tempfile.TemporaryDirectory() as tmp:
        src, cubin = Path(tmp) / "k.ptx", Path(tmp) / "k.cubin"
        src.write_text(ptx)
        info = subprocess.run([tool("ptxas"), "-arch=sm_90", "-O3", "-v", "-o", str(cubin),
                               str(src)], capture_output=True, text=True, check=True).stderr
        listing = subprocess.run([tool("nvdisasm"), "-c", str(cubin)], capture_output=True,
                                 text=True, check=True).stdout
    lines = [ln for ln in listing.splitlines() if re.match(r"\s+/\*[0-9a-f]{4,}\*/", ln)]
    regs = re.search(r"Used (\d+) registers", info)
    spilled = re.search(r"(\d+) bytes spill stores", info)
    return lines, int(regs.group(1)), int(spilled.group(1)) if spilled else 0


def _barrier(lines):
    return max((i for i, ln in enumerate(lines) if "BAR.SYNC" in ln), default=0)


def interior_loads(k):
    """Instructions before the barrier of the ``k x k`` kernel compiled with its test
    "the block's window lies inside the image" forced true: the loads of the blocks
    that need no boundary mode, all but the image's border of blocks.  None where the
    kernel has no such test (before 193575a)."""
    taps = frozenset((m, c) for m in range(k) for c in range(k))
    src = cb._unrolled_source(k, k, taps)
    test = re.search(r"^    if r_base >= 0 and .*:$", src, re.M)
    if test is None:
        return None
    forced = cb._generated(src.replace(test.group(0), "    if True:"), np.dtype(np.float32))
    lines, _, _ = machine_code(forced, SIGNATURES["unrolled"])
    return _barrier(lines)


def row(name, kernel, signature, loads=None):
    lines, regs, spilled = machine_code(kernel, signature)
    after = lines[_barrier(lines):]

    def count(op):
        return sum(1 for ln in after if re.search(rf"\b{op}\b", ln))

    lds, ffma = count("LDS"), count("FFMA")
    return (f"| {name} | {regs} | {spilled} | {'-' if loads is None else loads} | {len(after)} "
            f"| {lds} | {ffma} | {len(after) / max(ffma, 1):.1f} |")


def main(names):
    f32 = np.dtype(np.float32)

    def make_pass(kind):  # stride and dilation 1 (before 0e3d54a: one pass for all)
        try:
            return cb._make_pass(kind, f32, True)
        except TypeError:
            return cb._make_pass(kind, f32)

    kernels = {"column": ("column pass", lambda: make_pass("column"), "column"),
               "row": ("row pass", lambda: make_pass("row"), "row")}
    for k in (3, 5, 7):
        taps = frozenset((m, c) for m in range(k) for c in range(k))
        kernels[f"k{k}"] = (f"correlate {k}x{k}", lambda k=k, taps=taps: cb._unrolled(
            f32, k, k, taps), "unrolled")
    names = names or list(kernels)
    print("| kernel (float32, sm_90) | registers | spilled bytes | interior blocks' loads: "
          "instructions | instructions after the barrier | shared reads | FMAs "
          "| instructions per FMA |")
    print("|---|---|---|---|---|---|---|---|")
    for name in names:
        label, make, sig = kernels[name]
        loads = interior_loads(int(name[1:])) if sig == "unrolled" else None
        print(row(label, make(), SIGNATURES[sig], loads), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
