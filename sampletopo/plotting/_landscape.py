"""Figures of the parameter-space view: landscapes, their profiles, and the Hessian spectrum.

Holds :func:`plot_landscape_contour` and :func:`plot_landscape_surface` (2-D grids),
:func:`plot_random_directions` (the classic Li et al. 2018 plot of a 2-D random-direction
landscape), :func:`plot_landscape_1d`, :func:`plot_landscape_profile` (grids of any dimension)
and :func:`plot_hessian_spectrum`. Every function takes ``ax=None`` (a new figure is made) and
returns the Axes; none calls ``plt.show()``. Axis ``k`` of a landscape array is direction ``k``:
the x axis is always direction 1 and the y axis direction 2, labelled with their true
coefficients. Contour levels sit at quantiles of the grid's losses by default (labelled with
their true values), so a basin far below the grid's corners is still resolved: that is each
run's *own* scale. To compare runs, pass every plot the same explicit levels from
:func:`shared_levels` (absolute losses, log-spaced above the smallest loss when the range is
wide), as the report and the comparison figure do. The 3-D surface clips far-out corners at a
high quantile and says so. Computing landscapes and spectra is not
done here (see :mod:`sampletopo.landscape` and :mod:`sampletopo.hessian`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
from matplotlib.axes import Axes
from matplotlib.colors import BoundaryNorm
from matplotlib.patches import PathPatch
from matplotlib.path import Path as MplPath
from matplotlib.ticker import MaxNLocator

from sampletopo._validation import check_choice, check_instance, check_int, check_real, invalid
from sampletopo.hessian import SpectralDensity
from sampletopo.landscape import Landscape, LandscapeProfile
from sampletopo.plotting._topology import CROSS_ENTROPY, attach_data, save_figure, save_figure_data

__all__ = [
    "plot_hessian_spectrum",
    "plot_landscape_1d",
    "plot_landscape_contour",
    "plot_landscape_profile",
    "plot_landscape_surface",
    "plot_random_directions",
    "save_landscape_figures",
    "shared_levels",
    "landscape_table",
    "SHARED_LEVEL_DECADES",
]


def _need_dim(landscape: Landscape, dim: int, where: str) -> None:
    check_instance("landscape", landscape, Landscape, what="a sampletopo Landscape", where=where)
    if landscape.dim != dim:
        raise invalid(
            "landscape",
            f"a {dim}-D landscape",
            where=where,
            got=f"a {landscape.dim}-D one",
            fix="Use plot_landscape_profile for grids of any dimension.",
        )


def _values(
    landscape: Landscape, log_scale: bool, loss_label: str = CROSS_ENTROPY
) -> tuple[np.ma.MaskedArray, str]:
    z = np.asarray(landscape.loss, dtype=np.float64)
    label = loss_label
    if log_scale:
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.log10(z)
        label = f"log10 {loss_label}"
    return np.ma.masked_invalid(z), label


SHARED_LEVEL_DECADES = 4
"""Shared levels above the minimum span this many decades of (loss - minimum)."""

_SHARED_LOG_RATIO = 10.0


def shared_levels(landscapes: Sequence[Landscape], n: int = 20) -> np.ndarray:
    """One set of ``n + 1`` absolute contour levels for every landscape of ``landscapes``.

    With ``lo`` and ``hi`` the smallest and largest finite loss of all grids: when ``hi``
    exceeds ``lo`` by more than 10x (or ``lo <= 0``), the levels are log-spaced above the
    minimum, ``lo + (hi - lo) * 10**linspace(-4, 0, n)`` (:data:`SHARED_LEVEL_DECADES`) after
    ``lo`` itself, so the basins are resolved and a loss 67x higher one unit from the minimum
    shows as many more bands; otherwise evenly spaced from ``lo`` to ``hi``. Drawn with the
    same levels, two runs are on one colour scale.
    """
    where = "shared_levels"
    n = check_int("n", n, 1, None, where=where)
    vals = [np.asarray(ls.loss, dtype=np.float64).ravel() for ls in landscapes]
    allv = np.concatenate(vals) if vals else np.empty(0)
    allv = allv[np.isfinite(allv)]
    if allv.size == 0:
        return np.linspace(0.0, 1.0, n + 1)
    lo, hi = float(allv.min()), float(allv.max())
    if hi <= lo:
        pad = 0.5 * abs(lo) if lo else 0.5
        return np.array([lo - pad, lo + pad])
    if lo <= 0 or hi / lo > _SHARED_LOG_RATIO:
        steps = np.power(10.0, np.linspace(-SHARED_LEVEL_DECADES, 0.0, n))
        lv = np.concatenate([[lo], lo + (hi - lo) * steps])
    else:
        lv = np.linspace(lo, hi, n + 1)
    lv = np.unique(lv)
    lv[-1] = hi
    return lv


def landscape_table(landscape: Landscape) -> pl.DataFrame:
    """The grid of a 2-D landscape as rows ``(direction_1, direction_2, loss)``."""
    x, y = landscape.coords[0], landscape.coords[1]
    xx, yy = np.meshgrid(x, y, indexing="ij")
    return pl.DataFrame(
        {
            "direction_1": xx.ravel().astype(np.float64),
            "direction_2": yy.ravel().astype(np.float64),
            "loss": np.asarray(landscape.loss, dtype=np.float64).ravel(),
        }
    )


def _given_levels(levels: Any, where: str) -> np.ndarray | None:
    """Explicit levels (a sequence) checked; ``None`` when ``levels`` is a count."""
    if isinstance(levels, (int, np.integer)) and not isinstance(levels, bool):
        return None
    lv = np.asarray(levels, dtype=np.float64).ravel()
    if lv.size < 2 or not np.all(np.isfinite(lv)) or not np.all(np.diff(lv) > 0):
        raise invalid(
            "levels",
            "a number of levels or two or more finite increasing level values",
            levels,
            where=where,
            fix="E.g. levels=20, or levels=shared_levels([a, b]).",
        )
    return lv


LevelSpacing = Literal["quantile", "log", "linear"]
_SPACINGS = ("quantile", "log", "linear")


def _levels(z: np.ma.MaskedArray, n: int, spacing: str, where: str) -> np.ndarray:
    """``n + 1`` increasing contour levels spanning the finite values of ``z``.

    Linear levels fail on early or wide grids: the loss at the corners (hundreds) sets the top
    level and the whole basin falls in the lowest band. Quantile levels give every band about
    the same share of the grid, so the basin is resolved whatever the range; log levels do
    the same for losses that span decades down to near zero.
    """
    n = check_int("levels", n, 1, None, where=where)
    check_choice(
        "spacing",
        spacing,
        _SPACINGS,
        where=where,
        fix="Use 'quantile' (the default) to resolve the basin of a grid with a large loss range.",
    )
    vals = np.ma.compressed(z).astype(np.float64)
    if vals.size == 0:
        return np.linspace(0.0, 1.0, n + 1)
    lo, hi = float(vals.min()), float(vals.max())
    if hi <= lo:  # a flat grid: one band around its value
        pad = 0.5 * abs(lo) if lo else 0.5
        return np.array([lo - pad, lo + pad])
    if spacing == "quantile":
        lv = np.quantile(vals, np.linspace(0.0, 1.0, n + 1))
    elif spacing == "log":
        if lo <= 0:
            raise invalid(
                "spacing",
                "'quantile' or 'linear' for a landscape with values <= 0 ('log' needs values > 0)",
                spacing,
                where=where,
                fix=f"The lowest value is {lo!r}. Use spacing='quantile'.",
            )
        lv = np.geomspace(lo, hi, n + 1)
    else:
        lv = np.linspace(lo, hi, n + 1)
    lv = np.unique(lv)  # quantiles repeat on plateaus
    if lv.size < 2:
        lv = np.linspace(lo, hi, n + 1)
    lv[0], lv[-1] = lo, hi
    return lv


def _level_norm(levels: np.ndarray, cmap: str) -> BoundaryNorm:
    # Colours by band index, not by value: with uneven levels a linear norm would paint every
    # basin band the same dark colour again.
    return BoundaryNorm(levels, ncolors=plt.get_cmap(cmap).N, clip=True)


def _level_ticks(levels: np.ndarray, most: int = 8) -> np.ndarray:
    idx = np.unique(np.linspace(0, levels.size - 1, min(most, levels.size)).round().astype(int))
    return levels[idx]


def _level_labels(levels: Any) -> list[str]:
    """Labels of the true level values, with just enough digits to tell neighbours apart
    (quantile levels in a flat basin differ in the fourth digit)."""
    for digits in range(3, 8):
        labels = [f"{v:.{digits}g}" for v in levels]
        if len(set(labels)) == len(labels):
            return labels
    return labels


def level_colorbar(cs: Any, *, label: str, **kw: Any) -> Any:
    """Colour bar of contour levels ``cs``, bands of equal height, ticks at up to 8 levels
    labelled with their true values; ``kw`` goes to ``Figure.colorbar`` (``ax=`` or ``cax=``)."""
    fig = (kw.get("cax") or kw["ax"]).figure
    cbar = fig.colorbar(cs, label=label, spacing="uniform", **kw)
    ticks = _level_ticks(np.asarray(cs.levels))
    cbar.set_ticks(ticks.tolist(), labels=_level_labels(ticks))
    return cbar


def _new_ax(ax: Axes | None, **kw: Any) -> Axes:
    if ax is not None:
        return ax
    fig = plt.figure(figsize=kw.pop("figsize", (5.0, 4.2)))
    return fig.add_subplot(**kw)


def _mark_points(ax: Axes, landscape: Landscape) -> None:
    loss = np.where(np.isfinite(landscape.loss), landscape.loss, np.inf)
    i, j = np.unravel_index(int(np.argmin(loss)), loss.shape)
    x, y = landscape.coords[0], landscape.coords[1]
    ax.plot([0.0], [0.0], marker="+", color="white", ms=11, mew=2, ls="none", label="trained")
    ax.plot([x[i]], [y[j]], marker="*", color="red", ms=11, ls="none", label="grid minimum")


def plot_landscape_contour(
    landscape: Landscape,
    *,
    ax: Axes | None = None,
    levels: int | Sequence[float] = 30,
    spacing: LevelSpacing = "quantile",
    log_scale: bool = False,
    cmap: str = "viridis",
    colorbar: bool = True,
    mark: bool = True,
    loss_label: str = CROSS_ENTROPY,
) -> Axes:
    """Filled contour of a 2-D landscape: x = direction 1, y = direction 2, true coefficients.

    Parameters
    ----------
    landscape : Landscape
        A 2-D grid.
    ax : matplotlib Axes, optional
    levels : int or sequence of float
        Number of bands over the finite values, or the level values themselves (e.g.
        :func:`shared_levels` of the runs compared; ``spacing`` is then ignored).
    spacing : {"quantile", "log", "linear"}
        Where the levels go. ``"quantile"`` (default): at quantiles of the grid values, so each
        band covers about the same share of the grid and a basin far below the grid's corners
        is still resolved; ``"log"``: geometric; ``"linear"``: evenly in loss. Colours go by band
        and the colour bar is labelled with the true level values.
    log_scale : bool
        Contour ``log10(loss)``.
    cmap : str
    colorbar : bool
    mark : bool
        Mark the trained model (the origin, ``+``) and the grid minimum (``*``).
    loss_label : str
        The loss and its unit, for the colour bar.

    Returns
    -------
    Axes
    """
    where = "plot_landscape_contour"
    _need_dim(landscape, 2, where)
    ax = _new_ax(ax)
    z, label = _values(landscape, log_scale, loss_label)
    x, y = landscape.coords
    given = _given_levels(levels, where)
    lv = given if given is not None else _levels(z, int(levels), spacing, where)  # type: ignore[arg-type]
    # contourf wants z[row=y, col=x]; the landscape is indexed [direction 1, direction 2].
    cs = ax.contourf(x, y, z.T, levels=lv, cmap=cmap, norm=_level_norm(lv, cmap))
    ax.contour(x, y, z.T, levels=cs.levels, colors="k", linewidths=0.3, alpha=0.5)
    if colorbar:
        note = (
            " (shared levels)"
            if given is not None
            else ("" if spacing == "linear" else f" ({spacing}-spaced levels)")
        )
        cbar = ax.figure.colorbar(cs, ax=ax, label=label + note, spacing="uniform")
        ticks = _level_ticks(lv)
        cbar.set_ticks(ticks.tolist(), labels=_level_labels(ticks))
    if mark:
        _mark_points(ax, landscape)
        ax.legend(loc="upper right", fontsize=7, framealpha=0.6)
    ax.set_xlabel(landscape.directions.axis_label(0))
    ax.set_ylabel(landscape.directions.axis_label(1))
    ax.set_xlim(x[0], x[-1])
    ax.set_ylim(y[0], y[-1])
    ax.set_aspect("auto")
    return ax


def plot_random_directions(
    landscape: Landscape,
    *,
    ax: Axes | None = None,
    levels: int | Sequence[float] = 20,
    spacing: LevelSpacing = "quantile",
    log_scale: bool = False,
    colorbar: bool = True,
    loss_label: str = CROSS_ENTROPY,
) -> Axes:
    """The classic 2-D random-direction plot (Li et al. 2018): labelled loss contour lines,
    with a colour bar of the levels.

    Parameters
    ----------
    landscape : Landscape
        A 2-D grid along random directions (:func:`sampletopo.landscape.random_directions`).
    ax : matplotlib Axes, optional
    levels : int or sequence of float
        Number of contour intervals, or the level values (:func:`shared_levels` to compare
        runs on one scale).
    spacing : {"quantile", "log", "linear"}
        Where the lines go; see :func:`plot_landscape_contour`. Lines are labelled with their
        true values.
    log_scale : bool
    colorbar : bool
        Draw the colour bar of the levels.
    loss_label : str
        The loss and its unit.

    Returns
    -------
    Axes
    """
    where = "plot_random_directions"
    _need_dim(landscape, 2, where)
    if landscape.directions.kind != "random":
        raise invalid(
            "landscape",
            "a landscape along random directions",
            where=where,
            got=f"{landscape.directions.kind!r} directions",
            fix="Use plot_landscape_contour for those.",
        )
    ax = _new_ax(ax)
    z, label = _values(landscape, log_scale, loss_label)
    x, y = landscape.coords
    given = _given_levels(levels, where)
    lv = given if given is not None else _levels(z, int(levels), spacing, where)  # type: ignore[arg-type]
    cs = ax.contour(
        x, y, z.T, levels=lv, cmap="viridis", norm=_level_norm(lv, "viridis"), linewidths=1.0
    )
    ax.clabel(cs, inline=True, fontsize=6, fmt=dict(zip(cs.levels, _level_labels(cs.levels))))
    _mark_points(ax, landscape)
    ax.get_lines()[0].set_color("black")
    ax.set_xlabel(landscape.directions.axis_label(0))
    ax.set_ylabel(landscape.directions.axis_label(1))
    ax.set_xlim(x[0], x[-1])
    ax.set_ylim(y[0], y[-1])
    if given is not None:
        note = ", shared levels"
    else:
        note = "" if spacing == "linear" else f", {spacing}-spaced levels"
    if colorbar:
        level_colorbar(cs, label=label, ax=ax)
    ax._sampletopo_contours = cs  # type: ignore[attr-defined]
    ax._sampletopo_label = label  # type: ignore[attr-defined]
    ax.set_title(f"random directions (seed {landscape.directions.seed}){note}", fontsize=9)
    ax._sampletopo_levels = np.asarray(cs.levels)  # type: ignore[attr-defined]
    return ax


def plot_landscape_surface(
    landscape: Landscape,
    *,
    ax: Axes | None = None,
    log_scale: bool = False,
    cmap: str = "viridis",
    clip_quantile: float | None = 0.95,
    loss_label: str = CROSS_ENTROPY,
) -> Axes:
    """3-D surface of a 2-D landscape (x = direction 1, y = direction 2, z = loss).

    ``ax`` must be a 3-D Axes (``projection="3d"``) when given.

    Parameters
    ----------
    clip_quantile : float in (0, 1], optional
        When the grid points above this quantile of the finite values stretch the z axis to
        more than twice the rest (corners of an early or wide grid), values above it are drawn
        at it, so the basin keeps its shape; the z label and the title say so. ``None`` never
        clips.

    Returns
    -------
    Axes
    """
    where = "plot_landscape_surface"
    _need_dim(landscape, 2, where)
    if ax is None:
        ax = _new_ax(None, projection="3d", figsize=(6.2, 5.2))
    elif getattr(ax, "name", "") != "3d":
        raise invalid(
            "ax",
            "a 3-D Axes",
            where=where,
            got=f"a {getattr(ax, 'name', type(ax).__name__)!r} Axes",
            fix="Create it with fig.add_subplot(projection='3d').",
        )
    if clip_quantile is not None:
        check_real("clip_quantile", clip_quantile, low=0, low_open=True, high=1, where=where)
    z, label = _values(landscape, log_scale, loss_label)
    xx, yy = np.meshgrid(landscape.coords[0], landscape.coords[1], indexing="ij")
    zz = np.where(np.ma.getmaskarray(z), np.nan, np.ma.getdata(z))
    vals = np.ma.compressed(z)
    if clip_quantile is not None and vals.size:
        lo, hi = float(vals.min()), float(vals.max())
        cap = float(np.quantile(vals, float(clip_quantile)))
        if hi - lo > 2.0 * (cap - lo):
            zz = np.minimum(zz, cap)  # NaN stays NaN
            pct = f"{100 * float(clip_quantile):g}th percentile"
            label = f"{label}, clipped at {cap:.3g}"
            ax.set_title(
                f"values above the {pct} ({cap:.3g}, max {hi:.3g}) drawn at {cap:.3g}", fontsize=8
            )
    ax.plot_surface(xx, yy, zz, cmap=cmap, linewidth=0, antialiased=True)  # type: ignore[attr-defined]
    # Few ticks, small labels and padded axis labels: the default crowded the 3-D axes until
    # the tick labels ran into each other and into the axis labels.
    for axis in (ax.xaxis, ax.yaxis, ax.zaxis):  # type: ignore[attr-defined]
        axis.set_major_locator(MaxNLocator(4))
    ax.tick_params(labelsize=7, pad=1)
    ax.set_xlabel(landscape.directions.axis_label(0), fontsize=8, labelpad=6)
    ax.set_ylabel(landscape.directions.axis_label(1), fontsize=8, labelpad=6)
    ax.set_zlabel(label, fontsize=8, labelpad=8)  # type: ignore[attr-defined]
    return ax


def plot_landscape_1d(landscape: Landscape, *, ax: Axes | None = None) -> Axes:
    """Loss (left axis) and accuracy (right axis, when available) along one direction."""
    where = "plot_landscape_1d"
    _need_dim(landscape, 1, where)
    ax = _new_ax(ax)
    x = landscape.coords[0]
    ax.plot(x, landscape.loss, color="C0", marker=".", label="loss")
    ax.set_xlabel(landscape.directions.axis_label(0))
    ax.set_ylabel("loss", color="C0")
    if np.isfinite(landscape.accuracy).any():
        twin = ax.twinx()
        twin.plot(x, landscape.accuracy, color="C1", ls="--", label="accuracy")
        twin.set_ylabel("accuracy", color="C1")
        twin.set_ylim(0, 1.02)
    return ax


def plot_landscape_profile(
    profile: LandscapeProfile,
    *,
    ax: Axes | None = None,
    cmap: str = "viridis",
    log_scale: bool = False,
    outline: bool = True,
    loss_label: str = CROSS_ENTROPY,
) -> Axes:
    """Draw a topological landscape profile: nested basins coloured by loss.

    Each basin's width at a loss level (y) is the number of grid points of that basin below the
    level; basins merging at a saddle sit side by side inside the basin they form. The fill
    colour is the loss level, so colour and height agree. The title names the grid graph
    (``profile.connectivity``) the merge tree was built on.

    Parameters
    ----------
    profile : LandscapeProfile
        From :func:`sampletopo.landscape.landscape_profile` (any grid dimension).
    ax : matplotlib Axes, optional
    cmap : str
    log_scale : bool
        Logarithmic loss axis (losses must be > 0).
    outline : bool
        Draw each basin's outline.
    loss_label : str
        The loss and its unit.

    Returns
    -------
    Axes
    """
    where = "plot_landscape_profile"
    check_instance(
        "profile",
        profile,
        LandscapeProfile,
        what="a LandscapeProfile (from landscape_profile)",
        where=where,
    )
    if log_scale and profile.loss_min <= 0:
        raise invalid(
            "log_scale",
            "False for a profile with losses <= 0 (a log scale needs losses > 0)",
            log_scale,
            where=where,
            fix=f"The lowest loss is {profile.loss_min!r}. Pass log_scale=False.",
        )
    ax = _new_ax(ax, figsize=(6.0, 4.2))
    polys = [b.outline() for b in profile.basins]
    lo, hi = profile.loss_min, profile.loss_max
    if log_scale:
        polys = [(x, np.log10(y)) for x, y in polys]
        lo, hi = float(np.log10(lo)), float(np.log10(hi))
    if hi <= lo:
        hi = lo + 1.0
    width = max(float(profile.n_points), 1.0)
    path = MplPath.make_compound_path(*[MplPath(np.column_stack(p), closed=True) for p in polys])
    # One vertical colour gradient (colour = loss level), clipped to the union of the basins.
    im = ax.imshow(
        np.linspace(lo, hi, 512)[:, None],
        extent=(0.0, width, lo, hi),
        origin="lower",
        aspect="auto",
        cmap=cmap,
        interpolation="bilinear",
        vmin=lo,
        vmax=hi,
    )
    im.set_clip_path(PathPatch(path, transform=ax.transData, facecolor="none"))
    if outline:
        for x, y in polys:
            ax.plot(x, y, color="k", lw=0.4, alpha=0.7)
    ax.set_xlim(0.0, width)
    ax.set_ylim(lo, hi)
    label = f"log10 {loss_label}" if log_scale else loss_label
    ax.set_xlabel("basin width (grid points below the loss level)")
    ax.set_ylabel(label)
    n_min = sum(b.kind == "minimum" for b in profile.basins)
    noun = "minimum" if n_min == 1 else "minima"
    # The basins depend on the grid graph; say which, so profiles are not compared across graphs.
    ax.set_title(
        f"landscape profile ({profile.connectivity} grid graph): {n_min} {noun}, "
        f"{profile.n_points} points",
        fontsize=9,
    )
    ax.figure.colorbar(im, ax=ax, label=label)
    return ax


def plot_hessian_spectrum(
    density: SpectralDensity,
    *,
    ax: Axes | None = None,
    eigenvalues: np.ndarray | None = None,
    sigma: float | None = None,
    n_grid: int = 1000,
    log_scale: bool = True,
) -> Axes:
    """Hessian eigenvalue density from stochastic Lanczos quadrature.

    Parameters
    ----------
    density : SpectralDensity
    ax : matplotlib Axes, optional
    eigenvalues : ndarray, optional
        Top eigenvalues (e.g. from Lanczos) drawn as dashed vertical lines.
    sigma : float, optional
        Gaussian smoothing width (default: see :meth:`SpectralDensity.density`).
    n_grid : int
        Evaluation points.
    log_scale : bool
        Logarithmic density axis (the usual view: a bulk near 0 and a few outliers).

    Returns
    -------
    Axes
    """
    where = "plot_hessian_spectrum"
    check_instance(
        "density",
        density,
        SpectralDensity,
        what="a SpectralDensity (from spectral_density)",
        where=where,
    )
    ax = _new_ax(ax)
    nodes = density.nodes[np.isfinite(density.nodes)]
    span = float(nodes.max() - nodes.min()) if nodes.size else 1.0
    pad = 0.05 * span if span > 0 else 1.0
    grid = np.linspace(nodes.min() - pad, nodes.max() + pad, n_grid)
    dens = density.density(grid, sigma=sigma)
    if log_scale:
        floor = max(float(dens.max()) * 1e-8, 1e-300)
        ax.semilogy(grid, np.maximum(dens, floor), color="C0")
        ax.set_ylim(bottom=floor * 10)
    else:
        ax.plot(grid, dens, color="C0")
    if eigenvalues is not None:
        for k, lam in enumerate(np.asarray(eigenvalues, dtype=np.float64)):
            ax.axvline(
                lam, color="C3", ls="--", lw=0.8, label="top eigenvalues" if k == 0 else None
            )
        ax.legend(fontsize=7)
    ax.set_xlabel("Hessian eigenvalue")
    ax.set_ylabel("density (SLQ)")
    ax.set_title(f"Hessian spectrum ({density.nodes.shape[0]} SLQ runs)", fontsize=9)
    return ax


def save_landscape_figures(
    path: str | Any,
    *,
    out_dir: str | Any | None = None,
    levels: int | Sequence[float] | None = None,
    loss_label: str = CROSS_ENTROPY,
) -> list[Any]:
    """Write the figures of a landscape file (from ``landscape_for_run``) as PNGs, each with
    its numbers as ``<name>.parquet`` beside it (caption in the footer).

    Writes, next to the file (or into ``out_dir``), ``<stem>-profile.png`` and, when the file
    holds them, ``<stem>-spectrum.png``; for 2-D landscapes also ``<stem>-contour.png``,
    ``<stem>-surface.png`` and, for random directions, ``<stem>-random.png``. Returns the paths.
    The profile is drawn on the grid graph the file's metrics were computed on, and its title
    (which names that graph) adds the metrics. ``levels``: the contour levels of the 2-D plots
    (:func:`shared_levels` of the landscapes compared); default: this grid's own quantiles.
    """
    from pathlib import Path

    from sampletopo.landscape import landscape_profile, read_landscape

    src = Path(path)
    land, extra = read_landscape(src)
    out = Path(out_dir) if out_dir is not None else src.parent
    out.mkdir(parents=True, exist_ok=True)
    stem = src.name.removesuffix(".npz")
    metrics = extra.get("metrics", {})
    conn = metrics.get("connectivity", "freudenthal")
    run = extra.get("run", stem)
    epoch = extra.get("epoch", "?")
    written: list[Path] = []
    grid = landscape_table(land) if land.dim == 2 else None
    if levels is None:
        lv_kw: dict[str, Any] = {}
        lv_text = "levels at quantiles of this grid's own losses (not comparable across runs)"
    else:
        lv_kw = {"levels": levels}
        lvs = np.asarray(levels, dtype=np.float64)
        lv_text = (
            f"{lvs.size} contour levels shared by every landscape of the experiment, from "
            f"{lvs[0]:.4g} to {lvs[-1]:.4g} (log-spaced above the smallest loss when wide)"
        )

    def save(ax: Axes, name: str, table: pl.DataFrame | None, caption: str, **info: Any) -> None:
        p = out / f"{stem}-{name}.png"
        fig: Any = ax.figure
        fig.tight_layout()
        if table is not None:
            attach_data(fig, table, caption, **info)
        try:
            save_figure(fig, p, dpi=110)
            save_figure_data(fig, p)
        finally:
            plt.close(fig)
        written.append(p)

    where = f"Run {run}, epoch {epoch}"
    prof = landscape_profile(land, connectivity=conn)
    ax = plot_landscape_profile(prof, loss_label=loss_label)
    if metrics:
        ax.set_title(
            f"{ax.get_title()}\nsaddles {metrics['n_saddles']}, avg persistence "
            f"{metrics['average_persistence']:.3g}, SMAD {metrics['smad']:.3g}",
            fontsize=8,
        )
    outline = [
        pl.DataFrame({"basin": [k] * len(x), "width": x, "loss": y})
        for k, (x, y) in enumerate(b.outline() for b in prof.basins)
    ]
    save(
        ax, "profile",
        pl.concat(outline) if outline else None,
        f"{where}: topological landscape profile of the {land.dim}-D loss grid ({conn} grid "
        "graph): nested basins, width = grid points below the loss level.",
    )  # fmt: skip
    if "density_nodes" in extra:
        sd = SpectralDensity(extra["density_nodes"], extra["density_weights"], 0)
        nodes = np.asarray(sd.nodes, dtype=np.float64)
        spec = pl.DataFrame({
            "slq_run": np.repeat(np.arange(nodes.shape[0]), nodes.shape[1]),
            "node": nodes.ravel(),
            "weight": np.asarray(sd.weights, dtype=np.float64).ravel(),
        })  # fmt: skip
        save(
            plot_hessian_spectrum(sd, eigenvalues=extra.get("hessian_eigenvalues")), "spectrum",
            spec, f"{where}: Hessian eigenvalue density (stochastic Lanczos quadrature), top "
            "eigenvalues dashed.",
        )  # fmt: skip
    if land.dim == 2:
        kind = land.directions.kind
        save(
            plot_landscape_contour(land, loss_label=loss_label, **lv_kw), "contour", grid,
            f"{where}: loss landscape along two {kind} directions, filled contours; {lv_text}.",
            levels=[] if levels is None else [float(v) for v in np.asarray(levels)],
        )  # fmt: skip
        save(
            plot_landscape_surface(land, loss_label=loss_label), "surface", grid,
            f"{where}: loss landscape along two {kind} directions as a surface.",
        )  # fmt: skip
        if kind == "random":
            save(
                plot_random_directions(land, loss_label=loss_label, **lv_kw), "random", grid,
                f"{where}: the 2-D random-direction plot (filter-normalized directions, Li et "
                f"al. 2018); {lv_text}.",
                levels=[] if levels is None else [float(v) for v in np.asarray(levels)],
            )  # fmt: skip
    elif land.dim == 1:
        one = pl.DataFrame({
            "direction_1": np.asarray(land.coords[0], dtype=np.float64),
            "loss": np.asarray(land.loss, dtype=np.float64),
            "accuracy": np.asarray(land.accuracy, dtype=np.float64),
        })  # fmt: skip
        save(plot_landscape_1d(land), "1d", one, f"{where}: loss along one direction.")
    return written
