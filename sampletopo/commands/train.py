"""``sampletopo train``: train the variants of an experiment from a TOML file and/or flags.

A flag given several values (``--lr 0.1 0.01``, ``--skip true false``) becomes a variant axis;
every combination of the axes is one variant, trained into ``OUT/<variant>``. Flags override the
TOML file's settings and replace its variant axis of the same name.
"""

from __future__ import annotations

import argparse
from typing import Any

# (flag, TrainConfig key or model option, type)
_SCALAR_FLAGS: list[tuple[str, str, Any]] = [
    ("--lr", "lr", float),
    ("--momentum", "momentum", float),
    ("--weight-decay", "weight_decay", float),
    ("--batch-size", "batch_size", int),
    ("--seed", "seed", int),
    ("--model", "model", str),
    ("--skip", "skip", str),
    ("--width", "width", int),
    ("--widen", "widen", int),
    ("--depth", "depth", int),
]


def _bool(text: str) -> bool:
    low = text.lower()
    if low in ("true", "1", "yes"):
        return True
    if low in ("false", "0", "no"):
        return False
    from sampletopo._errors import SampletopoError

    raise SampletopoError(f"The '--skip' flag takes true or false. Got {text!r} instead.")


def _parse_kv(items: list[str] | None, flag: str) -> dict[str, Any]:
    import sys

    from sampletopo._errors import SampletopoError

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise SampletopoError(f"{flag} takes KEY=VALUE pairs (e.g. widen=2). Got {item!r}.")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value
    return out


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train",
        help="train an experiment's variants, saving checkpoints and per-sample losses",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", nargs="?", help="TOML file with settings and variants (optional)")
    p.add_argument("--out", required=True, help="experiment folder (one sub-folder per variant)")
    p.add_argument("--name", help="experiment name")
    p.add_argument("--data", help="dataset name (digits, cifar10, mnist, synthetic)")
    p.add_argument("--data-root", help="folder with local datasets (default: data)")
    p.add_argument("--data-seed", type=int, help="seed of the train/val split (default 0)")
    p.add_argument(
        "--val-fraction", help="validation fraction, or 'test' for the official test set"
    )
    p.add_argument("--max-samples", type=int, help="keep at most this many samples per split")
    p.add_argument("--epochs", type=int, help="epochs to train")
    p.add_argument("--milestones", type=int, nargs="+", help="epochs after which lr *= gamma")
    p.add_argument("--gamma", type=float, help="lr factor at each milestone (default 0.1)")
    p.add_argument("--record-mode", choices=["eval", "train_pass"], help="how losses are recorded")
    p.add_argument("--record-splits", nargs="+", choices=["train", "val"], help="splits to record")
    p.add_argument("--checkpoint-every", type=int, help="save a checkpoint every N epochs")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N (default auto)")
    p.add_argument(
        "--threads", type=int, help="torch CPU threads (default: torch's); 1 helps on busy machines"
    )
    p.add_argument("--model-kw", nargs="+", metavar="KEY=VALUE", help="model options, e.g. widen=2")
    for flag, _key, typ in _SCALAR_FLAGS:
        p.add_argument(flag, nargs="+", type=typ, help="one value, or several to make variants")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from sampletopo._errors import SampletopoError
    from sampletopo.train import TrainConfig, load_train_config, train_experiment

    if args.config:
        base, file_variants = load_train_config(args.config)
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
    for flag, key, _typ in _SCALAR_FLAGS:
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
            mk[key] = values[0]
    # A model switch drops the file's options of the old model, which may not exist on the new one.
    if "model" in top and top["model"] != base.model and not args.model_kw:
        mk = {k: v for k, v in mk.items() if k in ("skip",) or k in _model_opts(top["model"])}
    base = replace(base, **top, model_kwargs=mk)

    variants: Any = file_variants
    if axes:
        if isinstance(file_variants, list):
            raise SampletopoError(
                "The TOML file lists explicit [[variants]]; flags with several values cannot be "
                "combined with them. Give one value per flag, or list the variants in the file."
            )
        variants = {**(file_variants or {}), **axes}
    dirs = train_experiment(base, args.out, variants=variants, progress=not args.no_progress)
    for d in dirs:
        print(d)
    return 0


def _model_opts(name: str) -> set[str]:
    from sampletopo.models import list_models, model_kwargs

    return set(model_kwargs(name)) if name in list_models() else set()


def _val_fraction(text: str) -> float | str:
    """``--val-fraction`` as a float, or the string ``test``."""
    from sampletopo._errors import SampletopoError

    if text == "test":
        return text
    try:
        return float(text)
    except ValueError:
        raise SampletopoError(
            f"The '--val-fraction' flag takes a number in (0, 1) or 'test'. Got {text!r} instead."
        ) from None
