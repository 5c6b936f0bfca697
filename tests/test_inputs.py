"""Bad input at every entry point: one SampletopoError naming the value, nothing on disk touched.

Tables of bad values (and hypothesis where the bad value can sit anywhere) per entry point:
datasets (from_arrays, the folder loaders, saved .npz datasets, feature files), checkpoints
(checksums, epochs from names and entries), seeds, devices, training configs, the recorder's
arguments and model outputs, and the warning about a run config's foreign data root. Names
added by the fixes are imported inside the tests, so that run against the code before them
each test fails on its own.
"""

from __future__ import annotations

import os
import pickle
import re
import struct
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from sampletopo._errors import SampletopoError
from sampletopo.checkpoints import checkpoint_epoch, read_checkpoint
from sampletopo.cli import main
from sampletopo.data import Dataset, load_dataset
from sampletopo.models import create_model
from sampletopo.readers import loss_epochs
from sampletopo.record import (
    LossRecorder,
    evaluate_losses,
    read_run_config,
    record_checkpoints,
)
from sampletopo.train import TrainConfig, load_train_config, resolve_variants, train_experiment

torch.set_num_threads(1)


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes: equal snapshots mean nothing was touched."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _arrays(n: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 4, 4)), np.arange(n) % 3


@pytest.fixture(scope="module")
def ds() -> Dataset:
    return load_dataset("synthetic")


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("mlp", hidden=[4], in_channels=1, input_size=8)


# -- 1. datasets ------------------------------------------------------------------------------


def _set(x: np.ndarray, idx: tuple[int, ...], value, dtype=None) -> np.ndarray:
    out = x.astype(dtype) if dtype is not None else x.copy()
    out[idx] = value
    return out


# (what, train x -> bad x, regex the message must match: the split, first bad sample, the value)
_BAD_PIXELS = [
    ("nan", lambda x: _set(x, (4, 0, 1, 2), np.nan), r"split 'train'.*sample 4, value nan"),
    ("inf", lambda x: _set(x, (7, 0, 0, 0), -np.inf), r"split 'train'.*sample 7, value -inf"),
    ("float32 overflow", lambda x: _set(x, (2, 0, 3, 3), 1e300), r"sample 2, value 1e\+300"),
    ("None", lambda x: _set(x, (5, 0, 0, 1), None, object), r"dtype object \(sample 5: None\)"),
    ("strings", lambda x: x.astype(str), r"dtype <U\d+ \(sample 0: '0\.6"),
    ("complex", lambda x: x + 1j, r"dtype complex128 \(sample 0: \(0\.6"),
    (
        "ragged",
        lambda x: [s for s in x[:3]] + [x[3, :, :2]],
        r"'x' parameter of Dataset.from_arrays \(split 'train'\).*ragged.*3",
    ),
]


@pytest.mark.parametrize("what,bad,pattern", _BAD_PIXELS, ids=[b[0] for b in _BAD_PIXELS])
def test_from_arrays_refuses_bad_pixels_naming_split_sample_and_value(what, bad, pattern):
    x, y = _arrays()
    bx = bad(x)
    n = len(bx)
    with pytest.raises(SampletopoError, match=pattern) as err:
        Dataset.from_arrays("toy", train=(bx, y[:n]), val=(x[:4], y[:4]))
    assert "Dataset.from_arrays" in str(err.value)


_BAD_LABELS = [
    ("negative", np.array([0, 1, -3, 2]), r"split 'val'.*Got -3 at sample 2"),
    ("float", np.array([0.0, 1.0, 2.0, 1.0]), r"split 'val'.*dtype float64"),
    ("bool", np.array([True, False, True, False]), r"split 'val'.*dtype bool"),
    ("None", np.array([0, 1, None, 2], dtype=object), r"split 'val'.*sample 2: None"),
    ("uint64 near 2**63", np.array([0, 1, 2**63 + 5, 2], dtype=np.uint64), r"9223372036854775813 at sample 2"),
    ("beyond MAX_CLASSES", np.array([0, 1, 10**9, 2]), r"\[0, 100000\).*1000000000 at sample 2"),
]  # fmt: skip


@pytest.mark.parametrize("what,labels,pattern", _BAD_LABELS, ids=[b[0] for b in _BAD_LABELS])
def test_from_arrays_refuses_bad_labels(what, labels, pattern):
    x, y = _arrays()
    with pytest.raises(SampletopoError, match=pattern):
        Dataset.from_arrays("toy", train=(x, y), val=(x[:4], labels))


def test_labels_must_fit_the_class_names():
    x, y = _arrays()
    with pytest.raises(SampletopoError, match=r"\[0, 2\) \(2 classes\).*Got 2 at sample 2"):
        Dataset.from_arrays("toy", train=(x, y), val=(x[:4], y[:4]), class_names=["a", "b"])
    with pytest.raises(SampletopoError, match="'class_names'.*list of str.*'abc'"):
        Dataset.from_arrays("toy", train=(x, y), val=(x[:4], y[:4]), class_names="abc")


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 9),
    split=st.sampled_from(["train", "val"]),
    value=st.sampled_from([np.nan, np.inf, -np.inf, 3.5e38, -1e300]),
    data=st.data(),
)
def test_a_non_finite_pixel_anywhere_is_refused_at_its_first_sample(n, split, value, data):
    """Oracle: the first sample holding a pixel that is not finite once stored as float32."""
    x, y = _arrays(n=n, seed=n)
    x = x.reshape(n, -1)
    hits = data.draw(
        st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, 15)), min_size=1, max_size=4)
    )
    for i, j in hits:
        x[i, j] = value
    x = x.reshape(n, 1, 4, 4)
    pair = (x, y)
    good = _arrays(n=3, seed=99)
    kwargs = {"train": pair, "val": good} if split == "train" else {"train": good, "val": pair}
    with np.errstate(over="ignore"):
        first = int(np.flatnonzero(~np.isfinite(x.astype(np.float32)).reshape(n, -1).all(1))[0])
    assert first == min(i for i, _ in hits)
    with pytest.raises(SampletopoError, match=rf"split '{split}'.*first: sample {first}, value"):
        Dataset.from_arrays("toy", **kwargs)


def test_valid_inputs_keep_working_with_their_values():
    x, y = _arrays()
    u8 = (x * 255).astype(np.uint8)
    ds = Dataset.from_arrays("u8", train=(u8, y.astype(np.uint64)), val=(u8[:4], y[:4]))
    np.testing.assert_allclose(ds.images("train"), u8[:, 0] / 255.0, rtol=1e-6)
    assert ds.labels("train").dtype == np.int64 and ds.num_classes == 3
    b = Dataset.from_arrays("bool", train=(x > 0.5, y.astype(np.int8)), val=(x[:4] > 0.5, y[:4]))
    np.testing.assert_array_equal(b.images("val"), (x[:4, 0] > 0.5).astype(np.float32))
    names = Dataset.from_arrays("n", train=(x, y), val=(x[:4], y[:4]), class_names=list("abcde"))
    assert names.num_classes == 5  # more names than labels: classes absent from the data


def _write_saved(path: Path, train_x: np.ndarray) -> None:
    _, y = _arrays()
    np.savez(
        path, name=np.array("toy"), class_names=np.array(["0", "1", "2"]),
        train_x=train_x, train_y=y, val_x=train_x[:4], val_y=y[:4],
    )  # fmt: skip


def test_a_saved_dataset_with_a_nan_is_refused_naming_the_file(tmp_path):
    from sampletopo.record import dataset_from_config

    x, _ = _arrays()
    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    _write_saved(good, x)
    assert dataset_from_config({"data": "toy", "data_file": str(good)}).n("train") == 12
    _write_saved(bad, _set(x, (6, 0, 2, 2), np.nan))
    with pytest.raises(SampletopoError, match=r"bad\.npz.*split 'train'.*sample 6, value nan"):
        dataset_from_config({"data": "toy", "data_file": str(bad)})


_BAD_FEATURES = [
    ("nan row", lambda f: _set(f, (5, 1), np.nan), r"row 5, column 1, value nan"),
    ("beyond float32", lambda f: _set(f, (2, 0), 1e39), r"row 2, column 0, value 1e\+39"),
    ("complex", lambda f: f + 2j, r"dtype complex128"),
    ("no columns", lambda f: f[:, :0], r"d >= 1.*shape \(\d+, 0\)"),
]


@pytest.mark.parametrize("what,bad,pattern", _BAD_FEATURES, ids=[b[0] for b in _BAD_FEATURES])
def test_user_feature_files_refuse_values_without_a_distance(ds, tmp_path, what, bad, pattern):
    f = np.random.default_rng(0).random((ds.n("val"), 3))
    path = tmp_path / "f.npy"
    np.save(path, bad(f))
    with pytest.raises(SampletopoError, match=rf"(?s)(?=.*f\.npy).*{pattern}"):
        ds.features("val", path=path)


def test_a_pickled_object_array_as_features_is_one_clear_error(ds, tmp_path):
    path = tmp_path / "obj.npy"
    np.save(path, np.array([[None, 1.0]] * ds.n("val"), dtype=object), allow_pickle=True)
    with pytest.raises(SampletopoError, match=r"obj\.npy.*could not be read as a numeric"):
        ds.features("val", path=path)


# -- CIFAR-10 and MNIST folders ---------------------------------------------------------------


def _cifar_folder(root: Path, *, labels=None, data=None, extra=None) -> Path:
    """A tiny CIFAR-10 python folder: 2 images per batch file; ``labels``/``data``/``extra``
    replace or add entries of data_batch_2."""
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        obj = {
            b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8),
            b"labels": [int(v) for v in rng.integers(0, 10, 2)],
        }
        if name == "data_batch_2":
            obj.update({k: v for k, v in ((b"labels", labels), (b"data", data)) if v is not None})
            obj.update(extra or {})
        (base / name).write_bytes(pickle.dumps(obj, protocol=2))
    names = {b"label_names": [f"c{i}".encode() for i in range(10)]}
    (base / "batches.meta").write_bytes(pickle.dumps(names, protocol=2))
    return base


class _Payload:
    """A pickle that runs ``os.makedirs(marker)`` when loaded: what a tampered file could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


def test_a_tampered_cifar_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "code-ran"
    _cifar_folder(tmp_path / "d", extra={b"x": _Payload(marker)})
    with pytest.raises(SampletopoError, match=r"data_batch_2.*os\.makedirs.*could run code"):
        load_dataset("cifar10", root=tmp_path / "d")
    assert not marker.exists()


def test_python2_style_cifar_pickles_still_load(tmp_path):
    """The real files name numpy.core.multiarray (numpy 1); numpy 2 writes numpy._core."""
    base = _cifar_folder(tmp_path)
    for p in base.iterdir():
        p.write_bytes(p.read_bytes().replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    ds = load_dataset("cifar10", root=tmp_path)
    assert ds.n("train") == 10 and ds.class_names[3] == "c3"


@pytest.mark.parametrize(
    "entry,pattern",
    [
        ({"labels": [3, 12]}, r"data_batch_2.*\[0, 10\).*Got 12 at sample 1"),
        ({"labels": [3, -1]}, r"data_batch_2.*Got -1 at sample 1"),
        ({"data": np.full((2, 3072), 0.5)}, r"data_batch_2.*uint8\); got dtype float64"),
        ({"data": np.full((2, 3072), 300)}, r"data_batch_2.*uint8\); got dtype int64"),
    ],
    ids=["label 12", "label -1", "float data", "int 300"],
)
def test_cifar_files_with_labels_or_pixels_out_of_range_are_refused(tmp_path, entry, pattern):
    _cifar_folder(tmp_path, **entry)
    with pytest.raises(SampletopoError, match=pattern):
        load_dataset("cifar10", root=tmp_path)


def test_an_mnist_label_byte_beyond_nine_is_refused(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)

    def idx(name: str, arr: np.ndarray) -> None:
        head = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
        (raw / name).write_bytes(head + arr.astype(np.uint8).tobytes())

    idx("train-images-idx3-ubyte", np.zeros((4, 28, 28)))
    idx("train-labels-idx1-ubyte", np.array([1, 2, 200, 3]))
    idx("t10k-images-idx3-ubyte", np.zeros((2, 28, 28)))
    idx("t10k-labels-idx1-ubyte", np.array([0, 1]))
    with pytest.raises(SampletopoError, match=r"MNIST.*train files.*\[0, 10\).*200 at sample 2"):
        load_dataset("mnist", root=tmp_path)


# -- 2. checkpoints ---------------------------------------------------------------------------


def _flip(path: Path, member_suffix: str, offset: int) -> str:
    """Flip one byte ``offset`` bytes into the stored data of the zip member ending in
    ``member_suffix``; return the member's name."""
    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if i.filename.endswith(member_suffix))
    raw = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack(
        "<HH", raw[info.header_offset + 26 : info.header_offset + 30]
    )
    start = info.header_offset + 30 + name_len + extra_len
    raw[start + offset % info.compress_size] ^= 0xFF
    path.write_bytes(bytes(raw))
    return info.filename


def test_a_flipped_byte_inside_a_tensor_is_refused_naming_file_and_member(ds, tmp_path):
    ck = tmp_path / "ck"
    ck.mkdir()
    model = _mlp()
    torch.save({"model": model.state_dict(), "epoch": 1}, ck / "epoch=0001.pt")
    member = _flip(ck / "epoch=0001.pt", "data/0", 5)
    # torch alone loads it without a word, with another weight in it
    loaded = torch.load(ck / "epoch=0001.pt", weights_only=True)["model"]
    assert not all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())
    with pytest.raises(SampletopoError, match=rf"epoch=0001\.pt.*corrupt.*{member}.*CRC-32"):
        read_checkpoint(ck / "epoch=0001.pt")
    out = tmp_path / "run"
    with pytest.raises(SampletopoError, match=r"epoch=0001\.pt.*CRC-32"):
        record_checkpoints(ck, out, model=_mlp(), data=ds, progress=False)
    assert not out.exists()  # refused before anything was written


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(member=st.sampled_from(["data/0", "data/1", "data.pkl"]), offset=st.integers(0, 10**6))
def test_any_flipped_byte_in_any_member_is_refused(tmp_path_factory, member, offset):
    path = tmp_path_factory.mktemp("flip") / "c.pt"
    torch.save({"model": _mlp().state_dict(), "epoch": 2}, path)
    _flip(path, member, offset)
    with pytest.raises(SampletopoError, match=r"c\.pt.*(corrupt|could not be loaded)"):
        read_checkpoint(path)


def test_legacy_non_zip_checkpoints_still_load_unverified(tmp_path):
    sd = _mlp().state_dict()
    path = tmp_path / "legacy.pt"
    torch.save({"model": sd, "epoch": 3}, path, _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(path)
    obj = read_checkpoint(path)
    assert obj["epoch"] == 3 and all(torch.equal(obj["model"][k], v) for k, v in sd.items())


def test_epochs_beyond_int32_are_refused_from_names_and_entries(tmp_path):
    from sampletopo._validation import MAX_EPOCH

    assert MAX_EPOCH == 2**31 - 1  # the loss tables' epoch column is int32
    assert checkpoint_epoch(tmp_path / f"epoch={MAX_EPOCH}.pt", {}) == MAX_EPOCH
    assert checkpoint_epoch(tmp_path / "a.pt", {"epoch": MAX_EPOCH}) == MAX_EPOCH
    with pytest.raises(SampletopoError, match=r"12345678901234567890.*exceeds 2147483647.*Rename"):
        checkpoint_epoch(tmp_path / "model_12345678901234567890.pt", {})
    for bad in (2**31, 2**40, -1):
        with pytest.raises(SampletopoError, match=rf"'epoch' entry {bad}.*\[0, 2147483647\]"):
            checkpoint_epoch(tmp_path / "a.pt", {"epoch": bad})
    lightning = {"epoch": MAX_EPOCH, "pytorch-lightning_version": "2.0"}  # counts as epoch + 1
    with pytest.raises(SampletopoError, match=r"\[0, 2147483646\]"):
        checkpoint_epoch(tmp_path / "a.pt", lightning)


def test_record_refuses_a_twenty_digit_checkpoint_name_and_keeps_the_run(ds, tmp_path):
    ck = tmp_path / "ck"
    ck.mkdir()
    torch.save({"model": _mlp().state_dict()}, ck / "model_1.pt")
    out = tmp_path / "run"
    assert record_checkpoints(ck, out, model=_mlp(), data=ds, progress=False) == [1]
    before = _snapshot(out)
    torch.save({"model": _mlp().state_dict()}, ck / "model_99999999999999999999.pt")
    with pytest.raises(SampletopoError, match="99999999999999999999.*exceeds"):
        record_checkpoints(ck, out, model=_mlp(), data=ds, progress=False)
    assert _snapshot(out) == before


# -- 3. seeds, devices, configs ----------------------------------------------------------------


@pytest.mark.parametrize("seed", [-1, 2**63, 2**64, 2**70, True, 1.5])
def test_seeds_outside_int64_are_refused_everywhere(seed, tmp_path):
    with pytest.raises(SampletopoError, match=rf"'seed'.*load_dataset.*{seed!r}"):
        load_dataset("synthetic", seed=seed)
    for key in ("seed", "data_seed"):
        with pytest.raises(SampletopoError, match=rf"'{key}' setting.*{seed!r}"):
            TrainConfig(**{key: seed}).resolved()
    ck = tmp_path / "ck"
    ck.mkdir(exist_ok=True)
    with pytest.raises(SampletopoError, match=rf"'data_seed'.*record_checkpoints.*{seed!r}"):
        record_checkpoints(ck, tmp_path / "r", model="mlp", data="synthetic", data_seed=seed)
    assert not (tmp_path / "r").exists()


def test_the_largest_seed_works_and_small_seeds_shuffle_as_before():
    from sampletopo.train import _shuffle_seed

    big = 2**63 - 1
    assert load_dataset("synthetic", seed=big).n("val") == 100
    assert TrainConfig(seed=big, data_seed=big).resolved()["seed"] == big
    torch.Generator().manual_seed(_shuffle_seed(big, 2**31 - 1))  # within torch's range
    assert _shuffle_seed(7, 3) == 7 * 1_000_003 + 3  # unchanged for the seeds people use


@pytest.mark.parametrize(
    "argv,pattern",
    [
        (["train", "--seed", str(2**64)], r"'--seed' flag.*18446744073709551616"),
        (["train", "--seed", "1", "-2"], r"'--seed' flag.*-2"),
        (["train", "--data-seed", "-1"], r"'--data-seed' flag.*-1"),
        (["record", "--data-seed", "-1"], r"'--data-seed' flag.*-1"),
        (["record", "--data-seed", str(2**63)], r"'--data-seed' flag.*9223372036854775808"),
        (["landscape", "RUN", "--epoch", "1", "--seed", "-5"], r"'--seed' flag.*-5"),
        (["train", "--device", "tpu"], r"'device' setting.*'tpu'"),
        (["train", "--device", "cuda:abc"], r"'device' setting.*'cuda:abc'"),
        (["record", "--device", "tpu"], r"'--device' flag.*'tpu'"),
        (["record", "--device", "meta"], r"'--device' flag.*'meta'.*does not compute"),
        (["train", "--epochs", str(2**40)], r"'epochs'.*2147483647\].*1099511627776"),
        # N5: values that reached torch after epoch 0 was written, or left a config.toml behind
        (["train", "--lr", "3.5e38"], r"'lr' setting.*\(0, 1e6\].*3.5e\+38"),
        (["train", "--lr", "1e308"], r"'lr' setting.*1e\+308"),
        (["train", "--weight-decay", "1e39"], r"'weight_decay' setting.*\[0, 1e6\].*1e\+39"),
        (["train", "--momentum", "1e39"], r"'momentum' setting.*\[0, 1\).*1e\+39"),
        (["train", "--momentum", "1"], r"'momentum' setting.*\[0, 1\).*Got 1.0"),
        (["train", "--threads", "100000"], r"'threads' setting.*\[0, \d+\].*100000"),
        (["train", "--gamma", "inf"], r"'gamma' setting.*inf"),
        # N7: model options of other models were dropped silently for an mlp (exit 0)
        (["train", "--width", "0"], r"Unknown model option\(s\) \['width'\] for model 'mlp'"),
        (["train", "--widen", "2"], r"Unknown model option\(s\) \['widen'\] for model 'mlp'"),
        (["train", "--depth", "8"], r"Unknown model option\(s\) \['depth'\] for model 'mlp'"),
        (
            ["train", "--val-fraction", "test"],
            r"synthetic has no official test set.*cifar10, mnist",
        ),
    ],
)
def test_command_line_values_that_torch_or_numpy_would_choke_on(tmp_path, capsys, argv, pattern):
    out = tmp_path / "out"
    common = {
        "train": ["--model", "mlp", "--data", "synthetic", "--out", str(out), "--no-progress"],
        "record": ["--checkpoints", str(tmp_path), "--model", "mlp", "--data", "synthetic",
                   "--out", str(out), "--no-progress"],
        "landscape": [],
    }  # fmt: skip
    argv = [str(tmp_path / a) if a == "RUN" else a for a in argv]
    assert main([*argv, *common[argv[0]]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert re.search(pattern, err), err
    assert not out.exists()


def test_cuda_without_cuda_is_one_clear_error(tmp_path, capsys):
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        bad, pattern = f"cuda:{n}", rf"only {n} GPU\(s\) are visible"
    else:
        bad, pattern = "cuda", r"'cuda' needs CUDA, but .*Use 'cpu' or 'auto'"
    assert main(["record", "--checkpoints", str(tmp_path), "--model", "mlp", "--data",
                 "synthetic", "--out", str(tmp_path / "o"), "--device", bad]) == 2  # fmt: skip
    assert re.search(pattern, capsys.readouterr().err)
    with pytest.raises(SampletopoError, match=pattern):
        TrainConfig(device=bad).resolved()


@pytest.mark.parametrize("device", ["tpu", "cuda:abc", "cuda:-1", "meta", "xla", "", 3, 1.5])
def test_bad_devices_are_refused_by_every_api_entry_point(ds, tmp_path, device):
    from sampletopo._device import resolve_device

    got = "Got " + re.escape(repr(device))
    with pytest.raises(SampletopoError, match=rf"'device' parameter of test.*{got}"):
        resolve_device(device, where="test")
    with pytest.raises(SampletopoError, match=rf"'device' parameter of LossRecorder.*{got}"):
        LossRecorder(tmp_path / "r", ds, device=device)
    with pytest.raises(SampletopoError, match=rf"'device' parameter of evaluate_losses.*{got}"):
        evaluate_losses(_mlp(), *ds.tensors("val"), device=device)
    with pytest.raises(SampletopoError, match=rf"'device' parameter of record_checkpoints.*{got}"):
        record_checkpoints(tmp_path, tmp_path / "r", model="mlp", data=ds, device=device)
    assert not (tmp_path / "r").exists()


def test_good_devices_resolve():
    from sampletopo._device import resolve_device

    assert resolve_device(None, where="t") is None
    assert resolve_device("cpu", where="t") == torch.device("cpu")
    assert resolve_device(torch.device("cpu"), where="t") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto", where="t").type == expected


@pytest.mark.parametrize(
    "toml,pattern",
    [
        ("model_kwargs = 3\n", r"'model_kwargs' setting of .* must be a table.*Got 3 \(int\)"),
        ("model_kwargs = [1, 2]\n", r"'model_kwargs'.*Got \[1, 2\] \(list\)"),
        ('model_kwargs = "width=8"\n', r"'model_kwargs'.*Got 'width=8' \(str\)"),
        ('model = "mlp"\n[model_kwargs]\nhidden = "x"\n', r"'hidden' option.*'x'"),
        ('model = "wrn16"\n[model_kwargs]\ndropout = "x"\n', r"'dropout' option.*'x'"),
        ('model = "cnn"\n[model_kwargs]\nbatchnorm = "yes"\n', r"'batchnorm' option.*'yes'"),
        ("data_root = 3\n", r"'data_root' setting.*non-empty string.*3"),
        ("max_samples = 5\n", r"'max_samples' setting.*>= 10.*5"),
        ('val_fraction = "most"\n', r"'val_fraction' setting.*'most'"),
        ("[[variants]]\nmodel_kwargs = 3\n", r"'model_kwargs' setting of .* must be a table.*3"),
        ('variants = ""\n', r"'variants' parameter.*Got str"),
    ],
)
def test_bad_toml_values_are_refused_before_any_folder(tmp_path, capsys, toml, pattern):
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    out = tmp_path / "out"
    with pytest.raises(SampletopoError, match=pattern):
        train_experiment(cfg, out, progress=False)
    assert not out.exists()
    assert main(["train", str(cfg), "--out", str(out), "--no-progress"]) == 2
    assert "Traceback" not in capsys.readouterr().err and not out.exists()


def test_model_kwargs_not_a_table_through_the_python_api(tmp_path):
    base, _ = load_train_config(_toml(tmp_path, 'model = "mlp"\n'))
    from dataclasses import replace

    with pytest.raises(SampletopoError, match=r"'model_kwargs'.*table.*3"):
        resolve_variants(replace(base, model_kwargs=3), {"lr": [0.1, 0.2]})
    with pytest.raises(SampletopoError, match=r"model options of create_model.*table.*\[2\]"):
        from sampletopo.models import check_model_options

        check_model_options("mlp", [2])


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "x.toml"
    path.write_text(text)
    return path


# -- the recorder's arguments and the model's outputs ------------------------------------------


@pytest.mark.parametrize(
    "dataset", [np.zeros((3, 1, 4, 4)), (np.zeros((3, 1, 4, 4)), np.zeros(3)), {"x": 1}, "digits"]
)
def test_a_non_dataset_is_refused_by_the_recorder(tmp_path, dataset):
    with pytest.raises(SampletopoError, match=rf"'dataset'.*Dataset.*{type(dataset).__name__}"):
        LossRecorder(tmp_path / "r", dataset=dataset)
    assert not (tmp_path / "r").exists()
    if isinstance(dataset, str):
        return  # a name is what record_checkpoints takes
    with pytest.raises(
        SampletopoError, match=rf"'data'.*record_checkpoints.*{type(dataset).__name__}"
    ):
        record_checkpoints(tmp_path, tmp_path / "r", model="mlp", data=dataset)
    assert not (tmp_path / "r").exists()


class _Out(nn.Module):
    """A model whose output is ``make(x)``; one parameter so it has a device."""

    def __init__(self, make) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.make = make

    def forward(self, x):
        return self.make(x.flatten(1) + self.w)


_BAD_OUTPUTS = [
    ("(B,)", lambda h: h.sum(1), r"shape \(100,\)"),
    ("(B, C) with C < num_classes", lambda h: h[:, :9], r"C >= 10.*shape \(100, 9\)"),
    ("(B, 1)", lambda h: h[:, :1], r"shape \(100, 1\)"),
    ("(B, C, H, W)", lambda h: h[:, :40].reshape(-1, 10, 2, 2), r"shape \(100, 10, 2, 2\)"),
    ("int logits", lambda h: (h[:, :10] * 10).long(), r"shape \(100, 10\) \(torch\.int64\)"),
    ("a tuple", lambda h: (h[:, :10], h), r"returned tuple, not a tensor"),
    ("wrong batch", lambda h: h[:3, :10], r"batch of 100 samples has shape \(3, 10\)"),
]


@pytest.mark.parametrize("what,make,pattern", _BAD_OUTPUTS, ids=[b[0] for b in _BAD_OUTPUTS])
def test_model_outputs_that_do_not_fit_the_labels_are_one_clear_error(
    ds, tmp_path, what, make, pattern
):
    x, y = ds.tensors("val")
    with pytest.raises(SampletopoError, match=rf"evaluate_losses.*{pattern}"):
        evaluate_losses(_Out(make), x, y, num_classes=10)
    rec = LossRecorder(tmp_path / "r", ds, batch_size=100)
    with pytest.raises(SampletopoError, match=pattern):
        rec.on_train_epoch_end(0, _Out(make))
    assert loss_epochs(tmp_path / "r", split="train") == []
    # the refused model does not lock the folder: the corrected one records there
    rec.on_train_epoch_end(0, _mlp())
    assert loss_epochs(tmp_path / "r", split="val") == [0]


def test_a_model_with_fewer_outputs_than_the_largest_label_is_refused_without_num_classes(ds):
    x, y = ds.tensors("val")
    with pytest.raises(SampletopoError, match=r"C >= 10.*labels run 0\.\.9.*shape \(100, 5\)"):
        evaluate_losses(_Out(lambda h: h[:, :5]), x, y)
    with pytest.raises(SampletopoError, match=r"'batch_size'.*evaluate_losses.*0"):
        evaluate_losses(_mlp(), x, y, batch_size=0)


def test_recorder_epochs_beyond_int32_are_refused_and_nothing_is_written(ds, tmp_path):
    rec = LossRecorder(tmp_path / "r", ds)
    rec.on_train_epoch_end(0, _mlp())
    before = _snapshot(tmp_path / "r")
    for bad in (2**31, 2**40, -1, 1.0):
        with pytest.raises(SampletopoError, match=rf"'epoch'.*\[0, 2147483647\].*{bad!r}"):
            rec.on_train_epoch_end(bad, _mlp())
    assert _snapshot(tmp_path / "r") == before


def test_train_pass_batches_with_bad_indices_or_targets(ds, tmp_path):
    rec = LossRecorder(tmp_path / "r", ds, mode="train_pass")
    x, y = ds.tensors("train")
    model = _mlp()
    n = ds.n("train")
    with pytest.raises(SampletopoError, match=rf"indices that lie in \[0, {n}\).*{n}"):
        rec.on_train_batch_end(torch.arange(n - 2, n + 1), model(x[:3]), y[:3])
    with pytest.raises(SampletopoError, match=r"3 targets that came with 2 indices"):
        rec.on_train_batch_end(torch.arange(2), model(x[:3]), y[:3])
    with pytest.raises(
        SampletopoError,
        match=r"'targets' parameter of on_train_batch_end must be labels in \[0, 10\).*11",
    ):
        rec.on_train_batch_end(torch.arange(3), model(x[:3]), torch.tensor([0, 11, 2]))
    with pytest.raises(SampletopoError, match=r"on_train_batch_end.*shape \(3,\)"):
        rec.on_train_batch_end(torch.arange(3), model(x[:3])[:, 0], y[:3])


def test_recorder_options_are_checked_before_record_checkpoints_writes(ds, tmp_path):
    ck = tmp_path / "ck"
    ck.mkdir()
    torch.save({"model": _mlp().state_dict()}, ck / "epoch=1.pt")
    out = tmp_path / "run"
    for kw, pattern in (
        ({"batch_size": 0}, r"'batch_size'.*record_checkpoints.*0"),
        ({"batch_size": True}, r"'batch_size'.*True"),
        ({"splits": ["test"]}, r"'splits'.*\['test'\]"),
        ({"model_kwargs": 3}, r"'model_kwargs'.*mapping.*3"),
        ({"model": 3}, r"'model'.*name or a torch\.nn\.Module.*int"),
    ):
        args = {"model": "mlp", "data": ds, "progress": False, **kw}
        with pytest.raises(SampletopoError, match=pattern):
            record_checkpoints(ck, out, **args)
        assert not out.exists()


# -- 4. a run config's data root ---------------------------------------------------------------


def test_a_run_config_reading_cifar_pickles_from_elsewhere_warns_once(tmp_path, monkeypatch):
    from sampletopo.record import DataRootWarning, warn_foreign_data_root
    from sampletopo.runs import Run

    elsewhere = tmp_path / "downloads"
    _cifar_folder(elsewhere)
    run = tmp_path / "shared-exp" / "run1"
    run.mkdir(parents=True)
    (run / "config.toml").write_text(
        f'data = "cifar10"\ndata_root = "{elsewhere}"\ndata_seed = 0\nval_fraction = "test"\n'
        "max_samples = 0\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SAMPLETOPO_TRUSTED_DATA", raising=False)
    with pytest.warns(
        DataRootWarning, match=rf"run1.*{elsewhere}.*outside the experiment.*pickles"
    ):
        ds = Run(run).dataset()  # what topology/samples/report use to load a run's data
    assert ds.n("train") == 10
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataRootWarning)
        assert not warn_foreign_data_root(read_run_config(run), run)  # once per root
        inside = {"data": "cifar10", "data_root": str(run.parent / "data")}
        assert not warn_foreign_data_root(inside, run)
        assert not warn_foreign_data_root({"data": "cifar10", "data_root": "data"}, run)
        assert not warn_foreign_data_root({"data": "mnist", "data_root": "/elsewhere"}, run)
        monkeypatch.setenv("SAMPLETOPO_TRUSTED_DATA", str(tmp_path / "vouched"))
        other = tmp_path / "shared-exp2" / "run"
        vouched = {"data": "cifar10", "data_root": str(tmp_path / "vouched" / "cifar")}
        assert not warn_foreign_data_root(vouched, other)
    with pytest.warns(DataRootWarning, match="/srv/x"):
        assert warn_foreign_data_root({"data": "cifar10", "data_root": "/srv/x"}, other)


def test_model_options_too_large_to_allocate_are_one_clear_error():
    with pytest.raises(SampletopoError, match=r"'mlp'.*\[1099511627776\].*too large to allocate"):
        create_model("mlp", hidden=[2**40], in_channels=1, input_size=8)
