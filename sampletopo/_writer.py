"""The loss-table writer that every recorder shares: one object per run folder being recorded.

:class:`RunWriter` is what :class:`~sampletopo.recorder.LossRecorder` (a training loop's
callback, ``sampletopo train``) and :func:`~sampletopo.from_checkpoints.record_checkpoints`
(``sampletopo record``) have in common: the run folder's lock (when the caller does not hold it
already), the manifest and the check that the folder holds losses of this data and mode, the
config of a folder a user's own loop records into, the model-signature check, moving aside
tables that do not read back whole, which splits of an epoch are still to be recorded, the
atomic write of one table with its non-finite warning, and the learning-rate schedule
(``losses/schedule.parquet``: rewritten whole and atomically when an epoch's rates are new). It evaluates nothing and knows nothing
about processes: under ``torch.distributed`` only rank 0 makes one.

Who records (``source``) is explicit: ``"recorder"`` (a user's loop through a LossRecorder; the
writer locks the folder and writes a config naming the data when the folder has none),
``"train"`` and ``"checkpoints"`` (sampletopo's drivers, which lock the folder and write the
config themselves). A folder holding losses of one source is refused to another.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl

from sampletopo._errors import (
    DamagedFileError,
    ExplodingLossWarning,
    ModelSpecWarning,
    NonFiniteLossWarning,
    RecorderWarning,
    RunFolderError,
    SampletopoError,
)
from sampletopo._exploding import why_exploding
from sampletopo._folders import FolderLock, check_folder, lock_folder
from sampletopo._losses import Loss
from sampletopo._runconfig import model_signature, write_toml
from sampletopo._runfiles import move_aside, parquet_problem, read_parquet, write_parquet
from sampletopo._validation import invalid
from sampletopo.runs import (
    LOSS_SCHEMA,
    MARGIN_COLUMN,
    SCHEDULE_SCHEMA,
    SPLITS,
    PathLike,
    as_run,
    data_config,
    loss_rows,
)

if TYPE_CHECKING:
    from torch import nn

    from sampletopo.data import Dataset

__all__ = ["NonFiniteLossWarning", "RunWriter", "Source", "loss_table"]

Source = Literal["recorder", "train", "checkpoints"]
_SOURCES: dict[str, str] = {
    "train": "`sampletopo train`",
    "checkpoints": "`sampletopo record` (from checkpoints)",
    "recorder": "a LossRecorder in a training loop",
}


def loss_table(
    epoch: int,
    split: str,
    labels: np.ndarray,
    preds: np.ndarray | None,
    losses: np.ndarray,
    margins: np.ndarray | None = None,
) -> pl.DataFrame:
    """One loss table (columns of :data:`~sampletopo.runs.LOSS_SCHEMA`), samples in order,
    plus the optional ``margin`` column (:data:`~sampletopo.runs.MARGIN_COLUMN`) when
    ``margins`` are given (class labels only).

    Float ``labels`` are regression targets: then ``label``, ``pred`` and ``correct`` are null
    (there are no classes to name, predict or get right)."""
    n = labels.shape[0]
    if labels.dtype.kind == "f" or preds is None:
        return pl.DataFrame(
            {
                "epoch": np.full(n, epoch, dtype=np.int32),
                "split": [split] * n,
                "sample": np.arange(n, dtype=np.int64),
                "label": pl.Series([None] * n, dtype=pl.Int64),
                "pred": pl.Series([None] * n, dtype=pl.Int64),
                "loss": losses.astype(np.float64),
                "correct": pl.Series([None] * n, dtype=pl.Boolean),
            },
            schema=LOSS_SCHEMA,
        )
    df = pl.DataFrame(
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
    if margins is None:
        return df
    return df.with_columns(pl.Series(MARGIN_COLUMN, margins, dtype=pl.Float64))


def _write_table(df: pl.DataFrame, path: Path) -> None:
    # One place every loss table goes through (the kill tests replace it to die mid-write).
    write_parquet(df, path)


class RunWriter:
    """Writes one run folder's loss tables; see the module docstring for what it guards.

    Parameters
    ----------
    run_dir : path or Run
        The run folder.
    dataset : Dataset
        The data the tables hold (its labels, sizes and fingerprints).
    splits : sequence of str
        The splits this writer records.
    mode : {"eval", "train_pass"}
        How the losses are computed (kept in the manifest; a folder holds one mode).
    on_exists : {"skip", "error"}
        An epoch already on disk: skip it, or refuse (:meth:`pending_splits`).
    source : {"recorder", "train", "checkpoints"}
        Who records (see the module docstring); ``"recorder"`` locks the folder.
    loss : Loss, optional
        The per-sample loss (:mod:`sampletopo._losses`; default cross-entropy): kept in the
        manifest, where another loss is refused, and in a new recorder folder's config.

    The folder is checked and prepared when the writer is made: a manifest of other data or
    another mode is refused, a missing one written, temporary files of a killed writer removed
    and damaged tables moved aside. :meth:`close` releases the lock (if it took one).
    """

    def __init__(
        self,
        run_dir: PathLike,
        dataset: Dataset,
        *,
        splits: Sequence[str],
        mode: str,
        on_exists: str,
        source: Source,
        loss: Loss | None = None,
        model_spec: tuple[Any, Mapping[str, Any] | None] | None = None,
    ) -> None:
        self.run = as_run(run_dir)
        # A loop's own recorder: which model to store in config.toml (None: find out).
        self._model_spec = model_spec
        self._model_noted = source != "recorder"  # the drivers write the model themselves
        self.dataset = dataset
        self.splits = tuple(splits)
        self.mode = mode
        self.on_exists = on_exists
        self.source = source
        self.loss = loss if loss is not None else Loss("cross_entropy")
        self.nonfinite: dict[tuple[str, int], int] = {}
        self._labels = {s: dataset.labels(s) for s in self.splits}
        self._model_sig: str | None = None
        self._lock: FolderLock | None = None
        self._schedule: dict[int, list[float]] | None = None  # epoch -> rates, read when needed
        self._means: dict[tuple[str, int], float] = {}  # (split, epoch) -> mean loss written
        # A file where a folder of the layout must be is one error naming it, before anything
        # is written (os.makedirs would raise FileExistsError from deep inside the writer).
        check_folder(self.run.path, role="run folder")
        check_folder(self.run.losses_dir, role="losses folder")
        for s in self.splits:
            check_folder(self.run.loss_dir(s), role=f"{s} losses folder")
        if source == "recorder":  # train_run and record_checkpoints hold the lock themselves
            self._lock = lock_folder(self.run.path, what="recording losses", role="run folder")
        try:
            self._check_manifest()
            self._write_config()
            for s in self.splits:
                for p in self.run.loss_temporaries(s):
                    p.unlink(missing_ok=True)
            self._set_aside_damaged()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the run folder's lock, if this writer took it."""
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    # -- the folder's manifest and config ------------------------------------------------------

    def manifest(self) -> dict[str, Any]:
        """The manifest of this writer's data and mode (without a model)."""
        return {
            "dataset": self.dataset.name,
            "mode": self.mode,
            "loss": self.loss.name,
            "splits": {
                s: {"n": self.dataset.n(s), "fingerprint": self.dataset.fingerprint(s)}
                for s in SPLITS
            },
        }

    def _check_manifest(self) -> None:
        mine = self.manifest()
        old = self.run.read_manifest()
        if old is None:
            self.run.write_manifest(mine)
            return
        where = str(self.run.path)
        for s in self.splits:
            theirs = old.get("splits", {}).get(s, {})
            if theirs and theirs.get("fingerprint") != mine["splits"][s]["fingerprint"]:
                raise RunFolderError(
                    f"Run folder {where!r} holds losses of other data: split {s!r} "
                    f"was recorded on {old.get('dataset')!r} with fingerprint "
                    f"{theirs.get('fingerprint')}, this dataset {self.dataset.name!r} has "
                    f"{mine['splits'][s]['fingerprint']}. Use a new run folder."
                )
        theirs_loss = old.get("loss", "cross_entropy")  # manifests before losses were chosen
        if theirs_loss != self.loss.name:
            raise RunFolderError(
                f"Run folder {where!r} holds losses computed with {theirs_loss!r}; got loss "
                f"{self.loss.name!r}. One run folder holds one loss: use the same loss or a new "
                "run folder."
            )
        if old.get("mode") != self.mode:
            raise RunFolderError(
                f"Run folder {where!r} was recorded with mode {old.get('mode')!r}; "
                f"got mode {self.mode!r}. Mixing modes in one run would mix exact and "
                "approximate losses: use the same mode or a new run folder."
            )

    def _write_config(self) -> None:
        """A run folder without ``config.toml`` gets one naming its data (and how to rebuild
        it), so the topology, sample and report commands can use a run recorded from any
        training loop. Folders written by ``sampletopo train`` or ``record`` already have one."""
        if self.run.config_file.exists():
            theirs = self.run.read_config().get("source", "train")
            if theirs != self.source and self.run.has_losses():
                raise RunFolderError(
                    f"Run folder {str(self.run.path)!r} holds losses written by "
                    f"{_SOURCES.get(theirs, theirs)}; recording {_SOURCES.get(self.source, '')} "
                    "into it would skip its epochs or mix two runs. Use a new run folder."
                )
            return
        cfg: dict[str, Any] = {
            "variant": self.run.name,
            "source": "recorder",
            "record_mode": self.mode,
            **data_config(self.dataset, self.run),
        }
        if self.loss.rebuildable:
            cfg["loss"] = self.loss.name
        write_toml(self.run.config_file, cfg)

    def check_model(self, model: nn.Module) -> None:
        """The run folder holds losses of one architecture: the first recorded model's class and
        parameter names and shapes are kept in the manifest, and another model is refused
        (otherwise its epochs already on disk would be skipped silently)."""
        from torch import nn

        net = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
        net = getattr(net, "_orig_mod", net)  # torch.compile's wrapper: the same architecture
        sig = model_signature(net)
        if self._model_sig == sig["signature"]:
            return
        manifest = self.run.read_manifest() or self.manifest()
        old = manifest.get("model")
        # A model whose first epoch was refused (say, for outputs that do not fit the labels)
        # recorded nothing: it must not lock the run folder against the corrected model.
        if old is None or (old.get("signature") != sig["signature"] and not self.run.has_losses()):
            manifest["model"] = sig
            self.run.write_manifest(manifest)
        elif old.get("signature") != sig["signature"]:
            raise RunFolderError(
                f"Run folder {str(self.run.path)!r} holds losses of another model "
                f"({old.get('class')}, {old.get('n_params', 0):,} parameters); this one is "
                f"{sig['class']} ({sig['n_params']:,} parameters). Its epochs on disk would be "
                "skipped, not recorded: use a new run folder."
            )
        self._model_sig = sig["signature"]
        if not self._model_noted:
            self._model_noted = True
            self._note_model(net)

    def _note_model(self, net: nn.Module) -> None:
        """Store the model of a loop's own recorder in ``config.toml`` (so landscape and
        hessian can rebuild it): the ``model_spec`` given, else the import path of the model's
        class when that class, called with no options, rebuilds the same architecture; else
        warn once, in one line, what to pass."""
        from sampletopo._imports import import_path_of

        if "model" in self.run.read_config():
            return
        if self._model_spec is not None:
            self.run.set_model(*self._model_spec, where="LossRecorder")  # wrong: one error
            return
        cls = type(net)
        path = import_path_of(cls)
        if path is None:
            why = (
                f"its class {cls.__qualname__!r} is defined in {cls.__module__!r}, which later "
                "commands cannot import"
            )
        else:
            try:
                self.run.set_model(path, {}, where="LossRecorder")
                return
            except SampletopoError as exc:
                text = str(exc)
                if "architecture the run recorded" in text:  # other options, other sizes
                    text = "it builds other parameter names or shapes"
                why = f"{path}() with no options does not rebuild it ({text.split('. ')[0]})"
        warnings.warn(
            ModelSpecWarning(
                f"Run {self.run.name!r}: config.toml names no model, so landscape and hessian "
                f"cannot rebuild it: {why}. Pass LossRecorder(..., "
                'model_spec="pkg.module:factory", model_kwargs={...}), or later `sampletopo '
                "landscape RUN --model pkg.module:factory --model-kw KEY=VALUE`."
            ),
            stacklevel=_outside_sampletopo(),  # the loop's on_train_epoch_end call
        )

    # -- tables on disk ------------------------------------------------------------------------

    def _set_aside_damaged(self) -> None:
        """Move aside every table of this writer's splits that does not read back whole (its
        footer and checksum, see :mod:`sampletopo._runfiles`), so that its epoch counts as not
        recorded and is recorded again when reached."""
        for s in self.splits:
            for ep, path in self.run.loss_files(s).items():
                self._whole(s, ep, path)

    def _whole(self, split: str, epoch: int, path: Path) -> bool:
        """Whether the table at ``path`` reads back whole; if not, it is moved aside, warning."""
        n = self.dataset.n(split)
        why = parquet_problem(path, LOSS_SCHEMA, rows=n, rows_check=loss_rows(split, epoch, n))
        if why is None:
            return True
        move_aside(
            path,
            why=why,
            then=f"epoch {epoch} of split {split!r} counts as not recorded and is recorded again "
            "when the run reaches it (a loop restarted after that epoch leaves it missing).",
        )
        return False

    def pending_splits(self, epoch: int) -> list[str]:
        """Splits whose table of ``epoch`` is not on disk yet (refused with on_exists='error');
        a table that does not read back whole is moved aside and counts as not on disk."""
        todo = []
        for s in self.splits:
            path = self.run.loss_file(s, epoch)
            if path.exists() and self._whole(s, epoch, path):
                if self.on_exists == "error":
                    raise RunFolderError(
                        f"Epoch {epoch} of split {s!r} is already recorded in "
                        f"{str(self.run.path)!r}; refusing to record it again "
                        "(on_exists='error'). Use on_exists='skip' or a new run folder."
                    )
            else:
                todo.append(s)
        return todo

    # -- the learning-rate schedule ------------------------------------------------------------

    def _stored_schedule(self) -> dict[int, list[float]]:
        """``epoch -> rates`` on disk (read once); a damaged file is moved aside, warning, and its
        epochs count as not stored (they are stored again when recorded again)."""
        if self._schedule is None:
            try:
                df = self.run.read_schedule()
            except DamagedFileError as exc:
                move_aside(
                    self.run.schedule_file,
                    why=exc.why,
                    then="the rates of the epochs recorded from now on are stored anew.",
                )
                df = None
            out: dict[int, list[float]] = {}
            if df is not None:
                for (e,), part in df.sort("group").group_by(["epoch"], maintain_order=True):
                    out[int(e)] = [float(v) for v in part["lr"]]  # type: ignore[arg-type]
            self._schedule = out
        return self._schedule

    def write_schedule(self, epoch: int, rates: Sequence[float]) -> Path | None:
        """Store the learning rates (one per parameter group) that ``epoch`` trained with.

        The table is rewritten whole, atomically, only when the epoch's rates are not stored
        yet, so a killed or restarted run neither loses nor repeats a row. Rates already stored
        for the epoch are kept; other ones replace them with a :class:`RecorderWarning` (a loop
        restarted with another schedule). Returns the file, or ``None`` when nothing changed.
        """
        stored = self._stored_schedule()
        rates = [float(r) for r in rates]
        old = stored.get(epoch)
        if old == rates:
            return None
        if old is not None:
            warnings.warn(
                RecorderWarning(
                    f"{self.run.name}: epoch {epoch} trained with learning rate(s) {rates}, "
                    f"but the run's stored schedule says {old} (a restart with another "
                    "schedule?); the stored schedule now says what this run did."
                ),
                stacklevel=4,
            )
        stored[epoch] = rates
        eps = sorted(stored)
        df = pl.DataFrame(
            {
                "epoch": [e for e in eps for _ in stored[e]],
                "group": [g for e in eps for g in range(len(stored[e]))],
                "lr": [r for e in eps for r in stored[e]],
            },
            schema=SCHEDULE_SCHEMA,
        )
        path = self.run.schedule_file
        write_parquet(df, path)
        return path

    def write(
        self,
        split: str,
        epoch: int,
        losses: np.ndarray,
        preds: np.ndarray | None,
        margins: np.ndarray | None = None,
    ) -> Path:
        """Write one split's table for ``epoch`` atomically; warn about non-finite losses.
        ``preds`` is ignored (stored as nulls) for regression targets; ``margins`` (optional,
        class labels only) fill the ``margin`` column."""
        labels = self._labels[split]
        n = labels.shape[0]
        losses = np.asarray(losses, dtype=np.float64)
        if self.dataset.is_regression:
            preds = None  # no classes to predict
        else:
            preds = np.asarray(preds, dtype=np.int64)
        if losses.shape != (n,) or (preds is not None and preds.shape != (n,)):
            raise invalid(
                "losses",
                f"one loss and one prediction per sample of split {split!r} ({n})",
                where="LossRecorder.write",
                got=f"{losses.shape} losses and "
                f"{'no' if preds is None else preds.shape} predictions",
            )
        bad = ~np.isfinite(losses)
        if bad.any():
            n_nan = int(np.isnan(losses).sum())
            self.nonfinite[(split, epoch)] = int(bad.sum())
            warnings.warn(
                NonFiniteLossWarning(
                    f"{self.run.name}: {int(bad.sum())} of {losses.size} losses of split "
                    f"{split!r} at epoch {epoch} are not finite ({n_nan} NaN, "
                    f"{int(bad.sum()) - n_nan} inf; first at sample "
                    f"{int(np.flatnonzero(bad)[0])}). They are recorded as such; the training "
                    "probably diverged (lower the learning rate)."
                ),
                stacklevel=4,  # the user's call of on_train_epoch_end
            )
        path = self.run.loss_file(split, epoch)
        if preds is None:
            margins = None  # no classes, no margins
        if margins is not None:
            margins = np.asarray(margins, dtype=np.float64)
            if margins.shape != (n,):
                raise invalid(
                    "margins", f"one margin per sample of split {split!r} ({n})",
                    where="LossRecorder.write", got=f"{margins.shape} margins",
                )  # fmt: skip
        _write_table(loss_table(epoch, split, labels, preds, losses, margins), path)
        if not bad.any() and losses.size:
            self._warn_if_exploding(split, epoch, float(losses.mean()))
        return path

    def _mean_loss(self, split: str, epoch: int) -> float | None:
        """The mean loss of a recorded table (written by this writer, else read back)."""
        if (split, epoch) not in self._means:
            try:
                df = read_parquet(
                    self.run.loss_file(split, epoch), LOSS_SCHEMA, columns=["loss"], fix=""
                )
            except (DamagedFileError, OSError):
                return None
            self._means[(split, epoch)] = float(df["loss"].mean())  # type: ignore[arg-type]
        return self._means[(split, epoch)]

    def _warn_if_exploding(self, split: str, epoch: int, mean: float) -> None:
        """Warn when the epoch's mean loss explodes after the previous recorded epoch's
        (the rule of :mod:`sampletopo._exploding`)."""
        self._means[(split, epoch)] = mean
        before = [e for e in self.run.loss_epochs(split) if e < epoch]
        previous = self._mean_loss(split, before[-1]) if before else None
        why = why_exploding(mean, previous, previous_epoch=before[-1] if before else None)
        if why is not None:
            warnings.warn(
                ExplodingLossWarning(
                    f"{self.run.name}: the {split} loss exploded at epoch {epoch}: {why}. It "
                    "is recorded as it is and flagged in the summary table (column "
                    "'exploding'); the training probably diverges (lower the learning rate, "
                    "clip gradients, add warm-up)."
                ),
                stacklevel=4,  # the user's call of on_train_epoch_end
            )


def _outside_sampletopo() -> int:
    """The ``stacklevel`` of the first caller outside the sampletopo package (the warning then
    names the user's line, however deep the recorder's calls go)."""
    import sys

    package = str(Path(__file__).resolve().parent)
    frame = sys._getframe(1)
    level = 1
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(package):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level
