"""Hessian routines against closed forms: linear least squares has H = 2/n X^T X."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from sampletopo._errors import SampletopoError
from sampletopo.hessian import (
    TraceNotConvergedWarning,
    hessian_operator,
    hutchinson_trace,
    lanczos_quadrature,
    spectral_density,
    top_eigenpairs,
)

torch.set_num_threads(1)


def least_squares(n: int = 40, d: int = 8, *, seed: int = 0, bias: bool = True):
    g = torch.Generator().manual_seed(seed)
    scales = torch.linspace(0.3, 3.0, d, dtype=torch.float64)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) * scales
    y = torch.randn(n, 1, generator=g, dtype=torch.float64)
    torch.manual_seed(seed)
    model = nn.Linear(d, 1, bias=bias).double()
    xa = torch.cat([x, torch.ones(n, 1, dtype=torch.float64)], 1) if bias else x
    h = 2.0 / n * (xa.T @ xa).numpy()
    return model, x, y, h


def test_dense_operator_equals_closed_form():
    model, x, y, h = least_squares()
    op = hessian_operator(model, F.mse_loss, x, y)
    assert op.n == 9
    np.testing.assert_allclose(op.dense(), h, atol=1e-12)
    assert op.n_hvp == 9


def test_batched_operator_equals_full_batch():
    model, x, y, h = least_squares(n=37)
    op = hessian_operator(model, F.mse_loss, x, y, batch_size=10)
    v = np.random.default_rng(1).standard_normal(op.n)
    np.testing.assert_allclose(op.matvec(v), h @ v, atol=1e-12)


def test_frozen_parameters_are_constants():
    model, x, y, _ = least_squares()
    model.bias.requires_grad_(False)
    op = hessian_operator(model, F.mse_loss, x, y)
    assert op.n == 8
    assert op.names == ("weight",)
    h = 2.0 / x.shape[0] * (x.T @ x).numpy()
    np.testing.assert_allclose(op.dense(), h, atol=1e-12)
    e = top_eigenpairs(op, k=2)
    np.testing.assert_allclose(e.eigenvalues, np.linalg.eigvalsh(h)[::-1][:2], rtol=1e-8)


def test_no_trainable_parameters_is_an_error():
    model, x, y, _ = least_squares()
    model.requires_grad_(False)
    with pytest.raises(SampletopoError, match="no trainable parameters"):
        hessian_operator(model, F.mse_loss, x, y)


def test_lanczos_and_power_agree_with_closed_form_and_lanczos_uses_fewer_hvps():
    model, x, y, h = least_squares(n=200, d=60, seed=3, bias=False)
    op = hessian_operator(model, F.mse_loss, x, y)
    w, u = np.linalg.eigh(h)
    w, u = w[::-1], u[:, ::-1]
    lz = top_eigenpairs(op, k=3, method="lanczos", tol=1e-6, seed=0)
    pw = top_eigenpairs(op, k=3, method="power", tol=1e-6, seed=0)
    np.testing.assert_allclose(lz.eigenvalues, w[:3], rtol=1e-6)
    np.testing.assert_allclose(pw.eigenvalues, lz.eigenvalues, rtol=1e-2)
    # Eigenvectors: unit norm and aligned with the exact ones.
    np.testing.assert_allclose(np.linalg.norm(lz.eigenvectors, axis=0), 1.0, rtol=1e-10)
    assert np.all(np.abs(np.sum(lz.eigenvectors * u[:, :3], axis=0)) > 1 - 1e-6)
    assert lz.n_hvp < pw.n_hvp
    assert lz.n_hvp > 0 and pw.n_hvp > 0


def test_eigenpairs_are_deterministic_under_seed():
    model, x, y, _ = least_squares(n=60, d=20, seed=2)
    op = hessian_operator(model, F.mse_loss, x, y)
    a = top_eigenpairs(op, k=2, method="power", seed=7)
    b = top_eigenpairs(op, k=2, method="power", seed=7)
    np.testing.assert_array_equal(a.eigenvalues, b.eigenvalues)
    np.testing.assert_array_equal(a.eigenvectors, b.eigenvectors)


def test_lanczos_k_must_be_below_n():
    model, x, y, _ = least_squares(d=3, bias=False)
    op = hessian_operator(model, F.mse_loss, x, y)
    with pytest.raises(SampletopoError, match="'k'"):
        top_eigenpairs(op, k=3, method="lanczos")
    with pytest.raises(SampletopoError, match="'method'"):
        top_eigenpairs(op, k=1, method="arnoldi")  # type: ignore[arg-type]


def test_hutchinson_is_exact_for_a_diagonal_hessian():
    # Orthogonal design columns make X^T X diagonal; Rademacher z^T D z = trace(D) every time.
    n, d = 16, 4
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((n, d)))
    x = torch.from_numpy(q * np.array([1.0, 2.0, 3.0, 4.0]))
    y = torch.zeros(n, 1, dtype=torch.float64)
    model = nn.Linear(d, 1, bias=False).double()
    op = hessian_operator(model, F.mse_loss, x, y)
    t = hutchinson_trace(op, min_samples=5, progress=False)
    assert t.n_samples == 5
    assert t.converged
    assert t.value == pytest.approx(2.0 / n * (1 + 4 + 9 + 16), rel=1e-12)
    assert t.stderr == pytest.approx(0.0, abs=1e-12)


def test_hutchinson_stopping_rule_and_accuracy():
    model, x, y, h = least_squares(n=80, d=30, seed=1)
    op = hessian_operator(model, F.mse_loss, x, y)
    t = hutchinson_trace(op, rtol=0.02, seed=4, progress=False)
    assert t.converged
    assert t.relative_stderr <= 0.02
    # The rule stops at the first sample count meeting it: one sample fewer did not.
    s = t.samples[:-1]
    if s.size >= 10:
        assert s.std(ddof=1) / np.sqrt(s.size) > 0.02 * abs(s.mean())
    assert abs(t.value - np.trace(h)) < 5 * t.stderr
    assert op.n_hvp == t.n_samples
    again = hutchinson_trace(op, rtol=0.02, seed=4, progress=False)
    assert again.value == t.value
    other = hutchinson_trace(op, rtol=0.02, seed=5, progress=False)
    assert other.value != t.value


class Quadratic(nn.Module):
    """``loss = 1/2 w^T A w`` whatever the data: the Hessian is ``A`` exactly."""

    def __init__(self, a: np.ndarray) -> None:
        super().__init__()
        self.a = torch.from_numpy(a)
        self.w = nn.Parameter(torch.ones(a.shape[0], dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w.expand(x.shape[0], -1)


def quadratic_operator(a: np.ndarray):
    model = Quadratic(a)

    def loss_fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.einsum("bi,ij,bj->b", out, model.a, out).mean()

    x = torch.zeros(4, 1, dtype=torch.float64)
    return hessian_operator(model, loss_fn, x, torch.zeros(4, dtype=torch.float64))


def rotated(eigenvalues: list[float], seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((len(eigenvalues),) * 2))
    return q @ np.diag(eigenvalues) @ q.T


def test_hutchinson_converged_flag_and_warning_on_a_closed_form_hessian():
    """The issue: the trace can use its whole budget without reaching rtol; the result and a
    warning must say so. Hessians here are exact (1/2 w^T A w), so the trace is known."""
    a = rotated([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], seed=0)
    op = quadratic_operator(a)
    np.testing.assert_allclose(op.dense(), a, atol=1e-12)
    op.reset_count()
    # Converges: 21 = trace(A); one probe has variance 2 (|A|_F^2 - sum A_ii^2).
    var = 2 * (np.sum(a**2) - np.sum(np.diag(a) ** 2))
    expected_probes = var / (0.05 * 21.0) ** 2
    with warnings.catch_warnings():
        warnings.simplefilter("error", TraceNotConvergedWarning)
        ok = hutchinson_trace(op, rtol=0.05, seed=0, progress=False)
    assert ok.converged and ok.rtol == 0.05 and ok.relative_stderr <= 0.05
    assert 0.3 * expected_probes < ok.n_samples < 3 * expected_probes
    assert abs(ok.value - 21.0) < 4 * ok.stderr
    assert "converged" in ok.summary() and "NOT" not in ok.summary()
    # The same Hessian with a budget too small for the tolerance: all probes spent, flagged.
    with pytest.warns(TraceNotConvergedWarning, match=r"max_samples=10 .*rtol=0.001"):
        short = hutchinson_trace(op, rtol=1e-3, max_samples=10, seed=0, progress=False)
    assert not short.converged and short.n_samples == 10 and short.relative_stderr > 1e-3
    assert abs(short.value - 21.0) < 4 * short.stderr  # still the mean of the probes
    assert "NOT converged" in short.summary()
    # trace(H) = 0 (eigenvalues cancel, as near a saddle): no budget reaches a relative
    # tolerance, at the default rtol=1e-2 the default 1,000 products are all spent.
    zero = quadratic_operator(rotated([3.0, -1.0, 2.0, -4.0, 1.0, -1.0], seed=1))
    with pytest.warns(TraceNotConvergedWarning, match="max_samples=1000"):
        t0 = hutchinson_trace(zero, seed=0, progress=False)
    assert not t0.converged and t0.n_samples == 1000 and zero.n_hvp == 1000
    assert abs(t0.value) < 4 * t0.stderr


def test_slq_weights_are_squared_first_components():
    model, x, y, h = least_squares(n=50, d=10, seed=5)
    op = hessian_operator(model, F.mse_loss, x, y)
    w, u = np.linalg.eigh(h)
    v0 = np.random.default_rng(0).choice([-1.0, 1.0], size=op.n)
    # Full Lanczos (m = n): nodes are the exact eigenvalues and the weights the squared
    # projections of the unit start vector on the eigenvectors.
    nodes, weights = lanczos_quadrature(op, v0, n_iter=op.n)
    np.testing.assert_allclose(nodes, w, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(weights, (u.T @ (v0 / np.linalg.norm(v0))) ** 2, atol=1e-8)
    # Gauss quadrature with m = 3 is exact for moments up to 5.
    q = v0 / np.linalg.norm(v0)
    nodes3, weights3 = lanczos_quadrature(op, v0, n_iter=3)
    assert weights3.sum() == pytest.approx(1.0, abs=1e-12)
    for p in range(6):
        assert np.sum(weights3 * nodes3**p) == pytest.approx(
            q @ np.linalg.matrix_power(h, p) @ q, rel=1e-8
        )


def test_spectral_density_moments_and_normalisation():
    model, x, y, h = least_squares(n=60, d=20, seed=6)
    op = hessian_operator(model, F.mse_loss, x, y)
    sd = spectral_density(op, n_iter=8, n_runs=30, seed=0, progress=False)
    assert sd.nodes.shape == (30, 8)
    np.testing.assert_allclose(sd.weights.sum(axis=1), 1.0, atol=1e-12)
    assert sd.n_hvp == 30 * 8
    # Every run estimates trace(H)/n without bias; 30 runs land within a few percent.
    assert sd.moment(1) == pytest.approx(np.trace(h) / op.n, rel=0.1)
    assert sd.moment(2) == pytest.approx(np.trace(h @ h) / op.n, rel=0.2)
    grid = np.linspace(sd.nodes.min() - 1, sd.nodes.max() + 1, 4001)
    dens = sd.density(grid)
    assert np.trapezoid(dens, grid) == pytest.approx(1.0, abs=1e-3)


class SmallBNNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.tanh(self.bn(self.conv(x))).flatten(1))


def test_batchnorm_model_runs_in_eval_mode_and_matches_autograd():
    torch.manual_seed(0)
    model = SmallBNNet().double()
    x = torch.randn(12, 1, 4, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (12,))
    # Give BN non-trivial running statistics, then leave the model in train mode.
    with torch.no_grad():
        model(x * 2 + 1)
    model.fc.bias.requires_grad_(False)
    stats = model.bn.running_mean.clone()
    assert model.training
    op = hessian_operator(model, F.cross_entropy, x, y)
    dense = op.dense()
    assert model.training  # mode restored
    assert torch.equal(model.bn.running_mean, stats)  # eval mode: stats untouched
    np.testing.assert_allclose(dense, dense.T, atol=1e-10)

    # Oracle: autograd's dense Hessian of the eval-mode loss over the same flat layout.
    model.eval()
    names = op.names
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    flat0 = torch.from_numpy(op.parameters_vector())

    def loss_of(flat: torch.Tensor) -> torch.Tensor:
        params = dict(base)
        start = 0
        for name, shape, k in zip(names, op.shapes, op.numels, strict=True):
            params[name] = flat[start : start + k].reshape(shape)
            start += k
        out = torch.func.functional_call(model, params, (x,))
        return F.cross_entropy(out, y)

    ref = torch.autograd.functional.hessian(loss_of, flat0).numpy()
    np.testing.assert_allclose(dense, ref, atol=1e-9)
    assert op.n == sum(p.numel() for p in model.parameters()) - 3


def test_one_parameter_hessian_is_exact_not_an_arpack_error():
    torch.manual_seed(0)
    x = torch.randn(20, 1, dtype=torch.float64)
    y = torch.randn(20, 1, dtype=torch.float64)
    model = torch.nn.Linear(1, 1, bias=False).double()
    pairs = top_eigenpairs(hessian_operator(model, F.mse_loss, x, y), k=1)
    # mse of w*x: Hessian is 2 * mean(x^2)
    np.testing.assert_allclose(pairs.eigenvalues, [float(2 * (x**2).mean())], rtol=1e-10)
