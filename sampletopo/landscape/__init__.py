"""Loss landscapes in parameter space: directions, grids of any dimension, metrics and profiles.

What is here, one private module per job (the public names are all importable from here):

- **Directions** (``_directions``): :class:`Directions`; :func:`random_directions` draws seeded
  Gaussian directions with filter normalization (Li et al. 2018), optionally made exactly
  orthogonal by Gram-Schmidt; :func:`hessian_directions` takes the top-d Hessian eigenvectors.
- **Grids** (``_grid``): :func:`evaluate_grid` evaluates loss and accuracy at
  ``theta + sum_k c_k d_k`` for ``c`` on a ``steps**d`` grid over ``[-distance, distance]**d``,
  batching grid points with :func:`torch.func.vmap`, resumable from a side file; the result is a
  :class:`Landscape` (:meth:`Landscape.save`, :func:`read_landscape`). Non-finite losses are kept
  and reported (:class:`NonFiniteLandscapeWarning`), never replaced.
- **Metrics** (``_metrics``): :class:`LandscapeMetrics`, :func:`landscape_metrics` -- minima,
  saddles and average persistence of the join tree of the grid graph (Xie et al. 2024) and
  :func:`smad` (after Chen et al. 2025; *not* Landscaper 1.3.1's number), beside the Hessian top
  eigenvalue and trace. Every result names its grid graph (``connectivity``).
- **Profiles** (``_profile``): :class:`LandscapeProfile`, :func:`landscape_profile` -- the
  topological landscape profile (Geniesse et al. 2024) of a grid of any dimension.
- **A recorded run** (``_run``): :func:`landscape_for_run` does all of it for a run and epoch and
  writes :func:`landscape_path`, ``<experiment>/landscapes/<variant>-epoch=NNNN.npz``.

The merge trees come from :mod:`sampletopo.mergetree` on :func:`sampletopo.graph.grid_graph`
(``_gridtree``), the same code as for the kNN graphs of samples. What is not here: Hessian
algorithms (:mod:`sampletopo.hessian`) and figures (:mod:`sampletopo.plotting`).
"""

from __future__ import annotations

from sampletopo._deprecated import load_landscape as load_landscape
from sampletopo.landscape._directions import Directions, hessian_directions, random_directions
from sampletopo.landscape._grid import (
    Landscape,
    NonFiniteLandscapeWarning,
    evaluate_grid,
    read_landscape,
)
from sampletopo.landscape._metrics import LandscapeMetrics, landscape_metrics, smad
from sampletopo.landscape._profile import LandscapeProfile, landscape_profile
from sampletopo.landscape._profile import ProfileBasin as ProfileBasin
from sampletopo.landscape._run import _subset as _subset
from sampletopo.landscape._run import landscape_for_run
from sampletopo.landscape._run import landscape_path as landscape_path

__all__ = [
    "Directions",
    "Landscape",
    "LandscapeMetrics",
    "LandscapeProfile",
    "NonFiniteLandscapeWarning",
    "evaluate_grid",
    "hessian_directions",
    "landscape_for_run",
    "landscape_metrics",
    "landscape_profile",
    "read_landscape",
    "random_directions",
    "smad",
]
