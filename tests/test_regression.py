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


# ---------------------------------------------------------------------------------------------
# Regression on tabular rows (n, d) with the data's own graph features (both merged branches)

_W = np.array([1.0, -2.0, 0.5])


def _rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows x (n, 3) and float targets y = x . w + noise, (n,)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    return x, x.astype(np.float64) @ _W + 0.1 * rng.normal(size=n)


def row_regressor(*, input_size: int, hidden: int = 8) -> nn.Module:
    """A factory of one output per row, importable as ``test_regression:row_regressor``."""
    return nn.Sequential(nn.Linear(input_size, hidden), nn.Tanh(), nn.Linear(hidden, 1))


def test_tabular_rows_with_float_targets_recorded_with_mse(tmp_path):
    """(n, d) rows, float targets and own graph features in Dataset.from_arrays, an own loop
    with loss='mse': every recorded loss is the hand-computed squared error of the model's one
    output, standardizing the rows by hand; topology, the saved dataset and the table figure
    keep rows, features and targets."""
    import matplotlib.pyplot as plt

    from sampletopo._runconfig import load_saved_dataset
    from sampletopo.plotting._samples import plot_region_samples

    (tx, ty), (vx, vy) = _rows(60, 0), _rows(40, 1)
    feats = (3.0 * tx[:, :2], 3.0 * vx[:, :2])  # the graph's own features: two columns, scaled
    ds = Dataset.from_arrays("rows", train=(tx, ty), val=(vx, vy), features=feats)
    assert ds.is_regression and ds.num_classes == 0 and ds.class_names == []
    assert ds.kind == "tabular" and ds.sample_shape == (3,)
    x, y = ds.tensors("train")
    assert tuple(x.shape) == (60, 3) and y.dtype == torch.float32 and tuple(y.shape) == (60,)
    np.testing.assert_array_equal(ds.labels("val"), vy)
    np.testing.assert_array_equal(ds.features("val"), feats[1])
    # Targets and features both enter the fingerprint.
    moved_y = Dataset.from_arrays("rows", train=(tx, ty), val=(vx, vy + 1.0), features=feats)
    moved_f = Dataset.from_arrays("rows", train=(tx, ty), val=(vx, vy),
                                  features=(feats[0], feats[1] + 1.0))  # fmt: skip
    assert len({d.fingerprint("val") for d in (ds, moved_y, moved_f)}) == 3
    assert moved_y.fingerprint("train") == ds.fingerprint("train")

    mu, sd = tx.astype(np.float64).mean(axis=0), tx.astype(np.float64).std(axis=0)
    model = row_regressor(input_size=3)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    by_hand: dict[str, list[np.ndarray]] = {"train": [], "val": []}
    run_dir = tmp_path / "exp" / "rows"
    with LossRecorder(run_dir, ds, loss="mse", optimizer=opt,
                      model_spec=row_regressor, model_kwargs={"input_size": 3}) as rec:  # fmt: skip
        for epoch in range(EPOCHS):
            if epoch:
                for _ in range(10):
                    loss = F.mse_loss(model(x)[:, 0], y)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            rec.on_train_epoch_end(epoch, model)
            with torch.no_grad():
                for s, ys in (("train", ty), ("val", vy)):
                    out = model(ds.tensors(s)[0]).double().numpy()
                    by_hand[s].append((out[:, 0] - ys) ** 2)  # one output against the target
    # The model's inputs: the rows standardized per feature with the train split's statistics.
    for s, xs in (("train", tx), ("val", vx)):
        np.testing.assert_allclose(ds.tensors(s)[0].numpy(), (xs - mu) / sd, rtol=0, atol=1e-6)
    df = read_losses(run_dir)
    for s in ("train", "val"):
        got = df.filter(split=s).sort("epoch", "sample")["loss"].to_numpy()
        np.testing.assert_allclose(got.reshape(EPOCHS, -1), np.vstack(by_hand[s]), rtol=1e-12)
    assert np.mean(by_hand["val"][-1]) < 0.5 * np.mean(by_hand["val"][0])  # it learned
    for col in ("label", "pred", "correct"):
        assert df[col].null_count() == df.height, col
    assert read_run_config(run_dir)["model"] == "test_regression:row_regressor"

    analysis.compute_topology(run_dir, k=5, progress=False)
    assert Run(run_dir).diagram_epochs("val") == list(range(EPOCHS))
    summary = analysis.summarize(run_dir).filter(split="val", tree="join").sort("epoch")
    assert summary["accuracy"].null_count() == summary.height
    np.testing.assert_allclose(
        summary["mean_loss"].to_numpy(), [np.mean(v) for v in by_hand["val"]], rtol=1e-12
    )
    # The saved dataset the config names rebuilds rows, targets and features: same fingerprint.
    back = Run(run_dir).dataset()
    assert back.is_regression and back.sample_shape == (3,) and back.kind == "tabular"
    assert back.fingerprint("val") == ds.fingerprint("val")
    np.testing.assert_array_equal(back.features("train"), feats[0])
    cfg = read_run_config(run_dir)
    again = load_saved_dataset(run_dir / cfg["data_file"])
    np.testing.assert_array_equal(again.labels("train"), ty)
    # The region's table figure: sample and feature columns, no 'label -> pred' for targets.
    tracks = track_members(run_dir, split="val", epoch=EPOCHS - 1, k=5, top=1)
    r = tracks.regions.row(0, named=True)
    assert r["member_labels"] is None
    fig = plot_region_samples(back, "val", r["members"], r["member_labels"], r["member_preds"])
    table = fig.axes[1].tables[0]
    first = r["members"][0]
    assert [table[0, j].get_text().get_text() for j in range(4)] == ["sample", "f0", "f1", "f2"]
    assert table[1, 0].get_text().get_text() == str(first)
    assert table[1, 2].get_text().get_text() == f"{vx[first, 1]:.3g}"
    plt.close(fig)


def test_regression_npz_rows_train_with_mse(tmp_path):
    """An .npz of rows and float targets (no x_val: split at random by val_fraction) trains with
    loss='mse' through the driver; cross-entropy on it is refused before anything is written."""
    from sampletopo.train import TrainConfig, train_experiment

    x, y = _rows(80, 3)
    f = np.column_stack([np.arange(80.0), np.zeros(80)])  # column 0: the row in the file
    np.savez(tmp_path / "reg.npz", x_train=x, y_train=y, features_train=f)
    ds = load_dataset(tmp_path / "reg.npz", val_fraction=0.25, seed=1)
    assert ds.is_regression and ds.sample_shape == (3,) and (ds.n("train"), ds.n("val")) == (60, 20)
    for s in ("train", "val"):
        rows = ds.features(s)[:, 0].astype(int)  # rows, targets and features stay together
        np.testing.assert_array_equal(ds.labels(s), y[rows])
        np.testing.assert_array_equal(ds.values(s), x[rows])
    common = dict(data=str(tmp_path / "reg.npz"), model=row_regressor, val_fraction=0.25,
                  epochs=2, device="cpu", threads=1)  # fmt: skip
    with pytest.raises(ParameterError, match="'mse' or a loss function"):
        train_experiment(TrainConfig(**common), tmp_path / "bad", progress=False)
    assert not (tmp_path / "bad" / "reg" / "losses").exists()
    (run,) = train_experiment(TrainConfig(**common, loss="mse"), tmp_path / "exp", progress=False)
    df = read_losses(run)
    assert sorted(df["epoch"].unique().to_list()) == [0, 1, 2]
    assert df["label"].null_count() == df.height and np.isfinite(df["loss"].to_numpy()).all()


def test_signal_inputs_with_float_targets_keep_their_shape_and_travel_with_the_data(tmp_path):
    """(n, C, L) signals with (n, 2) float targets: tensors in that shape, saved and read back
    with shape and targets (same fingerprint), line plots without captions."""
    import matplotlib.pyplot as plt

    from sampletopo._runconfig import load_saved_dataset
    from sampletopo.plotting._samples import plot_region_samples
    from sampletopo.runs import data_config

    rng = np.random.default_rng(5)
    x = rng.normal(size=(30, 2, 16)).astype(np.float32)
    y = np.stack([x[:, 0].mean(axis=1), x[:, 1].max(axis=1)], axis=1).astype(np.float64)
    ds = Dataset.from_arrays("sig", train=(x[:20], y[:20]), val=(x[20:], y[20:]))
    assert ds.is_regression and ds.kind == "signal" and ds.sample_shape == (2, 16)
    xt, yt = ds.tensors("val")
    assert tuple(xt.shape) == (10, 2, 16) and tuple(yt.shape) == (10, 2)
    np.testing.assert_allclose(yt.numpy(), y[20:].astype(np.float32))
    (tmp_path / "exp" / "run").mkdir(parents=True)
    saved = data_config(ds, tmp_path / "exp" / "run")["data_file"]
    back = load_saved_dataset(tmp_path / "exp" / "run" / saved)
    assert back.is_regression and back.sample_shape == (2, 16) and back.class_names == []
    assert back.fingerprint("val") == ds.fingerprint("val")
    np.testing.assert_array_equal(back.labels("val"), y[20:])
    fig = plot_region_samples(back, "val", [3, 1], None, None)
    drawn = [ax for ax in fig.axes if ax.lines]
    assert len(drawn) == 2 and all(len(ax.lines) == 2 for ax in drawn)  # two channels each
    assert all(ax.get_title() == "" for ax in fig.axes)  # no label -> pred for targets
    np.testing.assert_allclose(drawn[0].lines[1].get_ydata(), x[23, 1])
    plt.close(fig)
