"""The package's one error type and the checks every module shares.

Messages follow one pattern: which parameter, what is allowed, what was given, how to fix it.
Nothing here knows about graphs, models or files.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class SampletopoError(ValueError):
    """Bad input to sampletopo: the message names the value and the fix.

    Subclasses ``ValueError`` so callers that already catch ``ValueError`` keep working.
    """


# Bounds shared by every entry point, chosen so a value that passes fits wherever it is stored.
# Seeds: run configs are TOML (64-bit signed ints) and torch.manual_seed takes at most 2**64 - 1.
MAX_SEED = 2**63 - 1
# Epochs: the loss tables' ``epoch`` column is a Parquet int32.
MAX_EPOCH = 2**31 - 1


def check_int_range(
    name: str, value: Any, low: int, high: int | None, *, where: str, fix: str = ""
) -> int:
    """Return ``value`` as an int if ``low <= value <= high`` (``high=None``: no upper bound)."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if ok and value >= low and (high is None or value <= high):
        return int(value)
    hi = "inf" if high is None else str(high)
    msg = f"The {name!r} parameter of {where} must be an int in the range [{low}, {hi}]. Got {value!r} instead."
    if fix:
        msg += f" {fix}"
    raise SampletopoError(msg)


def check_finite_values(
    values: Any, n: int | None, *, name: str = "values", where: str
) -> np.ndarray:
    """Return a 1-D float64 copy of ``values``; refuse NaN/inf, non-numbers and a wrong length."""
    arr = np.array(as_real_array(values, name=name, where=where), dtype=np.float64)
    if arr.ndim != 1:
        raise SampletopoError(
            f"{where}: {name!r} must be 1-D with one value per vertex. Got shape {arr.shape}."
        )
    if n is not None and arr.shape[0] != n:
        raise SampletopoError(
            f"{where}: {name!r} has {arr.shape[0]} values but the graph has {n} vertices. "
            "Pass one value per vertex, in vertex order."
        )
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = np.flatnonzero(bad)
        raise SampletopoError(
            f"{where}: {name!r} holds {idx.size} non-finite value(s) (first at index {idx[0]}: "
            f"{arr[idx[0]]!r}). Merge trees need finite values: drop or repair those samples first."
        )
    return arr


def as_real_array(value: Any, *, name: str, where: str, fix: str = "") -> np.ndarray:
    """Return ``value`` as an array of real numbers (bool, integer or float dtype), unchanged.

    Refuses, each with its own message, what numpy would otherwise convert silently or fail on
    deep inside a computation: ragged nesting, strings, complex numbers (``np.asarray(...,
    dtype=float)`` drops the imaginary part with only a warning) and objects that are not numbers.
    An object array of plain numbers (e.g. from pandas) is converted to float64.
    """
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise SampletopoError(
            f"{where}: {name!r} must be a rectangular array of real numbers, but numpy cannot make "
            f"one array of it ({exc}). Check that every row has the same length."
        ) from exc
    kind = arr.dtype.kind
    if kind == "c":
        raise SampletopoError(
            f"{where}: {name!r} holds complex numbers (dtype {arr.dtype}). Pass real values, e.g. "
            f"np.real(x) or np.abs(x). {fix}".rstrip()
        )
    if kind in "USa":
        raise SampletopoError(
            f"{where}: {name!r} holds strings (dtype {arr.dtype}), e.g. {arr.reshape(-1)[:1].tolist()}. "
            f"Convert them to numbers first. {fix}".rstrip()
        )
    if kind == "O":
        try:
            return arr.astype(np.float64)
        except (ValueError, TypeError) as exc:
            raise SampletopoError(
                f"{where}: {name!r} holds objects that are not real numbers ({exc}). Pass a numeric "
                f"array. {fix}".rstrip()
            ) from exc
    if kind not in "biuf":
        raise SampletopoError(
            f"{where}: {name!r} must hold real numbers. Got dtype {arr.dtype}. {fix}".rstrip()
        )
    return arr


def as_index_array(value: Any, *, name: str, where: str, what: str = "sample ids") -> np.ndarray:
    """Return ``value`` as a 1-D int64 array of whole numbers; refuse fractions, NaN and bools.

    Floats are accepted only when every value is a whole number (``3.0``), so ``0.5`` is never
    truncated to ``0``. Ranges are the caller's to check.
    """
    arr = as_real_array(value, name=name, where=where).reshape(-1)
    if arr.dtype.kind == "b":
        raise SampletopoError(
            f"{where}: {name!r} must hold integer {what}. Got booleans; use np.flatnonzero(mask)."
        )
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise SampletopoError(
                f"{where}: {name!r} must hold integer {what}. Got {float(arr[i])!r} at position "
                f"{i}. Pass whole numbers ({what} are never rounded)."
            )
        if arr.size and np.abs(arr).max() > 2**62:
            raise SampletopoError(f"{where}: {name!r} holds ids too large for int64.")
    return arr.astype(np.int64)


def check_real_number(
    name: str,
    value: Any,
    *,
    where: str,
    low: float,
    low_inclusive: bool = True,
    allow_inf: bool = False,
    fix: str = "",
) -> float:
    """Return ``value`` as a float if it is a real number above ``low`` (NaN and bools refused)."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )
    v = float(value) if ok else float("nan")
    if ok and not np.isnan(v):
        above = v >= low if low_inclusive else v > low
        if above and (allow_inf or np.isfinite(v)):
            return v
    bracket = "[" if low_inclusive else "("
    allowed = f"a real number in {bracket}{low:g}, inf" + ("]" if allow_inf else ")")
    msg = f"The {name!r} parameter of {where} must be {allowed}. Got {value!r} instead."
    if fix:
        msg += f" {fix}"
    raise SampletopoError(msg)


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
