"""Core benchmark: join + split diagrams vs gudhi, Wasserstein hera vs POT, FAISS kNN vs sklearn.

Runs both sides in one process on the same data and prints times and ratios. Not a test.

    python benchmarks/bench_core.py [--n 50000] [--k 20] [--dim 32] [--knn-n 20000]
"""

from __future__ import annotations

import argparse
import time

import gudhi
import numpy as np
from sklearn.neighbors import NearestNeighbors

import sampletopo as st


def gudhi_both(g: st.Graph, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    out = []
    for vals in (f, -f):
        s = gudhi.SimplexTree()
        s.insert_batch(np.arange(g.n)[None, :], vals)
        s.insert_batch(g.edges.T, np.maximum(vals[g.edges[:, 0]], vals[g.edges[:, 1]]))
        pairs = s.persistence(persistence_dim_max=True)
        arr = np.array([p for dim, p in pairs if dim == 0], dtype=float)
        out.append(arr[np.lexsort((arr[:, 1], arr[:, 0]))])
    return out[0], out[1]


def ours_both(g: st.Graph, f: np.ndarray) -> tuple[st.Diagram, st.Diagram]:
    return st.join_tree(g, f).diagram(), st.split_tree(g, f).diagram()


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--knn-n", type=int, default=20_000)
    ap.add_argument("--knn-dim", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--w-points", type=int, default=2000, help="pairs per diagram for Wasserstein")
    args = ap.parse_args()
    rng = np.random.default_rng(0)

    X = rng.normal(size=(args.n, args.dim)).astype(np.float32)
    t = time.perf_counter()
    g = st.knn_graph(X, k=args.k)
    t_graph = time.perf_counter() - t
    f = rng.gamma(2.0, size=args.n)
    print(f"graph: n={g.n}, k={args.k}, edges={g.n_edges}, built in {t_graph:.2f} s (faiss exact)")

    t = time.perf_counter()
    small = st.graph_from_edges(3, [[0, 1]])
    st.join_tree(small, [0.0, 1.0, 2.0])
    t_jit = time.perf_counter() - t
    print(f"first call (numba JIT compile or cache load): {t_jit:.2f} s, excluded below")

    ours_j, ours_s = ours_both(g, f)
    ref_j, ref_s = gudhi_both(g, f)
    same = np.array_equal(
        ours_j.to_numpy()[np.lexsort((ours_j.death, ours_j.birth))], ref_j
    ) and np.array_equal(-ours_s.to_numpy()[np.lexsort((-ours_s.death, -ours_s.birth))], ref_s)
    t_ours = best_of(lambda: ours_both(g, f), args.repeat)
    t_gudhi = best_of(lambda: gudhi_both(g, f), max(1, args.repeat // 2))
    print(
        f"join+split diagrams  sampletopo {t_ours * 1e3:8.1f} ms   gudhi {t_gudhi * 1e3:8.1f} ms   "
        f"ratio {t_gudhi / t_ours:6.1f}x   identical diagrams: {same}"
    )

    m = args.w_points
    b1, b2 = rng.random(m), rng.random(m)
    d1 = st.Diagram(b1, b1 + rng.exponential(0.1, m), np.arange(m), np.arange(m), "join")
    d2 = st.Diagram(b2, b2 + rng.exponential(0.1, m), np.arange(m), np.arange(m), "join")
    st.wasserstein(d1, d2, backend="pot")  # import and warm up POT
    for order in (1, 2):
        w_h = st.wasserstein(d1, d2, order=order)
        w_p = st.wasserstein(d1, d2, order=order, backend="pot")
        t_h = best_of(lambda o=order: st.wasserstein(d1, d2, order=o), 3)
        t_p = best_of(lambda o=order: st.wasserstein(d1, d2, order=o, backend="pot"), 1)
        print(
            f"W{order}, {m} + {m} pairs: hera {t_h:.2f} s   POT exact {t_p:.2f} s   ratio "
            f"{t_p / t_h:.1f}x   |difference| {abs(w_h - w_p):.1e}"
        )

    Xk = rng.normal(size=(args.knn_n, args.knn_dim)).astype(np.float32)
    t_faiss = best_of(lambda: st.knn_graph(Xk, k=args.k), 1)

    def skl():
        NearestNeighbors(n_neighbors=args.k + 1, algorithm="brute").fit(Xk).kneighbors(Xk)

    t_skl = best_of(skl, 1)
    print(
        f"kNN search {args.knn_n} x {args.knn_dim}, k={args.k}: faiss {t_faiss:.2f} s   "
        f"sklearn brute {t_skl:.2f} s   ratio {t_skl / t_faiss:.1f}x"
    )


if __name__ == "__main__":
    main()
