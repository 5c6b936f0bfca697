"""Tests of sampletopo.samples: regions of persistence pairs, traced back to the samples.

Planted graphs with known answers, a real digits training run with a planted group of flipped
labels, the CLI on a real run folder, and the figures (written to PNG).
"""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sampletopo._errors import SampletopoError
from sampletopo.data import Dataset, load_dataset
from sampletopo.graph import graph_from_edges, knn_graph
from sampletopo.mergetree import split_tree
from sampletopo.record import LossRecorder
from sampletopo.samples import (
    FewerPairsWarning,
    graph_regions,
    learned_epochs,
    regions_path,
    top_regions,
    track_members,
)

# ---------------------------------------------------------------------------------------------
# Planted graphs


def _planted(cluster_on_top: bool):
    """A background of 60 low values, a connected cluster of 8 high values (max at vertex 3),
    and a second peak P = vertex 60. The bridge vertex 61 (value 2.0, above every background
    value) is the only vertex above 1 that touches both the cluster and P.

    cluster_on_top=False: P (10.0) is the global maximum, so the cluster dies at the bridge.
    cluster_on_top=True: P (3.0) is lower, so P dies at the bridge and the cluster is essential.
    """
    rng = np.random.default_rng(7)
    cluster = np.arange(8)
    values = np.empty(62)
    values[cluster] = [5.0, 5.2, 5.5, 6.0, 5.1, 5.3, 5.4, 5.05]
    values[8:60] = rng.uniform(0.0, 1.0, 52)
    values[60] = 3.0 if cluster_on_top else 10.0
    values[61] = 2.0
    edges = [(i, i + 1) for i in range(7)] + [(0, 4), (2, 6)]  # the cluster, connected
    edges += [(i, i + 1) for i in range(8, 59)]  # background path
    edges += [(0, 8), (5, 20), (7, 40)]  # cluster touches low background directly
    edges += [(60, 30), (60, 61), (61, 1), (61, 50)]  # P, and the bridge
    return graph_from_edges(62, edges), values, set(cluster.tolist())


def test_planted_cluster_is_the_most_persistent_finite_peak():
    g, values, cluster = _planted(cluster_on_top=False)
    t = graph_regions(g, values, top=3, essential=False)
    top1 = t.row(0, named=True)
    assert set(top1["members"]) == cluster
    assert (top1["birth_sample"], top1["death_sample"]) == (3, 61)
    assert top1["birth"] == 6.0 and top1["death"] == 2.0 and top1["persistence"] == 4.0
    assert top1["members"][0] == 3  # sweep order: the maximum first
    assert top1["mean_loss"] == pytest.approx(values[list(cluster)].mean())
    # The same pair is the diagram's most persistent finite pair.
    d = split_tree(g, values).diagram().top(1)
    assert (int(d.birth_sample[0]), int(d.death_sample[0])) == (3, 61)


def test_planted_essential_peak_is_cut_where_the_next_peak_joins():
    g, values, cluster = _planted(cluster_on_top=False)
    t = graph_regions(g, values, top=2)
    ess, second = t.row(0, named=True), t.row(1, named=True)
    # P (10.0) never dies; it is reported as dying at the bridge where the cluster joins it.
    assert ess["essential"] and ess["birth_sample"] == 60 and ess["death_sample"] == 61
    assert ess["members"] == [60] and ess["persistence"] == 8.0
    assert not second["essential"] and set(second["members"]) == cluster

    g, values, cluster = _planted(cluster_on_top=True)
    top1 = graph_regions(g, values, top=1).row(0, named=True)
    assert top1["essential"] and set(top1["members"]) == cluster
    assert (top1["birth_sample"], top1["death_sample"]) == (3, 61)
    assert top1["persistence"] == 4.0


def test_labels_histogram_and_accuracy():
    g, values, cluster = _planted(cluster_on_top=False)
    labels = np.zeros(62, dtype=np.int64)
    labels[[0, 1, 2, 3, 4]] = 7
    labels[[5, 6, 7]] = 2
    preds = labels.copy()
    preds[[1, 2, 3]] = 1  # three of the cluster wrong
    names = [f"c{i}" for i in range(10)]
    r = graph_regions(
        g, values, top=1, labels=labels, preds=preds, class_names=names, essential=False
    ).row(0, named=True)
    assert r["classes"] == "c7:5, c2:3"
    assert r["class_counts"] == [{"label": 7, "count": 5}, {"label": 2, "count": 3}]
    assert (r["dominant_label"], r["dominant_class"], r["dominant_share"]) == (7, "c7", 5 / 8)
    assert r["dominant_pred"] == 1 and r["dominant_pred_share"] == 3 / 8
    assert r["accuracy"] == 5 / 8
    assert r["member_labels"] == labels[r["members"]].tolist()


def test_more_regions_than_pairs_warns_and_returns_all():
    g = graph_from_edges(5, [[0, 1], [1, 2], [2, 3], [3, 4]])
    with pytest.warns(FewerPairsWarning, match="only 3 pair"):
        t = graph_regions(g, [3.0, 1.0, 2.0, 0.0, 2.5], top=10)
    # Finite pairs: peak 2 dies at 1 (persistence 1), peak 4 at 3 (2.5); the essential peak 0 is
    # cut where the most persistent one joins it (sample 3, persistence 3).
    assert t["birth_sample"].to_list() == [0, 4, 2]
    assert t["death_sample"].to_list() == [3, 3, 1]
    assert t["persistence"].to_list() == [3.0, 2.5, 1.0]
    assert t["members"].to_list() == [[0, 2, 1], [4], [2]]  # highest loss first
    with pytest.raises(SampletopoError, match="'tree' parameter .* Got 'peaks'"):
        graph_regions(g, [3.0, 1.0, 2.0, 0.0, 2.5], tree="peaks")  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(8, 40))
def test_regions_match_merge_tree_and_mirror_between_trees(seed, n):
    rng = np.random.default_rng(seed)
    edges = np.concatenate(
        [np.stack([np.arange(n - 1), np.arange(1, n)], 1), rng.integers(0, n, (n, 2))]
    )
    edges = edges[edges[:, 0] != edges[:, 1]]
    g = graph_from_edges(n, edges)
    values = rng.normal(size=n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewerPairsWarning)
        sp = graph_regions(g, values, tree="split", top=n)
        jn = graph_regions(g, -values, tree="join", top=n)
    tree = split_tree(g, values)
    for r in sp.iter_rows(named=True):
        m = np.array(r["members"])
        if not r["essential"]:
            assert np.array_equal(np.sort(m), tree.members(r["birth_sample"]))
        # Every member lies above the death level (strictly, unless the essential peak is alone in
        # its component and its region is the whole component), the birth sample is the maximum.
        whole = r["essential"] and r["death_sample"] in m
        assert values[m].min() > r["death"] or whole
        assert values[m].max() == r["birth"]
        assert m[0] == r["birth_sample"] and r["size"] == m.size
    # Negating the values turns peaks into basins with the same samples.
    cols = ["rank", "essential", "birth_sample", "death_sample", "members"]
    assert sp.select(cols).equals(jn.select(cols))
    assert np.allclose(sp["birth"].to_numpy(), -jn["birth"].to_numpy())


def test_learned_epochs():
    c = np.array([[0, 1, 0, 1], [1, 0, 0, 1], [0, 1, 1, 1], [1, 1, 0, 1]], dtype=bool)
    got = learned_epochs([0, 2, 4, 6], c)
    assert got[0] == 6 and got[1] == 4 and np.isnan(got[2]) and got[3] == 0
    with pytest.raises(SampletopoError, match="strictly increasing"):
        learned_epochs([0, 0, 1, 2], c)


# ---------------------------------------------------------------------------------------------
# A run folder with planted losses (real Parquet written by the LossRecorder, no training)


@pytest.fixture
def planted_run(tmp_path):
    g, values, cluster = _planted(cluster_on_top=False)
    x = np.random.default_rng(0).random((62, 1, 4, 4)).astype(np.float32)
    labels = np.arange(62) % 3
    ds = Dataset.from_arrays("toy", train=(x, labels), val=(x, labels))
    rec = LossRecorder(tmp_path / "run", ds, splits=("val",))
    preds = labels.copy()
    members = sorted(cluster)
    for ep in range(4):
        pr = preds.copy()
        # The cluster is wrong until epoch 2; sample 5 flips back to wrong at epoch 3.
        if ep < 2:
            pr[members] = (labels[members] + 1) % 3
        if ep == 3:
            pr[5] = (labels[5] + 1) % 3
        rec.write("val", ep, values / (ep + 1), pr)
    return tmp_path / "run", g, ds, cluster


def test_top_regions_on_a_run_and_bad_input(planted_run):
    run, g, ds, cluster = planted_run
    t = top_regions(run, split="val", epoch=1, top=2, graph=g, dataset=ds)
    assert t.columns[:3] == ["run", "split", "epoch"]
    assert t["run"].to_list() == ["run", "run"] and t["epoch"].to_list() == [1, 1]
    assert set(t.row(1, named=True)["members"]) == cluster
    assert t.row(1, named=True)["accuracy"] == 0.0
    with pytest.raises(SampletopoError, match=r"recorded epoch .*: 0-3\. Got 7"):
        top_regions(run, split="val", epoch=7, graph=g)
    with pytest.raises(SampletopoError, match=r"split recorded .*\['val'\]\. Got 'train'"):
        top_regions(run, split="train", epoch=1, graph=g)
    with pytest.raises(SampletopoError, match="graph that has 5 vertices"):
        top_regions(run, split="val", epoch=1, graph=graph_from_edges(5, [[0, 1]]))


def test_track_members_follows_the_cluster(planted_run):
    run, g, ds, cluster = planted_run
    tr = track_members(run, split="val", epoch=1, top=2, graph=g, dataset=ds)
    c = tr.curves.filter(pl.col("rank") == 2).sort("epoch")
    mean = np.mean([5.0, 5.2, 5.5, 6.0, 5.1, 5.3, 5.4, 5.05])
    assert np.allclose(c["mean_loss"].to_numpy(), mean / np.arange(1, 5))
    assert c["accuracy"].to_list() == [0.0, 0.0, 1.0, 7 / 8]
    m = tr.members.filter(pl.col("rank") == 2)
    learned = dict(zip(m["sample"].to_list(), m["learned_epoch"].to_list()))
    assert learned[5] is None and all(learned[s] == 2 for s in cluster - {5})
    assert tr.overall.height == 4
    # A region table of another split names other samples: refused, not silently reused.
    other = tr.regions.with_columns(split=pl.lit("train"))
    with pytest.raises(SampletopoError, match="split 'val'"):
        track_members(run, split="val", epoch=1, regions=other, graph=g, dataset=ds)


def test_figures_and_no_images(planted_run, tmp_path):
    from sampletopo.plotting._samples import (
        NoImagesWarning,
        plot_region_images,
        sample_figures,
    )

    run, g, ds, cluster = planted_run
    paths = sample_figures(run, tmp_path / "figs", split="val", epoch=1, top=2, graph=g, dataset=ds)
    names = sorted(p.name for p in paths)
    assert names == [
        "run-samples-val-epoch=0001-losses.png",
        "run-samples-val-epoch=0001-split1.png",
        "run-samples-val-epoch=0001-split2.png",
    ]
    assert all(p.stat().st_size > 3000 for p in paths), [p.stat().st_size for p in paths]

    fig = plot_region_images(ds.images("val"), [3, 1, 2], [0, 1, 2], [0, 2, 2], ncols=2)
    texts = [a.title.get_text() for a in fig.axes]
    colors = [a.title.get_color() for a in fig.axes]
    assert texts == ["0 -> 0", "1 -> 2", "2 -> 2", ""]
    assert colors[:3] == ["tab:green", "tab:red", "tab:green"]
    plt.close(fig)

    class Tabular(Dataset):
        def images(self, split):  # a dataset of feature vectors: nothing to show
            return None

    tab = Tabular.from_arrays(
        "tab", train=(ds._raw["train"], ds.labels("train")), val=(ds._raw["val"], ds.labels("val"))
    )
    with pytest.warns(NoImagesWarning, match="no images"):
        paths = sample_figures(
            run, tmp_path / "f2", split="val", epoch=1, top=2, graph=g, dataset=tab
        )
    assert [p.name for p in paths] == ["run-samples-val-epoch=0001-losses.png"]


# ---------------------------------------------------------------------------------------------
# Real training: a planted group of flipped labels on digits


def _flipped_digits(n_flip: int = 12):
    base = load_dataset("digits", seed=0)
    X, y = base.features("train"), base.labels("train")
    # A tight group: sample 0 and its nearest neighbours of the same class.
    same = np.flatnonzero(y == y[0])
    group = same[np.argsort(((X[same] - X[0]) ** 2).sum(1))][:n_flip]
    # Flip to the class whose mean image is farthest from the group's, so the flip is not an
    # ambiguous digit the model half agrees with.
    means = np.stack([X[y == c].mean(0) for c in range(10)])
    dist = ((means - X[group].mean(0)) ** 2).sum(1)
    dist[y[0]] = -1
    y2 = y.copy()
    y2[group] = int(np.argmax(dist))
    ds = Dataset.from_arrays(
        "digits-flipped",
        train=(X.reshape(-1, 1, 8, 8), y2),
        val=(base.features("val").reshape(-1, 1, 8, 8), base.labels("val")),
    )
    return ds, X, group


def test_flipped_labels_form_a_top_split_peak(tmp_path):
    torch.set_num_threads(1)
    ds, X, group = _flipped_digits()
    run = tmp_path / "flipped"
    rec = LossRecorder(run, ds, splits=("train",))
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10)
    )
    opt = torch.optim.Adam(model.parameters(), lr=0.003, weight_decay=0.01)
    x, y = ds.tensors("train")
    rec.on_train_epoch_end(0, model)
    for ep in range(1, 11):
        perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(ep))
        for i in range(0, x.shape[0], 64):
            idx = perm[i : i + 64]
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        rec.on_train_epoch_end(ep, model)

    g = knn_graph(X, k=20)
    t = top_regions(run, split="train", epoch=5, top=3, graph=g, dataset=ds)
    flipped = set(group.tolist())
    shares = [(sum(m in flipped for m in r["members"]), r["size"]) for r in t.iter_rows(named=True)]
    hit = [(f, s) for f, s in shares if f >= 0.75 * len(flipped)]
    assert hit, shares
    f, s = hit[0]
    # Mostly flipped samples (base rate 12 / 1437 < 1%).
    assert f / s >= 0.6, shares
    # The flipped samples are the hardest of their region: they come first in sweep order.
    r = t.row([i for i, x_ in enumerate(shares) if x_ == hit[0]][0], named=True)
    assert set(r["members"][: len(flipped) // 2]) <= flipped


# ---------------------------------------------------------------------------------------------
# The command line on a real trained run


def test_cli_on_a_trained_run(tmp_path, capsys):
    from sampletopo.cli import main
    from sampletopo.train import TrainConfig, train_experiment

    torch.set_num_threads(1)
    (run,) = train_experiment(
        TrainConfig(model="mlp", epochs=2, lr=0.05, device="cpu", batch_size=64),
        tmp_path / "exp",
        variants=[{"name": "mlp"}],
        progress=False,
    )
    assert (
        main(
            ["samples", str(run), "--split", "val", "--epoch", "1", "--top", "4", "--tree", "both"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "peaks are" in out and "first members" in out
    table = pl.read_parquet(regions_path(run, "val", 1))
    assert table["tree"].to_list() == ["split"] * 4 + ["join"] * 4
    assert table["rank"].to_list() == [1, 2, 3, 4] * 2
    direct = top_regions(run, split="val", epoch=1, top=4, tree="both")
    assert table.equals(direct)

    assert main(["samples", str(run), "--split", "val", "--epoch", "9", "--top", "4"]) == 2
    err = capsys.readouterr().err
    assert "recorded epoch of split 'val'" in err and "0-2. Got 9" in err
