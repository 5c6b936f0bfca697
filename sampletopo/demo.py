"""The main job: both classic studies end to end on the embedded digits data.

:func:`run_demo` trains, on scikit-learn's digits (nothing is downloaded),

- the **LR study**: a small Wide ResNet-16 with initial learning rate 0.1 vs 0.01, annealed x0.1
  at the thesis' epochs 60/125/150 of 200 scaled to the demo's length, no augmentation;
- the **skip study**: a small CIFAR-style ResNet with vs without skip connections;

records every sample's loss (train and validation) at every epoch, builds the kNN graphs,
computes the join/split diagrams, summaries and Wasserstein curves, computes the parameter-space
view at the final epoch (Hessian spectrum, a 2-D random-direction landscape with filter
normalization, and a 3-D Hessian-direction landscape with its merge-tree metrics and profile),
lists the hard regions of the validation data (most persistent split-tree peaks), and writes one
HTML report. Models are deliberately small so the whole job fits in a few minutes on 2 CPU cores;
:class:`DemoSettings` holds every knob.

This module only orchestrates: the work is in :mod:`sampletopo.train`, :mod:`sampletopo.analysis`,
:mod:`sampletopo.landscape`, :mod:`sampletopo.samples` and :mod:`sampletopo.report`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sampletopo.runs import Report

__all__ = ["DemoSettings", "run_demo"]


@dataclass(frozen=True)
class DemoSettings:
    """Knobs of the demo; the defaults are what ``make demo`` runs."""

    epochs: int = 20
    data: str = "digits"
    lr_model: str = "wrn16"
    lr_model_kwargs: dict[str, Any] = field(default_factory=lambda: {"widen": 1, "width": 8})
    lrs: tuple[float, float] = (0.1, 0.01)
    skip_model: str = "resnet"
    skip_model_kwargs: dict[str, Any] = field(default_factory=lambda: {"depth": 14, "width": 8})
    skip_lr: float = 0.05
    batch_size: int = 128
    seed: int = 0
    k: int = 20
    landscape_steps: int = 21
    landscape_distance: float = 0.5
    landscape_3d_steps: int = 7
    landscape_samples: int = 256
    top_regions: int = 4
    landscapes: bool = True
    samples: bool = True
    threads: int = 1


def run_demo(
    out: str | Path, *, settings: DemoSettings | None = None, progress: bool = True
) -> Path:
    """Run both studies into ``out`` and return the path of ``out/report/index.html``.

    Re-running continues where a previous run stopped: finished epochs, diagrams and landscapes
    are kept.
    """
    import torch

    from sampletopo import analysis
    from sampletopo.report import write_report
    from sampletopo.runs import Report

    s = settings or DemoSettings()
    out = Path(out)
    report = Report(out / "report")
    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        timings[name] = now - since
        if progress:
            print(f"[demo] {name}: {timings[name]:.1f} s")
        return now

    torch.manual_seed(s.seed)
    torch.set_num_threads(max(1, s.threads))
    t = time.perf_counter()
    studies = _train_studies(s, out, progress=progress)
    t = lap("train + record (4 variants)", t)
    analysis.compute_topology(
        [r for runs in studies.values() for r in runs], k=s.k, progress=progress
    )
    t = lap("kNN graphs + topology", t)
    if s.landscapes:
        _landscapes(s, studies, progress=progress)
        t = lap("Hessian + landscapes", t)
    if s.samples:
        _hard_regions(s, studies, report)
        t = lap("hard regions (samples)", t)
    total = time.perf_counter() - t0
    notes = (
        "Demo timings on this machine: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
        + f"; total before the report {total:.0f} s."
    )
    index = write_report(
        [out / name for name in studies],
        report.path,
        title="sampletopo demo: LR 0.1 vs 0.01 and skip vs no skip on digits",
        notes=notes,
        progress=progress,
    )
    lap("figures + report", t)
    if progress:
        print(f"[demo] total {time.perf_counter() - t0:.1f} s")
    return index


def _train_studies(s: DemoSettings, out: Path, *, progress: bool) -> dict[str, list[Path]]:
    """Train the two studies; returns each experiment's name and run folders."""
    from sampletopo.train import TrainConfig, train_experiment

    # One torch thread: measured about 5x faster than two on a shared 2-core machine.
    base: dict[str, Any] = dict(
        data=s.data,
        epochs=s.epochs,
        batch_size=s.batch_size,
        seed=s.seed,
        device="cpu",
        threads=s.threads,
    )
    lr_cfg = TrainConfig(
        name="lr-study", model=s.lr_model, model_kwargs=dict(s.lr_model_kwargs), **base
    )
    skip_cfg = TrainConfig(
        name="skip-study",
        model=s.skip_model,
        model_kwargs=dict(s.skip_model_kwargs),
        lr=s.skip_lr,
        **base,
    )
    return {
        "lr-study": train_experiment(
            lr_cfg, out / "lr-study", variants={"lr": list(s.lrs)}, progress=progress
        ),
        "skip-study": train_experiment(
            skip_cfg, out / "skip-study", variants={"skip": [True, False]}, progress=progress
        ),
    }


def _landscapes(s: DemoSettings, studies: dict[str, list[Path]], *, progress: bool) -> None:
    """A 2-D random-direction landscape of every run, a 3-D Hessian one of the LR study's."""
    from functools import partial

    from sampletopo.landscape import landscape_for_run
    from sampletopo.runs import Run

    # Same subset, seed and Hessian settings for every landscape of the demo.
    landscape = partial(
        landscape_for_run,
        epoch=s.epochs,
        distance=s.landscape_distance,
        n_samples=s.landscape_samples,
        seed=s.seed,
        trace_rtol=0.1,
        density_iter=30,
        progress=progress,
    )
    for rd in [r for runs in studies.values() for r in runs]:
        landscape(rd, dirs="random", dim=2, steps=s.landscape_steps)
    for rd in studies["lr-study"]:
        p = Run(rd).landscape_file(s.epochs, tag="hessian3d")
        landscape(rd, dirs="hessian", dim=3, steps=s.landscape_3d_steps, out=p)


def _hard_regions(s: DemoSettings, studies: dict[str, list[Path]], report: Report) -> None:
    """The image grids and loss curves of each run's hardest validation regions, drawn where
    the report shows them."""
    from sampletopo.plotting._samples import sample_figures
    from sampletopo.report import SAMPLES_SECTION

    for exp, runs in studies.items():
        for rd in runs:
            sample_figures(
                rd,
                report.section_dir(exp, SAMPLES_SECTION),
                split="val",
                epoch=s.epochs,
                top=s.top_regions,
            )
