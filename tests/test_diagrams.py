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
    assert st.wasserstein(join(a), join(b), order=order, backend="pot") == pytest.approx(
        expected, rel=1e-12
    )


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
    assert df.columns == ["kind", "birth", "death", "persistence", "birth_sample", "death_sample"]
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
    with pytest.raises(SampletopoError, match="'kind'"):
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
