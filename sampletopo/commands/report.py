"""``sampletopo report EXPERIMENT... --out DIR``: one self-contained HTML report."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write report/index.html with configs, summary tables and every figure",
        description="Write a self-contained HTML report (images embedded, works offline) of "
        "experiments whose topology was computed.",
    )
    p.add_argument("experiments", nargs="+", help="experiment folders (each holding run folders)")
    p.add_argument("--out", default=None, help="report folder (default <first experiment>/report)")
    p.add_argument("--epochs", type=int, nargs="+", default=None, help="heatmap epochs")
    p.add_argument("--title", default="sampletopo report")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sampletopo.report import write_report

    out = Path(args.out) if args.out else Path(args.experiments[0]) / "report"
    index = write_report(args.experiments, out, title=args.title, epochs=args.epochs)
    print(f"report: {index.resolve()}")
    return 0
