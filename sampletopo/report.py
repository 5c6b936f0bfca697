"""One self-contained HTML report of one or more experiments.

:func:`write_report` writes ``<report>/index.html`` in three steps, each a public function:

1. :func:`collect_experiment` does the work: it reads the stored summaries of an experiment's runs
   (:mod:`sampletopo.analysis`), draws its figure set under
   ``<report>/figures/<experiment>/{topology,landscape}/`` (landscape and Hessian figures when
   ``<experiment>/landscapes/*.npz`` exist) and gathers what was drawn elsewhere: PNGs placed in
   other folders of ``<report>/figures/<experiment>/`` (the demo's ``samples/``) and what
   ``sampletopo samples RUN --figures`` wrote into each run's ``samples/`` folder (image grids,
   loss curves and the regions tables of :func:`sampletopo.samples.regions_path`).
2. :func:`report_context` turns those results into a plain dict of strings, numbers and lists:
   tables as column names and rows of cell values, figures as paths relative to the page. No
   HTML is in it.
3. :func:`render_report` renders the package's template ``templates/report.html.j2`` (style in
   ``templates/report.css``) through an autoescaping Jinja2 environment, so every run name, file
   name and config value reaches the page escaped.

The page holds the resolved configs, a table of summary numbers per run, and every figure, runs
side by side. Images are embedded as base64 data, so the page works offline and can be mailed as
one file; PDFs of every figure sit beside the PNGs.

This module computes no topology (it reads what :mod:`sampletopo.analysis` stored).
"""

from __future__ import annotations

import base64
import datetime as _dt
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import polars as pl

from sampletopo import analysis
from sampletopo._errors import ReportWarning, SampletopoError
from sampletopo._folders import lock_folder
from sampletopo._io import write_atomic
from sampletopo._runfiles import DamagedFileError, parquet_problem, read_parquet
from sampletopo._validation import invalid, ranges_text
from sampletopo.readers import read_loss_table
from sampletopo.runs import SPLITS, Experiment, Report, Run, as_run, graph_runs

__all__ = [
    "ExperimentResults",
    "collect_experiment",
    "figure_caption",
    "render_report",
    "report_context",
    "run_table",
    "write_report",
]

TEMPLATE = "report.html.j2"

# The report's figure sections of an experiment: sample space and parameter space are drawn
# here (their headings are in the template); PNGs in any other folder are shown under its name,
# or the title given here.
TOPOLOGY_SECTION = "topology"
LANDSCAPE_SECTION = "landscape"
SAMPLES_SECTION = "samples"
AUDIT_SECTION = "audit"
_FOLDER_TITLES = {
    SAMPLES_SECTION: "Which samples make the shape",
    AUDIT_SECTION: "Label audit: suspect regions (sampletopo audit)",
}


def run_table(
    runs: Sequence[Path],
    *,
    summary: pl.DataFrame | None = None,
    wasserstein: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Summary numbers per run at its final epoch: loss, accuracy, total persistence and W1 at
    the first epoch, per split; for a run whose mean loss exploded at some epoch (the summary's
    ``exploding`` flag), those epochs. Pass the runs' summary and Wasserstein tables if already computed.
    """
    summary = analysis.summarize(runs, write=False) if summary is None else summary
    wd = (
        analysis.wasserstein_to_reference(runs, write=False) if wasserstein is None else wasserstein
    )
    rows = []
    for rd in runs:
        row: dict[str, Any] = {"run": rd.name}
        for s in SPLITS:
            sub = summary.filter((pl.col("run") == rd.name) & (pl.col("split") == s))
            if sub.height == 0:
                continue
            last = int(sub["epoch"].max())  # type: ignore[arg-type]
            fin = sub.filter(pl.col("epoch") == last)
            row["final epoch"] = last
            j = fin.filter(pl.col("tree") == "join")
            sp = fin.filter(pl.col("tree") == "split")
            row[f"{s} loss"] = float(j["mean_loss"][0])
            acc = j["accuracy"][0]  # null for regression targets: no classes to get right
            row[f"{s} acc"] = None if acc is None else float(acc)
            row[f"{s} TP join"] = float(j["total_persistence_1"][0])
            row[f"{s} TP split"] = float(sp["total_persistence_1"][0])
            w = wd.filter(
                (pl.col("run") == rd.name) & (pl.col("split") == s) & (pl.col("tree") == "split")
            )
            if w.height:
                first = w.sort("epoch")
                row[f"{s} W1 split, first->final"] = float(first["w1"][0])
        if "exploding" in summary.columns:
            hit = summary.filter((pl.col("run") == rd.name) & pl.col("exploding"))["epoch"]
            if hit.len():
                # Only runs whose loss exploded get a value (see sampletopo._exploding).
                row["loss exploded at epochs"] = ranges_text(sorted(set(hit.to_list())))
        nan_at = diverged_epoch(rd)
        if nan_at is not None:
            row["diverged at epoch"] = str(nan_at)
        rows.append(row)
    table = pl.DataFrame(rows)
    # A healthy run's cell says "no" (it showed a literal "None").
    flags = [c for c in ("loss exploded at epochs", "diverged at epoch") if c in table.columns]
    return table.with_columns(pl.col(c).fill_null("no") for c in flags)


def diverged_epoch(run: Path) -> int | None:
    """The first recorded epoch after the run's last diagram whose losses are not all finite
    (the run diverged: NaN or inf losses, so no diagram could be computed), or ``None``."""
    r = as_run(run)
    for s in SPLITS:
        have = set(r.diagram_epochs(s))
        last = max(have, default=-1)
        for ep in r.loss_epochs(s):
            if ep <= last or ep in have:
                continue
            try:
                losses = read_loss_table(r, split=s, epoch=ep, columns=["loss"])["loss"]
            except SampletopoError:
                continue  # a damaged table is reported where the losses are read
            if not np.isfinite(losses.cast(pl.Float64).to_numpy()).all():
                return ep
    return None


# --- 1. the work: summaries read, figures drawn ------------------------------------------------


@dataclass(frozen=True)
class ExperimentResults:
    """What the report shows of one experiment, computed and drawn; no HTML.

    Attributes
    ----------
    name : str
        The experiment folder's name.
    runs : tuple of Path
        Its run folders, in the order of :func:`sampletopo.analysis.check_comparable`.
    config : str or None
        Text of the experiment's ``config.toml`` (``None`` when absent).
    run_configs : tuple of (str, str)
        ``(run name, text of its config.toml)`` for each run that has one.
    graph : dict or None
        kNN graph settings per data split from the first run's ``topology/meta.json``;
        ``None`` when that file is damaged.
    summary : polars.DataFrame
        :func:`run_table` of the runs.
    topology, landscape : tuple of Path
        PNGs of the sample-space and parameter-space figures (the landscape ones may be empty).
    landscape_table : polars.DataFrame or None
        One row of scalar metrics per stored landscape.
    folders : dict of str to tuple of Path
        PNGs of every other figure folder, by folder name; ``samples`` also holds what
        ``sampletopo samples --figures`` wrote into the runs.
    regions : polars.DataFrame or None
        The runs' regions tables, in the columns worth a row on the page.
    comparison : polars.DataFrame or None
        With replicates (some variant trained under several seeds): the variants compared on
        validation split-tree total persistence at the final epoch every run has
        (:func:`sampletopo.replicates.compare`), with the verdict; else ``None``.
    comparison_note : str
        Why the compared epoch is not every run's final one (runs that stopped early), or "".
    sensitivity : tuple of Path
        The graph-sensitivity figures (:func:`_sensitivity_figures`), one per metric.
    sensitivity_note : str
        Why they are left out when the runs hold several graph settings but not the same, or "".
    """

    name: str
    runs: tuple[Path, ...]
    config: str | None
    run_configs: tuple[tuple[str, str], ...]
    graph: dict[str, Any] | None
    summary: pl.DataFrame
    topology: tuple[Path, ...]
    landscape: tuple[Path, ...]
    landscape_table: pl.DataFrame | None
    folders: dict[str, tuple[Path, ...]]
    regions: pl.DataFrame | None
    comparison: pl.DataFrame | None = None
    comparison_note: str = ""
    sensitivity: tuple[Path, ...] = ()
    sensitivity_note: str = ""


# Columns of a regions table (sampletopo.samples.REGION_SCHEMA) worth a row in the report; the
# member lists stay in the Parquet file.
_REGION_COLUMNS = (
    "run",
    "split",
    "epoch",
    "tree",
    "rank",
    "essential",
    "persistence",
    "size",
    "mean_loss",
    "accuracy",
    "dominant_class",
    "dominant_share",
    "classes",
)


_REGIONS_FIX = "Write it again with `sampletopo samples`."


def _run_samples(runs: Sequence[Path]) -> tuple[list[Path], pl.DataFrame | None]:
    """PNGs and regions tables that ``sampletopo samples`` wrote into each run's ``samples/``."""
    pngs: list[Path] = []
    tables = []
    for rd in runs:
        run = Run(rd)
        if not run.samples_dir.is_dir():
            continue
        pngs += sorted(run.samples_dir.glob("*.png"))
        for f in run.regions_files():
            try:
                # Checked (footer and checksum) before its schema is read: no wrong numbers shown.
                why = parquet_problem(f, {})
                if why is not None:
                    raise DamagedFileError(f, why, _REGIONS_FIX)
                cols = [c for c in _REGION_COLUMNS if c in pl.read_parquet_schema(f)]
                tables.append(read_parquet(f, {}, columns=cols, fix=_REGIONS_FIX))
            except Exception as exc:  # one unreadable table must not sink the report
                warnings.warn(
                    f"Regions table {f} left out of the report: {exc}", ReportWarning, stacklevel=2
                )
    table = pl.concat(tables, how="diagonal_relaxed") if tables else None
    return pngs, table


def _shared_levels(files: Sequence[Path]) -> dict[tuple[str, int], Any]:
    """Contour levels shared by the experiment's 2-D landscapes of one kind and grid size (the
    ones a reader compares), by (direction kind, steps)."""
    from sampletopo.landscape import read_landscape
    from sampletopo.plotting._landscape import shared_levels

    groups: dict[tuple[str, int], list[Any]] = {}
    for f in files:
        try:
            land, _ = read_landscape(f)
        except Exception:  # reported when its figures are drawn
            continue
        if land.dim == 2:
            groups.setdefault((land.directions.kind, land.loss.shape[0]), []).append(land)
    return {key: shared_levels(lands) for key, lands in groups.items()}


def _landscape_section(
    exp: Path, fig_dir: Path, label: str | None = None
) -> tuple[list[Path], pl.DataFrame | None]:
    """Figures and metrics of the experiment's landscapes; 2-D grids of one kind and size on
    shared contour levels; ``label`` names the loss (default: cross-entropy, nats)."""
    files = Experiment(exp).landscape_files()
    if not files:
        return [], None
    from sampletopo.landscape import read_landscape
    from sampletopo.plotting._landscape import save_landscape_figures
    from sampletopo.plotting._topology import CROSS_ENTROPY

    label = label or CROSS_ENTROPY

    levels = _shared_levels(files)
    pngs: list[Path] = []
    rows = []
    for f in files:
        try:
            land, _ = read_landscape(f)
            key = (land.directions.kind, land.loss.shape[0])
            made = save_landscape_figures(
                f, out_dir=fig_dir, levels=levels.get(key) if land.dim == 2 else None,
                loss_label=label,
            )  # fmt: skip
            pngs += [Path(p) for p in made if str(p).endswith(".png")]
            _, extra = read_landscape(f)
        except Exception as exc:  # a broken landscape must not sink the whole report
            warnings.warn(
                f"Landscape {f.name} left out of the report: {exc}", ReportWarning, stacklevel=2
            )
            continue
        row: dict[str, Any] = {"landscape": f.stem}
        metrics = extra.get("metrics")
        if isinstance(metrics, dict):
            row.update({k: v for k, v in metrics.items() if np.isscalar(v)})
        rows.append(row)
    return pngs, (pl.DataFrame(rows) if rows else None)


def _comparison(runs: Sequence[Path], exp: Path, fig_dir: Path) -> Path | None:
    """The random-direction plot beside the heatmaps, when the runs have 2-D random landscapes."""
    from sampletopo.figures import comparison_figure
    from sampletopo.landscape import read_landscape
    from sampletopo.plotting._topology import save

    found: dict[str, Path] = {}
    for f in Experiment(exp).landscape_files():
        try:
            land, extra = read_landscape(f)
        except Exception:  # reported by the landscape section
            continue
        if (
            land.dim == 2
            and land.directions.kind == "random"
            and extra.get("run") in {r.name for r in runs}
        ):
            found.setdefault(str(extra["run"]), f)
    if not found:
        return None
    try:
        fig = comparison_figure(runs, found)
    except SampletopoError as exc:
        warnings.warn(f"Comparison figure left out: {exc}", ReportWarning, stacklevel=2)
        return None
    return save(fig, fig_dir / "comparison-random-directions-vs-heatmaps")[0]


def _config_text(path: Path) -> str | None:
    # errors="replace": a config that is not text is shown garbled rather than sinking the page.
    return path.read_text(errors="replace") if path.is_file() else None


def _graph_settings(run: Path) -> dict[str, Any] | None:
    """The kNN graph settings of ``run`` (of its graph setting, for a run of
    :func:`sampletopo.runs.graph_runs`); ``None`` (and a warning) when meta.json is damaged."""
    meta, why = as_run(run).read_meta()
    if why is None:
        return meta
    warnings.warn(
        f"{str(as_run(run).meta_file)!r} is damaged ({why}); the report "
        "leaves the kNN graph settings out. Run `sampletopo topology` on the run again "
        "to rewrite it.",
        ReportWarning,
        stacklevel=3,
    )
    return None


def _other_folders(
    fig_dir: Path, run_pngs: Sequence[Path], runs: Sequence[Path] = ()
) -> dict[str, tuple[Path, ...]]:
    """PNGs of each figure folder besides topology/ and landscape/, by folder name, and the
    region grids of `sampletopo audit` in the runs' audit/ folders."""
    folders = {
        p.name: sorted(p.rglob("*.png"))
        for p in fig_dir.iterdir()
        if p.is_dir() and p.name not in (TOPOLOGY_SECTION, LANDSCAPE_SECTION)
    }
    # The demo draws into <report>/figures/<exp>/samples, the samples command into each
    # run's samples/ folder; both belong to one section.
    seen = {p.name for p in folders.get(SAMPLES_SECTION, [])}
    folders[SAMPLES_SECTION] = folders.get(SAMPLES_SECTION, []) + [
        p for p in run_pngs if p.name not in seen
    ]
    audit = _run_audit_pngs(runs)
    if audit:
        folders[AUDIT_SECTION] = folders.get(AUDIT_SECTION, []) + audit
    return {name: tuple(pngs) for name, pngs in folders.items()}


def _run_audit_pngs(runs: Sequence[Path]) -> list[Path]:
    """The region grids ``sampletopo audit`` wrote into each run's ``audit/`` folder."""
    return [p for rd in runs if (d := Run(rd).audit_dir).is_dir() for p in sorted(d.glob("*.png"))]


def collect_experiment(
    experiment: str | Path,
    fig_dir: str | Path,
    *,
    epochs: Sequence[int] | None = None,
    progress: bool = True,
    figure_options: Mapping[str, Any] | None = None,
    graph: Mapping[str, Any] | None = None,
    metrics: Sequence[str] = (),
) -> ExperimentResults:
    """Read the summaries of one experiment and draw its figures into ``fig_dir``.

    Parameters
    ----------
    experiment : path
        An experiment folder (holding run folders whose topology was computed) or a run folder.
    fig_dir : path
        Where the figures go: ``topology/`` and ``landscape/`` are drawn into it; PNGs already
        in its other subfolders are collected as they are.
    epochs : sequence of int, optional
        Heatmap epochs (default: first, around each LR change, last).
    progress : bool
        Show a progress bar while the figures are drawn.
    figure_options : mapping, optional
        ``scale``, ``bins``, ``value_range`` and ``columns`` of
        :func:`sampletopo.figures.write_figure_set` (its defaults where not given).
    graph : mapping, optional
        ``k``, ``features`` and ``pca_components`` of the kNN graph setting whose topology is
        shown (:func:`sampletopo.runs.graph_runs`); default: the one in ``<run>/topology/``.
    metrics : sequence of str
        Named metrics (:data:`sampletopo.replicates.METRICS`) drawn against epoch beside
        total persistence, and compared over replicates beside it.

    Returns
    -------
    ExperimentResults
    """
    from sampletopo.figures import loss_label, write_figure_set

    exp, fig_dir = Path(experiment), Path(fig_dir)
    runs: list[Any] = analysis.check_comparable(exp)
    if graph is not None:
        runs = graph_runs(runs, **graph)
    # One pass over the stored diagrams feeds both the table and the figures.
    summary, wdist = analysis.summary_tables(runs)  # stored where the runs can be written
    table = run_table(runs, summary=summary, wasserstein=wdist)
    graph = _graph_settings(runs[0])
    topology = write_figure_set(
        runs,
        fig_dir / TOPOLOGY_SECTION,
        epochs=epochs,
        progress=progress,
        summary=summary,
        wasserstein=wdist,
        metrics=metrics,
        **dict(figure_options or {}),
    )
    landscape, landscape_table = _landscape_section(
        exp, fig_dir / LANDSCAPE_SECTION, loss_label(runs)
    )
    compare = _comparison(runs, exp, fig_dir / LANDSCAPE_SECTION)
    if compare is not None:
        landscape.insert(0, compare)
    sens, sens_note = _sensitivity_figures(runs, fig_dir / TOPOLOGY_SECTION, metrics)
    run_pngs, regions = _run_samples(runs)
    comparison = _replicate_comparison(runs, metrics)
    return ExperimentResults(
        comparison=comparison,
        comparison_note=_comparison_note(runs, comparison),
        sensitivity=tuple(sens),
        sensitivity_note=sens_note,
        name=Experiment(exp).name,
        runs=tuple(runs),
        config=_config_text(Experiment(exp).config_file),
        run_configs=tuple(
            (rd.name, text)
            for rd in runs
            if (text := _config_text(Run(rd).config_file)) is not None
        ),
        graph=graph,
        summary=table,
        topology=tuple(topology),
        landscape=tuple(landscape),
        landscape_table=landscape_table,
        folders=_other_folders(fig_dir, run_pngs, runs),
        regions=regions,
    )


def _graph_settings_of(run: Path) -> set[tuple[int, str, int]]:
    """``(k, features, pca_components)`` of every graph setting with validation diagrams."""
    out = set()
    for setting in Run(run).topology_settings():
        meta, why = Run(run).with_setting(setting).read_meta()
        val = meta.get("val") if why is None else None
        if isinstance(val, dict) and isinstance(val.get("k"), int) and val.get("features"):
            out.add((int(val["k"]), str(val["features"]), int(val.get("pca_components", 50))))
    return out


def _setting_text(k: int, features: str, pca: int) -> str:
    return f"k={k}, features={features}" + (f" ({pca} PCA components)" if features == "pca" else "")


def _sensitivity_figures(
    runs: Sequence[Path], fig_dir: Path, metrics: Sequence[str] = ()
) -> tuple[list[Path], str]:
    """The report's graph-sensitivity figures: :func:`sampletopo.replicates.sensitivity` of
    validation split-tree total persistence (``sensitivity.png``) and of each of ``metrics``
    (``sensitivity-<metric, ':' as '='>.png``) at the final epoch over every kNN graph setting
    all runs hold (``sampletopo topology RUNS --k 10 20 40 --features raw pca``), when the
    replicate comparison applies (:func:`_replicate_comparison`) and every k x features
    combination is stored. Returns the PNGs and, when some runs hold settings that others
    lack (so fewer or none can be drawn), a one-line note saying so."""
    from sampletopo.plotting._topology import (
        _features_key,
        attach_data,
        plot_sensitivity,
        save,
        sensitivity_caption,
    )
    from sampletopo.replicates import run_group, sensitivity

    groups = [run_group(r)[0] for r in runs]
    if len(set(groups)) < 2 or len(set(groups)) == len(groups):
        return [], ""
    held = {Path(r).name: _graph_settings_of(r) for r in runs}
    common = set.intersection(*held.values())
    union = set.union(*held.values())
    ks = sorted({k for k, _, _ in common})
    feats = sorted({f for _, f, _ in common}, key=_features_key)  # as the figure orders them
    pcas = {p for _, f, p in common if f == "pca"}
    drawable = len(ks) * len(feats) >= 2 and len(pcas) <= 1
    # Not every combination stored: the table would have holes.
    drawable = drawable and {(k, f) for k, f, _ in common} == {(k, f) for k in ks for f in feats}
    note = ""
    if union != common:
        lacking = [name for name, have in held.items() if have != union]
        more = f" and {len(lacking) - 4} more" if len(lacking) > 4 else ""
        note = (
            f"Not every run has every kNN graph setting: {', '.join(lacking[:4])}{more} lack "
            f"some of the {len(union)} stored "
            f"({'; '.join(_setting_text(*t) for t in sorted(union))}), so "
            + (
                f"only the {len(common)} all runs hold are compared."
                if drawable
                else "the figure is left out (it needs a full k x features grid of settings "
                "that every run holds)."
            )
            + " Compute the others with `sampletopo topology` on those runs."
        )
    if not drawable:
        return [], note
    pca = next(iter(pcas), 50)
    out = []
    for metric in dict.fromkeys(["total_persistence", *metrics]):
        try:
            table = sensitivity(
                runs, metric, k=ks, features=feats, pca_components=pca, split="val",
                tree="split", epochs="final",
            )  # fmt: skip
        except SampletopoError as exc:
            warnings.warn(
                f"Graph-sensitivity figure of {metric} left out: {exc}", ReportWarning,
                stacklevel=2,
            )  # fmt: skip
            continue
        fig = plot_sensitivity(table).get_figure(root=True)
        assert fig is not None
        attach_data(fig, table.drop("verdict", strict=False), sensitivity_caption(table))
        stem = "sensitivity"
        if metric != "total_persistence":
            stem += "-" + metric.replace(":", "=")
        out.append(save(fig, fig_dir / stem)[0])
    return out, note


def _comparison_note(runs: Sequence[Path], comparison: pl.DataFrame | None) -> str:
    """When the compared epoch is not every run's final epoch (some runs stopped early, e.g.
    diverged): which epoch and why; else ``""``."""
    if comparison is None or comparison.height == 0:
        return ""
    at = int(comparison["epoch"].max())  # type: ignore[arg-type]
    last = {Path(r).name: (r, max(as_run(r).diagram_epochs("val"), default=-1)) for r in runs}
    longer = [e for _, e in last.values() if e > at]
    if not longer:
        return ""
    why = []
    for name, (r, e) in last.items():
        if e == at:
            d = diverged_epoch(r)
            why.append(f"{name} (diverged at epoch {d})" if d is not None else name)
    ends = sorted(set(longer))  # runs stopping at different later epochs are each named
    to = f"epoch {ends[0]}" if len(ends) == 1 else f"epochs {_epoch_list(ends)}"
    head = f"Compared at epoch {at}, the last epoch every run has validation diagrams for"
    # No run ends there when a run lacks a later epoch that others have (a gap): say only that.
    stop = f": {', '.join(why)} stop there, while" if why else ";"
    return f"{head}{stop} {len(longer)} run(s) go on to {to}."


def _epoch_list(epochs: Sequence[int]) -> str:
    """``2, 3 and 5``."""
    text = [str(e) for e in epochs]
    return text[0] if len(text) == 1 else ", ".join(text[:-1]) + " and " + text[-1]


def _replicate_comparison(runs: Sequence[Path], metrics: Sequence[str] = ()) -> pl.DataFrame | None:
    """:func:`sampletopo.replicates.compare` of the runs on validation split-tree total
    persistence and each of ``metrics`` at the final epoch (one block of rows per metric),
    when there are replicates, two variants or more and validation diagrams in every run; else
    ``None``."""
    from sampletopo.replicates import compare, run_group

    groups = [run_group(r)[0] for r in runs]
    if len(set(groups)) < 2 or len(set(groups)) == len(groups):
        return None
    if not all(as_run(r).diagram_epochs("val") for r in runs):
        return None
    names = list(dict.fromkeys(["total_persistence", *metrics]))
    tables = [compare(runs, m, split="val", tree="split", epochs="final") for m in names]
    return pl.concat(tables).select(
        "metric", "epoch", "group_a", "group_b", "n_a", "n_b", "mean_a", "mean_b", "difference",
        "ci_low", "ci_high", "p_value", "verdict",
    )  # fmt: skip


# --- 2. the context: plain values for the template ---------------------------------------------


def _table(df: pl.DataFrame) -> dict[str, Any]:
    """Column names and rows of cell values (numbers stay numbers; the template formats them)."""
    return {"columns": list(df.columns), "rows": [list(row) for row in df.iter_rows()]}


def _is_wide(png: Path) -> bool:
    # PNG header: width and height are big-endian uint32 at bytes 16-24. Wide figure sets
    # (heatmap rows) get a full row of the page so their panels stay readable.
    with png.open("rb") as fh:
        head = fh.read(24)
    w, h = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    return bool(h) and w / h > 2.2


def _figure(png: Path, page_dir: Path) -> dict[str, Any]:
    try:
        path = Path(os.path.relpath(png, page_dir)).as_posix()
    except ValueError:  # another drive (Windows): no relative path exists
        path = Path(png).resolve().as_posix()
    return {"path": path, "caption": figure_caption(png), "wide": _is_wide(png)}


_TREE_WORDS = {"join": "join tree", "split": "split tree"}
_SPLIT_WORDS = {"train": "Training set", "val": "Validation set"}


def figure_caption(png: Path) -> str:
    """The caption of a figure for people: the one stored beside it by the code that drew it
    (:func:`sampletopo.plotting._topology.read_caption`), else one made from its file name
    ("Validation set, split tree: persistence-diagram heatmaps" for ``heatmap-val-split``),
    else the file name."""
    from sampletopo.plotting._topology import read_caption

    stored = read_caption(png)
    if stored:
        return stored
    stem = png.name.rsplit(".", 1)[0]
    parts = stem.split("-")
    if len(parts) == 3 and parts[0] == "heatmap" and parts[1] in _SPLIT_WORDS:
        tree = _TREE_WORDS.get(parts[2], parts[2])
        return f"{_SPLIT_WORDS[parts[1]]}, {tree}: persistence-diagram heatmaps"
    named = {
        "total_persistence": "Total persistence of the per-sample loss against epoch",
        "wasserstein": "Wasserstein distance of each epoch's diagram to the reference epoch's",
    }
    return named.get(stem, stem)


def _graph_note(graph: Mapping[str, Any] | None) -> str:
    """``val: k=10, features=pca (20 PCA components)`` per split of ``meta.json``'s entries:
    the PCA size is part of the setting (``report --pca-components``)."""
    if graph is None:
        return "settings unknown"
    return "; ".join(
        f"{s}: " + _setting_text(v.get("k"), str(v.get("features")), v.get("pca_components", 50))
        for s, v in graph.items()
    )


def _experiment_context(res: ExperimentResults, page_dir: Path) -> dict[str, Any]:
    def figures(pngs: Iterable[Path]) -> list[dict[str, Any]]:
        return [_figure(p, page_dir) for p in pngs]

    sections = []
    for name in sorted(res.folders):
        regions = res.regions if name == SAMPLES_SECTION else None
        if res.folders[name] or regions is not None:
            sections.append(
                {
                    "title": _FOLDER_TITLES.get(name, name),
                    "regions": None if regions is None else _table(regions),
                    "figures": figures(res.folders[name]),
                }
            )
    landscape = None
    if res.landscape:
        table = res.landscape_table
        landscape = {
            "table": None if table is None else _table(table),
            "figures": figures(res.landscape),
        }
    return {
        "name": res.name,
        "config": res.config,
        "run_configs": [{"run": run, "text": text} for run, text in res.run_configs],
        "graph_note": _graph_note(res.graph),
        "summary": _table(res.summary),
        "comparison": None if res.comparison is None else _table(res.comparison),
        "comparison_note": res.comparison_note,
        "topology": figures(res.topology),
        "sensitivity": figures(res.sensitivity),
        "sensitivity_note": res.sensitivity_note,
        "landscape": landscape,
        "sections": sections,
    }


def report_context(
    results: Sequence[ExperimentResults],
    *,
    page_dir: str | Path,
    title: str = "sampletopo report",
    notes: str = "",
    written: _dt.datetime | None = None,
) -> dict[str, Any]:
    """The values the report template shows, as a plain dict (no HTML in it).

    Parameters
    ----------
    results : sequence of ExperimentResults
        One per experiment, in page order (see :func:`collect_experiment`).
    page_dir : path
        The folder of ``index.html``; figure paths are given relative to it.
    title : str
        Title of the page.
    notes : str
        Text shown under the title (e.g. timings).
    written : datetime, optional
        When the page was written (default: now).

    Returns
    -------
    dict
        ``title``, ``written`` (``YYYY-MM-DD HH:MM``), ``notes`` and ``experiments``: per
        experiment its ``name``, ``config`` text (or ``None``), ``run_configs`` (``run``,
        ``text``), ``graph_note``, ``summary`` table, ``comparison`` table (or ``None``) and its
        ``comparison_note``, ``topology`` figures, ``sensitivity`` figures and their
        ``sensitivity_note``, ``landscape``
        (``table``, ``figures``; ``None`` without landscape figures) and ``sections`` (``title``,
        ``regions`` table or ``None``, ``figures``). A table is ``{"columns": [...], "rows":
        [[...], ...]}`` holding the values of its data frame; a figure is ``{"path", "caption",
        "wide"}``, its caption from :func:`figure_caption`.
    """
    page_dir = Path(page_dir)
    when = written or _dt.datetime.now()
    return {
        "title": title,
        "written": when.strftime("%Y-%m-%d %H:%M"),
        "notes": notes,
        "experiments": [_experiment_context(r, page_dir) for r in results],
    }


# --- 3. the page: the template rendered ---------------------------------------------------------


def _cell(value: Any) -> str:
    """A table cell as text: floats to four significant digits, anything else as ``str``."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _data_uri(page_dir: Path, path: str) -> str:
    data = base64.b64encode((page_dir / path).read_bytes()).decode("ascii")
    return f"data:image/png;base64,{data}"


def _environment(page_dir: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("sampletopo", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["cell"] = _cell
    # Images are embedded, not linked, so the page stays one self-contained file.
    env.filters["data_uri"] = partial(_data_uri, page_dir)
    return env


def render_report(context: Mapping[str, Any], *, page_dir: str | Path) -> str:
    """Render the report template with ``context`` (see :func:`report_context`).

    Every value is HTML-escaped by the template environment; figures are read from
    ``page_dir / figure["path"]`` and embedded as base64 data.

    Raises
    ------
    SampletopoError
        When ``context`` lacks a value the template shows.
    """
    template = _environment(Path(page_dir)).get_template(TEMPLATE)
    try:
        return template.render(context)
    except jinja2.UndefinedError as exc:
        raise invalid(
            "context",
            "a context with every value the report template shows",
            where="render_report",
            got=f"one that lacks a value: {exc.message}",
            fix="Build the context with report_context(...) and change values in it rather "
            "than removing them.",
        ) from exc


def write_report(
    experiments: str | Path | Iterable[str | Path],
    report_dir: str | Path,
    *,
    title: str = "sampletopo report",
    epochs: Sequence[int] | None = None,
    notes: str = "",
    progress: bool = True,
    figure_options: Mapping[str, Any] | None = None,
    graph: Mapping[str, Any] | None = None,
    metrics: Sequence[str] = (),
) -> Path:
    """Draw the figures of each experiment and write ``<report_dir>/index.html``.

    Parameters
    ----------
    experiments : path or paths
        Experiment folders (each holding run folders whose topology was computed), or run
        folders; each group is drawn and tabulated on its own.
    report_dir : path
        Where ``index.html`` and ``figures/`` go.
    title : str
        Title of the page.
    epochs : sequence of int, optional
        Heatmap epochs (default: first, around each LR change, last).
    notes : str
        Text shown under the title (e.g. timings); plain text, escaped like every other value.
    progress : bool
        Show a progress bar while the figures are drawn.
    figure_options : mapping, optional
        ``scale``, ``bins``, ``value_range`` and ``columns`` of the figure sets (see
        :func:`sampletopo.figures.write_figure_set`).
    graph : mapping, optional
        ``k``, ``features`` (and ``pca_components``) of the kNN graph setting shown, for
        experiments whose topology was computed on several (``sampletopo topology --k 10 20``);
        default: the setting in each run's ``topology/`` itself.
    metrics : sequence of str
        Named metrics (``"pairs_above:0.5"``, see :data:`sampletopo.replicates.METRICS`) drawn
        against epoch beside total persistence and, with replicates, compared beside it.

    Returns
    -------
    Path
        ``<report_dir>/index.html``.

    Notes
    -----
    ``report_dir`` is locked while the report is written (see :mod:`sampletopo._folders`): a
    second process writing a report there gets an error naming this one.
    """
    exps = (
        [Path(experiments)]
        if isinstance(experiments, (str, Path))
        else [Path(e) for e in experiments]
    )
    if not exps:
        raise invalid("experiments", "one or more experiment folders", [], where="write_report")
    if metrics:
        from sampletopo.replicates import _metrics

        _metrics(list(metrics))  # a bad name is one error before anything is drawn
    with lock_folder(report_dir, what="writing a report", role="report folder"):
        return _write_report(
            exps, Path(report_dir), title=title, epochs=epochs, notes=notes, progress=progress,
            figure_options=figure_options, graph=graph, metrics=metrics,
        )  # fmt: skip


def _experiment_names(exps: Sequence[Path]) -> list[str]:
    """Each experiment's name on the page and its figure folder: its folder name, or, where
    several share one (``a/study`` and ``b/study``), ``<parent>-<name>`` (``a-study``), with
    ``-2``, ``-3`` ... while still taken. A shared folder had the last experiment's figures
    overwrite the others', which then showed them under their own heading."""
    plain = [Experiment(e).name for e in exps]
    out: list[str] = []
    for e, name in zip(exps, plain, strict=True):
        parent = Path(os.path.abspath(Experiment(e).path)).parent.name
        label = name if plain.count(name) == 1 else f"{parent}-{name}"
        base, i = label, 2
        while label in out or (label != name and label in plain):
            label, i = f"{base}-{i}", i + 1
        out.append(label)
    return out


def _write_report(
    exps: list[Path],
    out: Path,
    *,
    title: str,
    epochs: Sequence[int] | None,
    notes: str,
    progress: bool,
    figure_options: Mapping[str, Any] | None = None,
    graph: Mapping[str, Any] | None = None,
    metrics: Sequence[str] = (),
) -> Path:
    """:func:`write_report` once ``out`` is locked."""
    report = Report(out)
    report.figures_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for e, name in zip(exps, _experiment_names(exps), strict=True):
        fig_dir = report.experiment_dir(name)  # "." and "exp/.." get a name
        res = collect_experiment(
            e,
            fig_dir,
            epochs=epochs,
            progress=progress,
            figure_options=figure_options,
            graph=graph,
            metrics=metrics,
        )  # fmt: skip
        results.append(replace(res, name=name))
    page = render_report(
        report_context(results, page_dir=out, title=title, notes=notes), page_dir=out
    )
    return write_atomic(report.index_file, lambda fh: fh.write(page.encode("utf-8")))
