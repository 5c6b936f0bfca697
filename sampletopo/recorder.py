"""Record every sample's loss at every epoch from a training loop: the callback and evaluation.

Holds :class:`LossRecorder` (a Lightning-style callback for any PyTorch loop: hooks, the
distributed gathering, and a ``state_dict``) and :func:`evaluate_losses` (per-sample losses and
predictions of a model in eval mode). The files are written by the writer it shares with
:func:`~sampletopo.from_checkpoints.record_checkpoints` (:mod:`sampletopo._writer`); where they
lie is known by :mod:`sampletopo.runs`, and they are read back by :mod:`sampletopo.readers`. It
does not train (see :mod:`sampletopo.train`) and knows nothing about graphs or topology.

Storage, per run folder::

    <run>/losses/manifest.json                 dataset name, mode, per split: size and fingerprint
    <run>/losses/<split>/epoch=NNNN.parquet    one file per split and epoch

Each Parquet file has the columns ``epoch`` (int32), ``split`` (str), ``sample`` (int64),
``label`` (int64), ``pred`` (int64), ``loss`` (float64), ``correct`` (bool), one row per sample
in the split's stable order; ``sample`` is the vertex index of the split's kNN graph. A file is
written to a temporary name and renamed into place, so a killed run leaves only whole files, and
the existence of ``epoch=NNNN.parquet`` is the sign that epoch ``NNNN`` is recorded. Recording an
epoch that is already on disk is skipped (or refused with ``on_exists="error"``), never
duplicated.

Damaged files. A table can still be damaged afterwards (a copy cut short, a full disk elsewhere,
another program, bytes changed on disk). Whether it reads back whole is checked from its Parquet
footer (the columns and types of :data:`~sampletopo.runs.LOSS_SCHEMA`, the split's size from
the manifest) and
the CRC-32 checksum stored in it (about 0.2 ms a table, see :mod:`sampletopo._runfiles`;
tables written before checksums are checked by their footer only). The recorder moves such a
table aside to ``epoch=NNNN.parquet.damaged`` with a warning, and records that epoch again when
it is reached (``sampletopo train`` resumes from before it; ``sampletopo record`` re-evaluates
its checkpoint). The readers (:mod:`sampletopo.readers`, and so topology, samples, figures and
the report) cannot recompute it: they raise one
:class:`~sampletopo._runfiles.DamagedFileError` naming the file and the fix. A damaged
``manifest.json`` is refused by both, since it is what ties the tables to their data.

Epoch convention: epoch ``e`` is the model after ``e`` full epochs of training; epoch 0 is the
initial model. Losses are cross-entropy computed in float64 from the logits.

Two modes:

``"eval"`` (exact)
    At each epoch end the model is evaluated in eval mode (``model.eval()``, no gradients) on the
    un-augmented train and validation sets.
``"train_pass"`` (approximate, nearly free)
    The train split's losses are those of the training forward pass, handed in batch by batch
    through :meth:`LossRecorder.on_train_batch_end`. The weights move during the epoch and
    batch-norm layers use batch statistics, so these are *not* the losses of the end-of-epoch
    model. Other splits, and epoch 0, still get an eval pass.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from sampletopo._device import model_device, resolve_device
from sampletopo._errors import (
    MissingEpochsWarning,
    ParameterError,
    RecorderWarning,
    RunFolderError,
    SampletopoError,
)
from sampletopo._losses import Loss, check_logits, resolve_loss
from sampletopo._validation import MAX_EPOCH, check_choice, check_instance, check_int, invalid
from sampletopo._writer import NonFiniteLossWarning, RunWriter, Source
from sampletopo.checkpoints import save_checkpoint
from sampletopo.data import Dataset
from sampletopo.distributed import (
    World,
    check_same_dataset,
    check_world_size,
    current_world,
    everywhere,
    gather_shards,
    merge_by_index,
    on_main,
    shard_bounds,
    sync_model,
)
from sampletopo.runs import SPLITS, PathLike, as_run

__all__ = [
    "LossRecorder",
    "NonFiniteLossWarning",
    "check_dataset",
    "check_recorder_options",
    "evaluate_losses",
]

RecordMode = Literal["eval", "train_pass"]
LossSpec = str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``"cross_entropy"``, ``"mse"``, or a function ``fn(outputs, targets)`` returning one loss per
sample (see :mod:`sampletopo._losses`)."""
OnExists = Literal["skip", "error"]


@torch.no_grad()
def evaluate_losses(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int = 512,
    device: str | torch.device | None = None,
    num_classes: int | None = None,
    loss: LossSpec | Loss = "cross_entropy",
) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-sample losses and predictions of ``model`` in eval mode.

    The model's train/eval flag is restored afterwards.

    ``y`` holds integer labels from 0, or float regression targets (``(n,)`` or ``(n, d)``).
    ``loss`` is ``"cross_entropy"`` (the default), ``"mse"`` or a function of your own (see
    :mod:`sampletopo._losses` for what each computes). For labels the model must return float
    logits of shape ``(batch, C)`` with ``C >= num_classes`` (default: the largest label + 1),
    else one :class:`SampletopoError` names the shapes; the recorder passes the dataset's class
    count.

    Returns
    -------
    losses : numpy.ndarray
        float64, shape ``(n,)``.
    preds : numpy.ndarray or None
        int64, shape ``(n,)``: the arg-max class; ``None`` for regression targets.
    """
    losses, preds, _ = _evaluate(
        model, x, y, batch_size=batch_size, device=device, num_classes=num_classes, loss=loss
    )
    return losses, preds


def _margins(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """True-class logit minus the largest other logit, per sample (area under the margin,
    :mod:`sampletopo.audit`); float64 as the losses."""
    lg = logits.detach().double()
    true = lg.gather(1, targets[:, None]).squeeze(1)
    other = lg.scatter(1, targets[:, None], float("-inf")).max(dim=1).values
    return true - other


@torch.no_grad()
def _evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int = 512,
    device: str | torch.device | None = None,
    num_classes: int | None = None,
    loss: LossSpec | Loss = "cross_entropy",
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """:func:`evaluate_losses` and, for class labels, each sample's margin (:func:`_margins`),
    float64; ``None`` for regression targets."""
    where = "evaluate_losses"
    check_module(model, where=where)
    check_int("batch_size", batch_size, 1, None, where=where)
    resolved = resolve_device(device, where=where)
    fn = resolve_loss(loss, where=where)
    for name, t in (("x", x), ("y", y)):
        check_instance(
            name, t, torch.Tensor, what="a torch tensor (e.g. from Dataset.tensors(split))",
            where=where,
        )  # fmt: skip
    regression = y.is_floating_point()
    fn.check_targets(regression=regression, where=where)
    if (
        x.ndim < 1
        or x.shape[0] != y.shape[0]
        or (y.ndim != 1 and not regression)
        or y.ndim not in (1, 2)
    ):
        raise invalid(
            "y",
            "integer labels of shape (n,), or float targets of shape (n,) or (n, d), with one "
            "per row of x",
            where=where,
            got=f"x {tuple(x.shape)} and y {tuple(y.shape)} ({y.dtype})",
        )
    classes = 0
    if not regression:
        if y.numel() and int(y.min()) < 0:
            raise invalid("y", "labels >= 0", int(y.min()), where=where)
        classes = int(y.max()) + 1 if y.numel() else 1  # one check here, not a sync per batch
        if num_classes is not None:
            classes = max(classes, check_int("num_classes", num_classes, 1, None, where=where))
    dev = resolved if resolved is not None else model_device(model)
    was_training = model.training
    model.eval()
    try:
        losses, preds, margins = [], [], []
        for start in range(0, x.shape[0], batch_size):
            xb = x[start : start + batch_size].to(dev, non_blocking=True)
            yb = y[start : start + batch_size].to(dev, non_blocking=True)
            out = model(xb)
            part, pred = fn.per_sample(out, yb, classes=classes, where=where)
            losses.append(part)
            if pred is not None:
                preds.append(pred)
                margins.append(_margins(out, yb))
        out_l = torch.cat(losses).cpu().numpy() if losses else np.zeros(0)
        out_p = torch.cat(preds).cpu().numpy() if preds else np.zeros(0, dtype=np.int64)
        out_m = torch.cat(margins).cpu().numpy() if margins else np.zeros(0)
    finally:
        model.train(was_training)
    if regression:
        return out_l.astype(np.float64), None, None
    return out_l.astype(np.float64), out_p.astype(np.int64), out_m.astype(np.float64)


# ---------------------------------------------------------------------------------------------
# Recorder


def check_loss(loss: Any, dataset: Dataset, *, mode: str, where: str) -> Loss:
    """``loss`` resolved and checked against the dataset's targets and the recording mode; a
    function that cannot be stored by import path is named in one warning."""
    fn = loss if isinstance(loss, Loss) else resolve_loss(loss, where=where)
    fn.check_targets(regression=dataset.is_regression, where=where)
    if dataset.is_regression and mode == "train_pass":
        raise invalid(
            "mode",
            "'eval' for regression targets (float y): 'train_pass' records class labels only",
            mode,
            where=where,
        )
    if not fn.rebuildable and not isinstance(loss, Loss):  # once, where the function is given
        warnings.warn(
            RecorderWarning(
                f"The loss function {fn.name.split(':')[-1]} cannot be imported again (it is "
                "defined in __main__, inside a function, or is a lambda), so the run's "
                "config.toml does not name it and `sampletopo record` cannot re-record with it: "
                "define it at the top level of an importable module to have its path stored."
            ),
            stacklevel=3,
        )
    return fn


def check_schedule_source(
    optimizer: Any, scheduler: Any, *, where: str
) -> tuple[torch.optim.Optimizer, ...]:
    """The optimizers whose learning rates a recorder stores: ``optimizer`` (one or a sequence)
    and the one ``scheduler`` steps (the same one, if both are given)."""
    fix = "Pass the optimizer your loop steps (or its learning-rate scheduler)."
    if optimizer is None:
        opts: tuple[Any, ...] = ()
    elif isinstance(optimizer, torch.optim.Optimizer):
        opts = (optimizer,)
    elif isinstance(optimizer, (list, tuple)) and optimizer:
        opts = tuple(optimizer)
    else:
        opts = (optimizer,)
    for o in opts:
        check_instance(
            "optimizer", o, torch.optim.Optimizer, what="a torch optimizer", where=where, fix=fix
        )
    if scheduler is not None:
        sched_opt = getattr(scheduler, "optimizer", None)
        if not isinstance(sched_opt, torch.optim.Optimizer):
            raise invalid(
                "scheduler",
                "a learning-rate scheduler of torch.optim.lr_scheduler (it has .optimizer)",
                where=where,
                got=type(scheduler).__name__,
                fix=fix,
            )
        if not opts:
            opts = (sched_opt,)
        elif not any(o is sched_opt for o in opts):
            raise invalid(
                "scheduler",
                "a scheduler of the optimizer passed as 'optimizer'",
                where=where,
                got="a scheduler of another optimizer",
                fix="Pass the scheduler of that optimizer, or only one of the two.",
            )
    return opts


def check_dataset(dataset: Any, *, where: str, param: str = "dataset") -> Dataset:
    """Refuse anything but a :class:`~sampletopo.data.Dataset`, naming what was given."""
    return check_instance(  # type: ignore[no-any-return]
        param,
        dataset,
        Dataset,
        what="a sampletopo Dataset",
        where=where,
        fix="Build one with load_dataset(name) or Dataset.from_arrays(name, train=(x, y), "
        "val=(x, y)).",
    )


def check_module(model: Any, *, where: str, param: str = "model") -> nn.Module:
    """Refuse anything but a ``torch.nn.Module`` (a function or a state_dict, say)."""
    return check_instance(  # type: ignore[no-any-return]
        param,
        model,
        nn.Module,
        what="a torch.nn.Module",
        where=where,
        fix="Pass the model itself (e.g. from create_model(...)); to record a saved "
        "state_dict, load it into its model first, or use record_checkpoints.",
    )


def check_recorder_options(
    *, splits: Any, mode: Any, batch_size: Any, on_exists: Any, where: str
) -> tuple[str, ...]:
    """The checks of :class:`LossRecorder`'s options, shared with
    :func:`~sampletopo.from_checkpoints.record_checkpoints` (which runs them before it writes
    anything). Returns ``splits`` as a tuple."""
    check_choice("mode", mode, ("eval", "train_pass"), where=where)
    check_choice("on_exists", on_exists, ("skip", "error"), where=where)
    try:
        seq = (splits,) if isinstance(splits, str) else tuple(splits)
    except TypeError:  # not iterable
        seq = ()
    bad = [s for s in seq if s not in SPLITS]
    if bad or not seq or len(set(seq)) != len(seq):
        raise invalid("splits", f"distinct names from {SPLITS}", splits, where=where)
    check_int("batch_size", batch_size, 1, None, where=where)
    return seq


class LossRecorder:
    """Lightning-style callback that stores each sample's loss per split and epoch.

    Parameters
    ----------
    run_dir : str or Path
        The run (variant) folder; tables go to ``run_dir/losses/<split>/``.
    dataset : Dataset
        Where the samples come from; its :meth:`Dataset.tensors` order is the sample order.
    splits : sequence of str
        Splits to record, from ``("train", "val")``.
    mode : {"eval", "train_pass"}
        ``"eval"``: an eval-mode pass per split at each epoch end (exact). ``"train_pass"``:
        the train split's losses come from the training forward pass (approximate, see the
        module docstring); call :meth:`on_train_batch_end` for every training batch.
    batch_size : int
        Batch size of the eval passes.
    device : str or torch.device, optional
        Device of the eval passes (``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``;
        checked against this machine); default: the model's device.
    on_exists : {"skip", "error"}
        What to do when asked to record an epoch already on disk: skip it (the default; this is
        what makes a restarted run continue without duplicates) or raise.
    distributed : bool, optional
        ``None`` (default): when a ``torch.distributed`` process group with several processes is
        initialised (e.g. under ``torchrun``), share the work among its ranks; else record alone.
        ``True`` requires such a group, ``False`` records alone in every process.
    optimizer : torch.optim.Optimizer or sequence of them, optional
        Whose learning rates to store (``losses/schedule.parquet``, see
        :meth:`~sampletopo.runs.Run.read_schedule`): one rate per parameter group (groups
        numbered from 0 across the optimizers, in order) for every epoch recorded from 1 on.
    scheduler : torch.optim.lr_scheduler.LRScheduler, optional
        Instead of (or beside) ``optimizer``: the rates of the optimizer it steps are stored.
        Without either, no schedule is stored (figures then mark no learning-rate drops).
    loss : {"cross_entropy", "mse"} or callable
        The per-sample loss (see :mod:`sampletopo._losses`): cross-entropy of the logits (the
        default, class labels only), the squared error averaged over output dimensions (float
        regression targets, or one-hot class labels), or ``fn(outputs, targets)`` returning one
        loss per sample (``reduction="none"``). Kept in the run's manifest (a folder holds one
        loss) and, when it can be rebuilt (a name, or a function importable as
        ``"pkg.module:function"``), in its ``config.toml``. Regression targets leave the
        label, prediction and ``correct`` columns null; ``mode="train_pass"`` needs labels.
    checkpoint_every : int, optional
        Save the model's weights at epoch 0 and every ``checkpoint_every``-th epoch in the run
        folder (``checkpoints/epoch=NNNN.pt``, as ``sampletopo train`` does), so that
        ``sampletopo landscape`` and ``hessian`` work on a loop of your own. Off by default
        (a checkpoint is the size of the model).
    model_spec, model_kwargs : optional
        The model's factory (``"pkg.module:factory"`` or the factory) and its options, stored
        in the run's ``config.toml`` at the first recorded epoch so that landscape and hessian
        can rebuild the model (checked against the model recorded). Without it the recorder
        stores the model's class when it is importable and rebuilds the model with no options;
        otherwise it warns once, in one line, what to pass.

    Notes
    -----
    Which rate an epoch trained with: the rates are read from the optimizer's
    ``param_groups`` at :meth:`on_train_epoch_start` of the epoch when the loop calls it, else
    at :meth:`on_train_epoch_end`, which must then come before ``scheduler.step()`` (the order
    of PyTorch's examples: train, record, step). A scheduler stepped per batch (``OneCycleLR``)
    changes the rate within an epoch; the one stored is the rate read then.
    Restarting is safe: the recorder reads which epochs are on disk when created, and refuses a
    run folder whose recorded data (fingerprint) or mode differ from this one's. A table there
    that does not read back whole is moved aside (``epoch=NNNN.parquet.damaged``, with a
    :class:`~sampletopo._runfiles.DamagedFileWarning`) and its epoch counts as not recorded.

    One writer per run folder: the recorder locks ``run_dir`` (see :mod:`sampletopo._folders`)
    from its creation until :meth:`close` (also :meth:`on_train_end`, the end of a ``with``
    block, its garbage collection, or the end of the process, a killed one included). Another
    process recording, training or recording checkpoints into the same folder meanwhile gets a
    :class:`~sampletopo._folders.FolderLockedError` naming this one; analysis (topology,
    samples, landscapes) of the folder is not blocked. Only after the lock is held are
    temporary files of a killed earlier writer removed. In one process, several recorders on a
    folder share its lock.

    Under several processes every rank creates the recorder and calls the same hooks; the ranks
    must hold the same dataset (checked by fingerprint). In ``"eval"`` each rank evaluates a
    disjoint, batch-aligned slice of each split (:func:`sampletopo.distributed.shard_bounds`);
    in ``"train_pass"`` each rank hands in the batches it trained on (a ``DistributedSampler``'s
    padding duplicates are dropped by sample index, keeping the lowest rank's values). Rank 0
    gathers the results by sample index and writes each table once, atomically; an error on one
    rank is raised on all of them. A ``DistributedDataParallel`` model is evaluated through its
    ``.module``, with rank 0's buffers (batch-norm statistics) copied to every rank first, as
    DDP does at its next forward pass; ranks holding different weights are refused.

    Examples
    --------
    >>> rec = LossRecorder(run_dir, ds)                      # doctest: +SKIP
    >>> rec.on_train_epoch_end(0, model)                     # the initial model  # doctest: +SKIP
    >>> for epoch in range(1, epochs + 1):                   # doctest: +SKIP
    ...     train_one_epoch(model)
    ...     rec.on_train_epoch_end(epoch, model)
    """

    _driver: Source  # set by _for_driver only, for its __init__ call

    def __init__(
        self,
        run_dir: PathLike,
        dataset: Dataset,
        *,
        splits: Sequence[str] = SPLITS,
        mode: RecordMode = "eval",
        batch_size: int = 512,
        device: str | torch.device | None = None,
        on_exists: OnExists = "skip",
        distributed: bool | None = None,
        optimizer: torch.optim.Optimizer | Sequence[torch.optim.Optimizer] | None = None,
        scheduler: Any = None,
        loss: LossSpec | Loss = "cross_entropy",
        model_spec: str | Callable[..., nn.Module] | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
        checkpoint_every: int | None = None,
    ) -> None:
        # Who records: a user's loop, unless _for_driver said otherwise (see there).
        source: Source = self.__dict__.pop("_driver", "recorder")
        self._closed = True  # until the writer is made: close() and __del__ find nothing
        self._writer: RunWriter | None = None
        check_dataset(dataset, where="LossRecorder")
        splits = check_recorder_options(
            splits=splits,
            mode=mode,
            batch_size=batch_size,
            on_exists=on_exists,
            where="LossRecorder",
        )
        self.device = resolve_device(device, where="LossRecorder")
        self.optimizers = check_schedule_source(optimizer, scheduler, where="LossRecorder")
        self.loss: Loss = check_loss(loss, dataset, mode=mode, where="LossRecorder")
        self._rates: list[float] | None = None  # read at on_train_epoch_start
        self.checkpoint_every = (
            None
            if checkpoint_every is None
            else check_int(
                "checkpoint_every",
                checkpoint_every,
                1,
                MAX_EPOCH,
                where="LossRecorder",
                fix="Pass N to save the model at every N-th epoch (and epoch 0), or None.",
            )
        )
        self.run_dir = Path(run_dir)
        self.dataset = dataset
        self.splits = splits
        self.mode: RecordMode = mode
        self.batch_size = int(batch_size)
        self.on_exists: OnExists = on_exists
        self._nonfinite: dict[tuple[str, int], int] = {}
        self._train_labels = dataset.labels("train")
        self._data: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}
        self._buf: dict[str, torch.Tensor] | None = None
        self._world: World = current_world(distributed=distributed, where="LossRecorder")
        if self._world.distributed:
            check_same_dataset(dataset, splits, self._world, where="LossRecorder")
            for s in splits:
                check_world_size(dataset.n(s), self._world.size, what=f"split {s!r}")
        # Rank 0 alone writes, so it alone has the writer (it locks the folder for a user's
        # loop, checks the manifest and moves damaged tables aside as it is made).
        self._writer = on_main(
            self._world,
            lambda: RunWriter(
                self.run_dir,
                dataset,
                splits=splits,
                mode=mode,
                on_exists=on_exists,
                source=source,
                loss=self.loss,
                model_spec=None if model_spec is None else (model_spec, model_kwargs),
            ),
        )
        self._closed = False

    @classmethod
    def _for_driver(
        cls, run_dir: PathLike, dataset: Dataset, *, source: Source, **options: Any
    ) -> LossRecorder:
        """The recorder of one of sampletopo's own drivers: ``train_run`` (``source="train"``)
        or ``record_checkpoints`` (``"checkpoints"``). They lock the run folder and write its
        config themselves, so this recorder does neither; ``options`` are those of the
        constructor. Internal: a training loop of your own uses the constructor."""
        rec = cls.__new__(cls)
        rec._driver = source  # read (and dropped) by __init__
        rec.__init__(run_dir, dataset, **options)  # type: ignore[misc]
        return rec

    # -- the run folder's lock -----------------------------------------------------------------

    def close(self) -> None:
        """Release the run folder's lock; the recorder records nothing more afterwards."""
        self._closed = True
        writer = getattr(self, "_writer", None)
        if writer is not None:
            writer.close()

    def on_train_end(self) -> None:
        """The training loop ended: :meth:`close` the recorder."""
        self.close()

    def __enter__(self) -> LossRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 -- interpreter shutdown: the kernel drops the lock
            pass

    def _check_open(self) -> None:
        if self._closed:
            raise RunFolderError(
                f"This LossRecorder of {str(self.run_dir)!r} is closed (close(), on_train_end() "
                "or the end of its with block) and records nothing more. Make a new LossRecorder "
                "on the folder to go on recording."
            )

    # -- run folder bookkeeping ----------------------------------------------------------------

    @property
    def run_name(self) -> str:
        """The run's name: its folder name."""
        return as_run(self.run_dir).name

    @property
    def nonfinite(self) -> dict[tuple[str, int], int]:
        """``(split, epoch) -> count`` of the non-finite losses recorded (on every rank)."""
        return self._writer.nonfinite if self._writer is not None else self._nonfinite

    @nonfinite.setter
    def nonfinite(self, value: dict[tuple[str, int], int]) -> None:
        if self._writer is not None:
            self._writer.nonfinite = value
        else:
            self._nonfinite = value

    def _on_writer(self, fn: Any, *, share: bool = False) -> Any:
        """``fn(writer)`` on rank 0 (the rank that writes); with ``share``, its result on all."""
        return on_main(self._world, lambda: fn(self._writer), share=share)

    def recorded_epochs(self, split: str) -> list[int]:
        """Epochs of ``split`` already on disk, sorted."""
        return as_run(self.run_dir).loss_epochs(split)

    def last_complete_epoch(self) -> int | None:
        """The largest epoch recorded for every split, with every earlier epoch present too in
        each split up to it counted from 0; ``None`` if epoch 0 is missing somewhere."""
        done = [set(self.recorded_epochs(s)) for s in self.splits]
        e = -1
        while all(e + 1 in d for d in done):
            e += 1
        return e if e >= 0 else None

    # -- data on the eval device ---------------------------------------------------------------

    def _split_tensors(self, split: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (split, str(device))
        if key not in self._data:
            # One device copy per split; drop copies on other devices.
            self._data = {k: v for k, v in self._data.items() if k[1] == str(device)}
            x, y = self.dataset.tensors(split)
            if self.dataset.is_regression:  # the float64 targets, not tensors()' float32 copy
                y = torch.from_numpy(self.dataset.labels(split))
            self._data[key] = (x.to(device), y.to(device))
        return self._data[key]

    # -- hooks ---------------------------------------------------------------------------------

    def learning_rates(self) -> list[float] | None:
        """The optimizer's learning rates now, one per parameter group (``None`` without one)."""
        if not self.optimizers:
            return None
        return [float(g["lr"]) for opt in self.optimizers for g in opt.param_groups]

    def on_train_epoch_start(self, epoch: int) -> None:
        """An epoch starts: read the learning rates it trains with, and forget training-pass
        losses gathered so far (``train_pass`` mode). Optional: without it, the rates are read
        at :meth:`on_train_epoch_end`."""
        self._buf = None
        self._rates = self.learning_rates()

    def _write_schedule(self, epoch: int) -> None:
        """Store the rates ``epoch`` trained with (read at its start, else now)."""
        rates, self._rates = self._rates, None
        rates = rates if rates is not None else self.learning_rates()
        if epoch == 0 or rates is None:
            return
        self._on_writer(lambda w: w.write_schedule(epoch, rates))

    def on_train_batch_end(
        self,
        indices: torch.Tensor | np.ndarray | Sequence[int],
        logits: torch.Tensor,
        targets: torch.Tensor,
        *,
        losses: torch.Tensor | None = None,
    ) -> None:
        """Keep the training forward pass's per-sample losses (``train_pass`` mode only).

        Parameters
        ----------
        indices : tensor or array of int
            Sample indices (positions in the train split's order) of the batch.
        logits : torch.Tensor
            The batch's outputs, shape ``(B, num_classes)``; detached here.
        targets : torch.Tensor
            The batch's labels, shape ``(B,)``; checked against the dataset at epoch end.
        losses : torch.Tensor, optional
            Per-sample losses already computed by the loop; default: cross-entropy of
            ``logits`` in float64.
        """
        if self.mode != "train_pass":
            return
        where = "on_train_batch_end"
        with torch.no_grad():
            if not isinstance(targets, torch.Tensor) or targets.ndim != 1:
                raise invalid(
                    "targets",
                    "the batch's labels as a 1-D tensor",
                    where=where,
                    got=str(getattr(targets, "shape", type(targets).__name__)),
                )
            b = int(targets.shape[0])
            check_logits(logits, b, self.dataset.num_classes, what=where)
            dev = logits.device
            try:
                idx = torch.as_tensor(indices, device=dev, dtype=torch.long).reshape(-1)
            except (TypeError, ValueError, RuntimeError) as exc:
                raise invalid(
                    "indices",
                    "the batch's sample indices (ints)",
                    where=where,
                    got=f"{type(indices).__name__} ({exc})",
                ) from None
            n = self.dataset.n("train")
            if idx.numel() != b or (losses is not None and losses.numel() != b):
                raise invalid(
                    "indices",
                    "one index (and loss) per sample of the batch",
                    where=where,
                    got=f"a batch of {b} targets that came with {idx.numel()} indices"
                    + ("" if losses is None else f" and {losses.numel()} losses"),
                )
            if b:
                # One host sync per batch; an index out of range would otherwise be a GPU
                # device-side assert, which leaves the CUDA context unusable.
                lo, hi, tlo, thi = torch.stack(
                    [
                        idx.min(),
                        idx.max(),
                        targets.to(dev).min().long(),
                        targets.to(dev).max().long(),
                    ]
                ).tolist()
                if lo < 0 or hi >= n:
                    raise invalid(
                        "indices",
                        f"sample indices that lie in [0, {n}) (the train split's positions)",
                        lo if lo < 0 else hi,
                        where=where,
                    )
                if tlo < 0 or thi >= self.dataset.num_classes:
                    raise invalid(
                        "targets",
                        f"labels in [0, {self.dataset.num_classes})",
                        tlo if tlo < 0 else thi,
                        where=where,
                    )
            if self._buf is None or self._buf["loss"].device != dev:
                n = self.dataset.n("train")
                self._buf = {
                    "loss": torch.full((n,), float("nan"), dtype=torch.float64, device=dev),
                    "pred": torch.full((n,), -1, dtype=torch.long, device=dev),
                    "target": torch.full((n,), -1, dtype=torch.long, device=dev),
                    "seen": torch.zeros(n, dtype=torch.bool, device=dev),
                }
            loss, pred = self.loss.per_sample(
                logits, targets, classes=self.dataset.num_classes, where=where
            )
            assert pred is not None  # train_pass records class labels only
            if losses is not None:
                loss = losses.detach().to(torch.float64).reshape(-1)
            self._buf["loss"][idx] = loss
            self._buf["pred"][idx] = pred
            self._buf["target"][idx] = targets.detach().to(torch.long)
            self._buf["seen"][idx] = True

    def on_train_epoch_end(self, epoch: int, model: nn.Module) -> dict[str, Path | None]:
        """Record every split at ``epoch`` (0 = the initial model, before any training).

        Returns
        -------
        dict
            Split -> written file, or ``None`` for a split skipped because it was on disk.
        """
        epoch = check_int(
            "epoch",
            epoch,
            0,
            MAX_EPOCH,
            where="on_train_epoch_end",
            fix="Pass the number of epochs trained so far (0 = the initial model); loss tables "
            "store it as int32.",
        )
        check_module(model, where="on_train_epoch_end")
        self._check_open()
        self._on_writer(lambda w: w.check_model(model))
        # Before the tables: a run killed in between has the epoch's rates stored once, and
        # stores nothing twice when the epoch is recorded again.
        self._write_schedule(epoch)
        self._save_checkpoint(epoch, model)
        if self._world.distributed:
            return self._epoch_end_distributed(epoch, model)
        out: dict[str, Path | None] = {s: None for s in self.splits}
        todo = self._on_writer(lambda w: w.pending_splits(epoch))
        buf, self._buf = self._buf, None
        for s in todo:
            preds: np.ndarray | None
            margins = None  # only eval passes of class labels record margins
            if s == "train" and self.mode == "train_pass" and epoch > 0:
                losses, preds = self._from_train_pass(buf, epoch)
            else:
                dev = self.device if self.device is not None else model_device(model)
                x, y = self._split_tensors(s, dev)
                losses, preds, margins = _evaluate(
                    model,
                    x,
                    y,
                    batch_size=self.batch_size,
                    device=dev,
                    num_classes=self.dataset.num_classes or None,
                    loss=self.loss,
                )
            out[s] = self.write(s, epoch, losses, preds, margins)
        return out

    def _save_checkpoint(self, epoch: int, model: nn.Module) -> None:
        """With ``checkpoint_every=N``: the model's weights at epoch 0 and every N-th epoch, as
        ``checkpoints/epoch=NNNN.pt`` (what landscape and hessian read), written atomically by
        rank 0; an epoch already checkpointed is kept."""
        if self.checkpoint_every is None or epoch % self.checkpoint_every:
            return
        if self._world.rank != 0:
            return
        path = as_run(self.run_dir).checkpoint_file(epoch)
        if path.exists():
            return
        net = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
        state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
        save_checkpoint(path, {"model": state, "epoch": epoch})

    def _epoch_end_distributed(self, epoch: int, model: nn.Module) -> dict[str, Path | None]:
        world = self._world
        # Rank 0 alone looks at the disk (the ranks need not share a file system) and decides.
        todo = self._on_writer(lambda w: w.pending_splits(epoch), share=True)
        assert todo is not None
        buf, self._buf = self._buf, None
        net = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
        if any(s != "train" or self.mode == "eval" or epoch == 0 for s in todo):
            sync_model(world, net)
        gathered: dict[str, Any] = {}
        if "train" in todo and self.mode == "train_pass" and epoch > 0:
            gathered["train"] = ("train_pass", self._merge_train_pass(buf))
        evals = [s for s in todo if s not in gathered]

        def shards() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
            dev = self.device if self.device is not None else model_device(net)
            res = {}
            for s in evals:
                lo, hi = shard_bounds(
                    self.dataset.n(s), rank=world.rank, world_size=world.size, align=self.batch_size
                )
                x, y = self._split_tensors(s, dev)
                losses, preds, margins = _evaluate(
                    net,
                    x[lo:hi],
                    y[lo:hi],
                    batch_size=self.batch_size,
                    device=dev,
                    num_classes=self.dataset.num_classes or None,
                    loss=self.loss,
                )
                # Regression has no predictions nor margins: stand-ins the writer stores as
                # nulls (predictions) or drops (margins).
                res[s] = (
                    losses,
                    np.full(losses.shape, -1) if preds is None else preds,
                    np.full(losses.shape, np.nan) if margins is None else margins,
                )
            return res

        mine = everywhere(world, shards)  # one check for all splits: an error stops every rank
        for s in evals:
            n, losses, preds, margins = self.dataset.n(s), *mine[s]
            gathered[s] = (
                "eval",
                (
                    gather_shards(world, losses, n=n, align=self.batch_size),
                    gather_shards(world, preds, n=n, align=self.batch_size),
                    gather_shards(world, margins, n=n, align=self.batch_size),
                ),
            )

        def write_all() -> tuple[dict[str, Path | None], dict[tuple[str, int], int]]:
            out: dict[str, Path | None] = {s: None for s in self.splits}
            for s, (how, val) in gathered.items():
                margins = None
                if how == "train_pass":
                    losses, preds = self._from_train_pass(val, epoch)
                else:
                    losses, preds, margins = val
                    if self.dataset.is_regression:
                        margins = None
                out[s] = self.write(s, epoch, losses, preds, margins)
            return out, dict(self.nonfinite)

        out, self.nonfinite = on_main(world, write_all, share=True)  # type: ignore[misc]
        return out

    def _merge_train_pass(self, buf: dict[str, torch.Tensor] | None) -> dict[str, Any] | None:
        n = self.dataset.n("train")
        if buf is None:
            # This rank saw no batch (or none was handed in): it contributes nothing.
            buf = {
                "loss": torch.zeros(n, dtype=torch.float64),
                "pred": torch.full((n,), -1, dtype=torch.long),
                "target": torch.full((n,), -1, dtype=torch.long),
                "seen": torch.zeros(n, dtype=torch.bool),
            }
        merged = merge_by_index(
            self._world, buf["seen"], {k: buf[k] for k in ("loss", "pred", "target")}
        )
        if merged is None:
            return None
        seen, cols = merged
        return {"seen": seen, **cols}

    def _from_train_pass(
        self, buf: Mapping[str, torch.Tensor | np.ndarray] | None, epoch: int
    ) -> tuple[np.ndarray, np.ndarray]:
        if buf is None:
            raise SampletopoError(
                f"mode='train_pass' but no training batches were handed to on_train_batch_end "
                f"before epoch {epoch} ended. Call recorder.on_train_batch_end(indices, logits, "
                "targets) for every training batch, or use mode='eval'."
            )
        buf = {k: v if isinstance(v, np.ndarray) else v.cpu().numpy() for k, v in buf.items()}
        seen = buf["seen"]
        if not seen.all():
            raise SampletopoError(
                f"mode='train_pass': {int((~seen).sum())} of {seen.size} training samples were "
                f"not in any batch of epoch {epoch} (first: {int(np.flatnonzero(~seen)[0])}). "
                "Every sample must be seen once per epoch (no drop_last, no subsampling), or use "
                "mode='eval'."
            )
        targets = buf["target"]
        wrong = np.flatnonzero(targets != self._train_labels)
        if wrong.size:
            raise SampletopoError(
                f"mode='train_pass': the targets given for {wrong.size} sample indices do not "
                f"match the dataset's labels (first: sample {int(wrong[0])}). The 'indices' "
                "passed to on_train_batch_end must be positions in the train split's order."
            )
        return np.asarray(buf["loss"]), np.asarray(buf["pred"])

    def write(
        self,
        split: str,
        epoch: int,
        losses: np.ndarray,
        preds: np.ndarray | None,
        margins: np.ndarray | None = None,
    ) -> Path:
        """Write one split's table for ``epoch`` atomically; warn about non-finite losses.
        ``preds`` is ``None`` for regression targets (stored as nulls). ``margins``
        (optional): each sample's true-class logit minus its largest other logit, stored in the
        nullable ``margin`` column.

        Only the process that writes the folder (rank 0 under several processes) can."""
        self._check_open()
        if self._writer is None:
            raise ParameterError(
                f"LossRecorder.write: rank {self._world.rank} does not write the run folder's "
                "tables; rank 0 does. Call on_train_epoch_end on every rank instead."
            )
        return self._writer.write(split, epoch, losses, preds, margins)

    # -- resumable state -----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Plain-Python state (safe for ``torch.save`` + ``weights_only=True``)."""
        return {
            "version": 1,
            "mode": self.mode,
            "splits": list(self.splits),
            "recorded": {s: self.recorded_epochs(s) for s in self.splits},
            "nonfinite": [[s, e, c] for (s, e), c in sorted(self.nonfinite.items())],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the state of :meth:`state_dict`.

        What is on disk stays the truth about which epochs are recorded; this restores the
        non-finite counts and checks that mode and splits agree.
        """
        if state.get("mode") != self.mode:
            raise invalid(
                "state",
                f"the state of a recorder with mode {self.mode!r}",
                where="LossRecorder.load_state_dict",
                got=f"a state saved with mode {state.get('mode')!r}",
            )
        if list(state.get("splits", [])) != list(self.splits):
            raise invalid(
                "state",
                f"the state of a recorder of splits {list(self.splits)!r}",
                where="LossRecorder.load_state_dict",
                got=f"a state saved for splits {state.get('splits')!r}",
            )
        self.nonfinite = {(str(s), int(e)): int(c) for s, e, c in state.get("nonfinite", [])}
        missing = {
            s: sorted(set(state.get("recorded", {}).get(s, [])) - set(self.recorded_epochs(s)))
            for s in self.splits
        }
        missing = {s: m for s, m in missing.items() if m}
        if missing:
            warnings.warn(
                f"{self.run_name}: the saved recorder state lists epochs that are no longer on "
                f"disk: {missing}. They will be recorded again when reached.",
                MissingEpochsWarning,
                stacklevel=2,
            )


# ---------------------------------------------------------------------------------------------
# Readers
