"""``sampletopo train``: train the variants of an experiment from a TOML file and/or flags.

A flag given several values (``--lr 0.1 0.01``, ``--skip true false``) becomes a variant axis;
every combination of the axes is one variant, trained into ``OUT/<variant>``. Several seeds
(``--seed 0 1 2``) make replicates of each variant, ``OUT/lr=0.1,seed=1`` and so on, grouped
by ``sampletopo compare``. Flags override the
TOML file's settings and replace its variant axis of the same name.

The defaults shown apply when neither a flag nor the TOML file sets a value.
"""

from __future__ import annotations

import argparse
from typing import Any

from sampletopo.commands._common import add_command, progress_option
from sampletopo.runs import SPLITS

# (flag, TrainConfig key or model option, type, help); each takes one value or several (variants)
_SCALAR_FLAGS: list[tuple[str, str, Any, str]] = [
    ("--lr", "lr", float, "learning rate (default: {train:lr})"),
    ("--momentum", "momentum", float, "SGD momentum (default: {train:momentum})"),
    ("--weight-decay", "weight_decay", float, "weight decay (default: {train:weight_decay})"),
    ("--batch-size", "batch_size", int, "training batch size (default: {train:batch_size})"),
    ("--seed", "seed", int, "seed of the initial weights and shuffling (default: {train:seed})"),
    (
        "--model",
        "model",
        str,
        "model: {models}, 'torchvision:NAME', or your own as 'pkg.module:factory' (a class or "
        "function returning an nn.Module; it gets num_classes, in_channels, input_size, "
        "input_shape where it has such parameters) (default: {train:model})",
    ),
    ("--skip", "skip", str, "ResNet/WRN skip connections: true or false (default: true)"),
    ("--width", "width", int, "base width (channels) of the model (default: the model's)"),
    ("--widen", "widen", int, "Wide ResNet widening factor k (default: the model's)"),
    ("--depth", "depth", int, "ResNet/WRN depth (default: the model's)"),
]


def _bool(text: str) -> bool:
    low = text.lower()
    if low in ("true", "1", "yes"):
        return True
    if low in ("false", "0", "no"):
        return False
    from sampletopo._validation import invalid

    raise invalid("--skip", "true or false", text, where="sampletopo train", kind="flag")


def _parse_kv(items: list[str] | None, flag: str) -> dict[str, Any]:
    import sys

    from sampletopo._validation import invalid

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise invalid(flag, "KEY=VALUE pairs (e.g. widen=2)", item, where=None, kind="flag")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value
    return out


def register(subparsers: Any) -> None:
    p = add_command(
        subparsers,
        "train",
        help="train an experiment's variants, saving checkpoints and per-sample losses",
        description=__doc__,
    )
    p.add_argument("config", nargs="?", help="TOML file with settings and variants (optional)")
    p.add_argument("--out", required=True, help="experiment folder (one sub-folder per variant)")
    p.add_argument("--name", help="experiment name (default: {train:name})")
    p.add_argument(
        "--data",
        help="dataset: {datasets}, an .npz file (x_train, y_train, optional x_val, y_val, "
        "class_names), 'imagefolder:FOLDER' or 'pkg.module:function' returning a Dataset "
        "(default: {train:data})",
    )
    p.add_argument("--data-root", help="folder with local datasets (default: {train:data_root})")
    p.add_argument(
        "--data-seed", type=int, help="seed of the train/val split (default: {train:data_seed})"
    )
    p.add_argument(
        "--val-fraction",
        help="validation fraction, or 'test' for the official test set (default: 'test' where "
        "the dataset has one, else 0.2)",
    )
    p.add_argument(
        "--max-samples",
        type=int,
        help="keep at most this many samples per split, 0: every sample "
        "(default: {train:max_samples})",
    )
    p.add_argument("--epochs", type=int, help="epochs to train (default: {train:epochs})")
    p.add_argument(
        "--milestones",
        type=int,
        nargs="*",
        help="epochs after which lr *= gamma (default: the thesis schedule 60 125 150 of 200 "
        "epochs scaled to --epochs, e.g. 9 19 23 for 30 epochs; with very few epochs that is a "
        "drop after nearly every epoch, e.g. 1 2 for 3 epochs). --milestones with no value keeps "
        "the lr constant",
    )
    p.add_argument(
        "--gamma", type=float, help="lr factor at each milestone (default: {train:gamma})"
    )
    p.add_argument(
        "--loss",
        choices=["cross_entropy", "mse"],
        help="the loss trained on and recorded per sample; mse with class labels compares the "
        "outputs with one-hot labels (a loss function of your own: from Python, or a config "
        "file's loss = 'pkg.module:function') (default: {train:loss})",
    )
    p.add_argument(
        "--record-mode",
        choices=["eval", "train_pass"],
        help="how per-sample losses are recorded: an eval pass at each epoch end (exact), or "
        "the training pass's own losses for the train split (nearly free) "
        "(default: {train:record_mode})",
    )
    p.add_argument(
        "--record-splits",
        nargs="+",
        choices=list(SPLITS),
        help="splits to record (default: {train:record_splits})",
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        help="save a checkpoint every N epochs; epoch 0 and the last always "
        "(default: {train:checkpoint_every})",
    )
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N (default: {train:device})")
    p.add_argument(
        "--threads", type=int, help="torch CPU threads (default: torch's); 1 helps on busy machines"
    )
    p.add_argument(
        "--model-kw",
        nargs="+",
        metavar="KEY=VALUE",
        help="model options, e.g. widen=2 dropout=0.3; values are read as TOML (2 is an int, "
        "0.3 a float, true a bool, [8, 16] a list, anything else a string)",
    )
    for flag, key, typ, text in _SCALAR_FLAGS:
        several = (
            "several values make replicates of each variant (runs named lr=0.1,seed=1; "
            "`sampletopo compare` pools them)"
            if key == "seed"
            else "several values make variants"
        )
        p.add_argument(flag, nargs="+", type=typ, help=f"{text}; {several}")
    progress_option(p, bars=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from sampletopo._errors import ParameterError
    from sampletopo.commands._common import check_out_dir, check_seed_flag
    from sampletopo.train import TrainConfig, resolve_variants, train_experiment

    check_out_dir(args.out)
    check_seed_flag(args.data_seed, "--data-seed")
    for seed in args.seed or []:
        check_seed_flag(seed, "--seed")
    if args.config:
        base, file_variants = _load_config(args.config)
    else:
        base, file_variants = TrainConfig(), None
    top: dict[str, Any] = {}
    for attr, key in [
        ("name", "name"),
        ("data", "data"),
        ("data_root", "data_root"),
        ("data_seed", "data_seed"),
        ("max_samples", "max_samples"),
        ("epochs", "epochs"),
        ("milestones", "milestones"),
        ("gamma", "gamma"),
        ("loss", "loss"),
        ("record_mode", "record_mode"),
        ("record_splits", "record_splits"),
        ("checkpoint_every", "checkpoint_every"),
        ("device", "device"),
        ("threads", "threads"),
    ]:
        value = getattr(args, attr)
        if value is not None:
            top[key] = value
    if args.val_fraction is not None:
        top["val_fraction"] = _val_fraction(args.val_fraction)
    mk = dict(base.model_kwargs)
    mk.update(_parse_kv(args.model_kw, "--model-kw"))
    axes: dict[str, list[Any]] = {}
    flagged: dict[str, Any] = {}  # model options given as flags: always kept, so checked
    for flag, key, _typ, _help in _SCALAR_FLAGS:
        values = getattr(args, flag[2:].replace("-", "_"))
        if values is None:
            continue
        if key == "skip":
            values = [_bool(v) for v in values]
        if len(values) > 1:
            axes[key] = list(values)
        elif key in ("lr", "momentum", "weight_decay", "batch_size", "seed", "model"):
            top[key] = values[0]
        else:
            flagged[key] = values[0]
    # A model switch drops the file's options of the old model, which may not exist on the new
    # one; options given as flags stay, and one the new model lacks is refused (never ignored).
    if "model" in top and top["model"] != base.model and not args.model_kw:
        mk = {k: v for k, v in mk.items() if k in ("skip",) or k in _model_opts(top["model"])}
    base = replace(base, **top, model_kwargs={**mk, **flagged})

    variants: Any = file_variants
    if axes:
        if isinstance(file_variants, list):
            raise ParameterError(
                "The TOML file lists explicit [[variants]]; flags with several values cannot be "
                "combined with them. Give one value per flag, or list the variants in the file."
            )
        variants = {**(file_variants or {}), **axes}
    # Every variant's settings are checked before train_experiment makes any folder, so a typo
    # (an unknown model, say) leaves nothing behind.
    for _name, cfg, _overrides in resolve_variants(base, variants):
        cfg.resolved()
    dirs = train_experiment(
        base, args.out, variants=variants, progress=not hasattr(args, "no_progress")
    )
    for d in dirs:
        print(d)
    return 0


def _load_config(path: str) -> tuple[Any, Any]:
    """``load_train_config`` (which names a folder or a file that is not TOML text)."""
    from sampletopo.train import load_train_config

    return load_train_config(path)


def _model_opts(name: str) -> set[str]:
    from sampletopo.models import list_models, model_kwargs

    return set(model_kwargs(name)) if name in list_models() else set()


def _val_fraction(text: str) -> float | str:
    """``--val-fraction`` as a float, or the string ``test``."""
    from sampletopo._validation import invalid

    if text == "test":
        return text
    try:
        return float(text)
    except ValueError:
        raise invalid(
            "--val-fraction", "a number in (0, 1) or 'test'", text, where=None, kind="flag"
        ) from None
