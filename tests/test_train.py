"""The training driver and the CLI: variants, schedule, resume after a kill, record from checkpoints."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from sampletopo._errors import SampletopoError
from sampletopo._folders import StaleLockWarning
from sampletopo.cli import main
from sampletopo.readers import loss_epochs, read_loss_matrix, read_losses
from sampletopo.record import (
    NonFiniteLossWarning,
    evaluate_losses,
    load_run_model,
    read_run_config,
)
from sampletopo.train import TrainConfig, lr_at_epoch, scale_milestones, train_experiment, train_run

torch.set_num_threads(1)

TINY = dict(
    data="synthetic",
    model="cnn",
    model_kwargs={"width": 4, "batchnorm": True},
    lr=0.05,
    batch_size=64,
)


def test_schedule():
    assert scale_milestones(200) == [60, 125, 150]
    assert scale_milestones(30) == [9, 19, 23]
    assert scale_milestones(2) == [1]
    lrs = [lr_at_epoch(e, lr=0.1, milestones=[1, 3], gamma=0.5) for e in range(1, 5)]
    np.testing.assert_allclose(lrs, [0.1, 0.05, 0.05, 0.025])


def test_lr_study_writes_two_run_folders(tmp_path):
    cfg = TrainConfig(
        data="digits", model="cnn", model_kwargs={"width": 4}, epochs=3, milestones=[1]
    )
    dirs = train_experiment(cfg, tmp_path / "lr", variants={"lr": [0.1, 0.01]}, progress=False)
    assert [d.name for d in dirs] == ["lr=0.1", "lr=0.01"]
    required = {
        "variant",
        "data",
        "data_root",
        "val_fraction",
        "seed",
        "model",
        "model_kwargs",
        "epochs",
        "lr",
        "momentum",
        "weight_decay",
        "milestones",
        "gamma",
        "batch_size",
        "record_mode",
    }
    for d, lr in zip(dirs, (0.1, 0.01), strict=True):
        c = read_run_config(d)
        assert required <= set(c) and c["variant"] == d.name and c["lr"] == lr
        assert c["milestones"] == [1] and c["model_kwargs"] == {
            "skip": True,
            "width": 4,
            "batchnorm": False,
        }
        assert sorted(p.name for p in (d / "checkpoints").iterdir()) == [
            f"epoch={e:04d}.pt" for e in range(4)
        ]
        for split in ("train", "val"):
            assert loss_epochs(d, split=split) == [0, 1, 2, 3]
        # the learning rate really used: lr for epoch 1, lr * 0.1 after milestone 1
        for e, want in ((1, lr), (2, lr * 0.1), (3, lr * 0.1)):
            ck = torch.load(d / f"checkpoints/epoch={e:04d}.pt", weights_only=True)
            assert ck["epoch"] == e and ck["lr"] == pytest.approx(want)
            assert ck["optimizer"]["param_groups"][0]["lr"] == pytest.approx(want)
    exp = (tmp_path / "lr" / "config.toml").read_text()
    assert 'variant_names = [\n    "lr=0.1",\n    "lr=0.01",\n]' in exp
    # same seed: identical initial model; the learning rates then part ways
    a, b = (read_loss_matrix(d, split="train")[1] for d in dirs)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.allclose(a[1], b[1])
    assert a[3].mean() < b[3].mean()  # lr 0.1 fits digits faster than 0.01 in 3 epochs
    # running again finds everything done and changes nothing
    stamp = (dirs[0] / "losses/train/epoch=0003.parquet").stat().st_mtime_ns
    t0 = time.perf_counter()
    train_experiment(cfg, tmp_path / "lr", variants={"lr": [0.1, 0.01]}, progress=False)
    assert time.perf_counter() - t0 < 5
    assert (dirs[0] / "losses/train/epoch=0003.parquet").stat().st_mtime_ns == stamp
    with pytest.raises(SampletopoError, match="other settings.*momentum"):
        train_run(
            TrainConfig(**{**cfg.__dict__, "momentum": 0.5, "lr": 0.1}), dirs[0], progress=False
        )


# -- killed and restarted -------------------------------------------------------------------------

EPOCHS = 30
SCRIPT = (
    textwrap.dedent(
        """
    import os, signal, sys
    import torch
    torch.set_num_threads(1)
    import sampletopo._writer as W
    from sampletopo.train import TrainConfig, train_run

    out, split, epoch, when = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    original = W._write_table

    def dying_write(df, path):
        if path.parent.name == split and path.name == f"epoch={epoch:04d}.parquet":
            if when == "during":  # half a temporary file, then death
                (path.parent / f".{path.name}.x.tmp").write_bytes(b"PAR1 half a file")
                os.kill(os.getpid(), signal.SIGKILL)
            original(df, path)
            os.kill(os.getpid(), signal.SIGKILL)
        original(df, path)

    if split != "none":
        W._write_table = dying_write
    train_run(TrainConfig(epochs=EPOCHS, **TINY), out, progress=False)
    """
    )
    .replace("EPOCHS", str(EPOCHS))
    .replace("**TINY", "**" + repr(TINY))
)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "run"
    train_run(TrainConfig(epochs=EPOCHS, **TINY), out, progress=False)
    return out


def _spawn(tmp_path: Path, out: Path, *args: str) -> subprocess.Popen:
    script = tmp_path / "train_script.py"
    script.write_text(SCRIPT)
    return subprocess.Popen([sys.executable, str(script), str(out), *args])


def _check_every_epoch_once(run: Path, reference: Path) -> None:
    for split in ("train", "val"):
        assert loss_epochs(run, split=split) == list(range(EPOCHS + 1))
    df = read_losses(run)
    assert df.height == (EPOCHS + 1) * (400 + 100)
    assert df.select(pl.struct("split", "epoch", "sample").is_unique().all()).item()
    assert not [p for p in run.rglob("*.tmp")]
    # a resumed run is the same run: deterministic training continues where it stopped
    for split in ("train", "val"):
        np.testing.assert_allclose(
            read_loss_matrix(run, split=split)[1],
            read_loss_matrix(reference, split=split)[1],
            rtol=1e-7,
            atol=1e-10,
        )


def _restart(out: Path, pid: int) -> None:
    """Train again into ``out``: the killed process ``pid`` held its lock, so the restart takes
    it over, saying so."""
    with pytest.warns(StaleLockWarning, match=rf"Took over the lock of .*pid {pid} .*training"):
        train_run(TrainConfig(epochs=EPOCHS, **TINY), out, progress=False)


def test_sigkill_at_a_random_moment_then_restart(tmp_path, reference):
    out = tmp_path / "run"
    proc = _spawn(tmp_path, out, "none", "0", "-")
    target = out / "losses" / "val" / "epoch=0004.parquet"
    deadline = time.time() + 120
    while not target.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL  # it died mid-run
    done = loss_epochs(out, split="train")
    assert 4 <= len(done) < EPOCHS + 1
    _restart(out, proc.pid)
    _check_every_epoch_once(out, reference)


@pytest.mark.parametrize(
    ("split", "epoch", "when"),
    [("train", 3, "during"), ("train", 5, "after")],  # mid-write; between the train and val files
)
def test_sigkill_while_writing_then_restart(tmp_path, reference, split, epoch, when):
    out = tmp_path / "run"
    proc = _spawn(tmp_path, out, split, str(epoch), when)
    assert proc.wait(timeout=120) == -signal.SIGKILL
    assert loss_epochs(out, split="val") == list(range(epoch))
    assert loss_epochs(out, split="train") == list(range(epoch + (when == "after")))
    if when == "during":
        assert list((out / "losses" / "train").glob(".epoch=*.tmp"))
    _restart(out, proc.pid)
    _check_every_epoch_once(out, reference)


def test_cli_record_from_checkpoints_reproduces_live_losses(reference, tmp_path, capsys):
    rec = tmp_path / "rec"
    rc = main(
        [
            "record",
            "--checkpoints",
            str(reference / "checkpoints"),
            "--model",
            "cnn",
            "--model-kw",
            "width=4",
            "batchnorm=true",
            "--data",
            "synthetic",
            "--out",
            str(rec),
            "--no-progress",
        ]
    )
    assert rc == 0
    assert f"recorded {EPOCHS + 1} epoch(s)" in capsys.readouterr().out
    for split in ("train", "val"):
        e1, live = read_loss_matrix(reference, split=split)
        e2, again = read_loss_matrix(rec, split=split)
        np.testing.assert_array_equal(e1, e2)
        np.testing.assert_allclose(again, live, rtol=1e-6, atol=1e-9)
    # and the run's own model rebuilds from config + checkpoint
    model, ds = load_run_model(reference, 7)
    x, y = ds.tensors("val")
    np.testing.assert_allclose(
        evaluate_losses(model, x, y)[0], read_loss_matrix(reference, split="val")[1][7], rtol=1e-6
    )
    assert (
        main(
            [
                "record",
                "--checkpoints",
                str(reference / "checkpoints"),
                "--model",
                "cnn",
                "--data",
                "synthetic",
                "--out",
                str(tmp_path / "bad"),
                "--no-progress",
            ]
        )
        == 2
    )
    assert "does not fit" in capsys.readouterr().err


def test_cli_train_flags_and_toml_variants(tmp_path, capsys):
    rc = main(
        [
            "train",
            "--data",
            "synthetic",
            "--model",
            "resnet",
            "--model-kw",
            "depth=8",
            "width=4",
            "--epochs",
            "1",
            "--lr",
            "0.1",
            "0.01",
            "--skip",
            "true",
            "false",
            "--out",
            str(tmp_path / "flags"),
            "--no-progress",
        ]
    )
    assert rc == 0
    names = sorted(p.name for p in (tmp_path / "flags").iterdir() if p.is_dir())
    assert names == [
        "lr=0.01,skip=false",
        "lr=0.01,skip=true",
        "lr=0.1,skip=false",
        "lr=0.1,skip=true",
    ]
    c = read_run_config(tmp_path / "flags" / "lr=0.01,skip=false")
    assert (
        c["lr"] == 0.01 and c["model_kwargs"]["skip"] is False and c["model_kwargs"]["depth"] == 8
    )
    ck = torch.load(
        tmp_path / "flags/lr=0.01,skip=false/checkpoints/epoch=0001.pt", weights_only=True
    )
    assert not any("shortcut" in k for k in ck["model"])

    toml = tmp_path / "skip.toml"
    toml.write_text(
        textwrap.dedent(
            """
        data = "synthetic"
        model = "resnet"
        epochs = 1
        [model_kwargs]
        depth = 8
        width = 4
        [variants]
        skip = [true, false]
        """
        )
    )
    assert main(["train", str(toml), "--out", str(tmp_path / "skip"), "--no-progress"]) == 0
    assert sorted(p.name for p in (tmp_path / "skip").iterdir() if p.is_dir()) == [
        "skip=false",
        "skip=true",
    ]
    capsys.readouterr()
    assert (
        main(["train", "--model", "resnet18", "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    )
    err = capsys.readouterr().err
    assert (
        "'model' setting of the training config must be one of" in err
        and "Got 'resnet18'" in err
        and "wrn16" in err
        and "vgg9" in err
    )
    assert main(["train", "--data", "imagenet", "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    assert "'cifar10', 'digits', 'mnist', 'synthetic'. Got 'imagenet'" in capsys.readouterr().err


def test_train_pass_mode_through_the_driver(tmp_path):
    run = train_run(
        TrainConfig(epochs=2, record_mode="train_pass", **TINY), tmp_path / "tp", progress=False
    )
    for e in (0, 1, 2):
        model, ds = load_run_model(run, e)
        val = evaluate_losses(model, *ds.tensors("val"))[0]
        np.testing.assert_allclose(
            read_loss_matrix(run, split="val")[1][e], val, rtol=1e-6
        )  # val: exact
        train = evaluate_losses(model, *ds.tensors("train"))[0]
        if e == 0:
            np.testing.assert_allclose(read_loss_matrix(run, split="train")[1][0], train, rtol=1e-6)
        else:  # the training pass, not the end-of-epoch model
            assert not np.allclose(read_loss_matrix(run, split="train")[1][e], train)


def test_a_diverged_run_stops_with_one_error_and_keeps_its_epochs(tmp_path, capsys):
    from sampletopo.train import RunDivergedError

    cfg = TrainConfig(data="synthetic", model="mlp", lr=1e6, epochs=6, milestones=[])
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonFiniteLossWarning)  # no flood of per-table warnings
        with pytest.raises(RunDivergedError, match=r"diverged at epoch (\d).*Lower the learning"):
            train_run(cfg, tmp_path / "nan", progress=False)
    epochs, mat = read_loss_matrix(tmp_path / "nan", split="train")
    last = int(epochs[-1])
    assert last < 6 and list(epochs) == list(range(last + 1))  # stopped, nothing lost
    assert np.isfinite(mat[0]).all() and not np.isfinite(mat[-1]).all()
    # An experiment trains its other variants, then reports the diverged one; the CLI exits 2.
    rc = main(
        ["train", "--data", "synthetic", "--model", "mlp", "--epochs", "2", "--lr", "1e6", "0.01",
         "--out", str(tmp_path / "exp"), "--no-progress"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and err.count("diverged at epoch") == 1 and "lr=1000000" in err
    assert loss_epochs(tmp_path / "exp" / "lr=0.01", split="val") == [0, 1, 2]


def test_failed_attempts_do_not_block_a_corrected_retry(tmp_path, capsys):
    out = tmp_path / "cf"
    args = ["train", "--model", "cnn", "--epochs", "1", "--out", str(out), "--no-progress"]
    assert main([*args, "--data", "cifar10", "--data-root", str(tmp_path / "nothing")]) == 2
    assert "CIFAR-10 not found" in capsys.readouterr().err
    assert main([*args, "--data", "synthetic", "--width", "4"]) == 0
    assert loss_epochs(out / "run", split="train") == [0, 1]


def test_an_experiment_folder_refuses_other_base_settings(tmp_path, capsys):
    out = tmp_path / "exp"
    base = ["train", "--data", "synthetic", "--model", "mlp", "--epochs", "1", "--out", str(out)]
    assert main([*base, "--lr", "0.1", "0.01", "--no-progress"]) == 0
    before = (out / "config.toml").read_text()
    assert main([*base, "--lr", "0.5", "--no-progress"]) == 2
    err = capsys.readouterr().err
    # lr is what the experiment varies: the error says how to add lr=0.5 as a variant.
    assert "varies lr (0.1, 0.01); one value (0.5)" in err
    assert "give every value: --lr 0.1 0.01 0.5" in err
    assert (out / "config.toml").read_text() == before and not (out / "run").exists()
    # Another base setting (not a varied one) is refused as such.
    assert main([*base, "--lr", "0.1", "0.01", "--momentum", "0.5", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "other base settings" in err and "momentum: 0.9 -> 0.5" in err and "new --out" in err
    # A new variant of the same experiment is welcome.
    assert main([*base, "--lr", "0.05", "0.1", "--no-progress"]) == 0
    assert sorted(p.name for p in out.iterdir() if (p / "losses").is_dir()) == [
        "lr=0.01", "lr=0.05", "lr=0.1"]  # fmt: skip
    # A run folder is not an experiment folder.
    assert main([*base[:-1], str(out / "lr=0.1"), "--no-progress"]) == 2
    assert "is a run folder, not an experiment folder" in capsys.readouterr().err


def test_bad_configs_name_the_setting(tmp_path):
    with pytest.raises(SampletopoError, match=r"'epochs'.*int in the range \[1, .*Got 0"):
        train_experiment(TrainConfig(epochs=0), tmp_path)
    with pytest.raises(SampletopoError, match=r"'threads'.*int in the range \[0, .*-1"):
        train_run(TrainConfig(threads=-1), tmp_path / "t")
    before = torch.get_num_threads()
    train_run(TrainConfig(threads=2, epochs=1, **TINY), tmp_path / "threads", progress=False)
    assert torch.get_num_threads() == before  # restored
    with pytest.raises(SampletopoError, match="Unknown variant setting 'colour'"):
        train_experiment(TrainConfig(), tmp_path, variants={"colour": [1, 2]})
    with pytest.raises(SampletopoError, match=r"unknown setting\(s\) \['learning_rate'\]"):
        train_experiment({"learning_rate": 0.1}, tmp_path)
    with pytest.raises(SampletopoError, match="Unknown model option.*'widen'.*cnn"):
        train_experiment(TrainConfig(model="cnn", model_kwargs={"widen": 2}), tmp_path)


def test_toml_with_an_explicit_list_of_variants(tmp_path):
    toml = tmp_path / "exp.toml"
    toml.write_text(
        textwrap.dedent(
            """
            data = "synthetic"
            model = "mlp"
            epochs = 1
            lr = 0.05

            [[variants]]
            name = "narrow"
            hidden = [8]

            [[variants]]
            name = "wide-slow"
            hidden = [32]
            lr = 0.01
            """
        )
    )
    dirs = train_experiment(toml, tmp_path / "out", progress=False)
    assert [d.name for d in dirs] == ["narrow", "wide-slow"]
    narrow, wide = (read_run_config(d) for d in dirs)
    assert narrow["model_kwargs"]["hidden"] == [8] and narrow["lr"] == 0.05
    assert wide["model_kwargs"]["hidden"] == [32] and wide["lr"] == 0.01
    ck = torch.load(dirs[1] / "checkpoints/epoch=0001.pt", weights_only=True)
    assert ck["model"]["net.1.weight"].shape == (32, 64)


def test_training_refuses_torchrun(tmp_path, monkeypatch):
    from sampletopo._errors import SampletopoError
    from sampletopo.train import TrainConfig, train_experiment

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SampletopoError, match="WORLD_SIZE=2"):
        train_experiment(TrainConfig(model="mlp", epochs=1), tmp_path / "exp")
    assert not (tmp_path / "exp").exists()


def test_a_run_whose_last_step_breaks_the_model_stops_with_the_divergence_error(tmp_path):
    # N7: the mean training loss is taken before each step, so with one batch per epoch a last
    # step that breaks the model left every loss of the last epoch NaN with only a warning and
    # exit 0 (--momentum 1e39 did so too; it is refused now), where --lr 1e30 gave the error.
    from sampletopo.train import RunDivergedError

    cfg = TrainConfig(data="synthetic", model="mlp", lr=1e6, batch_size=100_000, epochs=2,
                      milestones=[], threads=1)  # fmt: skip
    with pytest.raises(RunDivergedError, match=r"diverged at epoch 2 \(its recorded losses") as err:
        train_run(cfg, tmp_path / "run", progress=False)
    assert err.value.epoch == 2
    epochs, mat = read_loss_matrix(tmp_path / "run", split="train")
    assert (
        epochs.tolist() == [0, 1, 2] and np.isfinite(mat[1]).all() and not np.isfinite(mat[2]).any()
    )
