"""Reading a run folder's files back: the whole file, or one error that names it and the fix.

Every reader of a stored run file (loss and diagram tables, ``losses/manifest.json``,
``topology/meta.json``) goes through :func:`read_parquet`, :func:`check_parquet` or
:func:`read_json`, so a truncated, garbage, empty or wrong-schema file gives one
:class:`DamagedFileError` naming the file, what is wrong with it and what to do, instead of a
traceback from deep inside polars or pyarrow. Nothing here knows what the files mean: the callers
pass the columns they need and the fix that fits the file.

How "reads back whole" is checked, cheaply. A Parquet file keeps its schema and row count in a
footer at its end, behind a magic number; a file cut short or overwritten loses the footer.
:func:`parquet_problem` reads only that footer (``pyarrow.parquet.read_metadata``) and compares
the columns and their types, and the row count when the caller knows it. Measured on a
50,000-row loss table (about 500 KB) on the shared 2-core development machine with
``benchmarks/bench_check_table.py``: 0.15-0.17 ms for the footer check (half of it turning the
Arrow schema into polars types), against 1.3-1.8 ms to read the whole table; checking every table
of a 200-epoch run (400 tables) costs about 65 ms. Not caught by this check: bytes changed
inside a data page (Parquet pages as written here carry no checksum), which reads back as other
numbers; the atomic writes (:mod:`sampletopo._io`) make that kind of damage a storage fault
rather than a killed run.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from sampletopo._errors import SampletopoError

__all__ = [
    "DamagedFileError",
    "DamagedFileWarning",
    "check_parquet",
    "move_aside",
    "parquet_problem",
    "read_json",
    "read_parquet",
]

# OS errors that are about the path, not the file's content: the command line reports those as
# path errors, so they pass through unchanged.
_PATH_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


class DamagedFileError(SampletopoError):
    """A run file that does not read back whole; ``path`` is the file, the message says the fix."""

    def __init__(self, path: str | Path, why: str, fix: str) -> None:
        self.path = Path(path)
        self.why = why
        self.fix = fix
        super().__init__(f"{str(self.path)!r} is damaged: {why}. {fix}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Raised in topology worker processes too: rebuild from the parts, not the message.
        return (type(self), (self.path, self.why, self.fix))


class DamagedFileWarning(RuntimeWarning):
    """A damaged run file was set aside or recomputed; the message names it."""


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] + ("..." if len(text) > 200 else "")


def _not_parquet(path: Path, exc: BaseException) -> str:
    size = path.stat().st_size
    if size == 0:
        return "it is empty (0 bytes)"
    with open(path, "rb") as fh:
        fh.seek(max(size - 4, 0))
        tail = fh.read(4)
    if tail != b"PAR1":
        return (
            f"it is not a whole Parquet file ({size:,} bytes with no Parquet footer at the end: "
            "cut short, or overwritten)"
        )
    return f"its Parquet footer cannot be read ({_short(exc)})"


def parquet_problem(
    path: str | Path, schema: Mapping[str, Any], *, rows: int | None = None
) -> str | None:
    """Why the Parquet file ``path`` does not read back whole, or ``None`` if its footer is sound.

    Reads the footer only (see the module docstring for the cost). ``schema`` holds the columns
    that must be there with exactly these polars types (others may be there too); ``rows`` is the
    row count the file must have, when known.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        meta = pq.read_metadata(path)
    except _PATH_ERRORS:
        raise
    except (OSError, ValueError, pa.ArrowException) as exc:
        return _not_parquet(Path(path), exc)
    try:
        have = pl.from_arrow(meta.schema.to_arrow_schema().empty_table()).schema  # type: ignore[union-attr]
    except Exception as exc:  # noqa: BLE001 -- any type polars cannot take is a wrong schema
        return f"its columns cannot be read ({_short(exc)})"
    missing = [c for c in schema if c not in have]
    if missing:
        return f"it lacks the column(s) {missing} (it has {list(have)})"
    wrong = [f"{c} is {have[c]}, not {schema[c]}" for c in schema if have[c] != schema[c]]
    if wrong:
        return f"its columns have other types ({'; '.join(wrong)})"
    if rows is not None and meta.num_rows != rows:
        return f"it holds {meta.num_rows} rows where {rows} are expected"
    return None


def check_parquet(
    path: str | Path, schema: Mapping[str, Any], *, rows: int | None = None, fix: str
) -> None:
    """Raise :class:`DamagedFileError` (ending in ``fix``) if :func:`parquet_problem` finds one."""
    why = parquet_problem(path, schema, rows=rows)
    if why is not None:
        raise DamagedFileError(path, why, fix)


def read_parquet(
    path: str | Path,
    schema: Mapping[str, Any],
    *,
    columns: list[str] | None = None,
    rows: int | None = None,
    fix: str,
) -> pl.DataFrame:
    """The columns ``columns`` (default: those of ``schema``) of a checked Parquet file.

    The footer is checked first (:func:`check_parquet`); a failure while reading the data after
    that is reported the same way.
    """
    check_parquet(path, schema, rows=rows, fix=fix)
    try:
        return pl.read_parquet(path, columns=columns if columns is not None else list(schema))
    except _PATH_ERRORS:
        raise
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DamagedFileError(path, f"its data cannot be read ({_short(exc)})", fix) from exc


def read_json(path: str | Path, *, fix: str) -> Any:
    """The JSON value stored in ``path``; a file that is not JSON text gives one error."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        why = "it is empty" if not raw.strip() else f"it is not valid JSON ({_short(exc)})"
        raise DamagedFileError(path, why, fix) from exc


def move_aside(path: Path, *, why: str, then: str) -> Path:
    """Rename a damaged file to ``<name>.damaged`` (``.damaged-2``, ... if taken) and warn.

    The file is kept, not deleted: what it held may still be recoverable by hand. The new name
    does not end in ``.parquet``, so no reader lists it again. ``then`` says what happens next.
    """
    dest = path.with_name(path.name + ".damaged")
    i = 1
    while dest.exists():
        i += 1
        dest = path.with_name(f"{path.name}.damaged-{i}")
    os.replace(path, dest)
    warnings.warn(
        DamagedFileWarning(f"{str(path)!r} is damaged: {why}. Moved aside to {dest.name}; {then}"),
        stacklevel=3,
    )
    return dest
