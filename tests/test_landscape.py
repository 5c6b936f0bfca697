"""Directions, grid evaluation, grid merge-tree metrics and profiles, against closed forms."""

from __future__ import annotations

import re
import warnings

import gudhi
import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import sampletopo as st
from sampletopo._errors import SampletopoError
from sampletopo.graph import grid_graph
from sampletopo.hessian import TraceNotConvergedWarning, hessian_operator, top_eigenpairs
from sampletopo.landscape import (
    Directions,
    Landscape,
    NonFiniteLandscapeWarning,
    evaluate_grid,
    hessian_directions,
    landscape_metrics,
    landscape_profile,
    random_directions,
    read_landscape,
)

torch.set_num_threads(1)


class ConvBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 2 * 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def conv_model() -> ConvBN:
    torch.manual_seed(0)
    m = ConvBN()
    with torch.no_grad():
        m.bn.weight.uniform_(0.5, 2.0)
        m.bn.bias.uniform_(-1, 1)
    return m


# --- directions --------------------------------------------------------------------------------


def test_filter_normalization_matches_weight_filter_norms():
    model = conv_model()
    d = random_directions(model, dim=2, seed=3)
    assert d.vectors.shape == (2, sum(p.numel() for p in model.parameters()))
    params = dict(model.named_parameters())
    for k in range(2):
        tens = d.tensors(dtype=torch.float64)
        for name, t in tens.items():
            w = params[name].detach().double()
            if w.dim() >= 2:
                got = t[k].reshape(w.shape[0], -1).norm(dim=1)
                want = w.reshape(w.shape[0], -1).norm(dim=1)
                torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
            else:  # biases and BatchNorm: zeroed by default
                assert torch.count_nonzero(t[k]) == 0


def test_include_bias_bn_scales_whole_tensor():
    model = conv_model()
    d = random_directions(model, dim=1, seed=0, include_bias_bn=True)
    tens = d.tensors(dtype=torch.float64)
    for name, p in model.named_parameters():
        if p.dim() <= 1:
            assert tens[name][0].norm().item() == pytest.approx(p.detach().double().norm().item())


def test_random_directions_are_seeded():
    model = conv_model()
    a = random_directions(model, dim=2, seed=11)
    b = random_directions(model, dim=2, seed=11)
    c = random_directions(model, dim=2, seed=12)
    np.testing.assert_array_equal(a.vectors, b.vectors)
    assert not np.allclose(a.vectors, c.vectors)


def test_orthogonal_directions_are_orthogonal_and_keep_norms():
    model = conv_model()
    plain = random_directions(model, dim=4, seed=5)
    ortho = random_directions(model, dim=4, seed=5, orthogonal=True)
    gram = ortho.vectors @ ortho.vectors.T
    norms = np.sqrt(np.diag(gram))
    off = gram / np.outer(norms, norms) - np.eye(4)
    assert np.abs(off).max() < 1e-12
    # Without orthogonalisation they are not orthogonal (so the test above can fail).
    pg = plain.vectors @ plain.vectors.T
    assert np.abs(pg[0, 1]) / np.sqrt(pg[0, 0] * pg[1, 1]) > 1e-3
    # First direction untouched; every direction keeps its total norm.
    np.testing.assert_array_equal(ortho.vectors[0], plain.vectors[0])
    np.testing.assert_allclose(norms, np.linalg.norm(plain.vectors, axis=1), rtol=1e-12)


def test_frozen_parameters_get_no_direction():
    model = conv_model()
    model.conv.requires_grad_(False)
    d = random_directions(model, dim=1, seed=0)
    assert "conv.weight" not in d.names and "conv.bias" not in d.names
    assert d.n == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_direction_errors():
    model = conv_model()
    with pytest.raises(SampletopoError, match="'dim'"):
        random_directions(model, dim=0)
    # Only the weights of conv (4*2*3*3=72) and fc (3*16=48) can be non-zero.
    with pytest.raises(SampletopoError, match="at most 120"):
        random_directions(model, dim=121, orthogonal=True)
    frozen = conv_model().requires_grad_(False)
    with pytest.raises(SampletopoError, match="no trainable parameters"):
        random_directions(frozen, dim=1)
    d = random_directions(model, dim=2)
    other = conv_model()
    other.fc = nn.Linear(16, 5)
    with pytest.raises(SampletopoError, match="'fc.weight'"):
        d.check(other)
    model.conv.requires_grad_(False)
    with pytest.raises(SampletopoError, match="do not fit"):
        evaluate_grid(model, F.cross_entropy, torch.zeros(2, 2, 4, 4), torch.zeros(2).long(), d)


# --- grid evaluation on linear least squares ----------------------------------------------------


def least_squares(n: int = 30, dim: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g, dtype=torch.float64)
    y = torch.randn(n, 1, generator=g, dtype=torch.float64)
    torch.manual_seed(seed)
    model = nn.Linear(dim, 1, bias=False).double()
    return model, x, y


def closed_form_loss(model, x, y, directions, a, b):
    w = model.weight.detach().reshape(-1).numpy()
    v = w + a * directions.vectors[0] + b * directions.vectors[1]
    r = x.numpy() @ v - y.numpy()[:, 0]
    return float(np.mean(r**2))


def test_grid_equals_closed_form_with_true_axes():
    model, x, y = least_squares()
    d = random_directions(model, dim=2, seed=1, normalization="none")
    land = evaluate_grid(model, F.mse_loss, x, y, d, steps=5, distance=2.0, progress=False)
    assert land.shape == (5, 5)
    np.testing.assert_allclose(land.coords[0], [-2, -1, 0, 1, 2])
    for i, a in enumerate(land.coords[0]):
        for j, b in enumerate(land.coords[1]):
            assert land.loss[i, j] == pytest.approx(
                closed_form_loss(model, x, y, d, a, b), rel=1e-12
            )
    assert np.isnan(land.accuracy).all()  # regression: no accuracy
    assert land.loss[2, 2] == pytest.approx(F.mse_loss(model(x), y).item(), rel=1e-12)


def test_hessian_directions_and_any_dimension():
    model, x, y = least_squares(dim=5)
    op = hessian_operator(model, F.mse_loss, x, y)
    eig = top_eigenpairs(op, k=3)
    d = hessian_directions(model, eig, dim=3)
    np.testing.assert_allclose(d.vectors @ d.vectors.T, np.eye(3), atol=1e-10)
    np.testing.assert_allclose(d.eigenvalues, eig.eigenvalues)
    land = evaluate_grid(model, F.mse_loss, x, y, d, steps=3, distance=0.5, progress=False)
    assert land.loss.shape == (3, 3, 3)
    # Along eigenvector k, a quadratic loss rises by lambda_k * t^2 / 2 from the centre.
    c = land.loss[1, 1, 1]
    for k in range(3):
        idx = [1, 1, 1]
        idx[k] = 2
        g = op.loss_and_gradient()[1] @ d.vectors[k]
        want = c + g * 0.5 + eig.eigenvalues[k] * 0.25 / 2
        assert land.loss[tuple(idx)] == pytest.approx(want, rel=1e-10)
    with pytest.raises(SampletopoError, match="top_eigenpairs"):
        hessian_directions(model, eig, dim=4)


def test_steps_and_distance_are_checked():
    model, x, y = least_squares()
    d = random_directions(model, dim=2)
    with pytest.raises(SampletopoError, match="'steps'"):
        evaluate_grid(model, F.mse_loss, x, y, d, steps=1)
    with pytest.raises(SampletopoError, match="'distance'"):
        evaluate_grid(model, F.mse_loss, x, y, d, steps=3, distance=float("nan"))


def test_batched_points_equal_one_at_a_time_and_accuracy():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    x = torch.randn(40, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (40,))
    d = random_directions(model, dim=2, seed=2)
    kw = dict(steps=6, distance=1.0, progress=False)
    a = evaluate_grid(model, F.cross_entropy, x, y, d, points_per_batch=7, batch_size=16, **kw)
    b = evaluate_grid(model, F.cross_entropy, x, y, d, points_per_batch=1, **kw)
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-12)
    np.testing.assert_allclose(a.accuracy, b.accuracy, atol=1e-12)
    # Accuracies are multiples of 1/40; at the unperturbed point... the grid has no exact centre
    # (even steps), so check a corner against a direct evaluation instead.
    w = {n: p.detach() for n, p in model.named_parameters()}
    t = d.tensors(dtype=torch.float64)
    corner = {n: w[n] - t[n][0] - t[n][1] for n in w}
    out = torch.func.functional_call(model, corner, (x,))
    assert a.accuracy[0, 0] == pytest.approx((out.argmax(1) == y).double().mean().item())
    assert a.loss[0, 0] == pytest.approx(F.cross_entropy(out, y).item(), rel=1e-12)


class Stop(Exception):
    pass


class CountingLinear(nn.Module):
    def __init__(self, inner: nn.Module, *, fail_after: int | None) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0
        self.fail_after = fail_after

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 1:  # the one-sample probe that sizes batches, not a grid point
            return self.inner(x)
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise Stop("simulated crash")
        return self.inner(x)


def test_grid_resumes_from_side_file(tmp_path):
    base, x, y = least_squares()
    full = evaluate_grid(
        CountingLinear(base, fail_after=None),
        F.mse_loss,
        x,
        y,
        random_directions(CountingLinear(base, fail_after=None), dim=2, seed=0),
        steps=5,
        distance=1.0,
        points_per_batch=1,
        progress=False,
    )
    side = tmp_path / "grid.partial.npz"
    crashing = CountingLinear(base, fail_after=9)
    d = random_directions(crashing, dim=2, seed=0)
    with pytest.raises(Stop):
        evaluate_grid(
            crashing, F.mse_loss, x, y, d, steps=5, points_per_batch=1, checkpoint=side,
            progress=False,
        )  # fmt: skip
    assert side.is_file()
    with np.load(side) as z:
        assert int(z["done"].sum()) == 9
    with pytest.raises(SampletopoError, match="another evaluation"):
        evaluate_grid(
            crashing, F.mse_loss, x, y, d, steps=5, distance=2.0, checkpoint=side, progress=False
        )
    with pytest.raises(SampletopoError, match="another evaluation"):
        evaluate_grid(  # same weights and grid, another loss function: not the same landscape
            crashing, F.l1_loss, x, y, d, steps=5, points_per_batch=1, checkpoint=side,
            progress=False,
        )  # fmt: skip
    crashing.register_buffer("scale", torch.ones(1))  # a buffer changes the model, too
    with pytest.raises(SampletopoError, match="another evaluation"):
        evaluate_grid(
            crashing, F.mse_loss, x, y, d, steps=5, points_per_batch=1, checkpoint=side,
            progress=False,
        )  # fmt: skip
    resumed = CountingLinear(base, fail_after=None)
    land = evaluate_grid(
        resumed, F.mse_loss, x, y, d, steps=5, points_per_batch=1, checkpoint=side, progress=False
    )
    assert resumed.calls == 25 - 9
    np.testing.assert_allclose(land.loss, full.loss, rtol=1e-12)
    assert not side.exists()


def test_resume_file_round_trip_key_and_resumed_grid(tmp_path):
    """The resume file on its own: what is written reads back; a file under another key (another
    loss, distance, batch size or buffer) is refused; a grid resumed from a file holding some of
    the points (not a prefix) equals the uninterrupted grid bit for bit and evaluates only the
    rest."""
    from sampletopo.landscape._grid import GridProgress, ResumeFile

    base, x, y = least_squares()
    model = CountingLinear(base, fail_after=None)
    d = random_directions(model, dim=2, seed=0)
    grid = dict(steps=5, distance=1.0, batch_size=8)
    full = evaluate_grid(model, F.mse_loss, x, y, d, points_per_batch=1, progress=False, **grid)

    # Written and read back: the on-disk arrays are the ones files from before this type had.
    path = tmp_path / "grid.partial.npz"

    def resume_file(*, loss_fn=F.mse_loss, targets=y, **changes) -> ResumeFile:
        kw = {**grid, **changes}
        return ResumeFile.for_grid(
            path, model=model, loss_fn=loss_fn, inputs=x, targets=targets, directions=d, **kw
        )

    rf = resume_file()
    assert rf.read(25) is None  # no file yet
    part = GridProgress.empty(25)
    ids = np.arange(0, 25, 3)  # 9 points, every third
    part.record(ids, full.loss.ravel()[ids], full.accuracy.ravel()[ids])
    rf.write(part)
    with np.load(path) as z:
        assert sorted(z.files) == ["accuracy", "done", "key", "loss"] and str(z["key"]) == rf.key
        assert np.flatnonzero(z["done"]).tolist() == ids.tolist()
    back = rf.read(25)
    assert back is not None and not back.complete
    np.testing.assert_array_equal(back.loss, part.loss)  # NaN where not done
    np.testing.assert_array_equal(back.accuracy, part.accuracy)
    np.testing.assert_array_equal(back.todo(), np.setdiff1d(np.arange(25), ids))

    # The key: the same evaluation gives the same key, anything that changes a value another.
    assert resume_file().key == rf.key
    other_keys = {
        resume_file(loss_fn=F.l1_loss).key,
        resume_file(targets=2 * y).key,
        resume_file(distance=2.0).key,
        resume_file(batch_size=7).key,
    }
    assert len(other_keys) == 4 and rf.key not in other_keys
    with pytest.raises(SampletopoError, match="belongs to another evaluation"):
        ResumeFile(path, key=next(iter(other_keys))).read(25)
    buffered = CountingLinear(base, fail_after=None)
    buffered.register_buffer("scale", torch.ones(1))
    with pytest.raises(SampletopoError, match="belongs to another evaluation"):
        evaluate_grid(buffered, F.mse_loss, x, y, d, checkpoint=path, progress=False, **grid)
    assert path.is_file()  # a refused file is left as it was

    # Resumed: only the 16 missing points are evaluated, and the grid equals the full one.
    resumed = CountingLinear(base, fail_after=None)
    land = evaluate_grid(
        resumed, F.mse_loss, x, y, d, points_per_batch=1, checkpoint=path, progress=False, **grid
    )
    assert resumed.calls == (25 - ids.size) * 4  # 30 samples in batches of 8: 4 per point
    np.testing.assert_array_equal(land.loss, full.loss)
    np.testing.assert_array_equal(land.accuracy, full.accuracy)
    assert not path.exists()
    rf.remove()  # nothing left to remove: no error


def test_non_finite_losses_are_kept_and_reported():
    model, x, y = least_squares()
    d = random_directions(model, dim=2, seed=0, normalization="none")

    def sqrt_mean(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(out.mean())  # NaN wherever the mean output is negative

    with pytest.warns(NonFiniteLandscapeWarning, match="non-finite"):
        land = evaluate_grid(model, sqrt_mean, x, y, d, steps=7, distance=3.0, progress=False)
    w = model.weight.detach().reshape(-1).numpy()
    xm = x.numpy().mean(axis=0)
    for i, a in enumerate(land.coords[0]):
        for j, b in enumerate(land.coords[1]):
            m = xm @ (w + a * d.vectors[0] + b * d.vectors[1])
            if m < 0:
                assert np.isnan(land.loss[i, j])
            else:
                assert land.loss[i, j] == pytest.approx(np.sqrt(m), rel=1e-10)
    bad = int(np.isnan(land.loss).sum())
    assert 0 < bad < 49
    met = landscape_metrics(land)
    assert met.n_nonfinite == bad
    assert met.n_points == 49


def test_save_and_load_round_trip(tmp_path):
    model, x, y = least_squares()
    d = random_directions(model, dim=2, seed=0)
    land = evaluate_grid(model, F.mse_loss, x, y, d, steps=4, progress=False)
    path = land.save(tmp_path / "a.npz", extra={"m": {"smad": 1.5}, "arr": np.arange(3)})
    back, extra = read_landscape(path)
    np.testing.assert_array_equal(back.loss, land.loss)
    np.testing.assert_allclose(back.directions.vectors, d.vectors, rtol=1e-6)
    assert back.directions.names == d.names
    assert extra["m"] == {"smad": 1.5}
    np.testing.assert_array_equal(extra["arr"], np.arange(3))
    assert isinstance(back.directions, Directions)


# --- grid topology -------------------------------------------------------------------------------


def test_metrics_hand_worked_1d():
    # Minima 0 (vertex 3) and 1 (vertex 1) merge at the saddle 2: one finite pair (1, 2).
    m = landscape_metrics(np.array([3.0, 1.0, 2.0, 0.0, 4.0]), connectivity="axis")
    assert (m.n_minima, m.n_saddles) == (2, 1)
    assert m.average_persistence == pytest.approx(1.0)
    assert m.smad == pytest.approx((2.0 + 1.0) / 2)  # both minima to their saddle
    one = landscape_metrics(np.array([0.0, 1.0, 2.0]), connectivity="axis")
    assert (one.n_minima, one.n_saddles, one.smad, one.average_persistence) == (1, 0, 0.0, 0.0)


@pytest.mark.parametrize("connectivity", ["axis", "freudenthal"])
def test_metrics_hand_worked_2d_three_basins(connectivity):
    # Minima 0, 1, 2. The 5 between 0 and 1 merges them (pair (1, 5)); the first 6 merges
    # 0 and 2 (pair (2, 6)). Leaf-to-saddle gaps: 5 - 0, 5 - 1, 6 - 2.
    f = np.array([[0.0, 5.0, 1.0], [6.0, 7.0, 6.0], [2.0, 8.0, 9.0]])
    m = landscape_metrics(f, connectivity=connectivity)
    assert (m.n_minima, m.n_saddles) == (3, 2)
    assert m.average_persistence == pytest.approx(4.0)
    assert m.smad == pytest.approx((5.0 + 4.0 + 4.0) / 3)
    assert (m.loss_min, m.loss_max) == (0.0, 9.0)


# Two 4 x 4 grids on which Landscaper 1.3.1's SMAD pairs a minimum with a split-tree saddle
# (measured: 5.5 and 3.0). Here minima pair with their join saddles only.
TWO_BASINS = np.array([[10, 3, 2, 7], [15, 13, 1, 6], [9, 5, 4, 11], [12, 14, 8, 0]], float)
ONE_BASIN = np.array([[9, 4, 3, 12], [8, 2, 1, 0], [11, 10, 5, 13], [15, 14, 6, 7]], float)


def test_smad_pairs_minima_with_join_saddles_not_split_saddles():
    """The issue: our SMAD is not Landscaper's. On the axis grid the minima 1 and 0 of
    TWO_BASINS merge at 8 (join saddle); on the way up from 1 the superlevel sets meet at 4 (a
    split saddle, Landscaper's partner for 1). ONE_BASIN has no join saddle, but its minimum's
    first critical node above is the split saddle 3 (Landscaper: SMAD 3)."""
    split = st.split_tree(grid_graph((4, 4), connectivity="axis"), TWO_BASINS.ravel())
    split_saddles = TWO_BASINS.ravel()[split.node_vertex[split.node_kind == "saddle"]]
    assert 4.0 in split_saddles and 4.0 < 8.0
    m = landscape_metrics(TWO_BASINS, connectivity="axis")
    assert (m.n_minima, m.n_saddles) == (2, 1)
    assert m.smad == pytest.approx(((8 - 1) + (8 - 0)) / 2)  # not (3 + 8) / 2 = 5.5
    assert st.landscape.smad(
        st.join_tree(grid_graph((4, 4), connectivity="axis"), TWO_BASINS.ravel()), normalize=True
    ) == pytest.approx(((8 - 1) + (8 - 0)) / 2 / 15)
    # Freudenthal's diagonal 0 -- 4 merges the basins lower, at 4.
    assert landscape_metrics(TWO_BASINS).smad == pytest.approx(((4 - 1) + (4 - 0)) / 2)
    split = st.split_tree(grid_graph((4, 4), connectivity="axis"), ONE_BASIN.ravel())
    assert 3.0 in ONE_BASIN.ravel()[split.node_vertex[split.node_kind == "saddle"]]
    for conn in ("axis", "freudenthal"):
        one = landscape_metrics(ONE_BASIN, connectivity=conn)  # type: ignore[arg-type]
        assert (one.n_minima, one.n_saddles, one.smad) == (1, 0, 0.0)


def test_every_metric_result_names_its_grid_graph(tmp_path):
    """The issue: counts depend on the grid graph, so the metrics, their table, the profile
    figure, the CLI summary and the report table all name it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sampletopo.commands.landscape import summary_lines
    from sampletopo.plotting._landscape import plot_landscape_profile
    from sampletopo.report import _landscape_section

    axis = landscape_metrics(TWO_BASINS, connectivity="axis", hessian_trace=2.0)
    table = axis.to_polars()
    assert table.columns[0] == "connectivity" and table["connectivity"].to_list() == ["axis"]
    assert axis.hessian_trace_converged is None
    assert landscape_metrics(TWO_BASINS).to_dict()["connectivity"] == "freudenthal"
    for conn in ("axis", "freudenthal"):
        prof = landscape_profile(TWO_BASINS, connectivity=conn)  # type: ignore[arg-type]
        assert prof.connectivity == conn
        assert f"({conn} grid graph)" in plot_landscape_profile(prof).get_title()
    plt.close("all")
    # A saved landscape: the CLI summary and the report's landscape table.
    land = hand_landscape()
    m = landscape_metrics(
        land, connectivity="axis", hessian_trace=3.0, hessian_trace_converged=False
    )
    trace = {"value": 3.0, "stderr": 0.5, "n_samples": 100, "converged": False, "rtol": 0.05}
    trace["relative_stderr"] = 0.5 / 3.0
    exp = tmp_path / "exp"
    land.save(
        exp / "landscapes" / "run-epoch=0001.npz",
        extra={"metrics": m.to_dict(), "hessian_eigenvalues": np.ones(1), "hessian_trace": trace},
    )
    _, extra = read_landscape(exp / "landscapes" / "run-epoch=0001.npz")
    lines = summary_lines(extra)
    assert lines[0].startswith("merge tree on the axis grid graph: minima 1")
    assert (
        "trace 3 +- 0.5 (NOT converged: relative stderr 0.17 > rtol 0.05 after all 100"
        in (lines[1])
    )
    pngs, rows = _landscape_section(exp, tmp_path / "figs")
    assert len(pngs) >= 4 and rows is not None
    assert rows.columns[:2] == ["landscape", "connectivity"]
    assert rows["connectivity"].to_list() == ["axis"]
    assert rows["hessian_trace_converged"].to_list() == [False]


@pytest.mark.parametrize("shape", [(9, 11), (5, 6, 4)])
def test_grid_merge_tree_matches_gudhi(shape, rng):
    values = rng.random(shape)
    g = grid_graph(shape, connectivity="freudenthal")
    st = gudhi.SimplexTree()
    for v, f in enumerate(values.ravel()):
        st.insert([v], filtration=f)
    for u, v in g.edges:
        st.insert([int(u), int(v)], filtration=max(values.flat[u], values.flat[v]))
    st.compute_persistence(persistence_dim_max=True)
    ref = np.array(sorted(st.persistence_intervals_in_dimension(0).tolist()))
    m = landscape_metrics(values, connectivity="freudenthal")
    finite = ref[np.isfinite(ref[:, 1])]
    finite = finite[finite[:, 1] > finite[:, 0]]
    assert m.n_minima == len(finite) + 1
    assert m.average_persistence == pytest.approx(float(np.mean(finite[:, 1] - finite[:, 0])))
    # Axis connectivity against gudhi's cubical complex on vertex values.
    cc = gudhi.CubicalComplex(vertices=values)
    cc.compute_persistence()
    cref = cc.persistence_intervals_in_dimension(0)
    cfin = cref[np.isfinite(cref[:, 1])]
    cfin = cfin[cfin[:, 1] > cfin[:, 0]]
    ma = landscape_metrics(values, connectivity="axis")
    assert ma.n_minima == len(cfin) + 1
    assert ma.average_persistence == pytest.approx(float(np.mean(cfin[:, 1] - cfin[:, 0])))


def test_profile_hand_worked_1d():
    prof = landscape_profile(np.array([3.0, 1.0, 2.0, 0.0, 4.0]), connectivity="axis")
    kinds = [b.kind for b in prof.basins]
    assert kinds == ["minimum", "minimum", "saddle", "root"]
    b0, b1, b2, b3 = prof.basins
    assert (b0.vertex, b0.top, b0.size, b0.parent) == (3, 2.0, 1, 2)
    assert (b1.vertex, b1.top, b1.size, b1.parent) == (1, 2.0, 1, 2)
    np.testing.assert_array_equal(b2.levels, [2.0, 3.0])
    np.testing.assert_array_equal(b2.widths, [3, 4])
    assert b3.parent == -1 and b3.size == 5
    # The elder basin (minimum 0) sits left of the younger one, both inside the saddle basin.
    assert b0.center < b1.center
    assert b2.center - 1.5 <= b0.center - 0.5 and b1.center + 0.5 <= b2.center + 1.5
    assert [prof.width_at(t) for t in (-1, 0, 1, 2, 3, 4)] == [0, 1, 2, 3, 4, 5]


def test_profile_widths_count_points_below_level_in_3d(rng):
    values = rng.random((6, 5, 4))
    values[0, 0, 0] = np.nan  # left out
    prof = landscape_profile(values)
    finite = np.sort(values[np.isfinite(values)])
    assert prof.n_points == finite.size
    for i in range(0, finite.size, 7):
        assert prof.width_at(finite[i]) == i + 1
    met = landscape_metrics(values)
    assert sum(b.kind == "minimum" for b in prof.basins) == met.n_minima
    for b in prof.basins:
        assert b.widths[-1] == b.size or b.parent < 0
        assert np.all(np.diff(b.levels) >= 0)
        if b.parent >= 0:
            p = prof.basins[b.parent]
            assert b.top == p.levels[0]
            # Nested: a child lies within its parent's base.
            assert p.center - p.widths[0] / 2 - 1e-9 <= b.center - b.size / 2
            assert b.center + b.size / 2 <= p.center + p.widths[0] / 2 + 1e-9


# --- figures -------------------------------------------------------------------------------------


def hand_landscape() -> Landscape:
    # Non-square on purpose: 5 points along direction 1 in [-1, 1], 7 along direction 2 in
    # [-3, 3]; minimum at (0.5, -2.0). Swapped axes would fail the shape or the marker check.
    c1, c2 = np.linspace(-1, 1, 5), np.linspace(-3, 3, 7)
    loss = (c1[:, None] - 0.5) ** 2 + (c2[None, :] + 2.0) ** 2 + 0.1
    d = Directions(
        vectors=np.eye(2, 3),
        names=("w",),
        shapes=((3,),),
        kind="random",
        normalization="filter",
        orthogonal=False,
        include_bias_bn=False,
        seed=0,
    )
    return Landscape((c1, c2), loss, np.full_like(loss, np.nan), d, 1.0, 10)


def test_contour_axes_are_direction_1_then_2():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sampletopo.plotting._landscape import (
        plot_landscape_contour,
        plot_landscape_surface,
        plot_random_directions,
    )

    land = hand_landscape()
    ax = plot_landscape_contour(land)
    assert ax.get_xlim() == (-1.0, 1.0) and ax.get_ylim() == (-3.0, 3.0)
    assert "direction 1" in ax.get_xlabel() and "direction 2" in ax.get_ylabel()
    star = [ln for ln in ax.get_lines() if ln.get_marker() == "*"][0]
    assert (star.get_xdata()[0], star.get_ydata()[0]) == (0.5, -2.0)
    ax2 = plot_random_directions(land)
    assert ax2.get_xlim() == (-1.0, 1.0)
    ax3 = plot_landscape_surface(land)
    x0, x1 = ax3.get_xlim3d()
    y0, y1 = ax3.get_ylim3d()
    assert x1 - x0 < y1 - y0  # x spans direction 1's [-1, 1], y direction 2's [-3, 3]
    plt.close("all")
    with pytest.raises(SampletopoError, match="2-D"):
        plot_landscape_contour(
            Landscape(land.coords[:1], land.loss[:, 0], land.loss[:, 0], land.directions, 1.0, 1)
        )


def test_profile_and_spectrum_figures_draw():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sampletopo.hessian import SpectralDensity
    from sampletopo.plotting._landscape import plot_hessian_spectrum, plot_landscape_profile

    prof = landscape_profile(np.array([3.0, 1.0, 2.0, 0.0, 4.0]), connectivity="axis")
    ax = plot_landscape_profile(prof)
    assert ax.get_xlim() == (0.0, 5.0) and ax.get_ylim() == (0.0, 4.0)
    sd = SpectralDensity(np.array([[0.0, 1.0, 5.0]]), np.array([[0.5, 0.3, 0.2]]), 3)
    ax = plot_hessian_spectrum(sd, eigenvalues=np.array([5.0]))
    line = ax.get_lines()[0]
    peak = line.get_xdata()[np.argmax(line.get_ydata())]
    assert peak == pytest.approx(0.0, abs=0.05)  # the heaviest node
    plt.close("all")


def test_cli_landscape_of_a_trained_run_starts_at_the_recorded_losses(tmp_path, capsys):
    """`sampletopo landscape` on a real (tiny) run: the grid's centre is the run's checkpoint, so
    its loss is the mean of the recorded per-sample training losses of the same subset."""
    from sampletopo.cli import main
    from sampletopo.landscape import _subset, landscape_path
    from sampletopo.readers import read_loss_matrix
    from sampletopo.train import TrainConfig, train_run

    run = train_run(
        TrainConfig(data="synthetic", model="mlp", epochs=2, lr=0.05, batch_size=64, milestones=[]),
        tmp_path / "exp" / "run",
        progress=False,
    )
    args = ["landscape", str(run), "--epoch", "2", "--steps", "5", "--n-samples", "64"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main([*args, "--figures", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    path = landscape_path(run, 2)
    assert f"wrote {path}" in printed and "Hessian top eigenvalue" in printed
    land, extra = read_landscape(path)
    # The trace says whether it reached its tolerance within its budget: in the file, in the
    # metrics, in a warning and in the printed summary (with the grid graph of the metrics).
    tr = extra["hessian_trace"]
    assert tr["rtol"] == 0.05 and tr["converged"] == (tr["relative_stderr"] <= 0.05)
    assert tr["converged"] or tr["n_samples"] == 100
    assert extra["metrics"]["hessian_trace_converged"] == tr["converged"]
    warned = any(issubclass(w.category, TraceNotConvergedWarning) for w in caught)
    assert warned == (not tr["converged"])
    assert ("NOT converged" in printed) == (not tr["converged"]) and "probes" in printed
    assert "merge tree on the freudenthal grid graph" in printed
    assert land.loss.shape == (5, 5) and np.isfinite(land.loss).all()
    epochs, losses = read_loss_matrix(run, split="train")
    idx = _subset(losses.shape[1], 64, 0)
    centre = land.loss[2, 2]
    assert centre == pytest.approx(losses[list(epochs).index(2), idx].mean(), rel=1e-5)
    # The centre of a grid around a trained model is no higher than most of the grid.
    assert centre <= np.median(land.loss)
    assert extra["epoch"] == 2 and extra["hessian_eigenvalues"].shape == (2,)
    assert extra["metrics"]["hessian_top_eigenvalue"] == pytest.approx(
        extra["hessian_eigenvalues"][0]
    )
    stem = path.name.removesuffix(".npz")
    for kind in ("profile", "spectrum", "contour", "surface", "random"):
        assert (path.parent / f"{stem}-{kind}.png").stat().st_size > 1000
    # Without the Hessian: the same grid, no Hessian extras, NaN Hessian metrics.
    from sampletopo.landscape import landscape_for_run

    quick = landscape_for_run(
        run, 2, steps=5, n_samples=64, hessian=False, out=tmp_path / "q.npz", progress=False
    )
    q_land, q_extra = read_landscape(quick)
    np.testing.assert_array_equal(q_land.loss, land.loss)
    assert "hessian_eigenvalues" not in q_extra and "density_nodes" not in q_extra
    assert np.isnan(q_extra["metrics"]["hessian_trace"])
    with pytest.raises(SampletopoError, match="dirs='random'"):
        landscape_for_run(run, 2, dirs="hessian", hessian=False, progress=False)
    # A checkpoint epoch the run does not have names the ones it has.
    assert main([*args[:3], "7", "--no-progress"]) != 0
    assert (
        "no checkpoint for epoch 7. Epochs with checkpoints: [0, 1, 2]" in capsys.readouterr().err
    )


@pytest.mark.parametrize(
    "argv", [["--steps", "100000", "--dim", "3"], ["--steps", "2", "--dim", "200"]]
)
def test_a_grid_larger_than_memory_is_refused_with_the_numbers_before_anything_is_written(
    tmp_path, capsys, argv
):
    # N5: `landscape --steps 100000 --dim 3` failed with numpy's _ArrayMemoryError (7.11 PiB)
    # after the Hessian; --dim 200 asked for 2**200 points.
    from sampletopo.cli import main
    from sampletopo.train import TrainConfig, train_run

    run = train_run(
        TrainConfig(data="synthetic", model="mlp", epochs=1, milestones=[], threads=1),
        tmp_path / "exp" / "run",
        progress=False,
    )
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main(["landscape", str(run), "--epoch", "1", *argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert re.search(r"'steps' parameter of landscape_for_run .* grid points .* bytes", err), err
    assert "available" in err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_grid_memory_counts_the_grid_arrays_the_graph_and_the_directions():
    from sampletopo.landscape._grid import grid_bytes

    # 17 bytes a point (loss, accuracy, done); axis graph: d edges a point of 2 int64 (x3 for
    # canonicalising); directions d x n float64; vmapped chunks of parameter copies.
    assert grid_bytes(10, 2, 1000, connectivity="axis", chunk=4) == (
        100 * 17 + 3 * 16 * 2 * 100 + 2 * 1000 * 8 + 4 * 1000 * 4
    )
    fr = grid_bytes(10, 2, 1000, connectivity="freudenthal", chunk=4)
    assert fr - grid_bytes(10, 2, 1000, connectivity="axis", chunk=4) == 3 * 16 * 100


def test_auto_batch_size_follows_the_largest_activation():
    from sampletopo._batching import auto_batch_size, largest_activation_bytes

    conv = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
    conv.train()
    x = torch.randn(1000, 3, 32, 32)
    running = conv[1].running_mean.clone()
    # 16 channels x 32 x 32 float32 = 64 KiB per sample: 8 MiB holds 128 samples on a CPU.
    assert largest_activation_bytes(conv, x[:1]) == 16 * 32 * 32 * 4
    assert auto_batch_size(conv, x, torch.device("cpu")) == 128
    assert auto_batch_size(conv, x, torch.device("cpu"), points=4) == 32
    assert auto_batch_size(conv, x, torch.device("cpu"), points=1000) == 16  # the floor
    assert auto_batch_size(conv, x[:10], torch.device("cpu"), points=1000) == 10
    assert conv.training and torch.equal(conv[1].running_mean, running)  # probe left no trace
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    assert auto_batch_size(mlp, torch.randn(512, 1, 8, 8), torch.device("cpu")) == 512
    # The default batch changes nothing but summation order.
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(16 * 32 * 32, 10))  # fmt: skip
    xs, ys = x[:300], torch.randint(0, 10, (300,))
    d = random_directions(model, dim=1, seed=0)
    auto = evaluate_grid(model, F.cross_entropy, xs, ys, d, steps=3, progress=False)
    whole = evaluate_grid(
        model, F.cross_entropy, xs, ys, d, steps=3, batch_size=300, progress=False
    )
    np.testing.assert_allclose(auto.loss, whole.loss, rtol=1e-5)


def test_tied_values_make_no_minima_or_saddles():
    """A plateau is one basin: the minimum and saddle that only the index order of equal values
    creates are not counted, and do not dilute or inflate SMAD (found by a review)."""
    m = landscape_metrics(np.array([1.0, 1.0, 0.0, 1.0, 1.0]), connectivity="axis")
    assert (m.n_minima, m.n_saddles, m.smad, m.average_persistence) == (1, 0, 0.0, 0.0)
    # A tie on the way up to the real saddle: minima 0 and 1 meet at the second 2.
    m = landscape_metrics(np.array([0.0, 2.0, 2.0, 1.0, 3.0]), connectivity="axis")
    assert (m.n_minima, m.n_saddles) == (2, 1) and m.smad == pytest.approx((2 + 1) / 2)
    # Without ties the counts are the join tree's.
    rng = np.random.default_rng(3)
    for _ in range(20):
        arr = rng.random((7, 6))
        tree = st.join_tree(grid_graph(arr.shape, connectivity="freudenthal"), arr.ravel())
        m = landscape_metrics(arr)
        assert (m.n_minima, m.n_saddles) == (tree.n_leaves, tree.n_saddles)
