"""Atomic file writes, shared by every writer in filtkit (images, IDX, models, plots).

A writer fills a temporary file beside the target, which then replaces the
target in one rename: a failed or interrupted write leaves the old file (or
nothing) and no temporary behind.  New files get the usual permissions,
``0o666`` less the process umask (mkstemp's 0o600 would hide them from the
group), read from ``/proc/self/status`` at each write so no writer ever
changes the umask (where there is no /proc, once at import).
"""

import contextlib
import os
import tempfile


def _umask_now():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return None


def _umask_at_import():
    mask = _umask_now()
    if mask is None:  # no /proc: read it by setting it, once, while importing
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


_UMASK = _umask_at_import()


def file_mode():
    """Permissions of a new file: ``0o666`` less the process's current umask."""
    mask = _umask_now()
    return 0o666 & ~(_UMASK if mask is None else mask)


@contextlib.contextmanager
def replace_atomically(path, suffix=""):
    """Yield a temporary path beside ``path``; on success it replaces ``path``.

    Raises FileNotFoundError naming `path` when its folder does not exist.
    """
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"`path` directory does not exist: {directory!r}")
    fd, tmp = tempfile.mkstemp(prefix=".filtkit-", suffix=suffix, dir=directory)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
