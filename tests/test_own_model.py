"""Your own model and data as first-class routes: import paths, .npz files, image folders.

The model classes and the data function below are what the tests name by import path. pytest
puts this folder on ``sys.path`` (rootdir-relative, no ``__init__.py``), so in-process they import
as ``test_own_model:...``; the CLI run in a subprocess gets the folder through ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sampletopo._errors import ModelSpecWarning, ParameterError, SampletopoError
from sampletopo.data import Dataset, load_dataset
from sampletopo.models import build_model, check_model_fits, model_spec
from sampletopo.recorder import LossRecorder
from sampletopo.runs import Run

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


class Conv1dNet(nn.Module):
    """A small 1-D CNN for (C, L) signals; sampletopo fills in in_channels and num_classes."""

    def __init__(self, in_channels: int = 1, num_classes: int = 3, width: int = 8) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(in_channels, width, 5, padding=2),
            nn.ReLU(),
            nn.AdaptiveAvgPool1d(4),
            nn.Flatten(),
            nn.Linear(4 * width, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def tabular_mlp(*, input_size: int, num_classes: int, hidden: int = 16) -> nn.Module:
    return nn.Sequential(nn.Linear(input_size, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


def two_outputs() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(40, 2))  # too few outputs for 3 classes


def not_a_module() -> str:
    return "a string"


def toy_data(seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    return Dataset.from_arrays(
        "toy",
        train=(rng.random((30, 6)).astype(np.float32), np.arange(30) % 3),
        val=(rng.random((9, 6)).astype(np.float32), np.arange(9) % 3),
    )


def not_a_dataset() -> list:
    return [1, 2]


def _signals(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noisy sines of 1, 2 or 3 periods over 40 steps: (n, 1, 40) float32, labels 0..2."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    t = np.linspace(0.0, 1.0, 40)
    x = np.sin(2 * np.pi * (y[:, None] + 1) * t) + 0.5 * rng.standard_normal((n, 40))
    return x.astype(np.float32)[:, None, :], y


def _cli(*argv: str) -> None:
    from sampletopo.cli import main

    assert main(list(argv)) == 0, argv


def test_cli_own_model_and_npz_end_to_end(tmp_path):
    """train -> topology -> figures -> landscape -> samples --figures -> report, on a Conv1d
    model named by import path and signals from an .npz file; the report has the comparison."""
    x, y = _signals()
    npz = tmp_path / "signals.npz"
    np.savez(npz, x_train=x, y_train=y, class_names=np.array(["one", "two", "three"]))
    exp = tmp_path / "exp"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)])}
    # The training runs in a fresh process: the import path must resolve from PYTHONPATH alone.
    done = subprocess.run(
        [sys.executable, "-m", "sampletopo", "train", "--model", "test_own_model:Conv1dNet",
         "--model-kw", "width=6", "--data", str(npz), "--epochs", "3", "--milestones", "2",
         "--out", str(exp), "--threads", "1", "--device", "cpu", "--no-progress"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    run = Run(exp / "run")
    cfg = run.read_config()
    assert cfg["model"] == "test_own_model:Conv1dNet" and cfg["model_kwargs"] == {"width": 6}
    assert cfg["data"] == str(npz.resolve()) and cfg["val_fraction"] == 0.2
    model, ds = run.load_model(3)
    assert isinstance(model, Conv1dNet) and model.net[0].out_channels == 6
    assert ds.sample_shape == (1, 40) and ds.kind == "signal" and ds.class_names[2] == "three"
    assert ds.n("train") + ds.n("val") == 300

    _cli("topology", str(exp), "--k", "8", "--no-progress")
    _cli("figures", str(exp), "--out", str(tmp_path / "figs"), "--formats", "png")
    _cli("landscape", str(exp / "run"), "--epoch", "3", "--dirs", "random", "--no-hessian",
         "--steps", "5", "--n-samples", "64", "--no-progress")  # fmt: skip
    sfig = tmp_path / "samples"
    _cli("samples", str(exp / "run"), "--epoch", "3", "--k", "8", "--top", "2",
         "--figures", str(sfig))  # fmt: skip
    grids = sorted(p.name for p in sfig.glob("*.png") if not p.name.endswith("losses.png"))
    assert grids, sorted(sfig.iterdir())
    report = tmp_path / "report"
    _cli("report", str(exp), "--out", str(report))
    html = (report / "index.html").read_text()
    # Figures are embedded in the page; the comparison's caption names it.
    assert 'alt="comparison-random-directions-vs-heatmaps" src="data:image/png;base64,' in html
    assert (
        report / "figures" / "exp" / "landscape" / "comparison-random-directions-vs-heatmaps.png"
    ).is_file()


# ---------------------------------------------------------------------------------------------
# Models by import path


def test_build_model_fills_in_what_the_factory_takes():
    m = build_model("test_own_model:tabular_mlp", num_classes=4, input_shape=(16,),
                    model_kwargs={"hidden": 5})  # fmt: skip
    assert [tuple(p.shape) for p in m.parameters()] == [(5, 16), (5,), (4, 5), (4,)]
    m = build_model(Conv1dNet, num_classes=5, input_shape=(2, 40))
    assert m.net[0].in_channels == 2 and m(torch.zeros(3, 2, 40)).shape == (3, 5)
    assert model_spec(Conv1dNet) == "test_own_model:Conv1dNet"
    tv = build_model("torchvision:resnet18", num_classes=7, input_shape=(3, 32, 32)).eval()
    assert tv.fc.out_features == 7 and tv(torch.zeros(1, 3, 32, 32)).shape == (1, 7)


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("no_such_module_xyz:Net", "module 'no_such_module_xyz' does not import"),
        ("test_own_model:NoSuchNet", "has no 'NoSuchNet'"),
        ("test_own_model:not_a_module", "returned a str"),
        ("torchvision:resnet_nonexistent", "torchvision's classifiers"),
        ("resnet18", "'torchvision:resnet18'"),
    ],
)
def test_bad_model_paths_are_one_clear_error(spec, needle):
    with pytest.raises(ParameterError) as info:
        build_model(spec, num_classes=3, input_shape=(1, 40))
    assert needle in str(info.value)
    assert "Traceback" not in str(info.value)


def test_model_defined_in_a_function_is_refused_with_the_fix():
    def local_factory() -> nn.Module:
        return nn.Linear(2, 2)

    with pytest.raises(ParameterError, match="Move it into a module"):
        model_spec(local_factory)


def test_model_that_does_not_fit_the_data_fails_before_anything_is_written(tmp_path):
    from sampletopo.train import TrainConfig, train_experiment

    x, y = _signals(60)
    npz = tmp_path / "s.npz"
    np.savez(npz, x_train=x, y_train=y)
    ds = load_dataset(npz)
    with pytest.raises(ParameterError, match=r"2 outputs per sample.*labels go up to 2"):
        check_model_fits(nn.Sequential(nn.Flatten(), nn.Linear(40, 2)), ds, where="test")
    with pytest.raises(ParameterError, match=r"shape \(4, 1, 40\).*in_channels=1"):
        check_model_fits(nn.Linear(10, 3), ds, where="test")
    with pytest.raises(ParameterError, match=r"returns torch.Size\(\[4, 1, 3\]\).*\(4, C\)"):
        check_model_fits(nn.Linear(40, 3), ds, where="test")
    cfg = TrainConfig(data=str(npz), model="test_own_model:two_outputs", epochs=1, device="cpu")
    with pytest.raises(ParameterError, match="num_classes=3"):
        train_experiment(cfg, tmp_path / "exp", progress=False)
    assert not Run(tmp_path / "exp" / "run").has_losses()
    assert not (tmp_path / "exp" / "run" / "config.toml").exists()


def test_model_kw_values_are_read_as_toml():
    from sampletopo.commands.train import _parse_kv

    got = _parse_kv(["a=3", "b=0.5", "c=true", "d=relu", "e=[8, 16]", "f='3'"], "--model-kw")
    assert got == {"a": 3, "b": 0.5, "c": True, "d": "relu", "e": [8, 16], "f": "3"}


# ---------------------------------------------------------------------------------------------
# The recorder stores the model by itself


def test_recorder_stores_an_importable_model_and_warns_once_otherwise(tmp_path):
    x, y = _signals(60)
    ds = Dataset.from_arrays("sig", train=(x[:45], y[:45]), val=(x[45:], y[45:]))
    torch.manual_seed(0)
    with LossRecorder(tmp_path / "a", ds) as rec:
        rec.on_train_epoch_end(0, Conv1dNet())
    assert Run(tmp_path / "a").read_config()["model"] == "test_own_model:Conv1dNet"

    class Local(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(40, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.flatten(1))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with LossRecorder(tmp_path / "b", ds) as rec:
            rec.on_train_epoch_end(0, Local())
            rec.on_train_epoch_end(1, Local())
    mine = [w for w in caught if issubclass(w.category, ModelSpecWarning)]
    assert len(mine) == 1 and "\n" not in str(mine[0].message)
    assert 'model_spec="pkg.module:factory"' in str(mine[0].message)
    assert mine[0].filename == __file__  # points at the loop's own call
    assert "model" not in Run(tmp_path / "b").read_config()

    # Width 6 is not what Conv1dNet() builds: the spec given is stored; a wrong one refused.
    net = Conv1dNet(width=6)
    with LossRecorder(tmp_path / "c", ds, model_spec=Conv1dNet, model_kwargs={"width": 6}) as rec:
        rec.on_train_epoch_end(0, net)
    assert Run(tmp_path / "c").read_config()["model_kwargs"] == {"width": 6}
    with pytest.raises(ParameterError, match=r"Conv1dNet with \d+ parameters"):
        with LossRecorder(tmp_path / "d", ds, model_spec=Conv1dNet, model_kwargs={"width": 5}) as r:
            r.on_train_epoch_end(0, net)
    # Later (the landscape command's --model): the same check, then stored.
    run_b = Run(tmp_path / "b")
    with pytest.raises(ParameterError, match="the architecture the run recorded"):
        run_b.set_model(Conv1dNet)
    with pytest.warns(ModelSpecWarning, match=r"Conv1dNet\(\) with no options"):
        with LossRecorder(tmp_path / "e", ds) as rec:
            rec.on_train_epoch_end(0, net)
    ckpt = Run(tmp_path / "e").checkpoint_file(0)
    ckpt.parent.mkdir()
    torch.save(net.state_dict(), ckpt)
    _cli("landscape", str(tmp_path / "e"), "--epoch", "0", "--dirs", "random", "--no-hessian",
         "--steps", "3", "--n-samples", "16", "--model", "test_own_model:Conv1dNet",
         "--model-kw", "width=6", "--no-progress")  # fmt: skip
    cfg = Run(tmp_path / "e").read_config()
    assert cfg["model"] == "test_own_model:Conv1dNet" and cfg["model_kwargs"] == {"width": 6}
    assert Run(tmp_path / "e").landscape_file(0).is_file()


# ---------------------------------------------------------------------------------------------
# Data by file or import path


def test_npz_rows_are_standardized_per_feature_and_split_as_documented(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(100, 16)) * np.arange(1, 17) + 5.0
    y = np.arange(100) % 3
    np.savez(tmp_path / "t.npz", x_train=x, y_train=y, x_val=x[:20], y_val=y[:20])
    ds = load_dataset(tmp_path / "t.npz")
    assert ds.kind == "tabular" and ds.sample_shape == (16,) and ds.n("val") == 20
    xt, yt = ds.tensors("train")
    assert xt.shape == (100, 16) and torch.equal(yt, torch.as_tensor(y))
    np.testing.assert_allclose(xt.numpy().mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(xt.numpy().std(0), 1.0, atol=1e-4)
    np.testing.assert_allclose(ds.values("val"), x[:20].astype(np.float32))
    # Without x_val: a stratified 0.2 of each class (round(0.2 * 34) + 2 * round(0.2 * 33)).
    np.savez(tmp_path / "u.npz", x_train=x, y_train=y)
    ds = load_dataset(tmp_path / "u.npz", val_fraction=None)
    assert ds.n("val") == 7 + 7 + 7 and ds.n("train") == 79


@pytest.mark.parametrize(
    ("arrays", "needle"),
    [
        ({"x_train": np.zeros((5, 3))}, "['y_train'] missing"),
        (
            {"x_train": np.zeros((5, 3)), "y_train": np.zeros(4, int)},
            "x_train (5, 3) and y_train (4,)",
        ),
        ({"x_train": np.zeros((5, 3)), "y_train": np.full(5, 0.5)}, "labels: integers"),
        (
            {"x_train": np.zeros((5, 3)), "y_train": np.zeros(5, int), "x_val": np.zeros((2, 3))},
            "['y_val'] missing",
        ),
        (
            {
                "x_train": np.zeros((5, 3)),
                "y_train": np.zeros(5, int),
                "x_val": np.zeros((2, 4)),
                "y_val": np.zeros(2, int),
            },
            "x_train samples (3,), x_val samples (4,)",
        ),
        (
            {"x_train": np.zeros((5, 3)), "y_train": np.arange(5), "class_names": np.array(["a"])},
            "4 label(s) outside",
        ),
        (
            {"X": np.zeros((5, 3)), "x_train": np.zeros((5, 3)), "y_train": np.zeros(5, int)},
            "['X'] unknown",
        ),
    ],
)
def test_bad_npz_is_one_clear_error(tmp_path, arrays, needle):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(SampletopoError) as info:
        load_dataset(tmp_path / "bad.npz")
    assert needle in str(info.value) and "bad.npz" in str(info.value)


def test_data_by_import_path_and_bad_ones():
    ds = load_dataset("test_own_model:toy_data", seed=3)
    assert ds.settings["data"] == "test_own_model:toy_data" and ds.n("train") == 30
    np.testing.assert_array_equal(ds.values("val"), toy_data(3).values("val"))
    with pytest.raises(ParameterError, match="returned a list"):
        load_dataset("test_own_model:not_a_dataset")
    with pytest.raises(ParameterError, match="does not import"):
        load_dataset("nowhere_pkg_xyz.mod:data")
    with pytest.raises(ParameterError, match=r"\.npz file"):
        load_dataset("digitz")


def test_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = {}
    for split, n in (("train", 3), ("val", 2)):
        for cls in ("cat", "dog"):
            (tmp_path / "imgs" / split / cls).mkdir(parents=True)
            for i in range(n):
                a = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
                Image.fromarray(a).save(tmp_path / "imgs" / split / cls / f"{i}.png")
                pixels[(split, cls, i)] = a
    ds = load_dataset(f"imagefolder:{tmp_path / 'imgs'}")
    assert ds.class_names == ["cat", "dog"] and ds.input_shape == (3, 6, 5)
    assert ds.n("train") == 6 and ds.n("val") == 4 and list(ds.labels("val")) == [0, 0, 1, 1]
    np.testing.assert_allclose(
        ds.images("train")[3], pixels[("train", "dog", 0)] / 255.0, atol=1e-6
    )
    (tmp_path / "imgs" / "train" / "cat" / "odd.png").unlink(missing_ok=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(
        tmp_path / "imgs" / "train" / "cat" / "z.png"
    )
    with pytest.raises(ParameterError, match="images of one size"):
        load_dataset(f"imagefolder:{tmp_path / 'imgs'}")


# ---------------------------------------------------------------------------------------------
# Sample figures of signals and rows, read back


def test_signal_figures_draw_the_samples():
    import matplotlib.pyplot as plt

    from sampletopo.plotting._samples import plot_region_images, plot_region_signals

    x, y = _signals(20)
    members, preds = [4, 0, 7], [int(y[4]), 1 - int(y[0] > 0), int(y[7])]
    fig = plot_region_signals(x, members, y[members], preds)
    axes = [ax for ax in fig.axes if ax.lines]
    assert len(axes) == 3
    for ax, m in zip(axes, members, strict=True):
        np.testing.assert_allclose(ax.lines[0].get_ydata(), x[m, 0])
    plt.close(fig)
    # The (n, 40, 1) images of (1, 40, 1) inputs, which crashed imshow, are drawn as lines.
    fig = plot_region_images(x[:, 0, :, None], members, y[members], preds)
    lined = [ax for ax in fig.axes if ax.lines]
    np.testing.assert_allclose(lined[1].lines[0].get_ydata(), x[0, 0])
    plt.close(fig)


def test_table_figure_shows_the_rows_and_how_the_region_differs():
    import matplotlib.pyplot as plt

    from sampletopo.plotting._samples import plot_region_table

    x = np.array([[0.0, 1.0, 5.0], [2.0, 1.0, 5.0], [4.0, 1.0, 8.0], [6.0, 1.0, 6.0]])
    fig = plot_region_table(x, [2, 3], [1, 0], [1, 1], class_names=["a", "b"], max_features=2)
    ax_bar = fig.axes[0]
    # Feature 0: members' mean 5, split mean 3, std sqrt(5); feature 1 has no spread: 0.
    heights = [p.get_height() for p in ax_bar.patches]
    np.testing.assert_allclose(heights, [2 / np.sqrt(5), 0.0])
    table = fig.axes[1].tables[0]
    assert table[1, 0].get_text().get_text() == "2"
    assert table[1, 1].get_text().get_text() == "b -> b"
    assert table[2, 2].get_text().get_text() == "6" and table[0, 3].get_text().get_text() == "f1"
    assert (2, 4) not in table.get_celld()  # max_features=2: the third feature left out
    plt.close(fig)


def test_tabular_run_gets_feature_tables_of_its_regions(tmp_path):
    """A tabular .npz and an MLP factory through the Python API; the region figure's table
    holds the members' own feature values."""
    import matplotlib.pyplot as plt

    from sampletopo import analysis
    from sampletopo.plotting._samples import sample_figures
    from sampletopo.samples import track_members
    from sampletopo.train import TrainConfig, train_experiment

    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 240)
    x = rng.normal(size=(240, 16)) + y[:, None] * np.linspace(0, 1, 16)
    np.savez(tmp_path / "rows.npz", x_train=x.astype(np.float32), y_train=y)
    cfg = TrainConfig(data=str(tmp_path / "rows.npz"), model=tabular_mlp,
                      model_kwargs={"hidden": 8}, epochs=2, device="cpu", threads=1)  # fmt: skip
    (run,) = train_experiment(cfg, tmp_path / "exp", progress=False)
    assert Run(run).read_config()["model"] == "test_own_model:tabular_mlp"
    analysis.compute_topology([run], k=6, progress=False)
    tracks = track_members(run, split="val", epoch=2, k=6, top=1)
    written = sample_figures(run, tmp_path / "figs", epoch=2, tracks=tracks)
    assert len(written) == 2  # one region's table, the loss curves
    ds = Run(run).dataset()
    members = tracks.regions["members"][0].to_list()
    # The figure file exists; the same figure drawn again is read back.
    from sampletopo.plotting._samples import plot_region_samples

    r = tracks.regions.row(0, named=True)
    fig = plot_region_samples(ds, "val", r["members"], r["member_labels"], r["member_preds"])
    table = fig.axes[1].tables[0]
    first = ds.values("val")[members[0]]
    assert table[1, 0].get_text().get_text() == str(members[0])
    assert [table[1, j + 2].get_text().get_text() for j in range(12)] == [
        f"{v:.3g}" for v in first[:12]
    ]
    plt.close(fig)


def test_npz_features_are_the_graph_features_and_travel_with_the_data(tmp_path):
    """features_train/features_val replace the flattened inputs as the kNN graph's raw
    features, follow the split and max_samples, change the fingerprint, and are saved with
    in-memory data."""
    from sampletopo._runconfig import load_saved_dataset
    from sampletopo.runs import data_config

    rng = np.random.default_rng(4)
    x, y = rng.random((50, 1, 12)).astype(np.float32), np.arange(50) % 2
    f = np.column_stack([np.arange(50.0), -np.arange(50.0), np.ones(50)])
    np.savez(tmp_path / "a.npz", x_train=x, y_train=y, features_train=f)
    ds = load_dataset(tmp_path / "a.npz", val_fraction=0.2, seed=1)
    # Feature column 0 is the sample's row in the file: the split keeps rows and features together.
    for split in ("train", "val"):
        rows = ds.features(split)[:, 0].astype(int)
        np.testing.assert_array_equal(ds.values(split), x[rows])
        np.testing.assert_array_equal(ds.features(split), f[rows].astype(np.float32))
    z = ds.features("train", kind="standardized")
    np.testing.assert_allclose(z[:, :2].std(0), 1.0, rtol=1e-5)
    np.savez(tmp_path / "b.npz", x_train=x, y_train=y)
    assert load_dataset(tmp_path / "b.npz", seed=1).fingerprint("val") != ds.fingerprint("val")
    mem = Dataset.from_arrays("m", train=(x[:40], y[:40]), val=(x[40:], y[40:]),
                              features=(f[:40], f[40:]))  # fmt: skip
    (tmp_path / "exp" / "run").mkdir(parents=True)
    saved = data_config(mem, tmp_path / "exp" / "run")["data_file"]  # relative to the run
    back = load_saved_dataset(tmp_path / "exp" / "run" / saved)
    np.testing.assert_array_equal(back.features("val"), f[40:].astype(np.float32))
    assert back.fingerprint("val") == mem.fingerprint("val") and back.sample_shape == (1, 12)
    np.savez(tmp_path / "c.npz", x_train=x, y_train=y, features_train=f[:49])
    with pytest.raises(ParameterError, match=r"features_train.*\(50, d\).*shape \(49, 3\)"):
        load_dataset(tmp_path / "c.npz")
