"""Label audit: which training samples look mislabeled or ambiguous, per sample and per region.

Holds the per-sample suspicion scores computed from a run's recorded loss tables, the
topological score and the ranked regions, the measures that compare rankings against known
flipped labels, :func:`audit_run` (what ``sampletopo audit`` calls) and :func:`write_audit`
(its tables, and region grids drawn by :mod:`sampletopo.plotting`). Nothing here trains or
records; the benchmark that plants label noise is ``benchmarks/bench_audit.py``.

Every score is a *suspicion*: higher means more likely mislabeled, so every method ranks the
same way. From the same tables (``E`` recorded epochs of one split; epoch 0, the untrained
model, is left out when later epochs are recorded):

``loss_final`` / ``loss_mean``
    The cross-entropy loss at the last recorded epoch / averaged over the epochs.
``cartography`` (Swayamdipta et al., 2020)
    The tables hold the cross-entropy loss, and for it the true-class probability is exactly
    ``p = exp(-loss)``. Confidence is the mean of ``p`` over epochs, variability its standard
    deviation (population, ``ddof=0``); the suspicion is ``1 - confidence`` (mislabeled samples
    sit in the low-confidence, "hard-to-learn" corner).
``forgetting`` (Toneva et al., 2019)
    Forgetting events from the ``correct`` column: each transition correct -> wrong between two
    consecutive recorded epochs counts one. A sample never classified correctly at any recorded
    epoch is ranked first (its score is ``+inf``), as Toneva et al. do.
``aum`` (Pleiss et al., 2020)
    Area under the margin: the mean over epochs of the margin (true-class logit minus the
    largest other logit), from the optional ``margin`` column of the loss tables. Runs recorded
    before that column existed do not have it; the method is then reported as unavailable.
    The suspicion is ``-AUM``.
``confident_learning`` (Northcutt et al., 2021, with ``cleanlab``)
    cleanlab's label-quality score needs *out-of-sample* predicted probabilities, and the
    recorded ones are in-sample. They come from a cheaper proxy, not a retrained network:
    ``cv_folds``-fold cross-validated multinomial logistic regression on the split's
    standardized input features. The suspicion is ``1 - quality``. Without ``cleanlab``
    installed (``pip install sampletopo[audit]``) the method is skipped with a note.
``topology``
    The split tree of each epoch's loss on the split's kNN graph (the graph the run's diagrams
    were computed on). Each peak's region is every sample connected to its maximum through
    samples of higher loss than the saddle where it dies (see :mod:`sampletopo.samples`;
    younger peaks merged into it included, the saddle excluded; the essential peak cut where
    the most persistent other peak joins it). A sample's score at an epoch is the persistence
    of the most persistent peak whose region contains it (0 outside every peak); its score is
    the mean of that over epochs. Alternatives tried on seed 0 of the benchmark only (the max
    over epochs, and one tree of the mean loss over epochs) are kept as ``aggregate=``.

Regions. The ranked regions are split-tree peaks of the mean loss over epochs on the same graph
(:func:`sampletopo.samples.graph_regions`), each with its members, their labels and last
predictions, and the share of members whose last prediction disagrees with their label. By
default they are ranked by persistence times that share (:func:`audit_regions`): the most
persistent peaks alone put naturally ambiguous regions (mixed classes the model has learned)
above a mislabeled cluster. A reviewer looks at one region (an image grid) instead of each
member.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from sampletopo._errors import RunFolderError
from sampletopo._validation import check_choice, check_int, check_split, invalid
from sampletopo.graph import Graph, check_graph
from sampletopo.mergetree import split_tree
from sampletopo.runs import GRAPH_DEFAULTS, MARGIN_COLUMN, PathLike, Run, as_run

__all__ = [
    "AUDIT_METHODS",
    "Audit",
    "area_under_margin",
    "audit_regions",
    "audit_run",
    "auroc",
    "cartography",
    "confident_learning_scores",
    "forgetting_events",
    "precision_at",
    "review_items",
    "suspicion_scores",
    "topological_scores",
    "write_audit",
]

Aggregate = Literal["mean", "max", "mean_loss"]
RankBy = Literal["disagreement", "persistence"]
AUDIT_METHODS: tuple[str, ...] = (
    "topology",
    "loss_final",
    "loss_mean",
    "cartography",
    "forgetting",
    "aum",
    "confident_learning",
)


# ---------------------------------------------------------------------------------------------
# Per-sample baselines


def _matrix(x: Any, name: str, where: str, *, dtype: Any = np.float64) -> np.ndarray:
    arr = np.asarray(x, dtype=dtype)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise invalid(
            name, "an array of shape (epochs, samples) with at least one epoch", where=where,
            got=f"shape {arr.shape}",
        )  # fmt: skip
    return arr


def cartography(losses: Any) -> tuple[np.ndarray, np.ndarray]:
    """Confidence and variability (Swayamdipta et al., 2020) from cross-entropy losses.

    Parameters
    ----------
    losses : array-like (E, n)
        Per-sample cross-entropy losses per epoch; the true-class probability is ``exp(-loss)``.

    Returns
    -------
    confidence, variability : numpy.ndarray (n,)
        Mean and standard deviation (``ddof=0``) over epochs of the true-class probability.

    Examples
    --------
    >>> import numpy as np
    >>> c, v = cartography(-np.log([[0.2, 1.0], [0.6, 1.0]]))
    >>> np.round(c, 6).tolist(), np.round(v, 6).tolist()
    ([0.4, 1.0], [0.2, 0.0])
    """
    p = np.exp(-_matrix(losses, "losses", "cartography"))
    return p.mean(axis=0), p.std(axis=0)


def forgetting_events(correct: Any) -> np.ndarray:
    """Forgetting events per sample (Toneva et al., 2019): transitions correct -> wrong.

    Parameters
    ----------
    correct : array-like of bool (E, n)
        Whether each sample is classified correctly at each recorded epoch, in epoch order.

    Returns
    -------
    numpy.ndarray of float64 (n,)
        The number of events; ``+inf`` for a sample never correct at any epoch (never learned,
        ranked first as in Toneva et al.).

    Examples
    --------
    >>> forgetting_events([[1, 0, 1], [0, 0, 1], [1, 0, 0], [0, 0, 1]]).tolist()
    [2.0, inf, 1.0]
    """
    c = _matrix(correct, "correct", "forgetting_events", dtype=bool)
    events = (c[:-1] & ~c[1:]).sum(axis=0).astype(np.float64)
    return np.where(c.any(axis=0), events, np.inf)


def area_under_margin(margins: Any) -> np.ndarray:
    """Area under the margin (Pleiss et al., 2020): the mean margin over epochs per sample.

    The margin is the true-class logit minus the largest other logit; a mislabeled sample has a
    low (negative) AUM.

    >>> area_under_margin([[1.0, -2.0], [3.0, 0.0]]).tolist()
    [2.0, -1.0]
    """
    return _matrix(margins, "margins", "area_under_margin").mean(axis=0)


def confident_learning_scores(
    features: Any, labels: Any, *, cv_folds: int = 5, seed: int = 0
) -> np.ndarray | None:
    """cleanlab's label-quality suspicion ``1 - quality`` from out-of-sample probabilities.

    The probabilities come from ``cv_folds``-fold cross-validated multinomial logistic
    regression on ``features`` (a proxy for retraining the network per fold; see the module
    docstring). Returns None when ``cleanlab`` is not installed.
    """
    where = "confident_learning_scores"
    if importlib.util.find_spec("cleanlab") is None:
        return None
    from cleanlab.rank import get_label_quality_scores
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    X = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    folds = check_int("cv_folds", cv_folds, 2, None, where=where)
    counts = np.bincount(y)
    counts = counts[counts > 0]
    # Stratified folds need every class in every fold; a class rarer than that caps the folds.
    folds = int(max(2, min(folds, counts.min())))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    from threadpoolctl import threadpool_limits

    model = LogisticRegression(max_iter=500)
    # One BLAS thread: on a busy machine many threads on these small matrices ran ~100x slower.
    with threadpool_limits(limits=1):
        probs = cross_val_predict(model, X, y, cv=cv, method="predict_proba")
    full = np.zeros((y.size, int(y.max()) + 1))
    full[:, np.unique(y)] = probs
    return 1.0 - np.asarray(get_label_quality_scores(y, full), dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# The topological score


def _peaks(graph: Graph, values: np.ndarray) -> list[tuple[float, np.ndarray]]:
    """(persistence, members) of every split-tree peak with nonzero persistence, the essential
    peak of each component included (cut as in :mod:`sampletopo.samples`)."""
    from sampletopo.samples import _candidates

    t = split_tree(graph, values)
    out = []
    for birth, death, bs, _, _, members in _candidates(t, graph, essential=True):
        m = t.members(bs) if members is None else members
        out.append((abs(birth - death), np.asarray(m, dtype=np.int64)))
    return out


def _epoch_score(graph: Graph, values: np.ndarray) -> np.ndarray:
    score = np.zeros(graph.n)
    for pers, members in _peaks(graph, values):
        np.maximum.at(score, members, pers)
    return score


def topological_scores(
    graph: Graph, losses: Any, *, aggregate: Aggregate = "mean", progress: bool = False
) -> np.ndarray:
    """Each sample's topological suspicion score from the split-tree peaks containing it.

    Parameters
    ----------
    graph : Graph
        The split's kNN graph, one vertex per sample.
    losses : array-like (E, n)
        Per-sample losses per epoch.
    aggregate : {"mean", "max", "mean_loss"}
        ``"mean"`` (kept, see the module docstring): per epoch, the persistence of the most
        persistent peak whose region contains the sample, then the mean over epochs. ``"max"``:
        the same, maximum over epochs. ``"mean_loss"``: that per-epoch score computed once,
        on the mean loss over epochs.

    Examples
    --------
    A path with a peak at sample 1 (loss 5, dies at the saddle 3, loss 0.5: persistence 4.5;
    its region is 0, 1, 2, all above 0.5) and the essential peak at 5 (loss 6), cut at the same
    saddle (persistence 5.5, region 4, 5). The saddle belongs to no region:

    >>> from sampletopo.graph import graph_from_edges
    >>> g = graph_from_edges(6, [[0, 1], [1, 2], [2, 3], [3, 4], [4, 5]])
    >>> topological_scores(g, [[1.0, 5.0, 4.0, 0.5, 2.0, 6.0]]).tolist()
    [4.5, 4.5, 4.5, 0.0, 5.5, 5.5]
    """
    where = "topological_scores"
    check_graph(graph, where=where)
    aggregate = check_choice("aggregate", aggregate, ("mean", "max", "mean_loss"), where=where)
    L = _matrix(losses, "losses", where)
    if L.shape[1] != graph.n:
        raise invalid(
            "losses", f"one column per vertex of the graph ({graph.n})", where=where,
            got=f"shape {L.shape}",
        )  # fmt: skip
    if not np.isfinite(L).all():
        raise invalid(
            "losses",
            "finite losses",
            where=where,
            got=f"{int((~np.isfinite(L)).sum())} NaN or infinite value(s)",
            fix="Leave out the epochs where the run diverged.",
        )
    if aggregate == "mean_loss":
        return _epoch_score(graph, L.mean(axis=0))
    rows = L
    if progress:
        from tqdm.auto import tqdm

        rows = tqdm(L, desc="topology per epoch", leave=False)  # type: ignore[assignment]
    per = np.stack([_epoch_score(graph, row) for row in rows])
    return per.mean(axis=0) if aggregate == "mean" else per.max(axis=0)


# ---------------------------------------------------------------------------------------------
# Measures against known flipped labels


def _truth_and_scores(flipped: Any, scores: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(flipped, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.shape != y.shape:
        raise invalid(
            "scores", f"one score per sample, shape {y.shape}", where=where, got=f"shape {s.shape}"
        )
    if np.isnan(s).any():
        raise invalid("scores", "scores without NaN", where=where, got="NaN values")
    return y, s


def auroc(flipped: Any, scores: Any) -> float:
    """Area under the ROC curve of ``scores`` separating flipped (True) from clean samples.

    The Mann-Whitney form: the probability that a flipped sample scores higher than a clean
    one, ties counting one half (``+inf`` scores rank above every finite one).

    >>> auroc([True, False, False, True], [0.9, 0.1, 0.9, 0.5])
    0.625
    """
    y, s = _truth_and_scores(flipped, scores, "auroc")
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    # Average ranks handle ties (and infinities) exactly.
    from scipy.stats import rankdata

    r = rankdata(s)
    return float((r[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _order(scores: np.ndarray) -> np.ndarray:
    """Samples by decreasing score, ties by sample index (deterministic)."""
    return np.lexsort((np.arange(scores.size), -scores))


def precision_at(flipped: Any, scores: Any, k: int | None = None) -> float:
    """Share of flipped samples among the ``k`` highest scores (default ``k`` = the number
    flipped, where precision equals recall).

    >>> precision_at([True, False, True, False], [0.9, 0.8, 0.1, 0.0])
    0.5
    """
    y, s = _truth_and_scores(flipped, scores, "precision_at")
    k = int(y.sum()) if k is None else check_int("k", k, 1, y.size, where="precision_at")
    if k == 0:
        return float("nan")
    return float(y[_order(s)[:k]].mean())


def review_items(
    flipped: Any,
    scores: Any,
    *,
    regions: Sequence[Sequence[int]] = (),
    share: float = 0.8,
    count: Literal["items", "samples"] = "items",
) -> int:
    """How many items a reviewer looks at to find ``share`` of the flipped samples.

    The reviewer first looks at each region in order (one item each, revealing every member),
    then at the samples not yet seen, one item each, by decreasing score. Without regions this
    is the rank at which a per-sample ranking reaches ``share`` of the flipped samples.
    ``count="samples"`` counts the samples looked at instead (a region counts its new members).

    >>> review_items([1, 1, 0, 1, 0], [0.0, 0.1, 0.9, 0.2, 0.3], regions=[[0, 1]], share=0.6)
    1
    >>> review_items([1, 1, 0, 1, 0], [0.0, 0.1, 0.9, 0.2, 0.3], regions=[[0, 1]], share=0.6,
    ...              count="samples")
    2
    >>> review_items([1, 1, 0, 1, 0], [0.0, 0.1, 0.9, 0.2, 0.3], regions=[[0, 1]], share=1.0)
    4
    """
    check_choice("count", count, ("items", "samples"), where="review_items")
    y, s = _truth_and_scores(flipped, scores, "review_items")
    need = int(np.ceil(share * y.sum()))
    if need == 0:
        return 0
    seen = np.zeros(y.size, dtype=bool)
    found = items = 0
    for members in regions:
        m = np.asarray(members, dtype=np.int64)
        new = m[~seen[m]]
        seen[new] = True
        items += 1 if count == "items" else int(new.size)
        found += int(y[new].sum())
        if found >= need:
            return items
    for i in _order(s):
        if seen[i]:
            continue
        items += 1
        found += int(y[i])
        if found >= need:
            return items
    return items


# ---------------------------------------------------------------------------------------------
# From a run


@dataclass(frozen=True, eq=False)
class Audit:
    """The result of :func:`audit_run`.

    Attributes
    ----------
    run, split : str
    samples : polars.DataFrame
        One row per sample, most suspect (topological score) first: ``sample``, ``label``,
        ``pred`` (last epoch), ``topo_rank`` (1 = most suspect), one suspicion column per
        available method (named as the method, higher = more suspect), ``confidence`` and
        ``variability`` (cartography), ``forgetting_events`` and ``area_under_margin`` (the
        AUM itself; null when the tables hold no margins).
    regions : polars.DataFrame
        The top regions (columns of :data:`sampletopo.samples.REGION_SCHEMA`) plus
        ``disagree_share`` (members whose last prediction differs from their label) and
        ``mean_topology`` (their mean topological score).
    methods : tuple of str
        Methods that produced a score.
    notes : tuple of str
        One line per method skipped, and why.
    """

    run: str
    split: str
    samples: pl.DataFrame
    regions: pl.DataFrame
    methods: tuple[str, ...]
    notes: tuple[str, ...] = field(default=())

    def __repr__(self) -> str:
        return (
            f"Audit(run={self.run!r}, split={self.split!r}, samples={self.samples.height}, "
            f"regions={self.regions.height}, methods={list(self.methods)})"
        )


def _topology_settings(run: Run, split: str, where: str) -> dict[str, Any]:
    meta, why = run.read_meta()
    if why is not None or split not in meta or not run.diagram_epochs(split):
        raise RunFolderError(
            f"{where}: run {str(run.path)!r} has no topology for split {split!r} (the audit uses "
            f"the kNN graph its diagrams were computed on). Run `sampletopo topology "
            f"{run.path} --splits {split}` first."
        )
    return meta[split]


def _tables(run: Run, split: str) -> dict[str, np.ndarray]:
    from sampletopo.readers import read_loss_table

    epochs = run.loss_epochs(split)
    if len(epochs) > 1 and epochs[0] == 0:
        # Epoch 0 is the untrained model: its chance-level "correct" would count as learned
        # (then forgotten), and its losses say nothing about the labels.
        epochs = epochs[1:]
    cols: dict[str, list[np.ndarray]] = {"loss": [], "correct": [], "pred": [], "margin": []}
    label = None
    has_margin = True
    for e in epochs:
        # The margin column is optional (tables recorded before it existed have none).
        schema = pl.read_parquet_schema(run.loss_file(split, e))
        with_margin = schema.get(MARGIN_COLUMN) == pl.Float64
        extra = [MARGIN_COLUMN] if with_margin else []
        df = read_loss_table(
            run, split=split, epoch=e, columns=["label", "pred", "loss", "correct", *extra]
        )
        if df["label"].null_count():
            raise RunFolderError(
                f"audit_run: the {split} tables of {str(run.path)!r} hold regression targets "
                "(no class labels): the audit ranks suspect class labels. Audit a "
                "classification run."
            )
        label = df["label"].to_numpy()
        for c in ("loss", "correct", "pred"):
            cols[c].append(df[c].to_numpy())
        if with_margin and df[MARGIN_COLUMN].null_count() == 0:
            cols["margin"].append(df[MARGIN_COLUMN].to_numpy())
        else:
            has_margin = False
    out = {c: np.stack(v) for c, v in cols.items() if v and (c != "margin" or has_margin)}
    out["label"] = np.asarray(label)
    out["epochs"] = np.asarray(epochs)
    return out


def suspicion_scores(
    tables: dict[str, np.ndarray],
    *,
    graph: Graph,
    features: np.ndarray | None = None,
    methods: Sequence[str] = AUDIT_METHODS,
    aggregate: Aggregate = "mean",
    cv_folds: int = 5,
    seed: int = 0,
    progress: bool = False,
    loss_name: str = "cross_entropy",
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], list[str]]:
    """Every method's suspicion from loss tables held as arrays.

    ``tables`` holds ``loss`` and ``correct`` of shape (E, n), ``label`` (n,), and optionally
    ``margin`` (E, n). ``loss_name`` is the run's recorded loss: cartography needs
    cross-entropy (``exp(-loss)`` is the true-class probability only then) and is skipped with
    a note for any other. Returns (suspicion per method, extra per-sample columns, notes).
    """
    where = "suspicion_scores"
    if isinstance(methods, str):
        raise invalid(
            "methods", f"a sequence of method names from {list(AUDIT_METHODS)}", methods,
            where=where, fix=f"Pass [{methods!r}] for one method.",
        )  # fmt: skip
    for m in methods:
        check_choice("methods", m, AUDIT_METHODS, where=where)
    loss, correct, label = tables["loss"], tables["correct"], tables["label"]
    if not np.isfinite(loss).all():
        raise invalid(
            "losses",
            "finite losses at every recorded epoch",
            where=where,
            got=f"{int((~np.isfinite(loss)).sum())} NaN or infinite loss(es)",
            fix="The run diverged; audit a run that did not.",
        )
    conf, var = cartography(loss)
    if loss_name != "cross_entropy":  # not probabilities then: NaN in the tables
        conf, var = np.full_like(conf, np.nan), np.full_like(var, np.nan)
    extra = {"confidence": conf, "variability": var, "forgetting": forgetting_events(correct)}
    scores: dict[str, np.ndarray] = {}
    notes: list[str] = []
    for m in methods:
        if m == "topology":
            scores[m] = topological_scores(graph, loss, aggregate=aggregate, progress=progress)
        elif m == "loss_final":
            scores[m] = loss[-1].copy()
        elif m == "loss_mean":
            scores[m] = loss.mean(axis=0)
        elif m == "cartography":
            if loss_name == "cross_entropy":
                scores[m] = 1.0 - conf
            else:
                notes.append(
                    f"cartography: skipped, the run's loss is {loss_name!r}; exp(-loss) is the "
                    "true-class probability only for cross_entropy."
                )
        elif m == "forgetting":
            scores[m] = extra["forgetting"]
        elif m == "aum":
            if "margin" in tables:
                extra["aum"] = area_under_margin(tables["margin"])
                scores[m] = -extra["aum"]
            else:
                notes.append(
                    "aum: unavailable, the loss tables have no margin column (recorded by an "
                    "older sampletopo, or not by the LossRecorder); record the run again for it."
                )
        elif m == "confident_learning":
            cl = None
            if features is not None:
                cl = confident_learning_scores(features, label, cv_folds=cv_folds, seed=seed)
            if cl is None:
                notes.append(
                    "confident_learning: skipped, cleanlab is not installed "
                    "(pip install 'sampletopo[audit]')."
                    if features is not None
                    else "confident_learning: skipped, no features given."
                )
            else:
                scores[m] = cl
    return scores, extra, notes


def audit_run(
    run_dir: PathLike,
    *,
    split: str = "train",
    top: int = 20,
    rank_by: RankBy = "disagreement",
    max_size: int | None = 100,
    methods: Sequence[str] = AUDIT_METHODS,
    aggregate: Aggregate = "mean",
    cv_folds: int = 5,
    seed: int = 0,
    progress: bool = True,
) -> Audit:
    """Rank a run's samples and regions by how likely their labels are wrong.

    Parameters
    ----------
    run_dir : path or Run
        A run folder with recorded losses of ``split`` and its topology (``sampletopo
        topology``): the audit uses the kNN graph the diagrams were computed on.
    split : {"train", "val"}
        The split to audit (label noise lives in the training data).
    top : int >= 1
        Regions to list.
    rank_by : {"disagreement", "persistence"}
        How regions are ranked (:func:`audit_regions`).
    max_size : int or None
        Largest region listed (:func:`audit_regions`).
    methods : sequence of str
        Any of :data:`AUDIT_METHODS` (all by default); see the module docstring.
    aggregate : {"mean", "max", "mean_loss"}
        How the topological score combines epochs (:func:`topological_scores`).
    cv_folds, seed : int
        Folds and seed of the out-of-sample probabilities of confident learning.
    progress : bool
        Show a progress bar over epochs.

    Examples
    --------
    >>> a = audit_run("runs/demo/lr=0.1", split="train", top=20)  # doctest: +SKIP
    >>> a.regions.select("rank", "size", "classes", "disagree_share")  # doctest: +SKIP
    """
    where = "audit_run"
    split = check_split(split, where=where)
    top = check_int("top", top, 1, None, where=where)
    run = as_run(run_dir)
    if not run.path.is_dir():
        raise RunFolderError(
            f"{where}: {str(run.path)!r} does not exist. Pass a run (variant) folder written by "
            "`sampletopo train` or the LossRecorder."
        )
    if not run.is_run():
        from sampletopo.runs import find_runs

        inside = find_runs(run.path)  # raises when none: not a run nor an experiment
        raise RunFolderError(
            f"{where}: {str(run.path)!r} is an experiment folder; the audit takes one run "
            f"(variant) folder, e.g. {str(inside[0].path)!r}. Its runs: "
            f"{', '.join(r.name for r in inside)}."
        )
    if not run.loss_epochs(split):
        raise RunFolderError(
            f"{where}: {str(run.path)!r} holds no recorded losses of split {split!r} "
            f"(losses/{split}/epoch=NNNN.parquet). Record them with `sampletopo train` (which "
            "records both splits) or `sampletopo record`."
        )
    manifest = run.read_manifest() or {}
    # Manifests written before losses could be chosen hold cross-entropy losses.
    loss_name = str(manifest.get("loss", "cross_entropy"))
    settings = _topology_settings(run, split, where)
    from sampletopo.analysis import graph_for_run

    graph = graph_for_run(
        run, split=split, k=int(settings["k"]), features=settings["features"],
        pca_components=int(settings.get("pca_components", GRAPH_DEFAULTS["pca_components"])),
    )  # fmt: skip
    tables = _tables(run, split)
    ds = run.dataset()
    feats = ds.features(split, kind="standardized") if "confident_learning" in methods else None
    scores, extra, notes = suspicion_scores(
        tables,
        graph=graph,
        features=feats,
        methods=methods,
        aggregate=aggregate,
        cv_folds=cv_folds,
        seed=seed,
        progress=progress,
        loss_name=loss_name,
    )
    label, pred = tables["label"], tables["pred"][-1]
    return Audit(
        run=run.name,
        split=split,
        samples=_samples_table(label, pred, scores, extra),
        regions=audit_regions(
            graph,
            tables["loss"],
            label,
            pred,
            top=top,
            rank_by=rank_by,
            max_size=max_size,
            class_names=list(ds.class_names),
            topology=scores.get("topology"),
        ),  # fmt: skip
        methods=tuple(scores),
        notes=tuple(notes),
    )


def _samples_table(
    label: np.ndarray, pred: np.ndarray, scores: dict[str, np.ndarray], extra: dict[str, Any]
) -> pl.DataFrame:
    n = label.size
    key = scores.get("topology", next(iter(scores.values()), np.zeros(n)))
    order = _order(key)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(1, n + 1)
    cols: dict[str, Any] = {
        "sample": np.arange(n, dtype=np.int64),
        "label": label.astype(np.int64),
        "pred": pred.astype(np.int64),
        "topo_rank": rank,
    }
    cols.update({m: v.astype(np.float64) for m, v in scores.items()})
    cols["confidence"] = extra["confidence"]
    cols["variability"] = extra["variability"]
    cols["forgetting_events"] = extra["forgetting"]
    df = pl.DataFrame(cols)
    aum = extra.get("aum")
    df = df.with_columns(
        pl.Series("area_under_margin", aum, dtype=pl.Float64)
        if aum is not None
        else pl.lit(None, dtype=pl.Float64).alias("area_under_margin")
    )
    return df.sort("topo_rank")


def audit_regions(
    graph: Graph,
    losses: np.ndarray,
    labels: np.ndarray,
    preds: np.ndarray,
    *,
    top: int = 20,
    rank_by: RankBy = "disagreement",
    max_size: int | None = 100,
    class_names: Sequence[str] | None = None,
    topology: np.ndarray | None = None,
) -> pl.DataFrame:
    """The ``top`` suspect regions: split-tree peaks of the mean loss over epochs.

    Parameters
    ----------
    graph, losses
        The split's kNN graph and the losses (E, n); regions are those of the mean over epochs.
    labels, preds : (n,)
        Labels, and the predictions of the last epoch.
    rank_by : {"disagreement", "persistence"}
        ``"disagreement"``: persistence times the share of members whose prediction differs
        from their label (hard regions where model and labels disagree: likely mislabeled),
        ties by persistence; chosen from the audit's question, before any benchmark.
        ``"persistence"``: the most persistent peaks (hard regions, ambiguous ones included),
        as ``sampletopo samples``. Either way from the ``max(5 * top, 100)`` most persistent.
    max_size : int >= 1 or None
        Leave out regions of more members than this: a region is meant to be reviewed as one
        image grid (the essential peak of a clean run can hold a fifth of the data). None
        keeps all.
    topology : (n,), optional
        The topological scores, for the ``mean_topology`` column.

    Returns
    -------
    polars.DataFrame
        ``audit_rank`` (1 = most suspect), then the columns of
        :func:`sampletopo.samples.graph_regions` (its ``rank`` is the persistence rank), plus
        ``disagree_share`` and ``mean_topology`` (null without ``topology``).
    """
    import warnings

    from sampletopo._errors import FewerPairsWarning
    from sampletopo.samples import graph_regions

    where = "audit_regions"
    top = check_int("top", top, 1, None, where=where)
    rank_by = check_choice("rank_by", rank_by, ("disagreement", "persistence"), where=where)
    if max_size is not None:
        max_size = check_int("max_size", max_size, 1, None, where=where)
    pool = max(5 * top, 100)
    with warnings.catch_warnings():
        # Fewer peaks than asked is normal for a small split; all are listed.
        warnings.simplefilter("ignore", FewerPairsWarning)
        table = graph_regions(
            graph, np.asarray(losses).mean(axis=0), tree="split", top=pool,
            labels=labels, preds=preds, class_names=class_names,
        )  # fmt: skip
    disagree = [
        float(np.mean(np.asarray(lab) != np.asarray(prd))) if lab else 0.0
        for lab, prd in zip(table["member_labels"].to_list(), table["member_preds"].to_list())
    ]
    mean_topo = [
        float(np.asarray(topology)[np.asarray(m, dtype=np.int64)].mean())
        if topology is not None and m
        else None
        for m in table["members"].to_list()
    ]
    table = table.with_columns(
        pl.Series("disagree_share", disagree, dtype=pl.Float64),
        pl.Series("mean_topology", mean_topo, dtype=pl.Float64),
    )
    if max_size is not None:
        table = table.filter(pl.col("size") <= max_size)
    if rank_by == "disagreement":
        key = pl.col("persistence") * pl.col("disagree_share")
        table = table.sort([key, pl.col("rank")], descending=[True, False])
    table = table.head(top)
    return table.select(
        pl.int_range(1, table.height + 1, dtype=pl.Int32).alias("audit_rank"), pl.all()
    )


def write_audit(result: Audit, run_dir: PathLike, *, figures: int = 5) -> list[Path]:
    """Write an :class:`Audit`'s tables (and a figure of each of its top ``figures`` regions)
    into ``<run>/audit/`` (file names from :class:`sampletopo.runs.Run`); return the paths.

    Each file is written atomically. The figure suits the data's inputs
    (:func:`sampletopo.plotting._samples.plot_region_samples`): an image grid, signal line plots
    or a feature table, at most 40 members, ``label -> prediction`` under each (red when they
    differ); data without displayable inputs gets the tables only.
    """
    from sampletopo._runfiles import write_parquet

    figures = check_int("figures", figures, 0, None, where="write_audit")
    run = as_run(run_dir)
    paths = [
        write_parquet(result.samples, run.audit_file(result.split, "samples")),
        write_parquet(result.regions, run.audit_file(result.split, "regions")),
    ]
    if figures and result.regions.height:
        import matplotlib.pyplot as plt

        from sampletopo.plotting._samples import plot_region_samples
        from sampletopo.plotting._topology import save_figure

        ds = run.dataset()
        for r in result.regions.head(figures).iter_rows(named=True):
            fig = plot_region_samples(
                ds, result.split, r["members"], r["member_labels"], r["member_preds"],
                title=f"{result.run} {result.split}: suspect region {r['audit_rank']} "
                f"(persistence {r['persistence']:.3g}, {r['size']} samples, labels {r['classes']})",
            )  # fmt: skip
            if fig is None:  # data without displayable inputs: tables only
                break
            try:
                path = run.audit_figure(result.split, r["audit_rank"])
                paths.append(save_figure(fig, path, dpi=110))
            finally:
                plt.close(fig)
    return paths
