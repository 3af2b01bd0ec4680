"""Numba cache placement: a read-only install must still work."""

import os
import subprocess
import sys

from filtkit import _config

SNIPPET = (
    "import numpy as np, filtkit._config as c, filtkit.signal as fs;"
    "from scipy import ndimage as ndi;"
    "x = np.random.default_rng(0).random((20, 20));"
    "assert np.allclose(fs.correlate(x, np.ones((3, 3))), ndi.correlate(x, np.ones((3, 3)),"
    " mode='constant'));"
    "print(c.CACHE, __import__('os').environ.get('NUMBA_CACHE_DIR'))"
)


def _run(env_updates):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(env_updates)
    root = os.path.dirname(os.path.dirname(os.path.abspath(_config.__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-c", SNIPPET], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_unwritable_cache_dir_compiles_without_caching():
    # a path below a regular file can never be created, even by root
    cache, where = _run({"NUMBA_CACHE_DIR": os.devnull + "/filtkit-cache"})
    assert cache == "False"


def test_writable_cache_dir_is_used(tmp_path):
    cache, where = _run({"NUMBA_CACHE_DIR": str(tmp_path)})
    assert cache == "True" and where == str(tmp_path)
    assert any(name.endswith(".nbi") for _, _, files in os.walk(tmp_path) for name in files)


def test_read_only_package_falls_back_to_user_cache(monkeypatch, tmp_path):
    package_cache = os.path.join(os.path.dirname(_config.__file__), "backends", "__pycache__")
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(_config, "_writable", lambda path: path != package_cache
                        and str(path).startswith(str(tmp_path)))
    assert _config._choose_cache() is True
    assert os.environ["NUMBA_CACHE_DIR"] == os.path.join(str(tmp_path), "filtkit-numba")


def test_nothing_writable_disables_cache(monkeypatch):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setattr(_config, "_writable", lambda path: False)
    assert _config._choose_cache() is False
    assert "NUMBA_CACHE_DIR" not in os.environ
