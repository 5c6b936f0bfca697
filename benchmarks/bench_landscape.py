"""Benchmarks of the landscape code; they print times and ratios and assert nothing.

1. Merge tree of a 41x41 grid: our core (``grid_graph`` + ``join_tree`` through
   ``landscape_metrics``) against Landscaper 1.3.1 (``LossLandscape.get_sublevel_tree``), on the
   same function, with both minima/saddle counts and both SMAD values. Landscaper pins numpy < 2,
   so it runs in its own virtual environment in a subprocess::

       python3 -m venv /tmp/lsvenv && /tmp/lsvenv/bin/pip install landscaper==1.3.1

   (override the interpreter with ``LANDSCAPER_PYTHON``). Landscaper's package ``__init__``
   imports torch for its Hessian module although the merge-tree code never uses it; instead of
   installing a second torch, the subprocess puts an inert stand-in module named ``torch`` in
   ``sys.modules`` before importing it. Only Landscaper's own merge-tree / SMAD code is timed.
2. Grid evaluation: batched (vmap over grid points) vs one point at a time, for an MLP and a
   small CNN, against a Li et al.-style loop (weights copied in place, data in batches of 128).
3. The whole grid on a CIFAR-10 folder the way loss-landscape (Li et al.) runs it -- torchvision's
   ``CIFAR10`` dataset with ``ToTensor`` + ``Normalize`` and a ``DataLoader`` (batch 128, no
   worker processes) iterated again at every grid point, weights copied in place -- against
   ``sampletopo`` (the split decoded and standardized once by ``load_dataset``, then
   ``evaluate_grid``). The folder is written in CIFAR-10's exact python-pickle format with random
   pixels; torchvision's MD5 check of the files is switched off for it (the files are not the
   real ones), nothing else of its loading code is changed.

Run: ``.venv/bin/python benchmarks/bench_landscape.py``
"""

# ruff: noqa: B023  (the timing lambdas are called at once, inside the loop iteration)
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import torch
from torch.nn import functional as F

from sampletopo.landscape import evaluate_grid, landscape_metrics, random_directions

LANDSCAPER_SCRIPT = textwrap.dedent(
    """
    import json, sys, time, types

    class _Any:
        def __getattr__(self, name):
            return _Any()
        def __call__(self, *a, **k):
            return _Any()
        def __getitem__(self, k):
            return _Any()
        def __or__(self, o):
            return _Any()
        __ror__ = __or__

    class _Stub(types.ModuleType):
        def __getattr__(self, name):
            return type(name, (), {}) if name[:1].isupper() else _Any()

    sys.modules["torch"] = _Stub("torch")  # never used by the merge-tree code path
    import numpy as np
    import landscaper
    from landscaper import LossLandscape

    data = np.load(sys.argv[1])
    loss, x = data["loss"], data["x"]
    t = time.perf_counter()
    ll = LossLandscape(loss, [x, x])
    mt = ll.get_sublevel_tree()
    t_tree = time.perf_counter() - t
    t = time.perf_counter()
    smad = float(ll.smad())
    t_smad = time.perf_counter() - t
    from importlib.metadata import version
    print(json.dumps({"version": version("landscaper"), "t_tree": t_tree,
                      "minima": len(mt.leaves), "saddles": len(mt.branches),
                      "smad": smad, "t_smad": t_smad}))
    """
)


def test_function(n: int = 41) -> tuple[np.ndarray, np.ndarray]:
    x = np.linspace(-3.0, 3.0, n)
    xx, yy = np.meshgrid(x, x, indexing="ij")
    return np.sin(2 * xx) * np.cos(2 * yy) + 0.05 * (xx**2 + yy**2), x


def bench_merge_tree() -> None:
    print("== merge tree of a 41x41 grid ==")
    loss, x = test_function()
    landscape_metrics(loss, connectivity="axis")  # compile the sweep once
    reps = 20
    t = time.perf_counter()
    for _ in range(reps):
        ours = landscape_metrics(loss, connectivity="axis")
    t_ours = (time.perf_counter() - t) / reps
    fr = landscape_metrics(loss, connectivity="freudenthal")
    print(
        f"sampletopo (axis grid graph): {t_ours * 1e3:.2f} ms  minima {ours.n_minima}  "
        f"saddles {ours.n_saddles}  SMAD {ours.smad:.6f}"
    )
    print(
        f"sampletopo (Freudenthal):     minima {fr.n_minima}  saddles {fr.n_saddles}  "
        f"SMAD {fr.smad:.6f}"
    )
    py = os.environ.get("LANDSCAPER_PYTHON", "/tmp/lsvenv/bin/python")
    if not os.path.exists(py):
        print(
            f"Landscaper: not run -- no interpreter at {py}. Install it with: python3 -m venv "
            "/tmp/lsvenv && /tmp/lsvenv/bin/pip install landscaper==1.3.1"
        )
        return
    tmp = "/tmp/_bench_landscape_grid.npz"
    np.savez(tmp, loss=loss, x=x)
    proc = subprocess.run(
        [py, "-c", LANDSCAPER_SCRIPT, tmp], capture_output=True, text=True, timeout=900
    )
    if proc.returncode != 0:
        print(f"Landscaper: failed to run ({proc.stderr.strip().splitlines()[-1:]})")
        return
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    print(
        f"Landscaper {res['version']}: {res['t_tree']:.2f} s  minima {res['minima']}  "
        f"saddles {res['saddles']}  SMAD {res['smad']:.6f} (its SMAD took {res['t_smad']:.1f} s)"
    )
    same = (res["minima"], res["saddles"]) == (ours.n_minima, ours.n_saddles)
    print(
        f"ratio (Landscaper / sampletopo, merge tree): {res['t_tree'] / t_ours:,.0f}x  "
        f"same minima and saddles: {same}"
    )


def naive_loop(model, x, y, d, coords, batch: int = 128) -> np.ndarray:
    """Li et al.-style: copy each grid point's weights into the model, loop over data batches."""
    params = [p for n, p in model.named_parameters() if n in d.names]
    theta = [p.detach().clone() for p in params]
    dirs = d.tensors()
    out = np.zeros((len(coords), len(coords)))
    with torch.no_grad():
        for i, a in enumerate(coords):
            for j, b in enumerate(coords):
                for p, t0, name in zip(params, theta, d.names, strict=True):
                    p.copy_(t0 + a * dirs[name][0] + b * dirs[name][1])
                tot = 0.0
                for s in range(0, x.shape[0], batch):
                    xb, yb = x[s : s + batch], y[s : s + batch]
                    tot += F.cross_entropy(model(xb), yb).item() * xb.shape[0]
                out[i, j] = tot / x.shape[0]
        for p, t0 in zip(params, theta, strict=True):
            p.copy_(t0)
    return out


def bench_grid() -> None:
    from sampletopo.models import create_model

    print("== grid evaluation (CPU, 1 thread, 512 samples) ==")
    torch.manual_seed(0)
    x = torch.randn(512, 1, 8, 8)
    y = torch.randint(0, 10, (512,))
    cases = [
        ("mlp 64-128-128-10", create_model("mlp", in_channels=1, input_size=8), 21),
        ("cnn width 8", create_model("cnn", in_channels=1, input_size=8, width=8), 9),
    ]
    for name, model, steps in cases:
        model.eval()
        d = random_directions(model, dim=2, seed=0)
        kw = dict(steps=steps, distance=1.0, progress=False)
        evaluate_grid(model, F.cross_entropy, x, y, d, steps=2, progress=False)  # warm-up

        def best(fn):  # the machine is shared: take the fastest of 3 runs
            times, out = [], None
            for _ in range(3):
                t = time.perf_counter()
                out = fn()
                times.append(time.perf_counter() - t)
            return min(times), out

        t_auto, auto = best(lambda: evaluate_grid(model, F.cross_entropy, x, y, d, **kw))
        t_vmap, batched = best(
            lambda: evaluate_grid(model, F.cross_entropy, x, y, d, points_per_batch=32, **kw)
        )
        t_one, single = best(
            lambda: evaluate_grid(model, F.cross_entropy, x, y, d, points_per_batch=1, **kw)
        )
        t_naive, naive = best(lambda: naive_loop(model, x, y, d, auto.coords[0]))
        diff = max(
            float(np.abs(batched.loss - single.loss).max()),
            float(np.abs(naive - auto.loss).max()),
        )
        print(
            f"{name}: {steps}x{steps} grid  default {t_auto:.2f} s  vmap(32) {t_vmap:.2f} s  "
            f"one-point functional {t_one:.2f} s  naive in-place loop {t_naive:.2f} s  "
            f"(max |diff| {diff:.1e})"
        )
        print(
            f"   ratios: naive / default {t_naive / t_auto:.1f}x   one-point / vmap(32) "
            f"{t_one / t_vmap:.1f}x"
        )


def _write_cifar_folder(root: str, n_train: int, seed: int = 0) -> None:
    import pickle

    rng = np.random.default_rng(seed)
    base = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(base, exist_ok=True)
    per = n_train // 5

    def dump(name: str, n: int) -> None:
        obj = {
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "labels": [int(v) for v in rng.integers(0, 10, n)],
        }
        with open(os.path.join(base, name), "wb") as fh:
            pickle.dump(obj, fh, protocol=2)

    for i in range(1, 6):
        dump(f"data_batch_{i}", per)
    dump("test_batch", 100)
    with open(os.path.join(base, "batches.meta"), "wb") as fh:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, fh, protocol=2)


def bench_peer(n_train: int = 2000, steps: int = 5) -> None:
    import tempfile

    import torchvision
    from torch.utils.data import DataLoader
    from torchvision import transforms

    from sampletopo.data import load_dataset
    from sampletopo.models import create_model

    print(f"== a {steps}x{steps} grid on a CIFAR-10 folder of {n_train} images (CPU, 1 thread) ==")
    root = tempfile.mkdtemp(prefix="bench_cifar_")
    _write_cifar_folder(root, n_train)

    import torchvision.datasets.cifar as tv_cifar

    tv_cifar.check_integrity = lambda *a, **k: True  # random files: no MD5 check, nothing else
    Cifar = torchvision.datasets.CIFAR10

    for name, kwargs in [
        ("cnn width 16", {"width": 16}),
        ("resnet-8 width 8", {"depth": 8, "width": 8}),
    ]:
        torch.manual_seed(0)
        model = create_model(
            name.split()[0].replace("-8", ""), in_channels=3, input_size=32, **kwargs
        )
        model.eval()
        d = random_directions(model, dim=2, seed=0)

        t = time.perf_counter()
        ds = load_dataset("cifar10", root=root)
        x, y = ds.tensors("train")
        ours = evaluate_grid(
            model, F.cross_entropy, x, y, d, steps=steps, distance=1.0, progress=False
        )
        t_ours = time.perf_counter() - t

        mean, std = ds._channel_stats()  # the same standardization in both
        tf = transforms.Compose(
            [transforms.ToTensor(), transforms.Normalize(mean.tolist(), std.tolist())]
        )
        t = time.perf_counter()
        loader = DataLoader(Cifar(root, train=True, transform=tf), batch_size=128, shuffle=False)
        params = [p for n, p in model.named_parameters() if n in d.names]
        theta = [p.detach().clone() for p in params]
        dirs = d.tensors()
        peer = np.zeros((steps, steps))
        with torch.no_grad():
            for i, a in enumerate(ours.coords[0]):
                for j, b in enumerate(ours.coords[1]):
                    for p, t0, n in zip(params, theta, d.names, strict=True):
                        p.copy_(t0 + a * dirs[n][0] + b * dirs[n][1])
                    tot, cnt = 0.0, 0
                    for xb, yb in loader:
                        tot += F.cross_entropy(model(xb), yb).item() * xb.shape[0]
                        cnt += xb.shape[0]
                    peer[i, j] = tot / cnt
            for p, t0 in zip(params, theta, strict=True):
                p.copy_(t0)
        t_peer = time.perf_counter() - t
        print(
            f"{name}: loss-landscape-style loop {t_peer:.1f} s  sampletopo {t_ours:.1f} s  "
            f"ratio {t_peer / t_ours:.1f}x  (max |diff| {np.abs(peer - ours.loss).max():.1e})"
        )


if __name__ == "__main__":
    torch.set_num_threads(1)
    which = sys.argv[1:] or ["tree", "grid", "peer"]
    if "tree" in which:
        bench_merge_tree()
    if "grid" in which:
        bench_grid()
    if "peer" in which:
        bench_peer()
