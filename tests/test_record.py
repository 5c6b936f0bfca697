"""The loss recorder, its tables and readers, and recording from checkpoint files."""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sampletopo._errors import ParameterError, RunFolderError, SampletopoError
from sampletopo._writer import RunWriter
from sampletopo.checkpoints import (
    checkpoint_epoch,
    extract_state_dict,
    load_state_dict_into,
    read_checkpoint,
)
from sampletopo.data import Dataset, load_dataset
from sampletopo.models import create_model
from sampletopo.readers import loss_epochs, read_loss_matrix, read_losses, scan_losses
from sampletopo.record import (
    LOSS_SCHEMA,
    LossRecorder,
    NonFiniteLossWarning,
    load_run_model,
    read_run_config,
    record_checkpoints,
)
from sampletopo.recorder import evaluate_losses
from sampletopo.runs import MARGIN_COLUMN, SPLITS

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def ds() -> Dataset:
    return load_dataset("synthetic")


def _model(seed: int = 0, **kw) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("cnn", width=4, batchnorm=True, in_channels=1, input_size=8, **kw)


def _reference(model: nn.Module, ds: Dataset, split: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = ds.tensors(split)
    model.eval()
    with torch.no_grad():
        logits = model(x).double()
    return F.cross_entropy(logits, y, reduction="none").numpy(), logits.argmax(1).numpy()


def _sgd_steps(model: nn.Module, ds: Dataset, steps: int = 3) -> None:
    x, y = ds.tensors("train")
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.train()
    for i in range(steps):
        sl = slice(64 * i, 64 * (i + 1))
        opt.zero_grad()
        F.cross_entropy(model(x[sl]), y[sl]).backward()
        opt.step()


def test_eval_recording_writes_exact_losses_in_the_schema(ds, tmp_path):
    model = _model()
    model.train()
    rec = LossRecorder(tmp_path / "run", ds)
    written = rec.on_train_epoch_end(0, model)
    assert model.training  # the caller's mode is restored
    assert set(written) == {"train", "val"}
    for split in ("train", "val"):
        assert written[split] == tmp_path / "run" / "losses" / split / "epoch=0000.parquet"
        df = pl.read_parquet(written[split])
        # The schema, plus the optional margin column eval passes write (sampletopo.audit).
        assert dict(df.schema) == {**LOSS_SCHEMA, MARGIN_COLUMN: pl.Float64}
        loss, pred = _reference(model, ds, split)
        np.testing.assert_array_equal(df["sample"].to_numpy(), np.arange(ds.n(split)))
        np.testing.assert_array_equal(df["label"].to_numpy(), ds.labels(split))
        np.testing.assert_allclose(df["loss"].to_numpy(), loss, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(df["pred"].to_numpy(), pred)
        np.testing.assert_array_equal(df["correct"].to_numpy(), pred == ds.labels(split))
        assert set(df["epoch"].to_list()) == {0} and set(df["split"].to_list()) == {split}
    # no temporary files are left behind
    assert not [p for p in (tmp_path / "run").rglob("*") if p.name.startswith(".epoch")]


def test_an_epoch_on_disk_is_skipped_or_refused_never_duplicated(ds, tmp_path):
    model = _model()
    rec = LossRecorder(tmp_path / "run", ds)
    rec.on_train_epoch_end(0, model)
    before = (tmp_path / "run/losses/train/epoch=0000.parquet").read_bytes()
    _sgd_steps(model, ds)
    again = LossRecorder(tmp_path / "run", ds)  # a restarted run
    assert again.on_train_epoch_end(0, model) == {"train": None, "val": None}
    assert (tmp_path / "run/losses/train/epoch=0000.parquet").read_bytes() == before
    strict = LossRecorder(tmp_path / "run", ds, on_exists="error")
    with pytest.raises(SampletopoError, match="Epoch 0 of split 'train' is already recorded"):
        strict.on_train_epoch_end(0, model)
    # a half-recorded epoch only gets its missing split
    (tmp_path / "run/losses/val/epoch=0000.parquet").unlink()
    assert again.on_train_epoch_end(0, model) == {
        "train": None,
        "val": tmp_path / "run/losses/val/epoch=0000.parquet",
    }
    df = read_losses(tmp_path / "run")
    assert df.height == ds.n("train") + ds.n("val")
    assert df.select(pl.struct("split", "epoch", "sample").is_unique().all()).item()


def test_readers_agree(ds, tmp_path):
    model = _model()
    for run in ("a", "b"):
        rec = LossRecorder(tmp_path / "exp" / run, ds, splits=("val",))
        for epoch in (0, 1, 2):
            rec.on_train_epoch_end(epoch, model)
            _sgd_steps(model, ds, steps=1)
    run_a = tmp_path / "exp" / "a"
    assert loss_epochs(run_a, split="val") == [0, 1, 2] and loss_epochs(run_a, split="train") == []
    df = read_losses(run_a)
    assert df.columns == ["run", "split", "epoch", "sample", "label", "pred", "loss", "correct"]
    assert df.height == 3 * ds.n("val") and set(df["run"]) == {"a"}
    lazy = scan_losses(run_a, split="val")
    assert isinstance(lazy, pl.LazyFrame)
    assert lazy.collect().equals(df)
    epochs, mat = read_loss_matrix(run_a, split="val")
    np.testing.assert_array_equal(epochs, [0, 1, 2])
    assert mat.shape == (3, ds.n("val")) and mat.dtype == np.float64
    np.testing.assert_array_equal(
        mat[1], df.filter(pl.col("epoch") == 1).sort("sample")["loss"].to_numpy()
    )
    both = read_losses(tmp_path / "exp")
    assert sorted(set(both["run"])) == ["a", "b"] and both.height == 2 * df.height
    with pytest.raises(SampletopoError, match="No loss tables for split 'train'"):
        read_loss_matrix(run_a, split="train")
    with pytest.raises(SampletopoError, match="not a run folder"):
        read_losses(tmp_path / "nothing")


def test_nan_and_inf_losses_are_recorded_and_reported(ds, tmp_path):
    class Exploded(nn.Module):
        """Logits with +inf in class 0, as after a diverged step: log-softmax gives NaN."""

        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = torch.zeros(x.shape[0], 10) + self.w
            out[:, 0] = float("inf")
            return out

    rec = LossRecorder(tmp_path / "run", ds, splits=("val",))
    n = ds.n("val")
    with pytest.warns(NonFiniteLossWarning) as caught:
        rec.on_train_epoch_end(4, Exploded())
    # (A local class also gets the recorder's one-line "config.toml names no model" warning.)
    msg = next(str(w.message) for w in caught if issubclass(w.category, NonFiniteLossWarning))
    assert f"{n} of {n} losses" in msg and f"({n} NaN, 0 inf" in msg and "epoch 4" in msg
    assert rec.nonfinite == {("val", 4): n}
    epochs, mat = read_loss_matrix(tmp_path / "run", split="val")
    assert mat.shape == (1, n) and np.isnan(mat).all()  # nothing dropped
    # the counts survive a save/load of the recorder state through weights_only loading
    torch.save({"rec": rec.state_dict()}, tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=True)["rec"]
    fresh = LossRecorder(tmp_path / "run", ds, splits=("val",))
    fresh.load_state_dict(state)
    assert fresh.nonfinite == {("val", 4): n}

    # inf: per-sample losses handed in by the loop (e.g. -log p with p = 0)
    tp = LossRecorder(tmp_path / "tp", ds, mode="train_pass", splits=("train",))
    x, y = ds.tensors("train")
    losses = torch.ones(ds.n("train"), dtype=torch.float64)
    losses[[5, 17, 200]] = float("inf")
    losses[[9, 399]] = float("nan")
    tp.on_train_batch_end(
        torch.arange(ds.n("train")), torch.zeros(ds.n("train"), 10), y, losses=losses
    )
    with pytest.warns(
        NonFiniteLossWarning, match=r"5 of 400 losses.*\(2 NaN, 3 inf; first at sample 5\)"
    ):
        tp.on_train_epoch_end(1, _model())
    row = read_loss_matrix(tmp_path / "tp", split="train")[1][0]
    assert np.isposinf(row[[5, 17, 200]]).all() and np.isnan(row[[9, 399]]).all()
    assert np.isfinite(row).sum() == 395


def test_train_pass_mode_uses_the_training_forward_pass(ds, tmp_path):
    model = _model()
    rec = LossRecorder(tmp_path / "run", ds, mode="train_pass")
    rec.on_train_epoch_end(0, model)  # epoch 0: eval pass
    np.testing.assert_allclose(
        read_loss_matrix(tmp_path / "run", split="train")[1][0], _reference(model, ds, "train")[0]
    )
    x, y = ds.tensors("train")
    perm = torch.randperm(ds.n("train"), generator=torch.Generator().manual_seed(0))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    expected = np.zeros(ds.n("train"))
    model.train()
    for s in range(0, ds.n("train"), 64):
        idx = perm[s : s + 64]
        logits = model(x[idx])
        expected[idx.numpy()] = F.cross_entropy(
            logits.detach().double(), y[idx], reduction="none"
        ).numpy()
        opt.zero_grad()
        F.cross_entropy(logits, y[idx]).backward()
        opt.step()
        rec.on_train_batch_end(idx, logits, y[idx])
    rec.on_train_epoch_end(1, model)
    _, train = read_loss_matrix(tmp_path / "run", split="train")
    np.testing.assert_allclose(train[1], expected, rtol=1e-12)
    # val is an eval pass of the end-of-epoch model; train is not (weights moved, BN in train mode)
    np.testing.assert_allclose(
        read_loss_matrix(tmp_path / "run", split="val")[1][1], _reference(model, ds, "val")[0]
    )
    assert not np.allclose(train[1], _reference(model, ds, "train")[0])

    with pytest.raises(SampletopoError, match="no training batches"):
        rec.on_train_epoch_end(2, model)
    rec.on_train_batch_end(perm[:10], model(x[perm[:10]]), y[perm[:10]])
    with pytest.raises(
        SampletopoError, match=f"{ds.n('train') - 10} of {ds.n('train')} training samples"
    ):
        rec.on_train_epoch_end(2, model)
    wrong = torch.arange(ds.n("train")).flip(0)  # indices that do not match the targets
    rec.on_train_batch_end(wrong, model(x), y)
    with pytest.raises(SampletopoError, match="do not match the dataset's labels"):
        rec.on_train_epoch_end(2, model)
    with pytest.raises(SampletopoError, match="mode 'train_pass'.*got mode 'eval'"):
        LossRecorder(tmp_path / "run", ds, mode="eval")


def test_a_run_folder_refuses_other_data(ds, tmp_path):
    LossRecorder(tmp_path / "run", ds).on_train_epoch_end(0, _model())
    other = load_dataset("synthetic", max_samples=50)
    with pytest.raises(SampletopoError, match="holds losses of other data.*new run folder"):
        LossRecorder(tmp_path / "run", other)
    with pytest.raises(SampletopoError, match="'mode'.*'eval' or 'train_pass'.*'fast'"):
        LossRecorder(tmp_path / "x", ds, mode="fast")
    with pytest.raises(SampletopoError, match="'splits'"):
        LossRecorder(tmp_path / "x", ds, splits=("test",))


# -- checkpoints ----------------------------------------------------------------------------------


def test_checkpoint_layouts_are_all_understood(tmp_path):
    model = _model(1)
    sd = model.state_dict()
    layouts = {
        "bare.pt": sd,
        "wrapped.pth": {"state_dict": sd, "epoch": 7},
        "model.ckpt": {"model": sd, "optimizer": {"x": 1}},
        "dp.pt": {"model": {f"module.{k}": v for k, v in sd.items()}},
        "lightning.ckpt": {"state_dict": {f"model.{k}": v for k, v in sd.items()}},
    }
    for name, obj in layouts.items():
        torch.save(obj, tmp_path / name)
        target = _model(2)
        loaded = extract_state_dict(read_checkpoint(tmp_path / name), source=name)
        load_state_dict_into(target, loaded, source=name)
        assert all(torch.equal(target.state_dict()[k], sd[k]) for k in sd), name
    assert checkpoint_epoch(tmp_path / "wrapped.pth", layouts["wrapped.pth"]) == 7
    assert checkpoint_epoch(tmp_path / "model_12.pt", sd) == 12
    with pytest.raises(SampletopoError, match="no 'epoch' entry and no number"):
        checkpoint_epoch(tmp_path / "final.pt", sd)


def test_checkpoint_model_mismatch_names_the_keys(tmp_path):
    torch.manual_seed(0)
    with_skip = create_model("resnet", depth=8, width=4, in_channels=1, input_size=8)
    no_skip = create_model("resnet", depth=8, width=4, in_channels=1, input_size=8, skip=False)
    with pytest.raises(SampletopoError) as err:
        load_state_dict_into(no_skip, with_skip.state_dict(), source="ck.pt")
    msg = str(err.value)
    assert (
        "ck.pt does not fit" in msg
        and "unexpected keys" in msg
        and "layers.1.shortcut.0.weight" in msg
    )
    assert "missing keys" not in msg
    with pytest.raises(SampletopoError, match=r"missing keys \[layers.1.shortcut"):
        load_state_dict_into(with_skip, no_skip.state_dict())
    wide = create_model("resnet", depth=8, width=8, in_channels=1, input_size=8)
    with pytest.raises(
        SampletopoError,
        match=r"shape mismatches \[fc.weight: checkpoint \(10, 32\) vs model \(10, 16\).* and 38 more",
    ):
        load_state_dict_into(with_skip, wide.state_dict())
    with pytest.raises(SampletopoError, match="holds no model state_dict.*'optimizer'"):
        extract_state_dict({"optimizer": {}, "epoch": 3})


def test_corrupt_truncated_and_unsafe_checkpoints_give_clear_errors(tmp_path):
    sd = _model().state_dict()
    good = tmp_path / "good.pt"
    torch.save({"model": sd, "epoch": 1}, good)
    data = good.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "junk.pt").write_bytes(b"this is not a checkpoint\n" * 20)
    for name in ("trunc.pt", "junk.pt"):
        with pytest.raises(SampletopoError, match=f"{name}.*corrupt or truncated"):
            read_checkpoint(tmp_path / name)
    with pytest.raises(SampletopoError, match="empty.*0 bytes"):
        read_checkpoint(tmp_path / "empty.pt")
    # a pickled object (not tensors or plain data) is refused by weights_only=True
    torch.save({"model": sd, "when": np.datetime64("2024-01-01")}, tmp_path / "unsafe.pt")
    with pytest.raises(
        SampletopoError, match=r"weights_only=True \(WeightsUnpickler error: .*numpy"
    ):
        read_checkpoint(tmp_path / "unsafe.pt")


def test_recording_from_checkpoints_reproduces_live_losses(ds, tmp_path):
    model = _model()
    live = LossRecorder(tmp_path / "live", ds)
    ck = tmp_path / "ck"
    ck.mkdir()
    for epoch in range(4):
        if epoch:
            _sgd_steps(model, ds, steps=2)
        live.on_train_epoch_end(epoch, model)
        sd = model.state_dict()
        # four naming and layout styles in one folder
        if epoch == 0:
            torch.save(sd, ck / "epoch_0.pt")
        elif epoch == 1:
            torch.save(
                {"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 1}, ck / "a.pth"
            )
        elif epoch == 2:
            torch.save({"model": sd, "epoch": 2}, ck / "checkpoint-0002.ckpt")
        else:
            torch.save({"model": sd}, ck / "model_3.pt")
    done = record_checkpoints(
        ck,
        tmp_path / "rec",
        model="cnn",
        data="synthetic",
        model_kwargs={"width": 4, "batchnorm": True},
        progress=False,
    )
    assert done == [0, 1, 2, 3]
    for split in ("train", "val"):
        e1, a = read_loss_matrix(tmp_path / "live", split=split)
        e2, b = read_loss_matrix(tmp_path / "rec", split=split)
        np.testing.assert_array_equal(e1, e2)
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
    # again: everything is on disk, nothing is recorded twice
    assert (
        record_checkpoints(
            ck,
            tmp_path / "rec",
            model="cnn",
            data="synthetic",
            model_kwargs={"width": 4, "batchnorm": True},
            progress=False,
        )
        == []
    )
    cfg = read_run_config(tmp_path / "rec")
    assert cfg["model"] == "cnn" and cfg["data"] == "synthetic" and cfg["record_mode"] == "eval"
    # the run's model can be rebuilt from its config and checkpoint files
    rebuilt, ds2 = load_run_model(tmp_path / "rec", 3)
    assert not rebuilt.training and ds2.fingerprint("val") == ds.fingerprint("val")
    np.testing.assert_allclose(
        _reference(rebuilt, ds, "val")[0],
        read_loss_matrix(tmp_path / "live", split="val")[1][3],
        rtol=1e-6,
    )
    with pytest.raises(SampletopoError, match=r"no checkpoint for epoch 9.*\[0, 1, 2, 3\]"):
        load_run_model(tmp_path / "rec", 9)

    torch.save({"model": model.state_dict(), "epoch": 3}, ck / "dup.pt")
    with pytest.raises(SampletopoError, match="both hold epoch 3"):
        record_checkpoints(
            ck,
            tmp_path / "rec2",
            model="cnn",
            data="synthetic",
            model_kwargs={"width": 4, "batchnorm": True},
            progress=False,
        )
    (ck / "dup.pt").unlink()
    with pytest.raises(SampletopoError, match="does not fit.*skip, width"):
        record_checkpoints(ck, tmp_path / "rec3", model="cnn", data="synthetic", progress=False)
    with pytest.raises(SampletopoError, match="holds no checkpoint files"):
        record_checkpoints(tmp_path / "live", tmp_path / "rec4", model="cnn", data="synthetic")


def test_recording_from_a_real_model_instance_and_dataset_object(ds, tmp_path):
    model = _model()
    ck = tmp_path / "ck"
    ck.mkdir()
    torch.save({"model": model.state_dict(), "epoch": 5}, ck / "x.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warnings on a healthy model
        assert record_checkpoints(
            ck, tmp_path / "r", model=_model(9), data=ds, splits=("val",), progress=False
        ) == [5]
    np.testing.assert_allclose(
        read_loss_matrix(tmp_path / "r", split="val")[1][0], _reference(model, ds, "val")[0]
    )


def test_checkpoint_epoch_conventions(tmp_path):
    from sampletopo.checkpoints import checkpoint_epoch

    assert checkpoint_epoch(tmp_path / "x.pt", {"epoch": 5}) == 5
    assert checkpoint_epoch(tmp_path / "model_7.pth", {"state_dict": {}}) == 7
    # Lightning saves the 0-based index of the epoch just finished.
    lightning = {
        "epoch": 0,
        "global_step": 12,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": {},
    }
    assert checkpoint_epoch(tmp_path / "epoch=0-step=12.ckpt", lightning) == 1
    with pytest.raises(
        SampletopoError, match="'split' parameter of loss_epochs must be 'train' or 'val'"
    ):
        loss_epochs(tmp_path, split=None)  # type: ignore[arg-type]


def test_a_run_folder_refuses_another_model_instead_of_skipping_its_epochs(ds, tmp_path):
    rec = LossRecorder(tmp_path / "run", ds)
    rec.on_train_epoch_end(0, _model())
    rec.on_train_epoch_end(0, _model(seed=3))  # same architecture, a restart: skipped
    # The model check of the writer every recorder shares; a compiled model is the same model.
    writer = RunWriter(
        tmp_path / "run", ds, splits=SPLITS, mode="eval", on_exists="skip", source="recorder"
    )
    writer.check_model(torch.compile(_model()))
    writer.close()
    other = create_model("mlp", in_channels=1, input_size=8)
    with pytest.raises(
        SampletopoError,
        match=r"another model \(SmallCNN, 1,030 parameters\); this one is MLP.*new run",
    ):
        LossRecorder(tmp_path / "run", ds).on_train_epoch_end(1, other)
    assert loss_epochs(tmp_path / "run", split="train") == [0]  # nothing lost, nothing mixed


def test_record_into_a_folder_of_another_recording(ds, tmp_path):
    """A folder recorded from other checkpoints is refused; a folder where an attempt failed
    before anything was recorded takes the corrected settings."""
    ck_a, ck_b = tmp_path / "a", tmp_path / "b"
    for i, ck in enumerate((ck_a, ck_b)):
        ck.mkdir()
        torch.save({"model": _model(seed=i).state_dict(), "epoch": 1}, ck / "m.pt")
    kw = dict(model="cnn", data="synthetic", progress=False)
    with pytest.raises(SampletopoError, match="does not fit"):
        record_checkpoints(ck_a, tmp_path / "run", **kw)  # forgot the model options
    good = {"width": 4, "batchnorm": True}
    assert record_checkpoints(ck_a, tmp_path / "run", model_kwargs=good, **kw) == [1]
    assert read_run_config(tmp_path / "run")["model_kwargs"] == good  # the retry's settings
    load_run_model(tmp_path / "run", 1)  # and the run is usable
    with pytest.raises(SampletopoError, match=r"already holds losses.*checkpoint_dir.*new output"):
        record_checkpoints(ck_b, tmp_path / "run", model_kwargs=good, **kw)
    # A LossRecorder of the user's loop on a folder recorded from checkpoints: refused.
    with pytest.raises(SampletopoError, match=r"written by `sampletopo record`.*new run folder"):
        LossRecorder(tmp_path / "run", ds)
    # The same recording continued picks up a new checkpoint.
    torch.save({"model": _model(seed=5).state_dict(), "epoch": 2}, ck_a / "m2.pt")
    assert record_checkpoints(ck_a, tmp_path / "run", model_kwargs=good, **kw) == [2]
    load_run_model(tmp_path / "run", 1)


def test_a_recorder_run_of_in_memory_data_goes_through_the_cli(tmp_path, capsys):
    """A LossRecorder in the user's own loop, on Dataset.from_arrays data: the run folder gets a
    config.toml and the data is saved once beside it, so topology and samples work on it."""
    from sampletopo.cli import main

    rng = np.random.default_rng(0)
    x = rng.random((120, 1, 4, 4)).astype(np.float32)
    y = np.arange(120) % 3
    mine = Dataset.from_arrays("my data", train=(x[:90], y[:90]), val=(x[90:], y[90:]))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    for run in ("r1", "r2"):
        rec = LossRecorder(tmp_path / "exp" / run, mine)
        for epoch in range(3):
            rec.on_train_epoch_end(epoch, model)
    saved = list((tmp_path / "exp" / "datasets").glob("*.npz"))
    assert len(saved) == 1 and saved[0].name.startswith("my_data-")  # one copy for both runs
    cfg = read_run_config(tmp_path / "exp" / "r1")
    assert cfg["source"] == "recorder" and cfg["data_file"] == str(saved[0].resolve())
    assert main(["topology", str(tmp_path / "exp"), "--k", "5"]) == 0
    out = capsys.readouterr().out
    assert "r1" in out and "r2" in out
    assert main(["samples", str(tmp_path / "exp" / "r1"), "--epoch", "2", "--k", "5"]) == 0


def test_written_files_follow_the_umask_not_the_temporary_files_0600(ds, tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        rec = LossRecorder(tmp_path / "run", ds, splits=("val",))
        path = rec.on_train_epoch_end(0, _model())["val"]
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


# --- Findings N6 and N7 of the issue-11 check ------------------------------------------------


@pytest.mark.parametrize("blocked", ["losses", "losses/val", "."])
def test_a_file_where_the_recorder_needs_a_folder_is_one_error_naming_it(ds, tmp_path, blocked):
    # N6: the Python API gave a FileExistsError traceback (the command line one line).
    run = tmp_path / "run"
    if blocked == ".":
        run.write_text("a file")
        where = run
    else:
        where = run / blocked
        where.parent.mkdir(parents=True)
        where.write_text("a file")
    with pytest.raises(RunFolderError, match="is an existing file, not a folder") as err:
        LossRecorder(run, ds).on_train_epoch_end(0, _model())
    assert repr(str(where)) in str(err.value)
    assert where.read_text() == "a file"  # nothing is lost


def test_a_model_that_is_not_a_module_is_one_error(ds, tmp_path):
    # N7: an AttributeError from deep inside the recorder.
    rec = LossRecorder(tmp_path / "run", ds)
    with pytest.raises(
        ParameterError, match=r"'model' parameter of on_train_epoch_end must be a torch"
    ):
        rec.on_train_epoch_end(0, lambda x: x)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match=r"'model' parameter of evaluate_losses"):
        evaluate_losses(object(), *ds.tensors("val"))  # type: ignore[arg-type]


def test_a_checkpoint_without_a_state_dict_is_named_by_its_path(ds, tmp_path):
    # N7: a checkpoint holding [1, 2, 3] was named by its epoch ("1 holds no model state_dict").
    ckpts = tmp_path / "ckpts"
    ckpts.mkdir()
    torch.save([1, 2, 3], ckpts / "epoch=0001.pt")
    with pytest.raises(SampletopoError, match="holds no model state_dict") as err:
        record_checkpoints(
            ckpts,
            tmp_path / "run",
            model="cnn",
            data=ds,
            progress=False,
            model_kwargs={"width": 4, "batchnorm": True},
        )
    assert repr(str(ckpts / "epoch=0001.pt")) in str(err.value) or str(
        ckpts / "epoch=0001.pt"
    ) in str(err.value)
    assert not str(err.value).startswith("1 holds")
