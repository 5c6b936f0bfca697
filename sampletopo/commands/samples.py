"""``sampletopo samples``: which samples make the most persistent peaks and basins of a run.

Prints one row per region (the most persistent split-tree peaks, i.e. regions the model finds
hard, and/or join-tree basins, regions it has learned) of the loss at one split and epoch, and
writes the full table, members included, to Parquet (default
``<run>/samples/<split>-epoch=NNNN.parquet``). With ``--figures`` it also writes an image grid
per region and the members' loss curves over training. The work is in
:func:`sampletopo.samples.top_regions`.
"""

from __future__ import annotations

import argparse
from typing import Any

from sampletopo.commands._common import add_command, given, graph_options, option
from sampletopo.runs import SPLITS

_TOP_REGIONS = "sampletopo.samples:top_regions"


def register(subparsers: Any) -> None:
    p = add_command(
        subparsers,
        "samples",
        help="the samples behind the most persistent peaks/basins of a run's loss",
        description=__doc__,
    )
    p.add_argument("run", help="run (variant) folder holding losses/<split>/epoch=NNNN.parquet")
    option(p, "--split", choices=list(SPLITS), default_of=_TOP_REGIONS, help="split to look at")
    p.add_argument("--epoch", type=int, required=True, help="a recorded epoch")
    option(p, "--top", type=int, default_of=_TOP_REGIONS, help="regions per tree")
    option(
        p,
        "--tree",
        choices=["split", "join", "both"],
        default_of=_TOP_REGIONS,
        help="split: high-loss peaks (hard regions); join: low-loss basins (learned regions); both",
    )
    graph_options(p, default_of=_TOP_REGIONS)
    option(
        p,
        "--pca-components",
        type=int,
        default_of=_TOP_REGIONS,
        help="principal axes kept with --features pca (as given to `sampletopo topology`)",
    )
    option(
        p,
        "--finite-only",
        action="store_true",
        help="leave out the essential (never-dying) peak of each component",
    )
    option(p, "--out", help="output .parquet (default: <run>/samples/<split>-epoch=NNNN.parquet)")
    option(
        p,
        "--figures",
        nargs="?",
        const="",
        metavar="DIR",
        help="also write PNG figures (into DIR, default the output's folder)",
    )
    p.set_defaults(func=_run)


def format_regions(table: Any, *, members_shown: int = 8) -> Any:
    """The printable columns of a regions table (polars), members cut to the first few."""
    import polars as pl

    cols = [
        pl.col("tree"),
        pl.col("rank"),
        pl.col("essential").alias("ess"),
        pl.col("birth").round(3),
        pl.col("death").round(3),
        pl.col("persistence").round(3).alias("pers"),
        pl.col("size"),
        pl.col("mean_loss").round(3),
        pl.col("accuracy").round(2).alias("acc"),
        pl.format(
            "{} {}%",
            pl.col("dominant_class"),
            (pl.col("dominant_share") * 100).round(0).cast(pl.Int64),
        ).alias("label"),
        pl.format(
            "{} {}%",
            pl.col("dominant_pred_class"),
            (pl.col("dominant_pred_share") * 100).round(0).cast(pl.Int64),
        ).alias("pred"),
        pl.col("classes"),
        pl.col("members")
        .list.head(members_shown)
        .cast(pl.List(pl.String))
        .list.join(" ")
        .alias("first members"),
    ]
    return table.select(cols)


def _run(args: argparse.Namespace) -> int:
    import warnings

    from sampletopo._folders import lock_output
    from sampletopo.commands._common import (
        check_out_dir,
        check_out_file,
        check_pca_flag,
        library_default,
    )
    from sampletopo.runs import TABLE_SUFFIX, Run
    from sampletopo.samples import regions_path, top_regions

    # The split names the output file before the table is computed: the library's default.
    split = getattr(args, "split", None) or library_default(f"{_TOP_REGIONS}.split")
    out_flag = getattr(args, "out", None)
    if out_flag:
        example = Run(args.run).regions_file(split, args.epoch).name
        check_out_file(out_flag, example=example, suffix=TABLE_SUFFIX)
    if getattr(args, "figures", None):
        check_out_dir(args.figures, "--figures")
    options = given(args, "top", "tree", "k", "features", "pca_components")
    check_pca_flag(args, [options.get("features", "")], where="sampletopo samples")
    if getattr(args, "finite_only", False):
        options["essential"] = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = top_regions(args.run, split=split, epoch=args.epoch, **options)
    for w in caught:
        print(f"note: {w.message}")
    out = check_out_file(out_flag or regions_path(args.run, split, args.epoch))
    # The table and its figures are one output: a second process writing them meanwhile would
    # leave the table of one call beside the figures of the other.
    with lock_output(out, what=f"writing the {split} regions of epoch {args.epoch}"):
        return _write(args, split, table, out)


def _write(args: argparse.Namespace, split: str, table: Any, out: Any) -> int:
    """Write the regions table (and figures) of :func:`_run` once ``out`` is locked."""
    import warnings
    from pathlib import Path

    import polars as pl

    from sampletopo.samples import track_members, write_regions

    write_regions(table, out)
    run = table["run"][0] if table.height else Path(args.run).name
    print(
        f"{run} {split} epoch {args.epoch}: {table.height} region(s); split-tree peaks are "
        "high-loss (hard) regions, join-tree basins low-loss (learned) ones"
    )
    with pl.Config(
        tbl_rows=-1,
        tbl_cols=-1,
        fmt_str_lengths=40,
        tbl_width_chars=200,
        tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=True,
    ):
        print(format_regions(table))
    print(f"wrote {out}")
    if hasattr(args, "figures"):
        from sampletopo.plotting._samples import sample_figures

        fig_dir = Path(args.figures) if args.figures else out.parent
        tracks = track_members(args.run, split=split, epoch=args.epoch, regions=table)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            paths = sample_figures(args.run, fig_dir, split=split, epoch=args.epoch, tracks=tracks)
        for w in caught:
            print(f"note: {w.message}")
        for p in paths:
            print(f"wrote {p}")
    return 0
