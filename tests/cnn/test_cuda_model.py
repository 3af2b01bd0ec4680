"""filtkit.cnn on the GPU: ``model.to("cuda")``, layers, training, inference, save/load.

Every result is compared with the CPU path on the same data, weights and
seeds (the CPU path is itself tested against torch in test_layers.py and
test_model.py).  These run where numba.cuda works: a GPU, or CI's simulator
run (``NUMBA_ENABLE_CUDASIM=1``, see .ci/run); elsewhere only the errors are
checked.  The simulator runs every GPU thread as a Python thread, so the
shapes here are tiny.
"""

import numpy as np
import pytest

from filtkit import backends, cnn
from filtkit.backends import is_device_array
from tests.backends.device import BACKENDS, strict_device_arrays

HAVE_CUDA = "cuda" in BACKENDS
needs_cuda = pytest.mark.skipif(not HAVE_CUDA, reason="no GPU and no CUDA simulator")

@pytest.fixture(autouse=True)
def device_arrays_are_strict(monkeypatch):
    strict_device_arrays(monkeypatch)


def to_gpu(a):
    from numba import cuda

    return cuda.to_device(a)


def host(a):
    assert is_device_array(a), type(a)
    return a.copy_to_host()


TOL = {np.dtype(np.float32): 2e-6, np.dtype(np.float64): 1e-12}


def assert_close(got, want, what=""):
    """Within the dtype's tolerance of the largest reference magnitude (a few ulps of
    float rounding: the GPU sums in another order and fuses multiply-adds)."""
    want = np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype, what
    scale = float(np.abs(want).max())
    assert scale > 0, f"{what}: a trivial reference"
    err = float(np.abs(got.astype(np.float64) - want).max())
    assert err <= TOL[want.dtype] * scale, f"{what}: max error {err:.3g} (scale {scale:.3g})"


# ------------------------------------------------------------------ errors (any machine)


def test_cuda_bad_device_strings_are_refused():
    model = cnn.lenet5(input_size=8, seed=0)
    for bad in ("gpu", "CUDA", "cuda:0", None, 0):
        with pytest.raises(ValueError, match=r"`device` must be one of \{'cpu', 'cuda'\}"):
            model.to(bad)
    with pytest.raises(ValueError, match="got 'gpu'"):
        cnn.Conv2D(1, 2, 3).to("gpu")
    with pytest.raises(ValueError, match="`device`"):
        model.parameters()[0].to("tpu")
    assert model.device == "cpu" and isinstance(model.parameters()[0].data, np.ndarray)


def test_cuda_without_a_gpu_is_a_clear_error_and_moves_nothing(monkeypatch):
    """No GPU (simulated here by numba.cuda reporting none): a RuntimeError that says
    what is missing, and the model stays on the CPU."""
    try:
        from numba import cuda
    except ImportError:  # no numba-cuda at all: unavailable anyway
        missing = "the numba-cuda package"
    else:
        monkeypatch.setattr(cuda, "is_available", lambda: False)
        # as in a process that never found one (the CUDA backend, once found, is kept)
        monkeypatch.setattr(backends, "_cuda_module", None)
        missing = "an NVIDIA GPU"
    model = cnn.lenet5(input_size=8, seed=0)
    model.fit(*_data(8, seed=0), epochs=1, batch_size=8, progress=False)
    with pytest.raises(RuntimeError, match=f"`device` 'cuda' needs {missing}"):
        model.to("cuda")
    with pytest.raises(RuntimeError, match="`device` 'cuda' needs"):
        cnn.Dense(3, 2).to("cuda")
    assert model.device == "cpu"
    assert all(isinstance(p.data, np.ndarray) for p in model.parameters())
    assert all(isinstance(a, np.ndarray) for b in model.optimizer._state.values() for a in b)
    model.evaluate(*_data(8, seed=1))  # still usable


@pytest.mark.skipif(HAVE_CUDA, reason="checks the error raised without a GPU")
def test_cuda_unavailable_here_is_a_clear_error():
    with pytest.raises(RuntimeError, match="`device` 'cuda' needs"):
        cnn.lenet5(input_size=8, seed=0).to("cuda")


# ------------------------------------------------------------------ layers


def _data(n, seed, size=8, classes=10, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return (rng.random((n, 1, size, size), dtype=np.float32).astype(dtype),
            rng.integers(0, classes, n))


#: (layer factory, input shape); a factory gives equal layers (same seeds) on each call
LAYER_CASES = [
    (lambda: cnn.Conv2D(2, 3, 3, padding=1, rng=0), (2, 2, 6, 5)),
    (lambda: cnn.Conv2D(2, 2, (2, 3), stride=2, dilation=(1, 2), bias=False, rng=1),
     (2, 2, 7, 8)),
    (lambda: cnn.Conv2D(1, 2, 3, padding="same", dtype="float64", rng=2), (2, 1, 5, 6)),
    (lambda: cnn.MaxPool2D(2), (2, 2, 6, 4)),
    (lambda: cnn.MaxPool2D(3, stride=2, padding=1), (1, 2, 7, 6)),
    (lambda: cnn.AvgPool2D(2), (2, 2, 4, 6)),
    (lambda: cnn.AvgPool2D(3, stride=1, padding=1), (1, 2, 5, 5)),
    (lambda: cnn.Dense(12, 5, rng=3), (3, 12)),
    (lambda: cnn.Dense(7, 4, bias=False, dtype="float64", rng=4), (5, 7)),
    (lambda: cnn.ReLU(), (3, 2, 4, 4)),
    (lambda: cnn.LeakyReLU(0.1), (3, 20)),
    (lambda: cnn.Sigmoid(), (3, 20)),
    (lambda: cnn.Tanh(), (3, 20)),
    (lambda: cnn.Flatten(), (2, 3, 2, 4)),
    (lambda: cnn.Dropout(0.4, rng=5), (4, 16)),
]


@needs_cuda
@pytest.mark.parametrize("make,shape", LAYER_CASES, ids=lambda v: repr(v()) if callable(v)
                         else "x".join(map(str, v)))
def test_cuda_layer_forward_backward_equal_cpu(rng, make, shape):
    """Forward, input gradient and (twice accumulated) parameter gradients on the GPU
    equal the CPU layer's for the same weights and data."""
    cpu_layer, gpu_layer = make(), make().to("cuda")
    assert gpu_layer.device == "cuda" and all(is_device_array(p.data) and is_device_array(p.grad)
                                              for p in gpu_layer.parameters())
    dtype = cpu_layer.parameters()[0].dtype if cpu_layer.parameters() else np.float32
    x = rng.standard_normal(shape).astype(dtype)
    y = cpu_layer.forward(x)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = cpu_layer.backward(dy)
    gy = gpu_layer.forward(to_gpu(x))
    gdx = gpu_layer.backward(to_gpu(dy))
    assert_close(host(gy), y, "forward")
    assert_close(host(gdx), dx, "input gradient")
    if cpu_layer.parameters():  # gradients accumulate until zero_grad, on the GPU too
        cpu_layer.forward(x)
        cpu_layer.backward(dy)
        gpu_layer.forward(to_gpu(x))
        gpu_layer.backward(to_gpu(dy))
        for p, q in zip(cpu_layer.parameters(), gpu_layer.parameters()):
            assert_close(host(q.grad), p.grad, f"{p.name} gradient")
        gpu_layer.zero_grad()
        assert not host(gpu_layer.parameters()[0].grad).any()


@needs_cuda
def test_cuda_flat_views_are_kept_and_write_through(rng):
    """A GPU array's flat view (parameters, gradients and optimizer state are flattened
    every step) is made once and kept; kernels writing through it write the array."""
    from numba import cuda

    from filtkit.cnn import functional as F

    a = cuda.to_device(rng.standard_normal((2, 3, 4)).astype(np.float32))
    flat = F.ravel(a)
    assert F.ravel(a) is flat and tuple(flat.shape) == (24,)
    F.fill(a, 2.5)  # through the kept view
    np.testing.assert_array_equal(a.copy_to_host(), np.full((2, 3, 4), 2.5, np.float32))
    host = rng.standard_normal((2, 3))
    assert F.ravel(host).base is host and F.ravel(host).shape == (6,)


@needs_cuda
def test_cuda_layers_refuse_arrays_from_the_other_device(rng):
    conv = cnn.Conv2D(1, 2, 3, rng=0).to("cuda")
    x = rng.standard_normal((1, 1, 5, 5)).astype(np.float32)
    with pytest.raises(ValueError, match="`x` for Conv2D.*must be on the layer's device 'cuda'"):
        conv.forward(x)
    y = conv.forward(to_gpu(x))
    with pytest.raises(ValueError, match="`dy` for Conv2D.*device of the forward pass"):
        conv.backward(np.ones(tuple(y.shape), np.float32))
    with pytest.raises(TypeError, match="float32, the layer's dtype"):
        conv.forward(to_gpu(x.astype(np.float64)))
    dense = cnn.Dense(3, 2, rng=0)
    with pytest.raises(ValueError, match="`x` for Dense.*'cpu'"):
        dense.forward(to_gpu(np.ones((2, 3), np.float32)))


# ------------------------------------------------------------------ networks


def tiny_lenet(dtype="float32", seed=0):
    """LeNet-5's shape on 1x8x8 inputs with 2-3 channels, and a dropout before the last
    layer (its seeded masks must match too)."""
    rng = np.random.default_rng(seed)
    return cnn.Sequential([
        cnn.Conv2D(1, 3, 5, padding=2, dtype=dtype, rng=rng), cnn.ReLU(), cnn.MaxPool2D(2),
        cnn.Conv2D(3, 2, 3, padding=1, dtype=dtype, rng=rng), cnn.ReLU(), cnn.MaxPool2D(2),
        cnn.Flatten(), cnn.Dense(8, 12, dtype=dtype, rng=rng), cnn.Tanh(),
        cnn.Dropout(0.3, rng=rng), cnn.Dense(12, 10, dtype=dtype, rng=rng),
    ], input_shape=(1, 8, 8))


def make_optimizer(kind, model):
    if kind == "sgd":
        return cnn.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True,
                       weight_decay=1e-3)
    return cnn.Adam(model.parameters(), lr=1e-2, weight_decay=1e-3)


def assert_same_training_state(gpu_model, cpu_model, what):
    for p, q in zip(cpu_model.parameters(), gpu_model.parameters()):
        assert_close(host(q.data), p.data, f"{what}: {p.name}")
    a, b = cpu_model.optimizer.state_dict(), gpu_model.optimizer.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], np.ndarray) and a[k].dtype.kind == "f" and a[k].ndim:
            assert isinstance(b[k], np.ndarray), k  # state_dict downloads
            assert_close(b[k], a[k], f"{what}: {k}")
        else:
            np.testing.assert_array_equal(b[k], a[k], err_msg=k)


@needs_cuda
@pytest.mark.parametrize("kind,dtype", [("sgd", "float32"), ("adam", "float64")])
def test_cuda_training_step_equals_cpu(kind, dtype):
    """One fit step (Adam in float64, where its normalised update cannot turn float
    rounding into a visible change; SGD with Nesterov momentum and weight decay in
    float32) on the GPU equals the CPU's; everything stays on the device, and only
    the loss, flags and the batch's predictions come back."""
    X, y = _data(4, seed=1, dtype=dtype)
    cpu_model, gpu_model = tiny_lenet(dtype), tiny_lenet(dtype).to("cuda")
    assert gpu_model.device == "cuda"
    hist_cpu = cpu_model.fit(X, y, epochs=1, batch_size=4, seed=0, progress=False,
                             optimizer=make_optimizer(kind, cpu_model))
    downloads = []
    array_type = type(gpu_model.parameters()[0].data)
    copy_to_host = array_type.copy_to_host

    def counted(self, *args, **kwargs):
        downloads.append(self.size)
        return copy_to_host(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(array_type, "copy_to_host", counted)
        hist_gpu = gpu_model.fit(X, y, epochs=1, batch_size=4, seed=0, progress=False,
                                 optimizer=make_optimizer(kind, gpu_model))
    assert downloads and max(downloads) <= 4  # scalars and the batch's predictions only
    assert hist_gpu["accuracy"] == hist_cpu["accuracy"]
    assert hist_gpu["loss"][0] == pytest.approx(hist_cpu["loss"][0], rel=TOL[np.dtype(dtype)])
    assert all(is_device_array(p.data) for p in gpu_model.parameters())
    assert all(is_device_array(a) for b in gpu_model.optimizer._state.values() for a in b)
    assert gpu_model.optimizer.step_count == 1
    assert_same_training_state(gpu_model, cpu_model, "after one step")
    # the step moved the weights far beyond the tolerance (a step that did nothing fails)
    start = tiny_lenet(dtype)
    assert np.abs(host(gpu_model.parameters()[0].data) - start.parameters()[0].data).max() > 1e-4


@needs_cuda
def test_cuda_fit_reuses_each_step_temporaries_and_still_equals_cpu(monkeypatch):
    """fit's GPU steps take their temporaries (batch, activations, masks, deltas, the
    convolutions' columns) from one arena per batch size: after the first step of a
    batch size a step allocates next to nothing on the device.  Two epochs of batches
    of 4, 4 and 2 with dropout then still equal the CPU's training (an array written
    again while still needed would not)."""
    from filtkit.backends import cuda as cuda_backend

    X, y = _data(10, seed=5, dtype="float64")
    cpu_model, gpu_model = tiny_lenet("float64"), tiny_lenet("float64").to("cuda")
    cpu_model.fit(X, y, epochs=2, batch_size=4, seed=3, progress=False,
                  optimizer=make_optimizer("adam", cpu_model))
    allocate, step_cuda = cuda_backend._allocate, gpu_model._step_cuda
    per_step = []

    def counted_allocate(*args):
        per_step[-1] += 1
        return allocate(*args)

    def step(xb, *args, **kwargs):
        per_step.append(0)
        return step_cuda(xb, *args, **kwargs)

    monkeypatch.setattr(cuda_backend, "_allocate", counted_allocate)
    monkeypatch.setattr(gpu_model, "_step_cuda", step)
    gpu_model.fit(X, y, epochs=2, batch_size=4, seed=3, progress=False,
                  optimizer=make_optimizer("adam", gpu_model))
    monkeypatch.undo()
    assert len(per_step) == 6
    # a first step of each size records its arrays; the first two also take the
    # snapshots and the optimizer's state; later steps none
    assert per_step[0] > 20 and per_step[2] > 20, per_step
    assert all(n == 0 for n in per_step[3:]), per_step
    assert_same_training_state(gpu_model, cpu_model, "after two epochs")
    dropout = [layer for layer in gpu_model.layers if isinstance(layer, cnn.Dropout)]
    assert dropout and dropout[0]._masks is None  # fit's mask prefetcher is gone
    assert dropout[0]._rng.bit_generator.state == cpu_model.layers[9]._rng.bit_generator.state


def shared_dropout_net(seed=0):
    """Two dropout layers drawing from one generator (as in :func:`cnn.convnet`), so the
    order of their draws decides every mask."""
    rng = np.random.default_rng(seed)
    return cnn.Sequential([cnn.Dense(6, 7, dtype="float64", rng=rng), cnn.ReLU(),
                           cnn.Dropout(0.3, rng=rng), cnn.Dense(7, 5, dtype="float64", rng=rng),
                           cnn.Dropout(0.6, rng=rng), cnn.Dense(5, 3, dtype="float64", rng=rng)])


@needs_cuda
def test_cuda_fit_draws_the_next_masks_ahead_as_the_cpu_draws_them(monkeypatch):
    """fit on the GPU draws each step's dropout masks during the step before (a worker
    thread), from the generator the two layers share, in the order the CPU draws them:
    over epochs of batches of 3, 3 and 2, with validation in between, the weights, the
    optimizer state and the generator's state end equal to the CPU's.  The masks of
    every step but the first come from the worker; what it drew ahead for a batch of
    another size is put back and drawn again."""
    from filtkit.cnn import layers

    X, y = _dense_data(seed=11)
    cpu_model, gpu_model = shared_dropout_net(), shared_dropout_net().to("cuda")
    runs = {}
    for model in (cpu_model, gpu_model):
        model.fit(X, y, epochs=3, batch_size=3, seed=2, progress=False,
                  validation_data=(X[:4], y[:4]), optimizer=make_optimizer("adam", model))
    taken, take = [], layers._MaskPrefetch.take

    def counted_take(self, layer, shape, rdtype):
        ahead = self._taken < len(self._ready)
        mask = take(self, layer, shape, rdtype)
        taken.append(ahead and self._taken > 0 and self._ready[self._taken - 1][4] is mask)
        return mask

    monkeypatch.setattr(layers._MaskPrefetch, "take", counted_take)
    for model in (cpu_model, gpu_model):
        runs[model.device] = model.fit(X, y, epochs=2, batch_size=3, seed=5, progress=False)
    monkeypatch.undo()
    assert runs["cuda"]["accuracy"] == runs["cpu"]["accuracy"]
    assert_same_training_state(gpu_model, cpu_model, "after five epochs")
    generator = gpu_model.layers[2]._rng.bit_generator
    assert generator.state == cpu_model.layers[2]._rng.bit_generator.state
    # 2 epochs x 3 steps (3, 3, 2 samples) x 2 masks, drawn ahead for the second step
    # of each epoch: the first has none (a new fit) or those for a batch of 2 (put back
    # and drawn again), the third gets those for a batch of 3 (the same)
    assert taken == [False, False, True, True, False, False] * 2


def count_launches(monkeypatch):
    """A list that gets one entry per CUDA kernel launched from now on (through the
    class every backend kernel is an instance of: filtkit's launcher on a GPU, numba's
    simulated kernel on the simulator)."""
    from filtkit.backends import cuda as cuda_backend

    kernel_type = type(cuda_backend._fill_kernel)
    launches, getitem = [], kernel_type.__getitem__

    def counted(self, launch):
        launches.append(launch)
        return getitem(self, launch)

    monkeypatch.setattr(kernel_type, "__getitem__", counted)
    return launches


def _dense_data(seed):
    """Eight samples for :func:`dense_net` (the packing tests' small network)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((8, 6)), rng.integers(0, 3, 8)


def moved_one_by_one(model):
    """The model on the GPU with every parameter an array of its own (not packed)."""
    for p in model.parameters():
        p.to("cuda")
    return model.to("cuda")


@needs_cuda
@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_cuda_packed_parameters_update_in_one_launch_with_the_same_bits(monkeypatch, kind):
    """.to("cuda") packs the values and the gradients into one flat buffer each; then
    zero_grad, the optimizer's update (its buffers packed too) and the finiteness check
    of the gradients are one launch each, and training gives exactly the bits of the
    same model with separate arrays (updated one parameter at a time)."""
    from filtkit.cnn import functional as F

    X, y = _dense_data(seed=6)
    packed, separate = dense_net().to("cuda"), moved_one_by_one(dense_net())
    params = packed.parameters()
    values, grads = F.packed([p.data for p in params]), F.packed([p.grad for p in params])
    assert values is not None and grads is not None
    assert values.size == grads.size == sum(p.size for p in params)
    assert F.packed([p.data for p in separate.parameters()]) is None
    for model in (packed, separate):
        model.fit(X[:4], y[:4], epochs=1, batch_size=4, seed=0, progress=False,
                  optimizer=make_optimizer(kind, model))
    opt = packed.optimizer
    for arrays in opt._state.values():
        assert F.packed(arrays) is not None

    def step(model, launches):  # fit's steps, one launch count after another
        start = len(launches)
        model.zero_grad()
        counts = [len(launches) - start]
        loss = cnn.CrossEntropyLoss()
        loss(model._run(to_gpu(X[4:])), y[4:])
        model._backward(loss.backward(), input_grad=False)
        start = len(launches)
        assert F.all_finite(*(p.grad for p in model.parameters()))
        counts.append(len(launches) - start)
        start = len(launches)
        model.optimizer.step()
        counts.append(len(launches) - start)
        return counts

    launches, n = count_launches(monkeypatch), len(params)
    assert step(separate, launches) == [n, n + 1, n]  # + 1: zeroing the count
    assert step(packed, launches) == [1, 2, 1]
    monkeypatch.undo()
    for p, q in zip(packed.parameters(), separate.parameters()):
        np.testing.assert_array_equal(host(p.data), host(q.data), err_msg=p.name)
    a, b = opt.state_dict(), separate.optimizer.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def trace_launches_and_transfers(monkeypatch):
    """A list that records, in order, each kernel launch (its configuration), each
    download ("download") and each upload that waits for the GPU ("waiting upload":
    from the host, not queued on a stream)."""
    from numba import cuda

    trace = count_launches(monkeypatch)
    array_type = type(cuda.to_device(np.zeros(1)))
    download, upload = array_type.copy_to_host, array_type.copy_to_device

    def copy_to_host(self, *args, **kwargs):
        trace.append("download")
        return download(self, *args, **kwargs)

    def copy_to_device(self, ary, stream=0):
        if not is_device_array(ary) and not stream:
            trace.append("waiting upload")
        return upload(self, ary, stream)

    monkeypatch.setattr(array_type, "copy_to_host", copy_to_host)
    monkeypatch.setattr(array_type, "copy_to_device", copy_to_device)
    return trace


@needs_cuda
def test_cuda_evaluate_and_predict_queue_every_batch_before_the_first_download(monkeypatch):
    """evaluate and predict_proba on the GPU launch all their batches before anything
    comes back: every download after the last launch (evaluate: each batch's loss sum
    and classes; predict_proba: each batch's probabilities), no upload waits."""
    model = dense_net().to("cuda")
    X, y = _dense_data(seed=4)
    for call, downloads in ((lambda: model.evaluate(X, y, batch_size=3), 6),
                            (lambda: model.predict_proba(X, batch_size=3), 3)):
        trace = trace_launches_and_transfers(monkeypatch)
        call()
        monkeypatch.undo()
        kinds = "".join("d" if t == "download" else "L" for t in trace)
        assert "waiting upload" not in trace
        assert kinds == "L" * (len(kinds) - downloads) + "d" * downloads, kinds


@needs_cuda
def test_cuda_fit_queues_each_step_whole_before_it_waits(monkeypatch):
    """On the GPU a training step (batch, forward with a dropout mask, loss, backward,
    the finiteness counts, the snapshot and the update) is launched whole before
    anything comes back: per step, three downloads (the predicted classes, the counts,
    the loss) after the step's last launch, and no upload that waits for the GPU."""
    model = cnn.Sequential([cnn.Dense(6, 5, dtype="float64", rng=0), cnn.ReLU(),
                            cnn.Dropout(0.3, rng=1), cnn.Dense(5, 3, dtype="float64", rng=2)])
    model.to("cuda")
    X, y = _dense_data(seed=3)
    trace = trace_launches_and_transfers(monkeypatch)
    history = model.fit(X, y, epochs=1, batch_size=4, seed=0, progress=False)
    monkeypatch.undo()
    assert "waiting upload" not in trace
    kinds = "".join("d" if t == "download" else "L" for t in trace)
    steps = kinds.replace("Ld", "L|d").split("|")[1:]
    assert kinds.startswith("L") and len(steps) == 2, kinds
    assert all(part.startswith("ddd") and "d" not in part[3:] for part in steps), kinds
    assert np.isfinite(history["loss"]).all()


@needs_cuda
def test_cuda_packing_survives_moves_and_restored_state():
    """Buffers moved or restored one by one are packed again at the next step (same
    result); a parameter moved on its own leaves the pack, and the rest still trains
    one parameter at a time, equal to the CPU."""
    from filtkit.cnn import functional as F

    X, y = _dense_data(seed=7)
    model, twin = dense_net(), dense_net()
    for m in (model, twin):
        m.fit(X[:4], y[:4], epochs=1, batch_size=4, seed=0, progress=False,
              optimizer=make_optimizer("adam", m))
    model.optimizer.load_state_dict(model.optimizer.state_dict())  # host arrays again
    model.to("cuda")
    assert F.packed(model.optimizer._state["exp_avg"]) is None  # moved one by one
    for m in (model, twin):
        m.fit(X[4:], y[4:], epochs=1, batch_size=4, seed=1, progress=False)
    assert F.packed(model.optimizer._state["exp_avg"]) is not None
    assert_same_training_state(model, twin, "after a repacking step")

    params = model.parameters()
    params[1].to("cpu").to("cuda")  # a new array: no longer the pack's view
    assert F.packed([p.data for p in params]) is None
    for m in (model, twin):
        m.fit(X[:4], y[:4], epochs=1, batch_size=4, seed=2, progress=False)
    assert_same_training_state(model, twin, "after a step one parameter at a time")


@needs_cuda
def test_cuda_resume_round_trip_save_and_load(tmp_path):
    """Train a step on the CPU, move model and optimizer to the GPU, train a step there,
    save, come back: equal to two CPU steps; .to() round trips bit for bit; the file
    equals the CPU model's; load gives a CPU model with the optimizer's state."""
    X, y = _data(8, seed=2)
    twin, model = tiny_lenet(), tiny_lenet()
    for m in (twin, model):
        m.fit(X[:4], y[:4], epochs=1, batch_size=4, seed=0, progress=False,
              optimizer=make_optimizer("sgd", m))
    before = [p.data.copy() for p in model.parameters()]
    state = model.optimizer.state_dict()
    model.to("cuda")  # the attached optimizer's momentum buffers go along
    assert all(is_device_array(a) for a in model.optimizer._state["momentum_buffer"])
    back = [host(p.data) for p in model.parameters()]
    for a, b in zip(before, back):  # the upload is exact
        np.testing.assert_array_equal(a, b)
    for k, v in model.optimizer.state_dict().items():
        np.testing.assert_array_equal(v, state[k])
    for m in (twin, model):  # resumes the model's optimizer, on either device
        m.fit(X[4:], y[4:], epochs=1, batch_size=4, seed=1, progress=False)
    assert model.optimizer.step_count == twin.optimizer.step_count == 2
    assert_same_training_state(model, twin, "after a CPU step and a GPU step")

    model.save(tmp_path / "gpu.npz")
    trained = [host(p.data) for p in model.parameters()]
    gpu_state = model.optimizer.state_dict()
    assert model.to("cpu") is model and model.device == "cpu"
    assert all(isinstance(p.data, np.ndarray) and isinstance(p.grad, np.ndarray)
               for p in model.parameters())
    for a, p in zip(trained, model.parameters()):  # the download is exact
        assert a.dtype == p.data.dtype
        np.testing.assert_array_equal(p.data, a)
    assert all(isinstance(a, np.ndarray) for a in model.optimizer._state["momentum_buffer"])
    model.save(tmp_path / "cpu.npz")
    with np.load(tmp_path / "gpu.npz") as f, np.load(tmp_path / "cpu.npz") as g:
        assert sorted(f.files) == sorted(g.files)
        for k in f.files:
            np.testing.assert_array_equal(f[k], g[k], err_msg=k)
    loaded = cnn.load(tmp_path / "gpu.npz")
    assert loaded.device == "cpu" and loaded.optimizer.step_count == 2
    for a, p in zip(trained, loaded.parameters()):
        np.testing.assert_array_equal(p.data, a)
    for k, v in loaded.optimizer.state_dict().items():
        np.testing.assert_array_equal(v, gpu_state[k], err_msg=k)


@needs_cuda
def test_cuda_evaluate_and_predict_equal_cpu():
    X, y = _data(6, seed=3)
    cpu_model, gpu_model = tiny_lenet(seed=4), tiny_lenet(seed=4).to("cuda")
    want, got = cpu_model.evaluate(X, y, batch_size=4), gpu_model.evaluate(X, y, batch_size=4)
    assert got["accuracy"] == want["accuracy"]
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-6)
    proba = gpu_model.predict_proba(X, batch_size=4)
    assert isinstance(proba, np.ndarray) and proba.shape == (6, 10)
    assert_close(proba, cpu_model.predict_proba(X, batch_size=4), "probabilities")
    np.testing.assert_array_equal(gpu_model.predict(X), cpu_model.predict(X))
    out = gpu_model.forward(X)  # a host batch is uploaded; the output stays there
    assert is_device_array(out) and gpu_model.training  # evaluation mode was restored
    with pytest.raises(TypeError, match="`X` must be a host"):
        gpu_model.predict(to_gpu(X))
    with pytest.raises(ValueError, match="`loss` on device 'cuda' must be a CrossEntropyLoss"):
        gpu_model.fit(X, y, loss=cnn.MSELoss(), progress=False)
    with pytest.raises(ValueError, match="`loss` on device 'cuda'"):
        gpu_model.evaluate(X, y, loss=cnn.MSELoss())


def dense_net():
    """Dense layers only: the divergence test's many steps stay cheap on the simulator."""
    return cnn.Sequential([cnn.Dense(6, 5, dtype="float64", rng=0), cnn.ReLU(),
                           cnn.Dense(5, 3, dtype="float64", rng=1)])


@needs_cuda
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the simulator's inf - inf
def test_cuda_divergence_restores_the_last_finite_weights_on_the_device():
    """An infinite batch (the third): fit stops with DivergenceError and keeps, copied
    back on the device, the weights and optimizer state the second batch started from."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((12, 6))
    y = rng.integers(0, 3, 12)
    model = dense_net().to("cuda")
    opt = cnn.Adam(model.parameters(), lr=0.05)
    seen = []

    def poison(xb, rng):  # records what each batch starts from (downloads: a test's own)
        seen.append(([p.data.copy_to_host() for p in model.parameters()],
                     opt.state_dict()))
        return np.full_like(xb, np.inf) if len(seen) == 3 else xb

    with pytest.raises(cnn.DivergenceError, match="epoch 1, batch 3") as info:
        model.fit(X, y, epochs=1, batch_size=4, shuffle=False, optimizer=opt, augment=poison,
                  progress=False)
    assert info.value.history == {"loss": [], "accuracy": []}
    weights, state = seen[1]
    assert not np.array_equal(weights[0], seen[0][0][0])  # a step did happen before
    for p, w in zip(model.parameters(), weights):
        assert is_device_array(p.data)
        np.testing.assert_array_equal(p.data.copy_to_host(), w)
    now = opt.state_dict()
    assert now.keys() == state.keys() and opt.step_count == 1
    for k in now:
        np.testing.assert_array_equal(now[k], state[k], err_msg=k)
    # training goes on from there, on the device
    model.fit(X[:4], y[:4], epochs=1, batch_size=4, progress=False)
    assert opt.step_count == 2 and np.isfinite(host(model.parameters()[0].data)).all()


@needs_cuda
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the simulator's inf - inf
def test_cuda_divergence_at_the_first_step_keeps_the_first_weights_as_the_cpu():
    """An infinite first batch: on either device fit stops there, with the weights it
    started from, no optimizer step taken and zero gradients (on the GPU the update
    was queued with the step and is undone)."""
    X, y = _dense_data(seed=9)

    def poison(xb, rng):  # X itself must be finite
        xb = xb.copy()
        xb[1, 2] = np.inf
        return xb

    for device in ("cpu", "cuda"):
        model = dense_net().to(device)
        opt = cnn.SGD(model.parameters(), lr=0.1, momentum=0.9)
        start = [np.array(p.data if device == "cpu" else host(p.data))
                 for p in model.parameters()]
        with pytest.raises(cnn.DivergenceError, match="epoch 1, batch 1: loss"):
            model.fit(X, y, epochs=1, batch_size=4, shuffle=False, optimizer=opt,
                      augment=poison, progress=False)
        assert opt.step_count == 0
        for p, w in zip(model.parameters(), start):
            got = p.data if device == "cpu" else host(p.data)
            np.testing.assert_array_equal(got, w, err_msg=f"{device} {p.name}")
            grad = p.grad if device == "cpu" else host(p.grad)
            assert not grad.any(), (device, p.name)
