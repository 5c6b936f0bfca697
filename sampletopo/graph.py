"""Graphs over samples: the kNN graph of the input features, grids, and any user graph.

A :class:`Graph` is only vertices ``0..n-1`` and undirected edges ``(u, v)`` with ``u < v``; the
merge-tree code (:mod:`sampletopo.mergetree`) needs nothing else. Three ways to make one:

- :func:`knn_graph` -- the sample-space graph of the thesis: FAISS k-nearest-neighbour search over
  the input features, symmetrized, with an on-disk cache keyed by a fingerprint of the features.
- :func:`grid_graph` -- the parameter-space landscape grid (any dimension), whose neighbours are
  known without any search.
- :func:`graph_from_edges` -- anything else.

This module does not compute merge trees or read losses.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from numba import njit
from scipy.sparse.csgraph import connected_components

from sampletopo._io import write_atomic
from sampletopo._validation import as_real_array, check_choice, check_instance, check_int, invalid

__all__ = ["Graph", "knn_graph", "knn_cache_path", "graph_from_edges", "grid_graph", "fingerprint"]

Metric = Literal["l2", "cosine"]
_RECALL_QUERIES = 1000  # query points of the recall of an approximate index (fewer if n is)
_FORMAT_VERSION = 2  # 2: kNN neighbours ordered by exact distance (1: rounded)


def fingerprint(X: np.ndarray) -> str:
    """A short, stable hash of a feature matrix (shape, dtype-normalized values).

    Two arrays with the same float32 values and shape have the same fingerprint. Used to key the
    graph cache and to refuse a cached graph built from other data.
    """
    arr = np.ascontiguousarray(np.asarray(X, dtype=np.float32))
    h = hashlib.blake2b(digest_size=16)
    h.update(np.asarray(arr.shape, dtype=np.int64).tobytes())
    h.update(arr.tobytes())
    return h.hexdigest()


@dataclass(frozen=True, eq=False)
class Graph:
    """An undirected simple graph on vertices ``0..n-1``.

    However it is made (``Graph(n=..., edges=...)`` included), the edges are checked and stored
    in canonical form: ids outside ``[0, n - 1]`` (negative ones too), self-loops, fractional or
    non-numeric ids and a shape other than ``(E, 2)`` are refused with a
    :class:`~sampletopo.SampletopoError`; orientation, duplicates and order are normalised.

    Attributes
    ----------
    n : int
        Number of vertices (samples, or grid points).
    edges : ndarray of int64, shape (E, 2)
        Each edge once, ``u < v``, sorted lexicographically. No self-loops.
    k : int or None
        Neighbours per point for a kNN graph, else None.
    metric : str or None
        ``"l2"`` or ``"cosine"`` for a kNN graph; ``"grid"`` or None otherwise.
    fingerprint : str or None
        :func:`fingerprint` of the features a kNN graph was built from.
    recall : float or None
        For a graph from an approximate index: share of the true k nearest neighbours found.
    """

    n: int
    edges: np.ndarray
    k: int | None = None
    metric: str | None = None
    fingerprint: str | None = None
    recall: float | None = None
    _csr: tuple[np.ndarray, np.ndarray] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Every Graph -- from knn_graph, grid_graph, graph_from_edges, a file or a direct
        # Graph(n=..., edges=...) -- is checked and canonicalised here, once.
        n = check_int("n", self.n, 1, None, where="Graph")
        e = _check_edges(n, self.edges, where="Graph")
        object.__setattr__(self, "n", n)
        object.__setattr__(self, "edges", e)
        rows = np.concatenate([e[:, 0], e[:, 1]])
        cols = np.concatenate([e[:, 1], e[:, 0]])
        order = np.lexsort((cols, rows))
        indptr = np.zeros(self.n + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=self.n), out=indptr[1:])
        object.__setattr__(
            self, "_csr", (indptr, np.ascontiguousarray(cols[order], dtype=np.int64))
        )
        e.setflags(write=False)

    @property
    def n_edges(self) -> int:
        return int(self.edges.shape[0])

    def csr(self) -> tuple[np.ndarray, np.ndarray]:
        """Symmetric adjacency as ``(indptr, indices)``; neighbours of ``v`` are
        ``indices[indptr[v]:indptr[v + 1]]``, sorted."""
        return self._csr

    def degrees(self) -> np.ndarray:
        indptr, _ = self._csr
        return np.diff(indptr)

    @property
    def n_components(self) -> int:
        """Number of connected components (isolated vertices count as components)."""
        return int(self.component_labels()[0])

    def component_labels(self) -> tuple[int, np.ndarray]:
        indptr, indices = self._csr
        adj = sp.csr_matrix(
            (np.ones(indices.shape[0], dtype=np.int8), indices, indptr), shape=(self.n, self.n)
        )
        count, labels = connected_components(adj, directed=False)
        return int(count), labels

    def check_features(self, X: np.ndarray) -> None:
        """Raise if this graph was not built from ``X`` (compares fingerprints)."""
        fp = fingerprint(X)
        if self.fingerprint is None:
            raise invalid(
                "self",
                "a graph built by knn_graph, which carries a feature fingerprint",
                where="Graph.check_features",
                got="a graph without one",
                fix="Build it with knn_graph(X, ...) to check it against features.",
            )
        if fp != self.fingerprint:
            raise invalid(
                "X",
                f"the features this graph was built from (fingerprint {self.fingerprint})",
                where="Graph.check_features",
                got=f"features with fingerprint {fp}, shape {np.shape(X)}",
                fix="This graph was built from other features: rebuild it with knn_graph(X, ...) "
                "or pass the features it was built from.",
            )

    def save(self, path: str | Path) -> Path:
        """Write the graph to an ``.npz`` file (atomically) and return its path."""
        return write_atomic(
            path,
            lambda fh: np.savez_compressed(
                fh,
                version=np.int64(_FORMAT_VERSION),
                n=np.int64(self.n),
                edges=self.edges,
                k=np.int64(-1 if self.k is None else self.k),
                metric=np.str_(self.metric or ""),
                fingerprint=np.str_(self.fingerprint or ""),
                recall=np.float64(np.nan if self.recall is None else self.recall),
            ),
        )

    @classmethod
    def load(cls, path: str | Path, *, features: np.ndarray | None = None) -> Graph:
        """Read a graph written by :meth:`save`; with ``features``, refuse one built from other data.

        A damaged file (cut short, changed bytes: the zip's CRC-32 is checked) raises
        :class:`~sampletopo._runfiles.DamagedFileError` naming it.
        """
        path = Path(path)
        if not path.exists():
            raise invalid(
                "path",
                "an existing graph file",
                str(path),
                where="Graph.load",
                fix="Nothing is there: build one with knn_graph(X, cache_dir=...).",
            )
        g, _ = _read_graph(path)
        if features is not None:
            g.check_features(features)
        return g

    def __repr__(self) -> str:
        extra = f", k={self.k}, metric={self.metric!r}" if self.k is not None else ""
        return f"Graph(n={self.n}, n_edges={self.n_edges}{extra})"


def check_graph(value: Any, *, where: str, name: str = "graph") -> Graph:
    """``value`` if it is a :class:`Graph`; otherwise one :class:`ParameterError` naming the ways
    to make one."""
    return check_instance(  # type: ignore[no-any-return]
        name,
        value,
        Graph,
        what="a sampletopo Graph (from knn_graph, grid_graph or graph_from_edges)",
        where=where,
    )


def _read_graph(path: Path) -> tuple[Graph, int]:
    """The graph in the file ``path`` and the format version it was written with (0: none).

    Anything that is not a whole graph file is one :class:`DamagedFileError` naming it.
    """
    from sampletopo._runfiles import DamagedFileError, read_npz

    fix = "Delete it and build the graph again (knn_graph(X, cache_dir=...) rebuilds it)."
    try:
        with read_npz(path, fix=fix) as z:
            g = Graph(
                n=int(z["n"]),
                edges=np.asarray(z["edges"], dtype=np.int64),
                k=None if int(z["k"]) < 0 else int(z["k"]),
                metric=str(z["metric"]) or None,
                fingerprint=str(z["fingerprint"]) or None,
                recall=(None if "recall" not in z or np.isnan(z["recall"]) else float(z["recall"])),
            )
            version = int(z["version"]) if "version" in z else 0
    except DamagedFileError:
        raise
    except (KeyError, ValueError, TypeError) as exc:
        raise DamagedFileError(path, f"it does not hold a graph ({exc})", fix) from exc
    return g, version


def _canonical_edges(n: int, edges: np.ndarray) -> np.ndarray:
    """Sort each edge as (min, max), drop duplicates, sort rows."""
    if edges.size == 0:
        return np.empty((0, 2), dtype=np.int64)
    lo = np.minimum(edges[:, 0], edges[:, 1])
    hi = np.maximum(edges[:, 0], edges[:, 1])
    key = np.unique(lo * np.int64(n) + hi)
    return np.stack([key // n, key % n], axis=1).astype(np.int64)


def _check_edges(n: int, edges: Any, *, where: str) -> np.ndarray:
    """A fresh canonical int64 ``(E, 2)`` edge array, or one clear error.

    Refused: a shape other than ``(E, 2)``, non-integer or non-numeric ids, ids outside
    ``[0, n - 1]`` (negative ones included: they never count from the end) and self-loops.
    Canonicalised: orientation (stored as ``u < v``), duplicates and row order.
    """
    arr = as_real_array(edges, name="edges", where=where)
    if arr.size == 0:
        return np.empty((0, 2), dtype=np.int64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise invalid(
            "edges",
            "an array of shape (E, 2), one row (u, v) per edge",
            where=where,
            got=f"shape {arr.shape}",
            fix="Did you mean to transpose?" if arr.ndim == 2 and arr.shape[0] == 2 else "",
        )
    if arr.dtype.kind == "b":
        raise invalid(
            "edges",
            "an array of integer vertex ids",
            where=where,
            got="booleans",
            fix="For an adjacency mask use np.argwhere(mask).",
        )
    if arr.dtype.kind == "f":
        frac = ~np.isfinite(arr) | (arr != np.round(arr))
        if frac.any():
            i = int(np.flatnonzero(frac.any(axis=1))[0])
            raise invalid(
                "edges",
                "an array of integer vertex ids",
                where=where,
                got=f"edge {i} = {arr[i].tolist()}",
                fix="Pass whole numbers (ids are never rounded).",
            )
    # Compare in the given dtype, before any cast can wrap a huge id into range.
    bad = (arr < 0) | (arr >= n)
    if bad.any():
        i = int(np.flatnonzero(bad.any(axis=1))[0])
        raise invalid(
            "edges",
            f"vertex ids in [0, n - 1] = [0, {n - 1}] (negative ids do not count from the end)",
            where=where,
            got=f"edge {i} = {arr[i].tolist()}, which has a vertex outside [0, {n - 1}]",
        )
    arr = arr.astype(np.int64)
    loops = arr[:, 0] == arr[:, 1]
    if loops.any():
        i = int(np.flatnonzero(loops)[0])
        raise invalid(
            "edges",
            "pairs of two different vertices",
            where=where,
            got=f"edge {i} = {arr[i].tolist()}, a self-loop",
            fix="Remove self-loops.",
        )
    key = arr[:, 0] * np.int64(n) + arr[:, 1]
    if (arr[:, 0] < arr[:, 1]).all() and (np.diff(key) > 0).all():
        return arr  # already canonical (astype made it a fresh array, safe to freeze)
    return _canonical_edges(n, arr)


def graph_from_edges(n: int, edges: np.ndarray) -> Graph:
    """Make a :class:`Graph` from any edge list.

    Edges may come in either orientation and more than once; they are stored once as ``u < v``.
    (The :class:`Graph` constructor itself does the same checks; this is the named entry point.)

    Parameters
    ----------
    n : int
        Number of vertices; every edge end must be in ``[0, n - 1]``.
    edges : array-like of int, shape (E, 2)
        Integer vertex ids (whole-number floats are accepted). Out-of-range or negative ids,
        self-loops and fractional ids are refused.

    Examples
    --------
    >>> g = graph_from_edges(4, [[0, 1], [2, 1], [1, 0]])
    >>> g.edges.tolist(), g.n_components
    ([[0, 1], [1, 2]], 2)
    """
    n = check_int("n", n, 1, None, where="graph_from_edges")
    return Graph(n=n, edges=_check_edges(n, edges, where="graph_from_edges"))


def grid_graph(shape: int | tuple[int, ...], *, connectivity: str = "axis") -> Graph:
    """The graph of a regular grid of any dimension.

    Vertex ids are ``np.ravel_multi_index(index, shape)`` (C order), so ``values.reshape(shape)``
    and ``values.ravel()`` convert between a grid of losses and per-vertex values.

    Parameters
    ----------
    shape : tuple of int, or int
        Points per axis, each an int >= 1 (an int: a path of that many points). Fractions are
        refused, never truncated.
    connectivity : {"axis", "freudenthal"}
        ``"axis"``: neighbours differ by one step along one axis (2d neighbours).
        ``"freudenthal"``: the edges of the Freudenthal (Kuhn) triangulation, i.e. neighbours
        differ by a vector in {0, 1}^d (both ways): in 2-D, axis edges plus one diagonal per cell.

    Examples
    --------
    >>> grid_graph((2, 3)).edges.tolist()
    [[0, 1], [0, 3], [1, 2], [1, 4], [2, 5], [3, 4], [4, 5]]
    """
    shape = _check_shape(shape, where="grid_graph")
    check_choice("connectivity", connectivity, ("axis", "freudenthal"), where="grid_graph")
    if connectivity == "axis":
        offsets = [tuple(int(i == a) for i in range(len(shape))) for a in range(len(shape))]
    else:
        offsets = [o for o in itertools.product((0, 1), repeat=len(shape)) if any(o)]
    n = int(np.prod(shape))
    idx = np.arange(n, dtype=np.int64).reshape(shape)
    parts = []
    for off in offsets:
        src = idx[tuple(slice(0, s - o) for s, o in zip(shape, off))]
        dst = idx[tuple(slice(o, s) for s, o in zip(shape, off))]
        parts.append(np.stack([src.ravel(), dst.ravel()], axis=1))
    edges = np.concatenate(parts) if parts else np.empty((0, 2), dtype=np.int64)
    return Graph(n=n, edges=_canonical_edges(n, edges), metric="grid")


def _check_shape(shape: Any, *, where: str) -> tuple[int, ...]:
    """``shape`` as a non-empty tuple of ints >= 1 (an int is a 1-D shape)."""
    allowed = "a non-empty tuple of ints >= 1 (points per axis)"
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, (bool, np.bool_)):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or not shape:
        raise invalid("shape", allowed, shape, where=where)
    for s in shape:
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, (int, np.integer)) or s < 1:
            raise invalid("shape", allowed, shape, where=where, fix=f"{s!r} is not an int >= 1.")
    return tuple(int(s) for s in shape)


def _faiss_index(d: int, *, metric: str, index: str, n: int) -> Any:
    import faiss

    faiss_metric = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
    if index == "exact":
        return faiss.IndexFlatIP(d) if metric == "cosine" else faiss.IndexFlatL2(d)
    if index == "hnsw":
        hnsw = faiss.IndexHNSWFlat(d, 32, faiss_metric)
        hnsw.hnsw.efConstruction = 80
        hnsw.hnsw.efSearch = 128
        return hnsw
    # IVF: about sqrt(n) lists, searching enough of them for a high recall.
    nlist = max(1, int(np.sqrt(n)))
    quant = faiss.IndexFlatIP(d) if metric == "cosine" else faiss.IndexFlatL2(d)
    idx = faiss.IndexIVFFlat(quant, d, nlist, faiss_metric)
    idx.nprobe = max(1, min(nlist, max(8, nlist // 4)))
    return idx


def _build_index(Z: np.ndarray, *, metric: str, index: str, use_gpu: bool | None) -> Any:
    """A FAISS index over the rows of ``Z`` (on the GPUs when asked for or available)."""
    import faiss

    idx: Any = _faiss_index(Z.shape[1], metric=metric, index=index, n=Z.shape[0])
    n_gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if use_gpu is not False and n_gpus > 0 and index != "hnsw":  # FAISS has no GPU HNSW
        opts = faiss.GpuMultipleClonerOptions()
        opts.shard = True  # split the database over the GPUs rather than copying it to each
        idx = faiss.index_cpu_to_all_gpus(idx, co=opts)
    elif use_gpu:
        raise invalid(
            "use_gpu",
            "None or False where FAISS sees no GPU",
            use_gpu,
            where="knn_graph",
            fix="FAISS sees no GPU here (faiss-cpu installed, no CUDA device, or index='hnsw', "
            "which FAISS runs on the CPU only). Install the 'gpu' extra on a GPU machine, or "
            "leave use_gpu=None.",
        )
    if not idx.is_trained:
        rng = np.random.default_rng(0)  # a seeded training sample keeps the graph deterministic
        sample = Z[rng.choice(Z.shape[0], size=min(Z.shape[0], 50_000), replace=False)]
        idx.train(sample)
    idx.add(Z)
    return idx


@njit(cache=True, nogil=True)
def _pair_keys(
    X: np.ndarray, inv_norm: np.ndarray, rows: np.ndarray, cols: np.ndarray
) -> np.ndarray:  # pragma: no cover - compiled
    """Exact distances of the row pairs ``(rows[t], cols[t])`` of ``X``, in float64.

    L2 (``inv_norm`` empty): the squared Euclidean distance. Cosine: ``|u_i - u_j|^2 / 2`` with
    ``u = x * inv_norm``, which equals ``1 - cos`` but keeps its precision for nearly parallel
    rows (``1 - u.v`` cancels); rows that are exactly parallel (same direction, any factor) get
    exactly 0. Each float32 difference is exact in float64 and its square loses nothing; the sum
    runs in feature order. So the key is a fixed function of the features: equal keys are the
    only ties, and scaling ``X`` by a power of two scales every key exactly.
    """
    out = np.empty(rows.shape[0], dtype=np.float64)
    d = X.shape[1]
    cosine = inv_norm.shape[0] > 0
    for t in range(rows.shape[0]):
        i = rows[t]
        j = cols[t]
        s = 0.0
        if cosine:
            a = inv_norm[i]
            b = inv_norm[j]
            for c in range(d):
                z = np.float64(X[i, c]) * a - np.float64(X[j, c]) * b
                s += z * z
            s *= 0.5
            # Parallel rows differ only by rounding here (key below ~1e-31 d). Decide exactly:
            # a product of two float32 numbers is exact in float64, so x_i = lambda x_j (lambda
            # > 0) is checked without error against the largest coordinate of x_i.
            if s < 1e-20:
                c0 = 0
                big = 0.0
                for c in range(d):
                    v = abs(np.float64(X[i, c]))
                    if v > big:
                        big = v
                        c0 = c
                xi0 = np.float64(X[i, c0])
                xj0 = np.float64(X[j, c0])
                parallel = xj0 != 0.0 and (xi0 > 0.0) == (xj0 > 0.0)
                c = 0
                while parallel and c < d:
                    parallel = np.float64(X[i, c]) * xj0 == np.float64(X[j, c]) * xi0
                    c += 1
                if parallel:
                    s = 0.0
        else:
            for c in range(d):
                z = np.float64(X[i, c]) - np.float64(X[j, c])
                s += z * z
        out[t] = s
    return out


@njit(cache=True, nogil=True)
def _row_norms(X: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """Euclidean norm of each row in float64, summed in feature order (as :func:`_pair_keys`)."""
    out = np.empty(X.shape[0], dtype=np.float64)
    for i in range(X.shape[0]):
        s = 0.0
        for c in range(X.shape[1]):
            v = np.float64(X[i, c])
            s += v * v
        out[i] = np.sqrt(s)
    return out


def _row_blocks(n: int, d: int, budget: int = 1 << 22):
    step = max(1, budget // max(d, 1))
    for s in range(0, n, step):
        yield slice(s, min(n, s + step))


def _search_space(Xf: np.ndarray, metric: str) -> tuple[np.ndarray, float, np.ndarray]:
    """The float32 points FAISS searches, the factor from exact keys to FAISS's units, and the
    inverse row norms for cosine (empty for L2).

    L2: the rows are centred (distances do not change) and scaled by a power of two so that every
    coordinate is below 1 in magnitude. FAISS's float32 ``|x|^2 + |y|^2 - 2 x.y`` then neither
    overflows (features of 1e19) nor underflows (1e-30), and its rounding, which grows with the
    norms, is as small as the data allows. Cosine: unit rows, normalized in float64.
    """
    n, d = Xf.shape
    Z = np.empty((n, d), dtype=np.float32)
    if metric == "cosine":
        norms = _row_norms(Xf)
        if (norms == 0).any():
            i = int(np.flatnonzero(norms == 0)[0])
            raise invalid(
                "X",
                "rows with a direction for metric='cosine' (not all zeros)",
                where="knn_graph",
                got=f"row {i} all zeros",
                fix="Use metric='l2' or drop the row.",
            )
        inv = 1.0 / norms
        for b in _row_blocks(n, d):
            Z[b] = Xf[b] * inv[b, None]
        return Z, 1.0, inv
    mu = Xf.mean(axis=0, dtype=np.float64)
    dev = 0.0
    for b in _row_blocks(n, d):
        dev = max(dev, float(np.abs(Xf[b] - mu).max()))
    p = 0 if dev == 0.0 else -int(np.frexp(dev)[1])  # dev * 2**p in [0.5, 1)
    for b in _row_blocks(n, d):
        Z[b] = np.ldexp(Xf[b] - mu, p)
    return Z, float(np.ldexp(1.0, 2 * p)), np.empty(0)


def _faiss_units(fd: np.ndarray, metric: str) -> np.ndarray:
    fd = fd.astype(np.float64)
    return 1.0 - fd if metric == "cosine" else fd  # cosine: similarity -> distance


def _top_k(
    Xf: np.ndarray, inv: np.ndarray, rows: np.ndarray, cand: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Order each row's candidates by (exact distance, index) and keep ``k``: ``(nbr, keys)``.

    ``cand`` holds ``len(rows)`` lists of equal length; entries -1 (none found) and the row itself
    are dropped. Rows left with fewer than ``k`` candidates get -1 / inf at the end.
    """
    m = cand.shape[1]
    valid = (cand >= 0) & (cand != rows[:, None])
    keys = np.full(cand.shape, np.inf)
    keys[valid] = _pair_keys(Xf, inv, np.repeat(rows, m)[valid.ravel()], cand[valid])
    ikey = np.where(valid, cand, np.iinfo(np.int64).max)
    order = np.lexsort((ikey, keys), axis=1)[:, :k]
    nbr = np.take_along_axis(np.where(valid, cand, -1), order, axis=1)
    return nbr, np.take_along_axis(keys, order, axis=1)


def _exact_rows(
    search: Any,
    flat: Callable[[], Any],
    Xf: np.ndarray,
    Z: np.ndarray,
    inv: np.ndarray,
    unit: float,
    rows: np.ndarray,
    k: int,
    extra: int,
    *,
    metric: str,
    certify: bool,
) -> np.ndarray:
    """The ``k`` nearest neighbours of ``rows`` by exact float64 distance, ties by lower index.

    ``search`` (any FAISS index over ``Z``) proposes ``k + 1 + extra`` candidates per row; their
    distances are recomputed exactly (:func:`_pair_keys`) and re-ordered. With ``certify`` the
    result is proven complete against FAISS's float32 rounding: a point FAISS did not return has
    a FAISS distance of at least the last candidate's, and FAISS's error is at most ``err`` (a
    worst-case float32 bound, see below); when the k-th exact distance is not below
    ``last - err``, a true neighbour might hide behind the rounding or behind many equal
    distances (duplicates), so that row is searched again by a range search on the exact float32
    CPU index ``flat()`` that returns every point within ``k-th + err`` -- complete by
    construction.
    """
    n, d = Z.shape
    m = min(n, k + 1 + extra)
    fd, cand = search.search(Z[rows], m)
    nbr, keys = _top_k(Xf, inv, rows, cand.astype(np.int64), k)
    if not certify or m == n:
        return nbr
    # FAISS's float32 distance (norms, one matrix product, two additions) is off by at most
    # (2 d + 16) eps32 (|z_i|^2 + |z_j|^2) in the worst case -- d eps per inner product,
    # whatever the summation order -- including the float32 rounding of the centred,
    # scaled points. Only points with |z_j| <= |z_i| + sqrt(k-th) can be nearer than the k-th.
    tol = (2 * d + 16) * float(np.finfo(np.float32).eps)
    zq = Z[rows].astype(np.float64)
    a = np.sqrt(np.einsum("ij,ij->i", zq, zq))
    dk = keys[:, k - 1] * unit
    r = np.ones_like(a) if metric == "cosine" else a + np.sqrt(dk)  # cosine: unit rows
    err = tol * (a * a + r * r)
    last = _faiss_units(fd[:, m - 1], metric)
    redo = np.flatnonzero(~(last - err > dk))
    if redo.size == 0:
        return nbr
    # Range search, a block of rows at a time (one radius per call: the block's largest, rows
    # sorted by radius so a block's radii are alike). Extra points only cost exact distances.
    reach = dk[redo] + 1.5 * err[redo]
    redo = redo[np.argsort(reach, kind="stable")]
    reach = np.sort(reach, kind="stable")
    for s in range(0, redo.size, 64):
        blk = redo[s : s + 64]
        radius = float(reach[s : s + 64].max()) * (1 + 1e-6) + 1e-30
        q = Z[rows[blk]]
        if metric == "cosine":
            lims, _, found = flat().range_search(q, 1.0 - radius)
        else:
            lims, _, found = flat().range_search(q, radius)
        counts = np.diff(lims.astype(np.int64))
        width = int(counts.max())
        # Ragged range results into a padded (rows, width) candidate matrix.
        padded = np.full((blk.size, width), -1, dtype=np.int64)
        col = np.arange(found.size) - np.repeat(lims[:-1].astype(np.int64), counts)
        padded[np.repeat(np.arange(blk.size), counts), col] = found
        nbr[blk], _ = _top_k(Xf, inv, rows[blk], padded, k)
    return nbr


def _recall(
    approx: np.ndarray,
    flat: Callable[[], Any],
    Xf: np.ndarray,
    Z: np.ndarray,
    inv: np.ndarray,
    unit: float,
    k: int,
    *,
    metric: str,
    n_queries: int = _RECALL_QUERIES,
) -> float:
    """Share of the true k nearest neighbours found, on a seeded sample of query points."""
    rng = np.random.default_rng(0)
    n = Xf.shape[0]
    q = np.sort(rng.choice(n, size=min(n_queries, n), replace=False)).astype(np.int64)
    truth = _exact_rows(flat(), flat, Xf, Z, inv, unit, q, k, 4, metric=metric, certify=True)
    hits = sum(len(set(t.tolist()) & set(approx[i].tolist())) for t, i in zip(truth, q))
    return hits / (len(q) * k)


def _load_cached(path: Path) -> Graph | None:
    """The cached graph at ``path``; ``None`` when it must be built again: silently for a file of
    an older format (version 1: rounded distances), with a :class:`DamagedFileWarning` when the
    file is damaged (empty, cut short, changed bytes, not a graph). It is a cache: the caller
    builds the graph again and replaces the file."""
    import warnings

    from sampletopo._runfiles import DamagedFileError, DamagedFileWarning

    try:
        g, version = _read_graph(path)
        return g if version >= _FORMAT_VERSION else None
    except DamagedFileError as exc:
        warnings.warn(
            DamagedFileWarning(
                f"{str(path)!r} is damaged: {exc.why}. It is a cached kNN graph: it is built "
                "again and the file replaced."
            ),
            stacklevel=3,
        )
        return None


def knn_cache_path(
    cache_dir: str | Path, *, fingerprint: str, k: int, metric: str, index: str = "exact"
) -> Path:
    """Where :func:`knn_graph` caches the graph of features with this fingerprint."""
    tag = "" if index == "exact" else f"-{index}"
    return Path(cache_dir) / f"knn-{metric}{tag}-k{k}-{fingerprint}.npz"


def knn_graph(
    X: np.ndarray,
    k: int = 20,
    *,
    metric: Metric = "l2",
    cache_dir: str | Path | None = None,
    use_gpu: bool | None = None,
    index: Literal["exact", "hnsw", "ivf"] = "exact",
    verbose: bool = False,
) -> Graph:
    """The symmetrized k-nearest-neighbour graph of the rows of ``X`` (exact distances).

    ``(u, v)`` is an edge when either point is among the other's ``k`` nearest neighbours (so a
    vertex may have more than ``k`` neighbours, never fewer than ``k``). The point itself is never
    its own neighbour.

    Distances and ties. The features are stored as float32 (as FAISS searches them, and as
    :func:`fingerprint` hashes them). FAISS proposes candidates; their distances are then
    recomputed exactly in float64 from those float32 values (squared Euclidean, or
    ``|u - v|^2 / 2 = 1 - cos`` of the rows normalized in float64) and each point's neighbours
    are ordered by ``(distance, sample index)``. Two distances tie only when they are equal, and
    a tie goes to the lower sample index (scikit-learn's brute force gives the higher one).
    Exact duplicates always tie; distances that are equal in exact arithmetic but not after
    float64 rounding (about 1e-16 relative: rows parallel up to a factor that is not a power of
    two, under ``metric="cosine"``) are ordered by their rounded values. Nothing is rounded to
    an absolute number of decimals, so the graph does not depend on the scale of ``X``: scaling
    ``X`` by a power of two gives the identical graph (any other factor, up to the float32
    rounding of the scaled features), from 1e-30 to 1e30 and beyond.

    Exact search (``index="exact"``) is complete as well as exact: for each point the code
    checks, with a worst-case bound on FAISS's float32 rounding, that no point FAISS left out
    can be nearer than (or tie with) the k-th neighbour, and searches every point within that
    bound again where it cannot tell (many duplicates or equal distances, or rounding larger
    than the gaps between distances). Such points cost an extra range search; the graph is the
    one an exact float64 brute force gives.

    Parameters
    ----------
    X : array-like, shape (n_samples, n_features)
        Features, one row per sample; row ``i`` becomes vertex ``i``. Real numbers that fit in
        float32 (``|x| < 3.4e38``); NaN, inf, strings, complex numbers and ragged rows are
        refused.
    k : int, default 20
        Neighbours per point, in ``[1, n_samples - 1]`` (20 as in the thesis).
    metric : {"l2", "cosine"}
        Euclidean distance (``IndexFlatL2``), or cosine distance via inner product of
        L2-normalized rows (``IndexFlatIP``).
    cache_dir : path, optional
        Folder of cached graphs. The file name carries metric, k and the features' fingerprint, so
        the same features are searched once and other features never reuse the file. Files
        written before exact tie-breaking (format version 1) are rebuilt.
    use_gpu : bool or None
        None (default): a FAISS GPU index when FAISS sees a GPU, the CPU otherwise. The exact
        search gives the same graph on both (candidates from either are re-ordered by exact
        distance; the completeness bound assumes FAISS computes in float32, not TF32).
    index : {"exact", "hnsw", "ivf"}
        ``"exact"`` (default, ``IndexFlat``) or an approximate FAISS index for large ``n``:
        ``"hnsw"`` (HNSW, 32 links, efSearch 128; CPU only) or ``"ivf"`` (IVF-Flat with about
        sqrt(n) lists, trained on a seeded sample). An approximate index's candidates are also
        re-ordered by exact distance, but a neighbour it never proposes stays missing: the recall
        of the neighbour lists against exact search is measured on 1,000 seeded query points (every
        point when there are fewer), stored in ``graph.recall`` and printed.
    verbose : bool
        Print the number of connected components (a kNN graph of clustered data may have several;
        each has its own essential persistence pair).

    Returns
    -------
    Graph

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0], [1.0], [3.0], [10.0]])
    >>> knn_graph(X, k=1).edges.tolist()
    [[0, 1], [1, 2], [2, 3]]
    >>> knn_graph(X * 1e-6, k=1).edges.tolist()  # the scale does not matter
    [[0, 1], [1, 2], [2, 3]]
    """
    arr = as_real_array(X, name="X", where="knn_graph")
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise invalid(
            "X",
            "a non-empty 2-D array (n_samples, n_features)",
            where="knn_graph",
            got=f"shape {arr.shape}",
            fix="Flatten images first, e.g. X.reshape(len(X), -1).",
        )
    n = arr.shape[0]
    if n < 2:
        raise invalid(
            "X",
            "an array of at least 2 samples (rows): a point has no neighbour but another",
            where="knn_graph",
            got=f"{n} sample",
        )
    k = check_int(
        "k",
        k,
        1,
        n - 1,
        where="knn_graph",
        fix=(
            "k is the number of neighbours of each sample: use 1 or more."
            if isinstance(k, (int, np.integer)) and k < 1
            else "Use fewer neighbours than samples."
            if isinstance(k, (int, np.integer))
            else ""
        ),
    )
    check_choice("metric", metric, ("l2", "cosine"), where="knn_graph")
    check_choice(
        "index",
        index,
        ("exact", "hnsw", "ivf"),
        where="knn_graph",
        fix="Use 'exact' unless n is too large for it.",
    )
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        i = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
        raise invalid(
            "X",
            "finite",
            where="knn_graph",
            got=f"non-finite values (first in row {i})",
            fix="Impute or drop those rows.",
        )
    with np.errstate(over="ignore"):
        Xf = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(Xf).all():
        i = int(np.flatnonzero(~np.isfinite(Xf).all(axis=1))[0])
        big = float(np.abs(arr[i].astype(np.float64)).max())
        raise invalid(
            "X",
            "within float32, in which features are stored and searched (largest 3.4e38)",
            where="knn_graph",
            got=f"row {i} holding a value ({big:.3g}) too large for float32",
            fix="Divide X by a constant first (the graph does not depend on the scale).",
        )
    fp = fingerprint(Xf)
    cache_path = None
    if cache_dir is not None:
        cache_path = knn_cache_path(cache_dir, fingerprint=fp, k=k, metric=metric, index=index)
        g = _load_cached(cache_path) if cache_path.exists() else None
        if g is not None and (g.fingerprint, g.k, g.metric, g.n) == (fp, k, metric, n):
            return g
    Z, unit, inv = _search_space(Xf, metric)
    idx = _build_index(Z, metric=metric, index=index, use_gpu=use_gpu)

    @functools.cache
    def flat() -> Any:
        # The exact CPU index: range searches of uncertain rows, and the recall's ground truth.
        if index == "exact" and type(idx).__name__.startswith("IndexFlat"):
            return idx
        return _build_index(Z, metric=metric, index="exact", use_gpu=False)

    rows = np.arange(n, dtype=np.int64)
    nbr = _exact_rows(
        idx, flat, Xf, Z, inv, unit, rows, k, 4, metric=metric, certify=index == "exact"
    )
    src = np.repeat(rows, k)
    pairs = np.stack([src, nbr.ravel()], axis=1)
    edges = _canonical_edges(n, pairs[pairs[:, 1] >= 0])  # -1: an approximate index found fewer
    recall = None if index == "exact" else _recall(nbr, flat, Xf, Z, inv, unit, k, metric=metric)
    g = Graph(n=n, edges=edges, k=k, metric=metric, fingerprint=fp, recall=recall)
    if recall is not None:
        print(
            f"knn_graph: {index} index, recall@{k} against exact search {recall:.3f} "
            f"({min(n, _RECALL_QUERIES):,} queries)"
        )
    if verbose:
        print(
            f"knn_graph: n={n}, k={k}, {g.n_edges} edges, {g.n_components} connected component(s)"
        )
    if cache_path is not None:
        g.save(cache_path)
    return g
