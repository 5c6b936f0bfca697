"""Diagram type, total persistence and distances, checked against independent computations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import sampletopo as st
from sampletopo._errors import SampletopoError


def join(pairs, samples=None):
    arr = np.array(pairs, dtype=float).reshape(-1, 2)
    n = arr.shape[0]
    bs = np.arange(n) if samples is None else np.asarray(samples)
    ds = np.where(np.isinf(arr[:, 1]), -1, np.arange(n) + 100)
    return st.Diagram(arr[:, 0], arr[:, 1], bs, ds, "join")


def brute_wasserstein(a, b, order):
    """Exact W_order with L-inf ground metric by trying every matching (tiny diagrams only)."""
    a, b = np.asarray(a, float).reshape(-1, 2), np.asarray(b, float).reshape(-1, 2)
    pts_a = [tuple(p) for p in a] + [None] * len(b)
    pts_b = [tuple(p) for p in b] + [None] * len(a)
    best = np.inf
    for perm in itertools.permutations(range(len(pts_b))):
        cost = 0.0
        for i, j in enumerate(perm):
            x, y = pts_a[i], pts_b[j]
            if x is None and y is None:
                continue
            if x is None:
                cost += ((y[1] - y[0]) / 2) ** order
            elif y is None:
                cost += ((x[1] - x[0]) / 2) ** order
            else:
                cost += max(abs(x[0] - y[0]), abs(x[1] - y[1])) ** order
        best = min(best, cost)
    return best ** (1 / order)


def test_total_persistence_by_hand():
    d = join([[0, 2], [1, 1.5], [0.5, np.inf]])
    assert st.total_persistence(d, p=1) == pytest.approx(2.5)
    assert st.total_persistence(d, p=2) == pytest.approx(4.25)
    assert st.total_persistence(d, p=1, include_essential=True) == np.inf
    assert st.total_persistence(st.Diagram.empty("join")) == 0.0


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("order", [1, 2])
def test_wasserstein_hera_and_pot_match_brute_force(seed, order):
    rng = np.random.default_rng(seed)
    a = np.sort(rng.random((3, 2)), axis=1)
    b = np.sort(rng.random((int(rng.integers(1, 4)), 2)), axis=1)
    expected = brute_wasserstein(a, b, order)
    assert st.wasserstein(join(a), join(b), order=order) == pytest.approx(expected, rel=1e-6)
    for backend in ("pot", "assignment"):
        got = st.wasserstein(join(a), join(b), order=order, backend=backend)
        assert got == pytest.approx(expected, rel=1e-12), backend


def test_split_diagrams_use_the_same_metric_as_negated_join():
    a = st.Diagram(
        np.array([3.0, 2.0]), np.array([1.0, 1.5]), np.array([0, 1]), np.array([5, 6]), "split"
    )
    b = st.Diagram(np.array([2.8]), np.array([1.0]), np.array([0]), np.array([5]), "split")
    # Match (3,1)<->(2.8,1): 0.2 ; (2,1.5) to the diagonal: 0.25.
    assert st.wasserstein(a, b, order=1) == pytest.approx(0.45, rel=1e-6)
    assert st.wasserstein(a, b, order=1, backend="pot") == pytest.approx(0.45)
    assert st.bottleneck(a, b) == pytest.approx(0.25)


def test_bottleneck_regression_against_gudhi_exact_bug():
    # Found by the stability property test: gudhi.bottleneck_distance(a, b, 0) says 22.0 here.
    a = st.Diagram(np.array([23.0, 1.0]), np.array([-65.0, -65.0]), [2, 13], [14, 14], "split")
    b = st.Diagram(
        np.array([0.1, 1.0, 23.0, 1.1]),
        np.array([0.0, 0.0, -65.0, -65.0]),
        [4, 13, 2, 5],
        [9, 7, 14, 14],
        "split",
    )
    assert st.bottleneck(a, b) == pytest.approx(0.5)


def test_large_diagrams_hera_equals_pot(rng):
    a = join(np.sort(rng.random((300, 2)), axis=1))
    b = join(np.sort(rng.random((280, 2)), axis=1))
    for order in (1, 2):
        assert st.wasserstein(a, b, order=order) == pytest.approx(
            st.wasserstein(a, b, order=order, backend="pot"), rel=1e-9
        )


def test_essential_pairs_are_matched_by_birth_when_asked():
    a = join([[0.0, np.inf], [0.0, 1.0]])
    b = join([[0.3, np.inf]])
    assert st.wasserstein(a, b) == pytest.approx(0.5)  # finite only: (0,1) to the diagonal
    assert st.wasserstein(a, b, include_essential=True, backend="pot") == pytest.approx(0.8)
    assert st.wasserstein(a, b, include_essential=True) == pytest.approx(0.8, rel=1e-6)
    assert st.wasserstein(a, join([[0.0, 1.0]]), include_essential=True, backend="pot") == np.inf


def test_diagram_validation_and_conversions():
    d = join([[0.0, 1.0], [0.5, np.inf]])
    df = d.to_polars()
    assert df.columns == ["tree", "birth", "death", "persistence", "birth_sample", "death_sample"]
    assert st.Diagram.from_polars(df).to_numpy().tolist() == d.to_numpy().tolist()
    assert d.top(5).to_numpy().tolist() == [[0.0, 1.0]]
    with pytest.raises(SampletopoError, match="birth <= death"):
        st.Diagram(np.array([2.0]), np.array([1.0]), [0], [1], "join")
    with pytest.raises(SampletopoError, match="birth >= death"):
        st.Diagram(np.array([1.0]), np.array([2.0]), [0], [1], "split")
    with pytest.raises(SampletopoError, match="same length"):
        st.Diagram(np.array([1.0]), np.array([2.0, 3.0]), [0], [1], "join")
    with pytest.raises(SampletopoError, match="-1 exactly"):
        st.Diagram(np.array([1.0]), np.array([np.inf]), [0], [3], "join")
    with pytest.raises(SampletopoError, match="'tree'"):
        st.Diagram(np.array([1.0]), np.array([2.0]), [0], [1], "contour")
    with pytest.raises(SampletopoError, match="compare a join diagram with a split"):
        st.wasserstein(d, st.Diagram.empty("split"))
    with pytest.raises(SampletopoError, match="'order'"):
        st.wasserstein(d, d, order=0.5)


_HERA_TRAPS = """
import json
import numpy as np
import sampletopo as st
from sampletopo.diagrams import Diagram, bottleneck, wasserstein

inf = np.inf
g = st.graph_from_edges(5, [[0, 1], [1, 2], [2, 3], [3, 4]])
cases = [
    # finite parts equal, only the global minimum (essential pair) moves
    (st.join_tree(g, [0.0, 1, 3, 2, 0.5]).diagram(), st.join_tree(g, [-1.0, 1, 3, 2, 0.5]).diagram(), True),
    # a zero-persistence point on the diagonal
    (st.join_tree(g, [1.0, 1, 0, 5, 5]).diagram(include_zero=True),
     st.join_tree(g, [0.0, 3, 2, 5, 0]).diagram(include_zero=True), False),
    # a hand-built diagram on which hera crashed the process
    (Diagram([0.0, 1, 1], [3.0, 3, inf], [0, 1, 2], [5, 5, -1], "join"),
     Diagram([3.0], [inf], [0], [-1], "join"), True),
]
out = []
for a, b, ess in cases:
    out.append([wasserstein(a, b, order=o, include_essential=ess, backend=be)
                for o in (1, 2) for be in ("hera", "pot")] + [bottleneck(a, b, include_essential=ess)])
print(json.dumps(out))
"""


def test_hera_traps_diagonal_points_and_essential_pairs():
    """gudhi 3.13's hera loops forever on a diagonal point or on essential pairs and crashed on
    one diagram (GUDHI/gudhi-devel#477); run in a subprocess so a regression fails, not hangs."""
    import json
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", _HERA_TRAPS], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (w1h, w1p, w2h, w2p, b1), (v1h, v1p, v2h, v2p, b2), (u1h, u1p, u2h, u2p, b3) = json.loads(
        proc.stdout
    )
    # Only the essential births differ, by 1.
    assert w1h == pytest.approx(1.0) and w1p == pytest.approx(1.0) and b1 == pytest.approx(1.0)
    assert w2h == pytest.approx(1.0) and w2p == pytest.approx(1.0)
    # The point (1, 1) is free; (2, 3) and (0, 5) go to the diagonal at 0.5 and 2.5.
    assert v1h == pytest.approx(3.0) and v1p == pytest.approx(3.0)
    assert v2h == pytest.approx(np.sqrt(6.5)) and v2p == pytest.approx(np.sqrt(6.5))
    assert b2 == pytest.approx(2.5)
    # (0,3) and (1,3) to the diagonal cost 1.5 and 1; the essential births differ by 2.
    assert u1h == pytest.approx(4.5) and u1p == pytest.approx(4.5)
    assert u2h == pytest.approx(np.sqrt(1.5**2 + 1 + 4)) and u2p == pytest.approx(u2h)
    assert b3 == pytest.approx(2.0)


# --- Issue 11: order=inf, ground metric, validation, and tests that can fail ----------------


def brute_matching_costs(a, b, internal_p):
    """Every partial matching of two tiny diagrams as a list of per-move L^q costs."""
    a, b = np.asarray(a, float).reshape(-1, 2), np.asarray(b, float).reshape(-1, 2)

    def dist(x, y):
        diff = np.abs(np.subtract(x, y))
        return diff.max() if np.isinf(internal_p) else (diff**internal_p).sum() ** (1 / internal_p)

    def to_diag(x):
        h = (x[1] - x[0]) / 2
        return dist(x, (x[0] + h, x[0] + h))

    pts_a = [tuple(p) for p in a] + [None] * len(b)
    pts_b = [tuple(p) for p in b] + [None] * len(a)
    out = []
    for perm in itertools.permutations(range(len(pts_b))):
        costs = []
        for i, j in enumerate(perm):
            x, y = pts_a[i], pts_b[j]
            if x is None and y is None:
                continue
            costs.append(to_diag(y) if x is None else to_diag(x) if y is None else dist(x, y))
        out.append(costs)
    return out


def test_order_inf_is_the_bottleneck_distance():
    d = join([[0.0, 1.0], [0.2, 0.7], [0.5, np.inf]])
    a = st.Diagram([3.0, 2.0], [1.0, 1.5], [0, 1], [5, 6], "split")
    b = st.Diagram([2.8], [1.0], [0], [5], "split")
    for backend in ("hera", "pot", "assignment"):
        assert st.wasserstein(d, d, order=np.inf, backend=backend) == 0.0  # was 1.0
        # (3,1)<->(2.8,1) moves 0.2, (2,1.5) goes to the diagonal: 0.25 (was 1.0).
        assert st.wasserstein(a, b, order=np.inf, backend=backend) == pytest.approx(0.25)
        # Essential births 0.5 and 0.0 are 0.5 apart; the finite parts match at 0.1.
        e = join([[0.0, 1.1], [0.0, np.inf]])
        assert st.wasserstein(
            d.select([0, 2]), e, order=np.inf, include_essential=True, backend=backend
        ) == pytest.approx(0.5)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("internal_p", [1.0, 2.0, np.inf])
def test_order_inf_matches_brute_force(seed, internal_p):
    rng = np.random.default_rng(seed)
    a = np.sort(rng.random((3, 2)), axis=1)
    b = np.sort(rng.random((int(rng.integers(1, 4)), 2)), axis=1)
    expected = min(max(c) for c in brute_matching_costs(a, b, internal_p))
    for backend in ("hera", "pot", "assignment"):
        got = st.wasserstein(join(a), join(b), order=np.inf, internal_p=internal_p, backend=backend)
        assert got == pytest.approx(expected, rel=1e-12)
    if np.isinf(internal_p):
        assert st.bottleneck(join(a), join(b)) == pytest.approx(expected, rel=1e-12)


def test_finite_internal_p_is_used_by_both_backends():
    # (0,4) -> (1,5) moves (1,1): L1 2, L2 sqrt(2), Linf 1; the diagonal costs 2 each (Linf) or
    # more, so matching the two points is optimal for every q.
    a, b = join([[0.0, 4.0]]), join([[1.0, 5.0]])
    for q, expected in ((1.0, 2.0), (2.0, np.sqrt(2.0)), (np.inf, 1.0)):
        for backend in ("hera", "pot", "assignment"):
            for order in (1, 2):
                got = st.wasserstein(a, b, order=order, internal_p=q, backend=backend)
                assert got == pytest.approx(expected, rel=1e-6), (q, backend, order)


@pytest.mark.parametrize("seed", range(4))
def test_finite_internal_p_matches_brute_force(seed):
    rng = np.random.default_rng(100 + seed)
    a = np.sort(rng.random((3, 2)), axis=1)
    b = np.sort(rng.random((2, 2)), axis=1)
    for q in (1.0, 2.0):
        for order in (1, 2):
            expected = min(sum(c**order for c in m) for m in brute_matching_costs(a, b, q)) ** (
                1 / order
            )
            for backend in ("hera", "pot", "assignment"):
                got = st.wasserstein(join(a), join(b), order=order, internal_p=q, backend=backend)
                assert got == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("backend", ["hera", "pot"])
def test_order_and_internal_p_are_validated(backend):
    d = join([[0.0, 1.0]])
    for bad in (0, -1, np.nan, 0.5, True, "2"):
        with pytest.raises(SampletopoError, match=r"'internal_p' parameter of wasserstein"):
            st.wasserstein(d, d, internal_p=bad, backend=backend)
    for bad in (0, -np.inf, np.nan, 0.5, False, "inf"):
        with pytest.raises(SampletopoError, match=r"'order' parameter of wasserstein"):
            st.wasserstein(d, d, order=bad, backend=backend)


def test_total_persistence_rejects_p_that_is_not_positive():
    d = join([[0, 2], [1, 1.5]])
    for bad in (0, -1, np.nan, np.inf, True, "1"):
        with pytest.raises(SampletopoError, match=r"'p' parameter of total_persistence"):
            st.total_persistence(d, p=bad)
    assert st.total_persistence(d, p=0.5) == pytest.approx(2**0.5 + 0.5**0.5)


def test_top_returns_n_pairs_and_breaks_ties_by_lower_birth_sample():
    # Persistences 1, 2, 2, 0.5, 2 (birth samples 7, 9, 3, 1, 5) and one essential pair.
    d = st.Diagram(
        [0.0, 0.0, 1.0, 0.0, 3.0, 0.0],
        [1.0, 2.0, 3.0, 0.5, 5.0, np.inf],
        [7, 9, 3, 1, 5, 0],
        [17, 19, 13, 11, 15, -1],
        "join",
    )
    assert d.top(1).birth_sample.tolist() == [3]
    assert d.top(2).birth_sample.tolist() == [3, 5]
    assert d.top(4).birth_sample.tolist() == [3, 5, 9, 7]
    assert d.top(9).birth_sample.tolist() == [3, 5, 9, 7, 1]  # all finite pairs, no more
    assert len(d.top(0)) == 0
    assert d.top(np.int64(2)).persistence.tolist() == [2.0, 2.0]
    for bad in (-1, 2.0, 1.5, True):
        with pytest.raises(SampletopoError, match=r"'n' parameter of Diagram.top"):
            d.top(bad)


def test_essential_pairs_are_matched_in_sorted_order():
    # Births listed in opposite orders: the optimal matching pairs 0<->0.2 and 5<->5.1.
    a = st.Diagram([0.0, 5.0], [np.inf, np.inf], [0, 1], [-1, -1], "join")
    b = st.Diagram([5.1, 0.2], [np.inf, np.inf], [2, 3], [-1, -1], "join")
    for backend in ("hera", "pot", "assignment"):
        w1 = st.wasserstein(a, b, include_essential=True, backend=backend)
        assert w1 == pytest.approx(0.3)
        w2 = st.wasserstein(a, b, order=2, include_essential=True, backend=backend)
        assert w2 == pytest.approx(np.sqrt(0.2**2 + 0.1**2))
    assert st.bottleneck(a, b, include_essential=True) == pytest.approx(0.2)


def test_sample_ids_are_integers_and_not_negative():
    with pytest.raises(
        SampletopoError,
        match=r"'birth_sample' parameter of Diagram must be an array of integer sample ids. Got 0.5",
    ):
        st.Diagram([0.0], [1.0], [0.5], [3], "join")
    with pytest.raises(
        SampletopoError, match=r"'death_sample' parameter of Diagram must be an array of integer"
    ):
        st.Diagram([0.0], [1.0], [0], [np.nan], "join")
    with pytest.raises(
        SampletopoError,
        match=r"'birth_sample' parameter of Diagram must be an array of sample ids, which are >= 0",
    ):
        st.Diagram([0.0], [1.0], [-2], [3], "join")
    with pytest.raises(
        SampletopoError, match=r"'death_sample' parameter of Diagram must be an array of sample ids"
    ):
        st.Diagram([0.0, 0.0], [1.0, 2.0], [0, 1], [3, -4], "join")
    with pytest.raises(SampletopoError, match="booleans"):
        st.Diagram([0.0], [1.0], [True], [3], "join")
    with pytest.raises(SampletopoError, match="strings"):
        st.Diagram(["0.0"], [1.0], [0], [3], "join")
    with pytest.raises(SampletopoError, match="complex"):
        st.Diagram([0.0 + 1j], [1.0], [0], [3], "join")
    d = st.Diagram([0.0], [1.0], [4.0], [3.0], "join")  # whole-number floats are ids
    assert d.birth_sample.tolist() == [4] and d.birth_sample.dtype == np.int64


def test_select_positions_and_masks():
    d = join([[0.0, 1.0], [0.2, 0.7], [0.5, np.inf]])
    assert d.select([2, 0]).birth.tolist() == [0.5, 0.0]
    assert d.select(np.array([False, True, False])).birth.tolist() == [0.2]
    assert len(d.select([])) == 0
    with pytest.raises(SampletopoError, match="negative positions are not counted from the end"):
        d.select([-1])
    with pytest.raises(SampletopoError, match=r"must be pair positions in \[0, 2\]"):
        d.select([3])
    with pytest.raises(SampletopoError, match="one entry per pair"):
        d.select([True, False])
    with pytest.raises(SampletopoError, match="integer pair positions. Got 0.5"):
        d.select([0.5])
