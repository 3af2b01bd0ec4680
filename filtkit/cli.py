"""The ``filtkit`` command line.

``filtkit demo``     filter scikit-image's sample photos with every filter,
                     compare with scikit-image, write a gallery PNG.
``filtkit filter``   filter one image file into another.
``filtkit kernels``  list the named kernels and image filters.

Every failure (missing or unreadable file, unknown filter, bad parameter)
prints one line to stderr and exits with status 2, leaving no output file.
"""

import argparse
import inspect
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


# options passed on, under the same names, to the filter functions that take them
_OPTIONS = ("sigma", "mode", "cval", "truncate", "size", "radius", "amount", "low_sigma",
            "high_sigma")


def _build_parser():
    parser = _Parser(prog="filtkit", description="Numba-JIT image filtering.")
    parser.add_argument("--version", action="version", version=f"filtkit {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    demo = sub.add_parser("demo", help="filter sample photos and compare with scikit-image")
    demo.add_argument("--out", default="filtkit-demo", help="output folder (default: %(default)s)")

    filt = sub.add_parser("filter", help="filter one image file")
    filt.add_argument("input", help="input image (PNG, JPEG, TIFF, ...)")
    filt.add_argument("output", help="output image; written atomically")
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

    sub.add_parser("kernels", help="list the named kernels and image filters")
    return parser


def _run_filter(args):
    from .io import imread, imwrite
    from .signal import convolve, correlate
    from .signal.filters import FILTERS
    from .signal.kernels import NAMED

    linear = {"correlate": correlate, "convolve": convolve}
    if args.name not in FILTERS and args.name not in linear:
        names = ", ".join(sorted(FILTERS) + sorted(linear))
        raise ValueError(f"`--filter` must be one of {names}; got {args.name!r}")
    given = {k: getattr(args, k) for k in _OPTIONS if getattr(args, k) is not None}
    if args.name in linear:
        if args.kernel not in NAMED:
            raise ValueError(
                f"`--kernel` must be one of {', '.join(NAMED)} for --filter {args.name}; "
                f"got {args.kernel!r}"
            )
        factory, defaults = NAMED[args.kernel]
        params = dict(defaults)
        if "sigma" in params and "sigma" in given:
            params["sigma"] = given.pop("sigma")
        kernel = factory(**params)
        allowed = {"mode", "cval"}
        fn = linear[args.name]
        kwargs = {"boundary" if k == "mode" else k: v for k, v in given.items()}
    else:
        if args.kernel is not None:
            raise ValueError("`--kernel` only applies to --filter correlate or convolve")
        fn = FILTERS[args.name]
        allowed = set(inspect.signature(fn).parameters)
        kernel = None
        kwargs = given
    extra = sorted(k for k in given if k not in allowed)
    if extra:
        raise ValueError(
            f"`--{extra[0].replace('_', '-')}` does not apply to filter {args.name!r}"
        )
    if args.name == "difference_of_gaussians" and "low_sigma" not in kwargs:
        raise ValueError("`--low-sigma` is required for --filter difference_of_gaussians")

    image = imread(args.input)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] > 4):
        raise ValueError(
            f"`input` must hold one grey or colour image, got pixel array of shape {image.shape} "
            f"(an animation or a volume?)"
        )
    if os.path.exists(args.output) and os.path.samefile(args.input, args.output):
        raise ValueError("`output` must differ from `input`; refusing to overwrite the input")
    result = _apply(image, fn, kernel, kwargs)
    if args.rescale:  # stretch the colour channels, leave alpha alone
        colour = result[..., : _colour_channels(result)] if result.ndim == 3 else result
        lo, hi = float(np.min(colour)), float(np.max(colour))
        colour[...] = (colour - lo) / (hi - lo) if hi > lo else 0.0
    imwrite(args.output, result)
    print(args.output)


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
        {"demo": _run_demo, "filter": _run_filter, "kernels": _run_kernels}[args.command](args)
    except BrokenPipeError:  # e.g. `filtkit kernels | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (_UsageError, ValueError, TypeError, OSError, MemoryError) as exc:
        message = " ".join(str(exc).split())
        print(f"filtkit: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("filtkit: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
