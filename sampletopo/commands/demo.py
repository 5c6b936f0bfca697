"""``sampletopo demo --out DIR``: both classic studies on the embedded digits data."""

from __future__ import annotations

import argparse

from sampletopo.commands._common import add_command


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "demo",
        help="train the LR and skip studies on digits, compute topology, write the report",
        description="The main job: LR 0.1 vs 0.01 (small WRN-16) and skip vs no skip (small "
        "ResNet) on scikit-learn's digits; per-sample losses, kNN graphs, join/split diagrams, "
        "landscapes, hard regions and one HTML report at DIR/report/index.html.",
    )
    p.add_argument(
        "--out", default="demo-out", metavar="DIR", help="output folder (default: demo-out)"
    )
    p.add_argument("--epochs", type=int, default=None, help="epochs per variant (default: 20)")
    p.add_argument("--no-landscapes", action="store_true", help="skip the parameter-space view")
    p.add_argument("--no-samples", action="store_true", help="skip the hard-region listing")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import dataclasses

    from sampletopo.commands._common import check_out_dir
    from sampletopo.demo import DemoSettings, run_demo

    check_out_dir(args.out)
    s = DemoSettings()
    changes = {}
    if args.epochs is not None:
        changes["epochs"] = args.epochs
    if args.no_landscapes:
        changes["landscapes"] = False
    if args.no_samples:
        changes["samples"] = False
    index = run_demo(args.out, settings=dataclasses.replace(s, **changes), progress=not args.quiet)
    print(f"report: {index.resolve()}")
    return 0
