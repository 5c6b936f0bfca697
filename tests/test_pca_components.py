"""``pca_components`` / ``--pca-components``: PCA features of the kNN graph with a chosen number
of axes (the default 50 cannot fit 40-dimensional data)."""

import warnings

import numpy as np
import pytest
import torch

from sampletopo import analysis
from sampletopo._errors import ModelSpecWarning, ParameterError
from sampletopo.cli import main
from sampletopo.data import Dataset
from sampletopo.recorder import LossRecorder
from sampletopo.runs import Run


@pytest.fixture(scope="module")
def run40(tmp_path_factory):
    """A run recorded on 40-dimensional rows (3 epochs of a random linear model)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 40)).astype(np.float32)
    y = rng.integers(0, 3, 160)
    ds = Dataset.from_arrays("rows40", train=(x[:120], y[:120]), val=(x[120:], y[120:]))
    path = tmp_path_factory.mktemp("pca") / "exp" / "run"
    with warnings.catch_warnings(), LossRecorder(path, ds) as rec:
        warnings.simplefilter("ignore", ModelSpecWarning)  # an unnamed Sequential: fine here
        for e in range(3):
            torch.manual_seed(e)
            rec.on_train_epoch_end(
                e, torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(40, 3))
            )
    return path, x


def test_default_50_components_on_40_features_is_one_clear_error(run40, capsys):
    path, _ = run40
    with pytest.raises(ParameterError) as err:
        analysis.compute_topology(path, features="pca", k=5, progress=False)
    msg = str(err.value)
    assert "'pca_components'" in msg and "Got 50" in msg and "--pca-components 40" in msg
    assert main(["topology", str(path), "--features", "pca", "--pca-components", "41"]) == 2
    assert "Got 41" in capsys.readouterr().err


def test_pca_components_flag_builds_the_graph_on_those_axes(run40):
    path, x = run40
    assert (
        main(["topology", str(path), "--features", "pca", "--pca-components", "5", "--k", "5",
              "--no-progress"]) == 0
    )  # fmt: skip
    meta, _ = Run(path).read_meta()
    assert meta["val"]["features"] == "pca" and meta["val"]["pca_components"] == 5
    # Oracle: the graph equals a kNN graph built by hand on 5 PCA axes of the standardized rows.
    from sklearn.decomposition import PCA

    from sampletopo.graph import knn_graph

    mu, sd = x[:120].astype(np.float64).mean(0), x[:120].astype(np.float64).std(0)
    pca = PCA(n_components=5, svd_solver="full").fit((x[:120] - mu) / sd)
    z = pca.transform((x[120:] - mu) / sd).astype(np.float32)
    ours = analysis.graph_for_run(path, split="val", k=5, features="pca", pca_components=5)
    assert np.array_equal(ours.edges, knn_graph(z, k=5).edges)
    assert Run(path).diagram_epochs("val") == [0, 1, 2]
