"""``sampletopo landscape``: the parameter-space view of one run at one epoch.

Computes the Hessian summary (top eigenvalues, trace, spectral density), a ``dim``-dimensional
loss landscape along Hessian or filter-normalized random directions, its merge-tree metrics, and
writes ``<experiment>/landscapes/<variant>-epoch=NNNN.npz`` (plus PNG figures with
``--figures``). The work is in :func:`sampletopo.landscape.landscape_for_run`.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "landscape",
        help="Hessian spectrum and n-D loss landscape (with merge-tree metrics) of a run.",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("run", help="run directory (holds config.toml and checkpoints/)")
    p.add_argument("--epoch", type=int, required=True, help="checkpoint epoch")
    p.add_argument("--dirs", choices=["hessian", "random"], default="random")
    p.add_argument("--dim", type=int, default=2, help="grid dimension d")
    p.add_argument("--steps", type=int, default=21, help="grid points per axis")
    p.add_argument("--distance", type=float, default=1.0, help="grid half-width")
    p.add_argument(
        "--n-samples", type=int, default=512, help="training samples the loss is averaged over"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--connectivity", choices=["axis", "freudenthal"], default="freudenthal")
    p.add_argument("--batch-size", type=int, default=None, help="samples per forward pass")
    p.add_argument("--out", default=None, help="output .npz (default: <experiment>/landscapes/)")
    p.add_argument("--figures", action="store_true", help="also write PNG figures next to it")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from sampletopo.landscape import landscape_for_run, load_landscape

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
        out=args.out,
        progress=not args.no_progress,
    )
    _, extra = load_landscape(path)
    m = extra["metrics"]
    print(f"wrote {path}")
    print(
        f"minima {m['n_minima']}  saddles {m['n_saddles']}  avg persistence "
        f"{m['average_persistence']:.4g}  SMAD {m['smad']:.4g}  non-finite {m['n_nonfinite']}"
    )
    print(
        f"Hessian top eigenvalue {m['hessian_top_eigenvalue']:.4g}  trace "
        f"{m['hessian_trace']:.4g}  loss range [{m['loss_min']:.4g}, {m['loss_max']:.4g}]"
    )
    if args.figures:
        from sampletopo.plotting._landscape import save_landscape_figures

        for fig in save_landscape_figures(path):
            print(f"wrote {fig}")
    return 0
