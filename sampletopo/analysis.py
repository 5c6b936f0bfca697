"""From recorded losses to topology: diagrams per epoch, summaries, Wasserstein curves.

For every run x split x epoch this module computes the join and split diagrams of the per-sample
loss on the split's kNN graph (built once from the run's dataset features and cached in
``<experiment>/graphs/``), and stores them, one Parquet file per unit of work::

    <run>/topology/meta.json                   graph settings per split (k, features, fingerprint)
    <run>/topology/<split>/epoch=NNNN.parquet  columns: split, tree, epoch, birth, death,
                                               persistence, birth_sample, death_sample

Each file is written atomically, so a re-run computes only the epochs not done yet and an
interrupted run leaves only whole epochs; a re-run also recomputes stored diagram tables that no
longer read back whole. The readers name a damaged table (loss or diagram) in one
:class:`~sampletopo._runfiles.DamagedFileError` instead of failing inside polars. Essential
pairs are stored (death = +inf for join, -inf for split); summaries and distances use the finite
pairs.

Summaries (:func:`summarize`): per run x split x tree x epoch, total persistence with p = 1
and 2 (sum of ``persistence ** p``), number of finite pairs, largest persistence, and the mean
loss and accuracy of that split and epoch, and whether that mean loss exploded (``exploding``,
see :mod:`sampletopo._exploding`). Distances (:func:`wasserstein_to_reference`):
Wasserstein distance (orders 1 and 2, L-infinity ground metric) of every epoch's diagram to a
reference epoch's (the final one by default). Both are stored per run
(``<run>/topology/summary.parquet``, ``wasserstein.parquet``) as a cache for readers; with
``write="if_writable"`` (what figures and the report use) a run folder that cannot be written
(a read-only file system, no permission) gets them computed in memory only, with one
:class:`~sampletopo._errors.TopologyWarning` naming those runs, so a shared read-only experiment
can still be drawn and reported on.

This module draws nothing (see :mod:`sampletopo.plotting`) and trains nothing.
"""

from __future__ import annotations

import contextlib
import errno
import multiprocessing
import warnings
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
from tqdm.auto import tqdm

from sampletopo._deprecated import diagram_at as diagram_at
from sampletopo._deprecated import load_diagrams as load_diagrams
from sampletopo._deprecated import run_graph as run_graph
from sampletopo._deprecated import topology_epochs as topology_epochs
from sampletopo._errors import RunFolderError, TopologyWarning
from sampletopo._exploding import exploding_flag
from sampletopo._folders import lock_folder
from sampletopo._runfiles import (
    DamagedFileWarning,
    parquet_problem,
    write_parquet,
)
from sampletopo._validation import check_choice, check_int, check_split, invalid, ranges_text
from sampletopo.diagrams import Diagram, wasserstein
from sampletopo.graph import Graph, knn_cache_path, knn_graph
from sampletopo.mergetree import join_tree, split_tree
from sampletopo.readers import (
    check_loss_tables,
    read_diagrams,
    read_loss_table,
    scan_diagrams,
    scan_losses,
)
from sampletopo.runs import (
    DIAGRAM_SCHEMA,
    SPLITS,
    TREES,
    PathLike,
    Run,
    as_run,
    diagram_rows,
    runs_in,
)

__all__ = [
    "TopologyWarning",
    "check_comparable",
    "compute_topology",
    "graph_for_run",
    "missing_epochs",
    "summarize",
    "wasserstein_to_reference",
]


def graph_for_run(
    run: PathLike,
    *,
    split: str,
    k: int = 20,
    features: str = "raw",
    metric: str = "l2",
) -> Graph:
    """The kNN graph of one split of a run's dataset (built once, then read from the cache).

    The graph is cached in ``<experiment>/graphs/`` (the run folder's parent), keyed by the
    features' fingerprint, so the variants of an experiment share one graph per split.

    Parameters
    ----------
    run : path or Run
        A run (variant) folder written by ``sampletopo train`` or the recorder.
    split : {"train", "val"}
    k : int
        Neighbours per sample (20 as in the thesis).
    features : {"raw", "standardized", "pca"} or a path to a ``.npy`` file
        What the graph is built over: flattened raw inputs by default.
    """
    split = check_split(split, where="graph_for_run")
    run = as_run(run)
    ds = run.dataset()
    run.check_data(ds, splits=[split])  # never a graph over other samples than recorded
    if features in ("raw", "standardized", "pca"):
        X = ds.features(split, kind=features)  # type: ignore[arg-type]
    else:
        X = ds.features(split, path=features)
    k = check_int("k", k, 1, X.shape[0] - 1, where="graph_for_run", fix="Use fewer neighbours.")
    return knn_graph(X, k=k, metric=metric, cache_dir=run.experiment.graphs_dir)  # type: ignore[arg-type]


def _diagram_table(split: str, epoch: int, losses: np.ndarray, graph: Graph) -> pl.DataFrame:
    parts = []
    for build in (join_tree, split_tree):  # each diagram's table names its tree
        df = build(graph, losses).diagram().to_polars()
        parts.append(df.with_columns(split=pl.lit(split), epoch=pl.lit(epoch)))
    return pl.concat(parts).select(list(DIAGRAM_SCHEMA)).cast(DIAGRAM_SCHEMA)  # type: ignore[arg-type]


def _epoch_losses(run: Run, split: str, epoch: int) -> np.ndarray:
    df = read_loss_table(run, split=split, epoch=epoch, columns=["loss"])
    return df["loss"].to_numpy().astype(np.float64)


_WORKER_GRAPHS: dict[str, Graph] = {}


def _work(task: tuple[str, str, list[int], str]) -> list[tuple[int, str | None]]:
    """Compute and store the diagrams of some epochs of one run and split (runs in a worker)."""
    run_dir, split, epochs, graph_path = task
    run = Run(run_dir)
    graph = _WORKER_GRAPHS.get(graph_path)
    if graph is None:
        graph = _WORKER_GRAPHS.setdefault(graph_path, Graph.load(graph_path))
    out: list[tuple[int, str | None]] = []
    for ep in epochs:
        losses = _epoch_losses(run, split, ep)
        bad = ~np.isfinite(losses)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            out.append((ep, f"{int(bad.sum())} non-finite loss(es), first at sample {first}"))
            continue
        if losses.shape[0] != graph.n:
            out.append(
                (ep, f"{losses.shape[0]} samples but the split's graph has {graph.n} vertices")
            )
            continue
        write_parquet(_diagram_table(split, ep, losses, graph), run.diagram_file(split, ep))
        out.append((ep, None))
    return out


def graph_digest(graph: Graph) -> str:
    """A short hash of a graph's edges: tells which graph stored diagrams were computed on."""
    import hashlib

    h = hashlib.blake2b(digest_size=8)
    h.update(np.int64(graph.n).tobytes())
    h.update(np.ascontiguousarray(graph.edges, dtype=np.int64).tobytes())
    return h.hexdigest()


def _drop_unknown_diagrams(run: Run, splits: Sequence[str], why: str) -> None:
    """Delete stored diagrams whose graph settings are unknown, so they are computed again."""
    stored = [p for s in splits for p in run.diagram_files(s).values()]
    for p in stored:
        p.unlink()
    if stored:
        warnings.warn(
            DamagedFileWarning(
                f"{why}; the kNN graph settings of the {len(stored)} stored diagram table(s) of "
                f"{', '.join(splits)} in run {run.name} are unknown, so they were deleted and "
                "are computed again."
            ),
            stacklevel=3,
        )


def _drop_other_graph(run: Run, split: str, graph: Graph, features: str) -> None:
    """Delete the stored diagrams of ``split``: computed on a graph with other edges."""
    stored = run.diagram_files(split)
    for p in stored.values():
        p.unlink()
    if stored:
        warnings.warn(
            TopologyWarning(
                f"Run {run.name}: its {len(stored)} stored {split} diagram table(s) were "
                "computed on a kNN graph with other edges (an older sampletopo's graph "
                f"rule, or a changed graph cache) than today's graph for k={graph.k}, "
                f"features={features!r}; they were deleted and are computed again."
            ),
            stacklevel=4,
        )


def _check_meta(run: Run, split: str, graph: Graph, features: str) -> None:
    path = run.meta_file
    meta, why = run.read_meta()
    if why is not None:
        # The settings of every split's diagrams were in the damaged file: drop them all.
        _drop_unknown_diagrams(run, SPLITS, f"{str(path)!r} is damaged ({why})")
        path.unlink()
    elif split not in meta:
        # Diagrams are only ever written after their settings: without them, this is damage.
        _drop_unknown_diagrams(
            run, [split], f"{str(path)!r} is missing or has no entry for {split!r}"
        )
    mine = {
        "k": graph.k,
        "metric": graph.metric,
        "features": str(features),
        "graph": graph.fingerprint,
        "edges": graph_digest(graph),
    }
    old = meta.get(split)
    if (
        old is not None
        and {**old, "edges": mine["edges"]} == mine
        and old.get("edges") != mine["edges"]
    ):
        # Same settings and features, other edges: the diagrams were computed on a kNN graph
        # built by an older rule (before sampletopo 0.2 rounded distances to 5 decimals, which
        # dropped true neighbours of small-scale features). They are recomputed, not reused.
        _drop_other_graph(run, split, graph, features)
        old = None
    if old is not None and old != mine and run.diagram_epochs(split):
        raise RunFolderError(
            f"{str(run.path)!r} already holds {split} diagrams computed with {old}; now asked for "
            f"{mine}. Use the same settings, or pass overwrite=True (--overwrite) to recompute all."
        )
    meta[split] = mine
    run.write_meta(meta)


def compute_topology(
    run_dirs: PathLike | Iterable[PathLike],
    *,
    splits: Sequence[str] = SPLITS,
    k: int = 20,
    features: str = "raw",
    jobs: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> pl.DataFrame:
    """Compute and store the join and split diagrams of every recorded epoch not done yet.

    Parameters
    ----------
    run_dirs : path or paths
        Run folders, or experiment folders holding runs.
    splits : sequence of {"train", "val"}
    k, features :
        kNN graph settings, see :func:`graph_for_run`.
    jobs : int
        Worker processes. Results are identical to ``jobs=1``, file for file.
    overwrite : bool
        Recompute every epoch (needed to change ``k`` or ``features`` for a run).
    progress : bool
        Show a progress bar.

    Returns
    -------
    polars.DataFrame
        What was done: run, split, epoch, status (``"computed"``, ``"cached"`` or
        ``"skipped: <why>"``).

    Epochs whose losses hold NaN or inf are skipped with a :class:`TopologyWarning` that names
    them; the others are computed. Epochs missing between the first and last recorded one are
    named in a :class:`TopologyWarning` too (e.g. "epochs 0-3, 5-9; epoch(s) 4 are missing").

    Every loss table is checked to read back whole (its Parquet footer and checksum, see
    :mod:`sampletopo._runfiles`) before any work; a damaged one raises
    :class:`~sampletopo._runfiles.DamagedFileError` naming it, since only a new recording can
    replace it. Stored diagram tables are derived, so one that does not read back whole, or
    whose graph settings are lost with a damaged ``meta.json``, is deleted and computed again
    with a :class:`~sampletopo._runfiles.DamagedFileWarning`.

    Each run's ``topology`` folder is locked for the call (see :mod:`sampletopo._folders`): a
    second process computing (or summarizing) the topology of the same run gets an error naming
    this one, while the run itself may go on recording (the loss tables are whole files; epochs
    recorded later are computed by the next call).
    """
    runs = runs_in(run_dirs)
    jobs = check_int("jobs", jobs, 1, 256, where="compute_topology")
    for s in splits:
        check_split(s, where="compute_topology", name="splits")
    tasks: list[_Task] = []
    rows: list[dict[str, Any]] = []
    with _locked_topology(runs):
        for run in runs:
            for s in splits:
                cached, todo = _plan(run, s, k=k, features=features, overwrite=overwrite, jobs=jobs)
                rows += [
                    {"run": run.name, "split": s, "epoch": e, "status": "cached"} for e in cached
                ]
                tasks += todo
        rows += _done_rows(_run_tasks(tasks, jobs=jobs, progress=progress))
    schema = {"run": pl.String, "split": pl.String, "epoch": pl.Int64, "status": pl.String}
    return pl.DataFrame(rows, schema=schema).sort(["run", "split", "epoch"])


_Task = tuple[str, str, list[int], str]  # run folder, split, epochs, graph cache file


@contextlib.contextmanager
def _locked_topology(runs: Sequence[Run]) -> Iterator[None]:
    """Hold the topology folder of every run (see :mod:`sampletopo._folders`)."""
    with contextlib.ExitStack() as locks:
        for run in runs:
            locks.enter_context(
                lock_folder(run.topology_dir, what="computing topology", role="topology folder")
            )
        yield


def _done_rows(
    results: list[tuple[_Task, list[tuple[int, str | None]]]],
) -> list[dict[str, Any]]:
    """The status rows of the computed tasks; a skipped epoch is named in a warning."""
    rows = []
    for (run_dir, s, _, _), res in results:
        name = Run(run_dir).name
        for ep, why in res:
            if why is not None:
                warnings.warn(
                    f"Run {name}, {s} epoch {ep}: {why}; its topology was skipped, the "
                    "other epochs were computed.",
                    TopologyWarning,
                    stacklevel=3,
                )
            status = "computed" if why is None else f"skipped: {why}"
            rows.append({"run": name, "split": s, "epoch": ep, "status": status})
    return rows


def _plan(
    run: Run, s: str, *, k: int, features: str, overwrite: bool, jobs: int
) -> tuple[list[int], list[_Task]]:
    """The epochs of one run and split whose diagrams are stored and sound (cached), and the
    tasks that compute the others; warns about epochs missing from the recording."""
    eps = run.loss_epochs(s)
    if not eps:
        warnings.warn(
            f"Run {run.name}: no {s} losses recorded; skipped.", TopologyWarning, stacklevel=3
        )
        return [], []
    gap = missing_epochs(run, s)
    if gap:
        warnings.warn(
            f"Run {run.name}: {s} losses are recorded for epochs {ranges_text(eps)}; "
            f"epoch(s) {ranges_text(gap)} are missing, so their topology is missing too and "
            "the curves skip them. Record them (the same `sampletopo train` or `sampletopo "
            "record` command records missing epochs), then run topology again.",
            TopologyWarning,
            stacklevel=3,
        )
    # Every table is checked before any work (footer and checksum: cheap), so a damaged one is
    # named at once, not after the graph is built or in a worker.
    check_loss_tables(run, split=s)
    graph = graph_for_run(run, split=s, k=k, features=features)
    if overwrite:
        for p in run.diagram_files(s).values():
            p.unlink()
    _check_meta(run, s, graph, features)
    done = _sound_diagrams(run, s)
    todo = [e for e in eps if e not in done]
    gpath = str(
        knn_cache_path(
            run.experiment.graphs_dir,
            fingerprint=str(graph.fingerprint),
            k=int(graph.k or 0),
            metric=str(graph.metric),
        )
    )
    _WORKER_GRAPHS[gpath] = graph  # the serial path reuses it instead of re-reading
    step = max(1, len(todo) // (4 * jobs)) if jobs > 1 else max(1, len(todo))
    tasks = [(str(run.path), s, todo[i : i + step], gpath) for i in range(0, len(todo), step)]
    return [e for e in eps if e in done], tasks


def _sound_diagrams(run: Run, s: str) -> set[int]:
    """Epochs of ``s`` whose stored diagram table reads back whole; damaged ones are deleted
    (they are derived from the losses: recomputed instead of refused)."""
    done = set()
    for e, path in run.diagram_files(s).items():
        why = parquet_problem(path, DIAGRAM_SCHEMA, rows_check=diagram_rows(s, e))
        if why is None:
            done.add(e)
            continue
        path.unlink()
        warnings.warn(
            DamagedFileWarning(f"{str(path)!r} is damaged: {why}; it is computed again."),
            stacklevel=4,
        )
    return done


def _run_tasks(
    tasks: list[_Task], *, jobs: int, progress: bool
) -> list[tuple[_Task, list[tuple[int, str | None]]]]:
    """Each task with what :func:`_work` returned for it, in order, on ``jobs`` processes."""
    total = sum(len(t[2]) for t in tasks)
    bar = tqdm(total=total, desc="topology", unit="epoch", disable=not progress or total == 0)
    results: list[tuple[_Task, list[tuple[int, str | None]]]] = []
    if jobs == 1 or len(tasks) <= 1:
        for t in tasks:
            results.append((t, _work(t)))
            bar.update(len(t[2]))
    else:
        # spawn, not fork: a forked child of a process that already ran torch/OpenMP threads
        # can deadlock.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            for t, res in zip(tasks, pool.map(_work, tasks)):
                results.append((t, res))
                bar.update(len(t[2]))
    bar.close()
    return results


Write = bool | Literal["if_writable"]
"""How :func:`summarize` and :func:`wasserstein_to_reference` store their tables: ``True``
(always; a folder that cannot be written is an error), ``False`` (never) or ``"if_writable"``."""

# The errors of a folder that cannot be written; anything else (a full disk) still stops.
_NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)


def _store(tables: list[tuple[Run, pl.DataFrame, Path]], write: Write) -> None:
    """Store each run's table at its path, locking its topology folder; with
    ``write="if_writable"``, skip the runs whose folder cannot be written, with one warning."""
    write = check_choice("write", write, (True, False, "if_writable"), where="summarize")
    if write is False:
        return
    skipped: list[str] = []
    for run, df, path in tables:
        try:
            with lock_folder(run.topology_dir, what="summarizing topology", role="topology folder"):
                write_parquet(df, path)
        except OSError as exc:
            if write != "if_writable" or exc.errno not in _NOT_WRITABLE:
                raise
            skipped.append(f"{run.name} ({exc.strerror})")
    if skipped:
        warnings.warn(
            TopologyWarning(
                f"The summary and Wasserstein tables of run(s) {', '.join(skipped)} were "
                "computed in memory and not stored: their topology folders cannot be written "
                "(a read-only file system or no permission)."
            ),
            stacklevel=3,
        )


def summarize(run_dirs: PathLike | Iterable[PathLike], *, write: Write = True) -> pl.DataFrame:
    """Per run x split x tree x epoch: total persistence (p=1, 2), pairs, largest persistence,
    mean loss and accuracy, and ``exploding``: whether that epoch's mean loss exploded (the
    recorder's rule, :mod:`sampletopo._exploding`: finite and above 1e6, or more than 100 times
    the previous recorded epoch's).

    With ``write=True`` each run's rows are also stored in ``<run>/topology/summary.parquet``;
    with ``write="if_writable"`` only where that folder can be written (see the module
    docstring). An epoch whose diagram has no finite pair (e.g. a constant loss) gets zeros,
    not a gap.
    """
    out = [(run, _summary(run), run.summary_file) for run in runs_in(run_dirs)]
    _store(out, write)
    return pl.concat([df for _, df, _ in out]).sort(["run", "split", "tree", "epoch"])


def _summary(run: Run) -> pl.DataFrame:
    """The rows of :func:`summarize` of one run."""
    finite = pl.col("persistence").is_finite()
    topo = (
        scan_diagrams(run)
        .group_by(["run", "split", "tree", "epoch"])
        .agg(
            total_persistence_1=pl.col("persistence").filter(finite).sum(),
            total_persistence_2=(pl.col("persistence").filter(finite) ** 2).sum(),
            n_pairs=finite.sum().cast(pl.Int64),
            max_persistence=pl.col("persistence").filter(finite).max().fill_null(0.0),
            n_essential=(~finite).sum().cast(pl.Int64),
        )
    )
    stats = (
        scan_losses(run)
        .group_by(["run", "split", "epoch"])
        .agg(mean_loss=pl.col("loss").mean(), accuracy=pl.col("correct").cast(pl.Float64).mean())
        .with_columns(exploding=exploding_flag(over=["run", "split"]))
    )
    try:
        return (
            topo.join(
                stats.with_columns(pl.col("epoch").cast(pl.Int32)),
                on=["run", "split", "epoch"],
                how="left",
            )
            .sort(["split", "tree", "epoch"])
            .collect()
        )
    except pl.exceptions.PolarsError as exc:
        # Every table was verified when scanned: one changed since, or predates checksums.
        raise RunFolderError(
            f"A loss or diagram table of run {str(run.path)!r} cannot be read "
            f"({' '.join(str(exc).split())[:200]}). Record the run's losses again, or delete "
            "its topology folder and run `sampletopo topology` again."
        ) from exc


def wasserstein_to_reference(
    run_dirs: PathLike | Iterable[PathLike],
    *,
    reference: int | str = "final",
    orders: Sequence[float] = (1, 2),
    write: Write = True,
    progress: bool = False,
) -> pl.DataFrame:
    """Wasserstein distance of every epoch's diagram to a reference epoch's, per run x split x tree.

    Parameters
    ----------
    reference : "final" or int
        ``"final"``: each run's last epoch with diagrams (as in the thesis); an int: that epoch,
        which must exist in every run and split.
    orders : sequence of float
        Wasserstein orders (L-infinity ground metric; finite pairs).

    Returns
    -------
    polars.DataFrame
        run, split, tree, epoch, reference_epoch, and one column ``w<order>`` per order
        (``w1``, ``w2``). Stored per run in ``<run>/topology/wasserstein.parquet`` when
        ``write`` (``"if_writable"``: where that folder can be written, see the module docstring).
    """
    runs = runs_in(run_dirs)
    work = []
    for run in runs:
        for s in SPLITS:
            eps = run.diagram_epochs(s)
            if not eps:
                continue
            if reference == "final":
                ref = eps[-1]
            else:
                ref = int(reference)
                if ref not in eps:
                    raise invalid(
                        "reference",
                        f"'final' or an epoch with {s} diagrams in run {run.name}: "
                        f"{ranges_text(eps)}",
                        where="wasserstein_to_reference",
                        got=f"{ref}, which has no {s} diagram in run {run.name}",
                    )
            work.append((run, s, eps, ref))
    rows: list[dict[str, Any]] = []
    total = sum(len(w[2]) for w in work)
    with tqdm(total=total, desc="wasserstein", unit="epoch", disable=not progress) as bar:
        for run, s, eps, ref in work:
            rows += _distances(run, s, eps, ref, orders)
            bar.update(len(eps))
    df = pl.DataFrame(rows).sort(["run", "split", "tree", "epoch"]) if rows else pl.DataFrame()
    if rows:
        parts = [(run, df.filter(pl.col("run") == run.name), run.wasserstein_file) for run in runs]
        _store([p for p in parts if p[1].height], write)
    return df


def summary_tables(
    run_dirs: PathLike | Iterable[PathLike], *, write: Write = "if_writable"
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The runs' :func:`summarize` and :func:`wasserstein_to_reference` tables (final epoch as
    the reference), stored as one step: with ``write="if_writable"`` (the default here, as the
    figures and the report need) a run folder that cannot be written gets both in memory only,
    and one warning says so for all runs."""
    runs = runs_in(run_dirs)
    summary = summarize(runs, write=False)
    wdist = wasserstein_to_reference(runs, write=False)
    tables = [(run, summary.filter(pl.col("run") == run.name), run.summary_file) for run in runs]
    if wdist.height:
        tables += [
            (run, part, run.wasserstein_file)
            for run in runs
            if (part := wdist.filter(pl.col("run") == run.name)).height
        ]
    _store(tables, write)
    return summary, wdist


def _distances(
    run: Run, s: str, eps: list[int], ref: int, orders: Sequence[float]
) -> list[dict[str, Any]]:
    """The rows of :func:`wasserstein_to_reference` of one run and split."""
    by_epoch = read_diagrams(run, split=s).partition_by(["epoch", "tree"], as_dict=True)
    rows = []
    for tree in TREES:
        ref_d = Diagram.from_polars(by_epoch[(ref, tree)])
        for e in eps:
            d = Diagram.from_polars(by_epoch[(e, tree)])
            row: dict[str, Any] = {
                "run": run.name,
                "split": s,
                "tree": tree,
                "epoch": e,
                "reference_epoch": ref,
            }
            for o in orders:
                row[f"w{o:g}"] = 0.0 if e == ref else wasserstein(d, ref_d, order=o)
            rows.append(row)
    return rows


def check_comparable(run_dirs: PathLike | Iterable[PathLike]) -> list[Path]:
    """Refuse runs recorded on different data (dataset or split fingerprints differ).

    Returns the run folders when they can be compared side by side.
    """
    runs = runs_in(run_dirs)
    seen: dict[str, tuple[str, Any]] = {}
    for run in runs:
        man = run.read_manifest()
        if man is None:
            continue
        for s, info in man["splits"].items():
            fp = info.get("fingerprint")
            if s in seen and seen[s][1] != fp:
                raise RunFolderError(
                    f"Runs {seen[s][0]} and {run.name} were recorded on different {s} data "
                    f"({man.get('dataset')!r}: fingerprint {fp} vs {seen[s][1]}). Compare runs of "
                    "one dataset and split, or draw them in separate figure sets."
                )
            seen.setdefault(s, (run.name, fp))
    return [run.path for run in runs]


def missing_epochs(run_dir: PathLike, split: str) -> list[int]:
    """Epochs between the first and last recorded one that have no loss table."""
    eps = as_run(run_dir).loss_epochs(split)
    if not eps:
        return []
    return sorted(set(range(eps[0], eps[-1] + 1)) - set(eps))
