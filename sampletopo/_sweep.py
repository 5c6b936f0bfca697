"""Compiled kernels for the merge-tree sweep (numba).

One sweep builds a merge tree and its 0-dimensional persistence pairs: vertices are visited in
sweep order on a CSR adjacency, and a union-find joins each vertex to the components of its
already-visited neighbours. No edge list is ever sorted: a vertex's "lower" neighbours are the
ones with a smaller rank. This module knows nothing about losses, files or plotting; the public
API is in :mod:`sampletopo.mergetree`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

LEAF = 0
SADDLE = 1
ROOT = 2


@njit(cache=True, nogil=True)
def _find(parent: np.ndarray, x: int) -> int:
    root = x
    while parent[root] != root:
        root = parent[root]
    # Path halving keeps later finds short without recursion.
    while parent[x] != root:
        nxt = parent[x]
        parent[x] = root
        x = nxt
    return root


@njit(cache=True, nogil=True)
def _lower_roots(
    v: int,
    i: int,
    rank: np.ndarray,
    parent: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    roots: np.ndarray,
) -> int:  # pragma: no cover - compiled
    """Write the distinct components of ``v``'s already-swept neighbours (rank < ``i``) into
    ``roots``; return how many there are."""
    n_roots = 0
    for j in range(indptr[v], indptr[v + 1]):
        u = indices[j]
        if rank[u] < i:
            r = _find(parent, u)
            seen = False
            for t in range(n_roots):
                if roots[t] == r:
                    seen = True
                    break
            if not seen:
                roots[n_roots] = r
                n_roots += 1
    return n_roots


@njit(cache=True, nogil=True)
def _open_arc(
    node: int,
    v: int,
    root: int,
    arc: int,
    arc_lower: np.ndarray,
    arc_upper: np.ndarray,
    node_arc: np.ndarray,
    vertex_arc: np.ndarray,
    comp_top: np.ndarray,
    comp_last: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Start arc ``arc`` upward from ``node`` (its upper end not known yet), with ``v`` on it,
    as the top of the component whose union-find root is ``root``."""
    arc_lower[arc] = node
    arc_upper[arc] = -1
    node_arc[node] = arc
    vertex_arc[v] = arc
    comp_top[root] = node
    comp_last[root] = v


@njit(cache=True, nogil=True)
def _close_components(
    parent: np.ndarray,
    comp_birth: np.ndarray,
    comp_top: np.ndarray,
    comp_last: np.ndarray,
    node_vertex: np.ndarray,
    node_kind: np.ndarray,
    node_arc: np.ndarray,
    arc_upper: np.ndarray,
    vertex_arc: np.ndarray,
    n_nodes: int,
    ess: np.ndarray,
):  # pragma: no cover - compiled
    """Close each component after the sweep: its last vertex is the root, and its birth vertex
    its essential class (written into ``ess``). If that vertex is already the top node (an
    isolated vertex, or a saddle swept last) the top node has no arc upward. Returns the new
    node count and the number of components."""
    n_ess = 0
    for v in range(parent.shape[0]):
        if parent[v] == v:
            ess[n_ess] = comp_birth[v]
            n_ess += 1
            top = comp_top[v]
            last = comp_last[v]
            a = node_arc[top]
            if node_vertex[top] == last:
                # The top node is the last vertex: drop its open arc.
                vertex_arc[last] = -1
                node_arc[top] = -1
                arc_upper[a] = -2  # marked for removal
            else:
                node_vertex[n_nodes] = last
                node_kind[n_nodes] = ROOT
                arc_upper[a] = n_nodes
                n_nodes += 1
    return n_nodes, n_ess


@njit(cache=True, nogil=True)
def sweep(
    order: np.ndarray, indptr: np.ndarray, indices: np.ndarray
):  # pragma: no cover - compiled
    """Sweep vertices in ``order`` and return the merge tree and its persistence pairs.

    Parameters
    ----------
    order : int64 array (n,)
        Vertices in sweep order (ties already broken by the caller).
    indptr, indices : int64 arrays
        Symmetric CSR adjacency.

    Returns
    -------
    rank : (n,) position of each vertex in the sweep.
    node_vertex, node_kind : critical vertices and their kind (LEAF, SADDLE, ROOT): leaves and
        saddles in the order the sweep met them, then the ROOT nodes that
        :func:`_close_components` adds, one per component, in the order of the components'
        union-find roots (vertex ids), not in sweep order.
    arc_lower, arc_upper : one arc per node that is not the top of its component; node indices.
        ``arc_upper`` is -1 until it is known; the top node of a component has no arc.
    vertex_arc : (n,) the arc (index into arc_lower) each vertex lies on, or -1 for a vertex that
        is the top node of its component.
    pair_birth, pair_death : vertices of each finite pair (elder rule), in order of death.
    ess_birth : the birth vertex of each connected component (its essential class).
    """
    n = order.shape[0]
    rank = np.empty(n, dtype=np.int64)
    for i in range(n):
        rank[order[i]] = i
    parent = np.arange(n)
    comp_birth = np.full(n, -1, dtype=np.int64)  # per union-find root: the birth vertex
    comp_top = np.full(n, -1, dtype=np.int64)  # per root: current top node index
    comp_last = np.full(n, -1, dtype=np.int64)  # per root: last vertex swept into it

    node_vertex = np.empty(n, dtype=np.int64)
    node_kind = np.empty(n, dtype=np.int8)
    n_nodes = 0
    node_arc = np.full(n, -1, dtype=np.int64)  # arc leaving each node upward (-1 none yet)
    arc_lower = np.empty(n, dtype=np.int64)
    arc_upper = np.empty(n, dtype=np.int64)
    n_arcs = 0
    vertex_arc = np.full(n, -1, dtype=np.int64)

    pair_birth = np.empty(n, dtype=np.int64)
    pair_death = np.empty(n, dtype=np.int64)
    n_pairs = 0

    roots = np.empty(n, dtype=np.int64)  # scratch: distinct lower components of a vertex
    for i in range(n):
        v = order[i]
        n_roots = _lower_roots(v, i, rank, parent, indptr, indices, roots)
        if n_roots == 0:
            # A new component: v is a leaf (a minimum of the sweep).
            node_vertex[n_nodes] = v
            node_kind[n_nodes] = LEAF
            comp_birth[v] = v
            _open_arc(n_nodes, v, v, n_arcs, arc_lower, arc_upper, node_arc, vertex_arc,
                      comp_top, comp_last)  # fmt: skip
            n_nodes += 1
            n_arcs += 1
        elif n_roots == 1:
            r = roots[0]
            parent[v] = r
            vertex_arc[v] = node_arc[comp_top[r]]
            comp_last[r] = v
        else:
            # v is a saddle: the eldest component (earliest birth) survives, the others die here.
            eldest = roots[0]
            for t in range(1, n_roots):
                if rank[comp_birth[roots[t]]] < rank[comp_birth[eldest]]:
                    eldest = roots[t]
            node_vertex[n_nodes] = v
            node_kind[n_nodes] = SADDLE
            s = n_nodes
            n_nodes += 1
            for t in range(n_roots):
                r = roots[t]
                arc_upper[node_arc[comp_top[r]]] = s
                if r != eldest:
                    pair_birth[n_pairs] = comp_birth[r]
                    pair_death[n_pairs] = v
                    n_pairs += 1
                    parent[r] = eldest
            parent[v] = eldest
            _open_arc(s, v, eldest, n_arcs, arc_lower, arc_upper, node_arc, vertex_arc,
                      comp_top, comp_last)  # fmt: skip
            n_arcs += 1

    ess = np.empty(n, dtype=np.int64)
    n_nodes, n_ess = _close_components(
        parent, comp_birth, comp_top, comp_last, node_vertex, node_kind, node_arc, arc_upper,
        vertex_arc, n_nodes, ess,
    )  # fmt: skip
    return (
        rank,
        node_vertex[:n_nodes].copy(),
        node_kind[:n_nodes].copy(),
        arc_lower[:n_arcs].copy(),
        arc_upper[:n_arcs].copy(),
        vertex_arc,
        pair_birth[:n_pairs].copy(),
        pair_death[:n_pairs].copy(),
        ess[:n_ess].copy(),
    )


@njit(cache=True, nogil=True)
def basin(
    start: int, limit_rank: int, rank: np.ndarray, indptr: np.ndarray, indices: np.ndarray
):  # pragma: no cover
    """Vertices reachable from ``start`` through vertices of rank < ``limit_rank``."""
    n = rank.shape[0]
    seen = np.zeros(n, dtype=np.bool_)
    stack = np.empty(n, dtype=np.int64)
    out = np.empty(n, dtype=np.int64)
    n_out = 0
    top = 0
    stack[0] = start
    top = 1
    seen[start] = True
    while top > 0:
        top -= 1
        v = stack[top]
        out[n_out] = v
        n_out += 1
        for j in range(indptr[v], indptr[v + 1]):
            u = indices[j]
            if not seen[u] and rank[u] < limit_rank:
                seen[u] = True
                stack[top] = u
                top += 1
    return np.sort(out[:n_out])
