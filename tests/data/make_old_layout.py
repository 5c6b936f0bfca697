"""Write the ``old_layout`` fixture: run folders as sampletopo wrote them before issue 12.

Run once, with the code of the commit before the run-folder module (``runs.py``) existed, e.g.::

    git worktree add --detach /tmp/old e591264
    PYTHONPATH=/tmp/old python tests/data/make_old_layout.py tests/data/old_layout

It writes a small experiment (an MLP on 60 + 60 digits, two learning rates, 2 epochs) with its
topology (k=5), summaries, Wasserstein tables, a regions table with its figures, a 2-D landscape,
and a second experiment recorded by a ``LossRecorder`` from in-memory data (its saved dataset in
``datasets/``). ``expected.json`` keeps what the old code reported about them (the report's file
list, the report's run table), so tests compare the new code's reading with the old code's.
The report itself is not kept (its images are large). Absolute paths the old code stored in the
configs (``data_root``) point into the folder the script ran in; digits never reads them.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path


def main(out: Path) -> None:
    import numpy as np
    import torch

    import sampletopo as st
    from sampletopo.cli import main as cli
    from sampletopo.landscape import landscape_for_run
    from sampletopo.report import run_table, write_report
    from sampletopo.train import TrainConfig, train_experiment

    torch.set_num_threads(1)
    if out.exists():
        shutil.rmtree(out)
    exp = out / "lr-study"
    cfg = TrainConfig(
        name="old-layout",
        model="mlp",
        model_kwargs={"hidden": [16]},
        data="digits",
        max_samples=60,
        epochs=2,
        milestones=[1],
        device="cpu",
        threads=1,
    )
    runs = train_experiment(cfg, exp, variants={"lr": [0.1, 0.01]}, progress=False)
    assert cli(["topology", str(exp), "--k", "5", "--no-progress"]) == 0
    assert cli(
        ["samples", str(runs[0]), "--split", "val", "--epoch", "2", "--top", "3", "--k", "5",
         "--figures"]
    ) == 0  # fmt: skip
    landscape_for_run(
        runs[0], 2, dirs="random", dim=2, steps=5, distance=0.5, n_samples=32, hessian=False,
        progress=False,
    )  # fmt: skip

    # A user's own loop: in-memory data, saved once beside the runs.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 1, 4, 4)).astype(np.float32)
    y = np.arange(40) % 3
    ds = st.Dataset.from_arrays("toy", train=(x[:28], y[:28]), val=(x[28:], y[28:]))
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    rec = st.LossRecorder(out / "loop" / "run1", ds)
    for epoch in range(2):
        rec.on_train_epoch_end(epoch, net)
        with torch.no_grad():
            net[1].weight.mul_(0.5)
    rec.close()
    assert cli(["topology", str(out / "loop"), "--k", "3", "--no-progress"]) == 0

    report = Path(os.environ.get("TMPDIR", "/tmp")) / "old-layout-report"
    shutil.rmtree(report, ignore_errors=True)
    write_report([exp], report, title="old layout", progress=False)
    table = run_table(st.record._run_dirs(exp))
    expected = {
        "report_files": sorted(
            str(p.relative_to(report)) for p in report.rglob("*") if p.is_file()
        ),
        "run_table": table.to_dicts(),
    }
    (out / "expected.json").write_text(json.dumps(expected, indent=1, default=float) + "\n")
    for lock in out.rglob(".sampletopo.lock"):
        lock.unlink()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
