"""filtkit on Dask: the same filters and networks over chunked arrays.

Every function here takes a ``dask.array.Array`` (a numpy array is wrapped
in one chunk) and returns a lazy dask array whose values equal the
in-memory :mod:`filtkit.signal` result, for every boundary mode (``wrap``
included), stride, dilation, and chunks smaller than the kernel's reach.
Nothing is computed until you call ``.compute()``, ``.to_zarr(...)`` or
similar, on whatever scheduler is active: Dask's threaded default, or a
``dask.distributed.Client`` (a LocalCluster or a scheduler address).
Chunked storage streams: pass a zarr array (or a tiled TIFF through
:func:`imread_tiled`) and write with ``.to_zarr``, and no worker ever holds
the whole image.

How the chunks see their neighbours: every chunk gets the samples that its
outputs' windows need from the neighbouring chunks (``dask.array.overlap``,
one task graph like dask-image's), and the chunks at the image's edges add
the boundary samples from themselves (for ``mirror`` too, which Dask's own
``map_overlap`` boundaries lack); for ``wrap`` (and edge chunks too small
to hold their boundary samples) the input is extended once, over the whole
image, so ``wrap`` reads the far edge of the *image*, not of the chunk.
Then every chunk runs the in-memory filtkit function on that slab.

Given a zarr array itself (``zarr.open_array(path)``, not ``da.from_zarr``)
or a TIFF opened with :func:`imread_tiled`, the tasks read from the store
instead: each output chunk's task reads its own stored chunk, and the halo
from small bands (the samples within the reach of each face) that one task
per stored chunk cuts out.  Each chunk is read twice and none waits in
memory for its neighbours' tasks, so a worker holds about three chunks
rather than a wavefront of them (``benchmarks/bench_dask.py``).  With a
stride, output ``i`` belongs to the chunk holding input position
``i * stride``, so output chunks line up with the stride.  Chunks smaller
than the reach are merged with their neighbours first.

Values equal the in-memory results to floating-point rounding: a slab's
interior is computed by the same backend functions, but constant-mode
sums and the choice of FFT or direct method can round differently at a
chunk's edge.  Inside each task Numba runs on one thread: Dask's tasks are
the parallelism, and two multi-threaded OpenMP teams on the same cores
slow each other down many times over (``NUMBA_NOTES.md``).

Needs the extra ``dask`` (``pip install 'filtkit[dask]'``: dask[array] and
distributed).

Examples
--------
>>> import numpy as np
>>> import dask.array as da
>>> from filtkit import distributed, signal
>>> img = np.random.default_rng(0).random((60, 50), dtype=np.float32)
>>> chunked = da.from_array(img, chunks=(16, 16))
>>> blurred = distributed.gaussian(chunked, sigma=3, mode="wrap")
>>> bool(np.allclose(blurred.compute(), signal.gaussian(img, sigma=3, mode="wrap"),
...                  rtol=1e-5, atol=1e-6))
True

A zarr array itself (not ``da.from_zarr``): the tasks read from the store.

>>> import os, tempfile, zarr
>>> path = os.path.join(tempfile.mkdtemp(), "img.zarr")
>>> zarr.open_array(path, mode="w", shape=img.shape, chunks=(16, 16), dtype=img.dtype)[...] = img
>>> stored = zarr.open_array(path, mode="r")
>>> bool(np.allclose(distributed.gaussian(stored, sigma=3, mode="wrap").compute(),
...                  signal.gaussian(img, sigma=3, mode="wrap"), rtol=1e-5, atol=1e-6))
True
"""

import contextlib
import functools
import itertools
import math

import numpy as np

from ._config import BOUNDARY_CODES
from ._validate import (
    as_float,
    check_array,
    check_axis,
    check_boundary,
    check_choice,
    check_int_tuple,
    check_real,
    float_dtype,
)
from .backends import cpu
from .signal import _correlate as _corr
from .signal import filters as _filters
from .signal.kernels import _radius

try:  # the extra `dask`; importing filtkit never needs it
    import dask.array as da
except ImportError as _exc:  # pragma: no cover - dask missing
    da = None
    _IMPORT_ERROR = _exc


def _dask():
    if da is None:  # pragma: no cover - dask missing
        raise ImportError("filtkit.distributed needs dask: pip install 'filtkit[dask]' "
                          f"({_IMPORT_ERROR})")
    return da


def _is_zarr_array(x):
    return type(x).__module__.startswith("zarr") and type(x).__name__ == "Array"


def _as_dask(x, name):
    """``x`` as a dask array of a real numeric dtype with known chunk sizes; a zarr array
    becomes ``da.from_zarr(x)`` that remembers its store (see :func:`_regions`)."""
    da = _dask()
    if _is_zarr_array(x):
        store = x
        x = da.from_zarr(store)
        x._filtkit_regions = store
    elif not isinstance(x, da.Array):
        x = da.from_array(check_array(x, name), chunks=-1)
    kind = x.dtype.kind
    if kind == "c":
        raise TypeError(f"`{name}` must be real, got complex dtype {x.dtype}")
    if kind not in "biuf":
        raise TypeError(f"`{name}` must be a real numeric array, got dtype {x.dtype}")
    if x.size == 0:
        raise ValueError(f"`{name}` must not be empty, got shape {x.shape}")
    if any(math.isnan(c) for chunks in x.chunks for c in chunks):
        raise ValueError(f"`{name}` must have known chunk sizes (call `{name}.compute_chunk_"
                         f"sizes()` first), got {x.chunks}")
    return x


@contextlib.contextmanager
def _one_numba_thread():
    """Numba's parallel regions on one thread in this (task) thread only."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)


def _to_float(block, scale, dtype):
    return as_float(block, scale=scale, dtype=dtype)


def _float_image(x, scale):
    """The lazy float image the in-memory function would convert ``x`` to."""
    dtype = float_dtype(x.dtype)
    if x.dtype == dtype and x.dtype.isnative:
        return x
    return x.map_blocks(_to_float, scale, dtype, dtype=dtype)


class _Source:
    """A chunked store (a zarr array, or :class:`_TiffRegions`) read as the float
    image the in-memory function would see, boundary samples included.

    Each output chunk's task reads its own input chunk(s) from the store; the
    halo samples that lie in other stored chunks come from *bands*, the
    samples within the reach of each face of a stored chunk, which one task
    per stored chunk reads once more and cuts into exactly the pieces its
    neighbours need.  No chunk waits in memory for its neighbours' tasks (the
    wavefront that ``dask.array.overlap`` holds) and no chunk travels between
    workers, at the price of reading each chunk twice.
    """

    def __init__(self, regions, grid, scale, dtype, reach):
        self.regions, self.scale, self.dtype = regions, scale, dtype
        #: per axis the edges of the stored chunks, and the band width
        self.grid, self.reach = grid, reach

    def pieces(self, ranges, own, code):
        """The slab over ``ranges`` (per axis ``(lo, hi)`` in input coordinates, beyond
        the image too): per axis the boundary index map and its sorted unique source
        indices, and the pieces to fill, ``(src, dst, band)``: ``band`` is None for a
        piece inside ``own`` (this task's input range), else ``(chunk, axis, side,
        local)``, where in the bands of that stored chunk the piece lies
        (:meth:`bands`)."""
        maps, uniq, runs = [], [], []
        for (lo, hi), n, edges in zip(ranges, self.regions.shape, self.grid):
            before, after = max(0, -lo), max(0, hi - n)
            idx = cpu.boundary_index(n, before, after, code)[lo + before:hi + before]
            u = np.unique(idx[idx >= 0])
            where = np.searchsorted(edges, u, side="right")
            runs.append(np.split(np.arange(len(u)), np.flatnonzero(
                (np.diff(u) != 1) | (np.diff(where) != 0)) + 1))
            maps.append(idx)
            uniq.append(u)
        pieces = []
        for combo in itertools.product(*runs):
            src = tuple(slice(int(u[p[0]]), int(u[p[-1]]) + 1) for u, p in zip(uniq, combo))
            dst = tuple(slice(int(p[0]), int(p[-1]) + 1) for p in combo)
            if all(o0 <= q.start and q.stop <= o1 for (o0, o1), q in zip(own, src)):
                pieces.append((src, dst, None))
            else:
                pieces += self._foreign(src, dst)
        return maps, uniq, pieces

    def _foreign(self, src, dst):
        """The piece ``src`` of another stored chunk as ``(src, dst, band)`` pieces, each
        within one of that chunk's bands: ``band`` is ``(chunk, axis, side, local)``,
        ``side`` 0 for its first ``reach[axis]`` samples along ``axis``, 1 for its last,
        ``local`` the piece's slices within that band.  With ``wrap`` a slab can need
        both ends of a chunk no longer than twice the reach, in one run: it is split
        where the first band ends."""
        chunk = tuple(int(np.searchsorted(e, q.start, side="right")) - 1
                      for e, q in zip(self.grid, src))
        start = [int(e[i]) for e, i in zip(self.grid, chunk)]
        for axis, r in enumerate(self.reach):
            q, stop = src[axis], int(self.grid[axis][chunk[axis] + 1])
            local = [slice(p.start - s, p.stop - s) for p, s in zip(src, start)]
            if q.stop <= start[axis] + r:
                return [(src, dst, (chunk, axis, 0, tuple(local)))]
            first = max(start[axis], stop - r)
            if q.start >= first:
                local[axis] = slice(q.start - first, q.stop - first)
                return [(src, dst, (chunk, axis, 1, tuple(local)))]
        for axis, r in enumerate(self.reach):
            q, cut = src[axis], start[axis] + r
            if r and q.start < cut < q.stop:
                n = cut - q.start  # samples before the cut

                def split(piece, a, b, axis=axis):
                    return piece[:axis] + (slice(a, b),) + piece[axis + 1:]

                d = dst[axis]
                return (self._foreign(split(src, q.start, cut), split(dst, d.start, d.start + n))
                        + self._foreign(split(src, cut, q.stop), split(dst, d.start + n, d.stop)))
        raise AssertionError(f"piece {src} is not within reach of chunk {chunk}'s faces")

    def bands(self, chunk):
        """One stored chunk's bands: per axis its first and last ``reach[axis]`` samples
        along that axis (whole along the others), as floats."""
        where = tuple(slice(int(e[i]), int(e[i + 1])) for e, i in zip(self.grid, chunk))
        block = as_float(np.asarray(self.regions[where]), scale=self.scale, dtype=self.dtype)
        out = []
        for axis, r in enumerate(self.reach):
            n = block.shape[axis]
            cut = (slice(None),) * axis
            out.append((block[cut + (slice(0, min(r, n)),)].copy(),  # the chunk is freed
                        block[cut + (slice(max(0, n - r), n),)].copy()))
        return out

    def slab(self, ranges, own, code, cval, pieces):
        """The boundary-extended input over ``ranges``; ``pieces`` maps the foreign
        pieces that :meth:`pieces` names (by their ``src``) to their values."""
        maps, uniq, plan = self.pieces(ranges, own, code)
        slots = [int((m < 0).any()) for m in maps]  # one more sample for cval
        compact = np.empty(tuple(len(u) + c for u, c in zip(uniq, slots)), dtype=self.dtype)
        for src, dst, band in plan:
            if band is None:
                _read_into(self.regions, src, compact[dst], self.scale)
            else:
                compact[dst] = pieces[_key(src)]
        for axis, (u, c) in enumerate(zip(uniq, slots)):
            if c:
                compact[(slice(None),) * axis + (len(u),)] = cval
        pos = [np.where(m >= 0, np.searchsorted(u, m), len(u)) for m, u in zip(maps, uniq)]
        if all(len(p) == len(u) and (p == np.arange(len(u))).all()
               for p, u in zip(pos, uniq)):  # inside the image: the slab is compact itself
            return compact
        return compact[np.ix_(*pos)]


def _key(src):
    """A piece's slices as a hashable key."""
    return tuple((q.start, q.stop) for q in src)


def _read_bands(source, chunk):
    """:meth:`_Source.bands` as a function, so that a task names ``source`` as a graph key
    (sent to a worker once) rather than carrying it in a bound method."""
    return source.bands(chunk)


def _cut_piece(bands, axis, side, local):
    """One piece of a stored chunk's bands, copied (so the bands can be freed)."""
    return bands[axis][side][local].copy()


def _read_into(regions, src, dst, scale):
    """``dst[...] = regions[src]`` as floats; a zarr array of ``dst``'s dtype writes into
    ``dst`` itself (no chunk-sized temporary)."""
    if regions.dtype == dst.dtype and hasattr(regions, "get_basic_selection"):
        try:
            from zarr.core.buffer import default_buffer_prototype
        except ImportError:  # zarr 2 takes the numpy array itself
            regions.get_basic_selection(src, out=dst)
        else:
            regions.get_basic_selection(
                src, out=default_buffer_prototype().nd_buffer.from_numpy_array(dst))
        return
    dst[...] = as_float(np.asarray(regions[src]), scale=scale, dtype=dst.dtype)


def _regions(x):
    """The store behind a dask array made by :func:`_as_dask` from a zarr array or by
    :func:`imread_tiled`; None for any other dask array (those get halos from their
    neighbours through ``dask.array.overlap``)."""
    return getattr(x, "_filtkit_regions", None)


# -- the chunk plan -------------------------------------------------------------
class _Axis:
    """One axis of a sliding-window operation on the boundary-extended input.

    Output ``i`` reads the extended input ``E[i*stride : i*stride + keff]``,
    where ``E[p]`` is the (boundary-mapped) input sample ``p - before``.
    """

    def __init__(self, n, keff, stride, before, n_out):
        self.n, self.keff, self.stride, self.before, self.n_out = n, keff, stride, before, n_out
        self.length = (n_out - 1) * stride + keff  # of E
        self.after = self.length - before - n  # negative: the input's tail is never read
        #: the samples a chunk's slab takes from the chunks before and after it
        self.depth = (before, keff - 1 - before)


def _cut(x, axis, plan):
    """``x`` without the tail along ``axis`` that no window reads."""
    if plan.after >= 0:
        return x
    return x[(slice(None),) * axis + (slice(0, plan.n + plan.after),)]


def _extend(x, axis, plan, code, cval):
    """``x`` extended (or cut) along ``axis`` to the plan's ``E``, lazily."""
    da = _dask()
    n, before, after = plan.n, plan.before, plan.after
    whole = x
    x = _cut(x, axis, plan)
    if before == 0 and after <= 0:
        return x
    if code == 0:  # constant: cval beyond the edge
        def part(width, _):
            shape = x.shape[:axis] + (width,) + x.shape[axis + 1:]
            chunks = x.chunks[:axis] + ((width,),) + x.chunks[axis + 1:]
            return da.full(shape, cval, dtype=x.dtype, chunks=chunks)
    else:  # the same index map as the in-memory backend, over the whole axis
        idx = cpu.boundary_index(n, before, max(after, 0), code)

        def part(width, where):
            return da.take(whole, idx[where], axis=axis)
    parts = [part(before, slice(0, before))] if before else []
    parts.append(x)
    if after > 0:
        parts.append(part(after, slice(before + n, None)))
    return da.concatenate(parts, axis=axis)


def _merge_edges(chunks, plan):
    """The extended axis's chunks with the boundary slivers joined to their
    neighbours, so that the chunks inside are the input's own (no data moves);
    then chunks shorter than the overlap are merged into their predecessor."""
    chunks = list(chunks)
    if plan.before and len(chunks) > 1:
        chunks[1:2] = [chunks[0] + chunks[1]]
        del chunks[0]
    if plan.after > 0 and len(chunks) > 1:
        chunks[-2:] = [chunks[-2] + chunks[-1]]
    return _merge_small(chunks, max(plan.depth))


def _outputs(chunks, plan):
    """``(first, counts)`` per chunk: the offset of its first output's window in
    its slab, and how many outputs it holds.

    With the overlap ``(before, keff - 1 - before)`` chunk ``k``'s slab starts
    at ``E[b_k]``, where ``b_k`` is where the chunk starts in the input
    (``0`` for the first); it holds the outputs ``i`` whose windows start in
    ``E[b_k, b_{k+1})``, the last one also those beyond.
    """
    edges = np.cumsum((0,) + tuple(chunks))
    starts = [0] + [int(b) - plan.before for b in edges[1:-1]]
    ends = starts[1:] + [plan.length]
    first, counts = [], []
    for a, b in zip(starts, ends):
        i0 = -(-a // plan.stride)
        i1 = min(-(-b // plan.stride), plan.n_out)
        first.append(i0 * plan.stride - a)
        counts.append(max(0, i1 - i0))
    return first, counts


def _edge_pieces(block, edges, cval, block_id, nblocks):
    """The first and last chunks along an axis: the boundary samples added to the
    slab from the slab itself (``edges[axis]`` = local indices before/after it,
    ``-1`` meaning ``cval``), one axis after another, corners included."""
    for axis, (pre, post) in enumerate(edges):
        k = block_id[axis]
        parts = [block]
        if k == 0 and pre is not None:
            parts.insert(0, _gather(block, pre, axis, cval))
        if k == nblocks[axis] - 1 and post is not None:
            parts.append(_gather(block, post, axis, cval))
        if len(parts) > 1:
            block = np.concatenate(parts, axis=axis)
    return block


def _gather(block, idx, axis, cval):
    if idx[0] < 0:  # constant
        shape = block.shape[:axis] + (len(idx),) + block.shape[axis + 1:]
        return np.full(shape, cval, dtype=block.dtype)
    return np.take(block, idx, axis=axis)


def _run_block(block, op, plans, firsts, counts, dtype, edges, cval, block_id=None):
    """One task: complete the slab at the image's edges (when ``edges``), cut this
    chunk's windows out of it and run ``op``."""
    index, shape = [], []
    for axis, plan in enumerate(plans):
        k = block_id[axis]
        c = counts[axis][k]
        t = firsts[axis][k]
        index.append(slice(t, t + (c - 1) * plan.stride + plan.keff) if c else slice(0, 0))
        shape.append(c)
    if 0 in shape:
        return np.empty(shape, dtype=dtype)
    if edges is not None:
        block = _edge_pieces(block, edges, cval, block_id, [len(n) for n in counts])
    with _one_numba_thread():
        out = op(block[tuple(index)])
    return out


def _merge_small(chunks, need):
    """Chunks shorter than ``need`` merged into their predecessor (or successor)."""
    merged = []
    for size in chunks:
        if merged and (size < need or merged[-1] < need):
            merged[-1] += size
        else:
            merged.append(size)
    return tuple(merged)


def _read_chunks(x, plans):
    """Per axis ``x``'s own chunks without the unread tail, those shorter than the
    overlap merged: the input each slab stands for."""
    return [_merge_small(_cut(x, axis, plan).chunks[axis], max(plan.depth))
            for axis, plan in enumerate(plans)]


def _slab_chunks(x, plans):
    """The chunks of the extended input ``E`` that the slabs stand for: those of
    :func:`_read_chunks`, the boundary samples joined to the first and last."""
    e_chunks = []
    for c, plan in zip(_read_chunks(x, plans), plans):
        c = list(c)
        c[0] += plan.before
        c[-1] += max(plan.after, 0)
        e_chunks.append(tuple(c))
    return e_chunks


def _local_plan(x, plans, code):
    """The input cut to what is read, its chunks, and per axis the local indices of
    the boundary samples in the first and last chunks' slabs; None when some
    boundary sample lies outside its edge chunk's slab (wrap; tiny edge chunks),
    where the whole input is extended instead."""
    if code == BOUNDARY_CODES["wrap"]:
        return None
    read = _read_chunks(x, plans)
    for axis, plan in enumerate(plans):
        x = _cut(x, axis, plan)
    chunks, edges = [], []
    for c, plan in zip(read, plans):
        idx = cpu.boundary_index(plan.n, plan.before, max(plan.after, 0), code)
        pre = idx[:plan.before] if plan.before else None
        post = idx[plan.before + plan.n:] if plan.after > 0 else None
        first_len = c[0] + (plan.depth[1] if len(c) > 1 else 0)
        last_start = sum(c[:-1]) - plan.before if len(c) > 1 else 0
        if post is not None and code != 0:
            post = post - last_start
        if code != 0 and ((pre is not None and pre.max() >= first_len)
                          or (post is not None and post.min() < 0)):
            return None
        chunks.append(c)
        edges.append((pre, post))
    return x.rechunk(tuple(chunks)), tuple(edges)


def _pack(pieces, ndim):
    """The halo pieces one output chunk needs, as the single element of an object array
    (one block of the array that :func:`_from_store` maps over)."""
    box = np.empty((1,) * ndim, dtype=object)
    box.flat[0] = pieces
    return box


def _window(plans, starts, counts, own_edges, k):
    """Output chunk ``k``'s slab, per axis ``(lo, hi)`` in input coordinates, and the
    input range it owns."""
    ranges = [(s[i] * p.stride - p.before, (s[i] + c[i] - 1) * p.stride + p.keff - p.before)
              for s, c, i, p in zip(starts, counts, k, plans)]
    return ranges, [(e[i], e[i + 1]) for e, i in zip(own_edges, k)]


def _store_block(box, source, op, plans, starts, counts, own_edges, code, cval,
                 block_id=None):
    """One output chunk of the storage path: its slab from the store and the halo pieces
    cut from the stored chunks around it (``box``), then ``op``."""
    shape = tuple(c[k] for c, k in zip(counts, block_id))
    if 0 in shape:
        return np.empty(shape, dtype=source.dtype)
    ranges, own = _window(plans, starts, counts, own_edges, block_id)
    slab = source.slab(ranges, own, code, cval, box.flat[0])
    with _one_numba_thread():
        return op(slab)


def _from_store(x, regions, scale, plans, code, cval, op, dtype, meta):
    """:func:`_sliding` for an ``x`` read from ``regions`` (see :class:`_Source`): a
    map over an array with one element per output chunk, the halo pieces that chunk
    needs (so that a ``to_zarr`` after it fuses with it into one task per chunk)."""
    import dask

    da = _dask()
    e_chunks = _slab_chunks(x, plans)
    counts = tuple(tuple(_outputs(c, p)[1]) for c, p in zip(e_chunks, plans))
    starts = tuple(tuple(int(v) for v in np.cumsum((0,) + c[:-1])) for c in counts)
    own_edges = []  # per axis the input range each output chunk owns
    for c, p in zip(e_chunks, plans):
        c = list(c)
        c[0] -= p.before
        c[-1] = p.n - sum(c[:-1])  # the last one owns the (possibly uncut) tail
        own_edges.append(tuple(int(v) for v in np.cumsum([0] + c)))
    grid = tuple(np.cumsum((0,) + c) for c in x.chunks)
    source = _Source(regions, grid, scale, dtype, tuple(max(p.depth) for p in plans))
    # the source (and with it the store's handle) is one key of the graph, sent to each
    # worker once rather than with every task; pure=False: no hashing of the store
    held = dask.delayed(source, pure=False)
    read_bands = dask.delayed(_read_bands, pure=False)
    cut = dask.delayed(_cut_piece, pure=False)
    bands, boxes = {}, np.empty(tuple(len(c) for c in counts), dtype=object)
    for k in itertools.product(*(range(len(c)) for c in counts)):
        need = {}
        if all(c[i] for c, i in zip(counts, k)):
            ranges, own = _window(plans, starts, counts, own_edges, k)
            for src, _, band in source.pieces(ranges, own, code)[2]:
                if band is not None:
                    chunk, axis, side, local = band
                    if chunk not in bands:
                        bands[chunk] = read_bands(held, chunk)
                    need[_key(src)] = cut(bands[chunk], axis, side, local)
        packed = dask.delayed(_pack, pure=False)(need, x.ndim)
        boxes[k] = da.from_delayed(packed, (1,) * x.ndim, dtype=object)
    return da.map_blocks(_store_block, da.block(boxes.tolist()), held, op, tuple(plans),
                         starts, counts, tuple(own_edges), code, cval, chunks=counts,
                         dtype=dtype, meta=meta)


def _sliding(x, plans, code, cval, op, dtype, store=None):
    """The lazy result of the sliding-window operation ``op`` (planned per axis
    by ``plans``) on the float dask array ``x``; ``store`` is ``(regions, scale)``
    when ``x`` was read from a store (:func:`_regions`): the tasks then read
    their slabs from it themselves (:class:`_Source`)."""
    da = _dask()
    from dask.array.overlap import overlap

    meta = np.empty((0,) * x.ndim, dtype=dtype)
    if store is not None and store[0] is not None:
        return _from_store(x, *store, plans, code, cval, op, dtype, meta)
    local = _local_plan(x, plans, code)
    if local is not None:  # boundary samples come from the edge chunks themselves
        e, edges = local
        e_chunks = _slab_chunks(x, plans)
    else:  # extend the whole input once (wrap reads the far edge of the image)
        e, edges = x, None
        for axis, plan in enumerate(plans):
            e = _extend(e, axis, plan, code, cval)
        e = e.rechunk(tuple(_merge_edges(c, p) for c, p in zip(e.chunks, plans)))
        e_chunks = e.chunks
    depth = {axis: p.depth if len(c) > 1 else (0, 0)
             for axis, (c, p) in enumerate(zip(e.chunks, plans))}
    if any(any(d) for d in depth.values()):
        e = overlap(e, depth=depth, boundary="none", allow_rechunk=False)
    layout = [_outputs(c, p) for c, p in zip(e_chunks, plans)]
    firsts = tuple(tuple(f) for f, _ in layout)
    counts = tuple(tuple(n) for _, n in layout)
    return da.map_blocks(_run_block, e, op, tuple(plans), firsts, counts, dtype, edges, cval,
                         chunks=counts, dtype=dtype, meta=meta)


# -- correlate / convolve ---------------------------------------------------------
def _valid_correlate(slab, w, stride, dilation, channel_axis, method):
    return _corr.correlate(slab, w, mode="valid", stride=stride, dilation=dilation,
                           channel_axis=channel_axis, method=method)


def _correlate(x, kernel, flip, mode, boundary, cval, stride, dilation, channel_axis,
               method):
    x = _as_dask(x, "x")
    if x.ndim not in (1, 2, 3):
        raise ValueError(f"`x` must be 1 or 2 or 3-dimensional, got {x.ndim} dimensions "
                         f"(shape {x.shape})")
    check_choice(method, "method", _corr.METHODS)
    kernel, code, cval, stride, dilation, channel_axis = _corr._check(
        x, kernel, mode, boundary, cval, stride, dilation, channel_axis)
    dtype = float_dtype(x.dtype)
    w = as_float(kernel, dtype=dtype)
    if flip:
        w = np.ascontiguousarray(w[(slice(None, None, -1),) * w.ndim])
    xf = _float_image(x, scale=False)
    spatial = [a for a in range(x.ndim) if a != channel_axis]
    plans = [None] * x.ndim
    for axis, k, s, d in zip(spatial[-w.ndim:], w.shape, stride, dilation):
        off, n_out = _corr._axis_plan(x.shape[axis], k, mode, s, d)
        plans[axis] = _Axis(x.shape[axis], d * (k - 1) + 1, s, off, n_out)
    for axis in range(x.ndim):
        if plans[axis] is None:  # the channel axis: no window
            plans[axis] = _Axis(x.shape[axis], 1, 1, 0, x.shape[axis])
    op = functools.partial(_valid_correlate, w=w, stride=stride, dilation=dilation,
                           channel_axis=channel_axis, method=method)
    return _sliding(xf, plans, code, cval, op, dtype, (_regions(x), False))


_DASK_NOTE = """
    On a dask array ``x``, the lazy dask array that :func:`filtkit.signal.{name}`
    gives in memory, computed chunk by chunk (see :mod:`filtkit.distributed`).
    ``out`` and ``device`` are not offered: the result is a dask array.

    Parameters
    ----------
    x : dask.array.Array or array_like
        1-D, 2-D or 3-D input as in :func:`filtkit.signal.{name}`.
    kernel : array_like
        The kernel (an in-memory array).
    mode, boundary, cval, stride, dilation, channel_axis, method
        As :func:`filtkit.signal.{name}`.

    Returns
    -------
    dask.array.Array
        Float32 for float32 (and float16) input, else float64.

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> from filtkit import distributed
    >>> x = da.arange(12.0, chunks=4)
    >>> distributed.{name}(x, np.array([1.0, 0.0, -1.0]), boundary="wrap").compute()
    {example}
"""


def correlate(x, kernel, *, mode="same", boundary="constant", cval=0.0, stride=1, dilation=1,
              channel_axis=None, method="auto"):
    return _correlate(x, kernel, False, mode, boundary, cval, stride, dilation, channel_axis,
                      method)


def convolve(x, kernel, *, mode="same", boundary="constant", cval=0.0, stride=1, dilation=1,
             channel_axis=None, method="auto"):
    return _correlate(x, kernel, True, mode, boundary, cval, stride, dilation, channel_axis,
                      method)


correlate.__doc__ = "Cross-correlation on Dask." + _DASK_NOTE.format(
    name="correlate",
    example="array([10., -2., -2., -2., -2., -2., -2., -2., -2., -2., -2., 10.])")
convolve.__doc__ = "True convolution on Dask." + _DASK_NOTE.format(
    name="convolve",
    example="array([-10.,   2.,   2.,   2.,   2.,   2.,   2.,   2.,   2.,   2.,   2.,\n"
            "           -10.])")


# -- image filters ------------------------------------------------------------------
def _centred(x, reach):
    """Stride-1 'same' plans with ``reach[axis]`` samples on each side."""
    return [_Axis(n, 2 * r + 1, 1, r, n) for n, r in zip(x.shape, reach)]


def _crop_filter(slab, func, reach, kwargs):
    """``func`` on the slab, keeping the outputs whose windows lie inside it."""
    out = func(slab, **kwargs)
    return out[tuple(slice(r, out.shape[a] - r) for a, r in enumerate(reach))]


def _filter(func, image, reach, code, cval, kwargs, *, scale=True):
    """``func(image, **kwargs)`` chunk by chunk; every output reads at most
    ``reach[axis]`` samples either side, beyond the edge through ``code``."""
    xf = _float_image(image, scale=scale)
    op = functools.partial(_crop_filter, func=func, reach=tuple(reach), kwargs=kwargs)
    return _sliding(xf, _centred(xf, reach), code, cval, op, xf.dtype, (_regions(image), scale))


def _image_array(image, ndims=None):
    image = _as_dask(image, "image")
    if ndims is not None and image.ndim not in ndims:
        raise ValueError(f"`image` must be {' or '.join(map(str, ndims))}-dimensional, got "
                         f"{image.ndim} dimensions (shape {image.shape})")
    return image


def _gaussian_reach(sigmas, truncate):
    return [_radius(s, truncate)[1] if s > 1e-15 else 0 for s in sigmas]


def _channel_axis(channel_axis, ndim):
    return None if channel_axis is None else check_axis(channel_axis, ndim, "channel_axis")


def gaussian(image, sigma=1.0, *, mode="nearest", cval=0, preserve_range=False, truncate=4.0,
             channel_axis=None):
    """Gaussian blur on Dask; the arguments and results of :func:`filtkit.signal.gaussian`.

    The halo is the kernel's radius ``int(truncate * sigma + 0.5)`` per axis.

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> from filtkit import distributed, signal
    >>> img = np.random.default_rng(1).random((40, 40))
    >>> out = distributed.gaussian(da.from_array(img, chunks=7), sigma=2, mode="mirror")
    >>> bool(np.allclose(out.compute(), signal.gaussian(img, sigma=2, mode="mirror")))
    True
    """
    image = _image_array(image)
    channel_axis = _channel_axis(channel_axis, image.ndim)
    sigmas = _filters._per_axis(sigma, "sigma", image.ndim, channel_axis)
    code, cval = check_boundary(mode, cval, name="mode")
    truncate = check_real(truncate, "truncate", minimum=0.0)
    reach = _gaussian_reach(sigmas, truncate)
    return _filter(_filters.gaussian, image, reach, code, cval,
                   dict(sigma=sigma, mode=mode, cval=cval, truncate=truncate,
                        channel_axis=channel_axis, preserve_range=True),
                   scale=not preserve_range)


def uniform(image, size=3, *, mode="reflect", cval=0.0, preserve_range=False,
            channel_axis=None):
    """Box (mean) blur on Dask, as :func:`filtkit.signal.uniform`.

    Examples
    --------
    >>> import dask.array as da
    >>> from filtkit import distributed
    >>> distributed.uniform(da.from_array([0.0, 0.0, 3.0, 0.0, 0.0], chunks=2), 3).compute()
    array([0., 1., 1., 1., 0.])
    """
    image = _image_array(image)
    channel_axis = _channel_axis(channel_axis, image.ndim)
    sizes = _filters._per_axis(size, "size", image.ndim, channel_axis)
    code, cval = check_boundary(mode, cval, name="mode")
    for axis, s in enumerate(sizes):
        if s != int(s) or (s < 1 and axis != channel_axis):
            raise ValueError(f"`size` must be integers >= 1, got {size!r}")
    return _filter(_filters.uniform, image, [int(s) // 2 for s in sizes], code, cval,
                   dict(size=size, mode=mode, cval=cval, channel_axis=channel_axis,
                        preserve_range=True),
                   scale=not preserve_range)


def _edge(name, axis=None, directional=False):
    func = getattr(_filters, name)

    def edge(image, *, mode="reflect", cval=0.0, _axis=axis):
        image = _image_array(image, (2,) if directional else None)
        code, cval = check_boundary(mode, cval, name="mode")
        kwargs = dict(mode=mode, cval=cval)
        if _axis is not None:
            kwargs["axis"] = _axis
        return _filter(func, image, [1] * image.ndim, code, cval, kwargs)

    def edge_fixed(image):  # the directional ones take no mode, as scikit-image
        image = _image_array(image, (2,))
        return _filter(func, image, [1, 1], 1, 0.0, {})

    fn = edge_fixed if directional else edge
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"""``filtkit.signal.{name}`` on Dask (a halo of one sample).

    ``mask`` is not offered; multiply by a dask mask instead.

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> from filtkit import distributed, signal
    >>> img = np.random.default_rng(2).random((30, 20))
    >>> out = distributed.{name}(da.from_array(img, chunks=(7, 6))).compute()
    >>> bool(np.allclose(out, signal.{name}(img)))
    True
    """
    return fn


sobel = _edge("sobel")
prewitt = _edge("prewitt")
scharr = _edge("scharr")
sobel_h, sobel_v = _edge("sobel_h", directional=True), _edge("sobel_v", directional=True)
prewitt_h, prewitt_v = _edge("prewitt_h", directional=True), _edge("prewitt_v", directional=True)
scharr_h, scharr_v = _edge("scharr_h", directional=True), _edge("scharr_v", directional=True)
roberts = _edge("roberts", directional=True)
roberts_pos_diag = _edge("roberts_pos_diag", directional=True)
roberts_neg_diag = _edge("roberts_neg_diag", directional=True)


def laplace(image, ksize=3):
    """The Laplace operator on Dask, as :func:`filtkit.signal.laplace`.

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> from filtkit import distributed
    >>> img = np.zeros((5, 5)); img[2, 2] = 1.0
    >>> distributed.laplace(da.from_array(img, chunks=2)).compute()[1:4, 1:4]
    array([[ 0., -1.,  0.],
           [-1.,  4., -1.],
           [ 0., -1.,  0.]])
    """
    image = _image_array(image)
    return _filter(_filters.laplace, image, [1] * image.ndim, 1, 0.0, dict(ksize=ksize))


def _unsharp_block(block, lo, radius, amount, channel_axis):
    out = _filters.unsharp_mask(block, radius, amount, True, channel_axis=channel_axis)
    if lo is not None:
        np.clip(out, -1.0 if lo else 0.0, 1.0, out=out)
    return out


def unsharp_mask(image, radius=1.0, amount=1.0, preserve_range=False, *, channel_axis=None):
    """Unsharp masking on Dask, as :func:`filtkit.signal.unsharp_mask`.

    The clipping range ([0, 1], or [-1, 1] when the *whole* image has a
    negative value) is decided from the whole image, by a Dask reduction
    in the same graph.

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> from filtkit import distributed, signal
    >>> img = np.random.default_rng(3).random((30, 30))
    >>> out = distributed.unsharp_mask(da.from_array(img, chunks=8), radius=2).compute()
    >>> bool(np.allclose(out, signal.unsharp_mask(img, radius=2)))
    True
    """
    da = _dask()
    image = _image_array(image)
    channel_axis = _channel_axis(channel_axis, image.ndim)
    amount = check_real(amount, "amount")
    radii = _filters._per_axis(radius, "radius", image.ndim, channel_axis)
    reach = _gaussian_reach(radii, 4.0)
    sharp = _filter(_filters.unsharp_mask, image, reach, 1, 0.0,
                    dict(radius=radius, amount=amount, preserve_range=True,
                         channel_axis=channel_axis), scale=not preserve_range)
    if preserve_range:
        return sharp
    negative = da.any(_float_image(image, scale=True) < 0)
    return da.map_blocks(_clip, sharp, negative, dtype=sharp.dtype)


def _clip(block, negative):
    return np.clip(block, -1.0 if negative else 0.0, 1.0)


def difference_of_gaussians(image, low_sigma, high_sigma=None, *, mode="nearest", cval=0,
                            channel_axis=None, truncate=4.0):
    """Band-pass filter on Dask, as :func:`filtkit.signal.difference_of_gaussians`.

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> from filtkit import distributed, signal
    >>> img = np.random.default_rng(4).random((30, 30))
    >>> out = distributed.difference_of_gaussians(da.from_array(img, chunks=9), 1, 3)
    >>> bool(np.allclose(out.compute(), signal.difference_of_gaussians(img, 1, 3)))
    True
    """
    image = _image_array(image)
    channel_axis = _channel_axis(channel_axis, image.ndim)
    low = _filters._per_axis(low_sigma, "low_sigma", image.ndim, channel_axis)
    high = ([1.6 * s for s in low] if high_sigma is None
            else _filters._per_axis(high_sigma, "high_sigma", image.ndim, channel_axis))
    code, cval = check_boundary(mode, cval, name="mode")
    truncate = check_real(truncate, "truncate", minimum=0.0)
    reach = [max(a, b) for a, b in zip(_gaussian_reach(low, truncate),
                                      _gaussian_reach(high, truncate))]
    return _filter(_filters.difference_of_gaussians, image, reach, code, cval,
                   dict(low_sigma=low_sigma, high_sigma=high_sigma, mode=mode, cval=cval,
                        channel_axis=channel_axis, truncate=truncate))


#: the image filters by name, as :data:`filtkit.signal.filters.FILTERS`
FILTERS = {
    "gaussian": gaussian, "uniform": uniform, "sobel": sobel, "sobel_h": sobel_h,
    "sobel_v": sobel_v, "prewitt": prewitt, "prewitt_h": prewitt_h, "prewitt_v": prewitt_v,
    "scharr": scharr, "scharr_h": scharr_h, "scharr_v": scharr_v, "roberts": roberts,
    "laplace": laplace, "unsharp_mask": unsharp_mask,
    "difference_of_gaussians": difference_of_gaussians,
}


# -- chunked storage ----------------------------------------------------------------
class _TiffRegions:
    """Regions of one image of a TIFF file, read by opening the file at ``path`` (an
    open file cannot travel to other processes; a path can)."""

    def __init__(self, path, series, level, shape, dtype):
        self.path, self.series, self.level = path, series, level
        self.shape, self.dtype = shape, dtype

    def __getitem__(self, region):
        import tifffile
        import zarr

        with tifffile.TiffFile(self.path) as tif:
            z = zarr.open(tif.aszarr(series=self.series, level=self.level), mode="r")
            return np.asarray(z[region])


def _read_tiff_block(regions, block_info=None):
    return regions[tuple(slice(a, b) for a, b in block_info[None]["array-location"])]


def imread_tiled(path, *, chunks=None, series=0, level=0):
    """A (tiled) TIFF as a lazy dask array whose tasks each read their own region.

    Unlike ``da.from_zarr(tifffile.imread(path, aszarr=True))``, whose open
    file cannot travel to other processes, every task here opens the file
    by its path, so it works on a dask.distributed cluster as on threads;
    the file must be readable at ``path`` on every worker.  The filters of
    this module read their halos from the file too (as for a zarr array),
    so no chunk waits in memory for its neighbours.

    Parameters
    ----------
    path : str or os.PathLike
        The TIFF file (tiled or striped; BigTIFF and OME-TIFF included).
    chunks : int, tuple or None
        Chunk shape; by default the file's tiles (its strips for a striped
        file), with every axis beyond the first two whole.
    series, level : int
        Which image series and pyramid level of the file to read.

    Returns
    -------
    dask.array.Array

    Examples
    --------
    >>> import numpy as np, tifffile
    >>> from filtkit import distributed, signal
    >>> img = np.random.default_rng(0).random((96, 80), dtype=np.float32)
    >>> tifffile.imwrite("tiles.tif", img, tile=(32, 32))
    >>> chunked = distributed.imread_tiled("tiles.tif")
    >>> chunked.chunks
    ((32, 32, 32), (32, 32, 16))
    >>> bool(np.array_equal(chunked.compute(), img))
    True
    >>> import os; os.remove("tiles.tif")
    """
    import os

    import tifffile

    da = _dask()
    path = os.fspath(path)
    with tifffile.TiffFile(path) as tif:
        s = tif.series[series]
        shape, dtype = tuple(s.levels[level].shape), np.dtype(s.dtype)
        page = s.levels[level].pages[0]
        if chunks is None:
            if getattr(page, "is_tiled", False):
                tile = (page.tilelength, page.tilewidth)
            else:
                tile = (page.rowsperstrip or shape[0], shape[1] if len(shape) > 1 else 1)
            chunks = tile[: len(shape)] + shape[2:]
    template = da.empty(shape, dtype=dtype, chunks=chunks)
    regions = _TiffRegions(path, series, level, shape, dtype)
    x = da.map_blocks(_read_tiff_block, regions, chunks=template.chunks, dtype=dtype,
                      meta=np.empty((0,) * len(shape), dtype=dtype))
    x._filtkit_regions = regions  # the filters read their halos from the file too
    return x


# -- networks -------------------------------------------------------------------------
def _predict_block(block, model, batch_size, proba):
    with _one_numba_thread():
        if proba:
            return model.predict_proba(block, batch_size=batch_size)
        return model.predict(block, batch_size=batch_size)


def predict(model, images, *, batch_size=256, proba=False):
    """A trained network's predictions over a dask array of images, chunk by chunk.

    Parameters
    ----------
    model : filtkit.cnn.Sequential
        A trained model (it travels to the workers once, as one graph key).
    images : dask.array.Array or array_like
        ``(N, C, H, W)`` or, for one-channel models, whatever the model's
        ``predict`` accepts; chunked along N only (other axes are joined).
    batch_size : int
        Samples per forward pass inside a chunk.
    proba : bool
        Return the class probabilities ``(N, classes)`` instead of the
        labels ``(N,)``.

    Returns
    -------
    dask.array.Array
        int64 labels, or probabilities in the model's dtype.

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> from filtkit import cnn, distributed
    >>> model = cnn.lenet5(input_size=8, seed=0)
    >>> imgs = da.from_array(np.random.default_rng(0).random((10, 1, 8, 8)), chunks=4)
    >>> labels = distributed.predict(model, imgs)
    >>> bool((labels.compute() == model.predict(imgs.compute())).all())
    True
    """
    import dask

    if getattr(model, "device", "cpu") != "cpu":
        raise ValueError(f"`model` must be on the CPU to travel to the workers, got device "
                         f"{model.device!r} (call model.to('cpu') first)")
    images = _as_dask(images, "images")
    batch_size = check_int_tuple(batch_size, "batch_size", 1)[0]
    if images.ndim < 2:
        raise ValueError(f"`images` must be (N, ...) samples, got shape {images.shape}")
    n_classes = model._n_classes(images.shape[1:], "images")
    images = images.rechunk({a: -1 for a in range(1, images.ndim)})
    blocks = [c for c in images.chunks[0]]
    dmodel = dask.delayed(model, pure=True)
    if proba:
        return images.map_blocks(
            _predict_block, dmodel, batch_size, True, dtype=model.dtype,
            chunks=(tuple(blocks), (n_classes,)), drop_axis=list(range(2, images.ndim)),
            meta=np.empty((0, 0), dtype=model.dtype))
    return images.map_blocks(
        _predict_block, dmodel, batch_size, False, dtype=np.int64, chunks=(tuple(blocks),),
        drop_axis=list(range(1, images.ndim)), meta=np.empty((0,), dtype=np.int64))


__all__ = ["FILTERS", "convolve", "correlate", "imread_tiled", "predict",
           *sorted(FILTERS)]
