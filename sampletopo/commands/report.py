"""``sampletopo report EXPERIMENT... --out DIR``: one self-contained HTML report."""

from __future__ import annotations

import argparse

from sampletopo.commands._common import add_command


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "report",
        help="write report/index.html with configs, summary tables and every figure",
        description="Write a self-contained HTML report (images embedded, works offline) of "
        "experiments whose topology was computed with `sampletopo topology`.",
    )
    p.add_argument("experiments", nargs="+", help="experiment folders (each holding run folders)")
    p.add_argument("--out", default=None, help="report folder (default: <first experiment>/report)")
    p.add_argument(
        "--epochs",
        type=int,
        nargs="+",
        default=None,
        help="heatmap epochs (default: first, around each LR change, last)",
    )
    p.add_argument("--title", default="sampletopo report", help="title of the HTML page")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:

    from sampletopo import analysis
    from sampletopo.commands._common import check_out_dir, require_diagrams
    from sampletopo.report import write_report

    for exp in args.experiments:
        require_diagrams(analysis.check_comparable(exp), given=[exp])
    from sampletopo.runs import Experiment

    out = check_out_dir(args.out or Experiment(args.experiments[0]).report_dir)
    check_out_dir(out / "figures")  # write_report draws into it
    index = write_report(
        args.experiments, out, title=args.title, epochs=args.epochs, progress=not args.no_progress
    )
    print(f"report: {index.resolve()}")
    return 0
