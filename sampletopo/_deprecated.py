"""Old public names, kept working for one release with a :class:`DeprecationWarning`.

Every renamed reader or function of sampletopo 0.1 is here, as a thin wrapper that warns, names
its replacement, and returns what the replacement returns (converted back to the old shape where
the old name returned something else, e.g. ``lazy=True``). The modules that used to hold the old
names re-export them from here, so ``from sampletopo.record import load_losses`` and
``st.load_losses`` keep working; this module is deleted in the release after.

========================================  ==================================================
old                                        new
========================================  ==================================================
``load_losses(run, split=, lazy=)``        :func:`~sampletopo.readers.read_losses` /
                                           :func:`~sampletopo.readers.scan_losses`
``loss_matrix(run, split)``                :func:`~sampletopo.readers.read_loss_matrix`
``recorded_epochs(run, split)``            :func:`~sampletopo.readers.loss_epochs`
``load_diagrams(runs, split=, tree=,       :func:`~sampletopo.readers.read_diagrams` /
lazy=)``                                   :func:`~sampletopo.readers.scan_diagrams`
``diagram_at(run, split, tree, epoch)``    :func:`~sampletopo.readers.read_diagram`
``topology_epochs(run, split)``            :func:`~sampletopo.readers.diagram_epochs`
``run_graph(run, split, ...)``             :func:`~sampletopo.analysis.graph_for_run`
``load_landscape(path)``                   :func:`~sampletopo.landscape.read_landscape`
``read_loss_table(run, split, epoch)``     ``read_loss_table(run, split=, epoch=)``
``Diagram.kind``, ``Diagram(kind=)``       ``Diagram.tree``, ``Diagram(tree=)``
========================================  ==================================================
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np
    import polars as pl

    from sampletopo.diagrams import Diagram
    from sampletopo.graph import Graph
    from sampletopo.runs import PathLike

__all__ = [
    "diagram_at",
    "load_diagrams",
    "load_landscape",
    "load_losses",
    "loss_matrix",
    "recorded_epochs",
    "run_graph",
    "topology_epochs",
    "warn_renamed",
]


def warn_renamed(old: str, new: str, *, stacklevel: int = 3) -> None:
    """Warn that ``old`` is deprecated and ``new`` replaces it (``stacklevel`` 3: the caller of
    the deprecated function)."""
    warnings.warn(
        f"{old} is deprecated and will be removed in the next release; use {new} instead.",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def load_losses(
    run_dir: PathLike, *, split: str | None = None, lazy: bool = False
) -> pl.DataFrame | pl.LazyFrame:
    """Deprecated: :func:`sampletopo.readers.read_losses` (or ``scan_losses`` for ``lazy``)."""
    from sampletopo.readers import read_losses, scan_losses

    if lazy:
        warn_renamed("load_losses(..., lazy=True)", "scan_losses(...)")
        return scan_losses(run_dir, split=split)
    warn_renamed("load_losses", "read_losses")
    return read_losses(run_dir, split=split)


def loss_matrix(run_dir: PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Deprecated: :func:`sampletopo.readers.read_loss_matrix` (``split`` keyword-only)."""
    from sampletopo.readers import read_loss_matrix

    warn_renamed("loss_matrix(run, split)", "read_loss_matrix(run, split=...)")
    return read_loss_matrix(run_dir, split=split)


def recorded_epochs(run_dir: PathLike, split: str) -> list[int]:
    """Deprecated: :func:`sampletopo.readers.loss_epochs` (``split`` keyword-only)."""
    from sampletopo.readers import loss_epochs

    warn_renamed("recorded_epochs(run, split)", "loss_epochs(run, split=...)")
    return loss_epochs(run_dir, split=split)


def load_diagrams(
    run_dirs: PathLike | Iterable[PathLike],
    *,
    split: str | None = None,
    tree: str | None = None,
    lazy: bool = False,
) -> pl.DataFrame | pl.LazyFrame:
    """Deprecated: :func:`sampletopo.readers.read_diagrams` (or ``scan_diagrams`` for
    ``lazy``)."""
    from sampletopo.readers import read_diagrams, scan_diagrams

    if lazy:
        warn_renamed("load_diagrams(..., lazy=True)", "scan_diagrams(...)")
        return scan_diagrams(run_dirs, split=split, tree=tree)
    warn_renamed("load_diagrams", "read_diagrams")
    return read_diagrams(run_dirs, split=split, tree=tree)


def diagram_at(run_dir: PathLike, split: str, tree: str, epoch: int) -> Diagram:
    """Deprecated: :func:`sampletopo.readers.read_diagram` (selectors keyword-only)."""
    from sampletopo.readers import read_diagram

    warn_renamed(
        "diagram_at(run, split, tree, epoch)", "read_diagram(run, split=..., tree=..., epoch=...)"
    )
    return read_diagram(run_dir, split=split, tree=tree, epoch=epoch)


def topology_epochs(run_dir: PathLike, split: str) -> list[int]:
    """Deprecated: :func:`sampletopo.readers.diagram_epochs` (``split`` keyword-only)."""
    from sampletopo.readers import diagram_epochs

    warn_renamed("topology_epochs(run, split)", "diagram_epochs(run, split=...)")
    return diagram_epochs(run_dir, split=split)


def run_graph(run_dir: PathLike, split: str, **options: Any) -> Graph:
    """Deprecated: :func:`sampletopo.analysis.graph_for_run` (``split`` keyword-only)."""
    from sampletopo.analysis import graph_for_run

    warn_renamed("run_graph(run, split, ...)", "graph_for_run(run, split=..., ...)")
    return graph_for_run(run_dir, split=split, **options)


def load_landscape(path: str | Path) -> Any:
    """Deprecated: :func:`sampletopo.landscape.read_landscape`."""
    from sampletopo.landscape import read_landscape

    warn_renamed("load_landscape", "read_landscape")
    return read_landscape(path)
