"""Landscapes of a recorded run: where they are stored, and computing one for a run and epoch.

What is here: :func:`landscape_path` (``<experiment>/landscapes/<variant>-epoch=NNNN.npz``) and
:func:`landscape_for_run`, which loads a run's model at an epoch and a seeded subset of its
training data, computes the Hessian summary, the directions, the grid and its metrics, and writes
them to one .npz file.

What is not here: the pieces it calls (``_directions``, ``_grid``, ``_metrics``,
:mod:`sampletopo.hessian`) and loading a run (:mod:`sampletopo.runs`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from sampletopo._folders import lock_output
from sampletopo._validation import check_choice, check_int, check_path, check_real, invalid
from sampletopo.landscape._directions import hessian_directions, random_directions
from sampletopo.landscape._grid import check_grid_fits, evaluate_grid
from sampletopo.landscape._metrics import landscape_metrics
from sampletopo.runs import PathLike, as_run


def _subset(n: int, n_samples: int | None, seed: int) -> np.ndarray:
    if n_samples is None or n_samples >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=n_samples, replace=False))


def landscape_path(run_dir: PathLike, epoch: int) -> Path:
    """``<experiment>/landscapes/<variant>-epoch=NNNN.npz`` for a run directory."""
    return as_run(run_dir).landscape_file(epoch)


def landscape_for_run(
    run_dir: PathLike,
    epoch: int,
    *,
    dirs: Literal["hessian", "random"] = "random",
    dim: int = 2,
    steps: int = 21,
    distance: float = 1.0,
    n_samples: int | None = 512,
    seed: int = 0,
    connectivity: Literal["axis", "freudenthal"] = "freudenthal",
    batch_size: int | None = None,
    density_iter: int = 40,
    trace_rtol: float = 0.05,
    trace_max_samples: int = 100,
    hessian: bool = True,
    out: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Landscape, metrics and Hessian summary of a recorded run at one epoch, written to .npz.

    Loads the run's model at ``epoch`` (eval mode) and a seeded subset of ``n_samples`` training
    samples, computes the Hessian's top ``max(dim, 1)`` eigenpairs (Lanczos), its trace
    (Hutchinson) and spectral density (SLQ) on that subset, builds ``dim`` directions (Hessian
    eigenvectors or filter-normalized random ones), evaluates the grid, and saves everything with
    :meth:`Landscape.save` (extras: ``metrics``, ``hessian_eigenvalues``, ``hessian_trace``,
    ``density_nodes``, ``density_weights``, ``run``, ``epoch``). The grid is resumable: an
    interrupted call leaves ``<file>.partial.npz`` and the next call continues from it.

    The trace stops at a relative standard error of ``trace_rtol`` or after
    ``trace_max_samples`` Hessian-vector products, whichever comes first; ``hessian_trace``
    stores ``value``, ``stderr``, ``n_samples``, ``converged``, ``rtol`` and
    ``relative_stderr``, and the metrics ``hessian_trace_converged`` (a
    :class:`sampletopo.hessian.TraceNotConvergedWarning` is issued when it did not converge).

    ``hessian=False`` (random directions only) skips the Hessian: no eigenpairs, trace or
    density are computed or saved, and the metrics' Hessian entries are NaN. On a CPU the trace
    and density are most of the time of a small grid.

    The loss is the run's own (its config's ``loss``: mean cross-entropy by default, ``"mse"``,
    or an importable function's mean), the same loss the recorder stores per sample, so the
    grid's value at the origin is the mean of the recorded training losses of that subset. For
    another loss, call :func:`evaluate_grid` with your own ``loss_fn``.

    Returns
    -------
    Path
        The written file (default :func:`landscape_path`).

    Notes
    -----
    The output file is locked for the call (``.<file>.lock`` beside it, see
    :mod:`sampletopo._folders`): a second process computing the same file (it would resume from
    the same partial file) gets an error naming this one. Landscapes of other epochs or runs,
    and the run's own recording, go on at the same time.
    """
    where = "landscape_for_run"
    check_choice("dirs", dirs, ("hessian", "random"), where=where)
    dim = check_int("dim", dim, 1, None, where=where)
    steps = check_int("steps", steps, 2, None, where=where)
    check_choice("connectivity", connectivity, ("axis", "freudenthal"), where=where)
    # The grid and its graph alone, before the model is loaded or anything written; the
    # parameters' share is checked once the model is known (below, before the Hessian).
    check_grid_fits(steps, dim, 0, connectivity=connectivity, where=where)
    trace_max_samples = check_int(
        "trace_max_samples",
        trace_max_samples,
        2,
        None,
        where=where,
        fix="The trace's standard error needs at least 2 probes.",
    )
    check_real("trace_rtol", trace_rtol, low=0, low_open=True, where=where, fix="Try 0.05.")
    path = check_path(
        "out",
        out if out is not None else landscape_path(run_dir, epoch),
        where=where,
        suffix=".npz",
    )
    with lock_output(path, what=f"computing the landscape of epoch {epoch}"):
        return _landscape_for_run(
            run_dir, epoch, path, dirs=dirs, dim=dim, steps=steps, distance=distance,
            n_samples=n_samples, seed=seed, connectivity=connectivity, batch_size=batch_size,
            density_iter=density_iter, trace_rtol=trace_rtol,
            trace_max_samples=trace_max_samples, hessian=hessian, progress=progress,
        )  # fmt: skip


def _landscape_for_run(
    run_dir: PathLike,
    epoch: int,
    path: Path,
    *,
    dirs: Literal["hessian", "random"],
    dim: int,
    steps: int,
    distance: float,
    n_samples: int | None,
    seed: int,
    connectivity: Literal["axis", "freudenthal"],
    batch_size: int | None,
    density_iter: int,
    trace_rtol: float,
    trace_max_samples: int,
    hessian: bool,
    progress: bool,
) -> Path:
    """:func:`landscape_for_run` once its output file is locked."""
    from sampletopo._losses import loss_from_config
    from sampletopo.hessian import (
        hessian_operator,
        hutchinson_trace,
        spectral_density,
        top_eigenpairs,
    )

    where = "landscape_for_run"
    run = as_run(run_dir)
    model, dataset = run.load_model(epoch)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    check_grid_fits(steps, dim, n_params, connectivity=connectivity, where=where)
    x, y = dataset.tensors("train")
    idx = torch.from_numpy(_subset(int(x.shape[0]), n_samples, seed))
    x, y = x[idx], y[idx]
    # The loss the run recorded (cross-entropy for runs from before losses were chosen).
    loss_fn = loss_from_config(
        str(run.read_config().get("loss", "cross_entropy")), where=where
    ).batch_loss()
    if not hessian and dirs == "hessian":
        raise invalid(
            "dirs",
            "'random' when hessian=False (which skips the Hessian)",
            dirs,
            where=where,
            fix="dirs='hessian' needs the Hessian's eigenvectors. Use dirs='random', or keep "
            "hessian=True.",
        )
    extra: dict[str, Any] = {}
    eig = trace = None
    if hessian:
        op = hessian_operator(model, loss_fn, x, y, batch_size=batch_size)
        k = min(max(dim, 1), max(op.n - 1, 1))
        if dirs == "hessian" and dim > k:
            raise invalid(
                "dim",
                f"at most {k} for Hessian directions (the model has {op.n} trainable parameters)",
                dim,
                where=where,
            )
        eig = top_eigenpairs(op, k=k, seed=seed)
        trace = hutchinson_trace(
            op,
            rtol=trace_rtol,
            min_samples=min(10, trace_max_samples),
            max_samples=trace_max_samples,
            seed=seed,
            progress=progress,
        )
        dens = spectral_density(op, n_iter=min(density_iter, op.n), seed=seed, progress=progress)
        extra = {
            "hessian_eigenvalues": eig.eigenvalues,
            "hessian_trace": {
                "value": trace.value,
                "stderr": trace.stderr,
                "n_samples": trace.n_samples,
                "converged": trace.converged,
                "rtol": trace.rtol,
                "relative_stderr": trace.relative_stderr,
            },
            "density_nodes": dens.nodes,
            "density_weights": dens.weights,
            "hessian_n_hvp": {"eigenpairs": eig.n_hvp, "density": dens.n_hvp},
        }
    if dirs == "hessian":
        assert eig is not None
        directions = hessian_directions(model, eig, dim=dim)
    else:
        directions = random_directions(model, dim=dim, seed=seed)
    partial = path.with_name(path.name.replace(".npz", "") + ".partial.npz")
    land = evaluate_grid(
        model,
        loss_fn,
        x,
        y,
        directions,
        steps=steps,
        distance=distance,
        batch_size=batch_size,
        checkpoint=partial,
        progress=progress,
    )
    metrics = landscape_metrics(
        land,
        connectivity=connectivity,
        hessian_top_eigenvalue=None if eig is None else float(eig.eigenvalues[0]),
        hessian_trace=None if trace is None else trace.value,
        hessian_trace_converged=None if trace is None else trace.converged,
    )
    return land.save(
        path,
        extra={
            "metrics": metrics.to_dict(),
            **extra,
            "run": run.name,
            "epoch": int(epoch),
        },
    )
