"""The error tree and the one message form: every class exported, every raise and warning of the
package inside the tree, and the validation helpers' messages checked word for word."""

from __future__ import annotations

import ast
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest

import sampletopo as st
from sampletopo import _errors
from sampletopo._validation import (
    as_index_array,
    bytes_text,
    check_bool,
    check_choice,
    check_int,
    check_path,
    check_real,
    check_split,
    check_tree,
    invalid,
    max_threads,
    show,
)

PACKAGE = Path(st.__file__).parent


# --- the tree --------------------------------------------------------------------------------


def test_every_class_of_the_tree_is_exported_and_sits_where_the_docs_say():
    for name in _errors.__all__:
        assert getattr(st, name) is getattr(_errors, name), name
        assert name in st.__all__
    errors = [c for c in map(st.__dict__.get, _errors.__all__) if issubclass(c, Exception)]
    errors = [c for c in errors if not issubclass(c, Warning)]
    assert all(issubclass(c, st.SampletopoError) and issubclass(c, ValueError) for c in errors)
    assert issubclass(st.ParameterError, TypeError)  # as scikit-learn's InvalidParameterError
    assert issubclass(st.FolderLockedError, st.RunFolderError)
    for beside in (st.DamagedFileError, st.CheckpointChangedError, st.RunDivergedError):
        assert beside.__mro__[1] is st.SampletopoError, beside
    warning_classes = [getattr(st, n) for n in _errors.__all__ if n.endswith("Warning")]
    assert len(warning_classes) >= 14
    assert all(issubclass(w, st.SampletopoWarning) for w in warning_classes)
    assert issubclass(st.SampletopoWarning, UserWarning)
    # Filters written for the classes' former bases keep working.
    for name in ("NonFiniteLossWarning", "DamagedFileWarning", "StaleLockWarning"):
        assert issubclass(getattr(st, name), RuntimeWarning), name
    # The old import places still give the same classes.
    from sampletopo._folders import FolderLockedError
    from sampletopo._runfiles import DamagedFileError
    from sampletopo.train import RunDivergedError

    assert (FolderLockedError, DamagedFileError, RunDivergedError) == (
        st.FolderLockedError,
        st.DamagedFileError,
        st.RunDivergedError,
    )


@pytest.mark.parametrize(
    "error",
    [
        st.ParameterError("The 'k' parameter of f must be 1. Got 2 instead.", parameter="k"),
        st.FolderLockedError("held", holder={"pid": 7, "host": "h"}),
        st.DamagedFileError("/r/epoch=0001.parquet", "it is empty", "Record it again."),
        st.CheckpointChangedError("'/c/e.pt' changed", " Record it again."),
        st.RunDivergedError("diverged", epoch=4),
        st.RankFailedError("rank 1 failed: KeyError: 'x'", rank=1, kind="KeyError"),
        st.RunFolderError("not a run folder"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_cross_process_boundaries_whole(error):
    # Topology workers and torchrun ranks send errors through pickle.
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error) and str(back) == str(error)
    assert vars(back) == vars(error)


def test_warnings_filter_as_one_family():
    with warnings.catch_warnings():
        warnings.simplefilter("error", st.SampletopoWarning)
        with pytest.raises(st.TopologyWarning):
            warnings.warn("x", st.TopologyWarning, stacklevel=1)
        with pytest.raises(st.NonFiniteLossWarning):
            warnings.warn("x", st.NonFiniteLossWarning, stacklevel=1)


# --- every raise and every warning of the package is in the tree -------------------------------


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def _sources():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, ast.parse(path.read_text())


# Built-in errors raised on purpose and caught in the same function (read_npz turns each into
# one DamagedFileError) or re-raised with the path (the OS errors of _io): not the user's to see.
_INTERNAL = {
    ("_runfiles.py", "ValueError"),
    ("_io.py", "OSError"),
    ("_runfiles.py", "AssertionError"),
}


def test_no_module_raises_a_builtin_error_at_the_user():
    found = []
    for path, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                name = getattr(node.exc.func, "id", None)
                if name in {"RuntimeError", "ValueError", "TypeError", "KeyError", "OSError",
                            "AssertionError", "IndexError", "Exception"}:  # fmt: skip
                    if (path.name, name) not in _INTERNAL:
                        found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {name}")
    assert not found, found


def test_every_warning_the_package_gives_is_a_sampletopo_warning():
    allowed = {name for name in _errors.__all__ if name.endswith("Warning")} | {
        "DeprecationWarning"  # the readers' former names: Python's own category, on purpose
    }
    found = []
    for path, tree in _sources():
        for call in _calls(tree):
            func = call.func
            if not (isinstance(func, ast.Attribute) and func.attr == "warn"):
                continue
            if getattr(func.value, "id", None) != "warnings":
                continue
            category = None
            if call.args and isinstance(call.args[0], ast.Call):
                category = getattr(call.args[0].func, "id", None)  # warn(SomeWarning(...))
            if len(call.args) >= 2:
                category = getattr(call.args[1], "id", None)
            for kw in call.keywords:
                if kw.arg == "category":
                    category = getattr(kw.value, "id", None)
            if category not in allowed:
                found.append(f"{path.relative_to(PACKAGE)}:{call.lineno} {category}")
    assert not found, found


# --- the one message form ------------------------------------------------------------------


def test_invalid_writes_the_one_form():
    e = invalid("k", "an int in the range [1, 9]", 10, where="knn_graph", fix="Use fewer.")
    assert isinstance(e, st.ParameterError) and e.parameter == "k"
    assert str(e) == (
        "The 'k' parameter of knn_graph must be an int in the range [1, 9]. Got 10 instead. "
        "Use fewer."
    )
    flag = invalid("--lr", "a number", "x", where="sampletopo train", kind="flag")
    assert str(flag) == "The '--lr' flag of sampletopo train must be a number. Got 'x' instead."
    assert str(invalid("split", "'train' or 'val'", "t", where=None)) == (
        "The 'split' parameter must be 'train' or 'val'. Got 't' instead."
    )


def test_ints_reals_bools():
    assert check_int("k", np.int64(3), 1, 9, where="f") == 3
    for bad in (True, 3.0, "3", 0, 10):
        with pytest.raises(st.ParameterError, match=r"an int in the range \[1, 9\]"):
            check_int("k", bad, 1, 9, where="f")
    with pytest.raises(st.ParameterError, match=r"range \[0, inf\]\. Got -1 instead"):
        check_int("n", -1, 0, None, where="f")
    assert check_real("lr", 1e6, low=0, low_open=True, high=1e6, where="f") == 1e6
    msg = r"The 'lr' parameter of f must be a real number in the range \(0, 1e6\]. Got 3.5e\+38"
    with pytest.raises(st.ParameterError, match=msg):
        check_real("lr", 3.5e38, low=0, low_open=True, high=1e6, where="f")
    for bad in (float("nan"), float("inf"), True, "1", None):
        with pytest.raises(st.ParameterError):
            check_real("x", bad, low=0, where="f")
    assert check_real("p", float("inf"), low=1, allow_inf=True, where="f") == float("inf")
    with pytest.raises(st.ParameterError, match=r"range \[1, inf\]\. Got 0.5"):
        check_real("p", 0.5, low=1, allow_inf=True, where="f")
    with pytest.raises(st.ParameterError, match=r"range \[0, 1\)\. Got 1"):
        check_real("momentum", 1, low=0, high=1, high_open=True, where="f")
    assert check_bool("b", np.bool_(True), where="f") is True
    with pytest.raises(st.ParameterError, match="a bool"):
        check_bool("b", 1, where="f")


def test_choices_name_every_choice():
    assert check_choice("m", "l2", ("l2", "cosine"), where="f") == "l2"
    with pytest.raises(st.ParameterError) as two:
        check_choice("m", "l1", ("l2", "cosine"), where="f")
    assert str(two.value) == "The 'm' parameter of f must be 'l2' or 'cosine'. Got 'l1' instead."
    with pytest.raises(st.ParameterError, match="must be one of 'a', 'b', 'c'. Got"):
        check_choice("m", "d", "abc", where="f")
    with pytest.raises(st.ParameterError, match=r"Got \['a'\] instead"):
        check_choice("m", ["a"], "abc", where="f")  # unhashable: never one of them
    assert check_split("val", where="f") == "val"
    with pytest.raises(st.ParameterError, match="'train' or 'val'. Got 'test'"):
        check_split("test", where="f")
    with pytest.raises(
        st.ParameterError,
        match=r"'join' \(sublevel sets: valleys, learned regions\) or 'split' \(superlevel",
    ):
        check_tree("peaks", where="f")
    assert check_tree("both", where="f", both=True) == "both"


def test_paths_are_shown_whole_and_told_apart(tmp_path):
    long = tmp_path / ("x" * 120)
    with pytest.raises(st.ParameterError) as missing:
        check_path("path", long, where="f", exists="file")
    assert repr(str(long)) in str(missing.value) and "It does not exist." in str(missing.value)
    with pytest.raises(st.ParameterError, match="It is a folder, not a file"):
        check_path("path", tmp_path, where="f", exists="file")
    with pytest.raises(st.ParameterError, match=r"ending in \.npz.*'t\.csv\.npz'"):
        check_path("out", "t.csv", where="f", suffix=".npz")
    with pytest.raises(st.ParameterError, match="a path"):
        check_path("out", 3, where="f")
    assert show(np.int64(7)) == "7" and show("a" * 200) == repr("a" * 200)
    assert show(list(range(100))).endswith("...")


def test_index_arrays_are_never_rounded():
    assert as_index_array([1.0, 2.0], name="ids", where="f").tolist() == [1, 2]
    with pytest.raises(st.ParameterError, match=r"Got 0.5 at position 1 instead"):
        as_index_array([1, 0.5], name="ids", where="f")


def test_bounds_of_the_machine():
    assert 16 <= max_threads() <= 256
    assert max_threads() >= min(256, 4 * (os.cpu_count() or 1))
    assert bytes_text(512) == "512 B" and bytes_text(3 * 2**30) == "3 GiB"
    assert bytes_text(7.11 * 2**50) == "7.1 PiB"
