import numpy as np
import pytest


@pytest.fixture
def rng(request):
    """A Generator seeded from the test's name: random, but reproducible."""
    seed = sum(map(ord, request.node.nodeid)) % (2**32)
    return np.random.default_rng(seed)
