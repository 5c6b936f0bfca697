"""sampletopo: the topology of neural-network training.

The core (this import) is light: graphs, merge trees and diagrams. Training, recording, figures and
landscapes live in submodules that import torch and matplotlib only when used.

>>> import numpy as np, sampletopo as st
>>> g = st.knn_graph(np.random.default_rng(0).normal(size=(200, 5)), k=10)
>>> d = st.join_tree(g, np.linspace(0, 1, 200)).diagram()
>>> len(d.finite()) >= 0
True
"""

from sampletopo._errors import SampletopoError
from sampletopo.diagrams import Diagram, bottleneck, total_persistence, wasserstein
from sampletopo.graph import Graph, fingerprint, graph_from_edges, grid_graph, knn_graph
from sampletopo.mergetree import MergeTree, diagram_pair, join_tree, split_tree

__version__ = "0.1.0"

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
]
