"""Record every sample's loss at every epoch, and read the recorded tables back.

Holds :class:`LossRecorder` (a Lightning-style callback for any PyTorch loop),
:func:`record_checkpoints` (the same tables from a folder of saved checkpoints) and the readers
:func:`load_losses`, :func:`loss_matrix`, :func:`recorded_epochs`, :func:`read_run_config` and
:func:`load_run_model`. It does not train (see :mod:`sampletopo.train`) and knows nothing about
graphs or topology.

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
footer (the columns and types of :data:`LOSS_SCHEMA`, the split's size from the manifest) and
the CRC-32 checksum stored in it (about 0.2 ms a table, see :mod:`sampletopo._runfiles`;
tables written before checksums are checked by their footer only). The recorder moves such a
table aside to ``epoch=NNNN.parquet.damaged`` with a warning, and records that epoch again when
it is reached (``sampletopo train`` resumes from before it; ``sampletopo record`` re-evaluates
its checkpoint). The readers (:func:`load_losses`, :func:`loss_matrix`, :func:`read_loss_table`, and
so topology, samples, figures and the report) cannot recompute it: they raise one
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

import functools
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from torch import nn

from sampletopo._device import resolve_device
from sampletopo._errors import MAX_EPOCH, MAX_SEED, SampletopoError, check_int_range
from sampletopo._folders import FolderLock, lock_folder
from sampletopo._runconfig import (
    DATA_KEYS,
    dataset_from_config,
    model_from_config,
    model_signature,
    write_toml,
)
from sampletopo._runconfig import TRUSTED_DATA_ENV as TRUSTED_DATA_ENV
from sampletopo._runconfig import DataRootWarning as DataRootWarning
from sampletopo._runconfig import read_toml as read_toml
from sampletopo._runconfig import warn_foreign_data_root as warn_foreign_data_root
from sampletopo._runfiles import (
    DamagedFileError,
    move_aside,
    parquet_problem,
    read_parquet,
    scan_parquet,
    write_parquet,
)
from sampletopo.data import Dataset, default_val_fraction, list_datasets, load_dataset
from sampletopo.distributed import (
    CheckpointChangedError,
    World,
    check_same_dataset,
    check_world_size,
    current_world,
    default_device,
    error_status,
    everywhere,
    gather_shards,
    gather_to_main,
    merge_by_index,
    on_main,
    raise_status,
    read_listed_checkpoint,
    shard_bounds,
    snapshot_checkpoints,
    sync_model,
)
from sampletopo.runs import LOSS_FIX as _LOSS_FIX
from sampletopo.runs import LOSS_SCHEMA, SPLITS, PathLike, Run, data_config, find_runs

__all__ = [
    "LossRecorder",
    "NonFiniteLossWarning",
    "load_losses",
    "loss_matrix",
    "recorded_epochs",
    "read_run_config",
    "record_checkpoints",
    "load_run_model",
    "dataset_from_config",
    "model_from_config",
    "epoch_file",
    "evaluate_losses",
    "read_loss_table",
    "read_manifest",
    "LOSS_SCHEMA",
]

RecordMode = Literal["eval", "train_pass"]
OnExists = Literal["skip", "error"]
Shard = Literal["samples", "checkpoints"]
OnChange = Literal["error", "skip"]


class NonFiniteLossWarning(RuntimeWarning):
    """Some recorded losses are NaN or infinite; they are stored as such, never dropped."""


# ---------------------------------------------------------------------------------------------
# Files


def epoch_file(run_dir: PathLike, split: str, epoch: int) -> Path:
    """Path of the loss table of ``split`` at ``epoch``: ``run_dir/losses/split/epoch=NNNN.parquet``."""
    return Run(run_dir).loss_file(split, epoch)


def _epoch_files(run_dir: Path, split: str) -> dict[int, Path]:
    return Run(run_dir).loss_files(split)


def read_manifest(run_dir: PathLike) -> dict[str, Any] | None:
    """The run's ``losses/manifest.json`` (dataset, mode, per split its size ``n`` and
    fingerprint), ``None`` when there is none; a damaged one raises :class:`DamagedFileError`."""
    return Run(run_dir).read_manifest()


def _split_size(run_dir: Path, split: str) -> int | None:
    return Run(run_dir).split_size(split)


def read_loss_table(
    run_dir: PathLike, split: str, epoch: int, *, columns: Sequence[str] | None = None
) -> pl.DataFrame:
    """One recorded loss table, sorted by sample, checked to read back whole.

    The file must have the columns of :data:`LOSS_SCHEMA` with their types, as many rows as the
    manifest gives for the split, and samples ``0 .. n-1`` once each; anything else raises a
    :class:`~sampletopo._runfiles.DamagedFileError` naming the file and how to record it again.

    Parameters
    ----------
    columns : sequence of str, optional
        Columns to return (``sample`` is always read); default all.
    """
    rd = Path(run_dir)
    path = epoch_file(rd, split, epoch)
    cols = list(LOSS_SCHEMA) if columns is None else list(dict.fromkeys(["sample", *columns]))
    n = _split_size(rd, split)
    df = read_parquet(path, LOSS_SCHEMA, columns=cols, rows=n, fix=_LOSS_FIX).sort("sample")
    if not np.array_equal(df["sample"].to_numpy(), np.arange(df.height)):
        raise DamagedFileError(
            path, f"it does not hold samples 0..{df.height - 1} once each", _LOSS_FIX
        )
    return df


def _write_atomic_parquet(df: pl.DataFrame, path: Path) -> None:
    write_parquet(df, path)


def _table(
    epoch: int, split: str, labels: np.ndarray, preds: np.ndarray, losses: np.ndarray
) -> pl.DataFrame:
    n = labels.shape[0]
    return pl.DataFrame(
        {
            "epoch": np.full(n, epoch, dtype=np.int32),
            "split": [split] * n,
            "sample": np.arange(n, dtype=np.int64),
            "label": labels.astype(np.int64),
            "pred": preds.astype(np.int64),
            "loss": losses.astype(np.float64),
            "correct": preds == labels,
        },
        schema=LOSS_SCHEMA,
    )


def _check_outputs(logits: Any, n: int, classes: int, *, what: str) -> None:
    """Refuse model outputs that are not ``(n, C)`` float logits with ``C >= classes``.

    Without this, a model returning ``(B,)``, ``(B, C, H, W)`` or too few classes fails deep
    inside ``cross_entropy`` (or, on a GPU, with a device-side assert that breaks the process).
    """
    if not isinstance(logits, torch.Tensor):
        raise SampletopoError(
            f"{what}: the model returned {type(logits).__name__}, not a tensor of logits. Make "
            "its forward return only the (batch, classes) logits (e.g. wrap it and return "
            "out[0] or out.logits)."
        )
    c = int(logits.shape[1]) if logits.ndim == 2 else 0
    if logits.ndim != 2 or logits.shape[0] != n or c < classes or not logits.is_floating_point():
        raise SampletopoError(
            f"{what}: the model's output for a batch of {n} samples has shape "
            f"{tuple(logits.shape)} ({logits.dtype}); per-sample cross-entropy needs float logits "
            f"of shape ({n}, C) with C >= {classes}, one column per class (the labels run "
            f"0..{classes - 1}). Build the model with num_classes={classes}, and make it return "
            "one row of class scores per sample (no spatial maps, no squeezed single column)."
        )


def _per_sample(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # float64 keeps tiny losses of confident predictions distinct instead of rounding to 0.
    logits = logits.detach()
    loss = F.cross_entropy(logits.double(), targets, reduction="none")
    return loss, logits.argmax(dim=1)


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


@torch.no_grad()
def evaluate_losses(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int = 512,
    device: str | torch.device | None = None,
    num_classes: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample cross-entropy losses and predictions of ``model`` in eval mode.

    The model's train/eval flag is restored afterwards.

    ``y`` holds integer labels from 0; the model must return float logits of shape
    ``(batch, C)`` with ``C >= num_classes`` (default: the largest label + 1), else one
    :class:`SampletopoError` names the shapes. The recorder passes the dataset's class count.

    Returns
    -------
    losses : numpy.ndarray
        float64, shape ``(n,)``.
    preds : numpy.ndarray
        int64, shape ``(n,)``.
    """
    where = "evaluate_losses"
    check_int_range("batch_size", batch_size, 1, None, where=where)
    resolved = resolve_device(device, where=where)
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise SampletopoError(
            f"{where}: x and y must be torch tensors (e.g. from Dataset.tensors(split)). Got "
            f"{type(x).__name__} and {type(y).__name__}."
        )
    if y.ndim != 1 or x.ndim < 1 or x.shape[0] != y.shape[0] or y.is_floating_point():
        raise SampletopoError(
            f"{where}: y must be integer labels of shape (n,) with one per row of x. Got x "
            f"{tuple(x.shape)} and y {tuple(y.shape)} ({y.dtype})."
        )
    if y.numel() and int(y.min()) < 0:
        raise SampletopoError(f"{where}: labels must be >= 0. Got {int(y.min())}.")
    classes = int(y.max()) + 1 if y.numel() else 0  # one check here, not one sync per batch
    if num_classes is not None:
        classes = max(classes, check_int_range("num_classes", num_classes, 1, None, where=where))
    dev = resolved if resolved is not None else _model_device(model)
    was_training = model.training
    model.eval()
    try:
        losses, preds = [], []
        for start in range(0, x.shape[0], batch_size):
            xb = x[start : start + batch_size].to(dev, non_blocking=True)
            yb = y[start : start + batch_size].to(dev, non_blocking=True)
            out = model(xb)
            _check_outputs(out, int(xb.shape[0]), classes, what=where)
            loss, pred = _per_sample(out, yb)
            losses.append(loss)
            preds.append(pred)
        out_l = torch.cat(losses).cpu().numpy() if losses else np.zeros(0)
        out_p = torch.cat(preds).cpu().numpy() if preds else np.zeros(0, dtype=np.int64)
    finally:
        model.train(was_training)
    return out_l.astype(np.float64), out_p.astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Recorder


def check_dataset(dataset: Any, *, where: str, param: str = "dataset") -> Dataset:
    """Refuse anything but a :class:`~sampletopo.data.Dataset`, naming what was given."""
    if not isinstance(dataset, Dataset):
        raise SampletopoError(
            f"The {param!r} parameter of {where} must be a sampletopo Dataset. Got "
            f"{type(dataset).__name__} instead. Build one with load_dataset(name) or "
            "Dataset.from_arrays(name, train=(x, y), val=(x, y))."
        )
    return dataset


def _check_recorder_args(
    *, splits: Any, mode: Any, batch_size: Any, on_exists: Any, where: str
) -> tuple[str, ...]:
    """The checks of :class:`LossRecorder`'s options, shared with :func:`record_checkpoints`
    (which runs them before it writes anything). Returns ``splits`` as a tuple."""
    if mode not in ("eval", "train_pass"):
        raise SampletopoError(
            f"The 'mode' parameter of {where} must be 'eval' or 'train_pass'. Got {mode!r} instead."
        )
    if on_exists not in ("skip", "error"):
        raise SampletopoError(
            f"The 'on_exists' parameter of {where} must be 'skip' or 'error'. "
            f"Got {on_exists!r} instead."
        )
    try:
        seq = (splits,) if isinstance(splits, str) else tuple(splits)
    except TypeError:  # not iterable
        seq = ()
    bad = [s for s in seq if s not in SPLITS]
    if bad or not seq or len(set(seq)) != len(seq):
        raise SampletopoError(
            f"The 'splits' parameter of {where} must be distinct names from {SPLITS}. "
            f"Got {splits!r} instead."
        )
    check_int_range("batch_size", batch_size, 1, None, where=where)
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

    Notes
    -----
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
        _source: str = "recorder",
    ) -> None:
        check_dataset(dataset, where="LossRecorder")
        splits = _check_recorder_args(
            splits=splits,
            mode=mode,
            batch_size=batch_size,
            on_exists=on_exists,
            where="LossRecorder",
        )
        self.device = resolve_device(device, where="LossRecorder")
        self.run_dir = Path(run_dir)
        self.dataset = dataset
        self.splits = splits
        self.mode: RecordMode = mode
        self.batch_size = int(batch_size)
        self.on_exists: OnExists = on_exists
        self.nonfinite: dict[tuple[str, int], int] = {}
        self._labels = {s: dataset.labels(s) for s in splits}
        self._data: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}
        self._buf: dict[str, torch.Tensor] | None = None
        self._world: World = current_world(distributed=distributed, where="LossRecorder")
        if self._world.distributed:
            check_same_dataset(dataset, splits, self._world, where="LossRecorder")
            for s in splits:
                check_world_size(dataset.n(s), self._world.size, what=f"split {s!r}")
        self._model_sig: str | None = None
        self._source = _source  # who records: "recorder" (a user's loop), "train", "checkpoints"
        self._closed = False
        self._lock: FolderLock | None = None
        if _source == "recorder":  # train_run and record_checkpoints hold the lock themselves
            self._lock = on_main(
                self._world,
                lambda: lock_folder(self.run_dir, what="recording losses", role="run folder"),
            )
        try:
            on_main(self._world, self._check_manifest)
            on_main(self._world, self._write_config)
            on_main(self._world, self._clean_tmp)
            on_main(self._world, self._set_aside_damaged)
        except BaseException:
            self.close()
            raise

    # -- the run folder's lock -----------------------------------------------------------------

    def close(self) -> None:
        """Release the run folder's lock; the recorder records nothing more afterwards."""
        self._closed = True
        lock, self._lock = getattr(self, "_lock", None), None
        if lock is not None:
            lock.release()

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
            raise SampletopoError(
                f"This LossRecorder of {str(self.run_dir)!r} is closed (close(), on_train_end() "
                "or the end of its with block) and records nothing more. Make a new LossRecorder "
                "on the folder to go on recording."
            )

    # -- run folder bookkeeping ----------------------------------------------------------------

    @property
    def run_name(self) -> str:
        """The run's name: its folder name."""
        return self.run_dir.resolve().name

    def _manifest(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset.name,
            "mode": self.mode,
            "splits": {
                s: {"n": self.dataset.n(s), "fingerprint": self.dataset.fingerprint(s)}
                for s in SPLITS
            },
        }

    def _write_config(self) -> None:
        """A run folder without ``config.toml`` gets one naming its data (and how to rebuild
        it), so the topology, sample and report commands can use a run recorded from any
        training loop. Folders written by ``sampletopo train`` or ``record`` already have one."""
        path = Run(self.run_dir).config_file
        if path.exists():
            theirs = read_run_config(self.run_dir).get("source", "train")
            if theirs != self._source and has_losses(self.run_dir):
                what = {
                    "train": "`sampletopo train`",
                    "checkpoints": "`sampletopo record` (from checkpoints)",
                    "recorder": "a LossRecorder in a training loop",
                }
                raise SampletopoError(
                    f"Run folder {str(self.run_dir)!r} holds losses written by "
                    f"{what.get(theirs, theirs)}; recording {what.get(self._source, '')} into it "
                    "would skip its epochs or mix two runs. Use a new run folder."
                )
            return
        cfg: dict[str, Any] = {
            "variant": self.run_name,
            "source": "recorder",
            "record_mode": self.mode,
            **data_config(self.dataset, self.run_dir),
        }
        write_toml(path, cfg)

    def _check_manifest(self) -> None:
        mine = self._manifest()
        old = read_manifest(self.run_dir)
        if old is not None:
            for s in self.splits:
                theirs = old.get("splits", {}).get(s, {})
                if theirs and theirs.get("fingerprint") != mine["splits"][s]["fingerprint"]:
                    raise SampletopoError(
                        f"Run folder {str(self.run_dir)!r} holds losses of other data: split {s!r} "
                        f"was recorded on {old.get('dataset')!r} with fingerprint "
                        f"{theirs.get('fingerprint')}, this dataset {self.dataset.name!r} has "
                        f"{mine['splits'][s]['fingerprint']}. Use a new run folder."
                    )
            if old.get("mode") != self.mode:
                raise SampletopoError(
                    f"Run folder {str(self.run_dir)!r} was recorded with mode {old.get('mode')!r}; "
                    f"got mode {self.mode!r}. Mixing modes in one run would mix exact and "
                    "approximate losses: use the same mode or a new run folder."
                )
            return
        Run(self.run_dir).write_manifest(mine)

    def _check_model(self, model: nn.Module) -> None:
        """The run folder holds losses of one architecture: the first recorded model's class and
        parameter names and shapes are kept in the manifest, and another model is refused
        (otherwise its epochs already on disk would be skipped silently)."""
        net = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
        net = getattr(net, "_orig_mod", net)  # torch.compile's wrapper: the same architecture
        sig = model_signature(net)
        if self._model_sig == sig["signature"]:
            return
        manifest = read_manifest(self.run_dir) or self._manifest()
        old = manifest.get("model")
        # A model whose first epoch was refused (say, for outputs that do not fit the labels)
        # recorded nothing: it must not lock the run folder against the corrected model.
        if old is None or (
            old.get("signature") != sig["signature"] and not has_losses(self.run_dir)
        ):
            manifest["model"] = sig
            Run(self.run_dir).write_manifest(manifest)
        elif old.get("signature") != sig["signature"]:
            raise SampletopoError(
                f"Run folder {str(self.run_dir)!r} holds losses of another model "
                f"({old.get('class')}, {old.get('n_params', 0):,} parameters); this one is "
                f"{sig['class']} ({sig['n_params']:,} parameters). Its epochs on disk would be "
                "skipped, not recorded: use a new run folder."
            )
        self._model_sig = sig["signature"]

    def _clean_tmp(self) -> None:
        for s in self.splits:
            for p in Run(self.run_dir).loss_temporaries(s):
                p.unlink(missing_ok=True)

    def _set_aside_damaged(self) -> None:
        """Move aside every table of this recorder's splits that does not read back whole (its
        footer and checksum, see :mod:`sampletopo._runfiles`), so that its epoch counts as not
        recorded and is recorded again when reached."""
        for s in self.splits:
            for ep, path in _epoch_files(self.run_dir, s).items():
                self._whole(s, ep, path)

    def _whole(self, split: str, epoch: int, path: Path) -> bool:
        """Whether the table at ``path`` reads back whole; if not, it is moved aside, warning."""
        why = parquet_problem(path, LOSS_SCHEMA, rows=self.dataset.n(split))
        if why is None:
            return True
        move_aside(
            path,
            why=why,
            then=f"epoch {epoch} of split {split!r} counts as not recorded and is recorded again "
            "when the run reaches it (a loop restarted after that epoch leaves it missing).",
        )
        return False

    def recorded_epochs(self, split: str) -> list[int]:
        """Epochs of ``split`` already on disk, sorted."""
        return sorted(_epoch_files(self.run_dir, split))

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
            self._data[key] = (x.to(device), y.to(device))
        return self._data[key]

    # -- hooks ---------------------------------------------------------------------------------

    def on_train_epoch_start(self, epoch: int) -> None:
        """Forget training-pass losses gathered so far (``train_pass`` mode); optional."""
        self._buf = None

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
                raise SampletopoError(
                    f"{where}: 'targets' must be the batch's labels as a 1-D tensor. Got "
                    f"{getattr(targets, 'shape', type(targets).__name__)}."
                )
            b = int(targets.shape[0])
            _check_outputs(logits, b, self.dataset.num_classes, what=where)
            dev = logits.device
            try:
                idx = torch.as_tensor(indices, device=dev, dtype=torch.long).reshape(-1)
            except (TypeError, ValueError, RuntimeError) as exc:
                raise SampletopoError(
                    f"{where}: 'indices' must be the batch's sample indices (ints). Got "
                    f"{type(indices).__name__} ({exc})."
                ) from None
            n = self.dataset.n("train")
            if idx.numel() != b or (losses is not None and losses.numel() != b):
                raise SampletopoError(
                    f"{where}: a batch of {b} targets came with {idx.numel()} indices"
                    + ("" if losses is None else f" and {losses.numel()} losses")
                    + ". Pass one index (and loss) per sample of the batch."
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
                    raise SampletopoError(
                        f"{where}: sample indices must lie in [0, {n}) (the train split's "
                        f"positions). Got {lo if lo < 0 else hi}."
                    )
                if tlo < 0 or thi >= self.dataset.num_classes:
                    raise SampletopoError(
                        f"{where}: targets must be labels in [0, {self.dataset.num_classes}). "
                        f"Got {tlo if tlo < 0 else thi}."
                    )
            if self._buf is None or self._buf["loss"].device != dev:
                n = self.dataset.n("train")
                self._buf = {
                    "loss": torch.full((n,), float("nan"), dtype=torch.float64, device=dev),
                    "pred": torch.full((n,), -1, dtype=torch.long, device=dev),
                    "target": torch.full((n,), -1, dtype=torch.long, device=dev),
                    "seen": torch.zeros(n, dtype=torch.bool, device=dev),
                }
            loss, pred = _per_sample(logits, targets)
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
        epoch = check_int_range(
            "epoch",
            epoch,
            0,
            MAX_EPOCH,
            where="on_train_epoch_end",
            fix="Pass the number of epochs trained so far (0 = the initial model); loss tables "
            "store it as int32.",
        )
        self._check_open()
        on_main(self._world, lambda: self._check_model(model))
        if self._world.distributed:
            return self._epoch_end_distributed(epoch, model)
        out: dict[str, Path | None] = {s: None for s in self.splits}
        todo = self._todo_splits(epoch)
        buf, self._buf = self._buf, None
        for s in todo:
            if s == "train" and self.mode == "train_pass" and epoch > 0:
                losses, preds = self._from_train_pass(buf, epoch)
            else:
                dev = self.device if self.device is not None else _model_device(model)
                x, y = self._split_tensors(s, dev)
                losses, preds = evaluate_losses(
                    model,
                    x,
                    y,
                    batch_size=self.batch_size,
                    device=dev,
                    num_classes=self.dataset.num_classes,
                )
            out[s] = self.write(s, epoch, losses, preds)
        return out

    def _todo_splits(self, epoch: int) -> list[str]:
        """Splits whose table of ``epoch`` is not on disk yet (refused with on_exists='error')."""
        todo = []
        for s in self.splits:
            path = epoch_file(self.run_dir, s, epoch)
            if path.exists() and self._whole(s, epoch, path):
                if self.on_exists == "error":
                    raise SampletopoError(
                        f"Epoch {epoch} of split {s!r} is already recorded in "
                        f"{str(self.run_dir)!r}; refusing to record it again (on_exists='error'). "
                        "Use on_exists='skip' or a new run folder."
                    )
            else:
                todo.append(s)
        return todo

    def _epoch_end_distributed(self, epoch: int, model: nn.Module) -> dict[str, Path | None]:
        world = self._world
        # Rank 0 alone looks at the disk (the ranks need not share a file system) and decides.
        todo = on_main(world, lambda: self._todo_splits(epoch), share=True)
        assert todo is not None
        buf, self._buf = self._buf, None
        net = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
        if any(s != "train" or self.mode == "eval" or epoch == 0 for s in todo):
            sync_model(world, net)
        gathered: dict[str, Any] = {}
        if "train" in todo and self.mode == "train_pass" and epoch > 0:
            gathered["train"] = ("train_pass", self._merge_train_pass(buf))
        evals = [s for s in todo if s not in gathered]

        def shards() -> dict[str, tuple[np.ndarray, np.ndarray]]:
            dev = self.device if self.device is not None else _model_device(net)
            res = {}
            for s in evals:
                lo, hi = shard_bounds(
                    self.dataset.n(s), rank=world.rank, world_size=world.size, align=self.batch_size
                )
                x, y = self._split_tensors(s, dev)
                res[s] = evaluate_losses(
                    net,
                    x[lo:hi],
                    y[lo:hi],
                    batch_size=self.batch_size,
                    device=dev,
                    num_classes=self.dataset.num_classes,
                )
            return res

        mine = everywhere(world, shards)  # one check for all splits: an error stops every rank
        for s in evals:
            n, losses, preds = self.dataset.n(s), *mine[s]
            gathered[s] = (
                "eval",
                (
                    gather_shards(world, losses, n=n, align=self.batch_size),
                    gather_shards(world, preds, n=n, align=self.batch_size),
                ),
            )

        def write_all() -> tuple[dict[str, Path | None], dict[tuple[str, int], int]]:
            out: dict[str, Path | None] = {s: None for s in self.splits}
            for s, (how, val) in gathered.items():
                if how == "train_pass":
                    losses, preds = self._from_train_pass(val, epoch)
                else:
                    losses, preds = val
                out[s] = self.write(s, epoch, losses, preds)
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
        wrong = np.flatnonzero(targets != self._labels["train"])
        if wrong.size:
            raise SampletopoError(
                f"mode='train_pass': the targets given for {wrong.size} sample indices do not "
                f"match the dataset's labels (first: sample {int(wrong[0])}). The 'indices' "
                "passed to on_train_batch_end must be positions in the train split's order."
            )
        return np.asarray(buf["loss"]), np.asarray(buf["pred"])

    def write(self, split: str, epoch: int, losses: np.ndarray, preds: np.ndarray) -> Path:
        """Write one split's table for ``epoch`` atomically; warn about non-finite losses."""
        self._check_open()
        labels = self._labels[split]
        losses = np.asarray(losses, dtype=np.float64)
        preds = np.asarray(preds, dtype=np.int64)
        if losses.shape != labels.shape or preds.shape != labels.shape:
            raise SampletopoError(
                f"Split {split!r} has {labels.size} samples; got {losses.shape} losses and "
                f"{preds.shape} predictions."
            )
        bad = ~np.isfinite(losses)
        if bad.any():
            n_nan = int(np.isnan(losses).sum())
            self.nonfinite[(split, epoch)] = int(bad.sum())
            warnings.warn(
                NonFiniteLossWarning(
                    f"{self.run_name}: {int(bad.sum())} of {losses.size} losses of split "
                    f"{split!r} at epoch {epoch} are not finite ({n_nan} NaN, "
                    f"{int(bad.sum()) - n_nan} inf; first at sample {int(np.flatnonzero(bad)[0])}). "
                    "They are recorded as such; the training probably diverged (lower the "
                    "learning rate)."
                ),
                stacklevel=3,
            )
        path = epoch_file(self.run_dir, split, epoch)
        _write_atomic_parquet(_table(epoch, split, labels, preds, losses), path)
        return path

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
            raise SampletopoError(
                f"Recorder state was saved with mode {state.get('mode')!r}, this recorder uses "
                f"{self.mode!r}."
            )
        if list(state.get("splits", [])) != list(self.splits):
            raise SampletopoError(
                f"Recorder state was saved for splits {state.get('splits')!r}, this recorder "
                f"records {list(self.splits)!r}."
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
                RuntimeWarning,
                stacklevel=2,
            )


# ---------------------------------------------------------------------------------------------
# Readers


def _check_split_arg(split: str | None) -> list[str]:
    if split is None:
        return list(SPLITS)
    if split not in SPLITS:
        raise SampletopoError(
            f"The 'split' parameter must be one of {SPLITS} or None. Got {split!r} instead."
        )
    return [split]


def recorded_epochs(run_dir: PathLike, split: str) -> list[int]:
    """Epochs of ``split`` recorded in the run folder ``run_dir``, sorted."""
    if split is None:
        raise SampletopoError(f"recorded_epochs: 'split' must be one of {SPLITS}. Got None.")
    _check_split_arg(split)
    return sorted(_epoch_files(Path(run_dir), split))


def load_losses(
    run_dir: PathLike, *, split: str | None = None, lazy: bool = False
) -> pl.DataFrame | pl.LazyFrame:
    """A run's loss tables in long format.

    Parameters
    ----------
    run_dir : str or Path
        A run (variant) folder, or an experiment folder whose sub-folders are runs (their tables
        are concatenated).
    split : {"train", "val"}, optional
        Only this split; default both.
    lazy : bool
        Return a :class:`polars.LazyFrame` (nothing is read until ``.collect()``).

    Returns
    -------
    polars.DataFrame or polars.LazyFrame
        Columns ``run`` (the run folder's name), ``split``, ``epoch``, ``sample``, ``label``,
        ``pred``, ``loss``, ``correct``, sorted by run, split, epoch, sample.
    """
    splits = _check_split_arg(split)
    frames = []
    for run in find_runs(run_dir):
        scans = []
        for s in splits:
            files = list(run.loss_files(s).values())
            if files:
                # Each table is verified now (footer and checksum), so a damaged one is
                # named here, not at collect time; see sampletopo._runfiles for the cost.
                scans.append(
                    scan_parquet(
                        files,
                        LOSS_SCHEMA,
                        rows=run.split_size(s),
                        fix=_LOSS_FIX,
                        hive_partitioning=False,
                    )
                )
        if not scans:
            continue
        frames.append(pl.concat(scans).with_columns(run=pl.lit(run.name, dtype=pl.String)))
    cols = ["run", "split", "epoch", "sample", "label", "pred", "loss", "correct"]
    if not frames:
        raise SampletopoError(
            f"No loss tables for split(s) {splits} under {str(run_dir)!r}. Record some first."
        )
    lf = pl.concat(frames).select(cols).sort(["run", "split", "epoch", "sample"])
    if lazy:
        return lf
    try:
        return lf.collect()
    except pl.exceptions.PolarsError as exc:
        # Every table was verified when listed, so this one changed since, or predates
        # checksums; polars does not say which file.
        raise SampletopoError(
            f"A loss table under {str(run_dir)!r} cannot be read ({' '.join(str(exc).split())[:200]}). "
            f"Read the tables one by one with read_loss_table to find it. {_LOSS_FIX}"
        ) from exc


def loss_matrix(run_dir: PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """A run's losses of one split as an (epochs x samples) array.

    Returns
    -------
    epochs : numpy.ndarray
        int64, shape ``(E,)``, sorted.
    losses : numpy.ndarray
        float64, shape ``(E, n_samples)``; row ``i`` is epoch ``epochs[i]``, column ``j`` is
        sample ``j``. Non-finite losses are kept.
    """
    _check_split_arg(split)
    rd = Path(run_dir)
    files = _epoch_files(rd, split)
    if not files:
        raise SampletopoError(
            f"No loss tables for split {split!r} in {str(rd)!r}. Record some first."
        )
    rows = []
    n_ref: int | None = None
    for ep, path in files.items():
        df = read_loss_table(rd, split, ep, columns=["loss"])
        n = df.height
        if n_ref is None:
            n_ref = n
        if n != n_ref:
            raise DamagedFileError(
                path,
                f"it holds {n} samples where the table of epoch {next(iter(files))} holds "
                f"{n_ref}: the run folder mixes data",
                _LOSS_FIX,
            )
        rows.append(df["loss"].to_numpy().astype(np.float64))
    return np.asarray(list(files), dtype=np.int64), np.vstack(rows)


def has_losses(run_dir: Path) -> bool:
    """Whether any loss table is recorded in ``run_dir``."""
    return Run(run_dir).has_losses()


def read_run_config(run_dir: PathLike) -> dict[str, Any]:
    """The resolved ``config.toml`` of a run (variant) folder, as a dict.

    A ``data_file`` entry (a saved in-memory dataset, see :func:`data_config`) is returned as an
    absolute path."""
    return Run(run_dir).read_config()


def check_run_data(run_dir: PathLike, ds: Dataset, *, splits: Sequence[str] | None = None) -> None:
    """Refuse ``ds`` if it is not the data the run recorded (compares the losses' manifest)."""
    Run(run_dir).check_data(ds, splits=splits)


def load_run_model(
    run_dir: PathLike, epoch: int, *, device: str | torch.device = "cpu"
) -> tuple[nn.Module, Dataset]:
    """The model of a run at ``epoch``, in eval mode, and the run's dataset.

    Built from the run's ``config.toml`` and its checkpoint of that epoch (loaded with
    ``weights_only=True``).
    """
    return Run(run_dir).load_model(epoch, device=device)


# ---------------------------------------------------------------------------------------------
# From checkpoints


def record_checkpoints(
    checkpoints: str | Path,
    run_dir: PathLike,
    *,
    model: str | nn.Module,
    data: str | Dataset,
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
        does not exist yet, so :func:`load_run_model` works on the result.
    model : str or torch.nn.Module
        A registered model name (built with ``model_kwargs``) or a model instance.
    data : str or Dataset
        A registered dataset name (loaded from ``data_root`` with ``data_seed``,
        ``val_fraction`` and ``max_samples``) or a :class:`Dataset`.
    splits, batch_size, on_exists
        As for :class:`LossRecorder` (mode ``"eval"``). Epochs already on disk are skipped.
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
        As for :class:`LossRecorder`: ``None`` uses an initialised process group if there is one.

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
            distributed=distributed,
        )  # fmt: skip
    finally:
        if lock is not None:
            lock.release()


def _record_checkpoints(
    checkpoints: str | Path,
    run_dir: PathLike,
    *,
    model: str | nn.Module,
    data: str | Dataset,
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
) -> list[int]:
    """:func:`record_checkpoints` once ``run_dir`` is locked."""
    from tqdm.auto import tqdm

    from sampletopo.checkpoints import (
        checkpoint_epoch,
        extract_state_dict,
        list_checkpoints,
        load_state_dict_into,
    )

    if shard not in ("samples", "checkpoints"):
        raise SampletopoError(
            "The 'shard' parameter of record_checkpoints must be 'samples' or 'checkpoints'. "
            f"Got {shard!r} instead."
        )
    if on_change not in ("error", "skip"):
        raise SampletopoError(
            "The 'on_change' parameter of record_checkpoints must be 'error' or 'skip'. "
            f"Got {on_change!r} instead."
        )
    where = "record_checkpoints"
    # Every argument is checked before the folder is listed or anything is written.
    if not isinstance(data, (str, Dataset)):
        raise SampletopoError(
            f"The 'data' parameter of {where} must be a dataset name (one of "
            f"{', '.join(list_datasets())}) or a sampletopo Dataset. Got {type(data).__name__} "
            "instead. Wrap arrays with Dataset.from_arrays(name, train=(x, y), val=(x, y))."
        )
    if not isinstance(model, (str, nn.Module)):
        raise SampletopoError(
            f"The 'model' parameter of {where} must be a model name or a torch.nn.Module. Got "
            f"{type(model).__name__} instead."
        )
    if model_kwargs is not None and not isinstance(model_kwargs, Mapping):
        raise SampletopoError(
            f"The 'model_kwargs' parameter of {where} must be a mapping of model options, e.g. "
            f"{{'width': 8}}. Got {model_kwargs!r} instead."
        )
    if not isinstance(data, Dataset):
        check_int_range("data_seed", data_seed, 0, MAX_SEED, where=where)
    _check_recorder_args(
        splits=splits, mode="eval", batch_size=batch_size, on_exists=on_exists, where=where
    )
    requested = resolve_device(device, where=where)
    world = current_world(distributed=distributed, where="record_checkpoints")
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
    kwargs = dict(model_kwargs or {})
    if isinstance(model, str):
        c, h, _ = ds.input_shape
        from sampletopo.models import create_model

        net = create_model(model, num_classes=ds.num_classes, in_channels=c, input_size=h, **kwargs)
    else:
        net = model
    if requested is not None:
        dev = requested
    elif isinstance(model, nn.Module) and next(model.parameters(), None) is not None:
        dev = _model_device(model)
    else:
        dev = default_device(world)
    net.to(dev)

    def changed(exc: CheckpointChangedError) -> None:
        if on_change == "error":
            raise exc
        if world.is_main:
            warnings.warn(
                f"{exc.reason}; skipped, its epoch is not recorded (on_change='skip').",
                RuntimeWarning,
                stacklevel=3,
            )

    # Read every epoch first, so duplicates are refused before anything is written. Each rank
    # reads every world.size-th file; None marks a file that changed (on_change='skip').
    def read_epochs() -> list[tuple[int, int | str]]:
        mine: list[tuple[int, int | str]] = []
        for i in range(world.rank, len(listed), world.size):
            try:
                mine.append(
                    (i, checkpoint_epoch(listed[i].path, read_listed_checkpoint(listed[i])))
                )
            except CheckpointChangedError as exc:
                if on_change == "error":
                    raise
                mine.append((i, exc.reason))
        return mine

    pairs = dict(
        p for part in _all_gather_lists(world, everywhere(world, read_epochs)) for p in part
    )
    by_epoch: dict[int, int] = {}
    for i, entry in enumerate(listed):
        ep = pairs[i]
        if isinstance(ep, str):
            changed(CheckpointChangedError(ep))
            continue
        if ep in by_epoch:
            raise SampletopoError(
                f"Checkpoints {str(listed[by_epoch[ep]].path)!r} and {str(entry.path)!r} both "
                f"hold epoch {ep}. Keep one checkpoint per epoch in the folder."
            )
        by_epoch[ep] = i

    rd = Path(run_dir)

    def write_config() -> None:
        rd.mkdir(parents=True, exist_ok=True)
        cfg_path = Run(rd).config_file
        cfg: dict[str, Any] = {
            "variant": rd.resolve().name,
            "source": "checkpoints",
            "checkpoint_dir": str(Path(checkpoints).resolve()),
            "record_mode": "eval",
        }
        if isinstance(data, Dataset):
            # The settings the dataset was really built with; in-memory data (from_arrays) is
            # saved beside the run so that readers can rebuild it.
            cfg.update(data_config(ds, rd))
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
        if isinstance(model, str):
            cfg["model"] = model
            cfg["model_kwargs"] = kwargs
        cfg["checkpoint_files"] = {
            str(e): str(listed[i].path.resolve()) for e, i in sorted(by_epoch.items())
        }
        if cfg_path.exists():
            old = read_run_config(rd)
            # data_file is compared through the data's fingerprints (the manifest) instead.
            ident = [k for k in (*DATA_KEYS, "source", "checkpoint_dir", "model", "model_kwargs")
                     if k != "data_file" and old.get(k) != cfg.get(k)]  # fmt: skip
            if ident and has_losses(rd):
                shown = ", ".join(f"{k}: {old.get(k)!r} -> {cfg.get(k)!r}" for k in ident[:3])
                raise SampletopoError(
                    f"Run folder {str(rd)!r} already holds losses recorded with other settings "
                    f"({shown}). Recording there would skip its epochs or mix two runs: pass a "
                    "new output folder (--out), or delete that one."
                )
            if not ident:
                # The same run, continued: add checkpoints that appeared since.
                cfg["checkpoint_files"] = {
                    **old.get("checkpoint_files", {}),
                    **cfg["checkpoint_files"],
                }
            # else: nothing recorded yet (an earlier attempt failed): the new settings win.
        write_toml(cfg_path, cfg)

    on_main(world, write_config)
    by_samples = world.distributed and shard == "samples"
    if world.distributed:
        check_same_dataset(ds, splits, world, where="record_checkpoints")
    rec_box: list[LossRecorder] = []

    def make_recorder() -> None:
        rec_box.append(
            LossRecorder(
                rd,
                ds,
                _source="checkpoints",
                splits=splits,
                mode="eval",
                batch_size=batch_size,
                device=dev,
                on_exists=on_exists,
                distributed=world.distributed if by_samples else False,
            )
        )

    if by_samples:
        make_recorder()
    else:
        on_main(world, make_recorder)

    def pending() -> list[int]:
        return [
            ep
            for ep in sorted(by_epoch)
            if not (all(epoch_file(rd, s, ep).exists() for s in splits) and on_exists == "skip")
        ]

    todo = on_main(world, pending, share=True)
    assert todo is not None

    def load(ep: int) -> None:
        sd = extract_state_dict(read_listed_checkpoint(listed[by_epoch[ep]]), source=str(ep))
        load_state_dict_into(net, sd, source=str(listed[by_epoch[ep]].path))

    done: list[int] = []
    bar = tqdm(
        total=len(todo),
        desc=f"record {rd.name}",
        unit="ckpt",
        disable=not (progress and world.is_main),
    )
    if not world.distributed or by_samples:
        rec = rec_box[0]
        for ep in todo:
            try:
                everywhere(world, functools.partial(load, ep))
            except CheckpointChangedError as exc:
                changed(exc)
                bar.update(1)
                continue
            written = rec.on_train_epoch_end(ep, net)
            if any(v is not None for v in written.values()):
                done.append(ep)
            bar.update(1)
    else:
        # Whole checkpoints per rank, in rounds of world.size; rank 0 writes each round.
        for start in range(0, len(todo), world.size):
            mine = todo[start + world.rank] if start + world.rank < len(todo) else None
            result: Any = None
            if mine is not None:
                try:
                    load(mine)
                    result = (
                        "ok",
                        {
                            s: evaluate_losses(
                                net,
                                *ds.tensors(s),
                                batch_size=batch_size,
                                device=dev,
                                num_classes=ds.num_classes,
                            )
                            for s in splits
                        },
                    )
                except CheckpointChangedError as exc:
                    result = ("changed", (exc.reason, str(exc)))
                except BaseException as exc:  # noqa: BLE001 -- rank 0 raises it on every rank
                    result = ("error", error_status(exc))
            results = gather_to_main(world, (mine, result))

            def write_round(results: list[Any] | None = results) -> list[int]:
                assert results is not None
                rec = rec_box[0]
                now = []
                for rank, (ep, res) in enumerate(results):
                    if ep is None:
                        continue
                    how, val = res
                    if how == "error":
                        raise_status(val, rank=rank)
                    if how == "changed":
                        changed(CheckpointChangedError(val[0], val[1][len(val[0]) :]))
                        continue
                    wrote = False
                    for s in rec._todo_splits(ep):
                        rec.write(s, ep, *val[s])
                        wrote = True
                    if wrote:
                        now.append(ep)
                return now

            now = on_main(world, write_round, share=True)
            assert now is not None
            done.extend(now)
            bar.update(len(todo[start : start + world.size]))
    bar.close()
    return sorted(done)


def _all_gather_lists(world: World, part: list[Any]) -> list[list[Any]]:
    if not world.distributed:
        return [part]
    import torch.distributed as dist

    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, part)
    return out
