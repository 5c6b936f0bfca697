"""``pca_components`` / ``--pca-components``: PCA features of the kNN graph with a chosen number
of axes (the default 50 cannot fit 40-dimensional data)."""

import warnings

import numpy as np
import pytest
import torch

from sampletopo import analysis
from sampletopo._errors import ModelSpecWarning, ParameterError, RunFolderError
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


def _fresh_copy(run40, tmp_path):
    """The run40 experiment copied without its topology (its in-memory data saved beside)."""
    import shutil

    path, _ = run40
    exp = tmp_path / "exp"
    shutil.copytree(path.parent, exp, ignore=shutil.ignore_patterns("topology"))
    return exp / path.name


def test_every_setting_is_checked_before_the_first_is_computed(run40, tmp_path, capsys):
    run = _fresh_copy(run40, tmp_path)
    argv = ["topology", str(run), "--k", "5", "6", "--features", "raw", "pca", "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "'pca_components' parameter must be an int in the range [1, 40]. Got 50" in err
    assert "--pca-components 40" in err
    # Nothing was computed: not even the raw settings asked before the PCA ones.
    assert Run(run).topology_settings() == [] and not (run / "topology").exists()
    assert main([*argv, "--pca-components", "4"]) == 0
    assert Run(run).graph_settings() == [
        (5, "raw", 50),
        (6, "raw", 50),
        (5, "pca", 4),
        (6, "pca", 4),
    ]


def test_k_below_one_says_to_use_one_or_more(run40, tmp_path, capsys):
    from sampletopo.graph import knn_graph

    run = _fresh_copy(run40, tmp_path)
    for k in ("0", "-3"):
        assert main(["topology", str(run), "--k", k]) == 2
        err = capsys.readouterr().err
        assert (
            f"'--k' flag of sampletopo topology must be an int in the range [1, inf]. Got {k}"
            in err
        )
        assert "use 1 or more" in err and "fewer" not in err
    assert not (run / "topology").exists()
    with pytest.raises(ParameterError, match="use 1 or more") as e:
        knn_graph(np.zeros((5, 2)), k=0)
    assert "fewer" not in str(e.value)
    with pytest.raises(ParameterError, match=r"Got 9 instead. Use fewer neighbours than samples"):
        knn_graph(np.arange(10.0).reshape(5, 2), k=9)
    with pytest.raises(ParameterError, match="use 1 or more"):
        analysis.graph_for_run(run, split="val", k=0)


def test_a_setting_not_stored_is_named_with_those_that_are(run40, tmp_path, capsys):
    from sampletopo.replicates import metric_table
    from sampletopo.runs import graph_runs

    run = _fresh_copy(run40, tmp_path)
    exp = str(run.parent)
    argv = ["topology", exp, "--k", "5", "--features", "raw", "pca", "--pca-components", "4"]
    assert main([*argv, "--no-progress"]) == 0
    capsys.readouterr()
    stored = "stored for it: k=5,features=raw; k=5,features=pca,pca=4."
    # figures (which said "No stored diagrams under ..."), report, export: the setting asked
    # with its PCA size, the settings stored, the flags of the nearest stored one.
    for cmd in (
        ["figures", exp, "--k", "5", "--features", "pca", "--out", str(tmp_path / "f")],
        ["report", exp, "--k", "5", "--features", "pca", "--out", str(tmp_path / "r")],
        ["export", exp, "--what", "summaries", "--k", "5", "--features", "pca", "--out",
         str(tmp_path / "s.csv")],
    ):  # fmt: skip
        assert main(cmd) == 2
        err = capsys.readouterr().err
        assert (
            "Run run has no diagrams of the graph setting asked, k=5,features=pca,pca=50 "
            f"(--pca-components defaults to 50); {stored} Read a stored one with --k 5 "
            "--features pca --pca-components 4 (for k=5,features=pca,pca=4), or compute this "
            f"one with `sampletopo topology {run} --k 5 --features pca --pca-components 50`."
        ) in err, err
    assert not (tmp_path / "f").exists() and not (tmp_path / "r").exists()
    # The library, reading a setting never computed: the same message, for the split read.
    with pytest.raises(RunFolderError) as e:
        metric_table(graph_runs(exp, k=6, features="pca", pca_components=4))
    assert str(e.value) == (
        f"Run run has no val diagrams of the graph setting asked, k=6,features=pca,pca=4; {stored}"
        " Read a stored one with --k 5 --features pca --pca-components 4 (for "
        f"k=5,features=pca,pca=4), or compute this one with `sampletopo topology {run} --k 6 "
        "--features pca --pca-components 4`."
    )
    # A setting stored for one split only: the flags that compute the other.
    assert main(["topology", exp, "--k", "7", "--splits", "val", "--no-progress"]) == 0
    with pytest.raises(RunFolderError) as e:
        metric_table(graph_runs(exp, k=7), split="train")
    assert str(e.value).endswith(
        f"Compute its train diagrams with `sampletopo topology {run} --k 7 --features raw "
        "--splits train`."
    )
    # The stored setting read as suggested works.
    assert main(["export", exp, "--what", "summaries", "--k", "5", "--features", "pca",
                 "--pca-components", "4", "--out", str(tmp_path / "s.csv")]) == 0  # fmt: skip


def test_an_unknown_features_name_is_the_same_error_in_every_command(run40, capsys):
    path, _ = run40
    errors = {}
    for cmd in ("topology", "compare", "figures", "export", "compare --sensitivity"):
        extra = ["--what", "summaries", "--out", "x.csv"] if cmd == "export" else []
        name, *more = cmd.split()
        argv = [name, str(path.parent), "--k", "10", "--features", "umap", *more, *extra]
        assert main(argv) == 2
        errors[cmd] = capsys.readouterr().err.strip().replace(f"sampletopo {name}", "CMD")
    assert set(errors.values()) == {
        "CMD: error: The '--features' flag of CMD must be raw, standardized, pca or the path "
        "of an existing .npy file. Got 'umap' instead. Save your own features with "
        "numpy.save(path, array) and pass the file's path."
    }
