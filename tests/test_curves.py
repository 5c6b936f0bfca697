"""Wasserstein curves (issue 17): the exact assignment solver, hera's ``delta``, the
``min_persistence`` bound, ``jobs``, and a killed computation resumed without recomputing."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs
from polars.testing import assert_frame_equal

import sampletopo as st
from sampletopo import analysis
from sampletopo._errors import SampletopoError
from sampletopo.cli import main
from sampletopo.readers import read_diagram
from sampletopo.runs import graph_runs, runs_in

# --- the solvers ------------------------------------------------------------------------------

_value = hs.floats(-5.0, 5.0, allow_nan=False, width=32)
_pers = hs.floats(0.0, 3.0, allow_nan=False, width=32)


def _diagram(pairs: list[tuple[float, float]], tree: str = "join") -> st.Diagram:
    b = np.array([p[0] for p in pairs], dtype=float)
    d = b + np.array([p[1] for p in pairs], dtype=float)
    if tree == "split":
        b, d = -b, -d
    ids = np.arange(len(pairs))
    return st.Diagram(b, d, ids, ids + 1000, tree)


@settings(max_examples=60, deadline=None)
@given(
    a=hs.lists(hs.tuples(_value, _pers), max_size=7),
    b=hs.lists(hs.tuples(_value, _pers), max_size=7),
    order=hs.sampled_from([1.0, 2.0, 3.5]),
    internal_p=hs.sampled_from([np.inf, 1.0, 2.0]),
    tree=hs.sampled_from(["join", "split"]),
)
def test_the_assignment_solver_equals_pots_exact_one(a, b, order, internal_p, tree):
    da, db = _diagram(a, tree), _diagram(b, tree)
    exact = st.wasserstein(da, db, order=order, internal_p=internal_p, backend="pot")
    got = st.wasserstein(da, db, order=order, internal_p=internal_p, backend="assignment")
    assert got == pytest.approx(exact, rel=1e-9, abs=1e-12)


@settings(max_examples=30, deadline=None)
@given(
    a=hs.lists(hs.tuples(_value, _pers), min_size=1, max_size=40),
    b=hs.lists(hs.tuples(_value, _pers), min_size=1, max_size=40),
    order=hs.sampled_from([1.0, 2.0]),
    delta=hs.sampled_from([0.5, 0.1, 0.01]),
)
def test_hera_is_within_its_delta_above_the_exact_distance(a, b, order, delta):
    # The documented bound: hera returns the cost of a matching, so exact <= w <= (1+delta) exact.
    da, db = _diagram(a), _diagram(b)
    exact = st.wasserstein(da, db, order=order, backend="assignment")
    w = st.wasserstein(da, db, order=order, backend="hera", delta=delta)
    assert exact * (1 - 1e-12) - 1e-12 <= w <= (1 + delta) * exact + 1e-12


def test_a_hand_worked_assignment():
    # (0,4) <-> (1,4): 1; (0,0.5) to the diagonal: 0.25; (2,3) to the diagonal: 0.5.
    a = _diagram([(0.0, 4.0), (0.0, 0.5)])
    b = _diagram([(1.0, 3.0), (2.0, 1.0)])
    assert st.wasserstein(a, b, backend="assignment") == pytest.approx(1.75)
    assert st.wasserstein(a, b, order=2, backend="assignment") == pytest.approx(
        np.sqrt(1 + 0.25**2 + 0.5**2)
    )
    assert st.wasserstein(a, st.Diagram.empty("join"), backend="assignment") == pytest.approx(2.25)


@settings(max_examples=40, deadline=None)
@given(
    a=hs.lists(hs.tuples(_value, _pers), min_size=1, max_size=12),
    b=hs.lists(hs.tuples(_value, _pers), min_size=1, max_size=12),
    order=hs.sampled_from([1.0, 2.0]),
)
def test_both_matching_forms_give_the_exact_cost(a, b, order):
    # The fast form and the square one (the fallback) each reach POT's optimum.
    from sampletopo.diagrams import (
        _candidate_edges,
        _fast_matching_cost,
        _square_matching_cost,
        _to_diagonal,
    )

    pa, pb = (np.array([(x, x + p) for x, p in pairs if p > 0]) for pairs in (a, b))
    if len(pa) == 0 or len(pb) == 0:
        return
    if len(pa) > len(pb):
        pa, pb = pb, pa
    da, db = (_to_diagonal(x, np.inf) ** order for x in (pa, pb))
    edges = _candidate_edges(pa, pb, da, db, order, np.inf)
    exact = st.wasserstein(_diagram(a), _diagram(b), order=order, backend="pot") ** order
    assert _fast_matching_cost(*edges, da, db) == pytest.approx(exact, rel=1e-9, abs=1e-12)
    assert _square_matching_cost(*edges, da, db) == pytest.approx(exact, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("backend", ["assignment", "pot", "hera"])
@pytest.mark.parametrize("order", [1.0, 2.0])
def test_the_distance_does_not_depend_on_the_unit_of_the_loss(backend, order):
    # W(sA, sB) = s W(A, B). Before the points were scaled to unit size, W2 at s = 1e-6 came
    # out 9 % (assignment) and 25 % (POT) off: both solvers work to absolute tolerances.
    rng = np.random.default_rng(3)
    pairs = [list(zip(rng.random(200), rng.exponential(1e-2, 200))) for _ in range(2)]
    a, b = (_diagram(p) for p in pairs)
    ref = st.wasserstein(a, b, order=order, backend="hera", delta=1e-10)
    for s in (1e-9, 1e-6, 1e3, 1e9):
        sa, sb = (st.Diagram(d.birth * s, d.death * s, d.birth_sample, d.death_sample, "join")
                  for d in (a, b))  # fmt: skip
        got = st.wasserstein(sa, sb, order=order, backend=backend, delta=1e-10)
        assert got / s == pytest.approx(ref, rel=1e-9), s


@pytest.mark.parametrize("order", [1.0, 2.0])
def test_small_costs_beside_a_huge_pair_are_exact(order):
    # Both diagrams hold a pair of persistence 1e9, 1e-3 apart, beside 200 ordinary pairs: the
    # distance is (W(ordinary)^p + 1e-3^p)^(1/p). The fast form lost the ordinary part (0.0).
    rng = np.random.default_rng(4)
    pairs = [list(zip(rng.random(200), rng.exponential(1e-2, 200))) for _ in range(2)]
    small = st.wasserstein(*(_diagram(p) for p in pairs), order=order, backend="hera", delta=1e-10)
    a, b = _diagram([*pairs[0], (0.0, 1e9)]), _diagram([*pairs[1], (0.0, 1e9 + 1e-3)])
    expected = (small**order + 1e-3**order) ** (1 / order)
    assert st.wasserstein(a, b, order=order, backend="assignment") == pytest.approx(
        expected, rel=1e-6
    )


def test_delta_is_checked_with_one_error():
    d = _diagram([(0.0, 1.0)])
    for bad in (0, -0.1, 2.0, float("nan"), "0.01"):
        with pytest.raises(SampletopoError, match="'delta' parameter of wasserstein"):
            st.wasserstein(d, d, backend="hera", delta=bad)


# --- the curves of an experiment ---------------------------------------------------------------


@pytest.fixture
def exp(experiment, tmp_path):
    out, _ = experiment
    dest = tmp_path / "exp"
    shutil.copytree(out, dest)
    for p in dest.glob("*/topology/wasserstein.parquet"):
        p.unlink()
    return dest


def _count_epochs(monkeypatch) -> list[int]:
    """Patch the curves' worker to count the epochs it computes (serial path only)."""
    seen: list[int] = []
    work = analysis._w_work

    def counting(task):
        seen.extend(e for e, _ in task[5])
        return work(task)

    monkeypatch.setattr(analysis, "_w_work", counting)
    return seen


def test_jobs_give_the_same_table_as_one_process(exp):
    one = analysis.wasserstein_to_reference(exp, orders=(1, 2), write=False)
    two = analysis.wasserstein_to_reference(exp, orders=(1, 2), jobs=2, write=False)
    assert_frame_equal(one, two)
    assert one.height == 2 * 2 * 2 * 5  # runs x splits x trees x epochs


def test_min_persistence_stays_within_the_stored_bound(exp):
    exact = analysis.wasserstein_to_reference(exp, orders=(1, 2), write=False)
    pers = st.read_diagrams(exp).filter(pl.col("persistence").is_finite())["persistence"]
    m = float(pers.quantile(0.5))  # half the pairs left out: a real test of the bound
    cut = analysis.wasserstein_to_reference(exp, orders=(1, 2), min_persistence=m, write=False)
    both = cut.join(exact, on=["run", "split", "tree", "epoch"], suffix="_exact")
    for o in ("w1", "w2"):
        gap = (both[o] - both[f"{o}_exact"]).abs()
        assert (gap <= both[f"{o}_bound"] + 1e-12).all(), o
        assert (both[f"{o}_bound"] > 0).sum() > both.height / 2  # pairs were left out
    assert set(cut["min_persistence"]) == {m}
    # The bound by hand for one row: each left-out pair costs at most half its persistence.
    run = runs_in(exp)[0].path
    row = both.filter(
        (pl.col("run") == run.name)
        & (pl.col("split") == "train")
        & (pl.col("tree") == "join")
        & (pl.col("epoch") == 0)
    )
    halves = []
    for e in (0, 4):
        d = read_diagram(run, split="train", tree="join", epoch=e).finite()
        halves.append(d.persistence[d.persistence < m] / 2)
    assert row["w1_bound"][0] == pytest.approx(halves[0].sum() + halves[1].sum())
    expected_w2 = np.sqrt((halves[0] ** 2).sum()) + np.sqrt((halves[1] ** 2).sum())
    assert row["w2_bound"][0] == pytest.approx(expected_w2)


def test_stored_rows_are_reused_only_for_the_same_settings_and_diagrams(exp, monkeypatch):
    seen = _count_epochs(monkeypatch)
    first = analysis.wasserstein_to_reference(exp)
    assert len(seen) == 40
    seen.clear()
    assert_frame_equal(analysis.wasserstein_to_reference(exp), first)
    assert seen == []  # all reused
    hera = analysis.wasserstein_to_reference(exp, backend="hera", delta=0.01)
    assert len(seen) == 40 and set(hera["backend"]) == {"hera"}
    assert set(hera["delta"]) == {0.01}
    np.testing.assert_array_less(hera["w1_bound"] - 0.01 * hera["w1"], 1e-15)
    np.testing.assert_allclose(hera["w1"], first["w1"], rtol=0.01)
    seen.clear()
    analysis.wasserstein_to_reference(exp, reference=2)
    assert len(seen) == 40
    seen.clear()
    # Other diagrams (another k, beside the first in topology/k=6,features=raw/): every row
    # is new.
    analysis.compute_topology(exp, k=6, overwrite=True, progress=False)
    again = analysis.wasserstein_to_reference(graph_runs(exp, k=6), reference=2)
    assert len(seen) == 40
    assert not (again["diagram_hash"] == first["diagram_hash"]).any()


def test_bad_settings_are_one_error_each(exp):
    for kw, name in (
        ({"orders": [0.5]}, "orders"),
        ({"orders": []}, "orders"),
        ({"delta": 0.0}, "delta"),
        ({"min_persistence": -1.0}, "min_persistence"),
        ({"backend": "gudhi"}, "backend"),
        ({"jobs": 0}, "jobs"),
    ):
        with pytest.raises(SampletopoError, match=f"'{name}' parameter of wasserstein_to_ref"):
            analysis.wasserstein_to_reference(exp, write=False, **kw)


def test_the_command_line_passes_the_curve_options(exp, capsys):
    argv = ["topology", str(exp), "--k", "10", "--no-progress", "--orders", "1", "2"]
    argv += ["--w-solver", "hera", "--delta", "0.001", "--min-persistence", "0.01", "--jobs", "2"]
    assert main(argv) == 0
    wd = st.read_wasserstein(exp)
    assert {"w1", "w2", "w1_bound", "w2_bound"} <= set(wd.columns)
    assert set(wd["backend"]) == {"hera"} and set(wd["delta"]) == {0.001}
    assert set(wd["min_persistence"]) == {0.01}
    capsys.readouterr()
    before = {p: p.stat().st_mtime_ns for p in exp.rglob("*.parquet")}
    assert main(["topology", str(exp), "--k", "10", "--overwrite", "--delta", "2"]) == 2
    assert "'delta' parameter of wasserstein_to_reference" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in exp.rglob("*.parquet")} == before  # no work done


# --- resume after kill -9 ----------------------------------------------------------------------

# Slowed down (a pause after each epoch) and storing after every task, so that a SIGKILL lands
# in the middle of the curves with some of them stored.
_SLOW = textwrap.dedent(
    """
    import sys, time
    from sampletopo import analysis
    work = analysis._w_work
    def slow(task):
        rows = work(task)
        print("done", flush=True)
        time.sleep(0.3)
        return rows
    analysis._w_work = slow
    analysis._W_SAVE_EVERY = 0.0
    analysis._W_CHUNK = 1
    analysis.wasserstein_to_reference(sys.argv[1])
    print("finished", flush=True)
    """
)


def test_a_killed_computation_keeps_its_rows_and_computes_only_the_rest(exp, monkeypatch):
    run = runs_in(exp)[0].path
    child = subprocess.Popen(
        [sys.executable, "-c", _SLOW, str(run)], stdout=subprocess.PIPE, text=True
    )
    try:
        for _ in range(6):
            assert child.stdout.readline().strip() == "done"
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=60) == -signal.SIGKILL
    finally:
        child.kill()
        child.wait()
    kept = st.read_wasserstein(run)
    assert 4 <= kept.height < 20  # stored as it grew; not all of the run's 20 rows
    seen = _count_epochs(monkeypatch)
    resumed = analysis.wasserstein_to_reference(run)
    assert len(seen) == 20 - kept.height  # only the missing rows were computed
    fresh = analysis.wasserstein_to_reference(run, write=False)  # all reused now
    (run / "topology" / "wasserstein.parquet").unlink()
    assert_frame_equal(resumed, analysis.wasserstein_to_reference(run, write=False))
    assert_frame_equal(fresh, resumed)


def test_figures_and_report_reuse_the_curves_topology_stored(exp, monkeypatch):
    # summary_tables (behind figures and report) takes the stored W1 rows of the same diagrams
    # whatever solver made them, and leaves the table (with its W2) as it is.
    analysis.wasserstein_to_reference(exp, orders=(1, 2), backend="hera", delta=0.01)
    stored = st.read_wasserstein(exp)
    seen = _count_epochs(monkeypatch)
    _, wdist = analysis.summary_tables(exp)
    assert seen == []
    assert_frame_equal(wdist, stored.drop(["w2", "w2_bound"]))
    assert_frame_equal(st.read_wasserstein(exp), stored)
    # Other diagrams (another k): computed anew, with the default solver; the first setting's
    # stored table is untouched.
    analysis.compute_topology(exp, k=6, overwrite=True, progress=False)
    _, wdist = analysis.summary_tables(graph_runs(exp, k=6))
    assert len(seen) == 40 and set(wdist["backend"]) == {"assignment"}
    assert_frame_equal(st.read_wasserstein(exp), stored)
