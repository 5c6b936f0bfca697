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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
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
from sampletopo._validation import invalid
from sampletopo.diagrams import Diagram
from sampletopo.runs import SPLITS, TREES

__all__ = [
    "plot_total_persistence",
    "total_persistence_figure",
    "plot_heatmap",
    "heatmap_figure",
    "heatmap_bins",
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
]

_TREE_LABEL = {"join": "join tree (minima)", "split": "split tree (maxima)"}


def run_colors(runs: Sequence[str]) -> dict[str, Any]:
    """One stable colour per run name (seaborn's colorblind palette)."""
    pal = sns.color_palette("colorblind", max(len(runs), 3))
    return {r: pal[i] for i, r in enumerate(runs)}


def _ax(ax: Axes | None, figsize=(6, 4)) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def _mark_milestones(ax: Axes, milestones: Iterable[int] | None) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    for i, m in enumerate(sorted(set(milestones or []))):
        ax.axvline(m + 0.5, color="0.5", ls=":", lw=1, label="LR annealed" if i == 0 else None)


def _need(df: pl.DataFrame, cols: Sequence[str], where: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise invalid(
            "table",
            f"a table with the columns {list(cols)}",
            where=where,
            got=f"columns {df.columns}",
        )


def plot_total_persistence(
    summary: pl.DataFrame,
    *,
    split: str,
    tree: str,
    p: int = 1,
    milestones: Iterable[int] | None = None,
    show_loss: bool = True,
    legend: bool = True,
    ax: Axes | None = None,
) -> Axes:
    """Total persistence vs epoch, one line per run, with the mean loss on a second axis.

    ``summary`` is the table of :func:`sampletopo.analysis.summarize`. LR-annealing epochs are
    drawn as dotted lines between epoch ``m`` and ``m + 1``. ``legend=False`` leaves the legend
    to the caller (as :func:`total_persistence_figure` does, with one legend for all panels).
    """
    col = f"total_persistence_{p}"
    _need(summary, ["run", "split", "tree", "epoch", col], "plot_total_persistence")
    ax = _ax(ax)
    sub = summary.filter((pl.col("split") == split) & (pl.col("tree") == tree)).sort("epoch")
    runs = sorted(sub["run"].unique().to_list())
    colors = run_colors(runs)
    ax2 = ax.twinx() if show_loss and "mean_loss" in sub.columns else None
    for r in runs:
        part = sub.filter(pl.col("run") == r)
        ax.plot(part["epoch"], part[col], color=colors[r], lw=1.8, label=f"{r}")
        if ax2 is not None:
            ax2.plot(part["epoch"], part["mean_loss"], color=colors[r], lw=1, ls="--", alpha=0.7)
    _mark_milestones(ax, milestones)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"total persistence (p={p})")
    ax.set_title(f"{split}: {_TREE_LABEL.get(tree, tree)}")
    if ax2 is not None:
        ax2.set_ylabel("mean loss (dashed)")
        ax2.tick_params(axis="y", colors="0.4")
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
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    if handles:
        fig.legend(
            list(handles.values()),
            list(handles.keys()),
            loc="lower center",
            bbox_to_anchor=(0.5, 0.0),
            ncol=min(len(handles), 5),
            fontsize=9,
            frameon=False,
        )
    return fig


def total_persistence_figure(
    summary: pl.DataFrame, *, p: int = 1, milestones: Iterable[int] | None = None, title: str = ""
) -> Figure:
    """2 x 2 panels (train/val x join/split) of :func:`plot_total_persistence`."""
    from matplotlib.lines import Line2D

    title = title or f"Total persistence (p={p}) of the per-sample loss on the kNN graph"
    key = []
    if "mean_loss" in summary.columns:
        key.append(Line2D([], [], color="0.3", lw=1, ls="--", label="mean loss (right axis)"))
    return _panels(plot_total_persistence, summary, title, extra=key, p=p, milestones=milestones)


def heatmap_bins(
    tables: Sequence[pl.DataFrame], *, bins: int = 30
) -> tuple[np.ndarray, np.ndarray]:
    """Shared (birth, persistence) bin edges covering every finite pair of all ``tables``."""
    births, pers = [], []
    for t in tables:
        fin = t.filter(pl.col("persistence").is_finite())
        births.append(fin["birth"].to_numpy())
        pers.append(fin["persistence"].to_numpy())
    b = np.concatenate(births) if births else np.empty(0)
    q = np.concatenate(pers) if pers else np.empty(0)
    if b.size == 0:
        return np.linspace(0, 1, bins + 1), np.linspace(0, 1, bins + 1)
    lo, hi = float(b.min()), float(b.max())
    if hi <= lo:
        hi = lo + 1.0
    qmax = float(q.max()) if q.max() > 0 else 1.0
    return np.linspace(lo, hi, bins + 1), np.linspace(0.0, qmax, bins + 1)


def heatmap_counts(table: pl.DataFrame, xbins: np.ndarray, ybins: np.ndarray) -> np.ndarray:
    """Pairs per (birth, persistence) bin of the finite pairs of one diagram table."""
    fin = table.filter(pl.col("persistence").is_finite())
    h, _, _ = np.histogram2d(
        fin["birth"].to_numpy(), fin["persistence"].to_numpy(), bins=[xbins, ybins]
    )
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


def plot_heatmap(
    table: pl.DataFrame,
    *,
    xbins: np.ndarray | None = None,
    ybins: np.ndarray | None = None,
    norm: Any = None,
    ax: Axes | None = None,
    title: str = "",
) -> Axes:
    """2-D histogram of the finite pairs of one diagram table: birth (x) vs persistence (y).

    Pass the same ``xbins``, ``ybins`` and ``norm`` to every panel that should be compared.
    An empty diagram (e.g. a constant loss) draws an empty panel with a note, not an error.
    """
    ax = _ax(ax, (4, 3.2))
    fin = table.filter(pl.col("persistence").is_finite())
    if xbins is None or ybins is None:
        xbins, ybins = heatmap_bins([table])
    hm = np.ma.masked_equal(heatmap_counts(table, xbins, ybins).T, 0)
    # viridis keeps single-pair bins visible (dark) on the pale empty background.
    ax.set_facecolor("#f4f4f4")
    mesh = ax.pcolormesh(xbins, ybins, hm, norm=norm, cmap="viridis", shading="flat")
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
    ax.set_xlabel("birth (loss)")
    ax.set_ylabel("persistence")
    ax.set_title(title or f"{fin.height} pairs", fontsize=9)
    ax._sampletopo_mesh = mesh  # type: ignore[attr-defined]
    return ax


def default_heatmap_epochs(epochs: Sequence[int], milestones: Iterable[int] | None) -> list[int]:
    """The thesis' choice: the first epoch, just before and just after each LR change, the last.

    With the LR changing after epoch ``m``, "just before" is ``m`` and "just after" ``m + 1``.
    Epochs that were not recorded are left out.
    """
    have = sorted(set(int(e) for e in epochs))
    if not have:
        return []
    chosen = [have[0]]
    for m in sorted(set(milestones or [])):
        chosen += [m, m + 1]
    chosen.append(have[-1])
    present = set(have)
    out: list[int] = []
    for e in chosen:
        if e in present and e not in out:
            out.append(e)
    return sorted(out)


def heatmap_figure(
    diagrams: pl.DataFrame,
    *,
    split: str,
    tree: str,
    epochs: Sequence[int],
    runs: Sequence[str] | None = None,
    bins: int = 30,
) -> Figure:
    """Heatmaps at chosen epochs, one row per run, all panels on one set of bins and colours.

    ``diagrams`` is :func:`sampletopo.readers.read_diagrams` output. Raises if an asked epoch
    has no diagram in some run (naming the run and the epochs it has).
    """
    _need(diagrams, ["run", "split", "tree", "epoch", "birth", "persistence"], "heatmap_figure")
    sub = diagrams.filter((pl.col("split") == split) & (pl.col("tree") == tree))
    runs = list(runs) if runs is not None else sorted(sub["run"].unique().to_list())
    if not runs or not epochs:
        raise invalid(
            "epochs",
            f"one or more epochs of one or more runs with {split}/{tree} diagrams",
            where="heatmap_figure",
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
                    where="heatmap_figure",
                    got=f"epoch {e}, which run {r} lacks: run {r} has no {split} diagram at "
                    f"epoch {e}",
                    fix=f"It has epochs {sorted(have)[:3]}...{sorted(have)[-3:]}; choose among "
                    "those.",
                )
            panels[(r, e)] = sub.filter((pl.col("run") == r) & (pl.col("epoch") == e))
    xb, yb = heatmap_bins(list(panels.values()), bins=bins)
    norm = shared_norm([(t, xb, yb) for t in panels.values()])
    fig, axes = _grid(len(runs), len(epochs), 3.0, 2.6)
    mesh = None
    for i, r in enumerate(runs):
        for j, e in enumerate(epochs):
            ax = plot_heatmap(
                panels[(r, e)],
                xbins=xb,
                ybins=yb,
                norm=norm,
                ax=axes[i, j],
                title=f"{r} | epoch {e}",
            )
            mesh = ax._sampletopo_mesh  # type: ignore[attr-defined]
            if j:
                ax.set_ylabel("")
            if i < len(runs) - 1:
                ax.set_xlabel("")
    fig.suptitle(
        f"Persistence-diagram heatmaps, {split} set, {_TREE_LABEL.get(tree, tree)} "
        "(shared bins and colour scale)"
    )
    fig.tight_layout(rect=(0, 0, 0.93, 0.95))
    top, bottom = axes[0, -1].get_position(), axes[-1, -1].get_position()
    cax = fig.add_axes((0.94, bottom.y0, 0.012, top.y1 - bottom.y0))  # level with the panels
    assert mesh is not None
    count_colorbar(fig, mesh, cax=cax)
    return fig


def plot_wasserstein(
    table: pl.DataFrame,
    *,
    split: str,
    tree: str,
    order: int = 1,
    milestones: Iterable[int] | None = None,
    legend: bool = True,
    ax: Axes | None = None,
) -> Axes:
    """Wasserstein distance of each epoch's diagram to the reference epoch's, runs overlaid.

    ``legend=False`` leaves the legend to the caller (see :func:`wasserstein_figure`).
    """
    col = f"w{order}"
    _need(table, ["run", "split", "tree", "epoch", col], "plot_wasserstein")
    ax = _ax(ax)
    sub = table.filter((pl.col("split") == split) & (pl.col("tree") == tree)).sort("epoch")
    runs = sorted(sub["run"].unique().to_list())
    colors = run_colors(runs)
    for r in runs:
        part = sub.filter(pl.col("run") == r)
        ref = int(part["reference_epoch"][0]) if "reference_epoch" in part.columns else None
        ax.plot(
            part["epoch"],
            part[col],
            color=colors[r],
            lw=1.8,
            label=f"{r}" + (f" (to epoch {ref})" if ref is not None else ""),
        )
    _mark_milestones(ax, milestones)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"W{order} distance (L-inf ground)")
    ax.set_title(f"{split}: {_TREE_LABEL.get(tree, tree)}")
    if legend:
        ax.legend(fontsize=8, loc="best")
    return ax


def wasserstein_figure(
    table: pl.DataFrame, *, order: int = 1, milestones: Iterable[int] | None = None, title: str = ""
) -> Figure:
    """2 x 2 panels (train/val x join/split) of :func:`plot_wasserstein`."""
    title = title or f"Wasserstein-{order} distance to the final epoch's diagram"
    return _panels(plot_wasserstein, table, title, order=order, milestones=milestones)


def plot_diagram(d: Diagram, *, ax: Axes | None = None, title: str = "") -> Axes:
    """A persistence diagram: finite pairs as points, essential pairs as triangles on top.

    Join diagrams lie above the diagonal (birth <= death), split diagrams below it.
    """
    ax = _ax(ax, (4.2, 4))
    fin = d.finite()
    lo = float(min(d.birth.min(initial=0.0), fin.death.min(initial=0.0)))
    hi = float(max(d.birth.max(initial=1.0), fin.death.max(initial=1.0)))
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.6", lw=1)
    ax.scatter(fin.birth, fin.death, s=10, alpha=0.7, label=f"{len(fin)} finite pairs")
    ess = d.select(d.essential)
    if len(ess):
        y = hi + pad if d.tree == "join" else lo - pad
        ax.scatter(
            ess.birth,
            np.full(len(ess), y),
            marker="^" if d.tree == "join" else "v",
            color="C3",
            s=30,
            label=f"{len(ess)} essential ({'+' if d.tree == 'join' else '-'}inf)",
        )
    ax.set_xlabel("birth (loss)")
    ax.set_ylabel("death (loss)")
    ax.set_title(title or f"{d.tree} diagram")
    ax.legend(fontsize=8)
    return ax


def plot_barcode(d: Diagram, *, top: int = 60, ax: Axes | None = None, title: str = "") -> Axes:
    """True birth-death bars of the ``top`` most persistent finite pairs (longest at the top)."""
    ax = _ax(ax, (5, 4))
    t = d.top(top)
    ys = np.arange(len(t))[::-1]
    lo = np.minimum(t.birth, t.death)
    ax.hlines(ys, lo, lo + t.persistence, color="C0", lw=2)
    ax.set_yticks([])
    ax.set_xlabel("loss")
    ax.set_ylabel(f"{len(t)} most persistent pairs")
    ax.set_title(title or f"{d.tree} barcode")
    return ax


def diagrams_figure(diagrams: Mapping[tuple[str, str], Diagram], *, run: str, epoch: int) -> Figure:
    """Each split's join and split diagram beside its barcode at one epoch: a 2 x 4 grid, one row
    per split. ``diagrams`` maps ``(split, tree)`` to the diagram."""
    fig, axes = plt.subplots(len(SPLITS), 2 * len(TREES), figsize=(18, 8), squeeze=False)
    for i, s in enumerate(SPLITS):
        for j, tree in enumerate(TREES):
            d = diagrams[(s, tree)]
            plot_diagram(d, ax=axes[i, 2 * j], title=f"{s} {tree} diagram, epoch {epoch}")
            plot_barcode(d, ax=axes[i, 2 * j + 1], title=f"{s} {tree} barcode, epoch {epoch}")
    fig.suptitle(f"{run}: persistence diagrams and barcodes at epoch {epoch}")
    fig.tight_layout()
    return fig


def comparison_panels(
    rows: Sequence[tuple[str, int, Any, Mapping[str, pl.DataFrame]]], *, split: str = "val"
) -> Figure:
    """Per run, the 2-D random-direction plot beside the sample-space heatmaps (join and split)
    of the same epoch: ``rows`` holds ``(run, epoch, landscape, {tree: diagram table})``.

    Heatmaps share bins per tree and one colour scale across all rows, drawn as one colour bar
    at the right, level with the heatmap rows.
    """
    from sampletopo.plotting._landscape import plot_random_directions

    bins = {t: heatmap_bins([r[3][t] for r in rows]) for t in TREES}
    norm = shared_norm([(r[3][t], *bins[t]) for r in rows for t in TREES])
    fig, axes = plt.subplots(len(rows), 3, figsize=(15, 4.2 * len(rows)), squeeze=False)
    mesh = None
    for i, (name, epoch, land, tabs) in enumerate(rows):
        plot_random_directions(land, ax=axes[i, 0])
        axes[i, 0].set_title(f"{name}: parameter space, epoch {epoch}")
        for j, t in enumerate(TREES, start=1):
            ax = plot_heatmap(
                tabs[t],
                xbins=bins[t][0],
                ybins=bins[t][1],
                norm=norm,
                ax=axes[i, j],
                title=f"{name}: {split} {t}-tree heatmap, epoch {epoch}",
            )
            mesh = ax._sampletopo_mesh  # type: ignore[attr-defined]
    fig.suptitle(
        "Parameter-space landscape (filter-normalized random directions) beside the "
        "sample-space persistence heatmaps of the same epoch"
    )
    fig.tight_layout(rect=(0, 0, 0.94, 1))
    top = axes[0, -1].get_position()
    bottom = axes[-1, -1].get_position()
    cax = fig.add_axes((0.95, bottom.y0, 0.01, top.y1 - bottom.y0))
    assert mesh is not None
    count_colorbar(fig, mesh, cax=cax)
    return fig


def save_figure(fig: Figure, path: Path, **options: Any) -> Path:
    """Write ``fig`` to ``path`` (its format from the suffix) atomically, as every file
    sampletopo writes (:func:`sampletopo._io.write_atomic`): a full disk or a read-only folder
    is an ``OSError`` naming ``path``, and no half-written figure is left. ``options`` go to
    ``Figure.savefig``."""
    fmt = path.suffix.lstrip(".") or "png"
    return write_atomic(path, lambda fh: fig.savefig(fh, format=fmt, **options))


def save(fig: Figure, path: Path, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Write ``fig`` as ``path`` with each suffix in ``formats``; close it; return the paths."""
    out = []
    try:
        for fmt in formats:
            p = path.parent / f"{path.name}.{fmt}"  # names may hold dots (lr=0.1)
            out.append(save_figure(fig, p, dpi=110, bbox_inches="tight"))
    finally:
        plt.close(fig)
    return out
