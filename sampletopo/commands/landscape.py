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

from sampletopo.commands._common import add_command


def register(subparsers: Any) -> None:
    p = add_command(
        subparsers,
        "landscape",
        help="Hessian spectrum and n-D loss landscape (with merge-tree metrics) of a run",
        description=__doc__,
    )
    p.add_argument("run", help="run directory (holds config.toml and checkpoints/)")
    p.add_argument("--epoch", type=int, required=True, help="checkpoint epoch")
    p.add_argument(
        "--dirs",
        choices=["hessian", "random"],
        default="random",
        help="grid directions: the Hessian's top eigenvectors, or filter-normalized random ones",
    )
    p.add_argument("--dim", type=int, default=2, help="grid dimension d")
    p.add_argument("--steps", type=int, default=21, help="grid points per axis")
    p.add_argument("--distance", type=float, default=1.0, help="grid half-width")
    p.add_argument(
        "--n-samples", type=int, default=512, help="training samples the loss is averaged over"
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the sample subset, the random directions and the Hessian estimators",
    )
    p.add_argument(
        "--connectivity",
        choices=["axis", "freudenthal"],
        default="freudenthal",
        help="neighbours in the grid graph of the merge tree: axis (along the axes only; the "
        "graph Landscaper uses, so its counts match) or freudenthal (adds the diagonals of a "
        "triangulation, so a saddle between two diagonal basins is seen)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="samples per forward pass (default: sized to the model's largest activation)",
    )
    p.add_argument(
        "--trace-rtol",
        type=float,
        default=0.05,
        help="target relative standard error of the Hutchinson trace (default 0.05)",
    )
    p.add_argument(
        "--trace-max-samples",
        type=int,
        default=100,
        help="most Hessian-vector products the trace may use; the summary says whether it "
        "converged within them (default 100)",
    )
    p.add_argument(
        "--no-hessian",
        action="store_true",
        help="skip the Hessian eigenpairs, trace and density (only with --dirs random)",
    )
    p.add_argument("--out", default=None, help="output .npz (default: <experiment>/landscapes/)")
    p.add_argument("--figures", action="store_true", help="also write PNG figures next to it")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
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
    from sampletopo._errors import SampletopoError
    from sampletopo.commands._common import check_out_file, check_seed_flag

    check_seed_flag(args.seed, "--seed")
    if args.no_hessian and args.dirs == "hessian":
        raise SampletopoError(
            "--no-hessian skips the Hessian, but --dirs hessian needs its eigenvectors. Use "
            "--dirs random with --no-hessian, or drop --no-hessian."
        )
    if args.out:
        from sampletopo.runs import Run

        example = Run(args.run).landscape_file(args.epoch).name
        check_out_file(args.out, example=example, suffix=".npz")

    from sampletopo.landscape import landscape_for_run, read_landscape

    path = landscape_for_run(
        args.run,
        args.epoch,
        dirs=args.dirs,
        dim=args.dim,
        steps=args.steps,
        distance=args.distance,
        n_samples=args.n_samples,
        seed=args.seed,
        connectivity=args.connectivity,
        batch_size=args.batch_size,
        trace_rtol=args.trace_rtol,
        trace_max_samples=args.trace_max_samples,
        hessian=not args.no_hessian,
        out=args.out,
        progress=not args.no_progress,
    )
    _, extra = read_landscape(path)
    print(f"wrote {path}")
    for line in summary_lines(extra):
        print(line)
    if args.figures:
        from sampletopo.plotting._landscape import save_landscape_figures

        for fig in save_landscape_figures(path):
            print(f"wrote {fig}")
    return 0
