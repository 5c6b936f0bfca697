"""Figures as a new user sees them: backends, legends, colour bars, contour levels, the report.

Each test checks a value of the drawn figure (where a legend sits, which norm and tick labels a
colour bar has, how the grid falls into contour bands, which files the report embeds), on a
real tiny training run where the figure needs one and on hand-made landscapes otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")  # this test process draws off-screen; the backend tests use subprocesses

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from sampletopo import analysis  # noqa: E402
from sampletopo.landscape import Directions, Landscape  # noqa: E402
from sampletopo.readers import read_diagrams


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# --- the library leaves the backend alone -------------------------------------------------------

_BACKEND_PROBE = """
import matplotlib
import matplotlib.pyplot as plt
before = matplotlib.get_backend()
import sampletopo, sampletopo.plotting, sampletopo.figures, sampletopo.report
print(before, matplotlib.get_backend(), sep="|")
"""


@pytest.mark.parametrize("backend", ["module://matplotlib_inline.backend_inline", "svg"])
def test_importing_the_plotting_code_keeps_the_users_backend(backend):
    if backend.startswith("module://"):
        pytest.importorskip("matplotlib_inline")
    env = {**os.environ, "MPLBACKEND": backend}
    out = subprocess.run(
        [sys.executable, "-c", _BACKEND_PROBE], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    before, after = out.stdout.strip().splitlines()[-1].split("|")
    assert before.lower() == backend.lower()
    assert after == before


def test_a_notebook_kernel_shows_figures_after_importing_sampletopo(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "import sampletopo.plotting\n"
            "import matplotlib.pyplot as plt\n"
            "fig, ax = plt.subplots()\n"
            "ax.plot([0, 1], [1, 0])"
        )
    ]
    nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    kinds = [set(o.get("data", {})) for o in nb.cells[0].outputs]
    assert any("image/png" in k for k in kinds), nb.cells[0].outputs


# --- one legend, outside the panels ------------------------------------------------------------


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


@pytest.mark.parametrize("which", ["total_persistence", "wasserstein"])
def test_panel_figures_have_one_legend_that_covers_no_panel(experiment, which):
    from sampletopo.plotting import total_persistence_figure, wasserstein_figure

    _, runs = experiment
    if which == "total_persistence":
        fig = total_persistence_figure(analysis.summarize(runs, write=False), milestones=[2])
    else:
        fig = wasserstein_figure(analysis.wasserstein_to_reference(runs, write=False))
    assert all(ax.get_legend() is None for ax in fig.axes)
    assert len(fig.legends) == 1
    legend = fig.legends[0]
    labels = [t.get_text() for t in legend.get_texts()]
    for rd in runs:
        assert any(lab.startswith(rd.name) for lab in labels), labels
    if which == "total_persistence":
        assert "LR annealed" in labels and "mean loss (right axis)" in labels
    fig.canvas.draw()
    box = legend.get_window_extent()
    for ax in fig.axes:  # the panels and their twin (mean-loss) axes
        assert not _overlaps(box, ax.get_window_extent()), ax.get_title()


def test_single_panel_keeps_its_own_legend(experiment):
    from sampletopo.plotting import plot_total_persistence

    _, runs = experiment
    ax = plot_total_persistence(analysis.summarize(runs, write=False), split="val", tree="split")
    assert ax.get_legend() is not None
    ax2 = plot_total_persistence(
        analysis.summarize(runs, write=False), split="val", tree="split", legend=False
    )
    assert ax2.get_legend() is None


# --- readable colour bars of pair counts ---------------------------------------------------------


def _tick_labels(cax) -> list[str]:
    cax.figure.canvas.draw()
    return [t.get_text() for t in cax.get_yticklabels() if t.get_text()]


def _counts_table(n_pairs_in_one_bin: int) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    birth = np.concatenate([np.full(n_pairs_in_one_bin, 0.5), rng.uniform(0, 2, 20)])
    pers = np.concatenate([np.full(n_pairs_in_one_bin, 0.25), rng.uniform(0, 1, 20)])
    n = birth.size
    return pl.DataFrame(
        {
            "run": ["a"] * n,
            "split": ["val"] * n,
            "tree": ["split"] * n,
            "epoch": [1] * n,
            "birth": birth,
            "persistence": pers,
        }
    )


def test_small_counts_get_a_linear_bar_with_integer_ticks(experiment):
    from sampletopo.plotting import heatmap_figure

    _, runs = experiment
    fig = heatmap_figure(read_diagrams(runs), split="val", tree="split", epochs=[0, 4])
    cax = fig.axes[-1]
    assert cax.get_ylabel() == "pairs per bin"
    mesh = fig.axes[0].collections[0]
    assert not isinstance(mesh.norm, LogNorm)
    labels = _tick_labels(cax)
    assert len(labels) >= 2
    assert all(lab.isdigit() for lab in labels), labels  # no 10^0, no 6x10^0
    values = [float(v) for v in cax.get_yticks() if mesh.norm.vmin <= v <= mesh.norm.vmax]
    assert values == [round(v) for v in values]


def test_counts_over_two_decades_get_a_log_bar_with_plain_labels():
    from sampletopo.plotting import heatmap_figure

    fig = heatmap_figure(_counts_table(500), split="val", tree="split", epochs=[1], bins=10)
    mesh = fig.axes[0].collections[0]
    assert isinstance(mesh.norm, LogNorm)
    assert mesh.norm.vmin == 1 and mesh.norm.vmax >= 500
    labels = _tick_labels(fig.axes[-1])
    assert {"1", "10", "100"} <= set(labels), labels
    assert all(lab.isdigit() for lab in labels), labels


def test_shared_norm_switches_at_one_hundred_pairs():
    from sampletopo.plotting._topology import heatmap_bins, shared_norm

    for n, log in ((90, False), (150, True)):
        t = _counts_table(n)
        xb, yb = heatmap_bins([t], bins=10)
        norm = shared_norm([(t, xb, yb), (t.head(5), xb, yb)])
        assert isinstance(norm, LogNorm) is log
        assert norm.vmin == 1 and norm.vmax >= n


# --- contour levels that resolve the basin ------------------------------------------------------


def _directions() -> Directions:
    return Directions(
        vectors=np.eye(2, 3),
        names=("w",),
        shapes=((3,),),
        kind="random",
        normalization="filter",
        orthogonal=False,
        include_bias_bn=False,
        seed=0,
    )


def steep_landscape(steps: int = 21) -> Landscape:
    """An early model's grid: a basin near 2.3 and corners in the hundreds (658 at the top)."""
    c = np.linspace(-1.0, 1.0, steps)
    r2 = c[:, None] ** 2 + c[None, :] ** 2
    loss = 2.3 + 0.5 * r2 + (np.exp(3.2 * r2) - 1.0)
    loss *= 658.0 / loss.max()
    return Landscape((c, c), loss, np.full_like(loss, np.nan), _directions(), 1.0, 10)


def _band_shares(loss: np.ndarray, levels: np.ndarray) -> np.ndarray:
    counts, _ = np.histogram(loss.ravel(), bins=levels)
    return counts / loss.size


def test_contour_levels_resolve_the_basin_and_the_bar_shows_true_losses():
    from sampletopo.plotting import plot_landscape_contour

    land = steep_landscape()
    ax = plot_landscape_contour(land, levels=20)
    cs = next(c for c in ax.collections if hasattr(c, "levels") and c.filled)
    levels = np.asarray(cs.levels)
    assert levels[0] == pytest.approx(land.loss.min()) and levels[-1] == pytest.approx(658.0)
    # Every band holds a small share of the grid: no blank basin.
    assert _band_shares(land.loss, levels).max() <= 2.5 / 20
    # Colours go by band: as many distinct colours as bands.
    assert len({tuple(np.round(c, 6)) for c in cs.get_facecolor()}) == len(levels) - 1
    cax = ax.figure.axes[-1]
    assert cax.get_ylabel().startswith("cross-entropy loss (nats)")
    labels = _tick_labels(cax)
    assert labels[0] == f"{land.loss.min():.3g}" and labels[-1] == "658"
    assert len(set(labels)) == len(labels)


def test_linear_levels_leave_the_basin_in_one_band():
    # The behaviour the default replaces: the test above would fail with it.
    from sampletopo.plotting import plot_landscape_contour

    land = steep_landscape()
    ax = plot_landscape_contour(land, levels=20, spacing="linear")
    cs = next(c for c in ax.collections if hasattr(c, "levels") and c.filled)
    assert _band_shares(land.loss, np.asarray(cs.levels))[0] > 0.5


def test_random_direction_lines_are_labelled_with_distinct_true_values():
    from sampletopo.plotting import plot_random_directions

    c = np.linspace(-1.0, 1.0, 15)
    # A flat basin: quantile levels differ only in the fourth digit there.
    loss = 2.32 + 0.002 * (c[:, None] ** 2 + c[None, :] ** 2) + 0.2 * c[:, None] ** 8
    land = Landscape((c, c), loss, np.full_like(loss, np.nan), _directions(), 1.0, 10)
    ax = plot_random_directions(land)
    cs = next(c for c in ax.collections if hasattr(c, "levels"))
    fmt = cs.labelFmt  # level -> label text, as handed to clabel
    assert isinstance(fmt, dict) and len(fmt) == len(cs.levels)
    # One label per level, each the level's true value, with enough digits to tell them apart
    # (three digits would repeat in this basin).
    assert len(set(fmt.values())) == len(fmt)
    assert all(float(t) == pytest.approx(lv, rel=1e-3) for lv, t in fmt.items())
    assert any(len(t.replace(".", "")) > 3 for t in fmt.values())
    placed = [t.get_text() for t in cs.labelTexts]
    assert len(placed) >= 5 and set(placed) <= set(fmt.values())


def test_spacing_and_levels_are_checked():
    from sampletopo._errors import SampletopoError
    from sampletopo.plotting import plot_landscape_contour

    land = steep_landscape(5)
    with pytest.raises(
        SampletopoError, match="'spacing' parameter of plot_landscape_contour must be one of"
    ):
        plot_landscape_contour(land, spacing="even")  # type: ignore[arg-type]
    with pytest.raises(SampletopoError, match="'levels' parameter"):
        plot_landscape_contour(land, levels=0)


def test_surface_clips_far_corners_and_says_so():
    from sampletopo.plotting import plot_landscape_surface

    land = steep_landscape()
    ax = plot_landscape_surface(land)
    cap = float(np.quantile(land.loss, 0.95))
    assert "clipped at" in ax.get_zlabel() and f"{cap:.3g}" in ax.get_zlabel()
    assert "95th percentile" in ax.get_title()
    assert ax.get_zlim()[1] < 1.1 * cap < 658.0
    # A gentle bowl is drawn as it is.
    c = np.linspace(-1.0, 1.0, 9)
    bowl = 1.0 + c[:, None] ** 2 + c[None, :] ** 2
    gentle = Landscape((c, c), bowl, np.full_like(bowl, np.nan), _directions(), 1.0, 10)
    ax2 = plot_landscape_surface(gentle)
    assert ax2.get_zlabel() == "cross-entropy loss (nats)" and ax2.get_title() == ""
    ax3 = plot_landscape_surface(land, clip_quantile=None)
    assert ax3.get_zlabel() == "cross-entropy loss (nats)" and ax3.get_zlim()[1] >= 658.0


# --- the comparison figure's colour bar ---------------------------------------------------------


def test_comparison_figure_has_one_shared_count_colorbar(experiment, tmp_path):
    from sampletopo.figures import comparison_figure

    _, runs = experiment
    files = {}
    for rd in runs:
        land = steep_landscape(7)
        files[rd.name] = land.save(tmp_path / f"{rd.name}.npz", extra={"epoch": 4, "run": rd.name})
    fig = comparison_figure(runs, files)
    bars = [ax for ax in fig.axes if ax.get_ylabel() == "pairs per bin"]
    assert len(bars) == 1
    cax = bars[0]
    heat = [ax for ax in fig.axes if "heatmap" in ax.get_title()]
    assert len(heat) == 2 * len(runs)
    norms = {id(ax.collections[0].norm) for ax in heat}
    assert len(norms) == 1
    # The bar spans that same scale, sits right of every heatmap, has whole-number ticks.
    norm = heat[0].collections[0].norm
    assert cax.get_ylim() == pytest.approx((norm.vmin, norm.vmax))
    fig.canvas.draw()
    assert all(cax.get_position().x0 > ax.get_position().x1 for ax in heat)
    assert all(lab.isdigit() for lab in _tick_labels(cax))


# --- the report picks up `sampletopo samples`, the progress bar ends full ---------------------


class _Bar:
    """Stands in for tqdm: records the total and the updates."""

    made: list[_Bar] = []

    def __init__(self, *, total, **kw):
        self.total, self.n, self.closed = total, 0, False
        _Bar.made.append(self)

    def update(self, k=1):
        self.n += k

    def close(self):
        self.closed = True


def test_progress_bar_counts_only_the_figures_drawn(experiment, tmp_path, monkeypatch):
    from sampletopo import figures

    _, runs = experiment
    monkeypatch.setattr(figures, "tqdm", _Bar)
    _Bar.made.clear()
    with pytest.warns(figures.FigureWarning) as caught:
        pngs = figures.write_figure_set(runs, tmp_path / "f", epochs=[42], formats=("png",))
    messages = " | ".join(str(w.message) for w in caught)
    assert "Epoch(s) [42]" in messages and "Heatmaps and diagrams skipped" in messages
    (bar,) = _Bar.made
    assert len(pngs) == 2 and bar.n == bar.total == 2 and bar.closed


def test_report_embeds_what_sampletopo_samples_wrote(experiment, tmp_path, monkeypatch, capsys):
    from sampletopo import figures
    from sampletopo.cli import main
    from sampletopo.report import write_report
    from sampletopo.samples import regions_path

    out, runs = experiment
    run = runs[0]
    argv = ["samples", str(run), "--split", "val", "--epoch", "4", "--top", "2", "--figures"]
    assert main(argv) == 0
    written = sorted((run / "samples").glob("*.png"))
    assert {p.name for p in written} >= {
        f"{run.name}-samples-val-epoch=0004-losses.png",
        f"{run.name}-samples-val-epoch=0004-split1.png",
    }
    table = pl.read_parquet(regions_path(run, "val", 4))
    from markupsafe import escape

    from sampletopo.report import figure_caption

    # Captions written for people, stored beside each figure (read before the cleanup below).
    captions = {p: str(escape(figure_caption(p))) for p in written}
    assert all("epoch 4" in c and c != p.stem for p, c in captions.items())

    monkeypatch.setattr(figures, "tqdm", _Bar)
    _Bar.made.clear()
    try:
        text = write_report(out, tmp_path / "report", progress=False).read_text()
    finally:
        for p in (run / "samples").iterdir():  # the module's other tests see a clean run
            p.unlink()
    (bar,) = _Bar.made
    assert bar.n == bar.total == 2 + 4 + len(runs)

    section = text.split("<h3>Which samples make the shape</h3>", 1)
    assert len(section) == 2, "no samples section"
    body = section[1].split("</section>", 1)[0]
    for p in written:
        assert f"<figcaption>{captions[p]}</figcaption>" in body
    assert body.count("data:image/png;base64,") == len(written)
    assert body.count("<tr><td>") == table.height  # one row per region
    assert "<th>mean_loss</th>" in body and "<th>members</th>" not in body
