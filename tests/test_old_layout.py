"""Run folders written before the run-folder module existed read the same with today's code.

``tests/data/old_layout`` was written by sampletopo at commit e591264 (the commit before
:mod:`sampletopo.runs`; see ``tests/data/make_old_layout.py``): an experiment of two MLP runs on
60 + 60 digits (checkpoints, losses, topology with k=5, summaries, a regions table with its
figures, a 2-D landscape) and a run recorded by a ``LossRecorder`` from in-memory data (saved in
``datasets/``). The old code's own results are the oracle: its stored diagrams, summaries and
regions, and what it reported (``expected.json``: the report's file list and run table).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import sampletopo as st
from sampletopo.recorder import evaluate_losses
from sampletopo.report import run_table
from sampletopo.runs import Experiment, Run, find_runs

FIXTURE = Path(__file__).parent / "data" / "old_layout"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())


@pytest.fixture
def old(tmp_path) -> Path:
    dest = tmp_path / "old_layout"
    shutil.copytree(FIXTURE, dest)
    return dest


def test_the_runs_and_their_epochs_are_found_where_the_old_code_put_them(old):
    exp = Experiment(old / "lr-study")
    assert [r.name for r in find_runs(exp.path)] == ["lr=0.01", "lr=0.1"]
    run = exp.run("lr=0.1")
    for split in st.SPLITS:
        assert run.loss_epochs(split) == run.diagram_epochs(split) == [0, 1, 2]
    assert sorted(run.checkpoint_files()) == [0, 1, 2]
    assert run.landscape_file(2) in exp.landscape_files()
    assert run.regions_file("val", 2).is_file()
    assert run.read_config()["model"] == "mlp" and run.read_manifest()["mode"] == "eval"


def test_losses_read_back_and_agree_with_the_old_summaries(old):
    exp = old / "lr-study"
    losses = st.read_losses(exp)
    means = (
        losses.group_by(["run", "split", "epoch"])
        .agg(mean_loss=pl.col("loss").mean(), accuracy=pl.col("correct").cast(pl.Float64).mean())
        .with_columns(pl.col("epoch").cast(pl.Int32))
    )
    stored = (
        st.read_summaries(exp)
        .filter(tree="join")
        .select(["run", "split", "epoch", "mean_loss", "accuracy"])
    )
    assert_frame_equal(
        means.sort(["run", "split", "epoch"]), stored.sort(["run", "split", "epoch"])
    )
    assert_frame_equal(st.summarize(exp, write=False), st.read_summaries(exp))
    # The old Wasserstein tables (W1 and W2 by hera, no settings columns) read as they are;
    # today's exact curves agree with them to hera's relative error, and replace them when
    # stored (the old rows say nothing of their solver, so they are computed again).
    old_w = st.read_wasserstein(exp)
    assert old_w.columns == ["run", "split", "tree", "epoch", "reference_epoch", "w1", "w2"]
    new_w = st.wasserstein_to_reference(exp, orders=(1, 2), write=False)
    key = ["run", "split", "tree", "epoch", "reference_epoch"]
    assert_frame_equal(new_w.select(key), old_w.select(key))
    for col in ("w1", "w2"):
        np.testing.assert_allclose(new_w[col], old_w[col], rtol=1e-6, atol=1e-12)
    assert_frame_equal(st.read_wasserstein(exp), old_w)  # write=False left them alone
    st.wasserstein_to_reference(exp)
    assert_frame_equal(st.read_wasserstein(exp).select(key + ["w1"]), new_w.select(key + ["w1"]))


def test_stored_diagrams_are_reused_and_equal_todays_computation(old):
    exp = old / "lr-study"
    before = st.read_diagrams(exp)
    status = st.compute_topology(exp, k=5, progress=False)
    assert set(status["status"]) == {"cached"}  # the old graph settings and edges are known
    assert_frame_equal(st.read_diagrams(exp), before)
    st.compute_topology(exp, k=5, overwrite=True, progress=False)
    key = ["run", "split", "tree", "epoch", "birth_sample", "death_sample"]
    assert_frame_equal(st.read_diagrams(exp).sort(key), before.sort(key))
    d = st.read_diagram(exp / "lr=0.1", split="val", tree="split", epoch=2)
    assert (
        d.tree == "split"
        and len(d) == before.filter(run="lr=0.1", split="val", tree="split", epoch=2).height
    )


def test_the_regions_table_is_what_top_regions_finds_today(old):
    run = Run(old / "lr-study" / "lr=0.1")
    stored = pl.read_parquet(run.regions_file("val", 2))
    today = st.top_regions(run, split="val", epoch=2, top=3, k=5)
    assert_frame_equal(today, stored)


def test_the_landscape_and_the_models_read_back(old):
    run = Run(old / "lr-study" / "lr=0.1")
    land, extra = st.read_landscape(run.landscape_file(2))
    assert land.dim == 2 and extra["run"] == "lr=0.1" and extra["epoch"] == 2
    assert np.isfinite(land.loss).all()
    model, ds = run.load_model(2)
    x, y = ds.tensors("val")
    losses, _ = evaluate_losses(model, x, y)
    recorded = st.read_loss_table(run, split="val", epoch=2)["loss"].to_numpy()
    np.testing.assert_allclose(losses, recorded, rtol=1e-6, atol=1e-9)


def test_a_loop_run_finds_its_saved_in_memory_data(old):
    run = Run(old / "loop" / "run1")
    ds = run.dataset()
    man = run.read_manifest()
    assert {s: ds.fingerprint(s) for s in st.SPLITS} == {
        s: man["splits"][s]["fingerprint"] for s in st.SPLITS
    }
    graph = st.graph_for_run(run, split="train", k=3)  # from the old graph cache
    assert graph.n == man["splits"]["train"]["n"]
    assert st.compute_topology(run, k=3, progress=False)["status"].unique().to_list() == ["cached"]


def test_the_report_has_the_same_files_and_run_table(old, tmp_path):
    exp = old / "lr-study"
    index = st.write_report(exp, tmp_path / "report", title="old layout", progress=False)
    files = sorted(
        str(p.relative_to(tmp_path / "report"))
        for p in (tmp_path / "report").rglob("*")
        if p.is_file() and not p.name.startswith(".")
    )
    # The files of the old report, plus the numbers of each drawn figure beside its PNG
    # (<stem>.parquet, issue 14): one per topology and landscape figure, none elsewhere.
    tables = [f for f in files if f.endswith(".parquet")]
    assert [f for f in files if not f.endswith(".parquet")] == EXPECTED["report_files"]
    drawn = [
        f.removesuffix(".png")
        for f in EXPECTED["report_files"]
        if f.endswith(".png") and ("/topology/" in f or "/landscape/" in f)
    ]
    assert sorted(tables) == sorted(f"{stem}.parquet" for stem in drawn)
    table = run_table(find_runs(exp))
    assert_frame_equal(table, pl.DataFrame(EXPECTED["run_table"]), check_dtypes=False)
    page = index.read_text()
    assert "lr=0.1-samples-val-epoch=0002-split1" in page  # the regions' figures, from the run
