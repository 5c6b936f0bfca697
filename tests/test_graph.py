"""kNN graph, grid graph and edge-list graph: values, caching and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

import sampletopo as st
from sampletopo._errors import SampletopoError


def sklearn_knn_edges(X, k, metric="euclidean"):
    nn = NearestNeighbors(n_neighbors=k + 1, algorithm="brute", metric=metric).fit(X)
    _, idx = nn.kneighbors(X)
    pairs = set()
    for i, row in enumerate(idx):
        row = [j for j in row if j != i][:k]
        for j in row:
            pairs.add((min(i, j), max(i, j)))
    return sorted(pairs)


@pytest.mark.parametrize("metric,skl", [("l2", "euclidean"), ("cosine", "cosine")])
def test_knn_matches_sklearn_brute_force(rng, metric, skl):
    X = rng.normal(size=(300, 7)).astype(np.float32)
    g = st.knn_graph(X, k=6, metric=metric)
    assert [tuple(e) for e in g.edges.tolist()] == sklearn_knn_edges(X, 6, skl)
    assert g.k == 6 and g.metric == metric and g.n == 300
    assert np.all(g.edges[:, 0] < g.edges[:, 1])
    # Symmetrized: every vertex has at least k neighbours.
    assert g.degrees().min() >= 6


def test_knn_small_case_by_hand():
    X = np.array([[0.0], [1.0], [3.0], [10.0], [10.5]])
    g = st.knn_graph(X, k=1)
    # 0<->1, 1->0, 2->1, 3<->4 : symmetrized union.
    assert g.edges.tolist() == [[0, 1], [1, 2], [3, 4]]
    assert g.n_components == 2


def test_duplicates_are_deterministic_and_self_is_excluded():
    base = np.random.default_rng(3).normal(size=(20, 4))
    X = np.concatenate([base, base, base])  # every point three times
    g1 = st.knn_graph(X, k=2)
    g2 = st.knn_graph(X.copy(), k=2)
    assert np.array_equal(g1.edges, g2.edges)
    # Each point's two nearest are its two copies (distance 0): the triples are cliques.
    for i in range(20):
        trio = {i, i + 20, i + 40}
        nb = set(g1.csr()[1][g1.csr()[0][i] : g1.csr()[0][i + 1]].tolist())
        assert trio - {i} <= nb and i not in nb


def test_cache_round_trip_and_refuses_other_data(tmp_path, rng):
    X = rng.normal(size=(100, 3))
    g = st.knn_graph(X, k=5, cache_dir=tmp_path)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1 and g.fingerprint in files[0].name
    mtime = files[0].stat().st_mtime_ns
    again = st.knn_graph(X, k=5, cache_dir=tmp_path)
    assert files[0].stat().st_mtime_ns == mtime  # served from the cache, not searched again
    assert np.array_equal(again.edges, g.edges) and again.fingerprint == g.fingerprint
    loaded = st.Graph.load(files[0], features=X)
    assert np.array_equal(loaded.edges, g.edges)
    with pytest.raises(SampletopoError, match="built from other features"):
        st.Graph.load(files[0], features=X + 1.0)
    # Other data gets its own file.
    st.knn_graph(X + 1.0, k=5, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2


def test_corrupt_graph_file(tmp_path):
    p = tmp_path / "g.npz"
    p.write_bytes(b"not a zip")
    with pytest.raises(SampletopoError, match=r"g\.npz. is damaged: .*build the graph again"):
        st.Graph.load(p)


def test_grid_graph_axis_and_freudenthal():
    g = st.grid_graph((3, 3))
    assert g.n == 9 and g.n_edges == 12
    g3 = st.grid_graph((4, 5, 6))
    assert g3.n_edges == 3 * 5 * 6 + 4 * 4 * 6 + 4 * 5 * 5
    fr = st.grid_graph((3, 3), connectivity="freudenthal")
    assert fr.n_edges == 12 + 4  # one diagonal per cell
    assert [0, 4] in fr.edges.tolist() and [1, 3] not in fr.edges.tolist()
    # Vertex ids follow ravel_multi_index.
    assert [
        int(np.ravel_multi_index((1, 2), (3, 3))),
        int(np.ravel_multi_index((2, 2), (3, 3))),
    ] in g.edges.tolist()


def test_grid_join_tree_counts_minima():
    x = np.linspace(-3, 3, 41)
    xx, yy = np.meshgrid(x, x, indexing="ij")
    f = np.sin(2 * xx) * np.cos(2 * yy) + 0.01 * xx
    jt = st.join_tree(st.grid_graph((41, 41)), f.ravel())
    # Count strict local minima over axis neighbours directly.
    pad = np.pad(f, 1, constant_values=np.inf)
    c = pad[1:-1, 1:-1]
    is_min = (c < pad[:-2, 1:-1]) & (c < pad[2:, 1:-1]) & (c < pad[1:-1, :-2]) & (c < pad[1:-1, 2:])
    assert jt.n_leaves == int(is_min.sum())
    assert jt.n_saddles >= jt.n_leaves - 1


def test_graph_from_edges_bad_input():
    with pytest.raises(SampletopoError, match="outside"):
        st.graph_from_edges(3, [[0, 3]])
    with pytest.raises(SampletopoError, match="self-loop"):
        st.graph_from_edges(3, [[1, 1]])
    with pytest.raises(SampletopoError, match="transpose"):
        st.graph_from_edges(5, np.zeros((2, 5), dtype=int))
    with pytest.raises(SampletopoError, match="outside"):
        st.graph_from_edges(3, [[-1, 2]])
    g = st.graph_from_edges(3, [[2, 0], [0, 2], [1, 0]])
    assert g.edges.tolist() == [[0, 1], [0, 2]]
    assert st.graph_from_edges(3, []).n_edges == 0


def test_knn_bad_input():
    X = np.zeros((10, 2))
    with pytest.raises(
        SampletopoError,
        match=r"'k' parameter of knn_graph must be an int in the range \[1, 9\]. Got 10",
    ):
        st.knn_graph(X, k=10)
    with pytest.raises(SampletopoError, match="Got 0"):
        st.knn_graph(X, k=0)
    with pytest.raises(SampletopoError, match="non-empty 2-D"):
        st.knn_graph(np.zeros(10), k=2)
    with pytest.raises(SampletopoError, match="non-empty 2-D"):
        st.knn_graph(np.zeros((0, 3)), k=2)
    bad = np.ones((10, 2))
    bad[4, 1] = np.nan
    with pytest.raises(SampletopoError, match="row 4"):
        st.knn_graph(bad, k=2)
    with pytest.raises(SampletopoError, match="metric"):
        st.knn_graph(X, k=2, metric="manhattan")  # type: ignore[arg-type]


@pytest.mark.parametrize("index", ["hnsw", "ivf"])
def test_approximate_index_reports_recall(tmp_path, index, capsys):
    rng = np.random.default_rng(7)
    centers = rng.normal(scale=10, size=(20, 8))
    X = (centers[rng.integers(0, 20, 3000)] + rng.normal(size=(3000, 8))).astype(np.float32)
    exact = st.knn_graph(X, k=10)
    g = st.knn_graph(X, k=10, index=index, cache_dir=tmp_path)
    assert "recall@10 against exact search" in capsys.readouterr().out
    assert exact.recall is None
    assert 0.8 <= g.recall <= 1.0
    shared = {tuple(e) for e in g.edges.tolist()} & {tuple(e) for e in exact.edges.tolist()}
    assert len(shared) / exact.n_edges >= 0.8
    (path,) = tmp_path.glob(f"knn-l2-{index}-k10-*.npz")
    assert st.Graph.load(path).recall == pytest.approx(g.recall)
    with pytest.raises(SampletopoError, match="'index' must be"):
        st.knn_graph(X, k=10, index="lsh")  # type: ignore[arg-type]
