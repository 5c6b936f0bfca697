"""Benchmark of ``sampletopo audit``: do topological regions find flipped labels better than
per-sample rankings?

One run prints the whole table (the README's "Label audit" section): for each data set, noise
type and method, AUROC and precision at the true number of flipped samples, the number of items
a reviewer looks at to find 80 % of the flipped samples (a region counts as one item), and for
the clustered noise the share of flipped clusters recovered.

Data (nothing downloaded): scikit-learn's ``digits`` and ``mnist1d`` (``pip install mnist1d
requests``; it generates its data locally; skipped with a note when missing).

Noise (training labels only, the validation split stays clean):

- ``sym10`` / ``sym30``: 10 % / 30 % of the labels replaced by another class, uniformly.
- ``cluster``: ``--clusters`` tight kNN neighbourhoods (a random sample and its nearest
  ``--cluster-size - 1`` neighbours of the same class in the raw features) relabelled, each as
  a whole, to one other class: a mislabeled cluster.
- ``classcond``: 40 % of the samples of the two classes whose means are closest swapped to
  the other one of the pair.

Per (data, noise, seed): a small MLP trained with Adam for ``--epochs`` epochs, every epoch's
training-split losses recorded by :class:`sampletopo.LossRecorder` (eval mode), the kNN graph
and diagrams computed by :func:`sampletopo.compute_topology` (k=20, raw features), then the
audit's scores (:func:`sampletopo.audit.suspicion_scores`). Tuning (``--tune``) runs seed 0
and compares the topological score's ``aggregate`` alternatives; the reported numbers use
seeds 1-5 (``--seeds``), not seen while choosing.

Recovered cluster: at least half its members are in the union of the top ``--regions``
regions; for a per-sample method, in its top-K samples where K is the total size of those
regions (the same number of samples to look at).

Usage::

    python benchmarks/bench_audit.py                 # digits + mnist1d, seeds 1-5 (~2-4 min)
    python benchmarks/bench_audit.py --tune          # seed 0, the aggregate alternatives
    python benchmarks/bench_audit.py --seeds 1 2 3 4 --epochs 30 --mnist1d-n 4000
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

NOISES = ("sym10", "sym30", "cluster", "classcond")


# ---------------------------------------------------------------------------------------------
# Data and noise


def load(name: str, n_mnist1d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_val, y_val), x of shape (n, 1, H, W) in [0, 1]."""
    if name == "digits":
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        d = load_digits()
        x = (d.images / 16.0).astype(np.float32)[:, None]
        xt, xv, yt, yv = train_test_split(
            x, d.target, test_size=0.2, stratify=d.target, random_state=0
        )
        return xt, yt, xv, yv
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = int(n_mnist1d / 0.8)
    d = make_dataset(args)
    lo, hi = float(d["x"].min()), float(d["x"].max())

    def scale(a: np.ndarray) -> np.ndarray:
        return np.clip((a - lo) / (hi - lo), 0, 1).astype(np.float32)[:, None, None, :]

    return scale(d["x"]), d["y"], scale(d["x_test"]), d["y_test"]


def _other(label: int, classes: int, rng: np.random.Generator) -> int:
    return int((label + rng.integers(1, classes)) % classes)


def add_noise(
    x: np.ndarray, y: np.ndarray, kind: str, seed: int, *, clusters: int, cluster_size: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Noisy labels and the flipped groups (one array per cluster, or one with all flips)."""
    rng = np.random.default_rng(seed)
    classes = int(y.max()) + 1
    noisy = y.copy()
    if kind.startswith("sym"):
        rate = int(kind[3:]) / 100
        idx = rng.choice(y.size, int(round(rate * y.size)), replace=False)
        for i in idx:
            noisy[i] = _other(int(y[i]), classes, rng)
        return noisy, [np.sort(idx)]
    flat = x.reshape(x.shape[0], -1)
    if kind == "cluster":
        taken = np.zeros(y.size, dtype=bool)
        groups = []
        for _ in range(clusters):
            free = np.flatnonzero(~taken)
            c = int(rng.choice(free))
            same = np.flatnonzero((y == y[c]) & ~taken)
            d = ((flat[same] - flat[c]) ** 2).sum(axis=1)
            members = same[np.argsort(d, kind="stable")[:cluster_size]]
            taken[members] = True
            noisy[members] = _other(int(y[c]), classes, rng)
            groups.append(np.sort(members))
        return noisy, groups
    # classcond: the two classes whose means are closest
    means = np.stack([flat[y == c].mean(axis=0) for c in range(classes)])
    dist = ((means[:, None] - means[None]) ** 2).sum(axis=2) + np.diag(np.full(classes, np.inf))
    a, b = np.unravel_index(np.argmin(dist), dist.shape)
    flipped = []
    for src, dst in ((a, b), (b, a)):
        members = np.flatnonzero(y == src)
        pick = rng.choice(members, int(round(0.4 * members.size)), replace=False)
        noisy[pick] = dst
        flipped.append(pick)
    return noisy, [np.sort(np.concatenate(flipped))]


# ---------------------------------------------------------------------------------------------
# One training run


def train_and_record(folder: Path, ds: Any, *, epochs: int, seed: int, hidden: int = 128) -> Path:
    import torch
    from torch import nn

    from sampletopo import LossRecorder, compute_topology

    torch.manual_seed(seed)
    torch.set_num_threads(1)  # tiny model: more threads only contend on a shared machine
    x, y = ds.tensors("train")
    d = int(np.prod(x.shape[1:]))
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, ds.num_classes)
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    run = folder / "exp" / "run"
    g = torch.Generator().manual_seed(seed)
    with LossRecorder(run, ds, splits=("train",)) as rec:
        for epoch in range(1, epochs + 1):
            perm = torch.randperm(x.shape[0], generator=g)
            model.train()
            for s in range(0, x.shape[0], 64):
                b = perm[s : s + 64]
                opt.zero_grad()
                nn.functional.cross_entropy(model(x[b]), y[b]).backward()
                opt.step()
            rec.on_train_epoch_end(epoch, model)
    compute_topology(run, splits=["train"], k=20, progress=False)
    return run


# ---------------------------------------------------------------------------------------------
# Measures


def measure(
    run: Path, groups: list[np.ndarray], *, kind: str, regions_n: int, aggregates: list[str]
) -> list[dict[str, Any]]:
    from sampletopo.analysis import graph_for_run
    from sampletopo.audit import (
        _tables,
        audit_regions,
        auroc,
        precision_at,
        review_items,
        suspicion_scores,
        topological_scores,
    )
    from sampletopo.runs import Run

    r = Run(run)
    graph = graph_for_run(r, split="train", k=20)
    tables = _tables(r, "train")
    feats = r.dataset().features("train", kind="standardized")
    scores, _, notes = suspicion_scores(tables, graph=graph, features=feats, seed=0)
    for a in aggregates:
        if a != "mean":
            scores[f"topology[{a}]"] = topological_scores(graph, tables["loss"], aggregate=a)
    n = tables["label"].size
    flipped = np.zeros(n, dtype=bool)
    for gr in groups:
        flipped[gr] = True

    def regions(rank_by: str) -> list[np.ndarray]:
        reg = audit_regions(
            graph, tables["loss"], tables["label"], tables["pred"][-1], top=regions_n,
            rank_by=rank_by,
        )  # fmt: skip
        return [np.asarray(m) for m in reg["members"].to_list()]

    members = regions("disagreement")
    by_persistence = regions("persistence")
    covered = np.zeros(n, dtype=bool)
    for m in members:
        covered[m] = True
    budget = int(covered.sum())  # per-sample methods look at as many samples as the regions
    rows = []
    # The same score reviewed through the most persistent regions instead (rank_by="persistence").
    scores = {**scores, "topology/pers-regions": scores["topology"]}
    for name, s in scores.items():
        is_topo = name.startswith("topology/") or name == "topology"
        regs = by_persistence if name == "topology/pers-regions" else members
        row: dict[str, Any] = {
            "method": name,
            "auroc": auroc(flipped, s),
            "prec@flipped": precision_at(flipped, s),
            "review80": review_items(flipped, s, regions=regs if is_topo else ()),
            "seen80": review_items(flipped, s, regions=regs if is_topo else (), count="samples"),
        }
        if kind == "cluster":
            if is_topo:
                seen = np.zeros(n, dtype=bool)
                for m in regs:
                    seen[m] = True
            else:
                seen = np.zeros(n, dtype=bool)
                seen[np.lexsort((np.arange(n), -s))[:budget]] = True
            row["clusters_found"] = float(np.mean([seen[gr].mean() >= 0.5 for gr in groups]))
        rows.append(row)
    if "aum" not in scores:
        rows.append({"method": "aum", "note": "; ".join(x for x in notes if x.startswith("aum"))})
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", nargs="+", default=["digits", "mnist1d"])
    p.add_argument("--noise", nargs="+", default=list(NOISES), choices=NOISES)
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    p.add_argument("--tune", action="store_true", help="seed 0 and the aggregate alternatives")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--mnist1d-n", type=int, default=2000, help="mnist1d training samples")
    p.add_argument("--clusters", type=int, default=5)
    p.add_argument("--cluster-size", type=int, default=15)
    p.add_argument("--regions", type=int, default=20, help="top-N regions")
    args = p.parse_args(argv)
    seeds = [0] if args.tune else args.seeds
    aggregates = ["mean", "max", "mean_loss"] if args.tune else ["mean"]
    from sampletopo import Dataset

    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for data in args.data:
        if data == "mnist1d" and importlib.util.find_spec("mnist1d") is None:
            print("mnist1d: skipped, `pip install mnist1d requests` to include it")
            continue
        xt, yt, xv, yv = load(data, args.mnist1d_n)
        for noise in args.noise:
            for seed in seeds:
                noisy, groups = add_noise(
                    xt, yt, noise, seed, clusters=args.clusters, cluster_size=args.cluster_size
                )
                ds = Dataset.from_arrays(f"{data}-{noise}", train=(xt, noisy), val=(xv, yv))
                with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    run = train_and_record(Path(tmp), ds, epochs=args.epochs, seed=seed)
                    for r in measure(
                        run, groups, kind=noise, regions_n=args.regions, aggregates=aggregates
                    ):
                        rows.append({"data": data, "noise": noise, "seed": seed, **r})
                print(f"  {data} {noise} seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
    df = pl.DataFrame(rows)
    notes = df.filter(pl.col("note").is_not_null()) if "note" in df.columns else None
    vals = [
        c
        for c in ("auroc", "prec@flipped", "review80", "seen80", "clusters_found")
        if c in df.columns
    ]
    table = (
        df.filter(pl.col("auroc").is_not_null())
        .group_by(["data", "noise", "method"], maintain_order=True)
        .agg([pl.col(c).mean().round(3) for c in vals])
    )
    with pl.Config(tbl_rows=200, tbl_cols=20, tbl_width_chars=200, tbl_hide_dataframe_shape=True):
        print(f"seeds {seeds}, {args.epochs} epochs, top {args.regions} regions (means over seeds)")
        print(table)
    if notes is not None and notes.height:
        print("notes:", notes["note"].unique().to_list())
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
