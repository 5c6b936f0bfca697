"""The exploding-loss rule: one definition for the recorder's warning and the summary's flag.

An epoch's mean loss (over one split's samples) *explodes* when it is finite and

- more than :data:`FACTOR` (100) times the mean of the previous recorded epoch of that split
  (when that one is finite and above 0), or
- above :data:`BOUND` (1e6), whatever came before.

Why these numbers. Cross-entropy at chance level is ``ln(num_classes)`` (2.3 for 10 classes,
6.9 for 1,000): a classifier that learns anything stays near or below it, so a mean of 1e6 is
hundreds of thousands of times worse than guessing and only a diverging run gets there (a
ResNet-56 without skips reached 6e9 after one epoch). A hundredfold rise from one epoch to the
next is far beyond the noise of SGD and of learning-rate changes (which lower the loss), so it
marks a blow-up that has not reached the bound yet, also for regression losses, whose scale is
the targets'. NaN and infinite means are not flagged here: they keep their own warning and
error (:class:`~sampletopo._errors.NonFiniteLossWarning`, ``RunDivergedError``).

This module only decides; the recorder warns (:mod:`sampletopo._writer`) and the summaries
carry the flag (:func:`sampletopo.analysis.summarize`).
"""

from __future__ import annotations

import math

import polars as pl

__all__ = ["BOUND", "FACTOR", "exploding_flag", "why_exploding"]

FACTOR = 100.0
"""A mean loss more than this many times the previous recorded epoch's explodes."""

BOUND = 1e6
"""A mean loss above this explodes."""


def why_exploding(mean: float, previous: float | None, *, previous_epoch: int | None) -> str | None:
    """Why the mean loss ``mean`` explodes after ``previous`` (the previous recorded epoch's,
    ``None`` if there is none), or ``None`` if it does not.

    >>> why_exploding(6e9, 2.3, previous_epoch=0)
    'mean loss 6e+09 is above 1e+06'
    >>> why_exploding(500.0, 2.0, previous_epoch=3)
    'mean loss 500 is 250 times that of epoch 3 (2)'
    >>> why_exploding(150.0, 2.0, previous_epoch=3) is None, why_exploding(float("nan"), 1, previous_epoch=0)
    (True, None)
    """
    if not math.isfinite(mean):
        return None
    if mean > BOUND:
        return f"mean loss {mean:.4g} is above {BOUND:g}"
    if previous is not None and math.isfinite(previous) and previous > 0:
        if mean > FACTOR * previous:
            return (
                f"mean loss {mean:.4g} is {mean / previous:.3g} times that of epoch "
                f"{previous_epoch} ({previous:.4g})"
            )
    return None


def exploding_flag(mean: str = "mean_loss", *, over: list[str], order: str = "epoch") -> pl.Expr:
    """The rule as a polars expression on a column of per-epoch means: ``True`` where the
    epoch's mean explodes, the previous epoch being the previous row of the same ``over``
    group by ``order`` (the frame must hold one row per group and epoch)."""
    m = pl.col(mean)
    prev = m.shift(1).over(over, order_by=order)
    jump = prev.is_finite() & (prev > 0) & (m > FACTOR * prev)
    return (m.is_finite() & ((m > BOUND) | jump.fill_null(False))).fill_null(False)
