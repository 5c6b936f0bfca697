"""``sampletopo compare RUNS... --metric M``: variants compared over their replicates.

Prints, for the chosen epochs, each variant's mean, sd and confidence interval over its
replicates (runs of one variant under several seeds, ``sampletopo train ... --seed 0 1 2``),
then one row per pair of variants: the difference of means, its bootstrap interval, the
permutation-test p-value, the smallest p-value the replicate counts allow, and a verdict.
--k/--features pick the kNN graph setting whose topology is compared (default: the setting
in <run>/topology/ itself); with --sensitivity, every --k x --features setting is compared and
one table shows the result per setting.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sampletopo.commands._common import (
    add_command,
    check_graph_flags,
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
        "compare",
        help="compare variants over their replicates: differences, intervals, p-values",
        description=__doc__,
    )
    p.add_argument("runs", nargs="+", help="experiment folders or run folders")
    option(
        p,
        "--metric",
        default_of=_COMPARE,
        help="total_persistence, total_persistence_2, n_pairs, max_persistence, pairs_above:T "
        "(persistence > T), pairs_above_relative:F (persistence > F x the epoch's loss range), "
        "quantile:Q",
    )
    option(p, "--split", choices=list(SPLITS), default_of=_COMPARE, help="data split")
    option(
        p,
        "--tree",
        choices=list(TREES),
        default_of=_COMPARE,
        help="merge tree: join (low-loss valleys) or split (high-loss peaks)",
    )
    option(
        p,
        "--epochs",
        nargs="+",
        default_of=_COMPARE,
        help="'final' (the last epoch all runs have), 'all', or epoch numbers",
    )
    option(p, "--confidence", type=float, default_of=_COMPARE, help="level of the intervals")
    option(p, "--n-boot", type=int, default_of=_COMPARE, help="bootstrap resamples")
    option(
        p,
        "--n-permutations",
        type=int,
        default_of=_COMPARE,
        help="permutation-test resamples (exact when the replicates allow fewer splits)",
    )
    option(p, "--seed", type=int, default_of=_COMPARE, help="seed of bootstrap and permutations")
    chosen_graph_options(p, several="--sensitivity")
    option(
        p,
        "--sensitivity",
        action="store_true",
        help="compare on every --k x --features setting (default k 10 20 40, features raw) and "
        "print one table of difference, interval and p-value per setting",
    )
    option(
        p,
        "--figure",
        help="with --sensitivity: also draw the difference against k, one line per features "
        "value, into this file (.png, .pdf, .svg; its table beside it as .parquet, the caption "
        "in its footer)",
    )
    option(
        p,
        "--out",
        help="also write the comparison table to this file (.csv, or the table suffix: Parquet)",
    )
    p.set_defaults(func=_run)


def _epochs(values: list[str]) -> str | list[int]:
    from sampletopo._validation import invalid

    if len(values) == 1 and values[0] in ("final", "all"):
        return values[0]
    try:
        return [int(v) for v in values]
    except ValueError:
        raise invalid(
            "--epochs", "'final', 'all' or epoch numbers", " ".join(values), where=None, kind="flag"
        ) from None


def _printed() -> Any:
    """How the command prints its tables: every row and column, 4 decimals, no dtypes (a
    ``polars.Config`` context; polars is imported here, not at the command line's start)."""
    import polars as pl

    return pl.Config(
        tbl_rows=-1,
        tbl_cols=-1,
        tbl_width_chars=160,
        fmt_str_lengths=200,
        tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=True,
        float_precision=4,
    )


def _shown(df: Any) -> Any:
    """``df`` for printing: float columns as text with 5 significant digits, so one column
    never mixes fixed and scientific notation (1.0272 beside 3.7046e+10)."""
    import polars as pl

    floats = [c for c, t in df.schema.items() if t.is_float()]
    return df.with_columns(
        pl.col(c).map_elements(lambda v: f"{v:.5g}", return_dtype=pl.String) for c in floats
    )


def _run(args: argparse.Namespace) -> int:
    import warnings

    from sampletopo._errors import ComparisonWarning
    from sampletopo.commands._common import check_out_file
    from sampletopo.export import check_table_file, write_table
    from sampletopo.replicates import compare, replicate_summary

    options = given(args, "split", "tree", "epochs", "confidence", "n_boot", "seed")
    options.pop("progress", None)
    if "epochs" in options:
        options["epochs"] = _epochs(options["epochs"])
    out = getattr(args, "out", None)
    path = None
    if out is not None:
        path = check_out_file(out, example="compare.csv")
        check_table_file(path)  # before the comparison is computed
    metric = getattr(args, "metric", "total_persistence")
    perms = {"n_permutations": args.n_permutations} if hasattr(args, "n_permutations") else {}
    figure = _figure_file(args)  # before the comparison is computed
    check_graph_flags(args, where="sampletopo compare")  # with --sensitivity too
    if getattr(args, "sensitivity", False):
        return _sensitivity(args, metric, {**options, **perms}, path, figure)
    runs = args.runs
    graph = chosen_graph(args, where="sampletopo compare", several="--sensitivity")
    if graph is not None:
        from sampletopo.runs import graph_runs

        runs = graph_runs(runs, **graph, label_clashes=True)  # type: ignore[arg-type]
    table = compare(runs, metric, **options, **perms)
    with warnings.catch_warnings():  # compare has said which epochs are left out
        warnings.simplefilter("ignore", ComparisonWarning)
        summary = replicate_summary(
            runs, [metric], **{**options, "epochs": sorted(set(table["epoch"].to_list()))}
        )
    split, tree = table["split"][0], table["tree"][0]
    print(f"{metric} of the {split} split's {tree}-tree diagrams, per variant over its replicates:")
    with _printed():
        print(_shown(summary.drop("split", "tree", "runs")))
        print(_shown(table.drop("metric", "split", "tree", "verdict")))
    for row in table.iter_rows(named=True):
        print(f"epoch {row['epoch']}, {row['group_a']} vs {row['group_b']}: {row['verdict']}")
    if path is not None:
        print(write_table(table, path))
    return 0


def _figure_file(args: argparse.Namespace) -> Path | None:
    """``--figure`` checked: only with --sensitivity, a suffix matplotlib can save."""
    from sampletopo._validation import invalid
    from sampletopo.commands._common import check_out_file

    figure = getattr(args, "figure", None)
    if figure is None:
        return None
    if not getattr(args, "sensitivity", False):
        raise invalid(
            "--figure",
            "a figure of a sensitivity table",
            figure,
            where="sampletopo compare",
            kind="flag",
            fix="Add --sensitivity (with several --k values).",
        )
    from matplotlib.figure import Figure

    path = check_out_file(figure, "--figure", example="sensitivity.png")
    supported = sorted(Figure().canvas.get_supported_filetypes())
    if path.suffix.lstrip(".").lower() not in supported:
        raise invalid(
            "--figure",
            f"a file name ending in a format matplotlib can save: {', '.join(supported)}",
            figure,
            where="sampletopo compare",
            kind="flag",
            fix="End the name in .png, .pdf or .svg.",
        )
    return path


def _sensitivity(
    args: argparse.Namespace,
    metric: str,
    options: dict[str, Any],
    out: Path | None,
    figure: Path | None,
) -> int:
    from sampletopo.export import write_table
    from sampletopo.replicates import sensitivity
    from sampletopo.runs import graph_label

    graph = given(args, "k", "features", "pca_components")
    graph.pop("progress", None)
    table = sensitivity(args.runs, metric, **graph, **options)
    printed = table.drop("metric", "split", "tree", "verdict", "mean_a", "mean_b", "p_min")
    if table["pca_components"].null_count() == table.height:
        printed = printed.drop("pca_components")  # no PCA features asked
    split, tree = table["split"][0], table["tree"][0]
    print(f"{metric} of the {split} split's {tree}-tree diagrams, difference per graph setting:")
    with _printed():
        print(_shown(printed))
    for row in table.iter_rows(named=True):
        setting = graph_label(row["k"], row["features"], row["pca_components"] or 0)
        print(
            f"{setting}, epoch {row['epoch']}, {row['group_a']} vs {row['group_b']}: {row['verdict']}"
        )
    if out is not None:
        print(write_table(table, out))
    if figure is not None:
        import inspect

        import matplotlib.pyplot as plt

        from sampletopo.plotting import plot_sensitivity
        from sampletopo.plotting._topology import (
            attach_data,
            save_figure,
            save_figure_data,
            sensitivity_caption,
        )
        from sampletopo.replicates import compare

        level = options.get(
            "confidence", inspect.signature(compare).parameters["confidence"].default
        )
        fig, ax = plt.subplots(figsize=(6, 4))
        plot_sensitivity(table, ax=ax)
        fig.tight_layout()
        # Its numbers and caption beside it, as every figure's (sampletopo.plotting.save).
        attach_data(fig, table, sensitivity_caption(table, confidence=level))
        print(save_figure(fig, figure))
        print(save_figure_data(fig, figure))
        plt.close(fig)
    return 0
