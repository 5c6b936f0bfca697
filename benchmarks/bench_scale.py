"""Scale benchmark: one epoch's join + split diagrams on a 500,000-vertex graph.

Builds a synthetic kNN-like graph (each vertex linked to ``k`` seeded random others, then
symmetrized: about ``n * k`` edges), then, in a fresh process so the peak memory is its own,
loads it and times the join and split diagrams of one epoch's random losses. Prints graph
construction time separately, diagram time (warm, JIT excluded) and peak resident memory.
Target (issue 7): under 5 s and under 4 GiB on 2 cores.

    python benchmarks/bench_scale.py [--n 500000] [--k 20]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def child(path: str) -> None:
    import sampletopo as st

    st.join_tree(st.graph_from_edges(3, [[0, 1]]), [0.0, 1.0, 2.0])  # JIT / cache load
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    g = st.Graph.load(path)
    t_load = time.perf_counter() - t
    f = np.random.default_rng(1).gamma(2.0, size=g.n)
    after_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(3):
        t = time.perf_counter()
        dj = st.join_tree(g, f).diagram()
        ds = st.split_tree(g, f).diagram()
        times.append(time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "n": g.n,
                "edges": g.n_edges,
                "load_s": t_load,
                "diagrams_s": min(times),
                "pairs": [len(dj), len(ds)],
                "rss_start_mib": base / 1024,
                "rss_after_load_mib": after_load / 1024,
                "rss_peak_mib": peak / 1024,
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=500_000)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return
    import sampletopo as st

    rng = np.random.default_rng(0)
    t = time.perf_counter()
    src = np.repeat(np.arange(args.n, dtype=np.int64), args.k)
    dst = rng.integers(0, args.n - 1, size=src.size)
    dst = dst + (dst >= src)  # no self-loops
    g = st.graph_from_edges(args.n, np.stack([src, dst], axis=1))
    t_graph = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "g.npz"
        g.save(path)
        del g
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(path)],
            capture_output=True,
            text=True,
            check=True,
        )
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        f"graph: n={r['n']:,}, edges={r['edges']:,} (synthetic, built in {t_graph:.1f} s, loaded in {r['load_s']:.1f} s)"
    )
    print(
        f"join + split diagrams of one epoch: {r['diagrams_s']:.2f} s (warm), pairs {r['pairs']}   target < 5 s"
    )
    print(
        f"peak RSS {r['rss_peak_mib']:.0f} MiB (after imports {r['rss_start_mib']:.0f} MiB, after load "
        f"{r['rss_after_load_mib']:.0f} MiB)   target < 4096 MiB"
    )


if __name__ == "__main__":
    main()
