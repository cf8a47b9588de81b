"""Axes with one tick format each: whole solver steps only, and decades of a log axis all written as 1e-k."""

from __future__ import annotations

import math

import pyqtgraph as pg


def _whole(value: float) -> bool:
    return abs(value - round(value)) < 1e-9


class StepAxis(pg.AxisItem):
    """Solver steps are whole numbers: ticks on integers only, never 2.5."""

    def tickValues(self, minVal, maxVal, size):  # noqa: N802 — pyqtgraph's names
        if self._tickLevels is not None:  # explicit ticks (block names, "one pass") are kept as given
            return super().tickValues(minVal, maxVal, size)
        levels = []
        for spacing, values in super().tickValues(minVal, maxVal, size):
            if spacing >= 1:
                levels.append((spacing, [v for v in values if _whole(v)]))
        if not levels:
            levels = [(1.0, [float(v) for v in range(math.ceil(minVal), math.floor(maxVal) + 1)])]
        return levels

    def tickStrings(self, values, scale, spacing):  # noqa: N802
        if self._tickLevels is not None:
            return super().tickStrings(values, scale, spacing)
        return [str(int(round(v))) for v in values]


class DecadeAxis(pg.AxisItem):
    """A log axis whose labels are all ``1e-k`` (pyqtgraph mixes "0.01" with "1e-05"); other ticks unlabelled."""

    def logTickStrings(self, values, scale, spacing):  # noqa: N802
        return [f"1e{int(round(v))}" if _whole(v) else "" for v in values]
