"""Loss landscapes in parameter space: directions, grids of any dimension, metrics and profiles.

What is here
------------
- **Directions** (:class:`Directions`): :func:`random_directions` draws seeded Gaussian directions
  with *filter normalization* (Li et al. 2018: every output filter of a direction rescaled to the
  norm of the same filter of the weights; biases and normalization parameters -- every parameter
  with fewer than two dimensions -- zeroed unless ``include_bias_bn``), optionally made exactly
  orthogonal by Gram-Schmidt; :func:`hessian_directions` takes the top-d Hessian eigenvectors.
  Only trainable parameters (``requires_grad=True``) get a direction, as in
  :mod:`sampletopo.hessian`.
- **Grids** (:class:`Landscape`): :func:`evaluate_grid` evaluates loss and accuracy at
  ``theta + sum_k c_k d_k`` for ``c`` on a ``steps**d`` grid over ``[-distance, distance]**d``,
  batching grid points with :func:`torch.func.vmap` over :func:`torch.func.functional_call`,
  with a resumable side file and a progress bar. Non-finite losses are kept as they are and
  reported, never replaced.
- **Metrics** (:class:`LandscapeMetrics`, :func:`landscape_metrics`): minima, saddles and average
  persistence of the join tree of the grid graph (Xie et al. 2024) and a saddle-minimum average
  distance (SMAD, after Chen et al. 2025; *not* Landscaper 1.3.1's number, see :func:`smad`),
  beside the Hessian top eigenvalue and trace. Every result names the grid graph it was computed
  on (``connectivity``): the default Freudenthal triangulation counts differently from the
  axis-neighbour grid that Landscaper and gudhi's cubical complex use.
- **Profiles** (:class:`LandscapeProfile`, :func:`landscape_profile`): the topological landscape
  profile (Geniesse et al. 2024) of a grid of any dimension.
- :func:`landscape_for_run` does all of it for a recorded run and writes
  ``<experiment>/landscapes/<variant>-epoch=NNNN.npz``.

The merge trees come from :mod:`sampletopo.mergetree` on :func:`sampletopo.graph.grid_graph`, the
same code as for the kNN graphs of samples. What is not here: Hessian algorithms
(:mod:`sampletopo.hessian`) and figures (:mod:`sampletopo.plotting`).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from sampletopo._batching import auto_batch_size
from sampletopo._errors import SampletopoError, check_int_range
from sampletopo._io import write_atomic
from sampletopo._runfiles import read_npz
from sampletopo.hessian import Eigenpairs, eval_mode, trainable_parameters

__all__ = [
    "Directions",
    "Landscape",
    "LandscapeMetrics",
    "LandscapeProfile",
    "NonFiniteLandscapeWarning",
    "evaluate_grid",
    "hessian_directions",
    "landscape_for_run",
    "landscape_metrics",
    "landscape_profile",
    "load_landscape",
    "random_directions",
    "smad",
]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class NonFiniteLandscapeWarning(RuntimeWarning):
    """Some grid points have a NaN or infinite loss (kept in the landscape as they are)."""


# ---------------------------------------------------------------------------------------------
# Directions
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Directions:
    """``d`` directions in the space of a model's trainable parameters.

    Attributes
    ----------
    vectors : ndarray (d, n)
        One flat float64 vector per direction, in the layout of ``names`` / ``shapes`` (the
        trainable parameters in ``named_parameters`` order, as in
        :class:`sampletopo.hessian.HessianOperator`).
    names, shapes : tuple
        The trainable parameters the vectors are laid out over.
    kind : {"random", "hessian"}
    normalization : {"filter", "none", "unit"}
        ``"unit"`` for Hessian eigenvectors (unit norm).
    orthogonal : bool
        Whether the vectors were orthogonalised (always true for Hessian eigenvectors).
    include_bias_bn : bool
        Whether parameters with fewer than two dimensions got a direction component.
    seed : int
        Seed of random directions (-1 for Hessian directions).
    eigenvalues : ndarray (d,)
        Hessian eigenvalue of each direction (empty for random directions).
    """

    vectors: np.ndarray
    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    kind: str
    normalization: str
    orthogonal: bool
    include_bias_bn: bool
    seed: int
    eigenvalues: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def dim(self) -> int:
        """Number of directions ``d``."""
        return int(self.vectors.shape[0])

    @property
    def n(self) -> int:
        """Number of trainable scalars each vector spans."""
        return int(self.vectors.shape[1])

    def tensors(
        self, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
    ) -> dict[str, torch.Tensor]:
        """Per-parameter tensors of shape ``(d, *shape)`` (all directions stacked)."""
        out: dict[str, torch.Tensor] = {}
        start = 0
        vec = torch.from_numpy(self.vectors)
        for name, shape in zip(self.names, self.shapes, strict=True):
            k = math.prod(shape)
            out[name] = vec[:, start : start + k].reshape(self.dim, *shape).to(device, dtype)
            start += k
        return out

    def axis_label(self, axis: int) -> str:
        """A plot label for direction ``axis`` (0-based), e.g. ``"Hessian eigvec 1 (λ=3.2)"``."""
        if self.kind == "hessian":
            lam = self.eigenvalues[axis] if self.eigenvalues.size > axis else float("nan")
            return f"Hessian eigenvector {axis + 1} (λ={lam:.3g})"
        norm = "filter-normalized " if self.normalization == "filter" else ""
        return f"{norm}random direction {axis + 1}"

    def metadata(self) -> dict[str, Any]:
        """Everything but the vectors, JSON-serialisable."""
        return {
            "names": list(self.names),
            "shapes": [list(s) for s in self.shapes],
            "kind": self.kind,
            "normalization": self.normalization,
            "orthogonal": self.orthogonal,
            "include_bias_bn": self.include_bias_bn,
            "seed": self.seed,
            "eigenvalues": [float(x) for x in self.eigenvalues],
        }

    def check(self, model: nn.Module, *, where: str = "Directions.check") -> None:
        """Raise :class:`SampletopoError` unless the vectors fit ``model``'s trainable parameters."""
        params = trainable_parameters(model, where=where)
        names = tuple(params)
        shapes = tuple(tuple(p.shape) for p in params.values())
        if names == self.names and shapes == self.shapes:
            return
        for i, (n, s) in enumerate(zip(names, shapes, strict=False)):
            if i >= len(self.names) or self.names[i] != n or self.shapes[i] != s:
                theirs = (
                    f"{self.names[i]!r} of shape {self.shapes[i]}"
                    if i < len(self.names)
                    else "nothing"
                )
                raise SampletopoError(
                    f"{where}: the directions do not fit the model's trainable parameters: at "
                    f"position {i} the model has {n!r} of shape {s} but the directions have "
                    f"{theirs}. Build the directions from this model (same architecture, same "
                    "frozen parameters)."
                )
        raise SampletopoError(
            f"{where}: the directions span {len(self.names)} parameter tensors but the model has "
            f"{len(names)} trainable ones ({self.n} vs {sum(math.prod(s) for s in shapes)} "
            "scalars). Build the directions from this model."
        )


def _flat(tensors: Sequence[torch.Tensor]) -> np.ndarray:
    return np.concatenate(
        [t.detach().reshape(-1).to("cpu", torch.float64).numpy() for t in tensors]
    )


def random_directions(
    model: nn.Module,
    *,
    dim: int = 2,
    seed: int = 0,
    normalization: Literal["filter", "none"] = "filter",
    include_bias_bn: bool = False,
    orthogonal: bool = False,
) -> Directions:
    """Seeded Gaussian directions with filter normalization (Li et al. 2018).

    Parameters
    ----------
    model : torch.nn.Module
        Only its trainable parameters get direction components.
    dim : int
        Number of directions, ``>= 1``.
    seed : int
        Seeds a CPU :class:`torch.Generator`; the same seed gives the same directions.
    normalization : {"filter", "none"}
        ``"filter"``: for every parameter with two or more dimensions, each output filter
        ``d[i]`` (slice along the first axis) is rescaled to ``|theta[i]| / |d[i]| * d[i]``, so
        it has the norm of the matching filter of the weights. ``"none"``: raw N(0, 1) entries.
    include_bias_bn : bool
        Parameters with fewer than two dimensions (biases, BatchNorm / LayerNorm weights and
        biases) are zeroed by default. When included, each such tensor is rescaled as a whole to
        the norm of the parameter (``"filter"``) or left N(0, 1) (``"none"``).
    orthogonal : bool
        Make the directions exactly orthogonal: Gram-Schmidt over the flattened, normalized
        vectors (``u_k = v_k - sum_j (v_k . u_j) / (u_j . u_j) u_j``), then each ``u_k`` is
        rescaled to the total norm of ``v_k``. The first direction keeps its per-filter norms;
        later ones keep their total norm but not their per-filter norms (no set of vectors can be
        both orthogonal and exactly filter-normalized in general).

    Returns
    -------
    Directions

    Raises
    ------
    SampletopoError
        For a model without trainable parameters, an unknown normalization, or ``dim`` larger
        than the number of non-zero coordinates available when ``orthogonal``.
    """
    where = "random_directions"
    dim = check_int_range("dim", dim, 1, None, where=where)
    if normalization not in ("filter", "none"):
        raise SampletopoError(
            f"{where}: 'normalization' must be 'filter' or 'none'. Got {normalization!r}. "
            "Use 'filter' (Li et al. 2018) unless you mean raw Gaussian directions."
        )
    params = trainable_parameters(model, where=where)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    vectors = []
    for _ in range(dim):
        parts = []
        for p in params.values():
            w = p.detach().to("cpu", torch.float64)
            d = torch.randn(w.shape, generator=gen, dtype=torch.float64)
            if w.dim() <= 1:
                if not include_bias_bn:
                    d.zero_()
                elif normalization == "filter":
                    d.mul_(w.norm() / d.norm().clamp_min(1e-300))
            elif normalization == "filter":
                wn = w.reshape(w.shape[0], -1).norm(dim=1)
                dn = d.reshape(d.shape[0], -1).norm(dim=1).clamp_min(1e-300)
                d.mul_((wn / dn).reshape(-1, *([1] * (w.dim() - 1))))
            parts.append(d)
        vectors.append(_flat(parts))
    vec = np.stack(vectors)
    n_free = int(np.count_nonzero(np.any(vec != 0, axis=0)))
    if orthogonal:
        if dim > n_free:
            raise SampletopoError(
                f"{where}: 'dim' must be at most {n_free} for orthogonal directions: only "
                f"{n_free} coordinates can be non-zero{'' if include_bias_bn else ' (biases and BatchNorm are zeroed)'}. "
                f"Got dim={dim}. Ask for fewer directions"
                f"{'' if include_bias_bn else ' or pass include_bias_bn=True'}."
            )
        vec = _gram_schmidt(vec, where=where)
    names = tuple(params)
    shapes = tuple(tuple(p.shape) for p in params.values())
    return Directions(
        vectors=vec,
        names=names,
        shapes=shapes,
        kind="random",
        normalization=normalization,
        orthogonal=orthogonal,
        include_bias_bn=include_bias_bn,
        seed=int(seed),
    )


def _gram_schmidt(vec: np.ndarray, *, where: str) -> np.ndarray:
    out = np.array(vec, dtype=np.float64)
    for k in range(out.shape[0]):
        target = float(np.linalg.norm(vec[k]))
        # Twice: one pass of classical Gram-Schmidt loses orthogonality in floating point.
        for _ in range(2):
            for j in range(k):
                out[k] -= (out[k] @ out[j]) / (out[j] @ out[j]) * out[j]
        norm = float(np.linalg.norm(out[k]))
        if not norm > 1e-12 * max(target, 1e-300):
            raise SampletopoError(
                f"{where}: direction {k + 1} is linearly dependent on the earlier ones, so it "
                "cannot be orthogonalised. Use another seed or fewer directions."
            )
        out[k] *= target / norm
    return out


def hessian_directions(model: nn.Module, eigenpairs: Eigenpairs, *, dim: int) -> Directions:
    """The top-``dim`` Hessian eigenvectors as (unit, orthonormal) directions.

    Parameters
    ----------
    model : torch.nn.Module
        The model the eigenpairs were computed for (its trainable parameters give the layout).
    eigenpairs : Eigenpairs
        From :func:`sampletopo.hessian.top_eigenpairs`, eigenvalues descending.
    dim : int
        ``1 <= dim <= eigenpairs.k``.

    Returns
    -------
    Directions
    """
    where = "hessian_directions"
    params = trainable_parameters(model, where=where)
    n = sum(p.numel() for p in params.values())
    dim = check_int_range(
        "dim",
        dim,
        1,
        eigenpairs.k,
        where=where,
        fix=f"Only {eigenpairs.k} eigenpairs are available: compute more with "
        f"top_eigenpairs(op, k={dim}).",
    )
    if eigenpairs.eigenvectors.shape[0] != n:
        raise SampletopoError(
            f"{where}: the eigenvectors have {eigenpairs.eigenvectors.shape[0]} entries but the "
            f"model has {n} trainable scalars. Compute the eigenpairs for this model (with the "
            "same frozen parameters)."
        )
    return Directions(
        vectors=np.ascontiguousarray(eigenpairs.eigenvectors[:, :dim].T, dtype=np.float64),
        names=tuple(params),
        shapes=tuple(tuple(p.shape) for p in params.values()),
        kind="hessian",
        normalization="unit",
        orthogonal=True,
        include_bias_bn=True,
        seed=-1,
        eigenvalues=np.asarray(eigenpairs.eigenvalues[:dim], dtype=np.float64),
    )


# ---------------------------------------------------------------------------------------------
# Grid evaluation
# ---------------------------------------------------------------------------------------------


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


def load_landscape(path: str | Path) -> tuple[Landscape, dict[str, Any]]:
    """Read a file written by :meth:`Landscape.save`: the landscape and its ``extra`` entries."""
    path = Path(path)
    if not path.is_file():
        raise SampletopoError(
            f"load_landscape: no file at {str(path)!r}. Compute it first, e.g. with "
            "`sampletopo landscape RUN --epoch E`."
        )
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
        A side file for partial results. Finished points are saved there every
        ``checkpoint_every`` seconds and when the evaluation stops for any reason; a later call
        with the same model, data, directions, steps and distance continues from it. The file is
        removed when the grid is complete. A file from another setup raises an error.
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
    steps = check_int_range(
        "steps", steps, 2, None, where=where, fix="A grid needs at least 2 points per axis."
    )
    if not (isinstance(distance, (int, float)) and math.isfinite(distance) and distance > 0):
        raise SampletopoError(
            f"{where}: 'distance' must be a finite number > 0. Got {distance!r}. Try 1.0."
        )
    if inputs.shape[0] != targets.shape[0] or inputs.shape[0] == 0:
        raise SampletopoError(
            f"{where}: 'inputs' and 'targets' must hold the same positive number of samples. "
            f"Got {inputs.shape[0]} and {targets.shape[0]}."
        )
    n_samples = int(inputs.shape[0])
    d = directions.dim
    shape = (steps,) * d
    n_points = steps**d
    coords = tuple(np.linspace(-distance, distance, steps) for _ in range(d))
    params = trainable_parameters(model, where=where)
    first = next(iter(params.values()))
    dtype, device = first.dtype, first.device
    if points_per_batch is None:
        points_per_batch = _default_points_per_batch(model, directions.n, device)
    chunk = check_int_range("points_per_batch", points_per_batch, 1, None, where=where)
    if batch_size is None:
        batch_size = auto_batch_size(model, inputs, device, points=chunk)
    batch_size = check_int_range("batch_size", batch_size, 1, None, where=where)
    theta = {n: p.detach() for n, p in params.items()}
    dirs = directions.tensors(dtype=dtype, device=device)
    constants = {n: p.detach() for n, p in model.named_parameters() if n not in theta}
    constants.update(dict(model.named_buffers()))
    coef = torch.as_tensor(coords[0], dtype=dtype, device=device)

    loss_grid = np.full(n_points, np.nan)
    acc_grid = np.full(n_points, np.nan)
    done = np.zeros(n_points, dtype=bool)
    ckpt = Path(checkpoint) if checkpoint is not None else None
    key = ""
    if ckpt is not None:
        # Everything that changes a grid value: weights, buffers (BatchNorm statistics),
        # frozen parameters, the loss function, data, directions and grid.
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
        if ckpt.is_file():
            with read_npz(ckpt, fix="Delete it to evaluate the grid from the start.") as z:
                if str(z["key"]) != key:
                    raise SampletopoError(
                        f"{where}: the checkpoint file {str(ckpt)!r} belongs to another "
                        "evaluation (different model, data, directions, steps or distance). "
                        "Delete it or pass another 'checkpoint' path."
                    )
                loss_grid[:] = z["loss"]
                acc_grid[:] = z["accuracy"]
                done[:] = z["done"]

    def save_partial() -> None:
        if ckpt is not None:
            _atomic_savez(
                ckpt, {"key": np.array(key), "loss": loss_grid, "accuracy": acc_grid, "done": done}
            )

    from torch.func import functional_call, vmap

    def point_eval(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor):
        out = functional_call(model, {**p, **constants}, (x,))
        loss = loss_fn(out, y)
        if out.dim() == 2 and out.shape[1] > 1 and not torch.is_floating_point(y):
            correct = (out.argmax(dim=1) == y).to(loss.dtype).sum()
        else:
            correct = torch.full_like(loss, float("nan"))
        return loss, correct

    batched = vmap(point_eval, in_dims=(0, None, None))

    def eval_points(ids: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        idx = np.stack(np.unravel_index(ids, shape), axis=1)  # (B, d)
        c = coef[torch.from_numpy(idx)]  # (B, d)
        pts = {n: theta[n] + torch.tensordot(c, dirs[n], dims=1) for n in theta}
        loss = torch.zeros(len(ids), dtype=torch.float64)
        corr = torch.zeros(len(ids), dtype=torch.float64)
        for start in range(0, n_samples, batch_size):
            x = inputs[start : start + batch_size].to(device)
            y = targets[start : start + batch_size].to(device)
            w = x.shape[0] / n_samples
            if size == 1:
                for b in range(len(ids)):
                    lb, cb = point_eval({n: v[b] for n, v in pts.items()}, x, y)
                    loss[b] += w * lb.double().cpu()
                    corr[b] += cb.double().cpu()
            else:
                lb, cb = batched(pts, x, y)
                loss += w * lb.double().cpu()
                corr += cb.double().cpu()
        return loss.numpy(), (corr / n_samples).numpy()

    todo = np.flatnonzero(~done)
    last_save = time.monotonic()
    bar = tqdm(
        total=n_points,
        initial=n_points - todo.size,
        desc=f"landscape {'x'.join(map(str, shape))}",
        disable=not progress,
        leave=False,
    )
    pos = 0
    try:
        with torch.no_grad(), eval_mode(model), bar:
            while pos < todo.size:
                ids = todo[pos : pos + chunk]
                try:
                    lo, ac = eval_points(ids, chunk)
                except RuntimeError:
                    if chunk == 1:
                        raise
                    chunk = max(1, chunk // 2)
                    continue
                loss_grid[ids] = lo
                acc_grid[ids] = ac
                done[ids] = True
                pos += ids.size
                bar.update(ids.size)
                if ckpt is not None and time.monotonic() - last_save > checkpoint_every:
                    save_partial()
                    last_save = time.monotonic()
    finally:
        if ckpt is not None and not done.all():
            save_partial()
    if ckpt is not None and ckpt.is_file():
        ckpt.unlink()

    loss_arr = loss_grid.reshape(shape)
    bad = ~np.isfinite(loss_arr)
    if bad.any():
        first_bad = tuple(int(i) for i in np.argwhere(bad)[0])
        at = tuple(float(coords[k][i]) for k, i in enumerate(first_bad))
        warnings.warn(
            f"{where}: {int(bad.sum())} of {n_points} grid points have a non-finite loss (first "
            f"at grid index {first_bad}, coordinates {at}: {loss_arr[first_bad]!r}). They are "
            "kept as they are; landscape metrics leave them out of the grid graph.",
            NonFiniteLandscapeWarning,
            stacklevel=2,
        )
    return Landscape(
        coords=coords,
        loss=loss_arr,
        accuracy=acc_grid.reshape(shape),
        directions=directions,
        distance=float(distance),
        n_samples=n_samples,
    )


# ---------------------------------------------------------------------------------------------
# Topology of a grid
# ---------------------------------------------------------------------------------------------


def _grid_values(values: Landscape | np.ndarray, where: str) -> np.ndarray:
    arr = values.loss if isinstance(values, Landscape) else np.asarray(values, dtype=np.float64)
    if arr.ndim < 1 or arr.size < 2:
        raise SampletopoError(
            f"{where}: expected a landscape or a grid of at least 2 values. Got shape {arr.shape}."
        )
    if not np.isfinite(arr).any():
        raise SampletopoError(
            f"{where}: every grid value is non-finite; there is no landscape to analyse. Check "
            "the model and the 'distance' of the grid."
        )
    return np.asarray(arr, dtype=np.float64)


def _check_connectivity(connectivity: str, where: str) -> str:
    if connectivity not in ("axis", "freudenthal"):
        raise SampletopoError(
            f"{where}: 'connectivity' must be 'axis' or 'freudenthal'. Got {connectivity!r}."
        )
    return connectivity


def _grid_join_tree(arr: np.ndarray, connectivity: str) -> tuple[Any, np.ndarray]:
    """Join tree of a grid, on the sub-grid of finite points; returns (tree, kept vertex ids)."""
    from sampletopo.graph import graph_from_edges, grid_graph
    from sampletopo.mergetree import join_tree

    g = grid_graph(arr.shape, connectivity=connectivity)
    flat = arr.ravel()
    ok = np.isfinite(flat)
    if ok.all():
        return join_tree(g, flat), np.arange(flat.size)
    keep = np.flatnonzero(ok)
    new_id = np.full(flat.size, -1, dtype=np.int64)
    new_id[keep] = np.arange(keep.size)
    e = g.edges
    e = e[ok[e[:, 0]] & ok[e[:, 1]]]
    sub = graph_from_edges(int(keep.size), new_id[e])
    return join_tree(sub, flat[keep]), keep


def _critical_nodes(tree: Any) -> tuple[np.ndarray, np.ndarray]:
    """Node indices of the minima and saddles of a join tree that are not artefacts of tied
    values: the leaves born, and the saddles killing, a pair of nonzero persistence (every
    component's surviving minimum included)."""
    dg = tree.diagram()  # zero-persistence pairs left out
    vert = tree.node_vertex
    kinds = tree.node_kind
    leaves = np.flatnonzero((kinds == "leaf") & np.isin(vert, dg.birth_sample))
    killers = dg.death_sample[dg.death_sample >= 0]
    saddles = np.flatnonzero((kinds == "saddle") & np.isin(vert, killers))
    return leaves, saddles


def smad(tree: Any, *, normalize: bool = False) -> float:
    """Saddle-minimum average distance (SMAD) of a join tree: minima to their join saddles.

    Definition. Let ``M`` be the minima of the join (sublevel-set merge) tree ``T`` of ``f`` --
    its leaves, leaving out those of zero persistence (see Ties) -- and for ``m`` in ``M`` let
    ``s(m)`` be its *join saddle*: the first saddle node of ``T`` above ``m``, i.e. the value at
    which the sublevel-set component born at ``m`` first meets another component. With
    ``P = {(m, s(m)) : m in M and s(m) exists}``,

    ``SMAD = (1 / |P|) * sum_{(m, s) in P} (f(s) - f(m))``,

    and ``SMAD = 0`` when ``P`` is empty (each connected component is one basin). Every minimum
    counts once, including the one that survives the merge by the elder rule: for minima at 0
    and 1 merging at a saddle at 2, SMAD is ``(2 + 1) / 2 = 1.5`` while the average persistence
    is 1. With ``normalize`` each gap is divided by ``max f - min f`` over the tree's values (the
    finite grid points; 0 for a flat grid). When non-finite points split the grid, each piece
    pairs its own minima. Only the join tree is used: superlevel-set (split-tree) saddles, where
    ridges meet, play no part.

    Ties: minima and saddles that exist only because equal values are ordered by index (their
    persistence pair has zero persistence, e.g. a flat plateau) are not critical points of the
    landscape. They are left out: such a minimum is not in ``M``, and ``s(m)`` is the first
    saddle on the way up where a pair of nonzero persistence dies. Without ties this is the
    definition above exactly.

    Parameters
    ----------
    tree : MergeTree
        A join tree (:func:`sampletopo.mergetree.join_tree`), e.g. of a grid graph.
    normalize : bool
        Divide each gap by the range of the values.

    Returns
    -------
    float

    Notes
    -----
    **Not Landscaper's SMAD.** Landscaper 1.3.1's ``LossLandscape.smad(normalize=False,
    weighted=False)`` (Chen et al. 2025) averages ``|f(b) - f(m)|`` over the edges of topopy's
    *contour tree* (join and split tree combined) that join a minimum ``m`` to a branch node
    ``b``. That ``b`` is the first critical node of either tree above ``m``: the join saddle
    ``s(m)`` used here, or a *split-tree saddle* (where two superlevel-set components meet, at a
    ridge) lying between ``m`` and ``s(m)``. Its gap is then shorter, and a single basin can
    have a nonzero SMAD there (0 here). Also in Landscaper: the graph is nglpy's empty-region
    graph (beta=1, p=2), which on a regular grid is the axis-neighbour grid -- measured: 40
    edges on a 5 x 5 grid, 144 on 4 x 4 x 4 -- so compare with ``connectivity="axis"``, not the
    default Freudenthal triangulation; minima are vertices below all their graph neighbours (the
    same as here when values are distinct); the contour tree is sometimes disconnected, and a
    minimum with no branch-node neighbour is dropped from the average; on both grids with tied
    values tried it raised (``KeyError``, ``IndexError``) where ties are ordered here;
    ``normalize`` divides by the range of the whole array, non-finite values included; its
    ``weighted=True`` variant has no counterpart here.

    Measured against Landscaper 1.3.1 (topopy 1.0.4, nglpy 1.1.7), here with
    ``connectivity="axis"``:

    - two basins, ``(x**2 - 1/2)**2 + 2 y**2 + 0.3 x`` on a 21 x 21 grid over ``[-1, 1]**2``
      (plus a small tilt that breaks ties): 0.282 in both (and with Freudenthal);
    - 20 random smooth 21 x 21 grids (a bowl plus 8 Gaussian bumps): equal to 1e-12 on 15;
      on the 2 with a single basin 0 here against 0.913 and 1.278 (the minimum paired with a
      split saddle on the grid edge); on 2 a minimum is paired with an interior split saddle
      below its join saddle, 0.1029 against 0.1015 and 0.1371 against 0.1326; on 1 the contour
      tree fell into 4 pieces and one of the 4 minima got no partner, 0.0641 against 0.0604;
    - 3,000 random 4 x 4 grids (permutations of 0..15, very rough): 2,291 differ;
    - a grid with a plateau of tied values: Landscaper raised ``KeyError``; 0.2499 here;
    - the default Freudenthal graph changed SMAD on 9 of the 20 random grids (the number of
      minima on 3) against ``"axis"``.

    Examples
    --------
    Two basins (minima 1 and 0) that merge at 8 on the axis grid; on the way up from 1 the
    superlevel sets merge at the split saddle 4. SMAD here is ``((8 - 1) + (8 - 0)) / 2``;
    Landscaper 1.3.1 pairs 1 with 4 and gives ``(3 + 8) / 2 = 5.5``:

    >>> import numpy as np
    >>> from sampletopo.landscape import landscape_metrics
    >>> f = np.array([[10, 3, 2, 7], [15, 13, 1, 6], [9, 5, 4, 11], [12, 14, 8, 0]], float)
    >>> landscape_metrics(f, connectivity="axis").smad
    7.5

    The Freudenthal diagonal from 0 to 4 merges the basins at 4 instead: ``(3 + 4) / 2``.

    >>> landscape_metrics(f, connectivity="freudenthal").smad
    3.5
    """
    leaves, saddles = _critical_nodes(tree)
    parent = np.full(tree.node_vertex.shape[0], -1, dtype=np.int64)
    parent[tree.arc_lower] = tree.arc_upper
    is_saddle = np.zeros(parent.shape[0], dtype=bool)
    is_saddle[saddles] = True
    pairs = []
    for m in leaves:
        up = parent[m]
        while up >= 0 and not is_saddle[up]:
            up = parent[up]
        if up >= 0:
            pairs.append((m, up))
    if not pairs:
        return 0.0
    v = tree.values
    lo, hi = np.array(pairs).T
    gaps = np.abs(v[tree.node_vertex[hi]] - v[tree.node_vertex[lo]])
    if normalize:
        span = float(v.max() - v.min())
        gaps = gaps / span if span > 0 else np.zeros_like(gaps)
    return float(gaps.mean())


@dataclass(frozen=True)
class LandscapeMetrics:
    """Topological and curvature summaries of one landscape.

    Every count depends on the grid graph, so each result carries its ``connectivity``: the
    Freudenthal triangulation (the default) sees saddles between diagonal neighbours that the
    axis grid misses, and merges basins the axis grid keeps apart.

    Attributes
    ----------
    connectivity : {"axis", "freudenthal"}
        Grid graph the join tree was built on (:func:`sampletopo.graph.grid_graph`). ``"axis"``
        is the graph of Landscaper 1.3.1 and of gudhi's cubical complex on vertex values.
    n_points, n_nonfinite : int
        Grid points, and those with a non-finite loss (left out of the grid graph).
    n_minima, n_saddles : int
        Leaves and saddles of the join tree of the grid graph, leaving out those that exist only
        because of tied values (zero persistence; see :func:`smad`).
    average_persistence : float
        Mean persistence ``death - birth`` of the finite pairs of the join diagram (0 when the
        landscape has a single basin), as in Xie et al. (2024).
    smad : float
        See :func:`smad`.
    loss_min, loss_max : float
        Range of the finite losses.
    hessian_top_eigenvalue, hessian_trace : float
        At the centre of the grid, when given (NaN otherwise).
    hessian_trace_converged : bool or None
        Whether the Hutchinson trace reached its tolerance
        (:attr:`sampletopo.hessian.TraceEstimate.converged`); None when not given.
    """

    connectivity: str
    n_points: int
    n_nonfinite: int
    n_minima: int
    n_saddles: int
    average_persistence: float
    smad: float
    loss_min: float
    loss_max: float
    hessian_top_eigenvalue: float
    hessian_trace: float
    hessian_trace_converged: bool | None

    def to_dict(self) -> dict[str, Any]:
        """All fields, ``connectivity`` first."""
        return asdict(self)

    def to_polars(self) -> Any:
        """One-row :class:`polars.DataFrame`, with a ``connectivity`` column first."""
        import polars as pl

        return pl.DataFrame([self.to_dict()])


def landscape_metrics(
    landscape: Landscape | np.ndarray,
    *,
    connectivity: Literal["axis", "freudenthal"] = "freudenthal",
    hessian_top_eigenvalue: float | None = None,
    hessian_trace: float | None = None,
    hessian_trace_converged: bool | None = None,
) -> LandscapeMetrics:
    """Minima, saddles, average persistence and SMAD of a grid landscape of any dimension.

    Parameters
    ----------
    landscape : Landscape or ndarray
        A landscape, or any ``d``-dimensional array of values on a regular grid.
    connectivity : {"axis", "freudenthal"}
        Neighbours in the grid graph (:func:`sampletopo.graph.grid_graph`). Freudenthal (the
        default) adds the diagonals of a triangulation, so a saddle between two diagonal basins
        is seen. ``"axis"`` is the graph Landscaper 1.3.1 builds on a grid and the one of
        gudhi's cubical complex on vertex values: counts match those tools only with it.
    hessian_top_eigenvalue, hessian_trace : float, optional
        Reported beside the topological metrics.
    hessian_trace_converged : bool, optional
        Whether the trace estimate reached its tolerance, reported with it.

    Returns
    -------
    LandscapeMetrics
        Non-finite grid points are left out of the graph (with their edges) and counted.
    """
    where = "landscape_metrics"
    arr = _grid_values(landscape, where)
    connectivity = _check_connectivity(connectivity, where)  # type: ignore[assignment]
    tree, _ = _grid_join_tree(arr, connectivity)
    dg = tree.diagram().finite()
    pers = dg.persistence
    finite = arr[np.isfinite(arr)]
    minima, saddles = _critical_nodes(tree)
    return LandscapeMetrics(
        connectivity=connectivity,
        n_points=int(arr.size),
        n_nonfinite=int(arr.size - finite.size),
        n_minima=int(minima.size),
        n_saddles=int(saddles.size),
        average_persistence=float(pers.mean()) if pers.size else 0.0,
        smad=smad(tree),
        loss_min=float(finite.min()),
        loss_max=float(finite.max()),
        hessian_top_eigenvalue=float("nan")
        if hessian_top_eigenvalue is None
        else float(hessian_top_eigenvalue),
        hessian_trace=float("nan") if hessian_trace is None else float(hessian_trace),
        hessian_trace_converged=None
        if hessian_trace_converged is None
        else bool(hessian_trace_converged),
    )


# ---------------------------------------------------------------------------------------------
# Topological landscape profile
# ---------------------------------------------------------------------------------------------


_BASIN_KIND = {"leaf": "minimum", "saddle": "saddle", "root": "root"}


@dataclass(frozen=True)
class ProfileBasin:
    """One branch of the merge tree drawn as a basin of the profile.

    Its width at loss level ``t`` (``levels[0] <= t < top``) is the number of grid points below
    ``t`` in the basin, counting the basins nested in it: ``widths[j]`` for
    ``levels[j] <= t < levels[j + 1]``. It is drawn centred at ``center``.

    Attributes
    ----------
    parent : int
        Index of the enclosing basin in :attr:`LandscapeProfile.basins` (-1 for a top basin).
    kind : {"minimum", "saddle", "root"}
        Where the branch starts: at a minimum, at a saddle (where basins merge), or at the last
        point of the grid (a top basin holding only that point).
    vertex : int
        The grid point (flat index) where it starts (the minimum or saddle).
    levels, widths : ndarray
        Step function of the width (levels ascending).
    top : float
        Loss level where it merges into its parent (the last level of a top basin).
    center : float
        Horizontal centre of the basin in the drawing.
    size : int
        Grid points in the basin at ``top`` (its own and its nested ones).
    """

    parent: int
    kind: str
    vertex: int
    levels: np.ndarray
    widths: np.ndarray
    top: float
    center: float
    size: int

    def outline(self, *, max_points: int = 400) -> tuple[np.ndarray, np.ndarray]:
        """Closed polygon ``(x, y)`` of the basin (a stair outline, thinned to ``max_points``)."""
        lv, wd = self.levels, self.widths
        if lv.size > max_points // 2:
            keep = np.unique(np.linspace(0, lv.size - 1, max_points // 2).round().astype(int))
            lv, wd = lv[keep], wd[keep]
        y = np.repeat(np.append(lv, self.top), 2)[1:-1]
        w = np.repeat(wd, 2).astype(np.float64)
        right = self.center + w / 2
        left = self.center - w / 2
        x = np.concatenate([[self.center], right, left[::-1], [self.center]])
        yy = np.concatenate([[lv[0]], y, y[::-1], [lv[0]]])
        return x, yy


@dataclass(frozen=True)
class LandscapeProfile:
    """The topological landscape profile of a grid (Geniesse et al. 2024).

    The join tree of the grid drawn as nested basins: each branch is a :class:`ProfileBasin`
    whose width at a loss level is the number of grid points of that basin below the level;
    branches that merge at a saddle sit side by side inside their parent, the elder (lower
    minimum) on the left. Works for any grid dimension since only the tree is drawn.

    Attributes
    ----------
    basins : tuple of ProfileBasin
        Children before parents.
    n_points : int
        Finite grid points (the total width at the top).
    loss_min, loss_max : float
    connectivity : {"axis", "freudenthal"}
        Grid graph of the join tree the profile draws.
    """

    basins: tuple[ProfileBasin, ...]
    n_points: int
    loss_min: float
    loss_max: float
    connectivity: str

    def width_at(self, level: float) -> int:
        """Total width (grid points with loss <= ``level``) summed over the basins that are
        open at ``level`` -- equal to the number of finite grid points at or below it."""
        total = 0
        for b in self.basins:
            if b.levels[0] <= level < b.top or (b.parent < 0 and level >= b.levels[0]):
                j = int(np.searchsorted(b.levels, level, side="right")) - 1
                total += int(b.widths[j])
        return total


def landscape_profile(
    landscape: Landscape | np.ndarray,
    *,
    connectivity: Literal["axis", "freudenthal"] = "freudenthal",
) -> LandscapeProfile:
    """Build the topological landscape profile of a grid landscape of any dimension.

    Parameters
    ----------
    landscape : Landscape or ndarray
        Values on a regular grid; non-finite points are left out.
    connectivity : {"axis", "freudenthal"}
        Grid graph used for the join tree (see :func:`landscape_metrics`); the profile records
        it.

    Returns
    -------
    LandscapeProfile
    """
    where = "landscape_profile"
    arr = _grid_values(landscape, where)
    connectivity = _check_connectivity(connectivity, where)  # type: ignore[assignment]
    tree, keep = _grid_join_tree(arr, connectivity)
    vals = tree.values
    n_nodes = tree.node_vertex.shape[0]
    n_arcs = tree.arc_lower.shape[0]
    # Basins: one per arc, plus one per top node (a node with no arc leaving it upward), which
    # holds the vertex that closes its component.
    node_out = np.full(n_nodes, -1, dtype=np.int64)
    node_out[tree.arc_lower] = np.arange(n_arcs)
    tops = np.flatnonzero(node_out < 0)
    n_basins = n_arcs + tops.size
    basin_of_top = {int(t): n_arcs + i for i, t in enumerate(tops)}
    start_node = np.concatenate([tree.arc_lower, tops])
    parent = np.full(n_basins, -1, dtype=np.int64)
    for a in range(n_arcs):
        up = int(tree.arc_upper[a])
        parent[a] = node_out[up] if node_out[up] >= 0 else basin_of_top[up]
    # Own vertices of each basin, sorted by sweep rank.
    va = np.asarray(tree.vertex_arc).copy()
    for t in tops:
        va[tree.node_vertex[t]] = basin_of_top[int(t)]
    order = np.argsort(tree.rank[np.arange(vals.size)], kind="stable")
    own_sorted = [[] for _ in range(n_basins)]  # type: list[list[int]]
    for v in order:
        own_sorted[int(va[v])].append(int(v))
    children: list[list[int]] = [[] for _ in range(n_basins)]
    for b in range(n_basins):
        if parent[b] >= 0:
            children[int(parent[b])].append(b)
    # Sizes bottom-up: children are always created before parents in sweep order, so process
    # basins by the rank of their starting vertex.
    start_rank = tree.rank[tree.node_vertex[start_node]]
    by_start = np.argsort(start_rank, kind="stable")
    size = np.zeros(n_basins, dtype=np.int64)
    base = np.zeros(n_basins, dtype=np.int64)
    for b in by_start:
        base[b] = sum(size[c] for c in children[b])
        size[b] = base[b] + len(own_sorted[b])
    # Minimum value of each basin (for ordering children elder-first).
    low = np.array([vals[tree.node_vertex[start_node[b]]] for b in range(n_basins)])
    deepest = low.copy()
    for b in by_start:
        for c in children[b]:
            deepest[b] = min(deepest[b], deepest[c])
    # Layout top-down: top basins side by side, children centred under their parent.
    center = np.zeros(n_basins)
    roots = sorted((b for b in range(n_basins) if parent[b] < 0), key=lambda b: deepest[b])
    x = 0.0
    stack: list[int] = []
    for r in roots:
        center[r] = x + size[r] / 2
        x += size[r]
        stack.append(r)
    while stack:
        b = stack.pop()
        kids = sorted(children[b], key=lambda c: deepest[c])
        left = center[b] - base[b] / 2
        for c in kids:
            center[c] = left + size[c] / 2
            left += size[c]
            stack.append(c)
    basins = []
    kind_of = tree.node_kind
    for b in by_start:
        own = own_sorted[b]
        levels = vals[own]
        widths = base[b] + np.arange(1, len(own) + 1)
        if parent[b] >= 0:
            top = float(vals[tree.node_vertex[start_node[parent[b]]]])
        else:
            top = float(levels[-1])
        basins.append(
            (
                int(b),
                ProfileBasin(
                    parent=int(parent[b]),
                    kind=_BASIN_KIND[str(kind_of[start_node[b]])],
                    vertex=int(keep[tree.node_vertex[start_node[b]]]),
                    levels=levels,
                    widths=widths,
                    top=top,
                    center=float(center[b]),
                    size=int(size[b]),
                ),
            )
        )
    # Re-index parents to positions in the (children-first) output order.
    pos = {b: i for i, (b, _) in enumerate(basins)}
    out = tuple(replace(pb, parent=pos[pb.parent] if pb.parent >= 0 else -1) for _, pb in basins)
    return LandscapeProfile(
        basins=out,
        n_points=int(vals.size),
        loss_min=float(vals.min()),
        loss_max=float(vals.max()),
        connectivity=connectivity,
    )


# ---------------------------------------------------------------------------------------------
# A recorded run
# ---------------------------------------------------------------------------------------------


def _subset(n: int, n_samples: int | None, seed: int) -> np.ndarray:
    if n_samples is None or n_samples >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=n_samples, replace=False))


def landscape_path(run_dir: str | Path, epoch: int) -> Path:
    """``<experiment>/landscapes/<variant>-epoch=NNNN.npz`` for a run directory."""
    rd = Path(run_dir)
    return rd.parent / "landscapes" / f"{rd.name}-epoch={int(epoch):04d}.npz"


def landscape_for_run(
    run_dir: str | Path,
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

    The loss is mean cross-entropy, the same loss the recorder stores per sample (runs are
    classifiers), so the grid's value at the origin is the mean of the recorded training losses
    of that subset. For another loss, call :func:`evaluate_grid` with your own ``loss_fn``.

    Returns
    -------
    Path
        The written file (default :func:`landscape_path`).
    """
    from torch.nn import functional as F

    from sampletopo.hessian import (
        hessian_operator,
        hutchinson_trace,
        spectral_density,
        top_eigenpairs,
    )
    from sampletopo.record import load_run_model

    where = "landscape_for_run"
    if dirs not in ("hessian", "random"):
        raise SampletopoError(f"{where}: 'dirs' must be 'hessian' or 'random'. Got {dirs!r}.")
    dim = check_int_range("dim", dim, 1, None, where=where)
    steps = check_int_range("steps", steps, 2, None, where=where)
    trace_max_samples = check_int_range(
        "trace_max_samples",
        trace_max_samples,
        2,
        None,
        where=where,
        fix="The trace's standard error needs at least 2 probes.",
    )
    if not (isinstance(trace_rtol, (int, float)) and trace_rtol > 0):
        raise SampletopoError(
            f"{where}: 'trace_rtol' must be a number > 0. Got {trace_rtol!r}. Try 0.05."
        )
    path = Path(out) if out is not None else landscape_path(run_dir, epoch)
    if path.suffix != ".npz":
        raise SampletopoError(
            f"{where}: 'out' must be a .npz file path (a NumPy archive is written). Got "
            f"{str(path)!r}."
        )
    model, dataset = load_run_model(run_dir, epoch)
    x, y = dataset.tensors("train")
    idx = torch.from_numpy(_subset(int(x.shape[0]), n_samples, seed))
    x, y = x[idx], y[idx]
    loss_fn = F.cross_entropy
    if not hessian and dirs == "hessian":
        raise SampletopoError(
            f"{where}: hessian=False skips the Hessian, but dirs='hessian' needs its "
            "eigenvectors. Use dirs='random', or keep hessian=True."
        )
    extra: dict[str, Any] = {}
    eig = trace = None
    if hessian:
        op = hessian_operator(model, loss_fn, x, y, batch_size=batch_size)
        k = min(max(dim, 1), max(op.n - 1, 1))
        if dirs == "hessian" and dim > k:
            raise SampletopoError(
                f"{where}: 'dim' must be at most {k} for Hessian directions (the model has "
                f"{op.n} trainable parameters). Got dim={dim}."
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
            "run": str(Path(run_dir).name),
            "epoch": int(epoch),
        },
    )
