"""A PyTorch Lightning callback that records every sample's loss at every epoch.

Holds :class:`LossRecorderCallback`, a real :class:`lightning.pytorch.Callback` for
``lightning.Trainer(callbacks=[...])``. It is thin: each hook hands the LightningModule to a
:class:`~sampletopo.recorder.LossRecorder`, which evaluates and writes the same tables, with the
same run-folder lock, manifest, atomic writes and distributed gathering, as in a loop of your
own. It trains nothing and knows nothing about topology.

Needs the optional ``lightning`` package (``pip install 'sampletopo[lightning]'``); this module
is not imported by ``import sampletopo``, and it imports without ``lightning`` installed (the
callback then refuses to be made, naming the install command).

Epochs. Here epoch ``e`` is the model after ``e`` full epochs of training (0 = the initial
model), while Lightning's ``trainer.current_epoch`` counts from 0 for the epoch being trained
(its checkpoints store the index of the epoch just finished). The callback records the module
it is handed at ``on_train_start`` (epoch 0 in a fresh fit) and, at the end of each training
epoch whose every batch ran, epoch ``trainer.current_epoch + 1``, all shifted by the epochs the
same module went through in an earlier fit of this callback (see :class:`LossRecorderCallback`).

Resuming. The callback's ``state_dict`` goes into every Lightning checkpoint: the run folder,
the epoch of the checkpointed module when it was saved at an epoch's end, and the recorder's
state. ``trainer.fit(model, ckpt_path=...)`` restores it, so a run killed at any point and
resumed from its last checkpoint ends with every epoch recorded exactly once:

* Killed during an epoch: the checkpoint's epochs are on disk; the epoch is trained again and
  recorded at its end.
* Killed after a checkpoint taken at an epoch's end but before that epoch was recorded (a
  ``ModelCheckpoint`` saves at validation end, or at the last batch with
  ``every_n_train_steps``, before ``on_train_epoch_end`` runs): the restored module is that
  epoch's model, and it is recorded as the resumed fit starts (``on_train_start``). Only in
  ``"train_pass"`` mode is such an epoch lost (its training passes died with the process),
  with a warning.
* Killed after an epoch was recorded but before its checkpoint (or with ``every_n_epochs > 1``):
  Lightning trains those epochs again from the older checkpoint. Their tables, already on disk,
  are kept and not written again (equal to what the retraining gives when training is
  deterministic: seeded, ``Trainer(deterministic=True)``, an epoch-seeded shuffle); a
  :class:`~sampletopo.RecorderWarning` names them.
"""

from __future__ import annotations

import contextlib
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn

from sampletopo._device import resolve_device
from sampletopo._errors import RecorderWarning, SampletopoError
from sampletopo._validation import ranges_text
from sampletopo.data import Dataset
from sampletopo.recorder import (
    LossRecorder,
    LossSpec,
    RecordMode,
    check_dataset,
    check_loss,
    check_recorder_options,
)
from sampletopo.runs import SPLITS, PathLike

if TYPE_CHECKING:
    import lightning.pytorch as pl

# The optional extra: without it this module still imports (``import sampletopo`` and the
# doctest collection never need it) and the callback refuses to be made, naming the fix.
_MISSING: ImportError | None = None
try:
    from lightning.pytorch import Callback
except ImportError as exc:
    Callback = object  # type: ignore[assignment,misc]
    _MISSING = exc

__all__ = ["LossRecorderCallback"]

_STATE_VERSION = 1
_WHERE = "LossRecorderCallback"


def _require_lightning() -> None:
    if _MISSING is not None:
        raise SampletopoError(
            f"{_WHERE} needs the 'lightning' package, which is not installed ({_MISSING}). "
            "Install it with: pip install 'sampletopo[lightning]'."
        )


class LossRecorderCallback(Callback):
    """Record each sample's loss per split and epoch from a Lightning ``Trainer``.

    ``Trainer(callbacks=[LossRecorderCallback(run_dir, dataset)])`` writes the tables a
    :class:`~sampletopo.recorder.LossRecorder` writes from a loop of your own (same files,
    same values), so ``sampletopo topology``, ``figures``, ``samples`` and ``report`` work on
    ``run_dir`` afterwards.

    Parameters
    ----------
    run_dir : str or Path
        The run folder; tables go to ``run_dir/losses/<split>/``.
    dataset : Dataset
        The samples to record, in their :meth:`~sampletopo.data.Dataset.tensors` order. Train
        the module on the same data (e.g. a ``TensorDataset`` of ``dataset.tensors("train")``);
        the callback evaluates ``dataset`` itself and does not look at the Trainer's loaders.
    splits : sequence of str
        Splits to record, from ``("train", "val")``.
    mode : {"eval", "train_pass"}
        ``"eval"`` (exact): at each epoch's end the module is evaluated in eval mode on every
        split. ``"train_pass"`` (approximate, see :mod:`sampletopo.recorder`): the train
        split's losses are those of the training forward passes; ``training_step`` must then
        return a dict with ``"loss"`` and ``"indices"`` (positions in the train split),
        ``"logits"`` and ``"targets"`` of its batch (optionally ``"losses"``, per sample).
    batch_size : int
        Batch size of the eval passes.
    device : str or torch.device, optional
        Device of the eval passes; default: the module's device (each rank's own GPU under
        DDP), which is what you want on a GPU Trainer.
    loss : {"cross_entropy", "mse"} or callable
        The per-sample loss, as for :class:`~sampletopo.recorder.LossRecorder`; regression
        targets (float ``y``) need ``"mse"`` or a function of your own.
    model_spec, model_kwargs : optional
        How later commands (landscape, hessian) rebuild the module, as for
        :class:`~sampletopo.recorder.LossRecorder`: ``"pkg.module:factory"`` (or the factory)
        and its options. Without them the module's class is stored when it imports and builds
        the same architecture with no options; otherwise a ``ModelSpecWarning`` says what to
        pass.
    checkpoint_every : int, optional
        Save the module's weights at epoch 0 and every N-th epoch in the run folder, for
        ``sampletopo landscape`` and ``hessian`` (as :class:`~sampletopo.recorder.LossRecorder`).

    Notes
    -----
    The module is called as ``pl_module(x)`` in eval mode: its ``forward`` must return the
    ``(batch, classes)`` logits. Inputs are converted by the Trainer's precision plugin
    (``"64-true"``, ``"bf16-true"``, ...) as in ``training_step``; mixed precision's autocast
    is not used, so losses are those of the weights themselves, in float64.

    The recorder (and with it the lock of ``run_dir``, see :mod:`sampletopo._folders`) lives
    from ``on_fit_start`` to the end of the fit (``on_fit_end``, ``teardown``, or
    ``on_exception`` when the fit fails or is interrupted). Epochs already on disk are skipped,
    never written twice.

    One instance can serve several fits (a new Trainer with more epochs on the same module, or
    another ``fit`` of the same Trainer): the module's epochs carry on from where this callback
    last recorded it. A fit of a module the callback has not seen, without ``ckpt_path``,
    starts at epoch 0; when the folder already holds later epochs a warning says they are kept
    and not recorded again (resume with ``ckpt_path`` instead, or use a new folder).

    Under several processes (``strategy="ddp"``, gloo or NCCL) every rank records its share and
    rank 0 writes, as :class:`~sampletopo.recorder.LossRecorder` does under
    ``torch.distributed``. An epoch that stops before its last batch (``max_steps``,
    ``trainer.should_stop`` set mid-epoch) is not a full epoch and is not recorded (warned).
    ``max_epochs`` reached ends the fit normally with its last epoch recorded.

    The learning rates of the Trainer's optimizers (every parameter group, read as each epoch
    starts, so whatever scheduler the module configures) are stored as the run's schedule
    (``losses/schedule.parquet``, see :meth:`~sampletopo.runs.Run.read_schedule`).

    Examples
    --------
    >>> import lightning as L                                          # doctest: +SKIP
    >>> from sampletopo.lightning import LossRecorderCallback          # doctest: +SKIP
    >>> ds = st.load_dataset("digits")                                 # doctest: +SKIP
    >>> cb = LossRecorderCallback("runs/lit/run1", ds)                 # doctest: +SKIP
    >>> L.Trainer(max_epochs=5, callbacks=[cb]).fit(module, loader)    # doctest: +SKIP
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
        loss: LossSpec = "cross_entropy",
        model_spec: str | Callable[..., nn.Module] | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
        checkpoint_every: int | None = None,
    ) -> None:
        _require_lightning()
        super().__init__()
        # Checked here, before any Trainer starts, with the recorder's own checks.
        self.dataset = check_dataset(dataset, where=_WHERE)
        self.splits = check_recorder_options(
            splits=splits, mode=mode, batch_size=batch_size, on_exists="skip", where=_WHERE
        )
        resolve_device(device, where=_WHERE)
        self.loss = check_loss(loss, self.dataset, mode=mode, where=_WHERE)
        self.model_spec, self.model_kwargs = model_spec, model_kwargs
        self.checkpoint_every = checkpoint_every
        self.run_dir = Path(run_dir)
        self.mode: RecordMode = mode
        self.batch_size = int(batch_size)
        self.device = device
        self.recorder: LossRecorder | None = None
        # Recorder epoch of a module = offset + Lightning's completed epochs in this fit (0
        # except when a module continues from an earlier fit of this callback, see the class).
        self._offset = 0
        # The recorder epoch of the module while it sits at the end of an epoch (after the last
        # batch of an epoch, or as restored), else None (mid-epoch): what a checkpoint stores.
        self._at_end: int | None = None
        self._passes = False  # training passes handed in since the last record (train_pass)
        self._loaded: dict[str, Any] | None = None
        self._last_state: dict[str, Any] | None = None
        # The module this callback last recorded, and its epoch then (reuse across fits).
        self._module_ref: weakref.ref[nn.Module] | None = None
        self._module_epoch = 0

    @property
    def state_key(self) -> str:
        """One checkpoint entry per run folder, so several of these callbacks can coexist."""
        return self._generate_state_key(run_dir=str(self.run_dir))

    # -- the recorder's lifetime ---------------------------------------------------------------

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Make the recorder (this locks ``run_dir``) once the Trainer's processes, device and
        optimizers are set up."""
        self._close()
        distributed = trainer.world_size > 1
        if distributed and not (dist.is_available() and dist.is_initialized()):
            raise SampletopoError(
                f"{_WHERE}: the Trainer runs {trainer.world_size} processes with strategy "
                f"{type(trainer.strategy).__name__}, which sets up no torch.distributed process "
                "group; the recorder shares its work through one. Use strategy='ddp' (or "
                "'ddp_spawn'), or one device."
            )
        self.recorder = LossRecorder(
            self.run_dir,
            self.dataset,
            splits=self.splits,
            mode=self.mode,
            batch_size=self.batch_size,
            device=self.device,
            on_exists="skip",
            distributed=distributed,
            loss=self.loss,
            model_spec=self.model_spec,
            model_kwargs=self.model_kwargs,
            checkpoint_every=self.checkpoint_every,
            **_schedule_options(trainer),
        )

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Close the recorder: the run folder is unlocked."""
        self._close()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Close the recorder at the end of a fit, whichever way it ended."""
        if stage == "fit":
            self._close()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """Close the recorder when the fit fails or is interrupted; what is on disk stays."""
        self._close()

    def _close(self) -> None:
        rec, self.recorder = self.recorder, None
        if rec is not None:
            with contextlib.suppress(Exception):  # the state is for a later save_checkpoint only
                self._last_state = self._state(rec)
            rec.close()

    def _open(self) -> LossRecorder:
        if self.recorder is None:
            raise SampletopoError(
                f"{_WHERE}: its recorder is not open; it is made at on_fit_start and closed at "
                "the end of the fit. Pass the callback to a Trainer (callbacks=[...]) and call "
                "trainer.fit, rather than calling its hooks yourself."
            )
        return self.recorder

    # -- hooks that record ---------------------------------------------------------------------

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Record the module as training starts: epoch 0 in a fresh fit, or the epoch a
        checkpoint restored at an epoch's end when it is not on disk yet.

        This is after Lightning restored a checkpoint's weights and loop state (which comes
        after ``on_fit_start``) and after the sanity check (which changes no weights), so one
        rule covers fresh, resumed and continued fits.
        """
        rec = self._open()
        done = trainer.current_epoch
        resumed = trainer.ckpt_path is not None
        if resumed:
            here = self._resume(rec, trainer)
        else:
            self._loaded = None
            ref = self._module_ref() if self._module_ref is not None else None
            self._offset = self._module_epoch - done if ref is pl_module else 0
            here = self._offset + done
        self._at_end = here
        self._passes = False
        following = here + 1 if here is not None else self._offset + done + 1  # trained next
        if here is not None and here > 0 and self.mode == "train_pass":
            here = None  # its training passes ran in the process that saved the checkpoint
        if trainer.is_global_zero:
            self._warn_about_disk(
                rec, here if here is not None else following, kept_from=following, resumed=resumed
            )
        if here is not None:
            self._record(rec, trainer, pl_module, here)

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Note whether the module now sits at its epoch's end; in ``"train_pass"`` mode hand the
        batch's per-sample results to the recorder."""
        self._at_end = (
            self._offset + trainer.current_epoch + 1 if _last_batch(trainer, batch_idx) else None
        )
        if self.mode == "train_pass":
            self._train_pass_batch(outputs)
            self._passes = True

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start the epoch's training-pass losses afresh (``"train_pass"`` mode)."""
        self._passes = False
        self._open().on_train_epoch_start(self._offset + trainer.current_epoch)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Record epoch ``current_epoch + 1`` (shifted as the class says) if every batch ran."""
        rec = self._open()
        epoch = self._offset + trainer.current_epoch + 1
        if self._at_end != epoch:
            why = (
                f"Lightning epoch {trainer.current_epoch} stopped before its last of "
                f"{trainer.num_training_batches} batches (max_steps or should_stop), and epoch "
                f"{epoch} means the model after {epoch} full epochs"
            )
        elif self.mode == "train_pass" and not self._passes:
            why = (
                "mode='train_pass' and Lightning replays the end of an epoch whose training "
                "passes ran in the process that saved the checkpoint"
            )
        else:
            self._record(rec, trainer, pl_module, epoch)
            self._passes = False
            return
        if trainer.is_global_zero:
            warnings.warn(
                f"{rec.run_name}: epoch {epoch} is not recorded: {why}.",
                RecorderWarning,
                stacklevel=2,
            )

    def _record(
        self, rec: LossRecorder, trainer: pl.Trainer, pl_module: pl.LightningModule, epoch: int
    ) -> None:
        with _precision_inputs(trainer, pl_module):
            try:
                rec.on_train_epoch_end(epoch, pl_module)
            except NotImplementedError as exc:  # nn.Module's missing forward
                raise SampletopoError(
                    f"{_WHERE}: calling the LightningModule {type(pl_module).__name__} on a batch "
                    f"of inputs failed ({exc}). The callback evaluates pl_module(x): define its "
                    "forward to return the (batch, classes) logits."
                ) from exc
        self._module_ref = weakref.ref(pl_module)
        self._module_epoch = epoch

    def _train_pass_batch(self, outputs: Any) -> None:
        rec = self._open()
        keys = ("indices", "logits", "targets")
        if not isinstance(outputs, Mapping) or any(k not in outputs for k in keys):
            got = sorted(outputs) if isinstance(outputs, Mapping) else type(outputs).__name__
            raise SampletopoError(
                f"{_WHERE}(mode='train_pass'): training_step must return a dict with 'loss' and "
                f"{', '.join(repr(k) for k in keys)} (the batch's sample positions in the train "
                f"split, its logits and labels). Got {got}. Return them, or use mode='eval'."
            )
        rec.on_train_batch_end(
            outputs["indices"], outputs["logits"], outputs["targets"], losses=outputs.get("losses")
        )

    # -- resuming ------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """What a Lightning checkpoint keeps of this callback (plain Python values, readable
        with ``torch.load(weights_only=True)``)."""
        if self.recorder is not None:
            return self._state(self.recorder)
        if self._last_state is not None:
            return dict(self._last_state)
        return {}  # never used: nothing to restore (Lightning stores no entry for it)

    def _state(self, rec: LossRecorder) -> dict[str, Any]:
        return {
            "version": _STATE_VERSION,
            "run_dir": str(self.run_dir),
            "offset": self._offset,
            "epoch_at_end": self._at_end,
            "recorder": rec.state_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keep a checkpoint's state; it is applied at ``on_train_start``, once Lightning has
        restored the weights and loops too (some strategies restore after ``on_fit_start``)."""
        version = state_dict.get("version")
        if version != _STATE_VERSION:
            raise SampletopoError(
                f"{_WHERE}: the checkpoint holds callback state of version {version!r}; this "
                f"sampletopo reads version {_STATE_VERSION}. Resume with the sampletopo that "
                "wrote it, or record into a new run folder."
            )
        self._loaded = dict(state_dict)

    def _resume(self, rec: LossRecorder, trainer: pl.Trainer) -> int | None:
        """Apply the loaded state; the recorder epoch of the restored module if it sits at an
        epoch's end, else ``None``."""
        state, self._loaded = self._loaded, None
        done = trainer.current_epoch
        if state is None:
            self._offset = 0
            if trainer.is_global_zero:
                warnings.warn(
                    f"{rec.run_name}: the checkpoint {str(trainer.ckpt_path)!r} holds no state of "
                    f"{_WHERE} (saved without it?), so whether its module is the model after "
                    f"{done} full epochs is unknown: it is not recorded now, and recording goes "
                    f"on at epoch {done + 1}.",
                    RecorderWarning,
                    stacklevel=3,
                )
            return None
        with warnings.catch_warnings():
            # The recorder's note on epochs missing from disk assumes they come again; here
            # _warn_about_disk says which can and which cannot.
            warnings.simplefilter("ignore", RuntimeWarning)
            rec.load_state_dict(state["recorder"])
        self._offset = int(state.get("offset", 0))
        here = state.get("epoch_at_end")
        # Lightning either goes on after the restored epoch (current_epoch == its number) or
        # replays that epoch's end hooks first (current_epoch one less); anything else means
        # the state does not describe this checkpoint's module.
        if here is not None and here - self._offset not in (done, done + 1):
            return None
        return None if here is None else int(here)

    def _warn_about_disk(
        self, rec: LossRecorder, first: int, *, kept_from: int, resumed: bool
    ) -> None:
        """Say which epochs before ``first`` (the first this fit can record) are missing for
        good, and which from ``kept_from`` on are on disk already and not recorded again."""
        on_disk = set.intersection(*(set(rec.recorded_epochs(s)) for s in self.splits))
        lost = sorted(set(range(first)) - on_disk)
        later = sorted(e for e in on_disk if e >= kept_from)
        name, folder = rec.run_name, str(self.run_dir)
        if lost:
            warnings.warn(
                f"{name}: epochs {ranges_text(lost)} are not recorded in {folder!r} and this fit "
                f"starts after them (at epoch {first}), so they stay missing. Record them from "
                "saved checkpoints (sampletopo record) if you kept any.",
                RecorderWarning,
                stacklevel=3,
            )
        if later:
            if resumed:
                how = "lie beyond the checkpoint this fit resumes from"
                fix = "equal to what the retraining gives when training is deterministic"
            else:
                how = "are on disk and this fit does not resume from a checkpoint"
                fix = "to go on, resume with trainer.fit(..., ckpt_path=...); or use a new folder"
            warnings.warn(
                f"{name}: epochs {ranges_text(later)} in {folder!r} {how}; they are kept as they "
                f"are and not recorded again when this fit reaches them ({fix}).",
                RecorderWarning,
                stacklevel=3,
            )


def _last_batch(trainer: pl.Trainer, batch_idx: int) -> bool:
    """Whether the batch just trained is its epoch's last: by the number of batches, or for a
    loader without a length by Lightning's look-ahead (its batch progress knows that the data
    ran out); not when max_steps or should_stop end the epoch early."""
    if batch_idx + 1 >= trainer.num_training_batches:
        return True
    progress = getattr(getattr(trainer.fit_loop, "epoch_loop", None), "batch_progress", None)
    return bool(getattr(progress, "is_last_batch", False))


@contextlib.contextmanager
def _precision_inputs(trainer: pl.Trainer, module: nn.Module) -> Iterator[None]:
    """Convert the module's inputs as the Trainer's precision plugin converts a batch (float64
    under ``"64-true"``, ...); without it a float32 batch would meet other-dtype weights."""
    plugin = getattr(trainer, "precision_plugin", None)
    if plugin is None:
        yield
        return
    handle = module.register_forward_pre_hook(lambda _m, args: plugin.convert_input(args))
    try:
        yield
    finally:
        handle.remove()


def _schedule_options(trainer: pl.Trainer) -> dict[str, Any]:
    """The Trainer's optimizers for the recorder's learning-rate record (the rates of every
    parameter group, read as each epoch starts). Lightning's schedulers step these optimizers,
    so the stored rates follow them, whichever scheduler and interval the module configures."""
    opts = list(trainer.optimizers)
    return {"optimizer": opts} if opts else {}
