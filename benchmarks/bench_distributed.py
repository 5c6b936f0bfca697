"""Record step with 1 vs 2 processes on the CPU (gloo): time and speed-up.

Saves ``--checkpoints`` checkpoints of a model for the digits data, then records them with
:func:`sampletopo.record.record_checkpoints` in 1 process and in 2 processes, each with
``--shard samples`` and ``--shard checkpoints``. Every process runs one thread and is started
the same way (spawned, joined into a gloo group), so the timings compare like with like; the
time is the record step alone (between two barriers); process start-up and loading the data
set are excluded. The tables
written by 2 processes are checked equal to the 1-process ones.

Run: ``python benchmarks/bench_distributed.py [--model resnet20] [--checkpoints 4] [--repeat 2]``.
On a 2-core machine the ideal speed-up is 2x; a machine shared with other work shows less.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import polars as pl
import torch
import torch.distributed as dist


def _worker(rank: int, world: int, tmp: str, model: str, shard: str, out: str, bs: int) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    from sampletopo.data import load_dataset
    from sampletopo.record import record_checkpoints

    ds = load_dataset("digits")  # outside the timing: its imports take seconds
    ds.tensors("train")
    dist.init_process_group(
        "gloo",
        init_method=f"file://{tmp}/pg-{out}",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=300),
    )
    dist.barrier()
    t0 = time.perf_counter()
    record_checkpoints(
        Path(tmp) / "ck",
        Path(tmp) / out,
        model=model,
        data=ds,
        batch_size=bs,
        shard=shard,  # type: ignore[arg-type]
        progress=False,
    )
    dist.barrier()
    seconds = time.perf_counter() - t0
    if rank == 0:
        (Path(tmp) / f"{out}.json").write_text(json.dumps(seconds))
    dist.destroy_process_group()


def _timed(tmp: str, world: int, model: str, shard: str, out: str, bs: int) -> float:
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_worker, args=(r, world, tmp, model, shard, out, bs))
        for r in range(world)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    if any(p.exitcode for p in procs):
        raise SystemExit(f"a rank failed: exit codes {[p.exitcode for p in procs]}")
    return float(json.loads((Path(tmp) / f"{out}.json").read_text()))


def _same(a: Path, b: Path) -> bool:
    fa, fb = sorted(a.glob("losses/*/*.parquet")), sorted(b.glob("losses/*/*.parquet"))
    return [p.name for p in fa] == [p.name for p in fb] and all(
        pl.read_parquet(x).equals(pl.read_parquet(y)) for x, y in zip(fa, fb)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--checkpoints", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=2, help="runs per setting; the median is shown")
    args = ap.parse_args()

    from sampletopo.data import load_dataset
    from sampletopo.models import create_model

    ds = load_dataset("digits")
    with tempfile.TemporaryDirectory() as tmp:
        ck = Path(tmp) / "ck"
        ck.mkdir()
        for e in range(args.checkpoints):
            torch.manual_seed(e)
            net = create_model(args.model, num_classes=ds.num_classes, in_channels=1, input_size=8)
            torch.save({"model": net.state_dict(), "epoch": e}, ck / f"epoch={e:04d}.pt")
        n = ds.n("train") + ds.n("val")
        print(
            f"record {args.checkpoints} checkpoint(s) of {args.model} on digits ({n} samples, "
            f"batch {args.batch_size}), 1 thread per process, median of {args.repeat}:"
        )
        base = None
        for world, shard in ((1, "samples"), (2, "samples"), (2, "checkpoints")):
            times = [
                _timed(tmp, world, args.model, shard, f"w{world}-{shard}-{i}", args.batch_size)
                for i in range(args.repeat)
            ]
            t = statistics.median(times)
            base = base if base is not None else t
            same = _same(Path(tmp) / "w1-samples-0", Path(tmp) / f"w{world}-{shard}-0")
            label = f"{world} process{'es' if world > 1 else ''}" + (
                f", --shard {shard}" if world > 1 else ""
            )
            print(
                f"  {label:<32} {t:7.2f} s  ({1e3 * t / args.checkpoints:6.0f} ms/checkpoint)  "
                f"speed-up {base / t:4.2f}x  tables equal to 1 process: {same}"
            )


if __name__ == "__main__":
    main()
