"""``sampletopo record``: per-sample losses of every checkpoint in a folder.

Each checkpoint is loaded with ``weights_only=True`` (bare state_dict, ``{"model"|"state_dict":
..., "epoch": ...}`` and DataParallel ``module.`` prefixes are understood); its epoch is its
``epoch`` entry, else the last number in the file name. Writes the same tables as live
recording to ``OUT/losses/<split>/epoch=NNNN.parquet``; epochs already there are skipped.

Runs unchanged under ``torchrun --nproc_per_node=N`` (gloo on the CPU, NCCL with --device cuda):
the ranks share the work (--shard samples: each evaluates a slice of every checkpoint's samples;
--shard checkpoints: each evaluates whole checkpoints) and rank 0 writes each table once.
"""

from __future__ import annotations

import argparse
from typing import Any

from sampletopo.commands._common import add_command, given, option, progress_option
from sampletopo.runs import SPLITS

_RECORD = "sampletopo.from_checkpoints:record_checkpoints"


def register(subparsers: Any) -> None:
    p = add_command(
        subparsers,
        "record",
        help="record per-sample losses from a folder of checkpoints",
        description=__doc__,
    )
    p.add_argument("--checkpoints", required=True, help="folder of checkpoint files")
    p.add_argument(
        "--model",
        required=True,
        help="model the checkpoints were saved from: {models}, 'torchvision:NAME' or your own "
        "factory as 'pkg.module:factory' (options via --model-kw)",
    )
    p.add_argument(
        "--data",
        required=True,
        help="dataset: {datasets}, an .npz file (x_train, y_train, optional x_val, y_val), "
        "'imagefolder:FOLDER' or 'pkg.module:function' returning a Dataset",
    )
    option(p, "--data-root", default_of=_RECORD, help="folder with local datasets")
    p.add_argument("--out", required=True, help="run folder to write")
    option(
        p,
        "--model-kw",
        nargs="+",
        metavar="KEY=VALUE",
        help="model options as in training, e.g. width=4 batchnorm=true (values read as TOML: "
        "4 is an int, 0.5 a float, true a bool, anything else a string)",
    )
    option(
        p,
        "--skip",
        choices=["true", "false"],
        help="ResNet/WRN skip connections (default: true)",
    )
    option(p, "--data-seed", type=int, default_of=_RECORD, help="seed of the train/val split")
    option(
        p,
        "--val-fraction",
        help="validation fraction, or 'test' for the official test set (default: 'test' where the "
        "dataset has one, else 0.2)",
    )
    option(
        p,
        "--max-samples",
        type=int,
        help="keep at most this many samples per split (default: every sample)",
    )
    option(
        p, "--splits", nargs="+", choices=list(SPLITS), default_of=_RECORD, help="splits to record"
    )
    option(p, "--batch-size", type=int, default_of=_RECORD, help="evaluation batch size")
    option(
        p,
        "--loss",
        choices=["cross_entropy", "mse"],
        default_of=_RECORD,
        help="the per-sample loss recorded; mse with class labels compares the outputs with "
        "one-hot labels (a loss function of your own: record_checkpoints(loss=...) in Python)",
    )
    option(p, "--device", help="auto, cpu, cuda, cuda:N (default: auto, cuda if available)")
    option(
        p,
        "--on-exists",
        choices=["skip", "error"],
        default_of=_RECORD,
        help="an epoch already recorded in --out: keep it and move on, or stop with an error",
    )
    progress_option(p)
    option(
        p,
        "--shard",
        choices=["samples", "checkpoints"],
        default_of=_RECORD,
        help="under torchrun: split each checkpoint's samples across ranks (samples), or split "
        "the checkpoints",
    )
    option(
        p,
        "--on-change",
        choices=["error", "skip"],
        default_of=_RECORD,
        help="a checkpoint that vanishes or changes after the folder was listed: stop with an "
        "error or skip its epoch with a warning",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import warnings

    from sampletopo._device import resolve_device
    from sampletopo._writer import NonFiniteLossWarning
    from sampletopo.commands._common import check_out_dir, check_seed_flag, library_default
    from sampletopo.commands.train import _parse_kv, _val_fraction
    from sampletopo.distributed import process_group, rank_device
    from sampletopo.from_checkpoints import record_checkpoints
    from sampletopo.readers import loss_epochs

    check_out_dir(args.out)
    check_seed_flag(getattr(args, "data_seed", None), "--data-seed")
    # Checked here, before a process group is joined or any folder is made. The command line's
    # own default: the GPU when there is one (the library's device=None means the model's).
    device = resolve_device(
        getattr(args, "device", "auto"), where="sampletopo record", param="--device",
        allow_none=False,
    )  # fmt: skip
    options = given(
        args, "data_root", "data_seed", "max_samples", "splits", "batch_size", "on_exists",
        "shard", "on_change", "loss",
    )  # fmt: skip
    kwargs = _parse_kv(getattr(args, "model_kw", None), "--model-kw")
    if hasattr(args, "skip"):
        kwargs["skip"] = args.skip == "true"
    if hasattr(args, "val_fraction"):
        options["val_fraction"] = _val_fraction(args.val_fraction)
    with process_group(device=device) as world, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NonFiniteLossWarning)
        done = record_checkpoints(
            args.checkpoints,
            args.out,
            model=args.model,
            data=args.data,
            model_kwargs=kwargs,
            device=rank_device(device, world),
            **options,
        )
    if not world.is_main:
        return 0  # rank 0 wrote the tables and reports them
    for w in caught:
        print(f"WARNING: {w.message}")
    shard = options.get("shard") or library_default(f"{_RECORD}.shard")
    ranks = f" with {world.size} processes (--shard {shard})" if world.distributed else ""
    print(f"recorded {len(done)} epoch(s) into {args.out}{ranks}: {done}")
    for s in options.get("splits") or library_default(f"{_RECORD}.splits"):
        print(f"  {s}: {len(loss_epochs(args.out, split=s))} epoch(s) on disk")
    nonfinite = [w for w in caught if issubclass(w.category, NonFiniteLossWarning)]
    if nonfinite:
        print(f"WARNING: {len(nonfinite)} table(s) hold NaN/inf losses (kept, see above).")
    return 0
