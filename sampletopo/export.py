"""Tables of a study as one file for a paper or another tool: CSV or Parquet.

:func:`export_table` gathers one kind of table over runs (of one or several experiment
folders; runs of the same name are labelled ``experiment/run``, see
:func:`sampletopo.runs.run_labels`), :func:`write_table` writes it. What can be exported
(:data:`EXPORTS`):

- ``summaries``: per run x split x tree x epoch, :func:`sampletopo.analysis.summarize`;
- ``replicates``: per variant x epoch, mean, sd, CI and n over seeds
  (:func:`sampletopo.replicates.replicate_summary`);
- ``diagrams``: every stored persistence pair (:func:`sampletopo.readers.read_diagrams`);
- ``regions``: the regions tables ``sampletopo samples`` stored, with their ``split`` and
  ``epoch``;
- ``comparisons``: :func:`sampletopo.replicates.compare`.

CSV has no nested values: list columns (a region's members) are written as space-separated
numbers, struct lists (class counts) as ``label:count`` pairs. Parquet keeps them as they are.
This module computes nothing new.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import polars as pl

from sampletopo._errors import DamagedFileError, RunFolderError
from sampletopo._runfiles import parquet_problem
from sampletopo._validation import check_choice, check_split, check_tree, invalid
from sampletopo.runs import SPLITS, TABLE_SUFFIX, PathLike, parse_epoch, run_labels, runs_in

__all__ = ["EXPORTS", "FORMATS", "check_table_file", "export_table", "write_table"]

#: What :func:`export_table` exports, with what it is.
EXPORTS: dict[str, str] = {
    "summaries": "per run, split, tree and epoch: total persistence, pairs, mean loss, accuracy",
    "replicates": "per variant and epoch: mean, sd, bootstrap CI and n over its seeds",
    "diagrams": "every stored persistence pair",
    "regions": "the regions tables of `sampletopo samples`",
    "comparisons": "per pair of variants: difference, CI, permutation p-value, verdict",
}
FORMATS = ("csv", "parquet")
_SUFFIXES = {".csv": "csv", TABLE_SUFFIX: "parquet"}


def export_table(runs: PathLike | Iterable[PathLike], what: str, **options: Any) -> pl.DataFrame:
    """The ``what`` table (see :data:`EXPORTS`) of ``runs`` as one polars table.

    ``options`` go to :func:`~sampletopo.replicates.replicate_summary` (``replicates``) or
    :func:`~sampletopo.replicates.compare` (``comparisons``); ``summaries`` and ``diagrams``
    take ``split`` and ``tree`` (keep those rows), ``regions`` none.
    """
    check_choice("what", what, tuple(EXPORTS), where="export_table", meaning=EXPORTS)
    if what in ("replicates", "comparisons"):
        from sampletopo.replicates import compare, replicate_summary

        if what == "replicates":
            metrics = options.pop("metric", None)
            if metrics is not None:
                options["metrics"] = [metrics]
            return replicate_summary(runs, **options)
        return compare(runs, **options)
    rows: dict[str, Any] = {k: options.pop(k) for k in ("split", "tree") if k in options}
    if rows and what == "regions":
        options.update(rows)  # refused below with the rest
    if options:
        allowed = "split and tree" if what != "regions" else "none"
        raise invalid(
            "options",
            f"{allowed} for what={what!r} (metric and epochs are for 'replicates' and "
            "'comparisons')",
            sorted(options),
            where="export_table",
        )
    if "split" in rows:
        check_split(rows["split"], where="export_table")
    if "tree" in rows:
        check_tree(rows["tree"], where="export_table")
    rs = runs_in(runs, label_clashes=True)
    labels = run_labels(rs)
    parts = []
    for run, label in zip(rs, labels, strict=True):
        if what == "summaries":
            from sampletopo.analysis import summarize

            part = summarize(run, write=False)
        elif what == "diagrams":
            from sampletopo.readers import read_diagrams

            part = read_diagrams(run)
        else:
            part = _regions(run)
        for col, value in rows.items():  # --split/--tree keep those rows
            part = part.filter(pl.col(col) == value) if part.height else part
        if part.height:
            parts.append(part.with_columns(run=pl.lit(label)).select("run", pl.exclude("run")))
    if not parts:
        how = "`sampletopo samples`" if what == "regions" else "`sampletopo topology`"
        raise RunFolderError(
            f"No {what} in {', '.join(labels[:4])}{' ...' if len(labels) > 4 else ''}: run "
            f"{how} on them first."
        )
    return pl.concat(parts, how="diagonal_relaxed")


def _regions(run: Any) -> pl.DataFrame:
    fix = "Write it again with `sampletopo samples` (it is computed from the diagrams)."
    parts = []
    for f in run.regions_files():
        why = parquet_problem(f, {})
        if why is not None:
            raise DamagedFileError(f, why, fix)
        split = next(s for s in SPLITS if f.name.startswith(f"{s}-"))
        epoch = parse_epoch(f.name[len(split) + 1 :], f.suffix)
        df = pl.read_parquet(f)
        parts.append(df.with_columns(split=pl.lit(split), epoch=pl.lit(epoch, dtype=pl.Int64)))
    if not parts:
        return pl.DataFrame()
    df = pl.concat(parts, how="diagonal_relaxed")
    return df.select("split", "epoch", pl.exclude("split", "epoch"))


def _flat(df: pl.DataFrame) -> pl.DataFrame:
    """``df`` with list columns as text, for CSV."""
    out = []
    for name, dtype in df.schema.items():
        col = pl.col(name)
        if isinstance(dtype, pl.List) and isinstance(dtype.inner, pl.Struct):
            fields = [f.name for f in dtype.inner.fields]
            pair = pl.format("{}:{}", *(pl.element().struct.field(f) for f in fields[:2]))
            out.append(col.list.eval(pair).list.join(" ").alias(name))
        elif isinstance(dtype, pl.List):
            out.append(col.list.eval(pl.element().cast(pl.String)).list.join(" ").alias(name))
        elif isinstance(dtype, pl.Struct):
            out.append(col.struct.json_encode().alias(name))
        else:
            out.append(col)
    return df.select(out)


def check_table_file(path: str | Path, format: str | None = None) -> str:
    """The format ``path`` is written in: ``format``, or the one its suffix names (``.csv``,
    ``.parquet``); a suffix that names another format than ``format`` is refused."""
    p = Path(path)
    named = _SUFFIXES.get(p.suffix.lower())
    fmt = format if format is not None else named
    if fmt is None:
        raise invalid(
            "path",
            f"a file ending in {' or '.join(_SUFFIXES)} (or give a format)",
            str(p),
            where="write_table",
            fix="Give format='csv' or 'parquet' (--format), or name the file so.",
        )
    check_choice("format", fmt, FORMATS, where="write_table")
    if named is not None and named != fmt:
        raise invalid(
            "format",
            f"the format the file name {p.name!r} says ({named})",
            format,
            where="write_table",
            fix=f"Name the file {p.stem}.{fmt}, or leave the format out.",
        )
    return fmt


def write_table(df: pl.DataFrame, path: str | Path, *, format: str | None = None) -> Path:
    """Write ``df`` to ``path`` as ``format`` (``"csv"`` or ``"parquet"``; default: from the
    file's suffix, see :func:`check_table_file`)."""
    from sampletopo._io import write_atomic

    p = Path(path)
    fmt = check_table_file(p, format)
    if fmt == "csv":
        flat = _flat(df)
        write_atomic(p, lambda fh: flat.write_csv(fh))
    else:
        write_atomic(p, lambda fh: df.write_parquet(fh))
    return p
