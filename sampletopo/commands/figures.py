"""``sampletopo figures RUNS... --epochs ...``: the sample-space figure set."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "figures",
        help="draw total persistence, heatmaps, Wasserstein curves, diagrams and barcodes",
        description="Draw the figure set of comparable runs (same dataset and splits) whose "
        "topology was computed with `sampletopo topology`.",
    )
    p.add_argument("runs", nargs="+", help="run folders or experiment folders")
    p.add_argument("--out", default=None, help="output folder (default <first experiment>/figures)")
    p.add_argument(
        "--epochs",
        type=int,
        nargs="+",
        default=None,
        help="heatmap epochs (default: first, around each LR change, last)",
    )
    p.add_argument("--formats", nargs="+", default=["png", "pdf"])
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sampletopo import analysis
    from sampletopo.figures import write_figure_set

    runs = analysis.check_comparable(args.runs)
    out = Path(args.out) if args.out else runs[0].resolve().parent / "figures"
    for p in write_figure_set(runs, out, epochs=args.epochs, formats=args.formats):
        print(p)
    return 0
