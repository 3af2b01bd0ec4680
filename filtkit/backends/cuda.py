"""CUDA backend functions: the ``numba.cuda`` twins of :mod:`filtkit.backends.cpu`.

Every public function here has the name and the arguments of its CPU twin
and computes the same result, on device arrays (numba device arrays or any
object with ``__cuda_array_interface__``); it launches one or more
``@cuda.jit`` kernels and returns when they are queued (as CUDA does).  The
same rules as on the CPU hold: clean C-contiguous float32/float64 arrays,
outputs already allocated, boundary modes as integer codes, and zero weights
skipped wherever the CPU twin skips them (the filtering kernels, not the
convolution layers), so NaN reaches the same outputs.

The 2-D correlation and the separable passes run in shared-memory tiles, im2col
writes a few elements of a row a thread, and the sums (the layers' weight and
bias gradients, the loss's total) are split among a block's threads and
finished by a tree in shared memory; most other kernels compute one output
element per thread, with the boundary handled by the CPU's own index map
(:func:`cpu._map_index`, compiled for the device).  Gradients are gathered
per element or summed in a fixed order, so no two threads ever write one
value and nothing needs atomics (the one atomic counts non-finite values).
The GEMMs of the dense and convolution layers run on cuBLAS where CuPy is
installed, else on a shared-memory tiled GEMM (:func:`batched_matmul`).
Kernels launch through :class:`_Launcher`: numba's launch for the first call
of each argument signature, then the same parameters passed to ``cuda.core``
directly.

``numba.cuda`` comes from the ``numba-cuda`` package (extra ``cuda``).  With
``NUMBA_ENABLE_CUDASIM=1`` set before it is imported, the kernels run on
Numba's CUDA simulator (slow: test on small arrays).
"""

import contextlib
import functools
import math
import threading

import numpy as np
from numba import config, cuda, uint64
from numba.np.numpy_support import from_dtype as numba_dtype

from . import c_strides, cpu, remember, reshaped

# the scalar cores the twins share, compiled for the device from the CPU's own source
_map_index = cuda.jit(device=True, inline=True)(cpu._map_index.py_func)
_window_max = cuda.jit(device=True, inline=True)(cpu._window_max.py_func)
_window_mean = cuda.jit(device=True, inline=True)(cpu._window_mean.py_func)
_relu_value = cuda.jit(device=True, inline=True)(cpu._relu_value.py_func)
_relu_grad = cuda.jit(device=True, inline=True)(cpu._relu_grad.py_func)
_adam_element = cuda.jit(device=True, inline=True)(cpu._adam_element.py_func)
_sgd_element = cuda.jit(device=True, inline=True)(cpu._sgd_element.py_func)

THREADS_1D = 256
THREADS_2D = (16, 16)


# -- launching -------------------------------------------------------------------------------
#: launch a kernel through cuda.core directly once numba has compiled and launched it for
#: an argument signature: numba's own launch types every argument afresh each time (about
#: 0.3 ms per launch, most of a training step's host time, in a profile on the H200).  Off
#: on the simulator (whose kernels are Python) and with several GPUs visible (a compiled
#: function belongs to the device it was loaded on).
FAST_LAUNCH = not config.ENABLE_CUDASIM
if FAST_LAUNCH:
    try:  # only where numba itself launches through cuda.core (numba-cuda 0.30 does)
        import ctypes

        from cuda.core import LaunchConfig as _LaunchConfig
        from cuda.core import launch as _core_launch
        from numba.cuda import dispatcher as _numba_dispatcher
        from numba.cuda.cudadrv.devicearray import DeviceNDArray as _DeviceNDArray

        FAST_LAUNCH = getattr(_numba_dispatcher, "launch", None) is _core_launch
    except ImportError:  # pragma: no cover - another numba-cuda
        FAST_LAUNCH = False


class _Launcher:
    """A ``@cuda.jit`` kernel, launched as numba's (``kernel[blocks, threads](*args)``,
    optionally ``[blocks, threads, 0, shared_bytes]``).

    The first launch of each argument signature (the arrays' dtypes and dimensions, the
    scalars' types) goes through numba, which compiles, type-checks and launches; later
    ones pass the arguments as numba passes them (an array as meminfo, parent, size,
    itemsize, data pointer, shape and strides; a scalar as the ctype of its parameter)
    straight to ``cuda.core.launch``.  An array whose strides are not C strides, another
    stream, or a signature numba compiled with options the fast path does not replicate
    always takes numba's path.
    """

    __slots__ = ("dispatcher", "_signatures")

    def __init__(self, dispatcher):
        self.dispatcher = dispatcher
        self._signatures = {}  # signature key -> (cuda.core kernel, converters) or None

    def __getitem__(self, launch):
        return functools.partial(self._launch, launch)

    def _launch(self, launch, *args):
        key = None
        if FAST_LAUNCH and (len(launch) < 3 or not launch[2]):
            key = tuple((a.dtype, a.ndim) if type(a) is _DeviceNDArray else type(a)
                        for a in args)
            compiled = self._signatures.get(key)
            if compiled is not None:
                params = _params(args, compiled[1])
                if params is not None:
                    _core_launch(_STREAM[0], _launch_config(launch), compiled[0], *params)
                    return
        self.dispatcher[launch](*args)
        if key is not None and key not in self._signatures:
            self._signatures[key] = _compiled(self.dispatcher, args)


def _kernel(fn):
    """``@cuda.jit`` for a kernel: its :class:`_Launcher` (numba's dispatcher itself on
    the simulator)."""
    dispatcher = cuda.jit(fn)
    return _Launcher(dispatcher) if FAST_LAUNCH else dispatcher


_STREAM = []  # the default stream, as cuda.core takes it (made at the first launch)
_CONFIGS = {}  # launch tuple -> LaunchConfig


def _launch_config(launch):
    cfg = _CONFIGS.get(launch)
    if cfg is None:
        grid, block = (tuple(int(n) for n in (d if isinstance(d, (tuple, list)) else (d,)))
                       for d in launch[:2])
        cfg = _LaunchConfig(grid=grid, block=block,
                            shmem_size=launch[3] if len(launch) > 3 else 0)
        if len(_CONFIGS) >= 4096:
            _CONFIGS.clear()
        _CONFIGS[launch] = cfg
    return cfg


def _compiled(dispatcher, args):
    """``(cuda.core kernel, converters)`` of the overload numba launched for ``args``,
    or None where the fast path would not launch it exactly as numba does."""
    if len(cuda.gpus) != 1:
        return None
    kernel = dispatcher.overloads.get(tuple(dispatcher.typeof_pyval(a) for a in args))
    if kernel is None or kernel.debug or kernel.cooperative or kernel.extensions:
        return None
    converters = _converters(kernel.argument_types)
    if converters is None or any(convert is None and type(a) is not _DeviceNDArray
                                 for a, convert in zip(args, converters)):
        return None
    if not _STREAM:
        from numba.cuda.cudadrv import driver

        _STREAM.append(driver._to_core_stream(0))
    return kernel._codelibrary.get_cufunc().kernel, converters


def _converters(argument_types):
    """For each parameter type, None (a C-contiguous array, passed as :func:`_params`
    spells it out) or the ctype numba passes a scalar of that type as; None for a
    signature with any other type."""
    types = _numba_dispatcher.types
    converters = []
    for t in argument_types:
        if isinstance(t, types.Array) and t.layout == "C":
            converters.append(None)
        elif isinstance(t, types.Integer):
            converters.append(getattr(ctypes, f"c_{t}"))
        elif t == types.float64:
            converters.append(ctypes.c_double)
        elif t == types.float32:
            converters.append(ctypes.c_float)
        elif t == types.boolean:
            converters.append(_as_is)
        else:
            return None
    return tuple(converters)


def _as_is(value):
    return value


def _params(args, converters):
    """The kernel parameters of ``args`` as numba passes them, or None for an array
    without C strides.  An array keeps its own parameters (its address, shape and
    strides never change): a training step passes the same arrays every time."""
    params = []
    for a, convert in zip(args, converters):
        if convert is None:
            held = getattr(a, "_filtkit_params", None)
            if held is None:
                held = remember(a, "_filtkit_params", _array_params(a))
            if not held:
                return None
            params += held
        else:
            params.append(convert(a))
    return params


def _array_params(a):
    """The parameters of the device array ``a`` (:func:`_params`), or () without C
    strides."""
    shape, strides, itemsize = a.shape, a.strides, a.dtype.itemsize
    if strides != c_strides(shape, itemsize):
        return ()
    return (0, 0, a.size, itemsize, a.device_ctypes_pointer.value, *shape, *strides)


def device_empty(shape, dtype):
    """An uninitialised device array, from CuPy's memory pool when CuPy is installed.

    A plain ``cuda.device_array`` is one cudaMalloc (and later cudaFree) per
    call, which costs more than filtering a 4096x4096 image with a 3x3
    kernel; CuPy's pool reuses freed blocks.  The result is a numba device
    array either way (it keeps the CuPy array alive).  Inside :func:`reusing`
    the array comes from that :class:`Arena`.
    """
    arena = getattr(_ARENA, "current", None)
    if arena is not None:
        return arena.take(shape, dtype)
    return _allocate(shape, dtype)


def _allocate(shape, dtype):
    cp = _cupy()
    if cp is None:
        return cuda.device_array(shape, dtype=dtype)
    # CuPy's arrays live on the default stream, where the kernels run: no need for
    # the host-blocking synchronisation a foreign array otherwise gets
    return cuda.as_cuda_array(cp.empty(shape, dtype=dtype), sync=False)


#: the largest array an :class:`Arena` keeps, and the most it keeps in all
ARENA_MAX_ARRAY, ARENA_MAX_TOTAL = 64 << 20, 1 << 30


class Arena:
    """The device arrays of a sequence of allocations that repeats (a training step's
    temporaries), handed out again in the same order each time it repeats.

    Each allocation inside :func:`reusing` takes the next array of the sequence
    recorded the first time, where its shape and dtype are the same: no
    allocation, and no new numba array object, each of which costs the host
    more than many of the kernels it feeds.  Where the sequence differs, the
    rest of it is recorded afresh.  Arrays above ARENA_MAX_ARRAY bytes, and
    those beyond ARENA_MAX_TOTAL in all, are allocated as usual each time.

    Only for sequences whose arrays are all dead when it repeats: an array
    handed out is written again at the next repeat.  The kernels run in the
    order they are queued, so a repeat may start before the GPU has finished
    the last one.
    """

    __slots__ = ("_arrays", "_next", "_bytes", "_full")

    def __init__(self):
        self._arrays = []  # (shape, dtype, array) in the order they were taken
        self._next = 0
        self._bytes = 0
        self._full = False  # ARENA_MAX_TOTAL reached: nothing more is recorded

    def take(self, shape, dtype):
        """The next array of the sequence for ``(shape, dtype)``."""
        shape, dtype = tuple(int(n) for n in shape), np.dtype(dtype)
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > ARENA_MAX_ARRAY:
            return _allocate(shape, dtype)
        i = self._next
        if i < len(self._arrays):
            kept_shape, kept_dtype, kept = self._arrays[i]
            if kept_shape == shape and kept_dtype == dtype:
                self._next = i + 1
                return kept
            for _, kept_dtype, kept in self._arrays[i:]:  # the sequence changed here
                self._bytes -= kept.size * kept_dtype.itemsize
            del self._arrays[i:]
            self._full = False
        if self._full or self._bytes + nbytes > ARENA_MAX_TOTAL:
            self._full = True
            return _allocate(shape, dtype)
        a = _allocate(shape, dtype)
        self._arrays.append((shape, dtype, a))
        self._bytes += nbytes
        self._next = i + 1
        return a


_ARENA = threading.local()  # .current: the arena of this thread's allocations, or None


@contextlib.contextmanager
def reusing(arena):
    """Allocations on this thread come from ``arena`` (from its start) inside the block."""
    previous = getattr(_ARENA, "current", None)
    arena._next = 0
    _ARENA.current = arena
    try:
        yield arena
    finally:
        _ARENA.current = previous


def to_device(a):
    """The host array ``a`` copied into a new C-contiguous device array from
    :func:`device_empty` (CuPy's pool where it is there: an upload each step or call
    then costs no cudaMalloc).

    Arrays of up to STAGING_MAX bytes go through pinned host memory
    (:class:`_Staging`) and are queued behind the kernels already launched: the
    host goes on at once.  An upload from ordinary (pageable) memory first waits
    for the GPU to finish everything before it, which mid-step (a training batch's
    labels, a dropout mask) leaves the GPU idle while the host launches what
    follows.  ``a`` may be changed as soon as this returns, either way.
    """
    a = np.ascontiguousarray(a)
    out = device_empty(a.shape, a.dtype)
    if 0 < a.nbytes <= STAGING_MAX:
        _staging().upload(a, out)
    else:
        out.copy_to_device(a)
    return out


#: the pinned ring of :class:`_Staging` and the largest upload that goes through it
STAGING_BYTES, STAGING_MAX = 32 << 20, 8 << 20


class _Staging:
    """A ring of pinned host memory that small uploads are copied through.

    Each upload takes the next stretch of the ring, copies the host array
    there and queues the copy to the device on the default stream (where the
    kernels run), then records an event behind it.  A stretch is written again
    only once the events of the earlier copies from it have passed; those of
    copies already done are dropped as each upload starts.
    """

    def __init__(self, nbytes):
        self.ring = cuda.pinned_array(nbytes, np.uint8)
        self.pos = 0
        self.pending = []  # (start, end, event) of the queued copies, oldest first
        self.lock = threading.Lock()  # uploads from several threads take turns

    def upload(self, a, out):
        with self.lock:
            self._upload(a, out)

    def _upload(self, a, out):
        n = a.nbytes
        start = self.pos if self.pos + n <= len(self.ring) else 0
        end = start + n
        while self.pending and _passed(self.pending[0][2]):
            del self.pending[0]
        last = max((k for k, (s, e, _) in enumerate(self.pending) if s < end and start < e),
                   default=-1)
        if last >= 0:  # the events pass in order: waiting for the last overlapping is enough
            self.pending[last][2].synchronize()
            del self.pending[:last + 1]
        view = self.ring[start:end].view(a.dtype).reshape(a.shape)
        view[...] = a
        stream = cuda.default_stream()
        out.copy_to_device(view, stream=stream)
        event = cuda.event() if config.ENABLE_CUDASIM else cuda.event(timing=False)
        event.record(stream=stream)
        self.pending.append((start, end, event))
        self.pos = -(-end // 256) * 256  # the next stretch starts aligned


def _passed(event):
    """Whether the GPU has passed ``event`` (the simulator's, run at once, have no
    ``query``)."""
    query = getattr(event, "query", None)
    return query is None or query()


@functools.cache
def _staging():
    return _Staging(STAGING_BYTES)


def _grid1(n):
    """Blocks of THREADS_1D threads, or one block of whole warps when ``n`` is smaller
    (a parameter's bias, a batch's rows: no idle warps launched)."""
    threads = min(THREADS_1D, 32 * max(1, math.ceil(n / 32)))
    return (max(1, math.ceil(n / threads)),), (threads,)


def _rows(x, a, e):
    """``x[a:e]``, or ``x`` itself for all of it (a view is a new numba array object,
    which costs more host time than some kernels)."""
    return x if a == 0 and e == x.shape[0] else x[a:e]


MAX_GRID_Z = 65535  # CUDA's limit on gridDim.z: longer batches launch in slices


def _slices(nb, per=1):
    """Batch ranges [s, e) whose ``(e - s) * per`` grid layers fit in MAX_GRID_Z."""
    step = max(1, MAX_GRID_Z // per)
    return [(s, min(nb, s + step)) for s in range(0, max(nb, 1), step)]


def _grid3(nb, ho, wo):
    """THREADS_2D blocks over (wo, ho), halved along an axis of 8 or fewer outputs (the
    small planes of a network's deeper layers), one grid layer per plane."""
    tx, ty = THREADS_2D
    tx, ty = (tx // 2 if wo <= tx // 2 else tx), (ty // 2 if ho <= ty // 2 else ty)
    return (max(1, math.ceil(wo / tx)), max(1, math.ceil(ho / ty)), max(1, nb)), (tx, ty, 1)


# -- boundary handling shared with the CPU -------------------------------------------------
def boundary_index(n, lo, hi, mode):
    """Source indices of the extended axis (host side, as the CPU twin)."""
    return cpu.boundary_index(n, lo, hi, mode)


# -- 2-D correlation -------------------------------------------------------------------------
@_kernel
def _correlate2d_kernel(x, w, out, off0, off1, s0, s1, d0, d1, mode, cval):
    j, i, b = cuda.grid(3)
    nb, h, wdt = x.shape
    if b >= nb or i >= out.shape[1] or j >= out.shape[2]:
        return
    acc = out.dtype.type(0)
    cv = out.dtype.type(cval)
    for m in range(w.shape[0]):
        r = _map_index(i * s0 + m * d0 - off0, h, mode)
        for k in range(w.shape[1]):
            wk = w[m, k]
            if wk == 0:
                continue
            c = _map_index(j * s1 + k * d1 - off1, wdt, mode)
            acc += wk * (cv if r < 0 or c < 0 else x[b, r, c])
    out[b, i, j] = acc


#: the register-tiled kernels (stride and dilation 1): blocks of UNROLL_TX x UNROLL_TY
#: threads, each thread UNROLL_ROWS outputs of one column; kernels of up to
#: UNROLL_MAX_TAPS taps written out whole, larger ones looping over their columns
UNROLL_TX, UNROLL_TY, UNROLL_ROWS, UNROLL_MAX_TAPS = 32, 4, 8, 49
UNROLL_LOOP_ROWS = 16  # larger kernels of up to this many rows loop over their columns
_UNROLLED = {}


def _unrolled_source(kh, kw, taps):
    """Source of a 2-D correlation kernel for one ``kh x kw`` kernel.

    A block's input window (halo included, mapped through the boundary mode) goes
    to shared memory once; each thread then slides down one column of it, every
    value read once from shared memory and multiplied into each of its
    UNROLL_ROWS accumulators that needs it, one kernel column's weights at a time
    in registers.  Per output that is ``kw * (rows + kh - 1) / rows`` shared reads
    instead of ``kh * kw``; each output sums its taps column by column.

    ``taps``, the (m, k) pairs of the non-zero weights, writes every column out
    and leaves the zero taps out of the code itself; None (kernels of more than
    UNROLL_MAX_TAPS taps, whose written-out code takes minutes to compile) loops
    over the columns and skips zero weights as it meets them.  Each thread reads
    shared memory at constant offsets from one unsigned index (see
    :func:`_pass_source`).
    """
    rows, th = UNROLL_ROWS, UNROLL_TY * UNROLL_ROWS
    rows_in, cols_in = th + kh - 1, UNROLL_TX + kw - 1
    src = [
        "def kernel(x, w, out, off0, off1, mode, cval):",
        f"    sm = cuda.shared.array({rows_in * cols_in}, DTYPE)",
        "    tx = cuda.threadIdx.x",
        "    ty = cuda.threadIdx.y",
        "    b = cuda.blockIdx.z",
        f"    i0 = cuda.blockIdx.y * {th}",
        f"    j0 = cuda.blockIdx.x * {UNROLL_TX}",
        "    h = x.shape[1]",
        "    wdt = x.shape[2]",
        "    cv = out.dtype.type(cval)",
    ]
    src += _window_loads(rows_in, cols_in, UNROLL_TX * UNROLL_TY)
    src += [
        "    cuda.syncthreads()",
        "    j = j0 + tx",
        "    if j >= out.shape[2]:",
        "        return",
        f"    a0 = ty * {rows}",
        f"    base = U(a0 * {cols_in} + tx)",
        "    zero = out.dtype.type(0)",
    ]
    src += [f"    acc{r} = zero" for r in range(rows)]
    if taps is None:
        columns, indent = ["k"], "        "
        src += [f"    for k in range({kw}):", "        col = base + U(k)"]
    else:
        columns, indent = range(kw), "    "
    for k in columns:
        live = [m for m in range(kh) if taps is None or (m, k) in taps]
        src += [f"{indent}w{m} = w[{m}, {k}]" for m in live]
        for a in range(rows + kh - 1):
            uses = [(a - m, m) for m in live if 0 <= a - m < rows]
            if uses:
                at = f"col + U({a * cols_in})" if taps is None else f"base + U({a * cols_in + k})"
                src.append(f"{indent}v = sm[{at}]")
            for r, m in uses:
                if taps is None:
                    src += [f"{indent}if w{m} != zero:", f"{indent}    acc{r} += w{m} * v"]
                else:
                    src.append(f"{indent}acc{r} += w{m} * v")
    src += ["    i = i0 + a0",
            "    column = out[U(b), :, U(j)]"]
    for r in range(rows):
        src += [f"    if i + {r} < out.shape[1]:", f"        column[U(i + {r})] = acc{r}"]
    return "\n".join(src)


def _window_loads(rows_in, cols_in, threads):
    """Source that copies a block's ``rows_in x cols_in`` input window (mapped through
    the boundary mode) into ``sm``, the window's element ``e`` by thread ``e % threads``.

    Written out in rounds of LOAD_ROUND elements a thread: first every index, then
    every load (from an index clamped into the window, so none needs a guard), then
    every store, the values outside the image (constant mode) replaced by ``cv``.  A
    thread thus has a round's loads in flight at once; a loop whose store waits on
    each load in turn has one.  Each element's row and column follow from the
    previous one's by additions (one division a thread).  A block whose window lies
    inside the image (all but the image's border of blocks) reads it without the
    boundary mode's index maps, in unsigned arithmetic (see :func:`_pass_source`).
    """
    n = rows_in * cols_in
    per = -(-n // threads)
    rounds = [range(s, min(per, s + LOAD_ROUND)) for s in range(0, per, LOAD_ROUND)]
    down, across = divmod(threads, cols_in)  # from one element of a thread to its next

    def indices(t, p, cast):
        """Row ``{p}a{t}`` and column ``{p}c{t}`` of the thread's element ``t``."""
        if t == 0:
            return [f"        {p}a0 = {cast('tid')} // {cast(cols_in)}",
                    f"        {p}c0 = {cast('tid')} - {p}a0 * {cast(cols_in)}"]
        src = [f"        {p}c{t} = {p}c{t - 1} + {cast(across)}",
               f"        {p}a{t} = {p}a{t - 1} + {cast(down)}",
               f"        if {p}c{t} >= {cast(cols_in)}:",
               f"            {p}c{t} -= {cast(cols_in)}",
               f"            {p}a{t} += {cast(1)}"]
        if (t + 1) * threads > n:  # beyond the window for some threads: clamped
            src.append(f"        {p}a{t} = min({p}a{t}, {cast(rows_in - 1)})")
        return src

    def stores(ts, store):
        out = []
        for t in ts:
            if (t + 1) * threads > n:  # beyond the window for some threads: not stored
                out += [f"        if tid + {t * threads} < {n}:", f"            {store(t)}"]
            else:
                out.append(f"        {store(t)}")
        return out

    def unsigned(v):
        return f"U({v})"

    src = [f"    tid = ty * {UNROLL_TX} + tx",
           "    r_base = i0 - off0",
           "    c_base = j0 - off1",
           f"    if r_base >= 0 and r_base + {rows_in} <= h and c_base >= 0 "
           f"and c_base + {cols_in} <= wdt:",
           "        ur = U(r_base)",
           "        uc = U(c_base)",
           "        plane = x[U(b)]"]
    for ts in rounds:  # inside: names of their own (unsigned; numba unifies no types)
        for t in ts:
            src += indices(t, "i", unsigned)
        src += [f"        iv{t} = plane[ur + ia{t}, uc + ic{t}]" for t in ts]
        src += stores(ts, lambda t: f"sm[U(tid + {t * threads})] = iv{t}")
    src.append("    else:")
    for ts in rounds:
        for t in ts:
            src += indices(t, "l", str)
            src += [f"        lr{t} = _map_index(r_base + la{t}, h, mode)",
                    f"        lq{t} = _map_index(c_base + lc{t}, wdt, mode)"]
        src += [f"        lv{t} = x[b, U(max(lr{t}, 0)), U(max(lq{t}, 0))]" for t in ts]
        src += stores(ts, lambda t: f"sm[U(tid + {t * threads})] = "
                                    f"cv if lr{t} < 0 or lq{t} < 0 else lv{t}")
    return src


#: elements of a tile's input window one thread loads before it stores any
LOAD_ROUND = 16


def _generated(source, dtype):
    """The kernel ``kernel`` defined by one of this module's generated ``source``s, for
    ``dtype`` (its shared arrays' ``DTYPE``; ``U`` is the unsigned index type)."""
    scope = {"cuda": cuda, "DTYPE": numba_dtype(dtype), "_map_index": _map_index, "U": uint64}
    exec(source, scope)  # noqa: S102 - our own generated source
    return _kernel(scope["kernel"])


def _unrolled(dtype, kh, kw, taps):
    """The compiled kernel of :func:`_unrolled_source` (one per dtype, shape and, for
    written-out kernels, tap pattern)."""
    key = (dtype, kh, kw, taps)
    if key not in _UNROLLED:
        _UNROLLED[key] = _generated(_unrolled_source(kh, kw, taps), dtype)
    return _UNROLLED[key]


def _host_values(w):
    """The values of the small device array ``w`` on the host: the copy
    :func:`filtkit.signal._gpu._weights` keeps beside it, else one download."""
    host = getattr(w, "_filtkit_host", None)
    return w.copy_to_host() if host is None else host


TILE_W, TILE_ROWS_PER_THREAD, TILE_THREADS_Y = 32, 4, 8
TILE_H = TILE_ROWS_PER_THREAD * TILE_THREADS_Y
SHARED_LIMIT = 48 * 1024  # bytes of dynamic shared memory every CUDA device allows


def _make_tiled_correlate2d(dtype):
    """The tiled kernel for one dtype (a shared array's dtype is fixed at compile time)."""

    @_kernel
    def kernel(x, w, out, off0, off1, s0, s1, d0, d1, mode, cval, rows_in, cols_in):
        # one block: a TILE_H x TILE_W output tile; its input window (halo included,
        # already mapped through the boundary mode) and the kernel go to shared memory
        sm = cuda.shared.array(0, dtype=dtype)
        b = cuda.blockIdx.z
        i0 = cuda.blockIdx.y * TILE_H
        j0 = cuda.blockIdx.x * TILE_W
        kh, kw = w.shape
        h, wdt = x.shape[1], x.shape[2]
        ntile = rows_in * cols_in
        tid = cuda.threadIdx.y * cuda.blockDim.x + cuda.threadIdx.x
        if tid < kh * kw:  # the caller sends kernels of more than 256 taps elsewhere
            sm[ntile + tid] = w[tid // kw, tid % kw]
        cv = out.dtype.type(cval)
        r_base = i0 * s0 - off0
        c_base = j0 * s1 - off1
        # rows by threadIdx.y, columns by threadIdx.x: coalesced, and no division
        for a in range(cuda.threadIdx.y, rows_in, cuda.blockDim.y):
            r = _map_index(r_base + a, h, mode)
            for c in range(cuda.threadIdx.x, cols_in, cuda.blockDim.x):
                q = _map_index(c_base + c, wdt, mode)
                sm[a * cols_in + c] = cv if r < 0 or q < 0 else x[b, r, q]
        cuda.syncthreads()
        tx = cuda.threadIdx.x
        j = j0 + tx
        if j >= out.shape[2]:
            return
        for rr in range(TILE_ROWS_PER_THREAD):
            il = cuda.threadIdx.y + rr * TILE_THREADS_Y
            i = i0 + il
            if i < out.shape[1]:
                acc = out.dtype.type(0)
                for m in range(kh):
                    base = (il * s0 + m * d0) * cols_in + tx * s1
                    for k in range(kw):
                        wk = sm[ntile + m * kw + k]
                        if wk != 0:
                            acc += wk * sm[base + k * d1]
                out[b, i, j] = acc

    return kernel


_TILED = {}


def correlate2d(x, w, out, off0, off1, s0, s1, d0, d1, mode, cval):
    """Batched 2-D cross-correlation with boundary handling (see the CPU twin).

    Stride and dilation 1 (image filtering): the register-tiled kernels of
    :func:`_unrolled_source`, compiled for the kernel's shape (and, up to
    UNROLL_MAX_TAPS taps, its zero taps).  Otherwise, and for kernels taller
    than UNROLL_LOOP_ROWS: shared-memory tiles of 32x32 outputs, each thread
    four of them, the input window with its halo read once per block, already
    mapped through the boundary mode, and the kernel beside it.  Windows beyond
    48 KiB (large strides or dilations) and kernels of more than 256 taps fall
    back to one output per thread.
    """
    nb, ho, wo = out.shape
    kh, kw = w.shape
    dtype = np.dtype(out.dtype)
    rows_in = UNROLL_TY * UNROLL_ROWS + kh - 1
    if (s0 == s1 == d0 == d1 == 1 and (kh * kw <= UNROLL_MAX_TAPS or kh <= UNROLL_LOOP_ROWS)
            and rows_in * (UNROLL_TX + kw - 1) * dtype.itemsize <= SHARED_LIMIT):
        taps = None
        if kh * kw <= UNROLL_MAX_TAPS:
            taps = frozenset((int(m), int(k)) for m, k in zip(*np.nonzero(_host_values(w))))
        kernel = _unrolled(dtype, kh, kw, taps)
        for a, e in _slices(nb):
            blocks = (math.ceil(wo / UNROLL_TX), math.ceil(ho / (UNROLL_TY * UNROLL_ROWS)), e - a)
            kernel[blocks, (UNROLL_TX, UNROLL_TY, 1)](_rows(x, a, e), w, _rows(out, a, e), off0,
                                                      off1, mode, cval)
        return
    rows_in = (TILE_H - 1) * s0 + (kh - 1) * d0 + 1
    cols_in = (TILE_W - 1) * s1 + (kw - 1) * d1 + 1
    shared = (rows_in * cols_in + kh * kw) * dtype.itemsize
    tiled = shared <= SHARED_LIMIT and kh * kw <= TILE_W * TILE_THREADS_Y
    if tiled and dtype not in _TILED:
        _TILED[dtype] = _make_tiled_correlate2d(numba_dtype(dtype))
    for a, e in _slices(nb):
        if tiled:
            blocks = (math.ceil(wo / TILE_W), math.ceil(ho / TILE_H), e - a)
            _TILED[dtype][blocks, (TILE_W, TILE_THREADS_Y, 1), 0, shared](
                _rows(x, a, e), w, _rows(out, a, e), off0, off1, s0, s1, d0, d1, mode, cval,
                rows_in, cols_in)
        else:
            blocks, threads = _grid3(e - a, ho, wo)
            _correlate2d_kernel[blocks, threads](_rows(x, a, e), w, _rows(out, a, e), off0, off1,
                                                 s0, s1, d0, d1, mode, cval)


@_kernel
def _column_pass_kernel(x, col, tmp, off0, s0, d0, mode, cval):
    """tmp[b, i, c] = sum_m col[m] * X[b, i*s0 + m*d0 - off0, c] (every source column)."""
    c, i, b = cuda.grid(3)
    nb, h, wdt = x.shape
    if b >= nb or i >= tmp.shape[1] or c >= wdt:
        return
    acc = tmp.dtype.type(0)
    cv = tmp.dtype.type(cval)
    for m in range(col.shape[0]):
        wm = col[m]
        if wm == 0:
            continue
        r = _map_index(i * s0 + m * d0 - off0, h, mode)
        acc += wm * (cv if r < 0 else x[b, r, c])
    tmp[b, i, c] = acc


@_kernel
def _row_pass_kernel(tmp, row, col, out, off1, s1, d1, mode, cval):
    """out[b, i, j] = sum_k row[k] * T[b, i, j*s1 + k*d1 - off1]; beyond T's columns
    (constant mode) T reads ``cval * sum(col)``, what the 2-D kernel sees there."""
    j, i, b = cuda.grid(3)
    nb, ho, wdt = tmp.shape
    if b >= nb or i >= ho or j >= out.shape[2]:
        return
    edge = out.dtype.type(0)
    for m in range(col.shape[0]):
        edge += col[m]
    edge *= out.dtype.type(cval)
    acc = out.dtype.type(0)
    for k in range(row.shape[0]):
        wk = row[k]
        if wk == 0:
            continue
        c = _map_index(j * s1 + k * d1 - off1, wdt, mode)
        acc += wk * (edge if c < 0 else tmp[b, i, c])
    out[b, i, j] = acc


#: the tiled 1-D passes of the separable filters: blocks of 32 x PASS_TY threads, each
#: thread PASS_ROWS outputs (the column pass: down a column; the row pass: along a row)
PASS_TY, PASS_ROWS = 8, 8


def _pass_source(kind, unit):
    """Source of a tiled 1-D pass of the separable filters (``kind`` "column" or "row").

    One block: 32 x PASS_TY threads; each thread PASS_ROWS outputs (down a column, at
    rows ``ty + PASS_TY * r``; along a row, at columns ``tx + 32 * r``).  The stretch
    of the input the block reads goes to shared memory once, mapped through the
    boundary mode (beyond a row's ends, constant mode: ``cval * sum(col)``, what the
    2-D kernel sees there).  Taps run in the outer loop, each weight read once and
    skipped when zero, and the PASS_ROWS accumulators in the inner one, written out:
    independent sums in registers, one shared read per tap and output.

    Shared memory is indexed with unsigned integers: numba wraps a signed index
    that may be negative, several instructions in every read.  With ``unit``
    (stride and dilation 1 along the pass) the reads' offsets are constants,
    which the compiler folds into the reads themselves.
    """
    rows = PASS_ROWS
    if kind == "column":
        src = [
            "def kernel(x, col, tmp, off0, s0, d0, mode, cval, rows_in):",
            "    sm = cuda.shared.array(0, dtype=DTYPE)",
            "    tx = cuda.threadIdx.x",
            "    ty = cuda.threadIdx.y",
            "    b = cuda.blockIdx.z",
            f"    i0 = cuda.blockIdx.y * {PASS_TY * rows}",
            "    c = cuda.blockIdx.x * 32 + tx",
            "    h = x.shape[1]",
            "    wdt = x.shape[2]",
            "    cv = tmp.dtype.type(cval)",
            "    inside = c < wdt",
            "    top = i0 * s0 - off0",
            "    cc = c if inside else wdt - 1",
            "    source = x[U(b), :, U(cc)]",
        ]
        src += _strip_loads("ty", "rows_in", PASS_TY, "        ", [
            "r{u} = _map_index(top + a{u}, h, mode)",
            "v{u} = source[U(max(r{u}, 0))]",
            "sm[U(a{u} * 32 + tx)] = v{u} if inside and r{u} >= 0 else cv"])
        src += [
            "    cuda.syncthreads()",
            "    if not inside:",
            "        return",
            "    taps = col",
            "    base = U(ty * s0 * 32 + tx)",
            "    tap_step = U(d0 * 32)",
            f"    out_step = U({PASS_TY} * s0 * 32)",
            "    n_out = tmp.shape[1]",
            "    column = tmp[U(b), :, U(c)]",
        ]

        def store(r):
            return [f"    i = i0 + ty + {PASS_TY * r}", "    if i < n_out:",
                    f"        column[U(i)] = acc{r}"]
    else:
        src = [
            "def kernel(tmp, row, col, out, off1, s1, d1, mode, cval, cols_in):",
            "    sm = cuda.shared.array(0, dtype=DTYPE)",
            "    tx = cuda.threadIdx.x",
            "    ty = cuda.threadIdx.y",
            "    b = cuda.blockIdx.z",
            f"    i = cuda.blockIdx.y * {PASS_TY} + ty",
            f"    j0 = cuda.blockIdx.x * {32 * rows}",
            "    ho = tmp.shape[1]",
            "    wdt = tmp.shape[2]",
            "    edge = out.dtype.type(0)",
            "    for m in range(col.shape[0]):",
            "        edge += col[m]",
            "    edge *= out.dtype.type(cval)",
            "    left = j0 * s1 - off1",
            "    if i < ho:",
            "        source = tmp[U(b), U(i)]",
        ]
        src += _strip_loads("tx", "cols_in", 32, "            ", [
            "q{u} = _map_index(left + a{u}, wdt, mode)",
            "v{u} = source[U(max(q{u}, 0))]",
            "sm[U(ty * cols_in + a{u})] = edge if q{u} < 0 else v{u}"])
        src += [
            "    cuda.syncthreads()",
            "    if i >= ho:",
            "        return",
            "    taps = row",
            "    base = U(ty * cols_in + tx * s1)",
            "    tap_step = U(d1)",
            "    out_step = U(32 * s1)",
            "    n_out = out.shape[2]",
            "    line = out[U(b), U(i)]",
            "    j = U(j0 + tx)",
        ]

        def store(r):
            return [f"    if j0 + tx + {32 * r} < n_out:",
                    f"        line[j + U({32 * r})] = acc{r}"]
    src.append("    zero = taps.dtype.type(0)")
    src += [f"    acc{r} = zero" for r in range(rows)]
    src += ["    p = base",
            "    for m in range(taps.shape[0]):",
            "        wm = taps[U(m)]",
            "        if wm != zero:"]
    if unit:  # stride and dilation 1: every offset a constant, folded into the read
        step = PASS_TY * 32 if kind == "column" else 32
        src += [f"            acc{r} += wm * sm[p + U({r * step})]" for r in range(rows)]
    else:
        src += [f"            acc{r} += wm * sm[p + U({r}) * out_step]" for r in range(rows)]
    src.append("        p += tap_step")
    for r in range(rows):
        src += store(r)
    return "\n".join(src)


def _strip_loads(first, count, step, indent, lines):
    """Source of a pass's loads into shared memory: elements ``first``, ``first + step``,
    ... below ``count``, PASS_ROWS of them a round, written out as in
    :func:`_window_loads` (indices, then loads, then stores; the index clamped into the
    stretch, the store guarded).  ``lines``: the index map, the load and the store of
    element ``a{u}``, formatted with ``u``; ``indent`` is the loop body's."""
    per = PASS_ROWS
    src = [f"{indent[:-4]}for a in range({first}, {count}, {step * per}):"]
    src += [f"{indent}a{u} = min(a + {step * u}, {count} - 1)" for u in range(per)]
    for line in lines[:2]:
        src += [indent + line.format(u=u) for u in range(per)]
    for u in range(per):
        src += [f"{indent}if a + {step * u} < {count}:", f"{indent}    {lines[2].format(u=u)}"]
    return src


def _make_pass(kind, dtype, unit):
    """The compiled pass of :func:`_pass_source`, once per kind, dtype and ``unit``."""
    key = (kind, dtype, unit)
    if key not in _PASSES:
        _PASSES[key] = _generated(_pass_source(kind, unit), dtype)
    return _PASSES[key]


_PASSES = {}


def separable2d(x, col, row, out, off0, off1, s0, s1, d0, d1, mode, cval):
    """``correlate2d`` with the rank-1 kernel ``outer(col, row)`` as a column pass
    and a row pass (see the CPU twin); one temporary of (B, Ho, W).

    Each pass runs in shared-memory tiles (the input stretch a block reads is
    mapped through the boundary mode once); a tile beyond 48 KiB (long strides
    or dilations) falls back to one output per thread, reading global memory.
    """
    nb, ho, wo = out.shape
    wdt = x.shape[2]
    dtype = np.dtype(out.dtype)
    tmp = device_empty((nb, ho, wdt), out.dtype)
    rows_in = (PASS_TY * PASS_ROWS - 1) * s0 + (col.shape[0] - 1) * d0 + 1
    cols_in = (32 * PASS_ROWS - 1) * s1 + (row.shape[0] - 1) * d1 + 1
    shared_c = rows_in * 32 * dtype.itemsize
    shared_r = PASS_TY * cols_in * dtype.itemsize
    column_pass = _make_pass("column", dtype, s0 == d0 == 1)
    row_pass = _make_pass("row", dtype, s1 == d1 == 1)
    for a, e in _slices(nb):
        if shared_c <= SHARED_LIMIT:
            blocks = (math.ceil(wdt / 32), math.ceil(ho / (PASS_TY * PASS_ROWS)), e - a)
            column_pass[blocks, (32, PASS_TY, 1), 0, shared_c](
                _rows(x, a, e), col, _rows(tmp, a, e), off0, s0, d0, mode, cval, rows_in)
        else:
            blocks, threads = _grid3(e - a, ho, wdt)
            _column_pass_kernel[blocks, threads](_rows(x, a, e), col, _rows(tmp, a, e), off0, s0,
                                                 d0, mode, cval)
        if shared_r <= SHARED_LIMIT and math.ceil(ho / PASS_TY) <= MAX_GRID_Z:  # gridDim.y
            blocks = (math.ceil(wo / (32 * PASS_ROWS)), math.ceil(ho / PASS_TY), e - a)
            row_pass[blocks, (32, PASS_TY, 1), 0, shared_r](
                _rows(tmp, a, e), row, col, _rows(out, a, e), off1, s1, d1, mode, cval, cols_in)
        else:
            blocks, threads = _grid3(e - a, ho, wo)
            _row_pass_kernel[blocks, threads](_rows(tmp, a, e), row, col, _rows(out, a, e), off1,
                                              s1, d1, mode, cval)


@_kernel
def _magnitude_kernel(g0, g1, out, scale):
    j, i, b = cuda.grid(3)
    if b >= out.shape[0] or i >= out.shape[1] or j >= out.shape[2]:
        return
    a = g0[b, i, j]
    c = g1[b, i, j]
    out[b, i, j] = math.sqrt(a * a + c * c) / scale


def gradient_magnitude2d(x, edge, smooth, out, mode, cval):
    """scikit-image's edge magnitude (see the CPU twin): two separable passes."""
    off = edge.shape[0] // 2
    g0 = device_empty(out.shape, out.dtype)
    g1 = device_empty(out.shape, out.dtype)
    separable2d(x, edge, smooth, g0, off, off, 1, 1, 1, 1, mode, cval)
    separable2d(x, smooth, edge, g1, off, off, 1, 1, 1, 1, mode, cval)
    for a, e in _slices(out.shape[0]):
        blocks, threads = _grid3(e - a, *out.shape[1:])
        _magnitude_kernel[blocks, threads](_rows(g0, a, e), _rows(g1, a, e), _rows(out, a, e),
                                           out.dtype.type(math.sqrt(2.0)))


# -- pooling -------------------------------------------------------------------------------
@_kernel
def _max_pool_kernel(x, out, argmax, k0, k1, s0, s1, p0, p1):
    j, i, b = cuda.grid(3)
    nb, h, w = x.shape
    if b >= nb or i >= out.shape[1] or j >= out.shape[2]:
        return
    r0, r1 = max(i * s0 - p0, 0), min(i * s0 - p0 + k0, h)
    c0, c1 = max(j * s1 - p1, 0), min(j * s1 - p1 + k1, w)
    out[b, i, j], argmax[b, i, j] = _window_max(x, b, r0, r1, c0, c1)


def max_pool2d(x, out, argmax, k0, k1, s0, s1, p0, p1):
    """Max pooling with torch's first-maximum / NaN rule (see the CPU twin)."""
    for a, e in _slices(out.shape[0]):
        blocks, threads = _grid3(e - a, *out.shape[1:])
        _max_pool_kernel[blocks, threads](_rows(x, a, e), _rows(out, a, e), _rows(argmax, a, e),
                                          k0, k1, s0, s1, p0, p1)


@_kernel
def _max_pool_backward_kernel(dy, argmax, dx, k0, k1, s0, s1, p0, p1):
    """dx[b, r, c] = sum of dy over the windows whose argmax is (r, c): a gather."""
    c, r, b = cuda.grid(3)
    nb, h, w = dx.shape
    if b >= nb or r >= h or c >= w:
        return
    ho, wo = dy.shape[1], dy.shape[2]
    flat = r * w + c
    # windows i with i*s0 - p0 <= r < i*s0 - p0 + k0
    ilo = max(0, (r + p0 - k0) // s0 + 1)
    ihi = min(ho - 1, (r + p0) // s0)
    jlo = max(0, (c + p1 - k1) // s1 + 1)
    jhi = min(wo - 1, (c + p1) // s1)
    acc = dx.dtype.type(0)
    for i in range(ilo, ihi + 1):
        for j in range(jlo, jhi + 1):
            if argmax[b, i, j] == flat:
                acc += dy[b, i, j]
    dx[b, r, c] = acc


def max_pool2d_backward(dy, argmax, dx, k0, k1, s0, s1, p0, p1):
    """Route each ``dy`` to its window's ``argmax`` (see the CPU twin; the window
    geometry is needed here to gather instead of scatter)."""
    for a, e in _slices(dx.shape[0]):
        blocks, threads = _grid3(e - a, *dx.shape[1:])
        _max_pool_backward_kernel[blocks, threads](_rows(dy, a, e), _rows(argmax, a, e),
                                                   _rows(dx, a, e), k0, k1, s0, s1, p0, p1)


@_kernel
def _avg_pool_kernel(x, out, k0, k1, s0, s1, p0, p1):
    j, i, b = cuda.grid(3)
    nb, h, w = x.shape
    if b >= nb or i >= out.shape[1] or j >= out.shape[2]:
        return
    r0, r1 = max(i * s0 - p0, 0), min(i * s0 - p0 + k0, h)
    c0, c1 = max(j * s1 - p1, 0), min(j * s1 - p1 + k1, w)
    out[b, i, j] = _window_mean(x, b, r0, r1, c0, c1, k0 * k1)


def avg_pool2d(x, out, k0, k1, s0, s1, p0, p1):
    """Mean pooling, zero padding counted in the mean (see the CPU twin)."""
    for a, e in _slices(out.shape[0]):
        blocks, threads = _grid3(e - a, *out.shape[1:])
        _avg_pool_kernel[blocks, threads](_rows(x, a, e), _rows(out, a, e), k0, k1, s0, s1, p0, p1)


@_kernel
def _avg_pool_backward_kernel(dy, dx, k0, k1, s0, s1, p0, p1):
    c, r, b = cuda.grid(3)
    nb, h, w = dx.shape
    if b >= nb or r >= h or c >= w:
        return
    ho, wo = dy.shape[1], dy.shape[2]
    ilo = max(0, (r + p0 - k0) // s0 + 1)
    ihi = min(ho - 1, (r + p0) // s0)
    jlo = max(0, (c + p1 - k1) // s1 + 1)
    jhi = min(wo - 1, (c + p1) // s1)
    area = dx.dtype.type(k0 * k1)
    acc = dx.dtype.type(0)
    for i in range(ilo, ihi + 1):
        for j in range(jlo, jhi + 1):
            acc += dy[b, i, j] / area
    dx[b, r, c] = acc


def avg_pool2d_backward(dy, dx, k0, k1, s0, s1, p0, p1):
    """Spread each ``dy / (k0*k1)`` over its window (see the CPU twin)."""
    for a, e in _slices(dx.shape[0]):
        blocks, threads = _grid3(e - a, *dx.shape[1:])
        _avg_pool_backward_kernel[blocks, threads](_rows(dy, a, e), _rows(dx, a, e), k0, k1, s0,
                                                   s1, p0, p1)


# -- convolution layers --------------------------------------------------------------------
@_kernel
def _conv2d_kernel(x, w, b, out, s0, s1, p0, p1, d0, d1):
    j, i, t = cuda.grid(3)
    nb, nc, h, wdt = x.shape
    no, _, kh, kw = w.shape
    if t >= nb * no or i >= out.shape[2] or j >= out.shape[3]:
        return
    n = t // no
    o = t - n * no
    acc = out.dtype.type(0)
    for c in range(nc):
        for m in range(kh):
            r = i * s0 + m * d0 - p0
            if r < 0 or r >= h:
                continue
            for k in range(kw):
                q = j * s1 + k * d1 - p1
                if 0 <= q < wdt:
                    acc += w[o, c, m, k] * x[n, c, r, q]
    out[n, o, i, j] = acc + b[o]


#: the most elements of unrolled columns (im2col) one GEMM of the convolution layers
#: takes at once (256 MiB of float32): longer batches go in slices, and a sample
#: beyond it alone runs the direct kernels (one output per thread)
COLS_LIMIT = 2**26


def _col_slices(nb, per_sample):
    """Batch ranges for :data:`COLS_LIMIT`, or None when one sample exceeds it."""
    if per_sample > COLS_LIMIT:
        return None
    step = max(1, min(COLS_LIMIT // per_sample, MAX_GRID_Z))
    return [(s, min(nb, s + step)) for s in range(0, nb, step)]


#: elements of one row of columns each thread of :func:`_im2col` writes (read by the
#: host and compiled into the kernel: not to be changed once it is compiled)
IM2COL_PER_THREAD = 4


@_kernel
def _im2col_kernel(x, cols, s0, s1, p0, p1, d0, d1, kh, kw, wo, di, dj, row0):
    """cols[n, (c*kh + m)*kw + k, i*wo + j] = x[n, c, i*s0 + m*d0 - p0, j*s1 + k*d1 - p1],
    zero outside ``x``: each thread IM2COL_PER_THREAD elements of one row, a block's
    width apart (consecutive threads along the row).  ``(di, dj) = divmod(block width,
    wo)``: each next (i, j) follows by additions, so a thread's five divisions and
    remainders serve all its elements (each 64-bit one is a routine of tens of
    instructions).
    Rows from ``row0`` on, one a grid layer (gridDim.y)."""
    nt = cuda.blockDim.x
    row = cuda.blockIdx.y + row0
    n = cuda.blockIdx.z
    t = cuda.blockIdx.x * nt * IM2COL_PER_THREAD + cuda.threadIdx.x
    hw = cols.shape[2]
    if t >= hw:
        return
    k = row % kw
    c = row // kw
    m = c % kh
    c = c // kh
    i = t // wo
    j = t - i * wo
    r0 = m * d0 - p0
    q0 = k * d1 - p1
    h, wdt = x.shape[2], x.shape[3]
    zero = cols.dtype.type(0)
    plane = x[n, c]  # views taken once, indexed with unsigned (never negative) indices
    line = cols[n, row]
    for _ in range(IM2COL_PER_THREAD):
        if t < hw:
            r = i * s0 + r0
            q = j * s1 + q0
            line[uint64(t)] = (plane[uint64(r), uint64(q)] if 0 <= r < h and 0 <= q < wdt
                               else zero)
        t += nt
        i += di
        j += dj
        if j >= wo:
            j -= wo
            i += 1


def _im2col(x, cols, s0, s1, p0, p1, d0, d1, kh, kw, wo):
    nb, nk, hw = cols.shape
    (_,), (threads,) = _grid1(hw)
    blocks = max(1, math.ceil(hw / (threads * IM2COL_PER_THREAD)))
    di, dj = divmod(threads, wo)
    for r0 in range(0, nk, MAX_GRID_Z):  # gridDim.y has the limit of gridDim.z
        _im2col_kernel[(blocks, min(MAX_GRID_Z, nk - r0), nb), (threads, 1, 1)](
            x, cols, s0, s1, p0, p1, d0, d1, kh, kw, wo, di, dj, r0)


@_kernel
def _add_bias_kernel(out, b, o0):
    t, o, n = cuda.grid(3)
    o += o0
    if n < out.shape[0] and o < out.shape[1] and t < out.shape[2]:
        out[n, o, t] += b[o]


def conv2d(x, w, b, out, s0, s1, p0, p1, d0, d1):
    """Batched multi-channel correlation plus bias (see the CPU twin): as on the CPU,
    the input unrolled into columns (im2col) and one GEMM per sample, here batched
    (:func:`batched_matmul`), then the bias; a sample whose columns exceed
    :data:`COLS_LIMIT` runs the direct kernel instead."""
    nb, no, ho, wo = out.shape
    nc, kh, kw = w.shape[1], w.shape[2], w.shape[3]
    nk, hw = nc * kh * kw, ho * wo
    slices = _col_slices(nb, nk * hw)
    if slices is None:
        for a, e in _slices(nb, no):
            blocks, threads = _grid3((e - a) * no, ho, wo)
            _conv2d_kernel[blocks, threads](_rows(x, a, e), w, b, _rows(out, a, e), s0, s1, p0,
                                            p1, d0, d1)
        return
    w2 = reshaped(w, (1, no, nk))
    out3 = reshaped(out, (nb, no, hw))
    for a, e in slices:
        cols = device_empty((e - a, nk, hw), x.dtype)
        _im2col(_rows(x, a, e), cols, s0, s1, p0, p1, d0, d1, kh, kw, wo)
        batched_matmul(w2, cols, _rows(out3, a, e), False, False, False)
        (blocks,), (threads,) = _grid1(hw)
        for o0 in range(0, no, MAX_GRID_Z):  # channels from o0 on, one a grid layer
            _add_bias_kernel[(blocks, min(MAX_GRID_Z, no - o0), e - a), (threads, 1, 1)](
                _rows(out3, a, e), b, o0)


@cuda.jit(device=True, inline=True)
def _output_at(r, q, m, k, s0, s1, p0, p1, d0, d1, ho, wo):
    """(i, j) of the output whose window puts tap (m, k) on input (r, q) (a whole
    stride step inside the output), else (-1, -1).  A unit stride divides nothing (a
    branch every thread takes alike); another costs a division and a remainder a
    tap, each a 64-bit routine of tens of instructions."""
    a = r + p0 - m * d0
    e = q + p1 - k * d1
    if a < 0 or e < 0:
        return -1, -1
    if s0 != 1:
        if a % s0 != 0:
            return -1, -1
        a //= s0
    if s1 != 1:
        if e % s1 != 0:
            return -1, -1
        e //= s1
    if a >= ho or e >= wo:
        return -1, -1
    return a, e


@_kernel
def _conv2d_grad_input_kernel(dy, w, dx, s0, s1, p0, p1, d0, d1):
    """dx[n, c, r, q]: every (o, m, k) whose output position lands on a whole
    stride step, gathered (the full correlation with the rotated kernel)."""
    q, r, t = cuda.grid(3)
    nb, nc, h, wdt = dx.shape
    no, _, kh, kw = w.shape
    if t >= nb * nc or r >= h or q >= wdt:
        return
    n = t // nc
    c = t - n * nc
    acc = dx.dtype.type(0)
    for m in range(kh):
        for k in range(kw):
            i, j = _output_at(r, q, m, k, s0, s1, p0, p1, d0, d1, dy.shape[2], dy.shape[3])
            if i >= 0:
                for o in range(no):
                    acc += w[o, c, m, k] * dy[n, o, i, j]
    dx[n, c, r, q] = acc


@_kernel
def _col2im_kernel(dcols, dx, s0, s1, p0, p1, d0, d1, kh, kw, ho, wo):
    """dx[n, c, r, q] = the sum of the column entries unrolled from (r, q): a gather,
    in order of (m, k), so no two threads ever write one value."""
    q, r, t = cuda.grid(3)
    nb, nc, h, wdt = dx.shape
    if t >= nb * nc or r >= h or q >= wdt:
        return
    n = t // nc
    c = t - n * nc
    acc = dx.dtype.type(0)
    for m in range(kh):
        for k in range(kw):
            i, j = _output_at(r, q, m, k, s0, s1, p0, p1, d0, d1, ho, wo)
            if i >= 0:
                acc += dcols[n, (c * kh + m) * kw + k, i * wo + j]
    dx[n, c, r, q] = acc


def conv2d_grad_input(dy, w, dx, s0, s1, p0, p1, d0, d1):
    """Gradient of :func:`conv2d` with respect to ``x`` (see the CPU twin): as on the
    CPU, ``w^T dy[n]`` (batched GEMM) folded back by col2im, here a gather."""
    nb, nc, h, wdt = dx.shape
    no, _, kh, kw = w.shape
    ho, wo = dy.shape[2], dy.shape[3]
    nk, hw = nc * kh * kw, ho * wo
    slices = _col_slices(nb, nk * hw)
    if slices is not None:
        w2 = reshaped(w, (1, no, nk))
        dy3 = reshaped(dy, (nb, no, hw))
        for a, e in slices:
            dcols = device_empty((e - a, nk, hw), dx.dtype)
            batched_matmul(w2, _rows(dy3, a, e), dcols, True, False, False)
            for s, t in _slices(e - a, nc):
                blocks, threads = _grid3((t - s) * nc, h, wdt)
                _col2im_kernel[blocks, threads](_rows(dcols, s, t), _rows(dx, a + s, a + t), s0,
                                                s1, p0, p1, d0, d1, kh, kw, ho, wo)
        return
    for a, e in _slices(nb, nc):
        blocks, threads = _grid3((e - a) * nc, h, wdt)
        _conv2d_grad_input_kernel[blocks, threads](_rows(dy, a, e), w, _rows(dx, a, e), s0, s1, p0,
                                                   p1, d0, d1)


@_kernel
def _conv2d_grad_weight_kernel(x, dy, dw, s0, s1, p0, p1, d0, d1, accumulate):
    """dw[o, c, m, k] (+)= sum over n, i, j: one thread per weight, a private sum (the
    direct path, for samples beyond :data:`COLS_LIMIT`)."""
    idx = cuda.grid(1)
    no, nc, kh, kw = dw.shape
    if idx >= no * nc * kh * kw:
        return
    k = idx % kw
    m = (idx // kw) % kh
    c = (idx // (kw * kh)) % nc
    o = idx // (kw * kh * nc)
    nb, _, h, wdt = x.shape
    ho, wo = dy.shape[2], dy.shape[3]
    acc = dw.dtype.type(0)
    for n in range(nb):
        for i in range(ho):
            r = i * s0 + m * d0 - p0
            if r < 0 or r >= h:
                continue
            for j in range(wo):
                q = j * s1 + k * d1 - p1
                if 0 <= q < wdt:
                    acc += dy[n, o, i, j] * x[n, c, r, q]
    dw[o, c, m, k] = dw[o, c, m, k] + acc if accumulate else acc


#: threads of a reduction's block (a power of two; its shared array's size, compiled
#: into the kernels: not to be changed once they are compiled)
REDUCE_THREADS = 256


@cuda.jit(device=True, inline=True)
def _tree_sum(sm, at, value, k, n, unit):
    """The block's partial sums ``value`` stored at ``sm[at]``, then summed by a tree
    over the ``n`` threads (a power of two) whose index ``k`` differs: each thread
    of the first half adds the value ``half * unit`` elements on, ``half`` halving,
    so ``sm[at]`` of the threads with ``k == 0`` ends with their sums.  Every
    thread of the block calls it (it holds barriers)."""
    sm[at] = value
    cuda.syncthreads()
    half = n // 2
    while half > 0:
        if k < half:
            sm[at] += sm[at + half * unit]
        cuda.syncthreads()
        half //= 2


def _make_reductions(dtype):
    """The two reduction kernels for one dtype (their shared arrays' dtype is fixed at
    compile time), each a sum split among a block's threads and finished by a tree in
    shared memory: a fixed order, so the same result every run, and no thread
    walks a long sum alone (each step of such a walk waits on a load: a few hundred
    of them leave the GPU mostly idle).  A thread past the end adds nothing but
    takes part in the tree (no thread leaves before a barrier)."""

    @_kernel
    def columns(a, out, accumulate):
        # out[j] (+)= sum_i a[i, j]: a block of (tx, ty) threads has tx columns, the
        # rows split among ty (threadIdx.y, then every ty-th), reading consecutive
        # columns (coalesced); then a tree over threadIdx.y
        sm = cuda.shared.array(REDUCE_THREADS, dtype)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        nx, ny = cuda.blockDim.x, cuda.blockDim.y
        j = cuda.blockIdx.x * nx + tx
        acc = out.dtype.type(0)
        if j < a.shape[1]:
            for i in range(ty, a.shape[0], ny):
                acc += a[i, j]
        _tree_sum(sm, ty * nx + tx, acc, ty, ny, nx)
        if ty == 0 and j < a.shape[1]:
            out[j] = out[j] + sm[tx] if accumulate else sm[tx]

    @_kernel
    def rows(a, out):
        # out[i] = sum_j a[i, j]: a block of (32, ty) threads has ty rows, each row's
        # values split among 32 threads (threadIdx.x, then every 32nd: coalesced);
        # then a tree over threadIdx.x
        sm = cuda.shared.array(REDUCE_THREADS, dtype)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        nx = cuda.blockDim.x
        i = cuda.blockIdx.x * cuda.blockDim.y + ty
        acc = out.dtype.type(0)
        if i < a.shape[0]:
            for j in range(tx, a.shape[1], nx):
                acc += a[i, j]
        _tree_sum(sm, ty * nx + tx, acc, tx, nx, 1)
        if tx == 0 and i < a.shape[0]:
            out[i] = sm[ty * nx]

    return columns, rows


_REDUCTIONS = {}


def _reductions(dtype):
    dtype = np.dtype(dtype)
    if dtype not in _REDUCTIONS:
        _REDUCTIONS[dtype] = _make_reductions(numba_dtype(dtype))
    return _REDUCTIONS[dtype]


def _column_sums(a, out, accumulate):
    """``out[j] (+)= sum_i a[i, j]`` for a 2-D ``a`` (:func:`_make_reductions`): up to
    32 columns a block, the rows split among the rest of its REDUCE_THREADS."""
    n = a.shape[1]
    nx = min(32, 1 << max(0, (n - 1).bit_length()))
    _reductions(out.dtype)[0][max(1, math.ceil(n / nx)), (nx, REDUCE_THREADS // nx)](
        a, out, accumulate)


def _row_sums(a, out):
    """``out[i] = sum_j a[i, j]`` for a 2-D ``a`` (:func:`_make_reductions`): each row
    summed by 32 threads, REDUCE_THREADS // 32 rows a block."""
    ny = REDUCE_THREADS // 32
    _reductions(out.dtype)[1][max(1, math.ceil(a.shape[0] / ny)), (32, ny)](a, out)


def conv2d_grad_weight(x, dy, dw, db, s0, s1, p0, p1, d0, d1, nchunks, accumulate):
    """Gradients of :func:`conv2d` for ``w`` and ``b`` (see the CPU twin; ``nchunks``
    is accepted for the same signature).  As on the CPU, ``dy[n] cols[n]^T`` per
    sample (one batched GEMM), the per-sample products then summed over the batch
    (:func:`_column_sums`); the bias gradient sums each sample's channel planes
    (:func:`_row_sums`), then those over the batch; with ``accumulate`` each adds
    its sum to what ``dw`` and ``db`` hold.  Nothing is accumulated by several
    threads into one value."""
    nb, no, ho, wo = dy.shape
    nc, kh, kw = dw.shape[1], dw.shape[2], dw.shape[3]
    nk, hw = nc * kh * kw, ho * wo
    dy3 = reshaped(dy, (nb, no, hw))
    slices = _col_slices(nb, nk * hw)
    if slices is None:
        blocks, threads = _grid1(dw.size)
        _conv2d_grad_weight_kernel[blocks, threads](x, dy, dw, s0, s1, p0, p1, d0, d1,
                                                    accumulate)
    else:
        dw2 = reshaped(dw, (no, nk))
        for a, e in slices:
            cols = device_empty((e - a, nk, hw), x.dtype)
            _im2col(_rows(x, a, e), cols, s0, s1, p0, p1, d0, d1, kh, kw, wo)
            part = device_empty((e - a, no, nk), dw.dtype)
            batched_matmul(_rows(dy3, a, e), cols, part, False, True, False)
            _column_sums(reshaped(part, (e - a, no * nk)), reshaped(dw2, (no * nk,)),
                         accumulate or a > 0)
    planes = device_empty((nb, no), db.dtype)  # each sample's sum of each channel
    _row_sums(reshaped(dy3, (nb * no, hw)), reshaped(planes, (nb * no,)))
    _column_sums(planes, db, accumulate)


# -- element-wise ----------------------------------------------------------------------------
@_kernel
def _relu_kernel(x, out, slope):
    i = cuda.grid(1)
    if i < x.shape[0]:
        out[i] = _relu_value(x[i], out.dtype.type(slope), out.dtype.type(0))


def relu(x, out, slope):
    """out = x where x > 0 (or NaN), else slope * x (see the CPU twin)."""
    blocks, threads = _grid1(x.shape[0])
    _relu_kernel[blocks, threads](x, out, slope)


@_kernel
def _relu_backward_kernel(x, dy, dx, slope):
    i = cuda.grid(1)
    if i < x.shape[0]:
        dx[i] = _relu_grad(x[i], dy[i], dx.dtype.type(slope), dx.dtype.type(0))


def relu_backward(x, dy, dx, slope):
    """dx = dy where x > 0, else slope * dy (see the CPU twin)."""
    blocks, threads = _grid1(x.shape[0])
    _relu_backward_kernel[blocks, threads](x, dy, dx, slope)


@_kernel
def _adam_kernel(theta, g, m, v, weight_decay, w1, beta2, one_minus_beta2, neg_step_size,
                 sqrt_bc2, eps):
    i = cuda.grid(1)
    if i < theta.shape[0]:
        theta[i], m[i], v[i] = _adam_element(
            theta[i], g[i], m[i], v[i], weight_decay, w1, abs(w1) < 0.5,
            theta.dtype.type(1), beta2, one_minus_beta2, neg_step_size, sqrt_bc2, eps)


def adam_update(theta, g, m, v, weight_decay, w1, beta2, one_minus_beta2, neg_step_size,
                sqrt_bc2, eps):
    """One Adam step on flat device arrays, in place (see the CPU twin)."""
    blocks, threads = _grid1(theta.shape[0])
    _adam_kernel[blocks, threads](theta, g, m, v, weight_decay, w1, beta2, one_minus_beta2,
                                  neg_step_size, sqrt_bc2, eps)


@_kernel
def _extend2d_kernel(x, out, idx0, idx1, cval):
    c, a, b = cuda.grid(3)
    if b >= x.shape[0] or a >= idx0.shape[0] or c >= idx1.shape[0]:
        return
    r = idx0[a]
    k = idx1[c]
    out[b, a, c] = out.dtype.type(cval) if r < 0 or k < 0 else x[b, r, k]


def extend2d(x, out, idx0, idx1, cval):
    """out[b, a, c] = x[b, idx0[a], idx1[c]], or cval where an index is -1 (see the
    CPU twin): the boundary-extended image for the FFT path."""
    for a, e in _slices(x.shape[0]):
        blocks, threads = _grid3(e - a, idx0.shape[0], idx1.shape[0])
        _extend2d_kernel[blocks, threads](_rows(x, a, e), _rows(out, a, e), idx0, idx1, cval)


@_kernel
def _sgd_kernel(theta, g, buf, weight_decay, momentum, one_minus_dampening, neg_lr, nesterov,
                first):
    i = cuda.grid(1)
    if i < theta.shape[0]:
        keep = momentum != 0
        b = buf[i] if keep and not first else theta.dtype.type(0)
        t, b = _sgd_element(theta[i], g[i], b, weight_decay, momentum, one_minus_dampening,
                            neg_lr, nesterov, first)
        theta[i] = t
        if keep:
            buf[i] = b


def sgd_update(theta, g, buf, weight_decay, momentum, one_minus_dampening, neg_lr, nesterov,
               first):
    """One SGD step on flat device arrays, in place (see the CPU twin)."""
    blocks, threads = _grid1(theta.shape[0])
    _sgd_kernel[blocks, threads](theta, g, buf, weight_decay, momentum, one_minus_dampening,
                                 neg_lr, nesterov, first)


# -- dense layers: a shared-memory tiled GEMM ----------------------------------------------
GEMM_TILE = 16


def _make_tiled_matmul(dtype):
    """The tiled GEMM kernel for one dtype (a shared array's dtype is fixed at compile time)."""

    @_kernel
    def kernel(a, b, out, trans_a, trans_b, accumulate):
        # one block: a GEMM_TILE x GEMM_TILE tile of ``out[z]``; the matching strips of
        # op(a[z]) and op(b[z]) pass through shared memory one square tile at a time (zero
        # beyond the edges, so every thread takes part in every load and barrier); an
        # operand with one matrix serves every z
        sa = cuda.shared.array((GEMM_TILE, GEMM_TILE), dtype)
        sb = cuda.shared.array((GEMM_TILE, GEMM_TILE), dtype)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        z = cuda.blockIdx.z
        za = z if a.shape[0] > 1 else 0
        zb = z if b.shape[0] > 1 else 0
        row = cuda.blockIdx.y * GEMM_TILE + ty
        col = cuda.blockIdx.x * GEMM_TILE + tx
        m, n = out.shape[1], out.shape[2]
        k = a.shape[1] if trans_a else a.shape[2]
        zero = out.dtype.type(0)
        acc = zero
        for t0 in range(0, k, GEMM_TILE):
            q = t0 + tx  # sa[ty, tx] = op(a)[row, t0 + tx]
            if row < m and q < k:
                sa[ty, tx] = a[za, q, row] if trans_a else a[za, row, q]
            else:
                sa[ty, tx] = zero
            q = t0 + ty  # sb[ty, tx] = op(b)[t0 + ty, col]
            if q < k and col < n:
                sb[ty, tx] = b[zb, col, q] if trans_b else b[zb, q, col]
            else:
                sb[ty, tx] = zero
            cuda.syncthreads()
            for e in range(GEMM_TILE):
                acc += sa[ty, e] * sb[e, tx]
            cuda.syncthreads()
        if row < m and col < n:
            out[z, row, col] = out[z, row, col] + acc if accumulate else acc

    return kernel


_MATMUL = {}


def _cupy():
    """CuPy where it is installed and the kernels run on a real GPU (not the simulator),
    else None: its memory pool and cuBLAS serve the twins when it is there."""
    global _CUPY
    if _CUPY is False:
        try:
            import cupy
        except ImportError:
            cupy = None
        _CUPY = None if config.ENABLE_CUDASIM else cupy
    return _CUPY


_CUPY = False


def _blas():
    """``(cuBLAS binding, handle)`` from CuPy where CuPy serves the GEMMs, else None."""
    cp = _cupy()
    if cp is None:
        return None
    from cupy_backends.cuda.libs import cublas

    return cublas, cp.cuda.device.get_cublas_handle()


def _address(a):
    """The device address of ``a``'s first element (0 for an empty array)."""
    return a.device_ctypes_pointer.value or 0


#: alpha = 1 and beta = 0 of the GEMMs in host memory, and its address (cuBLAS reads
#: them through pointers; beta = 1 is alpha's)
_GEMM_SCALARS = {np.dtype(t): np.array([1, 0], dtype=t) for t in (np.float32, np.float64)}
_GEMM_ALPHA = {t: a.ctypes.data for t, a in _GEMM_SCALARS.items()}
#: the most matrices one cuBLAS call multiplies (CuPy's own limit per call)
GEMM_BATCH = 65000


def _gemm(blas, a, b, out, trans_a, trans_b, accumulate):
    """:func:`batched_matmul` (or :func:`matmul`, 2-D arrays) as strided batched cuBLAS
    GEMMs, straight from the arrays' addresses: no CuPy array around them and no
    temporary for ``accumulate`` (beta = 1).  cuBLAS is column-major, where a C-ordered
    ``out[z]`` is ``out[z]^T``, so it computes ``op(b[z])^T op(a[z])^T``: ``b`` first,
    and each operand's C row length is its leading dimension."""
    cublas, handle = blas
    dtype = np.dtype(out.dtype)
    size = dtype.itemsize
    shape_a, shape_b, shape_out = (tuple(x.shape) for x in (a, b, out))
    m, n = shape_out[-2:]
    k = shape_a[-2] if trans_a else shape_a[-1]
    nz = shape_out[0] if len(shape_out) == 3 else 1
    # elements from one matrix to the next (0: one matrix for every z)
    step_a, step_b = (sh[-2] * sh[-1] if len(sh) == 3 and sh[0] > 1 else 0
                      for sh in (shape_a, shape_b))
    alpha = _GEMM_ALPHA[dtype]
    beta = alpha if accumulate else alpha + size
    gemm = cublas.sgemmStridedBatched if dtype == np.float32 else cublas.dgemmStridedBatched
    op_a, op_b = (cublas.CUBLAS_OP_T if t else cublas.CUBLAS_OP_N for t in (trans_a, trans_b))
    pa, pb, pc = _address(a), _address(b), _address(out)
    cublas.setPointerMode(handle, cublas.CUBLAS_POINTER_MODE_HOST)  # alpha and beta
    for z in range(0, nz, GEMM_BATCH):
        gemm(handle, op_b, op_a, n, m, k, alpha,
             pb + z * step_b * size, max(1, shape_b[-1]), step_b,
             pa + z * step_a * size, max(1, shape_a[-1]), step_a, beta,
             pc + z * m * n * size, max(1, n), m * n, min(GEMM_BATCH, nz - z))


def batched_matmul(a, b, out, trans_a, trans_b, accumulate):
    """``out[z] (+)= op(a[z]) @ op(b[z])`` for 3-D device arrays; ``a`` or ``b`` may
    hold one matrix for every ``z`` (no CPU twin: the CPU runs one GEMM per sample).

    cuBLAS (CuPy's binding, :func:`_gemm`) where CuPy is installed, else the
    shared-memory tiled GEMM: each 16x16 block one tile of one ``out[z]``, each
    thread one element summed in order of ``k`` (no two threads ever write one
    value); transposed operands are read through swapped indices (no transposed
    copy).
    """
    blas = _blas()
    if blas is not None:
        _gemm(blas, a, b, out, trans_a, trans_b, accumulate)
        return
    dtype = np.dtype(out.dtype)
    if dtype not in _MATMUL:
        _MATMUL[dtype] = _make_tiled_matmul(numba_dtype(dtype))
    nz, m, n = out.shape
    for s, e in _slices(nz):
        blocks = (max(1, math.ceil(n / GEMM_TILE)), max(1, math.ceil(m / GEMM_TILE)), e - s)
        _MATMUL[dtype][blocks, (GEMM_TILE, GEMM_TILE)](
            _rows(a, s, e) if a.shape[0] > 1 else a, _rows(b, s, e) if b.shape[0] > 1 else b,
            _rows(out, s, e), trans_a, trans_b, accumulate)


def matmul(a, b, out, trans_a, trans_b, accumulate):
    """``out (+)= op(a) @ op(b)`` (see the CPU twin): one cuBLAS GEMM where CuPy is
    installed, else :func:`batched_matmul` of one matrix (``out`` up to 65535 * 16 rows
    on the tiled GEMM)."""
    blas = _blas()
    if blas is not None:
        _gemm(blas, a, b, out, trans_a, trans_b, accumulate)
        return
    batched_matmul(a.reshape((1,) + tuple(a.shape)), b.reshape((1,) + tuple(b.shape)),
                   out.reshape((1,) + tuple(out.shape)), trans_a, trans_b, accumulate)


@_kernel
def _add_row_vector_kernel(out, v):
    i = cuda.grid(1)
    n = out.shape[1]
    if i < out.shape[0] * n:
        r = i // n
        c = i - r * n
        out[r, c] += v[c]


def add_row_vector(out, v):
    """``out[i, j] += v[j]`` (see the CPU twin); one thread per element."""
    blocks, threads = _grid1(out.shape[0] * out.shape[1])
    _add_row_vector_kernel[blocks, threads](out, v)


def add_column_sums(a, out):
    """``out[j] += sum_i a[i, j]`` (see the CPU twin): :func:`_column_sums`, each
    column's rows split among a block's threads, so nothing needs atomics."""
    _column_sums(a, out, True)


# -- element-wise helpers of the layers, losses and optimizers ------------------------------
@_kernel
def _add_to_kernel(out, x):
    i = cuda.grid(1)
    if i < out.shape[0]:
        out[i] += x[i]


def add_to(out, x):
    """``out += x`` on flat device arrays (see the CPU twin)."""
    blocks, threads = _grid1(out.shape[0])
    _add_to_kernel[blocks, threads](out, x)


@_kernel
def _apply_mask_kernel(x, keep, scale, out):
    i = cuda.grid(1)
    if i < out.shape[0]:
        out[i] = x[i] * (scale if keep[i] else out.dtype.type(0))


def apply_mask(x, keep, scale, out):
    """A bool mask applied (see the CPU twin): ``out = x * scale`` where ``keep``,
    ``x * 0`` elsewhere; the mask goes up as one byte a value."""
    blocks, threads = _grid1(out.shape[0])
    _apply_mask_kernel[blocks, threads](x, keep, scale, out)


@_kernel
def _fill_kernel(out, value):
    i = cuda.grid(1)
    if i < out.shape[0]:
        out[i] = value


def fill(out, value):
    """Set every element of the flat device array ``out`` to ``value`` (see the CPU
    twin); a kernel, not a host-to-device copy of a filled array."""
    blocks, threads = _grid1(out.shape[0])
    _fill_kernel[blocks, threads](out, out.dtype.type(value))


def total(x, out):
    """``out[0] = sum(x)`` (see the CPU twin): :func:`_column_sums` of ``x`` as one
    column, so the result does not depend on scheduling."""
    _column_sums(reshaped(x, (x.shape[0], 1)), out, False)


@_kernel
def _count_nonfinite_kernel(x, count):
    i = cuda.grid(1)
    if i < x.shape[0]:
        v = x[i]
        if math.isnan(v) or math.isinf(v):
            cuda.atomic.add(count, 0, 1)


def count_nonfinite(x, count):
    """``count[0] +=`` the number of NaN and infinite values of the flat device array
    ``x`` (see the CPU twin); the threads that find one add to it atomically."""
    blocks, threads = _grid1(x.shape[0])
    _count_nonfinite_kernel[blocks, threads](x, count)


@_kernel
def _argmax_rows_kernel(x, out):
    i = cuda.grid(1)
    if i < x.shape[0]:
        best = x[i, 0]
        at = 0
        for j in range(1, x.shape[1]):
            if best != best:  # the first NaN wins, as in numpy
                break
            v = x[i, j]
            if v > best or v != v:
                best = v
                at = j
        out[i] = at


def argmax_rows(x, out):
    """The index of the first maximum (or first NaN) of every row (see the CPU twin)."""
    blocks, threads = _grid1(x.shape[0])
    _argmax_rows_kernel[blocks, threads](x, out)


@_kernel
def _softmax_kernel(x, out):
    i = cuda.grid(1)
    if i < x.shape[0]:
        k = x.shape[1]
        m = x[i, 0]
        for j in range(1, k):
            v = x[i, j]
            if v > m or v != v:
                m = v
        s = out.dtype.type(0)
        for j in range(k):
            e = math.exp(x[i, j] - m)
            out[i, j] = e
            s += e
        for j in range(k):
            out[i, j] = out[i, j] / s


def softmax(x, out):
    """Row-wise softmax, the row maximum subtracted first (see the CPU twin)."""
    blocks, threads = _grid1(x.shape[0])
    _softmax_kernel[blocks, threads](x, out)


@_kernel
def _cross_entropy_kernel(logits, target, losses, grad):
    n = cuda.grid(1)
    if n >= logits.shape[0]:
        return
    k = logits.shape[1]
    m = logits[n, 0]
    bad = False
    for j in range(k):
        v = logits[n, j]
        if math.isnan(v) or math.isinf(v):
            bad = True
        elif v > m:
            m = v
    s = grad.dtype.type(0)
    for j in range(k):
        s += math.exp(logits[n, j] - m)
    log_sum = math.log(s)
    t = target[n]
    losses[n] = math.nan if bad else -((logits[n, t] - m) - log_sum)
    one = grad.dtype.type(1)
    count = grad.dtype.type(logits.shape[0])
    for j in range(k):
        p = math.exp((logits[n, j] - m) - log_sum)
        if j == t:
            p = p - one
        grad[n, j] = p / count


def cross_entropy(logits, target, losses, grad):
    """Per-sample softmax cross-entropy and the mean's gradient (see the CPU twin):
    one thread per sample, its row's loss and gradient row."""
    blocks, threads = _grid1(logits.shape[0])
    _cross_entropy_kernel[blocks, threads](logits, target, losses, grad)


@_kernel
def _sigmoid_kernel(x, out):
    i = cuda.grid(1)
    if i < x.shape[0]:
        v = x[i]
        one = out.dtype.type(1)
        if v >= 0:
            out[i] = one / (one + math.exp(-v))
        else:  # exp(-v) could overflow: the same value from exp(v)
            e = math.exp(v)
            out[i] = e / (one + e)


def sigmoid(x, out):
    """``out = 1 / (1 + exp(-x))`` without overflow (see the CPU twin)."""
    blocks, threads = _grid1(x.shape[0])
    _sigmoid_kernel[blocks, threads](x, out)


@_kernel
def _sigmoid_backward_kernel(y, dy, dx):
    i = cuda.grid(1)
    if i < y.shape[0]:
        v = y[i]
        dx[i] = dy[i] * v * (dx.dtype.type(1) - v)


def sigmoid_backward(y, dy, dx):
    """``dx = dy * y * (1 - y)`` (see the CPU twin)."""
    blocks, threads = _grid1(y.shape[0])
    _sigmoid_backward_kernel[blocks, threads](y, dy, dx)


@_kernel
def _tanh_kernel(x, out):
    i = cuda.grid(1)
    if i < x.shape[0]:
        out[i] = math.tanh(x[i])


def tanh(x, out):
    """``out = tanh(x)`` (see the CPU twin)."""
    blocks, threads = _grid1(x.shape[0])
    _tanh_kernel[blocks, threads](x, out)


@_kernel
def _tanh_backward_kernel(y, dy, dx):
    i = cuda.grid(1)
    if i < y.shape[0]:
        v = y[i]
        dx[i] = dy[i] * (dx.dtype.type(1) - v * v)


def tanh_backward(y, dy, dx):
    """``dx = dy * (1 - y * y)`` (see the CPU twin)."""
    blocks, threads = _grid1(y.shape[0])
    _tanh_backward_kernel[blocks, threads](y, dy, dx)


# -- element-wise steps of the image filters -----------------------------------------------
@_kernel
def _magnitude_rows_kernel(g, out, scale):
    i = cuda.grid(1)
    if i < out.shape[0]:
        v = g[0, i]
        acc = v * v
        for k in range(1, g.shape[0]):
            v = g[k, i]
            acc += v * v
        out[i] = math.sqrt(acc) / out.dtype.type(scale)


def magnitude(g, out, scale):
    """``out = sqrt(sum_k g[k]**2) / scale`` for g (K, N), out (N,) (see the CPU twin)."""
    blocks, threads = _grid1(out.shape[0])
    _magnitude_rows_kernel[blocks, threads](g, out, scale)


@_kernel
def _count_negative_kernel(x, count):
    i = cuda.grid(1)
    if i < x.shape[0] and x[i] < 0:
        cuda.atomic.add(count, 0, 1)


def count_negative(x, count):
    """``count[0] +=`` the number of negative values of the flat ``x`` (see the CPU
    twin); the threads that find one add to it atomically."""
    blocks, threads = _grid1(x.shape[0])
    _count_negative_kernel[blocks, threads](x, count)


@_kernel
def _unsharp_combine_kernel(x, blurred, out, amount, clip, negatives):
    i = cuda.grid(1)
    if i < out.shape[0]:
        v = x[i]
        v = v + (v - blurred[i]) * out.dtype.type(amount)
        if clip:
            lo = out.dtype.type(-1 if negatives[0] > 0 else 0)
            hi = out.dtype.type(1)
            if v < lo:  # comparisons, not min/max: NaN stays NaN, as np.clip
                v = lo
            elif v > hi:
                v = hi
        out[i] = v


def unsharp_combine(x, blurred, out, amount, clip, negatives):
    """``out = x + (x - blurred) * amount``, clipped to [0, 1] or, when
    ``negatives[0] > 0``, [-1, 1] if ``clip`` (see the CPU twin).  ``negatives`` stays
    on the device (from :func:`count_negative`): no transfer decides the bounds."""
    blocks, threads = _grid1(out.shape[0])
    _unsharp_combine_kernel[blocks, threads](x, blurred, out, amount, clip, negatives)
