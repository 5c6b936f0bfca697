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
    """Return a 1-D float64 copy of ``values``; refuse NaN/inf and a wrong length."""
    arr = np.asarray(values, dtype=np.float64)
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
