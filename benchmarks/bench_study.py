"""The analysis of a thesis-sized study, phase by phase, against today's exact serial W phase.

Builds a synthetic study of the thesis' shape (issue 17): ``--runs`` runs x ``--epochs`` + 1
epochs (epoch 0 is the initial model), ``--n-train`` + ``--n-val`` samples of 8x8 inputs,
recorded with :class:`~sampletopo.LossRecorder` from a linear model whose weights take a random
step every epoch, so the train diagrams have about 2,000-2,900 pairs and the val ones 370-570.
Then times ``sampletopo topology EXP --jobs J`` end to end, per phase (kNN graphs + diagrams,
summaries, Wasserstein curves), and, on ``--reference-epochs`` epochs of each (run, split,
tree) curve, the W phase as sampletopo 0.3 did it: W1 and W2 (hera, ``delta=1e-6``), serially,
extrapolated to every epoch (said so in the output). The values of the new curves are checked
against hera at ``delta=1e-6`` on those epochs, within the stored bound (``w1_bound``, 0 for
the exact default solver) plus hera's own ``1e-6`` relative error.

    python benchmarks/bench_study.py [--runs 2] [--epochs 200] [--n-train 50000] [--n-val 10000]
        [--jobs 2] [--w-solver assignment] [--delta 1e-6] [--reference-epochs 12] [--keep DIR]
    python benchmarks/bench_study.py --keep DIR --solvers 10   # the W solvers side by side

Not a test: run it on a quiet machine (``uptime`` is printed, since the 2 cores are shared).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

import sampletopo as st
from sampletopo import analysis
from sampletopo.data import Dataset
from sampletopo.diagrams import wasserstein
from sampletopo.readers import read_diagram, read_diagrams, read_summaries
from sampletopo.recorder import LossRecorder
from sampletopo.runs import Run, runs_in


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (the pools' workers) so far."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def synthetic_data(n_train: int, n_val: int, seed: int) -> Dataset:
    """8x8 inputs in [0, 1], 10 classes given by a fixed random linear rule plus noise."""
    rng = np.random.default_rng(seed)
    n = n_train + n_val
    x = rng.random((n, 1, 8, 8), dtype=np.float32)
    rule = rng.normal(size=(64, 10))
    logits = x.reshape(n, 64) @ rule + rng.normal(scale=1.0, size=(n, 10))
    y = logits.argmax(axis=1).astype(np.int64)
    return Dataset.from_arrays(
        "bench-study", train=(x[:n_train], y[:n_train]), val=(x[n_train:], y[n_train:])
    )


def record_study(exp: Path, ds: Dataset, *, runs: int, epochs: int, seed: int) -> None:
    """``runs`` runs of a linear model on 8x8 inputs, its weights perturbed every epoch."""
    for r in range(runs):
        torch.manual_seed(seed + r)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
        gen = torch.Generator().manual_seed(seed + 100 + r)
        with LossRecorder(exp / f"run{r}", ds, batch_size=10_000) as rec:
            for epoch in range(epochs + 1):
                rec.on_train_epoch_end(epoch, model)
                with torch.no_grad():
                    for p in model.parameters():
                        p.add_(0.05 * torch.randn(p.shape, generator=gen))


def old_serial_w(runs: list[Run], epochs: list[int]) -> tuple[float, pl.DataFrame]:
    """Seconds for sampletopo 0.3's W phase (W1 and W2, hera delta=1e-6, serial) on ``epochs``
    of every (run, split, tree) curve, and the W1 values it gives there."""
    rows = []
    t = time.perf_counter()
    for run in runs:
        for s in st.SPLITS:
            final = run.diagram_epochs(s)[-1]
            for tree in st.TREES:
                ref = read_diagram(run, split=s, tree=tree, epoch=final)
                for e in epochs:
                    d = read_diagram(run, split=s, tree=tree, epoch=e)
                    w1 = wasserstein(d, ref, order=1)
                    wasserstein(d, ref, order=2)
                    rows.append(
                        {"run": run.name, "split": s, "tree": tree, "epoch": e, "exact_w1": w1}
                    )
    return time.perf_counter() - t, pl.DataFrame(rows)


def compare_solvers(run: Run, step: int) -> None:
    """Seconds (serial) and largest relative difference to the exact value, per solver, order
    and split, over every ``step``-th epoch of the run's four curves."""
    from sampletopo.analysis import _w_points
    from sampletopo.diagrams import _finite_wasserstein

    solvers = [("assignment", 0.0), ("hera", 1e-6), ("hera", 1e-3), ("hera", 1e-2)]
    for s in st.SPLITS:
        by = read_diagrams(run, split=s).partition_by(["epoch", "tree"], as_dict=True)
        eps = run.diagram_epochs(s)
        secs: dict[tuple[float, str, float], float] = {}
        diff: dict[tuple[float, str, float], float] = {}
        for tree in st.TREES:
            ref = _w_points(by[(eps[-1], tree)], tree, 0.0)[0]
            for e in eps[:-1:step]:
                pts = _w_points(by[(e, tree)], tree, 0.0)[0]
                for order in (1.0, 2.0):
                    exact = 0.0
                    for backend, delta in solvers:
                        t = time.perf_counter()
                        w = _finite_wasserstein(pts, ref, order, np.inf, backend, delta or 1e-6)
                        key = (order, backend, delta)
                        secs[key] = secs.get(key, 0.0) + time.perf_counter() - t
                        exact = w if backend == "assignment" else exact
                        diff[key] = max(diff.get(key, 0.0), abs(w - exact) / exact)
        for (order, backend, delta), t in sorted(secs.items()):
            label = backend if backend == "assignment" else f"hera delta={delta:g}"
            print(
                f"{s} W{order:g} {label:>18}: {t:6.2f} s for {2 * len(eps[:-1:step])} "
                f"distances, max rel diff to exact {diff[(order, backend, delta)]:.1e}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=200, help="epochs after epoch 0")
    ap.add_argument("--n-train", type=int, default=50_000)
    ap.add_argument("--n-val", type=int, default=10_000)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--w-solver", default="assignment", choices=["assignment", "hera", "pot"])
    ap.add_argument("--delta", type=float, default=None, help="hera's delta (default: library's)")
    ap.add_argument("--reference-epochs", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", type=Path, default=None, help="build the study here and keep it")
    ap.add_argument(
        "--solvers",
        type=int,
        default=0,
        metavar="STEP",
        help="only compare the W solvers (exact assignment, hera at 3 deltas) on every STEP-th "
        "epoch of the first run (needs its topology, e.g. from a --keep run)",
    )
    args = ap.parse_args()
    print(f"load before: {os.getloadavg()} on {os.cpu_count()} cores")
    base = args.keep or Path(tempfile.mkdtemp(prefix="bench-study-"))
    exp = base / "study"
    try:
        t = time.perf_counter()
        if not exp.is_dir():
            ds = synthetic_data(args.n_train, args.n_val, args.seed)
            record_study(exp, ds, runs=args.runs, epochs=args.epochs, seed=args.seed)
        print(f"recording: {time.perf_counter() - t:.1f} s")
        if args.solvers:
            compare_solvers(runs_in(exp)[0], args.solvers)
        else:
            run_study(exp, args)
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    print(f"load after: {os.getloadavg()}")


def run_study(exp: Path, args: argparse.Namespace) -> None:
    runs = runs_in(exp)
    for r in runs:  # the topology is timed from scratch
        shutil.rmtree(r.topology_dir, ignore_errors=True)
    w_opts = {"backend": args.w_solver}
    if args.delta is not None:
        w_opts["delta"] = args.delta
    phases = []
    for name, call in (
        (f"graphs + diagrams ({args.jobs} jobs)", lambda: analysis.compute_topology(
            exp, jobs=args.jobs, progress=False)),
        ("summaries", lambda: analysis.summarize(exp)),
        (f"Wasserstein W1 ({args.jobs} jobs, {args.w_solver})", lambda: analysis.wasserstein_to_reference(
            exp, jobs=args.jobs, **w_opts)),
    ):  # fmt: skip
        load, c, t = os.getloadavg()[0], cpu_seconds(), time.perf_counter()
        out = call()
        phases.append((name, time.perf_counter() - t, cpu_seconds() - c, load))
    wd = out
    pairs = (
        read_summaries(exp)
        .group_by("split")
        .agg(lo=pl.col("n_pairs").min(), hi=pl.col("n_pairs").max())
        .sort("split")
    )
    for s, lo, hi in pairs.iter_rows():
        print(f"{s} diagrams: {lo}-{hi} finite pairs per tree")
    for name, wall, cpu, load in phases:
        print(f"{name}: {wall:.1f} s wall, {cpu:.1f} s CPU (1-min load before: {load:.1f})")
    total = sum(p[1] for p in phases)
    total_cpu = sum(p[2] for p in phases)
    t_w = phases[-1][1]
    print(
        f"topology total: {total:.1f} s wall, {total_cpu:.1f} s CPU; on {args.jobs} otherwise "
        f"idle cores it needs at least {total_cpu / args.jobs:.1f} s (CPU / jobs)"
    )
    print(f"delta stored: {wd['delta'][0]:g}; rows: {wd.height}")

    all_eps = runs[0].diagram_epochs("train")
    pick = np.unique(np.linspace(0, len(all_eps) - 2, args.reference_epochs).astype(int))
    eps = [all_eps[i] for i in pick]
    c = cpu_seconds()
    t_old, exact = old_serial_w(runs, eps)
    c_old = cpu_seconds() - c
    n_curves = len(runs) * len(st.SPLITS) * len(st.TREES)
    per = t_old / (n_curves * len(eps))
    old_total = per * n_curves * (len(all_eps) - 1)
    print(
        f"sampletopo 0.3's W phase (W1 + W2, hera delta=1e-6, serial) on {len(eps)} epochs of "
        f"each of {n_curves} curves: {t_old:.1f} s wall, {c_old:.1f} s CPU; EXTRAPOLATED to all "
        f"{len(all_eps) - 1} non-reference epochs: {old_total:.0f} s ({old_total / 60:.1f} min)"
    )
    print(
        f"ratio of W phases (wall): {old_total / t_w:.1f}x; whole topology then: "
        f"{total - t_w + old_total:.0f} s, now {total:.1f} s"
    )
    both = exact.join(wd, on=["run", "split", "tree", "epoch"])
    err = (both["w1"] - both["exact_w1"]).abs()
    # hera at delta=1e-6 is itself within 1e-6 * its value of the exact distance.
    ok = (err <= both["w1_bound"] + 1e-6 * both["exact_w1"] + 1e-12).all()
    rel = (err / both["exact_w1"]).max()
    print(
        f"W1 vs hera delta=1e-6 on {both.height} values: max abs diff {err.max():.2e}, "
        f"max rel diff {rel:.2e}; within the stored bound (+ hera's 1e-6): {ok}"
    )


if __name__ == "__main__":
    main()
