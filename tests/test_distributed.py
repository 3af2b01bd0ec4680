"""filtkit.distributed: chunked results equal the in-memory filtkit results.

The in-memory functions are themselves checked against scipy and
scikit-image (tests/signal); here every chunked result is compared with
them, for every boundary mode, odd chunk sizes, halos larger than the
chunks, strides and dilations.  Most cases run on Dask's synchronous
scheduler (fast); the ``cluster`` tests repeat the essentials on a real
dask.distributed LocalCluster of two worker processes.
"""

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed_pkg = pytest.importorskip("distributed")

import dask  # noqa: E402
from scipy import ndimage  # noqa: E402

from filtkit import cnn, distributed, signal  # noqa: E402
from filtkit.signal.filters import FILTERS  # noqa: E402

BOUNDARIES = ["constant", "reflect", "mirror", "nearest", "wrap"]
MODES = ["full", "same", "valid"]
# (4, 3): every chunk smaller than the dilated 5x4 kernel's reach
CHUNKS = [(4, 3), (10, 7), (37, 29)]


@pytest.fixture(autouse=True)
def synchronous():
    with dask.config.set(scheduler="synchronous"):
        yield


@pytest.fixture(scope="module")
def client():
    cluster = distributed_pkg.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None, silence_logs=40)
    c = distributed_pkg.Client(cluster, set_as_default=False)
    yield c
    c.close()
    cluster.close()


def _image(shape=(37, 29), dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "u":
        return rng.integers(0, 256, size=shape).astype(dtype)
    return (rng.random(shape) - 0.25).astype(dtype)


def _close(got, want, rtol=1e-12, atol=1e-12):
    assert got.shape == want.shape
    assert got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


# ----------------------------------------------------------------- correlate / convolve
@pytest.mark.parametrize("chunks", CHUNKS)
@pytest.mark.parametrize("stride", [1, 3])
@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("mode", MODES)
def test_correlate_equals_in_memory(mode, boundary, stride, chunks):
    x = _image()
    w = np.random.default_rng(1).random((5, 4))
    kw = dict(mode=mode, boundary=boundary, cval=0.75, stride=stride, dilation=(2, 1))
    got = distributed.correlate(da.from_array(x, chunks=chunks), w, **kw)
    want = signal.correlate(x, w, **kw)
    assert got.shape == want.shape  # known before computing
    _close(got.compute(), want)


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_convolve_flips_like_in_memory(boundary):
    x = _image((23, 31))
    w = np.random.default_rng(2).random((3, 6))
    got = distributed.convolve(da.from_array(x, chunks=(5, 8)), w, boundary=boundary,
                               stride=(2, 1)).compute()
    _close(got, signal.convolve(x, w, boundary=boundary, stride=(2, 1)))


def test_correlate_agrees_with_scipy_wrap():
    """An independent reference: scipy.ndimage's wrap-mode correlation."""
    x = _image((40, 33))
    w = np.random.default_rng(3).random((7, 7))
    got = distributed.correlate(da.from_array(x, chunks=(6, 5)), w, boundary="wrap").compute()
    _close(got, ndimage.correlate(x, w, mode="grid-wrap"))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("boundary", ["mirror", "wrap"])
def test_correlate_1d_halo_beyond_the_whole_signal(mode, boundary):
    x = _image((9,))
    w = np.random.default_rng(4).random(6)
    kw = dict(mode=mode, boundary=boundary, dilation=2) if mode != "valid" else dict(mode=mode)
    got = distributed.correlate(da.from_array(x, chunks=2), w, **kw).compute()
    _close(got, signal.correlate(x, w, **kw))


def test_depth_summing_3d_kernel():
    x = _image((8, 17, 15))
    w = np.random.default_rng(5).random((3, 3, 4))
    kw = dict(mode="valid", stride=(2, 1, 2), dilation=(2, 1, 1))
    got = distributed.correlate(da.from_array(x, chunks=(3, 5, 4)), w, **kw).compute()
    _close(got, signal.correlate(x, w, **kw))


@pytest.mark.parametrize("channel_axis", [0, -1])
def test_channel_axis(channel_axis):
    x = _image((3, 20, 18)) if channel_axis == 0 else _image((20, 18, 3))
    w = np.random.default_rng(6).random((4, 3))
    chunks = (1, 6, 7) if channel_axis == 0 else (6, 7, 2)
    kw = dict(boundary="reflect", channel_axis=channel_axis, stride=2)
    got = distributed.correlate(da.from_array(x, chunks=chunks), w, **kw).compute()
    _close(got, signal.correlate(x, w, **kw))


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float16, np.float32])
def test_dtypes_convert_as_in_memory(dtype):
    x = _image((21, 19), dtype=dtype)
    w = np.random.default_rng(7).random((3, 3))
    got = distributed.correlate(da.from_array(x, chunks=5), w, boundary="nearest").compute()
    want = signal.correlate(x, w, boundary="nearest")
    _close(got, want, rtol=1e-6 if want.dtype == np.float32 else 1e-12, atol=1e-6)


def test_fft_method_per_chunk():
    x = _image((64, 60), np.float32)
    w = np.random.default_rng(8).random((15, 15)).astype(np.float32)
    got = distributed.correlate(da.from_array(x, chunks=(20, 25)), w, boundary="wrap",
                                method="fft").compute()
    _close(got, signal.correlate(x, w, boundary="wrap"), rtol=1e-4, atol=1e-4)


def test_strided_output_chunks_follow_the_input_chunks():
    """Output ``i`` belongs to the chunk holding input ``i * stride``: chunks of 12
    with stride 3 give output chunks of 4."""
    x = da.from_array(_image((48, 36)), chunks=12)
    got = distributed.correlate(x, np.ones((3, 3)), mode="valid", stride=3)
    assert got.chunks == ((4, 4, 4, 4), (4, 4, 4))
    got = distributed.gaussian(x, sigma=1)
    assert got.chunks == x.chunks


def test_numpy_input_and_laziness():
    x = _image((12, 12))
    got = distributed.correlate(x, np.ones((3, 3)))
    assert isinstance(got, da.Array)
    _close(got.compute(), signal.correlate(x, np.ones((3, 3))))


# ----------------------------------------------------------------------------- filters
@pytest.mark.parametrize("chunks", [(3, 4), (11, 8)])
@pytest.mark.parametrize("mode", BOUNDARIES)
@pytest.mark.parametrize("name, kwargs", [
    ("gaussian", dict(sigma=(1.0, 2.5))),
    ("uniform", dict(size=(4, 3))),
    ("sobel", {}), ("prewitt", {}), ("scharr", {}),
    ("difference_of_gaussians", dict(low_sigma=1.0)),
])
def test_filters_with_mode_equal_in_memory(name, kwargs, mode, chunks):
    x = _image((33, 27), np.float32)
    kw = dict(kwargs, mode=mode, cval=0.4)
    got = distributed.FILTERS[name](da.from_array(x, chunks=chunks), **kw).compute()
    _close(got, FILTERS[name](x, **kw), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["sobel_h", "sobel_v", "prewitt_h", "prewitt_v", "scharr_h",
                                  "scharr_v", "roberts", "roberts_pos_diag",
                                  "roberts_neg_diag", "laplace", "unsharp_mask"])
@pytest.mark.parametrize("dtype", [np.uint8, np.float64])
def test_fixed_mode_filters_equal_in_memory(name, dtype):
    x = _image((26, 21), dtype)
    got = getattr(distributed, name)(da.from_array(x, chunks=(4, 5))).compute()
    _close(got, getattr(signal, name)(x))


def test_gaussian_uint8_and_preserve_range():
    x = _image((30, 30), np.uint8)
    for preserve in (False, True):
        got = distributed.gaussian(da.from_array(x, chunks=7), sigma=2,
                                   preserve_range=preserve).compute()
        _close(got, signal.gaussian(x, sigma=2, preserve_range=preserve))


def test_gaussian_halo_larger_than_chunks_and_image():
    x = _image((10, 9))
    got = distributed.gaussian(da.from_array(x, chunks=2), sigma=4, mode="wrap").compute()
    _close(got, signal.gaussian(x, sigma=4, mode="wrap"))
    # scipy.ndimage is the independent reference for wrap
    _close(got, ndimage.gaussian_filter(x, 4, mode="grid-wrap"), rtol=1e-10, atol=1e-12)


def test_channel_axis_filters():
    x = _image((16, 14, 3))
    kw = dict(sigma=1.5, mode="mirror", channel_axis=-1)
    _close(distributed.gaussian(da.from_array(x, chunks=(5, 4, 1)), **kw).compute(),
           signal.gaussian(x, **kw))
    _close(distributed.unsharp_mask(da.from_array(x, chunks=(5, 4, 2)), 2.0, 1.5,
                                    channel_axis=2).compute(),
           signal.unsharp_mask(x, 2.0, 1.5, channel_axis=2))


def test_volume_edge_filter_constant_mode():
    x = _image((7, 9, 8))
    got = distributed.sobel(da.from_array(x, chunks=(2, 4, 3)), mode="constant", cval=0.7)
    _close(got.compute(), signal.sobel(x, mode="constant", cval=0.7))


def test_unsharp_mask_clips_by_the_whole_image():
    """One negative value anywhere sets the [-1, 1] range for every chunk."""
    x = np.random.default_rng(9).random((24, 24))
    x[0, 0] = -0.5  # only the first chunk holds a negative value
    x[20:, 20:] = 0.0
    got = distributed.unsharp_mask(da.from_array(x, chunks=8), radius=1, amount=3).compute()
    want = signal.unsharp_mask(x, radius=1, amount=3)
    assert want.min() < 0 and (want[16:, 16:] < 0).any()  # the clip range matters here
    _close(got, want)


# ----------------------------------------------------------- halos read from the store
def _zarr(tmp_path, x, chunks, name="in.zarr"):
    zarr = pytest.importorskip("zarr")
    z = zarr.open_array(str(tmp_path / name), mode="w", shape=x.shape, chunks=chunks,
                        dtype=x.dtype)
    z[...] = x
    return zarr.open_array(str(tmp_path / name), mode="r")


class _Recorder:
    """A zarr array's regions, recording every read (what a task pulls from storage)."""

    def __init__(self, z):
        self.z, self.shape, self.dtype, self.chunks, self.reads = z, z.shape, z.dtype, z.chunks, []

    def __getitem__(self, region):
        self.reads.append(region)
        return self.z[region]


@pytest.mark.parametrize("chunks", [(4, 3), (10, 7)])
@pytest.mark.parametrize("stride", [1, 3])
@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("mode", MODES)
def test_store_correlate_equals_in_memory(tmp_path, mode, boundary, stride, chunks):
    """A zarr array as input: every task reads its slab from the store itself."""
    x = _image()
    z = _zarr(tmp_path, x, chunks)
    w = np.random.default_rng(1).random((5, 4))
    kw = dict(mode=mode, boundary=boundary, cval=0.75, stride=stride, dilation=(2, 1))
    got = distributed.correlate(z, w, **kw)
    assert not any("overlap" in name for name in got.dask.layers)
    _close(got.compute(), signal.correlate(x, w, **kw))


@pytest.mark.parametrize("chunks", [(3, 4), (11, 8)])
@pytest.mark.parametrize("name", sorted(distributed.FILTERS))
def test_store_filters_equal_in_memory(tmp_path, name, chunks):
    """uint8 in storage: the tasks scale it to floats as the in-memory filters do."""
    x = _image((33, 27), np.uint8)
    z = _zarr(tmp_path, x, chunks)
    kw = dict(low_sigma=1.0) if name == "difference_of_gaussians" else {}
    if name in ("gaussian", "uniform", "sobel", "prewitt", "scharr"):
        kw["mode"] = "wrap"
    _close(distributed.FILTERS[name](z, **kw).compute(), FILTERS[name](x, **kw))


@pytest.mark.parametrize("mode", BOUNDARIES)
def test_store_reads_each_stored_chunk_twice(tmp_path, mode):
    """Each stored chunk is read by its own task and once more for its neighbours' halos
    (the bands), and every read stays within one stored chunk."""
    x = _image((40, 36), np.float32)
    z = _zarr(tmp_path, x, (10, 12))
    chunked = distributed._as_dask(z, "image")
    rec = chunked._filtkit_regions = _Recorder(z)
    got = distributed.gaussian(chunked, sigma=2, mode=mode, cval=0.2).compute()
    _close(got, signal.gaussian(x, sigma=2, mode=mode, cval=0.2), rtol=1e-5, atol=1e-6)
    count = np.zeros((4, 3), dtype=int)
    for r0, r1 in rec.reads:
        chunk = (r0.start // 10, r1.start // 12)
        assert (r0.stop - 1) // 10 == chunk[0] and (r1.stop - 1) // 12 == chunk[1]
        count[chunk] += (r0.stop - r0.start) * (r1.stop - r1.start) == 120  # whole chunk
    assert (count == 2).all()


def test_store_wrap_needs_both_ends_of_a_short_chunk(tmp_path):
    """With two chunks and wrap, a slab reads both ends of the other chunk, which here is
    no longer than twice the reach: the piece is cut from both of its bands."""
    x = _image((8,))
    w = np.random.default_rng(4).random(3)
    for mode in MODES:
        kw = dict(mode=mode, boundary="wrap")
        _close(distributed.correlate(_zarr(tmp_path, x, (4,), mode + ".zarr"), w, **kw)
               .compute(), signal.correlate(x, w, **kw))
    y = _image((40, 36), np.float32)
    _close(distributed.gaussian(_zarr(tmp_path, y, (16, 16)), sigma=2, mode="wrap").compute(),
           signal.gaussian(y, sigma=2, mode="wrap"), rtol=1e-5, atol=1e-6)


def test_store_single_chunk_and_graph(tmp_path):
    """One stored chunk: no bands; several: one band task per stored chunk, and a
    ``to_zarr`` after the filter fuses with it (one task per chunk reads, filters and
    writes)."""
    x = _image((20, 18), np.float32)
    _close(distributed.sobel(_zarr(tmp_path, x, (20, 18)), mode="wrap").compute(),
           signal.sobel(x, mode="wrap"), rtol=1e-6, atol=1e-6)
    z = _zarr(tmp_path, x, (10, 9), "four.zarr")
    out = distributed.gaussian(z, sigma=1, mode="mirror")
    def names(graph):
        return [(k if isinstance(k, str) else k[0]).split("-")[0] for k in dict(graph)]

    assert names(out.dask).count("_read_bands") == 4 and names(out.dask).count("_Source") == 1
    store = da.to_zarr(out, str(tmp_path / "out.zarr"), compute=False)
    (opt,) = dask.optimize(store)
    assert "_store_block" in names(out.dask) and "_store_block" not in names(opt.dask)
    store.compute()
    got = pytest.importorskip("zarr").open_array(str(tmp_path / "out.zarr"), mode="r")[...]
    _close(got, signal.gaussian(x, sigma=1, mode="mirror"), rtol=1e-6, atol=1e-6)


def test_store_channel_axis_and_depth_sum(tmp_path):
    x = _image((16, 14, 3))
    z = _zarr(tmp_path, x, (5, 4, 2))
    kw = dict(sigma=1.5, mode="mirror", channel_axis=-1)
    _close(distributed.gaussian(z, **kw).compute(), signal.gaussian(x, **kw))
    w = np.random.default_rng(2).random((3, 3))
    kw = dict(boundary="wrap", channel_axis=-1, stride=2)
    _close(distributed.correlate(z, w, **kw).compute(), signal.correlate(x, w, **kw))
    w3 = np.random.default_rng(3).random((3, 4, 2))
    kw = dict(mode="valid", stride=(2, 1, 1), dilation=(1, 2, 1))
    _close(distributed.correlate(z, w3, **kw).compute(), signal.correlate(x, w3, **kw))


def test_store_tiff_uint16(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    x = (_image((50, 44)) * 40000).astype(np.uint16)
    tifffile.imwrite(tmp_path / "tiled.tif", x, tile=(16, 16))
    chunked = distributed.imread_tiled(tmp_path / "tiled.tif")
    _close(distributed.gaussian(chunked, sigma=3, mode="reflect").compute(),
           signal.gaussian(x, sigma=3, mode="reflect"))
    _close(distributed.unsharp_mask(chunked, radius=2).compute(),
           signal.unsharp_mask(x, radius=2))


# ------------------------------------------------------------------------------ errors
def test_errors_name_the_parameter():
    x = da.from_array(_image((10, 10)), chunks=5)
    with pytest.raises(ValueError, match="`mode` must be one of"):
        distributed.correlate(x, np.ones((3, 3)), mode="vaild")
    with pytest.raises(ValueError, match="`boundary` must be one of"):
        distributed.correlate(x, np.ones((3, 3)), boundary="circular")
    with pytest.raises(ValueError, match="`mode` must be one of"):
        distributed.gaussian(x, mode="circular")
    with pytest.raises(ValueError, match="`sigma`"):
        distributed.gaussian(x, sigma=-1)
    with pytest.raises(ValueError, match="`kernel`"):
        distributed.correlate(x, np.ones((11, 3)), mode="valid")
    with pytest.raises(TypeError, match="`x` must be real"):
        distributed.correlate(x.astype(np.complex128), np.ones((3, 3)))
    with pytest.raises(ValueError, match="`image` must be 2-dimensional"):
        distributed.sobel_h(da.zeros((4, 4, 4), chunks=2))
    unknown = x[x[:, 0] > 0.5]
    with pytest.raises(ValueError, match="known chunk sizes"):
        distributed.gaussian(unknown)


# ------------------------------------------------------------------- on a real cluster
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_cluster_correlate(client, boundary):
    x = _image((45, 38), np.float32)
    w = np.random.default_rng(10).random((7, 7)).astype(np.float32)
    kw = dict(boundary=boundary, cval=0.5, stride=(1, 2))
    got = distributed.correlate(da.from_array(x, chunks=(6, 9)), w, **kw)
    _close(got.compute(scheduler=client), signal.correlate(x, w, **kw), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", BOUNDARIES)
def test_cluster_halo_larger_than_chunks(client, mode):
    """A Gaussian of radius 12 over chunks of 5 and 7: the chunks merge as needed."""
    x = _image((41, 38), np.float32)
    got = distributed.gaussian(da.from_array(x, chunks=(5, 7)), sigma=3, mode=mode, cval=0.3)
    _close(got.compute(scheduler=client), signal.gaussian(x, sigma=3, mode=mode, cval=0.3),
           rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("source", ["zarr array", "da.from_zarr"])
@pytest.mark.parametrize("mode", BOUNDARIES)
def test_cluster_gaussian_zarr_round_trip(client, tmp_path, mode, source):
    """Chunked storage in and out: no task ever holds the whole image; a zarr array
    reads its halos from the store, a dask array gets them through dask's overlap."""
    zarr = pytest.importorskip("zarr")
    x = _image((64, 48), np.float32)
    src = _zarr(tmp_path, x, (16, 16))
    image = src if source == "zarr array" else da.from_zarr(str(tmp_path / "in.zarr"))
    out = distributed.gaussian(image, sigma=3, mode=mode)
    da.to_zarr(out, str(tmp_path / "out.zarr"), compute=False).compute(scheduler=client)
    got = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[...]
    _close(got, signal.gaussian(x, sigma=3, mode=mode), rtol=1e-6, atol=1e-6)


def test_cluster_tiled_tiff(client, tmp_path):
    tifffile = pytest.importorskip("tifffile")
    x = _image((100, 90), np.float32)
    tifffile.imwrite(tmp_path / "tiled.tif", x, tile=(32, 32))
    chunked = distributed.imread_tiled(tmp_path / "tiled.tif")
    assert chunked.chunks == ((32, 32, 32, 4), (32, 32, 26))
    got = distributed.sobel(chunked, mode="wrap").compute(scheduler=client)
    _close(got, signal.sobel(x, mode="wrap"), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("proba", [False, True])
def test_cluster_predict(client, proba):
    model = cnn.lenet5(input_size=12, seed=0)
    X = np.random.default_rng(11).random((70, 1, 12, 12)).astype(np.float32)
    images = da.from_array(X, chunks=(16, 1, 6, 12))  # odd chunks on the image axes too
    got = distributed.predict(model, images, batch_size=8, proba=proba)
    want = model.predict_proba(X) if proba else model.predict(X)
    assert got.shape == want.shape
    _close(got.compute(scheduler=client), want, rtol=1e-6, atol=1e-7)


def test_predict_checks_the_input_shape_and_the_device():
    model = cnn.lenet5(input_size=12, seed=0)
    with pytest.raises(ValueError, match="does not fit the model"):
        distributed.predict(model, da.zeros((4, 1, 10, 10), chunks=2))
    model.device = "cuda"  # as after model.to("cuda"), without needing a GPU here
    with pytest.raises(ValueError, match="`model` must be on the CPU"):
        distributed.predict(model, da.zeros((4, 1, 12, 12), chunks=2))


def test_threaded_scheduler():
    """Dask's default scheduler: several threads launch Numba kernels at once."""
    x = _image((64, 60), np.float32)
    with dask.config.set(scheduler="threads", num_workers=4):
        got = distributed.gaussian(da.from_array(x, chunks=(9, 16)), sigma=2, mode="wrap")
        got = got.compute()
    _close(got, signal.gaussian(x, sigma=2, mode="wrap"), rtol=1e-5, atol=1e-6)
