"""Every error and warning class of sampletopo, in one tree.

Errors (all are :class:`SampletopoError`, which is a ``ValueError``)::

    SampletopoError            bad input or a state the caller can fix; the message says how
    ├── ParameterError         a value given to a function or a command-line flag is not allowed
    │                          (also a TypeError: a value of the wrong type is one of these)
    ├── RunFolderError         a folder is not the run or experiment asked for: no config, losses
    │   │                      of another model, data or settings, an epoch recorded twice, ...
    │   └── FolderLockedError  another process is writing the folder
    ├── DamagedFileError       a file does not read back whole (any file sampletopo reads: a run's
    │                          tables, a graph cache, a checkpoint, a saved dataset)
    ├── CheckpointChangedError a listed checkpoint vanished or changed while it was recorded
    ├── RunDivergedError       a run's training loss became NaN or infinite
    └── RankFailedError        another process of a torchrun group failed

Why these and not more: each is a different thing a caller does next. A ``ParameterError`` is
fixed by changing the call; a ``RunFolderError`` by picking another folder (or waiting, for a
``FolderLockedError``); a ``DamagedFileError`` by deleting or restoring the file it names
(``.path``); the last three are events of a run (a changed checkpoint, a diverged run, a failed
rank), with what is needed to go on as attributes. ``DamagedFileError`` stands beside
``RunFolderError``, not under it, because the damaged file may be anywhere: a checkpoint folder,
a dataset folder, a cache. Errors outside the tree are bugs, or errors of the operating system
(a full disk, a missing path), which keep their own types; the command line turns those into one
line too (:mod:`sampletopo.cli`).

Warnings (all are :class:`SampletopoWarning`, a ``UserWarning``; those that say something about
numbers or files that went wrong are also ``RuntimeWarning``, as they were before the tree)::

    SampletopoWarning
    ├── TopologyWarning        an epoch was skipped (missing, non-finite) and the rest carried on
    ├── FewerPairsWarning      fewer regions exist than were asked for
    ├── FigureWarning          part of a figure set was left out
    ├── NoImagesWarning        the dataset has no images; image grids skipped
    ├── ReportWarning          part of a report was left out (a damaged table, a landscape)
    ├── RecorderWarning        a recorder skipped an epoch it cannot record, or kept epochs
    │   └── ExplodingLossWarning (also RuntimeWarning) an epoch's mean loss exploded (finite)
    ├── ModelSpecWarning       a loop's run names no model later commands can rebuild
    ├── DataRootWarning        a run reads pickled data from outside its experiment
    ├── NonFiniteLossWarning   (also RuntimeWarning) recorded losses hold NaN or inf
    ├── NonFiniteLandscapeWarning (also RuntimeWarning) grid points with NaN or inf loss
    ├── TraceNotConvergedWarning (also RuntimeWarning) the Hutchinson trace used every probe
    ├── DamagedFileWarning     (also RuntimeWarning) a damaged file was set aside or rebuilt
    ├── MissingEpochsWarning   (also RuntimeWarning) epochs a saved recorder state lists are gone
    ├── CheckpointChangedWarning (also RuntimeWarning) a changed checkpoint's epoch was skipped
    ├── StaleLockWarning       (also RuntimeWarning) a dead writer's lock was taken over
    └── UnlockedFolderWarning  (also RuntimeWarning) the file system cannot lock files

``warnings.simplefilter("error", sampletopo.SampletopoWarning)`` turns them all into errors.
The checks that raise :class:`ParameterError` are in :mod:`sampletopo._validation`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# ---------------------------------------------------------------------------------------------
# Errors


class SampletopoError(ValueError):
    """Bad input to sampletopo, or a state the caller can fix: the message names the value and
    the fix.

    Subclasses ``ValueError`` so callers that already catch ``ValueError`` keep working.
    """


class ParameterError(SampletopoError, TypeError):
    """A value given to a function, a model option, a config entry or a command-line flag is not
    one it allows.

    The message has one form: "The 'k' parameter of knn_graph must be an int in the range
    [1, 499]. Got 500 instead." and, where it helps, how to fix it. ``parameter`` is the name
    ('k'). Also a ``TypeError``, as scikit-learn's ``InvalidParameterError`` is: a value of the
    wrong type is refused with the same message.
    """

    def __init__(self, message: str, *, parameter: str | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter

    def __reduce__(self) -> tuple[Any, ...]:
        # Raised in topology worker processes too: keep the parameter name across pickling.
        return (_rebuild_parameter_error, (type(self), str(self), self.parameter))


def _rebuild_parameter_error(
    cls: type[ParameterError], message: str, parameter: str | None
) -> ParameterError:
    return cls(message, parameter=parameter)


class RunFolderError(SampletopoError):
    """A folder is not the run or experiment folder asked for, or does not fit what is asked of
    it: no ``config.toml`` or losses, losses of another model, data, mode or settings, an epoch
    already recorded, diagrams computed with other graph settings. Pick another folder (or the
    settings the folder was written with); the message names the folder."""


class FolderLockedError(RunFolderError):
    """Another process is writing the folder (or file); ``holder`` describes it (may be empty)."""

    def __init__(self, message: str, *, holder: dict[str, Any]) -> None:
        super().__init__(message)
        self.holder = holder

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_locked, (type(self), str(self), self.holder))


def _rebuild_locked(
    cls: type[FolderLockedError], message: str, holder: dict[str, Any]
) -> FolderLockedError:
    return cls(message, holder=holder)


class DamagedFileError(SampletopoError):
    """A file that does not read back whole; ``path`` is the file, the message says the fix."""

    def __init__(self, path: str | Path, why: str, fix: str) -> None:
        self.path = Path(path)
        self.why = why
        self.fix = fix
        super().__init__(f"{str(self.path)!r} is damaged: {why}. {fix}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Raised in topology worker processes too: rebuild from the parts, not the message.
        return (type(self), (self.path, self.why, self.fix))


class CheckpointChangedError(SampletopoError):
    """A checkpoint vanished or changed (size or modification time) after the folder was listed.

    ``reason`` holds the first sentence (what happened to which file), without the advice.
    """

    def __init__(self, reason: str, advice: str = "") -> None:
        super().__init__(reason + advice)
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason, str(self)[len(self.reason) :]))


class RunDivergedError(SampletopoError):
    """A run's mean training loss became non-finite; training stopped at ``epoch``."""

    def __init__(self, message: str, *, epoch: int) -> None:
        super().__init__(message)
        self.epoch = epoch

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_diverged, (type(self), str(self), self.epoch))


def _rebuild_diverged(cls: type[RunDivergedError], message: str, epoch: int) -> RunDivergedError:
    return cls(message, epoch=epoch)


class RankFailedError(SampletopoError):
    """Another process of a ``torchrun`` group failed with an error that is not a
    :class:`SampletopoError` (a bug, or the device running out of memory); every rank stops with
    this one. ``rank`` is the failed process, ``kind`` the type name of its error; the message
    holds that error's text and its last lines of traceback."""

    def __init__(self, message: str, *, rank: int, kind: str) -> None:
        super().__init__(message)
        self.rank = rank
        self.kind = kind

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_rank_failed, (type(self), str(self), self.rank, self.kind))


def _rebuild_rank_failed(
    cls: type[RankFailedError], message: str, rank: int, kind: str
) -> RankFailedError:
    return cls(message, rank=rank, kind=kind)


# ---------------------------------------------------------------------------------------------
# Warnings


class SampletopoWarning(UserWarning):
    """Base of every warning sampletopo gives: something was skipped, kept as it is or taken
    over, and the rest carried on. The message says what and where."""


class TopologyWarning(SampletopoWarning):
    """Something was skipped (a missing or non-finite epoch) and the rest carried on."""


class ComparisonWarning(SampletopoWarning):
    """Replicates or variants being compared differ (in their recorded epochs, say); the common
    part was compared and the message names what was left out."""


class FewerPairsWarning(SampletopoWarning):
    """More regions were asked for than the tree has pairs; all of them are returned."""


class FigureWarning(SampletopoWarning):
    """Part of a figure set was left out; the message says what and why."""


class NoImagesWarning(SampletopoWarning):
    """The dataset has no images to show; image grids were skipped, tables and curves kept."""


class ReportWarning(SampletopoWarning):
    """Part of a report was left out (a damaged table or landscape, a figure that failed); the
    message says which and why."""


class RecorderWarning(SampletopoWarning):
    """A recorder skipped an epoch it cannot record (cut short, or lost to a resume) or kept
    epochs on disk as they are; the message names the epochs and the run."""


class ExplodingLossWarning(RecorderWarning, RuntimeWarning):
    """A recorded epoch's mean loss is finite but exploded: more than
    :data:`~sampletopo._exploding.FACTOR` times the previous recorded epoch's, or above
    :data:`~sampletopo._exploding.BOUND`. The message names the run, split and epoch; the
    epoch is recorded as it is and flagged in the summary table (``exploding``)."""


class ModelSpecWarning(SampletopoWarning):
    """A run recorded by a loop of your own names no model that landscape and hessian can
    rebuild (the model's class does not import, or needs options); the message says what to
    pass (``LossRecorder(..., model_spec=...)``, or ``sampletopo landscape --model``)."""


class DataRootWarning(SampletopoWarning):
    """A run folder's config reads pickle-based data from a folder outside the run's experiment."""


class NonFiniteLossWarning(SampletopoWarning, RuntimeWarning):
    """Some recorded losses are NaN or infinite; they are stored as such, never dropped."""


class NonFiniteLandscapeWarning(SampletopoWarning, RuntimeWarning):
    """Some grid points have a NaN or infinite loss (kept in the landscape as they are)."""


class TraceNotConvergedWarning(SampletopoWarning, RuntimeWarning):
    """:func:`~sampletopo.hessian.hutchinson_trace` used all ``max_samples`` probes without
    reaching ``rtol``."""


class DamagedFileWarning(SampletopoWarning, RuntimeWarning):
    """A damaged file was set aside or recomputed; the message names it."""


class MissingEpochsWarning(SampletopoWarning, RuntimeWarning):
    """Epochs that a saved recorder state lists are no longer on disk; they are recorded again
    when the run reaches them."""


class CheckpointChangedWarning(SampletopoWarning, RuntimeWarning):
    """A checkpoint changed or vanished after its folder was listed, and its epoch was skipped
    (``on_change="skip"``)."""


class StaleLockWarning(SampletopoWarning, RuntimeWarning):
    """A lock left by a process that died was taken over."""


class UnlockedFolderWarning(SampletopoWarning, RuntimeWarning):
    """The file system of a folder cannot lock files, so a second writer would not be stopped;
    the folder is written without a lock."""


# Every class above, in the order they are defined: the package exports them all.
__all__ = [
    name
    for name, value in list(globals().items())
    if isinstance(value, type) and issubclass(value, (SampletopoError, SampletopoWarning))
]
