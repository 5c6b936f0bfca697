"""``sampletopo figures RUNS... --epochs ...``: the sample-space figure set."""

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

_FIGURE_SET = "sampletopo.figures:write_figure_set"


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "figures",
        help="draw total persistence, heatmaps, Wasserstein curves, diagrams and barcodes",
        description="Draw the figure set of comparable runs (same dataset and splits) whose "
        "topology was computed with `sampletopo topology`.",
    )
    p.add_argument("runs", nargs="+", help="run folders or experiment folders")
    option(p, "--out", help="output folder (default: <first experiment>/figures)")
    heatmap_epochs_option(p)
    figure_look_options(p)
    option(
        p,
        "--formats",
        nargs="+",
        default_of=_FIGURE_SET,
        metavar="FORMAT",
        help="file formats to write each figure in, any that matplotlib saves (png, pdf, svg, "
        "jpg, ...)",
    )
    metrics_option(p)
    chosen_graph_options(p)
    progress_option(p)
    p.set_defaults(func=_run)


def check_formats(formats: list[str]) -> list[str]:
    """The ``--formats`` values, lower-cased, refused unless matplotlib can save them."""
    from matplotlib.figure import Figure

    from sampletopo._validation import invalid

    supported = sorted(Figure().canvas.get_supported_filetypes())
    out = [f.lower().lstrip(".") for f in formats]
    bad = [f for f, low in zip(formats, out, strict=True) if low not in supported]
    if bad:
        raise invalid(
            "--formats",
            f"formats matplotlib can save: {', '.join(supported)}",
            where="sampletopo figures",
            got=", ".join(repr(b) for b in bad),
            kind="flag",
        )
    return out


def _run(args: argparse.Namespace) -> int:

    from sampletopo import analysis
    from sampletopo.commands._common import check_out_dir, require_diagrams
    from sampletopo.figures import write_figure_set

    options = given(args, "epochs", "formats", "scale", "bins", "value_range", "columns", "metrics")
    if "formats" in options:
        options["formats"] = check_formats(options["formats"])
    runs: list = analysis.check_comparable(args.runs, label_clashes=True)
    graph = chosen_graph(args, where="sampletopo figures")
    if graph is not None:
        from sampletopo.runs import graph_runs

        runs = graph_runs(runs, **graph, label_clashes=True)
    require_diagrams(runs, given=args.runs, graph=graph)
    from sampletopo.runs import Run

    out = check_out_dir(getattr(args, "out", None) or Run(runs[0]).experiment.figures_dir)
    for p in write_figure_set(runs, out, **options):
        print(p)
    return 0
