"""Replicates (seeds of a variant), named metrics, summaries over replicates and comparisons.

Oracles: numpy over the runs' stored summaries (mean, sd), the diagrams read back (metrics),
hand-worked permutation tests (3 against 3: 20 splits), and the distribution of p-values
under the null.
"""

import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from sampletopo import analysis
from sampletopo._errors import ComparisonWarning, ParameterError, RunFolderError
from sampletopo.readers import read_diagrams, read_losses
from sampletopo.replicates import (
    bootstrap_difference_ci,
    bootstrap_mean_ci,
    compare,
    metric_table,
    parse_metric,
    permutation_pvalue,
    replicate_group,
    replicate_summary,
    replicates,
    smallest_pvalue,
)
from sampletopo.runs import Run, runs_in


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """2 learning rates x 3 seeds, MLP on 400 digits, 3 epochs, topology at k = 10."""
    import torch

    from sampletopo.train import TrainConfig, train_experiment

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("rep") / "lr-seeds"
    cfg = TrainConfig(
        model="mlp",
        model_kwargs={"hidden": [16]},
        epochs=3,
        data="digits",
        device="cpu",
        milestones=[2],
        max_samples=400,
    )
    runs = train_experiment(
        cfg, out, variants={"seed": [0, 1, 2], "lr": [0.5, 0.01]}, progress=False
    )
    analysis.compute_topology(runs, k=10, progress=False)
    return out, runs


def test_seed_axis_makes_replicates(study):
    out, runs = study
    # The seed axis goes last in the names, whatever order it was given in.
    assert [r.name for r in runs] == [
        "lr=0.5,seed=0",
        "lr=0.5,seed=1",
        "lr=0.5,seed=2",
        "lr=0.01,seed=0",
        "lr=0.01,seed=1",
        "lr=0.01,seed=2",
    ]
    cfg = Run(runs[4]).read_config()
    assert (cfg["group"], cfg["seed"], cfg["variant"]) == ("lr=0.01", 1, "lr=0.01,seed=1")
    table = replicates(out)
    assert table["group"].to_list() == ["lr=0.01"] * 3 + ["lr=0.5"] * 3
    assert table["seed"].to_list() == [0, 1, 2, 0, 1, 2]
    # Different seeds really are different runs.
    tp = metric_table(out).filter(pl.col("epoch") == 3)["total_persistence"].to_numpy()
    assert len(set(np.round(tp, 12))) == 6


def test_replicate_group_names():
    assert replicate_group("lr=0.1,seed=12") == "lr=0.1"
    assert replicate_group("seed=3,skip=false") == "skip=false"
    assert replicate_group("seed=3") == "run"
    assert replicate_group("myrun") == "myrun"


def test_summary_mean_sd_equal_numpy_over_runs(study):
    out, runs = study
    stored = analysis.summarize(runs, write=False).filter(
        (pl.col("split") == "val") & (pl.col("tree") == "split")
    )
    summary = replicate_summary(out, ["total_persistence", "n_pairs", "max_persistence"])
    assert summary.height == 2 * 4 * 3  # groups x epochs (0..3) x metrics
    for lr in ("0.5", "0.01"):
        for epoch in range(4):
            rows = stored.filter(
                pl.col("run").str.starts_with(f"lr={lr},") & (pl.col("epoch") == epoch)
            )
            assert rows.height == 3
            for metric, column in [
                ("total_persistence", "total_persistence_1"),
                ("n_pairs", "n_pairs"),
                ("max_persistence", "max_persistence"),
            ]:
                x = rows[column].cast(pl.Float64).to_numpy()
                got = summary.filter(
                    (pl.col("group") == f"lr={lr}")
                    & (pl.col("epoch") == epoch)
                    & (pl.col("metric") == metric)
                ).row(0, named=True)
                assert got["n"] == 3
                assert got["mean"] == pytest.approx(np.mean(x), rel=1e-12, abs=1e-12)
                assert got["sd"] == pytest.approx(np.std(x, ddof=1), rel=1e-9, abs=1e-12)
                assert got["ci_low"] <= got["mean"] <= got["ci_high"]
                assert np.min(x) - 1e-12 <= got["ci_low"] and got["ci_high"] <= np.max(x) + 1e-12


def test_metrics_match_the_diagrams(study):
    out, runs = study
    metrics = ["pairs_above:0.05", "pairs_above_relative:0.02", "quantile:0.9", "n_pairs"]
    table = metric_table(out, metrics, split="val", tree="join")
    run = runs[1]
    d = read_diagrams(run, split="val", tree="join").filter(
        (pl.col("epoch") == 2) & pl.col("persistence").is_finite()
    )
    p = d["persistence"].to_numpy()
    losses = read_losses(run, split="val").filter(pl.col("epoch") == 2)["loss"].to_numpy()
    row = table.filter((pl.col("run") == Run(run).name) & (pl.col("epoch") == 2)).row(0, named=True)
    assert row["n_pairs"] == p.size > 5
    assert row["pairs_above:0.05"] == np.sum(p > 0.05)
    assert row["pairs_above_relative:0.02"] == np.sum(p > 0.02 * (losses.max() - losses.min()))
    assert row["quantile:0.9"] == pytest.approx(np.quantile(p, 0.9))
    # The relative threshold is neither all pairs nor none on this run (a real cut).
    assert 0 < row["pairs_above_relative:0.02"] < row["n_pairs"]


def test_metric_on_hand_diagram():
    p = np.array([0.5, 2.0, 3.0, 0.1])
    assert parse_metric("total_persistence").of(p) == pytest.approx(5.6)
    assert parse_metric("total_persistence_2").of(p) == pytest.approx(0.25 + 4 + 9 + 0.01)
    assert parse_metric("pairs_above:2").of(p) == 1  # strictly above
    assert parse_metric("pairs_above_relative:0.25").of(p, 8.0) == 1
    assert parse_metric("max_persistence").of(np.empty(0)) == 0.0
    assert parse_metric("quantile:0.5").of(p) == pytest.approx(1.25)


@pytest.mark.parametrize(
    "spec, needle",
    [
        ("total", "Got 'total'"),
        ("pairs_above", "needs a value"),
        ("pairs_above:abc", "not a number"),
        ("pairs_above:-1", ">= 0"),
        ("quantile:1.5", "in [0, 1]"),
        ("n_pairs:3", "Got 'n_pairs:3'"),
    ],
)
def test_bad_metric_is_one_error_listing_choices(spec, needle):
    with pytest.raises(ParameterError) as err:
        parse_metric(spec)
    msg = str(err.value)
    assert needle in msg
    for choice in ("total_persistence", "pairs_above:T", "pairs_above_relative:F", "quantile:Q"):
        assert choice in msg


def test_bootstrap_deterministic_under_seed():
    x = [1.03, 2.51, 2.07, 4.13, 3.29, 0.71, 5.9]
    a = bootstrap_mean_ci(x, seed=7)
    assert a == bootstrap_mean_ci(x, seed=7)
    assert a != bootstrap_mean_ci(x, seed=8)
    assert a[0] < np.mean(x) < a[1]
    assert bootstrap_mean_ci([2.0, 2.0, 2.0]) == (2.0, 2.0)
    assert all(math.isnan(v) for v in bootstrap_mean_ci([1.0]))
    d = bootstrap_difference_ci([5.0, 6.0, 7.0], [1.0, 2.0, 3.0], seed=3)
    assert d == bootstrap_difference_ci([5.0, 6.0, 7.0], [1.0, 2.0, 3.0], seed=3)
    # Each group's bootstrap mean lies within its range: the difference within [2, 6].
    assert 2.0 <= d[0] < 4.0 < d[1] <= 6.0


def test_permutation_exact_hand_case():
    # 3 vs 3: C(6, 3) = 20 splits; the observed one is the most extreme of its side, so the
    # two-sided p is 2 / 20 = 0.1, the smallest possible.
    assert permutation_pvalue([4.0, 5.0, 6.0], [1.0, 2.0, 3.0]) == pytest.approx(0.1)
    assert smallest_pvalue(3, 3) == pytest.approx(0.1)
    assert permutation_pvalue([1.0, 2.0], [1.0, 2.0]) == pytest.approx(1.0)
    assert math.isnan(permutation_pvalue([1.0], [1.0, 2.0]))


def test_permutation_clear_shift_is_significant():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 6), rng.normal(4, 1, 6)
    p = permutation_pvalue(a, b, seed=1)
    assert p < 0.05
    assert p == pytest.approx(smallest_pvalue(6, 6))  # 2 / 924: the most extreme split


def test_permutation_null_pvalues_roughly_uniform():
    rng = np.random.default_rng(2024)
    ps = np.array(
        [
            permutation_pvalue(rng.normal(size=8), rng.normal(size=8), n_permutations=999, seed=s)
            for s in range(200)
        ]
    )
    # Uniform on [0, 1]: mean 0.5, a tenth below 0.1, a twentieth below 0.05 (wide bounds).
    assert 0.42 < ps.mean() < 0.58
    assert 0.04 < np.mean(ps < 0.1) < 0.17
    assert np.mean(ps < 0.05) < 0.1
    from scipy.stats import kstest

    assert kstest(ps, "uniform").pvalue > 0.001


def test_compare_table(study):
    out, _ = study
    table = compare(out, "total_persistence", split="val", tree="split", epochs="final")
    assert table.height == 1
    row = table.row(0, named=True)
    assert (row["epoch"], row["group_a"], row["group_b"], row["n_a"], row["n_b"]) == (
        3,
        "lr=0.01",
        "lr=0.5",
        3,
        3,
    )
    mt = metric_table(out).filter(pl.col("epoch") == 3)
    a = mt.filter(pl.col("group") == "lr=0.01")["total_persistence"].to_numpy()
    b = mt.filter(pl.col("group") == "lr=0.5")["total_persistence"].to_numpy()
    assert row["difference"] == pytest.approx(a.mean() - b.mean())
    assert row["p_value"] == pytest.approx(permutation_pvalue(a, b))
    assert row["p_min"] == pytest.approx(0.1)
    assert row["ci_low"] <= row["difference"] <= row["ci_high"]
    assert "smallest p-value is 0.1" in row["verdict"]
    assert compare(out).equals(table)  # deterministic


def test_compare_one_replicate_says_so(study):
    _, runs = study
    table = compare([runs[0], runs[3]], "n_pairs", epochs="all")
    assert table.height == 4
    assert table["p_value"].null_count() == 4 and table["ci_low"].null_count() == 4
    assert "'lr=0.01' has 1 replicate and 'lr=0.5' has 1 replicate" in table["verdict"][0]


def test_compare_different_epochs_uses_common_ones(study, tmp_path):
    out, runs = study
    exp = tmp_path / "short"
    shutil.copytree(out, exp, ignore=shutil.ignore_patterns("graphs"))
    for r in ("lr=0.5,seed=0", "lr=0.5,seed=1", "lr=0.5,seed=2"):
        Run(exp / r).diagram_file("val", 3).unlink()
    with pytest.warns(ComparisonWarning) as caught:
        table = compare(exp, epochs="final")
    assert table["epoch"].to_list() == [2]
    # Every run left out is named with what it has beyond the common epochs, as ranges.
    assert str(caught[0].message) == (
        "The runs have diagrams of different epochs; only the 3 epoch(s) all of them have (0-2) "
        "are compared. Left out: lr=0.01,seed=0: 3; lr=0.01,seed=1: 3; lr=0.01,seed=2: 3."
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ComparisonWarning)
        with pytest.raises(ParameterError, match=r"epochs every run has diagrams for \(0-2\)"):
            compare(exp, epochs=[3])
    # The command says it once (its summary table does not repeat it).
    from sampletopo.cli import main

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert main(["compare", str(exp), "--n-boot", "200", "--n-permutations", "99"]) == 0
    assert [w.category for w in seen].count(ComparisonWarning) == 1
    # No epoch in common: the error lists each run's epochs and suggests what exists.
    for r in ("lr=0.01,seed=0", "lr=0.01,seed=1", "lr=0.01,seed=2"):
        for e in (0, 1, 2):
            Run(exp / r).diagram_file("val", e).unlink()
    with pytest.raises(RunFolderError) as err:
        compare(exp, epochs="final")
    msg = str(err.value)
    assert "lr=0.01,seed=0: 3; lr=0.01,seed=1: 3; lr=0.01,seed=2: 3; lr=0.5,seed=0: 0-2" in msg
    assert "--epochs" not in msg and "sampletopo record" in msg


def test_compare_across_experiments_with_clashing_names(study, tmp_path):
    out, _ = study
    other = tmp_path / "again"
    shutil.copytree(out, other, ignore=shutil.ignore_patterns("graphs"))
    table = replicates([out, other])
    assert set(table["group"].to_list()) == {
        "lr-seeds/lr=0.01",
        "lr-seeds/lr=0.5",
        "again/lr=0.01",
        "again/lr=0.5",
    }
    cmp = compare([out, other])
    assert cmp.height == 6  # 4 groups: 6 pairs
    same = cmp.filter(
        (pl.col("group_a") == "again/lr=0.01") & (pl.col("group_b") == "lr-seeds/lr=0.01")
    ).row(0, named=True)
    assert same["difference"] == 0.0 and same["p_value"] == pytest.approx(1.0)


def test_compare_bad_input(study):
    out, runs = study
    with pytest.raises(ParameterError, match="at least two groups"):
        compare(runs[:3])
    with pytest.raises(ParameterError, match="'epochs'"):
        compare(out, epochs="last")
    with pytest.raises(ParameterError, match="'confidence'"):
        compare(out, confidence=95)
    with pytest.raises(ParameterError, match="'split'"):
        compare(out, split="test")


def test_runs_without_diagrams_are_named(tmp_path, study):
    out, _ = study
    exp = tmp_path / "nodiag"
    shutil.copytree(out, exp, ignore=shutil.ignore_patterns("graphs", "topology"))
    with pytest.raises(RunFolderError, match="has no val diagrams.*sampletopo topology"):
        compare(exp)


def test_compare_cli(study, tmp_path, capsys):
    from sampletopo.cli import main

    out, _ = study
    csv = tmp_path / "cmp.csv"
    assert main(["compare", str(out), "--metric", "pairs_above:0.1", "--out", str(csv)]) == 0
    text = capsys.readouterr().out
    assert "lr=0.01 vs lr=0.5" in text and "smallest p-value is 0.1" in text
    assert text.startswith("pairs_above:0.1 of the val split's split-tree diagrams")
    back = pl.read_csv(csv)
    expect = compare(out, "pairs_above:0.1")
    # Printed with 5 significant digits, whatever the size (no mixed notations in a column).
    assert f"┆ {expect['difference'][0]:.5g} " in text
    assert back["difference"].to_list() == pytest.approx(expect["difference"].to_list())
    assert back["metric"].to_list() == ["pairs_above:0.1"]
    assert main(["compare", str(out), "--metric", "nope"]) == 2
    assert "pairs_above_relative:F" in capsys.readouterr().err


def test_figures_of_two_experiments_with_clashing_run_names(study, tmp_path):
    from sampletopo.figures import write_figure_set
    from sampletopo.runs import figure_table_file

    out, _ = study
    other = tmp_path / "again"
    shutil.copytree(out, other, ignore=shutil.ignore_patterns("graphs"))
    name = "lr=0.5,seed=1"
    pngs = write_figure_set(
        [out / name, other / name], tmp_path / "figs", formats=("png",), progress=False
    )
    names = sorted(p.name for p in pngs)
    assert f"diagrams-again-{name}-epoch=0003.png" in names
    assert f"diagrams-lr-seeds-{name}-epoch=0003.png" in names
    curve = pl.read_parquet(figure_table_file(tmp_path / "figs" / "total_persistence.png"))
    assert set(curve["run"].to_list()) == {f"again/{name}", f"lr-seeds/{name}"}
    a = curve.filter(pl.col("run") == f"again/{name}").sort("split", "tree", "epoch")
    b = curve.filter(pl.col("run") == f"lr-seeds/{name}").sort("split", "tree", "epoch")
    assert a.height == 16 and a["total_persistence_1"].equals(b["total_persistence_1"])
    heat = pl.read_parquet(figure_table_file(tmp_path / "figs" / "heatmap-val-split.png"))
    assert set(heat["run"].to_list()) == {f"again/{name}", f"lr-seeds/{name}"}
    # Calls that name runs by folder alone still refuse the clash, naming the way out.
    with pytest.raises(RunFolderError, match="label such runs experiment/run"):
        analysis.summarize([out / name, other / name])


# ---------------------------------------------------------------------------------------------
# Exports


def test_export_tables_read_back(study, tmp_path, capsys):
    from sampletopo.cli import main
    from sampletopo.export import export_table, write_table

    out, runs = study
    f = tmp_path / "summaries.csv"
    assert main(["export", str(out), "--what", "summaries", "--out", str(f)]) == 0
    back = pl.read_csv(f).sort("run", "split", "tree", "epoch")
    expect = analysis.summarize(runs, write=False).sort("run", "split", "tree", "epoch")
    assert back.height == expect.height == 6 * 2 * 2 * 4
    assert back["run"].to_list() == expect["run"].to_list()
    assert np.allclose(back["total_persistence_1"], expect["total_persistence_1"], rtol=1e-12)

    f = tmp_path / "diagrams.parquet"
    assert main(["export", str(out), "--what", "diagrams", "--out", str(f)]) == 0
    back = pl.read_parquet(f)
    assert back.height == read_diagrams(runs).height
    assert back.filter(pl.col("run") == "lr=0.5,seed=2")["persistence"].sum() == pytest.approx(
        read_diagrams(runs[2])["persistence"].sum()
    )
    # --split/--tree keep those rows of summaries and diagrams.
    argv = ["export", str(out), "--what", "diagrams", "--split", "val", "--tree", "join"]
    assert main([*argv, "--out", str(f)]) == 0
    assert pl.read_parquet(f).height == read_diagrams(runs, split="val", tree="join").height > 0
    f2 = tmp_path / "val.csv"
    assert (
        main(["export", str(out), "--what", "summaries", "--split", "val", "--out", str(f2)]) == 0
    )
    assert pl.read_csv(f2).height == 6 * 2 * 4 and set(pl.read_csv(f2)["split"]) == {"val"}

    f = tmp_path / "cmp.parquet"
    rc = main(["export", str(out), "--what", "comparisons", "--metric", "n_pairs", "--out", str(f)])
    assert rc == 0 and pl.read_parquet(f).equals(compare(out, "n_pairs"))

    f = tmp_path / "rep.csv"
    argv = ["export", str(out), "--what", "replicates", "--epochs", "final", "--out", str(f)]
    assert main(argv) == 0
    back = pl.read_csv(f)
    expect = replicate_summary(out, epochs="final")
    assert back["mean"].to_list() == pytest.approx(expect["mean"].to_list())
    assert back["runs"][0] == " ".join(expect["runs"][0])

    # Regions: list columns become space-separated numbers in CSV, stay lists in Parquet.
    assert main(["samples", str(runs[0]), "--epoch", "3", "--top", "2"]) == 0
    table = export_table(out, "regions")
    assert table.height == 2 and set(table["run"]) == {"lr=0.5,seed=0"}
    assert table["epoch"].to_list() == [3, 3] and table["split"].to_list() == ["val", "val"]
    write_table(table, tmp_path / "regions.csv")
    csv = pl.read_csv(tmp_path / "regions.csv")
    assert csv["members"][0] == " ".join(str(m) for m in table["members"][0])
    capsys.readouterr()


def test_export_bad_input(study, tmp_path, capsys):
    from sampletopo.cli import main
    from sampletopo.export import export_table, write_table

    out, runs = study
    with pytest.raises(ParameterError, match="'what'.*'summaries'"):
        export_table(out, "sumaries")
    with pytest.raises(ParameterError, match="Name the file t.csv"):
        write_table(pl.DataFrame({"a": [1]}), tmp_path / "t.parquet", format="csv")
    assert main(["export", str(out), "--what", "diagrams", "--out", str(tmp_path / "t.txt")]) == 2
    assert ".csv or .parquet" in capsys.readouterr().err
    argv = ["export", str(out), "--what", "summaries", "--metric", "n_pairs", "--out", "x.csv"]
    assert main(argv) == 2
    assert "--metric" in capsys.readouterr().err
    # --split suits summaries and diagrams too: the error for regions says so (it said
    # "replicates or comparisons" only).
    argv = ["export", str(out), "--what", "regions", "--split", "val", "--out", "x.csv"]
    assert main(argv) == 2
    assert (
        "must be summaries, replicates, diagrams or comparisons when --split is given. Got "
        "'regions'" in capsys.readouterr().err
    )
    with pytest.raises(RunFolderError, match="No regions.*sampletopo samples"):
        export_table(runs[3], "regions")


def test_figure_curves_are_replicate_means_with_ci_bands(study, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.collections import PolyCollection

    from sampletopo.figures import write_figure_set
    from sampletopo.plotting import _topology as P
    from sampletopo.runs import figure_table_file

    out, runs = study
    two = [runs[0], runs[1], runs[3], runs[4]]  # 2 seeds per variant: fewer figures to draw
    pngs = write_figure_set(two, tmp_path / "figs", formats=("png",), progress=False)
    table = pl.read_parquet(figure_table_file(pngs[0]))
    assert set(table["run"]) == {"lr=0.01 (mean of 2)", "lr=0.5 (mean of 2)"}
    stored = analysis.summarize(two, write=False)
    x = stored.filter(
        pl.col("run").str.starts_with("lr=0.5,")
        & (pl.col("split") == "val")
        & (pl.col("tree") == "split")
        & (pl.col("epoch") == 3)
    )["total_persistence_1"].to_numpy()
    row = table.filter(
        (pl.col("run") == "lr=0.5 (mean of 2)")
        & (pl.col("split") == "val")
        & (pl.col("tree") == "split")
        & (pl.col("epoch") == 3)
    ).row(0, named=True)
    assert row["n"] == 2 and row["total_persistence_1"] == pytest.approx(x.mean())
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(bootstrap_mean_ci(x))
    # Heatmap rows are variants, pooling the pairs of their replicates (said in the title).
    heat = pl.read_parquet(figure_table_file(tmp_path / "figs" / "heatmap-val-split.png"))
    assert set(heat["run"]) == {"lr=0.01 (2 replicates pooled)", "lr=0.5 (2 replicates pooled)"}
    pooled = heat.filter((pl.col("run") == "lr=0.5 (2 replicates pooled)") & (pl.col("epoch") == 3))
    n_pairs = stored.filter(
        pl.col("run").str.starts_with("lr=0.5,")
        & (pl.col("split") == "val")
        & (pl.col("tree") == "split")
        & (pl.col("epoch") == 3)
    )["n_pairs"]
    assert pooled["pairs"].sum() == n_pairs.sum() > 0
    # The figure: one shaded band per variant and panel, spanning the intervals.
    fig = P.total_persistence_figure(table, p=1)
    bands = [c for ax in fig.axes for c in ax.collections if c.get_gid() == P.BAND_GID]
    assert len(bands) == 2 * 4 and all(isinstance(b, PolyCollection) for b in bands)
    val_split = [a for a in fig.axes if a.get_title().startswith("val: split")][0]
    ys = [b.get_paths()[0].vertices[:, 1] for b in val_split.collections if b.get_gid()]
    part = table.filter((pl.col("split") == "val") & (pl.col("tree") == "split"))
    lo, hi = part["ci_low"].min(), part["ci_high"].max()
    lim = val_split.get_ylim()
    assert min(y.min() for y in ys) == pytest.approx(max(lo, lim[0]))
    assert max(y.max() for y in ys) == pytest.approx(min(hi, lim[1]))
    assert "mean over its replicates" in P.figure_data(fig).caption


def test_figure_heatmaps_say_which_epochs_runs_that_stopped_early_leave_out(study, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from sampletopo._errors import FigureWarning
    from sampletopo.figures import write_figure_set
    from sampletopo.plotting._topology import read_caption

    out, _ = study
    exp = tmp_path / "stopped"
    shutil.copytree(out, exp, ignore=shutil.ignore_patterns("graphs", "lr=0.01,seed=2",
                                                            "lr=0.5,seed=2"))  # fmt: skip
    for split in ("train", "val"):  # as if lr=0.5,seed=1 had diverged after epoch 2
        Run(exp / "lr=0.5,seed=1").diagram_file(split, 3).unlink()
    with pytest.warns(FigureWarning) as caught:
        write_figure_set(exp, tmp_path / "figs", formats=("png",), progress=False)
    said = (
        "Heatmap epochs (and the diagram figures' epoch) are those every run has (1 and 2): "
        "lr=0.5,seed=1 (stopped after "
        "epoch 2). The default epoch(s) 3 of the other runs are left out (draw the longer "
        "runs on their own to see them)."
    )
    assert [str(w.message) for w in caught if "Heatmap epochs" in str(w.message)] == [said]
    heat = pl.read_parquet(tmp_path / "figs" / "heatmap-val-split.parquet")
    assert sorted(heat["epoch"].unique().to_list()) == [1, 2]
    assert f"{said} Sample graph: " in read_caption(tmp_path / "figs" / "heatmap-val-split.png")
    # Every run with every epoch: no such warning, no such sentence.
    with warnings.catch_warnings():
        warnings.simplefilter("error", FigureWarning)
        write_figure_set(
            [exp / "lr=0.5,seed=0", exp / "lr=0.01,seed=0"], tmp_path / "all", formats=("png",),
            progress=False,
        )  # fmt: skip
    assert "Heatmap epochs are" not in read_caption(tmp_path / "all" / "heatmap-val-split.png")


def test_report_marks_diverged_runs_and_says_which_epoch_it_compares(study, tmp_path):
    from sampletopo import report

    out, _ = study
    exp = tmp_path / "diverged"
    shutil.copytree(out, exp, ignore=shutil.ignore_patterns("graphs"))
    bad = Run(exp / "lr=0.5,seed=2")
    for split in ("train", "val"):  # epoch 3's losses are NaN: no diagrams for it
        bad.diagram_file(split, 3).unlink()
        t = pl.read_parquet(bad.loss_file(split, 3))
        t.with_columns(pl.lit(float("nan")).cast(t.schema["loss"]).alias("loss")).write_parquet(
            bad.loss_file(split, 3)
        )
    runs = runs_in(exp)
    summary = analysis.summarize(runs, write=False).with_columns(
        exploding=(pl.col("run") == "lr=0.01,seed=0") & (pl.col("epoch") == 1)
    )
    table = report.run_table(runs, summary=summary)
    rows = dict(zip(table["run"], table.select("final epoch", "loss exploded at epochs",
                                               "diverged at epoch").rows(), strict=True))  # fmt: skip
    # Before: "None" in every healthy run's cell, and nothing said the NaN run diverged.
    assert rows["lr=0.5,seed=2"] == (2, "no", "3")
    assert rows["lr=0.01,seed=0"] == (3, "1", "no")
    assert rows["lr=0.5,seed=0"] == (3, "no", "no")
    with pytest.warns(ComparisonWarning):
        comparison = report._replicate_comparison(runs)
    assert comparison is not None and comparison["epoch"].to_list() == [2]
    assert report._comparison_note(runs, comparison) == (
        "Compared at epoch 2, the last epoch every run has validation diagrams for: "
        "lr=0.5,seed=2 (diverged at epoch 3) stop there, while 5 run(s) go on to epoch 3."
    )
    assert report._comparison_note(study[1], report._replicate_comparison(study[1])) == ""


def test_report_shows_the_comparison_with_its_verdict(study, tmp_path):
    from sampletopo import report

    out, runs = study
    table = report._replicate_comparison(runs)
    assert table is not None and table.height == 1
    assert table["p_value"][0] == pytest.approx(compare(out)["p_value"][0])
    assert report._replicate_comparison([runs[0], runs[3]]) is None  # no replicates
    res = report.ExperimentResults(
        name="lr-seeds", runs=tuple(runs), config=None, run_configs=(), graph=None,
        summary=pl.DataFrame({"run": ["x"]}), topology=(), landscape=(), landscape_table=None,
        folders={}, regions=None, comparison=table,
    )  # fmt: skip
    html = report.render_report(report.report_context([res], page_dir=tmp_path), page_dir=tmp_path)
    assert "Variants compared over their replicates" in html
    assert "smallest p-value is 0.1" in html and "<th>verdict</th>" in html


def test_runs_written_before_groups_resume_and_join_their_group(study, tmp_path):
    """A run config without a ``group`` entry (written before replicates existed) resumes
    without a settings clash, and is grouped by its name."""
    import tomllib

    from sampletopo._runconfig import write_toml
    from sampletopo.train import TrainConfig, train_experiment

    out, _ = study
    copy = tmp_path / "old"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("graphs"))
    path = copy / "lr=0.5,seed=1" / "config.toml"
    cfg = tomllib.loads(path.read_text())
    del cfg["group"]
    write_toml(path, cfg)
    same = TrainConfig(
        model="mlp", model_kwargs={"hidden": [16]}, epochs=3, data="digits", device="cpu",
        milestones=[2], max_samples=400,
    )  # fmt: skip
    train_experiment(same, copy, variants={"lr": [0.5, 0.01], "seed": [0, 1, 2]}, progress=False)
    assert "group" not in tomllib.loads(path.read_text())  # nothing was rewritten
    table = replicates(copy)
    assert table.filter(pl.col("run") == "lr=0.5,seed=1").row(0, named=True)["group"] == "lr=0.5"


def test_sensitivity_rows_are_compare_per_graph_setting(study, tmp_path, capsys):
    from sampletopo.cli import main
    from sampletopo.replicates import sensitivity
    from sampletopo.runs import graph_runs

    out, runs = study
    before = {p: p.read_bytes() for r in runs for p in sorted((Path(r) / "topology").rglob("*.*"))}
    # k=10 lies in topology/ itself (computed first), k=5 and standardized k=10 beside it.
    assert main(["topology", str(out), "--k", "5", "--features", "raw", "standardized",
                 "--no-progress"]) == 0  # fmt: skip
    argv = ["topology", str(out), "--k", "10", "--features", "standardized", "--no-progress"]
    assert main(argv) == 0
    assert Run(runs[0]).topology_settings() == [
        "",
        "k=10,features=standardized",
        "k=5,features=raw",
        "k=5,features=standardized",
    ]
    assert {p: p.read_bytes() for p in before} == before  # the first setting untouched
    opts = {"epochs": "final", "n_boot": 500, "n_permutations": 999}
    table = sensitivity(out, "n_pairs", k=[5, 10], features=["raw", "standardized"], **opts)
    assert table.select("k", "features").unique(maintain_order=True).rows() == [
        (5, "raw"), (10, "raw"), (5, "standardized"), (10, "standardized")
    ]  # fmt: skip
    for (k, f), part in table.group_by(["k", "features"], maintain_order=True):
        want = compare(graph_runs(out, k=k, features=f), "n_pairs", **opts)
        assert part["pca_components"].null_count() == part.height  # no PCA features here
        assert_frame_equal(part.drop("k", "features", "pca_components"), want)
    # k=10 raw is topology/ itself: what a plain compare reads.
    assert_frame_equal(
        table.filter((pl.col("k") == 10) & (pl.col("features") == "raw")).drop(
            "k", "features", "pca_components"
        ),
        compare(out, "n_pairs", **opts),
    )
    # Settings differ: the pair counts of a k=5 graph are not those of a k=10 graph.
    assert table["mean_a"].n_unique() > 1
    # The command: one setting with --k, all with --sensitivity, the same numbers as a file.
    csv = tmp_path / "sens.csv"
    argv = ["compare", str(out), "--metric", "n_pairs", "--epochs", "final", "--n-boot", "500",
            "--n-permutations", "999"]  # fmt: skip
    assert main([*argv, "--k", "5"]) == 0
    assert f"{table['difference'][0]:.5g}" in capsys.readouterr().out
    assert main([*argv, "--sensitivity", "--k", "5", "10", "--features", "raw", "standardized",
                 "--out", str(csv)]) == 0  # fmt: skip
    assert_frame_equal(pl.read_csv(csv, schema=table.schema), table)
    assert main([*argv, "--k", "5", "10"]) == 2
    assert "--sensitivity" in capsys.readouterr().err
    # The figure: one line per features value, the differences against k, the table beside.
    import matplotlib.pyplot as plt

    from sampletopo.plotting import plot_sensitivity

    ax = plot_sensitivity(table)
    lines = {c.get_label(): c.lines[0] for c in ax.containers}
    assert sorted(lines) == ["features=raw", "features=standardized"]
    for f in ("raw", "standardized"):
        part = table.filter(pl.col("features") == f).sort("k")
        assert list(lines[f"features={f}"].get_xdata()) == [5, 10]
        np.testing.assert_array_equal(lines[f"features={f}"].get_ydata(), part["difference"])
    plt.close(ax.figure)
    png = tmp_path / "sens.png"
    assert main([*argv, "--sensitivity", "--k", "5", "10", "--figure", str(png)]) == 0
    assert png.stat().st_size > 0
    assert_frame_equal(
        pl.read_parquet(tmp_path / "sens.parquet"), table.filter(pl.col("features") == "raw")
    )
    assert main([*argv, "--figure", str(png)]) == 2
    # A setting never computed: one error naming it.
    with pytest.raises(RunFolderError, match="graph setting asked, k=7,features=raw; stored"):
        compare(graph_runs(out, k=7), "n_pairs", **opts)
    # The report draws the same sensitivity (total persistence, val split tree, final epoch)
    # over the four stored settings, its table beside the figure.
    from sampletopo.report import write_report

    report = tmp_path / "report"
    write_report(out, report, progress=False, metrics=["n_pairs"])
    for metric, stem in (("total_persistence", "sensitivity"), ("n_pairs", "sensitivity-n_pairs")):
        tables = list(report.rglob(f"{stem}.parquet"))
        assert len(tables) == 1
        want = sensitivity(out, metric, k=[5, 10], features=["raw", "standardized"],
                           split="val", tree="split", epochs="final")  # fmt: skip
        assert_frame_equal(
            pl.read_parquet(tables[0]).sort("k", "features"),
            want.drop("verdict", strict=False).sort("k", "features"),
        )
    page = (report / "index.html").read_text()
    # Under a heading of its own, after the comparison table (it was the last figure of the
    # page, after the per-run diagrams, with no heading).
    head = page.index("<h3>Graph sensitivity: the comparison over kNN graph settings</h3>")
    assert page.index("<h3>Variants compared") < head < page.index("<h3>Sample space")
    assert head < page.index("Graph sensitivity: the difference") < page.index("<h3>Sample space")
    assert "mean n_pairs (validation set, split tree) at epoch 3" in page
    # A run that lacks a setting the others have: no figure, one line saying so.
    short = tmp_path / "short"
    shutil.copytree(out, short, ignore=shutil.ignore_patterns("graphs"))
    shutil.rmtree(Path(short / "lr=0.5,seed=1" / "topology" / "k=5,features=standardized"))
    from sampletopo.report import _sensitivity_figures

    pngs, note = _sensitivity_figures(runs_in(short), tmp_path / "sfig")
    assert pngs == []
    assert note == (
        "Not every run has every kNN graph setting: lr=0.5,seed=1 lack some of the 4 stored "
        "(k=5, features=raw; k=5, features=standardized; k=10, features=raw; k=10, "
        "features=standardized), so the figure is left out (it needs a full k x features grid "
        "of settings that every run holds). Compute the others with `sampletopo topology` on "
        "those runs."
    )


def test_topology_puts_the_default_setting_in_topology_itself(study, tmp_path):
    from sampletopo.cli import main

    out, runs = study
    copy = tmp_path / "exp"
    shutil.copytree(runs[0], copy / Path(runs[0]).name, ignore=shutil.ignore_patterns("topology"))
    assert main(["topology", str(copy), "--k", "5", "20", "--splits", "val", "--no-progress"]) == 0
    run = Run(copy / Path(runs[0]).name)
    assert run.read_meta()[0]["val"]["k"] == 20  # asked second, computed first
    assert run.for_graph(k=5).read_meta()[0]["val"]["k"] == 5
    assert run.topology_settings() == ["", "k=5,features=raw"]


def test_figures_draw_the_graph_setting_asked(study, tmp_path):
    from sampletopo.cli import main
    from sampletopo.readers import read_diagrams
    from sampletopo.runs import graph_runs

    out, runs = study
    analysis.compute_topology(out, k=5, progress=False)  # both splits: figures draw both
    name = Path(runs[0]).name
    drawn = {}
    for k in (5, 10):
        d = tmp_path / f"k{k}"
        argv = ["figures", str(out), "--k", str(k), "--out", str(d), "--formats", "png"]
        assert main([*argv, "--no-progress"]) == 0
        t = pl.read_parquet(d / f"diagrams-{name}-epoch=0003.parquet")
        drawn[k] = t.filter((pl.col("split") == "val") & (pl.col("tree") == "split"))
    for k in (5, 10):
        (run,) = [r for r in graph_runs(out, k=k) if r.name == name]
        want = read_diagrams(run, split="val", tree="split").filter(pl.col("epoch") == 3)
        assert sorted(drawn[k]["persistence"].to_list()) == sorted(want["persistence"].to_list())
    assert sorted(drawn[5]["persistence"].to_list()) != sorted(drawn[10]["persistence"].to_list())
    assert main(["figures", str(out), "--k", "5", "10"]) == 2


def test_figures_name_the_graph_setting_they_show(study, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from sampletopo.figures import write_figure_set
    from sampletopo.plotting import _topology as P
    from sampletopo.runs import graph_runs

    out, runs = study
    analysis.compute_topology(runs[:2], k=5, progress=False)  # k=10 is in topology/ itself
    titles: dict[str, str] = {}
    save = P.save

    def spy(fig, path, formats=("png", "pdf")):  # the real save, noting each title
        titles[path.name] = fig.get_suptitle()
        return save(fig, path, formats)

    monkeypatch.setattr(P, "save", spy)
    for k in (5, 10):
        titles.clear()
        d = tmp_path / f"k{k}"
        pngs = write_figure_set(graph_runs(runs[:2], k=k), d, formats=("png",), epochs=[3],
                                progress=False)  # fmt: skip
        # Before: the same captions and titles for every setting.
        for png in pngs:
            assert P.read_caption(png).endswith(
                f" Sample graph: kNN graph with k={k} on raw features."
            ), png.name
            title = titles[png.stem]
            # The title names the setting only when it is not the one in topology/ itself.
            assert title.endswith(" (kNN k=5, raw)") == (k == 5), title
        assert len(pngs) == 8  # 2 curves, 4 heatmaps, 2 runs' diagrams
    assert titles["total_persistence"] == (
        "Total persistence (p=1) of the per-sample loss, mean over replicates (95 % CI shaded)"
    )


def _numpy_metric(run, split, tree, epoch, fn):
    """One run's metric at one epoch, computed here from its diagram read back."""
    d = read_diagrams(run, split=split, tree=tree).filter(
        (pl.col("epoch") == epoch) & pl.col("persistence").is_finite()
    )
    return fn(d["persistence"].to_numpy())


def test_figures_draw_named_metrics_against_epoch(study, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from sampletopo.figures import _metric_curves, write_figure_set
    from sampletopo.plotting import _topology as P
    from sampletopo.runs import figure_table_file

    out, runs = study
    two = [runs[0], runs[1], runs[3], runs[4]]
    pngs = write_figure_set(
        two, tmp_path / "figs", formats=("png",), progress=False, epochs=[3],
        metrics=["pairs_above:0.05", "quantile:0.9", "total_persistence"],
    )  # fmt: skip
    names = sorted(p.name for p in pngs if p.name.startswith("metric-"))
    assert names == ["metric-pairs_above=0.05.png", "metric-quantile=0.9.png"]
    table = pl.read_parquet(figure_table_file(tmp_path / "figs" / "metric-pairs_above=0.05.png"))
    assert set(table["run"]) == {"lr=0.01 (mean of 2)", "lr=0.5 (mean of 2)"}
    assert table.height == 2 * 2 * 2 * 4  # variants x splits x trees x epochs 0-3
    for split, tree, epoch in [("val", "split", 3), ("train", "join", 1)]:
        x = np.array(
            [_numpy_metric(r, split, tree, epoch, lambda p: (p > 0.05).sum()) for r in two[:2]],
            dtype=float,
        )
        row = table.filter(
            (pl.col("run") == f"{Run(two[0]).read_config()['group']} (mean of 2)")
            & (pl.col("split") == split) & (pl.col("tree") == tree) & (pl.col("epoch") == epoch)
        ).row(0, named=True)  # fmt: skip
        assert row["pairs_above:0.05"] == pytest.approx(x.mean())
        assert (row["ci_low"], row["ci_high"]) == pytest.approx(bootstrap_mean_ci(x))
    assert table["pairs_above:0.05"].max() > 0  # not a table of zeros
    cap = P.read_caption(tmp_path / "figs" / "metric-quantile=0.9.png")
    assert cap.startswith("0.9-quantile of the finite persistences in each persistence diagram")
    # One run per variant: the runs themselves, each value numpy's on its diagram.
    single = _metric_curves(
        [Run(runs[0]), Run(runs[3])], [Run(runs[0]).name, Run(runs[3]).name],
        [parse_metric("quantile:0.9")], analysis.summarize([runs[0], runs[3]], write=False),
        None,
    )["quantile:0.9"]  # fmt: skip
    got = single.filter(
        (pl.col("run") == Run(runs[3]).name) & (pl.col("split") == "val")
        & (pl.col("tree") == "join") & (pl.col("epoch") == 2)
    ).row(0, named=True)  # fmt: skip
    want = _numpy_metric(runs[3], "val", "join", 2, lambda p: np.quantile(p, 0.9))
    assert got["quantile:0.9"] == pytest.approx(want)
    assert got["mean_loss"] == pytest.approx(
        read_losses(runs[3], split="val").filter(pl.col("epoch") == 2)["loss"].mean()
    )


def test_figures_metrics_flag_refuses_an_unknown_metric(study, tmp_path, capsys):
    from sampletopo.cli import main

    out, _ = study
    argv = ["figures", str(out), "--out", str(tmp_path / "f"), "--metrics", "pairs_above"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "'pairs_above' needs a value after a colon" in err and "quantile:Q" in err
    assert not (tmp_path / "f").exists()


def test_report_and_export_read_the_graph_setting_asked(study, tmp_path):
    from sampletopo.cli import main
    from sampletopo.report import _replicate_comparison
    from sampletopo.runs import figure_table_file, graph_runs

    out, _ = study
    copy = tmp_path / "lr-seeds"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("figures", "report*"))
    assert main(["topology", str(copy), "--k", "6", "--no-progress"]) == 0
    k6 = graph_runs(copy, k=6)
    want = analysis.summarize(k6, write=False).sort("run", "split", "tree", "epoch")
    plain = analysis.summarize(copy, write=False).sort("run", "split", "tree", "epoch")
    assert not np.allclose(want["total_persistence_1"], plain["total_persistence_1"])
    # export --k 6: the k=6 summaries and diagrams, not those of topology/ itself.
    csv = tmp_path / "s.csv"
    assert main(["export", str(copy), "--what", "summaries", "--k", "6", "--out", str(csv)]) == 0
    got = pl.read_csv(csv).sort("run", "split", "tree", "epoch")
    np.testing.assert_allclose(got["total_persistence_1"], want["total_persistence_1"])
    # ... and the file says so, on every row.
    assert got.select("k", "features").unique().rows() == [(6, "raw")]
    assert got["pca_components"].null_count() == got.height
    pq = tmp_path / "d.parquet"
    assert main(["export", str(copy), "--what", "diagrams", "--k", "6", "--out", str(pq)]) == 0
    assert pl.read_parquet(pq).height == sum(read_diagrams(r).height for r in k6)
    argv = ["export", str(copy), "--what", "regions", "--k", "6", "--out", str(csv)]
    assert main(argv) == 2
    # report --k 6 --metrics n_pairs: figures, summary and comparison of the k=6 setting.
    rep = tmp_path / "rep"
    argv = ["report", str(copy), "--k", "6", "--metrics", "n_pairs", "--out", str(rep),
            "--epochs", "3", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    topo = rep / "figures" / "lr-seeds" / "topology"
    drawn = pl.read_parquet(figure_table_file(topo / "metric-n_pairs.png"))
    row = drawn.filter(
        (pl.col("run") == "lr=0.5 (mean of 3)") & (pl.col("split") == "val")
        & (pl.col("tree") == "split") & (pl.col("epoch") == 3)
    ).row(0, named=True)  # fmt: skip
    x = want.filter(
        pl.col("run").str.starts_with("lr=0.5,") & (pl.col("split") == "val")
        & (pl.col("tree") == "split") & (pl.col("epoch") == 3)
    )["n_pairs"]  # fmt: skip
    assert row["n"] == 3 and row["n_pairs"] == pytest.approx(x.mean())
    html = (rep / "index.html").read_text()
    assert "kNN graph train: k=6, features=raw; val: k=6, features=raw" in html
    # The comparison names the graph too (it is another setting than topology/ itself).
    assert "split-tree diagrams (kNN graph train: k=6, features=raw; val: k=6" in html
    table = _replicate_comparison(k6, ["n_pairs"])
    assert table is not None and table["metric"].to_list() == ["total_persistence", "n_pairs"]
    assert table["mean_b"][1] == pytest.approx(x.mean())  # b = lr=0.5
    assert "<td>n_pairs</td>" in html
    assert main(["report", str(copy), "--k", "6", "--metrics", "top:3", "--out", str(rep)]) == 2


def test_samples_and_audit_use_the_pca_size_of_the_topology(study, tmp_path):
    from sampletopo.analysis import graph_for_run
    from sampletopo.audit import audit_run
    from sampletopo.cli import main
    from sampletopo.samples import top_regions

    out, runs = study
    copy = tmp_path / "exp"
    shutil.copytree(runs[0], copy / Path(runs[0]).name, ignore=shutil.ignore_patterns("topology"))
    run = copy / Path(runs[0]).name
    argv = ["topology", str(run), "--features", "pca", "--pca-components", "5", "--no-progress"]
    assert main(argv) == 0
    graphs = sorted((copy / "graphs").iterdir())
    # samples --pca-components 5 finds the regions on that 5-axis graph.
    pq = tmp_path / "r.parquet"
    argv = ["samples", str(run), "--epoch", "3", "--features", "pca", "--pca-components", "5",
            "--out", str(pq)]  # fmt: skip
    assert main(argv) == 0
    g5 = graph_for_run(run, split="val", features="pca", pca_components=5)
    want = top_regions(run, split="val", epoch=3, graph=g5)
    assert pl.read_parquet(pq)["members"].to_list() == want["members"].to_list()
    # The audit builds the graph its diagrams were computed on: no other graph is made.
    audit_run(run, split="train", methods=["topology"], progress=False)
    assert sorted((copy / "graphs").iterdir()) == graphs


def test_sensitivity_of_pca_features_carries_the_pca_size(study, tmp_path, capsys):
    """The sensitivity table, figure legend and caption name the PCA size; the caption's command
    reads that setting; compare --figure and the report write the same caption and colours."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from sampletopo.cli import main
    from sampletopo.plotting import plot_sensitivity
    from sampletopo.plotting._topology import read_caption, sensitivity_caption
    from sampletopo.replicates import sensitivity
    from sampletopo.report import _sensitivity_figures
    from sampletopo.runs import find_runs, graph_runs

    out, _ = study
    copy = tmp_path / "lr-seeds"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("figures", "report*", "k=*"))
    argv = ["topology", str(copy), "--k", "5", "10", "--features", "raw", "pca",
            "--pca-components", "5", "--splits", "val", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    table = sensitivity(copy, k=[5, 10], features=["pca", "raw"], pca_components=5)
    assert table.select("k", "features", "pca_components").rows() == [
        (5, "pca", 5), (10, "pca", 5), (5, "raw", None), (10, "raw", None)
    ]  # fmt: skip
    for (k, f), part in table.group_by(["k", "features"], maintain_order=True):
        want = compare(graph_runs(copy, k=k, features=f, pca_components=5), "total_persistence")
        assert_frame_equal(part.drop("k", "features", "pca_components"), want)
    # The default 50 axes were not computed: one error naming pca=50 and the stored size.
    with pytest.raises(RunFolderError) as e:
        sensitivity(copy, k=[5], features=["raw", "pca"])
    assert "the graph setting asked, k=5,features=pca,pca=50 (--pca-components defaults" in str(
        e.value
    )
    assert "Read a stored one with --k 5 --features pca --pca-components 5" in str(e.value)
    # The legend and colours: one fixed order and colour per features value, whatever the
    # order of the table (compare keeps the order asked, the report sorts).
    pal = sns.color_palette("colorblind", 10)
    for t in (table, table.reverse()):
        ax = plot_sensitivity(t)
        labels = [c.get_label() for c in ax.containers]
        assert labels == ["features=raw", "features=pca (5 axes)"]
        raw, pca = (c.lines[0] for c in ax.containers)
        assert raw.get_color() == pal[0] and pca.get_color() == pal[2]
        np.testing.assert_array_equal(
            pca.get_ydata(), table.filter(pl.col("features") == "pca").sort("k")["difference"]
        )
        first = table.row(0, named=True)
        assert ax.get_title() == (
            f"validation set, split tree\ndifference ({first['group_a']} - {first['group_b']}, "
            "epoch 3) and its interval"
        )
        plt.close(ax.figure)
    # compare --sensitivity --figure: the table and caption beside the figure.
    png = tmp_path / "sens.png"
    argv = ["compare", str(copy), "--sensitivity", "--k", "5", "10", "--features", "pca", "raw",
            "--pca-components", "5", "--figure", str(png)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(
        "total_persistence of the val split's split-tree diagrams, difference per graph setting:"
    )
    assert "k=5,features=pca,pca=5, epoch 3" in printed
    assert_frame_equal(pl.read_parquet(tmp_path / "sens.parquet"), table)
    caption = read_caption(png)
    assert caption == sensitivity_caption(table)
    assert "for k = 5, 10 and features raw, pca (5 axes)" in caption
    assert caption.endswith("--k K --features F` (add --pca-components 5 for pca).")
    # The caption's command, for the k=5 PCA point, prints that point's difference.
    cmd = caption.split("`")[1].replace("RUNS", str(copy)).replace("--k K", "--k 5")
    cmd = cmd.replace("--features F", "--features pca --pca-components 5")
    assert main(cmd.split()[1:]) == 0
    assert f"{table['difference'][0]:.5g}" in capsys.readouterr().out  # as compare prints
    # The report's figure: the same rows (raw first) and the same caption.
    (fig,), note = _sensitivity_figures([r.path for r in find_runs(copy)], tmp_path / "report")
    assert read_caption(fig) == caption and note == ""
    report_table = pl.read_parquet(tmp_path / "report" / "sensitivity.parquet")
    assert report_table.select("k", "features", "pca_components").rows() == [
        (5, "raw", None), (10, "raw", None), (5, "pca", 5), (10, "pca", 5)
    ]  # fmt: skip


def test_comparison_note_names_each_later_final_epoch_and_gaps(study, tmp_path):
    """Runs that go on past the compared epoch to different epochs are not all said to reach
    the last one ("3 run(s) go on to epoch 4" when one stopped at 1), and a gap (no run ends
    at the compared epoch) names no run as stopping there."""
    from sampletopo import report

    out, _ = study
    exp = tmp_path / "ragged"
    shutil.copytree(out, exp, ignore=shutil.ignore_patterns("graphs"))
    short, mid = Run(exp / "lr=0.5,seed=2"), Run(exp / "lr=0.01,seed=1")
    for split in ("train", "val"):
        for e in (2, 3):
            short.diagram_file(split, e).unlink()  # stops after epoch 1
        mid.diagram_file(split, 3).unlink()  # stops after epoch 2
    runs = runs_in(exp)
    at1 = pl.DataFrame({"epoch": [1]})
    assert report._comparison_note(runs, at1) == (
        "Compared at epoch 1, the last epoch every run has validation diagrams for: "
        "lr=0.5,seed=2 stop there, while 5 run(s) go on to epochs 2 and 3."
    )
    for split in ("train", "val"):  # short has 0, 1 and 3: compared at 1 by a gap
        shutil.copy(out / "lr=0.5,seed=2" / short.diagram_file(split, 3).relative_to(exp / "lr=0.5,seed=2"),
                    short.diagram_file(split, 3))  # fmt: skip
    assert report._comparison_note(runs_in(exp), at1) == (
        "Compared at epoch 1, the last epoch every run has validation diagrams for; "
        "6 run(s) go on to epochs 2 and 3."
    )


def test_small_input_checks_of_the_readers(study, tmp_path, capsys):
    from sampletopo.cli import main
    from sampletopo.replicates import _metrics

    out, runs = study
    # --pca-components without --features pca would read another setting silently.
    for argv in (
        ["export", str(out), "--what", "summaries", "--out", str(tmp_path / "s.csv")],
        ["figures", str(out), "--out", str(tmp_path / "f")],
        ["samples", str(runs[0]), "--epoch", "3"],
    ):
        assert main([*argv, "--pca-components", "8"]) == 2
        assert "'--pca-components' flag" in capsys.readouterr().err
    assert not (tmp_path / "s.csv").exists() and not (tmp_path / "f").exists()
    # One metric written two ways is one metric.
    with pytest.raises(ParameterError, match="distinct metrics"):
        _metrics(["pairs_above:0.5", "pairs_above:.5"])
    # A group with one replicate has no p-value, so no smallest p-value either.
    table = compare([runs[0], runs[3], runs[4]], "n_pairs", n_boot=200, n_permutations=99)
    assert table["p_min"].to_list() == [None] and table["p_value"].to_list() == [None]
