"""sampletopo: the topology of neural-network training.

The core is imported eagerly and is light (numpy, numba, faiss, gudhi, polars): graphs, merge
trees and diagrams. Everything that needs torch or matplotlib -- data, models, recording,
training, analysis of runs, landscapes, Hessians, figures -- is imported on first use through
the names below, so ``import sampletopo`` stays fast. So are the run folder (:class:`Run`) and
its readers (``read_*`` / ``scan_*``); the readers' former names still work for one release,
with a ``DeprecationWarning``. The error and warning classes a caller may catch or filter are
all here, imported eagerly (they import nothing): see :mod:`sampletopo._errors` for the tree.

>>> import numpy as np, sampletopo as st
>>> g = st.knn_graph(np.random.default_rng(0).normal(size=(200, 5)), k=10)
>>> d = st.join_tree(g, np.linspace(0, 1, 200)).diagram()
>>> bool(np.all(d.finite().birth <= d.finite().death))
True
"""

from __future__ import annotations

import importlib
from typing import Any

from sampletopo import _errors
from sampletopo._errors import (  # re-exported: __all__ lists _errors.__all__
    CheckpointChangedError as CheckpointChangedError,
)
from sampletopo._errors import (
    CheckpointChangedWarning as CheckpointChangedWarning,
)
from sampletopo._errors import (
    ComparisonWarning as ComparisonWarning,
)
from sampletopo._errors import (
    DamagedFileError as DamagedFileError,
)
from sampletopo._errors import (
    DamagedFileWarning as DamagedFileWarning,
)
from sampletopo._errors import (
    DataRootWarning as DataRootWarning,
)
from sampletopo._errors import (
    ExplodingLossWarning as ExplodingLossWarning,
)
from sampletopo._errors import (
    FewerPairsWarning as FewerPairsWarning,
)
from sampletopo._errors import (
    FigureWarning as FigureWarning,
)
from sampletopo._errors import (
    FolderLockedError as FolderLockedError,
)
from sampletopo._errors import (
    MissingEpochsWarning as MissingEpochsWarning,
)
from sampletopo._errors import (
    ModelSpecWarning as ModelSpecWarning,
)
from sampletopo._errors import (
    NoImagesWarning as NoImagesWarning,
)
from sampletopo._errors import (
    NonFiniteLandscapeWarning as NonFiniteLandscapeWarning,
)
from sampletopo._errors import (
    NonFiniteLossWarning as NonFiniteLossWarning,
)
from sampletopo._errors import (
    ParameterError as ParameterError,
)
from sampletopo._errors import (
    RankFailedError as RankFailedError,
)
from sampletopo._errors import (
    RecorderWarning as RecorderWarning,
)
from sampletopo._errors import (
    ReportWarning as ReportWarning,
)
from sampletopo._errors import (
    RunDivergedError as RunDivergedError,
)
from sampletopo._errors import (
    RunFolderError as RunFolderError,
)
from sampletopo._errors import (
    SampletopoError as SampletopoError,
)
from sampletopo._errors import (
    SampletopoWarning as SampletopoWarning,
)
from sampletopo._errors import (
    StaleLockWarning as StaleLockWarning,
)
from sampletopo._errors import (
    TopologyWarning as TopologyWarning,
)
from sampletopo._errors import (
    TraceNotConvergedWarning as TraceNotConvergedWarning,
)
from sampletopo._errors import (
    UnlockedFolderWarning as UnlockedFolderWarning,
)
from sampletopo.diagrams import Diagram, bottleneck, total_persistence, wasserstein
from sampletopo.graph import Graph, fingerprint, graph_from_edges, grid_graph, knn_graph
from sampletopo.mergetree import MergeTree, diagram_pair, join_tree, split_tree

__version__ = "0.1.0"

# name -> module that defines it; imported on first access (PEP 562).
_LAZY = {
    # the run folder, and reading it back (read_* -> DataFrame or object, scan_* -> LazyFrame)
    "Run": "runs",
    "Experiment": "runs",
    "find_runs": "runs",
    "graph_runs": "runs",
    "SPLITS": "runs",
    "TREES": "runs",
    "load_run_model": "runs",
    "read_losses": "readers",
    "scan_losses": "readers",
    "read_loss_matrix": "readers",
    "read_loss_table": "readers",
    "loss_epochs": "readers",
    "read_diagrams": "readers",
    "scan_diagrams": "readers",
    "read_diagram": "readers",
    "diagram_epochs": "readers",
    "read_summaries": "readers",
    "read_wasserstein": "readers",
    "read_manifest": "readers",
    "read_run_config": "readers",
    # data, models, recording, training
    "Dataset": "data",
    "load_dataset": "data",
    "list_datasets": "data",
    "create_model": "models",
    "list_models": "models",
    "build_model": "models",
    "LossRecorder": "recorder",
    "evaluate_losses": "recorder",
    "record_checkpoints": "from_checkpoints",
    "TrainConfig": "train",
    "train_experiment": "train",
    "train_run": "train",
    # sample-space analysis, figures, report, demo
    "graph_for_run": "analysis",
    "compute_topology": "analysis",
    "summarize": "analysis",
    "wasserstein_to_reference": "analysis",
    # replicates: named metrics, summaries over seeds, comparisons with a verdict
    "metric_table": "replicates",
    "replicate_summary": "replicates",
    "compare": "replicates",
    "sensitivity": "replicates",
    "export_table": "export",
    "write_table": "export",
    "write_figure_set": "figures",
    "write_report": "report",
    "run_demo": "demo",
    "top_regions": "samples",
    "track_members": "samples",
    "graph_regions": "samples",
    "MemberTracks": "samples",
    "audit_run": "audit",
    "Audit": "audit",
    # parameter-space view
    "hessian_operator": "hessian",
    "top_eigenpairs": "hessian",
    "hutchinson_trace": "hessian",
    "spectral_density": "hessian",
    "Eigenpairs": "hessian",
    "SpectralDensity": "hessian",
    "TraceEstimate": "hessian",
    "Directions": "landscape",
    "Landscape": "landscape",
    "LandscapeMetrics": "landscape",
    "LandscapeProfile": "landscape",
    "random_directions": "landscape",
    "hessian_directions": "landscape",
    "evaluate_grid": "landscape",
    "landscape_metrics": "landscape",
    "landscape_profile": "landscape",
    "smad": "landscape",
    "read_landscape": "landscape",
    "landscape_for_run": "landscape",
    # former names, working for one release with a DeprecationWarning (see sampletopo._deprecated)
    "load_losses": "_deprecated",
    "loss_matrix": "_deprecated",
    "recorded_epochs": "_deprecated",
    "load_diagrams": "_deprecated",
    "diagram_at": "_deprecated",
    "run_graph": "_deprecated",
    "load_landscape": "_deprecated",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sampletopo' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"sampletopo.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Diagram",
    "Graph",
    "MergeTree",
    "bottleneck",
    "diagram_pair",
    "fingerprint",
    "graph_from_edges",
    "grid_graph",
    "join_tree",
    "knn_graph",
    "split_tree",
    "total_persistence",
    "wasserstein",
    *_errors.__all__,
    *_LAZY,
]
