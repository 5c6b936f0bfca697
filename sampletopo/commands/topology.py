"""``sampletopo topology RUN_DIR...``: join/split diagrams of every recorded epoch."""

from __future__ import annotations

import argparse
from pathlib import Path

from sampletopo.commands._common import (
    add_command,
    check_graph_flags,
    given,
    graph_options,
    option,
    progress_option,
)
from sampletopo.runs import SPLITS

_REFERENCES = "'final' (or 'last'), 'first', or an epoch number"
_COMPUTE = "sampletopo.analysis:compute_topology"


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "topology",
        help="compute join/split persistence diagrams of every recorded epoch",
        description="For every run x split x epoch not done yet: the join and split diagrams of "
        "the per-sample loss on the split's cached kNN graph; then summaries and Wasserstein "
        "distances to a reference epoch (the final one by default). Results go to "
        "<run>/topology/ for the first graph setting computed and to "
        "<run>/topology/k=K,features=F/ for any other; with several --k or --features values "
        "each combination is computed, and one setting never touches another's files.",
    )
    p.add_argument("runs", nargs="+", help="run folders, or experiment folders holding runs")
    graph_options(p, default_of=_COMPUTE, several=True)
    option(
        p,
        "--pca-components",
        type=int,
        default_of=_COMPUTE,
        help="principal axes kept with --features pca; at most the data's feature count",
    )
    option(
        p,
        "--splits",
        nargs="+",
        choices=list(SPLITS),
        default_of=_COMPUTE,
        help="splits to compute",
    )
    option(
        p,
        "--jobs",
        type=int,
        default_of=_COMPUTE,
        help="worker processes for the diagrams and the Wasserstein curves (same results as 1)",
    )
    progress_option(p)
    option(p, "--overwrite", action="store_true", help="recompute every epoch")
    option(
        p,
        "--reference",
        default_of="sampletopo.analysis:wasserstein_to_reference",
        help="reference epoch of the Wasserstein curves: 'final' (alias 'last': each run's last "
        "epoch), 'first' (the earliest epoch every run and split has) or an epoch number",
    )
    w = "sampletopo.analysis:wasserstein_to_reference"
    option(
        p,
        "--orders",
        nargs="+",
        type=float,
        default_of=w,
        help="Wasserstein orders of the curves, e.g. 1 2 for W1 and W2 (the figures and report "
        "draw W1)",
    )
    option(
        p,
        "--w-solver",
        dest="backend",
        choices=["assignment", "hera", "pot"],
        default_of=f"{w}.backend",
        help="Wasserstein solver: assignment (exact), hera (within --delta) or pot (exact, slow)",
    )
    option(
        p,
        "--delta",
        type=float,
        default_of=w,
        help="hera's relative error: its W is within delta * W of the exact one",
    )
    option(
        p,
        "--min-persistence",
        type=float,
        default_of=w,
        help="leave out pairs with persistence below this from the Wasserstein curves; the bound "
        "on the change is stored per row (w1_bound)",
    )
    p.set_defaults(func=_run)


def parse_reference(text: str) -> str | int:
    """``--reference`` as ``"final"``, ``"first"`` or an epoch number >= 0."""
    from sampletopo._validation import invalid

    low = text.strip().lower()
    if low in ("final", "last"):
        return "final"
    if low == "first":
        return "first"
    try:
        epoch = int(low)
    except ValueError:
        epoch = -1
    if epoch < 0:
        raise invalid("--reference", _REFERENCES, text, where="sampletopo topology", kind="flag")
    return epoch


def _run(args: argparse.Namespace) -> int:
    import itertools

    import polars as pl

    from sampletopo import analysis
    from sampletopo.runs import GRAPH_DEFAULTS, graph_runs, graph_setting

    # Before the long computation, not after it.
    ref = parse_reference(args.reference) if hasattr(args, "reference") else None
    options = given(args, "splits", "pca_components", "jobs", "overwrite")
    w_options = given(args, "orders", "backend", "delta", "min_persistence", "jobs")
    settings = {k: v for k, v in w_options.items() if k != "progress"}
    analysis.check_wasserstein_settings(**settings)  # before the long computation
    w_options.setdefault("progress", True)  # the library's default is quiet
    ks = list(dict.fromkeys(getattr(args, "k", [GRAPH_DEFAULTS["k"]])))
    feats = list(dict.fromkeys(getattr(args, "features", [GRAPH_DEFAULTS["features"]])))
    pca = options.get("pca_components", GRAPH_DEFAULTS["pca_components"])
    check_graph_flags(args, where="sampletopo topology", exists=True)
    # Each folder given is done on its own: runs are told apart by folder name within one call,
    # and two experiments may well both hold a run called "run".
    groups = [[r] for r in args.runs] if len(args.runs) > 1 else [args.runs]
    for paths in groups:  # every setting asked, before the first is computed
        analysis.check_graph_settings(paths, k=ks, features=feats, pca_components=pca)
    done_parts, summaries = [], []
    # The default setting first: on a fresh run it is the one topology/ itself holds (what
    # figures, report and compare read without --k), the others go beside it.
    default = (GRAPH_DEFAULTS["k"], GRAPH_DEFAULTS["features"])
    combos = sorted(itertools.product(ks, feats), key=lambda kf: kf != default)
    for k, features in combos:
        name = graph_setting(k=k, features=features, pca_components=pca)
        for paths in groups:
            done = analysis.compute_topology(paths, k=k, features=features, **options)
            runs = graph_runs(paths, k=k, features=features, pca_components=pca)
            summary = analysis.summarize(runs)
            r = ref
            if r == "first":
                # The library takes one epoch for all runs: the earliest each run and split has.
                firsts = summary.group_by(["run", "split"]).agg(pl.col("epoch").min())
                r = int(firsts.select(pl.col("epoch").max()).item())
            if r is not None:
                w_options["reference"] = r
            analysis.wasserstein_to_reference(runs, **w_options)
            if len(groups) > 1:
                label = Path(paths[0]).resolve().name
                prefix = pl.lit(label + "/") + pl.col("run")
                done = done.with_columns(run=prefix)
                summary = summary.with_columns(run=prefix)
            done_parts.append(done.with_columns(graph=pl.lit(name)))
            summaries.append(summary.with_columns(graph=pl.lit(name)))
    done = pl.concat(done_parts)
    summary = pl.concat(summaries)
    several = len(ks) * len(feats) > 1
    counts = done.group_by(["graph", "status"] if several else ["status"]).len().sort(pl.all())
    for row in counts.iter_rows():
        where = f" ({row[0]})" if several else ""
        print(f"{row[-1]:5d} epoch(s) {row[-2]}{where}")
    keys = ["graph", "run", "split", "tree"] if several else ["run", "split", "tree"]
    with pl.Config(tbl_rows=40, tbl_cols=12, fmt_str_lengths=60):
        last = summary.group_by(keys).agg(pl.all().sort_by("epoch").last())
        print(
            last.select(
                [
                    *keys,
                    "epoch",
                    "total_persistence_1",
                    "n_pairs",
                    "mean_loss",
                    "accuracy",
                ]
            ).sort(keys)
        )
    return 0
