"""The topological landscape profile of a grid of any dimension (Geniesse et al. 2024).

What is here: :class:`ProfileBasin`, :class:`LandscapeProfile` and :func:`landscape_profile`,
which draws the join tree of the grid as nested basins: the branches of the tree, their widths
(grid points below each loss level) and their horizontal layout.

What is not here: building the tree (``_gridtree``), the numbers read off it (``_metrics``), and
the figure (:func:`sampletopo.plotting.plot_landscape_profile`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from sampletopo.landscape._grid import Landscape
from sampletopo.landscape._gridtree import check_connectivity, grid_join_tree, grid_values
from sampletopo.mergetree import MergeTree

_BASIN_KIND = {"leaf": "minimum", "saddle": "saddle", "root": "root"}


@dataclass(frozen=True)
class ProfileBasin:
    """One branch of the merge tree drawn as a basin of the profile.

    Its width at loss level ``t`` (``levels[0] <= t < top``) is the number of grid points below
    ``t`` in the basin, counting the basins nested in it: ``widths[j]`` for
    ``levels[j] <= t < levels[j + 1]``. It is drawn centred at ``center``.

    Attributes
    ----------
    parent : int
        Index of the enclosing basin in :attr:`LandscapeProfile.basins` (-1 for a top basin).
    kind : {"minimum", "saddle", "root"}
        Where the branch starts: at a minimum, at a saddle (where basins merge), or at the last
        point of the grid (a top basin holding only that point).
    vertex : int
        The grid point (flat index) where it starts (the minimum or saddle).
    levels, widths : ndarray
        Step function of the width (levels ascending).
    top : float
        Loss level where it merges into its parent (the last level of a top basin).
    center : float
        Horizontal centre of the basin in the drawing.
    size : int
        Grid points in the basin at ``top`` (its own and its nested ones).
    """

    parent: int
    kind: str
    vertex: int
    levels: np.ndarray
    widths: np.ndarray
    top: float
    center: float
    size: int

    def outline(self, *, max_points: int = 400) -> tuple[np.ndarray, np.ndarray]:
        """Closed polygon ``(x, y)`` of the basin (a stair outline, thinned to ``max_points``)."""
        lv, wd = self.levels, self.widths
        if lv.size > max_points // 2:
            keep = np.unique(np.linspace(0, lv.size - 1, max_points // 2).round().astype(int))
            lv, wd = lv[keep], wd[keep]
        y = np.repeat(np.append(lv, self.top), 2)[1:-1]
        w = np.repeat(wd, 2).astype(np.float64)
        right = self.center + w / 2
        left = self.center - w / 2
        x = np.concatenate([[self.center], right, left[::-1], [self.center]])
        yy = np.concatenate([[lv[0]], y, y[::-1], [lv[0]]])
        return x, yy


@dataclass(frozen=True)
class LandscapeProfile:
    """The topological landscape profile of a grid (Geniesse et al. 2024).

    The join tree of the grid drawn as nested basins: each branch is a :class:`ProfileBasin`
    whose width at a loss level is the number of grid points of that basin below the level;
    branches that merge at a saddle sit side by side inside their parent, the elder (lower
    minimum) on the left. Works for any grid dimension since only the tree is drawn.

    Attributes
    ----------
    basins : tuple of ProfileBasin
        Children before parents.
    n_points : int
        Finite grid points (the total width at the top).
    loss_min, loss_max : float
    connectivity : {"axis", "freudenthal"}
        Grid graph of the join tree the profile draws.
    """

    basins: tuple[ProfileBasin, ...]
    n_points: int
    loss_min: float
    loss_max: float
    connectivity: str

    def width_at(self, level: float) -> int:
        """Total width (grid points with loss <= ``level``) summed over the basins that are
        open at ``level`` -- equal to the number of finite grid points at or below it."""
        total = 0
        for b in self.basins:
            if b.levels[0] <= level < b.top or (b.parent < 0 and level >= b.levels[0]):
                j = int(np.searchsorted(b.levels, level, side="right")) - 1
                total += int(b.widths[j])
        return total


def landscape_profile(
    landscape: Landscape | np.ndarray,
    *,
    connectivity: Literal["axis", "freudenthal"] = "freudenthal",
) -> LandscapeProfile:
    """Build the topological landscape profile of a grid landscape of any dimension.

    Parameters
    ----------
    landscape : Landscape or ndarray
        Values on a regular grid; non-finite points are left out.
    connectivity : {"axis", "freudenthal"}
        Grid graph used for the join tree (see :func:`landscape_metrics`); the profile records
        it.

    Returns
    -------
    LandscapeProfile
    """
    where = "landscape_profile"
    arr = grid_values(landscape, where)
    connectivity = check_connectivity(connectivity, where)  # type: ignore[assignment]
    tree, keep = grid_join_tree(arr, connectivity)
    vals = tree.values
    br = _branches(tree)
    size, base = _sizes(br)
    center = _centers(br, size, base, vals[tree.node_vertex[br.start_node]])
    basins = []
    for b in br.by_start:
        own = br.own[b]
        levels = vals[own]
        if br.parent[b] >= 0:
            top = float(vals[tree.node_vertex[br.start_node[br.parent[b]]]])
        else:
            top = float(levels[-1])
        basins.append(
            (
                int(b),
                ProfileBasin(
                    parent=int(br.parent[b]),
                    kind=_BASIN_KIND[str(tree.node_kind[br.start_node[b]])],
                    vertex=int(keep[tree.node_vertex[br.start_node[b]]]),
                    levels=levels,
                    widths=base[b] + np.arange(1, len(own) + 1),
                    top=top,
                    center=float(center[b]),
                    size=int(size[b]),
                ),
            )
        )
    # Re-index parents to positions in the (children-first) output order.
    pos = {b: i for i, (b, _) in enumerate(basins)}
    out = tuple(replace(pb, parent=pos[pb.parent] if pb.parent >= 0 else -1) for _, pb in basins)
    return LandscapeProfile(
        basins=out,
        n_points=int(vals.size),
        loss_min=float(vals.min()),
        loss_max=float(vals.max()),
        connectivity=connectivity,
    )


@dataclass(frozen=True, eq=False)
class _Branches:
    """The branches of a join tree, one per basin of the profile.

    One basin per arc, plus one per top node (a node with no arc leaving it upward), which holds
    the vertex that closes its component.

    Attributes
    ----------
    start_node : ndarray (n_basins,)
        The node where each basin starts (its minimum or saddle).
    parent : ndarray (n_basins,)
        The enclosing basin, -1 for a top basin.
    own : list of list of int
        The vertices of each basin not in a nested basin, by sweep rank.
    children : list of list of int
    by_start : ndarray (n_basins,)
        Basins by the sweep rank of their starting vertex: children before parents.
    """

    start_node: np.ndarray
    parent: np.ndarray
    own: list[list[int]]
    children: list[list[int]]
    by_start: np.ndarray


def _branches(tree: MergeTree) -> _Branches:
    n_nodes = tree.node_vertex.shape[0]
    n_arcs = tree.arc_lower.shape[0]
    node_out = np.full(n_nodes, -1, dtype=np.int64)
    node_out[tree.arc_lower] = np.arange(n_arcs)
    tops = np.flatnonzero(node_out < 0)
    n_basins = n_arcs + tops.size
    basin_of_top = {int(t): n_arcs + i for i, t in enumerate(tops)}
    start_node = np.concatenate([tree.arc_lower, tops])
    parent = np.full(n_basins, -1, dtype=np.int64)
    for a in range(n_arcs):
        up = int(tree.arc_upper[a])
        parent[a] = node_out[up] if node_out[up] >= 0 else basin_of_top[up]
    va = np.asarray(tree.vertex_arc).copy()
    for t in tops:
        va[tree.node_vertex[t]] = basin_of_top[int(t)]
    order = np.argsort(tree.rank[np.arange(tree.values.size)], kind="stable")
    own: list[list[int]] = [[] for _ in range(n_basins)]
    for v in order:
        own[int(va[v])].append(int(v))
    children: list[list[int]] = [[] for _ in range(n_basins)]
    for b in range(n_basins):
        if parent[b] >= 0:
            children[int(parent[b])].append(b)
    # Children are always created before parents in sweep order.
    by_start = np.argsort(tree.rank[tree.node_vertex[start_node]], kind="stable")
    return _Branches(start_node, parent, own, children, by_start)


def _sizes(br: _Branches) -> tuple[np.ndarray, np.ndarray]:
    """Grid points in each basin at its top, and in its nested basins (its width at its start)."""
    n_basins = br.parent.shape[0]
    size = np.zeros(n_basins, dtype=np.int64)
    base = np.zeros(n_basins, dtype=np.int64)
    for b in br.by_start:
        base[b] = sum(size[c] for c in br.children[b])
        size[b] = base[b] + len(br.own[b])
    return size, base


def _centers(br: _Branches, size: np.ndarray, base: np.ndarray, low: np.ndarray) -> np.ndarray:
    """Horizontal centre of each basin: top basins side by side, children centred under their
    parent's opening, each row elder (deepest minimum, from each basin's ``low``) first."""
    n_basins = br.parent.shape[0]
    deepest = low.copy()
    for b in br.by_start:
        for c in br.children[b]:
            deepest[b] = min(deepest[b], deepest[c])
    center = np.zeros(n_basins)
    roots = sorted((b for b in range(n_basins) if br.parent[b] < 0), key=lambda b: deepest[b])
    x = 0.0
    stack: list[int] = []
    for r in roots:
        center[r] = x + size[r] / 2
        x += size[r]
        stack.append(r)
    while stack:
        b = stack.pop()
        kids = sorted(br.children[b], key=lambda c: deepest[c])
        left = center[b] - base[b] / 2
        for c in kids:
            center[c] = left + size[c] / 2
            left += size[c]
            stack.append(c)
    return center
