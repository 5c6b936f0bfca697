"""Merge trees and diagrams: gudhi oracle, hand-worked cases, invariants."""

from __future__ import annotations

import os

import gudhi
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st_h

import sampletopo as st
from sampletopo._errors import SampletopoError


def gudhi_lower_star(n: int, edges: np.ndarray, f: np.ndarray) -> np.ndarray:
    """0-dim lower-star persistence of f on the graph, by gudhi: sorted (birth, death) rows."""
    s = gudhi.SimplexTree()
    for v in range(n):
        s.insert([v], filtration=float(f[v]))
    for u, v in edges:
        s.insert([int(u), int(v)], filtration=float(max(f[u], f[v])))
    # persistence_dim_max: without it gudhi skips H0 of a complex with no edges.
    pairs = [p for dim, p in s.persistence(persistence_dim_max=True) if dim == 0]
    arr = np.array(pairs, dtype=float).reshape(-1, 2)
    return arr[np.lexsort((arr[:, 1], arr[:, 0]))]


def ours_sorted(d: st.Diagram, *, negate: bool = False) -> np.ndarray:
    arr = d.to_numpy()
    if negate:
        arr = -arr
    return arr[np.lexsort((arr[:, 1], arr[:, 0]))]


def random_graph(rng, n, p):
    iu = np.triu_indices(n, 1)
    mask = rng.random(iu[0].shape[0]) < p
    return st.graph_from_edges(n, np.stack([iu[0][mask], iu[1][mask]], axis=1))


@pytest.mark.parametrize("seed", range(40))
def test_join_and_split_match_gudhi_on_random_graphs(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    g = random_graph(
        rng, n, p=float(rng.uniform(0.0, 0.15))
    )  # sparse: components + isolated vertices
    if seed % 3 == 0:
        f = rng.integers(0, 4, size=n).astype(float)  # many ties
    else:
        f = rng.normal(size=n)
    jt, sp = st.join_tree(g, f), st.split_tree(g, f)
    np.testing.assert_array_equal(ours_sorted(jt.diagram()), gudhi_lower_star(n, g.edges, f))
    np.testing.assert_array_equal(
        ours_sorted(sp.diagram(), negate=True), gudhi_lower_star(n, g.edges, -f)
    )
    # One essential pair per component, born at the component's minimum (join) / maximum (split).
    count, labels = g.component_labels()
    assert jt.diagram().essential.sum() == count == sp.diagram().essential.sum()
    for c in range(count):
        members = np.flatnonzero(labels == c)
        assert f[members].min() in jt.diagram().birth[jt.diagram().essential]
        assert f[members].max() in sp.diagram().birth[sp.diagram().essential]


def test_matches_gudhi_on_a_knn_graph(rng):
    X = rng.normal(size=(400, 6))
    g = st.knn_graph(X, k=8)
    f = rng.gamma(2.0, size=400)
    np.testing.assert_array_equal(
        ours_sorted(st.join_tree(g, f).diagram()), gudhi_lower_star(g.n, g.edges, f)
    )
    np.testing.assert_array_equal(
        ours_sorted(st.split_tree(g, f).diagram(), negate=True), gudhi_lower_star(g.n, g.edges, -f)
    )


def path(n):
    return st.graph_from_edges(n, np.stack([np.arange(n - 1), np.arange(1, n)], axis=1))


def test_path_two_basins_node_by_node():
    # values:   0    1    3    2    0.5   ; minima at 0 and 4, the saddle at 2 joins them
    g = path(5)
    jt = st.join_tree(g, [0.0, 1.0, 3.0, 2.0, 0.5])
    assert jt.leaves.tolist() == [0, 4]
    assert jt.saddles.tolist() == [2]
    assert list(zip(jt.node_vertex.tolist(), jt.node_kind.tolist())) == [
        (0, "leaf"),
        (4, "leaf"),
        (2, "saddle"),
    ]
    # Arcs: 0 -> saddle, 4 -> saddle; the saddle is the last vertex, so no arc above it.
    arcs = jt.arcs()
    assert arcs["lower_vertex"].to_list() == [0, 4]
    assert arcs["upper_vertex"].to_list() == [2, 2]
    # Vertex 1 lies on the arc from 0; vertex 3 on the arc from 4.
    assert jt.vertex_arc.tolist() == [0, 0, -1, 1, 1]
    d = jt.diagram()
    assert d.birth.tolist() == [0.5, 0.0]
    assert d.death.tolist() == [3.0, np.inf]
    assert d.birth_sample.tolist() == [4, 0]
    assert d.death_sample.tolist() == [2, -1]
    assert jt.members(4).tolist() == [3, 4]
    assert jt.members(0).tolist() == [0, 1, 2, 3, 4]


def test_star_split_tree():
    # Centre 0 is low; the five spokes are peaks that all meet at the centre.
    g = st.graph_from_edges(6, [[0, i] for i in range(1, 6)])
    f = np.array([0.0, 5.0, 4.0, 3.0, 2.0, 1.0])
    sp = st.split_tree(g, f)
    assert sp.leaves.tolist() == [1, 2, 3, 4, 5]
    assert sp.saddles.tolist() == [0]
    assert sp.n_saddles == 1 and sp.n_leaves == 5
    d = sp.diagram()
    # The highest spoke is eldest and survives; the others die at the centre's value 0.
    assert sorted(zip(d.birth_sample.tolist(), d.death_sample.tolist())) == [
        (1, -1),
        (2, 0),
        (3, 0),
        (4, 0),
        (5, 0),
    ]
    fin = d.finite()
    assert np.all(fin.death == 0.0)
    assert sorted(fin.birth.tolist()) == [1.0, 2.0, 3.0, 4.0]
    assert np.all(d.birth >= d.death)
    assert sp.members(3).tolist() == [3]


def test_two_basins_joined_by_one_saddle_with_a_root_above():
    # Two triangles (basins) joined through vertex 6, then a tail rising to vertex 7 (the root).
    edges = [[0, 1], [1, 2], [0, 2], [3, 4], [4, 5], [3, 5], [2, 6], [6, 5], [6, 7]]
    f = np.array([0.0, 0.4, 0.6, 0.2, 0.3, 0.5, 1.0, 2.0])
    jt = st.join_tree(st.graph_from_edges(8, edges), f)
    kinds = dict(zip(jt.node_vertex.tolist(), jt.node_kind.tolist()))
    assert kinds == {0: "leaf", 3: "leaf", 6: "saddle", 7: "root"}
    d = jt.diagram()
    assert (d.birth_sample.tolist(), d.death_sample.tolist()) == ([3, 0], [6, -1])
    assert d.birth.tolist() == [0.2, 0.0] and d.death.tolist() == [1.0, np.inf]
    assert jt.members(3).tolist() == [3, 4, 5]
    # Every vertex lies on an arc whose ends bracket its value.
    arcs = jt.arcs()
    for v in range(8):
        a = jt.vertex_arc[v]
        lo = f[arcs["lower_vertex"][int(a)]]
        hi = f[arcs["upper_vertex"][int(a)]]
        assert lo <= f[v] <= hi


def test_ties_are_broken_by_sample_index():
    g = path(3)
    jt = st.join_tree(g, [1.0, 2.0, 1.0])
    assert jt.leaves.tolist() == [0, 2]
    d = jt.diagram()
    # Sample 0 comes first among equal minima, so it is the elder and survives.
    assert d.birth_sample.tolist() == [2, 0] and d.death_sample.tolist() == [1, -1]
    # Equal-valued neighbours: no zero-persistence pairs in the diagram.
    flat = st.join_tree(path(4), np.zeros(4)).diagram()
    assert len(flat) == 1 and flat.essential.all()
    assert len(st.join_tree(path(4), np.zeros(4)).diagram(include_zero=True)) == 1


def test_isolated_vertices_are_their_own_components():
    g = st.graph_from_edges(4, [[0, 1]])
    d = st.join_tree(g, [3.0, 1.0, 2.0, 0.0]).diagram()
    assert len(d) == 3 and d.essential.all()
    assert sorted(d.birth.tolist()) == [0.0, 1.0, 2.0]
    tree = st.join_tree(g, [3.0, 1.0, 2.0, 0.0])
    assert tree.vertex_arc[2] == -1 and tree.vertex_arc[3] == -1


finite_values = st_h.floats(min_value=-100, max_value=100, allow_nan=False, width=32)


@st_h.composite
def graph_and_values(draw, max_n=25):
    n = draw(st_h.integers(1, max_n))
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    chosen = draw(st_h.lists(st_h.sampled_from(pairs), max_size=3 * n)) if pairs else []
    f = np.array(draw(st_h.lists(finite_values, min_size=n, max_size=n)), dtype=float)
    return n, np.array(chosen, dtype=np.int64).reshape(-1, 2), f


@settings(max_examples=150, deadline=None)
@given(graph_and_values(), st_h.randoms(use_true_random=False))
def test_relabeling_vertices_gives_the_same_diagram(data, rnd):
    n, edges, f = data
    perm = np.array(rnd.sample(range(n), n))  # old vertex i -> new vertex perm[i]
    g1 = st.graph_from_edges(n, edges)
    g2 = st.graph_from_edges(n, perm[edges] if edges.size else edges)
    f2 = np.empty(n)
    f2[perm] = f
    for build in (st.join_tree, st.split_tree):
        a = build(g1, f).diagram()
        b = build(g2, f2).diagram()
        np.testing.assert_array_equal(ours_sorted(a), ours_sorted(b))


@settings(max_examples=150, deadline=None)
@given(graph_and_values(), st_h.lists(finite_values, min_size=25, max_size=25))
def test_stability_bottleneck_is_at_most_sup_norm(data, noise):
    n, edges, f = data
    g = st.graph_from_edges(n, edges)
    h = f + np.array(noise[:n]) / 10.0
    bound = float(np.max(np.abs(f - h))) if n else 0.0
    for build in (st.join_tree, st.split_tree):
        dist = st.bottleneck(build(g, f).diagram(), build(g, h).diagram(), include_essential=True)
        assert dist <= bound + 1e-9


@settings(max_examples=100, deadline=None)
@given(graph_and_values())
def test_monotone_transform_maps_pairs_onto_pairs(data):
    n, edges, f = data
    # Snap values to a coarse grid so the transform stays strictly increasing in floating point.
    f = np.round(f * 4) / 4
    g = st.graph_from_edges(n, edges)
    h = np.exp(f / 50.0) * 3.0 + 1.0  # strictly increasing
    for build in (st.join_tree, st.split_tree):
        a, b = build(g, f).diagram(include_zero=True), build(g, h).diagram(include_zero=True)
        # Same ties order, same sweep: the same samples pair up, values mapped by the transform.
        assert a.birth_sample.tolist() == b.birth_sample.tolist()
        assert a.death_sample.tolist() == b.death_sample.tolist()
        fin = ~a.essential
        np.testing.assert_allclose(np.exp(a.birth / 50.0) * 3.0 + 1.0, b.birth)
        np.testing.assert_allclose(np.exp(a.death[fin] / 50.0) * 3.0 + 1.0, b.death[fin])


@settings(max_examples=100, deadline=None)
@given(graph_and_values())
def test_births_before_deaths_and_structure(data):
    n, edges, f = data
    g = st.graph_from_edges(n, edges)
    jt, sp = st.join_tree(g, f), st.split_tree(g, f)
    dj, ds = jt.diagram(), sp.diagram()
    assert np.all(dj.birth <= dj.death) and np.all(ds.birth >= ds.death)
    assert np.all(dj.persistence > 0) and np.all(ds.persistence > 0)
    # A leaf is a local minimum: no neighbour is lower in the (value, index) order.
    indptr, indices = g.csr()
    for v in jt.leaves:
        nb = indices[indptr[v] : indptr[v + 1]]
        assert all((f[u], u) > (f[v], v) for u in nb)
    for v in sp.leaves:
        nb = indices[indptr[v] : indptr[v + 1]]
        assert all((f[u], u) < (f[v], v) for u in nb)
    # Every finite pair's birth vertex is a leaf and its death vertex a saddle.
    assert set(dj.birth_sample.tolist()) <= set(jt.leaves.tolist())
    assert set(dj.finite().death_sample.tolist()) <= set(jt.saddles.tolist())
    # Members of a pair's basin all lie strictly below its death in the sweep, and include the leaf.
    for b, dv in zip(dj.birth_sample, dj.death_sample):
        m = jt.members(int(b))
        assert int(b) in m.tolist()
        if dv >= 0:
            assert np.all(jt.rank[m] < jt.rank[dv])


def test_bad_input_messages():
    g = path(4)
    with pytest.raises(SampletopoError, match="non-finite"):
        st.join_tree(g, [0.0, np.nan, 1.0, 2.0])
    with pytest.raises(SampletopoError, match="has 3 values but the graph has 4"):
        st.split_tree(g, [0.0, 1.0, 2.0])
    with pytest.raises(SampletopoError, match="must be a sampletopo Graph"):
        st.join_tree(np.zeros((4, 2)), [0.0, 1.0, 2.0, 3.0])
    with pytest.raises(SampletopoError, match="must be a leaf"):
        st.join_tree(g, [0.0, 1.0, 2.0, 3.0]).members(2)
    with pytest.raises(SampletopoError, match="inf"):
        st.join_tree(g, [0.0, np.inf, 1.0, 2.0])


# --- Issue 11: tests that can fail, and values that reach numpy unchecked ------------------


def test_include_zero_keeps_zero_persistence_pairs():
    # Sweep order 2 (0.0), 0 (1.0), 1 (1.0): vertex 0 is a second minimum that dies at once at
    # vertex 1, whose value is equal -- a pair (1, 1) of zero persistence.
    tree = st.join_tree(path(3), [1.0, 1.0, 0.0])
    d = tree.diagram()
    assert (d.birth.tolist(), d.death.tolist()) == ([0.0], [np.inf])
    z = tree.diagram(include_zero=True)
    assert z.birth.tolist() == [1.0, 0.0] and z.death.tolist() == [1.0, np.inf]
    assert z.birth_sample.tolist() == [0, 2] and z.death_sample.tolist() == [1, -1]


def test_arcs_table_by_hand():
    # Nodes: 0 leaf (v0), 1 leaf (v3), 2 saddle (v6), 3 root (v7).
    edges = [[0, 1], [1, 2], [0, 2], [3, 4], [4, 5], [3, 5], [2, 6], [6, 5], [6, 7]]
    f = np.array([0.0, 0.4, 0.6, 0.2, 0.3, 0.5, 1.0, 2.0])
    arcs = st.join_tree(st.graph_from_edges(8, edges), f).arcs()
    assert arcs.rows() == [
        # arc, lower_node, upper_node, lower_vertex, upper_vertex, n_vertices
        (0, 0, 2, 0, 6, 3),  # vertices 0, 1, 2
        (1, 1, 2, 3, 6, 3),  # vertices 3, 4, 5
        (2, 2, 3, 6, 7, 2),  # vertices 6, 7
    ]
    two = st.join_tree(path(5), [0.0, 1.0, 3.0, 2.0, 0.5]).arcs()
    assert two["arc"].to_list() == [0, 1] and two["n_vertices"].to_list() == [2, 2]


def test_bottleneck_lower_bound_by_hand():
    # f: pairs (0.5, 2) and essential (0, inf); h: (1.5, 2) and (0, inf). Moving (0.5,2) onto
    # (1.5,2) costs 1, sending both to the diagonal max(0.75, 0.25): the distance is 0.75.
    f, h = [0.0, 2.0, 0.5], [0.0, 2.0, 1.5]
    df, dh = st.join_tree(path(3), f).diagram(), st.join_tree(path(3), h).diagram()
    assert st.bottleneck(df, dh, include_essential=True) == pytest.approx(0.75)
    assert st.wasserstein(df, dh, order=np.inf, include_essential=True) == pytest.approx(0.75)


@settings(max_examples=100, deadline=None)
@given(graph_and_values(), st_h.lists(finite_values, min_size=25, max_size=25))
def test_stability_bottleneck_lower_bounds(data, noise):
    # A bottleneck that returned 0 would pass the upper-bound test; these bounds are tight
    # enough to catch it: the most persistent pair moves by at most 2 d_B in persistence, and
    # the global minimum (maximum) is an essential birth matched to the other's.
    n, edges, f = data
    g = st.graph_from_edges(n, edges)
    h = f + np.array(noise[:n]) / 10.0
    for build, extreme in ((st.join_tree, np.min), (st.split_tree, np.max)):
        a, b = build(g, f).diagram(), build(g, h).diagram()
        dist = st.bottleneck(a, b, include_essential=True)
        top = abs(a.finite().persistence.max(initial=0.0) - b.finite().persistence.max(initial=0.0))
        assert dist >= top / 2 - 1e-9
        assert dist >= abs(extreme(f) - extreme(h)) - 1e-9


def test_members_takes_a_vertex_id_not_a_python_index():
    tree = st.join_tree(path(5), [0.0, 1.0, 3.0, 2.0, 0.5])
    assert tree.members(np.int64(4)).tolist() == [3, 4]
    with pytest.raises(SampletopoError, match=r"'birth_sample' parameter of MergeTree.members"):
        tree.members(-1)  # would be vertex 4 as a numpy index
    for bad in (4.0, 0.5, True, 5):
        with pytest.raises(SampletopoError, match=r"'birth_sample' parameter of MergeTree"):
            tree.members(bad)


def test_values_must_be_real_numbers():
    g = path(3)
    with pytest.raises(SampletopoError, match="strings"):
        st.join_tree(g, ["1.0", "2.0", "0.5"])
    with pytest.raises(SampletopoError, match="complex"):
        st.join_tree(g, np.array([1.0, 2.0, 0.5]) + 1j)
    with pytest.raises(SampletopoError, match="rectangular array"):
        st.split_tree(g, [[1.0, 2.0], [0.5]])
    with pytest.raises(SampletopoError, match="has 2 values but the graph has 3"):
        st.join_tree(g, [1.0, 2.0])
    # Large values are fine in float64: the sweep only compares them.
    d = st.join_tree(g, np.array([1.0, 2.0, 0.5]) * 1e300).diagram()
    assert d.birth.tolist() == [1e300, 0.5e300] and d.death.tolist() == [2e300, np.inf]


@pytest.mark.skipif(
    os.environ.get("NUMBA_BOUNDSCHECK") != "1",
    reason="reads out of bounds unless numba checks bounds: run by make test's NUMBA_BOUNDSCHECK=1 pass",
)
def test_numba_bounds_checks_are_on():
    """The bounds-checked run must really check: numba's on-disk cache does not key on
    NUMBA_BOUNDSCHECK and would hand back unchecked code (hence its own NUMBA_CACHE_DIR in the
    Makefile). Plant an out-of-bounds index in each compiled kernel and expect IndexError."""
    from sampletopo import _sweep
    from sampletopo.graph import _pair_keys, _row_norms

    order = np.arange(3, dtype=np.int64)
    indptr = np.array([0, 1, 2, 3], dtype=np.int64)
    bad = np.array([1, 3, 1], dtype=np.int64)  # vertex 1's neighbour 3 does not exist
    with pytest.raises(IndexError):
        _sweep.sweep(order, indptr, bad)
    rank = np.arange(3, dtype=np.int64)
    with pytest.raises(IndexError):
        _sweep.basin(0, 3, rank, indptr, np.array([3, 0, 1], dtype=np.int64))
    X = np.zeros((2, 2), dtype=np.float32)
    with pytest.raises(IndexError):
        _pair_keys(X, np.empty(0), np.array([0], dtype=np.int64), np.array([2], dtype=np.int64))
    assert _row_norms(X).tolist() == [0.0, 0.0]
