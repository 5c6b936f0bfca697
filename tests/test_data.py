"""Datasets: splits, stable order, features, fingerprints and the local-folder loaders."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from sampletopo._errors import SampletopoError
from sampletopo.data import Dataset, list_datasets, load_dataset


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits", seed=0)


def _rows(a: np.ndarray) -> np.ndarray:
    """Rows sorted lexicographically, for comparing multisets of samples."""
    a = a.reshape(a.shape[0], -1)
    return a[np.lexsort(a.T[::-1])]


def test_digits_split_is_a_stratified_partition(digits):
    ref = load_digits()
    assert digits.n("train") + digits.n("val") == 1797
    assert digits.input_shape == (1, 8, 8) and digits.num_classes == 10
    counts = np.bincount(ref.target, minlength=10)
    val_counts = np.bincount(digits.labels("val"), minlength=10)
    np.testing.assert_array_equal(val_counts, np.round(0.2 * counts).astype(int))
    # Together the splits hold every image exactly once (compare multisets of image+label rows).
    both = np.concatenate(
        [np.column_stack([digits.features(s) * 16, digits.labels(s)]) for s in ("train", "val")]
    )
    whole = np.column_stack([ref.images.reshape(1797, -1), ref.target])
    np.testing.assert_array_equal(_rows(both), _rows(whole.astype(np.float32)))


def test_split_is_seeded_and_fingerprints_tell_data_apart(digits):
    again = load_dataset("digits", seed=0)
    other = load_dataset("digits", seed=1)
    assert digits.fingerprint("train") == again.fingerprint("train")
    np.testing.assert_array_equal(digits.labels("val"), again.labels("val"))
    assert digits.fingerprint("val") != other.fingerprint("val")
    assert digits.fingerprint("train") != digits.fingerprint("val")
    assert load_dataset("synthetic").fingerprint("train") != digits.fingerprint("train")
    assert len(digits.fingerprint("train")) == 16
    smaller = load_dataset("digits", val_fraction=0.5)
    assert smaller.n("val") == pytest.approx(1797 / 2, abs=10)


def test_tensors_are_standardized_with_train_statistics(digits):
    x, y = digits.tensors("train")
    assert x.shape == (digits.n("train"), 1, 8, 8) and str(x.dtype) == "torch.float32"
    assert str(y.dtype) == "torch.int64"
    assert float(x.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(x.std(unbiased=False)) == pytest.approx(1.0, abs=1e-5)
    # val uses the train split's mean and std, not its own
    px_tr = digits.images("train")
    px_va = digits.images("val")
    xv, _ = digits.tensors("val")
    expected = (px_va - px_tr.mean()) / px_tr.std()
    np.testing.assert_allclose(xv.numpy()[:, 0], expected, atol=1e-5)
    # the order is stable: labels match, and a second call gives the same tensor
    np.testing.assert_array_equal(y.numpy(), digits.labels("train"))
    np.testing.assert_array_equal(digits.tensors("train")[0].numpy(), x.numpy())


def test_features_raw_standardized_pca(digits):
    raw = digits.features("train")
    assert raw.shape == (digits.n("train"), 64) and raw.dtype == np.float32
    np.testing.assert_array_equal(raw, digits.images("train").reshape(-1, 64))
    # raw digits pixels are multiples of 1/16 in [0, 1]
    np.testing.assert_allclose(raw * 16, np.round(raw * 16), atol=1e-5)
    z = digits.features("train", kind="standardized").astype(np.float64)
    std = z.std(axis=0)
    assert np.allclose(z.mean(axis=0), 0.0, atol=1e-5)
    # constant pixels (always 0 on the border) stay 0; the others get unit variance
    const = raw.std(axis=0) == 0
    assert const.any()
    assert np.allclose(std[~const], 1.0, atol=1e-4) and np.allclose(std[const], 0.0)
    p = digits.features("train", kind="pca", n_components=10)
    assert p.shape == (digits.n("train"), 10)
    var = p.var(axis=0)
    assert np.all(np.diff(var) <= 1e-6)
    # a full-rank PCA is a rotation of the standardized features: distances are kept
    full = digits.features("val", kind="pca", n_components=64).astype(np.float64)
    zv = digits.features("val", kind="standardized").astype(np.float64)
    d_full = np.linalg.norm(full[:50, None] - full[None, :50], axis=-1)
    d_z = np.linalg.norm(zv[:50, None] - zv[None, :50], axis=-1)
    np.testing.assert_allclose(d_full, d_z, atol=1e-3)
    with pytest.raises(SampletopoError, match=r"n_components.*\[1, 64\].*65"):
        digits.features("train", kind="pca", n_components=65)
    with pytest.raises(SampletopoError, match="'raw', 'standardized', 'pca'.*'umap'"):
        digits.features("train", kind="umap")
    with pytest.raises(SampletopoError, match="'raw', 'standardized', 'pca' or the path of a .npy"):
        digits.features("train", path="foo")


def test_user_features_file_checked_against_split_size(digits, tmp_path):
    good = tmp_path / "f.npy"
    arr = np.arange(digits.n("val") * 3, dtype=np.float64).reshape(-1, 3)
    np.save(good, arr)
    out = digits.features("val", path=good)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, arr.astype(np.float32))
    with pytest.raises(
        SampletopoError, match=rf"'train' has {digits.n('train')}.*shape \({digits.n('val')}, 3\)"
    ):
        digits.features("train", path=good)
    with pytest.raises(SampletopoError, match=r"\.npy"):
        digits.features("val", path=tmp_path / "f.csv")
    with pytest.raises(SampletopoError, match="does not exist"):
        digits.features("val", path=tmp_path / "missing.npy")


def test_unknown_dataset_and_bad_arguments_list_the_choices():
    with pytest.raises(SampletopoError) as err:
        load_dataset("imagenet")
    for name in list_datasets():
        assert name in str(err.value)
    assert {"digits", "cifar10", "mnist", "synthetic"} <= set(list_datasets())
    with pytest.raises(SampletopoError, match=r"val_fraction.*\(0, 1\).*1.5"):
        load_dataset("digits", val_fraction=1.5)
    with pytest.raises(SampletopoError, match="val_fraction"):
        load_dataset("digits", val_fraction="test")  # digits has no official test split
    with pytest.raises(SampletopoError, match=r"'split'.*'test'"):
        load_dataset("synthetic").n("test")


# -- CIFAR-10 in the exact python-pickle format -------------------------------------------------


def _write_cifar(
    root: Path, rng: np.random.Generator, per_batch: int = 4, n_test: int = 6, *, str_keys=False
):
    """CIFAR-10's python pickles. The real files were written by Python 2, so with
    ``encoding="latin1"`` (how torchvision and sampletopo read them) their keys come back as
    ``str``; ``str_keys=False`` writes ``bytes`` keys, as a Python 3 re-pickling does."""
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    batches = []
    key = (lambda k: k.decode()) if str_keys else (lambda k: k)
    for i in range(1, 6):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        batches.append((data, labels))
        obj = {
            key(b"batch_label"): f"training batch {i} of 5".encode(),
            key(b"labels"): labels,
            key(b"data"): data,
            key(b"filenames"): [f"img{i}_{j}.png".encode() for j in range(per_batch)],
        }
        with open(base / f"data_batch_{i}", "wb") as fh:
            pickle.dump(obj, fh, protocol=2)
    test = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    test_labels = [int(v) for v in rng.integers(0, 10, n_test)]
    with open(base / "test_batch", "wb") as fh:
        pickle.dump(
            {key(b"batch_label"): b"testing batch 1 of 1", key(b"labels"): test_labels,
             key(b"data"): test},
            fh,
            protocol=2,
        )  # fmt: skip
    names = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    with open(base / "batches.meta", "wb") as fh:
        pickle.dump(
            {
                key(b"label_names"): [n if str_keys else n.encode() for n in names],
                key(b"num_vis"): 3072,
                key(b"num_cases_per_batch"): per_batch,
            },
            fh,
            protocol=2,
        )
    return batches, (test, test_labels), names


def test_tiny_cifar10_folder_loads_through_the_real_loader(tmp_path, rng):
    batches, (test, test_labels), names = _write_cifar(tmp_path, rng)
    ds = load_dataset("cifar10", root=tmp_path)
    assert ds.n("train") == 20 and ds.n("val") == 6
    assert ds.input_shape == (3, 32, 32) and ds.class_names == names
    train_data = np.concatenate([b[0] for b in batches])
    np.testing.assert_array_equal(ds.labels("train"), np.concatenate([b[1] for b in batches]))
    np.testing.assert_array_equal(ds.labels("val"), test_labels)
    # CIFAR rows are 1024 red, 1024 green, 1024 blue values, each row-major 32x32
    img = ds.images("train")
    assert img.shape == (20, 32, 32, 3)
    k = 7
    r, g, b = train_data[k, :1024], train_data[k, 1024:2048], train_data[k, 2048:]
    np.testing.assert_allclose(
        img[k, 3, 5], [r[3 * 32 + 5] / 255, g[3 * 32 + 5] / 255, b[3 * 32 + 5] / 255], rtol=1e-6
    )
    np.testing.assert_allclose(ds.features("val")[2], test[2] / 255.0, rtol=1e-6)
    x, _ = ds.tensors("train")
    assert tuple(x.shape) == (20, 3, 32, 32)
    # a carved validation split instead of the official test set
    carved = load_dataset("cifar10", root=tmp_path, val_fraction=0.25)
    assert carved.n("train") + carved.n("val") == 20


def test_torchvision_reads_the_same_cifar10_folder(tmp_path, rng, monkeypatch):
    """The folder is in torchvision's own format: its reader sees the same images and labels."""
    import torchvision.datasets.cifar as tv_cifar

    _write_cifar(tmp_path, rng, str_keys=True)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)  # random files: no MD5
    tv = tv_cifar.CIFAR10(str(tmp_path), train=True)
    ds = load_dataset("cifar10", root=tmp_path)
    assert tv.classes == ds.class_names
    np.testing.assert_array_equal(ds.labels("train"), tv.targets)
    np.testing.assert_allclose(ds.images("train"), tv.data / 255.0, rtol=1e-6)  # NHWC both
    tv_test = tv_cifar.CIFAR10(str(tmp_path), train=False)
    np.testing.assert_array_equal(ds.labels("val"), tv_test.targets)


def test_torchvision_reads_the_same_mnist_folder(tmp_path, rng):
    import torchvision

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    tx, vx = rng.integers(0, 256, (12, 28, 28)), rng.integers(0, 256, (5, 28, 28))
    _write_idx(raw / "train-images-idx3-ubyte", tx)
    _write_idx(raw / "train-labels-idx1-ubyte", np.arange(12) % 10)
    _write_idx(raw / "t10k-images-idx3-ubyte", vx)
    _write_idx(raw / "t10k-labels-idx1-ubyte", np.arange(5))
    tv = torchvision.datasets.MNIST(str(tmp_path), train=True)
    ds = load_dataset("mnist", root=tmp_path)
    np.testing.assert_allclose(ds.images("train"), tv.data.numpy() / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.labels("train"), tv.targets.numpy())


def test_cifar_missing_or_broken_folder_says_what_to_do(tmp_path, rng):
    with pytest.raises(SampletopoError) as err:
        load_dataset("cifar10", root=tmp_path / "nowhere")
    msg = str(err.value)
    assert "cifar-10-batches-py" in msg and "data_batch_1" in msg and "never downloads" in msg
    assert str(tmp_path / "nowhere") in msg
    _write_cifar(tmp_path, rng)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(SampletopoError, match="data_batch_3.*corrupt or truncated"):
        load_dataset("cifar10", root=tmp_path)


def _write_idx(path: Path, arr: np.ndarray, *, gz: bool = False) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    payload = header + arr.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as fh:
            fh.write(payload)
    else:
        path.write_bytes(payload)


def test_tiny_mnist_folder_loads(tmp_path, rng):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    tx = rng.integers(0, 256, (12, 28, 28))
    ty = np.arange(12) % 10
    vx = rng.integers(0, 256, (5, 28, 28))
    vy = np.arange(5)
    _write_idx(raw / "train-images-idx3-ubyte", tx)
    _write_idx(raw / "train-labels-idx1-ubyte", ty, gz=True)
    _write_idx(raw / "t10k-images-idx3-ubyte", vx)
    _write_idx(raw / "t10k-labels-idx1-ubyte", vy)
    ds = load_dataset("mnist", root=tmp_path)
    assert ds.input_shape == (1, 28, 28) and ds.n("train") == 12 and ds.n("val") == 5
    np.testing.assert_allclose(ds.images("train"), tx / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.labels("val"), vy)
    (raw / "t10k-images-idx3-ubyte").write_bytes(
        (raw / "t10k-images-idx3-ubyte").read_bytes()[:100]
    )
    with pytest.raises(SampletopoError, match="truncated or corrupt"):
        load_dataset("mnist", root=tmp_path)
    with pytest.raises(SampletopoError, match=r"MNIST/raw.*never downloads"):
        load_dataset("mnist", root=tmp_path / "empty")


def test_max_samples_keeps_a_stratified_subset():
    ds = load_dataset("synthetic", max_samples=100)  # 400 train (40 per class), 100 val
    assert ds.n("train") == 100 and ds.n("val") == 100  # val has exactly 100: kept whole
    assert np.all(np.bincount(ds.labels("train"), minlength=10) == 10)


def test_from_arrays_checks_shapes():
    x = np.zeros((4, 1, 4, 4), dtype=np.float32)
    ds = Dataset.from_arrays(
        "toy", train=(x, np.array([0, 1, 0, 1])), val=(x[:2], np.array([1, 0]))
    )
    assert ds.num_classes == 2 and ds.images("val").shape == (2, 4, 4)
    with pytest.raises(SampletopoError, match=r"\(n, C, H, W\)"):
        Dataset.from_arrays("toy", train=(x[:, 0], np.zeros(4, int)), val=(x, np.zeros(4, int)))
