"""The learning-rate schedule a run trained with is stored with its losses and marked in figures.

Oracles: the optimizer's own ``param_groups`` read while the loop trains (and the closed form of
``MultiStepLR``: ``lr * gamma ** #{m in milestones : m < e}`` for epoch ``e``), the formula
:func:`sampletopo.train.lr_at_epoch` that ``sampletopo train`` documents, and the vertical lines
matplotlib holds on the drawn axes. A loop killed with SIGKILL goes through this file run as a
script (``python tests/test_schedule.py SPEC``) in a real subprocess.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sampletopo import analysis
from sampletopo._errors import DamagedFileError, FigureWarning, RecorderWarning, StaleLockWarning
from sampletopo._runfiles import DamagedFileWarning
from sampletopo.data import Dataset, load_dataset
from sampletopo.figures import run_milestones, write_figure_set
from sampletopo.plotting._topology import plot_total_persistence
from sampletopo.recorder import LossRecorder
from sampletopo.runs import Run, schedule_drops
from sampletopo.train import lr_at_epoch

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 6
MILESTONES = [2, 4]
GAMMA = 0.1
BASE = (0.1, 0.05)  # two parameter groups with their own rates


def _dataset() -> Dataset:
    return load_dataset("digits", max_samples=100)


def _setup(ds: Dataset) -> tuple[nn.Module, torch.optim.Optimizer, Any]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    opt = torch.optim.SGD(
        [
            {"params": model[1].parameters(), "lr": BASE[0]},
            {"params": model[3].parameters(), "lr": BASE[1]},
        ],
        momentum=0.9,
    )
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=MILESTONES, gamma=GAMMA)
    return model, opt, sched


def _train_epoch(model: nn.Module, opt: torch.optim.Optimizer, ds: Dataset, epoch: int) -> None:
    x, y = ds.tensors("train")
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(epoch))
    model.train()
    for i in range(0, len(y), 32):
        idx = perm[i : i + 32]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()


def _closed_form(epoch: int) -> list[float]:
    return [b * GAMMA ** sum(m < epoch for m in MILESTONES) for b in BASE]


def _table(rates: dict[int, list[float]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "epoch": [e for e in sorted(rates) for _ in rates[e]],
            "group": [g for e in sorted(rates) for g in range(len(rates[e]))],
            "lr": [r for e in sorted(rates) for r in rates[e]],
        },
        schema={"epoch": pl.Int32, "group": pl.Int32, "lr": pl.Float64},
    )


@pytest.fixture(scope="module")
def ds() -> Dataset:
    return _dataset()


@pytest.mark.parametrize("order", ["record_then_step", "step_then_record"])
def test_an_own_loop_stores_the_rates_its_optimizer_trained_with(ds, tmp_path, order):
    model, opt, sched = _setup(ds)
    if order == "record_then_step":
        # PyTorch's order (train, record, step): the rates are read at on_train_epoch_end.
        rec = LossRecorder(tmp_path / "run", ds, splits=("val",), optimizer=opt)
    else:
        # The scheduler stepped before recording: on_train_epoch_start reads the rates.
        rec = LossRecorder(tmp_path / "run", ds, splits=("val",), scheduler=sched)
    used: dict[int, list[float]] = {}
    rec.on_train_epoch_end(0, model)
    for epoch in range(1, EPOCHS + 1):
        if order == "step_then_record":
            rec.on_train_epoch_start(epoch)
        used[epoch] = [g["lr"] for g in opt.param_groups]  # the oracle: what the steps used
        _train_epoch(model, opt, ds, epoch)
        if order == "step_then_record":
            sched.step()
            rec.on_train_epoch_end(epoch, model)
        else:
            rec.on_train_epoch_end(epoch, model)
            sched.step()
    rec.close()
    run = Run(tmp_path / "run")
    stored = run.read_schedule()
    assert stored is not None and stored.equals(_table(used))
    for e in range(1, EPOCHS + 1):
        np.testing.assert_allclose(used[e], _closed_form(e), rtol=1e-15)
    assert run.schedule_file == tmp_path / "run" / "losses" / "schedule.parquet"
    assert run.lr_drops() == MILESTONES
    assert run_milestones([run.path]) == MILESTONES


def test_drops_are_changes_between_recorded_neighbours():
    t = _table({1: [0.1], 2: [0.1], 3: [0.2], 5: [0.3], 6: [0.3], 7: [0.3, 0.1]})
    # 2 -> 3 changes; 3 -> 5 is not a step of one epoch; group 1 appears at 7 only
    assert schedule_drops(t) == [2]
    assert schedule_drops(_table({1: [1.0, 1.0], 2: [1.0, 0.5]})) == [1]  # any group
    assert schedule_drops(_table({})) == []


def test_figures_mark_the_stored_drops(ds, tmp_path):
    model, opt, sched = _setup(ds)
    run_dir = tmp_path / "own" / "run"
    with LossRecorder(run_dir, ds, optimizer=opt) as rec:
        rec.on_train_epoch_end(0, model)
        for epoch in range(1, EPOCHS + 1):
            _train_epoch(model, opt, ds, epoch)
            rec.on_train_epoch_end(epoch, model)
            sched.step()
    analysis.compute_topology(run_dir, k=5, progress=False)
    milestones = run_milestones([run_dir])
    ax = plot_total_persistence(
        analysis.summarize(run_dir, write=False), split="val", tree="join", milestones=milestones
    )
    vertical = sorted(
        line.get_xdata()[0]
        for line in ax.get_lines()
        if len(set(line.get_xdata())) == 1 and line.get_linestyle() == ":"
    )
    assert vertical == [2.5, 4.5]  # between epoch m and m + 1
    import matplotlib.pyplot as plt

    plt.close("all")
    # The figure set picks heatmap epochs around the drops (first, m, m + 1, last).
    pngs = write_figure_set(run_dir, tmp_path / "figs", formats=("png",), progress=False)
    assert (tmp_path / "figs" / "diagrams-run-epoch=0006.png") in pngs
    from sampletopo.plotting import default_heatmap_epochs

    assert default_heatmap_epochs(range(EPOCHS + 1), milestones) == [0, 2, 3, 4, 5, 6]


def test_a_train_run_stores_its_documented_formula(experiment):
    _, runs = experiment  # conftest: lr 0.1 and 0.01, milestones [2], gamma 0.1, 4 epochs
    for rd in runs:
        run = Run(rd)
        cfg = run.read_config()
        stored = run.read_schedule()
        expected = {
            e: [lr_at_epoch(e, lr=cfg["lr"], milestones=cfg["milestones"], gamma=cfg["gamma"])]
            for e in range(1, cfg["epochs"] + 1)
        }
        assert stored is not None and stored.equals(_table(expected))
        assert run.lr_drops() == [2]
    assert run_milestones(runs) == [2]


def test_recording_train_checkpoints_stores_their_rates(experiment, tmp_path):
    from sampletopo.from_checkpoints import record_checkpoints

    _, runs = experiment
    again = tmp_path / "again"
    record_checkpoints(
        Run(runs[0]).checkpoints_dir, again, model="mlp", model_kwargs={"hidden": [32]},
        data="digits", splits=("val",), progress=False,
    )  # fmt: skip
    stored = Run(again).read_schedule()
    assert stored is not None and stored.equals(Run(runs[0]).read_schedule())
    assert Run(again).lr_drops() == [2] and run_milestones([again]) == [2]


def test_old_runs_fall_back_to_the_configs_milestones(experiment, tmp_path):
    import shutil

    _, runs = experiment
    copy = tmp_path / "run"
    shutil.copytree(runs[0], copy)
    Run(copy).schedule_file.unlink()
    from sampletopo._runconfig import read_toml, write_toml

    cfg = read_toml(Run(copy).config_file, fix="")
    write_toml(Run(copy).config_file, {**cfg, "milestones": [1, 3]})
    assert Run(copy).lr_drops() is None and run_milestones([copy]) == [1, 3]


def test_a_damaged_schedule_is_named_and_stored_anew(ds, tmp_path):
    model, opt, _ = _setup(ds)
    run_dir = tmp_path / "run"
    with LossRecorder(run_dir, ds, splits=("val",), optimizer=opt) as rec:
        rec.on_train_epoch_end(1, model)
    path = Run(run_dir).schedule_file
    path.write_bytes(path.read_bytes()[:-20])  # cut short
    with pytest.raises(DamagedFileError, match="schedule.parquet"):
        Run(run_dir).read_schedule()
    with pytest.warns(FigureWarning, match="LR changes of run run are not marked"):
        assert run_milestones([run_dir]) == []
    with pytest.warns(DamagedFileWarning, match="stored anew"):
        with LossRecorder(run_dir, ds, splits=("val",), optimizer=opt) as rec:
            rec.on_train_epoch_end(2, model)
    assert Run(run_dir).read_schedule().equals(_table({2: list(BASE)}))  # type: ignore[union-attr]
    # A restart that trains an epoch with other rates says so and stores what it did.
    opt.param_groups[0]["lr"] = 0.5
    with pytest.warns(RecorderWarning, match=r"epoch 2 trained with learning rate\(s\) \[0.5"):
        with LossRecorder(run_dir, ds, splits=("val",), optimizer=opt) as rec:
            rec.on_train_epoch_end(2, model)
    assert Run(run_dir).read_schedule()["lr"].to_list() == [0.5, BASE[1]]  # type: ignore[index]


def test_bad_schedule_sources_are_refused(ds, tmp_path):
    model, opt, sched = _setup(ds)
    from sampletopo._errors import ParameterError

    with pytest.raises(ParameterError, match="'optimizer'.*torch optimizer. Got dict"):
        LossRecorder(tmp_path / "a", ds, optimizer={"lr": 0.1})
    with pytest.raises(ParameterError, match="'scheduler'.*Got SGD"):
        LossRecorder(tmp_path / "a", ds, scheduler=opt)
    other = torch.optim.SGD(model.parameters(), lr=1.0)
    with pytest.raises(ParameterError, match="scheduler of another optimizer"):
        LossRecorder(tmp_path / "a", ds, optimizer=other, scheduler=sched)
    assert not (tmp_path / "a").exists()  # refused before anything was written


# ---------------------------------------------------------------------------------------------
# Killed with SIGKILL and resumed


def _script_loop(spec: dict[str, Any]) -> None:
    """The loop of the subprocess: resume from its last checkpoint, train to EPOCHS, SIGKILL
    itself at ``spec["kill"]`` (``[epoch, "before_schedule" | "after_record"]``)."""
    from sampletopo import _writer

    ds = _dataset()
    run_dir, ckpt = Path(spec["run"]), Path(spec["ckpt"])
    kill_epoch, where = spec["kill"] or (None, None)
    if where == "before_schedule":
        original = _writer.RunWriter.write_schedule

        def dying(self, epoch, rates):  # killed as it is about to store the epoch's rates
            if epoch == kill_epoch:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(self, epoch, rates)

        _writer.RunWriter.write_schedule = dying  # type: ignore[method-assign]
    model, opt, sched = _setup(ds)
    start = 0
    if ckpt.is_file():
        state = torch.load(ckpt, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        start = state["epoch"]
    with LossRecorder(run_dir, ds, splits=("val",), scheduler=sched) as rec:
        if start == 0:
            rec.on_train_epoch_end(0, model)
        for epoch in range(start + 1, EPOCHS + 1):
            _train_epoch(model, opt, ds, epoch)
            rec.on_train_epoch_end(epoch, model)
            sched.step()
            if kill_epoch == epoch and where == "after_record":
                os.kill(os.getpid(), signal.SIGKILL)  # recorded, not yet checkpointed
            state = {
                "model": model.state_dict(),
                "opt": opt.state_dict(),
                "sched": sched.state_dict(),
                "epoch": epoch,
            }
            torch.save(state, ckpt)


def test_killed_and_resumed_stores_every_epoch_once(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    run_dir = tmp_path / "run"
    spec = {"run": str(run_dir), "ckpt": str(tmp_path / "ckpt.pt")}
    for kill in ([3, "after_record"], [5, "before_schedule"]):
        out = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), json.dumps({**spec, "kill": kill})],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == -signal.SIGKILL, out.stderr[-3000:]
    stored = Run(run_dir).read_schedule()
    assert stored is not None and stored["epoch"].to_list() == [
        e for e in range(1, 5) for _ in BASE
    ]
    with warnings.catch_warnings(), pytest.warns(StaleLockWarning, match="killed or crashed"):
        warnings.simplefilter("error", RecorderWarning)  # rates of epoch 3 again: the same
        # (the script's nn.Sequential cannot be rebuilt from its class: that warning is expected)
        warnings.filterwarnings("ignore", "Run .* names no model", RecorderWarning)
        _script_loop({**spec, "kill": None})
    expected = _table({e: _closed_form(e) for e in range(1, EPOCHS + 1)})
    stored = Run(run_dir).read_schedule()
    assert stored is not None
    assert stored.select("epoch", "group").equals(expected.select("epoch", "group"))
    np.testing.assert_allclose(stored["lr"].to_numpy(), expected["lr"].to_numpy(), rtol=1e-15)
    assert Run(run_dir).lr_drops() == MILESTONES


if __name__ == "__main__":
    torch.set_num_threads(1)
    _script_loop(json.loads(sys.argv[1]))
