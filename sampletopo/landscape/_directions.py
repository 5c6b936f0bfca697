"""Directions in the space of a model's trainable parameters, along which a landscape is cut.

What is here: :class:`Directions` (flat float64 vectors laid out over the trainable parameters,
with how they were made), :func:`random_directions` (seeded Gaussian directions with *filter
normalization*, Li et al. 2018: every output filter of a direction rescaled to the norm of the
same filter of the weights; biases and normalization parameters -- every parameter with fewer
than two dimensions -- zeroed unless ``include_bias_bn``; optionally made exactly orthogonal by
Gram-Schmidt) and :func:`hessian_directions` (the top-d Hessian eigenvectors). Only trainable
parameters (``requires_grad=True``) get a direction, as in :mod:`sampletopo.hessian`.

What is not here: evaluating a grid along the directions (``_grid``), the Hessian eigenpairs
themselves (:mod:`sampletopo.hessian`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from sampletopo._validation import check_choice, check_int, invalid
from sampletopo.hessian import Eigenpairs, trainable_parameters


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
                raise invalid(
                    "directions",
                    "directions that fit the model's trainable parameters",
                    where=where,
                    got=f"at position {i}, {theirs} where the model has {n!r} of shape {s}",
                    fix="They do not fit: build the directions from this model (same "
                    "architecture, same frozen parameters).",
                )
        raise invalid(
            "directions",
            f"directions over the model's {len(names)} trainable parameter tensors "
            f"({sum(math.prod(s) for s in shapes)} scalars)",
            where=where,
            got=f"directions over {len(self.names)} tensors ({self.n} scalars)",
            fix="They do not fit: build the directions from this model.",
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
    dim = check_int("dim", dim, 1, None, where=where)
    check_choice(
        "normalization",
        normalization,
        ("filter", "none"),
        where=where,
        fix="Use 'filter' (Li et al. 2018) unless you mean raw Gaussian directions.",
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
            zeroed = "" if include_bias_bn else " (biases and BatchNorm are zeroed)"
            raise invalid(
                "dim",
                f"at most {n_free} for orthogonal directions: only {n_free} coordinates can be "
                f"non-zero{zeroed}",
                dim,
                where=where,
                fix="Ask for fewer directions"
                + ("." if include_bias_bn else " or pass include_bias_bn=True."),
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
            raise invalid(
                "seed",
                "a seed whose directions are linearly independent",
                where=where,
                got=f"one whose direction {k + 1} is linearly dependent on the earlier ones",
                fix="It cannot be orthogonalised: use another seed or fewer directions.",
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
    dim = check_int(
        "dim",
        dim,
        1,
        eigenpairs.k,
        where=where,
        fix=f"Only {eigenpairs.k} eigenpairs are available: compute more with "
        f"top_eigenpairs(op, k={dim}).",
    )
    if eigenpairs.eigenvectors.shape[0] != n:
        raise invalid(
            "eigenpairs",
            f"eigenvectors of {n} entries, one per trainable scalar of the model",
            where=where,
            got=f"eigenvectors of {eigenpairs.eigenvectors.shape[0]} entries",
            fix="Compute the eigenpairs for this model (with the same frozen parameters).",
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
