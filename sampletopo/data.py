"""Datasets whose per-sample losses sampletopo records, with a stable sample order.

This module holds :class:`Dataset` and :func:`load_dataset`: a fixed train/validation split of a
small image data set, the model inputs as tensors, and the input features the kNN graph is built
from. A sample's index is its position in its split's stable order; that index is the vertex
index of the split's kNN graph and the ``sample`` column of every loss table.

Nothing is ever downloaded. Available data sets:

``digits``
    scikit-learn's 8x8 handwritten digits (1,797 images, shipped inside scikit-learn), split into
    train/validation with a seeded, stratified split (``val_fraction`` of each class).
``cifar10``, ``mnist``
    Read from a local folder in torchvision's on-disk format under ``root`` (see
    ``data/README.md``). By default ``val`` is the official test set; a float ``val_fraction``
    carves a stratified validation split out of the official training set instead.
``synthetic``
    Small seeded class-template images (1x8x8, 10 classes, 500 samples), for fast tests.

This module does not build graphs, train models or write files.
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sampletopo._errors import DamagedFileError, ParameterError
from sampletopo._names import SPLITS
from sampletopo._validation import MAX_SEED, check_choice, check_int, check_path, invalid

__all__ = ["Dataset", "load_dataset", "list_datasets", "SPLITS"]

FeatureKind = Literal["raw", "standardized", "pca"]


@dataclass(eq=False)
class Dataset:
    """A labelled image data set split into ``train`` and ``val``, in a stable sample order.

    Build one with :func:`load_dataset`. Raw pixels are kept in ``[0, 1]`` (uint8 sources are
    kept as uint8 and scaled on use); model inputs are standardized per channel with the
    *training* split's mean and standard deviation, so both splits see the same transform.

    Attributes
    ----------
    name : str
        Registered name (``"digits"``, ``"cifar10"``, ...).
    num_classes : int
        Number of classes; labels are ``0 .. num_classes - 1``. ``0`` for regression targets
        (float ``y``, see :meth:`from_arrays` and :attr:`is_regression`).
    input_shape : tuple of int
        ``(C, H, W)`` of one model input.
    class_names : list of str
        Human-readable class names, indexed by label.
    """

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]
    class_names: list[str]
    _raw: dict[str, np.ndarray] = field(
        repr=False
    )  # split -> (n, C, H, W), uint8 or float32 in [0, 1]
    _labels: dict[str, np.ndarray] = field(repr=False)  # split -> (n,) int64
    _scale: float = field(default=1.0, repr=False)  # raw * _scale lies in [0, 1]
    _cache: dict[Any, Any] = field(default_factory=dict, repr=False)
    # The load_dataset() arguments that rebuild this dataset (None for from_arrays data).
    settings: dict[str, Any] | None = field(default=None, repr=False)
    # The shape of one model input when it is not (C, H, W): (d,) for tabular rows, (C, L) for
    # signals. Stored inside as (n, d, 1, 1) and (n, C, L, 1), so features, statistics and
    # fingerprints are those of (C, H, W) data.
    _sample_shape: tuple[int, ...] | None = field(default=None, repr=False)
    # The data's own graph features, split -> (n, d) float32, when it brings them (an .npz's
    # features_train/features_val): what features(kind="raw") gives instead of the inputs.
    _features: dict[str, np.ndarray] | None = field(default=None, repr=False)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one model input as :meth:`tensors` returns it: ``(C, H, W)`` for images,
        ``(C, L)`` for signals, ``(d,)`` for tabular rows."""
        return self._sample_shape or self.input_shape

    @property
    def kind(self) -> str:
        """``"image"``, ``"signal"`` or ``"tabular"``: how sample figures show one input.

        Tabular: ``(d,)`` inputs, or ``(C, 1, 1)``. Signal: ``(C, L)`` inputs, or ``(C, H, W)``
        with one of ``H``, ``W`` equal to 1 (e.g. ``(1, 40, 1)``). Image: the rest."""
        c, h, w = self.input_shape
        if len(self.sample_shape) == 1 or h == w == 1:
            return "tabular"
        if len(self.sample_shape) == 2 or h == 1 or w == 1:
            return "signal"
        return "image"

    def values(self, split: str) -> np.ndarray:
        """The raw inputs of ``split`` for display, float32 in :attr:`sample_shape`: ``(n, d)``
        rows, ``(n, C, L)`` signals (also for ``(C, L, 1)``/``(C, 1, L)`` inputs) or
        ``(n, C, H, W)`` images."""
        px = self._pixels(split)
        kind = self.kind
        if kind == "tabular":
            return px.reshape(px.shape[0], -1)
        if kind == "signal":
            return px.reshape(px.shape[0], px.shape[1], -1)
        return px

    @classmethod
    def from_arrays(
        cls,
        name: str,
        *,
        train: tuple[np.ndarray, np.ndarray],
        val: tuple[np.ndarray, np.ndarray],
        class_names: list[str] | None = None,
        features: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> Dataset:
        """A dataset from in-memory arrays: ``(x, y)`` per split, ``x`` of shape ``(n, C, H, W)``
        with values in [0, 1] (float or bool) or 0..255 (uint8), ``y`` integer labels from 0.

        ``x`` may also be ``(n, d)``: tabular rows (standardized per feature, shown as a
        feature table), or ``(n, C, L)``: signals of ``C`` channels (standardized per channel,
        shown as line plots). :meth:`tensors` gives them back in that shape.

        Regression: float ``y`` of shape ``(n,)`` or ``(n, d)`` (finite; the same ``d`` in both
        splits) are targets, not labels: the dataset has ``num_classes == 0``, no class names,
        and is recorded with ``loss="mse"`` or a loss function of your own (see
        :class:`~sampletopo.recorder.LossRecorder`).

        ``features=(f_train, f_val)``, arrays of shape ``(n, d)`` with one finite row per sample,
        are the data's own features for the kNN graph (``features(kind="raw")``, and what
        ``"standardized"`` and ``"pca"`` start from) instead of the flattened inputs.

        Refused with one :class:`ParameterError` naming the split, the first bad sample and the
        fix (one NaN pixel would otherwise make every recorded loss NaN): ragged input, object
        arrays (``None``), strings, complex values, NaN or infinite pixels (or floats beyond
        float32's range), labels that are not integers, and labels outside ``[0, C)``, where
        ``C = len(class_names)``, or without class names at most :data:`MAX_CLASSES` (100,000;
        the class count is then the largest label + 1).

        Examples
        --------
        >>> rng = np.random.default_rng(0)
        >>> ds = Dataset.from_arrays("toy", train=(rng.random((20, 1, 4, 4)), np.arange(20) % 2),
        ...                          val=(rng.random((6, 1, 4, 4)), np.arange(6) % 2))
        >>> ds.n("train"), ds.num_classes
        (20, 2)
        """
        where = "Dataset.from_arrays"
        if not isinstance(name, str) or not name:
            raise invalid("name", "a non-empty str", name, where=where)
        names = _check_class_names(class_names, where=where)
        raw: dict[str, np.ndarray] = {}
        labels: dict[str, np.ndarray] = {}
        sample_shape: tuple[int, ...] | None = None
        given: dict[str, tuple[int, ...]] = {}
        for split, pair in zip(SPLITS, (train, val), strict=True):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise invalid(
                    split, "a pair (x, y) of arrays", where=where, got=type(pair).__name__
                )
        regression = _regression_targets(train[1], val[1], class_names=names, where=where)
        for split, pair in zip(SPLITS, (train, val), strict=True):
            x = _as_array(pair[0], what="x", where=f"{where} (split {split!r})")
            given[split] = tuple(int(v) for v in x.shape[1:])
            if x.ndim in (2, 3):
                # Rows (n, d) and signals (n, C, L) are kept as (n, d, 1, 1) and (n, C, L, 1).
                sample_shape = tuple(int(v) for v in x.shape[1:])
                x = x.reshape(*x.shape, *((1,) * (4 - x.ndim)))
            y = pair[1]
            if regression:  # the inputs take the usual checks, with stand-in labels
                targets = _check_targets(y, part=f"split {split!r}", where=where)
                y = np.zeros(targets.shape[0], dtype=np.int64)
            raw[split], labels[split] = _check_arrays(
                x,
                y,
                part=f"split {split!r}",
                where=where,
                num_classes=None if names is None else len(names),
            )
            if regression:
                labels[split] = targets
        if raw["train"].dtype != raw["val"].dtype or given["train"] != given["val"]:
            raise invalid(
                "val",
                "inputs of the train inputs' dtype and sample shape ((n, d) rows, (n, C, L) "
                "signals or (n, C, H, W) images)",
                where=where,
                got=f"train {raw['train'].dtype} {given['train']} and val "
                f"{raw['val'].dtype} {given['val']}",
            )
        if regression:
            if labels["train"].shape[1:] != labels["val"].shape[1:]:
                raise invalid(
                    "val",
                    "targets of the train targets' shape per sample",
                    where=where,
                    got=f"train {labels['train'].shape[1:]} and val {labels['val'].shape[1:]}",
                )
            names = []
        elif names is None:
            k = int(max(labels["train"].max(), labels["val"].max())) + 1
            names = [str(i) for i in range(k)]
        c, h, w = (int(v) for v in raw["train"].shape[1:])
        scale = 1.0 / 255.0 if raw["train"].dtype == np.uint8 else 1.0
        feats = _check_features(features, {s: raw[s].shape[0] for s in raw}, where=where)
        return cls(
            name=name,
            num_classes=len(names),
            input_shape=(c, h, w),
            class_names=names,
            _raw=raw,
            _labels=labels,
            _scale=scale,
            _sample_shape=sample_shape,
            _features=feats,
        )

    @property
    def is_regression(self) -> bool:
        """Whether ``y`` holds float regression targets (``num_classes == 0``), not labels."""
        return self.num_classes == 0

    def _check_split(self, split: str) -> str:
        return str(check_choice("split", split, sorted(self._raw), where=f"Dataset {self.name!r}"))

    def n(self, split: str) -> int:
        """Number of samples in ``split`` (``"train"`` or ``"val"``)."""
        return int(self._labels[self._check_split(split)].shape[0])

    def labels(self, split: str) -> np.ndarray:
        """Labels of ``split`` as an int64 array of shape ``(n,)``, in sample order (for
        regression: the float64 targets, ``(n,)`` or ``(n, d)``)."""
        return self._labels[self._check_split(split)].copy()

    def _pixels(self, split: str) -> np.ndarray:
        """Raw pixels of ``split`` in [0, 1] as float32 ``(n, C, H, W)``."""
        raw = self._raw[self._check_split(split)]
        return raw.astype(np.float32) * np.float32(self._scale)

    def _channel_stats(self) -> tuple[np.ndarray, np.ndarray]:
        if "stats" not in self._cache:
            px = self._pixels("train")
            mean = px.mean(axis=(0, 2, 3), dtype=np.float64)
            std = px.std(axis=(0, 2, 3), dtype=np.float64)
            std = np.where(std > 0, std, 1.0)
            self._cache["stats"] = (mean.astype(np.float32), std.astype(np.float32))
        return self._cache["stats"]

    def tensors(self, split: str) -> tuple[Any, Any]:
        """Model inputs and labels of ``split``: un-augmented, in stable sample order.

        Returns
        -------
        x : torch.Tensor
            float32 of shape ``(n, *sample_shape)`` (``(n, C, H, W)`` for images), standardized
            per channel (per feature for tabular rows) with the training split's statistics.
        y : torch.Tensor
            int64 of shape ``(n,)``.
        """
        import torch

        mean, std = self._channel_stats()
        x = (self._pixels(split) - mean[None, :, None, None]) / std[None, :, None, None]
        x = x.reshape(x.shape[0], *self.sample_shape)
        y = self._labels[split].copy()
        if self.is_regression:
            y = y.astype(np.float32)
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.from_numpy(y)

    def features(
        self,
        split: str,
        *,
        kind: FeatureKind = "raw",
        n_components: int = 50,
        path: str | Path | None = None,
    ) -> np.ndarray:
        """Input features of ``split`` for the kNN graph, one row per sample in sample order.

        Parameters
        ----------
        split : {"train", "val"}
            Which split.
        kind : {"raw", "standardized", "pca"}
            ``raw``: flattened pixels in [0, 1], or the data's own features when it brings
            them (``features=`` of :meth:`from_arrays`, an ``.npz``'s ``features_train``). ``standardized``: each feature shifted and
            scaled by the training split's mean and standard deviation (constant features are
            only shifted). ``pca``: standardized features projected on the first
            ``n_components`` principal axes fitted on the training split.
        n_components : int
            Number of PCA components (``kind="pca"`` only); at most the feature count.
        path : str or Path, optional
            A user ``.npy`` file of shape ``(n_samples, d)`` to use instead; its row count must
            equal ``self.n(split)``.

        Returns
        -------
        numpy.ndarray
            float32 array of shape ``(n, d)``.
        """
        n = self.n(split)
        if path is not None:
            return _load_user_features(Path(path), n, split)
        check_choice("kind", kind, ("raw", "standardized", "pca"), where="Dataset.features")
        flat = self._rows(split)
        if kind == "raw":
            return np.ascontiguousarray(flat, dtype=np.float32)
        if "feat_stats" not in self._cache:
            tr = self._rows("train").astype(np.float64)
            mu = tr.mean(axis=0)
            sd = tr.std(axis=0)
            self._cache["feat_stats"] = (mu, np.where(sd > 0, sd, 1.0))
        mu, sd = self._cache["feat_stats"]
        z = (flat.astype(np.float64) - mu) / sd
        if kind == "standardized":
            return z.astype(np.float32)
        d = z.shape[1]
        check_int(
            "n_components",
            n_components,
            1,
            d,
            where="Dataset.features",
            fix=f"{d} is the feature count of {self.name!r}.",
        )
        key = ("pca", int(n_components))
        if key not in self._cache:
            from sklearn.decomposition import PCA

            tr = self._rows("train").astype(np.float64)
            pca = PCA(n_components=int(n_components), svd_solver="full")
            pca.fit((tr - mu) / sd)
            self._cache[key] = pca
        return self._cache[key].transform(z).astype(np.float32)

    def _rows(self, split: str) -> np.ndarray:
        """One row per sample of the features ``kind="raw"`` means: the data's own features
        when it brings them, else the flattened inputs in [0, 1]."""
        if self._features is not None:
            return self._features[self._check_split(split)]
        return self._pixels(split).reshape(self.n(split), -1)

    def fingerprint(self, split: str) -> str:
        """Hex digest (16 characters) of the split's raw inputs, labels and shape.

        Two splits or two data sets with different contents get different fingerprints, so a
        cached graph or a loss table is never used with other data.
        """
        key = ("fp", split)
        if key not in self._cache:
            h = hashlib.sha256()
            raw = np.ascontiguousarray(self._raw[self._check_split(split)])
            h.update(f"{raw.dtype.str}|{raw.shape}|{self._scale!r}|".encode())
            h.update(raw.tobytes())
            if self.is_regression:  # targets: their values and shape (labels as before)
                t = np.ascontiguousarray(self._labels[split], dtype="<f8")
                h.update(f"targets{t.shape}".encode() + t.tobytes())
            else:
                h.update(np.ascontiguousarray(self._labels[split], dtype="<i8").tobytes())
            if self._features is not None:  # a cached graph of other features is not this one's
                f = np.ascontiguousarray(self._features[split], dtype="<f4")
                h.update(f"features|{f.shape}|".encode() + f.tobytes())
            self._cache[key] = h.hexdigest()[:16]
        return str(self._cache[key])

    def images(self, split: str) -> np.ndarray | None:
        """Images of ``split`` for display: float32 in [0, 1], ``(n, H, W)`` or ``(n, H, W, C)``;
        ``None`` for signals and tabular rows (see :attr:`kind` and :meth:`values`)."""
        if self.kind != "image":
            return None
        px = self._pixels(split)
        if px.shape[1] == 1:
            return px[:, 0]
        return np.ascontiguousarray(px.transpose(0, 2, 3, 1))

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}={self.n(s)}" for s in self._raw)
        return f"Dataset({self.name!r}, {sizes}, input_shape={self.input_shape}, classes={self.num_classes})"


# ---------------------------------------------------------------------------------------------
# Checks on input arrays: every way data gets in (from_arrays, the folder loaders, saved .npz
# datasets, user feature files) passes through these, so a NaN pixel or a label beyond the class
# count is refused where it enters instead of turning every recorded loss into NaN later.

# Without class names, the class count is inferred as the largest label + 1; a stray huge label
# (a uint64 id, a hash) must not silently make a model with billions of outputs.
MAX_CLASSES = 100_000

# Pixel dtypes by numpy kind: bool, unsigned and signed ints, floats. Complex, object (None),
# strings, bytes, datetimes and structured arrays have no meaning as pixels.
_PIXEL_KINDS = "buif"


def _first_odd_sample(x: Any) -> int:
    """Index of the first sample whose shape differs from sample 0's (for ragged input)."""
    try:
        first = np.shape(x[0])
        for i, sample in enumerate(x):
            if np.shape(sample) != first:
                return i
    except (TypeError, ValueError, IndexError):
        pass
    return 0


def _as_array(value: Any, *, what: str, where: str) -> np.ndarray:
    try:
        return np.asarray(value)
    except ValueError as exc:  # numpy refuses ragged nested sequences
        raise invalid(
            what,
            "an array of samples of one shape",
            where=where,
            got=f"a ragged one: sample {_first_odd_sample(value)} has another shape than sample 0",
            fix="Stack samples of one shape into one array first.",
        ) from exc


def _show(v: Any) -> str:
    """``repr`` of a value with numpy scalars shown as plain Python numbers (``nan``, ``7``)."""
    return repr(v.item() if isinstance(v, np.generic) else v)


def _first_bad_value(arr: np.ndarray) -> str:
    """Where the first value that is not a real number sits in an array of a non-numeric dtype:
    ``"sample 2: None"`` (for object arrays, the first non-number; else the first value)."""
    flat = arr.reshape(arr.shape[0], -1) if arr.ndim else arr.reshape(1, 1)
    if arr.dtype.kind == "O":
        for i, row in enumerate(flat):
            for v in row:
                if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                    return f"sample {i}: {_show(v)}"
    return f"sample 0: {_show(flat[0, 0])}" if flat.size else "no values"


def _check_arrays(
    x: Any, y: Any, *, part: str, where: str, num_classes: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(x, y)`` of one split as stored: ``x`` uint8 or float32 ``(n, C, H, W)``,
    ``y`` int64 ``(n,)``; refuse anything a model or the kNN graph cannot use.

    Refused with one :class:`ParameterError` naming ``part`` (e.g. ``"split 'train'"``), the
    first bad sample and the fix: ragged input, object arrays (``None``), strings, complex
    values, NaN or infinite pixels
    (also finite floats beyond float32's range, which become infinite when stored), labels that
    are not integers, and labels outside ``[0, num_classes)`` (``num_classes=None``: at most
    :data:`MAX_CLASSES` classes).
    """
    where = f"{where} ({part})"
    x = _as_array(x, what="x", where=where)
    y = _as_array(y, what="y", where=where)
    if x.ndim != 4 or y.ndim != 1 or x.shape[0] != y.shape[0] or x.shape[0] == 0 or 0 in x.shape:
        raise invalid(
            "x",
            "x of shape (n, C, H, W) and y of shape (n,) with n >= 1 (and C, H, W >= 1)",
            where=where,
            got=f"x {x.shape} and y {y.shape}",
        )
    if x.dtype.kind not in _PIXEL_KINDS:
        raise invalid(
            "x",
            "real numbers: floats in [0, 1] or uint8 in 0..255",
            where=where,
            got=f"dtype {x.dtype} ({_first_bad_value(x)})",
            fix="Replace missing values, then convert with np.asarray(x, dtype=np.float32).",
        )
    with np.errstate(over="ignore"):  # values beyond float32 become inf, refused just below
        stored = x if x.dtype == np.uint8 else x.astype(np.float32)
    if stored.dtype.kind == "f":
        finite = np.isfinite(stored).reshape(stored.shape[0], -1).all(axis=1)
        if not finite.all():
            i = int(np.flatnonzero(~finite)[0])
            j = int(np.flatnonzero(~np.isfinite(stored[i]).reshape(-1))[0])
            v = x[i].reshape(-1)[j]
            why = "" if not np.isfinite(v) else ", beyond float32's range"
            raise invalid(
                "x",
                "finite pixels",
                where=where,
                got=f"{int((~finite).sum())} sample(s) with NaN or infinite pixels (first: "
                f"sample {i}, value {_show(v)}{why})",
                fix="A single one makes every loss NaN: drop or repair those samples (e.g. "
                "np.nan_to_num) first.",
            )
    if y.dtype.kind not in "ui":
        raise invalid(
            "y",
            "labels: integers in [0, num_classes)",
            where=where,
            got=f"dtype {y.dtype} ({_first_bad_value(y)})",
            fix="Map classes to 0..num_classes-1, e.g. with np.unique(y, return_inverse=True).",
        )
    high = MAX_CLASSES if num_classes is None else num_classes
    bad = (y < 0) | (y >= high)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        if num_classes is None:
            allowed = f"[0, {MAX_CLASSES}) (class count inferred as the largest label + 1)"
            fix = (
                "Map classes to 0..num_classes-1 (np.unique(y, return_inverse=True)), or pass "
                "class_names to allow more classes."
            )
        else:
            allowed = f"[0, {num_classes}) ({num_classes} classes)"
            fix = "Map classes to 0..num_classes-1, or pass one class name per class."
        raise invalid(
            "y",
            f"labels: integers in {allowed}",
            where=where,
            got=f"{_show(y[i])} at sample {i} ({int(bad.sum())} label(s) outside)",
            fix=fix,
        )
    return np.ascontiguousarray(stored), np.ascontiguousarray(y, dtype=np.int64)


def _regression_targets(y_train: Any, y_val: Any, *, class_names: Any, where: str) -> bool:
    """Whether ``y`` holds float regression targets (in both splits) rather than labels; float
    targets in one split only, or class names with float targets, are refused."""
    ys = {"train": y_train, "val": y_val}
    floats = {s: _float_targets(y) for s, y in ys.items()}
    if floats["train"] != floats["val"]:
        odd = "train" if floats["train"] else "val"
        other = "val" if odd == "train" else "train"
        ys = {s: np.asarray(y) for s, y in ys.items()}
        raise invalid(
            "y",
            "integer class labels in both splits, or float regression targets in both",
            where=f"{where} (split {odd!r})",
            got=f"dtype {ys[odd].dtype} where split {other!r} holds {ys[other].dtype}",
            fix="Convert labels with y.astype(int), or both splits' targets to float.",
        )
    if floats["train"] and class_names:
        raise invalid(
            "class_names",
            "no class names for float targets (regression)",
            class_names,
            where=where,
            fix="Pass integer labels for classes, or leave class_names out.",
        )
    return floats["train"]


def _float_targets(y: Any) -> bool:
    """Whether ``y`` holds floats (regression targets) rather than integer labels."""
    try:
        return np.asarray(y).dtype.kind == "f"
    except (TypeError, ValueError):  # ragged: the label checks name it
        return False


def _check_targets(y: Any, *, part: str, where: str) -> np.ndarray:
    """Regression targets of one split as float64 ``(n,)`` or ``(n, d)``, finite."""
    where = f"{where} ({part})"
    y = _as_array(y, what="y", where=where)
    if y.ndim not in (1, 2) or y.shape[0] == 0 or 0 in y.shape:
        raise invalid(
            "y", "regression targets: floats of shape (n,) or (n, d)", where=where,
            got=f"shape {y.shape}",
        )  # fmt: skip
    y = y.astype(np.float64)
    bad = ~np.isfinite(y).reshape(y.shape[0], -1).all(axis=1)
    if bad.any():
        raise invalid(
            "y",
            "finite regression targets",
            where=where,
            got=f"{int(bad.sum())} sample(s) with NaN or infinite targets (first: sample "
            f"{int(np.flatnonzero(bad)[0])})",
            fix="Drop or repair those samples first: one makes every loss NaN.",
        )
    return np.ascontiguousarray(y)


def _check_features(
    features: Any, counts: dict[str, int], *, where: str, names: tuple[str, ...] = SPLITS
) -> dict[str, np.ndarray] | None:
    """``features`` as ``{"train": (n_train, d), "val": (n_val, d)}`` float32 arrays, or None;
    refused unless each holds one finite row per sample of its split, with one ``d``."""
    if features is None:
        return None
    if not isinstance(features, (tuple, list)) or len(features) != 2:
        raise invalid("features", "a pair (train, val) of (n, d) arrays", features, where=where)
    out: dict[str, np.ndarray] = {}
    for split, name, arr in zip(SPLITS, names, features, strict=True):
        a = _as_array(arr, what=name, where=where)
        n = counts[split]
        if a.ndim != 2 or a.shape[0] != n or a.shape[1] == 0 or a.dtype.kind not in "buif":
            raise invalid(
                name,
                f"real numbers of shape ({n}, d): one row of graph features per sample of "
                f"split {split!r}",
                where=where,
                got=f"shape {a.shape}, dtype {a.dtype}",
            )
        with np.errstate(over="ignore"):
            f = np.ascontiguousarray(a, dtype=np.float32)
        bad = ~np.isfinite(f).all(axis=1)
        if bad.any():
            raise invalid(
                name,
                "finite values",
                where=where,
                got=f"{int(bad.sum())} row(s) with NaN or infinite values (first: row "
                f"{int(np.flatnonzero(bad)[0])})",
                fix="The kNN graph needs finite features: repair those rows first.",
            )
        out[split] = f
    if out["train"].shape[1] != out["val"].shape[1]:
        raise invalid(
            names[1],
            f"rows of the {names[0]} features' width",
            where=where,
            got=f"{out['train'].shape[1]} and {out['val'].shape[1]} columns",
        )
    return out


def _check_class_names(class_names: Any, *, where: str) -> list[str] | None:
    if class_names is None:
        return None
    try:
        ok = not isinstance(class_names, (str, bytes)) and all(
            isinstance(c, str) for c in class_names
        )
    except TypeError:  # not iterable
        ok = False
    if not ok or not class_names:
        raise invalid(
            "class_names", "a non-empty list of str, one per class", class_names, where=where
        )
    return list(class_names)


def _load_user_features(path: Path, n: int, split: str) -> np.ndarray:
    where = "Dataset.features"
    if path.suffix != ".npy":
        raise invalid(
            "path",
            "'raw', 'standardized', 'pca' or the path of a .npy file",
            str(path),
            where=where,
            fix="Save your own features with numpy.save(path, array).",
        )
    check_path("path", path, where=where, exists="file")
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        # allow_pickle=False refuses object arrays with a ValueError; a damaged header too.
        raise DamagedFileError(
            path,
            f"it could not be read as a numeric .npy array ({exc})",
            "Save a float array with numpy.save(path, array).",
        ) from exc
    if not isinstance(arr, np.ndarray) or arr.ndim != 2 or arr.shape[0] != n or arr.shape[1] == 0:
        shape = getattr(arr, "shape", type(arr).__name__)
        raise invalid(
            "path",
            f"a file of shape ({n}, d) with d >= 1: one row per sample (split {split!r} has {n}) "
            "in the split's order",
            where=where,
            got=f"{str(path)!r} of shape {shape}",
        )
    if arr.dtype.kind not in _PIXEL_KINDS:
        raise invalid(
            "path",
            "a file of real numbers (complex values, strings and records have no distance for "
            "the kNN graph)",
            where=where,
            got=f"{str(path)!r} of dtype {arr.dtype}",
            fix="Save a float array.",
        )
    with np.errstate(over="ignore"):  # values beyond float32 become inf, refused just below
        out = np.ascontiguousarray(arr, dtype=np.float32)
    finite = np.isfinite(out).all(axis=1)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        j = int(np.flatnonzero(~np.isfinite(out[i]))[0])
        raise invalid(
            "path",
            "a file of finite values within float32's range",
            where=where,
            got=f"{str(path)!r}, which holds {int((~finite).sum())} row(s) with NaN or infinite "
            f"values, or values beyond float32's range (first: row {i}, column {j}, value "
            f"{_show(arr[i, j])})",
            fix="The kNN graph needs finite features: repair those rows first.",
        )
    return out


# ---------------------------------------------------------------------------------------------
# Splits


def _stratified_split(
    labels: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and val index arrays; each class gives ``round(val_fraction * count)`` to val."""
    rng = np.random.default_rng(seed)
    val: list[np.ndarray] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = int(round(val_fraction * idx.size))
        val.append(rng.permutation(idx)[:k])
    val_idx = np.sort(np.concatenate(val)) if val else np.zeros(0, dtype=np.int64)
    mask = np.ones(labels.size, dtype=bool)
    mask[val_idx] = False
    return np.flatnonzero(mask), val_idx


def _check_val_fraction(
    val_fraction: Any,
    *,
    allow_test: bool,
    data: str | None = None,
    where: str = "load_dataset",
    kind: str = "parameter",
) -> float | str:
    """``val_fraction`` checked: a float in (0, 1), or ``"test"`` where the data set has an
    official test set (``allow_test``; ``data`` names the data set in the message)."""
    if allow_test and val_fraction == "test":
        return "test"
    ok = isinstance(val_fraction, (float, int)) and not isinstance(val_fraction, bool)
    if not ok or not 0.0 < float(val_fraction) < 1.0:
        allowed = "a float in (0, 1) or 'test'" if allow_test else "a float in (0, 1)"
        fix = ""
        if val_fraction == "test" and not allow_test:
            having = ", ".join(sorted(_HAS_TEST))
            fix = (
                f"{data or 'This dataset'!s} has no official test set, so 'test' is not "
                f"available (it is for {having}, .npz files with x_val, image folders with "
                "val/ and import paths); pass a fraction, e.g. 0.2."
            )
        raise invalid("val_fraction", allowed, val_fraction, where=where, fix=fix, kind=kind)
    return float(val_fraction)


def _subsample(labels: np.ndarray, max_samples: int | None, seed: int) -> np.ndarray:
    """Sorted indices of a seeded, stratified subset of at most ``max_samples`` samples."""
    if max_samples is None or max_samples >= labels.size:
        return np.arange(labels.size)
    frac = max_samples / labels.size
    _, keep = _stratified_split(labels, frac, seed)
    return keep


# ---------------------------------------------------------------------------------------------
# Loaders: each returns (train_x, train_y, test_x or None, test_y or None, class_names, scale)

_Raw = tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None, list[str], float]
# Graph features that come with the data: (rows of the train arrays, rows of the test arrays).
_Feats = tuple[np.ndarray, np.ndarray | None] | None


def _load_digits(root: Path, seed: int) -> _Raw:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.images.astype(np.float32)[:, None, :, :] / np.float32(16.0)
    return x, d.target.astype(np.int64), None, None, [str(i) for i in range(10)], 1.0


def _load_synthetic(root: Path, seed: int) -> _Raw:
    # Templates depend on a fixed seed so every seed shares the same task; noise depends on seed
    # only through the split, which keeps the data identical across runs and variants.
    rng = np.random.default_rng(20240601)
    templates = rng.random((10, 1, 8, 8)).astype(np.float32)
    y = np.repeat(np.arange(10, dtype=np.int64), 50)
    x = templates[y] + 0.35 * rng.standard_normal((y.size, 1, 8, 8)).astype(np.float32)
    x = np.clip(x, 0.0, 1.0).astype(np.float32)
    return x, y, None, None, [f"class{i}" for i in range(10)], 1.0


CIFAR_HELP = (
    "Put the CIFAR-10 python version there: unpack cifar-10-python.tar.gz (from "
    "https://www.cs.toronto.edu/~kriz/cifar.html) so that {root}/cifar-10-batches-py/ holds "
    "data_batch_1 .. data_batch_5, test_batch and batches.meta, or pass --data-root DIR "
    "(data_root=...) pointing at the folder that contains cifar-10-batches-py. "
    "sampletopo never downloads data; see data/README.md."
)


# What CIFAR-10's python pickles are made of: dicts, lists, bytes and str, and numpy arrays
# (plus _codecs.encode, which Python 3 pickles use for bytes). Anything else a file asks the
# unpickler to import could run code when a shared run folder's data_root points at it.
_CIFAR_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _ForeignObject(pickle.UnpicklingError):
    """A pickle asked for a global that CIFAR-10 files never hold."""


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler that builds only plain data and numpy arrays, never other objects."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _CIFAR_GLOBALS:
            return super().find_class(module, name)
        raise _ForeignObject(f"{module}.{name}")


def _unpickle(path: Path) -> dict[str, Any]:
    # The CIFAR-10 python format is a pickle by definition. A restricted unpickler keeps a
    # tampered file (say, in a data_root a shared run config points at) from running code.
    try:
        with open(path, "rb") as fh:
            obj = _CifarUnpickler(fh, encoding="latin1").load()
    except _ForeignObject as exc:
        raise DamagedFileError(
            path,
            f"this CIFAR-10 file asks the unpickler for {exc}, which CIFAR-10 files never hold "
            "(only numpy arrays and plain data): it was refused without being run, since loading "
            "it could run code",
            "The file was altered or is not CIFAR-10: unpack cifar-10-python.tar.gz from its "
            "official source again.",
        ) from None
    except (pickle.UnpicklingError, EOFError, OSError, ValueError) as exc:
        raise DamagedFileError(
            path,
            f"this CIFAR-10 file could not be read ({type(exc).__name__}: {exc}): it is corrupt "
            "or truncated, or not a CIFAR-10 file",
            "Unpack cifar-10-python.tar.gz again.",
        ) from exc
    if not isinstance(obj, dict):
        raise DamagedFileError(
            path, "this CIFAR-10 file does not hold a dict", "Is it the wrong file?"
        )
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    d = _unpickle(path)
    if "data" not in d or "labels" not in d:
        raise DamagedFileError(
            path, "this CIFAR-10 file lacks the 'data' or 'labels' entry", "Is it the wrong file?"
        )
    where = f"CIFAR-10 file {str(path)!r}"
    data = _as_array(d["data"], what="'data'", where=where)
    if data.ndim != 2 or data.shape[1] != 3072:
        raise DamagedFileError(
            path, f"its 'data' has shape {data.shape}, expected (n, 3072)", "Is it the wrong file?"
        )
    # Casting floats or wider ints to uint8 would wrap or truncate silently: refuse instead.
    if data.dtype != np.uint8 and (
        data.dtype.kind not in "ui" or (data.size and (data.min() < 0 or data.max() > 255))
    ):
        raise DamagedFileError(
            path,
            f"its 'data' must hold bytes 0..255 (uint8); got dtype {data.dtype}: it is not the "
            "CIFAR-10 python version",
            "Unpack cifar-10-python.tar.gz again.",
        )
    x, y = _check_arrays(
        data.astype(np.uint8).reshape(-1, 3, 32, 32),
        d["labels"],
        part="this file",
        where=where,
        num_classes=10,
    )
    return x, y


def _load_cifar10(root: Path, seed: int) -> _Raw:
    base = root / "cifar-10-batches-py"
    if not base.is_dir() and (root / "data_batch_1").is_file():
        base = root
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
    missing = [n for n in names if not (base / n).is_file()]
    if missing:
        raise ParameterError(
            f"CIFAR-10 not found: {str(base)!r} lacks {missing}. "
            + CIFAR_HELP.format(root=str(root)),
            parameter="root",
        )
    parts = [_cifar_batch(base / f"data_batch_{i}") for i in range(1, 6)]
    tx = np.concatenate([p[0] for p in parts])
    ty = np.concatenate([p[1] for p in parts])
    vx, vy = _cifar_batch(base / "test_batch")
    meta = _unpickle(base / "batches.meta")
    names_ = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get("label_names", [])]
    if len(names_) != 10:
        names_ = [str(i) for i in range(10)]
    return tx, ty, vx, vy, names_, 1.0 / 255.0


MNIST_HELP = (
    "Put MNIST in torchvision's layout: {root}/MNIST/raw/ holding train-images-idx3-ubyte, "
    "train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (each may also "
    "be .gz), or pass --data-root DIR (data_root=...) pointing at the folder that contains MNIST/. "
    "sampletopo never downloads data; see data/README.md."
)


def _read_idx(path: Path) -> np.ndarray:
    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            buf = fh.read()
    except (OSError, EOFError) as exc:
        raise DamagedFileError(
            path, f"this MNIST file could not be read ({exc})", "Unpack the MNIST files again."
        ) from exc
    if len(buf) < 4 or buf[0] != 0 or buf[1] != 0 or buf[2] != 0x08:
        raise DamagedFileError(
            path,
            "this MNIST file is not an unsigned-byte IDX file",
            "Unpack the MNIST files again.",
        )
    ndim = buf[3]
    dims = [int.from_bytes(buf[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    start = 4 + 4 * ndim
    count = int(np.prod(dims))
    if len(buf) - start != count:
        raise DamagedFileError(
            path,
            f"this MNIST file is truncated or corrupt: its header says {dims} ({count} bytes) "
            f"but {len(buf) - start} bytes follow",
            "Unpack the MNIST files again.",
        )
    return np.frombuffer(buf, dtype=np.uint8, offset=start).reshape(dims)


def _load_mnist(root: Path, seed: int) -> _Raw:
    base = root / "MNIST" / "raw"
    if not base.is_dir() and (root / "raw").is_dir():
        base = root / "raw"
    files = {}
    missing = []
    for stem in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        for cand in (base / stem, base / (stem + ".gz")):
            if cand.is_file():
                files[stem] = cand
                break
        else:
            missing.append(stem)
    if missing:
        raise ParameterError(
            f"MNIST not found: {str(base)!r} lacks {missing}. " + MNIST_HELP.format(root=str(root)),
            parameter="root",
        )
    tx = _read_idx(files["train-images-idx3-ubyte"])[:, None]
    ty = _read_idx(files["train-labels-idx1-ubyte"]).astype(np.int64)
    vx = _read_idx(files["t10k-images-idx3-ubyte"])[:, None]
    vy = _read_idx(files["t10k-labels-idx1-ubyte"]).astype(np.int64)
    for what, xx, yy in (("train", tx, ty), ("t10k", vx, vy)):
        if xx.shape[0] != yy.shape[0]:
            raise DamagedFileError(
                base,
                f"its MNIST {what} images ({xx.shape[0]}) and labels ({yy.shape[0]}) differ in "
                "count",
                "Unpack the MNIST files again.",
            )
        # A label byte beyond 9 would reach cross_entropy as an out-of-range class.
        _check_arrays(
            xx, yy, part=f"the {what} files", where=f"MNIST in {str(base)!r}", num_classes=10
        )
    return tx, ty, vx, vy, [str(i) for i in range(10)], 1.0 / 255.0


_LOADERS: dict[str, Callable[[Path, int], _Raw]] = {
    "digits": _load_digits,
    "cifar10": _load_cifar10,
    "mnist": _load_mnist,
    "synthetic": _load_synthetic,
}
_HAS_TEST = {"cifar10", "mnist"}


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`, sorted (besides files and import paths)."""
    return sorted(_LOADERS)


def default_val_fraction(name: str) -> float | str:
    """The ``val_fraction`` that ``load_dataset(name)`` uses when none is given: ``"test"``
    where the data has a validation or test split of its own (CIFAR-10, MNIST, an ``.npz`` with
    ``x_val``, an image folder with ``val/``, an import path), else 0.2."""
    if name in _LOADERS:
        return "test" if name in _HAS_TEST else 0.2
    return "test" if _has_own_val(name) else 0.2


# ---------------------------------------------------------------------------------------------
# Data of your own: an .npz file, an image folder, or an import path returning a Dataset

IMAGEFOLDER = "imagefolder:"
NPZ_KEYS = ("x_train", "y_train", "x_val", "y_val", "class_names", "features_train", "features_val")

_DATA_WHAT = (
    f"a registered dataset ({', '.join(sorted(_LOADERS))}), the path of an .npz file, "
    "'imagefolder:FOLDER' or the import path 'pkg.module:function' of a function returning a "
    "sampletopo Dataset"
)


def data_spec(
    data: Any, *, where: str = "load_dataset", kind: str = "parameter", check: bool = True
) -> str:
    """``data`` as a run config stores it: a registered name as is, an ``.npz`` file or an
    image folder with its absolute path (checked to exist), an import path checked to import.

    >>> data_spec("digits")
    'digits'
    """
    from sampletopo._imports import import_object, is_import_path

    if isinstance(data, str) and data in _LOADERS:
        return data
    if isinstance(data, (str, Path)) and str(data).endswith(".npz"):
        path = Path(data).expanduser()
        if check:
            check_path("data", path, where=where, exists="file", kind=kind)
        return str(path.resolve())
    if isinstance(data, str) and data.startswith(IMAGEFOLDER):
        path = Path(data[len(IMAGEFOLDER) :]).expanduser()
        if check:
            check_path("data", path, where=where, exists="dir", kind=kind)
        return IMAGEFOLDER + str(path.resolve())
    if is_import_path(data):
        if check:
            obj = import_object(data, param="data", where=where, what="a data function", kind=kind)
            if not callable(obj):
                raise invalid(
                    "data",
                    "the import path of a function returning a sampletopo Dataset",
                    where=where,
                    kind=kind,
                    got=f"{data!r}, which names a {type(obj).__name__}",
                )
        return str(data)
    if isinstance(data, str) and data.isidentifier():
        check_choice(
            "data",
            data,
            list_datasets(),
            where=where,
            kind=kind,
            fix="Data of your own: the path of an .npz file (x_train, y_train, optionally "
            "x_val, y_val), 'imagefolder:FOLDER' or an import path 'pkg.module:function'.",
        )
    raise invalid("data", _DATA_WHAT, data, where=where, kind=kind)


def _has_own_val(spec: str) -> bool:
    if spec.endswith(".npz"):
        try:
            with np.load(spec, allow_pickle=False) as z:
                return "x_val" in z.files
        except (OSError, ValueError):
            return False  # reported by the loader, with the file's name
    if spec.startswith(IMAGEFOLDER):
        return (Path(spec[len(IMAGEFOLDER) :]) / "val").is_dir()
    return True  # an import path's Dataset has its own val split


def _load_npz(path: Path) -> tuple[_Raw, tuple[int, ...] | None, _Feats]:
    where = f"the data file {str(path)!r}"
    fix = (
        "Write it with np.savez(path, x_train=..., y_train=..., x_val=..., y_val=...) "
        "(x_val, y_val and class_names optional)."
    )
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as exc:
        raise DamagedFileError(path, f"it could not be read as an .npz file ({exc})", fix) from exc
    keys = sorted(arrays)
    missing = [k for k in ("x_train", "y_train") if k not in arrays]
    if ("x_val" in arrays) != ("y_val" in arrays):
        missing.append("y_val" if "x_val" in arrays else "x_val")
    if "features_val" in arrays and "features_train" not in arrays:
        missing.append("features_train")
    if "features_train" in arrays and "x_val" in arrays and "features_val" not in arrays:
        missing.append("features_val")
    if missing:
        raise invalid(
            "data",
            "an .npz file with x_train and y_train (and optionally x_val with y_val, "
            "class_names, features_train with features_val)",
            where=where,
            got=f"keys {keys}: {missing} missing",
            fix=fix,
        )
    unknown = [k for k in keys if k not in NPZ_KEYS]
    if unknown:
        raise invalid(
            "data",
            f"an .npz file whose keys are among {list(NPZ_KEYS)}",
            where=where,
            got=f"keys {keys} ({unknown} unknown)",
            fix="Rename them (x_train, y_train, x_val, y_val, class_names).",
        )
    names = None
    if "class_names" in arrays:
        names = _check_class_names([str(c) for c in arrays["class_names"].tolist()], where=where)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    shapes = {}
    for split in SPLITS:
        if f"x_{split}" not in arrays:
            continue
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim not in (2, 3, 4) or y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise invalid(
                f"x_{split}",
                f"an array of n samples, shaped (n, d) rows, (n, C, L) signals or (n, C, H, W) "
                f"images, with y_{split} of shape (n,)",
                where=where,
                got=f"x_{split} {x.shape} and y_{split} {y.shape}",
                fix=fix,
            )
        shapes[split] = x.shape[1:]
        x4 = x.reshape(*x.shape, *((1,) * (4 - x.ndim)))
        out[split] = _check_arrays(
            x4,
            y,
            part=f"x_{split}, y_{split}",
            where=where,
            num_classes=None if names is None else len(names),
        )
    if "val" in shapes and shapes["val"] != shapes["train"]:
        raise invalid(
            "x_val",
            "samples of the shape of x_train's",
            where=where,
            got=f"x_train samples {shapes['train']}, x_val samples {shapes['val']}",
        )
    tx, ty = out["train"]
    vx, vy = out.get("val", (None, None))
    if names is None:
        k = int(max(ty.max(), -1 if vy is None else vy.max())) + 1
        names = [str(i) for i in range(k)]
    if vx is not None and tx.dtype != vx.dtype:  # uint8 beside floats: both as floats in [0, 1]
        tx, vx = (a.astype(np.float32) / np.float32(255) if a.dtype == np.uint8 else a
                  for a in (tx, vx))  # fmt: skip
    scale = 1.0 / 255.0 if tx.dtype == np.uint8 else 1.0
    sample_shape = tuple(int(v) for v in shapes["train"])
    feats: _Feats = None
    if "features_train" in arrays:
        fval = arrays.get("features_val")
        checked = _check_features(
            (arrays["features_train"], arrays["features_train"] if fval is None else fval),
            {"train": tx.shape[0], "val": tx.shape[0] if vx is None else vx.shape[0]},
            where=where,
            names=("features_train", "features_val"),
        )
        assert checked is not None
        feats = (checked["train"], None if fval is None else checked["val"])
    raw = (tx, ty, vx, vy, names, scale)
    return raw, (sample_shape if len(sample_shape) < 3 else None), feats


def _load_imagefolder(folder: Path) -> _Raw:
    """torchvision's ImageFolder layout: ``FOLDER/train/<class>/*.png`` (and ``val/<class>/``),
    or ``FOLDER/<class>/*.png``; every image of one size, read as RGB uint8."""
    where = f"the image folder {str(folder)!r}"
    try:
        from torchvision.datasets import ImageFolder
    except ImportError:
        raise ParameterError(
            f"Reading {where} needs torchvision; install it (pip install torchvision).",
            parameter="data",
        ) from None
    root = folder / "train" if (folder / "train").is_dir() else folder
    parts: dict[str, Any] = {}
    for split, sub in (("train", root), ("val", folder / "val")):
        if split == "val" and not (folder / "train").is_dir() or not sub.is_dir():
            continue
        try:
            parts[split] = ImageFolder(str(sub))
        except (FileNotFoundError, OSError) as exc:
            raise invalid(
                "data",
                "'imagefolder:FOLDER' with FOLDER/train/<class>/<image> (and optionally "
                "FOLDER/val/<class>/<image>), or FOLDER/<class>/<image>",
                where=where,
                got=f"{str(sub)!r}: {exc}",
            ) from None
    classes = parts["train"].classes
    if "val" in parts and parts["val"].classes != classes:
        raise invalid(
            "data",
            "an image folder whose val/ has the same class folders as train/",
            where=where,
            got=f"train classes {classes}, val classes {parts['val'].classes}",
        )
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split, folder_ds in parts.items():
        imgs, sizes = [], set()
        for path, _ in folder_ds.samples:
            a = np.asarray(folder_ds.loader(path), dtype=np.uint8)
            sizes.add(a.shape)
            if len(sizes) > 1:
                raise invalid(
                    "data",
                    "images of one size",
                    where=where,
                    got=f"sizes {sorted(sizes)} (e.g. {path!r})",
                    fix="Resize them to one size first (e.g. with PIL's Image.resize).",
                )
            imgs.append(a)
        x = np.stack(imgs).transpose(0, 3, 1, 2)
        out[split] = (x, np.asarray(folder_ds.targets, dtype=np.int64))
    tx, ty = out["train"]
    vx, vy = out.get("val", (None, None))
    return tx, ty, vx, vy, list(classes), 1.0 / 255.0


def _load_function(spec: str, seed: int) -> tuple[_Raw, tuple[int, ...] | None, str, _Feats]:
    from sampletopo._imports import import_object

    fn = import_object(spec, param="data", where="load_dataset", what="a data function",
                       kind="parameter")  # fmt: skip
    try:
        import inspect

        takes_seed = "seed" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        takes_seed = False
    ds = fn(seed=seed) if takes_seed else fn()
    if not isinstance(ds, Dataset):
        raise invalid(
            "data",
            "the import path of a function returning a sampletopo Dataset",
            where="load_dataset",
            got=f"{spec!r}, which returned a {type(ds).__name__}",
            fix="Return Dataset.from_arrays(name, train=(x, y), val=(x, y)) from it.",
        )
    raw = (
        ds._raw["train"], ds._labels["train"], ds._raw["val"], ds._labels["val"],
        list(ds.class_names), ds._scale,
    )  # fmt: skip
    feats = None if ds._features is None else (ds._features["train"], ds._features["val"])
    return raw, ds._sample_shape, ds.name, feats


def _load_source(
    spec: str, root: Path, seed: int
) -> tuple[_Raw, tuple[int, ...] | None, str, _Feats]:
    """The arrays of ``spec`` (already :func:`data_spec`'d), its sample shape, its name and
    the graph features it brings."""
    if spec in _LOADERS:
        return _LOADERS[spec](root, seed), None, spec, None
    if spec.endswith(".npz"):
        raw, shape, feats = _load_npz(Path(spec))
        return raw, shape, Path(spec).stem, feats
    if spec.startswith(IMAGEFOLDER):
        folder = Path(spec[len(IMAGEFOLDER) :])
        return _load_imagefolder(folder), None, folder.name, None
    return _load_function(spec, seed)


def load_dataset(
    name: str | Path,
    *,
    root: str | Path = "data",
    seed: int = 0,
    val_fraction: float | str | None = None,
    max_samples: int | None = None,
) -> Dataset:
    """Load a data set by name with a fixed, seeded train/validation split.

    Parameters
    ----------
    name : str or Path
        One of :func:`list_datasets`, or data of your own:

        - the path of an ``.npz`` file with ``x_train``, ``y_train`` and optionally ``x_val``,
          ``y_val`` (then ``val_fraction`` defaults to ``"test"``: that split),
          ``class_names`` and ``features_train``/``features_val`` (the kNN graph's raw
          features, ``(n, d)``). ``x`` is ``(n, d)`` rows, ``(n, C, L)`` signals or ``(n, C, H, W)``
          images (floats, or uint8 0..255), ``y`` integer labels from 0;
        - ``"imagefolder:FOLDER"``: torchvision's ImageFolder layout, ``FOLDER/train/<class>/``
          and optionally ``FOLDER/val/<class>/`` (else ``FOLDER/<class>/``), images of one size
          read as RGB;
        - an import path ``"pkg.module:function"`` of a function returning a :class:`Dataset`
          (called with ``seed=`` when it takes one); its val split is ``"test"``.
    root : str or Path
        Folder holding local data sets in torchvision's on-disk format (``cifar10``, ``mnist``).
        Not used by ``digits`` and ``synthetic``.
    seed : int
        Seed of the stratified split (and of ``max_samples`` subsampling), in
        ``[0, 2**63 - 1]`` (run configs store it as a 64-bit int).
    val_fraction : float, "test" or None
        Fraction of each class put in ``val``, or ``"test"`` to use the official test set as
        ``val`` (``cifar10``, ``mnist`` only). ``None`` means the data set's default: ``0.2`` for
        ``digits`` and ``synthetic``, ``"test"`` for ``cifar10`` and ``mnist``.
    max_samples : int, optional
        Keep a seeded, stratified subset of at most this many samples per split (useful to
        study CIFAR-10 on a laptop). ``None`` keeps everything.

    Returns
    -------
    Dataset

    Examples
    --------
    >>> ds = load_dataset("digits", seed=0)
    >>> ds.n("train") + ds.n("val"), ds.input_shape
    (1797, (1, 8, 8))
    """
    name = data_spec(name, where="load_dataset")
    seed = check_int(
        "seed",
        seed,
        0,
        MAX_SEED,
        where="load_dataset",
        fix="Seeds are stored as int64 in run configs (data_seed, --data-seed).",
    )
    if max_samples is not None and (
        not isinstance(max_samples, (int, np.integer)) or max_samples < 10
    ):
        raise invalid("max_samples", "None or an int >= 10", max_samples, where="load_dataset")
    root = Path(root)
    (tx, ty, test_x, test_y, class_names, scale), sample_shape, title, own = _load_source(
        name, root, int(seed)
    )
    feats: dict[str, np.ndarray] | None = None
    vf = ("test" if test_x is not None else 0.2) if val_fraction is None else val_fraction
    vf = _check_val_fraction(vf, allow_test=test_x is not None, data=name)
    if vf == "test":
        assert test_x is not None and test_y is not None
        raw = {"train": tx, "val": test_x}
        labels = {"train": ty, "val": test_y}
        if own is not None and own[1] is not None:
            feats = {"train": own[0], "val": own[1]}
    else:
        tr, va = _stratified_split(ty, float(vf), int(seed))
        raw = {"train": tx[tr], "val": tx[va]}
        labels = {"train": ty[tr], "val": ty[va]}
        if own is not None:
            feats = {"train": own[0][tr], "val": own[0][va]}
    if max_samples is not None:
        for s in SPLITS:
            keep = _subsample(labels[s], int(max_samples), int(seed) + (0 if s == "train" else 1))
            raw[s], labels[s] = raw[s][keep], labels[s][keep]
            if feats is not None:
                feats[s] = feats[s][keep]
    for s in SPLITS:
        raw[s] = np.ascontiguousarray(raw[s])
        labels[s] = np.ascontiguousarray(labels[s], dtype=np.int64)
        if raw[s].shape[0] == 0:
            raise invalid(
                "val_fraction",
                "large enough to leave samples in both splits",
                vf,
                where="load_dataset",
                fix=f"Split {s!r} of {name!r} is empty: raise 'val_fraction'.",
            )
    shape = tuple(int(v) for v in raw["train"].shape[1:])
    return Dataset(
        name=title,
        _sample_shape=sample_shape,
        _features=feats,
        num_classes=len(class_names),
        input_shape=(shape[0], shape[1], shape[2]),
        class_names=list(class_names),
        _raw=raw,
        _labels=labels,
        _scale=float(scale),
        settings={
            "data": name,
            "data_root": str(root.resolve()),
            "data_seed": int(seed),
            "val_fraction": vf,
            "max_samples": int(max_samples or 0),
        },
    )
