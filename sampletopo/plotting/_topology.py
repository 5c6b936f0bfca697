"""Figures of the sample-space view: total persistence, diagram heatmaps, Wasserstein curves,
single diagrams and barcodes, and the comparison of a parameter-space landscape with the
sample-space heatmaps of the same epoch.

Every ``plot_*`` function takes ``ax=None`` (a new figure is made) and returns the Axes; the
``*_figure`` functions lay several panels out and return the Figure. Nothing here calls
``plt.show()`` or computes topology: inputs are the tables of :mod:`sampletopo.analysis`.

Heatmaps are 2-D histograms of (birth, persistence) of the finite pairs. All panels of one
figure set share the same bins and the same colour scale (linear with integer ticks for small
counts, logarithmic when counts span more than two decades), so two runs can be compared by eye.
Multi-panel figures put one shared legend below the panels, where it cannot hide a curve.

Axes are robust to an exploding epoch (:mod:`sampletopo.plotting._scales`): ``scale="auto"``
picks a log axis for values spanning more than 100x, an outlying epoch does not set the range,
and what lies beyond is drawn in marked overflow bins or as triangles on the axis edge. Every
``*_figure`` attaches its numbers and a caption for people (:func:`attach_data`); :func:`save`
writes them as ``<stem>.parquet`` beside the figure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# No matplotlib.use(): the backend is the application's choice (forcing Agg hides every figure
# in Jupyter); without a display matplotlib falls back to Agg by itself.
import matplotlib.pyplot as plt
import numpy as np
import polars as pl
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, MaxNLocator, StrMethodFormatter

from sampletopo._io import write_atomic
from sampletopo._validation import check_int, invalid, ranges_text
from sampletopo.diagrams import Diagram
from sampletopo.plotting._scales import AxisScale, Scale, axis_scale
from sampletopo.runs import SPLITS, TREES

__all__ = [
    "plot_total_persistence",
    "total_persistence_figure",
    "plot_heatmap",
    "heatmap_figure",
    "heatmap_bins",
    "heatmap_axes",
    "heatmap_counts",
    "shared_norm",
    "count_colorbar",
    "plot_wasserstein",
    "wasserstein_figure",
    "plot_diagram",
    "plot_barcode",
    "diagrams_figure",
    "comparison_panels",
    "default_heatmap_epochs",
    "run_colors",
    "FigureData",
    "attach_data",
    "figure_data",
    "CROSS_ENTROPY",
    "HEATMAP_PANEL_INCHES",
    "HeatmapAxis",
    "read_caption",
    "save_figure_data",
]

_TREE_LABEL = {"join": "join tree (minima)", "split": "split tree (maxima)"}
_SPLIT_TEXT = {"train": "Training set", "val": "Validation set"}
_TREE_TEXT = {"join": "join tree", "split": "split tree"}

CROSS_ENTROPY = "cross-entropy loss (nats)"
"""Label of a loss axis of runs trained with cross-entropy (natural log: nats)."""

CLIPPED_GID = "sampletopo-clipped"
"""``gid`` of the markers of values beyond an axis (curves, diagrams)."""
OVERFLOW_GID = "sampletopo-overflow"
"""``gid`` of the lines that mark a heatmap's overflow bins."""

HEATMAP_PANEL_INCHES = (2.6, 2.2)
"""Width and height of one heatmap panel: text stays readable at paper size however many."""


@dataclass(frozen=True)
class FigureData:
    """The numbers a figure draws and the caption that says how: saved beside it by :func:`save`
    (``<stem>.parquet``, caption in the footer under ``sampletopo.caption``)."""

    table: pl.DataFrame
    caption: str
    extra: dict[str, Any] = field(default_factory=dict)


def attach_data(fig: Figure, table: pl.DataFrame, caption: str, **extra: Any) -> Figure:
    """Attach the numbers and the caption of ``fig`` (see :class:`FigureData`); return it."""
    fig._sampletopo_data = FigureData(table, caption, extra)  # type: ignore[attr-defined]
    return fig


def figure_data(fig: Figure) -> FigureData | None:
    """What :func:`attach_data` attached to ``fig``, if anything."""
    return getattr(fig, "_sampletopo_data", None)


def run_colors(runs: Sequence[str]) -> dict[str, Any]:
    """One stable colour per run name (seaborn's colorblind palette)."""
    pal = sns.color_palette("colorblind", max(len(runs), 3))
    return {r: pal[i] for i, r in enumerate(runs)}


def _ax(ax: Axes | None, figsize=(6, 4)) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def _need(df: pl.DataFrame, cols: Sequence[str], where: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise invalid(
            "table",
            f"a table with the columns {list(cols)}",
            where=where,
            got=f"columns {df.columns}",
        )


def _mark_milestones(ax: Axes, milestones: Iterable[int] | None) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    for i, m in enumerate(sorted(set(milestones or []))):
        ax.axvline(m + 0.5, color="0.5", ls=":", lw=1, label="LR annealed" if i == 0 else None)


def _epochs_text(epochs: Iterable[int]) -> str:
    e = [str(int(x)) for x in epochs]
    return e[0] if len(e) == 1 else ", ".join(e[:-1]) + " and " + e[-1]


def _padded(sc: AxisScale, frac: float = 0.04) -> tuple[float, float]:
    """Axis limits: the data range padded by ``frac`` of its width on the axis' scale."""
    t0, t1 = (float(v) for v in sc.forward(np.array([sc.lo, sc.hi])))
    pad = frac * (t1 - t0)
    lo, hi = (float(v) for v in sc.inverse(np.array([t0 - pad, t1 + pad])))
    return lo, hi


def _curve(ax: Axes, x: Any, y: Any, sc: AxisScale, lim: tuple[float, float], **kw: Any) -> int:
    """Draw ``y`` vs ``x`` inside ``sc``'s range; values beyond it sit on the axis edge as
    triangles (gid :data:`CLIPPED_GID`). Returns how many were beyond."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    fin = np.isfinite(y)
    over = fin & (y > sc.hi)
    under = fin & ((y < sc.lo) | ((y <= 0) if sc.name == "log" else False))
    yc = np.where(over, lim[1], np.where(under, lim[0], y))
    ax.plot(x, yc, **kw)
    color = kw.get("color")
    for mask, edge, mk in ((over, lim[1], "^"), (under, lim[0], "v")):
        if mask.any():
            ax.scatter(
                x[mask], np.full(int(mask.sum()), edge), marker=mk, s=46, color=color,
                edgecolors="black", linewidths=0.6, zorder=5, clip_on=False, gid=CLIPPED_GID,
            )  # fmt: skip
    return int(over.sum() + under.sum())


def _points_scale(vals: np.ndarray, scale: str, where: str) -> AxisScale:
    """The y axis of curves: every point its own group, only the high end fenced. ``vals``
    of shape (points, k) make each row one group (a replicate mean with its interval: an
    exploding epoch's band is as much an outlier as its mean)."""
    groups = list(vals.reshape(vals.shape[0], -1)) if vals.ndim == 2 else list(vals[:, None])
    return axis_scale(groups, scale=scale, where=where, fence_low=False)


def _scaled_axis(ax: Axes, which: str, sc: AxisScale) -> tuple[float, float]:
    sc.apply(ax, which)
    lim = _padded(sc)
    (ax.set_xlim if which == "x" else ax.set_ylim)(*lim)
    return lim


def _clipped(ax: Axes) -> int:
    return int(getattr(ax, "_sampletopo_clipped", 0))


def _scales_of(ax: Axes) -> list[tuple[str, str]]:
    return list(getattr(ax, "_sampletopo_scales", []))


#: The gid of the shaded confidence bands of replicate curves (tests read them back).
BAND_GID = "sampletopo-ci-band"


def plot_total_persistence(
    summary: pl.DataFrame,
    *,
    split: str,
    tree: str,
    p: int = 1,
    milestones: Iterable[int] | None = None,
    show_loss: bool = True,
    legend: bool = True,
    scale: Scale = "auto",
    loss_label: str = CROSS_ENTROPY,
    ax: Axes | None = None,
) -> Axes:
    """Total persistence vs epoch, one line per run, with the mean loss on a second axis.

    With ``ci_low`` and ``ci_high`` columns (curves over replicates,
    :func:`sampletopo.replicates.replicate_curves`) each line is a mean, drawn with its
    interval as a shaded band.

    ``summary`` is the table of :func:`sampletopo.analysis.summarize`. LR-annealing epochs are
    drawn as dotted lines between epoch ``m`` and ``m + 1``. ``legend=False`` leaves the legend
    to the caller (as :func:`total_persistence_figure` does, with one legend for all panels).
    ``scale`` sets both y axes (``"auto"``: log when the values span more than 100x; the range
    leaves out outlying epochs, drawn as triangles on the axis edge; see
    :mod:`sampletopo.plotting._scales`). ``loss_label`` names the loss and its unit.
    """
    return plot_metric_curves(
        summary, f"total_persistence_{p}", split=split, tree=tree, milestones=milestones,
        show_loss=show_loss, legend=legend, scale=scale, loss_label=loss_label, ax=ax,
        quantity="total persistence", ylabel=f"total persistence (p={p})",
        where="plot_total_persistence",
    )  # fmt: skip


def plot_metric_curves(
    table: pl.DataFrame,
    column: str,
    *,
    split: str,
    tree: str,
    milestones: Iterable[int] | None = None,
    show_loss: bool = True,
    legend: bool = True,
    scale: Scale = "auto",
    loss_label: str = CROSS_ENTROPY,
    ax: Axes | None = None,
    quantity: str = "",
    ylabel: str = "",
    where: str = "plot_metric_curves",
) -> Axes:
    """``column`` of ``table`` (``run``, ``split``, ``tree``, ``epoch``, ``column``) against
    epoch in one panel, one line per run, as :func:`plot_total_persistence` draws total
    persistence: a shaded band where the table has ``ci_low``/``ci_high`` (replicate means), the
    mean loss on a second axis where it has ``mean_loss`` and ``show_loss``. ``quantity`` names
    the value in the caption's scale note, ``ylabel`` on its axis (both default to
    ``column``)."""
    _need(table, ["run", "split", "tree", "epoch", column], where)
    quantity = quantity or column
    ax = _ax(ax)
    sub = table.filter((pl.col("split") == split) & (pl.col("tree") == tree)).sort("epoch")
    runs = sorted(sub["run"].unique().to_list())
    # Colours from every run of the table: a run that lacks this split keeps the others' colours.
    colors = run_colors(sorted(table["run"].unique().to_list()))
    ax2 = ax.twinx() if show_loss and "mean_loss" in sub.columns else None
    band = "ci_low" in sub.columns and "ci_high" in sub.columns
    # The axis holds the intervals too, each with its mean as one group.
    vals = sub.select(column, *(["ci_low", "ci_high"] if band else [])).to_numpy()
    sc = _points_scale(vals.astype(np.float64), scale, where)
    lim = _scaled_axis(ax, "y", sc)
    clipped = 0
    scales = [(quantity, sc.text)]
    for r in runs:
        part = sub.filter(pl.col("run") == r)
        clipped += _curve(
            ax, part["epoch"], part[column], sc, lim, color=colors[r], lw=1.8, label=r
        )
        if band:
            lo = part["ci_low"].to_numpy().astype(np.float64)
            hi = part["ci_high"].to_numpy().astype(np.float64)
            ax.fill_between(
                part["epoch"].to_numpy(), np.clip(lo, *lim), np.clip(hi, *lim),
                where=np.isfinite(lo) & np.isfinite(hi), color=colors[r], alpha=0.2, lw=0,
                gid=BAND_GID,
            )  # fmt: skip
    if ax2 is not None:
        lv = sub["mean_loss"].to_numpy().astype(np.float64)
        sc2 = _points_scale(lv, scale, where)
        lim2 = _scaled_axis(ax2, "y", sc2)
        scales.append(("mean loss", sc2.text))
        for r in runs:
            part = sub.filter(pl.col("run") == r)
            clipped += _curve(
                ax2, part["epoch"], part["mean_loss"], sc2, lim2, color=colors[r], lw=1, ls="--",
                alpha=0.7,
            )  # fmt: skip
    _mark_milestones(ax, milestones)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel or column)
    ax.set_title(f"{split}: {_TREE_LABEL.get(tree, tree)}")
    if ax2 is not None:
        ax2.set_ylabel(f"mean {loss_label} (dashed)")
        ax2.tick_params(axis="y", colors="0.4")
    ax._sampletopo_clipped = clipped  # type: ignore[attr-defined]
    ax._sampletopo_scales = scales  # type: ignore[attr-defined]
    if legend:
        ax.legend(fontsize=8, loc="best")
    return ax


def _grid(nrows: int, ncols: int, w: float = 4.2, h: float = 3.2) -> tuple[Figure, np.ndarray]:
    fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, h * nrows), squeeze=False)
    return fig, axes


def _panels(
    plot: Any, table: pl.DataFrame, title: str, *, extra: Sequence[Any] = (), **kw: Any
) -> Figure:
    """2 x 2 panels, rows train/val, columns join/split, of one ``plot_*`` function.

    One legend for the whole figure sits below the panels: a legend inside a panel hid the
    curve that ran under it in every panel. ``extra`` adds handles (e.g. a line-style key).
    """
    fig, axes = _grid(2, 2, 5.2, 3.6)
    for i, split in enumerate(SPLITS):
        for j, tree in enumerate(TREES):
            plot(table, split=split, tree=tree, ax=axes[i, j], legend=False, **kw)
    handles: dict[str, Any] = {}
    for ax in axes.ravel():  # union over panels: a run may lack a split
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    for h in extra:
        handles.setdefault(h.get_label(), h)
    if any(_clipped(ax) for ax in axes.ravel()):
        from matplotlib.lines import Line2D

        key = Line2D([], [], ls="none", marker="^", color="0.6", markeredgecolor="black",
                     label="beyond the axis (value in the table)")  # fmt: skip
        handles.setdefault(str(key.get_label()), key)
    fig.suptitle(title)
    ncol = min(len(handles), 5) or 1
    rows = -(-len(handles) // ncol)
    # Room below the panels for every legend row (a 9-run legend of 3 rows covered the lower
    # panels' axis labels): about 0.27 in per row of 9 pt text.
    bottom = min(0.5, (0.1 + 0.27 * rows) / fig.get_figheight()) if handles else 0.02
    fig.tight_layout(rect=(0, bottom, 1, 1))
    if handles:
        fig.legend(
            list(handles.values()),
            list(handles.keys()),
            loc="lower center",
            bbox_to_anchor=(0.5, 0.0),
            ncol=ncol,
            fontsize=9,
            frameon=False,
        )
    return fig


def _curves_note(fig: Figure, milestones: Iterable[int] | None) -> str:
    axes = [a for a in fig.axes if hasattr(a, "_sampletopo_scales")]
    # Per quantity, which panels have which scale: "total persistence log (train: join tree,
    # ...), linear (val: split tree)", or just "log" when all panels agree.
    by_q: dict[str, dict[str, list[str]]] = {}
    for a in axes:
        panel = a.get_title().split(" (")[0]
        for quantity, name in _scales_of(a):
            by_q.setdefault(quantity, {}).setdefault(name, []).append(panel)
    scales = []
    for quantity, names in by_q.items():
        if len(names) == 1:
            scales.append(f"{quantity} {next(iter(names))}")
        else:
            each = ", ".join(f"{n} ({', '.join(ps)})" for n, ps in names.items())
            scales.append(f"{quantity} {each}")
    n = sum(_clipped(a) for a in axes)
    ms = sorted(set(milestones or []))
    parts = []
    if ms:
        parts.append(f"Dotted lines: learning-rate drops after epoch(s) {_epochs_text(ms)}.")
    parts.append(f"Y axes: {'; '.join(scales)}.")
    if n:
        parts.append(
            f"{n} value(s) beyond the robust axis ranges are drawn as triangles on the axis edge "
            "(exact values in the table)."
        )
    return " ".join(parts)


def total_persistence_figure(
    summary: pl.DataFrame,
    *,
    p: int = 1,
    milestones: Iterable[int] | None = None,
    title: str = "",
    scale: Scale = "auto",
    loss_label: str = CROSS_ENTROPY,
) -> Figure:
    """2 x 2 panels (train/val x join/split) of :func:`plot_total_persistence`; its numbers
    and caption are attached (:func:`figure_data`)."""
    what = f"Total persistence (p={p}) of the per-sample loss on the kNN graph"
    return metric_figure(
        summary, f"total_persistence_{p}", what=what, title=title or what,
        quantity="total persistence", ylabel=f"total persistence (p={p})",
        milestones=milestones, scale=scale, loss_label=loss_label,
    )  # fmt: skip


def metric_figure(
    table: pl.DataFrame,
    column: str,
    *,
    what: str,
    title: str = "",
    quantity: str = "",
    ylabel: str = "",
    milestones: Iterable[int] | None = None,
    scale: Scale = "auto",
    loss_label: str = CROSS_ENTROPY,
) -> Figure:
    """2 x 2 panels (train/val x join/split) of :func:`plot_metric_curves` of ``column``
    (``what`` says what it is, for the caption: "Pairs with persistence > 2 ..."); its numbers
    and caption are attached (:func:`figure_data`). Replicate means with ``ci_low``/``ci_high``
    get shaded bands, a ``mean_loss`` column a dashed line on a second axis."""
    from matplotlib.lines import Line2D

    key = []
    if "mean_loss" in table.columns:
        key.append(Line2D([], [], color="0.3", lw=1, ls="--", label="mean loss (right axis)"))
    fig = _panels(
        plot_metric_curves, table, title or what, extra=key, column=column,
        milestones=milestones, scale=scale, loss_label=loss_label, quantity=quantity,
        ylabel=ylabel,
    )  # fmt: skip
    band = "ci_low" in table.columns
    cols = (
        ["run", "split", "tree", "epoch"]
        + (["n"] if "n" in table.columns else [])
        + [column]
        + (["ci_low", "ci_high"] if band else [])
        + (["mean_loss"] if "mean_loss" in table.columns else [])
    )
    runs = (
        "variants overlaid, each line the mean over its replicates (seeds) with its 95 % "
        "bootstrap interval shaded"
        if band
        else "runs overlaid"
    )
    loss = f"; dashed: the mean {loss_label} (right axis)" if "mean_loss" in table.columns else ""
    caption = (
        f"{what} against epoch, per data split (rows) and tree (columns), {runs}{loss}. "
        + _fewer_note(table)
        + _curves_note(fig, milestones)
    )
    return attach_data(fig, table.select(cols).sort("run", "split", "tree", "epoch"), caption)


def _fewer_note(table: pl.DataFrame) -> str:
    """Where a replicate mean averages fewer runs than at its other epochs (runs that stopped
    early, e.g. diverged): "lr=20.0 averages 1 of 3 runs at epochs 3-8." (the ``n`` column)."""
    if "n" not in table.columns:
        return ""

    notes = []
    for (run,), part in table.group_by("run", maintain_order=True):
        per_epoch = part.group_by("epoch").agg(pl.col("n").min()).sort("epoch")
        full = int(part["n"].cast(pl.Int64).max() or 0)
        fewer = per_epoch.filter(pl.col("n") < full)
        for (k,), at in fewer.group_by("n", maintain_order=True):
            notes.append(
                f"{str(run).split(' (mean of')[0]} averages {k} of {full} runs at epoch(s) "
                f"{ranges_text(at['epoch'])}"
            )
    if not notes:
        return ""
    return (
        "Fewer replicates where runs stopped early (the table's n): "
        + "; ".join(sorted(notes))
        + ". "
    )


def _unit(loss_label: str) -> str:
    return "nats" if "nats" in loss_label else "loss units"


@dataclass(frozen=True)
class HeatmapAxis:
    """One shared heatmap axis: its scale and range, and the bin edges, which add one overflow
    bin below ``scale.lo`` (``under``) and/or above ``scale.hi`` (``over``) when some values lie
    beyond the range."""

    scale: AxisScale
    edges: np.ndarray
    under: bool
    over: bool


def _heat_axis(
    groups: Sequence[np.ndarray],
    *,
    bins: int,
    scale: str,
    value_range: Sequence[float] | None,
    where: str,
    floor: float | None,
) -> HeatmapAxis:
    # Persistence (floor 0): short-lived pairs are expected; only the long end is fenced.
    sc = axis_scale(
        groups, scale=scale, value_range=value_range, where=where, floor=floor,
        fence_low=floor is None,
    )  # fmt: skip
    inner = sc.edges(bins)
    flat = [np.asarray(g, dtype=np.float64).ravel() for g in groups]
    allv = np.concatenate(flat) if flat else np.empty(0)
    allv = allv[np.isfinite(allv)]
    under = bool(np.any(allv < sc.lo) or (sc.name == "log" and np.any(allv <= 0)))
    over = bool(np.any(allv > sc.hi))
    t = sc.forward(inner)
    w = float(t[1] - t[0])
    parts = [inner]
    if under:
        parts.insert(0, sc.inverse(np.array([t[0] - w])))
    if over:
        # Bins are half-open [a, b): nudge the boundary up so a pair at exactly ``hi`` stays
        # in range and the overflow bin holds only what lies beyond.
        inner = inner.copy()
        inner[-1] = np.nextafter(inner[-1], np.inf)
        parts[-1] = inner
        parts.append(sc.inverse(np.array([t[-1] + w])))
    return HeatmapAxis(sc, np.concatenate(parts), under, over)


def _finite(t: pl.DataFrame) -> pl.DataFrame:
    return t.filter(pl.col("persistence").is_finite())


def heatmap_axes(
    tables: Sequence[pl.DataFrame],
    *,
    bins: int = 30,
    scale: Scale = "auto",
    value_range: Sequence[float] | None = None,
    where: str = "heatmap_axes",
) -> tuple[HeatmapAxis, HeatmapAxis]:
    """Shared birth (x) and persistence (y) axes of heatmap panels, one per table.

    Each axis gets its own scale and a robust range (see :mod:`sampletopo.plotting._scales`:
    a panel whose values lie far beyond the others' does not stretch it); pairs beyond the range
    fall in a marked overflow bin. ``value_range`` fixes both axes' range (both are loss values:
    birth a loss, persistence a loss difference).
    """
    check_int("bins", bins, 2, 1000, where=where)
    fins = [_finite(t) for t in tables]
    births = [f["birth"].to_numpy() for f in fins]
    pers = [f["persistence"].to_numpy() for f in fins]
    return (
        _heat_axis(
            births, bins=bins, scale=scale, value_range=value_range, where=where, floor=None
        ),
        _heat_axis(pers, bins=bins, scale=scale, value_range=value_range, where=where, floor=0.0),
    )


def heatmap_bins(
    tables: Sequence[pl.DataFrame], *, bins: int = 30, scale: Scale = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """Shared (birth, persistence) bin edges of ``tables`` (see :func:`heatmap_axes`)."""
    xa, ya = heatmap_axes(tables, bins=bins, scale=scale, where="heatmap_bins")
    return xa.edges, ya.edges


def heatmap_counts(table: pl.DataFrame, xbins: np.ndarray, ybins: np.ndarray) -> np.ndarray:
    """Pairs per (birth, persistence) bin of the finite pairs of one diagram table; pairs beyond
    the edges are counted in the outermost bins (the overflow bins of :func:`heatmap_axes`)."""
    fin = _finite(table)
    b = np.clip(fin["birth"].to_numpy(), xbins[0], xbins[-1])
    q = np.clip(fin["persistence"].to_numpy(), ybins[0], ybins[-1])
    h, _, _ = np.histogram2d(b, q, bins=[xbins, ybins])
    return h


# Counts spanning more than this factor get a logarithmic colour scale; below it a linear scale
# with whole-number ticks reads better (a log bar over 1..6 showed ticks like "6x10^0").
_LOG_COUNTS_ABOVE = 100.0


def shared_norm(
    panels: Sequence[tuple[pl.DataFrame, np.ndarray, np.ndarray]],
) -> Normalize:
    """One colour scale covering every ``(table, xbins, ybins)`` panel.

    Empty bins are masked (drawn as background), so the scale starts at 1 pair. It is
    logarithmic when the fullest bin holds more than 100 pairs, linear otherwise; draw its
    colour bar with :func:`count_colorbar` for whole-number tick labels either way.
    """
    vmax = max([1.0, *(float(heatmap_counts(t, xb, yb).max()) for t, xb, yb in panels)])
    if vmax > _LOG_COUNTS_ABOVE:
        return LogNorm(vmin=1, vmax=vmax)
    return Normalize(vmin=1, vmax=max(vmax, 2.0))


def count_colorbar(fig: Figure, mappable: Any, **kw: Any) -> Any:
    """Colour bar of pair counts with plain whole-number ticks (1, 2, 5, 10, 20, ... on a log
    scale; integers on a linear one). ``kw`` goes to ``fig.colorbar`` (``cax=``, ``ax=``...).
    """
    kw.setdefault("label", "pairs per bin")
    cbar = fig.colorbar(mappable, **kw)
    if isinstance(mappable.norm, LogNorm):
        cbar.locator = LogLocator(base=10, subs=(1.0, 2.0, 5.0))
        cbar.formatter = StrMethodFormatter("{x:.0f}")
        cbar.minorticks_off()
    else:
        cbar.locator = MaxNLocator(integer=True)
        cbar.formatter = StrMethodFormatter("{x:.0f}")
    cbar.update_ticks()
    return cbar


def _beyond(table: pl.DataFrame, xa: HeatmapAxis, ya: HeatmapAxis) -> int:
    fin = _finite(table)
    b, q = fin["birth"].to_numpy(), fin["persistence"].to_numpy()
    out = (b > xa.scale.hi) | (q > ya.scale.hi) | (b < xa.scale.lo) | (q < ya.scale.lo)
    return int(out.sum())


def _mark_overflow(ax: Axes, xa: HeatmapAxis, ya: HeatmapAxis) -> None:
    """Red dashed lines between the range and its overflow bins, each bin labelled."""
    kw: dict[str, Any] = {"color": "#d62728", "ls": "--", "lw": 0.9, "gid": OVERFLOW_GID}
    for on, edge, text, is_x, at in (
        (xa.over, xa.scale.hi, f"> {xa.scale.hi:.3g}", True, 1.0),
        (xa.under, xa.scale.lo, f"< {xa.scale.lo:.3g}", True, 0.0),
        (ya.over, ya.scale.hi, f"> {ya.scale.hi:.3g}", False, 1.0),
        (ya.under, ya.scale.lo, f"< {ya.scale.lo:.3g}", False, 0.0),
    ):
        if not on:
            continue
        if is_x:
            ax.axvline(edge, **kw)
            ax.text(at, 0.5, text, rotation=90, ha="right" if at else "left", va="center",
                    transform=ax.transAxes, fontsize=6, color="#d62728")  # fmt: skip
        else:
            ax.axhline(edge, **kw)
            ax.text(0.5, at, text, ha="center", va="top" if at else "bottom",
                    transform=ax.transAxes, fontsize=6, color="#d62728")  # fmt: skip


def plot_heatmap(
    table: pl.DataFrame,
    *,
    xbins: np.ndarray | None = None,
    ybins: np.ndarray | None = None,
    axes: tuple[HeatmapAxis, HeatmapAxis] | None = None,
    norm: Any = None,
    ax: Axes | None = None,
    title: str = "",
    loss_label: str = CROSS_ENTROPY,
) -> Axes:
    """2-D histogram of the finite pairs of one diagram table: birth (x) vs persistence (y).

    Pass the same ``axes`` (from :func:`heatmap_axes`) and ``norm`` to every panel that should
    be compared; ``xbins``/``ybins`` give plain linear edges instead. Pairs beyond the range are
    counted in overflow bins marked by red dashed lines. An empty diagram (e.g. a constant
    loss) draws an empty panel with a note, not an error.
    """
    ax = _ax(ax, (4, 3.2))
    fin = _finite(table)
    if axes is None:
        if xbins is not None and ybins is not None:
            lin = [AxisScale("linear", float(e[0]), float(e[-1])) for e in (xbins, ybins)]
            axes = (
                HeatmapAxis(lin[0], np.asarray(xbins), False, False),
                HeatmapAxis(lin[1], np.asarray(ybins), False, False),
            )
        else:
            axes = heatmap_axes([table])
    xa, ya = axes
    hm = np.ma.masked_equal(heatmap_counts(table, xa.edges, ya.edges).T, 0)
    # viridis keeps single-pair bins visible (dark) on the pale empty background.
    ax.set_facecolor("#f4f4f4")
    mesh = ax.pcolormesh(xa.edges, ya.edges, hm, norm=norm, cmap="viridis", shading="flat")
    xa.scale.apply(ax, "x")
    ya.scale.apply(ax, "y")
    ax.set_xlim(xa.edges[0], xa.edges[-1])
    ax.set_ylim(ya.edges[0], ya.edges[-1])
    _mark_overflow(ax, xa, ya)
    if fin.height == 0:
        ax.text(
            0.5,
            0.5,
            "no finite pairs",
            ha="center",
            va="center",
            transform=ax.transAxes,
            color="0.4",
        )
    beyond = _beyond(table, xa, ya)
    ax.set_xlabel(f"birth ({loss_label})", fontsize=8)
    ax.set_ylabel(f"persistence ({_unit(loss_label)})", fontsize=8)
    ax.tick_params(labelsize=7)
    note = f", {beyond} in overflow" if beyond else ""
    ax.set_title(title or f"{fin.height} pairs{note}", fontsize=8)
    if title and beyond:
        ax.set_title(f"{title}\n{fin.height} pairs, {beyond} in overflow", fontsize=8)
    ax._sampletopo_mesh = mesh  # type: ignore[attr-defined]
    ax._sampletopo_clipped = beyond  # type: ignore[attr-defined]
    return ax


def default_heatmap_epochs(epochs: Sequence[int], milestones: Iterable[int] | None) -> list[int]:
    """The seeds' choice: the first trained epoch, the epochs on each side of every LR drop, the
    final epoch; the first, middle and final epoch when the LR never drops.

    The first trained epoch is 1 (epoch 0 is the initial model, which can explode), or the
    first recorded epoch when only later ones were recorded. With the LR changing between epoch
    ``m`` and ``m + 1`` (``m`` from :func:`sampletopo.figures.run_milestones`), both ``m`` and
    ``m + 1`` are chosen. Epochs that were not recorded are left out; the middle epoch is the
    recorded one nearest to the midpoint of the first and final.

    >>> default_heatmap_epochs(range(0, 41), [12, 30])
    [1, 12, 13, 30, 31, 40]
    >>> default_heatmap_epochs(range(0, 21), [])
    [1, 10, 20]
    """
    have = sorted(set(int(e) for e in epochs))
    if not have:
        return []
    trained = [e for e in have if e > 0] or have
    first, last = trained[0], trained[-1]
    ms = sorted(set(int(m) for m in milestones or []))
    chosen = [first]
    present = set(trained)
    drops = [e for m in ms for e in (m, m + 1) if e in present]
    if drops:
        chosen += drops
    else:
        mid = (first + last) / 2
        chosen.append(min(trained, key=lambda e: (abs(e - mid), e)))
    chosen.append(last)
    return sorted(set(chosen))


def _heat_table(
    panels: Mapping[tuple[str, int], pl.DataFrame], xa: HeatmapAxis, ya: HeatmapAxis
) -> pl.DataFrame:
    """Every non-empty bin of every panel: its edges, its count, and whether it is overflow."""
    rows: list[dict[str, Any]] = []
    xo = np.zeros(xa.edges.size - 1, dtype=bool)
    yo = np.zeros(ya.edges.size - 1, dtype=bool)
    if xa.under:
        xo[0] = True
    if xa.over:
        xo[-1] = True
    if ya.under:
        yo[0] = True
    if ya.over:
        yo[-1] = True
    for (run, epoch), t in panels.items():
        h = heatmap_counts(t, xa.edges, ya.edges)
        for i, j in zip(*np.nonzero(h), strict=True):
            rows.append({
                "run": run, "epoch": int(epoch),
                "birth_lo": float(xa.edges[i]), "birth_hi": float(xa.edges[i + 1]),
                "persistence_lo": float(ya.edges[j]), "persistence_hi": float(ya.edges[j + 1]),
                "pairs": int(h[i, j]), "overflow": bool(xo[i] or yo[j]),
            })  # fmt: skip
    schema = {
        "run": pl.String, "epoch": pl.Int64, "birth_lo": pl.Float64, "birth_hi": pl.Float64,
        "persistence_lo": pl.Float64, "persistence_hi": pl.Float64, "pairs": pl.Int64,
        "overflow": pl.Boolean,
    }  # fmt: skip
    return pl.DataFrame(rows, schema=schema)


def _fixed_grid(
    nrows: int, ncols: int, *, panel: tuple[float, float], right: float = 1.1
) -> tuple[Figure, Any, tuple[float, float, float, float]]:
    """A figure whose panels are ``panel`` inches each, whatever their number; returns it, its
    grid spec and the panel area (left, bottom, right, top) in figure fractions."""
    w, h = panel
    left, top, bottom, wgap, hgap = 0.75, 0.7, 0.6, 0.45, 0.75
    fw = left + ncols * w + (ncols - 1) * wgap + right
    fh = top + nrows * h + (nrows - 1) * hgap + bottom
    fig = plt.figure(figsize=(fw, fh))
    area = (left / fw, bottom / fh, 1 - right / fw, 1 - top / fh)
    gs = fig.add_gridspec(
        nrows, ncols, left=area[0], bottom=area[1], right=area[2], top=area[3],
        wspace=wgap / w, hspace=hgap / h,
    )  # fmt: skip
    return fig, gs, area


def heatmap_figure(
    diagrams: pl.DataFrame,
    *,
    split: str,
    tree: str,
    epochs: Sequence[int],
    runs: Sequence[str] | None = None,
    bins: int = 30,
    scale: Scale = "auto",
    value_range: Sequence[float] | None = None,
    columns: int = 4,
    loss_label: str = CROSS_ENTROPY,
    note: str = "",
) -> Figure:
    """Heatmaps at chosen epochs: rows are runs, columns epochs, wrapped after ``columns``
    panels (a run then takes several rows). Every panel is :data:`HEATMAP_PANEL_INCHES` in
    size, on one set of bins and one colour scale, with one colour bar. ``note`` ends the
    caption (e.g. why the epochs are fewer than by default).

    ``diagrams`` is :func:`sampletopo.readers.read_diagrams` output. ``scale``, ``bins`` and
    ``value_range`` set both axes (see :func:`heatmap_axes`). The numbers (every non-empty bin)
    and the caption are attached (:func:`figure_data`). Raises if an asked epoch has no
    diagram in some run (naming the run and the epochs it has).
    """
    where = "heatmap_figure"
    _need(diagrams, ["run", "split", "tree", "epoch", "birth", "persistence"], where)
    check_int("columns", columns, 1, 1000, where=where)
    sub = diagrams.filter((pl.col("split") == split) & (pl.col("tree") == tree))
    runs = list(runs) if runs is not None else sorted(sub["run"].unique().to_list())
    epochs = [int(e) for e in epochs]
    if not runs or not epochs:
        raise invalid(
            "epochs",
            f"one or more epochs of one or more runs with {split}/{tree} diagrams",
            where=where,
            got=f"runs={runs}, epochs={list(epochs)}: nothing to draw",
        )
    panels: dict[tuple[str, int], pl.DataFrame] = {}
    for r in runs:
        have = set(sub.filter(pl.col("run") == r)["epoch"].unique().to_list())
        for e in epochs:
            if e not in have:
                raise invalid(
                    "epochs",
                    f"epochs with {split} diagrams in every run",
                    where=where,
                    got=f"epoch {e}, which run {r} lacks: run {r} has no {split} diagram at "
                    f"epoch {e}",
                    fix=f"It has epochs {sorted(have)[:3]}...{sorted(have)[-3:]}; choose among "
                    "those.",
                )
            panels[(r, e)] = sub.filter((pl.col("run") == r) & (pl.col("epoch") == e))
    xa, ya = heatmap_axes(
        list(panels.values()), bins=bins, scale=scale, value_range=value_range, where=where
    )
    norm = shared_norm([(t, xa.edges, ya.edges) for t in panels.values()])
    ncols = min(columns, len(epochs))
    blocks = -(-len(epochs) // ncols)
    nrows = len(runs) * blocks
    fig, gs, area = _fixed_grid(nrows, ncols, panel=HEATMAP_PANEL_INCHES)
    mesh = None
    beyond = 0
    for i, r in enumerate(runs):
        for j, e in enumerate(epochs):
            row, col = i * blocks + j // ncols, j % ncols
            ax = plot_heatmap(
                panels[(r, e)], axes=(xa, ya), norm=norm, ax=fig.add_subplot(gs[row, col]),
                title=f"{r}, epoch {e}", loss_label=loss_label,
            )  # fmt: skip
            mesh = ax._sampletopo_mesh  # type: ignore[attr-defined]
            beyond += _clipped(ax)
            below = row + 1 < nrows and (i < len(runs) - 1 or j + ncols < len(epochs))
            if below:
                ax.set_xlabel("")
            if col:
                ax.set_ylabel("")
    fig.suptitle(
        f"{_SPLIT_TEXT.get(split, split)}, {_TREE_TEXT.get(tree, tree)}: persistence-diagram "
        "heatmaps (shared bins and colour scale)",
        y=1 - 0.25 / fig.get_figheight(),
    )
    fw = fig.get_figwidth()
    cax = fig.add_axes((area[2] + 0.25 / fw, area[1], 0.14 / fw, area[3] - area[1]))
    assert mesh is not None
    count_colorbar(fig, mesh, cax=cax)
    caption = (
        f"{_SPLIT_TEXT.get(split, split)}, {_TREE_TEXT.get(tree, tree)}: persistence-diagram "
        f"heatmaps (birth against persistence of the finite pairs) at epochs "
        f"{_epochs_text(epochs)}; one row per run ({', '.join(runs)}). All panels share bins "
        f"and the colour scale; birth axis {xa.scale.text}, persistence axis {ya.scale.text}."
    )
    if beyond:
        caption += (
            f" {beyond} pair(s) beyond the axis ranges are counted in the overflow bins outside "
            "the red dashed lines."
        )
    if note:
        caption += " " + note
    return attach_data(fig, _heat_table(panels, xa, ya), caption)


def plot_wasserstein(
    table: pl.DataFrame,
    *,
    split: str,
    tree: str,
    order: int = 1,
    milestones: Iterable[int] | None = None,
    legend: bool = True,
    scale: Scale = "auto",
    ax: Axes | None = None,
) -> Axes:
    """Wasserstein distance of each epoch's diagram to the reference epoch's, runs overlaid.

    ``legend=False`` leaves the legend to the caller (see :func:`wasserstein_figure`); ``scale``
    as in :func:`plot_total_persistence` (a distance of 0 at the reference epoch makes ``auto``
    a symmetric-log axis when the others span more than 100x).
    """
    where = "plot_wasserstein"
    col = f"w{order}"
    _need(table, ["run", "split", "tree", "epoch", col], where)
    ax = _ax(ax)
    sub = table.filter((pl.col("split") == split) & (pl.col("tree") == tree)).sort("epoch")
    runs = sorted(sub["run"].unique().to_list())
    # Colours from every run of the table: a run that lacks this split keeps the others' colours.
    colors = run_colors(sorted(table["run"].unique().to_list()))
    vals = sub[col].to_numpy().astype(np.float64)
    sc = _points_scale(vals, scale, where)
    lim = _scaled_axis(ax, "y", sc)
    clipped = 0
    for r in runs:
        part = sub.filter(pl.col("run") == r)
        ref = int(part["reference_epoch"][0]) if "reference_epoch" in part.columns else None
        label = f"{r}" + (f" (to epoch {ref})" if ref is not None else "")
        clipped += _curve(ax, part["epoch"], part[col], sc, lim, color=colors[r], lw=1.8,
                          label=label)  # fmt: skip
    _mark_milestones(ax, milestones)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"W{order} distance (L-inf ground)")
    ax.set_title(f"{split}: {_TREE_LABEL.get(tree, tree)}")
    ax._sampletopo_clipped = clipped  # type: ignore[attr-defined]
    ax._sampletopo_scales = [(f"W{order}", sc.text)]  # type: ignore[attr-defined]
    if legend:
        ax.legend(fontsize=8, loc="best")
    return ax


def wasserstein_figure(
    table: pl.DataFrame,
    *,
    order: int = 1,
    milestones: Iterable[int] | None = None,
    title: str = "",
    scale: Scale = "auto",
) -> Figure:
    """2 x 2 panels (train/val x join/split) of :func:`plot_wasserstein`; numbers and caption
    attached (:func:`figure_data`)."""
    title = title or f"Wasserstein-{order} distance to the final epoch's diagram"
    fig = _panels(plot_wasserstein, table, title, order=order, milestones=milestones, scale=scale)
    col = f"w{order}"
    cols = [c for c in ("run", "split", "tree", "epoch", "reference_epoch", col) if c in table]
    caption = (
        f"Wasserstein-{order} distance (L-inf ground metric) of each epoch's persistence "
        "diagram to the reference epoch's, per data split (rows) and tree (columns), runs "
        "overlaid. " + _curves_note(fig, milestones)
    )
    return attach_data(fig, table.select(cols).sort("run", "split", "tree", "epoch"), caption)


def plot_diagram(
    d: Diagram,
    *,
    ax: Axes | None = None,
    title: str = "",
    scale: Scale = "linear",
    loss_label: str = CROSS_ENTROPY,
) -> Axes:
    """A persistence diagram: finite pairs as points, essential pairs on a marked "inf" line.

    Join diagrams lie above the diagonal (birth <= death), split diagrams below it. The axes
    span the finite pairs (robustly, see :mod:`sampletopo.plotting._scales`; a far outlier is
    drawn as a triangle on the edge) and the essential pairs' births; the essential pairs sit on
    a dashed line beyond the finite range ("+inf" above for join, "-inf" below for split), so
    they never set the range.
    """
    where = "plot_diagram"
    ax = _ax(ax, (4.2, 4))
    fin = d.finite()
    ess = d.select(d.essential)
    pts = [np.array([v]) for v in np.concatenate([fin.birth, fin.death, ess.birth])]
    sc = axis_scale(pts, scale=scale, where=where)
    lo, hi = _padded(sc, 0.05)
    t_lo, t_hi = (float(v) for v in sc.forward(np.array([lo, hi])))
    up = d.tree == "join"
    inf_t = t_hi + 0.08 * (t_hi - t_lo) if up else t_lo - 0.08 * (t_hi - t_lo)
    inf_y = float(sc.inverse(np.array([inf_t]))[0])
    edge_t = inf_t + (0.05 if up else -0.05) * (t_hi - t_lo)
    edge = float(sc.inverse(np.array([edge_t]))[0])
    sc.apply(ax, "x")
    sc.apply(ax, "y")
    ax.set_xlim(lo, hi)
    ax.set_ylim((lo, edge) if up else (edge, hi))
    ax.plot([lo, hi], [lo, hi], color="0.6", lw=1)
    b = np.clip(fin.birth, sc.lo, sc.hi)
    dd = np.clip(fin.death, sc.lo, sc.hi)
    out = (fin.birth != b) | (fin.death != dd)
    ax.scatter(b[~out], dd[~out], s=10, alpha=0.7, label=f"{len(fin)} finite pairs")
    if out.any():
        ax.scatter(
            b[out], dd[out], marker="^" if up else "v", s=40, color="C1", edgecolors="black",
            linewidths=0.6, gid=CLIPPED_GID, label=f"{int(out.sum())} beyond the axes",
        )  # fmt: skip
    if len(ess):
        ax.axhline(inf_y, color="C3", ls="--", lw=0.8)
        ax.scatter(
            np.clip(ess.birth, sc.lo, sc.hi), np.full(len(ess), inf_y),
            marker="^" if up else "v", color="C3", s=30,
            label=f"{len(ess)} essential ({'+' if up else '-'}inf)",
        )  # fmt: skip
        ax.text(0.01, inf_y, "+inf" if up else "-inf", color="C3", fontsize=8, va="bottom" if up
                else "top", transform=ax.get_yaxis_transform())  # fmt: skip
    ax.set_xlabel(f"birth ({loss_label})", fontsize=8)
    ax.set_ylabel(f"death ({loss_label})", fontsize=8)
    ax.set_title(title or f"{d.tree} diagram")
    ax.legend(fontsize=7, loc="lower right" if up else "upper left")
    ax._sampletopo_clipped = int(out.sum())  # type: ignore[attr-defined]
    ax._sampletopo_inf = inf_y  # type: ignore[attr-defined]
    return ax


def plot_barcode(
    d: Diagram,
    *,
    top: int = 60,
    ax: Axes | None = None,
    title: str = "",
    loss_label: str = CROSS_ENTROPY,
) -> Axes:
    """True birth-death bars of the ``top`` most persistent finite pairs (longest at the top)."""
    ax = _ax(ax, (5, 4))
    t = d.top(top)
    ys = np.arange(len(t))[::-1]
    lo = np.minimum(t.birth, t.death)
    ax.hlines(ys, lo, lo + t.persistence, color="C0", lw=2)
    ax.set_yticks([])
    ax.set_xlabel(loss_label)
    ax.set_ylabel(f"{len(t)} most persistent pairs")
    ax.set_title(title or f"{d.tree} barcode")
    return ax


_BARCODE_TOP = 60
"""Bars a diagram figure's barcode holds at most (the most persistent finite pairs)."""


def _barcode_text(bars: Sequence[tuple[int, int]]) -> str:
    """What the barcodes hold: "all its finite pairs (13-21 per diagram)" or "its finite
    pairs (13-800 per diagram; at most the 60 most persistent are drawn)"."""

    def span(v: Sequence[int]) -> str:
        return f"{min(v)}" if min(v) == max(v) else f"{min(v)}-{max(v)}"

    shown, total = [b[0] for b in bars], [b[1] for b in bars]
    if shown == total:
        return f"all its finite pairs ({span(total)} per diagram)"
    return (
        f"its finite pairs ({span(total)} per diagram; at most the {_BARCODE_TOP} most "
        "persistent are drawn)"
    )


def diagrams_figure(
    diagrams: Mapping[tuple[str, str], Diagram],
    *,
    run: str,
    epoch: int,
    loss_label: str = CROSS_ENTROPY,
) -> Figure:
    """Each split's join and split diagram beside its barcode at one epoch: a 2 x 4 grid, one row
    per split. ``diagrams`` maps ``(split, tree)`` to the diagram. Its pairs and caption are
    attached (:func:`figure_data`)."""
    fig, axes = plt.subplots(len(SPLITS), 2 * len(TREES), figsize=(18, 8), squeeze=False)
    tables = []
    beyond = 0
    bars: list[tuple[int, int]] = []  # (pairs in the barcode, finite pairs) per diagram
    for i, s in enumerate(SPLITS):
        for j, tree in enumerate(TREES):
            d = diagrams[(s, tree)]
            bars.append((len(d.top(_BARCODE_TOP)), len(d.finite())))
            ax = plot_diagram(
                d, ax=axes[i, 2 * j], title=f"{s} {tree} diagram, epoch {epoch}",
                loss_label=loss_label,
            )  # fmt: skip
            beyond += _clipped(ax)
            plot_barcode(
                d, ax=axes[i, 2 * j + 1], title=f"{s} {tree} barcode, epoch {epoch}",
                loss_label=loss_label, top=_BARCODE_TOP,
            )  # fmt: skip
            t = d.to_polars().with_columns(
                pl.lit(s).alias("split"), pl.Series("essential", np.asarray(d.essential))
            )
            tables.append(t)
    fig.suptitle(f"{run}: persistence diagrams and barcodes at epoch {epoch}")
    fig.tight_layout()
    caption = (
        f"Run {run}, epoch {epoch}: join- and split-tree persistence diagrams of the per-sample "
        f"loss, each beside the barcode of {_barcode_text(bars)}; rows: training and "
        "validation set. Essential pairs (which never die) sit on the dashed inf line."
    )
    if beyond:
        caption += f" {beyond} finite pair(s) beyond the robust axis range are drawn as triangles."
    table = pl.concat(tables).select(
        "split", "tree", "birth", "death", "persistence", "essential", "birth_sample",
        "death_sample",
    )  # fmt: skip
    return attach_data(fig, table, caption)


def comparison_panels(
    rows: Sequence[tuple[str, int, Any, Mapping[str, pl.DataFrame]]],
    *,
    split: str = "val",
    levels: int = 20,
    loss_label: str = CROSS_ENTROPY,
) -> Figure:
    """Per run, the 2-D random-direction plot beside the sample-space heatmaps (join and split)
    of the same epoch: ``rows`` holds ``(run, epoch, landscape, {tree: diagram table})``.

    The landscapes share one set of absolute contour levels
    (:func:`sampletopo.plotting._landscape.shared_levels`), so two runs whose losses differ look
    different, and one colour bar of those levels beside them. Heatmaps share bins per tree and one
    colour scale across all rows, drawn as one colour bar at the right, level with the heatmap
    rows. The landscape grids, the levels and the heatmap bins are attached
    (:func:`figure_data`).
    """
    from sampletopo.plotting._landscape import (
        landscape_table,
        level_colorbar,
        plot_random_directions,
    )
    from sampletopo.plotting._landscape import shared_levels as _shared_levels

    lv = _shared_levels([r[2] for r in rows], levels)
    hax = {t: heatmap_axes([r[3][t] for r in rows]) for t in TREES}
    norm = shared_norm([(r[3][t], hax[t][0].edges, hax[t][1].edges) for r in rows for t in TREES])
    # Columns: landscape, its one colour bar (shared levels: one bar serves every row), join
    # heatmap, split heatmap.
    fig = plt.figure(figsize=(16, 4.4 * len(rows)))
    # The empty column leaves room for the bar's tick labels and title.
    gs = fig.add_gridspec(len(rows), 5, width_ratios=[1.0, 0.04, 0.08, 1.0, 1.0])
    axes = np.empty((len(rows), 3), dtype=object)
    for i in range(len(rows)):
        for j, col in enumerate((0, 3, 4)):
            axes[i, j] = fig.add_subplot(gs[i, col])
    level_cax = fig.add_subplot(gs[:, 1])
    mesh = None
    contours = None
    tables = []
    for i, (name, epoch, land, tabs) in enumerate(rows):
        la = plot_random_directions(
            land, ax=axes[i, 0], levels=lv.tolist(), loss_label=loss_label, colorbar=False
        )
        contours = la._sampletopo_contours  # type: ignore[attr-defined]
        axes[i, 0].set_title(f"{name}: parameter space, epoch {epoch}", fontsize=9)
        tables.append(landscape_table(land).with_columns(
            pl.lit(name).alias("run"), pl.lit("landscape").alias("panel")))  # fmt: skip
        for j, t in enumerate(TREES, start=1):
            ax = plot_heatmap(
                tabs[t], axes=hax[t], norm=norm, ax=axes[i, j], loss_label=loss_label,
                title=f"{name}: {split} {t}-tree heatmap, epoch {epoch}",
            )  # fmt: skip
            mesh = ax._sampletopo_mesh  # type: ignore[attr-defined]
            tables.append(
                _heat_table({(name, epoch): tabs[t]}, *hax[t]).with_columns(
                    pl.lit(f"heatmap-{t}").alias("panel")
                )
            )
    fig.suptitle(
        "Parameter-space landscape (filter-normalized random directions, shared contour levels) "
        "beside the sample-space persistence heatmaps of the same epoch"
    )
    assert contours is not None
    level_colorbar(contours, label=f"{loss_label} (shared levels)", cax=level_cax)
    fig.tight_layout(rect=(0, 0, 0.94, 1))
    top = axes[0, -1].get_position()
    bottom = axes[-1, -1].get_position()
    cax = fig.add_axes((0.95, bottom.y0, 0.01, top.y1 - bottom.y0))
    assert mesh is not None
    count_colorbar(fig, mesh, cax=cax)
    caption = (
        "Per run (rows): the loss along two filter-normalized random directions at the final "
        f"epoch, on contour levels shared by all runs ({_levels_text(lv)}), beside the "
        f"{_SPLIT_TEXT.get(split, split).lower()} join- and split-tree persistence heatmaps of "
        "the same epoch (shared bins and colour scale)."
    )
    table = pl.concat(tables, how="diagonal_relaxed")
    return attach_data(fig, table, caption, levels=[float(v) for v in lv])


def _levels_text(lv: np.ndarray) -> str:
    return (
        f"{lv.size} levels from {lv[0]:.4g} to {lv[-1]:.4g}, log-spaced above the minimum"
        if lv.size > 2
        and (lv[-1] - lv[0]) > 0
        and not np.allclose(np.diff(lv), np.diff(lv)[0], rtol=1e-6)
        else f"{lv.size} evenly spaced levels from {lv[0]:.4g} to {lv[-1]:.4g}"
    )


def save_figure(fig: Figure, path: Path, **options: Any) -> Path:
    """Write ``fig`` to ``path`` (its format from the suffix) atomically, as every file
    sampletopo writes (:func:`sampletopo._io.write_atomic`): a full disk or a read-only folder
    is an ``OSError`` naming ``path``, and no half-written figure is left. ``options`` go to
    ``Figure.savefig``."""
    fmt = path.suffix.lstrip(".") or "png"
    return write_atomic(path, lambda fh: fig.savefig(fh, format=fmt, **options))


def save_figure_data(fig: Figure, path: Path) -> Path | None:
    """Write the numbers attached to ``fig`` (:func:`attach_data`) as the Parquet table beside
    the figure file ``path`` (:func:`sampletopo.runs.figure_table_file`), its caption and extras
    in the footer; ``None`` when nothing is attached."""
    import json

    from sampletopo._runfiles import write_parquet
    from sampletopo.runs import figure_table_file

    data = figure_data(fig)
    if data is None:
        return None
    meta = {CAPTION_KEY: data.caption, EXTRA_KEY: json.dumps(data.extra)}
    return write_parquet(data.table, figure_table_file(path), metadata=meta)


CAPTION_KEY = "sampletopo.caption"
"""Footer key of a figure table: the figure's caption."""
EXTRA_KEY = "sampletopo.figure"
"""Footer key of a figure table: JSON of what the table's rows do not hold (contour levels)."""


def read_caption(figure: Path) -> str | None:
    """The caption stored beside the figure file ``figure`` (``None`` when there is none or the
    table cannot be read)."""
    from sampletopo.runs import figure_table_file

    p = figure_table_file(figure)
    if not p.is_file():
        return None
    try:
        return pl.read_parquet_metadata(p).get(CAPTION_KEY)
    except Exception:  # a damaged table: the caption falls back to the file name
        return None


def save(fig: Figure, path: Path, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Write ``fig`` as ``path`` with each suffix in ``formats``, and its numbers as
    ``<path>.parquet`` (:func:`save_figure_data`); close it; return the figure paths."""
    out = []
    try:
        for fmt in formats:
            p = path.parent / f"{path.name}.{fmt}"  # names may hold dots (lr=0.1)
            out.append(save_figure(fig, p, dpi=110, bbox_inches="tight"))
        save_figure_data(fig, path.parent / f"{path.name}.png")
    finally:
        plt.close(fig)
    return out


_FEATURE_ORDER = ("raw", "standardized", "pca")
_SET_WORDS = {"train": "training set", "val": "validation set"}


def _features_key(features: str) -> tuple[int, str]:
    """Features in one fixed order: raw, standardized, pca, then feature files by path."""
    order = _FEATURE_ORDER.index(features) if features in _FEATURE_ORDER else len(_FEATURE_ORDER)
    return order, features


def sensitivity_colors(features: Iterable[str]) -> dict[str, Any]:
    """One colour per graph features value, the same whatever else a figure shows: raw,
    standardized and pca always take the first three colours of the colorblind palette, feature
    files the next ones by path (so ``compare --figure`` and the report agree)."""
    files = sorted({f for f in features if f not in _FEATURE_ORDER})
    names = [*_FEATURE_ORDER, *files]
    pal = sns.color_palette("colorblind", max(len(names), 10))
    return {f: pal[i % len(pal)] for i, f in enumerate(names)}


def _features_text(features: str, pca: Any) -> str:
    """``pca (20 axes)`` for PCA features with a known size, the features value otherwise."""
    return f"{features} ({int(pca)} axes)" if features == "pca" and pca is not None else features


def _sensitivity_features(table: pl.DataFrame) -> list[tuple[str, Any]]:
    """``(features, pca_components)`` of the table's rows, in the fixed features order."""
    pca = table["pca_components"] if "pca_components" in table.columns else None
    pairs = {(str(f), None if pca is None else pca[i]) for i, f in enumerate(table["features"])}
    return sorted(pairs, key=lambda fp: (*_features_key(fp[0]), fp[1] or 0))


def sensitivity_caption(table: pl.DataFrame, *, confidence: float = 0.95) -> str:
    """The caption of a graph-sensitivity figure (:func:`plot_sensitivity`) of ``table`` (rows
    of :func:`sampletopo.replicates.sensitivity`): what is compared, on which split, tree and
    epochs, over which settings, and the ``sampletopo compare`` command of one point (with
    ``--pca-components`` for PCA features)."""
    first = table.row(0, named=True)
    split, tree = first.get("split", "val"), first.get("tree", "split")
    epochs = sorted(set(table["epoch"].to_list()))
    ks = sorted(set(table["k"].to_list()))
    feats = _sensitivity_features(table)
    pairs = sorted({(a, b) for a, b in table.select("group_a", "group_b").iter_rows()})
    pair = "; ".join(f"{a} - {b}" for a, b in pairs)
    sizes = sorted({int(p) for f, p in feats if f == "pca" and p is not None})
    pca = f" --pca-components {sizes[0]}" if len(sizes) == 1 else " --pca-components N"
    cmd = (
        f"sampletopo compare RUNS --metric {first['metric']} --split {split} --tree {tree} "
        f"--epochs {' '.join(map(str, epochs))} --k K --features F"
    )
    with_pca = f" (add{pca} for pca)" if sizes else ""
    return (
        f"Graph sensitivity: the difference of the variants' mean {first['metric']} "
        f"({_SET_WORDS.get(split, split)}, {tree} tree) at epoch "
        f"{', '.join(map(str, epochs))} ({pair}), with its {confidence * 100:g} % bootstrap "
        f"interval, for k = {', '.join(map(str, ks))} and features "
        f"{', '.join(_features_text(f, p) for f, p in feats)} (one line per features value); "
        f"each point is `{cmd}`{with_pca}."
    )


def plot_sensitivity(table: pl.DataFrame, *, ax: Axes | None = None) -> Axes:
    """A variant difference against the kNN graph's k, one line per features value: the rows
    of :func:`sampletopo.replicates.sensitivity` (``difference`` with its ``ci_low`` ..
    ``ci_high`` interval as error bars; none where a group has one replicate). With several
    pairs or epochs, each gets its own lines (labelled with them, told apart by line style).

    Lines are drawn and listed in one fixed features order (raw, standardized, pca, files),
    each features value in its own colour (:func:`sensitivity_colors`); PCA features name
    their size ("features=pca (20 axes)") when the table has a ``pca_components`` column."""
    where = "plot_sensitivity"
    _need(table, ["k", "features", "epoch", "group_a", "group_b", "difference", "ci_low",
                  "ci_high", "metric"], where)  # fmt: skip
    if table.height == 0:
        raise invalid("table", "at least one row", where=where, got="an empty table")
    ax = _ax(ax)
    if "pca_components" not in table.columns:
        table = table.with_columns(pca_components=pl.lit(None, dtype=pl.Int64))
    colors = sensitivity_colors(table["features"].cast(pl.String).to_list())
    keys = ["features", "pca_components", "group_a", "group_b", "epoch"]
    lines = table.select(keys[2:]).unique().sort(keys[2:]).rows()
    many = len(lines) > 1
    styles = ["-", "--", ":", "-."]
    parts = table.sort("k").group_by(keys, maintain_order=True)
    ordered = sorted(
        parts, key=lambda kp: (*_features_key(str(kp[0][0])), kp[0][1] or 0, kp[0][2:])
    )
    for (feats, pca, ga, gb, epoch), part in ordered:
        d = part["difference"].to_numpy().astype(np.float64)
        lo = part["ci_low"].fill_null(np.nan).to_numpy().astype(np.float64)
        hi = part["ci_high"].fill_null(np.nan).to_numpy().astype(np.float64)
        err = np.vstack([np.nan_to_num(d - lo), np.nan_to_num(hi - d)])
        label = f"features={_features_text(str(feats), pca)}"
        label += f": {ga} - {gb}, epoch {epoch}" if many else ""
        style = styles[lines.index((ga, gb, epoch)) % len(styles)]
        ax.errorbar(part["k"].to_numpy(), d, yerr=err, marker="o", capsize=3, label=label,
                    color=colors[str(feats)], ls=style)  # fmt: skip
    ax.axhline(0.0, color="0.5", lw=0.8, ls="--")
    ax.set_xticks(sorted(set(table["k"].to_list())))
    ax.set_xlabel("k (neighbours of the kNN graph)")
    first = table.row(0, named=True)
    pair = "" if many else f" ({first['group_a']} - {first['group_b']}, epoch {first['epoch']})"
    ax.set_ylabel(f"difference of {first['metric']}")
    split, tree = first.get("split"), first.get("tree")
    place = ", ".join(
        w
        for w in (_SET_WORDS.get(split, split) if split else "", f"{tree} tree" if tree else "")
        if w
    )
    # Two lines: split, tree and pair do not fit one line of a 6-inch figure.
    ax.set_title(f"{place}\ndifference{pair} and its interval".lstrip("\n"), fontsize="medium")
    ax.legend(fontsize="small")
    return ax
