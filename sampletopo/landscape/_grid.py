"""Grids of any dimension around a model's parameters: evaluation, its resume file, and storage.

What is here: :class:`Landscape` (loss and accuracy on a ``steps**d`` grid, saved to and read from
.npz by :meth:`Landscape.save` / :func:`read_landscape`) and :func:`evaluate_grid`, which evaluates
``theta + sum_k c_k d_k`` for ``c`` on a grid over ``[-distance, distance]**d``, batching grid
points with :func:`torch.func.vmap` over :func:`torch.func.functional_call`, with a progress bar
and a resumable side file (:class:`ResumeFile`, holding a :class:`GridProgress`). Non-finite
losses are kept as they are and reported (:class:`NonFiniteLandscapeWarning`), never replaced.

What is not here: the directions (``_directions``), the topology of a grid (``_metrics``,
``_profile``), and where a recorded run keeps its landscapes (``_run``).
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap
from tqdm.auto import tqdm

from sampletopo._batching import auto_batch_size
from sampletopo._errors import NonFiniteLandscapeWarning
from sampletopo._io import write_atomic
from sampletopo._runfiles import read_npz
from sampletopo._validation import (
    available_memory,
    bytes_text,
    check_int,
    check_path,
    check_real,
    invalid,
)
from sampletopo.hessian import LossFn, check_samples, eval_mode, trainable_parameters
from sampletopo.landscape._directions import Directions


@dataclass(frozen=True, eq=False)
class Landscape:
    """Loss and accuracy on a ``steps**d`` grid around a model's parameters.

    Point ``idx`` (a tuple of ``d`` indices) has parameters
    ``theta + sum_k coords[k][idx[k]] * directions.vectors[k]``; ``loss[idx]`` is its mean loss
    over the data. Axis ``k`` of every array follows direction ``k``.

    Attributes
    ----------
    coords : tuple of ndarray
        Per direction, the ``steps`` coefficients ``linspace(-distance, distance, steps)``.
    loss, accuracy : ndarray, shape ``(steps,) * d``
        ``accuracy`` is NaN when the model is not a classifier. Non-finite losses are kept.
    directions : Directions
    distance : float
    n_samples : int
        Data points each loss is averaged over.
    """

    coords: tuple[np.ndarray, ...]
    loss: np.ndarray
    accuracy: np.ndarray
    directions: Directions
    distance: float
    n_samples: int

    @property
    def dim(self) -> int:
        return len(self.coords)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(c.shape[0]) for c in self.coords)

    @property
    def n_points(self) -> int:
        return int(self.loss.size)

    @property
    def n_nonfinite(self) -> int:
        """Grid points whose loss is NaN or infinite."""
        return int(np.count_nonzero(~np.isfinite(self.loss)))

    def save(self, path: str | Path, *, extra: dict[str, Any] | None = None) -> Path:
        """Write the landscape (and optional ``extra`` arrays / JSON values) to ``path`` (.npz).

        The file is written to a temporary name and renamed, so a reader never sees half a file.
        Direction vectors are stored in float32.
        """
        arrays: dict[str, Any] = {
            "loss": self.loss,
            "accuracy": self.accuracy,
            "distance": np.float64(self.distance),
            "n_samples": np.int64(self.n_samples),
            "direction_vectors": self.directions.vectors.astype(np.float32),
            "directions_json": np.array(json.dumps(self.directions.metadata())),
        }
        for k, c in enumerate(self.coords):
            arrays[f"coords_{k}"] = c
        for key, value in (extra or {}).items():
            if isinstance(value, np.ndarray):
                arrays[f"extra_{key}"] = value
            else:
                arrays[f"extrajson_{key}"] = np.array(json.dumps(value))
        return _atomic_savez(Path(path), arrays)


def _atomic_savez(path: Path, arrays: dict[str, Any]) -> Path:
    return write_atomic(path, lambda fh: np.savez(fh, **arrays))


def read_landscape(path: str | Path) -> tuple[Landscape, dict[str, Any]]:
    """Read a file written by :meth:`Landscape.save`: the landscape and its ``extra`` entries."""
    path = check_path("path", path, where="read_landscape", exists="file")
    with read_npz(path, fix="Compute the landscape again.") as z:
        meta = json.loads(str(z["directions_json"]))
        coords = []
        k = 0
        while f"coords_{k}" in z.files:
            coords.append(z[f"coords_{k}"])
            k += 1
        directions = Directions(
            vectors=z["direction_vectors"].astype(np.float64),
            names=tuple(meta["names"]),
            shapes=tuple(tuple(s) for s in meta["shapes"]),
            kind=meta["kind"],
            normalization=meta["normalization"],
            orthogonal=bool(meta["orthogonal"]),
            include_bias_bn=bool(meta["include_bias_bn"]),
            seed=int(meta["seed"]),
            eigenvalues=np.asarray(meta["eigenvalues"], dtype=np.float64),
        )
        extra: dict[str, Any] = {}
        for key in z.files:
            if key.startswith("extra_"):
                extra[key[len("extra_") :]] = z[key]
            elif key.startswith("extrajson_"):
                extra[key[len("extrajson_") :]] = json.loads(str(z[key]))
        land = Landscape(
            coords=tuple(coords),
            loss=z["loss"],
            accuracy=z["accuracy"],
            directions=directions,
            distance=float(z["distance"]),
            n_samples=int(z["n_samples"]),
        )
    return land, extra


def _digest(*parts: Any) -> str:
    h = hashlib.sha1()
    for p in parts:
        if isinstance(p, torch.Tensor):
            p = p.detach().to("cpu").contiguous().numpy()
        if isinstance(p, np.ndarray):
            h.update(str(p.dtype).encode() + str(p.shape).encode())
            h.update(np.ascontiguousarray(p).tobytes())
        else:
            h.update(repr(p).encode())
    return h.hexdigest()


def _default_points_per_batch(model: nn.Module, n_params: int, device: torch.device) -> int:
    # On a CPU, vmap turns a convolution with per-point weights into a grouped convolution, which
    # measured 2-3x *slower* than one point at a time (the work is compute-bound, see
    # benchmarks/bench_landscape.py); there, evaluate one point at a time. Models without
    # convolutions batch points: on a CPU up to 16 (an MLP on digits ran fastest at 16-32
    # points and 1.7x slower at 64: the copies leave the caches), keeping ~2 MB of parameter
    # copies per chunk; on accelerators up to 64 points and ~32 MB.
    has_conv = any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())
    if device.type == "cpu":
        if has_conv:
            return 1
        return int(max(1, min(16, (2**21) // max(4 * n_params, 1))))
    return int(max(1, min(64, (2**25) // max(4 * n_params, 1))))


def _split_parameters(
    model: nn.Module, *, where: str
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The trainable parameters (moved along the directions) and what else the forward pass reads
    unchanged: frozen parameters and buffers (BatchNorm statistics)."""
    theta = {n: p.detach() for n, p in trainable_parameters(model, where=where).items()}
    constants = {n: p.detach() for n, p in model.named_parameters() if n not in theta}
    constants.update(dict(model.named_buffers()))
    return theta, constants


# ---------------------------------------------------------------------------------------------
# The resume file
# ---------------------------------------------------------------------------------------------


@dataclass(eq=False)
class GridProgress:
    """The points of a grid evaluated so far (flat indices, C order) and their results.

    Attributes
    ----------
    loss, accuracy : ndarray (n_points,)
        NaN where a point is not done yet.
    done : ndarray of bool (n_points,)
    """

    loss: np.ndarray
    accuracy: np.ndarray
    done: np.ndarray

    @classmethod
    def empty(cls, n_points: int) -> GridProgress:
        """No point done yet."""
        return cls(
            loss=np.full(n_points, np.nan),
            accuracy=np.full(n_points, np.nan),
            done=np.zeros(n_points, dtype=bool),
        )

    @property
    def n_points(self) -> int:
        return int(self.done.size)

    @property
    def complete(self) -> bool:
        return bool(self.done.all())

    def todo(self) -> np.ndarray:
        """Flat indices of the points not done yet, ascending."""
        return np.flatnonzero(~self.done)

    def record(self, ids: np.ndarray, loss: np.ndarray, accuracy: np.ndarray) -> None:
        """Store the results of points ``ids`` and mark them done."""
        self.loss[ids] = loss
        self.accuracy[ids] = accuracy
        self.done[ids] = True


@dataclass(frozen=True)
class ResumeFile:
    """The side file of a grid evaluation: its :class:`GridProgress`, under the evaluation's key.

    The file is a .npz with ``key``, ``loss``, ``accuracy`` and ``done``, written atomically (a
    killed process leaves the previous file whole). ``key`` is a digest of everything that changes
    a grid value (:meth:`for_grid`); a file under another key belongs to another evaluation and is
    refused, never mixed into this one.

    Attributes
    ----------
    path : Path
    key : str
    """

    path: Path
    key: str

    @classmethod
    def for_grid(
        cls,
        path: str | Path,
        *,
        model: nn.Module,
        loss_fn: LossFn,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        directions: Directions,
        steps: int,
        distance: float,
        batch_size: int,
        where: str = "ResumeFile.for_grid",
    ) -> ResumeFile:
        """The resume file at ``path`` for one evaluation by :func:`evaluate_grid`.

        The key covers the weights, frozen parameters and buffers (BatchNorm statistics), the
        loss function (by module and qualified name), the data, the directions, ``steps``,
        ``distance`` and ``batch_size`` (which sets the floating-point summation order).
        """
        theta, constants = _split_parameters(model, where=where)
        key = _digest(
            directions.vectors,
            *[theta[n] for n in theta],
            *[constants[n] for n in sorted(constants)],
            getattr(loss_fn, "__module__", ""),
            getattr(loss_fn, "__qualname__", repr(loss_fn)),
            inputs,
            targets,
            steps,
            float(distance),
            batch_size,
        )
        return cls(path=Path(path), key=key)

    def read(self, n_points: int, *, where: str = "evaluate_grid") -> GridProgress | None:
        """The progress stored in the file; None when there is no file.

        Raises
        ------
        SampletopoError
            When the file was written under another key.
        """
        if not self.path.is_file():
            return None
        progress = GridProgress.empty(n_points)
        with read_npz(self.path, fix="Delete it to evaluate the grid from the start.") as z:
            if str(z["key"]) != self.key:
                raise invalid(
                    "checkpoint",
                    "the side file of this evaluation",
                    where=where,
                    got=f"{str(self.path)!r}, which belongs to another evaluation (different "
                    "model, data, directions, steps or distance)",
                    fix="Delete it or pass another 'checkpoint' path.",
                )
            progress.loss[:] = z["loss"]
            progress.accuracy[:] = z["accuracy"]
            progress.done[:] = z["done"]
        return progress

    def write(self, progress: GridProgress) -> None:
        """Replace the file with ``progress`` (atomically)."""
        _atomic_savez(
            self.path,
            {
                "key": np.array(self.key),
                "loss": progress.loss,
                "accuracy": progress.accuracy,
                "done": progress.done,
            },
        )

    def remove(self) -> None:
        """Delete the file (once the grid is complete); no error when there is none."""
        self.path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


class _GridPoints:
    """Loss and accuracy at grid points given by flat index, over all samples, in sample batches.

    Point ``idx`` has the parameters ``theta + sum_k coef[idx[k]] * d_k``; the model is called
    with them through :func:`torch.func.functional_call` and is never modified.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        directions: Directions,
        coef: np.ndarray,
        shape: tuple[int, ...],
        inputs: torch.Tensor,
        targets: torch.Tensor,
        *,
        batch_size: int,
        where: str,
    ) -> None:
        self.model, self.loss_fn, self.shape = model, loss_fn, shape
        self.inputs, self.targets, self.batch_size = inputs, targets, batch_size
        self.theta, self.constants = _split_parameters(model, where=where)
        first = next(iter(self.theta.values()))
        self.device = first.device
        self.dirs = directions.tensors(dtype=first.dtype, device=first.device)
        self.coef = torch.as_tensor(coef, dtype=first.dtype, device=first.device)
        self._batched = vmap(self.point, in_dims=(0, None, None))

    def point(
        self, p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean loss and number of correct predictions of one batch at parameters ``p``."""
        out = functional_call(self.model, {**p, **self.constants}, (x,))
        loss = self.loss_fn(out, y)
        if out.dim() == 2 and out.shape[1] > 1 and not torch.is_floating_point(y):
            correct = (out.argmax(dim=1) == y).to(loss.dtype).sum()
        else:
            correct = torch.full_like(loss, float("nan"))
        return loss, correct

    def __call__(self, ids: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Loss and accuracy of points ``ids``: vmapped together, or one at a time if ``size == 1``."""
        idx = np.stack(np.unravel_index(ids, self.shape), axis=1)  # (B, d)
        c = self.coef[torch.from_numpy(idx)]  # (B, d)
        pts = {n: t + torch.tensordot(c, self.dirs[n], dims=1) for n, t in self.theta.items()}
        n_samples = int(self.inputs.shape[0])
        loss = torch.zeros(len(ids), dtype=torch.float64)
        corr = torch.zeros(len(ids), dtype=torch.float64)
        for start in range(0, n_samples, self.batch_size):
            x = self.inputs[start : start + self.batch_size].to(self.device)
            y = self.targets[start : start + self.batch_size].to(self.device)
            w = x.shape[0] / n_samples
            if size == 1:
                for b in range(len(ids)):
                    lb, cb = self.point({n: v[b] for n, v in pts.items()}, x, y)
                    loss[b] += w * lb.double().cpu()
                    corr[b] += cb.double().cpu()
            else:
                lb, cb = self._batched(pts, x, y)
                loss += w * lb.double().cpu()
                corr += cb.double().cpu()
        return loss.numpy(), (corr / n_samples).numpy()


def _evaluate_todo(
    points: _GridPoints,
    progress: GridProgress,
    *,
    chunk: int,
    resume: ResumeFile | None,
    checkpoint_every: float,
    show: bool,
) -> None:
    """Evaluate the points not done yet, ``chunk`` at a time, into ``progress``.

    A chunk that fails with a :class:`RuntimeError` (an op without a batching rule, out of
    memory) is retried at half the size, down to 1. The resume file is written every
    ``checkpoint_every`` seconds and, when the evaluation stops early for any reason, once more.
    """
    todo = progress.todo()
    last_save = time.monotonic()
    bar = tqdm(
        total=progress.n_points,
        initial=progress.n_points - todo.size,
        desc=f"landscape {'x'.join(map(str, points.shape))}",
        disable=not show,
        leave=False,
    )
    pos = 0
    try:
        with torch.no_grad(), eval_mode(points.model), bar:
            while pos < todo.size:
                ids = todo[pos : pos + chunk]
                try:
                    lo, ac = points(ids, chunk)
                except RuntimeError:
                    if chunk == 1:
                        raise
                    chunk = max(1, chunk // 2)
                    continue
                progress.record(ids, lo, ac)
                pos += ids.size
                bar.update(ids.size)
                if resume is not None and time.monotonic() - last_save > checkpoint_every:
                    resume.write(progress)
                    last_save = time.monotonic()
    finally:
        if resume is not None and not progress.complete:
            resume.write(progress)


# Bytes each grid point holds while a grid is evaluated: its loss and accuracy (float64) and
# whether it is done (GridProgress).
_BYTES_PER_POINT = 17


def grid_bytes(
    steps: int, dim: int, n_params: int, *, connectivity: str | None = None, chunk: int = 1
) -> int:
    """The memory a ``steps**dim`` grid over ``n_params`` parameters takes, in bytes (about):
    17 bytes a point while it is evaluated; with ``connectivity`` (the metrics' grid graph), its
    edges (``dim`` a point for ``"axis"``, ``2**dim - 1`` for ``"freudenthal"``, two int64 each,
    about three copies while they are sorted); the ``dim`` float64 directions; and the float32
    parameter copies of ``chunk`` grid points evaluated together."""
    n = steps**dim
    total = n * _BYTES_PER_POINT + dim * n_params * 8 + chunk * n_params * 4
    if connectivity is not None:
        offsets = dim if connectivity == "axis" else 2**dim - 1
        total += 3 * 16 * offsets * n
    return int(total)


def check_grid_fits(
    steps: int,
    dim: int,
    n_params: int,
    *,
    connectivity: str | None = None,
    chunk: int = 1,
    where: str,
) -> None:
    """Refuse, with the numbers, a grid that would not fit in the memory available now
    (:func:`grid_bytes`), before anything is computed or written. Nothing is refused where the
    available memory cannot be told."""
    available = available_memory()
    need = grid_bytes(steps, dim, n_params, connectivity=connectivity, chunk=chunk)
    if available is None or need <= available:
        return
    n = steps**dim
    points = f"{n:,}" if n < 10**15 else f"{float(n):.3g}"
    params = f" over {n_params:,} parameters" if n_params else ""
    raise invalid(
        "steps",
        f"small enough for the grid to fit in memory: {steps}**{dim} = {points} grid points"
        f"{params} need about {need:,} bytes ({bytes_text(need)}), and this machine has "
        f"{bytes_text(available)} available",
        steps,
        where=where,
        fix="Use fewer steps per axis or fewer dimensions (each point also costs a forward "
        "pass over the samples).",
    )


def _check_grid(
    steps: int, distance: float, inputs: torch.Tensor, targets: torch.Tensor, *, where: str
) -> int:
    """Validate the grid and the data; return ``steps`` as an int."""
    steps = check_int(
        "steps", steps, 2, None, where=where, fix="A grid needs at least 2 points per axis."
    )
    check_real("distance", distance, low=0, low_open=True, where=where, fix="Try 1.0.")
    check_samples(inputs, targets, where=where)
    return steps


def _warn_non_finite(loss: np.ndarray, coords: tuple[np.ndarray, ...], *, where: str) -> None:
    """Say how many grid points have a non-finite loss and where the first one is."""
    bad = ~np.isfinite(loss)
    if not bad.any():
        return
    first_bad = tuple(int(i) for i in np.argwhere(bad)[0])
    at = tuple(float(coords[k][i]) for k, i in enumerate(first_bad))
    warnings.warn(
        f"{where}: {int(bad.sum())} of {loss.size} grid points have a non-finite loss (first "
        f"at grid index {first_bad}, coordinates {at}: {loss[first_bad]!r}). They are "
        "kept as they are; landscape metrics leave them out of the grid graph.",
        NonFiniteLandscapeWarning,
        stacklevel=3,  # the caller of evaluate_grid
    )


def evaluate_grid(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    directions: Directions,
    *,
    steps: int = 21,
    distance: float = 1.0,
    batch_size: int | None = None,
    points_per_batch: int | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: float = 30.0,
    progress: bool = True,
) -> Landscape:
    """Evaluate loss and accuracy on a ``steps**d`` grid spanned by ``directions``.

    Parameters
    ----------
    model : torch.nn.Module
        Evaluated in eval mode (restored afterwards) and never modified: grid points are passed
        to :func:`torch.func.functional_call` as new parameter tensors.
    loss_fn : callable
        ``loss_fn(outputs, targets)`` returning the mean loss of a batch.
    inputs, targets : torch.Tensor
        The data each grid point's loss is averaged over. Accuracy (argmax of the outputs equal to
        the integer target) is computed for classifiers, NaN otherwise.
    directions : Directions
        Must fit the model's trainable parameters.
    steps : int
        Points per axis, ``>= 2``; coefficients are ``linspace(-distance, distance, steps)``.
    distance : float
        Half-width of the grid, > 0.
    batch_size : int, optional
        Samples per forward pass. Default: sized by the model's largest activation so that a
        batch's activations stay small (:func:`sampletopo._batching.auto_batch_size`; all
        samples at once for small models). Results depend on it only through floating-point
        summation order.
    points_per_batch : int, optional
        Grid points evaluated together with :func:`torch.func.vmap`. Default: 1 for a model
        with convolutions on a CPU (where batched convolutions are slower than a loop); else on
        a CPU as many as keep ~2 MB of parameter copies (at most 16), on an accelerator ~32 MB
        (at most 64). ``1`` evaluates one point at a
        time without vmap. If a vmapped chunk fails (an op without a batching rule, or out of memory) the
        chunk size is halved down to 1.
    checkpoint : path, optional
        A side file for partial results (:class:`ResumeFile`). Finished points are saved there
        every ``checkpoint_every`` seconds and when the evaluation stops for any reason; a later
        call with the same model, loss function, data, directions, steps, distance and batch size
        continues from it. The file is removed when the grid is complete. A file from another
        setup raises an error.
    checkpoint_every : float
        Seconds between saves of the side file.
    progress : bool
        Show a tqdm bar over grid points.

    Returns
    -------
    Landscape
        Non-finite losses stay in ``loss``; a :class:`NonFiniteLandscapeWarning` says how many
        and where the first one is.
    """
    where = "evaluate_grid"
    directions.check(model, where=where)
    steps = _check_grid(steps, distance, inputs, targets, where=where)
    shape = (steps,) * directions.dim
    coords = tuple(np.linspace(-distance, distance, steps) for _ in range(directions.dim))
    device = next(iter(trainable_parameters(model, where=where).values())).device
    if points_per_batch is None:
        points_per_batch = _default_points_per_batch(model, directions.n, device)
    chunk = check_int("points_per_batch", points_per_batch, 1, None, where=where)
    check_grid_fits(steps, directions.dim, directions.n, chunk=chunk, where=where)
    if batch_size is None:
        batch_size = auto_batch_size(model, inputs, device, points=chunk)
    batch_size = check_int("batch_size", batch_size, 1, None, where=where)
    points = _GridPoints(
        model,
        loss_fn,
        directions,
        coords[0],
        shape,
        inputs,
        targets,
        batch_size=batch_size,
        where=where,
    )
    n_points = steps**directions.dim
    resume = None
    if checkpoint is not None:
        resume = ResumeFile.for_grid(
            checkpoint,
            model=model,
            loss_fn=loss_fn,
            inputs=inputs,
            targets=targets,
            directions=directions,
            steps=steps,
            distance=distance,
            batch_size=batch_size,
            where=where,
        )
    stored = None if resume is None else resume.read(n_points, where=where)
    done = stored if stored is not None else GridProgress.empty(n_points)
    _evaluate_todo(
        points, done, chunk=chunk, resume=resume, checkpoint_every=checkpoint_every, show=progress
    )
    if resume is not None:
        resume.remove()
    loss = done.loss.reshape(shape)
    _warn_non_finite(loss, coords, where=where)
    return Landscape(
        coords=coords,
        loss=loss,
        accuracy=done.accuracy.reshape(shape),
        directions=directions,
        distance=float(distance),
        n_samples=int(inputs.shape[0]),
    )
