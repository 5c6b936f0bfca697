"""From recorded losses to topology: diagrams per epoch, summaries, Wasserstein curves.

For every run x split x epoch this module computes the join and split diagrams of the per-sample
loss on the split's kNN graph (built once from the run's dataset features and cached in
``<experiment>/graphs/``), and stores them, one Parquet file per unit of work::

    <run>/topology/meta.json                   graph settings per split (k, features, fingerprint)
    <run>/topology/<split>/epoch=NNNN.parquet  columns: split, tree, epoch, birth, death,
                                               persistence, birth_sample, death_sample

Those are the files of the first graph setting computed for a run; every other setting (k,
features) has the same files in ``<run>/topology/<setting>/`` (see :mod:`sampletopo.runs`):
:func:`compute_topology` picks the folder of its ``k`` and ``features``, and the summaries,
distances and readers read the setting of the runs they are given
(:func:`sampletopo.runs.graph_runs`; a plain folder reads ``topology/`` itself).

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
Wasserstein distance (W1 by default, other orders on request; L-infinity ground metric) of
every epoch's diagram to a reference epoch's (the final one by default), exact by default (a
sparse assignment), on ``jobs`` processes, stored as it grows so that a killed computation
resumes where it stopped. Both are stored per run
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
import time
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
    read_parquet,
    write_parquet,
)
from sampletopo._validation import (
    check_choice,
    check_int,
    check_real,
    check_split,
    invalid,
    ranges_text,
)
from sampletopo.diagrams import (
    BACKENDS,
    HERA_DELTA,
    Backend,
    Diagram,
    _matching_bottleneck,
    check_delta,
)
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
    check_features,
    check_k,
    diagram_rows,
    graph_runs,
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
    pca_components: int = 50,
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
    pca_components : int
        Principal axes kept with ``features="pca"`` (fitted on the training split's
        standardized features): at most the feature count (64 for digits; 40-dimensional data
        needs 40 or fewer).
    """
    split = check_split(split, where="graph_for_run")
    run = as_run(run)
    ds = run.dataset()
    run.check_data(ds, splits=[split])  # never a graph over other samples than recorded
    if features == "pca":
        n = _check_pca_size(ds, pca_components)
        X = ds.features(split, kind="pca", n_components=n)
    elif features in ("raw", "standardized"):
        X = ds.features(split, kind=features)  # type: ignore[arg-type]
    else:
        X = ds.features(split, path=features)
    k = check_k(k, where="graph_for_run")  # below 1 has its own hint
    k = check_int(
        "k", k, 1, X.shape[0] - 1, where="graph_for_run", fix="Use fewer neighbours than samples."
    )
    return knn_graph(X, k=k, metric=metric, cache_dir=run.experiment.graphs_dir)  # type: ignore[arg-type]


def _check_pca_size(ds: Any, pca_components: int) -> int:
    """``pca_components`` checked against the feature count of ``ds``'s training split."""
    d = ds.features("train", kind="raw").shape[1]
    return check_int(
        "pca_components",
        pca_components,
        1,
        d,
        where=None,
        fix=f"The data has {d} features: pass --pca-components {min(d, 50)} or fewer "
        f"(pca_components={min(d, 50)}).",
    )


def check_graph_settings(
    run_dirs: PathLike | Iterable[PathLike],
    *,
    k: Sequence[int] = (20,),
    features: Sequence[str] = ("raw",),
    pca_components: int = 50,
) -> None:
    """Check every graph setting ``k`` x ``features`` that :func:`compute_topology` is about to
    compute on ``run_dirs``, before any is: each ``k`` at least 1, each ``features`` raw,
    standardized, pca or an existing .npy file, and with pca, ``pca_components`` at most the
    feature count of each run's data. Raises the one :class:`ParameterError` of the first
    bad value (the same one the computation would raise later)."""
    for kk in k:
        check_k(kk, where="compute_topology")
    for f in features:
        check_features(f, where="compute_topology")
    if "pca" in [str(f) for f in features]:
        for run in runs_in(run_dirs, label_clashes=True):
            _check_pca_size(run.dataset(), pca_components)


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


def _work(task: tuple[str, str, list[int], str, str]) -> list[tuple[int, str | None]]:
    """Compute and store the diagrams of some epochs of one run and split (runs in a worker)."""
    run_dir, split, epochs, graph_path, setting = task
    run = Run(run_dir, setting=setting)
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


def _check_meta(
    run: Run, split: str, graph: Graph, features: str, pca_components: int = 50
) -> None:
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
    if features == "pca" and pca_components != 50:
        # Only when not the default, so diagrams stored before the option still match.
        mine["pca_components"] = int(pca_components)
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
    pca_components: int = 50,
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
    k, features, pca_components :
        kNN graph settings, see :func:`graph_for_run`.
    jobs : int
        Worker processes. Results are identical to ``jobs=1``, file for file.
    overwrite : bool
        Recompute every epoch of this graph setting.
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
    # Each graph setting has its own topology folder (see sampletopo.runs): the first one
    # computed keeps topology/, others topology/<setting>/; computing one never touches another.
    check_graph_settings(run_dirs, k=[k], features=[features], pca_components=pca_components)
    runs = graph_runs(run_dirs, k=k, features=features, pca_components=pca_components)
    jobs = check_int("jobs", jobs, 1, 256, where="compute_topology")
    for s in splits:
        check_split(s, where="compute_topology", name="splits")
    tasks: list[_Task] = []
    rows: list[dict[str, Any]] = []
    with _locked_topology(runs):
        for run in runs:
            for s in splits:
                cached, todo = _plan(
                    run,
                    s,
                    k=k,
                    features=features,
                    pca_components=pca_components,
                    overwrite=overwrite,
                    jobs=jobs,
                )
                rows += [
                    {"run": run.name, "split": s, "epoch": e, "status": "cached"} for e in cached
                ]
                tasks += todo
        rows += _done_rows(_run_tasks(tasks, jobs=jobs, progress=progress))
    schema = {"run": pl.String, "split": pl.String, "epoch": pl.Int64, "status": pl.String}
    return pl.DataFrame(rows, schema=schema).sort(["run", "split", "epoch"])


_Task = tuple[str, str, list[int], str, str]  # run folder, split, epochs, graph cache, setting


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
    for (run_dir, s, _, _, _), res in results:
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
    run: Run,
    s: str,
    *,
    k: int,
    features: str,
    pca_components: int = 50,
    overwrite: bool,
    jobs: int,
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
    graph = graph_for_run(run, split=s, k=k, features=features, pca_components=pca_components)
    if overwrite:
        for p in run.diagram_files(s).values():
            p.unlink()
    _check_meta(run, s, graph, features, pca_components)
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
    tasks = [
        (str(run.path), s, todo[i : i + step], gpath, run.setting)
        for i in range(0, len(todo), step)
    ]
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
    orders: Sequence[float] = (1,),
    backend: Backend = "assignment",
    delta: float = HERA_DELTA,
    min_persistence: float = 0.0,
    jobs: int = 1,
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
        Wasserstein orders (L-infinity ground metric; finite pairs): W1 only by default, as
        the figures and the report draw; ``(1, 2)`` adds W2 (about as costly again).
    backend : {"assignment", "hera", "pot"}
        The solver, see :func:`sampletopo.diagrams.wasserstein`: the exact sparse assignment by
        default (measured the fastest on a thesis-sized study, ``benchmarks/bench_study.py``),
        hera within its relative error ``delta``, or POT (exact, slow).
    delta : float in (0, 1]
        hera's relative error (``backend="hera"`` only).
    min_persistence : float >= 0
        Leave out the finite pairs with persistence below it from both diagrams before each
        distance (0: none, the default). Each left-out pair of persistence ``p`` moves a
        diagram by at most ``p / 2`` (to the diagonal, L-infinity), so by the triangle
        inequality the distance changes by at most ``(sum (p/2)^q)^(1/q)`` over the left-out
        pairs of one diagram plus the same over the other's (``q`` the order; the largest
        ``p/2`` of each for ``q = inf``).
    jobs : int
        Worker processes; results are identical to ``jobs=1``.
    write : True, False or "if_writable"
        Store each run's table in ``<run>/topology/wasserstein.parquet``, as it grows (about
        every 2 s) and when done, see the module docstring.
    progress : bool
        Show a progress bar.

    Returns
    -------
    polars.DataFrame
        run, split, tree, epoch, reference_epoch; per order ``w<order>`` (``w1``, ``w2``) and
        ``w<order>_bound``, a bound on its distance from the exact Wasserstein distance of the
        whole diagrams (``delta * w`` for hera, plus the ``min_persistence`` bound above; 0 when
        exact); the settings ``backend``, ``delta`` (0 for the exact solvers) and
        ``min_persistence``; ``diagram_hash`` and ``reference_hash`` (of the two diagrams'
        finite pairs).

    A stored table is a cache: its rows computed with the same settings (reference epoch,
    solver, ``delta``, ``min_persistence``, orders) on the same diagrams (hashes) are reused,
    so a killed run computes only the missing epochs when run again. Tables written before
    sampletopo 0.4 (no settings columns) are read as they are by
    :func:`~sampletopo.readers.read_wasserstein` and computed again here.
    """
    df, _ = _wasserstein_tables(
        runs_in(run_dirs),
        reference=reference,
        orders=orders,
        backend=backend,
        delta=delta,
        min_persistence=min_persistence,
        jobs=jobs,
        write=write,
        progress=progress,
    )
    return df


def summary_tables(
    run_dirs: PathLike | Iterable[PathLike], *, write: Write = "if_writable"
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The runs' :func:`summarize` and :func:`wasserstein_to_reference` tables (final epoch as
    the reference, W1), stored as one step: with ``write="if_writable"`` (the default here, as
    the figures and the report need) a run folder that cannot be written gets both in memory
    only, and one warning says so for all runs. Stored W1 rows of the same diagrams and
    reference are used whatever solver settings made them (``sampletopo topology`` chose
    them), and a run whose rows were all reused keeps its table as it is (with any other
    orders it holds)."""
    runs = runs_in(run_dirs)
    summary = summarize(runs, write=False)
    # The stored curves of the same diagrams serve whatever solver settings made them.
    wdist, changed = _wasserstein_tables(runs, write=False, any_settings=True)
    tables = [(run, summary.filter(pl.col("run") == run.name), run.summary_file) for run in runs]
    if wdist.height:
        tables += [
            (run, part, run.wasserstein_file)
            for run in runs
            if run.name in changed and (part := wdist.filter(pl.col("run") == run.name)).height
        ]
    _store(tables, write)
    return summary, wdist


# --- the Wasserstein curves -------------------------------------------------------------------

_W_KEY = ["run", "split", "tree", "epoch"]
_W_SETTINGS = ["reference_epoch", "backend", "delta", "min_persistence"]
_W_HASHES = ["diagram_hash", "reference_hash"]
# How often (seconds) a growing table is stored while the curves are computed.
_W_SAVE_EVERY = 2.0
# Epochs per task: small enough that a killed run loses little, large enough to pay a worker.
_W_CHUNK = 8


def _order_name(o: float) -> str:
    return f"w{o:g}"


def _check_orders(orders: Sequence[float], where: str) -> list[float]:
    if isinstance(orders, (str, bytes)) or not isinstance(orders, Sequence) or not orders:
        raise invalid(
            "orders",
            "a non-empty sequence of Wasserstein orders in [1, inf], e.g. (1,) or (1, 2)",
            orders,
            where=where,
        )
    out = []
    for o in orders:
        v = check_real(
            "orders",
            o,
            low=1.0,
            allow_inf=True,
            where=where,
            fix="Each order is a p in [1, inf] (inf: the bottleneck distance), e.g. (1, 2).",
        )
        if v not in out:
            out.append(v)
    return sorted(out)


def _points_hash(points: np.ndarray) -> str:
    import hashlib

    return hashlib.blake2b(np.ascontiguousarray(points).tobytes(), digest_size=8).hexdigest()


# One diagram as the curves need it: finite points kept (birth <= death), the half persistences
# of the points left out by min_persistence, and the hash of all its finite points.
_WPoints = tuple[np.ndarray, np.ndarray, str]
# run name, split, tree, reference epoch, reference points, [(epoch, points)], orders, backend,
# delta, min_persistence
_WTask = tuple[
    str, str, str, int, _WPoints, list[tuple[int, _WPoints]], list[float], str, float, float
]


def _w_points(df: pl.DataFrame, tree: str, min_persistence: float) -> _WPoints:
    d = Diagram.from_polars(df, tree=tree)  # type: ignore[arg-type]
    pts = d.finite().as_lower()
    pts = pts[np.lexsort((pts[:, 1], pts[:, 0]))]  # the stored order does not matter
    half = (pts[:, 1] - pts[:, 0]) / 2.0
    low = 2.0 * half < min_persistence
    return pts[~low], half[low], _points_hash(pts)


def _drop_bound(half: np.ndarray, order: float) -> float:
    """How far leaving out pairs of these half persistences moves a diagram (W_order)."""
    if half.size == 0:
        return 0.0
    if np.isinf(order):
        return float(half.max())
    return float(np.sum(half**order) ** (1.0 / order))


def _w_work(task: _WTask) -> list[dict[str, Any]]:
    """The rows of some epochs of one (run, split, tree) curve (runs in a worker)."""
    from sampletopo.diagrams import _finite_wasserstein, _hera_bottleneck

    name, s, tree, ref, (rp, rdrop, rhash), items, orders, backend, delta, minp = task
    rows = []
    for e, (p, drop, h) in items:
        row: dict[str, Any] = {"run": name, "split": s, "tree": tree, "epoch": e}
        row.update(reference_epoch=ref, backend=backend, delta=delta, min_persistence=minp)
        for o in orders:
            if e == ref:
                w = 0.0
            elif np.isinf(o):
                w = (
                    _hera_bottleneck(p, rp)
                    if backend == "hera"
                    else _matching_bottleneck(p, rp, np.inf)
                )
            else:
                w = _finite_wasserstein(p, rp, o, np.inf, backend, delta)
            bound = _drop_bound(drop, o) + _drop_bound(rdrop, o) if e != ref else 0.0
            row[_order_name(o)] = w
            row[f"{_order_name(o)}_bound"] = bound + delta * w
        row.update(diagram_hash=h, reference_hash=rhash)
        rows.append(row)
    return rows


def _w_schema(orders: Sequence[float]) -> dict[str, Any]:
    schema: dict[str, Any] = {k: pl.String for k in ("run", "split", "tree")}
    schema.update(epoch=pl.Int64, reference_epoch=pl.Int64)
    for o in orders:
        schema[_order_name(o)] = pl.Float64
        schema[f"{_order_name(o)}_bound"] = pl.Float64
    schema.update(backend=pl.String, delta=pl.Float64, min_persistence=pl.Float64)
    schema.update(diagram_hash=pl.String, reference_hash=pl.String)
    return schema


def _stored_rows(run: Run, schema: dict[str, Any]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """The run's stored Wasserstein rows that hold every column of ``schema``, by key; a
    damaged table is named in a warning and computed again."""
    path = run.wasserstein_file
    if not path.is_file():
        return {}
    why = parquet_problem(path, {})
    if why is None:
        have = pl.read_parquet_schema(path)
        if not all(have.get(c) == t for c, t in schema.items()):
            return {}  # another sampletopo's table, or other orders: computed again
        df = read_parquet(path, schema, columns=list(schema), fix="")
        return {tuple(r[k] for k in _W_KEY): r for r in df.iter_rows(named=True)}
    warnings.warn(
        DamagedFileWarning(f"{str(path)!r} is damaged: {why}; its rows are computed again."),
        stacklevel=4,
    )
    return {}


class _TableWriter:
    """Stores the growing tables of runs (see :data:`Write`); remembers the runs whose folder
    cannot be written, for one warning at the end."""

    def __init__(self, write: Write) -> None:
        self.write = check_choice("write", write, (True, False, "if_writable"), where="summarize")
        self.skipped: dict[str, str] = {}

    def store(self, run: Run, df: pl.DataFrame) -> None:
        if self.write is False or run.name in self.skipped:
            return
        try:
            with lock_folder(run.topology_dir, what="computing topology", role="topology folder"):
                write_parquet(df, run.wasserstein_file)
        except OSError as exc:
            if self.write != "if_writable" or exc.errno not in _NOT_WRITABLE:
                raise
            self.skipped[run.name] = str(exc.strerror)

    def warn(self) -> None:
        if self.skipped:
            names = ", ".join(f"{n} ({why})" for n, why in self.skipped.items())
            warnings.warn(
                TopologyWarning(
                    f"The Wasserstein tables of run(s) {names} were computed in memory and not "
                    "stored: their topology folders cannot be written (a read-only file system "
                    "or no permission)."
                ),
                stacklevel=4,
            )


def check_wasserstein_settings(
    *,
    orders: Sequence[float] = (1,),
    backend: Backend = "assignment",
    delta: float = HERA_DELTA,
    min_persistence: float = 0.0,
    jobs: int = 1,
) -> tuple[list[float], Backend, float, float, int]:
    """The settings of :func:`wasserstein_to_reference`, checked (one error naming the bad
    one) and normalized: orders sorted without repeats, ``delta`` 0 for the exact solvers. The
    command line calls it before any work."""
    where = "wasserstein_to_reference"
    orders = _check_orders(orders, where)
    backend = check_choice("backend", backend, BACKENDS, where=where)  # type: ignore[assignment]
    delta = check_delta(delta, where=where)
    delta = delta if backend == "hera" else 0.0  # the other solvers are exact
    min_persistence = check_real(
        "min_persistence",
        min_persistence,
        low=0.0,
        where=where,
        fix="Pairs with persistence below it are left out; 0 keeps them all.",
    )
    jobs = check_int("jobs", jobs, 1, 256, where=where)
    return orders, backend, delta, min_persistence, jobs


def _wasserstein_tables(
    runs: list[Run],
    *,
    reference: int | str = "final",
    orders: Sequence[float] = (1,),
    backend: Backend = "assignment",
    delta: float = HERA_DELTA,
    min_persistence: float = 0.0,
    jobs: int = 1,
    write: Write = True,
    progress: bool = False,
    any_settings: bool = False,
) -> tuple[pl.DataFrame, set[str]]:
    """:func:`wasserstein_to_reference`'s table and the names of the runs whose rows were not
    all reused from their stored table; with ``any_settings``, stored rows are reused whatever
    solver, ``delta`` and ``min_persistence`` made them (same reference and diagrams)."""
    where = "wasserstein_to_reference"
    orders, backend, delta, min_persistence, jobs = check_wasserstein_settings(
        orders=orders, backend=backend, delta=delta, min_persistence=min_persistence, jobs=jobs
    )
    writer = _TableWriter(write)
    schema = _w_schema(orders)
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
                        where=where,
                        got=f"{ref}, which has no {s} diagram in run {run.name}",
                    )
            work.append((run, s, eps, ref))
    settings = (backend, delta, min_persistence)
    done: dict[str, list[dict[str, Any]]] = {run.name: [] for run in runs}
    tasks: list[_WTask] = []
    changed: set[str] = set()
    stored = {run.name: _stored_rows(run, schema) for run in runs}
    for run, s, eps, ref in work:
        by_epoch = read_diagrams(run, split=s).partition_by(["epoch", "tree"], as_dict=True)
        for tree in TREES:
            pts = {e: _w_points(by_epoch[(e, tree)], tree, min_persistence) for e in eps}
            todo = []
            for e in eps:
                old = stored[run.name].get((run.name, s, tree, e))
                if (
                    old is not None
                    and old["reference_epoch"] == ref
                    and (
                        any_settings
                        or (old["backend"], old["delta"], old["min_persistence"]) == settings
                    )
                    and (old["diagram_hash"], old["reference_hash"]) == (pts[e][2], pts[ref][2])
                ):
                    done[run.name].append(old)
                else:
                    todo.append((e, pts[e]))
            step = min(_W_CHUNK, max(1, len(todo) // (4 * jobs)))
            for i in range(0, len(todo), step):
                tasks.append(
                    (run.name, s, tree, ref, pts[ref], todo[i : i + step], orders, *settings)
                )
    by_name = {run.name: run for run in runs}
    for name, rows in done.items():
        if len(rows) != len(stored[name]):
            changed.add(name)  # stale rows to drop, or rows to add
    changed |= {t[0] for t in tasks}

    def table(name: str) -> pl.DataFrame:
        return pl.DataFrame(done[name], schema=schema).sort(_W_KEY)

    total = sum(len(t[5]) for t in tasks)
    bar = tqdm(total=total, desc="wasserstein", unit="epoch", disable=not progress or total == 0)
    last = time.monotonic()
    dirty: set[str] = set()
    for task, rows in _run_w_tasks(tasks, jobs):
        done[task[0]] += rows
        dirty.add(task[0])
        bar.update(len(task[5]))
        if time.monotonic() - last >= _W_SAVE_EVERY:
            for name in sorted(dirty):
                writer.store(by_name[name], table(name))
            dirty.clear()
            last = time.monotonic()
    bar.close()
    for name in sorted(changed):
        if done[name]:
            writer.store(by_name[name], table(name))
    writer.warn()
    parts = [table(run.name) for run in runs if done[run.name]]
    return (pl.concat(parts).sort(_W_KEY) if parts else pl.DataFrame()), changed


def _run_w_tasks(tasks: list[_WTask], jobs: int) -> Iterator[tuple[_WTask, list[dict[str, Any]]]]:
    """Each task with its rows, in order, on ``jobs`` processes."""
    if jobs == 1 or len(tasks) <= 1:
        for t in tasks:
            yield t, _w_work(t)
        return
    ctx = multiprocessing.get_context("spawn")  # see _run_tasks
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        yield from zip(tasks, pool.map(_w_work, tasks))


def check_comparable(
    run_dirs: PathLike | Iterable[PathLike], *, label_clashes: bool = False
) -> list[Path]:
    """Refuse runs recorded on different data (dataset or split fingerprints differ).

    Returns the run folders when they can be compared side by side. ``label_clashes``: runs of
    the same name in different experiment folders are kept (see
    :func:`sampletopo.runs.runs_in`).
    """
    runs = runs_in(run_dirs, label_clashes=label_clashes)
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
