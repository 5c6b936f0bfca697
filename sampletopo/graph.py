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

import hashlib
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from sampletopo._errors import SampletopoError, check_int_range
from sampletopo._io import write_atomic

__all__ = ["Graph", "knn_graph", "knn_cache_path", "graph_from_edges", "grid_graph", "fingerprint"]

Metric = Literal["l2", "cosine"]
_FORMAT_VERSION = 1


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
        e = self.edges
        rows = np.concatenate([e[:, 0], e[:, 1]])
        cols = np.concatenate([e[:, 1], e[:, 0]])
        order = np.lexsort((cols, rows))
        indptr = np.zeros(self.n + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=self.n), out=indptr[1:])
        object.__setattr__(
            self, "_csr", (indptr, np.ascontiguousarray(cols[order], dtype=np.int64))
        )
        self.edges.setflags(write=False)

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
            raise SampletopoError(
                "This graph carries no feature fingerprint (it was not built by knn_graph), so it "
                "cannot be checked against features. Build it with knn_graph(X, ...)."
            )
        if fp != self.fingerprint:
            raise SampletopoError(
                f"This graph was built from other features (fingerprint {self.fingerprint}) than the "
                f"ones given (fingerprint {fp}, shape {np.shape(X)}). Rebuild it with "
                "knn_graph(X, ...) or pass the features it was built from."
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
        from sampletopo._runfiles import DamagedFileError, read_npz

        path = Path(path)
        if not path.exists():
            raise SampletopoError(
                f"No graph file at {path}. Build one with knn_graph(X, cache_dir=...)."
            )
        fix = "Delete it and build the graph again (knn_graph(X, cache_dir=...) rebuilds it)."
        try:
            with read_npz(path, fix=fix) as z:
                g = cls(
                    n=int(z["n"]),
                    edges=np.asarray(z["edges"], dtype=np.int64),
                    k=None if int(z["k"]) < 0 else int(z["k"]),
                    metric=str(z["metric"]) or None,
                    fingerprint=str(z["fingerprint"]) or None,
                    recall=(
                        None if "recall" not in z or np.isnan(z["recall"]) else float(z["recall"])
                    ),
                )
        except DamagedFileError:
            raise
        except (KeyError, ValueError) as exc:
            raise DamagedFileError(path, f"it does not hold a graph ({exc})", fix) from exc
        if features is not None:
            g.check_features(features)
        return g

    def __repr__(self) -> str:
        extra = f", k={self.k}, metric={self.metric!r}" if self.k is not None else ""
        return f"Graph(n={self.n}, n_edges={self.n_edges}{extra})"


def _canonical_edges(n: int, edges: np.ndarray) -> np.ndarray:
    """Sort each edge as (min, max), drop duplicates, sort rows."""
    if edges.size == 0:
        return np.empty((0, 2), dtype=np.int64)
    lo = np.minimum(edges[:, 0], edges[:, 1])
    hi = np.maximum(edges[:, 0], edges[:, 1])
    key = np.unique(lo * np.int64(n) + hi)
    return np.stack([key // n, key % n], axis=1).astype(np.int64)


def graph_from_edges(n: int, edges: np.ndarray) -> Graph:
    """Make a :class:`Graph` from any edge list.

    Edges may come in either orientation and more than once; they are stored once as ``u < v``.

    Parameters
    ----------
    n : int
        Number of vertices; every edge end must be in ``[0, n - 1]``.
    edges : array-like of int, shape (E, 2)

    Examples
    --------
    >>> g = graph_from_edges(4, [[0, 1], [2, 1], [1, 0]])
    >>> g.edges.tolist(), g.n_components
    ([[0, 1], [1, 2]], 2)
    """
    n = check_int_range("n", n, 1, None, where="graph_from_edges")
    arr = np.asarray(edges)
    if arr.size == 0:
        arr = np.empty((0, 2), dtype=np.int64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise SampletopoError(
            f"graph_from_edges: 'edges' must have shape (E, 2). Got shape {arr.shape}."
            + (" Did you mean to transpose?" if arr.ndim == 2 and arr.shape[0] == 2 else "")
        )
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise SampletopoError("graph_from_edges: 'edges' must hold integer vertex ids.")
    arr = arr.astype(np.int64)
    if arr.size:
        bad = (arr < 0) | (arr >= n)
        if bad.any():
            i = int(np.flatnonzero(bad.any(axis=1))[0])
            raise SampletopoError(
                f"graph_from_edges: edge {i} = {arr[i].tolist()} has a vertex outside [0, {n - 1}]. "
                f"Vertex ids must be < n={n}."
            )
        loops = arr[:, 0] == arr[:, 1]
        if loops.any():
            i = int(np.flatnonzero(loops)[0])
            raise SampletopoError(
                f"graph_from_edges: edge {i} = {arr[i].tolist()} is a self-loop. Remove self-loops."
            )
    return Graph(n=n, edges=_canonical_edges(n, arr))


def grid_graph(shape: tuple[int, ...], *, connectivity: str = "axis") -> Graph:
    """The graph of a regular grid of any dimension.

    Vertex ids are ``np.ravel_multi_index(index, shape)`` (C order), so ``values.reshape(shape)``
    and ``values.ravel()`` convert between a grid of losses and per-vertex values.

    Parameters
    ----------
    shape : tuple of int
        Points per axis, each >= 1.
    connectivity : {"axis", "freudenthal"}
        ``"axis"``: neighbours differ by one step along one axis (2d neighbours).
        ``"freudenthal"``: the edges of the Freudenthal (Kuhn) triangulation, i.e. neighbours
        differ by a vector in {0, 1}^d (both ways): in 2-D, axis edges plus one diagonal per cell.

    Examples
    --------
    >>> grid_graph((2, 3)).edges.tolist()
    [[0, 1], [0, 3], [1, 2], [1, 4], [2, 5], [3, 4], [4, 5]]
    """
    shape = tuple(int(s) for s in shape)
    if not shape or any(s < 1 for s in shape):
        raise SampletopoError(
            f"grid_graph: 'shape' must be a non-empty tuple of ints >= 1. Got {shape}."
        )
    if connectivity == "axis":
        offsets = [tuple(int(i == a) for i in range(len(shape))) for a in range(len(shape))]
    elif connectivity == "freudenthal":
        offsets = [o for o in itertools.product((0, 1), repeat=len(shape)) if any(o)]
    else:
        raise SampletopoError(
            f"grid_graph: 'connectivity' must be 'axis' or 'freudenthal'. Got {connectivity!r}."
        )
    n = int(np.prod(shape))
    idx = np.arange(n, dtype=np.int64).reshape(shape)
    parts = []
    for off in offsets:
        src = idx[tuple(slice(0, s - o) for s, o in zip(shape, off))]
        dst = idx[tuple(slice(o, s) for s, o in zip(shape, off))]
        parts.append(np.stack([src.ravel(), dst.ravel()], axis=1))
    edges = np.concatenate(parts) if parts else np.empty((0, 2), dtype=np.int64)
    return Graph(n=n, edges=_canonical_edges(n, edges), metric="grid")


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


def _faiss_search(
    X: np.ndarray, n_neighbors: int, *, metric: str, use_gpu: bool | None, index: str = "exact"
):
    import faiss

    d = X.shape[1]
    idx: Any = _faiss_index(d, metric=metric, index=index, n=X.shape[0])
    on_gpu = False
    n_gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if use_gpu is not False and n_gpus > 0 and index != "hnsw":  # FAISS has no GPU HNSW
        opts = faiss.GpuMultipleClonerOptions()
        opts.shard = True  # split the database over the GPUs rather than copying it to each
        idx = faiss.index_cpu_to_all_gpus(idx, co=opts)
        on_gpu = True
    elif use_gpu:
        raise SampletopoError(
            "knn_graph: use_gpu=True but FAISS sees no GPU (faiss-cpu installed, no CUDA device, "
            "or index='hnsw', which FAISS runs on the CPU only). Install the 'gpu' extra on a GPU "
            "machine, or leave use_gpu=None."
        )
    if not idx.is_trained:
        rng = np.random.default_rng(0)  # a seeded training sample keeps the graph deterministic
        sample = X[rng.choice(X.shape[0], size=min(X.shape[0], 50_000), replace=False)]
        idx.train(sample)
    idx.add(X)
    dist, nbr = idx.search(X, n_neighbors)
    if metric == "cosine":
        dist = 1.0 - dist  # cosine distance; smaller is nearer, as for L2
    return dist, nbr, on_gpu


def _recall(
    Xs: np.ndarray, nbr: np.ndarray, k: int, *, metric: str, n_queries: int = 1000
) -> float:
    """Share of the true k nearest neighbours found, on a seeded sample of query points."""
    import faiss

    rng = np.random.default_rng(0)
    q = np.sort(rng.choice(Xs.shape[0], size=min(n_queries, Xs.shape[0]), replace=False))
    exact: Any = (
        faiss.IndexFlatIP(Xs.shape[1]) if metric == "cosine" else faiss.IndexFlatL2(Xs.shape[1])
    )
    exact.add(Xs)
    _, truth = exact.search(Xs[q], k + 1)
    hits = 0
    for row, qi in enumerate(q):
        t = [j for j in truth[row] if j != qi][:k]
        hits += len(set(t) & set(nbr[qi].tolist()))
    return hits / (len(q) * k)


def _load_cached(path: Path) -> Graph | None:
    """The cached graph at ``path``; ``None``, with a warning, when the file is damaged (it is a
    cache: the caller builds the graph again and replaces the file)."""
    import warnings

    from sampletopo._runfiles import DamagedFileError, DamagedFileWarning

    try:
        return Graph.load(path)
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
    """The symmetrized k-nearest-neighbour graph of the rows of ``X`` (exact FAISS search).

    ``(u, v)`` is an edge when either point is among the other's ``k`` nearest neighbours (so a
    vertex may have more than ``k`` neighbours, never fewer than ``k``). The point itself is never
    its own neighbour. Ties in distance -- exact duplicate points above all -- are broken by the
    lower sample index, so the graph depends only on ``X``.

    Parameters
    ----------
    X : array-like, shape (n_samples, n_features)
        Features, one row per sample; row ``i`` becomes vertex ``i``.
    k : int, default 20
        Neighbours per point, in ``[1, n_samples - 1]`` (20 as in the thesis).
    metric : {"l2", "cosine"}
        Euclidean distance (``IndexFlatL2``), or cosine distance via inner product of
        L2-normalized rows (``IndexFlatIP``).
    cache_dir : path, optional
        Folder of cached graphs. The file name carries metric, k and the features' fingerprint, so
        the same features are searched once and other features never reuse the file.
    use_gpu : bool or None
        None (default): a FAISS GPU index when FAISS sees a GPU, the CPU otherwise. The exact
        search gives the same graph on both (up to float ties).
    index : {"exact", "hnsw", "ivf"}
        ``"exact"`` (default, ``IndexFlat``) or an approximate FAISS index for large ``n``:
        ``"hnsw"`` (HNSW, 32 links, efSearch 128; CPU only) or ``"ivf"`` (IVF-Flat with about
        sqrt(n) lists, trained on a seeded sample). With an approximate index the recall of the
        neighbour lists against exact search is measured on 1,000 seeded query points, stored
        in ``graph.recall`` and printed.
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
    """
    arr = np.asarray(X)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise SampletopoError(
            f"knn_graph: 'X' must be a non-empty 2-D array (n_samples, n_features). Got shape "
            f"{arr.shape}. Flatten images first, e.g. X.reshape(len(X), -1)."
        )
    n = arr.shape[0]
    k = check_int_range(
        "k",
        k,
        1,
        n - 1,
        where="knn_graph",
        fix="Use fewer neighbours than samples." if isinstance(k, (int, np.integer)) else "",
    )
    if metric not in ("l2", "cosine"):
        raise SampletopoError(f"knn_graph: 'metric' must be 'l2' or 'cosine'. Got {metric!r}.")
    if index not in ("exact", "hnsw", "ivf"):
        raise SampletopoError(
            f"knn_graph: 'index' must be 'exact', 'hnsw' or 'ivf'. Got {index!r}. Use 'exact' "
            "unless n is too large for it."
        )
    Xf = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(Xf).all():
        i = int(np.flatnonzero(~np.isfinite(Xf).all(axis=1))[0])
        raise SampletopoError(
            f"knn_graph: 'X' holds non-finite values (first in row {i}). Impute or drop those rows."
        )
    fp = fingerprint(Xf)
    cache_path = None
    if cache_dir is not None:
        cache_path = knn_cache_path(cache_dir, fingerprint=fp, k=k, metric=metric, index=index)
        if cache_path.exists():
            g = _load_cached(cache_path)
            if g is not None and (g.fingerprint, g.k, g.metric, g.n) == (fp, k, metric, n):
                return g
    if metric == "cosine":
        norms = np.linalg.norm(Xf, axis=1, keepdims=True)
        if (norms == 0).any():
            i = int(np.flatnonzero(norms[:, 0] == 0)[0])
            raise SampletopoError(
                f"knn_graph: row {i} of 'X' is all zeros, which has no cosine direction. "
                "Use metric='l2' or drop the row."
            )
        Xs = Xf / norms
    else:
        Xs = Xf
    # A few extra candidates let us drop the point itself wherever it lands among its duplicates,
    # and re-break distance ties by index.
    extra = min(n - 1 - k, 4)
    dist, nbr, _ = _faiss_search(Xs, k + 1 + extra, metric=metric, use_gpu=use_gpu, index=index)
    rows = np.repeat(np.arange(n, dtype=np.int64), nbr.shape[1]).reshape(nbr.shape)
    valid = (nbr >= 0) & (nbr != rows)
    # Round away float noise so that exact duplicates tie, then order by (distance, index).
    dkey = np.where(valid, np.round(dist.astype(np.float64), 5), np.inf)
    ikey = np.where(valid, nbr, np.iinfo(np.int64).max)
    order = np.lexsort((ikey, dkey), axis=1)
    nbr_sorted = np.take_along_axis(nbr, order, axis=1)[:, :k].astype(np.int64)
    src = np.repeat(np.arange(n, dtype=np.int64), k)
    edges = _canonical_edges(n, np.stack([src, nbr_sorted.ravel()], axis=1))
    recall = None if index == "exact" else _recall(Xs, nbr_sorted, k, metric=metric)
    g = Graph(n=n, edges=edges, k=k, metric=metric, fingerprint=fp, recall=recall)
    if recall is not None:
        print(
            f"knn_graph: {index} index, recall@{k} against exact search {recall:.3f} (1,000 queries)"
        )
    if verbose:
        print(
            f"knn_graph: n={n}, k={k}, {g.n_edges} edges, {g.n_components} connected component(s)"
        )
    if cache_path is not None:
        g.save(cache_path)
    return g
