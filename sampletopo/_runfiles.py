"""Writing and reading back sampletopo's stored files: whole, or one error naming the file.

Every Parquet table sampletopo stores (loss, diagram, summary, Wasserstein and regions tables) is
written by :func:`write_parquet`, and every reader of one goes through :func:`read_parquet`,
:func:`scan_parquet`, :func:`check_parquet` or :func:`parquet_problem`; JSON run files go
through :func:`read_json` and ``.npz`` files (graph cache, landscapes, saved datasets) through
:func:`read_npz`. A truncated, garbage, empty, wrong-schema or bit-flipped file gives one
:class:`DamagedFileError` naming the file, what is wrong with it and what to do, instead of a
traceback from deep inside polars, pyarrow or numpy, or silently wrong numbers. Nothing here
knows what the files mean: the callers pass the columns they need and the fix that fits.

How "reads back whole" is checked. A Parquet file keeps its schema and row count in a footer at
its end, behind a magic number; a file cut short or overwritten loses the footer, and
:func:`parquet_problem` compares the footer's columns, types and row count with what the caller
needs. Bytes changed inside the file leave the footer sound and read back as other numbers
(polars checks no checksum), so :func:`write_parquet` stores a CRC-32 of the whole file in its
footer (key ``sampletopo.crc32``: eight hexadecimal digits, computed with ``00000000`` in their
place) and :func:`parquet_problem` compares it. It covers every byte: page data, page headers
(their value counts and encodings, which Parquet's own page checksums leave out) and the footer
(the statistics polars skips row groups by); a CRC-32 catches every change within 4
consecutive bytes and all but one in 2**32 of the others. The checksum's own entry is covered
too: a changed digit no longer matches, and an entry the footer's key-value list no longer
reaches, or whose key has changed bytes (up to 4 of its 16), is named rather than taken for a
file written before checksums. Every page also carries Parquet's own page checksum, so other
tools (pyarrow's ``page_checksum_verification``) can verify the pages too.

The whole file is read once to check it, whatever columns the caller then reads: that is what
lets lazy scans (:func:`scan_parquet`, behind ``scan_losses`` and ``scan_diagrams``) stay lazy:
each file is verified once, when it is listed, and polars then scans it as before. A file
changed between that check and ``collect`` is not caught (the atomic writes of
:mod:`sampletopo._io` make a whole new file the only change a run makes).

Files written before checksums (by polars' writer: no ``sampletopo.crc32`` key) are checked by
their footer only and read as before; their bytes cannot be verified.

What the rows say. A whole file may still hold rows that do not belong where it lies (a table
written by hand, or copied from another epoch). A caller that knows what the rows must say
passes a :class:`RowsCheck` (the loss and diagram tables' are in :mod:`sampletopo.runs`: the
file name's epoch and split, each sample once, both trees); its columns are then decoded from
the bytes already read and checked too. Measured on the same machine and table as below: 1.8 ms
with the rows checked against 0.18 ms without, so for 400 such tables about 0.7 s beside the
13 s that ``read_losses`` takes to read them.

Cost, measured with ``benchmarks/bench_check_table.py`` on the shared (busy) 2-core development
machine, 50,000-row loss table (476 KB; 509 KB from polars' writer): writing it takes 9 ms
(polars' writer, without checksums: 5 ms); checking it 0.17 ms, of which reading the file and
its CRC-32 take 0.08 ms (the footer-only check of a table without checksum: 0.10 ms); reading it
with polars 1.0 ms (pyarrow's page-checksum-verifying read and ``pl.from_arrow``: 2.3 ms). For
400 such tables (200 epochs x 2 splits): checking them all takes 0.16 s, ``read_losses`` reading
and sorting them 13 s (12 s unchecked), so verifying each file when it is listed costs about 1%
of the scan; ``scan_losses`` then reads only what the query needs, as before.

``.npz`` files are zip archives whose entries carry a CRC-32 of their bytes. numpy's ``np.load``
checks it only when it happens to read an entry to its end, and raises ``zipfile.BadZipFile`` or
``zlib.error`` (neither an ``OSError``), so :func:`read_npz` reads every entry to its end itself
after checking that its ``.npy`` header promises exactly the bytes the entry holds.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import warnings
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from sampletopo._errors import DamagedFileError, DamagedFileWarning
from sampletopo._io import write_atomic

__all__ = [
    "DamagedFileError",
    "DamagedFileWarning",
    "NpzArrays",
    "RowsCheck",
    "check_parquet",
    "move_aside",
    "parquet_problem",
    "read_json",
    "read_npz",
    "read_parquet",
    "scan_parquet",
    "write_parquet",
]

# OS errors that are about the path, not the file's content: the command line reports those as
# path errors, so they pass through unchanged.
_PATH_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] + ("..." if len(text) > 200 else "")


def _not_parquet(data: bytes, exc: BaseException) -> str:
    if not data:
        return "it is empty (0 bytes)"
    if data[-4:] != b"PAR1":
        return (
            f"it is not a whole Parquet file ({len(data):,} bytes with no Parquet footer at the "
            "end: cut short, or overwritten)"
        )
    return f"its Parquet footer cannot be read ({_short(exc)})"


# The whole-file checksum: the CRC-32 of every byte of the file, computed with these 8 bytes in
# the place of its own 8 hexadecimal digits, which the footer holds under _CRC_KEY. In the
# footer's Thrift encoding a key-value pair is: field header 0x18, length, key, field header
# 0x18, length 8, value, stop byte.
_CRC_KEY = b"sampletopo.crc32"
_CRC_HOLE = b"00000000"
_CRC_ENTRY = b"\x18" + bytes([len(_CRC_KEY)]) + _CRC_KEY + b"\x18\x08"
_CRC_ENTRY_LIKE = re.compile(b"\x18\x10(.{16})\x18\x08[0-9a-f]{8}\x00", re.DOTALL)


def _footer_start(data: bytes | bytearray) -> int:
    """Where the footer starts: its length is stored just before the closing magic number."""
    return max(len(data) - 8 - int.from_bytes(data[-8:-4], "little"), 0)


def _crc_hole(data: bytes | bytearray, value: bytes) -> int:
    """Where the 8 digits ``value`` of the checksum entry start in ``data``'s footer; -1 if the
    entry is not there exactly once."""
    entry = _CRC_ENTRY + value + b"\x00"
    at = data.find(entry, _footer_start(data))
    if at < 0 or data.find(entry, at + 1) >= 0:
        return -1
    return at + len(_CRC_ENTRY)


def _file_crc(data: bytes | bytearray, hole: int) -> int:
    view = memoryview(data)
    crc = zlib.crc32(view[:hole])
    crc = zlib.crc32(_CRC_HOLE, crc)
    return zlib.crc32(view[hole + len(_CRC_HOLE) :], crc)


def _checksum_problem(data: bytes, meta: Any) -> str | None:
    value = (meta.metadata or {}).get(_CRC_KEY)
    if value is None:
        # Written before checksums (polars' writer), unless the entry is there but cannot be
        # read: the key-value list no longer reaches it, or its key has changed bytes.
        start = _footer_start(data)
        if data.find(_CRC_KEY, start) < 0 and not any(
            sum(a != b for a, b in zip(m.group(1), _CRC_KEY)) <= 4
            for m in _CRC_ENTRY_LIKE.finditer(data, start)
        ):
            return None  # read as before, unverified
        return "its checksum entry cannot be read: bytes changed after it was written"
    hole = _crc_hole(data, value) if len(value) == 8 else -1
    try:
        stored = int(value, 16)
    except ValueError:
        hole = -1
    if hole < 0:
        return (
            "its checksum entry is not the one sampletopo writes: bytes changed after it was "
            "written"
        )
    if _file_crc(data, hole) != stored:
        return (
            "its bytes do not match the CRC-32 checksum stored in it: bytes changed after it "
            "was written"
        )
    return None


@dataclass(frozen=True)
class RowsCheck:
    """What the rows of a table must say: ``problem`` gets the ``columns`` of the table (a
    polars DataFrame) and returns why they do not fit, or ``None``."""

    columns: tuple[str, ...]
    problem: Callable[[pl.DataFrame], str | None]


def parquet_problem(
    path: str | Path,
    schema: Mapping[str, Any],
    *,
    rows: int | None = None,
    rows_check: RowsCheck | None = None,
) -> str | None:
    """Why the Parquet file ``path`` does not read back whole, or ``None`` if it is sound.

    Compares the file's bytes with the CRC-32 checksum :func:`write_parquet` stores in it, then
    its footer's columns with ``schema`` (the columns that must be there with exactly these
    polars types; others may be there too), its row count with ``rows`` (when known) and, with
    ``rows_check``, what its rows say. See the module docstring for how, and at what cost.
    """
    return _bytes_problem(Path(path).read_bytes(), schema, rows=rows, rows_check=rows_check)


def _bytes_problem(
    data: bytes,
    schema: Mapping[str, Any],
    *,
    rows: int | None,
    rows_check: RowsCheck | None = None,
) -> str | None:
    """:func:`parquet_problem` of the file's bytes ``data``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        meta = pq.read_metadata(pa.BufferReader(data))
    except (OSError, ValueError, pa.ArrowException) as exc:
        return _not_parquet(data, exc)
    why = _checksum_problem(data, meta)
    if why is not None:
        return why
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
    if rows_check is None:
        return None
    try:
        df = pl.read_parquet(io.BytesIO(data), columns=list(rows_check.columns))
    except (pl.exceptions.PolarsError, OSError) as exc:
        return f"its data cannot be read ({_short(exc)})"
    return rows_check.problem(df)


def check_parquet(
    path: str | Path,
    schema: Mapping[str, Any],
    *,
    rows: int | None = None,
    rows_check: RowsCheck | None = None,
    fix: str,
) -> None:
    """Raise :class:`DamagedFileError` (ending in ``fix``) if :func:`parquet_problem` finds one."""
    why = parquet_problem(path, schema, rows=rows, rows_check=rows_check)
    if why is not None:
        raise DamagedFileError(path, why, fix)


def _dictionary_columns(df: pl.DataFrame) -> list[str]:
    """Columns worth a Parquet dictionary: strings, and integers with few distinct values
    (labels, predictions, epochs); not floats or sample ids, nearly all distinct, where a
    dictionary costs time and space (measured on a loss table: 476 KB and 1.3 ms to read
    against 570 KB and 1.4 ms with sample ids in a dictionary, 500 KB and 2.1 ms without
    dictionaries for the integer columns)."""
    out = []
    for name, dtype in df.schema.items():
        if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
            out.append(name)
        elif dtype.is_integer() and df[name].n_unique() <= max(df.height // 4, 1):
            out.append(name)
    return out


def parquet_bytes(df: pl.DataFrame, metadata: Mapping[str, str] | None = None) -> bytes:
    """``df`` as the bytes of a Parquet file with sampletopo's checksums (see
    :func:`write_parquet`); ``metadata`` adds key-value pairs to the footer."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = df.to_arrow()
    sink = pa.BufferOutputStream()
    dictionary = _dictionary_columns(df)
    with pq.ParquetWriter(
        sink,
        table.schema,
        compression="zstd",
        use_dictionary=dictionary or False,
        write_page_checksum=True,
    ) as writer:
        writer.write_table(table)
        footer: dict[str | bytes, str | bytes] = {k: v for k, v in (metadata or {}).items()}
        footer[_CRC_KEY] = _CRC_HOLE
        writer.add_key_value_metadata(footer)
    data = bytearray(sink.getvalue().to_pybytes())
    hole = _crc_hole(data, _CRC_HOLE)
    if hole < 0:  # pyarrow encoded the footer otherwise: no checksum rather than a wrong one
        # A bug (or a pyarrow that writes footers otherwise), not the user's input: it keeps
        # its traceback on the command line.
        raise AssertionError("sampletopo: the Parquet footer does not hold the checksum entry")
    data[hole : hole + len(_CRC_HOLE)] = b"%08x" % _file_crc(data, hole)
    return bytes(data)


def write_parquet(
    df: pl.DataFrame, path: str | Path, *, metadata: Mapping[str, str] | None = None
) -> Path:
    """Write ``df`` to the Parquet file ``path`` atomically, with checksums to verify it by.

    The one writer of sampletopo's tables. The footer holds the CRC-32 of the whole file (under
    the key ``sampletopo.crc32``), which :func:`parquet_problem` compares; every page header
    holds the CRC-32 of its page too (Parquet's own page checksum, which pyarrow's
    ``page_checksum_verification`` checks; polars' writer writes none). Written by pyarrow,
    zstd-compressed, strings and integer columns with few distinct values dictionary-encoded.
    ``metadata`` (text keys and values) goes into the footer beside the checksum.
    """
    data = parquet_bytes(df, metadata)
    return write_atomic(path, lambda fh: fh.write(data))


def read_parquet(
    path: str | Path,
    schema: Mapping[str, Any],
    *,
    columns: list[str] | None = None,
    rows: int | None = None,
    rows_check: RowsCheck | None = None,
    fix: str,
) -> pl.DataFrame:
    """The columns ``columns`` (default: those of ``schema``) of a checked Parquet file.

    The file is read once: its bytes are checked (footer, checksum and ``rows_check``, as by
    :func:`parquet_problem`) and then decoded, so the table is the one that was checked; a
    failure while decoding is reported the same way.
    """
    data = Path(path).read_bytes()
    why = _bytes_problem(data, schema, rows=rows, rows_check=rows_check)
    if why is not None:
        raise DamagedFileError(path, why, fix)
    try:
        return pl.read_parquet(
            io.BytesIO(data), columns=columns if columns is not None else list(schema)
        )
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DamagedFileError(path, f"its data cannot be read ({_short(exc)})", fix) from exc


def scan_parquet(
    paths: Sequence[str | Path],
    schema: Mapping[str, Any],
    *,
    rows: int | None = None,
    rows_checks: Sequence[RowsCheck | None] | None = None,
    fix: str,
    **options: Any,
) -> pl.LazyFrame:
    """``polars.scan_parquet`` of ``paths`` (keyword ``options`` passed on), each checked first.

    Every file is verified now, footer and checksum (:func:`check_parquet`) and, with
    ``rows_checks`` (one per path), its rows, so a damaged one is named here rather than
    failing, or reading other numbers, at ``collect`` time; what is collected later is read
    again by polars, lazily as before (see the module docstring for the cost).
    """
    checks = list(rows_checks) if rows_checks is not None else [None] * len(paths)
    for p, check in zip(paths, checks, strict=True):
        check_parquet(p, schema, rows=rows, rows_check=check, fix=fix)
    return pl.scan_parquet([str(p) for p in paths], **options)


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


class NpzArrays(dict[str, np.ndarray]):
    """The arrays of an ``.npz`` file, every one read and checked (see :func:`read_npz`).

    A dict by name that also answers as numpy's ``NpzFile`` does (``files``, ``with ... as z``),
    so code written for ``np.load`` reads the same.
    """

    @property
    def files(self) -> list[str]:
        """The array names, in the file's order."""
        return list(self)

    def __enter__(self) -> NpzArrays:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _npy_size(fh: Any) -> tuple[int, np.dtype]:
    """Header length and dtype of the ``.npy`` stream ``fh``, checking the header's array size."""
    fmt = np.lib.format
    version = fmt.read_magic(fh)
    if version == (1, 0):
        shape, _, dtype = fmt.read_array_header_1_0(fh)
    elif version == (2, 0):
        shape, _, dtype = fmt.read_array_header_2_0(fh)
    else:  # np.save writes 3.0 only for non-latin-1 field names, which sampletopo never stores
        raise ValueError(f".npy format version {version} is not one sampletopo writes")
    if dtype.hasobject:
        raise ValueError("it holds Python objects, which sampletopo never stores")
    return fh.tell() + math.prod(shape) * dtype.itemsize, dtype


def _check_zip_layout(path: Path, zf: zipfile.ZipFile) -> None:
    """Raise ``ValueError`` unless the entries lie back to back from the file's start and the
    central directory follows the last: as :func:`numpy.savez` writes them. A changed size or
    offset in the central directory can otherwise leave entries out without any error."""
    pos = 0
    with open(path, "rb") as fh:
        for info in sorted(zf.infolist(), key=lambda i: i.header_offset):
            if info.header_offset != pos:
                raise ValueError(
                    f"its entry {info.filename!r} starts at byte {info.header_offset:,}, where "
                    f"the one before ends at {pos:,}"
                )
            if info.flag_bits & 0x08:
                raise ValueError(f"its entry {info.filename!r} has a data descriptor")
            fh.seek(pos)
            head = fh.read(30)
            if len(head) < 30 or head[:4] != b"PK\x03\x04":
                raise ValueError(f"its entry {info.filename!r} has no local header")
            name_len = int.from_bytes(head[26:28], "little")
            extra_len = int.from_bytes(head[28:30], "little")
            pos += 30 + name_len + extra_len + info.compress_size
    if pos != zf.start_dir:
        raise ValueError(
            f"its entries end at byte {pos:,} but its directory starts at {zf.start_dir:,}"
        )


def read_npz(path: str | Path, *, fix: str) -> NpzArrays:
    """Every array of the ``.npz`` file ``path``, each checked against the CRC-32 the zip keeps.

    ``np.load`` checks an entry's CRC only if it reads the entry to its end, and a changed
    ``.npy`` header can make it read less (another dtype or shape: no check) or allocate an
    array of any size. So for every entry the header is read first and must promise exactly the
    bytes the entry holds; then the array is read and the entry read to its end, where the zip
    module compares the CRC-32. The entries must lie back to back, ending where the zip's
    directory starts, so that none can be left out unnoticed. Anything that fails on the way --
    a zip directory, header, dtype or CRC that does not fit, a deflate stream that does not
    decode -- is one :class:`DamagedFileError` ending in ``fix``. Entries that are not ``.npy``
    arrays, and arrays of Python objects, are damage too: :func:`numpy.savez` writes neither
    here. Fields of the zip that nothing reads (a local header's copy of the sizes, times) may
    change unnoticed: the arrays are read back exactly as written either way.

    Cost: the same as ``np.load`` reading every array (measured: 13 ms either way for a 47 MB
    saved dataset and for a compressed 500,000-edge graph).
    """
    path = Path(path)
    out = NpzArrays()
    try:
        with zipfile.ZipFile(path) as zf:
            _check_zip_layout(path, zf)
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    raise ValueError(f"it holds {info.filename!r}, which is not a .npy array")
                with zf.open(info) as fh:
                    size, _ = _npy_size(fh)
                if size != info.file_size:
                    raise ValueError(
                        f"the header of {info.filename!r} promises {size:,} bytes where the "
                        f"entry holds {info.file_size:,}"
                    )
                with zf.open(info) as fh:
                    arr = np.lib.format.read_array(fh, allow_pickle=False)
                    if fh.read(1):  # reading to the end makes zipfile compare the CRC-32
                        raise ValueError(f"{info.filename!r} holds bytes after its array")
                out[info.filename[: -len(".npy")]] = arr
    except _PATH_ERRORS:
        raise
    except Exception as exc:  # noqa: BLE001 -- whatever a damaged zip or .npy raises
        why = "it is empty (0 bytes)" if path.stat().st_size == 0 else None
        raise DamagedFileError(
            path, why or f"it does not read back whole ({_short(exc)})", fix
        ) from exc
    return out
