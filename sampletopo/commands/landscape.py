"""``sampletopo landscape``: the parameter-space view of one run at one epoch.

Computes the Hessian summary (top eigenvalues, trace, spectral density), a ``dim``-dimensional
loss landscape along Hessian or filter-normalized random directions, its merge-tree metrics, and
writes ``<experiment>/landscapes/<variant>-epoch=NNNN.npz`` (plus PNG figures with
``--figures``). With ``--no-hessian`` (random directions only) the Hessian summary is skipped,
which is most of the time of a small grid on a CPU. The printed summary names the grid graph the
merge-tree metrics were computed on (``--connectivity``; ``axis`` matches Landscaper's counts) and
says whether the Hutchinson trace reached ``--trace-rtol`` within ``--trace-max-samples``
Hessian-vector products. The work is in :func:`sampletopo.landscape.landscape_for_run`.
"""

from __future__ import annotations

import argparse
from typing import Any

from sampletopo.commands._common import add_command, given, option, progress_option

_FOR_RUN = "sampletopo.landscape:landscape_for_run"


def register(subparsers: Any) -> None:
    p = add_command(
        subparsers,
        "landscape",
        help="Hessian spectrum and n-D loss landscape (with merge-tree metrics) of a run",
        description=__doc__,
    )
    p.add_argument("run", help="run directory (holds config.toml and checkpoints/)")
    p.add_argument("--epoch", type=int, required=True, help="checkpoint epoch")
    option(
        p,
        "--dirs",
        choices=["hessian", "random"],
        default_of=_FOR_RUN,
        help="grid directions: the Hessian's top eigenvectors, or filter-normalized random ones",
    )
    option(p, "--dim", type=int, default_of=_FOR_RUN, help="grid dimension d")
    option(p, "--steps", type=int, default_of=_FOR_RUN, help="grid points per axis")
    option(p, "--distance", type=float, default_of=_FOR_RUN, help="grid half-width")
    option(
        p,
        "--n-samples",
        type=int,
        default_of=_FOR_RUN,
        help="training samples the loss is averaged over",
    )
    option(
        p,
        "--seed",
        type=int,
        default_of=_FOR_RUN,
        help="seed of the sample subset, the random directions and the Hessian estimators",
    )
    option(
        p,
        "--connectivity",
        choices=["axis", "freudenthal"],
        default_of=_FOR_RUN,
        help="neighbours in the grid graph of the merge tree: axis (along the axes only; the "
        "graph of Landscaper 1.3.1 and of gudhi's cubical complex on vertex values, so their "
        "counts match) or freudenthal (adds the diagonals of a triangulation, so a saddle "
        "between two diagonal basins is seen)",
    )
    option(
        p,
        "--batch-size",
        type=int,
        help="samples per forward pass (default: sized to the model's largest activation)",
    )
    option(
        p,
        "--trace-rtol",
        type=float,
        default_of=_FOR_RUN,
        help="target relative standard error of the Hutchinson trace",
    )
    option(
        p,
        "--trace-max-samples",
        type=int,
        default_of=_FOR_RUN,
        help="most Hessian-vector products the trace may use; the summary says whether it "
        "converged within them",
    )
    option(
        p,
        "--no-hessian",
        action="store_true",
        help="skip the Hessian eigenpairs, trace and density (only with --dirs random)",
    )
    option(
        p,
        "--model",
        help="for a run whose config.toml names no model (a loop of your own): the model it "
        "trained, as 'pkg.module:factory' (or a zoo name, 'torchvision:NAME'); checked against "
        "the architecture the run recorded and stored in its config.toml for later commands",
    )
    option(
        p,
        "--model-kw",
        nargs="+",
        metavar="KEY=VALUE",
        help="options of --model's factory, e.g. width=8 (values read as TOML: 8 is an int, "
        "0.5 a float, true a bool, anything else a string)",
    )
    option(p, "--out", help="output .npz (default: <experiment>/landscapes/)")
    option(p, "--figures", action="store_true", help="also write PNG figures next to it")
    progress_option(p, bars=True)
    p.set_defaults(func=_run)


def summary_lines(extra: dict[str, Any]) -> list[str]:
    """The printed summary of a saved landscape's extras (see ``read_landscape``)."""
    m = extra["metrics"]
    conn = m.get("connectivity", "unrecorded")
    lines = [
        f"merge tree on the {conn} grid graph: minima {m['n_minima']}  saddles "
        f"{m['n_saddles']}  avg persistence {m['average_persistence']:.4g}  SMAD "
        f"{m['smad']:.4g}  non-finite {m['n_nonfinite']}",
    ]
    # Skipped means never computed; a computed Hessian of a diverged model may still be NaN.
    if "hessian_eigenvalues" in extra:
        lines.append(
            f"Hessian top eigenvalue {m['hessian_top_eigenvalue']:.4g}  "
            f"trace {_trace_text(extra.get('hessian_trace'), m['hessian_trace'])}"
        )
    else:
        lines.append("Hessian: skipped")
    lines.append(f"loss range [{m['loss_min']:.4g}, {m['loss_max']:.4g}]")
    return lines


def _trace_text(trace: Any, value: float) -> str:
    if not isinstance(trace, dict) or "converged" not in trace:  # files from before the flag
        return f"{value:.4g} (convergence not recorded)"
    rel, rtol, n = trace["relative_stderr"], trace["rtol"], trace["n_samples"]
    if trace["converged"]:
        how = f"converged: relative stderr {rel:.2g} <= rtol {rtol:g} after {n} probes"
    else:
        how = (
            f"NOT converged: relative stderr {rel:.2g} > rtol {rtol:g} after all {n} probes; "
            "raise --trace-max-samples or --trace-rtol"
        )
    return f"{trace['value']:.4g} +- {trace['stderr']:.3g} ({how})"


def _run(args: argparse.Namespace) -> int:
    from sampletopo._validation import invalid
    from sampletopo.commands._common import check_out_file, check_seed_flag

    check_seed_flag(getattr(args, "seed", None), "--seed")
    if hasattr(args, "no_hessian") and getattr(args, "dirs", None) == "hessian":
        raise invalid(
            "--dirs",
            "random with --no-hessian",
            "hessian",
            where="sampletopo landscape",
            kind="flag",
            fix="--no-hessian skips the Hessian, but --dirs hessian needs its eigenvectors. Use "
            "--dirs random with --no-hessian, or drop --no-hessian.",
        )
    options = given(
        args, "dirs", "dim", "steps", "distance", "n_samples", "seed", "connectivity",
        "batch_size", "trace_rtol", "trace_max_samples", "out",
    )  # fmt: skip
    if options.get("out"):
        from sampletopo.runs import Run

        example = Run(args.run).landscape_file(args.epoch).name
        check_out_file(options["out"], example=example, suffix=".npz")
    if hasattr(args, "no_hessian"):
        options["hessian"] = False
    if hasattr(args, "model") or hasattr(args, "model_kw"):
        from sampletopo.commands.train import _parse_kv
        from sampletopo.runs import Run

        if not hasattr(args, "model"):
            raise invalid(
                "--model-kw", "given with --model", args.model_kw, where="sampletopo landscape",
                kind="flag", fix="Name the model: --model pkg.module:factory --model-kw ...",
            )  # fmt: skip
        kwargs = _parse_kv(getattr(args, "model_kw", None), "--model-kw")
        Run(args.run).set_model(args.model, kwargs, where="sampletopo landscape")

    from sampletopo.landscape import landscape_for_run, read_landscape

    path = landscape_for_run(args.run, args.epoch, **options)
    _, extra = read_landscape(path)
    print(f"wrote {path}")
    for line in summary_lines(extra):
        print(line)
    if hasattr(args, "figures"):
        from sampletopo.plotting._landscape import save_landscape_figures

        for fig in save_landscape_figures(path):
            print(f"wrote {fig}")
    return 0
