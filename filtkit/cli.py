"""The ``filtkit`` command line.

``filtkit demo``     filter scikit-image's sample photos with every filter,
                     compare with scikit-image, write a gallery PNG.
``filtkit filter``   filter one image file into another, or every file matching a
                     pattern into a folder, in parallel on Dask.
``filtkit kernels``  list the named kernels and image filters.
``filtkit train``    train a CNN on IDX files (MNIST format) or the embedded digits.
``filtkit evaluate`` accuracy of a saved model on IDX files.
``filtkit predict``  classify image files with a saved model.

Every failure (missing or unreadable file, unknown filter, bad parameter)
prints one line to stderr and exits with status 2, leaving no output file.
A batch reports each file it could not filter on its own line, filters the
rest, and exits with status 1.
"""

import argparse
import glob
import inspect
import logging
import os
import re
import sys

import numpy as np

from . import __version__

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors in one line and exits 2."""

    def error(self, message):
        raise _UsageError(message)


class _UsageError(Exception):
    pass


class _BatchError(Exception):
    """Some files of a batch failed (each already reported); exit status 1."""


# options passed on, under the same names, to the filter functions that take them
_OPTIONS = ("sigma", "mode", "cval", "truncate", "size", "radius", "amount", "low_sigma",
            "high_sigma")


def _build_parser():
    parser = _Parser(prog="filtkit", description="Numba-JIT image filtering.")
    parser.add_argument("--version", action="version", version=f"filtkit {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    demo = sub.add_parser("demo", help="filter sample photos and compare with scikit-image")
    demo.add_argument("--out", default="filtkit-demo", help="output folder (default: %(default)s)")

    filt = sub.add_parser("filter", help="filter one image file, or a pattern of them on Dask")
    filt.add_argument("input", help="input image (PNG, JPEG, TIFF, ...), or a quoted pattern "
                                    "such as 'in/*.png' to filter many files in parallel")
    filt.add_argument("output", help="output image, written atomically; for a pattern, the "
                                     "output folder (same file names)")
    filt.add_argument("--filter", required=True, dest="name",
                      help="image filter name, or 'correlate'/'convolve' with --kernel")
    filt.add_argument("--kernel",
                      help="named kernel for correlate/convolve (see `filtkit kernels`)")
    filt.add_argument("--sigma", type=float)
    filt.add_argument("--mode",
                      help="boundary mode: constant, zero, reflect, mirror, nearest, wrap")
    filt.add_argument("--cval", type=float)
    filt.add_argument("--truncate", type=float)
    filt.add_argument("--size", type=int)
    filt.add_argument("--radius", type=float)
    filt.add_argument("--amount", type=float)
    filt.add_argument("--low-sigma", type=float)
    filt.add_argument("--high-sigma", type=float)
    filt.add_argument("--rescale", action="store_true",
                      help="stretch the result to [0, 1] before writing (default: clip)")
    filt.add_argument("--scheduler", metavar="ADDRESS",
                      help="with a pattern: the dask.distributed scheduler to run on")
    filt.add_argument("--workers", type=int,
                      help="with a pattern: worker processes of the local Dask cluster "
                           "(default: one per core)")

    sub.add_parser("kernels", help="list the named kernels and image filters")

    train = sub.add_parser("train", help="train a CNN (MNIST-format IDX files, or the "
                                         "embedded 8x8 digits when no paths are given)")
    train.add_argument("--images", help="IDX images file (gzip or raw)")
    train.add_argument("--labels", help="IDX labels file (gzip or raw)")
    train.add_argument("--arch", choices=("lenet5", "convnet"), default="convnet")
    train.add_argument("--epochs", type=int, default=20)
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--optimizer", choices=("sgd", "adam"), default="adam")
    train.add_argument("--lr", type=float, default=None,
                       help="learning rate (default 1e-3 for adam, 0.05 for sgd)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--val-fraction", type=float, default=0.1,
                       help="share of the images held out for validation (default 0.1)")
    train.add_argument("--no-augment", action="store_true",
                       help="train without random shifts of up to 2 pixels")
    train.add_argument("--out", required=True, help="model file to write (.npz)")

    ev = sub.add_parser("evaluate", help="accuracy of a saved model on IDX files")
    ev.add_argument("model", help="model file written by `filtkit train`")
    ev.add_argument("--images", required=True)
    ev.add_argument("--labels", required=True)

    pr = sub.add_parser("predict", help="classify image files with a saved model")
    pr.add_argument("model", help="model file written by `filtkit train`")
    pr.add_argument("images", nargs="+", help="image files (grey or colour)")
    return parser


def _filter_plan(name, kernel_name, given):
    """Resolve ``--filter``, ``--kernel`` and the options to ``(fn, kernel, kwargs)``."""
    from .signal import convolve, correlate
    from .signal.filters import FILTERS
    from .signal.kernels import NAMED

    linear = {"correlate": correlate, "convolve": convolve}
    if name not in FILTERS and name not in linear:
        names = ", ".join(sorted(FILTERS) + sorted(linear))
        raise ValueError(f"`--filter` must be one of {names}; got {name!r}")
    given = dict(given)
    if name in linear:
        if kernel_name not in NAMED:
            raise ValueError(
                f"`--kernel` must be one of {', '.join(NAMED)} for --filter {name}; "
                f"got {kernel_name!r}"
            )
        factory, defaults = NAMED[kernel_name]
        params = dict(defaults)
        if "sigma" in params and "sigma" in given:
            params["sigma"] = given.pop("sigma")
        kernel = factory(**params)
        allowed = {"mode", "cval"}
        fn = linear[name]
        kwargs = {"boundary" if k == "mode" else k: v for k, v in given.items()}
    else:
        if kernel_name is not None:
            raise ValueError("`--kernel` only applies to --filter correlate or convolve")
        fn = FILTERS[name]
        allowed = set(inspect.signature(fn).parameters)
        kernel = None
        kwargs = given
    extra = sorted(k for k in given if k not in allowed)
    if extra:
        raise ValueError(
            f"`--{extra[0].replace('_', '-')}` does not apply to filter {name!r}"
        )
    if name == "difference_of_gaussians" and "low_sigma" not in kwargs:
        raise ValueError("`--low-sigma` is required for --filter difference_of_gaussians")
    return fn, kernel, kwargs


def _filter_file(input, output, plan, rescale):
    """Read ``input``, filter it, write ``output`` atomically."""
    from .io import imread, imwrite

    fn, kernel, kwargs = plan
    image = imread(input)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] > 4):
        raise ValueError(
            f"`input` must hold one grey or colour image, got pixel array of shape {image.shape} "
            f"(an animation or a volume?)"
        )
    if os.path.exists(output) and os.path.samefile(input, output):
        raise ValueError("`output` must differ from `input`; refusing to overwrite the input")
    result = _apply(image, fn, kernel, kwargs)
    if rescale:  # stretch the colour channels, leave alpha alone
        colour = result[..., : _colour_channels(result)] if result.ndim == 3 else result
        lo, hi = float(np.min(colour)), float(np.max(colour))
        colour[...] = (colour - lo) / (hi - lo) if hi > lo else 0.0
    imwrite(output, result)


def _run_filter(args):
    given = {k: getattr(args, k) for k in _OPTIONS if getattr(args, k) is not None}
    plan = _filter_plan(args.name, args.kernel, given)
    if glob.has_magic(args.input):
        _run_filter_batch(args, given)
        return
    if args.scheduler is not None or args.workers is not None:
        raise _UsageError("--scheduler and --workers apply to a pattern of input files, "
                          "such as 'in/*.png'")
    _filter_file(args.input, args.output, plan, args.rescale)
    print(args.output)


def _filter_task(input, output, name, kernel_name, given, rescale):
    """One file of a batch, on a Dask worker: ``None`` or the reason it failed."""
    from .distributed import _one_numba_thread

    try:
        with _one_numba_thread():  # the workers are the parallelism
            _filter_file(input, output, _filter_plan(name, kernel_name, given), rescale)
    except Exception as exc:  # reported per file; the batch goes on
        return " ".join(str(exc).split()) or type(exc).__name__
    return None


def _batch_paths(pattern, outdir):
    """The (input, output) pairs of a batch, checked before any work starts."""
    inputs = sorted(p for p in glob.glob(pattern) if os.path.isfile(p))
    if not inputs:
        raise _UsageError(f"no files match {pattern!r}")
    if os.path.exists(outdir) and not os.path.isdir(outdir):
        raise _UsageError(f"`output` must be a folder for a pattern of inputs, got the file "
                          f"{outdir!r}")
    pairs, seen = [], {}
    for path in inputs:
        out = os.path.join(outdir, os.path.basename(path))
        if out in seen:
            raise _UsageError(f"{seen[out]!r} and {path!r} would both be written to {out!r}")
        seen[out] = path
        if os.path.exists(out) and any(os.path.samefile(out, p) for p in inputs):
            raise _UsageError(f"`output` {outdir!r} would overwrite the input {out!r}; "
                              f"choose another folder")
        pairs.append((path, out))
    return pairs


def _run_filter_batch(args, given):
    from tqdm import tqdm

    if args.scheduler is not None and args.workers is not None:
        raise _UsageError("give --scheduler or --workers, not both")
    if args.workers is not None and args.workers < 1:
        raise _UsageError(f"--workers must be a positive integer, got {args.workers}")
    pairs = _batch_paths(args.input, args.output)
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError as exc:
        raise _UsageError(f"a pattern of inputs runs on Dask, which is not installed "
                          f"(pip install 'filtkit[dask]'): {exc}") from None
    if args.scheduler is not None:
        cluster, client = None, Client(args.scheduler, timeout="10s")
    else:
        cluster = LocalCluster(n_workers=args.workers or os.cpu_count() or 1,
                               threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.ERROR)
        client = Client(cluster)
    failed = []
    try:
        os.makedirs(args.output, exist_ok=True)  # once the cluster answers
        futures = {client.submit(_filter_task, i, o, args.name, args.kernel, given,
                                 args.rescale, pure=False): (i, o) for i, o in pairs}
        for future in tqdm(as_completed(futures), total=len(futures), unit="file",
                           desc="filtering", file=sys.stderr):
            path, out = futures[future]
            reason = future.result()
            if reason is None:
                print(out)
            else:
                failed.append(path)
                tqdm.write(f"filtkit: skipped {path}: {reason}", file=sys.stderr)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    if failed:
        raise _BatchError(f"{len(failed)} of {len(pairs)} files could not be filtered")


def _colour_channels(image):
    """Channels of an (H, W, C) image that hold colour: all but an alpha channel."""
    return image.shape[2] - 1 if image.shape[2] in (2, 4) else image.shape[2]


def _apply(image, fn, kernel, kwargs):
    """Filter a grey or colour image; alpha channels are kept as they are."""
    def call(x, **extra):
        return fn(x, kernel, **kwargs, **extra) if kernel is not None else fn(x, **kwargs, **extra)

    if image.ndim == 2:
        return call(image)
    colour = _colour_channels(image)
    out = np.array(image, dtype=np.result_type(image.dtype, np.float32))
    takes_channels = kernel is not None or "channel_axis" in inspect.signature(fn).parameters
    if takes_channels:
        out[..., :colour] = call(np.ascontiguousarray(image[..., :colour]), channel_axis=-1)
    else:
        for c in range(colour):
            out[..., c] = call(np.ascontiguousarray(image[..., c]))
    return out


def _summary(fn):
    """First docstring line without reST markup, for listings."""
    first = (fn.__doc__ or "").strip().splitlines()[0]
    return re.sub(r":\w+:`~?([^`]+)`", r"\1", first).replace("``", "")


def _run_kernels(_args):
    from .signal.filters import FILTERS
    from .signal.kernels import NAMED

    print("kernels (filtkit filter IN OUT --filter convolve --kernel NAME):")
    for name, (factory, params) in NAMED.items():
        k = factory(**params)
        print(f"  {name:<10} {k.shape[0]}x{k.shape[1]}  {_summary(factory)}")
    print("filters (filtkit filter IN OUT --filter NAME):")
    for name, fn in FILTERS.items():
        print(f"  {name:<24} {_summary(fn)}")


def _load_labelled(images, labels):
    from .cnn import data

    if (images is None) != (labels is None):
        raise _UsageError("give both --images and --labels, or neither")
    if images is None:
        return data.load_digits(), "embedded 8x8 digits (scikit-learn)"
    return data.load_mnist(images, labels), images


def _run_train(args):
    import time

    from . import cnn
    from .cnn import data, plots

    if args.epochs < 1 or args.batch_size < 1:
        raise _UsageError("--epochs and --batch-size must be positive integers")
    out = args.out if args.out.endswith(".npz") else args.out + ".npz"
    if not os.path.isdir(os.path.dirname(os.path.abspath(out))):
        raise _UsageError(f"the folder of --out {out!r} does not exist")
    (X, y), source = _load_labelled(args.images, args.labels)
    Xtr, ytr, Xval, yval = data.train_val_split(X, y, val_fraction=args.val_fraction,
                                               seed=args.seed)
    model = cnn.ARCHITECTURES[args.arch](in_channels=X.shape[1], input_size=X.shape[2],
                                         num_classes=int(y.max()) + 1, seed=args.seed)
    lr = args.lr if args.lr is not None else (1e-3 if args.optimizer == "adam" else 0.05)
    if args.optimizer == "adam":
        opt = cnn.Adam(model.parameters(), lr)
    else:
        opt = cnn.SGD(model.parameters(), lr, momentum=0.9)
    augment = None if args.no_augment else (
        lambda xb, rng: data.random_shift(xb, max_shift=2, seed=rng))
    print(f"training {args.arch} on {len(Xtr)} images from {source} "
          f"({len(Xval)} held out), {args.epochs} epochs, {args.optimizer} lr={lr}")
    t0 = time.perf_counter()
    history = model.fit(Xtr, ytr, epochs=args.epochs, batch_size=args.batch_size,
                        optimizer=opt, seed=args.seed, augment=augment,
                        scheduler=cnn.optim.CosineAnnealingLR(opt, args.epochs),
                        validation_data=(Xval, yval) if len(Xval) else None)
    seconds = time.perf_counter() - t0
    model.save(out)
    stem = out[: -len(".npz")]
    plots.save_training_curves(history, stem + "-curves.png")
    plots.save_kernels(model.layers[0].weight.data, stem + "-kernels.png")
    print(f"trained in {seconds:.1f} s; wrote {out}, {stem}-curves.png, {stem}-kernels.png")
    if len(Xval):
        print(f"validation accuracy: {history['val_accuracy'][-1]:.4f}")


def _run_evaluate(args):
    from . import cnn

    model = cnn.load(args.model)
    (X, y), _ = _load_labelled(args.images, args.labels)
    _check_input_shape(model, X.shape[1:])
    res = model.evaluate(X, y)
    print(f"images: {len(X)}")
    print(f"loss: {res['loss']:.4f}")
    print(f"accuracy: {res['accuracy']:.4f}")


def _check_input_shape(model, shape):
    if model.input_shape is not None and tuple(shape) != tuple(model.input_shape):
        raise _UsageError(f"the model takes images of shape {tuple(model.input_shape)}, "
                          f"got {tuple(shape)}")


def _run_predict(args):
    from skimage.color import rgb2gray
    from skimage.transform import resize

    from . import cnn
    from .io import imread

    model = cnn.load(args.model)
    if model.input_shape is None or model.input_shape[0] != 1:
        raise _UsageError("`predict` needs a model trained on single-channel images")
    _, h, w = model.input_shape
    batch = []
    for path in args.images:
        img = imread(path)
        if img.ndim == 3:
            img = rgb2gray(img[..., :3])
        img = resize(img, (h, w), anti_aliasing=True)
        if img.mean() > 0.5:  # dark strokes on a light page: MNIST is light on dark
            img = 1.0 - img
        batch.append(img)
    proba = model.predict_proba(np.asarray(batch, dtype=np.float32)[:, None])
    for path, p in zip(args.images, proba):
        print(f"{path}: {int(p.argmax())} (p={p.max():.3f})")


def _run_demo(args):
    from ._demo import run_demo

    run_demo(args.out)


def main(argv=None):
    """Entry point of the ``filtkit`` command; returns the exit status."""
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        commands = {"demo": _run_demo, "filter": _run_filter, "kernels": _run_kernels,
                    "train": _run_train, "evaluate": _run_evaluate, "predict": _run_predict}
        commands[args.command](args)
    except BrokenPipeError:  # e.g. `filtkit kernels | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (_UsageError, ValueError, TypeError, OSError, MemoryError,
            FloatingPointError) as exc:
        message = " ".join(str(exc).split())
        print(f"filtkit: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except _BatchError as exc:
        print(f"filtkit: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("filtkit: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
