"""filtkit.cnn against PyTorch (CPU): training and inference throughput, memory, start-up.

Run from the repository root::

    python benchmarks/bench_cnn.py            # full run, about 40 s on 2 cores;
                                              # prints the report and rewrites its section
                                              # of benchmarks/RESULTS.md
    python benchmarks/bench_cnn.py --quick    # smoke run (about 15 s): batch 64 only, fewer
                                              # repeats, warm-cache start-up only; prints only

The networks are filtkit's two ready-made architectures, ``filtkit.cnn.lenet5(seed=0)``
(conv 6@5x5 pad 2 - ReLU - maxpool 2 - conv 16@5x5 - ReLU - maxpool 2 - flatten - dense 120 -
ReLU - dense 84 - ReLU - dense 10) and ``filtkit.cnn.convnet(seed=0)`` (conv 32@3x3 pad 1 -
ReLU - maxpool 2 - conv 64@3x3 pad 1 - ReLU - maxpool 2 - dropout 0.25 - flatten - dense 128 -
ReLU - dropout 0.5 - dense 10), on MNIST-shaped float32 inputs (N, 1, 28, 28) drawn from
N(0, 1), with uniformly random labels 0-9.  The torch ``nn.Sequential`` is built by walking
``model.layers`` (Conv2D -> nn.Conv2d with the same stride, padding and dilation, MaxPool2D ->
nn.MaxPool2d, AvgPool2D -> nn.AvgPool2d, Dense -> nn.Linear, ReLU, Flatten, Dropout(p)) and
copying every weight and bias, so both start from identical parameters.

Agreement check (before any timing; the script stops with an error if it fails): for each
architecture, a fresh pair of identical models in **eval mode** (dropout is the identity, so
both compute the same function) takes one training step on the same batch of 64 with
SGD(lr=0.1, momentum=0.9) and CrossEntropyLoss.  The two losses must agree within 1e-5
relative, every parameter after the step within 1e-4 (largest absolute difference), and the
eval-mode logits of the batch within 1e-4 relative to their largest magnitude.  One Adam step
(lr 1e-3, the timed optimizer) is compared the same way and reported, with only a warning
above 1e-4: Adam's first step moves each weight by about lr * sign(gradient), so a near-zero
gradient whose float32 rounding differs in sign moves a weight by up to 2e-3 apart; it checks
the update rule, the SGD step the gradients.

Timing: both libraries run in this one process on the machine's cores: numba's default thread
count for filtkit's parallel kernels (BLAS calls inside them single-threaded, as ``fit`` does)
and ``torch.set_num_threads(cores)``. A **training step** is, for filtkit, the sequence
``Sequential.fit`` runs for every batch (see ``_fit_loop`` in filtkit/cnn/model.py): under
``filtkit.backends.single_threaded_blas()``, ``model.zero_grad()``, ``out = model._run(x)``,
``loss(out, y)``, ``model._backward(loss.backward(), input_grad=False)`` (no gradient for the
input batch, as torch computes none for a tensor without ``requires_grad``),
``optimizer.step()``; fit's own bookkeeping per batch (finiteness checks, a snapshot of the
weights for divergence recovery, accuracy) is left out and timed on its own in the per-layer
table. For torch it is ``opt.zero_grad(); loss = crit(model(x), y); loss.backward();
opt.step()`` with the model in train mode. Both use Adam(lr=1e-3) and CrossEntropyLoss; dropout
is active in both during training. **Inference** is ``model.forward(x)`` in eval mode for
filtkit (the public path: it checks and converts x first) and ``model(x)`` in eval mode under
``torch.no_grad()`` for torch. Every function is called twice to warm up (Numba
loads its cache, oneDNN builds its primitives), then timed in interleaved rounds (filtkit,
torch, filtkit, torch, ...; 5 rounds, --quick 3), adaptively: about 1.5 s of runs per
function (--quick 0.3 s), at least 5 and at most 40 (--quick: 3 to 6); a function slower
than 0.5 s per call gets 3 runs.  Each block of runs starts with one untimed call, because
the first call after a switch pays for the other library's OpenMP threads still spinning
(torch and numba each load their own libgomp) and for cold caches.  The median is
reported.  The same batch is reused by every call.

Columns of the agreement table:

``arch``, ``optimizer``
    the network and the optimizer of the one step.
``filtkit loss``, ``torch loss``, ``loss rel diff``
    the loss of the step in each and |filtkit - torch| / |torch| (must be <= 1e-5).
``max param diff``
    the largest absolute difference of any parameter after the step (SGD: must be <= 1e-4).
``logits rel diff``
    largest |difference| of the eval-mode logits before the step / largest |torch logit|.

Columns of the throughput table:

``arch``, ``batch``
    the network and the batch size N.
``mode``
    ``train`` (one full training step as above) or ``infer`` (one eval-mode forward pass).
``filtkit ms``, ``torch ms``
    median time per call; ``*`` marks a noisy one (interquartile range above 25 % of it).
``filtkit img/s``, ``torch img/s``
    N / median time.
``ratio``
    filtkit img/s / torch img/s = torch ms / filtkit ms: above 1 means filtkit is faster.
``runs``
    timed calls of filtkit / of torch behind the medians.

Columns of the per-layer tables (filtkit only, train mode, Adam, batch 64; each layer's
``forward`` and ``backward`` timed on its own inside ``single_threaded_blas()``, medians over
the repeats; the layers in the order fit runs them, ``Sequential._plan()``, which swaps
ReLU -> MaxPool2D; the first layer's backward without the input's gradient, as in fit):

``layer``
    index (in ``model.layers``) and repr of the layer; then ``loss`` (CrossEntropyLoss
    forward + backward), ``zero_grad`` and ``optimizer step`` (Adam).
``fwd ms``, ``bwd ms``, ``total ms``
    median forward, backward and their sum.
``share``
    total / the sum of all rows (the whole step, timed piecewise).
The line below the table gives the step timed as a whole (the median from the throughput
run, else a fresh median), torch's whole step for comparison, and fit's extra bookkeeping.

Peak memory: each library, architecture and batch size 256 runs in a fresh process (this
script re-invoked with the hidden ``--memory-child LIB ARCH BATCH`` flag; the filtkit child
never imports torch).  After the imports, the data (batch 256), the model and one warm-up
training step on 2 samples (which loads compiled code and allocates the gradients and Adam's
state), the peak RSS is reset (``/proc/self/clear_refs``) and the current RSS taken as the
baseline; then three training steps at batch 256 run.  Columns of the memory table:

``arch``, ``batch``, ``lib``
    the network, the batch size and the library of that process.
``peak MiB``
    the peak RSS during the three steps (VmHWM, the counter ``resource.getrusage()``'s
    ``ru_maxrss`` reports, read from /proc/self/status because only that one is reset)
    minus the baseline: the memory a training step needs beyond the model, the optimizer
    state and the data, including whatever a library keeps from the previous step while
    it runs the next one.  This is the number the target compares.
``held MiB``
    RSS growth still held after the last step (filtkit's layers keep their inputs and
    masks for ``backward`` until the next forward replaces them).
``baseline RSS MiB``
    the baseline itself (it includes torch's import in the torch process).
``note``
    "baseline uncertain" when the peak reset did not work (an earlier peak then hides the
    steps' peak).

Time to first step: a fresh process runs ``import filtkit.cnn``, builds ``lenet5(seed=0)``
and an Adam optimizer, and trains one step through the public API,
``model.fit(X, y, epochs=1, batch_size=64, shuffle=False, progress=False)`` on 64 samples.
With a warm Numba cache (full run: an empty temporary NUMBA_CACHE_DIR filled by a first run,
then the median of 3 runs; --quick: the default cache, one filling run and one measured run)
the build + first step must take under 1 s (import reported on its own).  The cold run (the
first, on the empty cache dir) gives the compile time: cold minus warm.

The summary ends with PASS/FAIL lines against the project's targets: training throughput
filtkit/torch >= 1.0 for both networks at batch 64 and 256 and >= 0.8 at batch 32, inference
>= 1.0, peak training memory at batch 256 no more than torch's, and build + first training
step with a warm cache under 1 s.
"""

import sys

# first: sets OPENBLAS_NUM_THREADS before numpy is imported and puts this tree on sys.path
from _common import (
    NCORES,
    child_env,
    cpu_busy,
    numba_all_cores,
    progress,
    publish,
    run_description,
    run_json,
    table,
    warn_if_busy,
)
from _common import bench as _bench

# isort: split
import argparse
import datetime
import gc
import json
import resource
import statistics
import tempfile
import textwrap
import time

import numba
import numpy as np

from filtkit import cnn  # this working tree: _common put it first on sys.path
from filtkit.backends import single_threaded_blas

ARCHS = {"lenet5": cnn.lenet5, "convnet": cnn.convnet}
INPUT_SHAPE = (1, 28, 28)
N_CLASSES = 10
LR = 1e-3  # Adam, timed
CHECK_LR, CHECK_MOMENTUM, CHECK_BATCH = 0.1, 0.9, 64  # SGD, agreement check
LOSS_TOL, PARAM_TOL, LOGIT_TOL = 1e-5, 1e-4, 1e-4
BREAKDOWN_BATCH = 64
MEMORY_BATCH = 256
NOISY = 0.25  # interquartile range / median above which a time is starred
# targets: filtkit img/s / torch img/s at least this much
TRAIN_TARGET = {32: 0.8, 64: 1.0, 256: 1.0}
INFER_TARGET = 1.0
FIRST_STEP_TARGET_S = 1.0

torch = None  # imported by import_torch(): the filtkit memory child never loads it
nn = None


def import_torch():
    global torch, nn
    if torch is None:
        import torch as _torch

        torch, nn = _torch, _torch.nn
        torch.set_num_threads(NCORES)
    return torch


class Config:
    """Batch sizes and the timing policy, full or --quick."""

    def __init__(self, quick):
        self.quick = quick
        if quick:
            self.batches = (64,)
            self.target_s, self.min_runs, self.max_runs, self.rounds = 0.3, 3, 6, 3
            self.breakdown_reps, self.warm_starts = 5, 1
        else:
            self.batches = (32, 64, 256)
            self.target_s, self.min_runs, self.max_runs, self.rounds = 1.5, 5, 40, 5
            self.breakdown_reps, self.warm_starts = 15, 3
        self.slow_s, self.slow_runs = 0.5, 3


# ---------------------------------------------------------------------------------------------
# timing


def bench(fns, cfg):
    """Median seconds, spread and run count of each (already warmed up) zero-argument function.

    One probe call per function sets its number of runs; the runs are split into
    ``cfg.rounds`` rounds, interleaved across the functions so that all of them see the same
    machine.  Each function's block of runs in a round starts with one untimed call: torch
    and numba each bring their own OpenMP runtime (two libgomp copies), and the first call
    after a switch pays for the other library's threads still spinning and for cold caches
    (about 25 % of a convnet step when the two strictly alternate).
    """
    return _bench(fns, cfg, rounds=cfg.rounds, keep_probe=False, switch_call=True)


# ---------------------------------------------------------------------------------------------
# the models, the data and one training step of each library


def make_data(batch, seed=0):
    rng = np.random.default_rng(seed + batch)
    x = rng.standard_normal((batch, *INPUT_SHAPE), dtype=np.float32)
    y = rng.integers(0, N_CLASSES, batch).astype(np.int64)
    return x, y


def to_torch(model):
    """An ``nn.Sequential`` doing what the filtkit ``model`` does, with copied weights."""
    import_torch()
    dtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[
        np.dtype(model.dtype)]
    mods = []
    for layer in model.layers:
        if isinstance(layer, cnn.Conv2D):
            pad = layer.padding if isinstance(layer.padding, str) else tuple(layer.padding)
            m = nn.Conv2d(layer.in_channels, layer.out_channels, tuple(layer.kernel_size),
                          stride=tuple(layer.stride), padding=pad,
                          dilation=tuple(layer.dilation), bias=layer.bias is not None)
        elif isinstance(layer, cnn.Dense):
            m = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
        elif isinstance(layer, cnn.MaxPool2D):
            m = nn.MaxPool2d(tuple(layer.kernel_size), stride=tuple(layer.stride),
                             padding=tuple(layer.padding))
        elif isinstance(layer, cnn.AvgPool2D):
            m = nn.AvgPool2d(tuple(layer.kernel_size), stride=tuple(layer.stride),
                             padding=tuple(layer.padding))
        elif isinstance(layer, cnn.ReLU):
            m = nn.ReLU()
        elif isinstance(layer, cnn.Flatten):
            m = nn.Flatten()
        elif isinstance(layer, cnn.Dropout):
            m = nn.Dropout(layer.p)
        else:
            sys.exit(f"bench_cnn: no torch equivalent mapped for {layer!r}")
        m = m.to(dtype)
        if isinstance(layer, (cnn.Conv2D, cnn.Dense)):
            with torch.no_grad():
                m.weight.copy_(torch.from_numpy(layer.weight.data))
                if layer.bias is not None:
                    m.bias.copy_(torch.from_numpy(layer.bias.data))
        mods.append(m)
    return nn.Sequential(*mods)


class FiltkitRunner:
    """One filtkit model with its optimizer and loss; ``step`` is fit's per-batch work."""

    def __init__(self, arch, optimizer="adam"):
        self.model = ARCHS[arch](seed=0)
        params = self.model.parameters()
        if optimizer == "adam":
            self.opt = cnn.Adam(params, lr=LR)
        else:
            self.opt = cnn.SGD(params, lr=CHECK_LR, momentum=CHECK_MOMENTUM)
        self.loss = cnn.CrossEntropyLoss()

    def step(self, x, y):
        model, loss = self.model, self.loss
        with single_threaded_blas():
            model.zero_grad()
            out = model._run(x)
            value = loss(out, y)
            model._backward(loss.backward(), input_grad=False)  # as fit() does
            self.opt.step()
        return value

    def infer(self, x):
        return self.model.forward(x)

    def params(self):
        return [p.data for p in self.model.parameters()]


class TorchRunner:
    """The torch twin of a filtkit model, with the same optimizer and loss."""

    def __init__(self, fk_model, optimizer="adam"):
        import_torch()
        self.model = to_torch(fk_model)
        if optimizer == "adam":
            self.opt = torch.optim.Adam(self.model.parameters(), lr=LR)
        else:
            self.opt = torch.optim.SGD(self.model.parameters(), lr=CHECK_LR,
                                       momentum=CHECK_MOMENTUM)
        self.crit = nn.CrossEntropyLoss()

    def step(self, x, y):
        self.opt.zero_grad()
        loss = self.crit(self.model(x), y)
        loss.backward()
        self.opt.step()
        return loss

    def infer(self, x):
        with torch.no_grad():
            return self.model(x)

    def params(self):
        return [p.detach().numpy() for p in self.model.parameters()]


def torch_data(x, y):
    import_torch()
    return torch.from_numpy(x), torch.from_numpy(y)


# ---------------------------------------------------------------------------------------------
# agreement check


def _param_diff(a, b):
    if len(a) != len(b):
        return float("inf")
    worst = 0.0
    for p, q in zip(a, b, strict=True):
        if p.shape != q.shape:
            return float("inf")
        worst = max(worst, float(np.max(np.abs(p.astype(np.float64) - q))))
    return worst


def check_agreement(arch):
    """One eval-mode step with SGD (and one with Adam) in both; exit if they differ."""
    x, y = make_data(CHECK_BATCH, seed=1)
    xt, yt = torch_data(x, y)
    out = {"arch": arch}
    for opt in ("sgd", "adam"):
        fk = FiltkitRunner(arch, opt)
        tk = TorchRunner(fk.model, opt)
        fk.model.eval()
        tk.model.eval()
        start = _param_diff(fk.params(), tk.params())
        if start != 0.0:
            sys.exit(f"RESULTS DISAGREE: {arch}: the copied torch weights differ by {start:g}")
        if opt == "sgd":
            fl = fk.model.forward(x).astype(np.float64)
            tl = tk.infer(xt).numpy()
            out["logits"] = float(np.max(np.abs(fl - tl))) / float(np.max(np.abs(tl)))
        f_loss = float(fk.step(x, y))
        t_loss = float(tk.step(xt, yt).item())
        out[f"{opt}_loss"] = (f_loss, t_loss, abs(f_loss - t_loss) / abs(t_loss))
        out[f"{opt}_param"] = _param_diff(fk.params(), tk.params())
    label = f"{arch}, eval mode (dropout off), batch {CHECK_BATCH}"
    problems = []
    if not out["logits"] <= LOGIT_TOL:  # also catches NaN
        problems.append(f"logits differ by {out['logits']:.3g} relative > {LOGIT_TOL:g}")
    for opt in ("sgd", "adam"):
        f_loss, t_loss, rel = out[f"{opt}_loss"]
        if not rel <= LOSS_TOL:
            problems.append(f"{opt} step: loss {f_loss!r} vs torch {t_loss!r}, relative "
                            f"difference {rel:.3g} > {LOSS_TOL:g}")
    if not out["sgd_param"] <= PARAM_TOL:
        problems.append(f"sgd step: parameters differ by up to {out['sgd_param']:.3g} "
                        f"> {PARAM_TOL:g} after one step")
    out["adam_warning"] = not out["adam_param"] <= PARAM_TOL
    if out["adam_warning"]:  # informational: see the module docstring
        progress(f"WARNING: {label}: after one Adam step the parameters differ by up to "
                 f"{out['adam_param']:.3g} > {PARAM_TOL:g} (a near-zero gradient whose sign "
                 "differs moves a weight by up to lr in opposite directions)")
    if problems:
        sys.exit(f"RESULTS DISAGREE: {label}: " + "; ".join(problems)
                 + "; the timings would not compare equal work")
    return out


# ---------------------------------------------------------------------------------------------
# throughput


def throughput(arch, cfg, rows, facts):
    fk = FiltkitRunner(arch)
    tk = TorchRunner(fk.model)
    for batch in cfg.batches:
        x, y = make_data(batch)
        xt, yt = torch_data(x, y)
        for mode in ("train", "infer"):
            progress(f"  {arch} batch {batch} {mode}")
            fk.model.train(mode == "train")
            tk.model.train(mode == "train")
            if mode == "train":
                fns = {"filtkit": lambda x=x, y=y: fk.step(x, y),
                       "torch": lambda xt=xt, yt=yt: tk.step(xt, yt)}
            else:
                fns = {"filtkit": lambda x=x: fk.infer(x), "torch": lambda xt=xt: tk.infer(xt)}
            for f in fns.values():  # warm-up
                f()
                f()
            t = bench(fns, cfg)
            (f_s, f_sp, f_n), (t_s, t_sp, t_n) = t["filtkit"], t["torch"]
            ratio = t_s / f_s
            facts[(arch, batch, mode)] = {"filtkit": f_s, "torch": t_s, "ratio": ratio}
            rows.append([arch, batch, mode,
                         f"{f_s * 1e3:.2f}{' *' if f_sp > NOISY else ''}",
                         f"{t_s * 1e3:.2f}{' *' if t_sp > NOISY else ''}",
                         f"{batch / f_s:,.0f}", f"{batch / t_s:,.0f}", f"{ratio:.2f}",
                         f"{f_n}/{t_n}"])


# ---------------------------------------------------------------------------------------------
# per-layer breakdown


def _fit_bookkeeping(model, out, y):
    """What ``_fit_loop`` does per batch beyond the step: finiteness checks of the output
    and the gradients, a snapshot of weights and optimizer state, the accuracy count."""
    bool(np.isfinite(out).all())
    all(np.isfinite(p.grad).all() for p in model.parameters())
    model._snapshot()
    int((out.argmax(axis=1) == y).sum())


def breakdown(arch, cfg, facts):
    fk = FiltkitRunner(arch)
    model, loss, opt = fk.model, fk.loss, fk.opt
    model.train()
    x, y = make_data(BREAKDOWN_BATCH)
    plan = model._plan()  # the order fit runs them in (ReLU -> MaxPool2D swapped)
    n = len(plan)
    fwd = [[] for _ in range(n)]
    bwd = [[] for _ in range(n)]
    extra = {"loss": [], "zero_grad": [], "optimizer step": [], "fit bookkeeping": []}
    clock = time.perf_counter
    gc.disable()
    try:
        for rep in range(cfg.breakdown_reps + 2):  # the first two are warm-up
            keep = rep >= 2
            with single_threaded_blas():
                t0 = clock()
                model.zero_grad()
                t_zero = clock() - t0
                h = x
                tf = []
                for layer in plan:
                    t0 = clock()
                    h = layer.forward(h)
                    tf.append(clock() - t0)
                t0 = clock()
                loss(h, y)
                dy = loss.backward()
                t_loss = clock() - t0
                tb = [0.0] * n
                for i in reversed(range(n)):
                    t0 = clock()
                    if i == 0 and isinstance(plan[0], cnn.Conv2D):  # fit skips dx
                        dy = plan[0].backward(dy, input_grad=False)
                    else:
                        dy = plan[i].backward(dy)
                    tb[i] = clock() - t0
                t0 = clock()
                opt.step()
                t_opt = clock() - t0
            t0 = clock()
            try:
                _fit_bookkeeping(model, h, y)
                t_fit = clock() - t0
            except AttributeError:  # a private helper moved: report it as unknown
                t_fit = float("nan")
            if keep:
                for i in range(n):
                    fwd[i].append(tf[i])
                    bwd[i].append(tb[i])
                extra["loss"].append(t_loss)
                extra["zero_grad"].append(t_zero)
                extra["optimizer step"].append(t_opt)
                extra["fit bookkeeping"].append(t_fit)
    finally:
        gc.enable()
    med = statistics.median
    parts = []
    for i, layer in enumerate(plan):
        r = repr(layer)
        number = next(j for j, m in enumerate(model.layers) if m is layer)
        parts.append((f"{number}: {r if len(r) <= 44 else r[:41] + '...'}", med(fwd[i]),
                      med(bwd[i])))
    parts += [("loss (CrossEntropyLoss)", med(extra["loss"]), 0.0),
              ("zero_grad", med(extra["zero_grad"]), 0.0),
              ("optimizer step (Adam)", med(extra["optimizer step"]), 0.0)]
    total = sum(f + b for _, f, b in parts)
    rows = []
    for name, f, b in parts:
        is_layer = name[0].isdigit()
        rows.append([name, f"{f * 1e3:.3f}", f"{b * 1e3:.3f}" if is_layer else "-",
                     f"{(f + b) * 1e3:.3f}", f"{100 * (f + b) / total:.1f}%"])
    fwd_total = sum(f for name, f, _ in parts if name[0].isdigit())
    bwd_total = sum(b for _, _, b in parts)
    rows.append(["sum (the step, timed piecewise)", f"{fwd_total * 1e3:.3f}",
                 f"{bwd_total * 1e3:.3f}", f"{total * 1e3:.3f}", "100.0%"])
    whole = facts.get((arch, BREAKDOWN_BATCH, "train"))
    if whole is None:  # the throughput run did not cover this batch size: time the step
        tk = TorchRunner(ARCHS[arch](seed=0))
        tk.model.train()
        xt, yt = torch_data(x, y)
        fns = {"filtkit": lambda: fk.step(x, y), "torch": lambda: tk.step(xt, yt)}
        for f in fns.values():
            f()
        t = bench(fns, cfg)
        whole = {"filtkit": t["filtkit"][0], "torch": t["torch"][0]}
    fit_ms = med(extra["fit bookkeeping"]) * 1e3
    note = (f"whole step timed at once: filtkit {whole['filtkit'] * 1e3:.2f} ms, torch "
            f"{whole['torch'] * 1e3:.2f} ms; fit()'s bookkeeping per batch (not in the step): "
            f"{fit_ms:.3f} ms ({100 * fit_ms / (whole['filtkit'] * 1e3):.1f}% of the step)")
    top = sorted(((f + b, name) for name, f, b in parts), reverse=True)[:3]
    facts[("breakdown", arch)] = {"total": total, "top": top}
    return rows, note


# ---------------------------------------------------------------------------------------------
# peak memory in a fresh process


def _rss_bytes():
    """(current, peak) resident bytes: VmRSS and VmHWM, else ru_maxrss for both."""
    try:
        with open("/proc/self/status") as fh:
            kb = dict(line.split(":", 1) for line in fh if line.startswith(("VmRSS", "VmHWM")))
        return int(kb["VmRSS"].split()[0]) * 1024, int(kb["VmHWM"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return peak, peak


def memory_child(lib, arch, batch):
    """Run in a fresh process: peak RSS growth of training steps at ``batch``."""
    x, y = make_data(batch)
    xw, yw = make_data(2)
    if lib == "filtkit":
        r = FiltkitRunner(arch)
    else:
        r = TorchRunner(ARCHS[arch](seed=0))
        x, y = torch_data(x, y)
        xw, yw = torch_data(xw, yw)
    r.model.train()
    r.step(xw, yw)  # loads compiled code / builds primitives; allocates grads, Adam state
    gc.collect()
    # Reset the peak RSS (Linux >= 4.0) so that the peak measures the steps only.  The peak
    # is read from VmHWM: the counter that ru_maxrss reports, except that ru_maxrss also keeps
    # the high-water mark of every exited thread's moment of exit, which no reset clears.
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        reset = True
    except OSError:
        reset = False
    base, maxrss_before = _rss_bytes()
    for _ in range(3):
        r.step(x, y)
    after, peak = _rss_bytes()
    print(json.dumps(dict(lib=lib, arch=arch, batch=batch, base=base, peak=peak, after=after,
                          reset=reset, maxrss_before=maxrss_before)))


def measure_memory(arch, batch):
    out = {}
    for lib in ("filtkit", "torch"):
        m = run_json([__file__, "--memory-child", lib, arch, str(batch)],
                     f"memory measurement ({lib} {arch})", 300)
        m["growth"] = m["peak"] - m["base"]
        m["held"] = m["after"] - m["base"]
        # an earlier peak that the reset did not clear would hide the steps' peak
        m["caveat"] = (not m["reset"]) or m["maxrss_before"] > m["base"] + 2**20
        out[lib] = m
    return out


# ---------------------------------------------------------------------------------------------
# time to the first training step in a fresh process

_FIRST_STEP_SNIPPET = r"""
import json, time
t0 = time.perf_counter()
import numpy as np
import filtkit.cnn as cnn
t1 = time.perf_counter()
model = cnn.lenet5(seed=0)
opt = cnn.Adam(model.parameters(), lr=1e-3)
t2 = time.perf_counter()
rng = np.random.default_rng(0)
X = rng.standard_normal((64, 1, 28, 28), dtype=np.float32)
y = rng.integers(0, 10, 64)
t3 = time.perf_counter()
model.fit(X, y, epochs=1, batch_size=64, optimizer=opt, shuffle=False, progress=False)
t4 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "build": t2 - t1, "step": t4 - t3}))
"""


def measure_first_step(cfg):
    def once(cache_dir):
        env = child_env() if cache_dir is None else child_env(NUMBA_CACHE_DIR=cache_dir)
        return run_json(["-c", _FIRST_STEP_SNIPPET], "first-step measurement", 600, env=env)

    if cfg.quick:  # the default cache: fill it (usually already warm), then measure once
        once(None)
        return {"cold": None, "warm": once(None), "runs": 1}
    with tempfile.TemporaryDirectory(prefix="bench_cnn_numba_") as cache:
        cold = once(cache)
        warm = [once(cache) for _ in range(cfg.warm_starts)]
    med = {k: statistics.median(r[k] for r in warm) for k in warm[0]}
    return {"cold": cold, "warm": med, "runs": len(warm)}


# ---------------------------------------------------------------------------------------------
# machine description


def torch_backend():
    """torch's parallel backend and BLAS, from its build information."""
    info = torch.__config__.parallel_info().splitlines()
    backend = next((line.split(":", 1)[1].strip() for line in info
                    if "parallel backend" in line), "unknown")
    mkldnn = "oneDNN on" if torch.backends.mkldnn.is_available() else "no oneDNN"
    return f"ATen {backend}, {mkldnn}"


# ---------------------------------------------------------------------------------------------
# report


def check_table(checks):
    rows = []
    for c in checks:
        for opt in ("sgd", "adam"):
            f_loss, t_loss, rel = c[f"{opt}_loss"]
            rows.append([c["arch"], "SGD(0.1, momentum 0.9)" if opt == "sgd" else "Adam(1e-3)",
                         f"{f_loss:.6f}", f"{t_loss:.6f}", f"{rel:.1e}",
                         f"{c[f'{opt}_param']:.1e}"
                         + (" (above 1e-4)" if opt == "adam" and c["adam_warning"] else ""),
                         f"{c['logits']:.1e}" if opt == "sgd" else "-"])
    return table(["arch", "optimizer", "filtkit loss", "torch loss", "loss rel diff",
                  "max param diff", "logits rel diff"], rows)


def memory_table(mems):
    mib = 2**20
    rows = []
    for arch, m in mems.items():
        for lib in ("filtkit", "torch"):
            r = m[lib]
            rows.append([arch, MEMORY_BATCH, lib, f"{r['growth'] / mib:.1f}",
                         f"{r['held'] / mib:.1f}", f"{r['base'] / mib:.0f}",
                         "baseline uncertain" if r["caveat"] else ""])
    return table(["arch", "batch", "lib", "peak MiB", "held MiB", "baseline RSS MiB", "note"],
                 rows)


def summary(cfg, facts, mems, first):
    lines = []

    def verdict(ok, text):
        tag = "n/a " if ok is None else ("PASS" if ok else "FAIL")
        lines.append(f"[{tag}] {text}")

    for mode, what in (("train", "training"), ("infer", "inference")):
        for arch in ARCHS:
            for batch in (32, 64, 256):
                target = TRAIN_TARGET[batch] if mode == "train" else INFER_TARGET
                f = facts.get((arch, batch, mode))
                if f is None:
                    verdict(None, f"{what} {arch} batch {batch}: not run (--quick)")
                    continue
                verdict(f["ratio"] >= target,
                        f"{what} {arch} batch {batch}: filtkit {batch / f['filtkit']:,.0f} "
                        f"img/s, torch {batch / f['torch']:,.0f} img/s, ratio "
                        f"{f['ratio']:.2f} (target >= {target})")
    mib = 2**20
    for arch, m in mems.items():
        fg, tg = m["filtkit"]["growth"], m["torch"]["growth"]
        verdict(fg <= tg, f"peak memory of a training step, {arch} batch {MEMORY_BATCH}: "
                          f"filtkit {fg / mib:.1f} MiB, torch {tg / mib:.1f} MiB "
                          f"({fg / max(tg, 1):.2f} x; target <= 1 x)")
    w, c = first["warm"], first["cold"]
    ws = w["build"] + w["step"]
    how = (f"median of {first['runs']} fresh processes" if first["runs"] > 1
           else "one fresh process")
    verdict(ws < FIRST_STEP_TARGET_S,
            f"build lenet5 + first training step (fit, batch 64) with a warm Numba cache: "
            f"{ws:.3f} s (build {w['build'] * 1e3:.1f} ms, step {w['step']:.3f} s; "
            f"{how}; target < {FIRST_STEP_TARGET_S:g} s); `import filtkit.cnn` "
            f"{w['import']:.2f} s on top")
    if c is not None:
        cs = c["build"] + c["step"]
        lines.append(f"[info] cold Numba cache (empty NUMBA_CACHE_DIR): import "
                     f"{c['import']:.2f} s, build + first step {cs:.2f} s; compile time "
                     f"(cold - warm) {cs - ws + c['import'] - w['import']:.1f} s")
    else:
        lines.append("[info] cold-cache compile time: not measured (--quick)")
    for arch in ARCHS:
        b = facts.get(("breakdown", arch))
        if b:
            top = ", ".join(f"{name.split(':')[0]}:{name.split(':')[1].split('(')[0].strip()} "
                            f"{100 * t / b['total']:.0f}%" if name[0].isdigit()
                            else f"{name} {100 * t / b['total']:.0f}%" for t, name in b["top"])
            lines.append(f"[info] {arch} batch {BREAKDOWN_BATCH}: largest shares of filtkit's "
                         f"step: {top}")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run (< 60 s): batch 64 only; does not write RESULTS.md")
    parser.add_argument("--memory-child", nargs=3, metavar=("LIB", "ARCH", "BATCH"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        lib, arch, batch = args.memory_child
        if lib not in ("filtkit", "torch") or arch not in ARCHS:
            parser.error(f"bad --memory-child {args.memory_child}")
        memory_child(lib, arch, int(batch))
        return
    cfg = Config(args.quick)
    t_start = time.perf_counter()
    started = datetime.datetime.now().astimezone()

    busy_before = warn_if_busy()
    import_torch()
    numba_all_cores()

    progress("agreement check ...")
    checks = [check_agreement(arch) for arch in ARCHS]
    progress("throughput ...")
    rows, facts = [], {}
    for arch in ARCHS:
        throughput(arch, cfg, rows, facts)
    progress("per-layer breakdown ...")
    breakdowns = {arch: breakdown(arch, cfg, facts) for arch in ARCHS}
    progress("peak memory (fresh processes) ...")
    mems = {arch: measure_memory(arch, MEMORY_BATCH) for arch in ARCHS}
    progress("time to first step (fresh processes) ...")
    first = measure_first_step(cfg)
    busy_after = cpu_busy()
    elapsed = time.perf_counter() - t_start

    description = run_description(started, elapsed, {"torch": torch.__version__})
    reductions = ("quick smoke run: batch 64 only, few repeats, warm-cache start-up only"
                  if cfg.quick else "none")
    head = "\n".join([
        "## bench_cnn: filtkit.cnn vs PyTorch (CPU), LeNet-5 and convnet on 1x28x28 float32", "",
        description, textwrap.dedent(f"""\
        - Threads: numba {numba.get_num_threads()} ({numba.threading_layer()} layer; BLAS \
single-threaded inside filtkit's steps), torch {torch.get_num_threads()} intra-op / \
{torch.get_num_interop_threads()} inter-op ({torch_backend()})
        - CPU busy before / after: {100 * busy_before:.0f}% / {100 * busy_after:.0f}% \
(other load makes the timings unreliable)
        - Reductions: {reductions}
        - Training step: zero_grad, forward, CrossEntropyLoss, backward, Adam(lr=1e-3) step, \
train mode (dropout on); filtkit runs fit()'s per-batch sequence. Inference: eval-mode forward \
(torch under no_grad). Data N(0, 1) float32, random labels. Medians of interleaved runs \
after warm-up; ratio = filtkit img/s / torch img/s (above 1 = filtkit faster); `*` = noisy; \
runs = filtkit/torch timed calls. See the docstring of benchmarks/bench_cnn.py for the columns.
        """)])
    parts = [head, "### Agreement check (one step, eval mode so dropout is off in both)", "",
             check_table(checks), "", "### Throughput", "",
             table(["arch", "batch", "mode", "filtkit ms", "torch ms", "filtkit img/s",
                    "torch img/s", "ratio", "runs"], rows), ""]
    for arch, (brows, note) in breakdowns.items():
        parts += [f"### filtkit per layer: {arch}, training step, batch {BREAKDOWN_BATCH}", "",
                  table(["layer", "fwd ms", "bwd ms", "total ms", "share"], brows), "",
                  note, ""]
    parts += [f"### Peak memory of training steps, batch {MEMORY_BATCH} (fresh process each)",
              "", memory_table(mems), "",
              "peak = peak RSS (VmHWM = ru_maxrss, reset first) during 3 training steps minus the "
              "RSS after imports, data, model "
              "and one warm-up step on 2 samples (peak reset before the steps); held = RSS "
              "growth still held after the steps.", ""]
    publish("bench_cnn", parts, summary(cfg, facts, mems, first), elapsed, cfg.quick,
            per_blas=True)


if __name__ == "__main__":
    main()
