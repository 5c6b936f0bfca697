"""The names of the data splits and of the two merge trees, defined once.

``SPLITS`` are the data splits every run records (``train``, ``val``); ``TREES`` the two merge
trees of a function on a graph (``join``: sublevel sets, valleys; ``split``: superlevel sets,
peaks). They live here, with no imports, so that the core (:mod:`sampletopo.diagrams`) and the
command line can use them without loading anything; :mod:`sampletopo.runs` re-exports them as
the public place.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["SPLITS", "TREES", "Split", "Tree"]

Split = Literal["train", "val"]
Tree = Literal["join", "split"]

SPLITS: tuple[Split, ...] = ("train", "val")
TREES: tuple[Tree, ...] = ("join", "split")
