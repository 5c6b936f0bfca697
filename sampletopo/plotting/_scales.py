"""Axis scales and robust axis ranges shared by every sample-space figure.

One outlier (a mean loss of 6e9 at an exploding epoch, one panel whose pairs sit at 1000 while
the others sit near 0) must not set a shared axis. The rules, used by the curves, the heatmaps
and the diagram panels alike:

- **Scale** (``scale="auto"``): logarithmic when every value is > 0 and the values shown span
  more than :data:`LOG_RATIO` (100x, largest / smallest); symmetric-log when some values are
  <= 0 and the largest magnitude exceeds the linear threshold (the 5th percentile of the
  non-zero magnitudes) by more than that; linear otherwise. ``"linear"``, ``"log"`` and
  ``"symlog"`` force one.
- **Range**: each *group* (a heatmap panel, or one point of a curve with its interval)
  contributes its smallest and largest value, judged in magnitude (log10; when values <= 0
  exist, a symmetric log in decades that puts 0 about one decade below the smallest non-zero
  magnitude). Sorted
  from the top, the largest ends are left out of the range when at most a quarter of the
  groups (:data:`MAX_OUTLIER_SHARE`) sit above a jump over the rest of more than 10x on a
  linear axis (:data:`OUTLIER_JUMP`) or 1000x on a log or symlog one
  (:data:`OUTLIER_JUMP_LOG`; the largest such jump is taken): an exploding epoch (6e9 over 2;
  a heatmap panel at 1000-7000 among panels below 2) is left out; a quick early fall of an
  ordinary loss curve (2.3, 1.4, 0.9, ...), early epochs two decades above the late ones on a
  log axis, or a run 10x above one other are not; nor are values above a rest that is
  exactly 0 (a count of pairs that is 0 at most epochs: 0 gives no size to measure a jump
  by). Only the high end is fenced for curves and heatmap persistence (an explosion makes
  values large; small ones are real); both ends for heatmap births and diagram axes. What lies
  beyond is drawn in a marked overflow bin (heatmaps) or at the axis edge as a triangle
  (curves, diagrams), and counted in the figure's caption: nothing is dropped silently.
- What is left out chooses neither the ``auto`` scale nor the symmetric-log threshold: both
  come from the values kept (a mean of 1e14 set a threshold of 1e5 that held every healthy
  curve flat at 0). Symmetric-log axes tick only 0 and the decades beyond the threshold; log
  axes label no minor tick, and those spanning at most two decades tick 1, 2 and 5 per decade.

Nothing here draws; :mod:`sampletopo.plotting._topology` does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from matplotlib.axes import Axes
from matplotlib.scale import SymmetricalLogTransform
from matplotlib.ticker import FuncFormatter, Locator, LogLocator, NullFormatter

from sampletopo._validation import check_choice, invalid

__all__ = [
    "MAX_OUTLIER_SHARE",
    "OUTLIER_JUMP",
    "OUTLIER_JUMP_LOG",
    "LOG_RATIO",
    "SCALES",
    "AxisScale",
    "Scale",
    "axis_scale",
    "check_range",
]

Scale = Literal["auto", "linear", "log", "symlog"]
SCALES = ("auto", "linear", "log", "symlog")

LOG_RATIO = 100.0
"""``auto`` picks a log (or symlog) axis when the shown values span more than this factor."""

OUTLIER_JUMP = 10.0
"""Group ends above a jump of more than this factor over the rest do not set a linear range ..."""
OUTLIER_JUMP_LOG = 1000.0
"""... nor, above a jump of more than this factor, a log or symlog range ..."""
MAX_OUTLIER_SHARE = 0.25
"""... when they are at most this share of the groups (two runs 10x apart are both kept)."""


@dataclass(frozen=True)
class AxisScale:
    """A chosen axis: its scale name, ``linthresh`` (symlog only) and data range ``[lo, hi]``."""

    name: str
    lo: float
    hi: float
    linthresh: float | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Values on the axis' scale (log10, symlog or unchanged)."""
        return _forward(self.name, self.linthresh)(np.asarray(x, dtype=np.float64))

    def inverse(self, t: np.ndarray) -> np.ndarray:
        """Data values of positions on the axis' scale."""
        return _inverse(self.name, self.linthresh)(np.asarray(t, dtype=np.float64))

    def edges(self, bins: int) -> np.ndarray:
        """``bins + 1`` edges evenly spaced on the axis' scale from ``lo`` to ``hi``."""
        t0, t1 = self.forward(np.array([self.lo, self.hi]))
        t = np.linspace(float(t0), float(t1), bins + 1)
        out = self.inverse(t)
        out[0], out[-1] = self.lo, self.hi
        return out

    def apply(self, ax: Axes, which: str) -> None:
        """Set this scale on the ``"x"`` or ``"y"`` axis of ``ax``. On a symmetric-log axis
        the decade ticks inside the linear part (between 0 and ``linthresh``) are left out:
        "10^-3" sat on top of "0" there."""
        setter = ax.set_xscale if which == "x" else ax.set_yscale
        if self.name == "symlog":
            setter("symlog", linthresh=self.linthresh)
            axis = ax.xaxis if which == "x" else ax.yaxis
            axis.set_major_locator(
                _OutsideLinear(axis.get_major_locator(), float(self.linthresh or 1.0))
            )
        elif self.name == "log":
            setter("log")
            axis = ax.xaxis if which == "x" else ax.yaxis
            # Minor ticks unlabelled: over one or two decades matplotlib labelled them too, and
            # "3x10^0 4x10^0 6x10^0" ran into each other on a 2.6-inch panel. Spans up to two
            # decades get 1-2-5 ticks labelled plainly ("2", "5", "10", "20", "50").
            axis.set_minor_formatter(NullFormatter())
            if 0 < self.lo < self.hi and np.log10(self.hi / self.lo) <= 2:
                axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
                axis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        else:
            setter(self.name)

    @property
    def text(self) -> str:
        """How the caption names the scale."""
        return {"log": "log", "symlog": "symmetric log", "linear": "linear"}[self.name]


class _OutsideLinear(Locator):
    """The ticks of ``inner`` at 0 and outside ``(-linthresh, linthresh)``."""

    def __init__(self, inner: Locator, linthresh: float) -> None:
        self.inner = inner
        self.linthresh = linthresh

    def set_axis(self, axis: Any) -> None:
        super().set_axis(axis)
        self.inner.set_axis(axis)

    def _keep(self, ticks: Any) -> Sequence[float]:
        t = np.asarray(ticks, dtype=np.float64)
        return [float(v) for v in t[(t == 0) | (np.abs(t) >= self.linthresh * (1 - 1e-9))]]

    def __call__(self) -> Sequence[float]:
        return self._keep(self.inner())

    def tick_values(self, vmin: float, vmax: float) -> Sequence[float]:
        return self._keep(self.inner.tick_values(vmin, vmax))


def _forward(name: str, linthresh: float | None) -> Callable[[np.ndarray], np.ndarray]:
    if name == "log":
        return lambda x: np.log10(np.where(x > 0, x, np.nan))
    if name == "symlog":
        tr = SymmetricalLogTransform(10, linthresh or 1.0, 1.0)
        return lambda x: np.asarray(tr.transform_non_affine(np.atleast_1d(x))).reshape(np.shape(x))
    return lambda x: x


def _inverse(name: str, linthresh: float | None) -> Callable[[np.ndarray], np.ndarray]:
    if name == "log":
        return lambda t: np.power(10.0, t)
    if name == "symlog":
        tr = SymmetricalLogTransform(10, linthresh or 1.0, 1.0).inverted()
        return lambda t: np.asarray(tr.transform_non_affine(np.atleast_1d(t))).reshape(np.shape(t))
    return lambda t: t


def check_scale(scale: str, where: str) -> str:
    """``scale`` if it is one of :data:`SCALES`, else one clear error."""
    check_choice(
        "scale",
        scale,
        SCALES,
        where=where,
        fix="Use 'auto' (log when the values span more than 100x, linear otherwise).",
    )
    return scale


def check_range(value_range: Sequence[float] | None, where: str) -> tuple[float, float] | None:
    """``value_range`` as ``(lo, hi)`` with finite ``lo < hi``, or ``None``."""
    if value_range is None:
        return None
    try:
        lo, hi = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise invalid(
            "value_range", "two numbers (lo, hi)", value_range, where=where, fix="E.g. (0, 2.5)."
        ) from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise invalid(
            "value_range",
            "two finite numbers with lo < hi",
            value_range,
            where=where,
            fix="E.g. (0, 2.5); swap them if they are the wrong way round.",
        )
    return lo, hi


def _cut(ends: np.ndarray, jump: float, zero: float | None = None) -> float:
    """The largest of ``ends`` (magnitudes, in decades) once a top minority separated from the
    rest by a jump of more than ``jump`` (a factor) is left out (see the module docstring).

    ``zero`` is where the value 0 lies on this scale (symmetric log only): a rest that ends at
    exactly 0 gives no size to measure a jump against (a count that is 0 at most epochs and 1
    or 2 at a few is not an explosion), so nothing is left out then."""
    e = np.sort(ends)[::-1]
    most = int(e.size * MAX_OUTLIER_SHARE)
    if most < 1:
        return float(e[0])
    jumps = e[:most] - e[1 : most + 1]
    k = int(np.argmax(jumps))
    if zero is not None and e[k + 1] == zero:
        return float(e[0])
    return float(e[k + 1]) if jumps[k] > np.log10(jump) else float(e[0])


def _range_on(name: str, groups: Sequence[np.ndarray], fence_low: bool = True):
    """Robust ``(lo, hi)`` of ``groups`` for a ``name`` axis, or ``None`` when nothing is
    drawable; ``fence_low=False`` keeps the smallest value as the low end.

    Outliers are judged on magnitudes, whatever the axis: on log10 of the values when all are
    > 0, on their symmetric log otherwise. An explosion is a jump in magnitude; on a linear
    scale the quick early fall of an ordinary loss curve would look like one.
    """
    flat = [np.asarray(g, dtype=np.float64).ravel() for g in groups]
    if name == "log":  # a log axis shows only positive values; the rest go beyond it
        flat = [g[g > 0] for g in flat]
    allv = np.concatenate(flat) if flat else np.empty(0)
    allv = allv[np.isfinite(allv)]
    if allv.size == 0:
        return None
    judge = "log" if allv.min() > 0 else "symlog"
    fwd = _forward("log", None) if judge == "log" else _decades(allv)
    los, his = [], []
    for g in flat:
        t = fwd(g)
        t = t[np.isfinite(t)]
        if t.size:
            los.append(t.min())
            his.append(t.max())
    lo_a, hi_a = np.array(los), np.array(his)
    # A log axis shows a few decades more at little cost; a linear one is ruined by one decade.
    jump = OUTLIER_JUMP if name == "linear" else OUTLIER_JUMP_LOG
    zero = 0.0 if judge == "symlog" else None  # symlog maps 0 to 0
    lo_t = -_cut(-lo_a, jump, zero) if fence_low else float(lo_a.min())
    hi_t = _cut(hi_a, jump, zero)
    # The data values themselves (not 10**log10(x), which can miss x by one rounding step and
    # push the extreme pair into an overflow bin).
    t_all = fwd(allv)
    return (
        float(allv[np.argmin(np.abs(t_all - lo_t))]),
        float(allv[np.argmin(np.abs(t_all - hi_t))]),
    )


def _decades(values: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Symmetric log of values that include 0, in decades: 0 maps to 0, the smallest non-zero
    magnitude to about 1.1 and each decade above it adds 1 (a jump is judged in decades
    whatever the axis' own ``linthresh``, which is set by the values kept)."""
    mags = np.abs(values[np.isfinite(values) & (values != 0)])
    lt = float(mags.min()) if mags.size else 1.0
    tr = SymmetricalLogTransform(10, lt, 1.0)
    return lambda x: np.asarray(tr.transform_non_affine(np.atleast_1d(x))).reshape(np.shape(x)) / lt


def _auto_name(values: np.ndarray) -> str:
    """``scale="auto"``'s choice for ``values`` (finite): see the module docstring."""
    if values.size == 0:
        return "linear"
    if values.min() > 0:
        return "log" if values.max() / values.min() > LOG_RATIO else "linear"
    return "symlog" if np.abs(values).max() / _linthresh(values) > LOG_RATIO else "linear"


def _linthresh(values: np.ndarray) -> float:
    mags = np.abs(values[np.isfinite(values) & (values != 0)])
    if mags.size == 0:
        return 1.0
    return float(max(np.quantile(mags, 0.05), mags.max() * 1e-9))


def axis_scale(
    groups: Sequence[np.ndarray],
    *,
    scale: str = "auto",
    value_range: Sequence[float] | None = None,
    where: str = "axis_scale",
    floor: float | None = None,
    fence_low: bool = True,
) -> AxisScale:
    """Choose the scale and the range of one axis from the values of its ``groups``.

    Parameters
    ----------
    groups : sequence of arrays
        The values drawn, one array per group (a heatmap panel; a single point of a curve).
        Non-finite values are ignored.
    scale : {"auto", "linear", "log", "symlog"}
        See the module docstring.
    value_range : (lo, hi), optional
        A fixed range; the scale is still chosen (``auto`` uses the values inside it).
    floor : float, optional
        On a linear axis, do not go below this (persistence starts at 0).
    fence_low : bool
        Fence the low end too; ``False`` for values whose small end is never an outlier
        (persistence: short-lived pairs are expected, an exploding epoch only adds long ones).

    Returns
    -------
    AxisScale
    """
    check_scale(scale, where)
    fixed = check_range(value_range, where)
    flat = [np.asarray(g, dtype=np.float64).ravel() for g in groups]
    allv = np.concatenate(flat) if flat else np.empty(0)
    allv = allv[np.isfinite(allv)]
    if fixed is not None:
        allv = allv[(allv >= fixed[0]) & (allv <= fixed[1])]
    name = _auto_name(allv) if scale == "auto" else scale
    if fixed is not None:
        lo, hi = fixed
        if name == "log" and lo <= 0:
            raise invalid(
                "value_range",
                "a range with lo > 0 on a log axis",
                value_range,
                where=where,
                fix="Pass a positive lo, or scale='symlog'.",
            )
        return AxisScale(name, lo, hi, _linthresh(allv) if name == "symlog" else None)
    r = _range_on(name, flat, fence_low)
    if r is None:
        lo, hi = (1e-3, 1.0) if name == "log" else (0.0, 1.0)
    else:
        lo, hi = r
    # What is left out of the range chooses neither the scale nor the symlog threshold: a
    # mean of 1e14 at one exploding epoch made a symlog axis whose linear part (set by 1e14)
    # held every other curve flat at 0.
    inside = allv[(allv >= lo) & (allv <= hi)]
    if scale == "auto" and inside.size:
        name = _auto_name(inside)
    if name == "linear" and floor is not None and lo >= floor and lo - floor < 0.5 * (hi - lo):
        lo = floor  # a count-like axis (persistence) reads better from its natural zero
    if hi <= lo:
        pad = 0.5 * abs(lo) if lo else 0.5
        lo, hi = (lo / 2, lo * 2) if name == "log" else (lo - pad, hi + pad)
    return AxisScale(name, lo, hi, _linthresh(inside) if name == "symlog" else None)
