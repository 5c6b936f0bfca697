"""Write the sample-space figure set of one group of comparable runs.

:func:`write_figure_set` reads the stored diagrams and summaries of some runs (see
:mod:`sampletopo.analysis`) and writes, as PNG and PDF:

- ``total_persistence`` (p = 1): train/val x join/split, runs overlaid, mean loss alongside;
- ``wasserstein``: distance of each epoch's diagram to the final epoch's, same layout;
- ``heatmap-<split>-<tree>``: diagram heatmaps at chosen epochs, one row per run, shared bins
  and colour scale;
- ``diagram-<run>-<split>-<tree>-epoch=E`` and ``barcode-...``: single-epoch diagram and barcode
  at the last chosen epoch.

Problems that leave the rest drawable (a run with missing epochs, an asked epoch absent from a run)
are reported as warnings and the figure set is completed with what exists. Drawing code lives in
:mod:`sampletopo.plotting`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import polars as pl

from sampletopo import analysis
from sampletopo._errors import SampletopoError

__all__ = ["write_figure_set", "run_milestones"]


class FigureWarning(UserWarning):
    """Part of a figure set was left out; the message says what and why."""


def run_milestones(run_dirs: Iterable[Path]) -> list[int]:
    """LR-annealing epochs of the runs (union of their configs' ``milestones``)."""
    from sampletopo.record import read_run_config

    out: set[int] = set()
    for rd in run_dirs:
        try:
            out |= {int(m) for m in read_run_config(rd).get("milestones", []) or []}
        except SampletopoError:
            continue
    return sorted(out)


def write_figure_set(
    run_dirs: str | Path | Iterable[str | Path],
    out_dir: str | Path,
    *,
    epochs: Sequence[int] | None = None,
    formats: Sequence[str] = ("png", "pdf"),
    prefix: str = "",
    title: str = "",
) -> list[Path]:
    """Write every sample-space figure of ``run_dirs`` into ``out_dir``; return the PNG paths.

    Parameters
    ----------
    run_dirs : path or paths
        Runs (or experiment folders) whose topology was computed
        (:func:`sampletopo.analysis.compute_topology`). They must share dataset and splits.
    epochs : sequence of int, optional
        Heatmap epochs. Default: the first, just before and after each LR change, and the last
        (:func:`sampletopo.plotting.default_heatmap_epochs`), restricted to epochs every run has.
    prefix : str
        Put before every file name (e.g. the experiment's name).
    """
    from sampletopo.plotting import _topology as P

    runs = analysis.check_comparable(run_dirs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for rd in runs:
        for s in analysis.SPLITS:
            gap = analysis.missing_epochs(rd, s)
            if gap:
                warnings.warn(
                    f"Run {rd.name} has no {s} losses for epoch(s) {analysis._ranges(gap)}; the "
                    "curves skip them.",
                    FigureWarning,
                    stacklevel=2,
                )
    milestones = run_milestones(runs)
    summary = analysis.summarize(runs)
    wdist = analysis.wasserstein_to_reference(runs)
    diagrams = analysis.load_diagrams(runs)
    assert isinstance(diagrams, pl.DataFrame)
    pngs: list[Path] = []
    name = (prefix + "-") if prefix else ""
    suffix = f" — {title}" if title else ""

    fig = P.total_persistence_figure(
        summary,
        p=1,
        milestones=milestones,
        title="Total persistence (p=1) of the per-sample loss" + suffix,
    )
    pngs.append(P.save(fig, out / f"{name}total_persistence", formats)[0])
    fig = P.wasserstein_figure(
        wdist,
        order=1,
        milestones=milestones,
        title="Wasserstein-1 distance to the final epoch's diagram" + suffix,
    )
    pngs.append(P.save(fig, out / f"{name}wasserstein", formats)[0])

    common: set[int] | None = None
    for rd in runs:
        for s in analysis.SPLITS:
            have = set(analysis.topology_epochs(rd, s))
            common = have if common is None else common & have
    common_sorted = sorted(common or set())
    if epochs is None:
        chosen = P.default_heatmap_epochs(common_sorted, milestones)
    else:
        chosen = [int(e) for e in epochs if int(e) in (common or set())]
        absent = [int(e) for e in epochs if int(e) not in (common or set())]
        if absent:
            warnings.warn(
                f"Epoch(s) {absent} have no diagrams in every run (common epochs: "
                f"{analysis._ranges(common_sorted) or 'none'}); they are left out of the heatmaps.",
                FigureWarning,
                stacklevel=2,
            )
    if not chosen:
        warnings.warn("No epoch common to all runs: heatmaps skipped.", FigureWarning, stacklevel=2)
    else:
        for s in analysis.SPLITS:
            for tree in analysis.TREES:
                fig = P.heatmap_figure(
                    diagrams, split=s, tree=tree, epochs=chosen, runs=[r.name for r in runs]
                )
                pngs.append(P.save(fig, out / f"{name}heatmap-{s}-{tree}", formats)[0])
        last = chosen[-1]
        import matplotlib.pyplot as plt

        for rd in runs:
            fig, axes = plt.subplots(2, 4, figsize=(18, 8))
            for i, s in enumerate(analysis.SPLITS):
                for j, tree in enumerate(analysis.TREES):
                    d = analysis.diagram_at(rd, s, tree, last)
                    P.plot_diagram(d, ax=axes[i, 2 * j], title=f"{s} {tree} diagram, epoch {last}")
                    P.plot_barcode(
                        d, ax=axes[i, 2 * j + 1], title=f"{s} {tree} barcode, epoch {last}"
                    )
            fig.suptitle(f"{rd.name}: persistence diagrams and barcodes at epoch {last}")
            fig.tight_layout()
            pngs.append(P.save(fig, out / f"{name}diagrams-{rd.name}-epoch={last:04d}", formats)[0])
    return pngs
