"""The recorder and its readers' former home, kept so that ``sampletopo.record`` imports work.

What was here lives, one job per module, in:

- :mod:`sampletopo.recorder`: :class:`LossRecorder` (the training-loop callback) and
  :func:`evaluate_losses`;
- :mod:`sampletopo.from_checkpoints`: :func:`record_checkpoints`;
- :mod:`sampletopo._writer`: the writer both share (manifest, model signature, atomic tables);
- :mod:`sampletopo.readers`: the loss tables, manifest and run config read back;
- :mod:`sampletopo.runs`: where everything lies, and a run's dataset and model.

Every public name that was importable from here still is; the readers renamed since
(``load_losses``, ``loss_matrix``, ``recorded_epochs``) warn with a ``DeprecationWarning`` that
names their replacement (see :mod:`sampletopo._deprecated`).
"""

from __future__ import annotations

from sampletopo._deprecated import load_losses, loss_matrix, recorded_epochs
from sampletopo._runconfig import (
    TRUSTED_DATA_ENV,
    DataRootWarning,
    dataset_from_config,
    model_from_config,
    model_signature,
    read_toml,
    warn_foreign_data_root,
    write_toml,
)
from sampletopo._writer import NonFiniteLossWarning
from sampletopo.from_checkpoints import record_checkpoints
from sampletopo.readers import read_loss_table, read_manifest, read_run_config
from sampletopo.recorder import LossRecorder, check_dataset, evaluate_losses
from sampletopo.runs import LOSS_SCHEMA, PathLike, as_run, data_config, load_run_model

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
    # importable here before, not part of the listed API
    "DataRootWarning",
    "TRUSTED_DATA_ENV",
    "check_dataset",
    "check_run_data",
    "data_config",
    "has_losses",
    "model_signature",
    "read_toml",
    "warn_foreign_data_root",
    "write_toml",
]


def epoch_file(run_dir: PathLike, split: str, epoch: int):  # noqa: ANN201
    """Path of the loss table of ``split`` at ``epoch``: ``run_dir/losses/split/epoch=NNNN.parquet``
    (:meth:`sampletopo.runs.Run.loss_file`)."""
    return as_run(run_dir).loss_file(split, epoch)


def has_losses(run_dir: PathLike) -> bool:
    """Whether any loss table is recorded in ``run_dir``
    (:meth:`sampletopo.runs.Run.has_losses`)."""
    return as_run(run_dir).has_losses()


def check_run_data(run_dir: PathLike, ds, *, splits=None) -> None:  # noqa: ANN001
    """Refuse ``ds`` if it is not the data the run recorded
    (:meth:`sampletopo.runs.Run.check_data`)."""
    as_run(run_dir).check_data(ds, splits=splits)
