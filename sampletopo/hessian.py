"""The Hessian of a model's loss: matrix-free products, top eigenpairs, trace and spectral density.

What is here
------------
- :func:`hessian_operator` wraps a model, a loss function and data into a :class:`HessianOperator`
  whose ``matvec`` is one Hessian-vector product (HVP) computed with :mod:`torch.func`
  (forward-over-reverse, with a reverse-over-reverse fallback). Only trainable parameters
  (``requires_grad=True``) are variables; frozen parameters and buffers are constants, and the
  model runs in eval mode (BatchNorm uses its running statistics), so every routine below sees the
  same parameter vector.
- :func:`top_eigenpairs` finds the k largest eigenvalues by Lanczos (ARPACK through
  :func:`scipy.sparse.linalg.eigsh`) or by power iteration with deflation, counting HVPs.
- :func:`hutchinson_trace` estimates the trace with Rademacher probes and stops on the relative
  standard error; when the budget runs out first it says so (``converged=False`` and a
  :class:`TraceNotConvergedWarning`).
- :func:`spectral_density` runs stochastic Lanczos quadrature (SLQ): nodes are the Ritz values of
  each Lanczos run and weights the *squared first components* of the Ritz vectors.

What is not here
----------------
Loss landscapes and directions (:mod:`sampletopo.landscape`), figures
(:mod:`sampletopo.plotting`), loading runs or checkpoints (:mod:`sampletopo.runs`).

Examples
--------
Linear least squares has the closed-form Hessian ``2/n X^T X``:

>>> import torch
>>> x = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
>>> y = torch.zeros(2, 1, dtype=torch.float64)
>>> model = torch.nn.Linear(2, 1, bias=False).double()
>>> op = hessian_operator(model, torch.nn.functional.mse_loss, x, y)
>>> top_eigenpairs(op, k=1).eigenvalues.round(6).tolist()
[4.0]
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from sampletopo._batching import auto_batch_size
from sampletopo._errors import TraceNotConvergedWarning
from sampletopo._validation import check_choice, check_int, check_real, invalid

__all__ = [
    "Eigenpairs",
    "HessianOperator",
    "SpectralDensity",
    "TraceEstimate",
    "TraceNotConvergedWarning",
    "hessian_operator",
    "hutchinson_trace",
    "lanczos",
    "lanczos_quadrature",
    "spectral_density",
    "top_eigenpairs",
]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def check_samples(inputs: torch.Tensor, targets: torch.Tensor, *, where: str) -> None:
    """Refuse data whose inputs and targets differ in count, or hold no sample."""
    if inputs.shape[0] != targets.shape[0] or inputs.shape[0] == 0:
        raise invalid(
            "targets",
            "as many as 'inputs', a positive number of samples",
            where=where,
            got=f"{inputs.shape[0]} inputs and {targets.shape[0]} targets",
        )


def trainable_parameters(model: nn.Module, *, where: str) -> dict[str, torch.Tensor]:
    """Return the trainable parameters of ``model`` by name, in ``named_parameters`` order.

    Raises :class:`SampletopoError` when there are none, since every Hessian or landscape
    routine would then work in a zero-dimensional space.
    """
    params: dict[str, torch.Tensor] = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise invalid(
            "model",
            "a model with trainable parameters",
            where=where,
            got="one whose every parameter has requires_grad=False",
            fix="Unfreeze at least one parameter, e.g. `model.requires_grad_(True)`, or pass "
            "the model you meant (it has no trainable parameters).",
        )
    return params


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode for the block and restore its previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


class HessianOperator:
    """The Hessian of ``loss_fn(model(x), y)`` with respect to the trainable parameters.

    Build it with :func:`hessian_operator`. The operator works on flat float64 NumPy vectors whose
    layout is the concatenation of the trainable parameters in ``named_parameters`` order
    (``names``, ``shapes``). Every call of :meth:`matvec` is one Hessian-vector product over the
    whole data set and increments :attr:`n_hvp`.

    Attributes
    ----------
    n : int
        Number of trainable scalars (the operator is ``n x n``).
    names, shapes : tuple
        Names and shapes of the trainable parameters, in vector order.
    n_hvp : int
        Hessian-vector products done so far (reset with :meth:`reset_count`).
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        *,
        batch_size: int | None,
    ) -> None:
        where = "hessian_operator"
        params = trainable_parameters(model, where=where)
        check_samples(inputs, targets, where=where)
        if batch_size is None:
            batch_size = auto_batch_size(model, inputs, next(iter(params.values())).device)
        batch_size = check_int("batch_size", batch_size, 1, None, where=where)
        self.model = model
        self.loss_fn = loss_fn
        self.inputs = inputs
        self.targets = targets
        self.batch_size = batch_size
        self.names: tuple[str, ...] = tuple(params)
        self.shapes: tuple[tuple[int, ...], ...] = tuple(tuple(p.shape) for p in params.values())
        self.numels: tuple[int, ...] = tuple(p.numel() for p in params.values())
        self.n: int = int(sum(self.numels))
        self.dtype = next(iter(params.values())).dtype
        self.device = next(iter(params.values())).device
        self.n_hvp = 0
        self._mode: Literal["fwd", "rev"] = "fwd"

    # -- layout ---------------------------------------------------------------------------------
    def flatten(self, tensors: dict[str, torch.Tensor]) -> np.ndarray:
        """Concatenate per-parameter tensors into one float64 vector (the operator's layout)."""
        return np.concatenate(
            [tensors[n].detach().reshape(-1).to("cpu", torch.float64).numpy() for n in self.names]
        )

    def unflatten(self, vector: np.ndarray) -> dict[str, torch.Tensor]:
        """Split a flat vector into per-parameter tensors of the model's dtype and device."""
        vec = np.asarray(vector, dtype=np.float64)
        if vec.shape != (self.n,):
            raise invalid(
                "vector",
                f"of shape ({self.n},), one entry per trainable parameter",
                where="HessianOperator",
                got=f"shape {vec.shape}",
                fix="Build vectors with `op.flatten(...)`.",
            )
        out: dict[str, torch.Tensor] = {}
        start = 0
        t = torch.from_numpy(vec).to(self.device, self.dtype)
        for name, shape, k in zip(self.names, self.shapes, self.numels, strict=True):
            out[name] = t[start : start + k].reshape(shape)
            start += k
        return out

    def parameters_vector(self) -> np.ndarray:
        """The current trainable parameters as one flat float64 vector."""
        params = dict(self.model.named_parameters())
        return self.flatten({n: params[n] for n in self.names})

    # -- products -------------------------------------------------------------------------------
    def _batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, float]]:
        n = self.inputs.shape[0]
        for start in range(0, n, self.batch_size):
            x = self.inputs[start : start + self.batch_size].to(self.device)
            y = self.targets[start : start + self.batch_size].to(self.device)
            yield x, y, x.shape[0] / n

    def _split(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        variables: dict[str, torch.Tensor] = {}
        constants: dict[str, torch.Tensor] = {}
        for name, p in self.model.named_parameters():
            if name in self.names:
                variables[name] = p.detach()
            else:
                constants[name] = p.detach()
        for name, b in self.model.named_buffers():
            constants[name] = b
        return variables, constants

    def _loss_fn_of(self, constants: dict[str, torch.Tensor]) -> Callable[..., torch.Tensor]:
        from torch.func import functional_call

        def loss_of(variables: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor):
            out = functional_call(self.model, {**variables, **constants}, (x,))
            return self.loss_fn(out, y)

        return loss_of

    def loss_and_gradient(self) -> tuple[float, np.ndarray]:
        """Loss over all data and its gradient (flat), at the current parameters."""
        from torch.func import grad_and_value

        with eval_mode(self.model):
            variables, constants = self._split()
            gv = grad_and_value(self._loss_fn_of(constants))
            total = 0.0
            g = np.zeros(self.n)
            for x, y, w in self._batches():
                gb, lb = gv(variables, x, y)
                total += w * float(lb)
                g += w * self.flatten(gb)
        return total, g

    def matvec(self, vector: np.ndarray) -> np.ndarray:
        """Return ``H @ vector`` (float64), computed without forming ``H``; counts one HVP."""
        from torch.func import grad, jvp, vjp

        v = self.unflatten(vector)
        with eval_mode(self.model):
            variables, constants = self._split()
            grad_fn = grad(self._loss_fn_of(constants))
            out = np.zeros(self.n)
            for x, y, w in self._batches():
                if self._mode == "fwd":
                    try:
                        with warnings.catch_warnings():
                            # torch's first forward-mode call scripts its own decompositions
                            # and warns that torch.jit.script is deprecated: torch's internals,
                            # nothing a user can act on.
                            warnings.filterwarnings(
                                "ignore", message=".*torch.jit.script", category=FutureWarning
                            )
                            hv = jvp(lambda p, x=x, y=y: grad_fn(p, x, y), (variables,), (v,))[1]
                    except (NotImplementedError, RuntimeError):
                        # Some ops lack forward-mode rules; the Hessian is symmetric, so a
                        # vector-Jacobian product of the gradient gives the same H v.
                        self._mode = "rev"
                if self._mode == "rev":
                    pulled = vjp(lambda p, x=x, y=y: grad_fn(p, x, y), variables)
                    hv = pulled[1](v)[0]
                out += w * self.flatten(hv)
        self.n_hvp += 1
        return out

    def reset_count(self) -> None:
        """Set :attr:`n_hvp` back to zero."""
        self.n_hvp = 0

    def as_linear_operator(self) -> Any:
        """A :class:`scipy.sparse.linalg.LinearOperator` view (symmetric, float64)."""
        from scipy.sparse.linalg import LinearOperator

        return LinearOperator(
            (self.n, self.n),
            matvec=lambda v: self.matvec(np.asarray(v).reshape(-1)),
            rmatvec=lambda v: self.matvec(np.asarray(v).reshape(-1)),
            dtype=np.float64,
        )

    def dense(self) -> np.ndarray:
        """The full ``n x n`` Hessian by ``n`` HVPs; for small models and tests only."""
        if self.n > 5000:
            raise invalid(
                "self",
                "an operator of at most 5000 parameters to form the matrix",
                where="HessianOperator.dense",
                got=f"n={self.n}",
                fix="Use top_eigenpairs / spectral_density, which never form it.",
            )
        eye = np.eye(self.n)
        return np.stack([self.matvec(eye[i]) for i in range(self.n)], axis=1)


def hessian_operator(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    batch_size: int | None = None,
) -> HessianOperator:
    """Wrap a model, a loss and a data subset into a matrix-free Hessian.

    Parameters
    ----------
    model : torch.nn.Module
        The network. It is evaluated in eval mode (its mode is restored afterwards); parameters
        with ``requires_grad=False`` are held fixed and are not part of the Hessian.
    loss_fn : callable
        ``loss_fn(outputs, targets)`` returning the *mean* loss over the batch (e.g.
        :func:`torch.nn.functional.cross_entropy`).
    inputs, targets : torch.Tensor
        The data the Hessian is taken over (choose a subset for big data sets).
    batch_size : int, optional
        Samples per forward pass; the batch means are weighted by batch size, so the result is
        the Hessian of the mean loss over all of ``inputs``. Default: sized by the model's
        largest activation (:func:`sampletopo._batching.auto_batch_size`; all samples at once
        for small models).

    Returns
    -------
    HessianOperator

    Raises
    ------
    SampletopoError
        If the model has no trainable parameters or inputs and targets disagree in length.
    """
    return HessianOperator(model, loss_fn, inputs, targets, batch_size=batch_size)


# ---------------------------------------------------------------------------------------------
# Eigenpairs
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Eigenpairs:
    """Top eigenpairs of a Hessian.

    Attributes
    ----------
    eigenvalues : ndarray (k,)
        In descending order.
    eigenvectors : ndarray (n, k)
        Unit-norm columns matching ``eigenvalues``, in the operator's flat layout.
    n_hvp : int
        Hessian-vector products the method used.
    method : str
        ``"lanczos"`` or ``"power"``.
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    n_hvp: int
    method: str

    @property
    def k(self) -> int:
        """Number of eigenpairs."""
        return int(self.eigenvalues.shape[0])


def _check_k(k: int, n: int, *, where: str, method: str) -> int:
    # ARPACK needs k < n; power iteration can find all n.
    high = n - 1 if method == "lanczos" else n
    return check_int(
        "k",
        k,
        1,
        max(high, 1),
        where=where,
        fix=f"The operator has n={n} trainable parameters; ask for fewer eigenpairs.",
    )


def top_eigenpairs(
    op: HessianOperator | Any,
    *,
    k: int = 1,
    method: Literal["lanczos", "power"] = "lanczos",
    tol: float = 1e-4,
    max_iter: int = 1000,
    seed: int = 0,
) -> Eigenpairs:
    """The ``k`` algebraically largest eigenpairs of a symmetric operator.

    Parameters
    ----------
    op : HessianOperator or object with ``n`` and ``matvec``
        The operator (anything with an ``n`` attribute and a ``matvec(v)`` method works).
    k : int
        Number of eigenpairs, ``1 <= k < n`` for Lanczos, ``1 <= k <= n`` for power iteration.
    method : {"lanczos", "power"}
        ``"lanczos"``: implicitly restarted Lanczos (ARPACK ``eigsh``, ``which="LA"``), relative
        tolerance ``tol``. ``"power"``: power iteration, one eigenpair at a time, each new
        iterate orthogonalised against the eigenvectors already found (deflation), stopped when
        the Rayleigh quotient changes by less than ``tol`` relative. Power iteration converges
        to the largest *magnitude* eigenvalue of the deflated operator, so the two agree when the
        top eigenvalues are positive (the usual case near a minimum).
    tol : float
        Relative tolerance (see ``method``).
    max_iter : int
        Power iterations per eigenpair, or ARPACK restarts.
    seed : int
        Seeds the starting vector(s); results are deterministic under a seed.

    Returns
    -------
    Eigenpairs
        With ``n_hvp`` the number of products this call used.
    """
    where = "top_eigenpairs"
    check_choice(
        "method",
        method,
        ("lanczos", "power"),
        where=where,
        fix="Use 'lanczos' (fewer Hessian-vector products) unless comparing.",
    )
    n = int(op.n)
    k = _check_k(k, n, where=where, method=method)
    check_real("tol", tol, low=0, low_open=True, where=where, fix="Try 1e-4.")
    rng = np.random.default_rng(seed)
    start = _count(op)
    if method == "lanczos" and n <= 2:
        # ARPACK needs k < n - 1 in practice; a 1- or 2-parameter Hessian is built densely
        # from n products instead.
        dense = np.column_stack([op.matvec(e) for e in np.eye(n)])
        w, u = np.linalg.eigh((dense + dense.T) / 2)
        vals, vecs = w[::-1][:k], u[:, ::-1][:, :k]
    elif method == "lanczos":
        from scipy.sparse.linalg import LinearOperator, eigsh

        lin = LinearOperator((n, n), matvec=lambda v: op.matvec(np.ravel(v)), dtype=np.float64)
        v0 = rng.standard_normal(n)
        vals, vecs = eigsh(lin, k=k, which="LA", tol=tol, v0=v0, maxiter=max_iter)
    else:
        vals, vecs = _power_deflation(op, k=k, tol=tol, max_iter=max_iter, rng=rng)
    order = np.argsort(vals)[::-1]
    vals = np.asarray(vals, dtype=np.float64)[order]
    vecs = np.asarray(vecs, dtype=np.float64)[:, order]
    # Fix each vector's sign (largest-|.| entry positive) so results are comparable across methods.
    pivots = np.argmax(np.abs(vecs), axis=0)
    vecs = vecs * np.sign(vecs[pivots, np.arange(vecs.shape[1])])
    return Eigenpairs(eigenvalues=vals, eigenvectors=vecs, n_hvp=_count(op) - start, method=method)


def _count(op: Any) -> int:
    return int(getattr(op, "n_hvp", 0))


def _power_deflation(
    op: Any, *, k: int, tol: float, max_iter: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    n = int(op.n)
    vals: list[float] = []
    vecs: list[np.ndarray] = []
    for _ in range(k):
        basis = np.stack(vecs, axis=1) if vecs else np.zeros((n, 0))
        v = rng.standard_normal(n)
        v -= basis @ (basis.T @ v)
        v /= np.linalg.norm(v)
        lam = np.nan
        for _it in range(max_iter):
            w = op.matvec(v)
            w -= basis @ (basis.T @ w)
            new = float(v @ w)
            norm = np.linalg.norm(w)
            if norm == 0.0:
                lam = new
                break
            v = w / norm
            if np.isfinite(lam) and abs(new - lam) <= tol * max(abs(lam), 1e-30):
                lam = new
                break
            lam = new
        vals.append(lam)
        vecs.append(v)
    return np.asarray(vals), np.stack(vecs, axis=1)


# ---------------------------------------------------------------------------------------------
# Trace
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TraceEstimate:
    """Hutchinson estimate of a trace.

    Attributes
    ----------
    value : float
        Mean of the probes ``z^T H z``.
    stderr : float
        Standard error of the mean (sample std with ``ddof=1`` over ``sqrt(n_samples)``).
    n_samples : int
        Probes used (one HVP each).
    converged : bool
        Whether ``stderr <= rtol * |value|`` was reached (after at least ``min_samples`` probes)
        before the ``max_samples`` budget ran out. When false, ``value`` is still the mean of all
        the probes, but its relative error is :attr:`relative_stderr`, not ``rtol``.
    rtol : float
        The target relative standard error the estimate was asked for.
    samples : ndarray
        The individual probe values ``z^T H z``.
    """

    value: float
    stderr: float
    n_samples: int
    converged: bool
    rtol: float
    samples: np.ndarray

    @property
    def relative_stderr(self) -> float:
        """``stderr / |value|`` (inf when the value is 0 and the error is not): the relative
        tolerance actually reached, to compare with :attr:`rtol`."""
        if self.value == 0.0:
            return 0.0 if self.stderr == 0.0 else float("inf")
        return abs(self.stderr / self.value)

    def summary(self) -> str:
        """One line: the value, its standard error and whether it converged, e.g.
        ``"12.3 +- 0.1 (converged: relative stderr 0.0081 <= rtol 0.01 after 40 probes)"``."""
        rel = self.relative_stderr
        if self.converged:
            how = f"converged: relative stderr {rel:.2g} <= rtol {self.rtol:g}"
        else:
            how = f"NOT converged: relative stderr {rel:.2g} > rtol {self.rtol:g}"
        return f"{self.value:.4g} +- {self.stderr:.3g} ({how} after {self.n_samples} probes)"


def hutchinson_trace(
    op: HessianOperator | Any,
    *,
    rtol: float = 1e-2,
    min_samples: int = 10,
    max_samples: int = 1000,
    seed: int = 0,
    progress: bool = True,
) -> TraceEstimate:
    """Estimate ``trace(H)`` with Rademacher probes, stopping on the relative standard error.

    Each probe ``z`` has independent entries ``+-1`` with probability 1/2, so ``E[z^T H z] =
    trace(H)``. After at least ``min_samples`` probes, sampling stops as soon as the standard
    error of the mean is at most ``rtol`` times its absolute value, or at ``max_samples``.

    The budget is not always enough. One probe has variance
    ``Var(z^T H z) = 2 sum_{i != j} H_ij**2 = 2 (|H|_F**2 - sum_i H_ii**2)``, so reaching ``rtol``
    takes about ``N = 2 (|H|_F**2 - sum_i H_ii**2) / (rtol * trace(H))**2`` probes. With the
    default ``rtol=1e-2`` that is more than the default 1,000 as soon as the off-diagonal mass
    ``2 sum_{i != j} H_ij**2`` exceeds ``0.1 * trace(H)**2`` -- common for a network's Hessian,
    and always the case when positive and negative eigenvalues nearly cancel (early in training,
    near a saddle), where the trace is close to 0 and no budget reaches a relative tolerance.
    Then the result has ``converged=False`` and a :class:`TraceNotConvergedWarning` says how far
    it got; the value is the mean of all the probes, with its standard error.

    Parameters
    ----------
    op : HessianOperator or object with ``n`` and ``matvec``
    rtol : float
        Target relative standard error, > 0.
    min_samples, max_samples : int
        ``2 <= min_samples <= max_samples``.
    seed : int
        Seeds the probes (deterministic).
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    TraceEstimate
        With ``converged`` and the ``rtol`` asked for; compare ``relative_stderr`` with it.

    Warns
    -----
    TraceNotConvergedWarning
        When ``max_samples`` probes did not reach ``rtol``.
    """
    where = "hutchinson_trace"
    check_real("rtol", rtol, low=0, low_open=True, where=where, fix="Try 1e-2.")
    min_samples = check_int("min_samples", min_samples, 2, None, where=where)
    max_samples = check_int(
        "max_samples",
        max_samples,
        min_samples,
        None,
        where=where,
        fix="It must be at least min_samples.",
    )
    rng = np.random.default_rng(seed)
    n = int(op.n)
    samples: list[float] = []
    converged = False
    bar = tqdm(total=max_samples, desc="Hutchinson trace", disable=not progress, leave=False)
    with bar:
        while len(samples) < max_samples:
            z = rng.integers(0, 2, size=n).astype(np.float64) * 2.0 - 1.0
            samples.append(float(z @ op.matvec(z)))
            bar.update(1)
            if len(samples) >= min_samples:
                arr = np.asarray(samples)
                sem = float(arr.std(ddof=1) / np.sqrt(arr.size))
                if sem <= rtol * abs(arr.mean()):
                    converged = True
                    break
    arr = np.asarray(samples)
    est = TraceEstimate(
        value=float(arr.mean()),
        stderr=float(arr.std(ddof=1) / np.sqrt(arr.size)),
        n_samples=int(arr.size),
        converged=converged,
        rtol=float(rtol),
        samples=arr,
    )
    if not converged:
        warnings.warn(
            f"{where}: the trace estimate did not converge: after all max_samples={max_samples} "
            f"probes its relative standard error is {est.relative_stderr:.3g}, above "
            f"rtol={rtol:g} (trace {est.value:.4g} +- {est.stderr:.3g}). Raise 'max_samples' "
            "or 'rtol', or use the value with its standard error.",
            TraceNotConvergedWarning,
            stacklevel=2,
        )
    return est


# ---------------------------------------------------------------------------------------------
# Lanczos and spectral density
# ---------------------------------------------------------------------------------------------


def lanczos(op: Any, v0: np.ndarray, *, n_iter: int) -> tuple[np.ndarray, np.ndarray]:
    """Lanczos tridiagonalisation with full reorthogonalisation.

    Parameters
    ----------
    op : object with ``n`` and ``matvec``
    v0 : ndarray (n,)
        Starting vector (normalised here).
    n_iter : int
        Steps ``m``; stops early (breakdown) when the Krylov space is exhausted.

    Returns
    -------
    alpha, beta : ndarray
        Diagonal (m,) and off-diagonal (m-1,) of the tridiagonal matrix ``T``.
    """
    n = int(op.n)
    n_iter = check_int("n_iter", n_iter, 1, None, where="lanczos")
    q = np.asarray(v0, dtype=np.float64) / np.linalg.norm(v0)
    basis = np.zeros((min(n_iter, n), n))
    alpha: list[float] = []
    beta: list[float] = []
    for j in range(min(n_iter, n)):
        basis[j] = q
        w = op.matvec(q)
        a = float(q @ w)
        alpha.append(a)
        # Full reorthogonalisation (twice is enough) keeps the Ritz values free of ghosts.
        for _ in range(2):
            w -= basis[: j + 1].T @ (basis[: j + 1] @ w)
        b = float(np.linalg.norm(w))
        if j == min(n_iter, n) - 1 or b <= 1e-10 * max(abs(a), 1.0):
            break
        beta.append(b)
        q = w / b
    return np.asarray(alpha), np.asarray(beta)


def lanczos_quadrature(op: Any, v0: np.ndarray, *, n_iter: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss quadrature nodes and weights of one Lanczos run from ``v0``.

    With ``T = Q^T H Q`` the Lanczos tridiagonal matrix and ``T = U diag(theta) U^T``, the nodes
    are ``theta`` and the weights ``U[0, :]**2`` -- the squared *first* components of the Ritz
    vectors, which sum to 1. Then ``sum_i w_i theta_i**p = q^T H^p q`` exactly for
    ``p <= 2 m - 1`` with ``q = v0 / |v0|``.

    Returns
    -------
    nodes, weights : ndarray (m,)
    """
    alpha, beta = lanczos(op, v0, n_iter=n_iter)
    t = np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)
    theta, u = np.linalg.eigh(t)
    return theta, u[0, :] ** 2


@dataclass(frozen=True)
class SpectralDensity:
    """Stochastic Lanczos quadrature estimate of a Hessian's eigenvalue density.

    Each run ``l`` gives Gauss quadrature nodes ``theta[l, i]`` (Ritz values) and weights
    ``w[l, i] = tau[l, i]**2``, where ``tau[l, i]`` is the *first component* of the ``i``-th
    eigenvector of that run's tridiagonal matrix. The weights of a run sum to 1. The smoothed
    density is ``phi(t) = mean_l sum_i w[l, i] g_sigma(t - theta[l, i])`` with a Gaussian kernel.

    Attributes
    ----------
    nodes, weights : ndarray (n_runs, m)
        Padded with NaN nodes / zero weights when a run stopped early.
    n_hvp : int
    """

    nodes: np.ndarray
    weights: np.ndarray
    n_hvp: int

    def density(self, grid: np.ndarray, *, sigma: float | None = None) -> np.ndarray:
        """Gaussian-smoothed density on ``grid`` (integrates to ~1 when the grid covers the nodes).

        ``sigma`` defaults to 1% of the node range (or 1e-3 when all nodes coincide).
        """
        grid = np.asarray(grid, dtype=np.float64)
        ok = np.isfinite(self.nodes)
        nodes = self.nodes[ok]
        weights = self.weights[ok]
        if sigma is None:
            span = float(nodes.max() - nodes.min()) if nodes.size else 0.0
            sigma = 0.01 * span if span > 0 else 1e-3
        sigma = check_real("sigma", sigma, low=0, low_open=True, where="SpectralDensity.density")
        z = (grid[:, None] - nodes[None, :]) / sigma
        kern = np.exp(-0.5 * z**2) / (sigma * np.sqrt(2 * np.pi))
        return (kern @ weights) / self.nodes.shape[0]

    def moment(self, p: int) -> float:
        """Estimated ``trace(H**p) / n``: ``mean_l sum_i w[l, i] theta[l, i]**p``."""
        ok = np.isfinite(self.nodes)
        th = np.where(ok, self.nodes, 0.0)
        return float(np.mean(np.sum(self.weights * th**p, axis=1)))


def spectral_density(
    op: HessianOperator | Any,
    *,
    n_iter: int = 80,
    n_runs: int = 1,
    seed: int = 0,
    progress: bool = True,
) -> SpectralDensity:
    """Eigenvalue density of the Hessian by stochastic Lanczos quadrature.

    Parameters
    ----------
    op : HessianOperator or object with ``n`` and ``matvec``
    n_iter : int
        Lanczos steps per run (``m``; capped at ``n``).
    n_runs : int
        Independent Rademacher starting vectors.
    seed : int
        Seeds the starting vectors.
    progress : bool
        Show a tqdm bar over the runs.

    Returns
    -------
    SpectralDensity
        Weights are the squared first components of the Lanczos (Ritz) eigenvectors, one row per
        run; each row sums to 1.
    """
    where = "spectral_density"
    n_iter = check_int("n_iter", n_iter, 1, None, where=where)
    n_runs = check_int("n_runs", n_runs, 1, None, where=where)
    rng = np.random.default_rng(seed)
    n = int(op.n)
    m = min(n_iter, n)
    nodes = np.full((n_runs, m), np.nan)
    weights = np.zeros((n_runs, m))
    start = _count(op)
    for r in tqdm(range(n_runs), desc="SLQ", disable=not progress, leave=False):
        v0 = rng.integers(0, 2, size=n).astype(np.float64) * 2.0 - 1.0
        theta, w = lanczos_quadrature(op, v0, n_iter=m)
        nodes[r, : theta.size] = theta
        weights[r, : theta.size] = w
    return SpectralDensity(nodes=nodes, weights=weights, n_hvp=_count(op) - start)
