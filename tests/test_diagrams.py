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
