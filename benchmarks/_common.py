"""What bench_signal.py and bench_cnn.py share: set-up, timing, machine description, report.

Import it before numpy (it sets OPENBLAS_NUM_THREADS) and before filtkit (it puts this
working tree first on sys.path).  The scripts run as ``python benchmarks/bench_*.py``, which
puts this folder on sys.path, so a plain ``import _common`` finds it.
"""

import os
import sys

NCORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
# OpenBLAS reads its thread count at import time, before numpy is imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", str(NCORES))

import gc  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmark this working tree

RESULTS = ROOT / "benchmarks" / "RESULTS.md"


def progress(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# timing


def timed(f):
    """Seconds one call of ``f`` takes."""
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def _n_runs(probe_s, cfg):
    if probe_s > cfg.slow_s:
        return cfg.slow_runs
    return max(cfg.min_runs, min(cfg.max_runs, math.ceil(cfg.target_s / max(probe_s, 1e-9))))


def bench(fns, cfg, *, rounds=3, keep_probe=True, switch_call=False):
    """Median seconds, spread and run count of each (already warmed up) zero-argument function.

    One probe call per function sets its number of runs (``cfg``: target_s, min_runs,
    max_runs, slow_s, slow_runs); the probe counts as one of them when ``keep_probe``.  The
    runs are split into ``rounds`` rounds, interleaved across the functions so that all of
    them see the same machine.  With ``switch_call`` each function's block of runs in a round
    starts with one untimed call (the first call after a switch from another library).

    Returns ``{name: (median s, interquartile range / median, number of timed runs)}``.
    """
    samples = {name: [] for name in fns}
    plan = {}
    gc.disable()
    try:
        for name, f in fns.items():
            t = timed(f)
            if keep_probe:
                samples[name].append(t)
            plan[name] = _n_runs(t, cfg) - (1 if keep_probe else 0)
        for rnd in range(rounds):
            for name, f in fns.items():
                todo = plan[name] // rounds + (rnd < plan[name] % rounds)
                if todo and switch_call:
                    f()  # untimed
                for _ in range(todo):
                    samples[name].append(timed(f))
    finally:
        gc.enable()
    out = {}
    for name, ts in samples.items():
        med = statistics.median(ts)
        q = np.percentile(ts, [25, 75]) if len(ts) >= 4 else (med, med)
        out[name] = (med, (q[1] - q[0]) / med, len(ts))
    return out


# ---------------------------------------------------------------------------------------------
# threads and fresh processes


def warn_if_busy():
    """The CPU busy fraction now, with a warning when other load would skew the timings."""
    busy = cpu_busy()
    if busy > 0.10:
        progress(f"WARNING: the CPUs were {100 * busy:.0f}% busy before the benchmark "
                 "started; timings will be unreliable")
    return busy


def numba_all_cores():
    """Give numba every core, calling set_num_threads only when its default differs.

    numba already uses every core by default; calling set_num_threads even with that same
    number slowed 7x7 correlation from 2.9 to 4.0 ms here (numba 0.68).
    """
    if numba.get_num_threads() != min(NCORES, numba.config.NUMBA_NUM_THREADS):
        numba.set_num_threads(min(NCORES, numba.config.NUMBA_NUM_THREADS))


def child_env(**extra):
    """os.environ with this working tree first on PYTHONPATH, plus ``extra``."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p), **extra)


def run_json(args, what, timeout, env=None):
    """Run ``python *args`` in a fresh process from the repository root and return the JSON
    its last line of output holds; exit with ``what`` and its stderr when it fails."""
    proc = subprocess.run([sys.executable, *args], cwd=ROOT,
                          env=child_env() if env is None else env,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        sys.exit(f"{what} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# machine description


def cpu_busy(seconds=0.5):
    """Fraction of all CPU time spent busy (by anything) over ``seconds``."""

    def read():
        with open("/proc/stat") as fh:
            vals = [int(v) for v in fh.readline().split()[1:]]
        return sum(vals), vals[3] + vals[4]  # total, idle + iowait

    try:
        t0, i0 = read()
        time.sleep(seconds)
        t1, i1 = read()
    except OSError:
        return float("nan")
    return 1.0 - (i1 - i0) / max(t1 - t0, 1)


def machine_description():
    model, mem = platform.processor() or "unknown", "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
                break
    except OSError:
        pass
    return model, mem


def git_state():
    """Commit of the benchmarked tree, and whether filtkit/ has uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "filtkit"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not head:
        return "unknown"
    return head + (" + uncommitted changes in filtkit/" if dirty else "")


def versions(peers):
    """Python, numpy, numba, then ``peers`` ({name: version}), then filtkit."""
    import filtkit  # already loaded by the script, from ROOT

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        **peers,
        "filtkit": filtkit.__version__,
    }


def blas_description():
    """Which kernels each loaded BLAS runs (threadpoolctl), and the environment variables
    that force OpenBLAS's choice: some machines set OPENBLAS_CORETYPE=Haswell, which holds
    OpenBLAS to 256-bit AVX2 kernels on AVX-512 processors (about half the GEMM speed on
    this project's Zen 5 cores)."""
    from threadpoolctl import threadpool_info

    libs = ", ".join(sorted({f"{i['internal_api']} {i.get('version') or '?'} "
                             f"{i.get('architecture') or '?'}" for i in threadpool_info()
                             if i["user_api"] == "blas"})) or "none loaded"
    forced = ", ".join(f"{k}={os.environ[k]}" for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
                       if k in os.environ) or "none"
    return f"{libs}; forced by the environment: {forced}"


def run_description(started, elapsed, peers):
    """The report's first lines: date and command, CPU and memory, versions, BLAS kernels."""
    model, ram = machine_description()
    vers = ", ".join(f"{k} {v}" for k, v in versions(peers).items())
    command = " ".join(["python", *sys.argv])
    return "\n".join([
        f"- Date: {started.isoformat(timespec='seconds')}; command: `{command}`; run time "
        f"{elapsed:.0f} s",
        f"- CPU: {model}, {NCORES} cores ({os.cpu_count()} logical CPUs visible), memory {ram}",
        f"- Versions: {vers}; filtkit tree: {git_state()}",
        f"- BLAS kernels: {blas_description()}",
    ])


# ---------------------------------------------------------------------------------------------
# report


def table(head, rows):
    """A Markdown table, each column padded to its widest cell."""
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]

    def line(cells):
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(head), sep, *(line(r) for r in rows)])


def publish(name, parts, summary_lines, elapsed, quick, *, per_blas=False):
    """Print the report (``parts``, then a Summary section with ``summary_lines`` and the run
    time) and, unless ``quick``, write it into the ``name`` section of RESULTS.md.

    With ``per_blas`` (a benchmark whose speed is BLAS's) a run under a forced
    ``OPENBLAS_CORETYPE`` (this machine's default environment sets it) goes to a section
    of its own, named and titled after it, so runs with the forced and with OpenBLAS's
    own kernels are kept side by side.
    """
    report = "\n".join([*parts, "### Summary", "", "```", *summary_lines,
                        f"total run time {elapsed:.0f} s", "```", ""])
    forced = os.environ.get("OPENBLAS_CORETYPE") if per_blas else None
    section = name
    if forced:
        tag = f"OPENBLAS_CORETYPE={forced}"
        section = f"{name} {tag}"
        title, rest = report.split("\n", 1)
        report = f"{title} ({tag})\n{rest}"
    print(report)
    if not quick:
        write_results(section, report)
        progress(f"wrote {RESULTS.relative_to(ROOT)}")


def write_results(name, text):
    """Replace the section of RESULTS.md between ``<!-- name start/end -->`` with ``text``."""
    start, end = f"<!-- {name} start -->", f"<!-- {name} end -->"
    block = f"{start}\n{text.rstrip()}\n{end}"
    if RESULTS.exists():
        content = RESULTS.read_text()
        i, j = content.find(start), content.find(end)
        if 0 <= i < j:
            content = content[:i] + block + content[j + len(end):]
        else:
            content = content.rstrip() + "\n\n" + block + "\n"
    else:
        content = "# Benchmark results\n\n" + block + "\n"
    from filtkit._files import replace_atomically

    with replace_atomically(RESULTS, ".md") as tmp, open(tmp, "w") as f:
        f.write(content)
