"""Write the sample-space figure set of one group of comparable runs.

:func:`write_figure_set` reads the stored diagrams and summaries of some runs (see
:mod:`sampletopo.analysis`) and writes, in each of ``formats`` (PNG and PDF by default), with
``prefix-`` before each name when a prefix is given:

- ``total_persistence`` (p = 1): train/val x join/split, runs overlaid, mean loss alongside;
- ``metric-<name>`` for each of ``metrics`` (:data:`sampletopo.replicates.METRICS`, e.g.
  ``metric-pairs_above=0.5``): that metric of every diagram against epoch, same layout;
- ``wasserstein``: distance of each epoch's diagram to the final epoch's, same layout;
- ``heatmap-<split>-<tree>``: diagram heatmaps at chosen epochs, rows = runs, columns = epochs
  wrapped after ``columns``, shared bins and colour scale;
- ``diagrams-<run>-epoch=NNNN``: per run, every split's join and split diagram beside its
  barcode at the last chosen epoch.

Beside each figure, ``<name>.parquet`` holds the numbers it draws and, in its footer, the
caption the report shows (:func:`sampletopo.plotting._topology.read_caption`). Axes are robust
to exploding epochs (``scale``, see :mod:`sampletopo.plotting._scales`); loss axes name the
run's loss (:func:`loss_label`).

:func:`comparison_figure` reads a run's 2-D random-direction landscapes and diagrams for the
report's comparison figure. Problems that leave the rest drawable (a run with missing epochs, an
asked epoch absent from a run) are reported as warnings and the figure set is completed with what
exists. This module reads and chooses; every figure is drawn in :mod:`sampletopo.plotting`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
from tqdm.auto import tqdm

from sampletopo import analysis
from sampletopo._errors import FigureWarning, SampletopoError
from sampletopo._folders import check_inside, lock_folder
from sampletopo._validation import check_int, invalid, ranges_text
from sampletopo.readers import diagram_epochs, read_diagram, read_diagrams
from sampletopo.runs import (
    GRAPH_DEFAULTS,
    SPLITS,
    TREES,
    PathLike,
    Run,
    epoch_tag,
    run_labels,
    runs_in,
)

if TYPE_CHECKING:  # matplotlib stays unloaded until something is drawn (``--help`` reads here)
    from sampletopo.plotting._scales import Scale
    from sampletopo.replicates import Metric

__all__ = ["write_figure_set", "run_milestones", "comparison_figure", "loss_label"]

# A run config's ``loss`` values that mean cross-entropy (the default when a config has none).
_CROSS_ENTROPY_NAMES = {"cross_entropy", "cross-entropy", "crossentropy", "ce", "nll"}


def loss_label(run_dirs: Iterable[PathLike]) -> str:
    """How loss axes of ``run_dirs`` are labelled: ``"cross-entropy loss (nats)"`` when every
    run's config says cross-entropy or names no ``loss`` (the runs sampletopo trains), else
    ``"loss"`` (or ``"<name> loss"`` when all runs name the same one)."""
    from sampletopo.plotting._topology import CROSS_ENTROPY

    names: set[str] = set()
    for rd in run_dirs:
        run = Run(rd)
        name = "cross_entropy"
        if run.has_config():
            try:
                name = str(run.read_config().get("loss", name) or name)
            except SampletopoError:
                pass  # run_milestones already warns about an unreadable config
        names.add(name.lower())
    if not names or names <= _CROSS_ENTROPY_NAMES:
        return CROSS_ENTROPY
    return f"{next(iter(names))} loss" if len(names) == 1 else "loss"


def run_milestones(run_dirs: Iterable[PathLike]) -> list[int]:
    """Epochs after which the learning rate changes, in any of the runs (the union).

    Per run: the drops of its stored schedule (:meth:`~sampletopo.runs.Run.lr_drops`, epochs
    ``m`` whose rate differs from epoch ``m + 1``'s); for a run without one (recorded without an
    optimizer, or before schedules were stored) the ``milestones`` of its config, if any. A
    schedule or config that cannot be read is named in a :class:`FigureWarning`, and that run
    marks nothing."""
    out: set[int] = set()
    for rd in run_dirs:
        run = Run(rd)
        try:
            drops = run.lr_drops()
            if drops is not None:
                out |= set(drops)
                continue
            if not run.has_config():
                continue  # a run recorded without one: no LR changes to mark
            out |= {int(m) for m in run.read_config().get("milestones", []) or []}
        except SampletopoError as exc:
            warnings.warn(
                f"LR changes of run {Path(rd).name} are not marked: {exc}",
                FigureWarning,
                stacklevel=2,
            )
    return sorted(out)


def write_figure_set(
    run_dirs: str | Path | Iterable[str | Path],
    out_dir: str | Path,
    *,
    epochs: Sequence[int] | None = None,
    formats: Sequence[str] = ("png", "pdf"),
    prefix: str = "",
    title: str = "",
    progress: bool = True,
    summary: pl.DataFrame | None = None,
    wasserstein: pl.DataFrame | None = None,
    scale: Scale = "auto",
    bins: int = 30,
    value_range: Sequence[float] | None = None,
    columns: int = 4,
    metrics: Sequence[str] = (),
) -> list[Path]:
    """Write every sample-space figure of ``run_dirs`` into ``out_dir``; return the PNG paths.

    Parameters
    ----------
    run_dirs : path or paths
        Runs (or experiment folders) whose topology was computed
        (:func:`sampletopo.analysis.compute_topology`); runs of
        :func:`sampletopo.runs.graph_runs` draw the topology of that graph setting. They must share dataset and splits.
        Runs of several experiment folders that share a name are labelled ``experiment/run``
        (:func:`sampletopo.runs.run_labels`).
    epochs : sequence of int, optional
        Heatmap epochs. Default: the first trained epoch (1), the epochs on each side of every
        LR drop (:func:`run_milestones`), and the final one; first, middle and final without
        drops (:func:`sampletopo.plotting.default_heatmap_epochs`), restricted to epochs every
        run has.
    scale : {"auto", "linear", "log", "symlog"}
        Y axes of the curves and both heatmap axes; ``"auto"``: log when the values span more
        than 100x (symmetric log with values <= 0), linear otherwise. Ranges leave out
        outlying epochs, drawn as marked overflow (see :mod:`sampletopo.plotting._scales`).
    bins : int
        Heatmap bins per axis (an overflow bin is added beyond the range when needed).
    value_range : (lo, hi), optional
        Fix both heatmap axes to this range of loss values (default: robust, from the epochs
        shown).
    columns : int
        Heatmap panels per row; more epochs wrap onto further rows of the same run.
    metrics : sequence of str
        Named metrics (:data:`sampletopo.replicates.METRICS`: ``"pairs_above:0.5"``,
        ``"quantile:0.9"``, ``"n_pairs"``, ...) to draw against epoch as well, one figure each
        (``metric-<name>``, the colon written ``=``), like the total persistence: per run, or
        per variant as the replicates' mean with its interval. ``"total_persistence"`` is the
        ``total_persistence`` figure itself and is not drawn twice.
    prefix : str
        Put before every file name (e.g. the experiment's name).
    progress : bool
        Show a progress bar over the figures.
    summary, wasserstein : polars.DataFrame, optional
        The runs' :func:`sampletopo.analysis.summarize` and
        :func:`sampletopo.analysis.wasserstein_to_reference` tables, when the caller already
        has them; computed here otherwise, and stored in the runs' folders where those can be
        written (:func:`sampletopo.analysis.summary_tables`): figures of a read-only
        experiment only write into ``out_dir``.

    Notes
    -----
    ``out_dir`` is locked while drawing (see :mod:`sampletopo._folders`): a second process
    drawing into the same folder gets an error naming this one.
    """
    analysis.check_comparable(run_dirs, label_clashes=True)
    from sampletopo.replicates import _metrics

    chosen_metrics = [
        m for m in (_metrics(list(metrics)) if metrics else []) if m.kind != "total_persistence"
    ]
    # As Run objects: a run given with a graph setting (sampletopo.runs.graph_runs) draws the
    # topology of that setting.
    runs = runs_in(run_dirs, label_clashes=True)
    with lock_folder(out_dir, what="drawing figures", role="figure folder"):
        return _write_figure_set(
            runs, Path(out_dir), epochs=epochs, formats=formats, prefix=prefix, title=title,
            progress=progress, summary=summary, wasserstein=wasserstein, metrics=chosen_metrics,
            look={"scale": scale, "bins": bins, "value_range": value_range, "columns": columns},
        )  # fmt: skip


def _write_figure_set(
    runs: list[Run],
    out: Path,
    *,
    epochs: Sequence[int] | None,
    formats: Sequence[str],
    prefix: str,
    title: str,
    progress: bool,
    summary: pl.DataFrame | None,
    wasserstein: pl.DataFrame | None,
    look: dict[str, Any],
    metrics: Sequence[Metric] = (),
) -> list[Path]:
    """:func:`write_figure_set` once ``out`` is locked; ``look``: scale, bins, value_range,
    columns."""
    from sampletopo.plotting import _topology as P
    from sampletopo.plotting._scales import check_range, check_scale

    where = "write_figure_set"
    check_scale(look["scale"], where)
    check_range(look["value_range"], where)
    check_int("bins", look["bins"], 2, 1000, where=where)
    check_int("columns", look["columns"], 1, 1000, where=where)
    label = loss_label(runs)

    _warn_missing_losses(runs)
    milestones = run_milestones(runs)
    labels = run_labels(runs)
    pairs = list(zip(runs, labels, strict=True))
    if summary is None or wasserstein is None:
        computed = _labelled_summary_tables(runs, labels)
        summary = computed[0] if summary is None else summary
        wasserstein = computed[1] if wasserstein is None else wasserstein
    wdist = wasserstein
    diagrams = pl.concat([read_diagrams(rd).with_columns(run=pl.lit(lab)) for rd, lab in pairs])
    chosen, heat_note = _heatmap_epochs(pairs, epochs, milestones)
    pngs: list[Path] = []
    name = (prefix + "-") if prefix else ""
    # Count only the figures that will be drawn, so the bar ends full when heatmaps are skipped.
    n_figs = 2 + len(metrics) + (len(SPLITS) * len(TREES) + len(runs) if chosen else 0)
    bar = tqdm(total=n_figs, desc="figures", unit="fig", disable=not progress)

    graph_long, graph_short = _graph_texts(runs)
    other_graph = any(rd.setting for rd in runs)  # not the setting in <run>/topology/ itself

    def saved(fig: Any, stem: str) -> None:
        _name_graph(fig, graph_long, graph_short if other_graph else "")
        path = check_inside(out / f"{name}{stem}", out, what="figure file")
        pngs.append(P.save(fig, path, formats)[0])
        bar.update(1)

    suffix = f" — {title}" if title else ""

    tp_table, tp_heading, heat_table, heat_rows = _pooled(summary, diagrams, runs, labels)
    curves = (
        ("total_persistence", P.total_persistence_figure, tp_table,
         {"p": 1, "loss_label": label}, tp_heading),
        ("wasserstein", P.wasserstein_figure, wdist, {"order": 1},
         "Wasserstein-1 distance to the final epoch's diagram"),
    )  # fmt: skip
    for stem, draw, table, kw, heading in curves:
        fig = draw(table, **kw, milestones=milestones, title=heading + suffix, scale=look["scale"])
        saved(fig, stem)
    groups = _replicate_groups(runs, labels)
    curves_of = _metric_curves(runs, labels, metrics, summary, groups) if metrics else {}
    for m in metrics:
        what = m.description[0].upper() + m.description[1:] + " in each persistence diagram"
        fig = P.metric_figure(
            curves_of[m.name], m.name, what=what,
            title=what + (", mean over replicates (95 % CI shaded)" if groups else "") + suffix,
            quantity=m.name, ylabel=m.name, milestones=milestones, scale=look["scale"],
            loss_label=label,
        )  # fmt: skip
        saved(fig, "metric-" + m.name.replace(":", "="))

    if not chosen:
        why = (
            "none of the asked epochs exists in every run"
            if epochs
            else "no epoch is common to all runs"
        )
        warnings.warn(f"Heatmaps and diagrams skipped: {why}.", FigureWarning, stacklevel=2)
    else:
        for s in SPLITS:
            for tree in TREES:
                fig = P.heatmap_figure(
                    heat_table, split=s, tree=tree, epochs=chosen, runs=heat_rows,
                    loss_label=label, note=heat_note, **look,
                )  # fmt: skip
                saved(fig, f"heatmap-{s}-{tree}")
        last = chosen[-1]
        for rd, lab in zip(runs, labels, strict=True):
            ds: dict[tuple[str, str], Any] = {
                (s, t): read_diagram(rd, split=s, tree=t, epoch=last) for s in SPLITS for t in TREES
            }
            saved(
                P.diagrams_figure(ds, run=lab, epoch=last, loss_label=label),
                f"diagrams-{lab.replace('/', '-')}-{epoch_tag(last)}",
            )
    bar.close()
    return pngs


def _graph_texts(runs: Sequence[Run]) -> tuple[str, str]:
    """How captions and titles name the kNN graph the runs' diagrams were computed on (from
    their ``meta.json``): ("kNN graph with k=40 on the first 20 principal axes of the
    standardized features", "kNN k=40, PCA 20"); several settings are joined by "; "."""
    long: list[str] = []
    short: list[str] = []
    for rd in runs:
        meta, _ = rd.read_meta()
        for entry in meta.values():
            k, feats = entry.get("k"), str(entry.get("features", "raw"))
            if feats == "pca":
                n = entry.get("pca_components", GRAPH_DEFAULTS["pca_components"])
                words, brief = (
                    f"the first {n} principal axes of the standardized features",
                    (f"PCA {n}"),
                )
            elif feats in ("raw", "standardized"):
                words, brief = f"{feats} features", feats
            else:
                words, brief = f"the features of {Path(feats).name}", Path(feats).name
            if f"k={k}, {brief}" not in short:
                long.append(f"kNN graph with k={k} on {words}")
                short.append(f"k={k}, {brief}")
    return "; ".join(long), ("kNN " + "; ".join(short)) if short else ""


def _name_graph(fig: Any, long: str, short: str) -> None:
    """End ``fig``'s caption with the graph it shows (``long``), and its title with
    ``short`` when given (a setting other than ``topology/`` itself)."""
    from sampletopo.plotting import _topology as P

    data = P.figure_data(fig)
    if data is not None and long:
        P.attach_data(fig, data.table, f"{data.caption} Sample graph: {long}.", **data.extra)
    title = getattr(fig, "_suptitle", None)
    if short and title is not None:
        title.set_text(f"{title.get_text()} ({short})")


def _shrunk_epochs_note(
    per_run: dict[str, set[int]], chosen: Sequence[int], milestones: Sequence[int]
) -> str:
    """When some runs lack epochs the others have (stopped early, e.g. diverged), what the
    default heatmap epochs leave out and why; ``""`` when every run has every epoch."""
    from sampletopo.plotting._topology import _epochs_text, default_heatmap_epochs

    union = set().union(*per_run.values()) if per_run else set()
    short = {lab: union - have for lab, have in per_run.items() if union - have}
    if not short:
        return ""
    wanted = default_heatmap_epochs(sorted(union), milestones)
    left = [e for e in wanted if e not in chosen]
    who = []
    for lab, gap in short.items():
        have = per_run[lab]
        if have and min(gap) > max(have):
            who.append(f"{lab} (stopped after epoch {max(have)})")
        else:
            who.append(f"{lab} (no diagrams at epoch(s) {ranges_text(gap)})")
    shown = _epochs_text(chosen) if chosen else "none"
    out = (
        f"Heatmap epochs (and the diagram figures' epoch) are those every run has ({shown}): "
        + ", ".join(who)
        + "."
    )
    if left:
        out += f" The default epoch(s) {_epochs_text(left)} of the other runs are left out"
        out += " (draw the longer runs on their own to see them)."
    return out


def _pooled(
    summary: pl.DataFrame, diagrams: pl.DataFrame, runs: list[Run], labels: list[str]
) -> tuple[pl.DataFrame, str, pl.DataFrame, list[str]]:
    """The total-persistence table and heading, and the heatmap table and rows: per run, or,
    when some variant has replicates, per variant (curves: the mean with its interval;
    heatmaps: the pairs of all its replicates pooled, said in the row titles)."""
    heading = "Total persistence (p=1) of the per-sample loss"
    groups = _replicate_groups(runs, labels)
    if groups is None:
        return summary, heading, diagrams, labels
    pooled = {lab: f"{g} ({n} replicates pooled)" for lab, (g, n) in groups.items()}
    return (
        _replicate_curves(summary, groups),
        heading + ", mean over replicates (95 % CI shaded)",
        diagrams.with_columns(pl.col("run").replace_strict(pooled)),
        list(dict.fromkeys(pooled[lab] for lab in labels)),
    )


def _warn_missing_losses(runs: list[Run]) -> None:
    """A :class:`FigureWarning` per run and split with unrecorded epochs (curves skip them)."""
    for rd in runs:
        for s in SPLITS:
            gap = analysis.missing_epochs(rd, s)
            if gap:
                warnings.warn(
                    f"Run {rd.name} has no {s} losses for epoch(s) {ranges_text(gap)}; the "
                    "curves skip them.",
                    FigureWarning,
                    stacklevel=3,
                )


def _heatmap_epochs(
    pairs: list[tuple[Run, str]], epochs: Sequence[int] | None, milestones: list[int]
) -> tuple[list[int], str]:
    """The heatmap epochs (of ``epochs``, or the defaults) that every run has diagrams of,
    and the note (also warned) when defaults are left out because some runs stopped early."""
    from sampletopo.plotting import _topology as P

    common: set[int] | None = None
    per_run: dict[str, set[int]] = {}
    for rd, lab in pairs:
        for s in SPLITS:
            have = set(diagram_epochs(rd, split=s))
            common = have if common is None else common & have
            per_run[lab] = per_run.get(lab, have) & have
    common_sorted = sorted(common or set())
    if epochs is None:
        chosen = P.default_heatmap_epochs(common_sorted, milestones)
        heat_note = _shrunk_epochs_note(per_run, chosen, milestones)
        if heat_note:
            warnings.warn(heat_note, FigureWarning, stacklevel=3)
        return chosen, heat_note
    chosen = [int(e) for e in epochs if int(e) in (common or set())]
    absent = [int(e) for e in epochs if int(e) not in (common or set())]
    if absent:
        warnings.warn(
            f"Epoch(s) {absent} have no diagrams in every run (common epochs: "
            f"{ranges_text(common_sorted) or 'none'}); they are left out of the heatmaps.",
            FigureWarning,
            stacklevel=3,
        )
    return chosen, ""


def _metric_curves(
    runs: list[Run],
    labels: list[str],
    metrics: Sequence[Metric],
    summary: pl.DataFrame,
    groups: dict[str, tuple[str, int]] | None,
) -> dict[str, pl.DataFrame]:
    """Per metric name, that metric of every run's stored diagrams (each split and tree the run
    has), per epoch, labelled as the figures label runs, with the summary's mean loss; per
    variant (replicate mean and interval) when ``groups`` is given. Each diagram table is read
    once for all ``metrics``."""
    from sampletopo.replicates import metric_table

    names = [m.name for m in metrics]
    parts = []
    for rd, lab in zip(runs, labels, strict=True):
        for s in SPLITS:
            if not rd.diagram_epochs(s):
                continue  # a run recorded without this split
            for t in TREES:
                part = metric_table([rd], list(metrics), split=s, tree=t)
                parts.append(part.select("split", "tree", "epoch", *names, run=pl.lit(lab)))
    table = pl.concat(parts)
    if "mean_loss" in summary.columns:
        losses = summary.select("run", "split", "tree", "epoch", "mean_loss").unique(
            ["run", "split", "tree", "epoch"]
        )
        table = table.join(losses, on=["run", "split", "tree", "epoch"], how="left")
    out = {}
    for name in names:
        one = table.drop(*(n for n in names if n != name))
        out[name] = one if groups is None else _replicate_curves(one, groups, name)
    return out


def _replicate_groups(runs: list[Run], labels: list[str]) -> dict[str, tuple[str, int]] | None:
    """Run label -> (its variant, the variant's replicate count), or ``None`` when no variant
    has more than one replicate among ``runs``."""
    from sampletopo.replicates import run_group

    clash = labels != [Run(r).name for r in runs]
    groups = {}
    for rd, lab in zip(runs, labels, strict=True):
        group, _ = run_group(rd)
        groups[lab] = f"{Run(rd).experiment.name}/{group}" if clash else group
    sizes = {g: list(groups.values()).count(g) for g in set(groups.values())}
    if max(sizes.values()) < 2:
        return None
    return {lab: (g, sizes[g]) for lab, g in groups.items()}


def _replicate_curves(
    summary: pl.DataFrame, groups: dict[str, tuple[str, int]], value: str = "total_persistence_1"
) -> pl.DataFrame:
    """The ``value`` (default: total-persistence) curves pooled per variant (mean and 95 %
    bootstrap interval over its replicates, :func:`sampletopo.replicates.replicate_curves`),
    each named ``<variant> (mean of n)``, or ``(mean of 1-3)`` when runs that stopped early
    (diverged) leave fewer replicates at some epochs (the ``n`` column says which)."""
    from sampletopo.replicates import replicate_curves

    extra = ["mean_loss"] if "mean_loss" in summary.columns else []
    curves = replicate_curves(summary, {lab: g for lab, (g, _) in groups.items()}, value,
                              extra=extra)  # fmt: skip
    counts = curves.group_by("run").agg(lo=pl.col("n").min(), hi=pl.col("n").max())
    named = {
        g: f"{g} (mean of {lo})" if lo == hi else f"{g} (mean of {lo}-{hi})"
        for g, lo, hi in counts.iter_rows()
    }
    return curves.with_columns(pl.col("run").replace_strict(named))


def _labelled_summary_tables(
    runs: list[Run], labels: list[str]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """:func:`sampletopo.analysis.summary_tables` of ``runs``, their ``run`` column holding
    ``labels``: computed per experiment folder when run names clash (one call tells runs apart
    by name)."""
    if labels == [Run(r).name for r in runs]:
        return analysis.summary_tables(runs)
    by_exp: dict[Path, list[tuple[Run, str]]] = {}
    for rd, lab in zip(runs, labels, strict=True):
        by_exp.setdefault(Run(rd).experiment.path, []).append((rd, lab))
    summaries, dists = [], []
    for members in by_exp.values():
        s, w = analysis.summary_tables([rd for rd, _ in members])
        rename = {Run(rd).name: lab for rd, lab in members}
        summaries.append(s.with_columns(pl.col("run").replace_strict(rename)))
        if w.height:
            dists.append(w.with_columns(pl.col("run").replace_strict(rename)))
    return (
        pl.concat(summaries),
        pl.concat(dists) if dists else pl.DataFrame(),
    )


def comparison_figure(runs: Sequence[Path], landscapes: dict[str, Path], *, split: str = "val"):
    """The thesis' comparison: per run, the 2-D random-direction plot beside the sample-space
    heatmaps (join and split) of the same epoch.

    ``landscapes`` maps run name -> a 2-D random-direction landscape file of that run; its
    epoch is read from the file. Drawn by :func:`sampletopo.plotting._topology.comparison_panels`:
    the landscapes share one set of absolute contour levels, the heatmaps shared bins and one
    colour scale across all rows.
    """
    from sampletopo.landscape import read_landscape
    from sampletopo.plotting import _topology as P

    rows = []
    for rd in runs:
        if rd.name not in landscapes:
            continue
        land, extra = read_landscape(landscapes[rd.name])
        epoch = int(extra.get("epoch", -1))
        tabs: dict[str, pl.DataFrame] = {
            tree: read_diagram(rd, split=split, tree=tree, epoch=epoch).to_polars()
            for tree in TREES
        }
        rows.append((rd.name, epoch, land, tabs))
    if not rows:
        raise invalid(
            "landscapes",
            "2-D random-direction landscapes of one or more of the runs",
            where="comparison_figure",
            got="none for these runs",
        )
    return P.comparison_panels(rows, split=split, loss_label=loss_label(runs))
