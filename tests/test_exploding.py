"""Exploding losses: finite, but far above the epoch before or above the bound (see
:mod:`sampletopo._exploding`). A real recorded run whose weights are scaled up at two epochs;
the oracle is the rule worked by hand on the means of the recorded tables."""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sampletopo import analysis
from sampletopo._errors import ExplodingLossWarning, RecorderWarning
from sampletopo._exploding import BOUND, FACTOR, why_exploding
from sampletopo.data import load_dataset
from sampletopo.readers import read_losses, read_summaries
from sampletopo.recorder import LossRecorder
from sampletopo.report import run_table


def test_the_rule_by_hand():
    assert (FACTOR, BOUND) == (100.0, 1e6)
    assert why_exploding(2.0, None, previous_epoch=None) is None
    assert why_exploding(200.0, 2.0, previous_epoch=1) is None  # exactly 100 times: not more
    assert why_exploding(200.1, 2.0, previous_epoch=1) == (
        "mean loss 200.1 is 100 times that of epoch 1 (2)"
    )
    assert why_exploding(1e6, None, previous_epoch=None) is None  # the bound itself is allowed
    assert why_exploding(1.5e6, 1e6, previous_epoch=0) == "mean loss 1.5e+06 is above 1e+06"
    assert why_exploding(5.0, 0.0, previous_epoch=0) is None  # no scale to compare with
    for bad in (float("nan"), float("inf")):  # NaN/inf keep their own warning and error
        assert why_exploding(bad, 1.0, previous_epoch=0) is None


@pytest.fixture(scope="module")
def exploded(tmp_path_factory):
    """Digits, a small MLP trained two epochs; then its last layer scaled by 1e3 (epoch 3),
    left as it is (epoch 4) and scaled by 1e4 more (epoch 5)."""
    torch.manual_seed(0)
    ds = load_dataset("digits", max_samples=100)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = ds.tensors("train")
    run_dir = tmp_path_factory.mktemp("exp") / "run"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with LossRecorder(run_dir, ds, optimizer=opt) as rec:
            rec.on_train_epoch_end(0, model)
            for epoch in range(1, 6):
                if epoch <= 2:
                    loss = F.cross_entropy(model(x), y)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                with torch.no_grad():
                    model[3].weight.mul_({3: 1e3, 5: 1e4}.get(epoch, 1.0))
                rec.on_train_epoch_end(epoch, model)
    # (A local nn.Sequential also gets the one-line model-spec RecorderWarning: not ours.)
    return run_dir, [w for w in caught if issubclass(w.category, ExplodingLossWarning)]


def _means(run_dir) -> dict[tuple[str, int], float]:
    df = read_losses(run_dir).group_by("split", "epoch").agg(pl.col("loss").mean())
    return {(s, int(e)): float(m) for s, e, m in df.iter_rows()}


def test_the_recorder_warns_naming_run_split_and_epoch(exploded):
    run_dir, caught = exploded
    means = _means(run_dir)
    # The oracle, by hand: more than 100 times the epoch before, or above 1e6.
    expected = {
        (s, e) for (s, e), m in means.items() if e > 0 and (m > 1e6 or m > 100 * means[(s, e - 1)])
    }
    assert {("val", 3), ("train", 5), ("val", 5)} <= expected
    assert ("val", 4) not in expected and ("train", 4) not in expected  # 1x: no jump
    assert issubclass(ExplodingLossWarning, RecorderWarning)
    got = {}
    for w in caught:
        msg = str(w.message)
        assert msg.startswith("run: the ") and "loss exploded at epoch" in msg
        split, epoch = msg.split(" ")[2], int(msg.split("epoch ")[1].split(":")[0])
        got[(split, epoch)] = msg
    assert set(got) == expected
    m3, m2 = means[("val", 3)], means[("val", 2)]
    assert (
        f"mean loss {m3:.4g} is {m3 / m2:.3g} times that of epoch 2 ({m2:.4g})" in got[("val", 3)]
    )
    assert f"mean loss {means[('val', 5)]:.4g} is above 1e+06" in got[("val", 5)]


def test_the_summary_flags_the_same_epochs_and_the_report_names_them(exploded):
    run_dir, caught = exploded
    analysis.compute_topology(run_dir, k=5, progress=False)
    summary = analysis.summarize(run_dir)
    flagged = {
        (s, int(e))
        for s, e in summary.filter(pl.col("exploding"))
        .select("split", "epoch")
        .unique()
        .iter_rows()
    }
    warned = {
        (str(w.message).split(" ")[2], int(str(w.message).split("epoch ")[1].split(":")[0]))
        for w in caught
    }
    assert flagged == warned
    assert summary["exploding"].dtype == pl.Boolean and summary["exploding"].null_count() == 0
    assert read_summaries(run_dir).equals(summary)
    # Stored before the flag existed: read back with the same rule on the stored means.
    old = summary.drop("exploding")
    from sampletopo._runfiles import write_parquet
    from sampletopo.runs import Run

    write_parquet(old, Run(run_dir).summary_file)
    assert read_summaries(run_dir).equals(summary)
    table = run_table([run_dir], summary=summary)
    epochs = sorted({e for _, e in flagged})
    assert table["loss exploded at epochs"].to_list() == [", ".join(map(str, epochs))]
    assert np.isfinite(summary["mean_loss"].to_numpy()).all()
