"""Figures of the samples behind persistence pairs: sample grids per region and loss curves.

Holds :func:`plot_region_images` (the dataset's own images of one region's members, ``label ->
prediction`` under each), :func:`plot_region_signals` (line plots, for 1-D signals),
:func:`plot_region_table` (a feature table and bars, for tabular rows),
:func:`plot_region_samples` (the one of the three that suits a dataset), :func:`plot_member_losses` (the members' mean loss of each region over
the recorded epochs, against the whole split's) and :func:`sample_figures` (both, for a run, as
PNG files a report can embed). Finding the regions is done in :mod:`sampletopo.samples`.
"""

from __future__ import annotations

import textwrap
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from sampletopo._errors import NoImagesWarning
from sampletopo._validation import check_instance, check_int, invalid
from sampletopo.plotting._topology import CROSS_ENTROPY, attach_data, save_figure, save_figure_data
from sampletopo.runs import PathLike
from sampletopo.samples import MemberTracks

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from sampletopo.samples import RegionOptions

__all__ = [
    "NoImagesWarning",
    "plot_member_losses",
    "plot_region_images",
    "plot_region_samples",
    "plot_region_signals",
    "plot_region_table",
    "sample_figures",
]


def _name(v: int, names: Sequence[str] | None) -> str:
    return names[v] if names is not None and 0 <= v < len(names) else str(v)


def plot_region_images(
    images: np.ndarray,
    members: Sequence[int],
    labels: Sequence[int] | None,
    preds: Sequence[int] | None,
    *,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
    max_images: int = 40,
    ncols: int = 10,
) -> Figure:
    """A grid of the images of a region's members, ``label -> pred`` under each.

    Correct predictions are captioned in green, wrong ones in red. Members are shown in the
    order given (sweep order from :func:`sampletopo.samples.top_regions`: hardest first for a
    split-tree peak), at most ``max_images`` of them.

    Parameters
    ----------
    images : ndarray (n, H, W) or (n, H, W, C)
        The split's images, values in [0, 1] (as :meth:`Dataset.images` returns them).
    members : sequence of int
        Sample indices of the region.
    labels, preds : sequence of int or None
        Label and prediction of each member, in the same order; ``None`` (regression targets,
        whose label columns are null) leaves the captions out.
    class_names : sequence of str, optional
        Shown instead of the label numbers.
    title : str, optional
    max_images, ncols : int
        How many images at most, and per row.

    Returns
    -------
    matplotlib.figure.Figure
    """
    where = "plot_region_images"
    max_images = check_int("max_images", max_images, 1, None, where=where)
    ncols = check_int("ncols", ncols, 1, None, where=where)
    imgs = np.asarray(images)
    if imgs.ndim not in (3, 4):
        raise invalid("images", "an array of shape (n, H, W) or (n, H, W, C)", imgs, where=where)
    if imgs.shape[1] == 1 or imgs.shape[2] == 1:
        # (n, L, 1) or (n, 1, L) (and with channels) is a signal, not an image: draw lines.
        sig = imgs.reshape(imgs.shape[0], -1, imgs.shape[3] if imgs.ndim == 4 else 1)
        return plot_region_signals(
            np.moveaxis(sig, 2, 1), members, labels, preds, class_names=class_names,
            title=title, max_images=max_images,
        )  # fmt: skip
    m, lab, prd = _check_members(imgs, members, labels, preds, where=where)
    shown = min(m.size, max_images)
    cols = max(1, min(ncols, shown))
    rows = max(1, -(-shown // cols))
    width = max(1.25 * cols, 5.0)
    if title:
        extra = f"  (first {shown} of {m.size})" if shown < m.size else ""
        title = textwrap.fill(title + extra, width=int(width * 13))
    n_title_lines = title.count("\n") + 1 if title else 0
    fig, axes = plt.subplots(
        rows, cols, figsize=(width, 1.45 * rows + 0.3 * n_title_lines + 0.1), squeeze=False
    )
    gray = imgs.ndim == 3 or imgs.shape[-1] == 1
    for i, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if i >= shown:
            continue
        img = imgs[m[i]]
        if gray:
            # Ink is high in digits/MNIST: draw it dark on white.
            ax.imshow(img.squeeze(), cmap="gray_r", vmin=0.0, vmax=1.0, interpolation="nearest")
        else:
            ax.imshow(np.clip(img, 0.0, 1.0), interpolation="nearest")
        if lab is not None and prd is not None:
            _caption(ax, int(lab[i]), int(prd[i]), class_names, y=-0.22)
        ax.text(
            0.02,
            0.98,
            str(int(m[i])),
            transform=ax.transAxes,
            fontsize=5,
            va="top",
            color="tab:blue",
        )
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def _check_members(
    values: np.ndarray, members: Any, labels: Any, preds: Any, *, where: str
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Members, labels and predictions as int64 arrays; labels and predictions ``None`` when
    either is ``None`` (regression targets: their columns are null, nothing to caption)."""
    m = np.asarray(members, dtype=np.int64)
    captions = labels is not None and preds is not None
    lab = np.asarray(labels if captions else np.zeros(m.size), dtype=np.int64)
    prd = np.asarray(preds if captions else np.zeros(m.size), dtype=np.int64)
    if not (m.shape == lab.shape == prd.shape):
        raise invalid(
            "preds",
            "as long as 'members' and 'labels'",
            where=where,
            got=f"lengths {m.shape[0]}, {lab.shape[0]}, {prd.shape[0]} (members, labels, preds)",
        )
    if m.size and (m.min() < 0 or m.max() >= values.shape[0]):
        raise invalid(
            "members",
            f"sample indices in [0, {values.shape[0] - 1}] (the split's samples)",
            where=where,
            got=f"values from {m.min()} to {m.max()}",
            fix="Pass the samples of the regions' split.",
        )
    return (m, lab, prd) if captions else (m, None, None)


def _caption(ax: Axes, label: int, pred: int, names: Sequence[str] | None, *, y: float) -> None:
    if label < 0:  # no labels: regression targets
        return
    ax.set_title(
        f"{_name(label, names)} -> {_name(pred, names)}",
        fontsize=8,
        color="tab:green" if label == pred else "tab:red",
        y=y,
    )


def plot_region_signals(
    signals: np.ndarray,
    members: Sequence[int],
    labels: Sequence[int] | None,
    preds: Sequence[int] | None,
    *,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
    max_images: int = 40,
    ncols: int = 8,
) -> Figure:
    """A grid of line plots of a region's members' signals, ``label -> pred`` over each.

    One small axes per member (in the order given, at most ``max_images``), one line per
    channel, the sample index in the corner; correct predictions captioned in green, wrong ones
    in red.

    Parameters
    ----------
    signals : ndarray (n, L) or (n, C, L)
        The split's signals (as :meth:`Dataset.values` returns them for ``kind == "signal"``).
    members, labels, preds, class_names, title, max_images, ncols
        As for :func:`plot_region_images`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    where = "plot_region_signals"
    max_images = check_int("max_images", max_images, 1, None, where=where)
    ncols = check_int("ncols", ncols, 1, None, where=where)
    sig = np.asarray(signals, dtype=np.float64)
    if sig.ndim == 2:
        sig = sig[:, None, :]
    if sig.ndim != 3:
        raise invalid("signals", "an array of shape (n, L) or (n, C, L)", sig, where=where)
    m, lab, prd = _check_members(sig, members, labels, preds, where=where)
    shown = min(m.size, max_images)
    cols = max(1, min(ncols, shown))
    rows = max(1, -(-shown // cols))
    width = max(1.9 * cols, 5.0)
    if title:
        extra = f"  (first {shown} of {m.size})" if shown < m.size else ""
        title = textwrap.fill(title + extra, width=int(width * 13))
    n_title_lines = title.count("\n") + 1 if title else 0
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(width, 1.5 * rows + 0.3 * n_title_lines + 0.1),
        squeeze=False,
        sharey=True,
    )
    t = np.arange(sig.shape[2])
    cmap = plt.get_cmap("tab10")
    for i, ax in enumerate(axes.ravel()):
        if i >= shown:
            ax.set_axis_off()
            continue
        for c in range(sig.shape[1]):
            ax.plot(t, sig[m[i], c], lw=0.9, color=cmap(c % 10))
        ax.tick_params(labelsize=5, length=2)
        if lab is not None and prd is not None:
            _caption(ax, int(lab[i]), int(prd[i]), class_names, y=1.0)
        ax.text(0.02, 0.98, str(int(m[i])), transform=ax.transAxes, fontsize=5, va="top",
                color="tab:blue")  # fmt: skip
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_region_table(
    rows: np.ndarray,
    members: Sequence[int],
    labels: Sequence[int] | None,
    preds: Sequence[int] | None,
    *,
    class_names: Sequence[str] | None = None,
    feature_names: Sequence[str] | None = None,
    title: str | None = None,
    max_rows: int = 15,
    max_features: int = 12,
) -> Figure:
    """Tabular rows of a region's members: how the region differs, and its first rows.

    Top: a bar per feature, the members' mean of that feature in standard deviations from the
    split's mean (``(mean over members - mean over the split) / std over the split``; features
    with no spread get 0). Bottom: a table of the first ``max_rows`` members (sample index,
    ``label -> pred`` unless ``labels`` is ``None``, then the first ``max_features`` feature
    values, 3 significant digits).

    Parameters
    ----------
    rows : ndarray (n, d)
        The split's rows (as :meth:`Dataset.values` returns them for ``kind == "tabular"``).
    members, labels, preds, class_names, title
        As for :func:`plot_region_images`.
    feature_names : sequence of str, optional
        Column names (default ``f0``, ``f1``, ...).
    max_rows, max_features : int
        Rows of the table, and features in the table and bars, at most.

    Returns
    -------
    matplotlib.figure.Figure
    """
    where = "plot_region_table"
    max_rows = check_int("max_rows", max_rows, 1, None, where=where)
    max_features = check_int("max_features", max_features, 1, None, where=where)
    x = np.asarray(rows, dtype=np.float64)
    if x.ndim != 2:
        raise invalid("rows", "an array of shape (n, d)", x, where=where)
    m, lab, prd = _check_members(x, members, labels, preds, where=where)
    d = min(x.shape[1], max_features)
    names = list(feature_names) if feature_names is not None else [f"f{j}" for j in range(d)]
    mu, sd = x.mean(axis=0), x.std(axis=0)
    z = np.zeros(x.shape[1])
    if m.size:
        z = np.where(sd > 0, (x[m].mean(axis=0) - mu) / np.where(sd > 0, sd, 1.0), 0.0)
    shown = min(m.size, max_rows)
    fig, (ax_bar, ax_tab) = plt.subplots(
        2, 1, figsize=(max(6.0, 0.7 * d + 2.0), 2.2 + 0.25 * (shown + 1)),
        gridspec_kw={"height_ratios": [2.0, 0.35 * (shown + 1) + 0.2]},
    )  # fmt: skip
    ax_bar.bar(np.arange(d), z[:d], color=["tab:red" if v > 0 else "tab:blue" for v in z[:d]])
    ax_bar.axhline(0.0, color="0.3", lw=0.8)
    ax_bar.set_xticks(np.arange(d), names[:d], fontsize=7)
    ax_bar.set_ylabel("members' mean\n(std from split mean)", fontsize=7)
    ax_bar.tick_params(labelsize=7)
    ax_tab.set_axis_off()
    cells = [
        [str(int(m[i]))]
        + (
            [f"{_name(int(lab[i]), class_names)} -> {_name(int(prd[i]), class_names)}"]
            if lab is not None and prd is not None
            else []
        )
        + [f"{x[m[i], j]:.3g}" for j in range(d)]
        for i in range(shown)
    ]
    if cells:
        head = (
            ["sample", "label -> pred"] if lab is not None else ["sample"]
        )  # regression: no labels
        table = ax_tab.table(cellText=cells, colLabels=[*head, *names[:d]], loc="upper center")
        table.auto_set_font_size(False)
        table.set_fontsize(7)
        table.auto_set_column_width(list(range(len(head))))  # "label -> pred" in full
        if lab is not None and prd is not None:
            for i in range(shown):
                ok = lab[i] == prd[i]
                table[i + 1, 1].get_text().set_color("tab:green" if ok else "tab:red")
    if title:
        extra = f"  (first {shown} of {m.size} rows" + (
            f", {d} of {x.shape[1]} features)" if d < x.shape[1] else ")"
        )
        fig.suptitle(textwrap.fill(title + extra, width=110), fontsize=9)
    fig.tight_layout()
    return fig


def plot_region_samples(
    dataset: Any,
    split: str,
    members: Sequence[int],
    labels: Sequence[int] | None,
    preds: Sequence[int] | None,
    *,
    title: str | None = None,
    max_images: int = 40,
) -> Figure | None:
    """The figure that suits the dataset's inputs (:attr:`Dataset.kind`): an image grid
    (:func:`plot_region_images`), signal line plots (:func:`plot_region_signals`) or a feature
    table (:func:`plot_region_table`); ``None`` for a dataset without such inputs."""
    names = list(dataset.class_names)
    kind = getattr(dataset, "kind", "image")
    if kind == "signal":
        return plot_region_signals(
            dataset.values(split), members, labels, preds, class_names=names, title=title,
            max_images=max_images,
        )  # fmt: skip
    if kind == "tabular":
        return plot_region_table(
            dataset.values(split), members, labels, preds, class_names=names, title=title,
            max_rows=min(max_images, 15),
        )  # fmt: skip
    images = dataset.images(split) if hasattr(dataset, "images") else None
    if images is None:
        return None
    return plot_region_images(
        images, members, labels, preds, class_names=names, title=title, max_images=max_images
    )


def plot_member_losses(
    tracks: MemberTracks,
    *,
    ax: Axes | None = None,
    log_scale: bool | None = None,
    max_regions: int = 10,
    loss_label: str = CROSS_ENTROPY,
) -> Axes:
    """Mean loss of each region's members over the recorded epochs.

    One line per region (as followed by :func:`sampletopo.samples.track_members`), the whole
    split's mean loss dashed in black, and a dotted vertical line at the epoch the regions were
    taken from.

    Parameters
    ----------
    tracks : MemberTracks
    ax : Axes, optional
    log_scale : bool, optional
        Log-scaled loss axis; default: when the plotted losses span more than a factor of 10.
    max_regions : int
        At most this many regions per tree (the most persistent).
    loss_label : str
        The loss and its unit.

    Returns
    -------
    matplotlib.axes.Axes
    """
    check_instance(
        "tracks",
        tracks,
        MemberTracks,
        what="the MemberTracks of track_members(...)",
        where="plot_member_losses",
    )
    if ax is None:
        _, ax = plt.subplots(figsize=(6.2, 4.0))
    regions = tracks.regions.filter(pl.col("rank") <= max_regions)
    styles = {"split": "-", "join": "--"}
    cmap = plt.get_cmap("tab10")
    plotted = [tracks.overall["mean_loss"].to_numpy()]
    for i, r in enumerate(regions.iter_rows(named=True)):
        c = tracks.curves.filter((pl.col("tree") == r["tree"]) & (pl.col("rank") == r["rank"]))
        what = "peak" if r["tree"] == "split" else "basin"
        cls = r.get("dominant_class")
        desc = f", label {cls}: {r['dominant_share']:.0%}" if cls is not None else ""
        plotted.append(c["mean_loss"].to_numpy())
        ax.plot(
            c["epoch"].to_numpy(),
            plotted[-1],
            styles.get(r["tree"], "-"),
            color=cmap(i % 10),
            lw=1.6,
            label=f"{what} {r['rank']} (n={r['size']}{desc})",
        )
    ax.plot(
        tracks.overall["epoch"].to_numpy(),
        tracks.overall["mean_loss"].to_numpy(),
        "--",
        color="black",
        lw=1.2,
        label=f"all {tracks.split} samples",
    )
    if log_scale is None:
        ys = np.concatenate(plotted).astype(float)
        ys = ys[np.isfinite(ys) & (ys > 0)]
        log_scale = bool(ys.size) and float(ys.max() / ys.min()) > 10.0
    if log_scale:
        ax.set_yscale("log")
    ax.axvline(tracks.epoch, color="0.4", ls=":", lw=1.0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"members' mean {loss_label}" + (" (log scale)" if log_scale else ""))
    ax.set_title(
        f"{tracks.run}: members of the top regions at epoch {tracks.epoch} ({tracks.split})",
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="best")
    return ax


def sample_figures(
    run_dir: PathLike,
    out_dir: str | Path,
    *,
    split: str = "val",
    epoch: int,
    max_images: int = 40,
    tracks: MemberTracks | None = None,
    **options: Unpack[RegionOptions],
) -> list[Path]:
    """Write the figures of a run's top regions as PNGs and return their paths.

    Writes ``<run>-samples-<split>-epoch=NNNN-<tree><rank>.png`` (one grid per region: images, signal
    line plots or a feature table, by :attr:`Dataset.kind`;
    skipped with a :class:`NoImagesWarning` when the dataset has no images) and
    ``<run>-samples-<split>-epoch=NNNN-losses.png`` (the members' loss curves) into
    ``out_dir``.

    Parameters
    ----------
    run_dir, split, epoch
        As for :func:`sampletopo.samples.top_regions`.
    out_dir : str or Path
        Folder for the PNG files (created if needed).
    max_images : int
        Images per grid at most.
    tracks : MemberTracks, optional
        Reuse what :func:`sampletopo.samples.track_members` returned for the same arguments.
    **options
        ``top``, ``tree``, ``k``, ``features``, ``essential``, ``graph``, ``dataset``: passed to
        :func:`sampletopo.samples.top_regions` with its defaults (``top=10``: one image grid per
        region), when ``tracks`` is None. ``dataset`` also gives the images and class names.
    """
    from sampletopo.runs import as_run, epoch_tag
    from sampletopo.samples import track_members

    rd = as_run(run_dir)
    if tracks is None:
        tracks = track_members(rd, split=split, epoch=epoch, **options)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{tracks.run}-samples-{tracks.split}-{epoch_tag(tracks.epoch)}"
    written: list[Path] = []

    def save(fig: Figure, name: str) -> None:
        p = out / f"{stem}-{name}.png"
        try:
            save_figure(fig, p, dpi=120)
            save_figure_data(fig, p)  # the numbers beside it (see attach_data)
        finally:
            plt.close(fig)
        written.append(p)

    dataset = options.get("dataset")
    if dataset is None and rd.has_config():
        dataset = rd.dataset()
    ds = dataset
    has_samples = ds is not None and (
        getattr(ds, "kind", "image") != "image" or ds.images(tracks.split) is not None
    )
    if not has_samples:
        warnings.warn(
            NoImagesWarning(
                f"sample_figures: the dataset of {str(rd)!r} has no images (or the run has no "
                "config.toml naming it); image grids skipped, loss curves written."
            ),
            stacklevel=2,
        )
    else:
        for r in tracks.regions.iter_rows(named=True):
            what = "peak" if r["tree"] == "split" else "basin"
            title = (
                f"{tracks.run} {tracks.split} epoch {tracks.epoch}: {r['tree']}-tree {what} "
                f"{r['rank']}, {r['size']} samples, persistence {r['persistence']:.3g}, "
                f"mean loss {r['mean_loss']:.3g}"
                + ("" if r["accuracy"] is None else f", accuracy {r['accuracy']:.0%}")
            )
            grid = plot_region_samples(
                ds,
                tracks.split,
                r["members"],
                r["member_labels"],
                r["member_preds"],
                title=title,
                max_images=max_images,
            )
            if grid is not None:
                shown = min(len(r["members"]), max_images)
                members = pl.DataFrame(
                    {
                        "sample": r["members"][:shown],
                        # None for regression: no labels, no predictions
                        "label": (r["member_labels"] or [None] * shown)[:shown],
                        "prediction": (r["member_preds"] or [None] * shown)[:shown],
                    }
                )
                attach_data(grid, members, title + ".")
                save(grid, f"{r['tree']}{r['rank']}")
    from sampletopo.figures import loss_label

    ax = plot_member_losses(tracks, loss_label=loss_label([rd.path]))
    curves: Any = ax.figure
    curves.tight_layout()
    overall = tracks.overall.with_columns(pl.lit("all").alias("tree"))
    attach_data(
        curves,
        pl.concat([tracks.curves, overall], how="diagonal_relaxed"),
        f"Run {tracks.run}, {tracks.split} set: mean loss of the members of the most persistent "
        f"regions at epoch {tracks.epoch} over every recorded epoch (dashed black: all samples).",
    )
    save(curves, "losses")
    return written
