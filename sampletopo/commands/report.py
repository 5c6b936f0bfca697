"""``sampletopo report EXPERIMENT... --out DIR``: one self-contained HTML report."""

from __future__ import annotations

import argparse

from sampletopo.commands._common import (
    add_command,
    chosen_graph,
    chosen_graph_options,
    figure_look_options,
    given,
    heatmap_epochs_option,
    metrics_option,
    option,
    progress_option,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "report",
        help="write report/index.html with configs, summary tables and every figure",
        description="Write a self-contained HTML report (images embedded, works offline) of "
        "experiments whose topology was computed with `sampletopo topology`.",
    )
    p.add_argument("experiments", nargs="+", help="experiment folders (each holding run folders)")
    option(p, "--out", help="report folder (default: <first experiment>/report)")
    heatmap_epochs_option(p)
    figure_look_options(p)
    option(p, "--title", default_of="sampletopo.report:write_report", help="title of the HTML page")
    metrics_option(p)
    chosen_graph_options(p)
    progress_option(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:

    from sampletopo import analysis
    from sampletopo.commands._common import check_out_dir, require_diagrams
    from sampletopo.report import write_report

    graph = chosen_graph(args, where="sampletopo report")
    for exp in args.experiments:
        runs = analysis.check_comparable(exp)
        if graph is not None:
            from sampletopo.runs import graph_runs

            runs = graph_runs(runs, **graph)  # type: ignore[assignment]
        require_diagrams(runs, given=[exp], graph=graph)
    from sampletopo.runs import Experiment

    out = check_out_dir(getattr(args, "out", None) or Experiment(args.experiments[0]).report_dir)
    check_out_dir(out / "figures")  # write_report draws into it
    options = given(args, "title", "epochs", "metrics")
    if graph is not None:
        options["graph"] = graph
    look = given(args, "scale", "bins", "value_range", "columns")
    look.pop("progress", None)
    if look:
        options["figure_options"] = look
    index = write_report(args.experiments, out, **options)
    print(f"report: {index.resolve()}")
    return 0
