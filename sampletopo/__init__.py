"""sampletopo: the topology of neural-network training.

The core is imported eagerly and is light (numpy, numba, faiss, gudhi, polars): graphs, merge
trees and diagrams. Everything that needs torch or matplotlib -- data, models, recording,
training, analysis of runs, landscapes, Hessians, figures -- is imported on first use through
the names below, so ``import sampletopo`` stays fast.

>>> import numpy as np, sampletopo as st
>>> g = st.knn_graph(np.random.default_rng(0).normal(size=(200, 5)), k=10)
>>> d = st.join_tree(g, np.linspace(0, 1, 200)).diagram()
>>> bool(np.all(d.finite().birth <= d.finite().death))
True
"""

from __future__ import annotations

import importlib
from typing import Any

from sampletopo._errors import SampletopoError
from sampletopo.diagrams import Diagram, bottleneck, total_persistence, wasserstein
from sampletopo.graph import Graph, fingerprint, graph_from_edges, grid_graph, knn_graph
from sampletopo.mergetree import MergeTree, diagram_pair, join_tree, split_tree

__version__ = "0.1.0"

# name -> module that defines it; imported on first access (PEP 562).
_LAZY = {
    # data, models, recording, training
    "Dataset": "data",
    "load_dataset": "data",
    "list_datasets": "data",
    "create_model": "models",
    "list_models": "models",
    "LossRecorder": "recorder",
    "load_losses": "readers",
    "loss_matrix": "readers",
    "recorded_epochs": "readers",
    "read_run_config": "readers",
    "record_checkpoints": "from_checkpoints",
    "load_run_model": "runs",
    "TrainConfig": "train",
    "train_experiment": "train",
    "train_run": "train",
    # sample-space analysis, figures, report, demo
    "run_graph": "analysis",
    "compute_topology": "analysis",
    "load_diagrams": "analysis",
    "diagram_at": "analysis",
    "summarize": "analysis",
    "wasserstein_to_reference": "analysis",
    "write_figure_set": "figures",
    "write_report": "report",
    "run_demo": "demo",
    "top_regions": "samples",
    "track_members": "samples",
    "graph_regions": "samples",
    "MemberTracks": "samples",
    # parameter-space view
    "hessian_operator": "hessian",
    "top_eigenpairs": "hessian",
    "hutchinson_trace": "hessian",
    "spectral_density": "hessian",
    "Eigenpairs": "hessian",
    "SpectralDensity": "hessian",
    "TraceEstimate": "hessian",
    "TraceNotConvergedWarning": "hessian",
    "Directions": "landscape",
    "Landscape": "landscape",
    "LandscapeMetrics": "landscape",
    "LandscapeProfile": "landscape",
    "NonFiniteLandscapeWarning": "landscape",
    "random_directions": "landscape",
    "hessian_directions": "landscape",
    "evaluate_grid": "landscape",
    "landscape_metrics": "landscape",
    "landscape_profile": "landscape",
    "smad": "landscape",
    "load_landscape": "landscape",
    "landscape_for_run": "landscape",
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
    "SampletopoError",
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
    *_LAZY,
]
