"""``sampletopo demo --out DIR``: both classic studies on the embedded digits data."""

from __future__ import annotations

import argparse
from typing import Any

from sampletopo.commands._common import add_command, option


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "demo",
        help="train the LR and skip studies on digits, compute topology, write the report",
        description="The main job: LR 0.1 vs 0.01 (small WRN-16) and skip vs no skip (small "
        "ResNet) on scikit-learn's digits; per-sample losses, kNN graphs, join/split diagrams, "
        "landscapes, hard regions and one HTML report at DIR/report/index.html.",
    )
    # The demo's output folder is the command line's alone (run_demo takes it as an argument).
    p.add_argument(
        "--out", default="demo-out", metavar="DIR", help="output folder (default: demo-out)"
    )
    option(
        p,
        "--epochs",
        type=int,
        default_of="sampletopo.demo:DemoSettings",
        help="epochs per variant",
    )
    option(p, "--no-landscapes", action="store_true", help="skip the parameter-space view")
    option(p, "--no-samples", action="store_true", help="skip the hard-region listing")
    option(p, "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import dataclasses

    from sampletopo.commands._common import check_out_dir
    from sampletopo.demo import DemoSettings, run_demo

    check_out_dir(args.out)
    changes: dict[str, Any] = {}
    if hasattr(args, "epochs"):
        changes["epochs"] = args.epochs
    if hasattr(args, "no_landscapes"):
        changes["landscapes"] = False
    if hasattr(args, "no_samples"):
        changes["samples"] = False
    settings = dataclasses.replace(DemoSettings(), **changes)
    index = run_demo(args.out, settings=settings, progress=not hasattr(args, "quiet"))
    print(f"report: {index.resolve()}")
    return 0
