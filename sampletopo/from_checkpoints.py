"""Record the loss tables of a folder of saved checkpoints: ``sampletopo record``.

Holds :func:`record_checkpoints`: it lists a checkpoint folder once, reads every checkpoint's
epoch, writes the run's config, and evaluates each checkpoint not yet recorded, writing the same
tables as a :class:`~sampletopo.recorder.LossRecorder` through the same writer
(:class:`~sampletopo._writer.RunWriter`). Under several processes (``torchrun``) the work is
shared one of two ways, each a named function: :func:`_by_samples` (every rank evaluates a slice
of each checkpoint's samples, through a distributed recorder) and :func:`_by_checkpoints` (each
rank evaluates whole checkpoints, rank 0 writes them round by round). It trains nothing.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from sampletopo._device import model_device, resolve_device
from sampletopo._errors import CheckpointChangedWarning, ParameterError, RunFolderError
from sampletopo._folders import lock_folder
from sampletopo._losses import Loss, resolve_loss
from sampletopo._runconfig import DATA_KEYS
from sampletopo._validation import MAX_SEED, check_choice, check_instance, check_int, invalid
from sampletopo._writer import RunWriter
from sampletopo.data import Dataset, data_spec, default_val_fraction, list_datasets, load_dataset
from sampletopo.distributed import (
    CheckpointChangedError,
    ListedCheckpoint,
    World,
    check_same_dataset,
    current_world,
    default_device,
    error_status,
    everywhere,
    gather_all,
    gather_to_main,
    on_main,
    raise_status,
    read_listed_checkpoint,
    snapshot_checkpoints,
)
from sampletopo.models import build_model, check_model_kwargs, model_spec
from sampletopo.recorder import (
    LossRecorder,
    LossSpec,
    OnExists,
    _evaluate,
    check_loss,
    check_recorder_options,
)
from sampletopo.runs import SPLITS, PathLike, Run, data_config

__all__ = ["record_checkpoints"]

Shard = Literal["samples", "checkpoints"]
OnChange = Literal["error", "skip"]


def record_checkpoints(
    checkpoints: str | Path,
    run_dir: PathLike,
    *,
    model: str | Callable[..., nn.Module] | nn.Module,
    data: str | Path | Dataset,
    data_root: str | Path = "data",
    model_kwargs: Mapping[str, Any] | None = None,
    data_seed: int = 0,
    val_fraction: float | str | None = None,
    max_samples: int | None = None,
    splits: Sequence[str] = SPLITS,
    batch_size: int = 512,
    device: str | torch.device | None = None,
    on_exists: OnExists = "skip",
    progress: bool = True,
    shard: Shard = "samples",
    on_change: OnChange = "error",
    distributed: bool | None = None,
    loss: LossSpec = "cross_entropy",
) -> list[int]:
    """Evaluate every checkpoint in a folder and write the same loss tables as the recorder.

    Parameters
    ----------
    checkpoints : str or Path
        Folder of checkpoint files (``.pt``, ``.pth``, ``.ckpt``, ``.bin``, ``.tar``). Each is
        loaded with ``weights_only=True``; its epoch is its ``"epoch"`` entry, else the last
        number in its file name. The folder is listed once, at the start.
    run_dir : str or Path
        Output run folder. A ``config.toml`` describing the model and data is written when it
        does not exist yet, so :func:`~sampletopo.runs.Run.load_model` works on the result.
    model : str, callable or torch.nn.Module
        A registered model name, ``"torchvision:NAME"``, an import path ``"pkg.module:factory"``
        or the factory itself (built with ``model_kwargs``, see
        :func:`~sampletopo.models.build_model`, and stored in the run's config so later commands
        rebuild it), or a model instance.
    data : str, Path or Dataset
        A registered dataset name, an ``.npz`` file, ``"imagefolder:FOLDER"`` or an import path
        (loaded from ``data_root`` with ``data_seed``, ``val_fraction`` and ``max_samples``,
        see :func:`~sampletopo.data.load_dataset`), or a :class:`Dataset`.
    splits, batch_size, on_exists
        As for :class:`~sampletopo.recorder.LossRecorder` (mode ``"eval"``). Epochs already on
        disk are skipped.
    device : str or torch.device, optional
        Device of the eval passes. Default: the device of a ``model`` instance; for a model
        name, the GPU when CUDA is available (this rank's, under an NCCL process group), else
        the CPU.
    progress : bool
        Show a progress bar over checkpoints (on rank 0 only).
    shard : {"samples", "checkpoints"}
        How several processes (``torchrun``) share the work: every rank evaluates each
        checkpoint on its own slice of the samples (the default), or each rank evaluates whole
        checkpoints on all samples (better when there are many checkpoints and few samples).
        Either way rank 0 writes every table, and the tables equal a single process's. Ignored
        in a single process.
    on_change : {"error", "skip"}
        A checkpoint that vanished, or whose size or modification time changed, since the
        folder was listed: raise (the default), or skip its epoch with a warning. Its epoch is
        never partly recorded.
    distributed : bool, optional
        As for :class:`~sampletopo.recorder.LossRecorder`: ``None`` uses an initialised process
        group if there is one.
    loss : {"cross_entropy", "mse"} or callable
        The per-sample loss, as for :class:`~sampletopo.recorder.LossRecorder` (stored in the
        config when it can be rebuilt: a name, or an importable function's import path).

    The run's schedule (``losses/schedule.parquet``) gets the learning rates found in each
    checkpoint's ``"optimizer"`` entry (a torch optimizer ``state_dict``): for the checkpoints
    of ``sampletopo train`` the rates their epoch trained with. Checkpoints without one store
    none (figures then use the config's ``milestones``, if any).

    Returns
    -------
    list of int
        The epochs recorded now (skipped ones excluded), sorted; the same on every rank.

    Notes
    -----
    ``run_dir`` is locked for the whole call (by rank 0 under several processes), as by
    :class:`LossRecorder`: a second writer of the folder gets an error naming this process.
    """
    world = current_world(distributed=distributed, where="record_checkpoints")
    lock = on_main(
        world,
        lambda: lock_folder(run_dir, what="recording losses of checkpoints", role="run folder"),
    )
    try:
        return _record_checkpoints(
            checkpoints, run_dir, model=model, data=data, data_root=data_root,
            model_kwargs=model_kwargs, data_seed=data_seed, val_fraction=val_fraction,
            max_samples=max_samples, splits=splits, batch_size=batch_size, device=device,
            on_exists=on_exists, progress=progress, shard=shard, on_change=on_change,
            distributed=distributed, loss=loss,
        )  # fmt: skip
    finally:
        if lock is not None:
            lock.release()


def _check_arguments(
    *,
    model: Any,
    data: Any,
    model_kwargs: Any,
    data_seed: Any,
    splits: Any,
    batch_size: Any,
    on_exists: Any,
    shard: Any,
    on_change: Any,
) -> tuple[str, ...]:
    """Every argument of :func:`record_checkpoints` checked before the folder is listed or
    anything is written; returns ``splits`` as a tuple."""
    where = "record_checkpoints"
    check_choice("shard", shard, ("samples", "checkpoints"), where=where)
    check_choice("on_change", on_change, ("error", "skip"), where=where)
    check_instance(
        "data",
        data,
        (str, Path, Dataset),
        what=f"a dataset name (one of {', '.join(list_datasets())}), an .npz path, "
        "'imagefolder:FOLDER', an import path or a sampletopo Dataset",
        where=where,
        fix="Wrap arrays with Dataset.from_arrays(name, train=(x, y), val=(x, y)).",
    )
    if not isinstance(data, Dataset):
        data_spec(data, where=where)
    if not isinstance(model, (str, nn.Module)) and not callable(model):
        raise invalid(
            "model",
            "a model name or a torch.nn.Module (or a model factory, its import path "
            "'pkg.module:factory', or 'torchvision:NAME')",
            where=where,
            got=f"{model!r} ({type(model).__name__})",
        )
    if model_kwargs is not None and not isinstance(model_kwargs, Mapping):
        raise invalid(
            "model_kwargs",
            "a mapping of model options, e.g. {'width': 8}",
            model_kwargs,
            where=where,
        )
    if not isinstance(model, nn.Module):
        spec = model_spec(model, where=where, kind="parameter")
        check_model_kwargs(spec, model_kwargs or {}, where=where, kind="parameter")
    if not isinstance(data, Dataset):
        check_int("data_seed", data_seed, 0, MAX_SEED, where=where)
    return check_recorder_options(
        splits=splits, mode="eval", batch_size=batch_size, on_exists=on_exists, where=where
    )


@dataclass
class _Job:
    """What every step of recording one checkpoint folder shares."""

    world: World
    run: Run
    listed: list[ListedCheckpoint]
    net: nn.Module
    device: torch.device
    dataset: Dataset
    splits: tuple[str, ...]
    batch_size: int
    on_exists: str
    on_change: str
    loss: Loss = field(default_factory=lambda: Loss("cross_entropy"))
    by_epoch: dict[int, int] = field(default_factory=dict)
    rates: list[float] | None = (
        None  # the loaded checkpoint's learning rates, if it has them  # epoch -> position in ``listed``
    )

    def changed(self, exc: CheckpointChangedError) -> None:
        """A checkpoint changed since the listing: raise, or warn (once, on rank 0) and go on."""
        if self.on_change == "error":
            raise exc
        if self.world.is_main:
            warnings.warn(
                f"{exc.reason}; skipped, its epoch is not recorded (on_change='skip').",
                CheckpointChangedWarning,
                stacklevel=4,
            )

    def load(self, epoch: int) -> None:
        """Load the checkpoint of ``epoch`` into the model (its listing checked first)."""
        from sampletopo.checkpoints import (
            checkpoint_rates,
            extract_state_dict,
            load_state_dict_into,
        )

        entry = self.listed[self.by_epoch[epoch]]
        obj = read_listed_checkpoint(entry)
        self.rates = checkpoint_rates(obj)
        sd = extract_state_dict(obj, source=repr(str(entry.path)))
        load_state_dict_into(self.net, sd, source=str(entry.path))

    def evaluate(self) -> dict[str, Any]:
        """The loaded model's losses, predictions and margins (``None`` for regression) of
        every split, on all samples."""
        return {
            s: _evaluate(
                self.net,
                self.dataset.tensors(s)[0],
                # Class labels, or the float64 regression targets (tensors() gives float32).
                torch.from_numpy(self.dataset.labels(s)),
                batch_size=self.batch_size,
                device=self.device,
                num_classes=self.dataset.num_classes or None,
                loss=self.loss,
            )
            for s in self.splits
        }


def _record_checkpoints(
    checkpoints: str | Path,
    run_dir: PathLike,
    *,
    model: str | Callable[..., nn.Module] | nn.Module,
    data: str | Path | Dataset,
    data_root: str | Path,
    model_kwargs: Mapping[str, Any] | None,
    data_seed: int,
    val_fraction: float | str | None,
    max_samples: int | None,
    splits: Sequence[str],
    batch_size: int,
    device: str | torch.device | None,
    on_exists: OnExists,
    progress: bool,
    shard: Shard,
    on_change: OnChange,
    distributed: bool | None,
    loss: LossSpec,
) -> list[int]:
    """:func:`record_checkpoints` once ``run_dir`` is locked."""
    from sampletopo.checkpoints import list_checkpoints

    where = "record_checkpoints"
    splits = _check_arguments(
        model=model, data=data, model_kwargs=model_kwargs, data_seed=data_seed, splits=splits,
        batch_size=batch_size, on_exists=on_exists, shard=shard, on_change=on_change,
    )  # fmt: skip
    requested = resolve_device(device, where=where)
    fn = resolve_loss(loss, where=where)
    world = current_world(distributed=distributed, where=where)
    # Listed once, by rank 0: later changes to the folder are noticed, never half-followed.
    listed = on_main(world, lambda: snapshot_checkpoints(list_checkpoints(checkpoints)), share=True)
    assert listed is not None
    ds = (
        data
        if isinstance(data, Dataset)
        else load_dataset(
            data, root=data_root, seed=data_seed, val_fraction=val_fraction, max_samples=max_samples
        )
    )
    fn = check_loss(fn, ds, mode="eval", where=where)
    kwargs = dict(model_kwargs or {})
    net, dev = _model_on_device(model, kwargs, ds, requested, world)
    job = _Job(
        world, Run(run_dir), listed, net, dev, ds, splits, int(batch_size), on_exists, on_change,
        loss=fn,
    )  # fmt: skip
    job.by_epoch = _epochs(job)
    on_main(
        world,
        lambda: _write_config(
            job.run,
            _checkpoint_config(
                job, checkpoints, data=data, data_root=data_root, data_seed=data_seed,
                val_fraction=val_fraction, max_samples=max_samples, model=model,
                model_kwargs=kwargs,
            ),
        ),
    )  # fmt: skip
    if world.distributed:
        check_same_dataset(ds, splits, world, where=where)
    if not world.distributed or shard == "samples":
        return _by_samples(job, progress=progress)
    return _by_checkpoints(job, progress=progress)


def _model_on_device(
    model: str | Callable[..., nn.Module] | nn.Module,
    kwargs: dict[str, Any],
    ds: Dataset,
    requested: torch.device | None,
    world: World,
) -> tuple[nn.Module, torch.device]:
    """The model to load the checkpoints into, on the device the evaluation runs on."""
    if not isinstance(model, nn.Module):
        net = build_model(
            model,
            num_classes=ds.num_classes,
            input_shape=ds.sample_shape,
            model_kwargs=kwargs,
            where="record_checkpoints",
        )
    else:
        net = model
    if requested is not None:
        dev = requested
    elif isinstance(model, nn.Module) and next(model.parameters(), None) is not None:
        dev = model_device(model)
    else:
        dev = default_device(world)
    net.to(dev)
    return net, dev


def _epochs(job: _Job) -> dict[int, int]:
    """``epoch -> position in the listing`` of every checkpoint, read before anything is written
    so duplicates are refused first. Each rank reads every ``world.size``-th file."""
    from sampletopo.checkpoints import checkpoint_epoch

    world, listed = job.world, job.listed

    def read_epochs() -> list[tuple[int, int | str]]:
        mine: list[tuple[int, int | str]] = []
        for i in range(world.rank, len(listed), world.size):
            try:
                mine.append(
                    (i, checkpoint_epoch(listed[i].path, read_listed_checkpoint(listed[i])))
                )
            except CheckpointChangedError as exc:
                if job.on_change == "error":
                    raise
                mine.append((i, exc.reason))  # a file that changed (on_change='skip')
        return mine

    pairs = dict(p for part in gather_all(world, everywhere(world, read_epochs)) for p in part)
    by_epoch: dict[int, int] = {}
    for i, entry in enumerate(listed):
        ep = pairs[i]
        if isinstance(ep, str):
            job.changed(CheckpointChangedError(ep))
            continue
        if ep in by_epoch:
            raise ParameterError(
                f"Checkpoints {str(listed[by_epoch[ep]].path)!r} and {str(entry.path)!r} both "
                f"hold epoch {ep}. Keep one checkpoint per epoch in the folder.",
                parameter="checkpoints",
            )
        by_epoch[ep] = i
    return by_epoch


def _checkpoint_config(
    job: _Job,
    checkpoints: str | Path,
    *,
    data: str | Path | Dataset,
    data_root: str | Path,
    data_seed: int,
    val_fraction: float | str | None,
    max_samples: int | None,
    model: str | Callable[..., nn.Module] | nn.Module,
    model_kwargs: dict[str, Any],
) -> dict[str, Any]:
    """The run config of a folder recorded from checkpoints: data, model, checkpoint files."""
    ds = job.dataset
    cfg: dict[str, Any] = {
        "variant": job.run.name,
        "source": "checkpoints",
        "checkpoint_dir": str(Path(checkpoints).resolve()),
        "record_mode": "eval",
    }
    if isinstance(data, Dataset) or ds.settings:
        # The settings the dataset was really built with; in-memory data (from_arrays) is
        # saved beside the run so that readers can rebuild it.
        cfg.update(data_config(ds, job.run))
    else:
        cfg.update(
            data=ds.name,
            data_root=str(Path(data_root).resolve()),
            data_seed=int(data_seed),
            val_fraction=val_fraction
            if val_fraction is not None
            else default_val_fraction(ds.name),
            max_samples=int(max_samples or 0),
        )
    if not isinstance(model, nn.Module):
        cfg["model"] = model_spec(model, where="record_checkpoints", kind="parameter")
        cfg["model_kwargs"] = model_kwargs
    if job.loss.rebuildable:
        cfg["loss"] = job.loss.name
    cfg["checkpoint_files"] = {
        str(e): str(job.listed[i].path.resolve()) for e, i in sorted(job.by_epoch.items())
    }
    return cfg


def _write_config(run: Run, cfg: dict[str, Any]) -> None:
    """Write the run's config; a folder holding losses of other settings is refused, and the
    same run continued adds the checkpoints that appeared since."""
    run.path.mkdir(parents=True, exist_ok=True)
    if run.config_file.exists():
        old = run.read_config()
        # data_file is compared through the data's fingerprints (the manifest) instead.
        ident = [k for k in (*DATA_KEYS, "source", "checkpoint_dir", "model", "model_kwargs")
                 if k != "data_file" and old.get(k) != cfg.get(k)]  # fmt: skip
        # Configs written before losses were chosen recorded cross-entropy.
        if old.get("loss", "cross_entropy") != cfg.get("loss", "cross_entropy"):
            ident.append("loss")
        if ident and run.has_losses():
            shown = ", ".join(f"{k}: {old.get(k)!r} -> {cfg.get(k)!r}" for k in ident[:3])
            raise RunFolderError(
                f"Run folder {str(run.path)!r} already holds losses recorded with other settings "
                f"({shown}). Recording there would skip its epochs or mix two runs: pass a "
                "new output folder (--out), or delete that one."
            )
        if not ident:
            # The same run, continued: add checkpoints that appeared since.
            cfg = {
                **cfg,
                "checkpoint_files": {**old.get("checkpoint_files", {}), **cfg["checkpoint_files"]},
            }
        # else: nothing recorded yet (an earlier attempt failed): the new settings win.
    run.write_config(cfg)


def _progress_bar(job: _Job, total: int, progress: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc=f"record {job.run.path.name}",
        unit="ckpt",
        disable=not (progress and job.world.is_main),
    )


def _pending(job: _Job) -> list[int]:
    """The listed epochs still to record (decided by rank 0, which looks at the disk)."""

    def pending() -> list[int]:
        return [
            ep
            for ep in sorted(job.by_epoch)
            if not (
                job.on_exists == "skip"
                and all(job.run.loss_file(s, ep).exists() for s in job.splits)
            )
        ]

    todo = on_main(job.world, pending, share=True)
    assert todo is not None
    return todo


def _by_samples(job: _Job, *, progress: bool) -> list[int]:
    """One process, or every rank evaluating its slice of each checkpoint's samples: the
    recorder does the sharing and the writing, one checkpoint at a time."""
    world = job.world
    make = functools.partial(
        LossRecorder._for_driver, job.run, job.dataset, source="checkpoints", splits=job.splits,
        mode="eval", batch_size=job.batch_size, device=job.device, on_exists=job.on_exists,
        distributed=world.distributed, loss=job.loss,
    )  # fmt: skip
    rec = make()
    todo = _pending(job)
    bar = _progress_bar(job, len(todo), progress)
    try:
        done: list[int] = []
        for ep in todo:
            try:
                everywhere(world, functools.partial(job.load, ep))
            except CheckpointChangedError as exc:
                job.changed(exc)
                bar.update(1)
                continue
            rec._rates = job.rates  # the schedule: this checkpoint's rates, if it has them
            written = rec.on_train_epoch_end(ep, job.net)
            if any(v is not None for v in written.values()):
                done.append(ep)
            bar.update(1)
        return sorted(done)
    finally:
        bar.close()
        rec.close()


def _by_checkpoints(job: _Job, *, progress: bool) -> list[int]:
    """Each rank evaluates whole checkpoints, in rounds of ``world.size``; rank 0 writes each
    round's tables."""
    world = job.world
    writer = on_main(
        world,
        lambda: RunWriter(
            job.run, job.dataset, splits=job.splits, mode="eval", on_exists=job.on_exists,
            source="checkpoints", loss=job.loss,
        ),
    )  # fmt: skip
    todo = _pending(job)
    on_main(world, lambda: writer.check_model(job.net))  # type: ignore[union-attr]
    bar = _progress_bar(job, len(todo), progress)
    done: list[int] = []
    for start in range(0, len(todo), world.size):
        mine = todo[start + world.rank] if start + world.rank < len(todo) else None
        results = gather_to_main(world, (mine, _evaluate_one(job, mine)))
        now = on_main(world, functools.partial(_write_round, job, writer, results), share=True)
        assert now is not None
        done.extend(now)
        bar.update(len(todo[start : start + world.size]))
    bar.close()
    return sorted(done)


def _evaluate_one(job: _Job, epoch: int | None) -> Any:
    """This rank's part of a round: ``("ok", tables)``, ``("changed", (reason, message))`` or
    ``("error", status)`` for its checkpoint; ``None`` when it has none this round."""
    if epoch is None:
        return None
    try:
        job.load(epoch)
        return ("ok", (job.evaluate(), job.rates))
    except CheckpointChangedError as exc:
        return ("changed", (exc.reason, str(exc)))
    except BaseException as exc:  # noqa: BLE001 -- rank 0 raises it on every rank
        return ("error", error_status(exc))


def _write_round(job: _Job, writer: RunWriter | None, results: list[Any] | None) -> list[int]:
    """On rank 0: write the tables of one round, in rank order; returns the epochs written."""
    assert writer is not None and results is not None
    now = []
    for rank, (ep, res) in enumerate(results):
        if ep is None:
            continue
        how, val = res
        if how == "error":
            raise_status(val, rank=rank)
        if how == "changed":
            job.changed(CheckpointChangedError(val[0], val[1][len(val[0]) :]))
            continue
        tables, rates = val
        if rates is not None and ep > 0:
            writer.write_schedule(ep, rates)
        wrote = False
        for s in writer.pending_splits(ep):
            writer.write(s, ep, *tables[s])
            wrote = True
        if wrote:
            now.append(ep)
    return now
