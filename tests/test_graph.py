"""kNN graph, grid graph and edge-list graph: values, caching and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st_h
from sklearn.neighbors import NearestNeighbors

import sampletopo as st
from sampletopo._errors import ParameterError, SampletopoError


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
    with pytest.raises(SampletopoError, match="'index' parameter of knn_graph must be"):
        st.knn_graph(X, k=10, index="lsh")  # type: ignore[arg-type]


# --- Exact distances, ties and scale (issue 11) ---------------------------------------------


def brute_knn_edges_exact(X, k, metric="l2"):
    """Exact float64 brute force on the float32 features, as knn_graph documents it: squared
    differences summed in feature order (cosine: |u - v|^2 / 2 with u = x * (1 / |x|), |x|^2
    summed in feature order, and 0 for rows with the same direction), each point's neighbours
    ordered by (distance, lower index). Independent of FAISS and of the candidate search."""
    x = np.asarray(X, dtype=np.float32).astype(np.float64)
    n, d = x.shape
    if metric == "cosine":
        sq = np.zeros(n)
        for c in range(d):
            sq += x[:, c] * x[:, c]
        x = x * (1.0 / np.sqrt(sq))[:, None]
    dist = np.zeros((n, n))
    for c in range(d):
        dist += (x[:, None, c] - x[None, :, c]) ** 2
    if metric == "cosine":
        dist *= 0.5
        raw = np.asarray(X, dtype=np.float32).astype(np.float64)
        for i, j in zip(*np.nonzero(dist < 1e-20)):  # rounding residue: maybe parallel
            # Same direction: rank one (exact: float32 products fit in float64), same sign.
            outer = raw[i][:, None] * raw[j][None, :]
            if np.array_equal(outer, outer.T) and raw[i] @ raw[j] > 0:
                dist[i, j] = 0.0
    pairs = set()
    for i in range(n):
        order = [int(j) for j in np.lexsort((np.arange(n), dist[i])) if j != i][:k]
        pairs.update((min(i, j), max(i, j)) for j in order)
    return sorted(pairs)


def edge_list(g):
    return [tuple(e) for e in g.edges.tolist()]


def test_small_distances_are_not_ties():
    # Rounding squared distances to 5 decimals made these "ties" broken by index: (0,1),(0,2).
    X = np.array([[0.0], [2.1], [1.0]]) * 1e-3
    assert st.knn_graph(X, k=1).edges.tolist() == [[0, 2], [1, 2]]
    assert st.knn_graph(X * 1e-3, k=1).edges.tolist() == [[0, 2], [1, 2]]


def data_with_duplicates(seed, n=70, d=6):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, d))
    # Exact duplicates (one point four times) and a tight cluster far from the origin.
    tight = 3.0 + 1e-3 * rng.normal(size=(10, d))
    return np.concatenate([base, base[:15], base[:3], base[:3], tight, tight[:4]])


@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("scale", [1e-19, 1e-6, 1e-3, 1.0, 1e3, 1e6, 1e19])
def test_knn_equals_exact_brute_force_at_every_scale(metric, scale):
    X = (data_with_duplicates(1) * scale).astype(np.float32)
    for k in (1, 4, 9):
        assert edge_list(st.knn_graph(X, k=k, metric=metric)) == brute_knn_edges_exact(X, k, metric)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_power_of_two_scaling_gives_the_identical_graph(metric):
    X = data_with_duplicates(2).astype(np.float32)
    ref = st.knn_graph(X, k=5, metric=metric).edges
    for e in (-100, -40, -7, 1, 9, 40, 100):
        assert np.array_equal(st.knn_graph(np.ldexp(X, e), k=5, metric=metric).edges, ref), e


@pytest.fixture
def faiss_blas():
    """Make FAISS compute every flat search with its BLAS path (|x|^2 + |y|^2 - 2 x.y in
    float32, as for large inputs and on GPUs), so that small tests meet its rounding."""
    import faiss

    old = faiss.cvar.distance_compute_blas_threshold
    faiss.cvar.distance_compute_blas_threshold = 0
    yield
    faiss.cvar.distance_compute_blas_threshold = old


def far_tight_cluster(n, d, seed=5):
    # A tight cluster far from the centroid of the data: within it the distances (~1e-6) are far
    # below the float32 rounding of FAISS's |x|^2 + |y|^2 - 2 x.y (~1e-1 here), so FAISS's
    # candidate lists are arbitrary; the completeness check must notice and search again.
    rng = np.random.default_rng(seed)
    a = 1000.0 + 1e-3 * rng.normal(size=(n // 2, d))
    b = rng.uniform(-1000, 1000, size=(n - n // 2, d))
    return np.concatenate([a, b]).astype(np.float32)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("d", [3, 16])
def test_float32_rounding_cannot_hide_a_neighbour(faiss_blas, metric, d):
    X = far_tight_cluster(120, d)
    assert edge_list(st.knn_graph(X, k=6, metric=metric)) == brute_knn_edges_exact(X, 6, metric)


def test_float32_rounding_at_a_size_where_faiss_uses_blas_anyway():
    X = far_tight_cluster(1000, 128)  # n * d >= 128000, FAISS's default BLAS threshold
    assert edge_list(st.knn_graph(X, k=5)) == brute_knn_edges_exact(X, 5)


def test_massive_ties_keep_the_lowest_indices():
    # 40 copies of one point and 40 of another: each point's k nearest are the k lowest-index
    # other copies, whatever order FAISS returned them in.
    X = np.repeat(np.array([[0.0, 0.0], [5.0, 5.0]], dtype=np.float32), 40, axis=0)[
        np.random.default_rng(0).permutation(80)
    ]
    g = st.knn_graph(X, k=7)
    assert edge_list(g) == brute_knn_edges_exact(X, 7)
    # A grid: many equal distances that are not zero.
    gx, gy = np.meshgrid(np.arange(9.0), np.arange(9.0), indexing="ij")
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1) * 1e-4
    for k in (2, 4, 8, 13):
        assert edge_list(st.knn_graph(grid, k=k)) == brute_knn_edges_exact(grid, k)


lattice = st_h.sampled_from([-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 2.25])


@st_h.composite
def lattice_features(draw, max_dim=4):
    n = draw(st_h.integers(2, 24))
    d = draw(st_h.integers(1, max_dim))
    vals = draw(st_h.lists(lattice, min_size=n * d, max_size=n * d))
    X = np.array(vals, dtype=np.float64).reshape(n, d)
    k = draw(st_h.integers(1, n - 1))
    return X, k


@settings(max_examples=60, deadline=None)
@given(lattice_features(), st_h.integers(-60, 60))
def test_property_knn_is_exact_and_scale_free_l2(data, e):
    # Dyadic values: every distance is exact, so ties are everywhere and exactly known.
    X, k = data
    g = st.knn_graph(np.ldexp(X, e), k=k)
    assert edge_list(g) == brute_knn_edges_exact(X, k)
    assert np.array_equal(st.knn_graph(X, k=k).edges, g.edges)


@settings(max_examples=60, deadline=None)
@given(lattice_features(max_dim=2), st_h.integers(-60, 60))
def test_property_knn_is_exact_and_scale_free_cosine(data, e):
    X, k = data
    assume(np.all(np.abs(X).sum(axis=1) > 0))  # a zero row has no direction
    g = st.knn_graph(np.ldexp(X, e), k=k, metric="cosine")
    assert edge_list(g) == brute_knn_edges_exact(X, k, "cosine")
    assert np.array_equal(st.knn_graph(X, k=k, metric="cosine").edges, g.edges)


# --- Inputs that used to reach numpy unchecked ----------------------------------------------


def test_graph_constructor_checks_and_canonicalises_edges():
    # The constructor itself: canonical form whatever the orientation, order or repeats.
    g = st.Graph(n=4, edges=np.array([[2, 1], [0, 3], [1, 2], [3, 0]]))
    assert g.edges.tolist() == [[0, 3], [1, 2]] and g.degrees().tolist() == [1, 1, 1, 1]
    mine = np.array([[0, 1]])
    st.Graph(n=2, edges=mine)
    assert mine.flags.writeable  # the caller's array is not frozen
    for edges, match in [
        ([[0, 4]], r"outside \[0, 3\]"),
        ([[-1, 2]], "negative ids do not count from the end"),
        ([[2, 2]], "self-loop"),
        ([0, 1, 2], r"shape \(E, 2\)"),
        (np.zeros((2, 5), dtype=int) + [[0], [1]], "transpose"),
        ([[0.5, 1]], "integer vertex ids"),
        ([[0, np.nan]], "integer vertex ids"),
        ([["0", "1"]], "strings"),
        ([[True, False]], "booleans"),
        ([[0, 2**40]], "outside"),
    ]:
        with pytest.raises(SampletopoError, match=match):
            st.Graph(n=4, edges=np.array(edges) if not isinstance(edges, np.ndarray) else edges)
    for n in (0, -3, 2.5, "4"):
        with pytest.raises(SampletopoError, match=r"'n' parameter of Graph"):
            st.Graph(n=n, edges=np.empty((0, 2), dtype=np.int64))  # type: ignore[arg-type]
    assert st.Graph(n=3, edges=np.array([[0.0, 2.0]])).edges.tolist() == [[0, 2]]


def test_knn_refuses_inputs_numpy_would_mangle():
    X = np.random.default_rng(0).normal(size=(10, 3))
    with pytest.raises(SampletopoError, match="too large for float32"):
        st.knn_graph(X * 1e39, k=2)
    with pytest.raises(SampletopoError, match="strings"):
        st.knn_graph(X.astype(str), k=2)
    with pytest.raises(SampletopoError, match="rectangular array"):
        st.knn_graph([[0.0, 1.0], [2.0], [3.0, 4.0]], k=1)
    with pytest.raises(SampletopoError, match="complex"):
        st.knn_graph(X + 1j, k=2)
    with pytest.raises(SampletopoError, match="not real numbers"):
        st.knn_graph(np.array([[object(), 1.0], [1.0, 2.0]], dtype=object), k=1)
    # 1e19 (squared distances overflow float32) and integer features are searched correctly.
    assert np.array_equal(st.knn_graph(X * 1e19, k=3).edges, st.knn_graph(X, k=3).edges)
    ints = np.arange(12).reshape(6, 2) ** 2
    assert edge_list(st.knn_graph(ints, k=2)) == brute_knn_edges_exact(ints, 2)


def test_old_cache_files_are_rebuilt(tmp_path):
    X = np.array([[0.0], [2.1], [1.0]]) * 1e-3
    g = st.knn_graph(X, k=1, cache_dir=tmp_path)
    (path,) = tmp_path.glob("*.npz")
    # Rewrite the file as version 1 (rounded distances) with the wrong edges it would hold.
    with np.load(path) as z:
        fields = dict(z)
    fields.update(version=np.int64(1), edges=np.array([[0, 1], [0, 2]]))
    np.savez_compressed(path, **fields)
    assert st.knn_graph(X, k=1, cache_dir=tmp_path).edges.tolist() == g.edges.tolist()
    with np.load(path) as z:
        assert int(z["version"]) == 2


def test_cosine_parallel_rows_tie_exactly_whatever_the_factor():
    # Five integer directions, each present at factors 1, 3, 5, 7 and 11 (exact in float32, but
    # not powers of two, so the float64 unit vectors differ in their last bits): within a group
    # every cosine distance is exactly 0, so each row's k nearest are the lowest-index other
    # rows of its group.
    dirs = np.random.default_rng(3).integers(-20, 21, size=(5, 4))
    X = np.concatenate([dirs * f for f in (1, 3, 5, 7, 11)]).astype(np.float32)  # row 5 f + dir
    unit = X / np.linalg.norm(X.astype(np.float64), axis=1, keepdims=True)
    assert not np.array_equal(unit[0], unit[5])  # the rounding the exact test must see through
    k = 2
    expected = set()
    for i in range(len(X)):
        group = [j for j in range(len(X)) if j % 5 == i % 5 and j != i]
        expected.update((min(i, j), max(i, j)) for j in group[:k])
    assert edge_list(st.knn_graph(X, k=k, metric="cosine")) == sorted(expected)


# --- Findings N7 of the issue-11 check ------------------------------------------------------


def test_knn_graph_of_one_sample_names_the_sample_count_not_an_empty_range():
    with pytest.raises(
        SampletopoError, match=r"'X' parameter of knn_graph .*at least 2 samples"
    ) as err:
        st.knn_graph(np.zeros((1, 3)), k=1)
    assert "[1, 0]" not in str(err.value)


@pytest.mark.parametrize("shape", [(2.5, 3), "ab", (2, -1), (), (True, 2), 3.0])
def test_grid_graph_refuses_what_is_not_a_tuple_of_positive_ints(shape):
    with pytest.raises(ParameterError, match=r"'shape' parameter of grid_graph"):
        st.grid_graph(shape)


def test_grid_graph_takes_numpy_ints_and_a_single_int():
    assert st.grid_graph((np.int64(2), 3)).edges.tolist() == st.grid_graph((2, 3)).edges.tolist()
    assert st.grid_graph(3).n_edges == 2  # a path of three points


def test_recall_line_counts_the_queries_it_used(capsys):
    X = np.random.default_rng(1).normal(size=(300, 4)).astype(np.float32)
    st.knn_graph(X, k=5, index="hnsw")
    out = capsys.readouterr().out
    assert "(300 queries)" in out and "1,000" not in out
