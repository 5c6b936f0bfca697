"""Hessian-vector products used by Lanczos vs power iteration (with deflation) for top-k eigenvalues.

Both methods are run with a ladder of tolerances; for each, the first run whose k eigenvalues are
all within 1% of the reference (ARPACK at tol 1e-10) is reported with the HVPs it used. Prints
counts and ratios; asserts nothing.

Run: ``.venv/bin/python benchmarks/bench_hessian.py``
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from sampletopo.hessian import hessian_operator, hutchinson_trace, top_eigenpairs

TOLS = [3e-1, 1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 1e-5]


def trained_mlp(seed: int = 0):
    torch.manual_seed(seed)
    x = torch.randn(400, 20)
    y = (x[:, 0] + 0.5 * x[:, 1] ** 2 > 0.5).long() + (x[:, 2] > 1).long()
    model = nn.Sequential(
        nn.Linear(20, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 3)
    )
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(300):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.double(), x.double(), y


def first_within(op, ref: np.ndarray, k: int, method: str, rel: float = 0.01):
    for tol in TOLS:
        op.reset_count()
        e = top_eigenpairs(op, k=k, method=method, tol=tol, max_iter=5000, seed=1)
        err = float(np.max(np.abs(e.eigenvalues - ref) / np.abs(ref)))
        if err <= rel:
            return tol, e.n_hvp, err
    return None, None, None


def main() -> None:
    torch.set_num_threads(1)
    model, x, y = trained_mlp()
    op = hessian_operator(model, F.cross_entropy, x, y)
    print(f"== top-k Hessian eigenvalues, MLP with {op.n} parameters, 400 samples ==")
    t = time.perf_counter()
    ref = top_eigenpairs(op, k=10, tol=1e-10, max_iter=10000).eigenvalues
    t_hvp = (time.perf_counter() - t) / max(op.n_hvp, 1)
    print(f"reference top-10: {np.array2string(ref, precision=4)}  ({t_hvp * 1e3:.1f} ms / HVP)")
    for k in (1, 3, 5, 10):
        lt, lh, le = first_within(op, ref[:k], k, "lanczos")
        pt, ph, pe = first_within(op, ref[:k], k, "power")
        ratio = f"{ph / lh:.1f}x" if lh and ph else "n/a"
        print(
            f"k={k:2d}: Lanczos {lh} HVPs (tol {lt}, err {le:.1e})   power+deflation {ph} HVPs "
            f"(tol {pt}, err {pe:.1e})   power / Lanczos = {ratio}"
        )
    op.reset_count()
    tr = hutchinson_trace(op, rtol=0.01, max_samples=2000, seed=0, progress=False)
    exact = float(np.trace(op.dense())) if op.n <= 5000 else float("nan")
    print(
        f"Hutchinson trace: {tr.value:.4f} +- {tr.stderr:.4f} after {tr.n_samples} probes "
        f"(converged {tr.converged}); exact {exact:.4f}"
    )


if __name__ == "__main__":
    main()
