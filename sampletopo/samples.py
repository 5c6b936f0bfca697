"""Which samples make the shape: persistence pairs traced back to the examples that form them.

Holds :func:`graph_regions` (the regions of the most persistent pairs of a function on any
graph), :func:`top_regions` (the same for a recorded run, split and epoch, with labels,
predictions and class histograms), :func:`track_members` (the members of those regions followed
through every recorded epoch: mean loss per epoch, and the epoch each member is learned for good)
and :func:`write_regions`. Figures are in :mod:`sampletopo.plotting._samples`; nothing here
draws, trains or records.

What a region is. A pair of the split tree (superlevel sets of the loss: peaks, regions the model
finds hard) is born at its maximum and dies at the saddle where it meets an older, higher peak.
Its *region* is every sample connected to the maximum through samples of higher loss than that
saddle, just before it dies (:meth:`sampletopo.mergetree.MergeTree.members`): the whole peak,
younger peaks that merged into it included, the saddle excluded. The join tree (sublevel sets:
basins, regions the model has learned) is the mirror image.

The essential pair. The highest peak of each connected component never dies, so its region would
be the whole component. It is reported (``essential=True``) as if it died where the most
persistent other peak of its component joins it: that saddle is its ``death_sample`` and
``death``, and its region is the mirror of that other peak's region at the same level. With no
other peak in the component, the region is the whole component and the death is the component's
last sample in the sweep (its lowest loss for a split tree). Its persistence is always at least
that of the peak it is cut against, so a hard region that holds the highest loss of all is never
missing from the top of the table. Pass ``essential=False`` to keep finite diagram pairs only.

Members are listed in sweep order: highest loss first for a split tree, lowest first for a join
tree.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl

from sampletopo._errors import FewerPairsWarning, RunFolderError
from sampletopo._runfiles import write_parquet
from sampletopo._validation import (
    check_finite_values,
    check_int,
    check_path,
    check_tree,
    invalid,
    ranges_text,
)
from sampletopo.graph import Graph, check_graph
from sampletopo.mergetree import MergeTree, join_tree, split_tree
from sampletopo.runs import SPLITS, TABLE_SUFFIX, TREES, PathLike, Run, as_run

if TYPE_CHECKING:
    from typing_extensions import TypedDict, Unpack

    from sampletopo.data import Dataset

    class RegionOptions(TypedDict, total=False):
        """How :func:`top_regions` finds the regions; :func:`track_members` and
        :func:`sampletopo.plotting._samples.sample_figures` pass these on to it unchanged, so
        each default is defined once, in :func:`top_regions`'s signature."""

        top: int
        tree: TreeChoice
        k: int
        features: str
        essential: bool
        graph: Graph | None
        dataset: Dataset | None


__all__ = [
    "FewerPairsWarning",
    "MemberTracks",
    "REGION_SCHEMA",
    "graph_regions",
    "learned_epochs",
    "regions_path",
    "top_regions",
    "track_members",
    "write_regions",
]

TreeChoice = Literal["split", "join", "both"]

REGION_SCHEMA: dict[str, Any] = {
    "tree": pl.String,
    "rank": pl.Int32,
    "essential": pl.Boolean,
    "birth": pl.Float64,
    "death": pl.Float64,
    "persistence": pl.Float64,
    "birth_sample": pl.Int64,
    "death_sample": pl.Int64,
    "size": pl.Int64,
    "mean_loss": pl.Float64,
    "accuracy": pl.Float64,
    "dominant_label": pl.Int64,
    "dominant_class": pl.String,
    "dominant_share": pl.Float64,
    "dominant_pred": pl.Int64,
    "dominant_pred_class": pl.String,
    "dominant_pred_share": pl.Float64,
    "classes": pl.String,
    "class_counts": pl.List(pl.Struct({"label": pl.Int64, "count": pl.Int64})),
    "members": pl.List(pl.Int64),
    "member_labels": pl.List(pl.Int64),
    "member_preds": pl.List(pl.Int64),
    "member_losses": pl.List(pl.Float64),
}
"""Columns of :func:`graph_regions`; :func:`top_regions` puts ``run``, ``split``, ``epoch`` first."""


# ---------------------------------------------------------------------------------------------
# Regions on any graph


def _check_tree_choice(tree: Any, where: str) -> tuple[str, ...]:
    tree = check_tree(tree, where=where, both=True)
    # "both": split rows first, as the tables list them.
    return tuple(reversed(TREES)) if tree == "both" else (tree,)


def _component_of(graph: Graph, rank: np.ndarray, start: int, limit: int) -> np.ndarray:
    """Vertices connected to ``start`` through vertices of sweep rank ``< limit``, sorted."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    keep = rank < limit
    e = graph.edges
    sub = e[keep[e[:, 0]] & keep[e[:, 1]]]
    adj = coo_matrix(
        (np.ones(sub.shape[0], dtype=np.int8), (sub[:, 0], sub[:, 1])), shape=(graph.n, graph.n)
    )
    _, lab = connected_components(adj, directed=False)
    return np.flatnonzero((lab == lab[start]) & keep)


def _candidates(
    t: MergeTree, graph: Graph, *, essential: bool
) -> list[tuple[float, float, int, int, bool, np.ndarray | None]]:
    """(birth, death, birth_sample, death_sample, essential, members or None) per pair."""
    d = t.diagram()
    fin = d.finite()
    out: list[tuple[float, float, int, int, bool, np.ndarray | None]] = [
        (float(b), float(x), int(bs), int(ds), False, None)
        for b, x, bs, ds in zip(fin.birth, fin.death, fin.birth_sample, fin.death_sample)
    ]
    if not essential:
        return out
    _, comp = graph.component_labels()
    pers = fin.persistence
    for b in d.birth_sample[d.essential]:
        b = int(b)
        same = np.flatnonzero(comp[fin.birth_sample] == comp[b])
        if same.size:
            # The most persistent other peak of the component (ties: lower birth sample, as in
            # Diagram.top); by the elder rule it dies by merging into this component's oldest one.
            j = same[np.lexsort((fin.birth_sample[same], -pers[same]))[0]]
            s = int(fin.death_sample[j])
            members = _component_of(graph, t.rank, b, int(t.rank[s]))
        else:
            members = np.flatnonzero(comp == comp[b])
            s = int(members[np.argmax(t.rank[members])])
        if t.values[s] == t.values[b]:
            continue  # a flat component: zero persistence, left out as in diagrams
        out.append((float(t.values[b]), float(t.values[s]), b, s, True, members))
    return out


def _histogram(
    labels: np.ndarray, names: Sequence[str] | None
) -> tuple[list[dict[str, int]], str, int | None, str | None, float | None]:
    if labels.size == 0:
        return [], "", None, None, None
    vals, counts = np.unique(labels, return_counts=True)
    order = np.lexsort((vals, -counts))
    vals, counts = vals[order], counts[order]

    def name(v: int) -> str:
        return names[v] if names is not None and 0 <= v < len(names) else str(v)

    text = ", ".join(f"{name(int(v))}:{int(c)}" for v, c in zip(vals, counts))
    top = int(vals[0])
    return (
        [{"label": int(v), "count": int(c)} for v, c in zip(vals, counts)],
        text,
        top,
        name(top),
        float(counts[0] / labels.size),
    )


def graph_regions(
    graph: Graph,
    values: Any,
    *,
    tree: TreeChoice = "split",
    top: int = 10,
    labels: Any = None,
    preds: Any = None,
    class_names: Sequence[str] | None = None,
    essential: bool = True,
) -> pl.DataFrame:
    """The regions of the ``top`` most persistent pairs of ``values`` on ``graph``.

    Parameters
    ----------
    graph : Graph
        Any sampletopo graph (a kNN graph of samples, a grid).
    values : array-like (graph.n,)
        One finite value per vertex, e.g. each sample's loss.
    tree : {"split", "join", "both"}
        Peaks of the split tree (high values), basins of the join tree (low values), or both
        (split rows first); ``rank`` counts from 1 within each tree.
    top : int >= 1
        Regions per tree, most persistent first (ties: lower birth sample). When a tree has
        fewer pairs, all are returned and a :class:`FewerPairsWarning` says so.
    labels, preds : array-like of int (graph.n,), optional
        Each vertex's label and predicted class; without them the label columns are null.
    class_names : sequence of str, optional
        Names of the classes, indexed by label, used in ``classes`` and ``dominant_*``.
    essential : bool
        Also report each component's essential pair, cut where its most persistent other pair
        joins it (see the module docstring).

    Returns
    -------
    polars.DataFrame
        One row per region with the columns of :data:`REGION_SCHEMA`: the pair (``birth``,
        ``death``, ``persistence``, ``birth_sample``, ``death_sample``, ``essential``), the
        region's ``size``, ``mean_loss`` (mean of ``values``), ``accuracy`` (share of members
        with ``pred == label``), the class histogram (``classes`` as ``"3:12, 8:4"`` and
        ``class_counts``), the most common label and prediction with their shares, and the
        members with their labels, predictions and values (list columns, in sweep order).

    Examples
    --------
    A path with two peaks; the lower one (sample 4) dies at the saddle sample 3:

    >>> from sampletopo.graph import graph_from_edges
    >>> g = graph_from_edges(6, [[0, 1], [1, 2], [2, 3], [3, 4], [4, 5]])
    >>> t = graph_regions(g, [9.0, 8.0, 5.0, 1.0, 4.0, 3.0], top=1, essential=False)
    >>> t.select("birth_sample", "death_sample", "members").rows()
    [(4, 3, [4, 5])]
    """
    where = "graph_regions"
    trees = _check_tree_choice(tree, where)
    top = check_int("top", top, 1, None, where=where)
    check_graph(graph, where=where)
    vals = check_finite_values(values, graph.n, where=where)
    lab = None if labels is None else _int_per_vertex(labels, graph.n, "labels", where)
    prd = None if preds is None else _int_per_vertex(preds, graph.n, "preds", where)

    rows: list[dict[str, Any]] = []
    for kind in trees:
        t = split_tree(graph, vals) if kind == "split" else join_tree(graph, vals)
        cands = _candidates(t, graph, essential=bool(essential))
        pers = np.array([abs(c[0] - c[1]) for c in cands])
        bsam = np.array([c[2] for c in cands], dtype=np.int64)
        order = np.lexsort((bsam, -pers)) if cands else np.empty(0, dtype=np.int64)
        if top > len(cands):
            warnings.warn(
                FewerPairsWarning(
                    f"{where}: asked for top={top} regions but the {kind} tree has only "
                    f"{len(cands)} pair(s) with nonzero persistence; returning all {len(cands)}."
                ),
                stacklevel=2,
            )
        for r, i in enumerate(order[:top], start=1):
            birth, death, bs, ds, ess, members = cands[int(i)]
            if members is None:
                members = t.members(bs)
            members = members[np.argsort(t.rank[members], kind="stable")].astype(np.int64)
            rows.append(
                _row(kind, r, birth, death, bs, ds, ess, members, vals, lab, prd, class_names)
            )
    return pl.DataFrame(rows, schema=REGION_SCHEMA, orient="row") if rows else _empty()


def _empty() -> pl.DataFrame:
    return pl.DataFrame(schema=REGION_SCHEMA)


def _int_per_vertex(x: Any, n: int, name: str, where: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.shape != (n,) or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise invalid(name, f"an array of one int per vertex, shape ({n},)", arr, where=where)
    return arr.astype(np.int64)


def _row(
    kind: str,
    rank: int,
    birth: float,
    death: float,
    bs: int,
    ds: int,
    ess: bool,
    members: np.ndarray,
    vals: np.ndarray,
    lab: np.ndarray | None,
    prd: np.ndarray | None,
    names: Sequence[str] | None,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "tree": kind,
        "rank": rank,
        "essential": ess,
        "birth": birth,
        "death": death,
        "persistence": abs(birth - death),
        "birth_sample": bs,
        "death_sample": ds,
        "size": int(members.size),
        "mean_loss": float(vals[members].mean()),
        "accuracy": None,
        "dominant_label": None,
        "dominant_class": None,
        "dominant_share": None,
        "dominant_pred": None,
        "dominant_pred_class": None,
        "dominant_pred_share": None,
        "classes": None,
        "class_counts": None,
        "members": members.tolist(),
        "member_labels": None,
        "member_preds": None,
        "member_losses": vals[members].tolist(),
    }
    if lab is not None:
        counts, text, top, top_name, share = _histogram(lab[members], names)
        row.update(classes=text, class_counts=counts, member_labels=lab[members].tolist())
        row.update(dominant_label=top, dominant_class=top_name, dominant_share=share)
    if prd is not None:
        _, _, ptop, ptop_name, pshare = _histogram(prd[members], names)
        row.update(member_preds=prd[members].tolist())
        row.update(dominant_pred=ptop, dominant_pred_class=ptop_name, dominant_pred_share=pshare)
    if lab is not None and prd is not None:
        row["accuracy"] = float((lab[members] == prd[members]).mean())
    return row


# ---------------------------------------------------------------------------------------------
# Runs


def _recorded(run: Run) -> dict[str, list[int]]:
    return {s: eps for s in SPLITS if (eps := run.loss_epochs(s))}


def _check_run(run_dir: Any, split: Any, epoch: Any, where: str) -> tuple[Run, int]:
    run = as_run(run_dir)
    rec = _recorded(run)
    if not rec:
        raise RunFolderError(
            f"{where}: {str(run.path)!r} holds no recorded losses (no "
            "losses/<split>/epoch=NNNN.parquet). Pass a run (variant) folder written by "
            "`sampletopo train` or the LossRecorder."
        )
    if split not in rec:
        raise invalid(
            "split", f"a split recorded in {str(run.path)!r}: {sorted(rec)}", split, where=where
        )
    recorded = (
        f"a recorded epoch of split {split!r} in {str(run.path)!r}: {ranges_text(rec[split])}"
    )
    check_int("epoch", epoch, 0, None, where=where, fix=f"It must be {recorded}.")
    if int(epoch) not in rec[split]:
        raise invalid(
            "epoch",
            recorded,
            epoch,
            where=where,
            fix="Pick one of those, or record that epoch first.",
        )
    return run, int(epoch)


def _epoch_table(run: Run, split: str, epoch: int) -> pl.DataFrame:
    from sampletopo.readers import read_loss_table

    return read_loss_table(
        run, split=split, epoch=epoch, columns=["label", "pred", "loss", "correct"]
    )


def _run_dataset(run: Run) -> Dataset | None:
    """The run's dataset from its config.toml (cached, see :meth:`sampletopo.runs.Run.dataset`),
    or None when the run has no config."""
    return run.dataset() if run.has_config() else None


def top_regions(
    run_dir: PathLike,
    *,
    split: str = "val",
    epoch: int,
    top: int = 10,
    tree: TreeChoice = "split",
    k: int = 20,
    features: str = "raw",
    essential: bool = True,
    graph: Graph | None = None,
    dataset: Dataset | None = None,
    pca_components: int = 50,
) -> pl.DataFrame:
    """The ``top`` most persistent peaks (and/or basins) of a run's loss at one split and epoch.

    Parameters
    ----------
    run_dir : str or Path
        A run (variant) folder with ``losses/<split>/epoch=NNNN.parquet``.
    split : {"train", "val"}
        A recorded split.
    epoch : int
        A recorded epoch of that split.
    top : int >= 1
        Regions per tree. More than there are pairs: all are returned, with a
        :class:`FewerPairsWarning`.
    tree : {"split", "join", "both"}
        Peaks (hard regions), basins (learned regions), or both.
    k, features, pca_components
        The split's kNN graph: ``sampletopo.analysis.graph_for_run(run_dir, split=split,
        k=k, features=features, pca_components=pca_components)``, cached in
        ``<experiment>/graphs/`` (the graph ``sampletopo topology`` with the same settings
        computed the diagrams on).
    essential : bool
        Report each component's essential pair too (see the module docstring).
    graph : Graph, optional
        Use this graph instead of the run's (one vertex per sample of the split).
    dataset : Dataset, optional
        For class names; default the run's dataset from its ``config.toml`` (labels are then
        shown by number when the run has none).

    Returns
    -------
    polars.DataFrame
        ``run``, ``split``, ``epoch``, then the columns of :func:`graph_regions`.

    Examples
    --------
    >>> top_regions("runs/demo/lr=0.1", split="val", epoch=10, top=5)  # doctest: +SKIP
    """
    where = "top_regions"
    _check_tree_choice(tree, where)
    top = check_int("top", top, 1, None, where=where)
    rd, epoch = _check_run(run_dir, split, epoch, where)
    df = _epoch_table(rd, split, epoch)
    loss = df["loss"].to_numpy()
    bad = ~np.isfinite(loss)
    if bad.any():
        raise invalid(
            "epoch",
            "an epoch whose losses are all finite",
            epoch,
            where=where,
            fix=f"{int(bad.sum())} loss(es) of split {split!r} at epoch {epoch} are not finite "
            f"(first at sample {int(np.flatnonzero(bad)[0])}); the run probably diverged there. "
            "Pick an earlier epoch.",
        )
    if graph is None:
        from sampletopo.analysis import graph_for_run

        graph = graph_for_run(
            rd, split=split, k=k, features=features, pca_components=pca_components
        )
    if check_graph(graph, where=where).n != df.height:
        raise invalid(
            "graph",
            f"a graph of split {split!r}, one vertex per sample ({df.height})",
            where=where,
            got=f"a graph that has {graph.n} vertices",
            fix="Pass the graph of this split (one vertex per sample, in sample order).",
        )
    ds = dataset if dataset is not None else _run_dataset(rd)
    names = list(ds.class_names) if ds is not None else None
    table = graph_regions(
        graph,
        loss,
        tree=tree,
        top=top,
        # Regression targets have no labels or predictions: their columns are null.
        labels=None if df["label"].null_count() else df["label"].to_numpy(),
        preds=None if df["pred"].null_count() else df["pred"].to_numpy(),
        class_names=names,
        essential=essential,
    )
    return table.select(
        pl.lit(rd.name, dtype=pl.String).alias("run"),
        pl.lit(split, dtype=pl.String).alias("split"),
        pl.lit(epoch, dtype=pl.Int32).alias("epoch"),
        pl.all(),
    )


def regions_path(run_dir: PathLike, split: str, epoch: int) -> Path:
    """Default Parquet file of :func:`top_regions`: ``<run>/samples/<split>-epoch=NNNN.parquet``."""
    return as_run(run_dir).regions_file(split, epoch)


def write_regions(table: pl.DataFrame, path: str | Path) -> Path:
    """Write a regions table to Parquet atomically (temporary file, then rename), with page
    checksums (:func:`sampletopo._runfiles.write_parquet`)."""
    path = check_path("path", path, where="write_regions", suffix=TABLE_SUFFIX)
    return write_parquet(table, path)


# ---------------------------------------------------------------------------------------------
# Over training


def learned_epochs(epochs: Any, correct: Any) -> np.ndarray:
    """The epoch from which each sample is classified correctly at every later recorded epoch.

    Parameters
    ----------
    epochs : array-like of int (E,)
        Recorded epochs, increasing.
    correct : array-like of bool (E, n)
        ``correct[i, j]``: sample ``j`` is classified correctly at ``epochs[i]``.

    Returns
    -------
    numpy.ndarray of float64 (n,)
        The first epoch of the final all-correct stretch, NaN when the sample is wrong at the
        last epoch (never learned for good).

    Examples
    --------
    >>> learned_epochs([0, 1, 2, 3], [[0, 1, 0], [1, 0, 0], [0, 1, 1], [1, 1, 0]]).tolist()
    [3.0, 2.0, nan]
    """
    ep = np.asarray(epochs, dtype=np.int64)
    c = np.asarray(correct, dtype=bool)
    if c.ndim != 2 or c.shape[0] != ep.shape[0] or ep.shape[0] == 0:
        raise invalid(
            "correct",
            f"an array of shape (len(epochs), n) = ({ep.shape[0]}, n) with at least one epoch",
            where="learned_epochs",
            got=f"shape {c.shape}",
        )
    if np.any(np.diff(ep) <= 0):
        raise invalid("epochs", "strictly increasing", ep.tolist(), where="learned_epochs")
    # stays[i, j]: correct at every recorded epoch from i on.
    stays = np.logical_and.accumulate(c[::-1], axis=0)[::-1]
    first = np.argmax(stays, axis=0)
    return np.where(stays[-1], ep[first].astype(np.float64), np.nan)


@dataclass(frozen=True, eq=False)
class MemberTracks:
    """The members of one epoch's top regions, followed through every recorded epoch.

    Attributes
    ----------
    run, split : str
    epoch : int
        The epoch whose regions are followed.
    regions : polars.DataFrame
        The regions, as :func:`top_regions` returns them.
    curves : polars.DataFrame
        One row per region and recorded epoch: ``tree``, ``rank``, ``epoch``, ``size``,
        ``mean_loss``, ``accuracy`` of the region's members at that epoch.
    members : polars.DataFrame
        One row per region and member: ``tree``, ``rank``, ``sample``, ``label``, ``loss`` and
        ``correct`` at the chosen epoch, and ``learned_epoch`` (the first epoch from which the
        member is classified correctly at every later recorded epoch; null if it is wrong at
        the last one). A sample in nested regions appears once per region.
    overall : polars.DataFrame
        ``epoch``, ``mean_loss``, ``accuracy`` of the whole split, for reference.
    """

    run: str
    split: str
    epoch: int
    regions: pl.DataFrame
    curves: pl.DataFrame
    members: pl.DataFrame
    overall: pl.DataFrame

    def __repr__(self) -> str:
        return (
            f"MemberTracks(run={self.run!r}, split={self.split!r}, epoch={self.epoch}, "
            f"regions={self.regions.height}, epochs={self.overall.height})"
        )


def _loss_and_correct(run_dir: Run, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Recorded epochs, and the losses and ``correct`` flags as (epochs x samples) arrays;
    ``correct`` is ``None`` for regression targets (null in the tables)."""
    from sampletopo.readers import read_losses

    df = read_losses(run_dir, split=split)
    epochs = df["epoch"].unique().sort().to_numpy().astype(np.int64)
    n = df.filter(pl.col("epoch") == epochs[0]).height
    if df.height != epochs.size * n:
        raise RunFolderError(
            f"The loss tables of split {split!r} in {str(run_dir)!r} do not all hold {n} "
            "samples: the run folder is damaged or mixes data."
        )
    df = df.sort(["epoch", "sample"])
    loss = df["loss"].to_numpy().reshape(epochs.size, n)
    if df["correct"].null_count():
        return epochs, loss, None
    correct = df["correct"].to_numpy().reshape(epochs.size, n)
    return epochs, loss, correct


def _member_arrays(
    rd: Run, split: str, epoch: int, epochs: np.ndarray, n: int, correct: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each sample's learned epoch, label at ``epoch``, and correct flags per epoch; for
    regression (``correct`` is None) NaN and nulls: nothing is classified, learned or correct."""
    if correct is None:
        return (
            np.full(n, np.nan),
            np.full(n, None, dtype=object),
            np.full((epochs.size, n), None, dtype=object),
        )
    labels = _epoch_table(rd, split, epoch)["label"].to_numpy()
    return learned_epochs(epochs, correct), labels, correct


def track_members(
    run_dir: PathLike,
    *,
    split: str = "val",
    epoch: int,
    regions: pl.DataFrame | None = None,
    **options: Unpack[RegionOptions],
) -> MemberTracks:
    """Follow the members of the top regions at ``epoch`` through every recorded epoch.

    Parameters
    ----------
    run_dir, split, epoch
        As for :func:`top_regions`.
    regions : polars.DataFrame, optional
        A table :func:`top_regions` returned for this run, split and epoch, reused instead of
        computing it again.
    **options
        ``top``, ``tree``, ``k``, ``features``, ``pca_components``, ``essential``, ``graph``,
        ``dataset``: passed to
        :func:`top_regions` (with its defaults) when ``regions`` is None.

    Returns
    -------
    MemberTracks
        Per region and epoch the members' mean loss and accuracy; per member the epoch it is
        learned for good.

    Examples
    --------
    >>> tr = track_members("runs/demo/lr=0.1", split="val", epoch=10, top=3)  # doctest: +SKIP
    >>> tr.curves.filter(rank=1)                                            # doctest: +SKIP
    """
    where = "track_members"
    rd, epoch = _check_run(run_dir, split, epoch, where)
    if regions is None:
        regions = top_regions(rd, split=split, epoch=epoch, **options)
    elif (
        "members" not in regions.columns
        or ("epoch" in regions.columns and set(regions["epoch"].to_list()) - {epoch})
        or ("split" in regions.columns and set(regions["split"].to_list()) - {split})
        or ("run" in regions.columns and set(regions["run"].to_list()) - {rd.name})
    ):
        raise invalid(
            "regions",
            f"a table from top_regions of run {rd.name!r}, split {split!r}, epoch {epoch} (with "
            "a 'members' column)",
            where=where,
            got="a table of another run, split or epoch, or without members",
            fix="Sample indices of another split or run would point at other samples. Leave "
            "regions=None to compute it.",
        )
    epochs, loss, correct = _loss_and_correct(rd, split)
    at = int(np.flatnonzero(epochs == epoch)[0])
    learned, labels, hits = _member_arrays(rd, split, epoch, epochs, loss.shape[1], correct)

    def share(m: np.ndarray) -> Any:
        if correct is None:
            return [None] * epochs.size
        return correct[:, m].mean(axis=1) if m.size else np.nan

    curve_parts: list[pl.DataFrame] = []
    member_parts: list[pl.DataFrame] = []
    for r in regions.iter_rows(named=True):
        m = np.asarray(r["members"], dtype=np.int64)
        with np.errstate(invalid="ignore"):
            mean = loss[:, m].mean(axis=1) if m.size else np.full(epochs.size, np.nan)
        curve_parts.append(
            pl.DataFrame(
                {
                    "tree": [r["tree"]] * epochs.size,
                    "rank": np.full(epochs.size, r["rank"], dtype=np.int32),
                    "epoch": epochs.astype(np.int32),
                    "size": np.full(epochs.size, m.size, dtype=np.int64),
                    "mean_loss": mean,
                    "accuracy": share(m),
                },
                schema_overrides={"accuracy": pl.Float64},
            )
        )
        member_parts.append(
            pl.DataFrame(
                {
                    "tree": [r["tree"]] * m.size,
                    "rank": np.full(m.size, r["rank"], dtype=np.int32),
                    "sample": m,
                    "label": pl.Series(labels[m].tolist(), dtype=pl.Int64),
                    "loss": loss[at, m],
                    "correct": pl.Series(hits[at, m].tolist(), dtype=pl.Boolean),
                    "learned_epoch": learned[m],
                }
            ).with_columns(pl.col("learned_epoch").fill_nan(None).cast(pl.Int32))
        )
    curve_schema = {
        "tree": pl.String,
        "rank": pl.Int32,
        "epoch": pl.Int32,
        "size": pl.Int64,
        "mean_loss": pl.Float64,
        "accuracy": pl.Float64,
    }
    member_schema = {
        "tree": pl.String,
        "rank": pl.Int32,
        "sample": pl.Int64,
        "label": pl.Int64,
        "loss": pl.Float64,
        "correct": pl.Boolean,
        "learned_epoch": pl.Int32,
    }
    curves = pl.concat(curve_parts) if curve_parts else pl.DataFrame(schema=curve_schema)
    members = pl.concat(member_parts) if member_parts else pl.DataFrame(schema=member_schema)
    with np.errstate(invalid="ignore"):
        overall = pl.DataFrame(
            {
                "epoch": epochs.astype(np.int32),
                "mean_loss": loss.mean(axis=1),
                "accuracy": pl.Series(
                    [None] * epochs.size if correct is None else correct.mean(axis=1),
                    dtype=pl.Float64,
                ),
            }
        )
    return MemberTracks(
        run=rd.name,
        split=split,
        epoch=epoch,
        regions=regions,
        curves=curves.cast(curve_schema),  # type: ignore[arg-type]
        members=members.cast(member_schema),  # type: ignore[arg-type]
        overall=overall,
    )
