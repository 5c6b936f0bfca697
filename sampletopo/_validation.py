"""The checks every module shares, and the one form of their messages.

Every check raises :class:`~sampletopo._errors.ParameterError` with one message form, after
scikit-learn's ``utils/_param_validation.py``::

    The 'k' parameter of knn_graph must be an int in the range [1, 499]. Got 500 instead. FIX

``name`` is the parameter, ``where`` the function (or ``"sampletopo train"`` for a command-line
flag, ``"model 'mlp'"`` for a model option), ``kind`` what the name is (``"parameter"``,
``"flag"``, ``"setting"``, ``"option"``, ``"entry"``), and ``fix`` a sentence saying what to do
when the allowed values alone do not. Checks return the value converted (an ``int``, a
``float``, an array), so a call site reads ``k = check_int("k", k, 1, n - 1, where=...)``.

Nothing here knows about graphs, models or files beyond their names; the bounds shared by every
entry point (seeds, epochs, threads) are here so that each is defined once.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sampletopo._errors import ParameterError
from sampletopo._names import SPLITS, TREES

__all__ = [
    "MAX_EPOCH",
    "MAX_SEED",
    "as_index_array",
    "available_memory",
    "bytes_text",
    "as_real_array",
    "check_bool",
    "check_choice",
    "check_finite_values",
    "check_instance",
    "check_int",
    "check_real",
    "check_split",
    "check_tree",
    "invalid",
    "max_threads",
    "ranges_text",
    "show",
]

# Bounds shared by every entry point, chosen so a value that passes fits wherever it is stored.
# Seeds: run configs are TOML (64-bit signed ints) and torch.manual_seed takes at most 2**64 - 1.
MAX_SEED = 2**63 - 1
# Epochs: the loss tables' ``epoch`` column is a Parquet int32.
MAX_EPOCH = 2**31 - 1

_TREE_MEANING = {
    "join": "sublevel sets: valleys, learned regions",
    "split": "superlevel sets: peaks, hard regions",
}


def max_threads() -> int:
    """The most CPU threads sampletopo accepts: four per core of this machine, at least 16 and
    at most 256.

    More threads than cores only add contention; far more (``--threads 100000``) makes OpenMP
    and BLAS libraries fail to start with errors that name neither the setting nor the fix.
    """
    return int(min(256, max(16, 4 * (os.cpu_count() or 1))))


def available_memory() -> int | None:
    """Bytes of memory this machine can give a new allocation now (Linux: ``MemAvailable``;
    elsewhere the free physical pages), or ``None`` when it cannot tell."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def bytes_text(n: float) -> str:
    """A byte count as messages show it: ``'7.1 PiB'``, ``'512 B'``.

    >>> bytes_text(7.11 * 2**50), bytes_text(512)
    ('7.1 PiB', '512 B')
    """
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
    v = float(n)
    for unit in units:
        if v < 1024 or unit == units[-1]:
            return f"{v:.0f} {unit}" if unit == "B" else f"{v:.2g} {unit}"
        v /= 1024
    return f"{v:.2g} EiB"  # pragma: no cover


# ---------------------------------------------------------------------------------------------
# The message


def show(value: Any) -> str:
    """``value`` as a message shows it: ``repr`` of plain Python values (numpy scalars as the
    Python number), arrays by shape and dtype, anything long cut at 80 characters.

    >>> show(np.int64(3)), show("x"), show(np.zeros((2, 3)))
    ('3', "'x'", 'an array of shape (2, 3) and dtype float64')
    """
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    if isinstance(value, (str, os.PathLike)):
        return repr(str(value))  # names and paths in full
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def invalid(
    name: str,
    allowed: str,
    value: Any = None,
    *,
    where: str | None,
    fix: str = "",
    got: str | None = None,
    kind: str = "parameter",
) -> ParameterError:
    """The :class:`ParameterError` of a value that is not allowed, in the one message form.

    ``got`` replaces ``show(value)`` where the value itself says less than a description of it
    ("complex numbers (dtype complex128)").

    >>> str(invalid("k", "an int in the range [1, 9]", 10, where="knn_graph"))
    "The 'k' parameter of knn_graph must be an int in the range [1, 9]. Got 10 instead."
    """
    head = f"The {name!r} {kind}" + (f" of {where}" if where else "")
    msg = f"{head} must be {allowed}. Got {show(value) if got is None else got} instead."
    if fix:
        msg += f" {fix}"
    return ParameterError(msg, parameter=name)


def _num(v: float) -> str:
    """A bound as messages show it: ``1e6`` rather than ``1e+06`` or ``1000000.0``."""
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if float(v).is_integer() and abs(v) < 1e6:
        return str(int(v))
    return f"{v:g}".replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")


# ---------------------------------------------------------------------------------------------
# Scalars


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_int(
    name: str,
    value: Any,
    low: int | None,
    high: int | None = None,
    *,
    where: str | None,
    fix: str = "",
    kind: str = "parameter",
) -> int:
    """``value`` as an ``int`` if it is one (bools refused) with ``low <= value <= high``
    (``None``: unbounded on that side).

    >>> check_int("k", 3, 1, 9, where="knn_graph")
    3
    """
    if _is_int(value) and (low is None or value >= low) and (high is None or value <= high):
        return int(value)
    lo = "-inf" if low is None else str(low)
    hi = "inf" if high is None else str(high)
    raise invalid(name, f"an int in the range [{lo}, {hi}]", value, where=where, fix=fix, kind=kind)


def check_real(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    allow_inf: bool = False,
    where: str | None,
    fix: str = "",
    kind: str = "parameter",
) -> float:
    """``value`` as a ``float`` if it is a real number (an int or a float; bools and NaN refused)
    in the range from ``low`` to ``high`` (``None``: unbounded; ``*_open``: that end excluded).
    Infinite values pass only with ``allow_inf`` (and when the range reaches them).

    >>> check_real("lr", 0.1, low=0, low_open=True, where="TrainConfig")
    0.1
    """
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )
    v = float(value) if ok else math.nan
    if ok and not math.isnan(v) and (allow_inf or math.isfinite(v)):
        above = low is None or (v > low if low_open else v >= low)
        below = high is None or (v < high if high_open else v <= high)
        if above and below:
            return v
    lo = "-inf" if low is None else _num(low)
    hi = "inf" if high is None else _num(high)
    left = "(" if low is None or low_open else "["
    right = ")" if (high is None and not allow_inf) or high_open else "]"
    allowed = f"a real number in the range {left}{lo}, {hi}{right}"
    raise invalid(name, allowed, value, where=where, fix=fix, kind=kind)


def check_bool(name: str, value: Any, *, where: str | None, kind: str = "parameter") -> bool:
    """``value`` if it is a ``bool`` (numpy's too); ``0``/``1`` and strings are refused."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise invalid(name, "a bool (True or False)", value, where=where, kind=kind)


def check_choice(
    name: str,
    value: Any,
    choices: Iterable[Any],
    *,
    where: str | None,
    fix: str = "",
    kind: str = "parameter",
    meaning: dict[Any, str] | None = None,
) -> Any:
    """``value`` if it is one of ``choices``; ``meaning`` explains each choice in the message.

    >>> check_choice("metric", "l2", ("l2", "cosine"), where="knn_graph")
    'l2'
    >>> check_choice("metric", "l1", ("l2", "cosine"), where="knn_graph")
    Traceback (most recent call last):
    ...
    sampletopo._errors.ParameterError: The 'metric' parameter of knn_graph must be 'l2' or 'cosine'. Got 'l1' instead.
    """
    options = tuple(choices)
    try:
        if value in options and not isinstance(value, (list, dict, set, np.ndarray)):
            return value
    except TypeError:  # unhashable or uncomparable: not one of them
        pass
    shown = [repr(c) + (f" ({meaning[c]})" if meaning and c in meaning else "") for c in options]
    if len(shown) > 2:
        allowed = "one of " + ", ".join(shown)
    else:
        allowed = " or ".join(shown)
    raise invalid(name, allowed, value, where=where, fix=fix, kind=kind)


def check_split(
    value: Any,
    *,
    where: str | None,
    allowed: Sequence[str] = SPLITS,
    name: str = "split",
    fix: str = "",
    kind: str = "parameter",
) -> str:
    """``value`` if it is a data split (``"train"``/``"val"``), or one of ``allowed`` (e.g. the
    splits a run recorded)."""
    return str(check_choice(name, value, allowed, where=where, fix=fix, kind=kind))


def check_tree(
    value: Any, *, where: str | None, both: bool = False, name: str = "tree", fix: str = ""
) -> str:
    """``value`` if it is a merge tree (``"join"``/``"split"``, or ``"both"`` with ``both``)."""
    choices: tuple[str, ...] = (*TREES, "both") if both else TREES
    meaning = {**_TREE_MEANING, "both": "split rows first"}
    return str(check_choice(name, value, choices, where=where, fix=fix, meaning=meaning))


def check_instance(
    name: str,
    value: Any,
    types: type | tuple[type, ...],
    *,
    what: str,
    where: str | None,
    fix: str = "",
    kind: str = "parameter",
) -> Any:
    """``value`` if it is an instance of ``types``; ``what`` names them for the message
    ("a sampletopo Graph")."""
    if isinstance(value, types):
        return value
    raise invalid(name, what, where=where, fix=fix, got=f"{type(value).__name__}", kind=kind)


def check_path(
    name: str,
    value: Any,
    *,
    where: str | None,
    exists: str | None = None,
    suffix: str | None = None,
    kind: str = "parameter",
) -> Path:
    """``value`` as a :class:`~pathlib.Path` (a ``str`` or ``os.PathLike``).

    ``exists="dir"`` or ``"file"`` also requires an existing folder or file there; ``suffix``
    a name that ends in it (``".parquet"``).
    """
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise invalid(name, "a path (str or pathlib.Path)", value, where=where, kind=kind)
    p = Path(value)
    if suffix is not None and p.suffix != suffix:
        raise invalid(
            name,
            f"a path ending in {suffix}",
            str(p),
            where=where,
            fix=f"Add the suffix, e.g. {str(p.with_name(p.name + suffix))!r}.",
            kind=kind,
        )
    if exists == "dir" and not p.is_dir():
        what = "is a file, not a folder" if p.exists() else "does not exist"
        raise invalid(name, "an existing folder", str(p), where=where, kind=kind, fix=f"It {what}.")
    if exists == "file" and not p.is_file():
        what = "is a folder, not a file" if p.exists() else "does not exist"
        raise invalid(name, "an existing file", str(p), where=where, kind=kind, fix=f"It {what}.")
    return p


# ---------------------------------------------------------------------------------------------
# Arrays


def as_real_array(value: Any, *, name: str, where: str, fix: str = "") -> np.ndarray:
    """Return ``value`` as an array of real numbers (bool, integer or float dtype), unchanged.

    Refuses, each with its own message, what numpy would otherwise convert silently or fail on
    deep inside a computation: ragged nesting, strings, complex numbers (``np.asarray(...,
    dtype=float)`` drops the imaginary part with only a warning) and objects that are not numbers.
    An object array of plain numbers (e.g. from pandas) is converted to float64.
    """
    allowed = "an array of real numbers"
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise invalid(
            name,
            "a rectangular array of real numbers",
            where=where,
            got=f"something numpy cannot make one array of ({exc})",
            fix="Check that every row has the same length.",
        ) from exc
    kind = arr.dtype.kind
    if kind == "O":
        try:
            return arr.astype(np.float64)
        except (ValueError, TypeError) as exc:
            got, how = f"objects that are not real numbers ({exc})", "Pass a numeric array."
            raise invalid(name, allowed, where=where, got=got, fix=f"{how} {fix}".rstrip()) from exc
    if kind not in "biuf":
        got, how = f"dtype {arr.dtype}", ""
        if kind == "c":
            got = f"complex numbers (dtype {arr.dtype})"
            how = "Pass real values, e.g. np.real(x) or np.abs(x)."
        elif kind in "USa":
            got = f"strings (dtype {arr.dtype}), e.g. {arr.reshape(-1)[:1].tolist()}"
            how = "Convert them to numbers first."
        raise invalid(name, allowed, where=where, got=got, fix=f"{how} {fix}".strip())
    return arr


def as_index_array(value: Any, *, name: str, where: str, what: str = "sample ids") -> np.ndarray:
    """Return ``value`` as a 1-D int64 array of whole numbers; refuse fractions, NaN and bools.

    Floats are accepted only when every value is a whole number (``3.0``), so ``0.5`` is never
    truncated to ``0``. Ranges are the caller's to check.
    """
    arr = as_real_array(value, name=name, where=where).reshape(-1)
    allowed = f"an array of integer {what}"
    if arr.dtype.kind == "b":
        raise invalid(name, allowed, where=where, got="booleans", fix="Use np.flatnonzero(mask).")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise invalid(
                name,
                allowed,
                where=where,
                got=f"{float(arr[i])!r} at position {i}",
                fix=f"Pass whole numbers ({what} are never rounded).",
            )
        if arr.size and np.abs(arr).max() > 2**62:
            raise invalid(
                name, allowed, where=where, got=f"ids too large for int64 ({np.abs(arr).max():g})"
            )
    return arr.astype(np.int64)


def check_finite_values(
    values: Any, n: int | None, *, name: str = "values", where: str
) -> np.ndarray:
    """Return a 1-D float64 copy of ``values``; refuse NaN/inf, non-numbers and a wrong length."""
    arr = np.array(as_real_array(values, name=name, where=where), dtype=np.float64)
    per_vertex = "a 1-D array with one value per vertex"
    if arr.ndim != 1:
        raise invalid(name, per_vertex, where=where, got=f"shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise invalid(
            name,
            f"{per_vertex} ({n})",
            where=where,
            got=f"an array that has {arr.shape[0]} values but the graph has {n} vertices",
            fix="Pass one value per vertex, in vertex order.",
        )
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = np.flatnonzero(bad)
        raise invalid(
            name,
            "finite",
            where=where,
            got=f"{idx.size} non-finite value(s) (first at index {idx[0]}: {arr[idx[0]]!r})",
            fix="Merge trees need finite values: drop or repair those samples first.",
        )
    return arr


# ---------------------------------------------------------------------------------------------
# Text


def ranges_text(values: Any) -> str:
    """Integers as compact ranges for messages, e.g. epochs present or missing.

    >>> ranges_text([0, 1, 2, 3, 5, 7, 8])
    '0-3, 5, 7-8'
    """
    parts: list[str] = []
    vals = sorted(int(v) for v in values)
    i = 0
    while i < len(vals):
        j = i
        while j + 1 < len(vals) and vals[j + 1] == vals[j] + 1:
            j += 1
        parts.append(str(vals[i]) if i == j else f"{vals[i]}-{vals[j]}")
        i = j + 1
    return ", ".join(parts)
