"""Cost of checking that a loss table reads back whole, against reading it.

Writes one loss table of ``--n`` samples (the recorder's schema and writer), then times the
footer check the recorder and readers run on every table (:func:`sampletopo._runfiles.
parquet_problem`: schema and row count from the Parquet footer) and a full read with polars.
Not a test.

    python benchmarks/bench_check_table.py [--n 50000] [--repeat 500]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from sampletopo._runfiles import parquet_problem
from sampletopo.record import LOSS_SCHEMA, _table, _write_atomic_parquet


def _ms(fn, repeat: int) -> float:
    fn()  # warm the page cache and imports
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=500)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, args.n)
    df = _table(7, "train", labels, rng.integers(0, 10, args.n), rng.random(args.n))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "epoch=0007.parquet"
        _write_atomic_parquet(df, path)
        assert parquet_problem(path, LOSS_SCHEMA, rows=args.n) is None
        check = _ms(lambda: parquet_problem(path, LOSS_SCHEMA, rows=args.n), args.repeat)
        full = _ms(lambda: pl.read_parquet(path), max(args.repeat // 10, 1))
        size = path.stat().st_size
    print(f"{args.n:,}-row loss table, {size / 1e3:.0f} KB")
    print(f"footer check (schema + row count): {check:.3f} ms")
    print(f"full read with polars:             {full:.3f} ms  ({full / check:.0f}x the check)")
    print(f"checking 400 tables (200 epochs x 2 splits): {400 * check:.0f} ms")


if __name__ == "__main__":
    main()
