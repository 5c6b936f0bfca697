"""The training driver: SGD with a step schedule, checkpoints and loss recording, per variant.

Holds :class:`TrainConfig`, :func:`train_experiment` (several variants of one experiment, e.g.
``lr = [0.1, 0.01]`` or ``skip = [true, false]``), :func:`train_run` (one variant) and the TOML
reading that ``sampletopo train`` uses. Every variant gets its own run folder::

    <out_dir>/config.toml                         the experiment: base settings + variants
    <out_dir>/<variant>/config.toml               the variant's resolved settings
    <out_dir>/<variant>/checkpoints/epoch=NNNN.pt  {"model", "optimizer", "epoch", ...}
    <out_dir>/<variant>/losses/<split>/epoch=NNNN.parquet

The schedule follows the thesis setting: SGD with momentum and weight decay, no augmentation,
learning rate multiplied by ``gamma`` *after* each epoch listed in ``milestones`` (epoch ``e``,
counted from 1, trains with ``lr * gamma ** #{m in milestones : m < e}``). Without explicit
milestones, 60, 125 and 150 of 200 epochs are scaled to the run's length. The rate of every
epoch is stored in ``<variant>/losses/schedule.parquet`` (see
:meth:`sampletopo.runs.Run.read_schedule`), as for any loop that hands its optimizer to the
recorder.

Runs are deterministic under ``seed`` on the CPU (initial weights from ``torch.manual_seed(seed)``,
a fresh shuffling generator per epoch) and resumable: a restarted run continues from the last
epoch whose checkpoint and loss tables are all on disk, and the recorder skips epochs already
recorded. This module does not analyse anything.
"""

from __future__ import annotations

import itertools
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sampletopo._device import resolve_device
from sampletopo._errors import ParameterError, RunDivergedError, RunFolderError, SampletopoError
from sampletopo._folders import check_inside, check_name, lock_folder
from sampletopo._losses import resolve_loss
from sampletopo._runconfig import dataset_from_config, model_from_config, read_toml, write_toml
from sampletopo._validation import (
    MAX_EPOCH,
    MAX_SEED,
    check_bool,
    check_choice,
    check_int,
    check_real,
    invalid,
    max_threads,
)
from sampletopo.checkpoints import read_checkpoint, save_checkpoint
from sampletopo.data import _check_val_fraction, data_spec, default_val_fraction
from sampletopo.models import (
    check_model_fits,
    check_model_kwargs,
    check_model_options,
    list_models,
    model_kwargs,
    model_spec,
)
from sampletopo.recorder import LossRecorder, NonFiniteLossWarning
from sampletopo.replicates import replicate_group
from sampletopo.runs import SPLITS, Experiment, Run

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "RunDivergedError",
    "TrainConfig",
    "train_experiment",
    "train_run",
    "load_train_config",
    "resolve_variants",
    "scale_milestones",
    "lr_at_epoch",
]

THESIS_MILESTONES = (60, 125, 150)
THESIS_EPOCHS = 200
# Keys whose change between runs does not change the result, so a resume may differ in them.
_RESUME_FREE = {"device", "threads", "variant", "group", "data_root", "name"}
# Settings added since runs were first written, with what a config without them meant.
_BEFORE = {"loss": "cross_entropy"}


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run (one variant); see the module docstring for the schedule.

    Attributes
    ----------
    name : str
        Experiment name (informational).
    data, data_root, data_seed, val_fraction, max_samples
        Passed to :func:`sampletopo.data.load_dataset` (``root``, ``seed``); ``val_fraction=None``
        means the data set's default, ``max_samples=0`` keeps every sample. ``data`` is a
        registered name, an ``.npz`` file, ``"imagefolder:FOLDER"`` or an import path
        ``"pkg.module:function"`` returning a :class:`~sampletopo.data.Dataset`. ``data_seed`` is
        kept apart from ``seed`` so all variants of an experiment share the same split (and so
        the same kNN graph).
    model, model_kwargs
        A zoo name (:func:`sampletopo.models.create_model`; ``model_kwargs`` may hold ``skip``),
        ``"torchvision:NAME"``, or a factory of your own: its import path
        ``"pkg.module:factory"`` or the class/function itself (stored as its import path). See
        :func:`sampletopo.models.build_model` for what a factory is called with.
    seed : int
        Seed of the initial weights and of the shuffling, in ``[0, 2**63 - 1]`` (as
        ``data_seed``): seeds are stored in TOML run configs, whose integers are 64-bit.
    epochs, lr, momentum, nesterov, weight_decay, milestones, gamma, batch_size
        SGD and schedule. ``milestones=None`` scales 60/125/150 of 200 to ``epochs``;
        ``epochs`` is at most ``2**31 - 1`` (the loss tables store epochs as int32). ``lr`` is in
        ``(0, 1e6]``, ``weight_decay`` and ``gamma`` in ``[0, 1e6]``, ``momentum`` in ``[0, 1)``
        (``nesterov`` needs momentum > 0): beyond these torch cannot take the value or SGD
        cannot converge; within them a run that blows up stops with a :class:`RunDivergedError`.
    loss : str
        The loss trained on and recorded: ``"cross_entropy"`` (default), ``"mse"`` (with class
        labels: the squared error to the one-hot label, averaged over the classes), or an
        importable function's path ``"pkg.module:function"`` returning one loss per sample; see
        :mod:`sampletopo._losses`.
    record_mode : {"eval", "train_pass"}
        See :class:`sampletopo.recorder.LossRecorder`.
    record_splits, record_batch_size
        Splits to record and the batch size of the eval passes.
    checkpoint_every : int
        Save a checkpoint every this many epochs (epoch 0 and the last epoch always). A
        restarted run resumes from the last checkpoint, so 1 loses the least work.
    device : str
        ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...;
        checked against this machine's devices when the settings are validated.
    threads : int
        torch CPU threads while training (0: leave torch's setting alone), at most four per core
        of this machine (at least 16, at most 256: :func:`sampletopo._validation.max_threads`).
        On a machine whose cores are shared with other work, 1 is often several times faster
        than the default.
        Results are bit-for-bit reproducible only for the same device and thread count.
    """

    name: str = "experiment"
    data: str | Path = "digits"
    data_root: str = "data"
    data_seed: int = 0
    val_fraction: float | str | None = None
    max_samples: int = 0
    model: str | Callable[..., torch.nn.Module] = "resnet20"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    epochs: int = 30
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    milestones: list[int] | None = None
    gamma: float = 0.1
    batch_size: int = 128
    loss: str = "cross_entropy"
    record_mode: str = "eval"
    record_splits: list[str] = field(default_factory=lambda: list(SPLITS))
    record_batch_size: int = 512
    checkpoint_every: int = 1
    device: str = "auto"
    threads: int = 0

    def resolved(self, *, variant: str = "") -> dict[str, Any]:
        """Validated settings with every default made explicit, as written to ``config.toml``."""
        _validate(self)
        model = model_spec(self.model)
        data = data_spec(self.data, where="the training config", kind="setting", check=False)
        if model in list_models():
            mk = {"skip": True, **model_kwargs(model), **dict(self.model_kwargs)}
        else:
            mk = dict(self.model_kwargs)
        ms = (
            scale_milestones(self.epochs)
            if self.milestones is None
            else sorted({int(m) for m in self.milestones})
        )
        vf = default_val_fraction(data) if self.val_fraction is None else self.val_fraction
        out = asdict(self)
        out.update(
            variant=variant,
            group=replicate_group(variant),
            data=data,
            model=model,
            data_root=str(Path(self.data_root).resolve()),
            val_fraction=vf,
            model_kwargs=mk,
            milestones=ms,
            record_splits=list(self.record_splits),
        )
        return out


# Bounds of the SGD settings. Values beyond float32 (3.4e38) cannot even be handed to torch's
# optimizer ("value cannot be converted to type float without overflow", after epoch 0 was
# written), and momentum >= 1 makes the velocity grow without bound. 1e6 is far beyond any
# learning rate, weight decay or schedule factor that trains, yet lets a run that blows up stop
# with the divergence error (RunDivergedError) rather than be refused as a typo.
MAX_LR = 1e6
MAX_WEIGHT_DECAY = 1e6
MAX_GAMMA = 1e6


def _validate(c: TrainConfig) -> None:
    where = "the training config"
    kw: dict[str, Any] = {"where": where, "kind": "setting"}
    data = data_spec(c.data, **kw)
    model = model_spec(c.model, **kw)
    if not isinstance(c.model_kwargs, Mapping):
        raise invalid("model_kwargs", "a table of model options", c.model_kwargs, **kw)
    if model not in list_models():
        check_model_kwargs(model, c.model_kwargs, where=where)
    allowed_mk = set(model_kwargs(model) if model in list_models() else c.model_kwargs) | {"skip"}
    extra = sorted(set(c.model_kwargs) - allowed_mk)
    if extra:
        raise ParameterError(
            f"Unknown model option(s) {extra} for model {c.model!r}. Allowed: "
            f"{sorted(allowed_mk)}. Options of another model (e.g. width, widen, depth for an "
            "mlp, which takes hidden) do not apply to this one: leave them out.",
            parameter="model_kwargs",
        )
    # Types and ranges of the options too, so a typo fails before any folder is written.
    if model in list_models():
        check_model_options(model, c.model_kwargs, where=where)
    for key in ("name", "data_root"):
        if not isinstance(getattr(c, key), str) or not getattr(c, key):
            raise invalid(key, "a non-empty string", getattr(c, key), **kw)
    for key, low, high in (
        ("epochs", 1, MAX_EPOCH),
        ("batch_size", 1, None),
        ("record_batch_size", 1, None),
        ("checkpoint_every", 1, None),
        ("seed", 0, MAX_SEED),
        ("data_seed", 0, MAX_SEED),
        ("max_samples", 0, None),
    ):
        check_int(key, getattr(c, key), low, high, **kw)
    check_int(
        "threads",
        c.threads,
        0,
        max_threads(),
        **kw,
        fix=f"0 leaves torch's setting; at most four per core of this machine "
        f"({os.cpu_count()} cores).",
    )
    if 0 < c.max_samples < 10:
        raise invalid("max_samples", "0 (every sample) or an int >= 10", c.max_samples, **kw)
    if c.val_fraction is not None:
        _check_val_fraction(
            c.val_fraction,
            allow_test=default_val_fraction(data) == "test",
            data=data,
            **kw,
        )
    check_real("lr", c.lr, low=0, low_open=True, high=MAX_LR, **kw)
    resolve_loss(c.loss, where="the training config")
    check_real("momentum", c.momentum, low=0, high=1, high_open=True, **kw)
    check_real("weight_decay", c.weight_decay, low=0, high=MAX_WEIGHT_DECAY, **kw)
    check_real("gamma", c.gamma, low=0, high=MAX_GAMMA, **kw)
    check_choice("record_mode", c.record_mode, ("eval", "train_pass"), **kw)
    if not c.record_splits or any(s not in SPLITS for s in c.record_splits):
        raise invalid(
            "record_splits", f"a non-empty list from {list(SPLITS)}", c.record_splits, **kw
        )
    if c.milestones is not None and (
        not isinstance(c.milestones, (list, tuple))
        or any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in c.milestones)
    ):
        raise invalid(
            "milestones",
            "a list of ints >= 1 (epochs after which lr is multiplied by gamma)",
            c.milestones,
            **kw,
        )
    check_bool("nesterov", c.nesterov, **kw)
    if c.nesterov and c.momentum == 0:
        raise invalid(
            "nesterov",
            "false when momentum is 0 (Nesterov momentum needs momentum)",
            c.nesterov,
            **kw,
        )
    if not isinstance(c.device, str):
        raise invalid("device", "a string such as 'auto', 'cpu' or 'cuda'", c.device, **kw)
    resolve_device(c.device, where=where, allow_none=False, kind="setting")


def scale_milestones(
    epochs: int,
    *,
    milestones: Sequence[int] = THESIS_MILESTONES,
    total: int = THESIS_EPOCHS,
) -> list[int]:
    """Scale ``milestones`` of a ``total``-epoch schedule to ``epochs`` (rounding half up).

    Milestones that fall outside ``1 .. epochs - 1`` are dropped, duplicates merged.

    Examples
    --------
    >>> scale_milestones(200), scale_milestones(30), scale_milestones(40)
    ([60, 125, 150], [9, 19, 23], [12, 25, 30])
    """
    out = sorted({math.floor(m * epochs / total + 0.5) for m in milestones})
    return [m for m in out if 1 <= m < epochs]


def lr_at_epoch(epoch: int, *, lr: float, milestones: Sequence[int], gamma: float) -> float:
    """Learning rate used while training epoch ``epoch`` (counted from 1).

    Examples
    --------
    >>> [lr_at_epoch(e, lr=1.0, milestones=[2, 4], gamma=0.1) for e in range(1, 6)]
    [1.0, 1.0, 0.1, 0.1, 0.010000000000000002]
    """
    return float(lr * gamma ** sum(1 for m in milestones if m < epoch))


# ---------------------------------------------------------------------------------------------
# Config files and variants

_FIELDS = {f.name for f in fields(TrainConfig)}


def _config_from_mapping(d: Mapping[str, Any], *, where: str) -> TrainConfig:
    unknown = sorted(set(d) - _FIELDS)
    if unknown:
        raise ParameterError(
            f"{where}: unknown setting(s) {unknown}. Known settings: {sorted(_FIELDS)} plus a "
            "[variants] table.",
            parameter=unknown[0],
        )
    # Checked here, not only in _validate: variants are merged into model_kwargs before that.
    _check_model_kwargs_table(d.get("model_kwargs", {}), where=where)
    return TrainConfig(**dict(d))


def _check_model_kwargs_table(value: Any, *, where: str) -> None:
    if not isinstance(value, Mapping):
        raise invalid(
            "model_kwargs",
            "a table of model options, e.g. [model_kwargs] then 'width = 8'",
            where=where,
            got=f"{value!r} ({type(value).__name__})",
            kind="setting",
        )


def load_train_config(path: str | Path) -> tuple[TrainConfig, Any]:
    """Read a training TOML file: top-level settings (see :class:`TrainConfig`), an optional
    ``[model_kwargs]`` table, and optional variants.

    Variants are either a ``[variants]`` table of lists (every combination is one variant)::

        [variants]
        lr = [0.1, 0.01]

    or an array of tables, one per variant, each with its overrides and an optional ``name``::

        [[variants]]
        name = "skip=true"
        skip = true

    Returns
    -------
    config : TrainConfig
    variants : dict, list of dict, or None
    """
    path = Path(path)
    if path.is_dir():
        raise ParameterError(
            f"Training config {str(path)!r} is a folder; pass a TOML file (settings and variants).",
            parameter="config",
        )
    if not path.is_file():
        raise ParameterError(f"Training config {str(path)!r} does not exist.", parameter="config")
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except UnicodeDecodeError:
        raise ParameterError(
            f"Training config {str(path)!r} is not a TOML file (it is not UTF-8 text; a "
            "checkpoint or other binary file?). Pass a TOML file of settings and variants.",
            parameter="config",
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ParameterError(
            f"Training config {str(path)!r} is not valid TOML: {exc}", parameter="config"
        ) from exc
    variants = raw.pop("variants", None)
    raw.pop("variant_names", None)
    return _config_from_mapping(raw, where=repr(str(path))), variants


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "-".join(_fmt(x) for x in v)
    return str(v)


def _safe(name: str) -> str:
    out = "".join(ch if (ch.isalnum() or ch in "=.,-_+") else "_" for ch in name)
    return out or "run"


def _apply(base: TrainConfig, overrides: Mapping[str, Any]) -> TrainConfig:
    top: dict[str, Any] = {}
    mk = dict(base.model_kwargs)
    model = overrides.get("model", base.model)
    for key, value in overrides.items():
        if key == "name":
            continue
        if key.startswith("model_kwargs."):
            mk[key.split(".", 1)[1]] = value
        elif key == "model_kwargs":
            _check_model_kwargs_table(value, where=f"variant {overrides.get('name', '')!r}")
            mk.update(value)
        elif key in _FIELDS:
            top[key] = value
        elif key == "skip" or (model in list_models() and key in model_kwargs(model)):
            mk[key] = value
        else:
            allowed = sorted(
                _FIELDS | {"skip"} | set(model_kwargs(model) if model in list_models() else ())
            )
            raise ParameterError(
                f"Unknown variant setting {key!r}. Allowed: {allowed} (model options may also be "
                "written 'model_kwargs.NAME').",
                parameter=key,
            )
    return replace(base, **top, model_kwargs=mk)


def resolve_variants(
    base: TrainConfig, variants: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]] | None
) -> list[tuple[str, TrainConfig, dict[str, Any]]]:
    """Expand ``variants`` into ``(name, config, overrides)`` triples.

    A mapping of lists gives every combination (names like ``lr=0.1`` or
    ``lr=0.1,skip=false``); a list of mappings gives one variant each (named by its ``name``
    entry, else by its overrides). ``None`` or empty gives one variant named ``run``.

    A name becomes the variant's folder name, so it must be one
    (:func:`sampletopo._folders.check_name`): letters, digits and ``= . , - _ +``, not starting
    with a dot, not a name the experiment folder uses itself (``graphs``, ``report``, ...). A
    ``name`` given in the file that breaks the rule is refused; in a name made from the
    overrides, other characters become ``_``. Names that differ only in case are refused as
    duplicates (they are one folder on macOS and Windows).

    A ``seed`` axis makes replicates: it is put last in the names (``lr=0.1,seed=1``), and each
    run's config records its ``group``, the name without its ``seed=`` part (``lr=0.1``), which
    :mod:`sampletopo.replicates` pools.
    """
    _check_model_kwargs_table(base.model_kwargs, where="the training config")
    if variants is None or (isinstance(variants, (Mapping, list, tuple)) and not variants):
        base.resolved(variant="run")  # validate before any folder is made, as for variants
        return [("run", base, {})]
    combos: list[dict[str, Any]]
    if isinstance(variants, Mapping):
        # Seeds make replicates of each variant: their axis goes last, so the names read
        # ``lr=0.1,seed=1`` and the replicate group is the name without ``seed=`` (see
        # sampletopo.replicates.replicate_group).
        keys = [k for k in variants if k != "seed"] + (["seed"] if "seed" in variants else [])
        lists = []
        for k in keys:
            v = variants[k]
            vals = list(v) if isinstance(v, (list, tuple)) else [v]
            if not vals:
                raise invalid(
                    "variants",
                    f"a mapping whose axis {k!r} has values",
                    [],
                    where="resolve_variants",
                )
            lists.append(vals)
        combos = [dict(zip(keys, vals, strict=True)) for vals in itertools.product(*lists)]
    elif isinstance(variants, (list, tuple)) and all(isinstance(v, Mapping) for v in variants):
        combos = [dict(v) for v in variants]
    else:
        raise invalid(
            "variants",
            "a mapping of setting -> list of values, or a list of mappings of overrides",
            where=None,
            got=type(variants).__name__,
        )
    out = []
    seen: set[str] = set()
    for ov in combos:
        name = (
            check_name(ov["name"])
            if "name" in ov
            else check_name(_safe(",".join(f"{k}={_fmt(v)}" for k, v in ov.items())))
        )
        if name.casefold() in seen:
            raise ParameterError(
                f"Two variants share the name {name!r} (names are compared without case); "
                "give them distinct names.",
                parameter="variants",
            )
        seen.add(name.casefold())
        cfg = _apply(base, ov)
        cfg.resolved(variant=name)  # validate early, before any training
        out.append((name, cfg, {k: v for k, v in ov.items() if k != "name"}))
    return out


# ---------------------------------------------------------------------------------------------
# Training


def _device(name: str) -> torch.device:
    dev = resolve_device(name, where="the training config", allow_none=False, kind="setting")
    assert dev is not None
    return dev


def _shuffle_seed(seed: int, epoch: int) -> int:
    """Seed of epoch ``epoch``'s shuffling generator. Wrapped into torch's seed range
    ``[0, 2**64)``, so every seed in ``[0, 2**63 - 1]`` works; below ``2**64 / 1_000_003``
    (any seed anyone types) it is ``seed * 1_000_003 + epoch`` exactly, as before."""
    return (seed * 1_000_003 + epoch) % 2**64


def _resume_epoch(run: Run, rec: LossRecorder) -> int | None:
    """Last epoch with a readable checkpoint and every split's losses up to it on disk (the
    recorder has moved aside tables that do not read back whole: their epochs are trained and
    recorded again, deterministically)."""
    last = rec.last_complete_epoch()
    if last is None:
        return None
    for e in range(last, -1, -1):
        p = run.checkpoint_file(e)
        if p.is_file():
            try:
                obj = read_checkpoint(p)
            except SampletopoError:
                continue  # a damaged file: fall back to an earlier one
            if isinstance(obj, dict) and "optimizer" in obj:
                return e
    return None


def train_run(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    variant: str | None = None,
    progress: bool = True,
) -> Path:
    """Train one variant into ``run_dir`` (resuming it if it was interrupted).

    Returns
    -------
    Path
        ``run_dir``.

    Notes
    -----
    ``run_dir`` is locked while training (see :mod:`sampletopo._folders`): another process that
    trains or records into it meanwhile gets an error naming this one. A folder that this call
    made is removed again if it fails before writing anything (missing data, say).
    """
    config.resolved()  # validate before touching torch's thread setting
    with lock_folder(run_dir, what="training", role="run folder"):
        if not config.threads:
            return _train_run(config, Path(run_dir), variant=variant, progress=progress)
        before = torch.get_num_threads()
        torch.set_num_threads(config.threads)
        try:
            return _train_run(config, Path(run_dir), variant=variant, progress=progress)
        finally:
            torch.set_num_threads(before)


def _open_run(config: TrainConfig, run: Run, name: str) -> tuple[dict[str, Any], Any]:
    """The resolved config and the dataset of a run about to train; a folder trained with other
    settings is refused, a new one (or one where nothing was trained yet) gets the config."""
    cfg = config.resolved(variant=name)
    if run.has_config() and run.has_results():
        old = run.read_config()
        diff = sorted(
            k
            for k in set(old) | set(cfg)
            if k not in _RESUME_FREE and old.get(k, _BEFORE.get(k)) != cfg.get(k, _BEFORE.get(k))
        )
        if diff:
            raise RunFolderError(
                f"Run folder {str(run.path)!r} was trained with other settings "
                f"({', '.join(diff)}: {[(k, old.get(k), cfg.get(k)) for k in diff][:4]}). "
                "Resuming would mix two runs: pass a new output folder, or the same settings to "
                "resume."
            )
    ds = dataset_from_config(cfg)  # before writing anything: missing data leaves no folder
    if not run.has_results():
        # A model that does not fit the data (inputs or label count) fails here, on one batch,
        # before the folder gets anything.
        loss = resolve_loss(config.loss, where="the training config")
        loss.check_targets(regression=ds.is_regression, where="the training config")
        model = model_from_config(cfg, ds)
        check_model_fits(model, ds, where=f"run {name!r}", loss=loss)
    if not (run.has_config() and run.has_results()):
        # A new run, or a folder where an earlier attempt failed before anything was trained.
        run.write_config(cfg)
    return cfg, ds


@dataclass
class _Training:
    """One run's model, optimizer and recorder while it trains."""

    config: TrainConfig
    cfg: dict[str, Any]
    run: Run
    name: str
    device: torch.device
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    rec: LossRecorder

    @classmethod
    def start(cls, config: TrainConfig, run: Run, name: str) -> _Training:
        cfg, ds = _open_run(config, run, name)
        dev = _device(config.device)
        torch.manual_seed(config.seed)
        model = model_from_config(cfg, ds).to(dev)
        opt = torch.optim.SGD(
            model.parameters(),
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            nesterov=config.nesterov,
        )
        loss = resolve_loss(config.loss, where="the training config")
        rec = LossRecorder._for_driver(
            run,
            ds,
            source="train",
            splits=cfg["record_splits"],
            mode=cfg["record_mode"],
            batch_size=config.record_batch_size,
            device=dev,
            optimizer=opt,  # the rates lr_at_epoch sets, stored as the run's schedule
            loss=loss,
        )
        return cls(config, cfg, run, name, dev, model, opt, rec)

    def save(self, epoch: int, **extra: Any) -> None:
        """Checkpoint ``epoch`` (every ``checkpoint_every`` epochs, the first and the last)."""
        if epoch % self.config.checkpoint_every and epoch not in (0, self.config.epochs):
            return
        payload = {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "epoch": epoch,
            "rng_cpu": torch.get_rng_state(),
            "recorder": self.rec.state_dict(),
            "variant": self.name,
            **extra,
        }
        if self.device.type == "cuda":
            payload["rng_cuda"] = torch.cuda.get_rng_state(self.device)
        save_checkpoint(self.run.checkpoint_file(epoch), payload)

    def resume(self) -> int:
        """The epoch training goes on from: the last one checkpointed and recorded (its state
        loaded), or 0 for a new run (epoch 0 recorded and checkpointed first)."""
        # A run killed while writing a checkpoint leaves its temporary file: never a checkpoint.
        for stale in self.run.checkpoint_temporaries():
            stale.unlink(missing_ok=True)
        start = _resume_epoch(self.run, self.rec)
        if start is None:
            # Record first, then checkpoint: the checkpoint's recorder state then includes this
            # epoch (its non-finite counts). A crash in between leaves tables without a
            # checkpoint; the resume retrains that epoch deterministically and skips the tables
            # already there.
            self.rec.on_train_epoch_end(0, self.model)
            self.save(0)
            return 0
        state = read_checkpoint(self.run.checkpoint_file(start))
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng_cpu"])
        if self.device.type == "cuda" and "rng_cuda" in state:
            torch.cuda.set_rng_state(state["rng_cuda"], self.device)
        if "recorder" in state:
            self.rec.load_state_dict(state["recorder"])
        return start

    def train_epoch(self, epoch: int, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        """Train epoch ``epoch`` on ``(x, y)``; returns its mean training loss and seconds."""
        config, model, opt, rec = self.config, self.model, self.opt, self.rec
        n = x.shape[0]
        gen = torch.Generator().manual_seed(_shuffle_seed(config.seed, epoch))
        perm = torch.randperm(n, generator=gen).to(self.device)
        train_pass = self.cfg["record_mode"] == "train_pass"
        model.train()
        rec.on_train_epoch_start(epoch)
        t0 = time.perf_counter()
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        for start_i in range(0, n, config.batch_size):
            idx = perm[start_i : start_i + config.batch_size]
            xb, yb = x[idx], y[idx]
            logits = model(xb)
            loss = rec.loss.training_loss(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach().double() * idx.numel()
            if train_pass:
                rec.on_train_batch_end(idx, logits, yb)
        return float(total.item()) / n, time.perf_counter() - t0


def _divergence(t: _Training, epoch: int, train_loss: float) -> str | None:
    """Why the run diverged at ``epoch`` (for the message), or ``None`` if it did not.

    The mean training loss is taken before each step, so a last step that breaks the model
    (weights, or outputs, beyond float32) shows only in the weights and in the losses recorded
    at the end of the epoch: with finite weights and inputs, a per-sample cross-entropy is NaN
    or inf only when the logits overflow.
    """
    if not np.isfinite(train_loss):
        return f"mean training loss {train_loss}"
    if not all(bool(torch.isfinite(p).all()) for p in t.model.parameters()):
        return (
            f"its weights hold NaN/inf after the epoch's last step; mean training loss "
            f"{train_loss:.4g} before it"
        )
    bad = {s: n for (s, e), n in t.rec.nonfinite.items() if e == epoch and n}
    if bad:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(bad.items()))
        return (
            f"its recorded losses hold NaN/inf ({counts}) after the epoch's last step; mean "
            f"training loss {train_loss:.4g} before it"
        )
    return None


def _train_run(config: TrainConfig, rd: Path, *, variant: str | None, progress: bool) -> Path:
    from tqdm.auto import tqdm

    name = variant if variant is not None else rd.name
    t = _Training.start(config, Run(rd), name)
    start = t.resume()
    if start >= config.epochs:
        return rd
    x, y = t.rec.dataset.tensors("train")
    x, y = x.to(t.device), y.to(t.device)
    bar = tqdm(
        range(start + 1, config.epochs + 1),
        desc=name,
        unit="ep",
        initial=start,
        total=config.epochs,
        disable=not progress,
        leave=True,
    )
    for epoch in bar:
        lr = lr_at_epoch(epoch, lr=config.lr, milestones=t.cfg["milestones"], gamma=config.gamma)
        for group in t.opt.param_groups:
            group["lr"] = lr
        train_loss, seconds = t.train_epoch(epoch, x, y)
        with warnings.catch_warnings():
            # Counted in rec.nonfinite and reported once below, not once per table.
            warnings.simplefilter("ignore", NonFiniteLossWarning)
            t.rec.on_train_epoch_end(epoch, t.model)
        what = _divergence(t, epoch, train_loss)
        if what is not None:
            bar.close()
            raise RunDivergedError(
                f"{name}: training diverged at epoch {epoch} ({what}, lr={lr:g}); it stopped "
                f"there. Epochs 0..{epoch} are recorded (epoch {epoch} with "
                f"{t.rec.nonfinite.get(('train', epoch), 0)} non-finite train losses). Lower the "
                "learning rate or momentum, or add gradient clipping / warm-up in your own loop.",
                epoch=epoch,
            )
        t.save(epoch, lr=lr, train_loss=train_loss, seconds=seconds)
        if progress:
            bar.set_postfix(lr=f"{lr:.3g}", loss=f"{train_loss:.4f}")
    bar.close()
    nonfinite = t.rec.nonfinite
    if nonfinite:
        warnings.warn(
            NonFiniteLossWarning(
                f"{name}: {sum(nonfinite.values())} non-finite per-sample losses in "
                f"{len(nonfinite)} table(s) (split, epoch): {sorted(nonfinite)[:6]}"
                f"{' ...' if len(nonfinite) > 6 else ''}. They are recorded as NaN/inf."
            ),
            stacklevel=2,
        )
    return rd


def train_experiment(
    config: TrainConfig | Mapping[str, Any] | str | Path,
    out_dir: str | Path,
    *,
    variants: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]] | None = None,
    progress: bool = True,
) -> list[Path]:
    """Train every variant of an experiment, each into ``out_dir/<variant>``.

    Parameters
    ----------
    config : TrainConfig, mapping or path
        Base settings, or a TOML file (see :func:`load_train_config`) that may also list
        variants.
    out_dir : str or Path
        Experiment folder; gets ``config.toml`` and one sub-folder per variant.
    variants : mapping or list of mappings, optional
        Overrides the file's variants: ``{"lr": [0.1, 0.01]}`` (every combination) or
        ``[{"name": "skip=true", "skip": True}, ...]``. Keys are settings of
        :class:`TrainConfig` or model options (``skip``, ``width``, ``widen``, ...).
    progress : bool
        Show one progress bar per variant.

    Returns
    -------
    list of Path
        The variants' run folders, in order.

    Notes
    -----
    One writer per experiment: ``out_dir`` is locked for the whole call and each run folder
    while its variant trains (see :mod:`sampletopo._folders`). A second ``train`` on the same
    folder gets one error naming the process that holds it; topology and other analysis of the
    runs may go on meanwhile. Variant names are checked (:func:`resolve_variants`) and every
    run folder must lie inside ``out_dir``.

    Examples
    --------
    >>> train_experiment(TrainConfig(model="cnn", epochs=2), "runs/lr",
    ...                  variants={"lr": [0.1, 0.01]})           # doctest: +SKIP
    [PosixPath('runs/lr/lr=0.1'), PosixPath('runs/lr/lr=0.01')]
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Every rank would train its own copy into the same folders: refuse instead.
        raise ParameterError(
            f"train_experiment was started with WORLD_SIZE={os.environ['WORLD_SIZE']} (torchrun?). "
            "Training is single-process; run `sampletopo train` without torchrun, then record its "
            "checkpoints in parallel with `torchrun ... -m sampletopo record --checkpoints DIR`."
        )
    file_variants = None
    if isinstance(config, (str, Path)):
        base, file_variants = load_train_config(config)
    elif isinstance(config, Mapping):
        d = dict(config)
        file_variants = d.pop("variants", None)
        base = _config_from_mapping(d, where="train_experiment config")
    elif isinstance(config, TrainConfig):
        base = config
    else:
        raise invalid(
            "config",
            "a TrainConfig, a mapping or a TOML path",
            where="train_experiment",
            got=type(config).__name__,
        )
    triples = resolve_variants(base, variants if variants is not None else file_variants)
    for name, _, _ in triples:
        check_inside(Path(out_dir) / name, out_dir, what=f"run folder of variant {name!r}")
    with lock_folder(out_dir, what="training", role="experiment folder"):
        return _train_variants(base, triples, Path(out_dir), progress=progress)


def _train_variants(
    base: TrainConfig,
    triples: list[tuple[str, TrainConfig, dict[str, Any]]],
    out: Path,
    *,
    progress: bool,
) -> list[Path]:
    """:func:`train_experiment` once its folder is locked: the experiment's config, then each
    variant."""
    experiment = Experiment(out)
    exp_path = experiment.config_file
    exp = base.resolved()
    exp.pop("variant")
    exp.pop("group")
    listed: dict[str, Any] = {}
    if exp_path.is_file():
        old = read_toml(exp_path, fix="Restore it or pass a new --out folder.")
        started = [n for n in old.get("variants", {}) if Run(out / n).has_results()]
        if "variant_names" not in old:
            raise RunFolderError(
                f"{str(out)!r} is a run folder, not an experiment folder: `sampletopo train "
                "--out` takes the experiment folder that gets one sub-folder per variant. Pass "
                "a new folder."
            )
        diff = sorted(
            k
            for k in (set(old) | set(exp)) - {"variant_names", "variants"}
            if k not in _RESUME_FREE and old.get(k) != exp.get(k)
        )
        axes = {k for ov in old.get("variants", {}).values() for k in ov}
        axed = [k for k in diff if k in axes]
        if axed and started:
            # One value of a setting the experiment varies: the user meant a new variant.
            k = axed[0]
            values = list(dict.fromkeys(ov[k] for ov in old["variants"].values() if k in ov))
            flag = "--" + k.replace("_", "-")
            raise RunFolderError(
                f"Experiment folder {str(out)!r} varies {k} ({', '.join(map(repr, values))}); "
                f"one value ({exp.get(k)!r}) would change a base setting of the variants already "
                f"trained. To add a variant, give every value: {flag} "
                f"{' '.join(map(str, [*values, exp.get(k)]))} (trained variants are skipped, "
                "with the same other flags, --seed included)."
            )
        if diff and started:
            shown = ", ".join(f"{k}: {old.get(k)!r} -> {exp.get(k)!r}" for k in diff[:3])
            raise RunFolderError(
                f"Experiment folder {str(out)!r} holds variants trained with other base settings "
                f"({shown}). Pass a new --out folder, or the same settings (new variants of "
                "this experiment vary a setting: several values of one flag, e.g. --lr 0.1 0.01)."
            )
        if started:
            listed = dict(old.get("variants", {}))
    else:
        others = experiment.folders_with_config()
        if others:
            raise RunFolderError(
                f"{str(out)!r} already holds run folders ({', '.join(others[:4])}) that no "
                "`sampletopo train` experiment there lists. Pass a new --out folder."
            )
    listed.update({name: ov for name, _, ov in triples})
    exp["variant_names"] = list(listed)
    exp["variants"] = listed
    write_toml(exp_path, exp)

    runs: list[Path] = []
    diverged: list[RunDivergedError] = []
    for name, cfg, _ in triples:
        try:
            runs.append(train_run(cfg, out / name, variant=name, progress=progress))
        except RunDivergedError as exc:  # the other variants still train
            diverged.append(exc)
            runs.append(out / name)
    if diverged:
        if len(diverged) == 1:
            raise diverged[0]
        raise RunDivergedError(
            f"{len(diverged)} of {len(triples)} variants diverged: "
            + " | ".join(str(e) for e in diverged),
            epoch=min(e.epoch for e in diverged),
        )
    return runs
