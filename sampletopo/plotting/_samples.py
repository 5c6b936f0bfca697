"""Figures of the samples behind persistence pairs: image grids per region and loss curves.

Holds :func:`plot_region_images` (the dataset's own images of one region's members, ``label ->
prediction`` under each), :func:`plot_member_losses` (the members' mean loss of each region over
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

__all__ = ["NoImagesWarning", "plot_member_losses", "plot_region_images", "sample_figures"]


def _name(v: int, names: Sequence[str] | None) -> str:
    return names[v] if names is not None and 0 <= v < len(names) else str(v)


def plot_region_images(
    images: np.ndarray,
    members: Sequence[int],
    labels: Sequence[int],
    preds: Sequence[int],
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
    labels, preds : sequence of int
        Label and prediction of each member, in the same order.
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
    m = np.asarray(members, dtype=np.int64)
    lab = np.asarray(labels, dtype=np.int64)
    prd = np.asarray(preds, dtype=np.int64)
    if not (m.shape == lab.shape == prd.shape):
        raise invalid(
            "preds",
            "as long as 'members' and 'labels'",
            where=where,
            got=f"lengths {m.shape[0]}, {lab.shape[0]}, {prd.shape[0]} (members, labels, preds)",
        )
    if m.size and (m.min() < 0 or m.max() >= imgs.shape[0]):
        raise invalid(
            "members",
            f"sample indices in [0, {imgs.shape[0] - 1}] (the split's images)",
            where=where,
            got=f"values from {m.min()} to {m.max()}",
            fix="Pass the images of the regions' split.",
        )
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
        ok = lab[i] == prd[i]
        ax.set_title(
            f"{_name(int(lab[i]), class_names)} -> {_name(int(prd[i]), class_names)}",
            fontsize=8,
            color="tab:green" if ok else "tab:red",
            y=-0.22,
        )
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

    Writes ``<run>-samples-<split>-epoch=NNNN-<tree><rank>.png`` (one image grid per region;
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
    images = ds.images(tracks.split) if ds is not None and hasattr(ds, "images") else None
    names = list(ds.class_names) if ds is not None else None
    if images is None:
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
                f"mean loss {r['mean_loss']:.3g}, accuracy {r['accuracy']:.0%}"
            )
            grid = plot_region_images(
                images,
                r["members"],
                r["member_labels"],
                r["member_preds"],
                class_names=names,
                title=title,
                max_images=max_images,
            )
            shown = min(len(r["members"]), max_images)
            members = pl.DataFrame(
                {
                    "sample": r["members"][:shown],
                    "label": r["member_labels"][:shown],
                    "prediction": r["member_preds"][:shown],
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
