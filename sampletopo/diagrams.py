"""Persistence diagrams: the one diagram type, its checks, and distances between diagrams.

Every diagram in sampletopo is a :class:`Diagram`, validated in one place
(:func:`check_diagram`). A diagram holds 0-dimensional pairs of a merge tree:

- ``join`` diagrams (sublevel sets, minima): ``birth <= death``; the essential pair of each
  connected component has ``death = +inf``.
- ``split`` diagrams (superlevel sets, maxima): ``birth >= death`` (a peak dies at a lower
  saddle); the essential pair has ``death = -inf``.

Birth and death are the function values themselves (per-sample losses), and each pair carries the
sample (vertex) that created it and the one that killed it (``-1`` for an essential pair).
Summaries and distances use the finite pairs unless ``include_essential=True``.

Distances: Wasserstein through gudhi's hera by default (within its relative error ``delta``), an
exact sparse assignment (scipy) or POT's exact solver, and bottleneck through gudhi, with the L-infinity ground metric as in the thesis;
``wasserstein(..., order=np.inf)`` is the bottleneck distance. This module does
not compute merge trees; see :mod:`sampletopo.mergetree`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import polars as pl

from sampletopo._deprecated import warn_renamed
from sampletopo._errors import ParameterError
from sampletopo._names import Tree
from sampletopo._validation import (
    as_index_array,
    as_real_array,
    check_choice,
    check_instance,
    check_int,
    check_real,
    check_tree,
    invalid,
)

__all__ = ["Diagram", "check_diagram", "total_persistence", "wasserstein", "bottleneck"]

Kind = Tree  # the tree's former name in sampletopo 0.1

Backend = Literal["hera", "assignment", "pot"]
BACKENDS = ("hera", "assignment", "pot")
#: hera's default relative error (``delta``) in :func:`wasserstein`.
HERA_DELTA = 1e-6


def check_delta(delta: float, *, where: str) -> float:
    """hera's relative error: a real number in (0, 1]."""
    return check_real(  # type: ignore[no-any-return]
        "delta",
        delta,
        where=where,
        low=0.0,
        low_open=True,
        high=1.0,
        fix="It is hera's relative error: 1e-6 is as good as exact, 0.01 is 1%.",
    )


def check_diagram(birth, death, birth_sample, death_sample, tree: str) -> tuple[np.ndarray, ...]:
    """Validate and normalize the arrays of a diagram; every Diagram goes through here."""
    tree = check_tree(tree, where="Diagram")
    b = as_real_array(birth, name="birth", where="Diagram").astype(np.float64).reshape(-1)
    d = as_real_array(death, name="death", where="Diagram").astype(np.float64).reshape(-1)
    # Sample ids are never rounded: 0.5 is refused rather than silently becoming sample 0.
    bs = as_index_array(birth_sample, name="birth_sample", where="Diagram")
    ds = as_index_array(death_sample, name="death_sample", where="Diagram")
    if not (b.shape == d.shape == bs.shape == ds.shape):
        raise ParameterError(
            "The arrays of Diagram (birth, death, birth_sample and death_sample) must have the "
            f"same length. Got {b.shape[0]}, {d.shape[0]}, {bs.shape[0]}, {ds.shape[0]} instead."
        )
    if not np.isfinite(b).all():
        raise invalid("birth", "finite", where="Diagram", got="a NaN or inf birth")
    if np.isnan(d).any():
        raise invalid(
            "death",
            "finite values or the essential inf",
            where="Diagram",
            got="a NaN death",
        )
    essential_death = np.inf if tree == "join" else -np.inf
    inf_death = np.isinf(d)
    if (inf_death & (d != essential_death)).any():
        raise invalid(
            "death",
            f"finite or {essential_death} (where a {tree} diagram's essential pairs die)",
            where="Diagram",
            got="the other infinity",
        )
    wrong = (b > d) if tree == "join" else (b < d)
    if wrong.any():
        i = int(np.flatnonzero(wrong)[0])
        rel = "birth <= death" if tree == "join" else "birth >= death"
        raise invalid(
            "death",
            f"on the right side of each birth: {tree} pairs need {rel}",
            where="Diagram",
            got=f"pair {i} with birth={b[i]!r}, death={d[i]!r}",
        )
    if ((ds == -1) != inf_death).any():
        raise invalid(
            "death_sample",
            "-1 exactly for the essential (infinite) pairs and a sample id for the others",
            where="Diagram",
            got="another value",
        )
    for name, ids in (("birth_sample", bs), ("death_sample", ds)):
        neg = ids < (0 if name == "birth_sample" else -1)
        if neg.any():
            i = int(np.flatnonzero(neg)[0])
            raise invalid(
                name,
                "an array of sample ids, which are >= 0 (death_sample is -1 for an essential pair)",
                where="Diagram",
                got=f"{name}={int(ids[i])} at pair {i}",
                fix=f"{name!r} holds sample ids: they never count from the end.",
            )
    return b, d, bs, ds


@dataclass(frozen=True, eq=False, init=False)
class Diagram:
    """A 0-dimensional persistence diagram with the samples behind each pair.

    Attributes
    ----------
    birth, death : ndarray of float64
        Values where each pair is born and dies. See the module docstring for the sign convention
        of join and split diagrams and of essential pairs.
    birth_sample, death_sample : ndarray of int64
        The vertex whose value is ``birth`` (the minimum / maximum that created the component) and
        the vertex whose value is ``death`` (the saddle where it merged into an older component);
        ``death_sample`` is -1 for an essential pair.
    tree : {"join", "split"}
        The merge tree the pairs come from (``kind`` in sampletopo 0.1: still accepted, with a
        :class:`DeprecationWarning`).
    """

    birth: np.ndarray
    death: np.ndarray
    birth_sample: np.ndarray
    death_sample: np.ndarray
    tree: str

    def __init__(
        self,
        birth: Any,
        death: Any,
        birth_sample: Any,
        death_sample: Any,
        tree: str | None = None,
        *,
        kind: str | None = None,
    ) -> None:
        if kind is not None:
            warn_renamed("Diagram(kind=...)", "Diagram(tree=...)")
            if tree is not None and tree != kind:
                raise invalid(
                    "kind",
                    "left out when tree is given ('kind' is the old name of 'tree')",
                    where="Diagram",
                    got=f"tree={tree!r} and kind={kind!r}",
                    fix="Pass tree only.",
                )
            tree = kind
        if tree is None:
            tree = check_tree(tree, where="Diagram")  # None: refused, naming the choices
        arrays = check_diagram(birth, death, birth_sample, death_sample, tree)
        for name, arr in zip(("birth", "death", "birth_sample", "death_sample"), arrays):
            arr = arr.copy()
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "tree", str(tree))

    @property
    def kind(self) -> str:
        """Deprecated name of :attr:`tree`."""
        warn_renamed("Diagram.kind", "Diagram.tree")
        return self.tree

    @classmethod
    def empty(cls, tree: Tree) -> Diagram:
        """A diagram of ``tree`` without pairs."""
        z = np.empty(0)
        return cls(z, z, z.astype(np.int64), z.astype(np.int64), tree)

    def __len__(self) -> int:
        return int(self.birth.shape[0])

    @property
    def essential(self) -> np.ndarray:
        """Boolean mask of the essential (never-dying) pairs."""
        return np.isinf(self.death)

    @property
    def persistence(self) -> np.ndarray:
        """``|death - birth|`` per pair (inf for essential pairs)."""
        return np.abs(self.death - self.birth)

    def finite(self) -> Diagram:
        """The diagram without its essential pairs."""
        return self.select(~self.essential)

    def select(self, mask_or_index: np.ndarray) -> Diagram:
        """A sub-diagram of the pairs picked by a boolean mask or an index array.

        Parameters
        ----------
        mask_or_index : array-like of bool, shape (len(self),), or array-like of int
            A mask with one entry per pair, or pair positions in ``[0, len(self) - 1]`` (in the
            order wanted; repeats allowed). Negative positions are refused rather than counted
            from the end, as numpy would: in a diagram -1 means "essential", never "the last".
        """
        m = as_real_array(mask_or_index, name="mask_or_index", where="Diagram.select")
        m = m.reshape(-1) if m.ndim == 0 else m
        if m.dtype.kind == "b":
            if m.shape != (len(self),):
                raise invalid(
                    "mask_or_index",
                    f"a boolean mask with one entry per pair, shape ({len(self)},), or pair "
                    "positions",
                    where="Diagram.select",
                    got=f"a mask of shape {m.shape}",
                )
            idx = np.flatnonzero(m)
        else:
            if m.ndim != 1:
                raise invalid(
                    "mask_or_index", "1-D", where="Diagram.select", got=f"shape {m.shape}"
                )
            idx = as_index_array(
                m, name="mask_or_index", where="Diagram.select", what="pair positions"
            )
            bad = (idx < 0) | (idx >= len(self))
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise invalid(
                    "mask_or_index",
                    f"pair positions in [0, {len(self) - 1}] (this diagram has {len(self)} pairs; "
                    "negative positions are not counted from the end)",
                    where="Diagram.select",
                    got=f"{int(idx[i])} at position {i}",
                )
        return Diagram(
            self.birth[idx],
            self.death[idx],
            self.birth_sample[idx],
            self.death_sample[idx],
            self.tree,
        )

    def top(self, n: int) -> Diagram:
        """The ``n`` most persistent finite pairs, most persistent first (ties: lower birth sample).

        ``n`` is an int >= 0 (negative counts are refused); fewer pairs come back when the
        diagram has fewer than ``n`` finite pairs.
        """
        n = check_int("n", n, 0, None, where="Diagram.top")
        f = self.finite()
        order = np.lexsort((f.birth_sample, -f.persistence))
        return f.select(order[:n])

    def as_lower(self) -> np.ndarray:
        """Pairs as an (m, 2) array with birth <= death: split pairs are negated.

        Negation keeps every L-infinity distance, so distances of split diagrams can use code
        written for ordinary (birth <= death) diagrams.
        """
        pts = np.stack([self.birth, self.death], axis=1) if len(self) else np.empty((0, 2))
        return -pts if self.tree == "split" else pts

    def to_numpy(self) -> np.ndarray:
        """Pairs as an (m, 2) array of (birth, death) in the diagram's own sign convention."""
        return np.stack([self.birth, self.death], axis=1) if len(self) else np.empty((0, 2))

    def to_polars(self) -> pl.DataFrame:
        """One row per pair: tree, birth, death, persistence, birth_sample, death_sample."""
        return pl.DataFrame(
            {
                "tree": [self.tree] * len(self),
                "birth": self.birth,
                "death": self.death,
                "persistence": self.persistence,
                "birth_sample": self.birth_sample,
                "death_sample": self.death_sample,
            },
            schema={
                "tree": pl.String,
                "birth": pl.Float64,
                "death": pl.Float64,
                "persistence": pl.Float64,
                "birth_sample": pl.Int64,
                "death_sample": pl.Int64,
            },
        )

    @classmethod
    def from_polars(
        cls, df: pl.DataFrame, *, tree: Tree | None = None, kind: Tree | None = None
    ) -> Diagram:
        """Inverse of :meth:`to_polars` (extra columns are ignored).

        The tree is ``tree``, else the table's one value in its ``tree`` column (or ``kind``
        column, as :meth:`to_polars` wrote it in sampletopo 0.1). ``kind=`` is the deprecated
        name of ``tree=``.
        """
        if kind is not None:
            warn_renamed("Diagram.from_polars(kind=...)", "Diagram.from_polars(tree=...)")
            tree = tree or kind
        if tree is None:
            col = "tree" if "tree" in df.columns else "kind"
            trees = df[col].unique().to_list() if col in df.columns else []
            if len(trees) != 1:
                raise invalid(
                    "tree",
                    "given when the table does not hold exactly one tree",
                    where="Diagram.from_polars",
                    got=f"None and a table holding trees {trees}",
                    fix="Pass tree= or filter one tree.",
                )
            tree = trees[0]
        return cls(
            df["birth"].to_numpy(),
            df["death"].to_numpy(),
            df["birth_sample"].to_numpy(),
            df["death_sample"].to_numpy(),
            tree,
        )

    def __repr__(self) -> str:
        return (
            f"Diagram(tree={self.tree!r}, pairs={len(self)}, essential={int(self.essential.sum())})"
        )


def _as_diagram(d: Diagram, name: str, where: str) -> Diagram:
    return check_instance(  # type: ignore[no-any-return]
        name, d, Diagram, what="a sampletopo Diagram", where=where
    )


def total_persistence(d: Diagram, p: float = 1, *, include_essential: bool = False) -> float:
    """Degree-``p`` total persistence: ``sum |death - birth| ** p`` over the pairs.

    No ``1/p`` root is taken (the convention of Cohen-Steiner et al.); with ``p=1`` this is the
    sum of lifetimes used in the thesis. ``p`` is a finite real number > 0 (``p=0`` would count
    pairs, NaN or inf mean nothing here; all are refused). Essential pairs are left out unless
    ``include_essential=True``, in which case the result is ``inf`` whenever there is one.

    Examples
    --------
    >>> import numpy as np
    >>> d = Diagram(np.array([0.0, 1.0]), np.array([2.0, 1.5]), np.array([3, 4]), np.array([5, 6]), "join")
    >>> total_persistence(d, p=1), total_persistence(d, p=2)
    (2.5, 4.25)
    """
    d = _as_diagram(d, "d", "total_persistence")
    p = check_real("p", p, where="total_persistence", low=0.0, low_open=True)
    src = d if include_essential else d.finite()
    return float(np.sum(src.persistence**p))


def _check_pair(d1: Diagram, d2: Diagram, where: str) -> None:
    _as_diagram(d1, "d1", where)
    _as_diagram(d2, "d2", where)
    if d1.tree != d2.tree:
        raise invalid(
            "d2",
            f"a {d1.tree} diagram, as d1 is",
            where=where,
            got=f"a {d2.tree} diagram",
            fix=f"Cannot compare a {d1.tree} diagram with a {d2.tree} diagram: compare join "
            "with join and split with split.",
        )


def _ground(x: np.ndarray, y: np.ndarray, internal_p: float) -> np.ndarray:
    """L^q distances between the points of ``x`` and ``y`` (rows of 2), ``q = internal_p``.

    Per coordinate, not through an (n, m, 2) array: ten times faster for 1,500 x 1,500 points.
    """
    dx = np.abs(x[:, None, 0] - y[None, :, 0])
    dy = np.abs(x[:, None, 1] - y[None, :, 1])
    if np.isinf(internal_p):
        return np.maximum(dx, dy, out=dx)
    return (dx**internal_p + dy**internal_p) ** (1.0 / internal_p)


def _to_diagonal(x: np.ndarray, internal_p: float) -> np.ndarray:
    """L^q distance from each point to the nearest point of the diagonal."""
    half = (x[:, 1] - x[:, 0]) / 2.0
    return half if np.isinf(internal_p) else half * 2.0 ** (1.0 / internal_p)


def _augmented_cost(a: np.ndarray, b: np.ndarray, internal_p: float) -> np.ndarray:
    """The classic augmentation: each point may go to its own copy of the diagonal, and two
    diagonal copies match for free, so a perfect matching of size n + m is a partial matching."""
    n, m = a.shape[0], b.shape[0]
    cost = np.zeros((n + m, n + m))
    if n and m:
        cost[:n, :m] = _ground(a, b, internal_p)
    if n:
        cost[:n, m:] = _to_diagonal(a, internal_p)[:, None]
    if m:
        cost[n:, :m] = _to_diagonal(b, internal_p)[None, :]
    return cost


def _pot_wasserstein(a: np.ndarray, b: np.ndarray, order: float, internal_p: float) -> float:
    import ot

    n, m = a.shape[0], b.shape[0]
    if n == 0 and m == 0:
        return 0.0
    cost = _augmented_cost(a, b, internal_p) ** order
    w = np.ones(n + m)
    return float(ot.emd2(w, w, cost, numItermax=max(100000, 50 * (n + m) ** 2)) ** (1.0 / order))


def _matching_bottleneck(a: np.ndarray, b: np.ndarray, internal_p: float) -> float:
    """Exact bottleneck distance with the L^q ground metric, by threshold search.

    The answer is one of the augmented costs: the smallest ``t`` for which the edges of cost
    ``<= t`` hold a perfect matching (scipy's Hopcroft-Karp), found by bisection over the sorted
    distinct costs. O((n + m)^2 log(n + m)) memory and time: an independent check of hera's
    geometric algorithm, and the only one here for a finite ``internal_p``.
    """
    import scipy.sparse as sp
    from scipy.sparse.csgraph import maximum_bipartite_matching

    if a.shape[0] == 0 and b.shape[0] == 0:
        return 0.0
    cost = _augmented_cost(a, b, internal_p)
    values = np.unique(cost)
    lo, hi = 0, values.shape[0] - 1  # the largest cost always admits a perfect matching
    while lo < hi:
        mid = (lo + hi) // 2
        match = maximum_bipartite_matching(sp.csr_matrix(cost <= values[mid]), perm_type="column")
        if (match >= 0).all():
            hi = mid
        else:
            lo = mid + 1
    return float(values[lo])


def _check_order_and_p(order: float, internal_p: float, where: str) -> tuple[float, float]:
    order = check_real(
        "order",
        order,
        where=where,
        low=1.0,
        allow_inf=True,
        fix="order=inf is the bottleneck distance.",
    )
    internal_p = check_real(
        "internal_p",
        internal_p,
        where=where,
        low=1.0,
        allow_inf=True,
        fix="It is the q of the L^q ground metric between points: 1, 2 or inf (the default).",
    )
    return order, internal_p


def wasserstein(
    d1: Diagram,
    d2: Diagram,
    order: float = 1,
    *,
    internal_p: float = np.inf,
    backend: Backend = "hera",
    include_essential: bool = False,
    delta: float = HERA_DELTA,
) -> float:
    """p-Wasserstein distance between two diagrams of the same tree.

    ``W_p = (inf over matchings sum ||x - gamma(x)||_q ** p) ** (1/p)``, points allowed to match
    the diagonal, with ``q = internal_p`` (L-infinity by default, as in the thesis).

    Parameters
    ----------
    order : float in [1, inf]
        ``p``. ``order=inf`` is the limit ``p -> inf``, the bottleneck distance: the smallest
        possible largest move, ``inf over matchings max ||x - gamma(x)||_q`` (so
        ``wasserstein(a, b, order=np.inf) == bottleneck(a, b)`` for the default ``internal_p``).
    internal_p : float in [1, inf], default inf
        ``q``, the ground metric between points. Values below 1 (not a metric), 0 and NaN are
        refused.
    backend : {"hera", "assignment", "pot"}
        ``"hera"``: gudhi's hera (geometric auction; within a relative error ``delta``, see
        there). ``"assignment"``: exact, a sparse minimum-weight assignment (scipy's LAPJVsp)
        between one diagram's points and the other's points or the diagonal, keeping only the
        edges that can be in an optimal matching (``||x - y||^p < d(x)^p + d(y)^p``, ``d`` the
        distance to the diagonal); faster than hera on the diagrams of a study (measured in
        ``benchmarks/bench_study.py``), its memory grows with those edges (all ``n m`` of them
        at worst). ``"pot"``: POT's exact network-simplex solver on the dense augmented cost
        matrix (slow; a check). For ``order=inf``: hera's exact bottleneck distance when
        ``internal_p=inf`` and ``backend="hera"``; otherwise an exact threshold matching
        (scipy) that any ``internal_p`` allows.
    include_essential : bool
        Also match essential pairs (by birth); ``inf`` when the counts differ.
    delta : float in (0, 1], default 1e-6
        hera's relative error: hera returns the cost of a matching, so its value ``w`` is at
        least the exact ``W`` and at most ``(1 + delta) W``; hence ``|w - W| <= delta * w``.
        Only ``backend="hera"`` (with a finite ``order``) uses it; the other solvers are exact.
    """
    _check_pair(d1, d2, "wasserstein")
    order, internal_p = _check_order_and_p(order, internal_p, "wasserstein")
    check_choice("backend", backend, BACKENDS, where="wasserstein")
    delta = check_delta(delta, where="wasserstein")
    a, b, gaps = _prepare(d1, d2, include_essential)
    if gaps is None:
        return float("inf")
    if np.isinf(order):
        # Never hand order=inf to the p-Wasserstein solvers: the formula degenerates (x**inf,
        # then **(1/inf) = 1) and gudhi 3.13's hera.wasserstein_distance does not return.
        if backend == "hera" and np.isinf(internal_p):
            fin = _hera_bottleneck(a, b)
        else:
            fin = _matching_bottleneck(a, b, internal_p)
        return max(fin, float(gaps.max(initial=0.0)))
    extra = float(np.sum(gaps**order))
    fin = _finite_wasserstein(a, b, order, internal_p, backend, delta)
    return float((fin**order + extra) ** (1.0 / order))


def _finite_wasserstein(
    a: np.ndarray, b: np.ndarray, order: float, internal_p: float, backend: str, delta: float
) -> float:
    """W_order of two sets of finite off-diagonal points (rows, birth <= death).

    The points are first divided by the largest distance to the diagonal of either set and the
    distance multiplied back (W is homogeneous of degree one): POT and the assignment solver
    work to an absolute tolerance and shift their costs by a constant of order one, so without
    this a W2 between diagrams of persistence ~1e-6 came out 9 % (assignment) or 25 % (POT)
    off, and the result now does not depend on the unit of the loss.
    """
    scale = max(
        float(_to_diagonal(a, internal_p).max(initial=0.0)),
        float(_to_diagonal(b, internal_p).max(initial=0.0)),
    )
    if scale == 0.0:  # nothing off the diagonal on either side
        return 0.0
    return scale * _unit_wasserstein(a / scale, b / scale, order, internal_p, backend, delta)


def _unit_wasserstein(
    a: np.ndarray, b: np.ndarray, order: float, internal_p: float, backend: str, delta: float
) -> float:
    """:func:`_finite_wasserstein` of points whose largest distance to the diagonal is 1."""
    if backend == "hera":
        from gudhi.hera import wasserstein_distance

        return (
            float(wasserstein_distance(a, b, order=order, internal_p=internal_p, delta=delta))
            if len(a) or len(b)
            else 0.0
        )
    if backend == "assignment":
        return _assignment_wasserstein(a, b, order, internal_p)
    return _pot_wasserstein(a, b, order, internal_p)


# Rows of the candidate-edge search done at once: about this many distances in memory.
_BLOCK = 4_000_000


def _linf_candidates(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(i, j)`` with ``||a_i - b_j||_inf < d(a_i) + d(b_j)``, ``d`` the L-infinity
    distance to the diagonal, without the ``n x m`` distance matrix.

    In the coordinates ``u = (birth + death) / 2``, ``v = (death - birth) / 2`` (so ``d = v``)
    the L-infinity distance is ``|du| + |dv|``, and the condition reads
    ``|u_i - u_j| < 2 min(v_i, v_j)``: ``b_j`` lies in a window of ``b`` sorted by ``u``.
    Returns a superset for orders > 1 (``c^p < d^p + d'^p`` implies ``c < d + d'``).
    """
    ua, va = (a[:, 0] + a[:, 1]) / 2.0, (a[:, 1] - a[:, 0]) / 2.0
    ub, vb = (b[:, 0] + b[:, 1]) / 2.0, (b[:, 1] - b[:, 0]) / 2.0
    order = np.argsort(ub, kind="stable")
    us = ub[order]
    reach = 2.0 * va * (1 + 1e-9)  # slack against rounding: the exact test on the costs follows
    lo = np.searchsorted(us, ua - reach, side="left")
    hi = np.searchsorted(us, ua + reach, side="right")
    size = np.maximum(hi - lo, 0)
    rows = np.repeat(np.arange(a.shape[0]), size)
    starts = np.repeat(lo - np.concatenate([[0], np.cumsum(size)[:-1]]), size)
    cols = order[np.arange(rows.shape[0]) + starts]
    keep = np.abs(ua[rows] - ub[cols]) <= 2.0 * np.minimum(va[rows], vb[cols]) * (1 + 1e-9)
    return rows[keep], cols[keep]


def _candidate_edges(
    a: np.ndarray, b: np.ndarray, da: np.ndarray, db: np.ndarray, order: float, internal_p: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs ``(i, j)`` worth matching, ``c_ij^p < d(a_i)^p + d(b_j)^p`` (otherwise sending both
    points to the diagonal costs no more), and their costs ``c_ij^p``."""
    if np.isinf(internal_p):
        i, j = _linf_candidates(a, b)
        c = np.maximum(np.abs(a[i, 0] - b[j, 0]), np.abs(a[i, 1] - b[j, 1])) ** order
        keep = c < da[i] + db[j]
        return i[keep], j[keep], c[keep]
    parts = []
    step = max(1, _BLOCK // b.shape[0])
    for s in range(0, a.shape[0], step):
        cs = _ground(a[s : s + step], b, internal_p) ** order
        ii, jj = np.nonzero(cs < da[s : s + step, None] + db[None, :])
        parts.append((ii + s, jj, cs[ii, jj]))
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))  # type: ignore[return-value]


def _assignment_wasserstein(a: np.ndarray, b: np.ndarray, order: float, internal_p: float) -> float:
    """Exact W_order as a sparse minimum-weight matching (scipy's LAPJVsp), for points whose
    largest distance to the diagonal is 1 (:func:`_finite_wasserstein` scales them so).

    Only the candidate pairs of :func:`_candidate_edges` are edges, which leaves few when most
    points lie near the diagonal, as in loss diagrams. Two forms of the matching problem:

    * fast (``n x (n + m)``, ``a`` the smaller set): each point of ``a`` goes to a point of
      ``b`` or to its own diagonal copy, a point of ``b`` left over goes to the diagonal; the
      edge ``a_i - b_j`` weighs ``c_ij^p - d(b_j)^p`` (the cost changes by that against
      ``b_j`` going to the diagonal), shifted by one constant so that all are > 0.
    * square (``(n + m) x (n + m)``, the reduction hera uses): rows ``a`` and diagonal copies
      of ``b``, columns ``b`` and diagonal copies of ``a``; every weight a cost >= 0, none
      formed by a subtraction (diagonal copies pair at zero cost, mirroring the kept pairs).

    The value is always summed from the true, non-negative costs of the matching found. The
    fast form's weights carry a rounding error of a few ``eps`` each (at unit scale), so its
    matching is within about ``8 (n + m) eps`` of optimal; when that is more than ``1e-9`` of
    the value (nearly equal diagrams, or a W2 of 0.1 beside a pair of persistence 1e9, which
    the fast form lost entirely), the square form is solved instead: about 2.5x slower and
    exact to rounding at every scale. scipy's dense ``linear_sum_assignment`` was 2-35x slower
    on the train diagrams of ``benchmarks/bench_study.py`` (1,000-1,600 pairs).
    """
    if a.shape[0] > b.shape[0]:
        a, b = b, a
    n, m = a.shape[0], b.shape[0]
    da = _to_diagonal(a, internal_p) ** order
    db = _to_diagonal(b, internal_p) ** order
    if n == 0:
        return float(np.sum(db) ** (1.0 / order))
    i, j, c = _candidate_edges(a, b, da, db, order, internal_p)
    total = _fast_matching_cost(i, j, c, da, db)
    if 8.0 * (n + m) * np.finfo(float).eps > 1e-9 * total:
        total = _square_matching_cost(i, j, c, da, db)
    return float(total ** (1.0 / order))


def _matched_cost(
    pairs: tuple[np.ndarray, np.ndarray], i: np.ndarray, j: np.ndarray, c: np.ndarray, m: int
) -> float:
    """Sum of the costs ``c`` of the candidate pairs ``(i, j)`` that are in ``pairs``."""
    key = i * m + j
    order = np.argsort(key)
    at = order[np.searchsorted(key, pairs[0] * m + pairs[1], sorter=order)]
    return float(np.sum(c[at]))


def _fast_matching_cost(
    i: np.ndarray, j: np.ndarray, c: np.ndarray, da: np.ndarray, db: np.ndarray
) -> float:
    """The fast form of :func:`_assignment_wasserstein`: the true cost of its matching."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching

    n, m = da.shape[0], db.shape[0]
    an = np.arange(n)
    w = np.concatenate([c - db[j], da]) + (float(db.max()) + 1.0)  # every weight >= ~1
    graph = sp.csr_matrix((w, (np.concatenate([i, an]), np.concatenate([j, m + an]))), (n, n + m))
    r, k = min_weight_full_bipartite_matching(graph)
    ab = k < m
    left = np.ones(m, dtype=bool)
    left[k[ab]] = False
    return _matched_cost((r[ab], k[ab]), i, j, c, m) + float(da[r[~ab]].sum() + db[left].sum())


def _square_matching_cost(
    i: np.ndarray, j: np.ndarray, c: np.ndarray, da: np.ndarray, db: np.ndarray
) -> float:
    """The square form of :func:`_assignment_wasserstein`: the true cost of its matching."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching

    n, m = da.shape[0], db.shape[0]
    an, bm = np.arange(n), np.arange(m)
    rows = np.concatenate([i, an, n + bm, n + j])
    cols = np.concatenate([j, m + an, bm, m + i])
    w = np.concatenate([c, da, db, np.zeros(len(i))]) + 1e-200  # > 0 for scipy, below any cost
    r, k = min_weight_full_bipartite_matching(sp.csr_matrix((w, (rows, cols)), (n + m, n + m)))
    ab = (r < n) & (k < m)
    to_diag_a = (r < n) & (k >= m)
    from_diag_b = (r >= n) & (k < m)
    return _matched_cost((r[ab], k[ab]), i, j, c, m) + float(
        da[r[to_diag_a]].sum() + db[k[from_diag_b]].sum()
    )


def _prepare(
    d1: Diagram, d2: Diagram, include_essential: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Finite, off-diagonal points of both diagrams (``(n, 2)``, birth <= death) and the birth
    gaps of the essential points matched among themselves (``None`` when their counts differ).

    Points on the diagonal cost nothing in any matching, so they are dropped; essential points
    (death +-inf) can only match each other, by birth, and sorted matching is optimal in 1-D.
    Both are done here rather than in hera, which loops forever on a diagonal point or on
    essential points (GUDHI/gudhi-devel#477, still in gudhi 3.13) and crashed on one case."""
    a, b = d1.as_lower(), d2.as_lower()
    ea, eb = np.isinf(a[:, 1]), np.isinf(b[:, 1])
    gaps: np.ndarray | None = np.zeros(0)
    if include_essential and (ea.any() or eb.any()):
        gaps = np.abs(np.sort(a[ea, 0]) - np.sort(b[eb, 0])) if ea.sum() == eb.sum() else None
    a, b = a[~ea], b[~eb]
    return a[a[:, 0] != a[:, 1]], b[b[:, 0] != b[:, 1]], gaps


def bottleneck(d1: Diagram, d2: Diagram, *, include_essential: bool = False) -> float:
    """Bottleneck distance (L-infinity ground metric) between two diagrams of the same tree.

    Computed exactly by gudhi's hera (``delta=0``). Note: gudhi 3.13's own exact
    ``gudhi.bottleneck_distance(a, b, 0)`` returned 22.0 where the true distance is 0.5 on a case
    our property tests found (see ``tests/test_diagrams.py``); hera's is used for that reason.
    The same as ``wasserstein(d1, d2, order=np.inf)``, which also takes another ``internal_p``.
    """
    _check_pair(d1, d2, "bottleneck")
    a, b, gaps = _prepare(d1, d2, include_essential)
    if gaps is None:
        return float("inf")
    return max(_hera_bottleneck(a, b), float(gaps.max(initial=0.0)))


def _hera_bottleneck(a: np.ndarray, b: np.ndarray) -> float:
    from gudhi.hera import bottleneck_distance

    return float(bottleneck_distance(a, b, delta=0.0)) if len(a) or len(b) else 0.0
