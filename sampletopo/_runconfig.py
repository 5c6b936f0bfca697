"""What a run's ``config.toml`` holds, and rebuilding a run's data and model from it.

Holds the TOML reading and writing (:func:`read_toml`, :func:`write_toml`), the types each config
entry must have (:func:`check_run_config`), the dataset and model a config describes
(:func:`dataset_from_config`, :func:`model_from_config`), what identifies a model's architecture
(:func:`model_signature`) and the warning about data read from folders nobody vouched for
(:func:`warn_foreign_data_root`). It knows no paths of a run folder: :mod:`sampletopo.runs` does,
and calls these. torch is imported only by the functions that build models.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sampletopo._errors import DataRootWarning, RunFolderError
from sampletopo._io import write_atomic
from sampletopo._names import SPLITS
from sampletopo._runfiles import DamagedFileError, read_npz

if TYPE_CHECKING:
    from torch import nn

    from sampletopo.data import Dataset

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "DATA_KEYS",
    "DataRootWarning",
    "TRUSTED_DATA_ENV",
    "check_run_config",
    "dataset_from_config",
    "load_saved_dataset",
    "model_from_config",
    "model_signature",
    "read_toml",
    "warn_foreign_data_root",
    "write_json",
    "write_toml",
]


def read_toml(path: Path, *, fix: str) -> dict[str, Any]:
    """A TOML file as a dict; a file that is not valid TOML gives one error ending in ``fix``."""
    try:
        with open(path, "rb") as fh:
            return dict(tomllib.load(fh))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DamagedFileError(path, f"it is not a valid TOML file ({exc})", fix) from exc


def write_toml(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as a TOML file, atomically (see :func:`sampletopo._io.write_atomic`)."""
    import tomli_w

    write_atomic(path, lambda fh: fh.write(tomli_w.dumps(dict(data)).encode()))


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, lambda fh: fh.write(json.dumps(data, indent=2).encode()))


def model_signature(model: nn.Module) -> dict[str, Any]:
    """Class name, parameter count and a hash of the parameter names and shapes of ``model``:
    what identifies an architecture (not its weights)."""
    h = hashlib.sha256(type(model).__name__.encode())
    n = 0
    for name, p in model.named_parameters():
        h.update(f"{name}:{tuple(p.shape)};".encode())
        n += p.numel()
    return {"class": type(model).__name__, "n_params": int(n), "signature": h.hexdigest()[:16]}


# The config entries that say which data a run was recorded on.
DATA_KEYS = ("data", "data_root", "data_seed", "val_fraction", "max_samples", "data_file")
# What a run config's data entries mean when left out: TrainConfig's defaults (val_fraction None:
# the dataset's own default, its test set where it has one).
_DATA_DEFAULTS: dict[str, Any] = {
    "data_root": "data",
    "data_seed": 0,
    "val_fraction": None,
    "max_samples": 0,
}
DATA_ENTRIES_FIX = (
    'Add data = "NAME" to its config.toml, with the data_root, data_seed, val_fraction and '
    'max_samples it was recorded with where they are not the defaults (data_root "data", '
    "data_seed 0, the dataset's own val_fraction, max_samples 0: every sample)."
)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# The run config entries that readers use, and what each must be (when present).
_RUN_CONFIG_TYPES: dict[str, tuple[str, Any]] = {
    "data": (
        "a dataset name, .npz path, 'imagefolder:FOLDER' or import path (string)",
        lambda v: isinstance(v, str) and v != "",
    ),
    "data_root": ("a folder path (string)", lambda v: isinstance(v, str)),
    "data_seed": ("an int >= 0", lambda v: _is_int(v) and v >= 0),
    "val_fraction": (
        "a number in (0, 1) or 'test'",
        lambda v: v == "test" or (isinstance(v, (int, float)) and not isinstance(v, bool)),
    ),
    "max_samples": ("an int >= 0 (0: every sample)", lambda v: _is_int(v) and v >= 0),
    "data_file": ("a file path (string)", lambda v: isinstance(v, str) and v != ""),
    "data_rebuildable": ("true or false", lambda v: isinstance(v, bool)),
    "model": (
        "a model name, 'torchvision:NAME' or import path 'pkg.module:factory' (string)",
        lambda v: isinstance(v, str) and v != "",
    ),
    "model_kwargs": ("a table of model options", lambda v: isinstance(v, dict)),
    "milestones": (
        "a list of epoch numbers (ints)",
        lambda v: isinstance(v, list) and all(_is_int(m) for m in v),
    ),
    "record_mode": ("'eval' or 'train_pass'", lambda v: v in ("eval", "train_pass")),
    "loss": (
        "'cross_entropy', 'mse' or a loss function's import path 'pkg.module:function'",
        lambda v: isinstance(v, str) and bool(v),
    ),
    "record_splits": (
        f"a list of splits from {SPLITS}",
        lambda v: isinstance(v, list) and all(s in SPLITS for s in v),
    ),
    "source": ("a string (train, checkpoints or recorder)", lambda v: isinstance(v, str)),
    "checkpoint_files": (
        "a table of epoch = checkpoint path",
        lambda v: isinstance(v, dict) and all(isinstance(p, str) for p in v.values()),
    ),
}


def check_run_config(cfg: Mapping[str, Any], path: Path) -> None:
    """Refuse a run config whose entries have the wrong type, naming the entry and the file
    (otherwise ``int("abc")`` or ``cfg["data"]`` fails far from the cause)."""
    for key, (allowed, ok) in _RUN_CONFIG_TYPES.items():
        if key in cfg and not ok(cfg[key]):
            raise RunFolderError(
                f"The {key!r} entry of {str(path)!r} must be {allowed}. Got {cfg[key]!r} "
                "instead. Set it to the value the run was recorded with, or record the run again "
                "into a new folder."
            )


def load_saved_dataset(path: Path) -> Dataset:
    if not path.is_file():
        raise RunFolderError(
            f"The saved dataset {str(path)!r} that the run's config.toml names is missing. "
            "Restore it (it lives in <experiment>/datasets/), or record the run again."
        )
    fix = (
        "It holds the data the run was recorded from: restore it from a copy, or record the run "
        "again."
    )
    from sampletopo.data import Dataset

    z = read_npz(path, fix=fix)  # a damaged file (changed bytes included) is one error
    try:
        # Rows and signals are saved as stored, (n, d, 1, 1) / (n, C, L, 1), with their shape.
        shape = tuple(int(v) for v in z["sample_shape"]) if "sample_shape" in z else None

        def x(split: str) -> Any:
            a = z[f"{split}_x"]
            return a if shape is None else a.reshape(a.shape[0], *shape)

        return Dataset.from_arrays(
            str(z["name"]),
            train=(x("train"), z["train_y"]),
            val=(x("val"), z["val_y"]),
            class_names=[str(c) for c in z["class_names"]] or None,  # none: regression
            features=(z["train_features"], z["val_features"]) if "train_features" in z else None,
        )
    except (ValueError, KeyError) as exc:
        raise DamagedFileError(path, f"it does not hold a dataset ({exc})", fix) from exc


# Data sets whose files are Python pickles (CIFAR-10's python version). MNIST is raw IDX bytes,
# saved in-memory datasets are .npz read with allow_pickle=False, digits/synthetic read no files.
_PICKLED_DATA = frozenset({"cifar10"})
TRUSTED_DATA_ENV = "SAMPLETOPO_TRUSTED_DATA"
_warned_roots: set[tuple[str, str]] = set()


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def warn_foreign_data_root(cfg: Mapping[str, Any], run_dir: str | Path) -> bool:
    """Warn (once per data root and experiment) when the config of the run folder ``run_dir``
    sends the data loader to a pickle-based data set outside the places the user vouches for.

    A run folder is something people share; its ``config.toml`` names ``data_root``, and
    opening the run (topology, samples, report, landscape) reads the data from there. CIFAR-10's
    python files are pickles, which in general can run code when loaded. sampletopo reads them
    with a restricted unpickler that builds only numpy arrays and plain data, so a tampered
    file is refused, but a data root nobody chose is still worth a look. Trusted, so silent:
    a root inside the run's experiment folder (the run folder's parent), the ``data`` folder of
    the current working directory (the default ``--data-root``), and the folders listed in the
    ``SAMPLETOPO_TRUSTED_DATA`` environment variable (separated by ``os.pathsep``).

    Returns whether it warned.
    """
    if cfg.get("data_file") or str(cfg.get("data")) not in _PICKLED_DATA:
        return False
    root = Path(str(cfg.get("data_root", "data"))).expanduser().resolve()
    experiment = Path(run_dir).resolve().parent
    trusted = [experiment, Path("data").resolve()]
    trusted += [
        Path(t).expanduser().resolve()
        for t in os.environ.get(TRUSTED_DATA_ENV, "").split(os.pathsep)
        if t.strip()
    ]
    key = (str(root), str(experiment))
    if any(_inside(root, t) for t in trusted) or key in _warned_roots:
        return False
    _warned_roots.add(key)
    warnings.warn(
        DataRootWarning(
            f"The config.toml of run {str(run_dir)!r} reads {cfg.get('data')} from data_root "
            f"{str(root)!r}, outside the experiment folder {str(experiment)!r} and outside "
            "./data. Its files are Python pickles: they are loaded with a restricted unpickler "
            "(numpy arrays and plain data only), but check that the folder is the data you "
            f"expect. To vouch for it, add it to {TRUSTED_DATA_ENV} (folders separated by "
            f"{os.pathsep!r}) or move the data under the experiment folder."
        ),
        stacklevel=3,
    )
    return True


def dataset_from_config(cfg: Mapping[str, Any]) -> Dataset:
    """The dataset a run config describes (same name, root, split seed and fraction, or the
    saved in-memory dataset its ``data_file`` names)."""
    if cfg.get("data_file"):
        return load_saved_dataset(Path(cfg["data_file"]))
    if cfg.get("data_rebuildable", True) is False:
        raise RunFolderError(
            f"Run {cfg.get('variant', '?')!r} was recorded on in-memory data that its config.toml "
            "cannot rebuild. Pass the Dataset itself (e.g. graph=/dataset= arguments), or record "
            "with a named dataset (load_dataset(...))."
        )
    if not cfg.get("data"):
        raise RunFolderError(
            f"The config of run {cfg.get('variant', '?')!r} has no 'data' entry: it does not say "
            f"which dataset the run was recorded on. {DATA_ENTRIES_FIX}"
        )
    from sampletopo.data import load_dataset

    def entry(key: str) -> Any:
        # An entry left out (or None, as Run.dataset passes it) takes its documented default.
        value = cfg.get(key)
        return _DATA_DEFAULTS[key] if value is None else value

    mx = entry("max_samples")
    return load_dataset(
        str(cfg["data"]),
        root=entry("data_root"),
        seed=int(entry("data_seed")),
        val_fraction=entry("val_fraction"),
        max_samples=int(mx) if mx else None,
    )


def model_from_config(cfg: Mapping[str, Any], dataset: Dataset) -> nn.Module:
    """A freshly initialised model as a run config describes it, sized for ``dataset``."""
    from sampletopo.models import build_model

    return build_model(
        str(cfg["model"]),
        num_classes=dataset.num_classes,
        input_shape=dataset.sample_shape,
        model_kwargs=dict(cfg.get("model_kwargs", {})),
        where=f"the model of run {cfg.get('variant', '?')!r} (config.toml 'model')",
    )
