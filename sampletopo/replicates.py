"""Replicates of variants: groups, named metrics, summaries over replicates, comparisons.

A *replicate* is one run of a variant under one seed. ``sampletopo train --lr 0.1 0.01 --seed 0
1 2`` trains six runs named ``lr=0.1,seed=0`` ... ``lr=0.01,seed=2``; each run's
``config.toml`` records its ``group`` (the variant, ``lr=0.1``) and its ``seed``. A run recorded
by another loop joins a group through its config (a ``group`` entry), or else through its
``variant`` name (the folder's name for the recorder) with its ``seed=N`` part left out
(:func:`replicate_group`).

What is here:

- :func:`parse_metric` and :func:`metric_table`: the named metrics of a diagram, per run x epoch
  (total persistence p = 1 and 2, pair count, the largest persistence, persistence quantiles,
  the pairs above an absolute threshold or one relative to the epoch's loss range);
- :func:`replicate_summary`: per group x epoch x metric the mean, sd (``ddof=1``), a bootstrap
  confidence interval of the mean (seeded) and n;
- :func:`compare`: per pair of groups the difference of means, its bootstrap interval and a
  permutation-test p-value (:func:`scipy.stats.permutation_test`) with the smallest p-value the
  replicate counts allow;
- :func:`sensitivity`: :func:`compare` once per kNN graph setting (k x features), one table;
- the statistics themselves: :func:`bootstrap_mean_ci`, :func:`bootstrap_difference_ci`,
  :func:`permutation_pvalue`.

Runs of several experiment folders may be pooled; when two of them hold runs of the same name,
every run and group is labelled ``experiment/name`` (so ``a/lr=0.1`` and ``b/lr=0.1`` are two
groups). This module draws nothing and computes no topology (see :mod:`sampletopo.analysis`).
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from sampletopo._errors import ComparisonWarning, RunFolderError, SampletopoError
from sampletopo._validation import check_int, check_real, check_split, check_tree, invalid
from sampletopo.runs import PathLike, Run, find_runs, missing_diagrams_error

__all__ = [
    "ComparisonWarning",
    "METRICS",
    "Metric",
    "bootstrap_difference_ci",
    "bootstrap_mean_ci",
    "compare",
    "sensitivity",
    "metric_table",
    "parse_metric",
    "permutation_pvalue",
    "replicate_curves",
    "replicate_group",
    "run_group",
    "replicate_summary",
    "replicates",
]

_SEED_PART = re.compile(r"^seed=\d+$")


def replicate_group(name: str) -> str:
    """The group (variant) of a run named ``name``: the name without its ``seed=N`` part.

    >>> replicate_group("lr=0.1,seed=2"), replicate_group("seed=0"), replicate_group("lr=0.1")
    ('lr=0.1', 'run', 'lr=0.1')
    """
    parts = [p for p in str(name).split(",") if p and not _SEED_PART.match(p)]
    return ",".join(parts) or "run"


def _seed_of(name: str) -> int | None:
    for p in str(name).split(","):
        if _SEED_PART.match(p):
            return int(p.split("=", 1)[1])
    return None


# ---------------------------------------------------------------------------------------------
# Runs and their groups


@dataclass(frozen=True)
class _Member:
    run: Run
    label: str
    group: str
    seed: int | None
    experiment: str


def _members(paths: PathLike | Iterable[PathLike]) -> list[_Member]:
    """The runs of ``paths`` with their labels and groups (see the module docstring)."""
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    runs: list[Run] = []
    seen: set[Path] = set()
    for p in items:
        for r in find_runs(p):
            key = Path(os.path.abspath(r.path))
            if key not in seen:  # one folder given twice counts once
                seen.add(key)
                runs.append(r)
    if not runs:
        raise invalid(
            "runs",
            "one or more run or experiment folders",
            [],
            where=None,
            fix="Pass the folders `sampletopo train` wrote.",
        )
    names = [r.name for r in runs]
    clash = len(set(names)) < len(names)
    if clash:
        labels = [f"{r.experiment.name}/{r.name}" for r in runs]
        if len(set(labels)) < len(labels):
            dup = sorted({lab for lab in labels if labels.count(lab) > 1})
            raise RunFolderError(
                f"Runs {dup} have the same name in experiment folders of the same name; they "
                "cannot be told apart. Rename one of the experiment folders."
            )
    out = []
    for r in runs:
        group, seed = run_group(r)
        exp = r.experiment.name
        label, grp = (f"{exp}/{r.name}", f"{exp}/{group}") if clash else (r.name, group)
        out.append(_Member(r, label, grp, seed, exp))
    return out


def run_group(run: PathLike) -> tuple[str, int | None]:
    """The group (variant) and seed of one run, from its config (``group``, ``seed``) or else
    its ``variant`` name or folder name (see the module docstring). A config that cannot be
    read (damaged, a wrong-typed entry) counts as absent here: the run is grouped by its folder
    name, and the commands that need the config say what is wrong with it."""
    r = run if isinstance(run, Run) else Run(run)
    try:
        cfg = r.read_config() if r.has_config() else {}
    except SampletopoError:
        cfg = {}
    variant = str(cfg.get("variant") or r.name)
    group = cfg.get("group")
    group = group if isinstance(group, str) and group else replicate_group(variant)
    seed = cfg.get("seed")
    seed = seed if isinstance(seed, int) and not isinstance(seed, bool) else _seed_of(variant)
    return group, seed


def replicate_curves(
    table: pl.DataFrame,
    groups: dict[str, str],
    value: str,
    *,
    extra: Sequence[str] = (),
    confidence: float = 0.95,
    n_boot: int = 10_000,
    seed: int = 0,
) -> pl.DataFrame:
    """Curves over replicates: ``table`` (``run``, ``split``, ``tree``, ``epoch`` and
    ``value``) pooled per group (``groups``: run -> group) as ``run`` (the group), ``split``,
    ``tree``, ``epoch``, ``n``, ``value`` (the mean), ``ci_low``, ``ci_high`` (its bootstrap
    interval, :func:`bootstrap_mean_ci`; null for one replicate) and the mean of each
    ``extra`` column."""
    t = table.with_columns(group=pl.col("run").replace_strict(groups))
    rows = []
    keys = ["group", "split", "tree", "epoch"]
    for key, cell in t.group_by(keys, maintain_order=True):
        x = cell[value].cast(pl.Float64).to_numpy()
        lo, hi = bootstrap_mean_ci(x, confidence=confidence, n_boot=n_boot, seed=seed)
        row = dict(zip(["run", "split", "tree", "epoch"], key, strict=True))
        row.update(
            n=int(x.size),
            **{value: float(x.mean())},
            ci_low=None if math.isnan(lo) else lo,
            ci_high=None if math.isnan(hi) else hi,
            **{c: cell[c].cast(pl.Float64).mean() for c in extra},
        )
        rows.append(row)
    schema: dict[str, Any] = {
        "run": pl.String,
        "split": pl.String,
        "tree": pl.String,
        "epoch": pl.Int64,
        "n": pl.Int64,
        value: pl.Float64,
        "ci_low": pl.Float64,
        "ci_high": pl.Float64,
        **{c: pl.Float64 for c in extra},
    }
    return pl.DataFrame(rows, schema=schema).sort("run", "split", "tree", "epoch")


def replicates(runs: PathLike | Iterable[PathLike]) -> pl.DataFrame:
    """One row per run: ``run`` (its label), ``group``, ``seed`` (null where none is known),
    ``experiment`` and ``path``, sorted by group and seed."""
    ms = _members(runs)
    return pl.DataFrame(
        {
            "run": [m.label for m in ms],
            "group": [m.group for m in ms],
            "seed": [m.seed for m in ms],
            "experiment": [m.experiment for m in ms],
            "path": [str(m.run.path) for m in ms],
        },
        schema={
            "run": pl.String,
            "group": pl.String,
            "seed": pl.Int64,
            "experiment": pl.String,
            "path": pl.String,
        },
    ).sort(["group", "seed", "run"], nulls_last=True)


# ---------------------------------------------------------------------------------------------
# Named metrics

#: The metrics by name, with what they mean. ``NAME:VALUE`` for the ones that take a value.
METRICS: dict[str, str] = {
    "total_persistence": "sum of the finite pairs' persistence (p = 1)",
    "total_persistence_2": "sum of the finite pairs' squared persistence (p = 2)",
    "n_pairs": "number of finite pairs",
    "max_persistence": "largest finite persistence (0 without pairs)",
    "pairs_above:T": "finite pairs with persistence > T (loss units, T >= 0)",
    "pairs_above_relative:F": "finite pairs with persistence > F x the epoch's loss range (max - "
    "min of the split's finite per-sample losses at that epoch), F >= 0",
    "quantile:Q": "the Q-quantile of the finite persistences (linear interpolation, "
    "0 <= Q <= 1; 0 without pairs)",
}
_NEEDS_VALUE = {"pairs_above", "pairs_above_relative", "quantile"}


@dataclass(frozen=True)
class Metric:
    """A parsed metric: ``name`` as written (the column name), its ``kind`` and ``value``."""

    name: str
    kind: str
    value: float | None = None

    @property
    def needs_loss_range(self) -> bool:
        return self.kind == "pairs_above_relative"

    @property
    def description(self) -> str:
        """What the metric is, its value filled in, for captions and axis labels
        (``"number of finite pairs with persistence > 0.5"``)."""
        v = f"{self.value:g}" if self.value is not None else ""
        return {
            "total_persistence": "total persistence (sum of the finite pairs' persistence)",
            "total_persistence_2": "sum of the finite pairs' squared persistence",
            "n_pairs": "number of finite pairs",
            "max_persistence": "largest finite persistence",
            "pairs_above": f"number of finite pairs with persistence > {v}",
            "pairs_above_relative": f"number of finite pairs with persistence > {v} x the "
            "epoch's loss range",
            "quantile": f"{v}-quantile of the finite persistences",
        }[self.kind]

    def of(self, persistence: np.ndarray, loss_range: float = math.nan) -> float:
        """The metric of one diagram's finite ``persistence`` values."""
        p = np.asarray(persistence, dtype=np.float64)
        if self.kind == "total_persistence":
            return float(p.sum())
        if self.kind == "total_persistence_2":
            return float((p**2).sum())
        if self.kind == "n_pairs":
            return float(p.size)
        if self.kind == "max_persistence":
            return float(p.max()) if p.size else 0.0
        assert self.value is not None
        if self.kind == "pairs_above":
            return float((p > self.value).sum())
        if self.kind == "pairs_above_relative":
            return float((p > self.value * loss_range).sum())
        return float(np.quantile(p, self.value)) if p.size else 0.0


def _metric_error(spec: Any, why: str = "") -> Exception:
    listed = "; ".join(f"{k} ({v})" for k, v in METRICS.items())
    return invalid(
        "metric",
        f"one of: {listed}",
        spec,
        where=None,
        fix=(why + " " if why else "") + "E.g. 'pairs_above:2' or 'quantile:0.9'.",
    )


def parse_metric(spec: str | Metric) -> Metric:
    """``spec`` (``"total_persistence"``, ``"pairs_above:2"``, ...) as a :class:`Metric`;
    anything else is refused in one error that lists the choices (:data:`METRICS`).

    >>> parse_metric("pairs_above:0.5")
    Metric(name='pairs_above:0.5', kind='pairs_above', value=0.5)
    """
    if isinstance(spec, Metric):
        return spec
    if not isinstance(spec, str):
        raise _metric_error(spec)
    kind, sep, raw = spec.strip().partition(":")
    if kind in METRICS and not sep:
        return Metric(spec.strip(), kind)
    if kind not in _NEEDS_VALUE:
        raise _metric_error(spec)
    if not sep or not raw.strip():
        raise _metric_error(spec, f"{kind!r} needs a value after a colon.")
    try:
        value = float(raw)
    except ValueError:
        raise _metric_error(spec, f"{raw!r} is not a number.") from None
    high = 1.0 if kind == "quantile" else None
    if not math.isfinite(value) or value < 0 or (high is not None and value > high):
        bound = "in [0, 1]" if kind == "quantile" else ">= 0 and finite"
        raise _metric_error(spec, f"The value of {kind!r} must be {bound}.")
    return Metric(spec.strip(), kind, value)


def _metrics(metrics: str | Metric | Sequence[str | Metric]) -> list[Metric]:
    items = [metrics] if isinstance(metrics, (str, Metric)) else list(metrics)
    if not items:
        raise _metric_error([], "Give at least one metric.")
    out = [parse_metric(m) for m in items]
    names = [m.name for m in out]
    same = [(m.kind, m.value) for m in out]  # 'pairs_above:0.5' and 'pairs_above:.5' are one
    if len(set(same)) < len(same):
        raise invalid("metrics", "distinct metrics", names, where=None)
    return out


def _run_metrics(m: _Member, metrics: list[Metric], split: str, tree: str) -> pl.DataFrame:
    from sampletopo.readers import read_diagrams, scan_losses

    if not m.run.diagram_epochs(split):
        raise missing_diagrams_error(m.run, split)
    df = read_diagrams(m.run, split=split, tree=tree).filter(pl.col("persistence").is_finite())
    epochs = m.run.diagram_epochs(split)
    ranges: dict[int, float] = {}
    if any(x.needs_loss_range for x in metrics):
        lr = (
            scan_losses(m.run, split=split)
            .filter(pl.col("loss").is_finite())
            .group_by("epoch")
            .agg(lo=pl.col("loss").min(), hi=pl.col("loss").max())
            .collect()
        )
        ranges = {int(e): float(hi - lo) for e, lo, hi in lr.select("epoch", "lo", "hi").rows()}
    by_epoch = {int(e[0]): part["persistence"].to_numpy() for e, part in df.group_by(["epoch"])}
    rows: dict[str, list[Any]] = {"epoch": epochs}
    for x in metrics:
        rows[x.name] = [x.of(by_epoch.get(e, np.empty(0)), ranges.get(e, math.nan)) for e in epochs]
    return pl.DataFrame(rows, schema={"epoch": pl.Int64, **{x.name: pl.Float64 for x in metrics}})


def metric_table(
    runs: PathLike | Iterable[PathLike],
    metrics: str | Metric | Sequence[str | Metric] = ("total_persistence",),
    *,
    split: str = "val",
    tree: str = "split",
) -> pl.DataFrame:
    """The named ``metrics`` (see :data:`METRICS`) of every run's stored diagrams of ``split``
    and ``tree``, one row per run x epoch.

    Returns
    -------
    polars.DataFrame
        ``run``, ``group``, ``seed``, ``split``, ``tree``, ``epoch``, then one Float64 column
        per metric, named as written (``"pairs_above:2"``).
    """
    check_split(split, where="metric_table")
    check_tree(tree, where="metric_table")
    ms = _metrics(metrics)
    parts = []
    for m in _members(runs):
        part = _run_metrics(m, ms, split, tree)
        parts.append(
            part.with_columns(
                run=pl.lit(m.label),
                group=pl.lit(m.group),
                seed=pl.lit(m.seed, dtype=pl.Int64),
                split=pl.lit(split),
                tree=pl.lit(tree),
            )
        )
    head = ["run", "group", "seed", "split", "tree", "epoch"]
    return pl.concat(parts).select(head + [x.name for x in ms]).sort(["group", "run", "epoch"])


# ---------------------------------------------------------------------------------------------
# Statistics over replicates


def _check_stats(confidence: float, n_boot: int, seed: int, where: str) -> None:
    check_real("confidence", confidence, low=0, high=1, low_open=True, high_open=True, where=where)
    check_int("n_boot", n_boot, 100, 10_000_000, where=where)
    check_int("seed", seed, 0, 2**63 - 1, where=where)


def bootstrap_mean_ci(
    values: Sequence[float] | np.ndarray,
    *,
    confidence: float = 0.95,
    n_boot: int = 10_000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values``: ``n_boot`` resamples with
    replacement drawn by ``numpy.random.default_rng(seed)``, so the same call gives the same
    interval. NaN, NaN for fewer than two values.

    >>> bootstrap_mean_ci([1.0, 1.0, 1.0])
    (1.0, 1.0)
    """
    _check_stats(confidence, n_boot, seed, "bootstrap_mean_ci")
    x = np.asarray(values, dtype=np.float64)
    if x.size < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    a = (1 - confidence) / 2
    lo, hi = np.quantile(means, [a, 1 - a])
    return float(lo), float(hi)


def bootstrap_difference_ci(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    confidence: float = 0.95,
    n_boot: int = 10_000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``mean(a) - mean(b)``, each group resampled on its own
    (seeded as :func:`bootstrap_mean_ci`). NaN, NaN when a group has fewer than two values."""
    _check_stats(confidence, n_boot, seed, "bootstrap_difference_ci")
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.size < 2 or y.size < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    mx = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    my = y[rng.integers(0, y.size, size=(n_boot, y.size))].mean(axis=1)
    q = (1 - confidence) / 2
    lo, hi = np.quantile(mx - my, [q, 1 - q])
    return float(lo), float(hi)


def _mean_difference(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
    return np.asarray(np.mean(x, axis=axis) - np.mean(y, axis=axis))


def permutation_pvalue(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    n_permutations: int = 9999,
    seed: int = 0,
) -> float:
    """Two-sided permutation-test p-value of ``mean(a) - mean(b)`` (labels exchanged between
    the groups; :func:`scipy.stats.permutation_test`). Exact (every split of the pooled values)
    when there are at most ``n_permutations`` splits, else ``n_permutations`` random ones drawn
    under ``seed``. NaN when a group has fewer than two values.

    The smallest p-value possible is :func:`smallest_pvalue`: 0.1 for 3 against 3 replicates.
    """
    from scipy.stats import permutation_test

    check_int("n_permutations", n_permutations, 99, 10_000_000, where="permutation_pvalue")
    check_int("seed", seed, 0, 2**63 - 1, where="permutation_pvalue")
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.size < 2 or y.size < 2:
        return math.nan
    res = permutation_test(
        (x, y),
        _mean_difference,
        permutation_type="independent",
        vectorized=True,
        n_resamples=n_permutations,
        alternative="two-sided",
        rng=np.random.default_rng(seed),
    )
    return float(res.pvalue)


def smallest_pvalue(n_a: int, n_b: int, *, n_permutations: int = 9999) -> float:
    """The smallest two-sided p-value :func:`permutation_pvalue` can give for groups of
    ``n_a`` and ``n_b`` values: ``2 / C(n_a + n_b, n_a)`` when exact, else
    ``2 / (n_permutations + 1)`` (capped at 1).

    >>> smallest_pvalue(3, 3), smallest_pvalue(5, 5)
    (0.1, 0.007936507936507936)
    """
    splits = math.comb(n_a + n_b, n_a)
    return min(1.0, 2 / splits if splits <= n_permutations else 2 / (n_permutations + 1))


def _epochs_arg(epochs: Any, where: str) -> str | list[int]:
    if isinstance(epochs, str) and epochs in ("final", "all"):
        return epochs
    items = [epochs] if isinstance(epochs, (int, np.integer)) else epochs
    if (
        isinstance(items, (list, tuple))
        and items
        and all(isinstance(e, (int, np.integer)) and not isinstance(e, bool) for e in items)
    ):
        return sorted({int(e) for e in items})
    raise invalid("epochs", "'final', 'all', an epoch or a list of epochs", epochs, where=where)


def _runs_epochs_text(items: list[tuple[str, list[int]]], most: int = 8) -> str:
    """``run: 0-4; run: 5-8`` for messages, the first ``most`` runs and how many more."""
    from sampletopo._validation import ranges_text

    text = "; ".join(f"{r}: {ranges_text(es)}" for r, es in items[:most])
    return text + (f"; ... and {len(items) - most} more run(s)" if len(items) > most else "")


def _choose_epochs(table: pl.DataFrame, epochs: str | list[int], where: str) -> list[int]:
    """The epochs to use: those every run recorded (a warning names what is left out)."""
    from sampletopo._validation import ranges_text

    per_run = {
        r: set(part["epoch"].to_list())
        for (r,), part in table.group_by(["run"], maintain_order=True)
    }
    common = set.intersection(*per_run.values())
    extra = {r: sorted(es - common) for r, es in per_run.items() if es - common}
    if not common:
        raise RunFolderError(
            f"The runs have no epoch with diagrams in common ({where}); epochs with diagrams: "
            + _runs_epochs_text([(r, sorted(es)) for r, es in per_run.items()])
            + ". Compare runs whose recorded epochs overlap (`sampletopo topology` computes "
            "every recorded epoch of a run; record the missing epochs with `sampletopo record` "
            "from checkpoints, or leave those runs out)."
        )
    if extra:
        warnings.warn(
            ComparisonWarning(
                f"The runs have diagrams of different epochs; only the {len(common)} epoch(s) "
                f"all of them have ({ranges_text(common)}) are compared. Left out: "
                + _runs_epochs_text(list(extra.items()))
                + "."
            ),
            stacklevel=3,
        )
    if epochs == "final":
        return [max(common)]
    if epochs == "all":
        return sorted(common)
    assert isinstance(epochs, list)
    missing = [e for e in epochs if e not in common]
    if missing:
        from sampletopo._validation import ranges_text

        raise invalid(
            "epochs",
            f"epochs every run has diagrams for ({ranges_text(sorted(common))})",
            missing,
            where=where,
        )
    return epochs


def replicate_summary(
    runs: PathLike | Iterable[PathLike],
    metrics: str | Metric | Sequence[str | Metric] = ("total_persistence",),
    *,
    split: str = "val",
    tree: str = "split",
    epochs: str | int | Sequence[int] = "all",
    confidence: float = 0.95,
    n_boot: int = 10_000,
    seed: int = 0,
) -> pl.DataFrame:
    """Per group (variant) x metric x epoch, over the group's replicates: ``n``, ``mean``,
    ``sd`` (sample standard deviation, ``ddof=1``; null for one replicate), and ``ci_low``,
    ``ci_high``, the ``confidence`` bootstrap interval of the mean
    (:func:`bootstrap_mean_ci`, ``n_boot`` resamples under ``seed``; null for one replicate).

    ``epochs``: ``"all"`` (every epoch all runs have; a :class:`ComparisonWarning` names the
    others), ``"final"`` (the last of those) or given epochs.

    Returns
    -------
    polars.DataFrame
        ``group``, ``metric``, ``split``, ``tree``, ``epoch``, ``n``, ``mean``, ``sd``,
        ``ci_low``, ``ci_high``, ``runs`` (the replicates' labels).
    """
    where = "replicate_summary"
    _check_stats(confidence, n_boot, seed, where)
    ep = _epochs_arg(epochs, where)
    table = metric_table(runs, metrics, split=split, tree=tree)
    names = [m.name for m in _metrics(metrics)]
    chosen = _choose_epochs(table, ep, where)
    table = table.filter(pl.col("epoch").is_in(chosen))
    rows = []
    for (group,), part in table.group_by(["group"], maintain_order=True):
        for (epoch,), cell in part.group_by(["epoch"], maintain_order=True):
            for name in names:
                x = cell[name].to_numpy()
                lo, hi = bootstrap_mean_ci(x, confidence=confidence, n_boot=n_boot, seed=seed)
                rows.append(
                    {
                        "group": group,
                        "metric": name,
                        "split": split,
                        "tree": tree,
                        "epoch": int(epoch),
                        "n": int(x.size),
                        "mean": float(x.mean()),
                        "sd": float(x.std(ddof=1)) if x.size > 1 else None,
                        "ci_low": None if math.isnan(lo) else lo,
                        "ci_high": None if math.isnan(hi) else hi,
                        "runs": sorted(cell["run"].to_list()),
                    }
                )
    return pl.DataFrame(rows, schema=_SUMMARY_SCHEMA).sort(["metric", "group", "epoch"])


_SUMMARY_SCHEMA: dict[str, Any] = {
    "group": pl.String,
    "metric": pl.String,
    "split": pl.String,
    "tree": pl.String,
    "epoch": pl.Int64,
    "n": pl.Int64,
    "mean": pl.Float64,
    "sd": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "runs": pl.List(pl.String),
}


def compare(
    runs: PathLike | Iterable[PathLike],
    metric: str | Metric = "total_persistence",
    *,
    split: str = "val",
    tree: str = "split",
    epochs: str | int | Sequence[int] = "final",
    confidence: float = 0.95,
    n_boot: int = 10_000,
    n_permutations: int = 9999,
    seed: int = 0,
) -> pl.DataFrame:
    """Compare every pair of groups (variants) on ``metric`` over their replicates.

    Parameters
    ----------
    runs : folders
        Experiment or run folders (several experiments may be pooled, see the module
        docstring).
    metric : str
        A named metric (:data:`METRICS`), e.g. ``"total_persistence"`` or ``"pairs_above:2"``.
    split, tree : str
        The diagrams used (``"val"`` and ``"split"``: the validation set's high-loss regions).
    epochs : "final", "all", int or list of int
        ``"final"``: the last epoch every run has (runs with more epochs get a
        :class:`ComparisonWarning` saying which epochs were left out).
    confidence, n_boot, n_permutations, seed
        The bootstrap interval's level and resamples, the permutation test's resamples, and
        the seed of both (the same call gives the same table).

    Returns
    -------
    polars.DataFrame
        One row per epoch x pair (``group_a`` before ``group_b`` in name order): ``metric``,
        ``split``, ``tree``, ``epoch``, ``group_a``, ``group_b``, ``n_a``, ``n_b``, ``mean_a``,
        ``mean_b``, ``difference`` (``mean_a - mean_b``), ``ci_low``, ``ci_high`` (its
        bootstrap interval), ``p_value`` (:func:`permutation_pvalue`), ``p_min`` (the smallest
        p-value these ``n`` allow, :func:`smallest_pvalue`) and ``verdict``, a sentence. With
        fewer than two replicates in a group, interval and p-value are null and the verdict
        says so.
    """
    where = "compare"
    _check_stats(confidence, n_boot, seed, where)
    check_int("n_permutations", n_permutations, 99, 10_000_000, where=where)
    m = parse_metric(metric)
    ep = _epochs_arg(epochs, where)
    table = metric_table(runs, [m], split=split, tree=tree)
    groups = sorted(set(table["group"].to_list()))
    if len(groups) < 2:
        raise invalid(
            "runs",
            "runs of at least two groups (variants) to compare",
            groups,
            where=where,
            fix="Pass an experiment with several variants, or several experiment folders.",
        )
    chosen = _choose_epochs(table, ep, where)
    alpha = 1 - confidence
    rows = []
    for epoch in chosen:
        cell = table.filter(pl.col("epoch") == epoch)
        values = {g: cell.filter(pl.col("group") == g)[m.name].to_numpy() for g in groups}
        for ga, gb in combinations(groups, 2):
            a, b = values[ga], values[gb]
            diff = float(a.mean() - b.mean())
            lo, hi = bootstrap_difference_ci(a, b, confidence=confidence, n_boot=n_boot, seed=seed)
            p = permutation_pvalue(a, b, n_permutations=n_permutations, seed=seed)
            pmin = smallest_pvalue(a.size, b.size, n_permutations=n_permutations)
            rows.append(
                {
                    "metric": m.name,
                    "split": split,
                    "tree": tree,
                    "epoch": int(epoch),
                    "group_a": ga,
                    "group_b": gb,
                    "n_a": int(a.size),
                    "n_b": int(b.size),
                    "mean_a": float(a.mean()),
                    "mean_b": float(b.mean()),
                    "difference": diff,
                    "ci_low": None if math.isnan(lo) else lo,
                    "ci_high": None if math.isnan(hi) else hi,
                    "p_value": None if math.isnan(p) else p,
                    # No p-value with one replicate in a group, so no smallest one either.
                    "p_min": pmin if min(a.size, b.size) > 1 else None,
                    "verdict": _verdict(ga, gb, a.size, b.size, diff, p, pmin, alpha),
                }
            )
    return pl.DataFrame(rows, schema=_COMPARE_SCHEMA)


def sensitivity(
    runs: PathLike | Iterable[PathLike],
    metric: str | Metric = "total_persistence",
    *,
    k: int | Sequence[int] = (10, 20, 40),
    features: str | Sequence[str] = ("raw",),
    pca_components: int = 50,
    **options: Any,
) -> pl.DataFrame:
    """:func:`compare` on the topology of each kNN graph setting: every ``k`` with every
    ``features`` (computed before by ``sampletopo topology RUNS --k 10 20 40 --features raw
    pca``, with ``--pca-components N`` on data of fewer than 50 features; see :func:`sampletopo.runs.graph_runs` for where each setting's results lie).

    ``options`` are :func:`compare`'s (``split``, ``tree``, ``epochs``, ``confidence``,
    ``n_boot``, ``n_permutations``, ``seed``); each setting's rows are exactly what
    ``compare(graph_runs(runs, k=K, features=F), metric, **options)`` returns.

    Every setting is checked to be stored in every run before any is compared: a missing one
    is a :class:`RunFolderError` naming it and listing the settings stored.

    Returns
    -------
    polars.DataFrame
        ``k``, ``features``, ``pca_components`` (the PCA size of ``features="pca"`` rows, null
        on others), then :func:`compare`'s columns; rows by setting in the order given, then as
        :func:`compare` orders them.
    """
    import inspect

    from sampletopo.runs import check_features, check_k, graph_runs, require_graph_setting

    where = "sensitivity"
    ks = [k] if isinstance(k, int) else list(k)
    fs = [features] if isinstance(features, (str, os.PathLike)) else list(features)
    for i, kk in enumerate(ks):
        check_k(kk, where=where)
        if kk in ks[:i]:
            raise invalid("k", "distinct neighbour counts", ks, where=where)
    if not ks or not fs:
        raise invalid("k" if not ks else "features", "one or more values", [], where=where)
    fs = [check_features(f, where=where, exists=False) for f in fs]
    pca = check_int("pca_components", pca_components, 1, None, where=where)
    split = options.get("split", inspect.signature(compare).parameters["split"].default)
    check_split(split, where=where)
    paths = [runs] if isinstance(runs, (str, os.PathLike)) else list(runs)
    for f in fs:  # every setting before the first comparison
        for kk in ks:
            require_graph_setting(paths, k=kk, features=f, pca_components=pca, split=split)
    parts = []
    for f in fs:
        for kk in ks:
            keyed = graph_runs(paths, k=kk, features=f, pca_components=pca, label_clashes=True)
            table = compare(keyed, metric, **options)
            parts.append(
                table.select(
                    pl.lit(kk, dtype=pl.Int64).alias("k"),
                    pl.lit(f).alias("features"),
                    pl.lit(pca if f == "pca" else None, dtype=pl.Int64).alias("pca_components"),
                    pl.all(),
                )
            )
    return pl.concat(parts)


_COMPARE_SCHEMA: dict[str, Any] = {
    "metric": pl.String,
    "split": pl.String,
    "tree": pl.String,
    "epoch": pl.Int64,
    "group_a": pl.String,
    "group_b": pl.String,
    "n_a": pl.Int64,
    "n_b": pl.Int64,
    "mean_a": pl.Float64,
    "mean_b": pl.Float64,
    "difference": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "p_value": pl.Float64,
    "p_min": pl.Float64,
    "verdict": pl.String,
}


def _verdict(
    ga: str, gb: str, n_a: int, n_b: int, diff: float, p: float, pmin: float, alpha: float
) -> str:
    if n_a < 2 or n_b < 2:
        few = [f"{g!r} has {n} replicate" for g, n in ((ga, n_a), (gb, n_b)) if n < 2]
        return f"{' and '.join(few)}: no interval or p-value (train more seeds, --seed 0 1 2)"
    if p < alpha:
        side = "higher" if diff > 0 else "lower"
        return f"{ga} {side} than {gb} (p = {p:.3g} < {alpha:.3g})"
    if pmin >= alpha:
        return (
            f"no verdict possible: with {n_a} and {n_b} replicates the smallest p-value is "
            f"{pmin:.3g} (>= {alpha:.3g}); train more seeds"
        )
    return f"no clear difference (p = {p:.3g})"
