"""Recording overhead as a fraction of one epoch's training time, for both recorder modes.

Two cases: a digits model on the real digits data, and a WRN-16 on a CIFAR-sized synthetic data
set (3x32x32). For each, per epoch (median over ``--epochs``):

* ``train``: one training epoch with no recording;
* ``eval``: the eval-mode recording at epoch end (eval pass over train and val + Parquet writes);
* ``train_pass``: the time spent in ``on_train_batch_end`` during the epoch plus the epoch-end
  work, with val recorded too (an eval pass over val) and with the train split only.

Run: ``python benchmarks/bench_record.py [--device cuda] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sampletopo.data import Dataset, load_dataset
from sampletopo.models import create_model
from sampletopo.record import LossRecorder


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _epoch(model, opt, x, y, *, batch_size, gen, rec=None):
    """Train one epoch; return (seconds, seconds spent in the recorder's batch hook)."""
    dev = x.device
    n = x.shape[0]
    perm = torch.randperm(n, generator=gen).to(dev)
    model.train()
    hook = 0.0
    _sync(dev)
    t0 = time.perf_counter()
    for s in range(0, n, batch_size):
        idx = perm[s : s + batch_size]
        logits = model(x[idx])
        loss = F.cross_entropy(logits, y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if rec is not None:
            _sync(dev)
            h0 = time.perf_counter()
            rec.on_train_batch_end(idx, logits, y[idx])
            _sync(dev)
            hook += time.perf_counter() - h0
    _sync(dev)
    return time.perf_counter() - t0, hook


def bench(label: str, ds: Dataset, make_model, *, epochs: int, batch_size: int, dev: torch.device):
    torch.manual_seed(0)
    model = make_model().to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    x, y = ds.tensors("train")
    x, y = x.to(dev), y.to(dev)
    gen = torch.Generator().manual_seed(0)
    rows: dict[str, list[float]] = {k: [] for k in ("train", "eval", "tp", "tp_train_only")}
    with tempfile.TemporaryDirectory() as tmp:
        r_eval = LossRecorder(Path(tmp) / "eval", ds, mode="eval", device=dev)
        r_tp = LossRecorder(Path(tmp) / "tp", ds, mode="train_pass", device=dev)
        r_tp1 = LossRecorder(
            Path(tmp) / "tp1", ds, mode="train_pass", splits=("train",), device=dev
        )
        _epoch(model, opt, x, y, batch_size=batch_size, gen=gen)  # warm-up
        for r in (r_eval, r_tp, r_tp1):  # warm-up epoch 0 (eval pass, file writing)
            r.on_train_epoch_end(0, model)
        for e in range(1, epochs + 1):
            t_train, _ = _epoch(model, opt, x, y, batch_size=batch_size, gen=gen)
            rows["train"].append(t_train)
            t0 = time.perf_counter()
            r_eval.on_train_epoch_end(e, model)
            _sync(dev)
            rows["eval"].append(time.perf_counter() - t0)
            # One training epoch feeds both train_pass recorders' hooks; time them separately.
            _, hook = _epoch(model, opt, x, y, batch_size=batch_size, gen=gen, rec=r_tp)
            r_tp1._buf = r_tp._buf  # same batches, same losses: share the gathered buffer
            t0 = time.perf_counter()
            r_tp.on_train_epoch_end(e, model)
            _sync(dev)
            rows["tp"].append(hook + time.perf_counter() - t0)
            t0 = time.perf_counter()
            r_tp1.on_train_epoch_end(e, model)
            _sync(dev)
            rows["tp_train_only"].append(hook + time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in rows.items()}
    t = med["train"]
    print(
        f"{label}: n_train={ds.n('train')} n_val={ds.n('val')} "
        f"params={sum(p.numel() for p in model.parameters()):,} device={dev}"
    )
    print(f"  training epoch                     {t:8.3f} s")
    print(
        f"  eval mode (train+val eval pass)    {med['eval']:8.3f} s  = {100 * med['eval'] / t:6.1f} %"
    )
    print(
        f"  train_pass mode, train + val       {med['tp']:8.3f} s  = {100 * med['tp'] / t:6.1f} %"
    )
    print(
        f"  train_pass mode, train split only  {med['tp_train_only']:8.3f} s  = "
        f"{100 * med['tp_train_only'] / t:6.1f} %"
    )
    return med


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs (median)")
    ap.add_argument(
        "--cifar-n",
        type=int,
        default=None,
        help="synthetic CIFAR-sized training samples (default 5000 on CUDA, 256 on CPU)",
    )
    ap.add_argument("--widen", type=int, default=4, help="WRN-16 widening factor")
    ap.add_argument("--digits-model", default="wrn16")
    ap.add_argument(
        "--digits-kw", default="widen=1,width=8", help="model options, e.g. widen=1,width=8"
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    if args.cifar_n is None:
        args.cifar_n = 5000 if dev.type == "cuda" else 256
    kw = {k: int(v) for k, v in (p.split("=") for p in args.digits_kw.split(",") if p)}

    digits = load_dataset("digits")
    bench(
        f"digits {args.digits_model} {kw}",
        digits,
        lambda: create_model(args.digits_model, in_channels=1, input_size=8, **kw),
        epochs=args.epochs,
        batch_size=128,
        dev=dev,
    )
    rng = np.random.default_rng(0)
    n_val = max(args.cifar_n // 5, 10)
    cifar = Dataset.from_arrays(
        "cifar-sized",
        train=(
            rng.integers(0, 256, (args.cifar_n, 3, 32, 32), dtype=np.uint8),
            rng.integers(0, 10, args.cifar_n),
        ),
        val=(rng.integers(0, 256, (n_val, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, n_val)),
    )
    bench(
        f"WRN-16-{args.widen} on synthetic 3x32x32",
        cifar,
        lambda: create_model("wrn16", widen=args.widen),
        epochs=args.epochs,
        batch_size=128,
        dev=dev,
    )


if __name__ == "__main__":
    main()
