"""Reading back what runs recorded and what was computed from them: one pattern for every table.

The pattern is polars' ``read_*`` / ``scan_*`` pair: ``read_*`` returns a
:class:`polars.DataFrame` (or the typed object, :func:`read_diagram` a
:class:`~sampletopo.diagrams.Diagram`), ``scan_*`` a :class:`polars.LazyFrame` that reads nothing
until ``.collect()``; one return type per function; the folders come first, every selector after
them is keyword-only. ``split`` is always the data split (``"train"``/``"val"``), ``tree`` the
merge tree (``"join"``: sublevel sets, valleys; ``"split"``: superlevel sets, peaks).

==================================  ==========================================================
reader                              what
==================================  ==========================================================
:func:`read_losses`,                every loss table of one or more runs, long format
:func:`scan_losses`
:func:`read_loss_matrix`            one split's losses as an (epochs x samples) array
:func:`read_loss_table`             one loss table
:func:`read_diagrams`,              every stored diagram of one or more runs, long format
:func:`scan_diagrams`
:func:`read_diagram`                one stored diagram
:func:`read_summaries`,             the tables ``sampletopo topology`` stored
:func:`read_wasserstein`
:func:`read_manifest`,              a run's manifest and config
:func:`read_run_config`
:func:`loss_epochs`,                the epochs recorded / whose diagrams are stored
:func:`diagram_epochs`
==================================  ==========================================================

Every reader checks what it reads (each table's Parquet footer and CRC-32 checksum, see
:mod:`sampletopo._runfiles`; the manifest's and config's entries) and names a damaged file in one
:class:`~sampletopo._runfiles.DamagedFileError` with the fix; a ``scan_*`` checks every file when
called, so a damaged one is named then, not at ``collect`` time. Where the files lie is known by
:mod:`sampletopo.runs`. Computing (``compute_topology``, ``summarize``, ...) is in
:mod:`sampletopo.analysis`; nothing here writes. The readers' former names still work for one
release (:mod:`sampletopo._deprecated`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import polars as pl

from sampletopo._deprecated import warn_renamed
from sampletopo._errors import RunFolderError
from sampletopo._exploding import exploding_flag
from sampletopo._runfiles import (
    DamagedFileError,
    check_parquet,
    parquet_problem,
    read_parquet,
    scan_parquet,
)
from sampletopo._validation import check_choice, check_int, check_tree, ranges_text
from sampletopo.diagrams import Diagram
from sampletopo.runs import (
    DIAGRAM_FIX,
    DIAGRAM_SCHEMA,
    LOSS_FIX,
    LOSS_SCHEMA,
    SPLITS,
    PathLike,
    as_run,
    diagram_rows,
    loss_rows,
    runs_in,
)

__all__ = [
    "check_loss_tables",
    "diagram_epochs",
    "loss_epochs",
    "read_diagram",
    "read_diagrams",
    "read_loss_matrix",
    "read_loss_table",
    "read_losses",
    "read_manifest",
    "read_run_config",
    "read_summaries",
    "read_wasserstein",
    "scan_diagrams",
    "scan_losses",
]

_LOSS_COLUMNS = ["run", "split", "epoch", "sample", "label", "pred", "loss", "correct"]


def _splits(split: Any, where: str, *, required: bool = False) -> list[str]:
    """``split`` checked: a list of one split, or both for ``None`` (when not ``required``)."""
    if split is None and not required:
        return list(SPLITS)
    choices = SPLITS if required else (*SPLITS, None)
    meaning = {None: "both"}
    return [check_choice("split", split, choices, where=where, meaning=meaning)]


def _tree(tree: Any, where: str) -> str:
    return check_tree(tree, where=where)


def _paths_text(paths: Any) -> str:
    """Paths as plain quoted strings for messages (never ``PosixPath(...)``)."""
    if isinstance(paths, (str, os.PathLike)):
        return repr(str(paths))
    return ", ".join(repr(str(p)) for p in paths)


# ---------------------------------------------------------------------------------------------
# A run's manifest, config and epochs


def read_manifest(run: PathLike) -> dict[str, Any] | None:
    """The run's ``losses/manifest.json`` (dataset, mode, per split its size ``n`` and
    fingerprint, the model's signature), ``None`` when there is none; a damaged one raises
    :class:`~sampletopo._runfiles.DamagedFileError`."""
    return as_run(run).read_manifest()


def read_run_config(run: PathLike) -> dict[str, Any]:
    """The resolved ``config.toml`` of a run (variant) folder, as a dict.

    Every entry the readers use is checked for its type. A ``data_file`` entry (a saved
    in-memory dataset, see :func:`sampletopo.runs.data_config`) is returned as an absolute path."""
    return as_run(run).read_config()


def loss_epochs(run: PathLike, *, split: str) -> list[int]:
    """Epochs of ``split`` recorded in the run folder ``run`` (those with a loss table), sorted."""
    _splits(split, "loss_epochs", required=True)
    return as_run(run).loss_epochs(split)


def diagram_epochs(run: PathLike, *, split: str) -> list[int]:
    """Epochs of ``split`` whose diagrams are stored in the run folder ``run``, sorted."""
    _splits(split, "diagram_epochs", required=True)
    return as_run(run).diagram_epochs(split)


# ---------------------------------------------------------------------------------------------
# Loss tables


def read_loss_table(
    run: PathLike,
    *args: Any,
    split: str | None = None,
    epoch: int | None = None,
    columns: Sequence[str] | None = None,
) -> pl.DataFrame:
    """One recorded loss table, sorted by sample, checked to read back whole.

    The file must have the columns of :data:`~sampletopo.runs.LOSS_SCHEMA` with their types, as
    many rows as the manifest gives for the split, and samples ``0 .. n-1`` once each; anything
    else raises a :class:`~sampletopo._runfiles.DamagedFileError` naming the file and how to
    record it again.

    Parameters
    ----------
    run : path or Run
        The run folder.
    split : {"train", "val"}
    epoch : int
        A recorded epoch of ``split``.
    columns : sequence of str, optional
        Columns to return (``sample`` is always read); default all.

    ``read_loss_table(run, split, epoch)``, positional as in sampletopo 0.1, still works for one
    release, with a :class:`DeprecationWarning`.
    """
    if args:  # the 0.1 signature: read_loss_table(run, split, epoch)
        warn_renamed("read_loss_table(run, split, epoch)", "read_loss_table(run, split=, epoch=)")
        split, epoch = (*args, epoch)[:2] if len(args) == 1 else args[:2]
    _splits(split, "read_loss_table", required=True)
    epoch = check_int("epoch", epoch, 0, None, where="read_loss_table")
    r = as_run(run)
    path = r.loss_file(str(split), epoch)
    cols = list(LOSS_SCHEMA) if columns is None else list(dict.fromkeys(["sample", *columns]))
    n = r.split_size(str(split))
    check = loss_rows(str(split), int(epoch), n)
    return read_parquet(
        path, LOSS_SCHEMA, columns=cols, rows=n, rows_check=check, fix=LOSS_FIX
    ).sort("sample")


def check_loss_tables(run: PathLike, *, split: str) -> None:
    """Check that every loss table of ``split`` reads back whole (footer, checksum, the split's
    size): cheap, no data is decoded. A damaged one raises
    :class:`~sampletopo._runfiles.DamagedFileError` naming it."""
    _splits(split, "check_loss_tables", required=True)
    r = as_run(run)
    n = r.split_size(split)
    for ep, path in r.loss_files(split).items():
        check_parquet(path, LOSS_SCHEMA, rows=n, rows_check=loss_rows(split, ep, n), fix=LOSS_FIX)


def scan_losses(runs: PathLike | Iterable[PathLike], *, split: str | None = None) -> pl.LazyFrame:
    """The loss tables of one or more runs in long format, lazily (see :func:`read_losses`).

    Every table is checked (footer and checksum) now; its rows are read at ``.collect()``.
    """
    splits = _splits(split, "scan_losses")
    frames = []
    for r in runs_in(runs):
        scans = [
            scan_parquet(
                list(files.values()),
                LOSS_SCHEMA,
                rows=(n := r.split_size(s)),
                rows_checks=[loss_rows(s, e, n) for e in files],
                fix=LOSS_FIX,
                hive_partitioning=False,
            )
            for s in splits
            if (files := r.loss_files(s))
        ]
        if scans:
            frames.append(pl.concat(scans).with_columns(run=pl.lit(r.name, dtype=pl.String)))
    if not frames:
        raise RunFolderError(
            f"No loss tables for split(s) {splits} under {_paths_text(runs)}. Record some first."
        )
    return pl.concat(frames).select(_LOSS_COLUMNS).sort(["run", "split", "epoch", "sample"])


def read_losses(runs: PathLike | Iterable[PathLike], *, split: str | None = None) -> pl.DataFrame:
    """The loss tables of one or more runs in long format.

    Parameters
    ----------
    runs : path, Run, or several
        Run (variant) folders, or experiment folders whose sub-folders are runs (their tables
        are concatenated; runs of one call must have distinct names).
    split : {"train", "val"}, optional
        Only this split; default both.

    Returns
    -------
    polars.DataFrame
        Columns ``run`` (the run folder's name), ``split``, ``epoch``, ``sample``, ``label``,
        ``pred``, ``loss``, ``correct``, sorted by run, split, epoch, sample.

    Examples
    --------
    >>> read_losses("runs/lr-study", split="val").filter(epoch=0)  # doctest: +SKIP
    """
    lf = scan_losses(runs, split=split)
    try:
        return lf.collect()
    except pl.exceptions.PolarsError as exc:
        # Every table was verified when listed, so this one changed since, or predates
        # checksums; polars does not say which file.
        raise RunFolderError(
            f"A loss table under {_paths_text(runs)} cannot be read "
            f"({' '.join(str(exc).split())[:200]}). Read the tables one by one with "
            f"read_loss_table to find it. {LOSS_FIX}"
        ) from exc


def read_loss_matrix(run: PathLike, *, split: str) -> tuple[np.ndarray, np.ndarray]:
    """A run's losses of one split as an (epochs x samples) array.

    Returns
    -------
    epochs : numpy.ndarray
        int64, shape ``(E,)``, sorted.
    losses : numpy.ndarray
        float64, shape ``(E, n_samples)``; row ``i`` is epoch ``epochs[i]``, column ``j`` is
        sample ``j``. Non-finite losses are kept.
    """
    _splits(split, "read_loss_matrix", required=True)
    r = as_run(run)
    files = r.loss_files(split)
    if not files:
        raise RunFolderError(
            f"No loss tables for split {split!r} in {str(r.path)!r}. Record some first."
        )
    rows = []
    n_ref: int | None = None
    for ep, path in files.items():
        df = read_loss_table(r, split=split, epoch=ep, columns=["loss"])
        if n_ref is None:
            n_ref = df.height
        if df.height != n_ref:
            raise DamagedFileError(
                path,
                f"it holds {df.height} samples where the table of epoch {next(iter(files))} "
                f"holds {n_ref}: the run folder mixes data",
                LOSS_FIX,
            )
        rows.append(df["loss"].to_numpy().astype(np.float64))
    return np.asarray(list(files), dtype=np.int64), np.vstack(rows)


# ---------------------------------------------------------------------------------------------
# Diagram tables


def scan_diagrams(
    runs: PathLike | Iterable[PathLike], *, split: str | None = None, tree: str | None = None
) -> pl.LazyFrame:
    """The stored diagrams of one or more runs in long format, lazily (see
    :func:`read_diagrams`). Every table is checked (footer and checksum) now."""
    splits = _splits(split, "scan_diagrams")
    frames = []
    for r in runs_in(runs):
        files = {(s, e): p for s in splits for e, p in r.diagram_files(s).items()}
        if files:
            checks = [diagram_rows(s, e) for s, e in files]
            lf = scan_parquet(
                list(files.values()), DIAGRAM_SCHEMA, rows_checks=checks, fix=DIAGRAM_FIX
            )
            frames.append(lf.with_columns(run=pl.lit(r.name)))
    if not frames:
        raise RunFolderError(
            f"No stored diagrams under {_paths_text(runs)}. Run `sampletopo topology RUN...` first."
        )
    lf = pl.concat(frames)
    if tree is not None:
        lf = lf.filter(pl.col("tree") == _tree(tree, "scan_diagrams"))
    return lf.select(["run", *DIAGRAM_SCHEMA])


def read_diagrams(
    runs: PathLike | Iterable[PathLike], *, split: str | None = None, tree: str | None = None
) -> pl.DataFrame:
    """The stored diagrams of one or more runs as one long table.

    Parameters
    ----------
    runs : path, Run, or several
        Run folders or experiment folders whose topology was computed
        (:func:`sampletopo.analysis.compute_topology`).
    split : {"train", "val"}, optional
        Only this data split; default both.
    tree : {"join", "split"}, optional
        Only this merge tree; default both.

    Returns
    -------
    polars.DataFrame
        ``run``, then the columns of :data:`~sampletopo.runs.DIAGRAM_SCHEMA` (``split``,
        ``tree``, ``epoch``, ``birth``, ``death``, ``persistence``, ``birth_sample``,
        ``death_sample``), one row per pair.
    """
    return scan_diagrams(runs, split=split, tree=tree).collect()


def read_diagram(run: PathLike, *, split: str, tree: str, epoch: int) -> Diagram:
    """The stored diagram of one run, data split (``"train"``/``"val"``), tree (``"join"``:
    valleys, ``"split"``: peaks) and epoch.

    Examples
    --------
    >>> read_diagram("runs/lr-study/lr=0.1", split="val", tree="split", epoch=20)  # doctest: +SKIP
    Diagram(tree='split', pairs=41, essential=1)
    """
    _splits(split, "read_diagram", required=True)
    _tree(tree, "read_diagram")
    r = as_run(run)
    path = r.diagram_file(split, int(epoch))
    if not path.is_file():
        have = r.diagram_epochs(split)
        raise RunFolderError(
            f"Run {r.name} has no {split} diagram for epoch {epoch}. Epochs with diagrams: "
            f"{ranges_text(have) if have else 'none (run `sampletopo topology` first)'}."
        )
    df = read_parquet(
        path, DIAGRAM_SCHEMA, rows_check=diagram_rows(split, int(epoch)), fix=DIAGRAM_FIX
    ).filter(pl.col("tree") == tree)
    return Diagram.from_polars(df, tree=tree)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Stored summaries


def _read_stored(runs: PathLike | Iterable[PathLike], which: str) -> pl.DataFrame:
    parts = []
    for r in runs_in(runs):
        path = r.summary_file if which == "summary" else r.wasserstein_file
        if not path.is_file():
            raise RunFolderError(
                f"Run {r.name} has no stored {which} table ({str(path)!r}). Run `sampletopo "
                "topology` on it first."
            )
        fix = f"It is computed from the diagrams: run `sampletopo topology` on run {r.name} again."
        why = parquet_problem(path, {})  # footer and checksum, before its columns are read
        if why is not None:
            raise DamagedFileError(path, why, fix)
        part = read_parquet(path, {}, columns=list(pl.read_parquet_schema(path)), fix=fix)
        if which == "summary" and "exploding" not in part.columns and "mean_loss" in part.columns:
            # Stored before the flag existed: the same rule on its stored means.
            part = part.with_columns(exploding=exploding_flag(over=["run", "split", "tree"]))
        parts.append(part)
    return pl.concat(parts, how="diagonal_relaxed").sort(["run", "split", "tree", "epoch"])


def read_summaries(runs: PathLike | Iterable[PathLike]) -> pl.DataFrame:
    """The summary tables that :func:`sampletopo.analysis.summarize` stored, one row per run x
    split x tree x epoch (see there for the columns), checked to read back whole."""
    return _read_stored(runs, "summary")


def read_wasserstein(runs: PathLike | Iterable[PathLike]) -> pl.DataFrame:
    """The distance tables that :func:`sampletopo.analysis.wasserstein_to_reference` stored,
    one row per run x split x tree x epoch, checked to read back whole."""
    return _read_stored(runs, "wasserstein")
