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

from sampletopo.commands._common import add_command
from sampletopo.runs import SPLITS


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
        help="model the checkpoints were saved from: {models} (options via --model-kw)",
    )
    p.add_argument("--data", required=True, help="dataset name: {datasets}")
    p.add_argument("--data-root", default="data", help="folder with local datasets")
    p.add_argument("--out", required=True, help="run folder to write")
    p.add_argument(
        "--model-kw",
        nargs="+",
        metavar="KEY=VALUE",
        help="model options as in training, e.g. width=4 batchnorm=true",
    )
    p.add_argument(
        "--skip",
        choices=["true", "false"],
        help="ResNet/WRN skip connections (default: true)",
    )
    p.add_argument("--data-seed", type=int, default=0, help="seed of the train/val split")
    p.add_argument(
        "--val-fraction",
        help="validation fraction, or 'test' for the official test set (default: 'test' where the "
        "dataset has one, else 0.2)",
    )
    p.add_argument("--max-samples", type=int, help="keep at most this many samples per split")
    p.add_argument(
        "--splits",
        nargs="+",
        choices=list(SPLITS),
        default=list(SPLITS),
        help="splits to record",
    )
    p.add_argument("--batch-size", type=int, default=512, help="evaluation batch size")
    p.add_argument(
        "--device", default=None, help="auto, cpu, cuda, cuda:N (default: cuda if available)"
    )
    p.add_argument(
        "--on-exists",
        choices=["skip", "error"],
        default="skip",
        help="an epoch already recorded in --out: keep it and move on, or stop with an error",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument(
        "--shard",
        choices=["samples", "checkpoints"],
        default="samples",
        help="under torchrun: split each checkpoint's samples across ranks (default), or split "
        "the checkpoints",
    )
    p.add_argument(
        "--on-change",
        choices=["error", "skip"],
        default="error",
        help="a checkpoint that vanishes or changes after the folder was listed: stop with an "
        "error (default) or skip its epoch with a warning",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import warnings

    from sampletopo._device import resolve_device
    from sampletopo._writer import NonFiniteLossWarning
    from sampletopo.commands._common import check_out_dir, check_seed_flag
    from sampletopo.commands.train import _parse_kv, _val_fraction
    from sampletopo.distributed import process_group, rank_device
    from sampletopo.from_checkpoints import record_checkpoints
    from sampletopo.readers import loss_epochs

    check_out_dir(args.out)
    check_seed_flag(args.data_seed, "--data-seed")
    # Checked here, before a process group is joined or any folder is made.
    device = resolve_device(
        args.device or "auto", where="sampletopo record", param="--device", allow_none=False
    )
    kwargs = _parse_kv(args.model_kw, "--model-kw")
    if args.skip is not None:
        kwargs["skip"] = args.skip == "true"
    vf = None if args.val_fraction is None else _val_fraction(args.val_fraction)
    with process_group(device=device) as world, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NonFiniteLossWarning)
        done = record_checkpoints(
            args.checkpoints,
            args.out,
            model=args.model,
            data=args.data,
            data_root=args.data_root,
            model_kwargs=kwargs,
            data_seed=args.data_seed,
            val_fraction=vf,
            max_samples=args.max_samples,
            splits=args.splits,
            batch_size=args.batch_size,
            device=rank_device(device, world),
            on_exists=args.on_exists,
            progress=not args.no_progress,
            shard=args.shard,
            on_change=args.on_change,
        )
    if not world.is_main:
        return 0  # rank 0 wrote the tables and reports them
    for w in caught:
        print(f"WARNING: {w.message}")
    ranks = f" with {world.size} processes (--shard {args.shard})" if world.distributed else ""
    print(f"recorded {len(done)} epoch(s) into {args.out}{ranks}: {done}")
    for s in args.splits:
        print(f"  {s}: {len(loss_epochs(args.out, split=s))} epoch(s) on disk")
    nonfinite = [w for w in caught if issubclass(w.category, NonFiniteLossWarning)]
    if nonfinite:
        print(f"WARNING: {len(nonfinite)} table(s) hold NaN/inf losses (kept, see above).")
    return 0
