"""``sampletopo audit``: which samples of a run look mislabeled or ambiguous, by region and alone.

Prints the ranked suspect regions (split-tree peaks of the mean loss over epochs: members,
labels, last predictions) and the most suspect samples with every method's score beside the
topological one (loss, dataset cartography, forgetting events, area under the margin where the
tables hold margins, confident learning where ``cleanlab`` is installed). Writes both tables to
``<run>/audit/<split>-samples.parquet`` and ``<run>/audit/<split>-regions.parquet``, and a
figure (image grid, signal plots or feature table) of each of the top few regions. The run needs its topology
(``sampletopo topology``). The work is in :func:`sampletopo.audit.audit_run`.
"""

from __future__ import annotations

import argparse
from typing import Any

from sampletopo.commands._common import add_command, given, option, progress_option
from sampletopo.runs import SPLITS

_AUDIT = "sampletopo.audit:audit_run"


def register(subparsers: Any) -> None:
    p = add_command(
        subparsers,
        "audit",
        help="suspect (mislabeled or ambiguous) regions and samples of a run",
        description=__doc__,
    )
    p.add_argument("run", help="run (variant) folder with recorded losses and its topology")
    option(p, "--split", choices=list(SPLITS), default_of=_AUDIT, help="split to audit")
    option(p, "--top", type=int, default_of=_AUDIT, help="regions to list")
    option(
        p,
        "--rank-by",
        choices=["disagreement", "persistence"],
        default_of=_AUDIT,
        help="rank regions by persistence x share of members predicted against their label, "
        "or by persistence alone",
    )
    option(
        p,
        "--max-size",
        type=int,
        default_of=_AUDIT,
        help="leave out regions of more members than this (each is reviewed as one figure)",
    )
    option(
        p,
        "--figures",
        type=int,
        metavar="N",
        default_of="sampletopo.audit:write_audit",
        help="figures of the top N regions (0 for none)",
    )
    progress_option(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import polars as pl

    from sampletopo._validation import check_int
    from sampletopo.audit import audit_run, write_audit
    from sampletopo.runs import as_run

    if hasattr(args, "figures"):  # refused before the audit's work, not after
        check_int("--figures", args.figures, 0, None, where=None, kind="flag")
    result = audit_run(args.run, **given(args, "split", "top", "rank_by", "max_size"))
    figures = {"figures": args.figures} if hasattr(args, "figures") else {}
    paths = write_audit(result, as_run(args.run), **figures)
    with pl.Config(
        tbl_rows=-1,
        tbl_cols=-1,
        fmt_str_lengths=40,
        tbl_width_chars=200,
        tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=True,
    ):
        print(f"{result.run} {result.split}: suspect regions (pers_rank: persistence rank)")
        print(
            result.regions.select(
                "audit_rank",
                pl.col("rank").alias("pers_rank"),
                "size",
                pl.col("persistence").round(3).alias("pers"),
                pl.col("mean_loss").round(3),
                pl.col("disagree_share").round(2).alias("label!=pred"),
                "classes",
                pl.col("members").list.head(8).cast(pl.List(pl.String)).list.join(" "),
            )
        )
        cols = [c for c in result.methods if c in result.samples.columns]
        print(f"most suspect samples by the topological score ({', '.join(cols)}: higher = more)")
        print(
            result.samples.head(20).select(
                "topo_rank",
                "sample",
                "label",
                "pred",
                *[pl.col(c).round(3) for c in cols],
            )
        )
    for note in result.notes:
        print(f"note: {note}")
    for p in paths:
        print(f"wrote {p}")
    return 0
