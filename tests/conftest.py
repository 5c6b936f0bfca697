import os

import numpy as np
import pytest

# Two cores are shared by pytest-xdist workers: keep each worker single-threaded.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """A tiny two-variant LR study (MLP on digits, 4 epochs, LR annealed after epoch 2) with
    its topology computed; one per test module, which may add figures and reports to it."""
    import torch

    from sampletopo import analysis
    from sampletopo.train import TrainConfig, train_experiment

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("exp") / "lr-study"
    cfg = TrainConfig(
        model="mlp",
        model_kwargs={"hidden": [32]},
        epochs=4,
        data="digits",
        device="cpu",
        milestones=[2],
    )
    runs = train_experiment(cfg, out, variants={"lr": [0.1, 0.01]}, progress=False)
    analysis.compute_topology(runs, k=10, progress=False)
    return out, runs
