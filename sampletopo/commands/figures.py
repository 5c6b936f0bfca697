"""``sampletopo figures RUNS... --epochs ...``: the sample-space figure set."""

from __future__ import annotations

import argparse

from sampletopo.commands._common import add_command


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "figures",
        help="draw total persistence, heatmaps, Wasserstein curves, diagrams and barcodes",
        description="Draw the figure set of comparable runs (same dataset and splits) whose "
        "topology was computed with `sampletopo topology`.",
    )
    p.add_argument("runs", nargs="+", help="run folders or experiment folders")
    p.add_argument(
        "--out", default=None, help="output folder (default: <first experiment>/figures)"
    )
    p.add_argument(
        "--epochs",
        type=int,
        nargs="+",
        default=None,
        help="heatmap epochs (default: first, around each LR change, last)",
    )
    p.add_argument(
        "--formats",
        nargs="+",
        default=["png", "pdf"],
        metavar="FORMAT",
        help="file formats to write each figure in, any that matplotlib saves (png, pdf, svg, "
        "jpg, ...)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_run)


def check_formats(formats: list[str]) -> list[str]:
    """The ``--formats`` values, lower-cased, refused unless matplotlib can save them."""
    from matplotlib.figure import Figure

    from sampletopo._errors import SampletopoError

    supported = sorted(Figure().canvas.get_supported_filetypes())
    out = [f.lower().lstrip(".") for f in formats]
    bad = [f for f, low in zip(formats, out, strict=True) if low not in supported]
    if bad:
        raise SampletopoError(
            f"The '--formats' flag takes formats matplotlib can save: {', '.join(supported)}. "
            f"Got {', '.join(repr(b) for b in bad)} instead."
        )
    return out


def _run(args: argparse.Namespace) -> int:

    from sampletopo import analysis
    from sampletopo.commands._common import check_out_dir, require_diagrams
    from sampletopo.figures import write_figure_set

    formats = check_formats(args.formats)
    runs = analysis.check_comparable(args.runs)
    require_diagrams(runs, given=args.runs)
    from sampletopo.runs import Run

    out = check_out_dir(args.out or Run(runs[0]).experiment.figures_dir)
    kw = {"epochs": args.epochs, "formats": formats, "progress": not args.no_progress}
    for p in write_figure_set(runs, out, **kw):
        print(p)
    return 0
