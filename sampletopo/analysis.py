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
loss and accuracy of that split and epoch. Distances (:func:`wasserstein_to_reference`):
Wasserstein distance (orders 1 and 2, L-infinity ground metric) of every epoch's diagram to a
reference epoch's (the final one by default).

This module draws nothing (see :mod:`sampletopo.plotting`) and trains nothing.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from tqdm.auto import tqdm

from sampletopo._errors import SampletopoError, check_int_range
from sampletopo._folders import lock_folder
from sampletopo._io import write_atomic
from sampletopo._runfiles import (
    DamagedFileError,
    DamagedFileWarning,
    check_parquet,
    parquet_problem,
    read_json,
    read_parquet,
    scan_parquet,
    write_parquet,
)
from sampletopo.diagrams import Diagram, wasserstein
from sampletopo.graph import Graph, knn_cache_path, knn_graph
from sampletopo.mergetree import join_tree, split_tree

__all__ = [
    "run_graph",
    "compute_topology",
    "load_diagrams",
    "diagram_at",
    "summarize",
    "wasserstein_to_reference",
    "check_comparable",
    "topology_epochs",
    "TREES",
]

TREES = ("join", "split")
SPLITS = ("train", "val")
_SCHEMA = {
    "split": pl.String,
    "tree": pl.String,
    "epoch": pl.Int32,
    "birth": pl.Float64,
    "death": pl.Float64,
    "persistence": pl.Float64,
    "birth_sample": pl.Int64,
    "death_sample": pl.Int64,
}


_DIAGRAM_FIX = (
    "Diagram tables are computed from the loss tables: run `sampletopo topology` on this run "
    "again, which recomputes damaged ones."
)


class TopologyWarning(UserWarning):
    """Something was skipped (a missing or non-finite epoch) and the rest carried on."""


def _runs(run_dirs: str | Path | Iterable[str | Path]) -> list[Path]:
    from sampletopo.record import _run_dirs

    if isinstance(run_dirs, (str, Path)):
        run_dirs = [run_dirs]
    out: list[Path] = []
    for rd in run_dirs:
        out.extend(_run_dirs(Path(rd)))
    if not out:
        raise SampletopoError("No run folders given. Pass the folders `sampletopo train` wrote.")
    names = [p.resolve().name for p in out]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        clash = [str(p) for p, n in zip(out, names, strict=True) if n in dup]
        raise SampletopoError(
            f"Runs {clash} share the folder name(s) {sorted(dup)}; the runs of one call are told "
            "apart by folder name (figures label curves with it). Pass them in separate calls "
            "(`sampletopo topology` does so for each folder given), or rename one."
        )
    return out


@lru_cache(maxsize=8)
def _dataset(key: str):
    from sampletopo.record import dataset_from_config

    return dataset_from_config(json.loads(key))


def _run_dataset(run_dir: Path):
    from sampletopo.record import _DATA_KEYS, read_run_config, warn_foreign_data_root

    cfg = read_run_config(run_dir)
    if not cfg.get("data") and not cfg.get("data_file"):
        raise SampletopoError(
            f"{str(Path(run_dir) / 'config.toml')!r} has no 'data' entry: it does not say which "
            "dataset the run was recorded on, so its kNN graph cannot be built. Add "
            'data = "NAME" (with the data_root, data_seed, val_fraction and max_samples it was '
            "recorded with), as `sampletopo train` writes it."
        )
    warn_foreign_data_root(cfg, run_dir)
    keep = {k: cfg.get(k) for k in (*_DATA_KEYS, "data_rebuildable")}
    return _dataset(json.dumps(keep, sort_keys=True, default=str))


def run_graph(
    run_dir: str | Path,
    split: str,
    *,
    k: int = 20,
    features: str = "raw",
    metric: str = "l2",
) -> Graph:
    """The kNN graph of one split of a run's dataset (built once, then read from the cache).

    The graph is cached in ``<experiment>/graphs/`` (the run folder's parent), keyed by the
    features' fingerprint, so the variants of an experiment share one graph per split.

    Parameters
    ----------
    run_dir : path
        A run (variant) folder written by ``sampletopo train`` or the recorder.
    split : {"train", "val"}
    k : int
        Neighbours per sample (20 as in the thesis).
    features : {"raw", "standardized", "pca"} or a path to a ``.npy`` file
        What the graph is built over: flattened raw inputs by default.
    """
    if split not in SPLITS:
        raise SampletopoError(f"The 'split' parameter must be one of {SPLITS}. Got {split!r}.")
    from sampletopo.record import check_run_data

    rd = Path(run_dir)
    ds = _run_dataset(rd)
    check_run_data(rd, ds, splits=[split])  # never a graph over other samples than recorded
    if features in ("raw", "standardized", "pca"):
        X = ds.features(split, kind=features)
    else:
        X = ds.features(split, path=features)
    k = check_int_range("k", k, 1, X.shape[0] - 1, where="run_graph", fix="Use fewer neighbours.")
    return knn_graph(X, k=k, metric=metric, cache_dir=rd.resolve().parent / "graphs")  # type: ignore[arg-type]


def _epoch_path(run_dir: Path, split: str, epoch: int) -> Path:
    return run_dir / "topology" / split / f"epoch={epoch:04d}.parquet"


def topology_epochs(run_dir: str | Path, split: str) -> list[int]:
    """Epochs whose diagrams are stored for ``split`` in ``run_dir``."""
    folder = Path(run_dir) / "topology" / split
    if not folder.is_dir():
        return []
    return sorted(int(p.stem.split("=")[1]) for p in folder.glob("epoch=*.parquet"))


def _diagram_table(split: str, epoch: int, losses: np.ndarray, graph: Graph) -> pl.DataFrame:
    parts = []
    for tree, build in (("join", join_tree), ("split", split_tree)):
        df = build(graph, losses).diagram().to_polars().drop("kind")
        parts.append(df.with_columns(tree=pl.lit(tree), split=pl.lit(split), epoch=pl.lit(epoch)))
    return pl.concat(parts).select(list(_SCHEMA)).cast(_SCHEMA)  # type: ignore[arg-type]


def _write_atomic(df: pl.DataFrame, path: Path) -> None:
    write_parquet(df, path)


def _epoch_losses(run_dir: Path, split: str, epoch: int) -> np.ndarray:
    from sampletopo.record import read_loss_table

    df = read_loss_table(run_dir, split, epoch, columns=["loss"])
    return df["loss"].to_numpy().astype(np.float64)


_WORKER_GRAPHS: dict[str, Graph] = {}


def _work(task: tuple[str, str, list[int], str]) -> list[tuple[int, str | None]]:
    """Compute and store the diagrams of some epochs of one run and split (runs in a worker)."""
    run_dir, split, epochs, graph_path = task
    graph = _WORKER_GRAPHS.get(graph_path)
    if graph is None:
        graph = _WORKER_GRAPHS.setdefault(graph_path, Graph.load(graph_path))
    out: list[tuple[int, str | None]] = []
    for ep in epochs:
        losses = _epoch_losses(Path(run_dir), split, ep)
        bad = ~np.isfinite(losses)
        if bad.any():
            out.append(
                (
                    ep,
                    f"{int(bad.sum())} non-finite loss(es), first at sample {int(np.flatnonzero(bad)[0])}",
                )
            )
            continue
        if losses.shape[0] != graph.n:
            out.append(
                (ep, f"{losses.shape[0]} samples but the split's graph has {graph.n} vertices")
            )
            continue
        _write_atomic(
            _diagram_table(split, ep, losses, graph), _epoch_path(Path(run_dir), split, ep)
        )
        out.append((ep, None))
    return out


def _read_meta(run_dir: Path) -> tuple[dict[str, Any], str | None]:
    """``topology/meta.json`` (``{}`` when missing), and why it is damaged (``None`` if sound)."""
    path = run_dir / "topology" / "meta.json"
    if not path.is_file():
        return {}, None
    try:
        meta = read_json(path, fix="")
    except DamagedFileError as exc:
        return {}, exc.why
    if not isinstance(meta, dict) or not all(isinstance(v, dict) for v in meta.values()):
        return {}, "it is JSON but not the graph settings of each split"
    return meta, None


def graph_digest(graph: Graph) -> str:
    """A short hash of a graph's edges: tells which graph stored diagrams were computed on."""
    import hashlib

    h = hashlib.blake2b(digest_size=8)
    h.update(np.int64(graph.n).tobytes())
    h.update(np.ascontiguousarray(graph.edges, dtype=np.int64).tobytes())
    return h.hexdigest()


def _drop_unknown_diagrams(run_dir: Path, splits: Sequence[str], why: str) -> None:
    """Delete stored diagrams whose graph settings are unknown, so they are computed again."""
    stored = [p for s in splits for p in sorted((run_dir / "topology" / s).glob("epoch=*.parquet"))]
    for p in stored:
        p.unlink()
    if stored:
        warnings.warn(
            DamagedFileWarning(
                f"{why}; the kNN graph settings of the {len(stored)} stored diagram table(s) of "
                f"{', '.join(splits)} in run {run_dir.name} are unknown, so they were deleted and "
                "are computed again."
            ),
            stacklevel=3,
        )


def _check_meta(run_dir: Path, split: str, graph: Graph, features: str) -> None:
    path = run_dir / "topology" / "meta.json"
    meta, why = _read_meta(run_dir)
    if why is not None:
        # The settings of every split's diagrams were in the damaged file: drop them all.
        _drop_unknown_diagrams(run_dir, SPLITS, f"{str(path)!r} is damaged ({why})")
        path.unlink()
    elif split not in meta:
        # Diagrams are only ever written after their settings: without them, this is damage.
        _drop_unknown_diagrams(
            run_dir, [split], f"{str(path)!r} is missing or has no entry for {split!r}"
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
        stored = topology_epochs(run_dir, split)
        for e in stored:
            _epoch_path(run_dir, split, e).unlink()
        if stored:
            warnings.warn(
                TopologyWarning(
                    f"Run {run_dir.name}: its {len(stored)} stored {split} diagram table(s) were "
                    "computed on a kNN graph with other edges (an older sampletopo's graph "
                    f"rule, or a changed graph cache) than today's graph for k={graph.k}, "
                    f"features={features!r}; they were deleted and are computed again."
                ),
                stacklevel=3,
            )
        old = None
    if old is not None and old != mine and topology_epochs(run_dir, split):
        raise SampletopoError(
            f"{str(run_dir)!r} already holds {split} diagrams computed with {old}; now asked for "
            f"{mine}. Use the same settings, or pass overwrite=True (--overwrite) to recompute all."
        )
    meta[split] = mine
    write_atomic(path, lambda fh: fh.write(json.dumps(meta, indent=2).encode()))


def compute_topology(
    run_dirs: str | Path | Iterable[str | Path],
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
        kNN graph settings, see :func:`run_graph`.
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
    runs = _runs(run_dirs)
    with contextlib.ExitStack() as locks:
        for rd in runs:
            locks.enter_context(
                lock_folder(rd / "topology", what="computing topology", role="topology folder")
            )
        return _compute_topology(
            runs,
            splits=splits,
            k=k,
            features=features,
            jobs=jobs,
            overwrite=overwrite,
            progress=progress,
        )


def _compute_topology(
    runs: list[Path],
    *,
    splits: Sequence[str],
    k: int,
    features: str,
    jobs: int,
    overwrite: bool,
    progress: bool,
) -> pl.DataFrame:
    """:func:`compute_topology` once the runs' topology folders are locked."""
    jobs = check_int_range("jobs", jobs, 1, 256, where="compute_topology")
    for s in splits:
        if s not in SPLITS:
            raise SampletopoError(f"The 'splits' parameter holds {s!r}; allowed: {SPLITS}.")
    from sampletopo.record import _LOSS_FIX, LOSS_SCHEMA, _split_size, epoch_file, recorded_epochs

    tasks: list[tuple[str, str, list[int], str]] = []
    rows: list[dict[str, Any]] = []
    for rd in runs:
        for s in splits:
            eps = recorded_epochs(rd, s)
            if not eps:
                warnings.warn(
                    f"Run {rd.name}: no {s} losses recorded; skipped.",
                    TopologyWarning,
                    stacklevel=2,
                )
                continue
            gap = missing_epochs(rd, s)
            if gap:
                warnings.warn(
                    f"Run {rd.name}: {s} losses are recorded for epochs {_ranges(eps)}; "
                    f"epoch(s) {_ranges(gap)} are missing, so their topology is missing too and "
                    "the curves skip them. Record them (the same `sampletopo train` or `sampletopo "
                    "record` command records missing epochs), then run topology again.",
                    TopologyWarning,
                    stacklevel=2,
                )
            # Every table is checked before any work (footer and checksum: cheap), so a
            # damaged one is named at once, not after the graph is built or in a worker.
            n = _split_size(rd, s)
            for e in eps:
                check_parquet(epoch_file(rd, s, e), LOSS_SCHEMA, rows=n, fix=_LOSS_FIX)
            graph = run_graph(rd, s, k=k, features=features)
            if overwrite:
                for p in (rd / "topology" / s).glob("epoch=*.parquet"):
                    p.unlink()
            _check_meta(rd, s, graph, features)
            done = set(topology_epochs(rd, s))
            for e in sorted(done):
                why = parquet_problem(_epoch_path(rd, s, e), _SCHEMA)
                if why is not None:
                    # Derived from the losses: recomputed instead of refused.
                    _epoch_path(rd, s, e).unlink()
                    done.discard(e)
                    warnings.warn(
                        DamagedFileWarning(
                            f"{str(_epoch_path(rd, s, e))!r} is damaged: {why}; it is computed "
                            "again."
                        ),
                        stacklevel=2,
                    )
            todo = [e for e in eps if e not in done]
            rows += [
                {"run": rd.name, "split": s, "epoch": e, "status": "cached"}
                for e in eps
                if e in done
            ]
            gpath = str(
                knn_cache_path(
                    rd.resolve().parent / "graphs",
                    fingerprint=str(graph.fingerprint),
                    k=int(graph.k or 0),
                    metric=str(graph.metric),
                )
            )
            _WORKER_GRAPHS[gpath] = graph  # the serial path reuses it instead of re-reading
            step = max(1, len(todo) // (4 * jobs)) if jobs > 1 else max(1, len(todo))
            for i in range(0, len(todo), step):
                tasks.append((str(rd), s, todo[i : i + step], gpath))
    total = sum(len(t[2]) for t in tasks)
    bar = tqdm(total=total, desc="topology", unit="epoch", disable=not progress or total == 0)
    results: list[tuple[tuple[str, str, list[int], str], list[tuple[int, str | None]]]] = []
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
    for (run_dir, s, _, _), res in results:
        for ep, why in res:
            if why is not None:
                warnings.warn(
                    f"Run {Path(run_dir).name}, {s} epoch {ep}: {why}; its topology was skipped, the "
                    "other epochs were computed.",
                    TopologyWarning,
                    stacklevel=2,
                )
            rows.append(
                {
                    "run": Path(run_dir).name,
                    "split": s,
                    "epoch": ep,
                    "status": "computed" if why is None else f"skipped: {why}",
                }
            )
    schema = {"run": pl.String, "split": pl.String, "epoch": pl.Int64, "status": pl.String}
    return pl.DataFrame(rows, schema=schema).sort(["run", "split", "epoch"])


def load_diagrams(
    run_dirs: str | Path | Iterable[str | Path],
    *,
    split: str | None = None,
    tree: str | None = None,
    lazy: bool = False,
) -> pl.DataFrame | pl.LazyFrame:
    """Stored diagrams of one or more runs as one long table (adds a ``run`` column).

    Scanned lazily with polars: with ``lazy=True`` nothing is read until ``.collect()``.
    """
    frames = []
    for rd in _runs(run_dirs):
        splits = [split] if split else list(SPLITS)
        files = [_epoch_path(rd, s, e) for s in splits for e in topology_epochs(rd, s)]
        if files:  # each verified now (footer, checksum), not at collect time
            frames.append(
                scan_parquet(files, _SCHEMA, fix=_DIAGRAM_FIX).with_columns(run=pl.lit(rd.name))
            )
    if not frames:
        raise SampletopoError(
            f"No stored diagrams under {_paths_text(run_dirs)}. Run `sampletopo topology "
            "RUN...` first."
        )
    lf = pl.concat(frames)
    if tree is not None:
        if tree not in TREES:
            raise SampletopoError(f"The 'tree' parameter must be one of {TREES}. Got {tree!r}.")
        lf = lf.filter(pl.col("tree") == tree)
    lf = lf.select(["run", *_SCHEMA])
    return lf if lazy else lf.collect()


def diagram_at(run_dir: str | Path, split: str, tree: str, epoch: int) -> Diagram:
    """The stored diagram of one run, split (``"train"``/``"val"``), tree (``"join"``: valleys,
    ``"split"``: peaks) and epoch."""
    if split not in SPLITS:
        raise SampletopoError(f"diagram_at: 'split' must be one of {SPLITS}. Got {split!r}.")
    if tree not in ("join", "split"):
        raise SampletopoError(
            f"diagram_at: 'tree' must be 'join' (sublevel sets: valleys, learned regions) or "
            f"'split' (superlevel sets: peaks, hard regions). Got {tree!r}."
        )
    rd = Path(run_dir)
    path = _epoch_path(rd, split, int(epoch))
    if not path.is_file():
        have = topology_epochs(rd, split)
        raise SampletopoError(
            f"Run {rd.name} has no {split} diagram for epoch {epoch}. Epochs with diagrams: "
            f"{_ranges(have) if have else 'none (run `sampletopo topology` first)'}."
        )
    df = read_parquet(path, _SCHEMA, fix=_DIAGRAM_FIX).filter(pl.col("tree") == tree)
    return Diagram.from_polars(df.rename({"tree": "kind"}))


def _paths_text(paths: Any) -> str:
    """Paths as plain quoted strings for messages (never ``PosixPath(...)``)."""
    if isinstance(paths, (str, Path)):
        return repr(str(paths))
    return ", ".join(repr(str(p)) for p in paths)


def _ranges(values: Sequence[int]) -> str:
    """Compact '0-5, 7, 9-12' text for a sorted list of ints."""
    out, start, prev = [], None, None
    for v in values:
        if start is None:
            start = prev = v
        elif v == prev + 1:  # type: ignore[operator]
            prev = v
        else:
            out.append(f"{start}-{prev}" if prev != start else f"{start}")
            start = prev = v
    if start is not None:
        out.append(f"{start}-{prev}" if prev != start else f"{start}")
    return ", ".join(out)


def summarize(run_dirs: str | Path | Iterable[str | Path], *, write: bool = True) -> pl.DataFrame:
    """Per run x split x tree x epoch: total persistence (p=1, 2), pairs, largest persistence,
    mean loss and accuracy.

    With ``write=True`` each run's rows are also stored in ``<run>/topology/summary.parquet``.
    An epoch whose diagram has no finite pair (e.g. a constant loss) gets zeros, not a gap.
    """
    from sampletopo.record import load_losses

    runs = _runs(run_dirs)
    finite = pl.col("persistence").is_finite()
    out = []
    for rd in runs:
        lf = load_diagrams(rd, lazy=True)
        assert isinstance(lf, pl.LazyFrame)
        topo = lf.group_by(["run", "split", "tree", "epoch"]).agg(
            total_persistence_1=pl.col("persistence").filter(finite).sum(),
            total_persistence_2=(pl.col("persistence").filter(finite) ** 2).sum(),
            n_pairs=finite.sum().cast(pl.Int64),
            max_persistence=pl.col("persistence").filter(finite).max().fill_null(0.0),
            n_essential=(~finite).sum().cast(pl.Int64),
        )
        ll = load_losses(rd, lazy=True)
        assert isinstance(ll, pl.LazyFrame)
        stats = ll.group_by(["run", "split", "epoch"]).agg(
            mean_loss=pl.col("loss").mean(), accuracy=pl.col("correct").cast(pl.Float64).mean()
        )
        try:
            df = (
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
            raise SampletopoError(
                f"A loss or diagram table of run {str(rd)!r} cannot be read "
                f"({' '.join(str(exc).split())[:200]}). Record the run's losses again, or delete "
                "its topology folder and run `sampletopo topology` again."
            ) from exc
        if write:
            with lock_folder(rd / "topology", what="summarizing topology", role="topology folder"):
                _write_atomic(df, rd / "topology" / "summary.parquet")
        out.append(df)
    return pl.concat(out).sort(["run", "split", "tree", "epoch"])


def wasserstein_to_reference(
    run_dirs: str | Path | Iterable[str | Path],
    *,
    reference: int | str = "final",
    orders: Sequence[float] = (1, 2),
    write: bool = True,
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
        (``w1``, ``w2``). Stored per run in ``<run>/topology/wasserstein.parquet`` when ``write``.
    """
    runs = _runs(run_dirs)
    rows: list[dict[str, Any]] = []
    work = []
    for rd in runs:
        for s in SPLITS:
            eps = topology_epochs(rd, s)
            if not eps:
                continue
            if reference == "final":
                ref = eps[-1]
            else:
                ref = int(reference)
                if ref not in eps:
                    raise SampletopoError(
                        f"Reference epoch {ref} has no {s} diagram in run {rd.name}. Epochs with "
                        f"diagrams: {_ranges(eps)}."
                    )
            work.append((rd, s, eps, ref))
    total = sum(len(w[2]) for w in work)
    with tqdm(total=total, desc="wasserstein", unit="epoch", disable=not progress) as bar:
        for rd, s, eps, ref in work:
            tables = pl.concat(
                [read_parquet(_epoch_path(rd, s, e), _SCHEMA, fix=_DIAGRAM_FIX) for e in eps]
            )
            by_epoch = tables.partition_by(["epoch", "tree"], as_dict=True)
            for tree in TREES:
                ref_d = Diagram.from_polars(by_epoch[(ref, tree)].rename({"tree": "kind"}))
                for e in eps:
                    d = Diagram.from_polars(by_epoch[(e, tree)].rename({"tree": "kind"}))
                    row: dict[str, Any] = {
                        "run": rd.name,
                        "split": s,
                        "tree": tree,
                        "epoch": e,
                        "reference_epoch": ref,
                    }
                    for o in orders:
                        row[f"w{o:g}"] = 0.0 if e == ref else wasserstein(d, ref_d, order=o)
                    rows.append(row)
            bar.update(len(eps))
    df = pl.DataFrame(rows).sort(["run", "split", "tree", "epoch"]) if rows else pl.DataFrame()
    if write and rows:
        for rd in runs:
            part = df.filter(pl.col("run") == rd.name)
            if part.height:
                with lock_folder(
                    rd / "topology", what="summarizing topology", role="topology folder"
                ):
                    _write_atomic(part, rd / "topology" / "wasserstein.parquet")
    return df


def check_comparable(run_dirs: str | Path | Iterable[str | Path]) -> list[Path]:
    """Refuse runs recorded on different data (dataset or split fingerprints differ).

    Returns the run folders when they can be compared side by side.
    """
    runs = _runs(run_dirs)
    seen: dict[str, tuple[str, Any]] = {}
    from sampletopo.record import read_manifest

    for rd in runs:
        man = read_manifest(rd)
        if man is None:
            continue
        for s, info in man["splits"].items():
            fp = info.get("fingerprint")
            if s in seen and seen[s][1] != fp:
                raise SampletopoError(
                    f"Runs {seen[s][0]} and {rd.name} were recorded on different {s} data "
                    f"({man.get('dataset')!r}: fingerprint {fp} vs {seen[s][1]}). Compare runs of one "
                    "dataset and split, or draw them in separate figure sets."
                )
            seen.setdefault(s, (rd.name, fp))
    return runs


def missing_epochs(run_dir: str | Path, split: str) -> list[int]:
    """Epochs between the first and last recorded one that have no loss table."""
    from sampletopo.record import recorded_epochs

    eps = recorded_epochs(run_dir, split)
    if not eps:
        return []
    return sorted(set(range(eps[0], eps[-1] + 1)) - set(eps))
