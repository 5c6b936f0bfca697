"""Reading what a run recorded: loss tables, the manifest and the run config.

Every reader checks what it reads (the Parquet footer and checksum of each table, see
:mod:`sampletopo._runfiles`; the manifest's and config's entries) and names a damaged file in one
:class:`~sampletopo._runfiles.DamagedFileError` with the fix. Where the files lie is known by
:mod:`sampletopo.runs`. Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from sampletopo._errors import SampletopoError
from sampletopo._runfiles import DamagedFileError, read_parquet, scan_parquet
from sampletopo.runs import LOSS_FIX, LOSS_SCHEMA, SPLITS, PathLike, as_run, find_runs

__all__ = [
    "load_losses",
    "loss_matrix",
    "read_loss_table",
    "read_manifest",
    "read_run_config",
    "recorded_epochs",
]


def read_manifest(run_dir: PathLike) -> dict[str, Any] | None:
    """The run's ``losses/manifest.json`` (dataset, mode, per split its size ``n`` and
    fingerprint), ``None`` when there is none; a damaged one raises :class:`DamagedFileError`."""
    return as_run(run_dir).read_manifest()


def read_run_config(run_dir: PathLike) -> dict[str, Any]:
    """The resolved ``config.toml`` of a run (variant) folder, as a dict.

    A ``data_file`` entry (a saved in-memory dataset, see :func:`sampletopo.runs.data_config`)
    is returned as an absolute path."""
    return as_run(run_dir).read_config()


def read_loss_table(
    run_dir: PathLike, split: str, epoch: int, *, columns: Sequence[str] | None = None
) -> pl.DataFrame:
    """One recorded loss table, sorted by sample, checked to read back whole.

    The file must have the columns of :data:`LOSS_SCHEMA` with their types, as many rows as the
    manifest gives for the split, and samples ``0 .. n-1`` once each; anything else raises a
    :class:`~sampletopo._runfiles.DamagedFileError` naming the file and how to record it again.

    Parameters
    ----------
    columns : sequence of str, optional
        Columns to return (``sample`` is always read); default all.
    """
    run = as_run(run_dir)
    path = run.loss_file(split, epoch)
    cols = list(LOSS_SCHEMA) if columns is None else list(dict.fromkeys(["sample", *columns]))
    n = run.split_size(split)
    df = read_parquet(path, LOSS_SCHEMA, columns=cols, rows=n, fix=LOSS_FIX).sort("sample")
    if not np.array_equal(df["sample"].to_numpy(), np.arange(df.height)):
        raise DamagedFileError(
            path, f"it does not hold samples 0..{df.height - 1} once each", LOSS_FIX
        )
    return df


def _check_split_arg(split: str | None) -> list[str]:
    if split is None:
        return list(SPLITS)
    if split not in SPLITS:
        raise SampletopoError(
            f"The 'split' parameter must be one of {SPLITS} or None. Got {split!r} instead."
        )
    return [split]


def recorded_epochs(run_dir: PathLike, split: str) -> list[int]:
    """Epochs of ``split`` recorded in the run folder ``run_dir``, sorted."""
    if split is None:
        raise SampletopoError(f"recorded_epochs: 'split' must be one of {SPLITS}. Got None.")
    _check_split_arg(split)
    return as_run(run_dir).loss_epochs(split)


def load_losses(
    run_dir: PathLike, *, split: str | None = None, lazy: bool = False
) -> pl.DataFrame | pl.LazyFrame:
    """A run's loss tables in long format.

    Parameters
    ----------
    run_dir : str or Path
        A run (variant) folder, or an experiment folder whose sub-folders are runs (their tables
        are concatenated).
    split : {"train", "val"}, optional
        Only this split; default both.
    lazy : bool
        Return a :class:`polars.LazyFrame` (nothing is read until ``.collect()``).

    Returns
    -------
    polars.DataFrame or polars.LazyFrame
        Columns ``run`` (the run folder's name), ``split``, ``epoch``, ``sample``, ``label``,
        ``pred``, ``loss``, ``correct``, sorted by run, split, epoch, sample.
    """
    splits = _check_split_arg(split)
    frames = []
    for run in find_runs(run_dir):
        scans = []
        for s in splits:
            files = list(run.loss_files(s).values())
            if files:
                # Each table is verified now (footer and checksum), so a damaged one is
                # named here, not at collect time; see sampletopo._runfiles for the cost.
                scans.append(
                    scan_parquet(
                        files,
                        LOSS_SCHEMA,
                        rows=run.split_size(s),
                        fix=LOSS_FIX,
                        hive_partitioning=False,
                    )
                )
        if not scans:
            continue
        frames.append(pl.concat(scans).with_columns(run=pl.lit(run.name, dtype=pl.String)))
    cols = ["run", "split", "epoch", "sample", "label", "pred", "loss", "correct"]
    if not frames:
        raise SampletopoError(
            f"No loss tables for split(s) {splits} under {str(run_dir)!r}. Record some first."
        )
    lf = pl.concat(frames).select(cols).sort(["run", "split", "epoch", "sample"])
    if lazy:
        return lf
    try:
        return lf.collect()
    except pl.exceptions.PolarsError as exc:
        # Every table was verified when listed, so this one changed since, or predates
        # checksums; polars does not say which file.
        raise SampletopoError(
            f"A loss table under {str(run_dir)!r} cannot be read ({' '.join(str(exc).split())[:200]}). "
            f"Read the tables one by one with read_loss_table to find it. {LOSS_FIX}"
        ) from exc


def loss_matrix(run_dir: PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """A run's losses of one split as an (epochs x samples) array.

    Returns
    -------
    epochs : numpy.ndarray
        int64, shape ``(E,)``, sorted.
    losses : numpy.ndarray
        float64, shape ``(E, n_samples)``; row ``i`` is epoch ``epochs[i]``, column ``j`` is
        sample ``j``. Non-finite losses are kept.
    """
    _check_split_arg(split)
    rd = as_run(run_dir)
    files = rd.loss_files(split)
    if not files:
        raise SampletopoError(
            f"No loss tables for split {split!r} in {str(rd)!r}. Record some first."
        )
    rows = []
    n_ref: int | None = None
    for ep, path in files.items():
        df = read_loss_table(rd, split, ep, columns=["loss"])
        n = df.height
        if n_ref is None:
            n_ref = n
        if n != n_ref:
            raise DamagedFileError(
                path,
                f"it holds {n} samples where the table of epoch {next(iter(files))} holds "
                f"{n_ref}: the run folder mixes data",
                LOSS_FIX,
            )
        rows.append(df["loss"].to_numpy().astype(np.float64))
    return np.asarray(list(files), dtype=np.int64), np.vstack(rows)
