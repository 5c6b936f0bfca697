"""The join tree of a grid of values: the shared first step of landscape metrics and profiles.

What is here: checking a grid of values and the choice of grid graph, and building the join tree
of the grid's finite points on :func:`sampletopo.graph.grid_graph` with
:func:`sampletopo.mergetree.join_tree` (the same code as for the kNN graphs of samples).

What is not here: what is read off the tree (``_metrics``, ``_profile``).
"""

from __future__ import annotations

import numpy as np

from sampletopo._validation import check_choice, invalid
from sampletopo.graph import graph_from_edges, grid_graph
from sampletopo.landscape._grid import Landscape
from sampletopo.mergetree import MergeTree, join_tree


def grid_values(values: Landscape | np.ndarray, where: str) -> np.ndarray:
    """The loss grid of a landscape, or an array, as float64; refuse grids with nothing finite."""
    arr = values.loss if isinstance(values, Landscape) else np.asarray(values, dtype=np.float64)
    if arr.ndim < 1 or arr.size < 2:
        raise invalid(
            "landscape",
            "a landscape or a grid of at least 2 values",
            where=where,
            got=f"shape {arr.shape}",
        )
    if not np.isfinite(arr).any():
        raise invalid(
            "landscape",
            "a grid with finite values",
            where=where,
            got="one whose every value is non-finite",
            fix="There is no landscape to analyse: check the model and the 'distance' of the grid.",
        )
    return np.asarray(arr, dtype=np.float64)


def check_connectivity(connectivity: str, where: str) -> str:
    """``connectivity`` if it names a grid graph, else a :class:`ParameterError`."""
    return str(check_choice("connectivity", connectivity, ("axis", "freudenthal"), where=where))


def grid_join_tree(arr: np.ndarray, connectivity: str) -> tuple[MergeTree, np.ndarray]:
    """Join tree of a grid, on the sub-grid of finite points; returns (tree, kept vertex ids)."""
    g = grid_graph(arr.shape, connectivity=connectivity)
    flat = arr.ravel()
    ok = np.isfinite(flat)
    if ok.all():
        return join_tree(g, flat), np.arange(flat.size)
    keep = np.flatnonzero(ok)
    new_id = np.full(flat.size, -1, dtype=np.int64)
    new_id[keep] = np.arange(keep.size)
    e = g.edges
    e = e[ok[e[:, 0]] & ok[e[:, 1]]]
    sub = graph_from_edges(int(keep.size), new_id[e])
    return join_tree(sub, flat[keep]), keep
