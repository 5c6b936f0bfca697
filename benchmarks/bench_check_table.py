"""Cost of checking that loss tables read back whole, against writing and reading them.

Writes one loss table of ``--n`` samples (the recorder's schema and writer,
:func:`sampletopo._runfiles.write_parquet`: pyarrow with page checksums) and times

- writing it, and writing it with polars' own writer (no page checksums; the old writer);
- the check every reader and the recorder run (:func:`sampletopo._runfiles.parquet_problem`:
  the whole file read and its CRC-32 compared with the one in its footer, then schema and row
  count from the footer), and the footer-only check it replaces;
- reading it whole with polars, and with pyarrow's own page checksum verification then
  ``pl.from_arrow`` (the alternative for eager reads);

then, with ``--tables`` such tables in one run folder (``--tables 400``: 200 epochs x 2 splits),
checking them all, and ``read_losses`` (every table checked when listed, then scanned and
sorted by polars) against the same scan and sort unchecked. Not a test.

    python benchmarks/bench_check_table.py [--n 50000] [--repeat 200] [--tables 400]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from sampletopo._runfiles import _checksum_problem, parquet_problem
from sampletopo._writer import _write_table, loss_table
from sampletopo.readers import read_losses, scan_losses
from sampletopo.runs import LOSS_SCHEMA, Run


def _ms(fn, repeat: int) -> float:
    """Median time of ``fn`` in ms, after one warm-up call (page cache, imports)."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def _loss_column(run: Path) -> pl.DataFrame:
    return scan_losses(run).select("loss").collect()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--tables", type=int, default=400)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, args.n)
    df = loss_table(7, "train", labels, rng.integers(0, 10, args.n), rng.random(args.n))
    tmp = Path(tempfile.mkdtemp())
    try:
        path = tmp / "epoch=0007.parquet"
        old = tmp / "old.parquet"
        r = args.repeat
        write = _ms(lambda: _write_table(df, path), max(r // 10, 3))
        write_old = _ms(lambda: df.write_parquet(old), max(r // 10, 3))
        assert parquet_problem(path, LOSS_SCHEMA, rows=args.n) is None
        meta = pq.read_metadata(path)
        check = _ms(lambda: parquet_problem(path, LOSS_SCHEMA, rows=args.n), r)
        crc = _ms(lambda: _checksum_problem(path.read_bytes(), meta), r)
        footer = _ms(lambda: parquet_problem(old, LOSS_SCHEMA, rows=args.n), r)
        full = _ms(lambda: pl.read_parquet(path), max(r // 4, 3))
        arrow = _ms(
            lambda: pl.from_arrow(pq.read_table(path, page_checksum_verification=True)),
            max(r // 4, 3),
        )
        print(
            f"{args.n:,}-row loss table: {path.stat().st_size / 1e3:.0f} KB with page checksums "
            f"({old.stat().st_size / 1e3:.0f} KB from polars' writer)"
        )
        print(f"write (pyarrow, page checksums):      {write:7.3f} ms")
        print(f"write (polars' writer, no checksums): {write_old:7.3f} ms")
        print(f"check (checksum + footer):            {check:7.3f} ms")
        print(f"  of which reading + CRC-32:          {crc:7.3f} ms")
        print(f"footer only (a table without checksum): {footer:5.3f} ms")
        print(f"read with polars:                     {full:7.3f} ms")
        print(f"read with pyarrow verification:       {arrow:7.3f} ms")

        run = tmp / "run"
        for i in range(args.tables):
            split, epoch = ("train", "val")[i % 2], i // 2
            dest = Run(run).loss_file(split, epoch)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, dest)
        files = sorted(str(p) for p in (run / "losses").rglob("*.parquet"))
        rr = 3
        key = ["split", "epoch", "sample"]
        checks = _ms(lambda: [parquet_problem(f, LOSS_SCHEMA, rows=args.n) for f in files], rr)
        checked = _ms(lambda: read_losses(run), rr)
        unchecked = _ms(lambda: pl.scan_parquet(files).sort(key).collect(), rr)
        col = _ms(lambda: _loss_column(run), rr)
        col_plain = _ms(lambda: pl.scan_parquet(files).sort(key).select("loss").collect(), rr)
        print(f"{args.tables} such tables in one run:")
        print(f"  checking them all:                       {checks:7.0f} ms")
        print(f"  read_losses (checked when listed):       {checked:7.0f} ms")
        print(f"  the same scan and sort, unchecked:       {unchecked:7.0f} ms")
        print(f"  scan_losses, 'loss' column:             {col:7.0f} ms")
        print(f"  the same, unchecked:                     {col_plain:7.0f} ms")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
