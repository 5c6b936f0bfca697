"""``sampletopo export RUNS... --what TABLE --out FILE``: one table of a study as CSV or Parquet.

TABLE is summaries (per run, split, tree and epoch), replicates (per variant and epoch over its
seeds), diagrams (every pair), regions (the tables of `sampletopo samples`) or comparisons (per
pair of variants, as `sampletopo compare`). Runs of several experiment folders that share a name
are labelled experiment/run. --k/--features pick the kNN graph setting whose topology is
exported (default: the setting in <run>/topology/ itself).
"""

from __future__ import annotations

import argparse
from typing import Any

from sampletopo.commands._common import (
    add_command,
    chosen_graph,
    chosen_graph_options,
    given,
    option,
)
from sampletopo.runs import SPLITS, TREES

_COMPARE = "sampletopo.replicates:compare"


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "export",
        help="write summaries, replicate summaries, diagrams, regions or comparisons to a file",
        description=__doc__,
    )
    p.add_argument("runs", nargs="+", help="experiment folders or run folders")
    p.add_argument(
        "--what",
        required=True,
        choices=["summaries", "replicates", "diagrams", "regions", "comparisons"],
        help="the table to write",
    )
    p.add_argument("--out", required=True, help="the file to write (.csv or .parquet)")
    option(
        p,
        "--format",
        choices=["csv", "parquet"],
        help="file format (default: from the --out suffix, .csv or the table suffix)",
    )
    option(
        p,
        "--metric",
        default_of=_COMPARE,
        help="replicates and comparisons: the metric (see `sampletopo compare --help`)",
    )
    option(
        p,
        "--split",
        choices=list(SPLITS),
        default_of=_COMPARE,
        help="data split of the replicates and comparisons; with summaries and diagrams, only "
        "its rows are kept (all splits unless given)",
    )
    option(
        p,
        "--tree",
        choices=list(TREES),
        default_of=_COMPARE,
        help="merge tree of the replicates and comparisons; with summaries and diagrams, only "
        "its rows are kept (both trees unless given)",
    )
    option(
        p,
        "--epochs",
        nargs="+",
        help="replicates and comparisons: 'final', 'all' or epoch numbers (default: all for "
        "replicates, final for comparisons)",
    )
    chosen_graph_options(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from sampletopo._validation import invalid
    from sampletopo.commands._common import check_out_file
    from sampletopo.commands.compare import _epochs
    from sampletopo.export import check_table_file, export_table, write_table

    fmt = getattr(args, "format", None)
    out = check_out_file(args.out, example=f"{args.what}.{fmt or 'csv'}")
    fmt = check_table_file(out, fmt)  # before the tables are gathered
    options = given(args, "metric", "split", "tree", "epochs")
    options.pop("progress", None)
    if "epochs" in options:
        options["epochs"] = _epochs(options["epochs"])
    if args.what in ("summaries", "diagrams"):
        rows: dict[str, Any] = {k: options.pop(k) for k in ("split", "tree") if k in options}
    if options and args.what not in ("replicates", "comparisons"):
        flags = ", ".join("--" + k for k in sorted(options))
        # --split/--tree alone also suit summaries and diagrams (regions only get here then).
        takers = (
            "summaries, replicates, diagrams or comparisons"
            if set(options) <= {"split", "tree"}
            else "replicates or comparisons"
        )
        raise invalid(
            "--what",
            takers + " when " + flags + " is given",
            args.what,
            where=None,
            kind="flag",
        )
    runs = args.runs
    graph = chosen_graph(args, where="sampletopo export")
    if graph is not None and args.what == "regions":
        raise invalid(
            "--what",
            "summaries, replicates, diagrams or comparisons when --k or --features is given",
            "regions",
            where=None,
            kind="flag",
            fix="Regions tables are stored per run by `sampletopo samples` (on the graph of its "
            "own --k/--features), not per graph setting: leave --k/--features out.",
        )
    if graph is not None:
        from sampletopo.commands._common import require_diagrams
        from sampletopo.runs import graph_runs

        runs = graph_runs(runs, **graph, label_clashes=True)
        require_diagrams(runs, given=args.runs, graph=graph)
    if args.what in ("summaries", "diagrams"):
        options.update(rows)
    table = export_table(runs, args.what, **options)
    if graph is not None:  # the file says which graph setting its numbers come from
        import polars as pl

        pca = graph["pca_components"] if graph["features"] == "pca" else None
        table = table.with_columns(
            k=pl.lit(graph["k"], dtype=pl.Int64),
            features=pl.lit(str(graph["features"])),
            pca_components=pl.lit(pca, dtype=pl.Int64),
        )
    print(write_table(table, out, format=fmt))
    print(f"{table.height} rows, {table.width} columns")
    return 0
