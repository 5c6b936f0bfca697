"""Runs -> diagrams -> summaries -> Wasserstein -> figures -> report, on a real (tiny) training run.

Numbers are checked against independent computations: gudhi's lower-star persistence of the
losses read straight from the Parquet files, and POT's exact Wasserstein solver.
"""

from __future__ import annotations

import shutil
import warnings

import gudhi
import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
import torch

import sampletopo as st
from sampletopo import analysis
from sampletopo._errors import SampletopoError
from sampletopo.readers import diagram_epochs, read_diagram, read_diagrams
from sampletopo.runs import Run, graph_runs


def gudhi_pairs(edges, f):
    s = gudhi.SimplexTree()
    s.insert_batch(np.arange(len(f))[None, :], f)
    s.insert_batch(edges.T, np.maximum(f[edges[:, 0]], f[edges[:, 1]]))
    return np.array([p for d, p in s.persistence(persistence_dim_max=True) if d == 0])


def test_summary_matches_gudhi_on_the_stored_losses(experiment):
    out, runs = experiment
    summary = analysis.summarize(runs)
    assert summary.height == 2 * 2 * 2 * 5  # runs x splits x trees x epochs 0..4
    for rd in runs:
        for split in ("train", "val"):
            g = analysis.graph_for_run(rd, split=split, k=10)
            for epoch in (0, 4):
                table = pq.read_table(
                    rd / "losses" / split / f"epoch={epoch:04d}.parquet"
                ).to_pandas()
                f = table.sort_values("sample")["loss"].to_numpy(np.float64)
                for tree, vals in (("join", f), ("split", -f)):
                    pairs = gudhi_pairs(g.edges, vals)
                    fin = pairs[np.isfinite(pairs[:, 1])]
                    pers = fin[:, 1] - fin[:, 0]
                    pers = pers[pers > 0]
                    row = summary.filter(
                        (pl.col("run") == rd.name)
                        & (pl.col("split") == split)
                        & (pl.col("tree") == tree)
                        & (pl.col("epoch") == epoch)
                    )
                    assert row["n_pairs"][0] == pers.size
                    assert row["total_persistence_1"][0] == pytest.approx(pers.sum(), rel=1e-12)
                    assert row["total_persistence_2"][0] == pytest.approx(
                        (pers**2).sum(), rel=1e-12
                    )
                    assert row["max_persistence"][0] == pytest.approx(
                        pers.max() if pers.size else 0.0
                    )
                    assert row["mean_loss"][0] == pytest.approx(f.mean())
                    assert row["accuracy"][0] == pytest.approx(table["correct"].mean())
    # Summary also stored per run.
    assert (runs[0] / "topology" / "summary.parquet").is_file()


def test_wasserstein_to_final_matches_pot_on_stored_diagrams(experiment):
    _, runs = experiment
    assert "w2" not in analysis.wasserstein_to_reference(runs, write=False).columns  # W1 only
    wd = analysis.wasserstein_to_reference(runs, orders=(1, 2))
    assert set(wd["reference_epoch"].to_list()) == {4}
    # The exact solver: no bound to state, no delta.
    assert set(wd["w1_bound"]) == set(wd["w2_bound"]) == set(wd["delta"]) == {0.0}
    assert set(wd["backend"]) == {"assignment"}
    assert wd.filter(pl.col("epoch") == 4)["w1"].to_list() == [0.0] * 8
    for rd in runs:
        for split in ("train", "val"):
            for tree in ("join", "split"):
                ref = read_diagram(rd, split=split, tree=tree, epoch=4)
                for epoch in (0, 2):
                    d = read_diagram(rd, split=split, tree=tree, epoch=epoch)
                    row = wd.filter(
                        (pl.col("run") == rd.name)
                        & (pl.col("split") == split)
                        & (pl.col("tree") == tree)
                        & (pl.col("epoch") == epoch)
                    )
                    assert row["w1"][0] == pytest.approx(
                        st.wasserstein(d, ref, backend="pot"), rel=1e-6
                    )
                    assert row["w2"][0] == pytest.approx(
                        st.wasserstein(d, ref, order=2, backend="pot"), rel=1e-6
                    )
    other = analysis.wasserstein_to_reference(runs, reference=2, write=False)
    assert other.filter(pl.col("epoch") == 2)["w1"].to_list() == [0.0] * 8
    with pytest.raises(
        SampletopoError,
        match="'reference' parameter of wasserstein_to_reference .*Got 9, which has no",
    ):
        analysis.wasserstein_to_reference(runs, reference=9)


def test_stored_diagrams_trace_back_to_samples(experiment):
    _, runs = experiment
    rd = runs[0]
    d = read_diagram(rd, split="val", tree="split", epoch=3)
    table = pl.read_parquet(rd / "losses" / "val" / "epoch=0003.parquet").sort("sample")
    loss = table["loss"].to_numpy()
    fin = d.finite()
    np.testing.assert_array_equal(loss[fin.birth_sample], fin.birth)
    np.testing.assert_array_equal(loss[fin.death_sample], fin.death)


def test_rerun_computes_only_new_epochs_and_jobs_equal_serial(experiment, tmp_path):
    _, runs = experiment
    again = analysis.compute_topology(runs, k=10, progress=False)
    assert set(again["status"].to_list()) == {"cached"}
    copy = tmp_path / "copy"
    shutil.copytree(runs[0].parent, copy)
    for rd in copy.iterdir():
        if (rd / "topology").is_dir():
            shutil.rmtree(rd / "topology")
    res = analysis.compute_topology([copy], k=10, jobs=2, progress=False)
    assert set(res["status"].to_list()) == {"computed"}
    for rd in runs:
        for split in ("train", "val"):
            for e in diagram_epochs(rd, split=split):
                a = pl.read_parquet(rd / "topology" / split / f"epoch={e:04d}.parquet")
                b = pl.read_parquet(copy / rd.name / "topology" / split / f"epoch={e:04d}.parquet")
                assert a.equals(b)
    # Another graph setting goes beside the first, not over it (see sampletopo.runs).
    first = _files(copy)
    res5 = analysis.compute_topology([copy], k=5, progress=False)
    assert set(res5["status"].to_list()) == {"computed"}
    now = _files(copy)
    assert {f: now.get(f) for f in first} == first  # what was there: same bytes, same mtimes
    assert any("k=5,features=raw" in f for f in now)
    run = Run(next(p for p in sorted(copy.iterdir()) if (p / "losses").is_dir()))
    assert run.topology_settings() == ["", "k=5,features=raw"]
    k5 = run.for_graph(k=5)
    assert k5.topology_dir == run.path / "topology" / "k=5,features=raw"
    assert {e["k"] for e in k5.read_meta()[0].values()} == {5}
    assert run.for_graph(k=10).topology_dir == run.path / "topology"
    # The k=5 diagrams are those of a k=5 graph: the split tree of an epoch, recomputed here.
    graph = analysis.graph_for_run(run, split="val", k=5)
    losses = pl.read_parquet(run.loss_file("val", 3)).sort("sample")["loss"].to_numpy()
    want = analysis._diagram_table("val", 3, losses, graph)
    got = pl.read_parquet(k5.diagram_file("val", 3))
    assert got.sort(pl.all()).equals(want.sort(pl.all()))
    assert not got.equals(pl.read_parquet(run.diagram_file("val", 3)))
    # Recomputing one setting (overwrite) leaves the other's files as they were.
    five = _files(k5.topology_dir)
    analysis.compute_topology([copy], k=10, overwrite=True, progress=False)
    assert _files(k5.topology_dir) == five
    ten = _files(run.topology_dir, top_only=True)
    analysis.compute_topology([copy], k=5, overwrite=True, progress=False)
    assert _files(run.topology_dir, top_only=True) == ten
    # Readers given the setting read its tables; a plain run folder reads topology/.
    st5 = analysis.summarize(graph_runs([copy], k=5), write=False)
    n5 = (
        read_diagrams(k5, split="val", tree="split")
        .filter((pl.col("epoch") == 3) & pl.col("persistence").is_finite())
        .height
    )
    row = st5.filter(
        (pl.col("run") == run.name)
        & (pl.col("split") == "val")
        & (pl.col("tree") == "split")
        & (pl.col("epoch") == 3)
    )
    assert row["n_pairs"].item() == n5


def _files(folder, *, top_only: bool = False) -> dict[str, tuple[str, int]]:
    """Every file under ``folder`` (not the settings' sub-folders of a topology folder when
    ``top_only``): its sha256 and mtime in ns."""
    import hashlib

    out = {}
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.name == ".sampletopo.lock":
            continue
        rel = p.relative_to(folder)
        if top_only and rel.parts[0].startswith("k="):
            continue
        out[str(rel)] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
    return out


def test_nonfinite_epoch_is_skipped_loudly_and_missing_epochs_named(experiment, tmp_path):
    _, runs = experiment
    copy = tmp_path / "exp"
    shutil.copytree(runs[0].parent, copy)
    rd = copy / runs[0].name
    shutil.rmtree(rd / "topology")
    path = rd / "losses" / "val" / "epoch=0002.parquet"
    df = pl.read_parquet(path)
    df = df.with_columns(
        loss=pl.when(pl.col("sample") == 5).then(float("nan")).otherwise(pl.col("loss"))
    )
    df.write_parquet(path)
    with pytest.warns(analysis.TopologyWarning, match="epoch 2: 1 non-finite loss"):
        res = analysis.compute_topology([rd], k=10, progress=False)
    assert res.filter(pl.col("status").str.starts_with("skipped"))["epoch"].to_list() == [2]
    assert diagram_epochs(rd, split="val") == [0, 1, 3, 4]
    (rd / "losses" / "train" / "epoch=0003.parquet").unlink()
    assert analysis.missing_epochs(rd, "train") == [3]
    with pytest.raises(
        SampletopoError, match="no val diagram for epoch 2. Epochs with diagrams: 0-1, 3-4"
    ):
        read_diagram(rd, split="val", tree="join", epoch=2)
    with pytest.raises(
        SampletopoError,
        match="'tree' parameter of read_diagram must be 'join'.*'split'.*Got 'peaks'",
    ):
        read_diagram(rd, split="val", tree="peaks", epoch=3)
    with pytest.raises(
        SampletopoError, match="'split' parameter of read_diagram must be .*Got 'test'"
    ):
        read_diagram(rd, split="test", tree="join", epoch=3)


def test_figure_set_and_report(experiment, tmp_path):
    from sampletopo.figures import FigureWarning, write_figure_set
    from sampletopo.report import write_report

    out, runs = experiment
    pngs = write_figure_set(runs, tmp_path / "figs", formats=("png",))
    names = {p.name for p in pngs}
    assert {"total_persistence.png", "wasserstein.png", "heatmap-val-split.png"} <= names
    assert all(p.stat().st_size > 10_000 for p in pngs)
    with pytest.warns(FigureWarning, match=r"Epoch\(s\) \[42\]"):
        write_figure_set(runs, tmp_path / "figs2", epochs=[1, 42], formats=("png",))
    index = write_report(out, tmp_path / "report")
    text = index.read_text()
    assert text.count("data:image/png;base64,") >= 7
    assert "http://" not in text and "https://" not in text  # self-contained
    for rd in runs:
        assert rd.name in text


def test_heatmaps_share_bins_and_scale(experiment):
    from sampletopo.plotting import heatmap_figure

    _, runs = experiment
    diagrams = read_diagrams(runs)
    fig = heatmap_figure(diagrams, split="val", tree="split", epochs=[0, 4])
    meshes = [ax.collections[0] for ax in fig.axes[:-1]]
    assert len(meshes) == 4
    assert len({(m.norm.vmin, m.norm.vmax) for m in meshes}) == 1
    xlims = {tuple(np.round(ax.get_xlim(), 12)) for ax in fig.axes[:-1]}
    assert len(xlims) == 1
    # The total count over all panels equals the number of finite pairs.
    total = sum(float(np.asarray(m.get_array()).sum()) for m in meshes)
    fin = diagrams.filter(
        (pl.col("split") == "val")
        & (pl.col("tree") == "split")
        & pl.col("epoch").is_in([0, 4])
        & pl.col("persistence").is_finite()
    )
    assert total == fin.height
    with pytest.raises(SampletopoError, match="no val diagram at epoch 99"):
        heatmap_figure(diagrams, split="val", tree="split", epochs=[99])


def test_runs_on_different_data_are_refused(experiment, tmp_path):
    import json

    _, runs = experiment
    copy = tmp_path / "other"
    shutil.copytree(runs[1], copy / runs[1].name)
    shutil.copytree(runs[0], copy / "stranger")
    man = copy / "stranger" / "losses" / "manifest.json"
    m = json.loads(man.read_text())
    m["splits"]["val"]["fingerprint"] = "0" * 16
    man.write_text(json.dumps(m))
    with pytest.raises(SampletopoError, match="recorded on different val data"):
        analysis.check_comparable(copy)


def test_constant_loss_gives_an_empty_diagram_not_a_crash():
    g = st.graph_from_edges(4, [[0, 1], [1, 2], [2, 3]])
    d = st.split_tree(g, np.ones(4)).diagram()
    assert len(d.finite()) == 0 and st.total_persistence(d) == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from sampletopo.plotting import plot_heatmap

        ax = plot_heatmap(d.to_polars())
        assert "no finite pairs" in [t.get_text() for t in ax.texts]


def test_graph_refuses_data_other_than_recorded(experiment, tmp_path):
    import tomli_w

    from sampletopo.record import read_run_config

    _, runs = experiment
    copy = tmp_path / "exp" / runs[0].name
    shutil.copytree(runs[0], copy)
    cfg = read_run_config(copy)
    cfg["data_seed"] = int(cfg.get("data_seed", 0)) + 1  # another split of the same dataset
    (copy / "config.toml").write_text(tomli_w.dumps(cfg))
    with pytest.raises(SampletopoError, match="differs from the data the run recorded"):
        analysis.graph_for_run(copy, split="val", k=10)


def test_record_checkpoints_config_rebuilds_the_given_dataset(tmp_path):
    from sampletopo.data import load_dataset
    from sampletopo.models import create_model
    from sampletopo.record import dataset_from_config, read_run_config, record_checkpoints

    ds = load_dataset("synthetic", seed=3, val_fraction=0.3)
    model = create_model("mlp", num_classes=ds.num_classes, in_channels=1, input_size=8)
    (tmp_path / "ck").mkdir()
    torch.save({"model": model.state_dict(), "epoch": 1}, tmp_path / "ck" / "epoch=0001.pt")
    record_checkpoints(tmp_path / "ck", tmp_path / "run", model=model, data=ds, progress=False)
    again = dataset_from_config(read_run_config(tmp_path / "run"))
    assert again.fingerprint("val") == ds.fingerprint("val")
    assert analysis.graph_for_run(tmp_path / "run", split="val", k=5).n == ds.n("val")


def test_diagrams_of_another_graph_are_recomputed_not_reused(experiment, tmp_path):
    """Stored diagrams whose meta.json has the same settings but other graph edges (an older
    sampletopo's kNN rule, or no edge digest at all) are recomputed with a warning, and come out
    equal to freshly computed ones."""
    import json

    out, runs = experiment
    copy = tmp_path / "exp"
    shutil.copytree(out, copy)
    rd = copy / runs[0].name
    fresh = pl.read_parquet(rd / "topology" / "val" / "epoch=0002.parquet")
    meta_path = rd / "topology" / "meta.json"
    meta = json.loads(meta_path.read_text())
    # An older meta.json: no edge digest; and diagrams that are not today's (a planted value).
    meta["val"].pop("edges")
    meta_path.write_text(json.dumps(meta))
    stale = fresh.with_columns(pl.col("birth") + 1.0)
    st._runfiles.write_parquet(stale, rd / "topology" / "val" / "epoch=0002.parquet")
    with pytest.warns(analysis.TopologyWarning, match=r"other edges.*computed again"):
        done = analysis.compute_topology(rd, k=10, splits=["val"], progress=False)
    assert set(done["status"]) == {"computed"}
    again = pl.read_parquet(rd / "topology" / "val" / "epoch=0002.parquet")
    assert again.equals(fresh)
    assert "edges" in json.loads(meta_path.read_text())["val"]
    # Today's digest: nothing is recomputed.
    with warnings.catch_warnings():
        warnings.simplefilter("error", analysis.TopologyWarning)
        done = analysis.compute_topology(rd, k=10, splits=["val"], progress=False)
    assert set(done["status"]) == {"cached"}
