"""The run folder: where everything of a run and of an experiment lies, known in one place.

A *run* (variant) folder holds what one training run recorded and what was computed from it; an
*experiment* folder holds runs and what they share::

    <experiment>/config.toml                        the experiment's settings (``sampletopo train``)
    <experiment>/graphs/knn-*.npz                   kNN graph cache, shared by its runs
    <experiment>/datasets/<name>-<hash>.npz         in-memory data saved once for its runs
    <experiment>/landscapes/<run>-epoch=NNNN.npz    parameter-space landscapes of its runs
    <experiment>/figures/, <experiment>/report/     default folders of `figures` and `report`
    <run>/config.toml                               the run's resolved settings (data, model)
    <run>/.sampletopo.lock                          the writer's lock (see sampletopo._folders)
    <run>/losses/manifest.json                      dataset, mode, per split size + fingerprint
    <run>/losses/<split>/epoch=NNNN.parquet         one loss table per split and epoch
    <run>/losses/schedule.parquet                   learning rate per epoch and param group
    <run>/checkpoints/epoch=NNNN.pt                 checkpoints of ``sampletopo train``
    <run>/topology/meta.json                        kNN graph settings per split
    <run>/topology/<split>/epoch=NNNN.parquet       join and split diagrams per split and epoch
    <run>/topology/summary.parquet                  summaries (sampletopo.analysis.summarize)
    <run>/topology/wasserstein.parquet              distances to a reference epoch
    <run>/topology/k=10,features=raw/...            the same files for another graph setting
    <run>/samples/<split>-epoch=NNNN.parquet        regions tables (``sampletopo samples``)

What is here: :class:`Run` and :class:`Experiment`, small frozen types that know every path,
list the recorded (loss) and computed (diagram) epochs, read and write the run config and the
manifest through the checked readers and atomic writers, and rebuild a run's dataset and model;
:func:`find_runs` (a run folder, or the runs of an experiment folder); the one epoch file-name
convention (:func:`epoch_tag`, :func:`parse_epoch`); the schemas of the loss and diagram tables;
``SPLITS`` and ``TREES``. A :class:`Report` folder knows where a report's figures go.

Graph settings. Topology results are keyed by the kNN graph they were computed on (its k,
features and PCA components, kept in ``meta.json``). ``topology/`` itself holds the setting
first computed for the run, as sampletopo has always written it (runs computed before hold
theirs there and read as before); every other setting gets its own sub-folder
``topology/<setting>/`` (:func:`graph_setting`: ``k=10,features=raw``,
``k=20,features=pca,pca=30``) with the same files, so several settings coexist and computing
one never touches another. A :class:`Run` carries the setting whose files it names
(:meth:`Run.for_graph` finds it; ``setting=""`` is ``topology/`` itself, what a plain
``Run(path)`` reads).

Names and places. A folder is named and placed by its path as given, made absolute without
following symbolic links: a run kept on another disk and linked into an experiment belongs to
that experiment (its kNN graph cache, landscapes and saved data sets are the experiment's) and is
called by its link's name. Paths of files inside a run are built on the path as given.

What is not here: recording (:mod:`sampletopo.recorder`), computing topology
(:mod:`sampletopo.analysis`) and reading tables for analysis (:mod:`sampletopo.readers`). The
config's contents are checked in :mod:`sampletopo._runconfig`. The on-disk layout is the one
sampletopo has always written: folders written before read the same.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from sampletopo._errors import RunFolderError
from sampletopo._folders import LOCK_NAME, check_inside
from sampletopo._io import write_atomic
from sampletopo._names import SPLITS, TREES
from sampletopo._runconfig import (
    DATA_ENTRIES_FIX,
    DATA_KEYS,
    check_run_config,
    dataset_from_config,
    model_from_config,
    model_signature,
    read_toml,
    warn_foreign_data_root,
    write_json,
    write_toml,
)
from sampletopo._runfiles import DamagedFileError, RowsCheck, read_json, read_parquet
from sampletopo._validation import check_int, invalid

if TYPE_CHECKING:
    import torch
    from torch import nn

    from sampletopo.data import Dataset

__all__ = [
    "DIAGRAM_SCHEMA",
    "PathLike",
    "Experiment",
    "LOSS_SCHEMA",
    "MARGIN_COLUMN",
    "SCHEDULE_SCHEMA",
    "RESERVED_NAMES",
    "Report",
    "Run",
    "SPLITS",
    "TABLE_SUFFIX",
    "TREES",
    "as_run",
    "checkpoint_name",
    "data_config",
    "diagram_rows",
    "loss_rows",
    "epoch_tag",
    "find_runs",
    "GRAPH_DEFAULTS",
    "check_features",
    "check_k",
    "graph_flags",
    "graph_label",
    "graph_runs",
    "graph_setting",
    "require_graph_setting",
    "load_run_model",
    "missing_diagrams_error",
    "parse_epoch",
    "run_labels",
    "runs_in",
    "schedule_drops",
    "schedule_rows",
]

#: A folder given to sampletopo: a ``str``, a :class:`~pathlib.Path` or a :class:`Run` (which is
#: path-like).
PathLike = str | os.PathLike[str]

# ---------------------------------------------------------------------------------------------
# Names: every file and folder name of the layout, and the one epoch pattern

_CONFIG = "config.toml"
_LOSSES = "losses"
_MANIFEST = "manifest.json"
_SCHEDULE = "schedule.parquet"
_CHECKPOINTS = "checkpoints"
_TOPOLOGY = "topology"
_META = "meta.json"
_SUMMARY = "summary.parquet"
_WASSERSTEIN = "wasserstein.parquet"
_SAMPLES = "samples"
_AUDIT = "audit"
_GRAPHS = "graphs"
_DATASETS = "datasets"
_LANDSCAPES = "landscapes"
_FIGURES = "figures"
_REPORT = "report"
_TABLE = ".parquet"
TABLE_SUFFIX = _TABLE  # every table sampletopo writes is Parquet
_CHECKPOINT = ".pt"
_NPZ = ".npz"
_PARTIAL = ".partial.npz"  # a landscape grid's resume file (sampletopo.landscape._grid)

# What an experiment folder holds besides its runs: no variant may take one of these names.
RESERVED_NAMES = (_CONFIG, _DATASETS, _FIGURES, _GRAPHS, _LANDSCAPES, _REPORT)

# The one file-name pattern of the layout: ``epoch=NNNN`` (at least 4 digits) and a suffix.
_EPOCH_RE = re.compile(r"^epoch=(\d+)(\.[A-Za-z0-9]+)$")
# What sampletopo._io.write_atomic leaves of an epoch file when its writer is killed.
_EPOCH_TEMPORARY = ".epoch=*.tmp"


def epoch_tag(epoch: int) -> str:
    """``epoch=NNNN``: how an epoch is written in every file name (zero-padded to 4 digits).

    >>> epoch_tag(7), epoch_tag(12345)
    ('epoch=0007', 'epoch=12345')
    """
    return f"epoch={int(epoch):04d}"


def parse_epoch(name: str, suffix: str) -> int | None:
    """The epoch of a file named ``epoch=NNNN<suffix>``, ``None`` for any other name.

    >>> parse_epoch("epoch=0012.parquet", ".parquet"), parse_epoch("epoch=0012.pt", ".parquet")
    (12, None)
    """
    m = _EPOCH_RE.match(name)
    return int(m.group(1)) if m and m.group(2) == suffix else None


def _epoch_files(folder: Path, suffix: str) -> dict[int, Path]:
    """``epoch -> file`` of the ``epoch=NNNN<suffix>`` files in ``folder``, by epoch."""
    if not folder.is_dir():
        return {}
    out = {}
    for p in folder.iterdir():
        e = parse_epoch(p.name, suffix)
        if e is not None:
            out[e] = p
    return dict(sorted(out.items()))


#: The default graph setting: its results lie in ``topology/`` itself (see the module docstring).
GRAPH_DEFAULTS: dict[str, Any] = {"k": 20, "features": "raw", "pca_components": 50}


def graph_setting(
    *,
    k: int = GRAPH_DEFAULTS["k"],
    features: str | os.PathLike[str] = GRAPH_DEFAULTS["features"],
    pca_components: int = GRAPH_DEFAULTS["pca_components"],
) -> str:
    """The sub-folder of ``topology/`` a kNN graph setting's results go to when ``topology/``
    itself holds another setting (see the module docstring). Features read from a ``.npy``
    file are named by a hash of the file's absolute path.

    >>> graph_setting(k=10), graph_setting(features="pca", pca_components=30)
    ('k=10,features=raw', 'k=20,features=pca,pca=30')
    """
    feats = str(features)
    if feats not in ("raw", "standardized", "pca"):
        digest = hashlib.sha256(os.path.abspath(feats).encode()).hexdigest()[:12]
        feats = f"file-{digest}"
    name = f"k={int(k)},features={feats}"
    if feats == "pca" and int(pca_components) != GRAPH_DEFAULTS["pca_components"]:
        name += f",pca={int(pca_components)}"
    return name


def _meta_matches(entry: Any, k: int, features: str, pca_components: int) -> bool:
    """Whether one split's ``meta.json`` entry records this graph setting (``pca_components``
    is stored only for PCA features with other than the default 50 components)."""
    if not isinstance(entry, dict):
        return False
    pca = int(pca_components) if features == "pca" else GRAPH_DEFAULTS["pca_components"]
    return (
        entry.get("k") == int(k)
        and entry.get("features") == str(features)
        and entry.get("pca_components", GRAPH_DEFAULTS["pca_components"]) == pca
    )


_FEATURE_NAMES = ("raw", "standardized", "pca")

#: A kNN graph setting as the helpers below take it: ``(k, features, pca_components)``; the PCA
#: size means something only with ``features == "pca"``.
GraphSetting = tuple[int, str, int]


def check_k(value: Any, *, where: str | None, kind: str = "parameter", name: str = "k") -> int:
    """``value`` as the neighbours per sample of a kNN graph: an int of 1 or more (the upper
    bound, the split's size minus one, is checked where the split is known)."""
    return check_int(
        name,
        value,
        1,
        None,
        where=where,
        kind=kind,
        fix="k is the number of neighbours of each sample in the kNN graph: use 1 or more "
        "(20 in the thesis).",
    )


def check_features(
    value: Any,
    *,
    where: str | None,
    kind: str = "parameter",
    name: str = "features",
    exists: bool = True,
) -> str:
    """``value`` as the features of a kNN graph: ``raw``, ``standardized``, ``pca`` or the path
    of a ``.npy`` file (one that exists, with ``exists``; a setting already computed from a
    file may be read after the file is gone).

    >>> check_features("pca", where=None)
    'pca'
    """
    text = str(value)
    if text in _FEATURE_NAMES or (text.endswith(".npy") and (not exists or Path(text).is_file())):
        return text
    gone = text.endswith(".npy")
    raise invalid(
        name,
        "raw, standardized, pca or the path of an existing .npy file",
        text,
        where=where,
        kind=kind,
        fix="No file is there: check the path."
        if gone
        else "Save your own features with numpy.save(path, array) and pass the file's path.",
    )


def graph_label(
    k: int, features: str | os.PathLike[str], pca_components: int = GRAPH_DEFAULTS["pca_components"]
) -> str:
    """A graph setting as messages, tables and captions name it: unlike :func:`graph_setting`
    (a folder name), PCA features always carry their size and a file is named by its path.

    >>> graph_label(10, "pca"), graph_label(20, "raw", 7)
    ('k=10,features=pca,pca=50', 'k=20,features=raw')
    """
    name = f"k={int(k)},features={features}"
    return name + (f",pca={int(pca_components)}" if str(features) == "pca" else "")


def graph_flags(
    k: int, features: str | os.PathLike[str], pca_components: int = GRAPH_DEFAULTS["pca_components"]
) -> str:
    """The command-line flags of a graph setting (``--pca-components`` only with PCA features).

    >>> graph_flags(10, "pca", 20)
    '--k 10 --features pca --pca-components 20'
    """
    flags = f"--k {int(k)} --features {features}"
    return flags + (f" --pca-components {int(pca_components)}" if str(features) == "pca" else "")


def _entry_setting(entry: Any) -> GraphSetting | None:
    """The graph setting one split's ``meta.json`` entry records (``None``: not one)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("k"), int):
        return None
    feats = entry.get("features")
    if not isinstance(feats, str) or not feats:
        return None
    pca = entry.get("pca_components", GRAPH_DEFAULTS["pca_components"])
    return int(entry["k"]), feats, int(pca) if isinstance(pca, int) else 0


def _setting_of_name(name: str) -> GraphSetting | None:
    """The graph setting of a ``topology/<name>/`` folder (:func:`graph_setting` read back; a
    features file stays ``file-<hash>``), ``None`` for another name."""
    parts = dict(p.split("=", 1) for p in name.split(",") if "=" in p)
    if not parts.get("k", "").isdigit() or "features" not in parts:
        return None
    pca = parts.get("pca", str(GRAPH_DEFAULTS["pca_components"]))
    return int(parts["k"]), parts["features"], int(pca) if pca.isdigit() else 0


def _missing_setting(run: Run, asked: GraphSetting | None, split: str | None) -> RunFolderError:
    """The error of a run without the stored diagrams of a graph setting: it names the setting
    asked, lists those stored for the run and gives the flags of each way out."""
    what = f"{split} diagrams" if split else "diagrams"
    stored = Run(run.path).graph_settings()
    listing = "; ".join(graph_label(*s) for s in stored) or "none"
    if asked is None:
        return RunFolderError(
            f"Run {run.name} has no {what} (stored graph settings: {listing}). Run `sampletopo "
            f"topology {run.path}` first."
        )
    k, features, pca = asked
    default = features == "pca" and pca == GRAPH_DEFAULTS["pca_components"]
    note = f" (--pca-components defaults to {pca})" if default else ""
    msg = (
        f"Run {run.name} has no {what} of the graph setting asked, {graph_label(*asked)}{note}; "
        f"stored for it: {listing}."
    )
    compute = f"`sampletopo topology {run.path} {graph_flags(*asked)}`"
    if asked in stored and split is not None:
        return RunFolderError(
            f"{msg} Compute its {split} diagrams with {compute[:-1]} --splits {split}`."
        )
    if not stored:
        return RunFolderError(f"{msg} Compute them with {compute}.")
    near = min(stored, key=lambda s: (s[1] != features, abs(s[0] - k), s[2] != pca))
    return RunFolderError(
        f"{msg} Read a stored one with {graph_flags(*near)} (for {graph_label(*near)}), or "
        f"compute this one with {compute}."
    )


def require_graph_setting(
    runs: Iterable[PathLike],
    *,
    k: int = GRAPH_DEFAULTS["k"],
    features: str | os.PathLike[str] = GRAPH_DEFAULTS["features"],
    pca_components: int = GRAPH_DEFAULTS["pca_components"],
    split: str | None = None,
) -> None:
    """Refuse, before anything is read, runs (run or experiment folders) without stored
    diagrams of this graph setting (of ``split``, or of any split when ``None``): the error names the setting asked, lists the
    settings stored for the run and suggests the flags of a stored one.

    Raises
    ------
    RunFolderError
        A run holds no such diagrams.
    """
    feats = str(features)
    for run in (r for p in runs for r in find_runs(p)):
        keyed = Run(run.path).for_graph(k=k, features=feats, pca_components=pca_components)
        meta, why = keyed.read_meta()
        splits = [split] if split is not None else list(SPLITS)
        if not any(
            why is None
            and _meta_matches(meta.get(s), k, feats, pca_components)
            and keyed.diagram_epochs(s)
            for s in splits
        ):
            # The PCA size is part of the setting only with PCA features (as in meta.json).
            pca = int(pca_components) if feats == "pca" else GRAPH_DEFAULTS["pca_components"]
            raise _missing_setting(run, (int(k), feats, pca), split)


def missing_diagrams_error(run: Run, split: str) -> RunFolderError:
    """The error of a run (keyed to a graph setting, :func:`graph_runs`) without ``split``
    diagrams: the setting asked is read back from the run's setting folder name (or from
    ``topology/meta.json`` when the run reads ``topology/`` itself)."""
    asked = _setting_of_name(run.setting) if run.setting else None
    if asked is None and not run.setting:
        meta, why = run.read_meta()
        entries = [_entry_setting(v) for v in meta.values()] if why is None else []
        asked = next((e for e in entries if e is not None), None)
    return _missing_setting(run, asked, split)


def _absolute(path: str | Path) -> Path:
    # Lexically normalized ("." has a name, "exp/.." is "."'s parent), links not followed.
    return Path(os.path.abspath(path))


# ---------------------------------------------------------------------------------------------
# Table schemas and how each kind of file is repaired

LOSS_SCHEMA: dict[str, Any] = {
    "epoch": pl.Int32,
    "split": pl.String,
    "sample": pl.Int64,
    "label": pl.Int64,
    "pred": pl.Int64,
    "loss": pl.Float64,
    "correct": pl.Boolean,
}
"""Columns of a loss table: one row per sample of the split, in the split's stable order."""

MARGIN_COLUMN = "margin"
"""An optional, nullable Float64 column of loss tables: the true-class logit minus the largest
other logit (written by eval-mode recording since the audit, :mod:`sampletopo.audit`; tables
recorded before, or from a training pass, have none). Not in :data:`LOSS_SCHEMA`, so tables
without it read back as before."""

DIAGRAM_SCHEMA: dict[str, Any] = {
    "split": pl.String,
    "tree": pl.String,
    "epoch": pl.Int32,
    "birth": pl.Float64,
    "death": pl.Float64,
    "persistence": pl.Float64,
    "birth_sample": pl.Int64,
    "death_sample": pl.Int64,
}
"""Columns of a diagram table: the join and split pairs of one split and epoch."""

SCHEDULE_SCHEMA: dict[str, Any] = {
    "epoch": pl.Int32,
    "group": pl.Int32,
    "lr": pl.Float64,
}
"""Columns of the schedule table: the learning rate each parameter group (numbered from 0 in
the optimizer's order) trained epoch ``epoch`` with (epochs from 1; epoch 0, the initial model,
trains with none). One row per epoch and group, sorted by epoch and group."""

LOSS_FIX = (
    "Record that epoch again: run the same `sampletopo train` or `sampletopo record` command "
    "(or restart your LossRecorder loop from before that epoch); it moves the damaged file "
    "aside and records the epoch anew. Or delete the file to go on without that epoch."
)
MANIFEST_FIX = (
    "It records which data the run's loss tables hold. Restore it from a copy, or delete it: "
    "the next recording writes a new one from the data it is given, and until then the tables "
    "are not checked against the data."
)
SCHEDULE_FIX = (
    "It records the learning rate of each epoch; it is rewritten whole at every recorded epoch. "
    "Delete it (figures then mark the config's milestones, if any), or restore it from a copy."
)
DIAGRAM_FIX = (
    "Diagram tables are computed from the loss tables: run `sampletopo topology` on this run "
    "again, which recomputes damaged ones."
)


def _same(df: pl.DataFrame, column: str, value: Any, where: str) -> str | None:
    """Why the column does not hold only ``value`` (the value its file's place gives it)."""
    other = df.filter(pl.col(column) != value)[column].unique().sort().to_list()
    if other:
        return f"its {column!r} column holds {other[:3]} where its {where} says {value!r}"
    return None


def loss_rows(split: str, epoch: int, n: int | None) -> RowsCheck:
    """What the rows of the loss table of ``split`` and ``epoch`` must say: that split and epoch
    (the file's folder and name), and each sample ``0 .. n - 1`` exactly once (``n`` of the
    manifest; ``None``: as many as there are rows)."""

    def problem(df: pl.DataFrame) -> str | None:
        why = _same(df, "split", split, "folder") or _same(df, "epoch", epoch, "file name")
        if why is not None:
            return why
        ids = np.sort(df["sample"].to_numpy())
        size = df.height if n is None else n
        if ids.shape[0] != size or not np.array_equal(ids, np.arange(size)):
            return f"it does not hold samples 0..{size - 1} once each"
        return None

    return RowsCheck(("split", "epoch", "sample"), problem)


def schedule_rows() -> RowsCheck:
    """What the rows of the schedule table must say: epochs from 1, groups from 0, each
    (epoch, group) once, the groups of every epoch ``0 .. G - 1``, finite rates >= 0."""

    def problem(df: pl.DataFrame) -> str | None:
        if df.height and (int(df["epoch"].min()) < 1 or int(df["group"].min()) < 0):  # type: ignore[arg-type]
            return "it holds an epoch below 1 or a group below 0"
        if df.select(pl.struct("epoch", "group").is_duplicated().any()).item():
            return "it holds an (epoch, group) twice"
        lr = df["lr"].to_numpy()
        if not (np.isfinite(lr) & (lr >= 0)).all():
            return "it holds a learning rate that is negative, NaN or infinite"
        counts = df.group_by("epoch").agg(n=pl.len(), top=pl.col("group").max())
        if counts.filter(pl.col("n") != pl.col("top") + 1).height:
            return "an epoch's groups are not numbered 0 .. G - 1"
        return None

    return RowsCheck(("epoch", "group", "lr"), problem)


def schedule_drops(schedule: pl.DataFrame) -> list[int]:
    """The epochs ``m`` after which the learning rate changes: some group's rate of epoch
    ``m + 1`` differs from its rate of epoch ``m`` (both recorded), i.e. ``m`` is the last epoch
    at the old rate, as the ``milestones`` of ``sampletopo train`` count. Rates are compared
    exactly (a schedule that changes every epoch, cosine say, gives every epoch).

    >>> t = pl.DataFrame({"epoch": [1, 2, 3, 4], "group": [0] * 4, "lr": [.1, .1, .01, .01]})
    >>> schedule_drops(t)
    [2]
    """
    out: set[int] = set()
    for _, part in schedule.sort("epoch").group_by("group"):
        ep = part["epoch"].to_numpy()
        lr = part["lr"].to_numpy()
        step = (ep[1:] == ep[:-1] + 1) & (lr[1:] != lr[:-1])
        out |= {int(e) for e in ep[:-1][step]}
    return sorted(out)


def diagram_rows(split: str, epoch: int) -> RowsCheck:
    """What the rows of the diagram table of ``split`` and ``epoch`` must say: that split and
    epoch, and both trees, each with at least one essential pair (every connected component
    has one, so a table without is cut short or made by hand)."""

    def problem(df: pl.DataFrame) -> str | None:
        why = _same(df, "split", split, "folder") or _same(df, "epoch", epoch, "file name")
        if why is not None:
            return why
        other = sorted(set(df["tree"].unique().to_list()) - set(TREES))
        if other:
            return f"its 'tree' column holds {other}, not only {list(TREES)}"
        essential = df.filter(pl.col("death").is_infinite())["tree"].unique().to_list()
        missing = [t for t in TREES if t not in essential]
        if missing:
            return f"it lacks the {' and '.join(missing)} tree's rows (no essential pair)"
        return None

    return RowsCheck(("split", "epoch", "tree", "death"), problem)


def _manifest_problem(man: Any) -> str | None:
    if not isinstance(man, dict):
        return f"it holds a JSON {type(man).__name__}, not the manifest's object"
    splits = man.get("splits")
    if not isinstance(splits, dict):
        return "its 'splits' entry is missing or not an object"
    for s, info in splits.items():
        n = info.get("n") if isinstance(info, dict) else None
        if (
            not isinstance(info, dict)
            or not isinstance(info.get("fingerprint"), str)
            or isinstance(n, bool)
            or not isinstance(n, int)
            or n < 0
        ):
            return f"its entry for split {s!r} is not {{'n': <int>, 'fingerprint': <str>}}"
    if man.get("mode") not in ("eval", "train_pass"):
        return f"its 'mode' entry is {man.get('mode')!r}, not 'eval' or 'train_pass'"
    if "model" in man and not isinstance(man["model"], dict):
        return "its 'model' entry is not an object"
    return None


# ---------------------------------------------------------------------------------------------
# An experiment folder


@dataclass(frozen=True, init=False)
class Experiment:
    """A folder of run folders, and what its runs share.

    Parameters
    ----------
    path : str or Path
        The experiment folder (as given; see the module docstring for names and places).
    """

    path: Path

    def __init__(self, path: PathLike) -> None:
        object.__setattr__(self, "path", Path(path))

    @property
    def name(self) -> str:
        """The folder's name."""
        return _absolute(self.path).name

    @property
    def config_file(self) -> Path:
        """``config.toml``: base settings and variants of ``sampletopo train``."""
        return self.path / _CONFIG

    @property
    def graphs_dir(self) -> Path:
        """``graphs/``: the kNN graph cache its runs share."""
        return _absolute(self.path) / _GRAPHS

    @property
    def datasets_dir(self) -> Path:
        """``datasets/``: in-memory data sets saved once for its runs."""
        return _absolute(self.path) / _DATASETS

    @property
    def landscapes_dir(self) -> Path:
        """``landscapes/``: the landscapes of its runs."""
        return _absolute(self.path) / _LANDSCAPES

    @property
    def figures_dir(self) -> Path:
        """``figures/``: where ``sampletopo figures`` draws by default."""
        return self.path / _FIGURES

    @property
    def report_dir(self) -> Path:
        """``report/``: where ``sampletopo report`` writes by default."""
        return self.path / _REPORT

    def landscape_files(self) -> list[Path]:
        """The stored landscapes (``*.npz``, resume files left out), sorted by name."""
        folder = self.landscapes_dir
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.glob("*" + _NPZ) if not p.name.endswith(_PARTIAL))

    def saved_dataset_file(self, name: str, tag: str) -> Path:
        """``datasets/<name>-<tag>.npz``; ``name`` is made a safe file name first."""
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "data"
        folder = self.datasets_dir
        return check_inside(folder / f"{safe}-{tag}{_NPZ}", folder, what="saved dataset")

    def run(self, name: str) -> Run:
        """The run folder ``name`` of this experiment (checked to stay inside it)."""
        return Run(check_inside(self.path / name, self.path, what=f"run folder {name!r}"))

    def runs(self) -> list[Run]:
        """Its run folders (sub-folders holding a ``losses`` folder), sorted by name."""
        if not self.path.is_dir():
            return []
        return [Run(p) for p in sorted(self.path.iterdir()) if (p / _LOSSES).is_dir()]

    def folders_with_config(self) -> list[str]:
        """Names of its sub-folders that hold a ``config.toml`` (runs, recorded or not)."""
        return sorted(p.name for p in self.path.iterdir() if (p / _CONFIG).is_file())


# ---------------------------------------------------------------------------------------------
# A run folder


@dataclass(frozen=True, init=False)
class Run:
    """One run (variant) folder: every path in it, its epochs, its config, data and model.

    Parameters
    ----------
    path : str or Path
        The run folder, as given; file paths are built on it, the name and experiment come from
        it made absolute (see the module docstring).

    Examples
    --------
    >>> run = Run("runs/lr-study/lr=0.1")
    >>> run.name, run.loss_file("val", 3).as_posix()
    ('lr=0.1', 'runs/lr-study/lr=0.1/losses/val/epoch=0003.parquet')
    >>> run.experiment.graphs_dir.name, run.landscape_file(20).name
    ('graphs', 'lr=0.1-epoch=0020.npz')
    """

    path: Path
    setting: str

    def __init__(self, path: PathLike, *, setting: str = "") -> None:
        object.__setattr__(self, "path", Path(path))
        object.__setattr__(self, "setting", str(setting))

    def with_setting(self, setting: str) -> Run:
        """The same run, naming the topology files in ``topology/<setting>/`` (``""``:
        ``topology/`` itself); :meth:`for_graph` finds the folder of a graph setting."""
        return Run(self.path, setting=setting)

    def __str__(self) -> str:
        return str(self.path)

    def __fspath__(self) -> str:
        # A Run is accepted wherever a run folder's path is (Path(run), open(...), polars).
        return str(self.path)

    # -- where things are ----------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The run's name: its folder's name (what tables put in their ``run`` column)."""
        return _absolute(self.path).name

    @property
    def experiment(self) -> Experiment:
        """The experiment folder holding this run (its parent folder)."""
        return Experiment(_absolute(self.path).parent)

    @property
    def config_file(self) -> Path:
        """``config.toml``: the run's resolved settings."""
        return self.path / _CONFIG

    @property
    def lock_file(self) -> Path:
        """The lock file of the run folder's writer (see :mod:`sampletopo._folders`)."""
        return self.path / LOCK_NAME

    @property
    def losses_dir(self) -> Path:
        """``losses/``: the recorded loss tables and their manifest."""
        return self.path / _LOSSES

    @property
    def manifest_file(self) -> Path:
        """``losses/manifest.json``: dataset, mode, per split size and fingerprint, model."""
        return self.losses_dir / _MANIFEST

    @property
    def schedule_file(self) -> Path:
        """``losses/schedule.parquet``: the learning rate of each epoch and parameter group."""
        return self.losses_dir / _SCHEDULE

    def loss_dir(self, split: str) -> Path:
        """``losses/<split>/``."""
        return self.losses_dir / split

    def loss_file(self, split: str, epoch: int) -> Path:
        """``losses/<split>/epoch=NNNN.parquet``: the loss table of ``split`` at ``epoch``."""
        return self.loss_dir(split) / (epoch_tag(epoch) + _TABLE)

    @property
    def checkpoints_dir(self) -> Path:
        """``checkpoints/``: what ``sampletopo train`` saves."""
        return self.path / _CHECKPOINTS

    def checkpoint_file(self, epoch: int) -> Path:
        """``checkpoints/epoch=NNNN.pt``."""
        return checkpoint_name(self.checkpoints_dir, epoch)

    @property
    def topology_dir(self) -> Path:
        """``topology/``: diagrams, their graph settings, summaries; ``topology/<setting>/``
        for a run naming another setting's files (see the module docstring)."""
        top = self.path / _TOPOLOGY
        return top / self.setting if self.setting else top

    def for_graph(
        self,
        *,
        k: int = GRAPH_DEFAULTS["k"],
        features: str | os.PathLike[str] = GRAPH_DEFAULTS["features"],
        pca_components: int = GRAPH_DEFAULTS["pca_components"],
    ) -> Run:
        """The run naming the topology files of this graph setting: ``topology/`` itself when
        it holds this setting or none yet (or its ``meta.json`` is damaged: the computation
        deals with that), else ``topology/<graph_setting(...)>/``."""
        top = Run(self.path)
        meta, why = top.read_meta()
        entries = [v for v in meta.values()] if why is None else []
        if why is not None or not entries:
            return top
        if all(_meta_matches(v, k, str(features), pca_components) for v in entries):
            return top
        return Run(
            self.path, setting=graph_setting(k=k, features=features, pca_components=pca_components)
        )

    def topology_settings(self) -> list[str]:
        """The graph settings with stored results: ``""`` (``topology/`` itself) when it holds
        a ``meta.json``, then the sub-folders of ``topology/`` holding one, sorted."""
        top = self.path / _TOPOLOGY
        out = [""] if (top / _META).is_file() else []
        if top.is_dir():
            out += sorted(p.name for p in top.iterdir() if (p / _META).is_file())
        return out

    def graph_settings(self) -> list[GraphSetting]:
        """``(k, features, pca_components)`` of every graph setting with stored results, in
        the order of :meth:`topology_settings` (a setting whose ``meta.json`` cannot be read is
        left out)."""
        out: list[GraphSetting] = []
        for name in self.topology_settings():
            meta, why = self.with_setting(name).read_meta()
            entries = [_entry_setting(v) for v in meta.values()] if why is None else []
            found = next((e for e in entries if e is not None), None)
            if found is not None and found not in out:
                out.append(found)
        # topology/ itself first (the setting read by default), then by features, k, PCA size.
        order = {f: i for i, f in enumerate(_FEATURE_NAMES)}
        return out[:1] + sorted(out[1:], key=lambda s: (order.get(s[1], 3), s[1], s[0], s[2]))

    @property
    def meta_file(self) -> Path:
        """``topology/meta.json``: the kNN graph settings of each split's diagrams."""
        return self.topology_dir / _META

    def diagram_dir(self, split: str) -> Path:
        """``topology/<split>/``."""
        return self.topology_dir / split

    def diagram_file(self, split: str, epoch: int) -> Path:
        """``topology/<split>/epoch=NNNN.parquet``: join and split diagrams of one epoch."""
        return self.diagram_dir(split) / (epoch_tag(epoch) + _TABLE)

    @property
    def summary_file(self) -> Path:
        """``topology/summary.parquet``."""
        return self.topology_dir / _SUMMARY

    @property
    def wasserstein_file(self) -> Path:
        """``topology/wasserstein.parquet``."""
        return self.topology_dir / _WASSERSTEIN

    @property
    def samples_dir(self) -> Path:
        """``samples/``: regions tables and their figures."""
        return self.path / _SAMPLES

    def regions_file(self, split: str, epoch: int) -> Path:
        """``samples/<split>-epoch=NNNN.parquet``: the regions table of ``sampletopo samples``."""
        return self.samples_dir / f"{split}-{epoch_tag(epoch)}{_TABLE}"

    def regions_files(self) -> list[Path]:
        """The regions tables in ``samples/`` (``<split>-epoch=NNNN.parquet``; not the tables
        of the figures beside them, :func:`figure_table_file`), sorted by name."""
        folder = self.samples_dir
        if not folder.is_dir():
            return []
        return sorted(
            p
            for p in folder.glob("*" + _TABLE)
            if any(
                p.name.startswith(f"{s}-") and parse_epoch(p.name[len(s) + 1 :], _TABLE) is not None
                for s in SPLITS
            )
        )

    @property
    def audit_dir(self) -> Path:
        """``audit/``: the tables and figures of ``sampletopo audit``."""
        return self.path / _AUDIT

    def audit_file(self, split: str, what: str) -> Path:
        """``audit/<split>-<what>.parquet``: ``what`` is ``samples`` or ``regions``."""
        return self.audit_dir / f"{split}-{what}{_TABLE}"

    def audit_figure(self, split: str, rank: int) -> Path:
        """``audit/<split>-region-NN.png``: the image grid of the region of that rank."""
        return self.audit_dir / f"{split}-region-{rank:02d}.png"

    def landscape_file(self, epoch: int, *, tag: str = "") -> Path:
        """``<experiment>/landscapes/<run>[-<tag>]-epoch=NNNN.npz``."""
        name = self.name + (f"-{tag}" if tag else "")
        return self.experiment.landscapes_dir / f"{name}-{epoch_tag(epoch)}{_NPZ}"

    # -- what is there -------------------------------------------------------------------------

    def is_run(self) -> bool:
        """Whether the folder holds a ``losses`` folder (what makes a folder a run)."""
        return self.losses_dir.is_dir()

    def loss_files(self, split: str) -> dict[int, Path]:
        """``epoch -> loss table`` of ``split``, by epoch."""
        return _epoch_files(self.loss_dir(split), _TABLE)

    def loss_epochs(self, split: str) -> list[int]:
        """Recorded epochs of ``split`` (those with a loss table), sorted."""
        return list(self.loss_files(split))

    def has_losses(self) -> bool:
        """Whether any loss table is recorded."""
        return any(self.loss_files(s) for s in SPLITS)

    def loss_temporaries(self, split: str) -> list[Path]:
        """Temporary files of loss tables left by a killed writer."""
        folder = self.loss_dir(split)
        return sorted(folder.glob(_EPOCH_TEMPORARY)) if folder.is_dir() else []

    def diagram_files(self, split: str) -> dict[int, Path]:
        """``epoch -> diagram table`` of ``split``, by epoch."""
        return _epoch_files(self.diagram_dir(split), _TABLE)

    def diagram_epochs(self, split: str) -> list[int]:
        """Epochs of ``split`` whose diagrams are stored, sorted."""
        return list(self.diagram_files(split))

    def checkpoint_files(self) -> dict[int, Path]:
        """``epoch -> checkpoint`` in ``checkpoints/``, by epoch."""
        return _epoch_files(self.checkpoints_dir, _CHECKPOINT)

    def checkpoint_temporaries(self) -> list[Path]:
        """Temporary files of checkpoints left by a killed writer."""
        folder = self.checkpoints_dir
        return sorted(folder.glob(_EPOCH_TEMPORARY)) if folder.is_dir() else []

    def has_results(self) -> bool:
        """Whether anything was trained or recorded here (a checkpoint or a loss table)."""
        return bool(self.checkpoint_files()) or self.has_losses()

    # -- config and manifest -------------------------------------------------------------------

    def has_config(self) -> bool:
        """Whether the run has a ``config.toml``."""
        return self.config_file.is_file()

    def read_config(self) -> dict[str, Any]:
        """The run's ``config.toml``, checked (see :func:`sampletopo.readers.read_run_config`)."""
        path = self.config_file
        if not path.is_file():
            raise RunFolderError(
                f"{str(self.path)!r} has no config.toml: it is not a run folder written by "
                "`sampletopo train`, `sampletopo record` or a LossRecorder."
            )
        cfg = read_toml(path, fix="Restore it, or record the run again into a new folder.")
        check_run_config(cfg, path)
        if "data_file" in cfg:
            cfg["data_file"] = str(self._saved_data_path(cfg["data_file"]))
        return cfg

    def _saved_data_path(self, relative: str) -> Path:
        # Relative to the run folder as it is seen (links kept); runs saved by versions that
        # followed links keep their data beside the link's target, so look there second.
        seen = Path(os.path.normpath(_absolute(self.path) / relative))
        if seen.is_file():
            return seen
        followed = (self.path / relative).resolve()
        return followed if followed.is_file() else seen

    def write_config(self, cfg: Mapping[str, Any]) -> None:
        """Write ``config.toml`` atomically (the folder is made if missing)."""
        write_toml(self.config_file, cfg)

    def read_manifest(self) -> dict[str, Any] | None:
        """``losses/manifest.json`` (see :func:`sampletopo.readers.read_manifest`)."""
        path = self.manifest_file
        if not path.is_file():
            return None
        man = read_json(path, fix=MANIFEST_FIX)
        why = _manifest_problem(man)
        if why is not None:
            raise DamagedFileError(path, why, MANIFEST_FIX)
        return man  # type: ignore[no-any-return]

    def read_schedule(self) -> pl.DataFrame | None:
        """``losses/schedule.parquet`` (columns of :data:`SCHEDULE_SCHEMA`, sorted by epoch and
        group), ``None`` when the run stored no schedule (recorded without an optimizer, or
        before schedules were stored); a damaged one raises
        :class:`~sampletopo._runfiles.DamagedFileError`."""
        path = self.schedule_file
        if not path.is_file():
            return None
        df = read_parquet(path, SCHEDULE_SCHEMA, rows_check=schedule_rows(), fix=SCHEDULE_FIX)
        return df.sort(["epoch", "group"])

    def lr_drops(self) -> list[int] | None:
        """Epochs ``m`` after which the stored learning rate changes (see
        :func:`schedule_drops`), ``None`` when the run stored no schedule."""
        schedule = self.read_schedule()
        return None if schedule is None else schedule_drops(schedule)

    def write_manifest(self, manifest: Mapping[str, Any]) -> None:
        """Write ``losses/manifest.json`` atomically."""
        write_json(self.manifest_file, dict(manifest))

    def split_size(self, split: str) -> int | None:
        """The number of samples of ``split`` the manifest records (``None`` without one)."""
        info = (self.read_manifest() or {}).get("splits", {}).get(split)
        return int(info["n"]) if info else None

    def read_meta(self) -> tuple[dict[str, Any], str | None]:
        """``topology/meta.json`` (``{}`` when missing), and why it is damaged (``None`` if
        sound): the graph settings of each split's stored diagrams."""
        path = self.meta_file
        if not path.is_file():
            return {}, None
        try:
            meta = read_json(path, fix="")
        except DamagedFileError as exc:
            return {}, exc.why
        if not isinstance(meta, dict) or not all(isinstance(v, dict) for v in meta.values()):
            return {}, "it is JSON but not the graph settings of each split"
        return meta, None

    def write_meta(self, meta: Mapping[str, Any]) -> None:
        """Write ``topology/meta.json`` atomically."""
        write_json(self.meta_file, dict(meta))

    # -- data and model ------------------------------------------------------------------------

    def dataset(self) -> Dataset:
        """The run's dataset, rebuilt from its config (cached: the runs of an experiment share
        one), with a :class:`~sampletopo._runconfig.DataRootWarning` for data read from a
        folder nobody vouched for."""
        cfg = self.read_config()
        if not cfg.get("data") and not cfg.get("data_file"):
            raise RunFolderError(
                f"{str(self.config_file)!r} has no 'data' entry: it does not say which "
                f"dataset the run was recorded on, so its kNN graph cannot be built. "
                f"{DATA_ENTRIES_FIX}"
            )
        warn_foreign_data_root(cfg, self.path)
        keep = {k: cfg.get(k) for k in (*DATA_KEYS, "data_rebuildable")}
        return _cached_dataset(json.dumps(keep, sort_keys=True, default=str))

    def check_data(self, ds: Dataset, *, splits: Sequence[str] | None = None) -> None:
        """Refuse ``ds`` if it is not the data the run recorded (compares the manifest)."""
        old = self.read_manifest()
        if old is None:
            return
        for s, info in old["splits"].items():
            if splits is not None and s not in splits:
                continue
            if info.get("fingerprint") != ds.fingerprint(s):
                raise RunFolderError(
                    f"The data rebuilt from {str(self.config_file)!r} differs from the data the "
                    f"run recorded (split {s!r}: fingerprint {ds.fingerprint(s)} vs "
                    f"{info.get('fingerprint')}). Check data_root and the data files, or the data "
                    "settings in config.toml."
                )

    def set_model(
        self,
        model: str | Any,
        model_kwargs: Mapping[str, Any] | None = None,
        *,
        where: str = "Run.set_model",
    ) -> dict[str, Any]:
        """Store in ``config.toml`` which model the run trained, so that later commands
        (landscape, hessian, record-from-checkpoints, the report's comparison figure) can
        rebuild it: for runs recorded by a loop of your own, whose config names none.

        ``model`` is anything :func:`~sampletopo.models.build_model` takes (a zoo name,
        ``"torchvision:NAME"``, ``"pkg.module:factory"`` or the factory). The model is built for
        the run's data and checked against the architecture the recorder saw (class, parameter
        names and shapes, kept in ``losses/manifest.json``); a run whose config already names
        another model is refused. Returns the ``model`` and ``model_kwargs`` entries written.
        """
        from sampletopo.models import build_model, check_model_kwargs, model_spec

        spec = model_spec(model, where=where, kind="parameter")
        kwargs = check_model_kwargs(spec, dict(model_kwargs or {}), where=where, kind="parameter")
        cfg = read_toml(self.config_file, fix="Restore it, or record the run again.")
        check_run_config(cfg, self.config_file)
        entry = {"model": spec, "model_kwargs": kwargs}
        if "model" in cfg:
            if cfg["model"] == spec and dict(cfg.get("model_kwargs", {})) == kwargs:
                return entry
            raise RunFolderError(
                f"The config.toml of run {str(self.path)!r} already names model "
                f"{cfg['model']!r} with options {cfg.get('model_kwargs', {})}; {where} was "
                f"given {spec!r} with {kwargs}. Leave the model out to use the run's own."
            )
        ds = self.dataset()
        net = build_model(
            spec, num_classes=ds.num_classes, input_shape=ds.sample_shape, model_kwargs=kwargs,
            where=where,
        )  # fmt: skip
        seen = (self.read_manifest() or {}).get("model")
        sig = model_signature(net)
        if seen and seen.get("signature") != sig["signature"]:
            raise invalid(
                "model",
                "the architecture the run recorded: "
                f"{seen.get('class')} with {seen.get('n_params', 0):,} parameters",
                where=where,
                got=f"{spec!r} with {kwargs}, which builds {sig['class']} with "
                f"{sig['n_params']:,} parameters (other parameter names or shapes)",
                fix="Pass the factory and the options (--model-kw KEY=VALUE) the run trained.",
            )
        write_toml(self.config_file, {**cfg, **entry})
        return entry

    def model(self, dataset: Dataset | None = None) -> nn.Module:
        """A freshly initialised model as the run's config describes it (for ``dataset``,
        default the run's)."""
        return model_from_config(self.read_config(), dataset or self.dataset())

    def find_checkpoint(self, epoch: int) -> Path:
        """The checkpoint of ``epoch``: ``checkpoints/epoch=NNNN.pt``, else the file the config
        lists for it (runs recorded from a checkpoint folder)."""
        own = self.checkpoint_file(epoch)
        if own.is_file():
            return own
        files = self.read_config().get("checkpoint_files", {})
        if str(epoch) in files:
            return Path(files[str(epoch)])
        known = sorted({int(k) for k in files} | set(self.checkpoint_files()))
        raise RunFolderError(
            f"Run {str(self.path)!r} has no checkpoint for epoch {epoch}. Epochs with "
            f"checkpoints: {known if known else 'none'}."
        )

    def load_model(
        self, epoch: int, *, device: str | torch.device = "cpu"
    ) -> tuple[nn.Module, Dataset]:
        """The model at ``epoch`` (in eval mode, on ``device``) and the run's dataset.

        Built from the run's ``config.toml`` and its checkpoint of that epoch (loaded with
        ``weights_only=True``, after its checksums are verified).
        """
        from sampletopo.checkpoints import (
            extract_state_dict,
            load_state_dict_into,
            read_checkpoint,
        )

        cfg = self.read_config()
        for key in ("data", "model"):
            if key not in cfg:
                raise RunFolderError(
                    f"config.toml of {str(self.path)!r} lacks {key!r}: cannot rebuild the model."
                )
        path = self.find_checkpoint(int(epoch))
        ds = self.dataset()
        self.check_data(ds)
        model = model_from_config(cfg, ds)
        load_state_dict_into(
            model, extract_state_dict(read_checkpoint(path), source=str(path)), source=str(path)
        )
        model.to(device).eval()
        return model, ds


@functools.lru_cache(maxsize=8)
def _cached_dataset(key: str) -> Dataset:
    return dataset_from_config(json.loads(key))


def load_run_model(
    run_dir: PathLike, epoch: int, *, device: str | torch.device = "cpu"
) -> tuple[nn.Module, Dataset]:
    """The model of a run at ``epoch``, in eval mode, and the run's dataset.

    Built from the run's ``config.toml`` and its checkpoint of that epoch (loaded with
    ``weights_only=True``); see :meth:`Run.load_model`.
    """
    return as_run(run_dir).load_model(epoch, device=device)


def checkpoint_name(folder: str | Path, epoch: int) -> Path:
    """``folder/epoch=NNNN.pt``: the checkpoint file name ``sampletopo train`` uses."""
    return Path(folder) / (epoch_tag(epoch) + _CHECKPOINT)


def data_config(ds: Dataset, run_dir: PathLike) -> dict[str, Any]:
    """The config entries that rebuild ``ds`` for a run folder.

    A dataset from :func:`~sampletopo.data.load_dataset` is described by its settings. In-memory
    data (:meth:`Dataset.from_arrays`) cannot be rebuilt from settings, so it is saved once, as
    ``<experiment>/datasets/<name>-<fingerprint>.npz`` beside the run folder (the same place
    for every run of that data; as big as the arrays), and the config points at that file."""
    if ds.settings:
        return dict(ds.settings)
    run = as_run(run_dir)
    tag = hashlib.sha256((ds.fingerprint("train") + ds.fingerprint("val")).encode()).hexdigest()
    path = run.experiment.saved_dataset_file(ds.name, tag[:16])
    if not path.is_file():
        arrays: dict[str, Any] = {
            "name": np.array(ds.name),
            "class_names": np.array(ds.class_names),
        }
        for s in SPLITS:
            arrays[f"{s}_x"] = ds._raw[s]
            arrays[f"{s}_y"] = ds.labels(s)
        if ds._sample_shape is not None:  # rows (d,) or signals (C, L), stored as 4-D
            arrays["sample_shape"] = np.array(ds._sample_shape, dtype=np.int64)
        if ds._features is not None:  # the data's own graph features
            for s in SPLITS:
                arrays[f"{s}_features"] = ds._features[s]
        write_atomic(path, lambda fh: np.savez(fh, **arrays))
    return {"data": ds.name, "data_file": os.path.relpath(path, _absolute(run.path))}


# ---------------------------------------------------------------------------------------------
# A report folder


@dataclass(frozen=True, init=False)
class Report:
    """A report folder: ``index.html`` and ``figures/<experiment>/<section>/``."""

    path: Path

    def __init__(self, path: PathLike) -> None:
        object.__setattr__(self, "path", Path(path))

    @property
    def index_file(self) -> Path:
        """``index.html``."""
        return self.path / "index.html"

    @property
    def figures_dir(self) -> Path:
        """``figures/``."""
        return self.path / _FIGURES

    def experiment_dir(self, experiment: str) -> Path:
        """``figures/<experiment>/`` (checked to stay inside ``figures/``)."""
        return check_inside(self.figures_dir / experiment, self.figures_dir, what="figure folder")

    def section_dir(self, experiment: str, section: str) -> Path:
        """``figures/<experiment>/<section>/``: ``topology``, ``landscape``, ``samples`` or any
        other folder whose PNGs the report shows under the section's name."""
        return self.experiment_dir(experiment) / section


def figure_table_file(figure: PathLike) -> Path:
    """``<stem>.parquet`` beside a figure file ``<stem>.<format>``: the numbers it draws.

    >>> figure_table_file("figures/heatmap-val-split.png").as_posix()
    'figures/heatmap-val-split.parquet'
    """
    p = Path(figure)
    stem = p.name.rsplit(".", 1)[0] if p.suffix in _FIGURE_SUFFIXES else p.name
    return p.parent / f"{stem}{_TABLE}"


_FIGURE_SUFFIXES = {".png", ".pdf", ".svg", ".jpg", ".jpeg", ".eps", ".ps", ".tif", ".tiff"}


# ---------------------------------------------------------------------------------------------
# Finding runs


def as_run(run: PathLike) -> Run:
    """``run`` as a :class:`Run` (a path is taken as the run folder)."""
    return run if isinstance(run, Run) else Run(run)


def find_runs(path: PathLike | Experiment) -> list[Run]:
    """``path`` itself if it is a run folder, else the run folders inside it, sorted by name.

    Raises
    ------
    RunFolderError
        Neither ``path`` nor any folder inside it holds a ``losses`` folder.
    """
    if isinstance(path, Run) and path.is_run():
        return [path]  # keeps its graph setting
    p = path.path if isinstance(path, Experiment) else Path(path)
    if Run(p).is_run():
        return [Run(p)]
    runs = Experiment(p).runs()
    if runs:
        return runs
    raise RunFolderError(
        f"{str(p)!r} is not a run folder: it has no 'losses' folder (nor do its sub-folders). "
        "Pass the folder the recorder or `sampletopo train` wrote."
    )


def run_labels(runs: Sequence[PathLike]) -> list[str]:
    """How tables and figures name ``runs``: their folder names, or ``experiment/name`` for
    every run when two of them share a folder name (runs of two experiment folders).

    >>> run_labels(["a/lr=0.1", "b/lr=0.1", "b/lr=0.5"])
    ['a/lr=0.1', 'b/lr=0.1', 'b/lr=0.5']
    """
    rs = [as_run(r) for r in runs]
    names = [r.name for r in rs]
    if len(set(names)) == len(names):
        return names
    labels = [f"{r.experiment.name}/{r.name}" for r in rs]
    dup = sorted({lab for lab in labels if labels.count(lab) > 1})
    if dup:
        raise RunFolderError(
            f"Runs {dup} have the same name in experiment folders of the same name, so they "
            "cannot be told apart. Rename one of the experiment folders."
        )
    return labels


def runs_in(paths: PathLike | Iterable[PathLike], *, label_clashes: bool = False) -> list[Run]:
    """The runs of one or more run or experiment folders, for one call that compares them.

    Runs of one call are told apart by name (tables and figures label them with it), so two
    runs of the same name are refused; with ``label_clashes`` they are kept, for a caller that
    labels them with :func:`run_labels` (``experiment/run``). A folder given twice counts once.
    """
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    out: list[Run] = []
    seen: set[Path] = set()
    for p in items:
        for r in find_runs(p):
            key = _absolute(r.path)
            if key not in seen:
                seen.add(key)
                out.append(r)
    if not out:
        raise invalid(
            "run_dirs",
            "one or more run or experiment folders",
            [],
            where=None,
            fix="Pass the folders `sampletopo train` wrote.",
        )
    if label_clashes:
        run_labels(out)  # refuses what even experiment/run cannot tell apart
        return out
    names = [r.name for r in out]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        clash = [str(r.path) for r, n in zip(out, names, strict=True) if n in dup]
        raise RunFolderError(
            f"Runs {clash} share the folder name(s) {sorted(dup)}; the runs of one call are told "
            "apart by folder name (figures label curves with it). Pass them in separate calls "
            "(`sampletopo topology` does so for each folder given), or rename one. "
            "`sampletopo figures` and `sampletopo compare` label such runs experiment/run."
        )
    return out


def graph_runs(
    paths: PathLike | Iterable[PathLike],
    *,
    k: int = GRAPH_DEFAULTS["k"],
    features: str | os.PathLike[str] = GRAPH_DEFAULTS["features"],
    pca_components: int = GRAPH_DEFAULTS["pca_components"],
    label_clashes: bool = False,
) -> list[Run]:
    """The runs of ``paths`` (as :func:`runs_in`), naming the topology files of one graph
    setting (:meth:`Run.for_graph`): pass them to the summaries, readers and comparisons to
    read that setting's results.
    """
    runs = runs_in(paths, label_clashes=label_clashes)
    return [r.for_graph(k=k, features=features, pca_components=pca_components) for r in runs]
