"""The readers' one pattern, and the former names that still work for one release.

``read_*`` returns a DataFrame (or the typed object), ``scan_*`` the same rows as a LazyFrame;
selectors are keyword-only. Each former name warns with a DeprecationWarning that names its
replacement, points at the caller's line, and returns what the replacement returns. Everything
is read from a copy of ``tests/data/old_layout`` (written by the code before the readers were
renamed), so nothing is trained here.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import sampletopo as st
import sampletopo._deprecated as D
from sampletopo.diagrams import Diagram
from sampletopo.graph import Graph
from sampletopo.landscape import Landscape

FIXTURE = Path(__file__).parent / "data" / "old_layout"


@pytest.fixture(scope="module")
def exp(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("readers") / "old_layout"
    shutil.copytree(FIXTURE, dest)
    return dest / "lr-study"


def test_read_and_scan_give_the_same_rows_one_type_each(exp):
    run = exp / "lr=0.1"
    losses = st.read_losses(exp, split="val")
    assert type(losses) is pl.DataFrame
    assert type(st.scan_losses(exp, split="val")) is pl.LazyFrame
    assert_frame_equal(st.scan_losses(exp, split="val").collect(), losses)
    assert losses["run"].unique().sort().to_list() == ["lr=0.01", "lr=0.1"]
    assert losses.height == 2 * 3 * st.read_manifest(run)["splits"]["val"]["n"]
    diagrams = st.read_diagrams(exp, split="val", tree="split")
    assert type(diagrams) is pl.DataFrame
    everything = st.read_diagrams([exp / "lr=0.1", exp / "lr=0.01"])
    assert_frame_equal(
        diagrams,
        everything.filter(split="val", tree="split"),
        check_row_order=False,
    )
    assert_frame_equal(
        st.scan_diagrams(exp, tree="join").collect(), st.read_diagrams(exp, tree="join")
    )
    d = st.read_diagram(run, split="val", tree="split", epoch=2)
    assert isinstance(d, Diagram) and d.tree == "split"
    one = everything.filter(run="lr=0.1", split="val", tree="split", epoch=2)
    assert sorted(d.birth.tolist()) == sorted(one["birth"].to_list())
    epochs, matrix = st.read_loss_matrix(run, split="train")
    assert epochs.tolist() == st.loss_epochs(run, split="train") == [0, 1, 2]
    table = st.read_loss_table(run, split="train", epoch=1)
    np.testing.assert_array_equal(matrix[1], table["loss"].to_numpy())
    assert st.diagram_epochs(run, split="val") == [0, 1, 2]


def test_selectors_are_keyword_only(exp):
    run = exp / "lr=0.1"
    with pytest.raises(TypeError):
        st.read_loss_matrix(run, "val")  # type: ignore[misc]
    with pytest.raises(TypeError):
        st.read_diagram(run, "val", "join", 2)  # type: ignore[misc]
    with pytest.raises(TypeError):
        st.loss_epochs(run, "val")  # type: ignore[misc]
    # "split" names the data split, "tree" the merge tree; a swap is named, never read.
    with pytest.raises(
        st.SampletopoError, match="'split' parameter of read_diagram must be .*Got 'join'"
    ):
        st.read_diagram(run, split="join", tree="val", epoch=2)
    with pytest.raises(
        st.SampletopoError,
        match="'tree' parameter of read_diagram must be 'join'.*Got 'val'",
    ):
        st.read_diagram(run, split="val", tree="val", epoch=2)


def test_stored_summaries_read_back_as_summarize_computes_them(exp, tmp_path):
    assert_frame_equal(st.read_summaries(exp), st.summarize(exp, write=False))
    computed = st.wasserstein_to_reference(exp)  # replaces the old layout's table
    assert_frame_equal(st.read_wasserstein(exp), computed)
    assert_frame_equal(st.wasserstein_to_reference(exp, write=False), computed)
    run = tmp_path / "lr=0.1"
    shutil.copytree(exp / "lr=0.1", run)
    (run / "topology" / "summary.parquet").unlink()
    with pytest.raises(st.SampletopoError, match="no stored summary table.*sampletopo topology"):
        st.read_summaries(run)


def _same(got, expected) -> None:
    """``got`` equals ``expected``: frames, arrays, diagrams, graphs, landscapes, lists."""
    if isinstance(got, pl.LazyFrame):
        assert isinstance(expected, pl.LazyFrame)
        assert_frame_equal(got.collect(), expected.collect())
    elif isinstance(got, pl.DataFrame):
        assert_frame_equal(got, expected)
    elif isinstance(got, Diagram):
        assert got.tree == expected.tree
        np.testing.assert_array_equal(got.to_numpy(), expected.to_numpy())
        np.testing.assert_array_equal(got.birth_sample, expected.birth_sample)
    elif isinstance(got, Graph):
        np.testing.assert_array_equal(got.edges, expected.edges)
    elif isinstance(got, tuple) and got and isinstance(got[0], Landscape):
        np.testing.assert_array_equal(got[0].loss, expected[0].loss)
        assert got[1].keys() == expected[1].keys()
    elif isinstance(got, tuple):
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_array_equal(a, b)
    else:
        assert got == expected


RUN = "lr=0.1"
LANDSCAPE = "landscapes/lr=0.1-epoch=0002.npz"
# (old call, new call, what the warning names); paths relative to the experiment folder
FORMER = [
    (lambda e: st.load_losses(e), lambda e: st.read_losses(e), "load_losses.*read_losses"),
    (
        lambda e: st.load_losses(e / RUN, split="val", lazy=True),
        lambda e: st.scan_losses(e / RUN, split="val"),
        r"load_losses\(..., lazy=True\).*scan_losses",
    ),
    (
        lambda e: st.loss_matrix(e / RUN, "val"),
        lambda e: st.read_loss_matrix(e / RUN, split="val"),
        r"loss_matrix\(run, split\).*read_loss_matrix\(run, split=...\)",
    ),
    (
        lambda e: st.recorded_epochs(e / RUN, "train"),
        lambda e: st.loss_epochs(e / RUN, split="train"),
        "recorded_epochs.*loss_epochs",
    ),
    (
        lambda e: st.load_diagrams(e, tree="split"),
        lambda e: st.read_diagrams(e, tree="split"),
        "load_diagrams.*read_diagrams",
    ),
    (
        lambda e: st.load_diagrams(e, lazy=True),
        lambda e: st.scan_diagrams(e),
        "scan_diagrams",
    ),
    (
        lambda e: st.diagram_at(e / RUN, "val", "join", 1),
        lambda e: st.read_diagram(e / RUN, split="val", tree="join", epoch=1),
        "diagram_at.*read_diagram",
    ),
    (
        lambda e: D.topology_epochs(e / RUN, "val"),
        lambda e: st.diagram_epochs(e / RUN, split="val"),
        "topology_epochs.*diagram_epochs",
    ),
    (
        lambda e: st.run_graph(e / RUN, "val", k=5),
        lambda e: st.graph_for_run(e / RUN, split="val", k=5),
        "run_graph.*graph_for_run",
    ),
    (
        lambda e: st.load_landscape(e / LANDSCAPE),
        lambda e: st.read_landscape(e / LANDSCAPE),
        "load_landscape.*read_landscape",
    ),
    (
        lambda e: st.read_loss_table(e / RUN, "val", 2),
        lambda e: st.read_loss_table(e / RUN, split="val", epoch=2),
        r"read_loss_table\(run, split, epoch\)",
    ),
    (
        lambda e: st.read_diagram(e / RUN, split="val", tree="join", epoch=0).kind,
        lambda e: st.read_diagram(e / RUN, split="val", tree="join", epoch=0).tree,
        r"Diagram.kind.*Diagram.tree",
    ),
    (
        lambda e: Diagram([1.0], [2.0], [0], [1], kind="join"),
        lambda e: Diagram([1.0], [2.0], [0], [1], tree="join"),
        r"Diagram\(kind=...\).*Diagram\(tree=...\)",
    ),
    (
        lambda e: Diagram.from_polars(
            pl.DataFrame(
                {"birth": [1.0], "death": [2.0], "birth_sample": [0], "death_sample": [1]}
            ),
            kind="join",
        ),  # fmt: skip
        lambda e: Diagram([1.0], [2.0], [0], [1], "join"),
        r"from_polars\(kind=...\)",
    ),
]


@pytest.mark.parametrize(("old", "new", "names"), FORMER, ids=[f[2].split(".")[0] for f in FORMER])
def test_each_former_name_warns_naming_its_replacement_and_returns_the_same(exp, old, new, names):
    with pytest.warns(DeprecationWarning, match=names) as caught:
        got = old(exp)
    # The warning points at the line that called the former name (this file), not inside
    # sampletopo, so a user sees which of their lines to change.
    assert {Path(w.filename).name for w in caught if w.category is DeprecationWarning} == {
        Path(__file__).name
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # the new names never warn
        expected = new(exp)
    _same(got, expected)


def test_the_former_names_stay_importable_from_their_old_modules():
    from sampletopo.analysis import diagram_at, load_diagrams, run_graph, topology_epochs
    from sampletopo.landscape import load_landscape
    from sampletopo.record import load_losses, loss_matrix, recorded_epochs

    assert (load_losses, loss_matrix, recorded_epochs) == (
        D.load_losses,
        D.loss_matrix,
        D.recorded_epochs,
    )
    assert (load_diagrams, diagram_at, topology_epochs, run_graph, load_landscape) == (
        D.load_diagrams,
        D.diagram_at,
        D.topology_epochs,
        D.run_graph,
        D.load_landscape,
    )
    assert st.loss_matrix is D.loss_matrix and st.load_diagrams is D.load_diagrams


def test_a_diagram_table_of_the_old_kind_column_reads_back():
    """``Diagram.to_polars`` wrote a ``kind`` column before it was called ``tree``."""
    d = Diagram([0.0, 1.0], [2.0, np.inf], [3, 4], [5, -1], "join")
    new = d.to_polars()
    assert new.columns[0] == "tree"
    old = new.rename({"tree": "kind"})
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        back = Diagram.from_polars(old)
    assert back.tree == "join" and back.to_numpy().tolist() == d.to_numpy().tolist()
    with pytest.raises(st.SampletopoError, match="tree='join' and kind='split'"):
        with pytest.warns(DeprecationWarning):
            Diagram([0.0], [1.0], [0], [1], "join", kind="split")
