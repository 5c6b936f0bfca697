"""Join trees and split trees of a function on a graph, and their persistence diagrams.

Naming. Here, as in the thesis and most of the persistence literature:

- the **join tree** follows *sublevel* sets ``{f <= t}`` as ``t`` grows: its leaves are the
  minima (valleys, basins of low loss), and components join at saddles;
- the **split tree** follows *superlevel* sets ``{f >= t}`` as ``t`` falls: its leaves are the
  maxima (peaks of high loss).

Carr, Snoeyink & Axen (2003) and Doraiswamy's contour-tree code use the opposite names (their
"join tree" tracks superlevel sets); only the names differ, not the trees.

Ties (simulation of simplicity). Values are compared as ``(f(v), v)``: equal values are ordered by
vertex (sample) index, as if ``f(v) + eps * v``. The join tree sweeps this order upward and the
split tree downward, so both are trees of the same perturbed function and every result is
deterministic. Pairs born and killed at equal values (zero persistence) are left out of diagrams.

Elder rule. When components meet at a saddle, the one born earliest in the sweep survives; each
other one dies there and gives one pair (birth at its minimum / maximum, death at the saddle). Each
connected component of the graph keeps one essential pair that never dies.

The algorithm is one sweep over the vertices in value order on the CSR adjacency with a
union-find (compiled with numba): O(E alpha(n) + n log n). This module knows nothing of neural
networks: any graph (a kNN graph of samples, a landscape grid) and one finite value per vertex.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from sampletopo import _sweep
from sampletopo._validation import check_finite_values, check_int, invalid
from sampletopo.diagrams import Diagram
from sampletopo.graph import Graph, check_graph

__all__ = ["MergeTree", "join_tree", "split_tree", "diagram_pair"]

_KIND_NAMES = {_sweep.LEAF: "leaf", _sweep.SADDLE: "saddle", _sweep.ROOT: "root"}


@dataclass(frozen=True, eq=False)
class MergeTree:
    """A join or split tree: critical nodes, the arcs between them, and where every vertex lies.

    Attributes
    ----------
    kind : {"join", "split"}
    values : ndarray (n,)
        The function, one value per vertex.
    node_vertex : ndarray (m,)
        The vertex (sample index) of each node: first the leaves and saddles, in sweep order;
        then one ``"root"`` per connected component whose last vertex is not already a node, in
        the order the union-find closes the components (by the vertex id of each component's
        union-find root), which is not the sweep order.
    node_kind : ndarray of str (m,)
        ``"leaf"`` (a minimum of a join tree / maximum of a split tree), ``"saddle"`` (where
        components merge) or ``"root"`` (the last vertex of a connected component, when it is not
        already a saddle or a leaf).
    arc_lower, arc_upper : ndarray (a,)
        Node indices at the two ends of each arc; "lower" is the end met first by the sweep (the
        lower value in a join tree, the higher value in a split tree).
    vertex_arc : ndarray (n,)
        The arc each vertex lies on (index into the arc arrays). Leaves and saddles lie on the
        arc that leaves them upward; a ``"root"`` node's vertex lies on the arc that ends at it.
        -1 for a component's last vertex when it is a saddle or a leaf (an isolated vertex):
        no arc leaves it.
    rank : ndarray (n,)
        Position of each vertex in the sweep.
    """

    kind: str
    values: np.ndarray
    node_vertex: np.ndarray
    node_kind: np.ndarray
    arc_lower: np.ndarray
    arc_upper: np.ndarray
    vertex_arc: np.ndarray
    rank: np.ndarray
    _pairs: tuple[np.ndarray, np.ndarray, np.ndarray] = field(repr=False)
    _graph: Graph = field(repr=False)

    @property
    def n(self) -> int:
        return int(self.values.shape[0])

    @property
    def leaves(self) -> np.ndarray:
        """Vertices of the leaves: minima (join) or maxima (split), in sweep order."""
        return self.node_vertex[self.node_kind == "leaf"]

    @property
    def saddles(self) -> np.ndarray:
        """Vertices where two or more components merge, in sweep order."""
        return self.node_vertex[self.node_kind == "saddle"]

    @property
    def n_leaves(self) -> int:
        return int((self.node_kind == "leaf").sum())

    @property
    def n_saddles(self) -> int:
        return int((self.node_kind == "saddle").sum())

    def diagram(self, *, include_zero: bool = False) -> Diagram:
        """The 0-dimensional persistence diagram of the tree.

        Finite pairs come in the order they die in the sweep, then one essential pair per
        connected component (death ``+inf`` for join, ``-inf`` for split). Pairs with zero
        persistence (born and killed at equal values) are left out unless ``include_zero``.
        """
        pb, pd, ess = self._pairs
        v = self.values
        birth = np.concatenate([v[pb], v[ess]])
        inf = np.inf if self.kind == "join" else -np.inf
        death = np.concatenate([v[pd], np.full(ess.shape[0], inf)])
        bs = np.concatenate([pb, ess])
        ds = np.concatenate([pd, np.full(ess.shape[0], -1, dtype=np.int64)])
        if not include_zero:
            keep = birth != death
            birth, death, bs, ds = birth[keep], death[keep], bs[keep], ds[keep]
        return Diagram(birth, death, bs, ds, self.kind)

    def members(self, birth_sample: int) -> np.ndarray:
        """Vertices of the component born at leaf ``birth_sample``, just before it dies.

        For a join tree this is the whole basin: every vertex connected to the minimum through
        vertices swept before the killing saddle (lower values); for a split tree, the whole peak
        region above its saddle. Younger branches that merged into it earlier are included. For
        the essential pair, the whole connected component.

        ``birth_sample`` is a vertex id (an int in ``[0, n - 1]``; negative ids are refused, not
        counted from the end, and a float is never rounded to a vertex).
        """
        v = check_int(
            "birth_sample",
            birth_sample,
            0,
            self.n - 1,
            where="MergeTree.members",
            fix="Pass a leaf of the tree (a vertex in tree.leaves, e.g. a diagram's birth_sample).",
        )
        if v not in set(self.leaves.tolist()):
            raise invalid(
                "birth_sample",
                f"a leaf of this {self.kind} tree (a vertex in tree.leaves)",
                birth_sample,
                where="MergeTree.members",
            )
        pb, pd, _ = self._pairs
        hit = np.flatnonzero(pb == v)
        limit = int(self.rank[pd[hit[0]]]) if hit.size else self.n
        indptr, indices = self._graph.csr()
        return _sweep.basin(v, limit, self.rank, indptr, indices)

    def nodes(self) -> pl.DataFrame:
        """The nodes as a table: node, vertex (sample), kind, value."""
        return pl.DataFrame(
            {
                "node": np.arange(self.node_vertex.shape[0]),
                "vertex": self.node_vertex,
                "kind": self.node_kind.tolist(),
                "value": self.values[self.node_vertex],
            }
        )

    def arcs(self) -> pl.DataFrame:
        """The arcs as a table: arc, lower/upper node and vertex, and how many vertices lie on it."""
        counts = np.bincount(
            self.vertex_arc[self.vertex_arc >= 0], minlength=self.arc_lower.shape[0]
        )
        return pl.DataFrame(
            {
                "arc": np.arange(self.arc_lower.shape[0]),
                "lower_node": self.arc_lower,
                "upper_node": self.arc_upper,
                "lower_vertex": self.node_vertex[self.arc_lower],
                "upper_vertex": self.node_vertex[self.arc_upper],
                "n_vertices": counts,
            }
        )

    def __repr__(self) -> str:
        return (
            f"MergeTree(kind={self.kind!r}, n={self.n}, leaves={self.n_leaves}, "
            f"saddles={self.n_saddles}, arcs={self.arc_lower.shape[0]})"
        )


def _check_graph(graph: Graph, where: str) -> Graph:
    return check_graph(graph, where=where)


def _sweep_order(values: np.ndarray, kind: str) -> np.ndarray:
    idx = np.arange(values.shape[0], dtype=np.int64)
    if kind == "join":
        return np.lexsort((idx, values)).astype(np.int64)
    # Descending in (value, index): reverse of the ascending order.
    return np.lexsort((idx, values))[::-1].astype(np.int64).copy()


def _build(graph: Graph, values, kind: str) -> MergeTree:
    where = f"{kind}_tree"
    graph = _check_graph(graph, where)
    vals = check_finite_values(values, graph.n, where=where)
    order = _sweep_order(vals, kind)
    indptr, indices = graph.csr()
    (rank, node_vertex, node_kind, arc_lower, arc_upper, vertex_arc, pb, pd, ess) = _sweep.sweep(
        order, indptr, indices
    )
    # Drop the open arcs of components whose top node is their last vertex (marked -2).
    keep = arc_upper != -2
    if not keep.all():
        new_index = np.cumsum(keep) - 1
        arc_lower, arc_upper = arc_lower[keep], arc_upper[keep]
        vertex_arc = np.where(vertex_arc >= 0, new_index[np.maximum(vertex_arc, 0)], -1)
    kinds = np.array([_KIND_NAMES[int(k)] for k in node_kind], dtype=object).astype(str)
    for arr in (vals, node_vertex, arc_lower, arc_upper, vertex_arc, rank):
        arr.setflags(write=False)
    # In the order of MergeTree's fields (kind, values, nodes, arcs, vertex arcs, rank, pairs).
    arcs = (arc_lower, arc_upper, vertex_arc)
    return MergeTree(kind, vals, node_vertex, kinds, *arcs, rank, (pb, pd, ess), graph)


def join_tree(graph: Graph, values) -> MergeTree:
    """The join tree (sublevel sets; leaves are minima) of ``values`` on ``graph``.

    Parameters
    ----------
    graph : Graph
    values : array-like (graph.n,)
        One finite value per vertex (e.g. each sample's loss).

    Examples
    --------
    Two valleys (samples 0 and 4) on a path, joined at the saddle sample 2:

    >>> from sampletopo.graph import graph_from_edges
    >>> g = graph_from_edges(5, [[0, 1], [1, 2], [2, 3], [3, 4]])
    >>> d = join_tree(g, [0.0, 1.0, 3.0, 2.0, 0.5]).diagram()
    >>> d.birth.tolist(), d.death.tolist(), d.birth_sample.tolist(), d.death_sample.tolist()
    ([0.5, 0.0], [3.0, inf], [4, 0], [2, -1])
    """
    return _build(graph, values, "join")


def split_tree(graph: Graph, values) -> MergeTree:
    """The split tree (superlevel sets; leaves are maxima) of ``values`` on ``graph``.

    Pairs have ``birth >= death``: a peak is born at its maximum and dies at the lower saddle
    where it meets an older (higher) peak. The essential pair dies at ``-inf``.

    Examples
    --------
    >>> from sampletopo.graph import graph_from_edges
    >>> g = graph_from_edges(5, [[0, 1], [1, 2], [2, 3], [3, 4]])
    >>> d = split_tree(g, [3.0, 1.0, 2.0, 0.0, 2.5]).diagram()
    >>> d.birth.tolist(), d.death.tolist(), d.birth_sample.tolist(), d.death_sample.tolist()
    ([2.0, 2.5, 3.0], [1.0, 0.0, -inf], [2, 4, 0], [1, 3, -1])
    """
    return _build(graph, values, "split")


def diagram_pair(graph: Graph, values) -> tuple[Diagram, Diagram]:
    """Both diagrams at once: ``(join_tree(...).diagram(), split_tree(...).diagram())``."""
    return join_tree(graph, values).diagram(), split_tree(graph, values).diagram()
