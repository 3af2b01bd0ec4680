"""The CUDA backend behind the CPU backend's calling convention, for shared test bodies.

``BACKENDS`` maps "cpu" to :mod:`filtkit.backends.cpu` and, where ``numba.cuda``
works (a GPU, or the simulator with ``NUMBA_ENABLE_CUDASIM=1`` set before the
first import), "cuda" to :class:`HostCalls` around :mod:`filtkit.backends.cuda`:
every numpy argument goes to the device, the kernels run, and every array is
copied back into the numpy argument it came from, so one test body, written
for host arrays, checks both twins against the same reference.
"""

import numpy as np

from filtkit.backends import cpu


class HostCalls:
    """Call a device backend with host arrays (results written back in place)."""

    def __init__(self, module):
        self._module = module

    def __getattr__(self, name):
        fn = getattr(self._module, name)
        if not callable(fn):
            return fn

        def call(*args):
            from numba import cuda

            dev = [cuda.to_device(a) if isinstance(a, np.ndarray) else a for a in args]
            result = fn(*dev)
            cuda.synchronize()
            for a, d in zip(args, dev):
                if isinstance(a, np.ndarray):
                    d.copy_to_host(a)
            return result

        return call


def _cuda_works():
    try:
        from numba import cuda

        return cuda.is_available()
    except Exception:  # numba-cuda missing, or no driver: the CPU alone is tested
        return False


BACKENDS = {"cpu": cpu}
if _cuda_works():
    from filtkit.backends import cuda as _cuda

    BACKENDS["cuda"] = HostCalls(_cuda)
