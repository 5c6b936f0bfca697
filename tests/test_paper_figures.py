"""Figures ready for a paper whatever the run did (issue 14).

Synthetic studies with an exploding epoch, hand-made landscapes whose losses differ 50x and
diagrams whose finite pairs sit near 1e-4; every check reads a value back from the drawn
matplotlib objects (scales, limits, panels, colour bars, overflow markers, contour levels) or
from the table saved beside the figure.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
import pytest  # noqa: E402

from sampletopo._errors import SampletopoError  # noqa: E402
from sampletopo.diagrams import Diagram  # noqa: E402
from sampletopo.landscape import Directions, Landscape  # noqa: E402
from sampletopo.plotting import _topology as T  # noqa: E402
from sampletopo.plotting._landscape import (  # noqa: E402
    plot_landscape_contour,
    plot_random_directions,
    shared_levels,
)
from sampletopo.plotting._scales import LOG_RATIO, axis_scale  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


EPOCHS = np.arange(0, 41)
MILESTONES = [12, 30]


def exploding_summary() -> pl.DataFrame:
    """Three runs, 40 epochs: run "explode" has a total persistence of 6e9 (mean loss 6e9) at
    epoch 1; late values of the runs are 4e-4, 2e-3 and 1.7e-2."""
    rows = []
    late = {"explode": 4e-4, "mid": 2e-3, "calm": 1.7e-2}
    for run, end in late.items():
        for e in EPOCHS:
            tp = end * (1 + 30 * np.exp(-e / 6))
            loss = 2.3 * np.exp(-e / 10) + 0.05
            if run == "explode" and e == 1:
                tp, loss = 6e9, 6e9
            for split in ("train", "val"):
                for tree in ("join", "split"):
                    rows.append({"run": run, "split": split, "tree": tree, "epoch": int(e),
                                 "total_persistence_1": tp, "mean_loss": loss})  # fmt: skip
    return pl.DataFrame(rows)


def _panel_axes(fig):
    return [ax for ax in fig.axes if hasattr(ax, "_sampletopo_scales")]


def _clipped_markers(ax):
    return [c for c in ax.collections if c.get_gid() == T.CLIPPED_GID]


# --- curves ---------------------------------------------------------------------------------


def test_an_exploding_epoch_is_marked_not_allowed_to_set_the_axis():
    summary = exploding_summary()
    fig = T.total_persistence_figure(summary, milestones=MILESTONES)
    panels = _panel_axes(fig)
    assert len(panels) == 4
    for ax in panels:
        # Values span 4e-4 .. 6e9: a log axis whose top is far below the outlier.
        assert ax.get_yscale() == "log"
        lo, hi = ax.get_ylim()
        assert hi < 1e3 and lo < 4e-4
        # The outlier is drawn on the top edge as one triangle (not dropped).
        [marker] = _clipped_markers(ax)
        (x, y), *_ = marker.get_offsets()
        assert x == 1 and y == pytest.approx(hi)
        # The late curves are apart by a visible share of the axis: 4e-4 vs 1.7e-2 is more
        # than a quarter of the log-axis height.
        span = np.log10(hi) - np.log10(lo)
        assert (np.log10(1.7e-2) - np.log10(4e-4)) / span > 0.25
        # LR drops between epoch m and m + 1.
        drops = sorted(
            line.get_xdata()[0] for line in ax.get_lines() if line.get_linestyle() == ":"
        )
        assert drops == [12.5, 30.5]
    data = T.figure_data(fig)
    # One total persistence and one mean loss beyond the axes in each of the 4 panels.
    assert "8 value(s) beyond the robust axis ranges" in data.caption
    assert "learning-rate drops after epoch(s) 12 and 30" in data.caption
    # The saved table holds the true (unclipped) values.
    assert data.table["total_persistence_1"].max() == 6e9


def test_a_forced_linear_scale_still_marks_the_outlier_and_caption_counts_it():
    fig = T.total_persistence_figure(exploding_summary(), milestones=[], scale="linear")
    for ax in _panel_axes(fig):
        assert ax.get_yscale() == "linear"
        assert ax.get_ylim()[1] < 1.0
        assert len(_clipped_markers(ax)) == 1
    # 4 panels x (total persistence + mean loss) outliers.
    assert "8 value(s) beyond the robust axis ranges" in T.figure_data(fig).caption


def test_auto_scale_rule_and_fence():
    # Within 100x: linear; beyond: log; with a zero: symmetric log.
    assert axis_scale([np.array([1.0, 50.0])]).name == "linear"
    assert axis_scale([np.array([1.0, LOG_RATIO * 1.01])]).name == "log"
    assert axis_scale([np.array([0.0, 1e-3, 2e-3, 1e-2, 0.1, 1.0, 5.0])]).name == "symlog"
    # One point 1e9 among points 1..10: above a jump of more than 10x, left out.
    pts = [np.array([v]) for v in [*np.linspace(1, 10, 20), 1e9]]
    sc = axis_scale(pts, scale="linear")
    assert (sc.lo, sc.hi) == pytest.approx((1.0, 10.0))
    # Two runs 20x apart: both kept (one of two is more than a quarter of the groups).
    assert axis_scale([np.array([0.1, 1.0]), np.array([0.1, 20.0])]).hi == pytest.approx(20.0)
    # 100.0 over 9.9 is a jump of 10.1x: left out; 99.0 (10.0x) is not.
    base = [np.array([v]) for v in np.linspace(1, 9.9, 10)]
    assert axis_scale([*base, np.array([100.0])], scale="linear").hi == pytest.approx(9.9)
    assert axis_scale([*base, np.array([99.0])], scale="linear").hi == pytest.approx(99.0)
    # An ordinary loss curve falling fast from 2.3 to 0.05 keeps its first epochs.
    fall = [np.array([v]) for v in 0.05 + 2.25 * np.exp(-np.arange(40) / 2)]
    assert axis_scale(fall, scale="linear").hi == pytest.approx(2.3)
    # A count that is 0 at 12 of 14 points and 1 or 2 at two: nothing to measure a jump by,
    # so the 1 and 2 set the range (they were cut, leaving an axis around 0 alone).
    counts = [np.array([v]) for v in [0.0] * 12 + [1.0, 2.0]]
    assert axis_scale(counts, scale="linear").hi == pytest.approx(2.0)
    assert axis_scale(counts).hi == pytest.approx(2.0)
    # ... but above small non-zero values the same jump is still an explosion.
    assert axis_scale([np.array([v]) for v in [0.0] * 11 + [0.1, 1e6, 2e6]]).hi == 0.1
    with pytest.raises(SampletopoError, match="'scale'.*Got 'loglog'"):
        axis_scale(pts, scale="loglog")
    with pytest.raises(SampletopoError, match="lo < hi"):
        axis_scale(pts, value_range=(3, 1))


# --- heatmaps -------------------------------------------------------------------------------


def exploding_diagrams() -> pl.DataFrame:
    """Runs a and b at epochs 1..8; b's epoch-1 pairs are born at 1000..7000."""
    rng = np.random.default_rng(0)
    rows = []
    for run in ("a", "b"):
        for e in range(1, 9):
            n = 40
            birth = rng.uniform(0.1, 2.0, n)
            pers = rng.uniform(1e-3, 1.0, n)
            if run == "b" and e == 1:
                birth = rng.uniform(1000, 7000, n)
                pers = rng.uniform(100, 5000, n)
            for b, q in zip(birth, pers, strict=True):
                rows.append({"run": run, "split": "val", "tree": "split", "epoch": e,
                             "birth": b, "death": b - q, "persistence": q})  # fmt: skip
            rows.append({"run": run, "split": "val", "tree": "split", "epoch": e,
                         "birth": 2.5, "death": -np.inf, "persistence": np.inf})  # fmt: skip
    return pl.DataFrame(rows)


def test_heatmap_grid_wraps_with_fixed_panels_and_one_colour_bar():
    d = exploding_diagrams()
    fig = T.heatmap_figure(d, split="val", tree="split", epochs=list(range(1, 9)), columns=3)
    panels = [ax for ax in fig.axes if hasattr(ax, "_sampletopo_mesh")]
    assert len(panels) == 16  # 2 runs x 8 epochs, no empty axes left over
    bars = [ax for ax in fig.axes if ax.get_ylabel() == "pairs per bin"]
    assert len(bars) == 1 and len(fig.axes) == 17
    # Columns wrap after 3: each run takes 3 rows (3 + 3 + 2 panels) -> 6 rows x 3 columns.
    xs = sorted({round(ax.get_position().x0, 6) for ax in panels})
    ys = sorted({round(ax.get_position().y0, 6) for ax in panels})
    assert len(xs) == 3 and len(ys) == 6
    # Every panel is HEATMAP_PANEL_INCHES in size.
    w, h = fig.get_size_inches()
    for ax in panels:
        pos = ax.get_position()
        assert pos.width * w == pytest.approx(T.HEATMAP_PANEL_INCHES[0])
        assert pos.height * h == pytest.approx(T.HEATMAP_PANEL_INCHES[1])
    # The exploding panel does not set the axes: they end far below 1000 and the 40 pairs
    # are counted in the overflow bins, which are marked in every panel and in the caption.
    for ax in panels:
        assert ax.get_xlim()[1] < 100 and ax.get_ylim()[1] < 100
        assert any(line.get_gid() == T.OVERFLOW_GID for line in ax.get_lines())
    explode = next(ax for ax in panels if ax.get_title().startswith("b, epoch 1"))
    assert "40 in overflow" in explode.get_title()
    data = T.figure_data(fig)
    assert "40 pair(s) beyond the axis ranges" in data.caption
    assert data.caption.startswith("Validation set, split tree: persistence-diagram heatmaps")
    # Nothing dropped: all finite pairs are counted.
    total = sum(float(np.asarray(ax._sampletopo_mesh.get_array()).sum()) for ax in panels)
    assert total == d.filter(pl.col("persistence").is_finite()).height


def test_saved_heatmap_table_reproduces_the_plotted_counts():
    d = exploding_diagrams()
    fig = T.heatmap_figure(d, split="val", tree="split", epochs=[1, 8])
    table = T.figure_data(fig).table
    panels = {
        ax.get_title().split("\n")[0]: ax for ax in fig.axes if hasattr(ax, "_sampletopo_mesh")
    }
    for (run, epoch), part in table.group_by(["run", "epoch"]):
        ax = panels[f"{run}, epoch {epoch}"]
        counts = np.ma.filled(ax._sampletopo_mesh.get_array(), 0)  # (y bins, x bins)
        xe = np.unique(np.concatenate([table["birth_lo"], table["birth_hi"]]))
        drawn = {}
        ny, nx = counts.shape
        assert nx >= len(xe) - 1
        for j, i in zip(*np.nonzero(counts), strict=True):
            drawn[(int(i), int(j))] = int(counts[j, i])
        assert sum(drawn.values()) == part["pairs"].sum()
        assert sorted(drawn.values()) == sorted(part["pairs"].to_list())
    assert table.filter(pl.col("overflow"))["pairs"].sum() == 40


def test_log_heatmap_axes_resolve_pairs_near_1e_4():
    rng = np.random.default_rng(1)
    n = 60
    b = np.concatenate([rng.uniform(1e-5, 1e-3, n), rng.uniform(0.5, 2.0, 5)])
    q = np.concatenate([rng.uniform(1e-5, 1e-3, n), rng.uniform(0.1, 1.0, 5)])
    t = pl.DataFrame({"run": "r", "split": "val", "tree": "join", "epoch": 1, "birth": b,
                      "death": b + q, "persistence": q})  # fmt: skip
    fig = T.heatmap_figure(t, split="val", tree="join", epochs=[1])
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    # The pairs near 1e-4 fill many bins instead of one bin at the origin.
    counts = np.ma.filled(ax._sampletopo_mesh.get_array(), 0)
    assert np.count_nonzero(counts) > 20


# --- default epochs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("epochs", "milestones", "expected"),
    [
        (range(0, 41), [12, 30], [1, 12, 13, 30, 31, 40]),
        (range(0, 41), [], [1, 20, 40]),
        (range(0, 21), [40], [1, 10, 20]),  # a drop after the last epoch: none shown
        (range(3, 11), [5], [3, 5, 6, 10]),  # only later epochs recorded
        ([0], [], [0]),
    ],
)
def test_default_heatmap_epochs_follow_the_seeds(epochs, milestones, expected):
    assert T.default_heatmap_epochs(epochs, milestones) == expected


# --- landscapes -----------------------------------------------------------------------------


def _land(scale: float, offset: float = 0.05) -> Landscape:
    c = np.linspace(-1.0, 1.0, 11)
    bowl = offset + scale * (c[:, None] ** 2 + c[None, :] ** 2)
    dirs = Directions(
        vectors=np.eye(2, 3), names=("w",), shapes=((3,),), kind="random",
        normalization="filter", orthogonal=False, include_bias_bn=False, seed=0,
    )  # fmt: skip
    return Landscape((c, c), bowl, np.full_like(bowl, np.nan), dirs, 1.0, 10)


def _empty_tables():
    t = pl.DataFrame({"birth": [0.1, 0.2], "death": [0.3, 0.5], "persistence": [0.2, 0.3]})
    return {"join": t, "split": t}


def test_two_runs_50x_apart_share_contour_levels_and_each_has_a_colour_bar():
    a, b = _land(1.0), _land(50.0)
    rows = [("a", 20, a, _empty_tables()), ("b", 20, b, _empty_tables())]
    fig = T.comparison_panels(rows)
    la, lb = (np.asarray(fig.axes[i]._sampletopo_levels) for i in (0, 3))
    np.testing.assert_array_equal(la, lb)
    lo, hi = 0.05, 0.05 + 50 * 2
    assert la[0] == pytest.approx(lo) and la[-1] == pytest.approx(hi)
    # Log-spaced above the minimum: gaps lo + (hi - lo) * 10**linspace(-4, 0, 20).
    np.testing.assert_allclose(la[1:] - lo, (hi - lo) * np.logspace(-4, 0, 20), rtol=1e-9)
    # Run b, 50x steeper, crosses many more levels than run a.
    crossed = [int(np.sum(la < land.loss.max())) for land in (a, b)]
    assert crossed[1] > crossed[0] + 5
    # Colour bars: one for the shared levels of the landscapes, one for the heatmap counts.
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert labels.count("cross-entropy loss (nats) (shared levels)") == 1
    assert labels.count("pairs per bin") == 1
    assert len(fig.axes) == 2 * 3 + 2
    assert T.figure_data(fig).extra["levels"] == pytest.approx(la.tolist())


def test_own_scale_and_explicit_levels_in_the_single_plots():
    a, b = _land(1.0), _land(50.0)
    lv = shared_levels([a, b])
    ax = plot_random_directions(a, levels=lv)
    np.testing.assert_array_equal(ax._sampletopo_levels, lv)
    assert ax.figure.axes[-1].get_ylabel() == "cross-entropy loss (nats)"  # its colour bar
    own = plot_random_directions(a)  # own quantile levels stay available
    assert own._sampletopo_levels[-1] == pytest.approx(a.loss.max())
    cax = plot_landscape_contour(b, levels=lv).figure.axes[-1]
    assert "shared levels" in cax.get_ylabel()
    with pytest.raises(SampletopoError, match="'levels'"):
        plot_random_directions(a, levels=[1.0, 0.5])


# --- diagrams -------------------------------------------------------------------------------


def test_diagram_axes_span_the_finite_pairs_and_essential_pairs_sit_on_an_inf_line():
    rng = np.random.default_rng(2)
    b = rng.uniform(1e-4, 2e-4, 30)
    d = Diagram.from_polars(
        pl.DataFrame(
            {
                "tree": ["join"] * 31,
                "birth": [*b, 1e-4],
                "death": [*(b + rng.uniform(1e-5, 1e-4, 30)), np.inf],
                "persistence": [*rng.uniform(1e-5, 1e-4, 30), np.inf],
                "birth_sample": list(range(31)),
                "death_sample": [*range(31, 61), -1],
            }
        )  # fmt: skip
    )
    ax = T.plot_diagram(d)
    x0, x1 = ax.get_xlim()
    assert x1 < 1e-3 and x0 > -1e-4  # not 0..1: the finite pairs set the range
    inf_y = ax._sampletopo_inf
    fin = d.finite()
    assert inf_y > fin.death.max() and inf_y < ax.get_ylim()[1]
    assert "+inf" in [t.get_text() for t in ax.texts]
    assert ax.get_xlabel() == "birth (cross-entropy loss (nats))"


# --- the figure set on real runs ------------------------------------------------------------


def test_figure_set_writes_a_table_and_a_caption_beside_every_figure(experiment, tmp_path):
    from sampletopo.figures import write_figure_set
    from sampletopo.runs import figure_table_file

    _, runs = experiment
    out = tmp_path / "figs"
    pngs = write_figure_set(runs, out, formats=("png",), progress=False)
    assert len(pngs) == 8
    for png in pngs:
        table = figure_table_file(png)
        assert table.is_file(), png
        cap = T.read_caption(png)
        assert cap and png.stem not in cap
    # The curve table reproduces the plotted totals (nothing clipped here).
    tp = pl.read_parquet(out / "total_persistence.parquet")
    from sampletopo import analysis

    want = analysis.summarize(runs, write=False).select(
        "run", "split", "tree", "epoch", "total_persistence_1"
    )
    got = tp.select(want.columns).sort("run", "split", "tree", "epoch")
    assert got.equals(want.sort("run", "split", "tree", "epoch"))
    # Default epochs: first trained (1), around the drop after epoch 2, final (4).
    heat = pl.read_parquet(out / "heatmap-val-split.parquet")
    assert sorted(heat["epoch"].unique().to_list()) == [1, 2, 3, 4]
    assert "epochs 1, 2, 3 and 4" in T.read_caption(out / "heatmap-val-split.png")


def test_surface_has_few_tick_labels_that_do_not_overlap():
    from sampletopo.plotting._landscape import plot_landscape_surface

    ax = plot_landscape_surface(_land(50.0))
    fig = ax.figure
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    boxes = []
    for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
        lo, hi = sorted(axis.get_view_interval())
        eps = 1e-9 * (hi - lo)
        ticks = [
            t
            for t, at in zip(axis.get_ticklabels(), axis.get_majorticklocs(), strict=True)
            if t.get_text() and lo - eps <= at <= hi + eps
        ]
        assert 2 <= len(ticks) <= 5
        boxes += [(f"{axis.axis_name} tick {t.get_text()}", t.get_window_extent(r)) for t in ticks]
    for i, (na, a) in enumerate(boxes):
        for nb, b in boxes[i + 1 :]:
            assert not (a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1), (na, nb)


# --- a diverging variant among replicates (issue 15) ----------------------------------------


def diverging_replicates() -> pl.DataFrame:
    """Replicate-mean curves as :func:`sampletopo.replicates.replicate_curves` writes them:
    "ok" and "slow" (3 replicates, totals 1.3 .. 5.7, bands within 0.9 .. 6.5) and "wild",
    whose epoch 2 explodes (mean 1.1e14, band 4.9e7 .. 3.3e14) and whose later epochs are one
    surviving run at 0 (total persistence of a constant loss)."""
    rows = []
    for e in range(9):
        for run, tp in (("ok", 1.3 + 0.5 * e), ("slow", 1.3 + 0.2 * e), ("wild", 1.3)):
            n, lo, hi = 3, tp * 0.7, tp * 1.15
            if run == "wild" and e == 2:
                tp, lo, hi = 1.1e14, 4.9e7, 3.3e14
            elif run == "wild" and e > 2:
                n, tp, lo, hi = 1, 0.0, None, None
            for split in ("train", "val"):
                for tree in ("join", "split"):
                    rows.append({"run": run, "split": split, "tree": tree, "epoch": e, "n": n,
                                 "total_persistence_1": tp, "ci_low": lo, "ci_high": hi,
                                 "mean_loss": 2.0})  # fmt: skip
    return pl.DataFrame(rows)


def test_an_exploding_epochs_band_does_not_set_the_axis_either():
    fig = T.total_persistence_figure(diverging_replicates(), milestones=[])
    for ax in _panel_axes(fig):
        # Before: a symmetric-log axis up to 4e14 whose linear part (linthresh 3.3e5, set by
        # the explosion) held the healthy curves flat at 0.
        # Now linear from the surviving run's 0 to the top of the healthy band, padded 4 %.
        top = (1.3 + 0.5 * 8) * 1.15
        assert ax.get_yscale() == "linear"
        assert ax.get_ylim() == pytest.approx((-0.04 * top, 1.04 * top))
        lo, hi = ax.get_ylim()
        # The exploding mean sits on the top edge as one triangle at epoch 2.
        [marker] = _clipped_markers(ax)
        (x, y), *_ = marker.get_offsets()
        assert x == 2 and y == pytest.approx(hi)
    assert "4 value(s) beyond the robust axis ranges" in T.figure_data(fig).caption
    assert "total persistence linear" in T.figure_data(fig).caption


def test_symlog_threshold_comes_from_the_values_kept_and_no_tick_sits_inside_it():
    # Distances of healthy runs (0 at the reference epoch, 0.02 .. 3.5) and three of a
    # diverged run (2.4e7 .. 1.7e14).
    healthy = [0.0, 0.0, 0.019, 0.036, 0.2, 0.78, 1.1, 1.6, 2.5, 3.5] * 3
    sc = axis_scale([np.array([v]) for v in [*healthy, 2.4e7, 3.8e8, 1.65e14]], fence_low=False)
    assert sc.name == "symlog"
    assert sc.hi == 3.5
    assert sc.linthresh == pytest.approx(np.quantile([v for v in healthy if v], 0.05))
    assert sc.linthresh < 0.05  # was 1.65e5 (1e-9 of the largest value)
    _, ax = plt.subplots()
    sc.apply(ax, "y")
    ax.set_ylim(*T._padded(sc))
    ticks = [t for t in ax.get_yticks() if ax.get_ylim()[0] <= t <= ax.get_ylim()[1]]
    # 0 and the decades above the threshold: no "10^-2" drawn over "0".
    assert ticks == [0.0, 0.1, 1.0]


def test_a_variant_whose_runs_stopped_early_says_how_many_it_averages():
    from sampletopo.figures import _replicate_curves

    rows = []
    for run, last in (("a,seed=0", 5), ("a,seed=1", 5), ("w,seed=0", 5), ("w,seed=1", 2),
                      ("w,seed=2", 2)):  # fmt: skip
        for e in range(last + 1):
            for split in ("train", "val"):
                for tree in ("join", "split"):
                    rows.append({"run": run, "split": split, "tree": tree, "epoch": e,
                                 "total_persistence_1": 1.0 + e + len(rows) % 3,
                                 "mean_loss": 2.0})  # fmt: skip
    groups = {r: (r.split(",")[0], 2 if r[0] == "a" else 3) for r in {x["run"] for x in rows}}
    table = _replicate_curves(pl.DataFrame(rows), groups)
    fig = T.total_persistence_figure(table)
    [legend] = fig.legends
    texts = [t.get_text() for t in legend.get_texts()]
    # Before: "w (mean of 3)", though epochs 3-5 are one run.
    assert texts[:2] == ["a (mean of 2)", "w (mean of 1-3)"]
    caption = T.figure_data(fig).caption
    assert "Fewer replicates where runs stopped early (the table's n): w averages 1 of 3 runs " \
        "at epoch(s) 3-5." in caption  # fmt: skip
    assert "a averages" not in caption


def test_log_heatmap_axes_over_few_decades_have_readable_tick_labels():
    rng = np.random.default_rng(3)
    b = rng.uniform(2.0, 63.0, 80)
    q = rng.uniform(1e-3, 30.0, 80)
    t = pl.DataFrame({"run": "r", "split": "val", "tree": "split", "epoch": 1, "birth": b,
                      "death": b - q, "persistence": q})  # fmt: skip
    fig = T.heatmap_figure(t, split="val", tree="split", epochs=[1], scale="log")
    ax = next(a for a in fig.axes if hasattr(a, "_sampletopo_mesh"))
    assert ax.get_xscale() == "log"
    fig.canvas.draw()
    lo, hi = ax.get_xlim()
    ticks = zip(ax.xaxis.get_majorticklocs(), ax.xaxis.get_ticklabels(), strict=True)
    shown = [(t.get_text(), t) for v, t in ticks if lo <= v <= hi]
    # Before: "3x10^0 4x10^0 6x10^0 ... 2x10^1 3x10^1 4x10^1 6x10^1", minor ticks labelled.
    assert lo > 2.0 and [s for s, _ in shown] == ["5", "10", "20", "50"]
    assert not any(t.get_text() for t in ax.xaxis.get_ticklabels(minor=True))
    r = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(r) for _, t in shown]
    assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:]))  # left to right, apart


def _pairs_diagram(n: int, tree: str) -> Diagram:
    b = np.linspace(0.1, 2.0, n)
    q = np.linspace(0.01, 1.0, n)
    return Diagram.from_polars(
        pl.DataFrame(
            {
                "tree": [tree] * n,
                "birth": b,
                "death": b + q if tree == "join" else b - q,
                "persistence": q,
                "birth_sample": list(range(n)),
                "death_sample": list(range(n, 2 * n)),
            }
        )  # fmt: skip
    )


def test_diagram_figure_caption_says_how_many_pairs_the_barcodes_hold():
    small = {(s, t): _pairs_diagram(13 if s == "val" else 21, t) for s in ("train", "val")
             for t in ("join", "split")}  # fmt: skip
    fig = T.diagrams_figure(small, run="r", epoch=3)
    # Before: "the barcode of its 60 most persistent pairs" over panels of 13 and 21 bars.
    assert "each beside the barcode of all its finite pairs (13-21 per diagram);" in (
        T.figure_data(fig).caption
    )
    labels = sorted(a.get_ylabel() for a in fig.axes if "barcode" in a.get_title())
    assert labels == ["13 most persistent pairs"] * 2 + ["21 most persistent pairs"] * 2
    big = dict(small)
    big[("train", "join")] = _pairs_diagram(80, "join")
    caption = T.figure_data(T.diagrams_figure(big, run="r", epoch=3)).caption
    assert "the barcode of its finite pairs (13-80 per diagram; at most the 60 most " \
        "persistent are drawn);" in caption  # fmt: skip


@pytest.mark.parametrize("n_runs", [2, 9, 14])
def test_the_figure_legend_never_covers_the_panels_axis_labels(n_runs):
    # A 9-run legend took 3 rows and covered the lower panels' "epoch" labels.
    rows = [
        {"run": f"lr=0.{i},seed={i % 3}", "split": s, "tree": t, "epoch": e,
         "total_persistence_1": 1.0 + i + e, "mean_loss": 2.0 / (e + 1)}
        for i in range(n_runs) for s in ("train", "val") for t in ("join", "split")
        for e in range(5)
    ]  # fmt: skip
    fig = T.total_persistence_figure(pl.DataFrame(rows), milestones=[2])
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend = fig.legends[0].get_window_extent(renderer)
    assert len(fig.legends[0].get_texts()) >= n_runs
    for ax in _panel_axes(fig):
        label = ax.xaxis.label.get_window_extent(renderer)
        ticks = ax.xaxis.get_tightbbox(renderer)
        assert legend.y1 < min(label.y0, ticks.y0), (n_runs, legend, label)
    plt.close(fig)


def test_a_run_keeps_its_colour_in_panels_where_another_run_is_missing():
    rows = [
        {"run": r, "split": s, "tree": t, "epoch": e, "total_persistence_1": 1.0 + e}
        for r, splits in (("a", ("train",)), ("b", ("train", "val")))
        for s in splits for t in ("join", "split") for e in range(3)
    ]  # fmt: skip
    fig = T.total_persistence_figure(pl.DataFrame(rows))
    colours = {}
    for ax in _panel_axes(fig):
        for line in ax.get_lines():
            if line.get_label() in ("a", "b"):
                colours.setdefault(line.get_label(), set()).add(line.get_color())
    assert len(colours["b"]) == 1 and colours["a"] != colours["b"]
    plt.close(fig)
