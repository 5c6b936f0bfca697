"""The Lightning callback: a real ``lightning.Trainer.fit`` on a small digits set, on the CPU.

The oracle is the plain :class:`~sampletopo.recorder.LossRecorder` in a loop of our own that
trains the same network the same way (same initial weights, same batches in the same order,
same SGD): its tables must equal the callback's, bit for bit. Runs that are killed go through
this file run as a script (``python tests/test_lightning.py SPEC``) in a real subprocess that
SIGKILLs itself at a chosen point of the fit, then resumes from Lightning's last checkpoint.
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
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, Sampler, TensorDataset

L = pytest.importorskip("lightning")

from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402

from sampletopo._errors import RecorderWarning, SampletopoError, SampletopoWarning  # noqa: E402
from sampletopo.checkpoints import checkpoint_epoch  # noqa: E402
from sampletopo.cli import main  # noqa: E402
from sampletopo.data import Dataset, load_dataset  # noqa: E402
from sampletopo.lightning import LossRecorderCallback  # noqa: E402
from sampletopo.readers import read_diagrams, read_losses  # noqa: E402
from sampletopo.recorder import LossRecorder, evaluate_losses  # noqa: E402
from sampletopo.runs import as_run  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SEED = 0
BATCH = 32
EPOCHS = 4


def _dataset() -> Dataset:
    return load_dataset("digits", max_samples=120)  # 120 train, 120 val: 4 batches an epoch


class EpochSampler(Sampler[int]):
    """A shuffle that depends on the epoch alone (Lightning calls ``set_epoch``), so a resumed
    fit sees the batches an uninterrupted one sees."""

    def __init__(self, n: int) -> None:
        self.n, self.epoch = n, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        g = torch.Generator().manual_seed(1000 * SEED + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())


def _net(ds: Dataset) -> nn.Module:
    torch.manual_seed(SEED)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, ds.num_classes))


def _optimizer(params: Any) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.1, momentum=0.9)


def _loader(ds: Dataset, split: str = "train") -> DataLoader:
    x, y = ds.tensors(split)
    data = TensorDataset(x, y, torch.arange(len(y)))
    return DataLoader(data, batch_size=BATCH, sampler=EpochSampler(len(y)))


class Tiny(L.LightningModule):
    def __init__(self, ds: Dataset) -> None:
        super().__init__()
        self.net = _net(ds)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        x, y, idx = batch
        logits = self(x)
        losses = F.cross_entropy(logits, y, reduction="none")
        return {"loss": losses.mean(), "indices": idx, "logits": logits, "targets": y}

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y, _ = batch
        self.log("val_loss", F.cross_entropy(self(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return _optimizer(self.parameters())


def _trainer(epochs: int, callbacks: list, **kw: Any) -> Any:
    kw.setdefault("enable_checkpointing", any(isinstance(c, ModelCheckpoint) for c in callbacks))
    return L.Trainer(
        max_epochs=epochs,
        callbacks=callbacks,
        accelerator="cpu",
        devices=kw.pop("devices", 1),
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        **kw,
    )


def _plain_run(
    run_dir: Path,
    ds: Dataset,
    *,
    epochs: int = EPOCHS,
    mode: str = "eval",
    milestones: list[int] | None = None,
) -> None:
    """The oracle: the same training in a loop of our own, recorded by a LossRecorder (with
    ``milestones``: a MultiStepLR stepped after each epoch, and its schedule stored)."""
    model = _net(ds)
    opt = _optimizer(model.parameters())
    sched = None if milestones is None else torch.optim.lr_scheduler.MultiStepLR(opt, milestones)
    dl = _loader(ds)
    with LossRecorder(run_dir, ds, mode=mode, scheduler=sched) as rec:  # type: ignore[arg-type]
        rec.on_train_epoch_end(0, model)
        for epoch in range(epochs):
            dl.sampler.set_epoch(epoch)  # type: ignore[attr-defined]
            rec.on_train_epoch_start(epoch)
            model.train()
            for x, y, idx in dl:
                logits = model(x)
                loss = F.cross_entropy(logits, y, reduction="none").mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                rec.on_train_batch_end(idx, logits, y)
            rec.on_train_epoch_end(epoch + 1, model)
            if sched is not None:
                sched.step()


def _tables(run_dir: Path) -> Any:
    return read_losses(run_dir).sort("split", "epoch", "sample")


def _assert_same_tables(got: Path, want: Path) -> None:
    a, b = _tables(got), _tables(want)
    assert a.shape == b.shape and a.height > 0
    assert a.drop("run").equals(b.drop("run")), "per-sample losses differ"


def _epochs(run_dir: Path) -> dict[str, list[int]]:
    run = as_run(run_dir)
    return {s: run.loss_epochs(s) for s in ("train", "val")}


def _unlocked(run_dir: Path) -> bool:
    # Recorders in one process share a folder's lock, so probing by taking it here would not
    # see a leak; releasing the lock deletes its file.
    return not as_run(run_dir).lock_file.exists()


@pytest.fixture(scope="module")
def ds() -> Dataset:
    torch.set_num_threads(1)
    return _dataset()


@pytest.fixture(scope="module")
def plain(ds: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("plain") / "run"
    _plain_run(run_dir, ds)
    return run_dir


@pytest.fixture(scope="module")
def lit(ds: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("lit") / "run"
    cb = LossRecorderCallback(run_dir, ds)
    _trainer(EPOCHS, [cb], num_sanity_val_steps=2).fit(Tiny(ds), _loader(ds), _loader(ds, "val"))
    return run_dir


# ---------------------------------------------------------------------------------------------
# The same tables as the plain recorder


def test_callback_tables_equal_the_plain_recorders(lit: Path, plain: Path, ds: Dataset) -> None:
    # The fit had a validation loop with a sanity check: neither may move or record anything.
    assert _epochs(lit) == {s: list(range(EPOCHS + 1)) for s in ("train", "val")}
    _assert_same_tables(lit, plain)
    assert _unlocked(lit)  # closed at fit end


class Annealed(Tiny):
    """Tiny with Lightning's own learning-rate scheduler (stepped once an epoch)."""

    def configure_optimizers(self) -> Any:
        opt = _optimizer(self.parameters())
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[2], gamma=0.1)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


def test_callback_stores_the_schedule_of_lightnings_scheduler(
    ds: Dataset, lit: Path, tmp_path: Path
) -> None:
    # No scheduler: the constant rate of the module's optimizer, one row per epoch.
    flat = as_run(lit).read_schedule()
    assert flat is not None and flat["epoch"].to_list() == list(range(1, EPOCHS + 1))
    assert flat["group"].to_list() == [0] * EPOCHS and flat["lr"].to_list() == [0.1] * EPOCHS
    got = tmp_path / "lit" / "run"
    _trainer(EPOCHS, [LossRecorderCallback(got, ds)]).fit(Annealed(ds), _loader(ds))
    want = tmp_path / "plain" / "run"
    _plain_run(want, ds, milestones=[2])
    schedule = as_run(got).read_schedule()
    assert schedule is not None and schedule.equals(as_run(want).read_schedule())
    assert schedule["lr"].to_list() == [0.1, 0.1, 0.1 * 0.1, 0.1 * 0.1]
    assert as_run(got).lr_drops() == [2]
    _assert_same_tables(got, want)


def test_callback_records_the_loss_it_is_given(ds: Dataset, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    module = Tiny(ds)
    _trainer(1, [LossRecorderCallback(run_dir, ds, loss="mse")]).fit(module, _loader(ds))
    x, y = ds.tensors("val")
    want, _ = evaluate_losses(module, x, y, loss="mse")  # one-hot MSE of the fitted module
    got = read_losses(run_dir, split="val").filter(epoch=1).sort("sample")["loss"].to_numpy()
    np.testing.assert_array_equal(got, want)
    assert as_run(run_dir).read_config()["loss"] == "mse"


def tiny_module(num_classes: int = 10) -> Tiny:
    """Factory of the test module, importable as ``test_lightning:tiny_module``."""
    return Tiny(_dataset())


def test_callback_stores_the_model_spec_it_is_given(ds: Dataset, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    cb = LossRecorderCallback(
        run_dir, ds, model_spec="test_lightning:tiny_module", checkpoint_every=1
    )
    _trainer(1, [cb]).fit(Tiny(ds), _loader(ds))
    cfg = as_run(run_dir).read_config()
    assert cfg["model"] == "test_lightning:tiny_module"
    # The stored spec rebuilds the module: the landscape of epoch 1 at its origin is the
    # recorded mean training loss.
    assert sorted(as_run(run_dir).checkpoint_files()) == [0, 1]
    assert main(["landscape", str(run_dir), "--epoch", "1", "--dirs", "random", "--dim", "1",
                 "--steps", "3", "--no-hessian", "--no-progress"]) == 0  # fmt: skip
    from sampletopo.landscape import read_landscape

    grid, _ = read_landscape(as_run(run_dir).landscape_file(1))
    train = read_losses(run_dir, split="train").filter(epoch=1)["loss"].to_numpy()
    assert grid.loss[1] == pytest.approx(train.mean(), rel=1e-5)


def test_train_pass_mode_equals_the_plain_recorder(ds: Dataset, tmp_path: Path) -> None:
    want = tmp_path / "plain" / "run"
    _plain_run(want, ds, epochs=2, mode="train_pass")
    got = tmp_path / "lit" / "run"
    cb = LossRecorderCallback(got, ds, mode="train_pass")
    _trainer(2, [cb]).fit(Tiny(ds), _loader(ds))
    _assert_same_tables(got, want)


def test_topology_cli_on_the_callbacks_run(lit: Path, plain: Path) -> None:
    for run in (lit, plain):
        assert main(["topology", str(run), "--k", "5", "--no-progress"]) == 0
    a, b = read_diagrams(lit), read_diagrams(plain)
    assert sorted(set(a["epoch"])) == list(range(EPOCHS + 1))
    assert a.drop("run").equals(b.drop("run"))


# ---------------------------------------------------------------------------------------------
# Fits that end early, fail, or come again


def test_reused_across_fits_continues_the_epochs(ds: Dataset, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    cb = LossRecorderCallback(run_dir, ds)
    module = Tiny(ds)
    _trainer(2, [cb]).fit(module, _loader(ds))
    assert _unlocked(run_dir)
    first = {p: p.stat().st_mtime_ns for p in as_run(run_dir).loss_files("val").values()}
    with warnings.catch_warnings():
        warnings.simplefilter(
            "error", SampletopoWarning
        )  # nothing missing, nothing skipped: silent
        warnings.filterwarnings("ignore", module="lightning")
        _trainer(1, [cb]).fit(module, _loader(ds))  # a new Trainer: Lightning counts from 0
    assert _epochs(run_dir) == {s: [0, 1, 2, 3] for s in ("train", "val")}
    assert {p: p.stat().st_mtime_ns for p in first} == first  # not written again
    # Epoch 3 is the module after its third epoch: the weights the second fit left.
    x, y = ds.tensors("val")
    losses, _ = evaluate_losses(module, x, y)
    table = read_losses(run_dir, split="val").filter(epoch=3).sort("sample")
    np.testing.assert_array_equal(table["loss"].to_numpy(), losses)


def test_partial_epoch_is_not_recorded(ds: Dataset, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    cb = LossRecorderCallback(run_dir, ds)
    with pytest.warns(RecorderWarning, match="epoch 2 is not recorded: Lightning epoch 1 stopped"):
        _trainer(5, [cb], max_steps=6).fit(Tiny(ds), _loader(ds))  # 4 batches an epoch
    assert _epochs(run_dir)["train"] == [0, 1]
    assert _unlocked(run_dir)


class _Stream(IterableDataset):
    """Batches without a length: Lightning cannot count them, only see them run out."""

    def __init__(self, ds: Dataset) -> None:
        self.x, self.y = ds.tensors("train")

    def __iter__(self):
        for lo in range(0, len(self.y), BATCH):
            hi = min(lo + BATCH, len(self.y))
            yield self.x[lo:hi], self.y[lo:hi], torch.arange(lo, hi)


def test_loader_without_length_records_every_epoch(ds: Dataset, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    module = Tiny(ds)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SampletopoWarning)
        warnings.filterwarnings("ignore", module="lightning")
        loader = DataLoader(_Stream(ds), batch_size=None)
        _trainer(3, [LossRecorderCallback(run_dir, ds)]).fit(module, loader)
    assert _epochs(run_dir)["train"] == [0, 1, 2, 3]
    x, y = ds.tensors("train")
    want, _ = evaluate_losses(module, x, y)
    got = read_losses(run_dir, split="train").filter(epoch=3).sort("sample")["loss"].to_numpy()
    np.testing.assert_array_equal(got, want)


class _Boom(RuntimeError):
    pass


class _FailsInEpoch1(Tiny):
    def training_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        if self.current_epoch == 1 and batch_idx == 2:
            raise _Boom("training failed")
        return super().training_step(batch, batch_idx)


class _LockProbe(L.Callback):
    def __init__(self, run_dir: Path) -> None:
        self.run_dir, self.seen = run_dir, []

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self.seen.append(not _unlocked(self.run_dir))


def test_failed_fit_unlocks_and_keeps_what_was_recorded(
    ds: Dataset, plain: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    probe = _LockProbe(run_dir)
    with pytest.raises(_Boom):
        _trainer(4, [LossRecorderCallback(run_dir, ds), probe]).fit(_FailsInEpoch1(ds), _loader(ds))
    assert probe.seen == [True, True]  # locked while fitting
    assert _epochs(run_dir)["val"] == [0, 1]
    assert _unlocked(run_dir)
    want = read_losses(plain).filter(epoch=1).drop("run").sort("split", "sample")
    got = read_losses(run_dir).filter(epoch=1).drop("run").sort("split", "sample")
    assert got.equals(want)


class _NoForward(Tiny):
    forward = nn.Module.forward  # type: ignore[assignment]

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y, _ = batch
        return F.cross_entropy(self.net(x), y)


def test_module_without_forward_gets_one_clear_error(ds: Dataset, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(SampletopoError, match="define its forward to return the"):
        _trainer(1, [LossRecorderCallback(run_dir, ds)]).fit(_NoForward(ds), _loader(ds))
    assert _unlocked(run_dir)


def test_double_precision_trainer_records(ds: Dataset, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    module = Tiny(ds)
    _trainer(1, [LossRecorderCallback(run_dir, ds)], precision="64-true").fit(module, _loader(ds))
    assert module.net[1].weight.dtype == torch.float64
    x, y = ds.tensors("train")
    want, _ = evaluate_losses(module, x.double(), y)
    got = read_losses(run_dir, split="train").filter(epoch=1).sort("sample")["loss"].to_numpy()
    np.testing.assert_array_equal(got, want)


def test_bad_options_are_refused_before_any_fit(ds: Dataset, tmp_path: Path) -> None:
    with pytest.raises(SampletopoError, match="'mode' parameter of LossRecorderCallback"):
        LossRecorderCallback(tmp_path, ds, mode="exact")  # type: ignore[arg-type]
    with pytest.raises(SampletopoError, match="'dataset' parameter of LossRecorderCallback"):
        LossRecorderCallback(tmp_path, ds.tensors("train"))  # type: ignore[arg-type]
    assert not (tmp_path / "losses").exists()


def test_without_lightning_installed_one_line_says_how(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['lightning'] = sys.modules['lightning.pytorch'] = None\n"
        "from sampletopo.lightning import LossRecorderCallback\n"
        "from sampletopo.data import load_dataset\n"
        "LossRecorderCallback('run', load_dataset('digits', max_samples=20))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=_env(), capture_output=True, text=True
    )
    assert out.returncode != 0
    assert "SampletopoError" in out.stderr
    assert "pip install 'sampletopo[lightning]'" in out.stderr


# ---------------------------------------------------------------------------------------------
# Killed with SIGKILL and resumed from Lightning's last checkpoint


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return env


def _script(spec: dict[str, Any]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), json.dumps(spec)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _snapshot(run_dir: Path) -> dict[Path, tuple[int, int]]:
    run = as_run(run_dir)
    return {
        p: (p.stat().st_ino, p.stat().st_mtime_ns)
        for s in ("train", "val")
        for p in run.loss_files(s).values()
    }


def _checkpoint_epochs(ckpt: Path) -> tuple[int, Any]:
    """sampletopo's epoch of a Lightning checkpoint, and the callback's state in it (read with
    ``weights_only=True``: the state must be plain values)."""
    obj = torch.load(ckpt, map_location="cpu", weights_only=True)
    (state,) = [v for k, v in obj["callbacks"].items() if k.startswith("LossRecorderCallback")]
    return checkpoint_epoch(ckpt, obj), state


def _kill_and_resume(tmp_path: Path, plain: Path, *, save_at: str, kills: list) -> list[str]:
    """Run the fit, SIGKILLed at each of ``kills`` in turn (each time resuming from last.ckpt),
    then to its end; check every epoch is recorded once, never rewritten, and equals the
    uninterrupted run. Each killed attempt runs in a subprocess of its own (a forked one
    would deadlock in polars' thread pool), the last one here. Returns each resumed attempt's
    warnings (and a killed one's stderr)."""
    run_dir, ckpt_dir = tmp_path / "run", tmp_path / "ckpt"
    base = {"run": str(run_dir), "ckpt": str(ckpt_dir), "save_at": save_at}
    seen: dict[Path, tuple[int, int]] = {}
    logs = []
    for i, kill in enumerate([*kills, None]):
        spec = {**base, "kill": kill, "resume": i > 0}
        if kill is not None:
            out = _script(spec)
            assert out.returncode == -signal.SIGKILL, out.stderr[-3000:]
            if i > 0:
                logs.append(out.stderr)
            # sampletopo's checkpoint reader (Lightning's 0-based index + 1) and the callback
            # agree on the epoch of a checkpoint taken at an epoch's end.
            epoch, state = _checkpoint_epochs(ckpt_dir / "last.ckpt")
            assert state["epoch_at_end"] in (None, epoch)
        else:  # the last attempt runs here, to its end
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                _run_script(spec)
            logs.append("\n".join(str(w.message) for w in caught))
        now = _snapshot(run_dir)
        assert {p: now[p] for p in seen} == seen, "a recorded table was written again"
        seen = now
    assert _epochs(run_dir) == {s: list(range(EPOCHS + 1)) for s in ("train", "val")}
    _assert_same_tables(run_dir, plain)
    schedule = as_run(run_dir).read_schedule()  # every epoch's rate once, none lost
    assert schedule is not None and schedule["epoch"].to_list() == list(range(1, EPOCHS + 1))
    assert schedule["lr"].to_list() == [0.1] * EPOCHS
    return logs


@pytest.mark.parametrize(
    ("save_at", "kills", "expect"),
    [
        # Saved at validation end, before on_train_epoch_end; killed in between: Lightning
        # replays that epoch's end on resuming, and it is recorded then.
        ("val", [["epoch_end", 1, "before"]], None),
        # Saved at the epoch's last batch; killed before the epoch's end: Lightning goes on
        # with the next epoch, so the restored module is recorded at on_train_start.
        ("steps", [["epoch_end", 1, "before"]], None),
        # Saved at train epoch end, after the callback recorded; killed in between: Lightning
        # trains epoch 2 again from the epoch-1 checkpoint (kept, warned); then a kill
        # mid-epoch.
        pytest.param(
            "train",
            [["epoch_end", 1, "after"], ["batch", 3, 0]],
            "epochs 2 in",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_killed_and_resumed_records_every_epoch_once(
    tmp_path: Path, plain: Path, save_at: str, kills: list, expect: str | None
) -> None:
    logs = _kill_and_resume(tmp_path, plain, save_at=save_at, kills=kills)
    assert "stay missing" not in "".join(logs), logs
    if expect is None:
        assert "not recorded again" not in "".join(logs), logs
    else:
        assert expect in logs[0] and "lie beyond the checkpoint" in logs[0], logs[0][-3000:]
        assert "not recorded again" not in logs[1], logs[1][-3000:]


# ---------------------------------------------------------------------------------------------
# Several processes (DDP over gloo on the CPU)


@pytest.mark.slow
def test_ddp_on_cpu_records_like_one_process(tmp_path: Path, ds: Dataset) -> None:
    run_dir = tmp_path / "run"
    out = _script({"run": str(run_dir), "ddp": True, "weights": str(tmp_path / "w.pt")})
    assert out.returncode == 0, out.stderr[-3000:]
    assert _epochs(run_dir) == {s: list(range(3)) for s in ("train", "val")}
    module = Tiny(ds)  # the initial weights (seeded) for epoch 0, the fit's final ones for 2
    for epoch, weights in ((0, None), (2, torch.load(tmp_path / "w.pt", weights_only=True))):
        if weights is not None:
            module.load_state_dict(weights)
        for split in ("train", "val"):
            x, y = ds.tensors(split)
            want, _ = evaluate_losses(module, x, y)
            got = read_losses(run_dir, split=split).filter(epoch=epoch).sort("sample")
            np.testing.assert_array_equal(got["loss"].to_numpy(), want)


# ---------------------------------------------------------------------------------------------
# This file as a script: one fit in its own process


class _Kill(L.Callback):
    """SIGKILL this process at one point of the fit: a batch's end or an epoch's end."""

    def __init__(self, where: str, epoch: int, batch: int = 0) -> None:
        self.where, self.epoch, self.batch = where, epoch, batch

    def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
        if self.where == "batch" and trainer.current_epoch == self.epoch:
            if args[-1] == self.batch:
                os.kill(os.getpid(), signal.SIGKILL)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self.where == "epoch_end" and trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)


def _run_script(spec: dict[str, Any]) -> None:
    torch.set_num_threads(1)
    ds = _dataset()
    cb = LossRecorderCallback(spec["run"], ds)
    if spec.get("ddp"):
        module = Tiny(ds)
        trainer = _trainer(2, [cb], devices=2, strategy="ddp_spawn")
        trainer.fit(module, _loader(ds))
        torch.save(module.state_dict(), spec["weights"])
        return
    save_at = spec["save_at"]
    if save_at == "steps":  # 4 batches an epoch: saved at each epoch's last batch
        ckpt = ModelCheckpoint(dirpath=spec["ckpt"], save_last=True, every_n_train_steps=4)
    else:
        ckpt = ModelCheckpoint(
            dirpath=spec["ckpt"],
            save_last=True,
            every_n_epochs=1,
            save_on_train_epoch_end=save_at == "train",
        )
    callbacks: list[Any] = [cb, ckpt]
    if spec["kill"]:
        where, epoch, arg = spec["kill"]
        if where == "batch":
            callbacks.insert(0, _Kill(where, epoch, arg))
        else:  # before or after the recorder's on_train_epoch_end; ModelCheckpoint goes last
            callbacks.insert(0 if arg == "before" else 1, _Kill(where, epoch))
    val = _loader(ds, "val") if save_at == "val" else None
    trainer = _trainer(EPOCHS, callbacks, num_sanity_val_steps=0)
    last = Path(spec["ckpt"]) / "last.ckpt"
    trainer.fit(Tiny(ds), _loader(ds), val, ckpt_path=str(last) if spec["resume"] else None)


if __name__ == "__main__":
    _run_script(json.loads(sys.argv[1]))
