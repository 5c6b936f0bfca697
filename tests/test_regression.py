"""Loss choice: MSE regression recorded and analysed like classification, accuracy left null.

A small synthetic problem, ``y = (sin 2 pi x, cos 2 pi x)`` from an input ``x`` in [0, 1], fit
by an MLP in a loop of our own. Oracles: the squared error averaged over the two output
dimensions, computed by hand in float64 from the model's outputs at each recorded epoch; the
null columns read back from the tables, summaries, regions, member tracks and the report.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sampletopo import analysis
from sampletopo._errors import ParameterError, RecorderWarning, RunFolderError
from sampletopo.data import Dataset, load_dataset
from sampletopo.figures import write_figure_set
from sampletopo.readers import read_losses, read_run_config, read_summaries
from sampletopo.recorder import LossRecorder, evaluate_losses
from sampletopo.report import run_table, write_report
from sampletopo.runs import Run
from sampletopo.samples import top_regions, track_members

EPOCHS = 4


def abs_error(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """A loss of one's own, importable: the mean absolute error per sample."""
    return (outputs - targets).abs().mean(dim=1)


def _sine(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(seed).random(n)
    y = np.stack([np.sin(2 * np.pi * x), np.cos(2 * np.pi * x)], axis=1)
    # Each input a 2x2 image of x (a 1x1 image is the 1-D inputs' case, drawn elsewhere).
    return np.repeat(x.reshape(n, 1, 1, 1), 4, axis=1).reshape(n, 1, 2, 2).astype(np.float32), y


@pytest.fixture(scope="module")
def ds() -> Dataset:
    return Dataset.from_arrays("sine", train=_sine(120, 0), val=_sine(80, 1))


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 2))


@pytest.fixture(scope="module")
def fitted(ds, tmp_path_factory):
    """The run, and the losses computed by hand at each epoch: split -> (epochs x n)."""
    run_dir = tmp_path_factory.mktemp("exp") / "sine"
    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    x, y = ds.tensors("train")
    by_hand: dict[str, list[np.ndarray]] = {"train": [], "val": []}

    def hand() -> None:
        model.eval()
        with torch.no_grad():
            for s in by_hand:
                xs, _ = ds.tensors(s)
                out = model(xs).double().numpy()
                target = ds.labels(s)  # float64 targets, (n, 2)
                by_hand[s].append(((out - target) ** 2).mean(axis=1))

    with LossRecorder(run_dir, ds, loss="mse", optimizer=opt) as rec:
        rec.on_train_epoch_end(0, model)
        hand()
        for epoch in range(1, EPOCHS + 1):
            model.train()
            for _ in range(25):
                loss = F.mse_loss(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
            rec.on_train_epoch_end(epoch, model)
            hand()
    return run_dir, {s: np.vstack(v) for s, v in by_hand.items()}


def test_the_dataset_holds_targets_not_labels(ds):
    assert ds.is_regression and ds.num_classes == 0 and ds.class_names == []
    x, y = ds.tensors("val")
    assert y.dtype == torch.float32 and tuple(y.shape) == (80, 2)
    assert ds.labels("val").dtype == np.float64
    other = Dataset.from_arrays("sine", train=_sine(120, 0), val=_sine(80, 2))
    assert other.fingerprint("val") != ds.fingerprint("val")
    assert other.fingerprint("train") == ds.fingerprint("train")


def test_mse_losses_equal_the_hand_computation(fitted, ds):
    run_dir, by_hand = fitted
    df = read_losses(run_dir)
    for s in ("train", "val"):
        part = df.filter(split=s).sort("epoch", "sample")
        got = part["loss"].to_numpy().reshape(EPOCHS + 1, ds.n(s))
        np.testing.assert_allclose(got, by_hand[s], rtol=1e-12, atol=0)
    assert by_hand["val"][-1].mean() < 0.5 * by_hand["val"][0].mean()  # it learned something
    # No classes: label, prediction and correct are null, not a made-up 0 or False.
    for col in ("label", "pred", "correct"):
        assert df[col].null_count() == df.height, col
    cfg = read_run_config(run_dir)
    assert cfg["loss"] == "mse"
    assert Run(run_dir).read_manifest()["loss"] == "mse"  # type: ignore[index]


def test_topology_figures_samples_and_report_work_without_accuracy(fitted, tmp_path):
    run_dir, by_hand = fitted
    analysis.compute_topology(run_dir, k=5, progress=False)
    assert Run(run_dir).diagram_epochs("val") == list(range(EPOCHS + 1))
    summary = analysis.summarize(run_dir)
    assert summary["accuracy"].null_count() == summary.height
    val = summary.filter(split="val", tree="join").sort("epoch")
    np.testing.assert_allclose(val["mean_loss"].to_numpy(), by_hand["val"].mean(axis=1))
    assert read_summaries(run_dir).equals(summary)
    pngs = write_figure_set(run_dir, tmp_path / "figs", formats=("png",), progress=False)
    assert pngs and all(p.stat().st_size > 0 for p in pngs)
    regions = top_regions(run_dir, split="val", epoch=EPOCHS, k=5, top=3)
    assert regions.height > 0
    for col in ("accuracy", "dominant_label", "member_labels", "member_preds"):
        assert regions[col].null_count() == regions.height, col
    tracks = track_members(run_dir, split="val", epoch=EPOCHS, regions=regions)
    assert tracks.curves["accuracy"].null_count() == tracks.curves.height
    assert tracks.members["correct"].null_count() == tracks.members.height
    assert tracks.members["learned_epoch"].null_count() == tracks.members.height
    assert tracks.overall["accuracy"].null_count() == EPOCHS + 1
    from sampletopo.plotting import sample_figures

    drawn = sample_figures(run_dir, tmp_path / "samples", epoch=EPOCHS, tracks=tracks)
    assert len(drawn) == regions.height + 1 and all(p.stat().st_size > 0 for p in drawn)
    table = run_table([run_dir])
    assert table["val acc"].to_list() == [None]
    assert table["val loss"][0] == pytest.approx(by_hand["val"][-1].mean())
    page = write_report(run_dir, tmp_path / "report", progress=False).read_text()
    text = re.sub(r"data:[a-z/+]+;base64,[A-Za-z0-9+/=]+", "", page)  # the figures' bytes
    assert "<td>sine</td>" in text and not re.search(r"\bnan\b", text, re.IGNORECASE)


def test_own_loss_functions(ds, tmp_path):
    model = _mlp()
    x, y = ds.tensors("val")
    want = (model(x).detach().double() - y.double()).abs().mean(dim=1).numpy()
    # Importable: its path is stored, and the config rebuilds it.
    with LossRecorder(tmp_path / "own", ds, loss=abs_error, splits=("val",)) as rec:
        rec.on_train_epoch_end(0, model)
    got = read_losses(tmp_path / "own")["loss"].to_numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert read_run_config(tmp_path / "own")["loss"] == "test_regression:abs_error"
    # Not importable (a lambda): recorded, with one line saying what re-recording needs.
    with pytest.warns(RecorderWarning, match="cannot be imported again.*importable module"):
        rec = LossRecorder(tmp_path / "lam", ds, loss=lambda o, t: ((o - t) ** 4).sum(dim=1))
    rec.on_train_epoch_end(0, model)
    rec.close()
    assert "loss" not in read_run_config(tmp_path / "lam")
    # One folder, one loss.
    with pytest.raises(RunFolderError, match="computed with 'test_regression:abs_error'"):
        LossRecorder(tmp_path / "own", ds, loss="mse", splits=("val",))


def test_mse_on_class_labels_compares_with_one_hot(tmp_path):
    digits = load_dataset("digits", max_samples=60)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    x, y = digits.tensors("val")
    losses, preds = evaluate_losses(model, x, y, loss="mse")
    out = model(x).detach().double().numpy()
    onehot = np.eye(10)[y.numpy()]
    np.testing.assert_allclose(losses, ((out - onehot) ** 2).mean(axis=1), rtol=1e-12)
    assert preds is not None and (preds == out.argmax(axis=1)).all()
    with LossRecorder(tmp_path / "run", digits, loss="mse", splits=("val",)) as rec:
        rec.on_train_epoch_end(0, model)
    df = read_losses(tmp_path / "run")
    assert df["correct"].null_count() == 0 and df["label"].to_list() == y.tolist()


def test_a_loss_that_does_not_fit_is_one_clear_error(ds, tmp_path):
    digits = load_dataset("digits", max_samples=60)
    with pytest.raises(ParameterError, match="'loss'.*for regression targets.*loss='mse'"):
        LossRecorder(tmp_path / "a", ds)  # cross-entropy on float targets
    with pytest.raises(ParameterError, match="'mode'.*'eval' for regression"):
        LossRecorder(tmp_path / "a", ds, loss="mse", mode="train_pass")
    with pytest.raises(ParameterError, match="'loss'.*one of \\['cross_entropy', 'mse'\\]"):
        LossRecorder(tmp_path / "a", digits, loss="huber")
    assert not (tmp_path / "a").exists()
    one_output = nn.Sequential(nn.Flatten(), nn.Linear(4, 1))
    rec = LossRecorder(tmp_path / "b", ds, loss="mse", splits=("val",))
    with pytest.raises(ParameterError, match=r"2 output value\(s\) per sample.*\(80, 1\)"):
        rec.on_train_epoch_end(0, one_output)
    rec.close()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RecorderWarning)
        bad = LossRecorder(tmp_path / "c", ds, loss=lambda o, t: (o - t) ** 2, splits=("val",))
    with pytest.raises(ParameterError, match=r"one loss per sample.*\(80, 2\)"):
        bad.on_train_epoch_end(0, _mlp())
    bad.close()
    assert not Run(tmp_path / "c").loss_epochs("val")  # nothing half-recorded


def test_train_and_record_take_loss_on_the_command_line(tmp_path):
    from sampletopo.cli import main
    from sampletopo.readers import read_loss_matrix

    out = tmp_path / "exp"
    argv = ["train", "--data", "synthetic", "--model", "mlp", "--epochs", "1", "--loss", "mse"]
    assert main([*argv, "--out", str(out), "--no-progress", "--threads", "1"]) == 0
    run = out / "run"
    assert read_run_config(run)["loss"] == "mse"
    model, data = Run(run).load_model(1)
    x, y = data.tensors("val")
    want, _ = evaluate_losses(model, x, y, loss="mse")
    np.testing.assert_allclose(read_loss_matrix(run, split="val")[1][1], want, rtol=1e-12)
    again = tmp_path / "again"
    record = ["record", "--checkpoints", str(run / "checkpoints"), "--model", "mlp"]
    record += ["--data", "synthetic", "--loss", "mse", "--out", str(again), "--no-progress"]
    assert main(record) == 0
    assert read_run_config(again)["loss"] == "mse"
    np.testing.assert_array_equal(
        read_loss_matrix(again, split="val")[1], read_loss_matrix(run, split="val")[1]
    )
    # The landscape evaluates the run's own loss: at its origin, the recorded mean.
    land = ["landscape", str(run), "--epoch", "1", "--dirs", "random", "--dim", "1"]
    assert main([*land, "--steps", "3", "--distance", "0.1", "--no-hessian"]) == 0
    from sampletopo.landscape import read_landscape

    grid, _ = read_landscape(Run(run).landscape_file(1))
    assert grid.n_samples == data.n("train")
    train = read_loss_matrix(run, split="train")[1][1]
    assert grid.loss[1] == pytest.approx(train.mean(), rel=1e-5)
