"""Recording under torch.distributed: real two-process gloo groups on the CPU.

Each multi-process test starts two spawned processes that join a gloo group through a file in
``tmp_path``; they write their results (or the errors they raised) to files that the test reads.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import warnings
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from sampletopo._errors import SampletopoError
from sampletopo._folders import StaleLockWarning
from sampletopo.data import Dataset, load_dataset
from sampletopo.distributed import (
    CheckpointChangedError,
    World,
    check_world_size,
    current_world,
    shard_bounds,
)
from sampletopo.models import create_model
from sampletopo.readers import loss_epochs
from sampletopo.record import LossRecorder, record_checkpoints
from sampletopo.runs import as_run

torch.set_num_threads(1)
CNN = {"width": 4, "batchnorm": True}
BATCH = 64  # several batches per split, so both ranks get work


# ---------------------------------------------------------------------------------------------
# Helpers shared by the parent and the spawned ranks


def _toy() -> Dataset:
    """203 train samples (odd, so a DistributedSampler pads) and 61 val, 3 classes."""
    rng = np.random.default_rng(7)
    return Dataset.from_arrays(
        "toy",
        train=(rng.random((203, 1, 8, 8)), rng.integers(0, 3, 203)),
        val=(rng.random((61, 1, 8, 8)), rng.integers(0, 3, 61)),
    )


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("cnn", in_channels=1, input_size=8, num_classes=3, **CNN)


def _checkpoints(folder: Path, ds: Dataset, epochs: int = 4) -> None:
    model = create_model("cnn", in_channels=1, input_size=8, num_classes=ds.num_classes, **CNN)
    x, y = ds.tensors("train")
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    folder.mkdir(parents=True)
    for epoch in range(epochs):
        for group in opt.param_groups:  # a schedule, stored with the checkpoints' optimizer
            group["lr"] = 0.1 * 0.5**epoch
        if epoch:
            model.train()
            for i in range(3):
                opt.zero_grad()
                F.cross_entropy(
                    model(x[64 * i : 64 * (i + 1)]), y[64 * i : 64 * (i + 1)]
                ).backward()
                opt.step()
        torch.save(
            {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch},
            folder / f"ep{epoch}.pt",
        )


def _join(rank: int, world: int, tmp: Path) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{tmp / 'pg'}",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=30),
    )


def _save(tmp: Path, rank: int, obj: object) -> None:
    (tmp / f"rank{rank}.json").write_text(json.dumps(obj))


def _run(target, tmp: Path, *args, world: int = 2, timeout: float = 90) -> list[int | None]:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=target, args=(r, world, tmp, *args)) for r in range(world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    codes = [p.exitcode for p in procs]
    for p in procs:
        if p.is_alive():
            p.kill()
    return codes


def _tables(run: Path) -> dict[str, pl.DataFrame]:
    return {
        f"{p.parent.name}/{p.name}": pl.read_parquet(p)
        for p in sorted(run.glob("losses/*/*.parquet"))
    }


def _assert_same_tables(a: Path, b: Path) -> None:
    ta, tb = _tables(a), _tables(b)
    assert ta and list(ta) == list(tb)
    for name in ta:
        assert ta[name].equals(tb[name]), name  # bit-for-bit, NaN-aware


def _no_temporaries(run: Path) -> None:
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]


# ---------------------------------------------------------------------------------------------
# Shards (no process group needed)


@pytest.mark.parametrize("n", [1, 2, 7, 64, 203, 1000])
@pytest.mark.parametrize("world", [1, 2, 3, 8])
@pytest.mark.parametrize("align", [1, 64])
def test_shards_are_disjoint_cover_every_sample_and_keep_batches_whole(n, world, align):
    if world > n:
        with pytest.raises(SampletopoError, match=f"world size {world} is larger"):
            shard_bounds(n, rank=0, world_size=world, align=align)
        return
    bounds = [shard_bounds(n, rank=r, world_size=world, align=align) for r in range(world)]
    covered = np.concatenate([np.arange(lo, hi) for lo, hi in bounds])
    np.testing.assert_array_equal(covered, np.arange(n))  # disjoint, ordered, no duplicates
    single = {(s, min(s + align, n)) for s in range(0, n, align)}
    for lo, hi in bounds:
        batches = {(s, min(s + align, hi)) for s in range(lo, hi, align)}
        assert batches <= single  # every batch is one a single process would run
    sizes = [hi - lo for lo, hi in bounds]
    assert max(sizes) - min(sizes) <= align


def test_world_helpers_without_a_process_group():
    assert current_world() == World()
    with pytest.raises(SampletopoError, match="no torch.distributed process group"):
        current_world(distributed=True, where="LossRecorder")
    with pytest.raises(SampletopoError, match=r"at most 3 processes"):
        check_world_size(3, 4, what="split 'val'")


# ---------------------------------------------------------------------------------------------
# Two ranks write what one process writes


def _record_worker(rank: int, world: int, tmp: Path) -> None:
    _join(rank, world, tmp)
    ds = _toy()
    done = {}
    for shard in ("samples", "checkpoints"):
        done[shard] = record_checkpoints(
            tmp / "ck",
            tmp / f"two-{shard}",
            model=_model(),
            data=ds,
            batch_size=BATCH,
            shard=shard,
            progress=False,
        )
    _save(tmp, rank, done)
    dist.destroy_process_group()


def test_two_ranks_record_checkpoints_exactly_like_one_process(tmp_path):
    ds = _toy()
    _checkpoints(tmp_path / "ck", ds)
    one = record_checkpoints(
        tmp_path / "ck", tmp_path / "one", model=_model(), data=ds, batch_size=BATCH, progress=False
    )
    assert _run(_record_worker, tmp_path) == [0, 0]
    for rank in (0, 1):
        done = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert (
            done
            == {"samples": one, "checkpoints": one}
            == {
                "samples": [0, 1, 2, 3],
                "checkpoints": [0, 1, 2, 3],
            }
        )
    schedule = as_run(tmp_path / "one").read_schedule()
    assert schedule is not None and schedule["lr"].to_list() == [0.05, 0.025, 0.0125]
    for shard in ("samples", "checkpoints"):
        _assert_same_tables(tmp_path / "one", tmp_path / f"two-{shard}")
        _no_temporaries(tmp_path / f"two-{shard}")
        assert len(_tables(tmp_path / f"two-{shard}")) == 8
        assert schedule.equals(as_run(tmp_path / f"two-{shard}").read_schedule())


def _live_worker(rank: int, world: int, tmp: Path) -> None:
    _join(rank, world, tmp)
    ds = _toy()
    model = nn.parallel.DistributedDataParallel(_model())
    ev = LossRecorder(tmp / "eval", ds, batch_size=BATCH)
    tp = LossRecorder(tmp / "train_pass", ds, mode="train_pass", batch_size=BATCH)
    ev.on_train_epoch_end(0, model)
    tp.on_train_epoch_end(0, model)
    x, y = ds.tensors("train")
    sampler = torch.utils.data.DistributedSampler(range(ds.n("train")), shuffle=True, seed=3)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    handed: dict[int, list[float]] = {}
    for epoch in (1, 2):
        sampler.set_epoch(epoch)
        idx_all = torch.tensor(list(sampler))
        assert idx_all.numel() == 102  # 203 samples on 2 ranks: one padding duplicate
        model.train()
        tp.on_train_epoch_start(epoch)
        for s in range(0, idx_all.numel(), 32):
            idx = idx_all[s : s + 32]
            logits = model(x[idx])
            loss = F.cross_entropy(logits, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            tp.on_train_batch_end(idx, logits, y[idx])
            per = F.cross_entropy(logits.detach().double(), y[idx], reduction="none")
            for i, v in zip(idx.tolist(), per.tolist()):
                handed.setdefault(epoch, []).append([i, v])  # type: ignore[arg-type]
        ev.on_train_epoch_end(epoch, model)
        tp.on_train_epoch_end(epoch, model)
        if rank == 0:
            torch.save(model.module.state_dict(), tmp / f"weights{epoch}.pt")
    _save(tmp, rank, {"handed": handed, "nonfinite": len(ev.nonfinite)})
    dist.destroy_process_group()


@pytest.mark.slow  # ~10-16 s: two ranks train a model with DDP
def test_live_recorder_under_ddp_matches_one_process_and_drops_padding_duplicates(tmp_path):
    ds = _toy()
    assert _run(_live_worker, tmp_path) == [0, 0]
    # eval mode: the same weights recorded by one process give the same tables.
    torch.manual_seed(0)
    ref = LossRecorder(tmp_path / "ref", ds, batch_size=BATCH)
    ref.on_train_epoch_end(0, _model())
    for epoch in (1, 2):
        net = _model()
        net.load_state_dict(torch.load(tmp_path / f"weights{epoch}.pt", weights_only=True))
        ref.on_train_epoch_end(epoch, net)
    _assert_same_tables(tmp_path / "ref", tmp_path / "eval")
    # train_pass: each sample's loss is the one a rank handed in, the lowest rank's for the
    # padding duplicate; every sample exactly once.
    handed = [json.loads((tmp_path / f"rank{r}.json").read_text())["handed"] for r in (0, 1)]
    for epoch in (1, 2):
        expected = np.full(ds.n("train"), np.nan)
        for rank in (1, 0):  # rank 0 last: it wins on duplicates
            for i, v in handed[rank][str(epoch)]:
                expected[int(i)] = v
        got = pl.read_parquet(tmp_path / f"train_pass/losses/train/epoch={epoch:04d}.parquet")
        np.testing.assert_array_equal(got["sample"].to_numpy(), np.arange(ds.n("train")))
        np.testing.assert_array_equal(got["label"].to_numpy(), ds.labels("train"))
        np.testing.assert_array_equal(got["loss"].to_numpy(), expected)
        dup = set(dict(handed[0][str(epoch)])) & set(dict(handed[1][str(epoch)]))
        assert len(dup) == 1  # the duplicate is really there, with two different losses
    assert loss_epochs(tmp_path / "train_pass", split="val") == [0, 1, 2]


# ---------------------------------------------------------------------------------------------
# Bad input and failures


def _bad_input_worker(rank: int, world: int, tmp: Path) -> None:
    _join(rank, world, tmp)
    errors = {}
    # 1. ranks that disagree about the dataset
    ds = load_dataset("synthetic", seed=rank)
    try:
        LossRecorder(tmp / "fp", ds)
    except SampletopoError as exc:
        errors["fingerprint"] = str(exc)
    # 2. more ranks than samples
    rng = np.random.default_rng(0)
    tiny = Dataset.from_arrays(
        "tiny",
        train=(rng.random((5, 1, 8, 8)), np.arange(5) % 3),
        val=(rng.random((1, 1, 8, 8)), [0]),
    )
    try:
        LossRecorder(tmp / "tiny", tiny)
    except SampletopoError as exc:
        errors["world"] = str(exc)
    # 3. a checkpoint deleted while the folder is read: all ranks skip the same epoch
    toy = _toy()
    net = _model()
    victim = tmp / "ck" / "ep2.pt"

    def delete_once(module: nn.Module, inputs: object) -> None:
        if rank == 0 and victim.exists():
            victim.unlink()

    hook = net.register_forward_pre_hook(delete_once)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        done = record_checkpoints(
            tmp / "ck", tmp / "changing", model=net, data=toy, batch_size=BATCH, progress=False,
            on_change="skip",
        )  # fmt: skip
    hook.remove()
    errors["warned"] = [str(w.message) for w in caught if "vanished" in str(w.message)]
    _save(tmp, rank, {"errors": errors, "done": done})
    dist.destroy_process_group()


def test_bad_input_is_refused_on_every_rank_with_a_clear_message(tmp_path):
    _checkpoints(tmp_path / "ck", _toy())
    assert _run(_bad_input_worker, tmp_path) == [0, 0]
    fp = [load_dataset("synthetic", seed=s).fingerprint("train") for s in (0, 1)]
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        err = got["errors"]
        assert "ranks disagree about the dataset" in err["fingerprint"]
        assert f"rank 0 has 'synthetic: train={fp[0]}" in err["fingerprint"]
        assert f"rank 1 has 'synthetic: train={fp[1]}" in err["fingerprint"]
        assert (
            "world size 2 is larger than the number of samples of split 'val' (1)" in err["world"]
        )
        assert "--nproc_per_node=1" in err["world"]
        assert got["done"] == [0, 1, 3]  # epoch 2 vanished after listing: skipped by both ranks
        assert len(err["warned"]) == (1 if rank == 0 else 0)  # rank 0 reports it once
    assert loss_epochs(tmp_path / "changing", split="train") == [0, 1, 3]
    assert loss_epochs(tmp_path / "changing", split="val") == [0, 1, 3]


def _killed_worker(rank: int, world: int, tmp: Path) -> None:
    _join(rank, world, tmp)
    ds = _toy()
    model = _model()
    rec = LossRecorder(tmp / "run", ds, batch_size=BATCH)
    rec.on_train_epoch_end(0, model)

    def die(module: nn.Module, inputs: object) -> None:
        os._exit(3)  # killed in the middle of its shard of epoch 1

    if rank == 1:
        model.register_forward_pre_hook(die)
    try:
        rec.on_train_epoch_end(1, model)
    except Exception as exc:
        _save(tmp, rank, {"error": f"{type(exc).__name__}: {exc}"[:300]})
        os._exit(1)
    _save(tmp, rank, {"error": None})


def test_a_rank_killed_mid_epoch_leaves_no_partial_epoch_file(tmp_path):
    codes = _run(_killed_worker, tmp_path, timeout=60)
    assert codes[1] == 3
    assert codes[0] == 1  # rank 0 noticed the dead peer and failed instead of writing
    assert json.loads((tmp_path / "rank0.json").read_text())["error"]
    for split in ("train", "val"):
        assert loss_epochs(tmp_path / "run", split=split) == [0]
    _no_temporaries(tmp_path / "run")
    # Restarting in one process records epoch 1 and leaves epoch 0 alone. Rank 0 held the run
    # folder's lock and ended without releasing it (os._exit): the restart takes it over.
    with pytest.warns(StaleLockWarning, match="Took over the lock of .*recording losses"):
        rec = LossRecorder(tmp_path / "run", _toy(), batch_size=BATCH)
    assert rec.on_train_epoch_end(1, _model())["train"] is not None
    assert loss_epochs(tmp_path / "run", split="train") == [0, 1]


# ---------------------------------------------------------------------------------------------
# A changing checkpoint folder, one process


@pytest.mark.parametrize("how", ["vanish", "rewrite"])
def test_a_checkpoint_changed_after_listing_stops_or_is_skipped_never_half_recorded(tmp_path, how):
    ds = _toy()
    _checkpoints(tmp_path / "ck", ds)
    victim = tmp_path / "ck" / "ep2.pt"

    def make_hook():
        fired = []

        def hook(module: nn.Module, inputs: object) -> None:
            if not fired:
                fired.append(1)
                if how == "vanish":
                    victim.unlink()
                else:  # rewritten in place with other weights (new size and time)
                    torch.save({"model": _model(5).state_dict(), "epoch": 2, "x": 1}, victim)

        return hook

    net = _model()
    h = net.register_forward_pre_hook(make_hook())
    with pytest.raises(CheckpointChangedError) as info:
        record_checkpoints(tmp_path / "ck", tmp_path / "stop", model=net, data=ds, progress=False)
    h.remove()
    word = "vanished" if how == "vanish" else "changed"
    assert f"ep2.pt' {word} after the folder was listed" in str(info.value)
    assert "on_change='skip'" in str(info.value)
    for split in ("train", "val"):
        assert loss_epochs(tmp_path / "stop", split=split) == [0, 1]

    shutil.rmtree(tmp_path / "ck")
    _checkpoints(tmp_path / "ck", ds)
    net = _model()
    net.register_forward_pre_hook(make_hook())
    with pytest.warns(RuntimeWarning, match=f"ep2.pt' {word} after the folder was listed"):
        done = record_checkpoints(
            tmp_path / "ck", tmp_path / "skip", model=net, data=ds, on_change="skip", progress=False
        )
    assert done == [0, 1, 3]
    for split in ("train", "val"):
        assert loss_epochs(tmp_path / "skip", split=split) == [0, 1, 3]


def test_bad_shard_and_on_change_values_are_refused(tmp_path):
    _checkpoints(tmp_path / "ck", _toy(), epochs=1)
    with pytest.raises(SampletopoError, match="'shard' parameter .* Got 'rows'"):
        record_checkpoints(
            tmp_path / "ck", tmp_path / "r", model=_model(), data=_toy(), shard="rows"
        )  # type: ignore[arg-type]
    with pytest.raises(SampletopoError, match="'on_change' parameter .* Got 'ignore'"):
        record_checkpoints(
            tmp_path / "ck",
            tmp_path / "r",
            model=_model(),
            data=_toy(),
            on_change="ignore",  # type: ignore[arg-type]
        )


# ---------------------------------------------------------------------------------------------
# The command line under torchrun


@pytest.mark.slow
def test_sampletopo_record_under_torchrun_writes_the_single_process_tables(tmp_path):
    ds = load_dataset("digits")
    ck = tmp_path / "ck"
    ck.mkdir()
    for epoch in range(3):
        torch.manual_seed(epoch)
        m = create_model("cnn", in_channels=1, input_size=8, num_classes=ds.num_classes, width=8)
        torch.save({"model": m.state_dict(), "epoch": epoch}, ck / f"epoch={epoch:04d}.pt")
    common = ["record", "--checkpoints", str(ck), "--model", "cnn", "--model-kw", "width=8"]
    common += ["--data", "digits", "--batch-size", "128", "--no-progress", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run(
        [sys.executable, "-m", "sampletopo", *common, "--out", str(tmp_path / "one")],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    assert "recorded 3 epoch(s)" in one.stdout
    for shard in ("samples", "checkpoints"):
        two = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m",
             "sampletopo", *common, "--out", str(tmp_path / shard), "--shard", shard],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
        assert two.returncode == 0, two.stderr[-2000:]
        assert two.stdout.count("recorded 3 epoch(s)") == 1  # rank 0 alone reports
        assert f"with 2 processes (--shard {shard})" in two.stdout
        _assert_same_tables(tmp_path / "one", tmp_path / shard)


def test_an_error_on_one_rank_is_raised_on_every_rank_with_its_class():
    from sampletopo._errors import DamagedFileError, ParameterError, RankFailedError
    from sampletopo.distributed import error_status, raise_status

    def status_of(exc: BaseException):
        try:
            raise exc
        except BaseException as caught:  # noqa: BLE001 -- as a rank does
            return error_status(caught)

    # A bug on rank 1 (not a SampletopoError): every rank stops with RankFailedError, which
    # names the rank, the error's type and where it was raised; no bare RuntimeError.
    with pytest.raises(
        RankFailedError, match=r"rank 1 failed: KeyError: 'x' \(raised at .*test_distributed\.py"
    ) as err:
        raise_status(status_of(KeyError("x")), rank=1)
    assert (err.value.rank, err.value.kind) == (1, "KeyError")
    # sampletopo's own errors keep their class and attributes across ranks.
    damaged = DamagedFileError("/r/losses/val/epoch=0001.parquet", "it is empty", "Record it.")
    with pytest.raises(DamagedFileError) as got:
        raise_status(status_of(damaged), rank=2)
    assert got.value.path == damaged.path and str(got.value) == str(damaged)
    with pytest.raises(ParameterError, match="'k'") as par:
        raise_status(status_of(ParameterError("The 'k' parameter ...", parameter="k")), rank=0)
    assert par.value.parameter == "k"
