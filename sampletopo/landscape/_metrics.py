"""Topological and curvature summaries of a grid landscape: minima, saddles, persistence, SMAD.

What is here: :func:`smad` (the saddle-minimum average distance of a join tree, after Chen et al.
2025; *not* Landscaper 1.3.1's number, see its notes), :class:`LandscapeMetrics` and
:func:`landscape_metrics`: minima, saddles and average persistence of the join tree of the grid
graph (Xie et al. 2024) and SMAD, beside the Hessian top eigenvalue and trace when given. Every
result names the grid graph it was computed on (``connectivity``): the default Freudenthal
triangulation counts differently from the axis-neighbour grid that Landscaper and gudhi's cubical
complex use.

What is not here: building the tree (``_gridtree``), the profile drawn from it (``_profile``),
and computing the Hessian numbers (:mod:`sampletopo.hessian`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from sampletopo.landscape._grid import Landscape
from sampletopo.landscape._gridtree import check_connectivity, grid_join_tree, grid_values
from sampletopo.mergetree import MergeTree


def _critical_nodes(tree: MergeTree) -> tuple[np.ndarray, np.ndarray]:
    """Node indices of the minima and saddles of a join tree that are not artefacts of tied
    values: the leaves born, and the saddles killing, a pair of nonzero persistence (every
    component's surviving minimum included)."""
    dg = tree.diagram()  # zero-persistence pairs left out
    vert = tree.node_vertex
    kinds = tree.node_kind
    leaves = np.flatnonzero((kinds == "leaf") & np.isin(vert, dg.birth_sample))
    killers = dg.death_sample[dg.death_sample >= 0]
    saddles = np.flatnonzero((kinds == "saddle") & np.isin(vert, killers))
    return leaves, saddles


def smad(tree: MergeTree, *, normalize: bool = False) -> float:
    """Saddle-minimum average distance (SMAD) of a join tree: minima to their join saddles.

    Definition. Let ``M`` be the minima of the join (sublevel-set merge) tree ``T`` of ``f`` --
    its leaves, leaving out those of zero persistence (see Ties) -- and for ``m`` in ``M`` let
    ``s(m)`` be its *join saddle*: the first saddle node of ``T`` above ``m``, i.e. the value at
    which the sublevel-set component born at ``m`` first meets another component. With
    ``P = {(m, s(m)) : m in M and s(m) exists}``,

    ``SMAD = (1 / |P|) * sum_{(m, s) in P} (f(s) - f(m))``,

    and ``SMAD = 0`` when ``P`` is empty (each connected component is one basin). Every minimum
    counts once, including the one that survives the merge by the elder rule: for minima at 0
    and 1 merging at a saddle at 2, SMAD is ``(2 + 1) / 2 = 1.5`` while the average persistence
    is 1. With ``normalize`` each gap is divided by ``max f - min f`` over the tree's values (the
    finite grid points; 0 for a flat grid). When non-finite points split the grid, each piece
    pairs its own minima. Only the join tree is used: superlevel-set (split-tree) saddles, where
    ridges meet, play no part.

    Ties: minima and saddles that exist only because equal values are ordered by index (their
    persistence pair has zero persistence, e.g. a flat plateau) are not critical points of the
    landscape. They are left out: such a minimum is not in ``M``, and ``s(m)`` is the first
    saddle on the way up where a pair of nonzero persistence dies. Without ties this is the
    definition above exactly.

    Parameters
    ----------
    tree : MergeTree
        A join tree (:func:`sampletopo.mergetree.join_tree`), e.g. of a grid graph.
    normalize : bool
        Divide each gap by the range of the values.

    Returns
    -------
    float

    Notes
    -----
    **Not Landscaper's SMAD.** Landscaper 1.3.1's ``LossLandscape.smad(normalize=False,
    weighted=False)`` (Chen et al. 2025) averages ``|f(b) - f(m)|`` over the edges of topopy's
    *contour tree* (join and split tree combined) that join a minimum ``m`` to a branch node
    ``b``. That ``b`` is the first critical node of either tree above ``m``: the join saddle
    ``s(m)`` used here, or a *split-tree saddle* (where two superlevel-set components meet, at a
    ridge) lying between ``m`` and ``s(m)``. Its gap is then shorter, and a single basin can
    have a nonzero SMAD there (0 here). Also in Landscaper: the graph is nglpy's empty-region
    graph (beta=1, p=2), which on a regular grid is the axis-neighbour grid -- measured: 40
    edges on a 5 x 5 grid, 144 on 4 x 4 x 4 -- so compare with ``connectivity="axis"``, not the
    default Freudenthal triangulation; minima are vertices below all their graph neighbours (the
    same as here when values are distinct); the contour tree is sometimes disconnected, and a
    minimum with no branch-node neighbour is dropped from the average; on both grids with tied
    values tried it raised (``KeyError``, ``IndexError``) where ties are ordered here;
    ``normalize`` divides by the range of the whole array, non-finite values included; its
    ``weighted=True`` variant has no counterpart here.

    Measured against Landscaper 1.3.1 (topopy 1.0.4, nglpy 1.1.7), here with
    ``connectivity="axis"``:

    - two basins, ``(x**2 - 1/2)**2 + 2 y**2 + 0.3 x`` on a 21 x 21 grid over ``[-1, 1]**2``
      (plus a small tilt that breaks ties): 0.282 in both (and with Freudenthal);
    - 20 random smooth 21 x 21 grids (a bowl plus 8 Gaussian bumps): equal to 1e-12 on 15;
      on the 2 with a single basin 0 here against 0.913 and 1.278 (the minimum paired with a
      split saddle on the grid edge); on 2 a minimum is paired with an interior split saddle
      below its join saddle, 0.1029 against 0.1015 and 0.1371 against 0.1326; on 1 the contour
      tree fell into 4 pieces and one of the 4 minima got no partner, 0.0641 against 0.0604;
    - 3,000 random 4 x 4 grids (permutations of 0..15, very rough): 2,291 differ;
    - a grid with a plateau of tied values: Landscaper raised ``KeyError``; 0.2499 here;
    - the default Freudenthal graph changed SMAD on 9 of the 20 random grids (the number of
      minima on 3) against ``"axis"``.

    Examples
    --------
    Two basins (minima 1 and 0) that merge at 8 on the axis grid; on the way up from 1 the
    superlevel sets merge at the split saddle 4. SMAD here is ``((8 - 1) + (8 - 0)) / 2``;
    Landscaper 1.3.1 pairs 1 with 4 and gives ``(3 + 8) / 2 = 5.5``:

    >>> import numpy as np
    >>> from sampletopo.landscape import landscape_metrics
    >>> f = np.array([[10, 3, 2, 7], [15, 13, 1, 6], [9, 5, 4, 11], [12, 14, 8, 0]], float)
    >>> landscape_metrics(f, connectivity="axis").smad
    7.5

    The Freudenthal diagonal from 0 to 4 merges the basins at 4 instead: ``(3 + 4) / 2``.

    >>> landscape_metrics(f, connectivity="freudenthal").smad
    3.5
    """
    leaves, saddles = _critical_nodes(tree)
    parent = np.full(tree.node_vertex.shape[0], -1, dtype=np.int64)
    parent[tree.arc_lower] = tree.arc_upper
    is_saddle = np.zeros(parent.shape[0], dtype=bool)
    is_saddle[saddles] = True
    pairs = []
    for m in leaves:
        up = parent[m]
        while up >= 0 and not is_saddle[up]:
            up = parent[up]
        if up >= 0:
            pairs.append((m, up))
    if not pairs:
        return 0.0
    v = tree.values
    lo, hi = np.array(pairs).T
    gaps = np.abs(v[tree.node_vertex[hi]] - v[tree.node_vertex[lo]])
    if normalize:
        span = float(v.max() - v.min())
        gaps = gaps / span if span > 0 else np.zeros_like(gaps)
    return float(gaps.mean())


@dataclass(frozen=True)
class LandscapeMetrics:
    """Topological and curvature summaries of one landscape.

    Every count depends on the grid graph, so each result carries its ``connectivity``: the
    Freudenthal triangulation (the default) sees saddles between diagonal neighbours that the
    axis grid misses, and merges basins the axis grid keeps apart.

    Attributes
    ----------
    connectivity : {"axis", "freudenthal"}
        Grid graph the join tree was built on (:func:`sampletopo.graph.grid_graph`). ``"axis"``
        is the graph of Landscaper 1.3.1 and of gudhi's cubical complex on vertex values.
    n_points, n_nonfinite : int
        Grid points, and those with a non-finite loss (left out of the grid graph).
    n_minima, n_saddles : int
        Leaves and saddles of the join tree of the grid graph, leaving out those that exist only
        because of tied values (zero persistence; see :func:`smad`).
    average_persistence : float
        Mean persistence ``death - birth`` of the finite pairs of the join diagram (0 when the
        landscape has a single basin), as in Xie et al. (2024).
    smad : float
        See :func:`smad`.
    loss_min, loss_max : float
        Range of the finite losses.
    hessian_top_eigenvalue, hessian_trace : float
        At the centre of the grid, when given (NaN otherwise).
    hessian_trace_converged : bool or None
        Whether the Hutchinson trace reached its tolerance
        (:attr:`sampletopo.hessian.TraceEstimate.converged`); None when not given.
    """

    connectivity: str
    n_points: int
    n_nonfinite: int
    n_minima: int
    n_saddles: int
    average_persistence: float
    smad: float
    loss_min: float
    loss_max: float
    hessian_top_eigenvalue: float
    hessian_trace: float
    hessian_trace_converged: bool | None

    def to_dict(self) -> dict[str, Any]:
        """All fields, ``connectivity`` first."""
        return asdict(self)

    def to_polars(self) -> Any:
        """One-row :class:`polars.DataFrame`, with a ``connectivity`` column first."""
        import polars as pl

        return pl.DataFrame([self.to_dict()])


def landscape_metrics(
    landscape: Landscape | np.ndarray,
    *,
    connectivity: Literal["axis", "freudenthal"] = "freudenthal",
    hessian_top_eigenvalue: float | None = None,
    hessian_trace: float | None = None,
    hessian_trace_converged: bool | None = None,
) -> LandscapeMetrics:
    """Minima, saddles, average persistence and SMAD of a grid landscape of any dimension.

    Parameters
    ----------
    landscape : Landscape or ndarray
        A landscape, or any ``d``-dimensional array of values on a regular grid.
    connectivity : {"axis", "freudenthal"}
        Neighbours in the grid graph (:func:`sampletopo.graph.grid_graph`). Freudenthal (the
        default) adds the diagonals of a triangulation, so a saddle between two diagonal basins
        is seen. ``"axis"`` is the graph Landscaper 1.3.1 builds on a grid and the one of
        gudhi's cubical complex on vertex values: counts match those tools only with it.
    hessian_top_eigenvalue, hessian_trace : float, optional
        Reported beside the topological metrics.
    hessian_trace_converged : bool, optional
        Whether the trace estimate reached its tolerance, reported with it.

    Returns
    -------
    LandscapeMetrics
        Non-finite grid points are left out of the graph (with their edges) and counted.
    """
    where = "landscape_metrics"
    arr = grid_values(landscape, where)
    connectivity = check_connectivity(connectivity, where)  # type: ignore[assignment]
    tree, _ = grid_join_tree(arr, connectivity)
    dg = tree.diagram().finite()
    pers = dg.persistence
    finite = arr[np.isfinite(arr)]
    minima, saddles = _critical_nodes(tree)
    return LandscapeMetrics(
        connectivity=connectivity,
        n_points=int(arr.size),
        n_nonfinite=int(arr.size - finite.size),
        n_minima=int(minima.size),
        n_saddles=int(saddles.size),
        average_persistence=float(pers.mean()) if pers.size else 0.0,
        smad=smad(tree),
        loss_min=float(finite.min()),
        loss_max=float(finite.max()),
        hessian_top_eigenvalue=float("nan")
        if hessian_top_eigenvalue is None
        else float(hessian_top_eigenvalue),
        hessian_trace=float("nan") if hessian_trace is None else float(hessian_trace),
        hessian_trace_converged=None
        if hessian_trace_converged is None
        else bool(hessian_trace_converged),
    )
