import os

import numpy as np
import pytest

# Two cores are shared by pytest-xdist workers: keep each worker single-threaded.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
